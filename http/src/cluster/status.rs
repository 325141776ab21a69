//! `/status` of a cluster node asked directly (not forwarded): every node's status, this one's
//! and each peer's (fetched with [`FORWARDED`], so a peer answers for itself only), in peer
//! order. The text page gives each node's page under a `== Node NAME (PEER) ==` line; the JSON
//! is `{"nodes": [{"peer", "node", "status"} or {"peer", "error"}]}`, `status` being that node's
//! own `/status` JSON.

use std::{fmt::Write as _, time::Duration};

use actix_web::{http::header, HttpRequest, HttpResponse};
use confluence_core::Engine;

use super::{client, request_like, Cluster, MAX_ANSWER, NODE};
use crate::Options;

/// How long a peer has to give its status.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// One node's part of the page.
struct NodeStatus {
    peer: String,
    node: String,
    /// The node's own answer (text or JSON), or why there is none.
    answer: Result<Vec<u8>, String>,
}

async fn peer_status(req: &HttpRequest, opts: &Options, peer: &str) -> NodeStatus {
    let mut r = request_like(req, &opts.node_name, None, Vec::new());
    // The page is parsed or pasted here: plain bytes only.
    r.headers
        .retain(|(k, _)| !k.eq_ignore_ascii_case("accept-encoding"));
    let answer = client::send(peer, &r, MAX_ANSWER, STATUS_TIMEOUT).await;
    let (node, answer) = match answer {
        Ok(a) if a.status == 200 => (
            a.header(NODE)
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default(),
            Ok(a.body.to_vec()),
        ),
        Ok(a) => {
            let line = String::from_utf8_lossy(&a.body);
            let line = line.lines().next().unwrap_or_default().to_string();
            (String::new(), Err(format!("status {}: {line}", a.status)))
        }
        Err(e) => (String::new(), Err(e.to_string())),
    };
    NodeStatus {
        peer: peer.to_string(),
        node,
        answer,
    }
}

/// The cluster's `/status` (see the module doc).
pub async fn cluster_status(
    req: &HttpRequest,
    engine: &Engine,
    opts: &Options,
    cluster: &Cluster,
    json: bool,
) -> HttpResponse {
    let peers = cluster
        .peers()
        .iter()
        .enumerate()
        .map(|(i, peer)| async move {
            if i != cluster.me() {
                return peer_status(req, opts, peer).await;
            }
            let st = engine.status();
            let answer = if json {
                serde_json::to_vec(&st).map_err(|e| e.to_string())
            } else {
                Ok(
                    crate::status::render_text(&st, engine.config().file_dir.as_deref())
                        .into_bytes(),
                )
            };
            NodeStatus {
                peer: peer.clone(),
                node: opts.node_name.clone(),
                answer,
            }
        });
    let nodes = futures::future::join_all(peers).await;
    if json {
        let list: Vec<serde_json::Value> = nodes.iter().map(node_json).collect();
        let mut body =
            serde_json::to_string_pretty(&serde_json::json!({ "nodes": list })).unwrap_or_default();
        body.push('\n');
        return HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .body(body);
    }
    let up = nodes.iter().filter(|n| n.answer.is_ok()).count();
    let mut o = format!("Cluster: {} nodes, {up} answering\n\n", nodes.len());
    for n in &nodes {
        match &n.answer {
            Ok(page) => {
                let _ = writeln!(o, "== Node {} ({}) ==", n.node, n.peer);
                o.push_str(&String::from_utf8_lossy(page));
                o.push('\n');
            }
            Err(e) => {
                let _ = writeln!(o, "== Node ({}): no status: {e} ==\n", n.peer);
            }
        }
    }
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .body(o)
}

fn node_json(n: &NodeStatus) -> serde_json::Value {
    let parsed = n.answer.as_ref().map_err(String::clone).and_then(|b| {
        serde_json::from_slice::<serde_json::Value>(b).map_err(|e| format!("bad JSON: {e}"))
    });
    match parsed {
        Ok(st) => serde_json::json!({ "peer": n.peer, "node": n.node, "status": st }),
        Err(e) => serde_json::json!({ "peer": n.peer, "error": e }),
    }
}
