//! examples/embed.rs: confluence inside another program.
//!
//! ```sh
//! cargo run --example embed -- TORRENT_FILE [PATH] [FIRST-LAST]
//! ```
//!
//! Starts the torrent engine and the HTTP front door in this process (HTTP on an ephemeral
//! port of 127.0.0.1, peers on another), adds the `.torrent` with `POST /metainfo`, reads a
//! byte range of PATH (default: the whole torrent) with `GET /data` and prints the status,
//! `Content-Range` and the SHA-1 of the bytes, then shuts everything down. The data dir is
//! `$CONFLUENCE_EMBED_DIR` or a fresh temporary directory; trackers come from the `.torrent`.
//!
//! What runs where: librqbit wants a tokio runtime of its own (the engine is started on it
//! and stays there); actix-web runs the HTTP server on its own `System` thread. The two only
//! share the cloneable `Engine`.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use anyhow::{bail, Context};
use confluence_core::{Config, Engine};
use sha1::Digest as _;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let torrent_file = args
        .next()
        .context("usage: embed TORRENT_FILE [PATH] [FIRST-LAST]")?;
    let path = args.next().filter(|p| !p.is_empty());
    let range = args.next().unwrap_or_else(|| "0-65535".into());
    let torrent =
        std::fs::read(&torrent_file).with_context(|| format!("reading {torrent_file}"))?;

    // 1. The engine: one Config (the daemon's flags, as fields), started on its own runtime.
    let data_dir = match std::env::var_os("CONFLUENCE_EMBED_DIR") {
        Some(d) => d.into(),
        None => std::env::temp_dir().join(format!("confluence-embed-{}", std::process::id())),
    };
    let mut config = Config::new(data_dir.clone());
    config.torrent_addr = SocketAddr::from(([127, 0, 0, 1], 0)); // any free peer port
    config.dht = false;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("engine")
        .enable_all()
        .build()?;
    let engine = rt.block_on(Engine::start(config))?;

    // 2. The HTTP front door on an ephemeral port, served by actix on a thread of its own.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let http_engine = engine.clone();
    let http = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let opts = confluence_http::Options::default();
            let server = confluence_http::server(http_engine, listener, opts)?;
            let _ = handle_tx.send(server.handle());
            server.await
        })
    });
    let server = handle_rx.recv().context("the HTTP server did not start")?;
    println!("serving http at {addr}; peers on {}", engine.listen_addr());

    // 3. Use it through its own API, as any client would.
    let result = (|| {
        let (status, body) = http_request(addr, "POST", "/metainfo", &[], &torrent)?;
        if status != 200 {
            bail!(
                "POST /metainfo: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        let ih = String::from_utf8_lossy(&body).trim().to_string();
        println!("added {ih}");
        let mut target = format!("/data?ih={ih}");
        if let Some(p) = &path {
            target += &format!("&path={}", query_escape(p));
        }
        let range = format!("Range: bytes={range}");
        let (status, body) = http_request(addr, "GET", &target, &[&range], b"")?;
        println!("GET {target} ({range}): {status}");
        println!(
            "{} bytes, sha1 {}",
            body.len(),
            hex::encode(sha1::Sha1::digest(&body))
        );
        if status != 206 {
            bail!("expected 206 Partial Content, got {status}");
        }
        Ok(())
    })();

    // 4. Shut down: HTTP first (stop accepting, drop connections), then the engine, on the
    // runtime it lives on, then the runtime itself.
    rt.block_on(server.stop(false));
    let _ = http.join();
    rt.block_on(engine.shutdown());
    rt.shutdown_timeout(Duration::from_secs(1));
    if std::env::var_os("CONFLUENCE_EMBED_DIR").is_none() {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    result
}

/// Percent-encodes a query value (everything but unreserved characters).
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, body). Bounded: 60 s.
fn http_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[&str],
    body: &[u8],
) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut c = TcpStream::connect(addr)?;
    c.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req += &format!("{h}\r\n");
    }
    req += &format!("Content-Length: {}\r\n\r\n", body.len());
    c.write_all(req.as_bytes())?;
    c.write_all(body)?;
    let mut resp = Vec::new();
    c.read_to_end(&mut resp)?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of head")?;
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status")?;
    let mut body = resp[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body)?;
    }
    Ok((status, body))
}

/// Decodes a chunked body.
fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size")?;
        let size = std::str::from_utf8(&b[..eol])?
            .split(';')
            .next()
            .unwrap_or("");
        let n = usize::from_str_radix(size.trim(), 16)?;
        if n == 0 {
            return Ok(out);
        }
        let data = b.get(eol + 2..eol + 2 + n).context("short chunk")?;
        out.extend_from_slice(data);
        b = &b[eol + 4 + n..];
    }
}
