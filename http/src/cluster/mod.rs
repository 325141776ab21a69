//! Scale-out: shared-nothing daemons behind nginx's `hash $ih consistent` (see
//! `examples/cluster/`).
//!
//! nginx routes every request that names a torrent in its URL to the infohash's owner. What it
//! cannot route is a torrent named only by a request body (`POST /metainfo`, `/upload`): it
//! sends those to any node, and that node, knowing the same upstream list (`-clusterPeers`),
//! computes the owner with nginx's own ring ([`ring::Ring`]) and forwards the body there. A
//! peer that cannot be reached is skipped for [`DOWN_FOR`], the next one on the ring taking
//! its torrents, as nginx does with `max_fails`. A forwarded request carries
//! [`FORWARDED`] and is always served where it lands, so nothing loops. `/status` without that
//! header shows every node.

pub mod client;
pub mod ring;
mod status;
mod upload;

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use actix_web::{
    http::{header, StatusCode},
    HttpRequest, HttpResponse,
};
use bytes::Bytes;
use confluence_core::ident::InfoHash;

pub use status::cluster_status;
pub use upload::forward_upload;

use crate::error::HttpError;
use client::{Part, Request, SendError};

/// The header every answer carries: the name of the node that served it (`-nodeName`).
pub const NODE: &str = "x-confluence-node";
/// The header of a request one node forwards to another: served locally, never forwarded.
pub const FORWARDED: &str = "x-confluence-forwarded";
/// How long a peer that could not be reached is skipped (nginx's default `fail_timeout`).
pub const DOWN_FOR: Duration = Duration::from_secs(10);
/// The largest answer accepted from a peer (a `.torrent`, a `/status`).
pub const MAX_ANSWER: usize = 64 << 20;

/// This node's view of the cluster: the upstream's servers, in nginx's spelling, and which one
/// it is.
#[derive(Debug)]
pub struct Cluster {
    peers: Vec<String>,
    me: usize,
    ring: ring::Ring,
    /// When each peer was last found unreachable.
    down: Mutex<Vec<Option<Instant>>>,
}

impl Cluster {
    /// `peers` exactly as nginx's `server` lines spell them; `me` is this node's entry.
    pub fn new(peers: Vec<String>, me: &str) -> Result<Cluster, String> {
        if peers.is_empty() {
            return Err("-clusterPeers is empty".into());
        }
        for (i, p) in peers.iter().enumerate() {
            if peers[..i].contains(p) {
                return Err(format!("-clusterPeers lists {p} twice"));
            }
        }
        let me = peers.iter().position(|p| p == me).ok_or_else(|| {
            format!("this node ({me}) is not in -clusterPeers; set -clusterSelf to its entry")
        })?;
        Ok(Cluster {
            ring: ring::Ring::new(&peers),
            down: Mutex::new(vec![None; peers.len()]),
            peers,
            me,
        })
    }

    pub fn peers(&self) -> &[String] {
        &self.peers
    }

    pub fn me(&self) -> usize {
        self.me
    }

    /// The key nginx hashes for a torrent: 40 lower-case hex digits.
    pub fn key(ih: &InfoHash) -> String {
        ih.to_string()
    }

    /// The peers in the order nginx would try them for `ih`.
    pub fn order(&self, ih: &InfoHash) -> Vec<usize> {
        self.ring.order(Self::key(ih).as_bytes())
    }

    fn is_down(&self, i: usize) -> bool {
        let down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        down[i].is_some_and(|t| t.elapsed() < DOWN_FOR)
    }

    fn set_down(&self, i: usize, is_down: bool) {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        down[i] = is_down.then(Instant::now);
    }

    /// Sends `req` to the owner of `ih`, or the next live node on the ring. `None` when this
    /// node comes first: the caller serves it. A peer that cannot be reached is marked down and
    /// the next one tried (nothing was sent to it); any other failure is a 502.
    pub async fn forward(
        &self,
        ih: &InfoHash,
        req: Request,
        timeout: Duration,
    ) -> Option<Result<HttpResponse, HttpError>> {
        for i in self.order(ih) {
            if i == self.me {
                return None;
            }
            if self.is_down(i) {
                continue;
            }
            match client::send(&self.peers[i], &req, MAX_ANSWER, timeout).await {
                Ok(resp) => {
                    self.set_down(i, false);
                    return Some(Ok(relay(resp)));
                }
                Err(e @ SendError::Connect(..)) => {
                    tracing::warn!(%ih, "cluster: skipping peer for {DOWN_FOR:?}: {e}");
                    self.set_down(i, true);
                }
                Err(SendError::Failed(e)) => {
                    return Some(Err(HttpError::new(
                        StatusCode::BAD_GATEWAY,
                        format!("forwarding to the owner of {ih}: {e}"),
                    )))
                }
            }
        }
        None
    }
}

/// Whether another node sent this request (it is then served here, whatever the ring says).
pub fn is_forwarded(req: &HttpRequest) -> bool {
    req.headers().contains_key(FORWARDED)
}

/// Headers that belong to one connection, or that the forwarding request sets itself.
fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "host",
        "content-length",
        "expect",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// A request for a peer with the end-to-end headers of `req` (the `-authToken` included), the
/// `FORWARDED` mark (`node` is this node's name), and `body`. `content_type` replaces the
/// client's when the body is rebuilt.
pub fn request_like(
    req: &HttpRequest,
    node: &str,
    content_type: Option<String>,
    body: Vec<Part>,
) -> Request {
    let mut headers: Vec<(String, Vec<u8>)> = req
        .headers()
        .iter()
        .filter(|(k, _)| !hop_by_hop(k.as_str()))
        .filter(|(k, _)| content_type.is_none() || *k != header::CONTENT_TYPE)
        .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    if let Some(ct) = content_type {
        headers.push(("Content-Type".into(), ct.into_bytes()));
    }
    headers.push((FORWARDED.into(), node.as_bytes().to_vec()));
    let target = req.uri().path_and_query().map_or_else(
        || req.uri().path().to_string(),
        |pq| pq.as_str().to_string(),
    );
    Request {
        method: req.method().as_str().to_string(),
        target,
        headers,
        body,
    }
}

/// A peer's answer as ours: status, end-to-end headers (its `X-Confluence-Node` included) and
/// body.
fn relay(resp: client::Response) -> HttpResponse {
    let status = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out = HttpResponse::build(status);
    for (k, v) in &resp.headers {
        if hop_by_hop(k) {
            continue;
        }
        if let Ok(v) = header::HeaderValue::from_bytes(v) {
            out.append_header((k.as_str(), v));
        }
    }
    out.body(resp.body)
}

/// A body of bytes, for [`request_like`].
pub fn bytes_body(b: &[u8]) -> Vec<Part> {
    vec![Part::Bytes(Bytes::copy_from_slice(b))]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_membership() {
        let peers = vec!["127.0.0.1:1".to_string(), "127.0.0.1:2".to_string()];
        assert!(Cluster::new(peers.clone(), "127.0.0.1:2").is_ok());
        assert!(Cluster::new(peers.clone(), "127.0.0.1:3")
            .unwrap_err()
            .contains("not in -clusterPeers"));
        assert!(Cluster::new(vec![], "a:1").is_err());
        let twice = vec!["a:1".to_string(), "a:1".to_string()];
        assert!(Cluster::new(twice, "a:1").unwrap_err().contains("twice"));
    }
}
