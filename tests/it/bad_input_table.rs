//! Issue 7: the bad-input table. Every malformed request gets a 4xx with a one-line reason (or
//! the documented 301 for an unclean path), the daemon never panics and `/health` stays OK after
//! each one. Requests go out as raw bytes on a `TcpStream`, so NUL, non-UTF-8, `..`, `//`,
//! thousands of ranges and oversized heads reach the daemon exactly as written.
//!
//! Requests that are not HTTP at all (a NUL or a non-UTF-8 byte in the request line, a bad
//! method token, conflicting framing headers, an oversized head) are refused by actix-http's
//! parser before any route runs: their one-line reason is the status line itself (`400 Bad
//! Request`, `431 Request Header Fields Too Large`), with an empty body.
//!
//! The FUSE half checks the errno of every refused operation (ENOENT, EROFS, EACCES, ENOTDIR),
//! each bounded so that a hang fails the test.

use crate::common;

use std::{
    ffi::CString,
    fs,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    os::unix::ffi::OsStrExt,
    path::Path,
    time::{Duration, Instant},
};

use common::{
    assert_no_panic, assert_one_line,
    fuse::{bounded, can_mount, Fuse},
    qenc, raw_request, serial, swarm, Daemon, Resp,
};

const T: Duration = Duration::from_secs(10);
const IH_PREFIX: &str = "error determining requested infohash: ";

/// What a case must get back.
#[derive(Debug, Clone)]
enum Want {
    /// The daemon's error format: this status, `text/plain`, nosniff, exactly `line\n`.
    Line(u16, String),
    /// The daemon's error format, the line starting with this prefix.
    Prefix(u16, String),
    /// Refused by the HTTP parser before routing: this status, no body.
    Bare(u16),
    /// A websocket handshake refusal, as the original (x/net/websocket) words it: the reason
    /// alone, without a newline.
    Ws(u16, &'static str),
    /// The clean-path redirect (Go's ServeMux): 301 to this location.
    Redirect(String),
}

struct Case {
    what: String,
    raw: Vec<u8>,
    want: Want,
}

fn line(status: u16, l: impl Into<String>) -> Want {
    Want::Line(status, l.into())
}

fn ih_err(detail: &str) -> Want {
    Want::Line(400, format!("{IH_PREFIX}{detail}"))
}

/// `METHOD target HTTP/1.1` with Host, `extra` header lines (each ending in CRLF), close, and
/// the body's `Content-Length` unless `extra` frames the body itself (`Content-Length` or
/// `Transfer-Encoding`).
fn req(method: &str, target: &[u8], extra: &[u8], body: &[u8]) -> Vec<u8> {
    let framed = String::from_utf8_lossy(extra)
        .to_ascii_lowercase()
        .split("\r\n")
        .any(|l| l.starts_with("content-length:") || l.starts_with("transfer-encoding:"));
    let mut r = Vec::new();
    r.extend_from_slice(method.as_bytes());
    r.push(b' ');
    r.extend_from_slice(target);
    r.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    r.extend_from_slice(extra);
    if !framed && (!body.is_empty() || method == "POST") {
        r.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

fn get(target: impl AsRef<[u8]>) -> Vec<u8> {
    req("GET", target.as_ref(), b"", b"")
}

fn get_h(target: impl AsRef<[u8]>, headers: &str) -> Vec<u8> {
    req("GET", target.as_ref(), headers.as_bytes(), b"")
}

/// A websocket handshake attempt: `Connection: Upgrade` instead of `close` (every refusal
/// closes the connection).
fn ws(target: &str, extra: &str) -> Vec<u8> {
    edit(
        get_h(target, &format!("Connection: Upgrade\r\n{extra}")),
        "Connection: close\r\n",
        "",
    )
}

/// `raw` with `from` replaced by `to` (to bend a request `req` built).
fn edit(raw: Vec<u8>, from: &str, to: &str) -> Vec<u8> {
    String::from_utf8_lossy(&raw).replace(from, to).into_bytes()
}

fn post(target: &str, body: &[u8]) -> Vec<u8> {
    req("POST", target.as_bytes(), b"", body)
}

/// Checks one response against what the case wants; `Err` says how it differs.
fn check(r: &Resp, want: &Want) -> Result<(), String> {
    let text = r.text();
    let house = |status: u16, ok_line: &dyn Fn(&str) -> bool| -> Result<(), String> {
        if r.status != status {
            return Err(format!(
                "status {} (want {status}), body {text:?}",
                r.status
            ));
        }
        let ct = r.header("content-type").unwrap_or_default();
        if !ct.starts_with("text/plain") {
            return Err(format!("Content-Type {ct:?}, body {text:?}"));
        }
        if r.header("x-content-type-options") != Some("nosniff") {
            return Err(format!("no X-Content-Type-Options: nosniff, body {text:?}"));
        }
        match text.strip_suffix('\n') {
            Some(l) if !l.is_empty() && !l.contains('\n') && ok_line(l) => Ok(()),
            _ => Err(format!("body {text:?} is not the one line wanted")),
        }
    };
    match want {
        Want::Line(status, l) => house(*status, &|got| got == l),
        Want::Prefix(status, p) => house(*status, &|got| got.starts_with(p.as_str())),
        Want::Bare(status) if r.status == *status && r.body.is_empty() => Ok(()),
        Want::Bare(status) => Err(format!(
            "status {} (want a bare {status}), body {text:?}",
            r.status
        )),
        Want::Ws(status, reason) if r.status == *status && text == *reason => Ok(()),
        Want::Ws(status, reason) => Err(format!(
            "status {} body {text:?} (want {status} {reason:?})",
            r.status
        )),
        Want::Redirect(loc) if r.status == 301 && r.header("location") == Some(loc) => Ok(()),
        Want::Redirect(loc) => Err(format!(
            "status {} Location {:?} (want 301 to {loc:?})",
            r.status,
            r.header("location")
        )),
    }
}

/// Runs every case against `d` (health-checked after each); returns how many ran.
fn run_cases(d: &Daemon, cases: Vec<Case>) -> usize {
    let n = cases.len();
    let mut failures = Vec::new();
    for c in cases {
        match raw_request(d.port, &c.raw, T) {
            Ok(r) => {
                if let Err(e) = check(&r, &c.want) {
                    failures.push(format!("{}: {e}", c.what));
                }
            }
            Err(e) => failures.push(format!("{}: no response: {e}", c.what)),
        }
        match raw_request(d.port, &get("/health"), T) {
            Ok(r) if r.status == 200 => {}
            other => panic!("/health after {:?}: {other:?}", c.what),
        }
    }
    assert_no_panic(d);
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    n
}

/// An info dict (raw bencode) of one file `name` with `len` bytes and wrong piece hashes.
fn info_of(name: &[u8], len: u64) -> Vec<u8> {
    let pieces = len.div_ceil(16384).max(1) as usize;
    let mut b = format!("d6:lengthi{len}e4:name{}:", name.len()).into_bytes();
    b.extend_from_slice(name);
    b.extend_from_slice(format!("12:piece lengthi16384e6:pieces{}:", pieces * 20).as_bytes());
    b.extend(std::iter::repeat_n(7u8, pieces * 20));
    b.push(b'e');
    b
}

#[test]
fn sixty_plus_malformed_requests_get_a_4xx_with_one_line() {
    let _g = serial();
    let s = swarm();
    let single = s.ih("single");
    let multi = s.ih("multi");
    // A small cache, so that an upload larger than it fits in a test.
    let d = Daemon::start(&[
        "-torrentGrace=1s",
        "-disableTrackers",
        "-cacheCapacity=4MiB",
    ]);
    d.post_metainfo(&s.torrent_bytes("single"), &single);
    d.post_metainfo(&s.torrent_bytes("multi"), &multi);
    let big = format!("/data?ih={single}&path=big.bin");
    let hex40 = "0123456789abcdef0123456789abcdef01234567";
    let b32_bad = format!("{}1", &"WLB3OUJNUKX2S7ADHKU2O34X4FZ3VMR2"[..31]);
    let mag = |m: &str| format!("/data?magnet={}&path=x", qenc(m));
    let mut cases: Vec<Case> = Vec::new();
    let mut add = |what: &str, raw: Vec<u8>, want: Want| {
        cases.push(Case {
            what: what.to_string(),
            raw,
            want,
        })
    };

    // ---- Infohashes: too short, too long, odd, non-hex, empty, two of them.
    let missing = r#"expected nonempty query parameter "magnet" or "ih""#;
    add("no ih", get("/data"), ih_err(missing));
    add("empty ih", get("/data?ih="), ih_err(missing));
    add(
        "empty ih and magnet",
        get("/info?ih=&magnet="),
        ih_err(missing),
    );
    add(
        "ih too short",
        get("/data?ih=abc"),
        ih_err("hash hex string has bad length: 3"),
    );
    add(
        "ih odd (39)",
        get(format!("/data?ih={}", &hex40[..39])),
        ih_err("hash hex string has bad length: 39"),
    );
    add(
        "ih too long (41)",
        get(format!("/info?ih={hex40}0")),
        ih_err("hash hex string has bad length: 41"),
    );
    add(
        "ih far too long (4000)",
        get(format!("/info?ih={}", "a".repeat(4000))),
        ih_err("hash hex string has bad length: 4000"),
    );
    add(
        "ih non-hex",
        get(format!("/metainfo?ih={}g", &hex40[..39])),
        ih_err("encoding/hex: invalid byte: U+0067 'g'"),
    );
    add(
        "ih with an escaped NUL",
        get(format!("/data?ih=%00{}", &hex40[1..])),
        ih_err("encoding/hex: invalid byte: U+0000"),
    );
    add(
        "ih with non-ASCII",
        get(format!("/data?ih=%C3%BC{}", &hex40[2..])),
        ih_err("encoding/hex: invalid byte: U+00C3 'Ã'"),
    );
    add(
        "ih base32 (not accepted as ih)",
        get("/data?ih=WLB3OUJNUKX2S7ADHKU2O34X4FZ3VMR2"),
        ih_err("hash hex string has bad length: 32"),
    );
    add(
        "two ih params, the first bad",
        get(format!("/data?ih=abc&ih={single}&path=big.bin")),
        ih_err("hash hex string has bad length: 3"),
    );
    add(
        "ih in the path form too short",
        get("/data/infohash/abc/x"),
        ih_err("hash hex string has bad length: 3"),
    );
    add(
        "ih in the path form empty",
        get("/data/infohash/"),
        ih_err("hash hex string has bad length: 0"),
    );
    add(
        "ih in the path form with a bad escape",
        get("/data/infohash/%zz/x"),
        ih_err("invalid URL escape"),
    );
    add(
        "ih of /events",
        get("/events?ih=abc"),
        ih_err("hash hex string has bad length: 3"),
    );
    add(
        "ih of /fileState",
        get("/fileState?ih=zz&path=x"),
        ih_err("hash hex string has bad length: 2"),
    );

    // ---- Magnets: no xt, unknown schemes, bad btih, and ih/magnet disagreeing.
    add(
        "magnet without xt",
        get(mag("magnet:?dn=x&tr=http://t/")),
        ih_err("parsing magnet: missing v1 infohash"),
    );
    add(
        "magnet with only a v2 xt",
        get(mag("magnet:?xt=urn:btmh:1220abcd")),
        ih_err("parsing magnet: missing v1 infohash"),
    );
    add(
        "magnet with an http scheme",
        get(mag("http://example.com/?xt=urn:btih:00")),
        ih_err(r#"parsing magnet: unexpected scheme "http""#),
    );
    add(
        "magnet with no scheme",
        get(mag("just text")),
        ih_err(r#"parsing magnet: unexpected scheme """#),
    );
    add(
        "magnet with an empty scheme",
        get(mag(":x")),
        ih_err(r#"parsing magnet: error parsing uri: parse ":x": missing protocol scheme"#),
    );
    add(
        "magnet btih of bad length",
        get(mag(&format!("magnet:?xt=urn:btih:{}", &hex40[..39]))),
        ih_err(&format!(
            r#"parsing magnet: error parsing v1 infohash "urn:btih:{}": unhandled xt parameter encoding (encoded length 39)"#,
            &hex40[..39]
        )),
    );
    add(
        "magnet btih bad base32",
        get(mag(&format!("magnet:?xt=urn:btih:{b32_bad}"))),
        ih_err(&format!(
            r#"parsing magnet: error parsing v1 infohash "urn:btih:{b32_bad}": error decoding xt: illegal base32 data at input byte 31"#
        )),
    );
    add(
        "magnet btih non-hex",
        get(mag(&format!("magnet:?xt=urn:btih:{}z", &hex40[..39]))),
        ih_err(&format!(
            r#"parsing magnet: error parsing v1 infohash "urn:btih:{}z": error decoding xt: encoding/hex: invalid byte: U+007A 'z'"#,
            &hex40[..39]
        )),
    );
    add(
        "magnet with a control character",
        get(mag("magnet:?\x01")),
        ih_err(
            r#"parsing magnet: error parsing uri: parse "magnet:?\x01": net/url: invalid control character in URL"#,
        ),
    );
    add(
        "magnet with a newline",
        get(mag("magnet:?xt=\n")),
        ih_err(
            r#"parsing magnet: error parsing uri: parse "magnet:?xt=\n": net/url: invalid control character in URL"#,
        ),
    );
    add(
        "magnet with a bad escape in the fragment",
        get(mag("magnet:?x#%zz")),
        ih_err(
            r#"parsing magnet: error parsing uri: parse "magnet:?x#%zz": invalid URL escape "%zz""#,
        ),
    );
    add(
        "bad magnet and good ih: the magnet wins",
        get(format!(
            "/data?ih={single}&magnet={}&path=big.bin",
            qenc("http://x")
        )),
        ih_err(r#"parsing magnet: unexpected scheme "http""#),
    );
    add(
        "ih and magnet naming different torrents: the magnet's has no big.bin",
        get(format!(
            "/data?ih={single}&magnet={}&path=big.bin",
            qenc(&s.magnet("multi"))
        )),
        line(404, "file not found"),
    );

    // ---- Bencode bodies: truncated, too deep, huge length prefixes, not an info, too big.
    add(
        "empty POST body",
        post("/metainfo", b""),
        line(400, "error decoding body: EOF"),
    );
    add(
        "truncated bencode",
        post("/metainfo", b"d4:infod4:name"),
        line(400, "error decoding body: unexpected end of input"),
    );
    add(
        "truncated .torrent",
        post("/metainfo", &s.torrent_bytes("multi")[..200]),
        Want::Prefix(400, "error decoding body: ".into()),
    );
    add(
        "bencode nested too deep",
        post(
            "/metainfo",
            format!("{}{}", "l".repeat(100_000), "e".repeat(100_000)).as_bytes(),
        ),
        line(400, "error decoding body: nesting too deep"),
    );
    add(
        "huge length prefix",
        post("/metainfo", b"d4:info99999999999999:x"),
        line(400, "error decoding body: string length exceeds input"),
    );
    add(
        "length prefix past u64",
        post("/metainfo", b"d4:info999999999999999999999999:x"),
        line(400, "error decoding body: invalid string length"),
    );
    add(
        "integer past i64",
        post("/metainfo", b"d4:infoi99999999999999999999ee"),
        line(400, "error decoding body: invalid integer"),
    );
    add(
        "dict key not a string",
        post("/metainfo", b"di1ei2ee"),
        line(400, "error decoding body: dict key must be a byte string"),
    );
    add(
        "binary garbage",
        post("/metainfo", b"\xff\xfe\x00"),
        line(400, "error decoding body: unexpected byte 0xff at offset 0"),
    );
    add(
        "info that is not a dict",
        post("/metainfo", b"d4:infoi3ee"),
        Want::Prefix(400, "error putting metainfo: ".into()),
    );
    let mut bad_pieces = info_of(b"x.bin", 100_000);
    let at = bad_pieces.len() - 2;
    bad_pieces.remove(at); // 139 piece-hash bytes: not a multiple of 20
    let bad_pieces = [&b"d4:info"[..], &bad_pieces, b"e"].concat();
    add(
        "info with a wrong pieces length",
        post("/metainfo", &bad_pieces),
        Want::Prefix(400, "error decoding body: ".into()),
    );
    add(
        "body over 32 MiB",
        post("/metainfo", &vec![b'x'; 33 << 20]),
        line(413, "request body too large (limit 33554432 bytes)"),
    );
    add(
        "Content-Length over 32 MiB, no body sent",
        req(
            "POST",
            b"/metainfo",
            b"Content-Length: 1099511627776\r\n",
            b"",
        ),
        line(413, "request body too large (limit 33554432 bytes)"),
    );
    add(
        "malformed chunked body",
        req(
            "POST",
            b"/metainfo",
            b"Transfer-Encoding: chunked\r\n",
            b"zz\r\nxx\r\n",
        ),
        Want::Prefix(400, "error reading body: ".into()),
    );

    // ---- Range headers: malformed, reversed, overflowing u64, thousands of ranges.
    let invalid = || line(416, "invalid range");
    for (what, range) in [
        ("range not a number", "bytes=abc"),
        ("range of another unit", "items=0-1"),
        ("range reversed", "bytes=5-2"),
        ("range end overflowing u64", "bytes=0-18446744073709551616"),
        ("range start overflowing u64", "bytes=18446744073709551616-"),
        (
            "range suffix overflowing u64",
            "bytes=-18446744073709551616",
        ),
        ("range with a plus sign", "bytes=+1-2"),
        ("range with two dashes", "bytes=--1"),
        ("range with an empty list", "bytes="),
        ("range with only commas", "bytes=,,,"),
    ] {
        add(what, get_h(&big, &format!("Range: {range}\r\n")), invalid());
    }
    add(
        "range of non-ASCII bytes",
        req("GET", big.as_bytes(), b"Range: bytes=\xff-\r\n", b""),
        invalid(),
    );
    let many: Vec<String> = (0..5000).map(|i| format!("{i}-{i}")).collect();
    add(
        "5000 ranges",
        get_h(&big, &format!("Range: bytes={}\r\n", many.join(","))),
        line(416, "invalid range: too many ranges"),
    );
    add(
        "range past the end",
        get_h(&big, "Range: bytes=67108864-\r\n"),
        line(416, "invalid range: failed to overlap"),
    );
    add(
        "range -0",
        get_h(&big, "Range: bytes=-0\r\n"),
        line(416, "invalid range: failed to overlap"),
    );

    // ---- Paths: `..`, `//`, NUL, percent-encoded tricks, non-UTF-8.
    let nf = || line(404, "file not found");
    for (what, path) in [
        ("path with ..", "../big.bin"),
        ("path with escaped ..", "%2e%2e%2fbig.bin"),
        ("absolute path", "%2Fbig.bin"),
        ("path with an escaped NUL", "big.bin%00"),
        ("path that is a NUL", "%00"),
        ("path of non-UTF-8 bytes", "%ff%fe"),
        ("path differing in case", "BIG.BIN"),
        ("path with a trailing slash", "big.bin%2F"),
        (
            "path of the torrent name in a single-file torrent plus more",
            "big.bin/x",
        ),
    ] {
        add(what, get(format!("/data?ih={single}&path={path}")), nf());
    }
    add(
        "path-form file with escaped ..",
        get(format!("/data/infohash/{single}/%2e%2e/big.bin")),
        nf(),
    );
    add(
        "path-form file with an escaped NUL",
        get(format!("/data/infohash/{single}/big.bin%00")),
        nf(),
    );
    add(
        "path-form file with a bad escape",
        get(format!("/data/infohash/{single}/big%zz")),
        line(400, "invalid URL escape in path"),
    );
    add(
        "multi file outside its torrent",
        get(format!("/data?ih={multi}&path=../single/big.bin")),
        nf(),
    );
    add(
        "path with .. escaping the route",
        get(format!("/data/infohash/{single}/../../../etc/passwd")),
        Want::Redirect("/etc/passwd".into()),
    );
    add(
        "path with //",
        get("//health"),
        Want::Redirect("/health".into()),
    );
    add(
        "path-form with //",
        get(format!("/data/infohash/{single}//big.bin")),
        Want::Redirect(format!("/data/infohash/{single}/big.bin")),
    );
    add(
        "path with /./ and a query",
        get("/./info?ih=abc"),
        Want::Redirect("/info?ih=abc".into()),
    );
    add(
        "escaped slash in the route",
        get("/data%2Finfohash"),
        line(404, "404 page not found"),
    );
    add(
        "route in upper case",
        get(format!("/DATA?ih={single}")),
        line(404, "404 page not found"),
    );
    add("NUL in the path", get(b"/da\0ta"), Want::Bare(400));
    add("NUL in the query", get(b"/data?ih=\0"), Want::Bare(400));
    add(
        "non-UTF-8 bytes in the path",
        get(b"/\xff\xfe/data"),
        Want::Bare(400),
    );
    add(
        "non-UTF-8 bytes in the query",
        get(b"/data?path=\xc3\x28"),
        Want::Bare(400),
    );
    add(
        "space in the request target",
        get(b"/data?ih=a b"),
        Want::Bare(400),
    );

    // ---- Unknown routes and methods, broken HTTP.
    add(
        "unknown route",
        get("/nosuch"),
        line(404, "404 page not found"),
    );
    // `/` is the web page now (tests/it/page.rs); every other unknown path stays 404.
    add(
        "/metrics without -debugOnMain",
        get("/metrics"),
        line(404, "404 page not found"),
    );
    add(
        "/debug without -debugOnMain",
        get("/debug/pprof/"),
        line(404, "404 page not found"),
    );
    add(
        "DELETE of an unknown route",
        req("DELETE", b"/nosuch", b"", b""),
        line(404, "404 page not found"),
    );
    add(
        "unknown method on an unknown route",
        req("BREW", b"/coffee", b"", b""),
        line(404, "404 page not found"),
    );
    add(
        "unknown method on /info (every method routes, as in Go)",
        req("PROPFIND", b"/info?ih=abc", b"", b""),
        ih_err("hash hex string has bad length: 3"),
    );
    add(
        "method with a control byte",
        b"GE\x01T /health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        Want::Bare(400),
    );
    add(
        "unknown HTTP version",
        b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(),
        Want::Bare(400),
    );
    add(
        "not HTTP at all",
        b"GARBAGE\r\n\r\n".to_vec(),
        Want::Bare(400),
    );
    add(
        "header without a colon",
        get_h("/health", "NoColonHere\r\n"),
        Want::Bare(400),
    );
    add(
        "Transfer-Encoding and Content-Length together",
        b"POST /metainfo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"
            .to_vec(),
        Want::Bare(400),
    );
    add(
        "Content-Length not a number",
        b"POST /metainfo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(),
        Want::Bare(400),
    );
    add(
        "two different Content-Lengths",
        b"POST /metainfo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcde"
            .to_vec(),
        Want::Bare(400),
    );
    add(
        "a 256 KiB header",
        get_h("/health", &format!("X-Big: {}\r\n", "a".repeat(256 << 10))),
        Want::Bare(431),
    );
    add(
        "a 256 KiB request target",
        get(format!("/health?x={}", "a".repeat(256 << 10))),
        Want::Bare(431),
    );
    add(
        "500 headers",
        get_h(
            "/health",
            &(0..500)
                .map(|i| format!("X-H{i}: v\r\n"))
                .collect::<String>(),
        ),
        Want::Bare(431),
    );

    // ---- Listings and playlists (issue 15).
    let listing = format!("/data/infohash/{multi}/");
    add(
        "listing of a file path with a trailing slash",
        get(format!("{listing}dir/a.bin/")),
        nf(),
    );
    add(
        "listing of a directory that is not there",
        get_h(format!("{listing}nope/"), "Accept: application/json\r\n"),
        nf(),
    );
    add(
        "listing with an escaped .. directory",
        get(format!("{listing}%2e%2e/")),
        nf(),
    );
    add(
        "listing with a .. segment",
        get(format!("{listing}dir/../")),
        Want::Redirect(listing.clone()),
    );
    add(
        "listing of a bad infohash",
        get_h("/data/infohash/abc/", "Accept: text/html\r\n"),
        ih_err("hash hex string has bad length: 3"),
    );
    add(
        "listing with a 256 KiB Accept",
        get_h(
            &listing,
            &format!("Accept: {}\r\n", "text/html;q=0.5,".repeat(16 << 10)),
        ),
        Want::Bare(431),
    );
    add(
        "playlist of a bad ih",
        get("/playlist?ih=abc"),
        ih_err("hash hex string has bad length: 3"),
    );
    add(
        "playlist of an empty ih",
        get("/playlist?ih="),
        ih_err(missing),
    );
    add(
        "playlist of a bad magnet",
        get("/playlist?magnet=http%3A%2F%2Fx"),
        Want::Prefix(400, format!("{IH_PREFIX}parsing magnet: ")),
    );
    add(
        "playlist with a 256 KiB Accept",
        get_h(
            "/playlist",
            &format!("Accept: {}\r\n", "a".repeat(256 << 10)),
        ),
        Want::Bare(431),
    );

    // ---- The websocket without (or with half) an upgrade.
    let events = format!("/events?ih={single}");
    add(
        "websocket without an upgrade",
        get(&events),
        Want::Ws(400, "not websocket protocol"),
    );
    add(
        "websocket with Upgrade but no Connection: upgrade",
        get_h(&events, "Upgrade: websocket\r\n"),
        Want::Ws(400, "not websocket protocol"),
    );
    add(
        "websocket without a key",
        ws(
            &events,
            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
        ),
        Want::Ws(400, "mismatch challenge/response"),
    );
    add(
        "websocket of an old version",
        ws(
            &events,
            "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n",
        ),
        Want::Ws(400, "missing or bad WebSocket Version"),
    );
    add(
        "websocket by POST",
        edit(
            req(
                "POST",
                events.as_bytes(),
                b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
                b"",
            ),
            "Connection: close",
            "Connection: Upgrade",
        ),
        Want::Ws(405, "bad method"),
    );

    // ---- The other routes' own checks.
    add(
        "/upload without a form",
        get("/upload"),
        line(
            400,
            "parsing multipart form: request Content-Type isn't multipart/form-data",
        ),
    );
    add(
        "/upload without a boundary",
        req(
            "POST",
            b"/upload",
            b"Content-Type: multipart/form-data\r\n",
            b"x",
        ),
        line(
            400,
            "parsing multipart form: no multipart boundary param in Content-Type",
        ),
    );
    let form_ct = b"Content-Type: multipart/form-data; boundary=XyZ\r\n";
    let upload_too_large = line(
        413,
        "upload is larger than the cache capacity (4194304 bytes): raise -cacheCapacity or use -fileDir",
    );
    let mut form = b"--XyZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nbig\r\n\
        --XyZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.bin\"\r\n\r\n"
        .to_vec();
    form.extend(std::iter::repeat_n(b'u', (4 << 20) + 1));
    form.extend_from_slice(b"\r\n--XyZ--\r\n");
    add(
        "/upload with more file data than the cache holds",
        req("POST", b"/upload", form_ct, &form),
        upload_too_large.clone(),
    );
    add(
        "/upload whose Content-Length is over the cache capacity, no body sent",
        req(
            "POST",
            b"/upload",
            b"Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 1099511627776\r\n",
            b"",
        ),
        upload_too_large,
    );
    add(
        "/bep44 without a target",
        get("/bep44"),
        line(400, "target has bad length"),
    );
    add(
        "/bep44 with a non-hex target",
        get("/bep44?target=zz"),
        line(400, "encoding/hex: invalid byte: U+007A 'z'"),
    );
    add(
        "/fileState without a path",
        get(format!("/fileState?ih={single}")),
        nf(),
    );

    let n = run_cases(&d, cases);

    // Slow bodies: part of a body, then nothing. Each is cut off with a 408 after 20 s idle.
    let slow_bodies: Vec<_> = [
        (
            "/metainfo",
            "Content-Length: 100\r\n".to_string(),
            b"d4:info".to_vec(),
        ),
        (
            "/upload",
            "Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 1000\r\n"
                .to_string(),
            b"--XyZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nab".to_vec(),
        ),
    ]
    .into_iter()
    .map(|(target, headers, part)| {
        let port = d.port;
        let raw = [
            req("POST", target.as_bytes(), headers.as_bytes(), b""),
            part,
        ]
        .concat();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let r = raw_request(port, &raw, Duration::from_secs(40));
            (target, r, t0.elapsed())
        })
    })
    .collect();

    // A slow client: half a request head, then nothing. actix answers 408 and closes.
    let t0 = Instant::now();
    let mut slow = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], d.port)), T)
        .expect("connect");
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .expect("half a request");
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut got = Vec::new();
    let _ = slow.read_to_end(&mut got);
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.starts_with("HTTP/1.1 408"),
        "a client that never finishes its head: {got:?} after {:?}",
        t0.elapsed()
    );
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "the slow client was cut off only after {:?}",
        t0.elapsed()
    );
    let head_cut = t0.elapsed();
    for h in slow_bodies {
        let (target, r, took) = h.join().expect("slow body thread");
        let r = r.unwrap_or_else(|e| panic!("slow body to {target}: {e}"));
        if let Err(e) = check(&r, &line(408, "request body timed out: no data for 20 s")) {
            panic!("slow body to {target}: {e}");
        }
        assert!(
            took >= Duration::from_secs(19) && took < Duration::from_secs(35),
            "slow body to {target} cut off after {took:?}"
        );
    }
    eprintln!(
        "{} malformed requests (a slow head cut off after {head_cut:?}, two slow bodies after \
         20 s) answered; no panic",
        n,
    );
    d.assert_healthy();
    assert_no_panic(&d);
}

/// With `-authToken`, every route refuses a missing, wrong or badly presented token with one
/// line, the websocket included.
#[test]
fn auth_token_refusals_are_one_line() {
    let d = Daemon::start(&["-torrentGrace=1s", "-authToken=sekrit-token"]);
    let unauth = || line(401, "unauthorized: missing or wrong token");
    let ih = "0123456789abcdef0123456789abcdef01234567";
    let cases = vec![
        Case {
            what: "no token".into(),
            raw: get(format!("/info?ih={ih}")),
            want: unauth(),
        },
        Case {
            what: "wrong bearer token".into(),
            raw: get_h("/status", "Authorization: Bearer sekrit-tokem\r\n"),
            want: unauth(),
        },
        Case {
            what: "token as Basic".into(),
            raw: get_h("/status", "Authorization: Basic sekrit-token\r\n"),
            want: unauth(),
        },
        Case {
            what: "token prefix only".into(),
            raw: get("/status?token=sekrit"),
            want: unauth(),
        },
        Case {
            what: "token with an escaped NUL appended".into(),
            raw: get("/status?token=sekrit-token%00"),
            want: unauth(),
        },
        Case {
            what: "websocket with a wrong token".into(),
            raw: get_h(
                format!("/events?ih={ih}&token=nope"),
                "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
            ),
            want: unauth(),
        },
    ];
    // /health needs the token too, so `run_cases` cannot probe it bare: check by hand.
    let n = cases.len();
    for c in cases {
        let r = raw_request(d.port, &c.raw, T).unwrap_or_else(|e| panic!("{}: {e}", c.what));
        check(&r, &c.want).unwrap_or_else(|e| panic!("{}: {e}", c.what));
    }
    let r = raw_request(
        d.port,
        &get_h("/health", "Authorization: Bearer sekrit-token\r\n"),
        T,
    )
    .expect("/health with the token");
    assert_eq!(r.status, 200);
    assert_no_panic(&d);
    eprintln!("{n} unauthorized requests refused");
}

/// A stored metainfo whose info does not hash to its infohash (a tampered `torrents/<ih>.torrent`)
/// is not trusted: the torrent waits for real metadata instead of serving another torrent's.
#[test]
fn stored_info_not_matching_its_infohash_is_not_trusted() {
    let _g = serial();
    let s = swarm();
    let single = s.ih("single");
    let dir = common::temp_dir("tampered");
    fs::create_dir_all(dir.join("torrents")).unwrap();
    fs::write(
        dir.join("torrents").join(format!("{single}.torrent")),
        s.torrent_bytes("multi"),
    )
    .unwrap();
    let d = Daemon::start_in(&dir, &["-torrentGrace=1s", "-disableTrackers"]);
    let r = d.req("GET", &format!("/info?ih={single}&nowait=1"), &[], b"", T);
    assert_eq!(
        (r.status, r.text().as_str()),
        (202, "info not ready\n"),
        "a tampered store must not answer /info"
    );
    let r = d.req(
        "GET",
        &format!("/metainfo?ih={single}&nowait=1"),
        &[],
        b"",
        T,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(
        d.log().contains("info does not match the infohash"),
        "no warning about the tampered store: {}",
        d.log_tail(20)
    );
    assert_no_panic(&d);
    drop(d);
    let _ = fs::remove_dir_all(&dir);
}

/// A torrent whose file names try to leave its directory (`..`, absolute, NUL) never makes the
/// daemon write outside `-fileDir`, and the request fails with a reason instead of bytes.
#[test]
fn torrent_file_names_never_escape_the_file_dir() {
    let _g = serial();
    let root = common::temp_dir("escape");
    let files_dir = root.join("files");
    let d = Daemon::start(&[
        "-torrentGrace=1s",
        "-disableTrackers",
        &format!("-fileDir={}", files_dir.display()),
    ]);
    // One torrent per way out: a `..` component, an absolute name, a NUL, and `..` as the
    // torrent's own name (each next to a harmless file, so the torrent has two).
    // The first three are refused; `..` as the name is replaced by `_` (a torrent nobody seeds:
    // its read just waits).
    // (torrent name, components of its odd file, that file's request path, refused)
    type Escape<'a> = (&'a [u8], &'a [&'a [u8]], &'a str, bool);
    let cases: [Escape; 4] = [
        (b"t", &[b"..", b"escaped.bin"], "../escaped.bin", true),
        (b"t", &[b"/abs.bin"], "%2Fabs.bin", true),
        (b"t", &[b"nul\0.bin"], "nul%00.bin", true),
        (b"..", &[b"escaped.bin"], "escaped.bin", false),
    ];
    let mut ihs = Vec::new();
    for (name, comps, path, refused) in cases {
        let mut info = b"d5:filesld6:lengthi1000e4:pathl".to_vec();
        for part in comps {
            info.extend_from_slice(format!("{}:", part.len()).as_bytes());
            info.extend_from_slice(part);
        }
        info.extend_from_slice(b"eed6:lengthi1000e4:pathl6:ok.bineee4:name");
        info.extend_from_slice(format!("{}:", name.len()).as_bytes());
        info.extend_from_slice(name);
        info.extend_from_slice(b"12:piece lengthi16384e6:pieces20:");
        info.extend(std::iter::repeat_n(7u8, 20));
        info.push(b'e');
        let ih = common::sha1_hex(&info);
        let torrent = [&b"d4:info"[..], &info, b"e"].concat();
        let r = d.req("POST", "/metainfo", &[], &torrent, T);
        let shown: Vec<_> = comps.iter().map(|c| String::from_utf8_lossy(c)).collect();
        eprintln!(
            "POST of {:?} with {shown:?}: {} {:?}",
            String::from_utf8_lossy(name),
            r.status,
            r.text()
        );
        if r.status == 200 && !refused {
            let target = format!("/data?ih={ih}&path={path}");
            match common::try_request(d.port, "GET", &target, &[], b"", Duration::from_secs(2)) {
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                other => panic!("{target}: {other:?}"),
            }
            let inside = files_dir.join(&ih).join("_");
            assert!(inside.is_dir(), "{} is missing", inside.display());
        } else if r.status == 200 {
            for p in [path, "ok.bin"] {
                let target = format!("/data?ih={ih}&path={p}");
                let r = d.req("GET", &target, &[], b"", T);
                eprintln!("  {target}: {} {:?}", r.status, r.text());
                assert!(
                    r.status >= 400,
                    "{target}: {} with {} bytes",
                    r.status,
                    r.body.len()
                );
                assert_one_line(&r, &target);
            }
        } else {
            assert!(r.status >= 400 && r.status < 500, "POST: {}", r.status);
        }
        ihs.push(ih);
    }
    // Nothing was written outside files/<ih>/ (nor anywhere under the test root but there).
    let mut stray = Vec::new();
    common::walk(&root, &mut |p: &Path| {
        let inside = ihs.iter().any(|ih| p.starts_with(files_dir.join(ih)));
        let name = p
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        if !inside && (name.ends_with(b"escaped.bin") || name.ends_with(b"abs.bin")) {
            stray.push(p.to_path_buf());
        }
    });
    assert!(!Path::new("/abs.bin").exists(), "/abs.bin was created");
    assert!(stray.is_empty(), "files escaped -fileDir: {stray:?}");
    d.assert_healthy();
    assert_no_panic(&d);
    drop(d);
    let _ = fs::remove_dir_all(&root);
}

// ------------------------------------------------------------------------------------------
// FUSE

/// The errno of a libc call on `path` (0: it succeeded), run on a thread bounded to 10 s.
fn errno_of(what: &str, f: impl FnOnce() -> i32 + Send + 'static) -> i32 {
    bounded(Duration::from_secs(10), what, move || {
        let rc = f();
        if rc < 0 {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
        } else {
            0
        }
    })
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in test paths")
}

#[test]
fn fuse_refusals_get_the_right_errno_and_never_hang() {
    if !can_mount("fuse_refusals_get_the_right_errno_and_never_hang") {
        return;
    }
    let _g = serial();
    let s = swarm();
    let f = Fuse::start(&["-torrentGrace=1s", "-disableTrackers"]);
    let multi = s.ih("multi");
    f.daemon.post_metainfo(&s.torrent_bytes("multi"), &multi);
    let root = f.mnt.0.clone();
    let file = f.path(&format!("{multi}/one.bin"));
    let dir = f.path(&format!("{multi}/dir"));
    // Warm the entries so the operations below hit the daemon, not a lookup error.
    let m = common::fuse::metadata(&file).expect("stat one.bin");
    assert_eq!(m.len(), 1);

    type Op = Box<dyn FnOnce() -> i32 + Send>;
    let stat = |p: &Path| -> Op {
        let p = c(p);
        Box::new(move || {
            // SAFETY: a valid C string and a zeroed stat buffer.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            unsafe { libc::stat(p.as_ptr(), &mut st) }
        })
    };
    let open = |p: &Path, flags: i32| -> Op {
        let p = c(p);
        Box::new(move || {
            // SAFETY: a valid C string; the descriptor is closed at once.
            let fd = unsafe { libc::open(p.as_ptr(), flags, 0o644) };
            if fd >= 0 {
                unsafe { libc::close(fd) };
            }
            fd
        })
    };
    let path1 = |p: &Path, call: fn(*const libc::c_char) -> i32| -> Op {
        let p = c(p);
        Box::new(move || call(p.as_ptr()))
    };
    let path2 =
        |a: &Path, b: &Path, call: fn(*const libc::c_char, *const libc::c_char) -> i32| -> Op {
            let (a, b) = (c(a), c(b));
            Box::new(move || call(a.as_ptr(), b.as_ptr()))
        };
    let hex40 = "0123456789abcdef0123456789abcdef01234567";
    // SAFETY (all the closures below): valid C strings from `c`.
    let cases: Vec<(&str, Op, i32)> = vec![
        (
            "stat of a name that is not an infohash",
            stat(&root.join("not-an-infohash")),
            libc::ENOENT,
        ),
        (
            "stat of 39 hex digits",
            stat(&root.join(&hex40[..39])),
            libc::ENOENT,
        ),
        (
            "stat of 41 hex digits",
            stat(&root.join(format!("{hex40}0"))),
            libc::ENOENT,
        ),
        (
            "stat of 40 non-hex characters",
            stat(&root.join("g".repeat(40))),
            libc::ENOENT,
        ),
        (
            "stat of <ih>.torrent",
            stat(&root.join(format!("{multi}.torrent"))),
            libc::ENOENT,
        ),
        (
            "stat of a dot file",
            stat(&root.join(".hidden")),
            libc::ENOENT,
        ),
        (
            "stat of a base32 infohash",
            stat(&root.join("WLB3OUJNUKX2S7ADHKU2O34X4FZ3VMR2")),
            libc::ENOENT,
        ),
        (
            "stat of a missing file",
            stat(&f.path(&format!("{multi}/nosuch.bin"))),
            libc::ENOENT,
        ),
        (
            "stat of a missing nested file",
            stat(&f.path(&format!("{multi}/dir/nosuch"))),
            libc::ENOENT,
        ),
        (
            "stat below a file",
            stat(&f.path(&format!("{multi}/one.bin/x"))),
            libc::ENOTDIR,
        ),
        ("open for writing", open(&file, libc::O_WRONLY), libc::EROFS),
        (
            "open for reading and writing",
            open(&file, libc::O_RDWR),
            libc::EROFS,
        ),
        (
            "open with O_TRUNC",
            open(&file, libc::O_RDONLY | libc::O_TRUNC),
            libc::EROFS,
        ),
        (
            "open for appending",
            open(&file, libc::O_WRONLY | libc::O_APPEND),
            libc::EROFS,
        ),
        (
            "create a file",
            open(
                &f.path(&format!("{multi}/new.bin")),
                libc::O_WRONLY | libc::O_CREAT,
            ),
            libc::EROFS,
        ),
        (
            "create a file in the root",
            open(&root.join("new.bin"), libc::O_WRONLY | libc::O_CREAT),
            libc::EROFS,
        ),
        (
            "open a file as a directory",
            open(&file, libc::O_RDONLY | libc::O_DIRECTORY),
            libc::ENOTDIR,
        ),
        (
            "mkdir in a torrent",
            path1(&f.path(&format!("{multi}/newdir")), |p| unsafe {
                libc::mkdir(p, 0o755)
            }),
            libc::EROFS,
        ),
        (
            "mkdir of a name in the root",
            path1(&root.join("newdir"), |p| unsafe { libc::mkdir(p, 0o755) }),
            libc::EROFS,
        ),
        // Every infohash names a (virtual) directory: the kernel's lookup before mkdir finds
        // one at once, even for a torrent nobody seeds, instead of waiting for its metadata.
        (
            "mkdir of an unknown infohash",
            path1(&root.join(hex40), |p| unsafe { libc::mkdir(p, 0o755) }),
            libc::EEXIST,
        ),
        (
            "create a file named as an unknown infohash",
            open(
                &root.join(hex40.to_uppercase()),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            ),
            libc::EEXIST,
        ),
        (
            "rmdir of a torrent",
            path1(&f.path(&multi), |p| unsafe { libc::rmdir(p) }),
            libc::EROFS,
        ),
        (
            "rmdir",
            path1(&dir, |p| unsafe { libc::rmdir(p) }),
            libc::EROFS,
        ),
        (
            "unlink",
            path1(&file, |p| unsafe { libc::unlink(p) }),
            libc::EROFS,
        ),
        (
            "chmod (setattr)",
            path1(&file, |p| unsafe { libc::chmod(p, 0o777) }),
            libc::EROFS,
        ),
        (
            "chown (setattr)",
            path1(&file, |p| unsafe { libc::chown(p, 1, 1) }),
            libc::EROFS,
        ),
        (
            "truncate (setattr)",
            path1(&file, |p| unsafe { libc::truncate(p, 0) }),
            libc::EROFS,
        ),
        (
            "utimes (setattr)",
            path1(&file, |p| unsafe { libc::utimes(p, std::ptr::null()) }),
            libc::EROFS,
        ),
        (
            "mknod",
            path1(&f.path(&format!("{multi}/fifo")), |p| unsafe {
                libc::mknod(p, libc::S_IFIFO | 0o644, 0)
            }),
            libc::EROFS,
        ),
        (
            "setxattr",
            path1(&file, |p| unsafe {
                libc::setxattr(p, c"user.x".as_ptr(), b"v".as_ptr().cast(), 1, 0)
            }),
            libc::EROFS,
        ),
        (
            "access for writing",
            path1(&file, |p| unsafe { libc::access(p, libc::W_OK) }),
            libc::EROFS,
        ),
        (
            "access for executing a 0444 file",
            path1(&file, |p| unsafe { libc::access(p, libc::X_OK) }),
            libc::EACCES,
        ),
        (
            "execute a 0444 file",
            path1(&file, |p| unsafe {
                let argv = [p, std::ptr::null()];
                libc::execv(p, argv.as_ptr())
            }),
            libc::EACCES,
        ),
        (
            "rename",
            path2(&file, &f.path(&format!("{multi}/two.bin")), |a, b| unsafe {
                libc::rename(a, b)
            }),
            libc::EROFS,
        ),
        (
            "hard link",
            path2(
                &file,
                &f.path(&format!("{multi}/link.bin")),
                |a, b| unsafe { libc::link(a, b) },
            ),
            libc::EROFS,
        ),
        (
            "symlink",
            path2(&file, &f.path(&format!("{multi}/sym.bin")), |a, b| unsafe {
                libc::symlink(a, b)
            }),
            libc::EROFS,
        ),
    ];
    let n = cases.len();
    let mut failures = Vec::new();
    for (what, op, want) in cases {
        let t0 = Instant::now();
        let got = errno_of(what, op);
        if got != want {
            failures.push(format!(
                "{what}: errno {got} ({}), want {want} ({})",
                std::io::Error::from_raw_os_error(got),
                std::io::Error::from_raw_os_error(want)
            ));
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{what} took {:?}",
            t0.elapsed()
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {n} FUSE cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Nothing was added by the refused names, and the daemon still serves.
    let listed: Vec<String> = fs::read_dir(&root)
        .expect("ls root")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // (The unknown infohash looked up above is added on demand; nothing else is.)
    assert!(
        listed.contains(&multi)
            && listed
                .iter()
                .all(|n| n.len() == 40 && n.bytes().all(|b| b.is_ascii_hexdigit())),
        "root after the refusals: {listed:?}"
    );
    f.daemon.assert_healthy();
    assert_no_panic(&f.daemon);
    eprintln!("{n} refused FUSE operations, each with the right errno");
}

/// Issue 16: bad input to the WebDAV share (`/dav/`): malformed or oversized PROPFIND bodies,
/// refused depths, writes, names that are no infohash, broken escapes. No swarm needed: none of
/// these waits for a torrent.
#[test]
fn webdav_bad_input_gets_a_4xx_with_one_line() {
    let d = Daemon::start(&["-torrentGrace=1s"]);
    let ih = "0123456789abcdef0123456789abcdef01234567";
    let pf = |target: &str, depth: &str, body: &[u8]| {
        let h = if depth.is_empty() {
            String::new()
        } else {
            format!("Depth: {depth}\r\n")
        };
        req("PROPFIND", target.as_bytes(), h.as_bytes(), body)
    };
    let deep = format!("<propfind xmlns=\"DAV:\">{}", "<a>".repeat(10_000));
    let malformed = |what: &str, body: &[u8]| Case {
        what: format!("PROPFIND body: {what}"),
        raw: pf("/dav/", "0", body),
        want: Want::Prefix(400, "malformed PROPFIND body: ".into()),
    };
    let refused = |m: &str| Case {
        what: format!("{m} on the read-only share"),
        raw: req(m, format!("/dav/{ih}/a.bin").as_bytes(), b"", b"x"),
        want: line(405, format!("read-only WebDAV share: {m} is not allowed")),
    };
    let mut cases = vec![
        malformed("not XML", b"this is not xml"),
        malformed("unclosed element", b"<propfind xmlns=\"DAV:\"><prop>"),
        malformed("mismatched end tag", b"<propfind xmlns=\"DAV:\"></prop>"),
        malformed("unknown prefix", b"<q:propfind><q:allprop/></q:propfind>"),
        Case {
            what: "PROPFIND body: not UTF-8".into(),
            raw: pf("/dav/", "0", b"<propfind \xff\xfe/>"),
            want: line(400, "PROPFIND body is not UTF-8"),
        },
        Case {
            what: "PROPFIND body: another root element".into(),
            raw: pf("/dav/", "1", b"<x:set xmlns:x=\"DAV:\"/>"),
            want: line(400, "PROPFIND body is not a DAV:propfind but \"set\""),
        },
        Case {
            what: "PROPFIND body: 10 000 levels deep".into(),
            raw: pf("/dav/", "0", deep.as_bytes()),
            want: line(400, "PROPFIND body nested over 32 levels"),
        },
        Case {
            what: "PROPFIND body over 64 KiB (declared)".into(),
            raw: req(
                "PROPFIND",
                b"/dav/",
                b"Depth: 0\r\nContent-Length: 100000000\r\n",
                b"",
            ),
            want: line(413, "request body too large (limit 65536 bytes)"),
        },
        Case {
            what: "PROPFIND body over 64 KiB (chunked)".into(),
            raw: req(
                "PROPFIND",
                b"/dav/",
                b"Depth: 0\r\nTransfer-Encoding: chunked\r\n",
                format!("11000\r\n{}\r\n0\r\n\r\n", " ".repeat(0x11000)).as_bytes(),
            ),
            want: line(413, "request body too large (limit 65536 bytes)"),
        },
        Case {
            what: "PROPFIND Depth: infinity".into(),
            raw: pf(&format!("/dav/{ih}/"), "infinity", b""),
            want: Want::Prefix(403, "PROPFIND with Depth: infinity".into()),
        },
        Case {
            what: "PROPFIND without Depth".into(),
            raw: pf("/dav/", "", b""),
            want: Want::Prefix(403, "PROPFIND with Depth: infinity".into()),
        },
        Case {
            what: "PROPFIND Depth: 2".into(),
            raw: pf("/dav/", "2", b""),
            want: line(400, "invalid Depth header: use 0 or 1"),
        },
        Case {
            what: "a top-level name that is no infohash".into(),
            raw: pf("/dav/not-a-hash/", "1", b""),
            want: line(
                404,
                "not found: the share's top level holds only 40-hex infohashes",
            ),
        },
        Case {
            what: "a short infohash".into(),
            raw: get("/dav/0123456789abcdef/file"),
            want: line(
                404,
                "not found: the share's top level holds only 40-hex infohashes",
            ),
        },
        Case {
            what: "a broken escape below a torrent".into(),
            raw: pf(&format!("/dav/{ih}/a%zzb"), "0", b""),
            want: line(400, "invalid URL escape in path"),
        },
        Case {
            what: "a name that is not UTF-8".into(),
            raw: get(format!("/dav/{ih}/%ff%fe.bin")),
            want: line(404, "not found"),
        },
        Case {
            what: "GET on the root collection".into(),
            raw: get("/dav/"),
            want: line(405, "a collection has no content: list it with PROPFIND"),
        },
        Case {
            what: "an unknown method".into(),
            raw: req("SEARCH", b"/dav/", b"", b""),
            want: line(405, "method SEARCH is not supported by this WebDAV share"),
        },
    ];
    for m in [
        "PUT",
        "DELETE",
        "MKCOL",
        "MOVE",
        "COPY",
        "PROPPATCH",
        "LOCK",
        "UNLOCK",
    ] {
        cases.push(refused(m));
    }
    let n = run_cases(&d, cases);
    eprintln!("{n} bad WebDAV requests answered with a 4xx and one line; no panic");
}
