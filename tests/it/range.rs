//! Issue 3, test 3: the Range battery on `single` and on a `multi` file, plus conditional
//! requests (ETag, If-Range, If-None-Match, If-Match), HEAD and Content-Type.

use crate::common;

use common::{
    assert_bytes_eq, assert_one_line_error, qenc, serial, swarm, Daemon, Resp, HTTP_TIMEOUT,
};

fn get(d: &Daemon, target: &str, headers: &[(&str, &str)]) -> Resp {
    d.req("GET", target, headers, b"", HTTP_TIMEOUT)
}

/// Checks a single-range 206: status, Content-Range, Content-Length and the bytes.
#[track_caller]
fn assert_partial(r: &Resp, want: &[u8], start: u64, end: u64, what: &str) {
    let size = want.len() as u64;
    assert_eq!(r.status, 206, "{what}: status ({})", r.text());
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {start}-{end}/{size}").as_str()),
        "{what}: Content-Range"
    );
    assert_eq!(
        r.content_length(),
        Some(end - start + 1),
        "{what}: Content-Length"
    );
    assert_eq!(
        r.header("accept-ranges"),
        Some("bytes"),
        "{what}: Accept-Ranges"
    );
    assert_bytes_eq(&r.body, &want[start as usize..=end as usize], what);
}

#[track_caller]
fn assert_full(r: &Resp, want: &[u8], what: &str) {
    assert_eq!(r.status, 200, "{what}: status ({})", r.text());
    assert_eq!(
        r.header("content-range"),
        None,
        "{what}: no Content-Range on a 200"
    );
    assert_eq!(
        r.content_length(),
        Some(want.len() as u64),
        "{what}: Content-Length"
    );
    assert_bytes_eq(&r.body, want, what);
}

/// The parts of a `multipart/byteranges` body: (Content-Range, Content-Type, data).
fn parse_multipart(r: &Resp) -> Vec<(String, String, Vec<u8>)> {
    let ct = r
        .header("content-type")
        .expect("multipart without Content-Type");
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("Content-Type {ct:?} is not multipart/byteranges"));
    let delim = format!("--{boundary}");
    let b = &r.body;
    let find = |from: usize, needle: &[u8]| -> Option<usize> {
        b[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut parts = Vec::new();
    let mut pos = find(0, delim.as_bytes()).expect("no first boundary");
    assert!(
        b[..pos].iter().all(|c| c.is_ascii_whitespace()),
        "junk before the first boundary"
    );
    loop {
        pos += delim.len();
        if b[pos..].starts_with(b"--") {
            assert!(
                b[pos + 2..].iter().all(|c| c.is_ascii_whitespace()),
                "junk after the closing boundary"
            );
            break;
        }
        assert!(
            b[pos..].starts_with(b"\r\n"),
            "boundary not followed by CRLF"
        );
        pos += 2;
        let head_end = find(pos, b"\r\n\r\n").expect("part without header end");
        let head = String::from_utf8_lossy(&b[pos..head_end]).into_owned();
        let header = |name: &str| {
            head.split("\r\n")
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_else(|| panic!("part without {name}: {head:?}"))
        };
        let cr = header("content-range");
        let ctype = header("content-type");
        let (s, e) = cr
            .strip_prefix("bytes ")
            .and_then(|x| x.split_once('/'))
            .and_then(|(se, _)| se.split_once('-'))
            .map(|(s, e)| (s.parse::<usize>().unwrap(), e.parse::<usize>().unwrap()))
            .unwrap_or_else(|| panic!("bad part Content-Range {cr:?}"));
        let data_start = head_end + 4;
        let data_end = data_start + (e - s + 1);
        parts.push((cr.clone(), ctype, b[data_start..data_end].to_vec()));
        assert!(
            b[data_end..].starts_with(format!("\r\n{delim}").as_bytes()),
            "part {cr} not followed by CRLF and a boundary"
        );
        pos = data_end + 2;
    }
    parts
}

/// Every case of the battery on one resource (`target`) whose bytes are `want`, with a piece
/// boundary at file offset `boundary`.
fn battery(d: &Daemon, target: &str, want: &[u8], boundary: u64, ctype: &str) {
    let size = want.len() as u64;
    let last = size - 1;
    assert!(size > 10_000, "the battery needs a file of some size");

    // Plain GET: 200, validators and types.
    let r = get(d, target, &[]);
    assert_full(&r, want, "plain GET");
    assert_eq!(r.header("accept-ranges"), Some("bytes"), "Accept-Ranges");
    assert_eq!(r.header("content-type"), Some(ctype), "Content-Type");
    let etag = r.header("etag").expect("no ETag").to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "ETag {etag:?} is not a strong entity tag"
    );

    // HEAD: the GET headers, no body.
    let r = d.req("HEAD", target, &[], b"", HTTP_TIMEOUT);
    assert_eq!(r.status, 200, "HEAD");
    assert_eq!(r.content_length(), Some(size), "HEAD Content-Length");
    assert_eq!(
        r.header("accept-ranges"),
        Some("bytes"),
        "HEAD Accept-Ranges"
    );
    assert_eq!(r.header("etag"), Some(etag.as_str()), "HEAD ETag");
    assert!(r.body.is_empty(), "HEAD sent {} body bytes", r.body.len());
    let r = d.req("HEAD", target, &[("Range", "bytes=0-9")], b"", HTTP_TIMEOUT);
    assert_eq!(r.status, 206, "HEAD with a Range");
    assert_eq!(
        r.content_length(),
        Some(10),
        "HEAD with a Range: Content-Length"
    );
    assert!(r.body.is_empty(), "HEAD with a Range sent a body");

    // Single ranges.
    assert_partial(
        &get(d, target, &[("Range", "bytes=0-0")]),
        want,
        0,
        0,
        "first byte",
    );
    assert_partial(
        &get(d, target, &[("Range", "bytes=-1")]),
        want,
        last,
        last,
        "last byte (bytes=-1)",
    );
    let (a, b) = (boundary - 100, boundary + 99);
    assert_partial(
        &get(d, target, &[("Range", &format!("bytes={a}-{b}"))]),
        want,
        a,
        b,
        "span across a piece boundary",
    );
    assert_partial(
        &get(d, target, &[("Range", "bytes=-100")]),
        want,
        size - 100,
        last,
        "suffix bytes=-100",
    );
    assert_partial(
        &get(d, target, &[("Range", "bytes=100-")]),
        want,
        100,
        last,
        "open-ended bytes=100-",
    );
    assert_partial(
        &get(
            d,
            target,
            &[("Range", &format!("bytes={}-{}", size - 10, size + 1000))],
        ),
        want,
        size - 10,
        last,
        "end past the size is clamped",
    );

    // Several ranges: multipart/byteranges.
    let ranges = [(0u64, 1u64), (4, 5), (a, b)];
    let spec = format!(
        "bytes={}",
        ranges
            .iter()
            .map(|(s, e)| format!("{s}-{e}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let r = get(d, target, &[("Range", &spec)]);
    assert_eq!(r.status, 206, "multi-range {spec}: {}", r.text());
    assert_eq!(
        r.content_length(),
        Some(r.body.len() as u64),
        "multipart Content-Length"
    );
    let parts = parse_multipart(&r);
    assert_eq!(parts.len(), ranges.len(), "number of parts of {spec}");
    for ((cr, pct, data), (s, e)) in parts.iter().zip(ranges) {
        assert_eq!(cr, &format!("bytes {s}-{e}/{size}"), "part Content-Range");
        assert_eq!(pct, ctype, "part Content-Type");
        assert_bytes_eq(data, &want[s as usize..=e as usize], &format!("part {cr}"));
    }
    let r = get(d, target, &[("Range", "bytes=0-1,4-5")]);
    let parts = parse_multipart(&r);
    assert_eq!(parts.len(), 2, "bytes=0-1,4-5: two parts");
    assert_bytes_eq(&parts[0].2, &want[0..2], "bytes=0-1,4-5 part 1");
    assert_bytes_eq(&parts[1].2, &want[4..6], "bytes=0-1,4-5 part 2");

    // Invalid and unsatisfiable ranges.
    for bad in [
        "items=0-1",
        "bytes=5-2",
        "bytes=abc",
        "bytes=1-x",
        "bytes=--1",
    ] {
        let r = get(d, target, &[("Range", bad)]);
        assert_one_line_error(&r, 416, "invalid range", &format!("Range: {bad}"));
        assert_eq!(
            r.header("content-range"),
            None,
            "Range: {bad}: no Content-Range"
        );
    }
    for past in [
        format!("bytes={size}-"),
        format!("bytes={}-{}", size + 5, size + 10),
    ] {
        let r = get(d, target, &[("Range", &past)]);
        assert_eq!(r.status, 416, "Range: {past}: {}", r.text());
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{size}").as_str()),
            "Range: {past}: Content-Range"
        );
        assert!(
            r.text().starts_with("invalid range"),
            "Range: {past}: body {:?}",
            r.text()
        );
        common::assert_one_line(&r, &format!("Range: {past}"));
    }
    // Ranges adding up to more than the size are ignored: 200 with the whole body.
    assert_full(
        &get(d, target, &[("Range", "bytes=0-,0-")]),
        want,
        "ranges summing past the size",
    );

    // Conditional requests.
    assert_partial(
        &get(d, target, &[("Range", "bytes=0-0"), ("If-Range", &etag)]),
        want,
        0,
        0,
        "If-Range with the ETag",
    );
    assert_full(
        &get(
            d,
            target,
            &[("Range", "bytes=0-0"), ("If-Range", "\"stale\"")],
        ),
        want,
        "If-Range with a stale ETag",
    );
    let r = get(d, target, &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304, "If-None-Match with the ETag: {}", r.text());
    assert!(r.body.is_empty(), "304 with a body");
    let r = get(d, target, &[("If-None-Match", "\"other\"")]);
    assert_full(&r, want, "If-None-Match with another tag");
    let r = get(d, target, &[("If-Match", "\"x\"")]);
    assert_eq!(r.status, 412, "If-Match: \"x\": {}", r.text());
    let r = get(d, target, &[("If-Match", &etag), ("Range", "bytes=0-0")]);
    assert_partial(&r, want, 0, 0, "If-Match with the ETag");
}

#[test]
fn range_battery_on_single() {
    let _g = serial();
    let s = swarm();
    let t = s.torrent("single");
    let want = s.payload("big.bin");
    assert_eq!(t.piece_length, 256 * 1024, "single has 256 KiB pieces");
    let boundary = t.piece_boundary_in("big.bin", 200);
    let d = Daemon::start(&["-torrentGrace=10s"]);
    let target = format!("/data?magnet={}&path=big.bin", qenc(&s.magnet("single")));
    battery(&d, &target, &want, boundary, "application/octet-stream");
    // The same ETag and bytes through the path form.
    let r = get(
        &d,
        &format!("/data/infohash/{}/big.bin", s.ih("single")),
        &[("Range", "bytes=-100")],
    );
    assert_eq!(r.status, 206);
    assert_bytes_eq(&r.body, &want[want.len() - 100..], "path form, bytes=-100");
}

#[test]
fn range_battery_on_multi_file() {
    let _g = serial();
    let s = swarm();
    let t = s.torrent("multi");
    assert_eq!(t.piece_length, 64 * 1024, "multi has 64 KiB pieces");
    let path = "with space/nested deeper/odd.bin";
    let want = s.file_payload(&t, path);
    let boundary = t.piece_boundary_in(path, 200);
    let d = Daemon::start(&["-torrentGrace=10s"]);
    d.post_metainfo(&s.torrent_bytes("multi"), &s.ih("multi"));
    let target = format!("/data?ih={}&path={}", s.ih("multi"), qenc(path));
    battery(&d, &target, &want, boundary, "application/octet-stream");
    // And across the boundary between two files of the whole-torrent stream.
    let all = s.torrent_payload(&t);
    let a_start = t.file_offset("dir/a.bin");
    let (a, b) = (a_start - 10, a_start + 9);
    let r = get(
        &d,
        &format!("/data?ih={}", s.ih("multi")),
        &[("Range", &format!("bytes={a}-{b}"))],
    );
    assert_partial(&r, &all, a, b, "whole torrent, across a file boundary");
}

/// Content-Type comes from the extension; an empty file ignores Range (200, length 0).
#[test]
fn content_type_from_extension_and_empty_file() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("multi");
    let d = Daemon::start(&["-torrentGrace=10s"]);
    d.post_metainfo(&s.torrent_bytes("multi"), &ih);
    for (path, want) in [
        ("ünïcødé файл.txt", "text/plain"),
        ("dir/a.bin", "application/octet-stream"),
        ("one.bin", "application/octet-stream"),
    ] {
        let r = d.req(
            "HEAD",
            &format!("/data?ih={ih}&path={}", qenc(path)),
            &[],
            b"",
            HTTP_TIMEOUT,
        );
        assert_eq!(r.status, 200, "HEAD {path}");
        let ct = r.header("content-type").unwrap_or_default();
        assert!(
            ct.starts_with(want),
            "{path}: Content-Type {ct:?}, want {want}…"
        );
    }
    let r = get(
        &d,
        &format!("/data?ih={ih}&path=empty.bin"),
        &[("Range", "bytes=0-0")],
    );
    assert_eq!(r.status, 200, "empty file with a Range: {}", r.text());
    assert_eq!(r.content_length(), Some(0));
    assert!(r.body.is_empty());
    // A one-byte file: first byte = last byte.
    let one = s.file_payload(&s.torrent("multi"), "one.bin");
    let r = get(
        &d,
        &format!("/data?ih={ih}&path=one.bin"),
        &[("Range", "bytes=-1")],
    );
    assert_partial(&r, &one, 0, 0, "one.bin bytes=-1");
}
