//! `/status` (a readable page, or JSON), `/metrics` (Prometheus text) and the `/debug/…` pages.
//!
//! `/status` mirrors the layout of the original's (anacrolix `Client.WriteStatus`) loosely, as
//! its own doc says it is not a stable API: listen port, DHT, cache, `# Torrents: N`, then one
//! block per torrent with `Piece States:` runs. `/metrics` and `/debug/…` exist only with
//! `-debugOnMain` (the original mounts its debug mux there); without it they are 404 like any
//! unknown path.

use std::fmt::Write as _;

use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse,
};
use confluence_core::{status::Status, Engine};

use crate::{error::text_response, Options};

fn wants_json(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| m.split(';').next().unwrap_or_default().trim() == "application/json")
}

fn json_response(status: &Status) -> HttpResponse {
    match serde_json::to_string_pretty(status) {
        Ok(mut s) => {
            s.push('\n');
            HttpResponse::Ok()
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .body(s)
        }
        Err(e) => text_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `/status` (any method). Never adds a torrent.
pub async fn status(
    req: HttpRequest,
    engine: web::Data<Engine>,
    opts: web::Data<Options>,
) -> HttpResponse {
    if let Some(c) = opts.cluster.as_ref() {
        if !crate::cluster::is_forwarded(&req) {
            let json = wants_json(&req);
            return crate::cluster::cluster_status(&req, &engine, &opts, c, json).await;
        }
    }
    let st = engine.status();
    if wants_json(&req) {
        return json_response(&st);
    }
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .body(render_text(&st, engine.config().file_dir.as_deref()))
}

/// Go's `humanize.Bytes`: SI units, one decimal below 10.
pub fn humanize_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(UNITS.len() - 1);
    let val = (n as f64 / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", UNITS[e])
    } else {
        format!("{val:.0} {}", UNITS[e])
    }
}

/// The `/status` page.
pub fn render_text(st: &Status, file_dir: Option<&std::path::Path>) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "Listen port: {}", st.listen_port);
    match &st.dht {
        Some(d) => {
            let _ = writeln!(
                o,
                "DHT: on, ID: {}, {} nodes in routing table, {} outstanding requests",
                d.id, d.routing_table_size, d.outstanding_requests
            );
        }
        None => o.push_str("DHT: off\n"),
    }
    match &st.cache {
        Some(c) => {
            let lookups = c.hits + c.misses;
            let ratio = if lookups == 0 {
                "n/a".to_string()
            } else {
                format!("{:.1}%", 100.0 * c.hits as f64 / lookups as f64)
            };
            let cap = match c.capacity {
                Some(cap) => format!("{cap} bytes ({})", humanize_bytes(cap)),
                None => "unlimited".to_string(),
            };
            let _ = writeln!(
                o,
                "Cache: {} bytes ({}) of {cap}, {} pieces ({} bytes pinned by readers); hit ratio {ratio} ({} hits, {} misses); {} evictions",
                c.bytes,
                humanize_bytes(c.bytes),
                c.pieces,
                c.pinned_bytes,
                c.hits,
                c.misses,
                c.evictions
            );
        }
        None => {
            let _ = writeln!(
                o,
                "Cache: none (plain files under {})",
                file_dir.map_or_else(|| "-fileDir".to_string(), |d| d.display().to_string())
            );
        }
    }
    let _ = writeln!(o, "Open readers: {}", st.open_readers);
    let _ = writeln!(o, "Bytes served: {}", st.bytes_served);
    let _ = writeln!(o, "Repairs: {}", st.repairs);
    let _ = writeln!(o, "# Torrents: {}", st.torrents.len());
    o.push('\n');
    for t in &st.torrents {
        match &t.name {
            Some(n) => {
                let _ = writeln!(o, "{n}");
            }
            None => {
                let _ = writeln!(o, "infohash:{}", t.infohash);
            }
        }
        match (t.total_length, t.piece_length) {
            (Some(len), Some(pl)) => {
                let have: u64 = if t.num_pieces == 0 {
                    0
                } else {
                    // Every completed piece is full length except possibly the last one.
                    (u64::from(t.completed_pieces) * pl).min(len)
                };
                let pct = if len == 0 {
                    100.0
                } else {
                    100.0 * have as f64 / len as f64
                };
                let _ = writeln!(o, "{pct:.6}% of {len} bytes ({})", humanize_bytes(len));
            }
            _ => o.push_str("<missing metainfo>\n"),
        }
        let _ = writeln!(o, "Infohash: {}", t.infohash);
        match t.piece_length {
            Some(pl) => {
                let _ = writeln!(o, "Piece length: {pl} ({} chunks)", pl.div_ceil(16 * 1024));
            }
            None => o.push_str("Piece length: no info\n"),
        }
        let _ = writeln!(
            o,
            "Num Pieces: {} ({} completed)",
            t.num_pieces, t.completed_pieces
        );
        let _ = writeln!(o, "Piece States: {}", t.piece_runs);
        let _ = writeln!(o, "State: {}", t.state);
        let p = &t.peers;
        let _ = writeln!(
            o,
            "Peers: {} live, {} connecting, {} queued, {} seen, {} dead",
            p.live, p.connecting, p.queued, p.seen, p.dead
        );
        let _ = writeln!(
            o,
            "Download: {}/s ({} bytes downloaded)",
            humanize_bytes(t.download_bytes_per_sec as u64),
            t.downloaded_bytes
        );
        let _ = writeln!(
            o,
            "Upload: {}/s ({} bytes uploaded)",
            humanize_bytes(t.upload_bytes_per_sec as u64),
            t.uploaded_bytes
        );
        let _ = writeln!(o, "Readers: {}", t.readers);
        let _ = writeln!(o, "References: {}", t.references);
        if t.trackers.iter().all(|tier| tier.is_empty()) {
            o.push_str("Enabled trackers: none\n");
        } else {
            o.push_str("Enabled trackers:\n");
            for (i, tier) in t.trackers.iter().enumerate() {
                for url in tier {
                    let _ = writeln!(o, "  tier {i}: {url}");
                }
            }
        }
        o.push('\n');
    }
    o
}

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The `/metrics` page (Prometheus text exposition format 0.0.4).
pub fn render_metrics(st: &Status, event_streams: u64) -> String {
    let mut o = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} {kind}");
        let _ = writeln!(o, "{name} {value}");
    };
    metric(
        "confluence_num_torrents",
        "gauge",
        "Torrents loaded.",
        st.torrents.len().to_string(),
    );
    let c = st.cache.as_ref();
    metric(
        "confluence_cache_bytes",
        "gauge",
        "Bytes of verified pieces in the piece cache (pinned included).",
        c.map_or(0, |c| c.bytes).to_string(),
    );
    metric(
        "confluence_cache_pieces",
        "gauge",
        "Pieces in the piece cache.",
        c.map_or(0, |c| c.pieces).to_string(),
    );
    metric(
        "confluence_cache_capacity_bytes",
        "gauge",
        "Capacity of the piece cache (+Inf when unlimited, 0 without a cache).",
        match c {
            Some(c) => c
                .capacity
                .map_or_else(|| "+Inf".to_string(), |v| v.to_string()),
            None => "0".to_string(),
        },
    );
    metric(
        "confluence_cache_hits_total",
        "counter",
        "Piece reads served from the cache.",
        c.map_or(0, |c| c.hits).to_string(),
    );
    metric(
        "confluence_cache_misses_total",
        "counter",
        "Piece reads that found no cached piece.",
        c.map_or(0, |c| c.misses).to_string(),
    );
    metric(
        "confluence_cache_evictions_total",
        "counter",
        "Pieces evicted from the cache.",
        c.map_or(0, |c| c.evictions).to_string(),
    );
    metric(
        "confluence_open_readers",
        "gauge",
        "Open readers (HTTP streams and open files).",
        st.open_readers.to_string(),
    );
    metric(
        "confluence_references",
        "gauge",
        "Torrent references held (requests, streams, grace periods).",
        st.torrents
            .iter()
            .map(|t| t.references)
            .sum::<usize>()
            .to_string(),
    );
    metric(
        "confluence_event_streams",
        "gauge",
        "Open /events websockets.",
        event_streams.to_string(),
    );
    metric(
        "confluence_bytes_served_total",
        "counter",
        "Torrent bytes sent to readers.",
        st.bytes_served.to_string(),
    );
    metric(
        "confluence_repairs_total",
        "counter",
        "Torrents re-added because the cache dropped pieces librqbit still claimed.",
        st.repairs.to_string(),
    );
    let per_torrent = [
        (
            "confluence_torrent_peers",
            "Live peer connections of a torrent.",
        ),
        (
            "confluence_torrent_download_bytes_per_second",
            "Download rate of a torrent.",
        ),
        (
            "confluence_torrent_upload_bytes_per_second",
            "Upload rate of a torrent.",
        ),
        (
            "confluence_torrent_completed_pieces",
            "Pieces of a torrent readable now.",
        ),
    ];
    for (i, (name, help)) in per_torrent.iter().enumerate() {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} gauge");
        for t in &st.torrents {
            let v = match i {
                0 => f64::from(t.peers.live),
                1 => t.download_bytes_per_sec,
                2 => t.upload_bytes_per_sec,
                _ => f64::from(t.completed_pieces),
            };
            let _ = writeln!(o, "{name}{{infohash=\"{}\"}} {v}", label(&t.infohash));
        }
    }
    o
}

/// `/metrics` (only routed with `-debugOnMain`).
pub async fn metrics(engine: web::Data<Engine>) -> HttpResponse {
    let st = engine.status();
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        ))
        .body(render_metrics(&st, crate::events::open_streams()))
}

const DEBUG_INDEX: &str = "/debug/status             the /status snapshot as JSON\n\
/debug/vars               counters as JSON (expvar-like)\n\
/debug/runtime            the engine's tokio runtime and the process\n\
/debug/dht                the DHT node\n\
/debug/filecache/status   piece cache capacity, size and item count\n";

/// `/debug/…` (only routed with `-debugOnMain`).
pub async fn debug(
    req: HttpRequest,
    engine: web::Data<Engine>,
    opts: web::Data<Options>,
) -> HttpResponse {
    let page = req.uri().path().strip_prefix("/debug/").unwrap_or_default();
    let text = |body: String| {
        HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
            .body(body)
    };
    match page {
        "" => text(DEBUG_INDEX.to_string()),
        "status" => json_response(&engine.status()),
        "vars" => {
            let st = engine.status();
            let c = st.cache.as_ref();
            let vars = serde_json::json!({
                "cmdline": crate::access::redacted_args(std::env::args()),
                "debugOnMain": opts.debug_on_main,
                "numTorrents": st.torrents.len(),
                "openReaders": st.open_readers,
                "bytesServed": st.bytes_served,
                "repairs": st.repairs,
                "cacheHits": c.map_or(0, |c| c.hits),
                "cacheMisses": c.map_or(0, |c| c.misses),
                "cacheEvictions": c.map_or(0, |c| c.evictions),
                "confluenceEventHandlerWebsocketReadClosed": crate::events::read_closed(),
                "confluenceEventStreamsOpen": crate::events::open_streams(),
            });
            HttpResponse::Ok()
                .insert_header((header::CONTENT_TYPE, "application/json; charset=utf-8"))
                .body(format!("{vars:#}\n"))
        }
        "runtime" => text(runtime_page(&engine)),
        "dht" => text(match engine.status().dht {
            Some(d) => format!(
                "DHT node ID: {}\nRouting table size: {}\nOutstanding requests: {}\n",
                d.id, d.routing_table_size, d.outstanding_requests
            ),
            None => "no DHT (-dht=false)\n".to_string(),
        }),
        "filecache/status" => match engine.status().cache {
            Some(c) => text(format!(
                "Capacity: {}\nCurrent Size: {}\nItem Count: {}\n",
                c.capacity.map_or(-1, |v| v as i64),
                c.bytes,
                c.pieces
            )),
            None => text_response(StatusCode::NOT_FOUND, "no piece cache (-fileDir)"),
        },
        _ => text_response(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

fn runtime_page(engine: &Engine) -> String {
    let m = engine.runtime().metrics();
    let mut o = String::new();
    let _ = writeln!(o, "Engine runtime (tokio)");
    let _ = writeln!(o, "Workers: {}", m.num_workers());
    let _ = writeln!(o, "Alive tasks: {}", m.num_alive_tasks());
    let _ = writeln!(o, "Global queue depth: {}", m.global_queue_depth());
    for w in 0..m.num_workers() {
        let _ = writeln!(
            o,
            "Worker {w}: busy {:?}, parked {} times",
            m.worker_total_busy_duration(w),
            m.worker_park_count(w)
        );
    }
    if let Ok(s) = std::fs::read_to_string("/proc/self/status") {
        o.push_str("\nProcess\n");
        for line in s.lines() {
            if ["Threads:", "VmRSS:", "VmHWM:", "FDSize:"]
                .iter()
                .any(|k| line.starts_with(k))
            {
                let _ = writeln!(
                    o,
                    "{}",
                    line.split_whitespace().collect::<Vec<_>>().join(" ")
                );
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use confluence_core::status::{CacheStatus, Peers, TorrentStatus};

    fn sample() -> Status {
        Status {
            listen_port: 42069,
            dht: None,
            cache: Some(CacheStatus {
                capacity: Some(1 << 30),
                bytes: 524288,
                pieces: 2,
                pinned_bytes: 0,
                hits: 3,
                misses: 1,
                evictions: 0,
            }),
            open_readers: 1,
            bytes_served: 10,
            repairs: 0,
            torrents: vec![TorrentStatus {
                infohash: "b2c3b7512da2afa97c033aa9a76f97e173bab23a".into(),
                name: Some("big.bin".into()),
                total_length: Some(1 << 20),
                piece_length: Some(262144),
                num_pieces: 4,
                completed_pieces: 2,
                state: "live".into(),
                references: 2,
                readers: 1,
                peers: Peers::default(),
                download_bytes_per_sec: 1.5,
                upload_bytes_per_sec: 0.0,
                downloaded_bytes: 524288,
                uploaded_bytes: 0,
                trackers: vec![vec!["http://127.0.0.1:6969/announce".into()]],
                piece_runs: "2C 2".into(),
            }],
        }
    }

    #[test]
    fn text_layout() {
        let t = render_text(&sample(), None);
        assert!(
            t.starts_with("Listen port: 42069\nDHT: off\nCache: 524288 bytes"),
            "{t}"
        );
        assert!(t.contains("hit ratio 75.0%"), "{t}");
        assert!(
            t.contains("# Torrents: 1\n\nbig.bin\n50.000000% of 1048576 bytes (1.0 MB)\n"),
            "{t}"
        );
        assert!(t.contains("Piece States: 2C 2\n"), "{t}");
        assert!(
            t.contains("  tier 0: http://127.0.0.1:6969/announce\n"),
            "{t}"
        );
    }

    #[test]
    fn metrics_layout() {
        let m = render_metrics(&sample(), 0);
        assert!(m.contains("\nconfluence_num_torrents 1\n"), "{m}");
        assert!(
            m.contains("\nconfluence_cache_capacity_bytes 1073741824\n"),
            "{m}"
        );
        assert!(m.contains("\nconfluence_references 2\n"), "{m}");
        assert!(m.contains(
            "confluence_torrent_download_bytes_per_second{infohash=\"b2c3b7512da2afa97c033aa9a76f97e173bab23a\"} 1.5\n"
        ));
        for line in m.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = line.rsplit_once(' ').unwrap();
            assert!(v == "+Inf" || v.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn humanize_like_go() {
        assert_eq!(humanize_bytes(5), "5 B");
        assert_eq!(humanize_bytes(67108864), "67 MB");
        assert_eq!(humanize_bytes(1048576), "1.0 MB");
        assert_eq!(humanize_bytes(82854982), "83 MB");
    }
}
