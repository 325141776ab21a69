//! The `stopped` announce librqbit never sends.
//!
//! When a torrent leaves the session (after its grace period, or at shutdown) its trackers are
//! told, as anacrolix/torrent does. Without this every daemon that ever ran stays listed as a
//! seeder for the tracker's whole peer timeout (45 min with opentracker), and a new client that
//! draws only dead peers from the tracker's random sample waits for its next announce.
//! HTTP (plain) and UDP (BEP 15) trackers are told; HTTPS ones are not (no TLS client here).

use std::{net::SocketAddr, time::Duration};

use percent_encoding::{percent_encode, NON_ALPHANUMERIC};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{lookup_host, TcpStream, UdpSocket},
    time::timeout,
};
use tracing::debug;

use crate::ident::InfoHash;

/// How long one tracker may take to hear it.
const PER_TRACKER: Duration = Duration::from_millis(1500);

/// Tells every tracker of `tiers` that this peer stopped. Errors are only logged.
pub async fn announce_stopped(tiers: &[Vec<String>], ih: InfoHash, peer_id: [u8; 20], port: u16) {
    let urls: Vec<&String> = tiers.iter().flatten().collect();
    let tasks = urls.into_iter().map(|url| async move {
        let res = if let Some(rest) = url.strip_prefix("http://") {
            timeout(PER_TRACKER, http(rest, &ih, &peer_id, port)).await
        } else if let Some(rest) = url.strip_prefix("udp://") {
            timeout(PER_TRACKER, udp(rest, &ih, &peer_id, port)).await
        } else {
            return;
        };
        match res {
            Ok(Ok(())) => debug!(%ih, url, "announced stopped"),
            Ok(Err(e)) => debug!(%ih, url, "stopped announce failed: {e}"),
            Err(_) => debug!(%ih, url, "stopped announce timed out"),
        }
    });
    futures::future::join_all(tasks).await;
}

fn host_port(rest: &str, default_port: u16) -> (String, String) {
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let host = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
    };
    (host, format!("/{path}"))
}

async fn http(rest: &str, ih: &InfoHash, peer_id: &[u8; 20], port: u16) -> std::io::Result<()> {
    let (host, path) = host_port(rest, 80);
    let sep = if path.contains('?') { '&' } else { '?' };
    let query = format!(
        "info_hash={}&peer_id={}&port={port}&uploaded=0&downloaded=0&left=0&compact=1&event=stopped",
        percent_encode(&ih.0, NON_ALPHANUMERIC),
        percent_encode(peer_id, NON_ALPHANUMERIC),
    );
    let mut s = TcpStream::connect(&host).await?;
    let req =
        format!("GET {path}{sep}{query} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await?;
    if buf[..n].starts_with(b"HTTP/1.") && buf.get(9) == Some(&b'2') {
        Ok(())
    } else {
        Err(std::io::Error::other("tracker did not answer 2xx"))
    }
}

async fn udp(rest: &str, ih: &InfoHash, peer_id: &[u8; 20], port: u16) -> std::io::Result<()> {
    let (host, _) = host_port(rest, 80);
    let addr: SocketAddr = lookup_host(&host)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("tracker host resolves to nothing"))?;
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("valid")
    } else {
        "[::]:0".parse().expect("valid")
    };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(addr).await?;
    let tid: u32 = rand_u32();
    // Connect (BEP 15): magic, action 0, transaction id.
    let mut req = Vec::with_capacity(98);
    req.extend_from_slice(&0x41727101980u64.to_be_bytes());
    req.extend_from_slice(&0u32.to_be_bytes());
    req.extend_from_slice(&tid.to_be_bytes());
    sock.send(&req).await?;
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).await?;
    if n < 16 || buf[0..4] != 0u32.to_be_bytes() || buf[4..8] != tid.to_be_bytes() {
        return Err(std::io::Error::other("bad connect response"));
    }
    let conn_id = &buf[8..16];
    // Announce, event 3 = stopped.
    let mut req = Vec::with_capacity(98);
    req.extend_from_slice(conn_id);
    req.extend_from_slice(&1u32.to_be_bytes());
    req.extend_from_slice(&tid.to_be_bytes());
    req.extend_from_slice(&ih.0);
    req.extend_from_slice(peer_id);
    req.extend_from_slice(&0u64.to_be_bytes()); // downloaded
    req.extend_from_slice(&0u64.to_be_bytes()); // left
    req.extend_from_slice(&0u64.to_be_bytes()); // uploaded
    req.extend_from_slice(&3u32.to_be_bytes()); // event: stopped
    req.extend_from_slice(&0u32.to_be_bytes()); // ip: default
    req.extend_from_slice(&rand_u32().to_be_bytes()); // key
    req.extend_from_slice(&0i32.to_be_bytes()); // num_want
    req.extend_from_slice(&port.to_be_bytes());
    sock.send(&req).await?;
    let n = sock.recv(&mut buf).await?;
    if n >= 8 && buf[0..4] == 1u32.to_be_bytes() {
        Ok(())
    } else {
        Err(std::io::Error::other("bad announce response"))
    }
}

/// A random transaction id / key (BEP 15).
fn rand_u32() -> u32 {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn splits_urls() {
        assert_eq!(
            host_port("127.0.0.1:6969/announce", 80),
            ("127.0.0.1:6969".into(), "/announce".into())
        );
        assert_eq!(
            host_port("t.example/a?x=1", 80),
            ("t.example:80".into(), "/a?x=1".into())
        );
    }
}
