//! The daemon names itself: trackers get `User-Agent: confluence <version>` and a peer id that
//! starts `-CF<major><minor><patch>0-`; peers get that peer id in the BitTorrent handshake and
//! `v: confluence <version>` in the extended handshake (BEP 10), both on connections the daemon
//! makes and on connections it accepts.
//!
//! Self-contained (no swarm): a tracker and a peer of our own on 127.0.0.1, and a made-up
//! one-piece torrent whose data nobody has.

use crate::common;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use common::{
    bdecode,
    bencode::{fake_info, metainfo, Benc},
    Bencode, Daemon,
};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What one announce carried.
struct Announce {
    user_agent: Option<String>,
    peer_id: Vec<u8>,
}

/// `%XX` and `+` decoding of a query value, to bytes (a peer id is binary).
fn pct_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
            if let Ok(v) = u8::from_str_radix(h, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    out
}

/// A one-shot-per-connection HTTP tracker: records each announce and answers with `peer` (a
/// compact IPv4 peer list of one).
fn tracker(listener: TcpListener, peer_port: u16, tx: mpsc::Sender<Announce>) {
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&head).into_owned();
            let target = text.split(' ').nth(1).unwrap_or("").to_string();
            let query = target.split_once('?').map_or("", |(_, q)| q);
            let peer_id = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("peer_id="))
                .map(pct_decode)
                .unwrap_or_default();
            let user_agent = text.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("user-agent")
                    .then(|| v.trim().to_string())
            });
            let mut body = b"d8:intervali60e5:peers6:".to_vec();
            body.extend_from_slice(&[127, 0, 0, 1]);
            body.extend_from_slice(&peer_port.to_be_bytes());
            body.push(b'e');
            let mut resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            resp.extend_from_slice(&body);
            let _ = c.write_all(&resp);
            let _ = tx.send(Announce {
                user_agent,
                peer_id,
            });
        }
    });
}

/// The BitTorrent handshake with the extension-protocol bit set.
fn handshake(ih: &[u8; 20], peer_id: &[u8; 20]) -> Vec<u8> {
    let mut h = vec![19];
    h.extend_from_slice(b"BitTorrent protocol");
    h.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0]);
    h.extend_from_slice(ih);
    h.extend_from_slice(peer_id);
    h
}

/// What the other side of a peer connection said about itself.
struct PeerSaw {
    peer_id: Vec<u8>,
    v: Vec<u8>,
}

/// Reads the remote's 68-byte handshake (sending ours first when `we_start`, else after), then
/// messages until the extended handshake (id 20, extended id 0); returns its peer id and `v`.
fn talk(c: &mut TcpStream, ih: &[u8; 20], we_start: bool) -> Result<PeerSaw, String> {
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let ours = handshake(ih, b"-XX0000-testtesttest");
    if we_start {
        c.write_all(&ours).map_err(|e| e.to_string())?;
    }
    let mut h = [0u8; 68];
    c.read_exact(&mut h)
        .map_err(|e| format!("reading the handshake: {e}"))?;
    if &h[1..20] != b"BitTorrent protocol" || &h[28..48] != ih {
        return Err(format!("not a handshake for our torrent: {h:?}"));
    }
    if h[25] & 0x10 == 0 {
        return Err("the daemon does not offer the extension protocol".into());
    }
    if !we_start {
        c.write_all(&ours).map_err(|e| e.to_string())?;
    }
    for _ in 0..16 {
        let mut len = [0u8; 4];
        c.read_exact(&mut len)
            .map_err(|e| format!("reading a message: {e}"))?;
        let len = u32::from_be_bytes(len) as usize;
        if len > 1 << 20 {
            return Err(format!("message of {len} bytes"));
        }
        let mut msg = vec![0u8; len];
        c.read_exact(&mut msg).map_err(|e| e.to_string())?;
        if msg.len() >= 2 && msg[0] == 20 && msg[1] == 0 {
            let d = bdecode(&msg[2..])?;
            let v = match d.get("v") {
                Some(Bencode::Bytes(v)) => v.clone(),
                other => return Err(format!("extended handshake without v: {other:?}")),
            };
            return Ok(PeerSaw {
                peer_id: h[48..68].to_vec(),
                v,
            });
        }
    }
    Err("no extended handshake in the first 16 messages".into())
}

/// A one-piece torrent (16 KiB of data nobody has) announcing to `tracker`; (metainfo, ih).
fn made_up_torrent(tracker: &str) -> (Vec<u8>, [u8; 20]) {
    let info = fake_info(("length", Benc::Int(16384)), b"identity.bin", 16384, 7);
    let (m, ih) = metainfo(vec![("announce", Benc::str(tracker))], info);
    (m, hex::decode(ih).unwrap().try_into().unwrap())
}

#[test]
fn peers_and_trackers_see_confluence() {
    let version: Vec<u8> = VERSION
        .split('.')
        .map(|p| b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[p.parse::<usize>().unwrap()])
        .collect();
    let prefix = [b"-CF".as_slice(), &version, b"0-"].concat();
    let name = format!("confluence {VERSION}");

    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let tracker_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let tracker_url = format!(
        "http://127.0.0.1:{}/announce",
        tracker_listener.local_addr().unwrap().port()
    );
    let (tx, announces) = mpsc::channel();
    tracker(tracker_listener, peer.local_addr().unwrap().port(), tx);
    let (torrent, ih) = made_up_torrent(&tracker_url);
    let ih_hex = hex::encode(ih);

    let d = Daemon::start(&[]);
    d.post_metainfo(&torrent, &ih_hex);
    // A reader makes the daemon announce and connect; nobody has the data, so it waits until
    // its client gives up after 15 s (the torrent stays for -torrentGrace, 1 min).
    let port = d.port;
    let target = format!("/data?ih={ih_hex}");
    let reader = thread::spawn(move || {
        let _ = common::try_request(port, "GET", &target, &[], b"", Duration::from_secs(15));
    });

    let a = announces
        .recv_timeout(Duration::from_secs(30))
        .expect("no announce within 30 s");
    assert_eq!(a.user_agent.as_deref(), Some(name.as_str()), "User-Agent");
    assert_eq!(a.peer_id.len(), 20, "announced peer_id {:?}", a.peer_id);
    assert_eq!(
        &a.peer_id[..8],
        &prefix[..],
        "announced peer_id {:?}",
        String::from_utf8_lossy(&a.peer_id)
    );

    // The daemon connects to the peer the tracker gave it: it sends its handshake first.
    peer.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = loop {
        match peer.accept() {
            Ok((c, _)) => break c,
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("the daemon did not connect to the tracker's peer in 30 s: {e}"),
        }
    };
    out.set_nonblocking(false).unwrap();
    let saw = talk(&mut out, &ih, false).expect("outgoing connection");
    assert_eq!(saw.peer_id, a.peer_id, "handshake peer id = announced one");
    assert_eq!(
        String::from_utf8_lossy(&saw.v),
        name,
        "extended handshake v"
    );

    // A peer that connects to the daemon's peer port sees the same.
    let mut inc = TcpStream::connect(("127.0.0.1", d.peer_port())).unwrap();
    let saw = talk(&mut inc, &ih, true).expect("incoming connection");
    assert_eq!(saw.peer_id, a.peer_id, "handshake peer id (incoming)");
    assert_eq!(
        String::from_utf8_lossy(&saw.v),
        name,
        "extended handshake v (incoming)"
    );

    drop((out, inc));
    drop(d);
    let _ = reader.join();
}
