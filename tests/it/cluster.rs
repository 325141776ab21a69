//! Issue 19, scale-out: `examples/cluster/` (Debian's nginx with njs, `hash $ih consistent`) in
//! front of three shared-nothing daemons with `-clusterPeers`, against the local swarm.
//!
//! - every route works through nginx, byte for byte, and carries `X-Confluence-Node`;
//! - one infohash always reaches the node nginx's ring gives it, however it is spelled (`ih=` in
//!   either case, the path form, a magnet in hex or base32, a POST body, an upload);
//! - a replayed request log over 24 torrents gets ≥ 0.9× the cache-hit ratio of one daemon
//!   with the same total cache; with one node stopped, the others keep their torrents and hit
//!   ratio, and the stopped node's torrents are served by their new owner.

mod harness;
mod replay;

use crate::common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use common::{
    assert_bytes_eq, bdecode, form::upload_form, penc_path, qenc, serial, sha1_hex, swarm, Resp,
};
use data_encoding::BASE32;
use harness::Cluster;

pub fn node_of(r: &Resp) -> String {
    r.header("x-confluence-node")
        .unwrap_or("<none>")
        .to_string()
}

/// The infohash of a `.torrent`.
pub fn torrent_ih(torrent: &[u8]) -> String {
    let t = bdecode(torrent).expect("a bencoded .torrent");
    let span = t.span("info").expect("an info dict");
    sha1_hex(&torrent[span])
}

/// Reads websocket frames (unmasked, from a server) until a text frame; its payload.
fn ws_text_frame(s: &mut TcpStream, mut buf: Vec<u8>, deadline: Instant) -> String {
    loop {
        if buf.len() >= 2 {
            let (op, len7) = (buf[0] & 0x0f, (buf[1] & 0x7f) as usize);
            let (hdr, len) = match len7 {
                126 if buf.len() >= 4 => (4, u16::from_be_bytes([buf[2], buf[3]]) as usize),
                127 if buf.len() >= 10 => (
                    10,
                    u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                ),
                126 | 127 => (usize::MAX, 0),
                n => (2, n),
            };
            if hdr != usize::MAX && buf.len() >= hdr + len {
                let payload = buf[hdr..hdr + len].to_vec();
                buf.drain(..hdr + len);
                if op == 1 {
                    return String::from_utf8_lossy(&payload).into_owned();
                }
                continue;
            }
        }
        assert!(Instant::now() < deadline, "no websocket text frame in time");
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) => panic!("websocket closed before a text frame"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("websocket read: {e}"),
        }
    }
}

/// `/events` through nginx: the upgrade reaches the owner and a piece read shows up as a frame.
fn events_through_nginx(c: &Cluster, ih: &str, read_target: &str) {
    let addr = SocketAddr::from(([127, 0, 0, 1], c.nginx.port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let req = format!(
        "GET /events?ih={ih} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut raw = Vec::new();
    let end = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        assert!(Instant::now() < deadline, "no websocket handshake answer");
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) => panic!(
                "closed before the handshake answer: {}",
                String::from_utf8_lossy(&raw)
            ),
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
    assert!(
        head.starts_with("http/1.1 101"),
        "/events through nginx: {head}"
    );
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    let owner = c.owner(ih);
    assert!(
        head.contains(&format!("x-confluence-node: {owner}")),
        "/events not on {owner}: {head}"
    );
    let r = c.nginx.get(read_target);
    assert_eq!(r.status, 200, "{read_target}: {}", r.text());
    let frame = ws_text_frame(&mut s, raw[end + 4..].to_vec(), deadline);
    assert!(frame.starts_with("{\"PieceChanged\":"), "frame {frame:?}");
}

#[test]
fn every_route_and_spelling_reaches_the_owner_through_nginx() {
    let sw = swarm();
    let _g = serial();
    let c = Cluster::start(3, &[]);
    let n = &c.nginx;

    // POST /metainfo: nginx cannot see the infohash; the node it picks forwards to the owner.
    for key in ["single", "multi", "media"] {
        let ih = sw.ih(key);
        for _ in 0..3 {
            let r = n.req("POST", "/metainfo", &[], &sw.torrent_bytes(key));
            assert_eq!(
                (r.status, r.text()),
                (200, format!("{ih}\n")),
                "POST /metainfo {key}"
            );
            assert_eq!(node_of(&r), c.owner(&ih), "POST /metainfo {key}");
        }
    }

    // One torrent, every spelling: the same node, and the right info.
    for key in ["single", "multi", "media"] {
        let ih = sw.ih(key);
        let owner = c.owner(&ih);
        let b32 = BASE32.encode(&hex::decode(&ih).unwrap());
        let magnet = sw.magnet(key);
        let targets = [
            format!("/info?ih={ih}"),
            format!("/info?ih={}", ih.to_uppercase()),
            format!("/info?magnet={}", qenc(&magnet)),
            format!(
                "/info?magnet={}",
                qenc(&magnet.replace(&ih, &ih.to_uppercase()))
            ),
            format!("/info?magnet={}", qenc(&magnet.replace(&ih, &b32))),
            format!(
                "/info?magnet={}",
                qenc(&magnet.replace(&ih, &b32.to_lowercase()))
            ),
            format!("/info?magnet=magnet:?xt=urn:btih:{b32}"),
            format!("/info?ih=&magnet={}&x=1", qenc(&magnet.replace(&ih, &b32))),
            format!("/metainfo?ih={}", ih.to_uppercase()),
            format!(
                "/fileState?magnet={}&path=x",
                qenc(&magnet.replace(&ih, &b32))
            ),
        ];
        for t in &targets {
            let r = n.get(t);
            assert!(
                r.status == 200 || (t.starts_with("/fileState") && r.status == 404),
                "{t}: {} {}",
                r.status,
                r.text()
            );
            assert_eq!(node_of(&r), owner, "{t}");
            if t.starts_with("/info") {
                assert_eq!(sha1_hex(&r.body), ih, "{t}: info bytes");
            }
        }
        for t in [
            format!("/data/infohash/{ih}/"),
            format!("/data/infohash/{}/", ih.to_uppercase()),
        ] {
            let r = n.req("HEAD", &t, &[], b"");
            assert_eq!((r.status, node_of(&r)), (200, owner.clone()), "HEAD {t}");
        }
    }

    // /data byte for byte: ranges, the path form with unicode, If-Range; the same answer as the
    // owner gives directly.
    let single = sw.ih("single");
    let big = sw.payload("big.bin");
    let t = format!("/data?ih={single}&path=big.bin");
    let r = n.get_h(&t, &[("Range", "bytes=1000-300000")]);
    assert_eq!(r.status, 206, "{t}");
    assert_bytes_eq(&r.body, &big[1000..=300000], "single range through nginx");
    let direct = c
        .node(&c.owner(&single))
        .get_h(&t, &[("Range", "bytes=1000-300000")]);
    for h in ["content-range", "etag", "content-type", "accept-ranges"] {
        assert_eq!(r.header(h), direct.header(h), "{h} through nginx");
    }
    let r = n.get_h(&t, &[("Range", "bytes=-4096")]);
    assert_bytes_eq(
        &r.body,
        &big[big.len() - 4096..],
        "suffix range through nginx",
    );

    let multi = sw.ih("multi");
    for path in [
        "ünïcødé файл.txt",
        "with space/nested deeper/odd.bin",
        "z last.bin",
        "one.bin",
    ] {
        let want = sw.payload(&format!("multi/{path}"));
        let r = n.get(&format!("/data/infohash/{multi}/{}", penc_path(path)));
        assert_eq!((r.status, node_of(&r)), (200, c.owner(&multi)), "{path}");
        assert_bytes_eq(&r.body, &want, path);
    }
    let z = format!("/data?ih={multi}&path={}", qenc("z last.bin"));
    let want = sw.payload("multi/z last.bin");
    let etag = n
        .req("HEAD", &z, &[], b"")
        .header("etag")
        .expect("an ETag")
        .to_string();
    let r = n.get_h(&z, &[("Range", "bytes=100-199"), ("If-Range", &etag)]);
    assert_eq!(r.status, 206, "If-Range matching");
    assert_bytes_eq(&r.body, &want[100..200], "If-Range matching");
    let r = n.get_h(&z, &[("Range", "bytes=100-199"), ("If-Range", "\"other\"")]);
    assert_eq!(r.status, 200, "If-Range not matching");
    assert_bytes_eq(&r.body, &want, "If-Range not matching");

    // /fileState, /metainfo: as the owner answers them.
    let fs_target = format!("/fileState?ih={multi}&path={}", qenc("z last.bin"));
    let owner = c.node(&c.owner(&multi));
    assert_eq!(
        n.get(&fs_target).body,
        owner.get(&fs_target).body,
        "/fileState"
    );
    let r = n.get(&format!("/metainfo?ih={multi}"));
    assert_eq!(torrent_ih(&r.body), multi, "/metainfo through nginx");
    let r = n.get_h(
        &format!("/metainfo?ih={multi}"),
        &[("Accept", "application/json")],
    );
    let _: serde_json::Value = serde_json::from_slice(&r.body).expect("/metainfo JSON");

    // /events: websocket upgrade through nginx to the owner.
    let media = sw.ih("media");
    events_through_nginx(&c, &media, &format!("/data?ih={media}&path=clip.mkv"));

    // /status through nginx: every node.
    let r = n.get("/status");
    let text = r.text();
    assert!(text.starts_with("Cluster: 3 nodes, 3 answering"), "{text}");
    for (i, p) in c.peers.iter().enumerate() {
        assert!(
            text.contains(&format!("== Node node{i} ({p}) ==")),
            "node{i} in {text}"
        );
    }
    let r = n.get_h("/status", &[("Accept", "application/json")]);
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("/status JSON");
    let nodes = v["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3);
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(node["node"], format!("node{i}"));
        assert!(node["status"]["cache"]["hits"].is_u64(), "{node}");
    }

    // /upload: the node that receives it forwards to the owner of the torrent it makes.
    let mut forwarded = 0;
    for i in 0..6u8 {
        let data: Vec<u8> = (0..70_000u32)
            .map(|j| (j as u8) ^ i.wrapping_mul(37))
            .collect();
        let (ct, body) = upload_form(&format!("up{i}"), &[("d/ü.bin", &data)]);
        let r = n.req("POST", "/upload", &[("Content-Type", &ct)], &body);
        assert_eq!(r.status, 200, "upload {i}: {}", r.text());
        let ih = torrent_ih(&r.body);
        assert_eq!(node_of(&r), c.owner(&ih), "upload {i}");
        let got = n.get(&format!("/data?ih={ih}&path={}", qenc("d/ü.bin")));
        assert_eq!(node_of(&got), c.owner(&ih), "upload {i} read back");
        assert_bytes_eq(&got.body, &data, "upload read back through nginx");
        let owner_addr = &c.peers[c.owner(&ih)[4..].parse::<usize>().unwrap()];
        let landed = n
            .access_log()
            .lines()
            .filter(|l| l.contains("POST /upload"))
            .nth(i as usize)
            .map(str::to_string)
            .unwrap_or_default();
        if !landed.contains(&format!("upstream={owner_addr}")) {
            forwarded += 1;
        }
    }
    assert!(
        forwarded > 0,
        "no upload needed forwarding (nginx picked each owner by chance)"
    );

    // The rest: answered, by a node that says so.
    let r = n.get("/bep44?target=0000000000000000000000000000000000000000");
    assert_eq!(r.status, 500, "{}", r.text());
    for (t, status) in [("/health", 200), ("/nope", 404)] {
        let r = n.get(t);
        assert_eq!(r.status, status, "{t}");
        assert!(node_of(&r).starts_with("node"), "{t}: {:?}", r.headers);
    }
}

#[test]
fn a_node_outside_its_peer_list_refuses_to_start() {
    let dir = common::temp_dir("cluster-bad");
    let port = common::free_port();
    let addr = vec![format!("-addr=127.0.0.1:{port}")];
    let peers = vec!["-clusterPeers=127.0.0.1:1,127.0.0.1:2".to_string()];
    let e = common::Daemon::launch(&dir, addr, port, peers)
        .err()
        .expect("a daemon not in -clusterPeers must not start");
    assert!(e.contains("is not in -clusterPeers"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
