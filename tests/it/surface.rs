//! Issue 4, the routes beyond `/data` and `/metainfo`: `/events`, `/fileState`, `/status`,
//! `/metrics` and `/debug/…`, `/upload`, `/bep44`, unclean paths; the §8 rows of the behaviour
//! doc for them, with our documented differences asserted as such.

use crate::common;

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use sha1::Digest as _;

use common::{
    assert_bytes_eq, assert_one_line_error, bdecode, form::Form, random_ih, serial, sha1_hex,
    swarm, Bencode, Daemon, MIB,
};

const SHORT: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------------------------------
// A minimal websocket client (RFC 6455) over a TcpStream, enough to see exactly what the
// server sends: the handshake answer, frames with their opcodes, close codes.

const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// base64(SHA-1(WS_KEY + the RFC's GUID)), from RFC 6455 §1.3.
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

struct HandshakeReply {
    status: u16,
    head: String,
    /// Everything after the header block (a refusal's body, or the first frames).
    rest: Vec<u8>,
}

impl HandshakeReply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

struct Ws {
    s: TcpStream,
    buf: Vec<u8>,
}

/// Sends a handshake request (`method`, `target`, the usual websocket headers unless
/// overridden by `headers`) and reads the reply's head. Returns the socket for a 101.
fn ws_open(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> (HandshakeReply, Option<Ws>) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    s.set_read_timeout(Some(SHORT)).unwrap();
    s.set_write_timeout(Some(SHORT)).unwrap();
    let mut all: Vec<(&str, &str)> = vec![
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", WS_KEY),
        ("Sec-WebSocket-Version", "13"),
    ];
    for (k, v) in headers {
        all.retain(|(ak, _)| !ak.eq_ignore_ascii_case(k));
        if !v.is_empty() {
            all.push((k, v));
        }
    }
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (k, v) in &all {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut chunk).expect("reading the handshake reply");
        assert!(
            n > 0,
            "{target}: connection closed before a reply head ({} bytes)",
            raw.len()
        );
        raw.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let mut reply = HandshakeReply {
        status,
        head,
        rest: raw[end + 4..].to_vec(),
    };
    if status == 101 {
        let ws = Ws {
            s,
            buf: std::mem::take(&mut reply.rest),
        };
        (reply, Some(ws))
    } else {
        // A refusal: read its body to the end (the server closes or sends Content-Length).
        let len = reply
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok());
        while len.is_none_or(|l| reply.rest.len() < l) {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => reply.rest.extend_from_slice(&chunk[..n]),
            }
        }
        (reply, None)
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

impl Ws {
    fn fill(&mut self, n: usize, deadline: Instant) -> io::Result<()> {
        let mut chunk = [0u8; 16384];
        while self.buf.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no frame in time"));
            }
            self.s.set_read_timeout(Some(left))?;
            match self.s.read(&mut chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed",
                    ))
                }
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next frame from the server (which must not mask), by `deadline`.
    fn read_frame(&mut self, deadline: Instant) -> io::Result<Frame> {
        self.fill(2, deadline)?;
        let (b0, b1) = (self.buf[0], self.buf[1]);
        assert_eq!(b1 & 0x80, 0, "server frames must not be masked");
        let (len, hdr) = match b1 & 0x7f {
            126 => {
                self.fill(4, deadline)?;
                (u64::from(u16::from_be_bytes([self.buf[2], self.buf[3]])), 4)
            }
            127 => {
                self.fill(10, deadline)?;
                (u64::from_be_bytes(self.buf[2..10].try_into().unwrap()), 10)
            }
            n => (u64::from(n), 2),
        };
        let total = hdr + len as usize;
        self.fill(total, deadline)?;
        let payload = self.buf[hdr..total].to_vec();
        self.buf.drain(..total);
        Ok(Frame {
            fin: b0 & 0x80 != 0,
            opcode: b0 & 0x0f,
            payload,
        })
    }

    /// Sends one masked frame.
    fn send(&mut self, opcode: u8, payload: &[u8]) {
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        let mut f = vec![0x80 | opcode];
        assert!(payload.len() < 126);
        f.push(0x80 | payload.len() as u8);
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.s.write_all(&f).unwrap();
    }

    /// Reads frames until a close frame; returns its status code. Data frames on the way are
    /// returned too.
    fn read_until_close(&mut self, deadline: Instant) -> (Option<u16>, Vec<Frame>) {
        let mut seen = Vec::new();
        loop {
            let f = self
                .read_frame(deadline)
                .expect("a close frame from the server");
            if f.opcode == 8 {
                let code = (f.payload.len() >= 2)
                    .then(|| u16::from_be_bytes([f.payload[0], f.payload[1]]));
                return (code, seen);
            }
            seen.push(f);
        }
    }

    /// True when the server closes TCP (EOF or reset) by `deadline`.
    fn closed_by(&mut self, deadline: Instant) -> bool {
        let mut chunk = [0u8; 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            match self.s.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }
}

/// The piece index of a `{"PieceChanged":N}` frame; panics on any other text.
fn piece_of(f: &Frame) -> u32 {
    assert_eq!(f.opcode, 1, "a text frame: {f:?}");
    assert!(f.fin, "unfragmented: {f:?}");
    let t = String::from_utf8(f.payload.clone()).expect("UTF-8 frame");
    let n = t
        .strip_prefix("{\"PieceChanged\":")
        .and_then(|r| r.strip_suffix('}'))
        .unwrap_or_else(|| panic!("frame is not exactly {{\"PieceChanged\":N}}: {t:?}"));
    n.parse()
        .unwrap_or_else(|_| panic!("bad piece index in {t:?}"))
}

// ------------------------------------------------------------------------------------------
// /events

/// `/events` during a `/data` read of `single`: text frames `{"PieceChanged":N}` arrive, every
/// index is < 256, every piece the read covered is reported; the socket holds its torrent
/// (`-torrentGrace=0s`) until it closes; a non-empty client message ends it with close 1000.
#[test]
fn events_during_a_read_of_single() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("single");
    let d = Daemon::start(&["-torrentGrace=0s"]);
    d.post_metainfo(&s.torrent_bytes("single"), &ih);

    let (reply, ws) = ws_open(d.port, "GET", &format!("/events?ih={ih}"), &[]);
    assert_eq!(reply.status, 101, "handshake: {}", reply.head);
    assert_eq!(
        reply.header("sec-websocket-accept").as_deref(),
        Some(WS_ACCEPT)
    );
    let mut ws = ws.unwrap();

    // Bytes 0..8 MiB of big.bin: pieces 0..=31 (256 KiB pieces).
    let len = 8 * MIB;
    let r = d.req(
        "GET",
        &format!("/data?ih={ih}&path=big.bin"),
        &[("Range", &format!("bytes=0-{}", len - 1))],
        b"",
        common::HTTP_TIMEOUT,
    );
    assert_eq!(r.status, 206, "{}", r.text());
    assert_bytes_eq(&r.body, &s.payload("big.bin")[..len as usize], "the read");

    let covered: Vec<u32> = (0..32).collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut frames = 0;
    let deadline = Instant::now() + SHORT;
    while !covered.iter().all(|p| seen.contains(p)) {
        let f = ws
            .read_frame(deadline)
            .unwrap_or_else(|e| panic!("waiting for frames of pieces 0..32 (seen {seen:?}): {e}"));
        let p = piece_of(&f);
        assert!(p < 256, "piece index {p} out of range");
        seen.insert(p);
        frames += 1;
    }
    assert!(frames >= covered.len(), "{frames} frames");

    // The socket holds a reference: with a 0 s grace the torrent is still there.
    std::thread::sleep(Duration::from_millis(1500));
    let st = d.get("/status").text();
    assert!(
        st.contains(&format!("Infohash: {ih}")),
        "torrent kept while /events is open:\n{st}"
    );

    // An empty text frame does not end the stream; a ping gets its pong; "x" ends it.
    ws.send(1, b"");
    ws.send(9, b"hi");
    let deadline = Instant::now() + SHORT;
    loop {
        let f = ws.read_frame(deadline).expect("a pong");
        if f.opcode == 10 {
            assert_eq!(f.payload, b"hi");
            break;
        }
        piece_of(&f);
    }
    ws.send(1, b"x");
    let (code, rest) = ws.read_until_close(Instant::now() + SHORT);
    rest.iter().for_each(|f| {
        piece_of(f);
    });
    assert_eq!(code, Some(1000), "close code after a client message");
    assert!(
        ws.closed_by(Instant::now() + SHORT),
        "TCP closed after the close frame"
    );

    // Reference released: the torrent goes (grace 0 s).
    let deadline = Instant::now() + SHORT;
    loop {
        let st = d.get("/status").text();
        if st.contains("# Torrents: 0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "torrent still held after /events closed:\n{st}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Handshake refusals (as golang.org/x/net/websocket), bad infohashes, a client close.
#[test]
fn events_handshake_rules() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("multi");
    let d = Daemon::start(&["-torrentGrace=1s"]);
    d.post_metainfo(&s.torrent_bytes("multi"), &ih);
    let target = format!("/events?ih={ih}");

    let (r, _) = ws_open(d.port, "POST", &target, &[]);
    assert_eq!(
        (r.status, r.rest.as_slice()),
        (405, &b"bad method"[..]),
        "non-GET"
    );
    let (r, _) = ws_open(
        d.port,
        "GET",
        &target,
        &[("Upgrade", ""), ("Connection", "")],
    );
    assert_eq!(
        (r.status, r.rest.as_slice()),
        (400, &b"not websocket protocol"[..]),
        "plain GET"
    );
    let (r, _) = ws_open(d.port, "GET", &target, &[("Sec-WebSocket-Key", "")]);
    assert_eq!(
        (r.status, r.rest.as_slice()),
        (400, &b"mismatch challenge/response"[..]),
        "no key"
    );
    let (r, _) = ws_open(d.port, "GET", &target, &[("Sec-WebSocket-Version", "8")]);
    assert_eq!(
        (r.status, r.rest.as_slice()),
        (400, &b"missing or bad WebSocket Version"[..]),
        "version 8"
    );
    assert_eq!(r.header("sec-websocket-version").as_deref(), Some("13"));
    let (r, _) = ws_open(
        d.port,
        "GET",
        &target,
        &[("Sec-WebSocket-Protocol", "a, b")],
    );
    assert_eq!(r.status, 400, "two subprotocols");
    let (r, ws) = ws_open(
        d.port,
        "GET",
        &target,
        &[("Sec-WebSocket-Protocol", "chat")],
    );
    assert_eq!(r.status, 101);
    assert_eq!(
        r.header("sec-websocket-protocol").as_deref(),
        Some("chat"),
        "one subprotocol is echoed"
    );
    drop(ws);

    let r = d.get("/events");
    assert_one_line_error(
        &r,
        400,
        "error determining requested infohash: expected nonempty query parameter \"magnet\" or \"ih\"",
        "/events without ih",
    );
    let r = d.get("/events?ih=abc");
    assert_one_line_error(
        &r,
        400,
        "error determining requested infohash: hash hex string has bad length: 3",
        "short ih",
    );

    // An unmasked client frame is a protocol error: close 1002.
    let (_, ws) = ws_open(d.port, "GET", &target, &[]);
    let mut ws = ws.expect("101");
    ws.s.write_all(&[0x81, 0x01, b'x']).unwrap();
    let (code, _) = ws.read_until_close(Instant::now() + SHORT);
    assert_eq!(code, Some(1002), "unmasked frame");

    // The client closes: the server answers close 1000 and hangs up.
    let (_, ws) = ws_open(d.port, "GET", &target, &[]);
    let mut ws = ws.expect("101");
    ws.send(8, &1000u16.to_be_bytes());
    let (code, _) = ws.read_until_close(Instant::now() + SHORT);
    assert_eq!(code, Some(1000));
    assert!(ws.closed_by(Instant::now() + SHORT), "TCP closed");
    d.assert_healthy();
}

/// `/events` waits for the info before answering; a client that goes away ends the wait and
/// releases the reference.
#[test]
fn events_waits_for_info_and_notices_a_client_leaving() {
    let d = Daemon::start(&["-torrentGrace=0s"]);
    let ih = random_ih();
    let addr = d.addr();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    s.write_all(
        format!(
            "GET /events?ih={ih} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        other => panic!("/events answered before the info was known: {other:?}"),
    }
    assert!(d.get("/status").text().contains(&format!("infohash:{ih}")));
    drop(s);
    let deadline = Instant::now() + SHORT;
    while !d.get("/status").text().contains("# Torrents: 0") {
        assert!(
            Instant::now() < deadline,
            "reference kept after the client left"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ------------------------------------------------------------------------------------------
// /fileState

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("a gzip body");
    out
}

const FIELDS: [&str; 11] = [
    "Bytes",
    "Priority",
    "Complete",
    "Ok",
    "Err",
    "Checking",
    "Hashing",
    "QueuedForHash",
    "Marking",
    "Partial",
    "MissingPieceLayerHash",
];

/// After reading the first MiB of big.bin: 256 elements of 262144 bytes, the first 4
/// `Complete`, the last not; the original's fields in its order; gzip when asked; 404 and
/// `null` for the other cases.
#[test]
fn file_state_after_first_mib() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("single");
    let d = Daemon::start(&["-torrentGrace=5s"]);
    d.post_metainfo(&s.torrent_bytes("single"), &ih);
    let r = d.req(
        "GET",
        &format!("/data?ih={ih}&path=big.bin"),
        &[("Range", &format!("bytes=0-{}", MIB - 1))],
        b"",
        common::HTTP_TIMEOUT,
    );
    assert_eq!(r.status, 206, "{}", r.text());

    let r = d.get(&format!("/fileState?ih={ih}&path=big.bin"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let text = r.text();
    assert!(
        text.ends_with("]\n"),
        "JSON array plus newline: {:?}",
        &text[text.len().saturating_sub(20)..]
    );
    let first_obj = &text[1..text.find('}').unwrap() + 1];
    let keys: Vec<&str> = first_obj
        .trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .map(|kv| kv.split(':').next().unwrap().trim_matches('"'))
        .collect();
    assert_eq!(keys, FIELDS, "field names and order");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let a = v.as_array().unwrap();
    assert_eq!(a.len(), 256);
    assert_eq!(
        a.iter().map(|e| e["Bytes"].as_u64().unwrap()).sum::<u64>(),
        64 * MIB
    );
    for (i, e) in a.iter().enumerate().take(4) {
        assert_eq!(e["Complete"], true, "piece {i}: {e}");
        assert_eq!(e["Ok"], true, "piece {i}: {e}");
        assert_eq!(e["Partial"], false, "piece {i}: {e}");
        assert!(e["Err"].is_null());
    }
    assert_eq!(a[255]["Complete"], false, "last piece: {}", a[255]);
    assert_eq!(a[255]["Ok"], false, "last piece: {}", a[255]);

    let r = d.get_h(
        &format!("/fileState?ih={ih}&path=big.bin"),
        &[("Accept-Encoding", "gzip;q=0")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    // The same document (states may move on meanwhile: readahead keeps downloading).
    let plain = gunzip(&r.body);
    assert!(plain.ends_with(b"]\n"), "gzipped JSON array plus newline");
    let z: serde_json::Value = serde_json::from_slice(&plain).expect("gzipped JSON");
    let z = z.as_array().unwrap();
    assert_eq!(z.len(), 256);
    assert!(z.iter().take(4).all(|e| e["Complete"] == true));
    assert_eq!(
        z.iter().map(|e| e["Bytes"].as_u64().unwrap()).sum::<u64>(),
        64 * MIB
    );

    let r = d.get(&format!("/fileState?ih={ih}&path=nope"));
    assert_one_line_error(&r, 404, "file not found", "unknown path");
    let r = d.get(&format!("/fileState?ih={ih}"));
    assert_one_line_error(&r, 404, "file not found", "no path is the empty path");
    let r = d.get_h(
        &format!("/fileState?ih={ih}&path=nope"),
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(
        (r.status, r.header("content-encoding")),
        (404, Some("gzip")),
        "errors are gzipped too"
    );
    assert_eq!(gunzip(&r.body), b"file not found\n");
    let r = d.get("/fileState?ih=zz");
    assert_one_line_error(
        &r,
        400,
        "error determining requested infohash: hash hex string has bad length: 2",
        "bad ih",
    );

    // multi: a zero-length file is `null`; Bytes sum to each file's length.
    let mih = s.ih("multi");
    d.post_metainfo(&s.torrent_bytes("multi"), &mih);
    let r = d.get(&format!("/fileState?ih={mih}&path=empty.bin"));
    assert_eq!((r.status, r.text().as_str()), (200, "null\n"));
    for (path, len) in s.torrent("multi").files {
        if len == 0 {
            continue;
        }
        let r = d.get(&format!("/fileState?ih={mih}&path={}", common::qenc(&path)));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let sum: u64 = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Bytes"].as_u64().unwrap())
            .sum();
        assert_eq!(sum, len, "{path}");
    }
}

// ------------------------------------------------------------------------------------------
// /status, /metrics, /debug

#[test]
fn status_metrics_and_debug() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("single");
    let d = Daemon::start(&["-debugOnMain", "-torrentGrace=5s"]);
    let r = d.get("/status");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let t = r.text();
    assert!(t.starts_with("Listen port: "), "{t}");
    assert!(t.contains("\nDHT: off\n"), "{t}");
    assert!(t.contains("\nCache: 0 bytes"), "{t}");
    assert!(t.contains("# Torrents: 0\n"), "{t}");

    d.post_metainfo(&s.torrent_bytes("single"), &ih);
    let r = d.req(
        "GET",
        &format!("/data?ih={ih}&path=big.bin"),
        &[("Range", "bytes=0-1")],
        b"",
        common::HTTP_TIMEOUT,
    );
    assert_eq!(r.status, 206);
    let t = d.get("/status").text();
    for want in [
        "# Torrents: 1\n",
        "\nbig.bin\n",
        &format!("Infohash: {ih}\n"),
        "% of 67108864 bytes (67 MB)\n",
        "Piece States: ",
        "Num Pieces: 256 (",
        "Peers: ",
        "References: ",
        "Readers: ",
        "tier 0: http://127.0.0.1:6969/announce",
    ] {
        assert!(t.contains(want), "/status lacks {want:?}:\n{t}");
    }
    let runs = t
        .lines()
        .find_map(|l| l.strip_prefix("Piece States: "))
        .unwrap();
    let total: u32 = runs
        .split(' ')
        .map(|r| {
            r.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse::<u32>()
                .unwrap()
        })
        .sum();
    assert_eq!(total, 256, "runs cover every piece: {runs}");
    assert!(
        runs.split(' ').next().unwrap().ends_with('C'),
        "piece 0 complete: {runs}"
    );

    let r = d.get_h("/status", &[("Accept", "application/json")]);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["torrents"][0]["infohash"], ih.as_str());
    assert_eq!(v["torrents"][0]["num_pieces"], 256);
    assert!(v["dht"].is_null());

    let r = d.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let m = r.text();
    for name in [
        "confluence_num_torrents 1",
        "confluence_cache_bytes ",
        "confluence_cache_capacity_bytes 10737418240",
        "confluence_cache_hits_total ",
        "confluence_cache_misses_total ",
        "confluence_cache_evictions_total 0",
        "confluence_open_readers ",
        "confluence_references ",
        "confluence_bytes_served_total ",
        "confluence_repairs_total ",
        &format!("confluence_torrent_peers{{infohash=\"{ih}\"}} "),
        &format!("confluence_torrent_download_bytes_per_second{{infohash=\"{ih}\"}} "),
        &format!("confluence_torrent_upload_bytes_per_second{{infohash=\"{ih}\"}} "),
    ] {
        assert!(
            m.lines().any(|l| l.starts_with(name)),
            "/metrics lacks {name:?}:\n{m}"
        );
    }
    for l in m.lines().filter(|l| !l.starts_with('#')) {
        let v = l.rsplit_once(' ').unwrap().1;
        assert!(
            v == "+Inf" || v.parse::<f64>().is_ok(),
            "bad sample line {l:?}"
        );
    }
    let served: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("confluence_bytes_served_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(served >= 2, "bytes served counted: {served}");

    let r = d.get("/debug/vars");
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["numTorrents"], 1);
    let r = d.get("/debug/status");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["torrents"][0]["infohash"], ih.as_str());
    let r = d.get("/debug/filecache/status");
    assert!(
        r.text()
            .starts_with("Capacity: 10737418240\nCurrent Size: "),
        "{}",
        r.text()
    );
    assert_eq!(d.get("/debug/runtime").status, 200);
    assert_eq!(d.get("/debug/dht").text(), "no DHT (-dht=false)\n");
    assert_one_line_error(
        &d.get("/debug/nosuch"),
        404,
        "404 page not found",
        "unknown debug page",
    );

    assert!(
        !d.log().contains("-debugOnMain"),
        "no warning that -debugOnMain is unavailable:\n{}",
        d.log_tail(20)
    );

    // /health: 200, empty, any method.
    for m in ["GET", "POST", "DELETE"] {
        let r = d.req(m, "/health", &[], b"", SHORT);
        assert_eq!((r.status, r.body.len()), (200, 0), "{m} /health");
    }
}

#[test]
fn metrics_and_debug_need_debug_on_main() {
    let d = Daemon::start(&[]);
    for p in ["/metrics", "/debug/vars", "/debug/status", "/debug/"] {
        assert_one_line_error(&d.get(p), 404, "404 page not found", p);
    }
    let r = d.req("POST", "/status", &[], b"", SHORT);
    assert!(
        r.text().starts_with("Listen port: "),
        "/status answers any method"
    );
}

// ------------------------------------------------------------------------------------------
// /upload

const BOUNDARY: &str = "confluence-test-7d3f0a";

fn multipart(values: &[(&str, &str)], files: &[(&str, &[u8])]) -> Vec<u8> {
    let form = values
        .iter()
        .fold(Form::new(BOUNDARY), |f, (k, v)| f.field(k, v));
    form.files(files).finish().1
}

fn post_upload(d: &Daemon, body: &[u8]) -> common::Resp {
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    d.req(
        "POST",
        "/upload",
        &[("Content-Type", &ct)],
        body,
        common::HTTP_TIMEOUT,
    )
}

/// Upload `multi`'s payload (paths under a top directory, stripped): a multi-file torrent with
/// the original's layout and piece length rule, the implicit trackers as one tier, stored so
/// that `/info` answers at once and `/data` serves every file from the cache with no peers.
#[test]
fn upload_round_trip() {
    let _g = serial();
    let s = swarm();
    let t = s.torrent("multi");
    let d = Daemon::start(&[
        "-torrentGrace=2s",
        "-implicitTracker=http://127.0.0.1:9/announce",
        "-implicitTracker=http://127.0.0.1:10/announce",
    ]);
    let payloads: Vec<(String, Vec<u8>)> = t
        .files
        .iter()
        .map(|(p, _)| (format!("multi/{p}"), s.file_payload(&t, p)))
        .collect();
    let files: Vec<(&str, &[u8])> = payloads
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    let body = multipart(&[("name", "multi"), ("strip-top-directory", "")], &files);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let r = post_upload(&d, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let top = bdecode(&r.body).expect("bencoded metainfo");
    assert_eq!(
        top.get("created by").and_then(Bencode::str).as_deref(),
        Some("anacrolix/confluence upload")
    );
    let date = top.get("creation date").and_then(Bencode::int).unwrap();
    assert!(
        (started - 5..=started + 60).contains(&date),
        "creation date {date}"
    );
    let tiers = top.get("announce-list").and_then(Bencode::list).unwrap();
    assert_eq!(tiers.len(), 1);
    assert_eq!(
        tiers[0].strings(),
        [
            "http://127.0.0.1:9/announce",
            "http://127.0.0.1:10/announce"
        ]
    );
    assert!(top.get("nodes").is_none(), "no public IP, no nodes");
    let span = top.span("info").unwrap();
    let info_bytes = &r.body[span];
    let ih = sha1_hex(info_bytes);
    let info = bdecode(info_bytes).unwrap();
    assert_eq!(
        info.get("name").and_then(Bencode::str).as_deref(),
        Some("multi")
    );
    // The original's rule: 16 KiB, doubled while there would be >= 2048 pieces. The harness
    // made `multi` with 64 KiB pieces, so the infohashes differ (checked, not assumed).
    let total: u64 = t.total_length();
    assert_eq!(
        info.get("piece length").and_then(Bencode::int),
        Some(16384),
        "total {total}"
    );
    assert_ne!(
        ih,
        s.ih("multi"),
        "different piece length, different infohash"
    );
    let listed = info
        .get("files")
        .and_then(Bencode::list)
        .expect("always multi-file");
    assert_eq!(listed.len(), t.files.len());
    for (f, (path, len)) in listed.iter().zip(&t.files) {
        let comps: Vec<String> = path.split('/').map(str::to_string).collect();
        assert_eq!(f.get("length").and_then(Bencode::int), Some(*len as i64));
        assert_eq!(f.get("path").unwrap().strings(), comps);
        assert_eq!(f.get("path.utf-8").unwrap().strings(), comps);
    }
    let pieces = info.get("pieces").and_then(Bencode::bytes).unwrap();
    let all = s.torrent_payload(&t);
    let want: Vec<u8> = all
        .chunks(16384)
        .flat_map(|c| sha1::Sha1::digest(c).to_vec())
        .collect();
    assert_eq!(
        pieces,
        want.as_slice(),
        "piece hashes of the files concatenated in upload order"
    );

    // Not added to the client; the metainfo is stored; the data is in the cache.
    assert!(d.get("/status").text().contains("# Torrents: 0"));
    let r = d.get(&format!("/info?ih={ih}&nowait=1"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_bytes_eq(&r.body, info_bytes, "/info of the upload");
    for (path, _) in &t.files {
        let r = d.get(&format!("/data?ih={ih}&path={}", common::qenc(path)));
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_bytes_eq(&r.body, &s.file_payload(&t, path), path);
    }
    let st = d.get_h("/status", &[("Accept", "application/json")]);
    let v: serde_json::Value = serde_json::from_slice(&st.body).unwrap();
    let tor = v["torrents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["infohash"] == ih.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        tor["completed_pieces"], tor["num_pieces"],
        "every piece in the cache: {tor}"
    );
    assert_eq!(tor["peers"]["live"], 0, "served without peers");
    // The upload area is cleaned up.
    let uploads = d.data_dir.join("uploads");
    let left = std::fs::read_dir(&uploads)
        .map(|rd| rd.count())
        .unwrap_or(0);
    assert_eq!(
        left,
        0,
        "temporary upload files left in {}",
        uploads.display()
    );
}

#[test]
fn upload_errors_and_empty_tier() {
    let d = Daemon::start(&[]);
    let r = d.get("/upload");
    assert_one_line_error(
        &r,
        400,
        "parsing multipart form: request Content-Type isn't multipart/form-data",
        "GET /upload",
    );
    let r = d.req(
        "POST",
        "/upload",
        &[("Content-Type", "application/json")],
        b"{}",
        SHORT,
    );
    assert_one_line_error(
        &r,
        400,
        "parsing multipart form: request Content-Type isn't multipart/form-data",
        "non-multipart",
    );
    let r = d.req(
        "POST",
        "/upload",
        &[("Content-Type", "multipart/form-data")],
        b"x",
        SHORT,
    );
    assert_one_line_error(
        &r,
        400,
        "parsing multipart form: no multipart boundary param in Content-Type",
        "no boundary",
    );
    let r = post_upload(&d, b"garbage");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().starts_with("parsing multipart form: "),
        "{}",
        r.text()
    );
    let r = post_upload(&d, &multipart(&[], &[("a.txt", b"hello")]));
    assert_one_line_error(&r, 400, "missing name", "no name (the original panics)");
    let r = post_upload(&d, &multipart(&[("name", "x")], &[("a/../b", b"hello")]));
    assert_eq!(r.status, 400, "a `..` component: {}", r.text());
    d.assert_healthy();

    // No -implicitTracker: an empty tier, as the original. A single file is still multi-file.
    let r = post_upload(&d, &multipart(&[("name", "one")], &[("a.txt", b"hello")]));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .body
        .starts_with(b"d13:announce-listllee10:created by27:anacrolix/confluence upload"));
    let top = bdecode(&r.body).unwrap();
    let info = top.get("info").unwrap();
    assert!(info.get("length").is_none() && info.get("files").is_some());
    let ih = sha1_hex(&r.body[top.span("info").unwrap()]);
    let r = d.get(&format!("/data?ih={ih}&path=a.txt"));
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
    // Without strip-top-directory, directories are kept.
    let r = post_upload(&d, &multipart(&[("name", "two")], &[("top/a.txt", b"hi")]));
    let top = bdecode(&r.body).unwrap();
    let f = &top
        .get("info")
        .unwrap()
        .get("files")
        .unwrap()
        .list()
        .unwrap()[0];
    assert_eq!(f.get("path").unwrap().strings(), ["top", "a.txt"]);
}

/// With `-fileDir`, uploaded files are laid out under `DIR/<ih>/<name>/…` and served from
/// there (librqbit checks them when the torrent is added; no peers).
#[test]
fn upload_with_file_dir() {
    let files_dir = common::temp_dir("upload-filedir");
    let arg = format!("-fileDir={}", files_dir.display());
    let d = Daemon::start(&[&arg, "-torrentGrace=30s"]);
    let a: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let r = post_upload(
        &d,
        &multipart(&[("name", "up")], &[("x/a.bin", &a), ("b.txt", b"bee")]),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let top = bdecode(&r.body).unwrap();
    let ih = sha1_hex(&r.body[top.span("info").unwrap()]);
    let root = files_dir.join(&ih).join("up");
    assert_eq!(std::fs::read(root.join("x/a.bin")).unwrap(), a);
    assert_eq!(std::fs::read(root.join("b.txt")).unwrap(), b"bee");
    let r = d.get(&format!("/data?ih={ih}&path=x/a.bin"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_bytes_eq(&r.body, &a, "x/a.bin from -fileDir");
    drop(d);
    let _ = std::fs::remove_dir_all(&files_dir);
}

// ------------------------------------------------------------------------------------------
// /bep44

#[test]
fn bep44_validation_and_no_dht() {
    let d = Daemon::start(&[]);
    assert_one_line_error(
        &d.get("/bep44?target=zz"),
        400,
        "encoding/hex: invalid byte: U+007A 'z'",
        "bad hex",
    );
    assert_one_line_error(
        &d.get("/bep44?target=abc"),
        400,
        "encoding/hex: odd length hex string",
        "odd",
    );
    assert_one_line_error(
        &d.get("/bep44?target=abcd"),
        400,
        "target has bad length",
        "short",
    );
    assert_one_line_error(&d.get("/bep44"), 400, "target has bad length", "empty");
    let t40 = "ab".repeat(20);
    assert_one_line_error(
        &d.get(&format!("/bep44?target={t40}&salt=s")),
        500,
        "no dht servers",
        "-dht=false",
    );
    let t44 = "ab".repeat(22);
    assert_one_line_error(
        &d.get(&format!("/bep44?target={t44}")),
        500,
        "no dht servers",
        "longer is cut to 20",
    );
    // A urlencoded POST body is read, and wins over the query.
    let r = d.req(
        "POST",
        "/bep44?target=zz",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("target={t40}").as_bytes(),
        SHORT,
    );
    assert_one_line_error(&r, 500, "no dht servers", "POST form");
}

// ------------------------------------------------------------------------------------------
// Paths

#[test]
fn unclean_paths_redirect_and_unknown_paths_404() {
    let d = Daemon::start(&[]);
    let ih = random_ih();
    for (from, to) in [
        (
            format!("/data/infohash/{ih}/a//b"),
            format!("/data/infohash/{ih}/a/b"),
        ),
        (
            format!("/data/infohash/{ih}/./a?x=1"),
            format!("/data/infohash/{ih}/a?x=1"),
        ),
        (
            format!("/data/infohash/{ih}/a/../b"),
            format!("/data/infohash/{ih}/b"),
        ),
        ("//status".to_string(), "/status".to_string()),
        ("/data/infohash".to_string(), "/data/infohash/".to_string()),
        ("/./events?ih=1".to_string(), "/events?ih=1".to_string()),
    ] {
        let r = d.get(&from);
        assert_eq!(r.status, 301, "{from}");
        assert_eq!(r.header("location"), Some(to.as_str()), "{from}");
    }
    for p in ["/nope", "/data/", "/status/", "/events/", "/upload/x"] {
        assert_one_line_error(&d.get(p), 404, "404 page not found", p);
    }
}
