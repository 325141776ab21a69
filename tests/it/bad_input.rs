//! Issue 3, test 6: bad input answers 4xx with a one-line plain-text reason (the original's
//! wording), never a 500 or a panic, and the daemon keeps serving.

use crate::common;

use std::time::Duration;

use common::{assert_one_line, assert_one_line_error, qenc, serial, swarm, Daemon};

const T: Duration = Duration::from_secs(10);
const PREFIX: &str = "error determining requested infohash: ";

#[test]
fn bad_infohash_or_magnet_answers_400_with_the_reason() {
    let d = Daemon::start(&["-torrentGrace=1s"]);
    let g40 = format!("{}g", "0".repeat(39));
    let cases = [
        (
            String::new(),
            r#"expected nonempty query parameter "magnet" or "ih""#,
        ),
        (
            "ih=".to_string(),
            r#"expected nonempty query parameter "magnet" or "ih""#,
        ),
        ("ih=abc".to_string(), "hash hex string has bad length: 3"),
        (
            format!("ih={g40}"),
            "encoding/hex: invalid byte: U+0067 'g'",
        ),
        (
            format!("magnet={}", qenc("http://x")),
            r#"parsing magnet: unexpected scheme "http""#,
        ),
        (
            format!("magnet={}", qenc("magnet:?dn=x")),
            "parsing magnet: missing v1 infohash",
        ),
    ];
    for route in ["/data", "/info", "/metainfo"] {
        for (query, reason) in &cases {
            let target = format!("{route}?{query}");
            let r = d.req("GET", &target, &[], b"", T);
            assert_one_line_error(&r, 400, &format!("{PREFIX}{reason}"), &target);
        }
    }
    // The path form: the infohash segment is checked the same way.
    let r = d.req("GET", "/data/infohash/abc/x", &[], b"", T);
    assert_one_line_error(
        &r,
        400,
        &format!("{PREFIX}hash hex string has bad length: 3"),
        "/data/infohash/abc/x",
    );
    d.assert_healthy();
}

#[test]
fn post_metainfo_with_garbage_or_empty_body_answers_400() {
    let d = Daemon::start(&["-torrentGrace=1s"]);
    for garbage in [
        &b"this is not bencode"[..],
        b"d4:info",
        b"i12",
        b"\xff\xfe\x00",
    ] {
        let r = d.req("POST", "/metainfo", &[], garbage, T);
        assert_eq!(r.status, 400, "POST {garbage:?}: {}", r.text());
        assert!(
            r.text().starts_with("error decoding body: "),
            "POST {garbage:?}: body {:?}",
            r.text()
        );
        assert_one_line(&r, &format!("POST /metainfo {garbage:?}"));
    }
    let r = d.req("POST", "/metainfo", &[], b"", T);
    assert_one_line_error(
        &r,
        400,
        "error decoding body: EOF",
        "POST /metainfo with an empty body",
    );
    d.assert_healthy();
}

#[test]
fn unknown_route_is_404_page_not_found() {
    let d = Daemon::start(&["-torrentGrace=1s"]);
    for target in ["/nosuch", "/data/", "/info/x"] {
        let r = d.req("GET", target, &[], b"", T);
        assert_one_line_error(&r, 404, "404 page not found", target);
    }
    d.assert_healthy();
}

/// Needs only the swarm's .torrent (posted), not its peers.
#[test]
fn unknown_file_is_404_and_malformed_range_is_416() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("single");
    let d = Daemon::start(&["-torrentGrace=1s"]);
    d.post_metainfo(&s.torrent_bytes("single"), &ih);
    for target in [
        format!("/data?ih={ih}&path=nope"),
        format!("/data?ih={ih}&path="),
        format!("/data?ih={ih}&path=%2Fbig.bin"),
        format!("/data?ih={ih}&path=BIG.BIN"),
        format!("/data/infohash/{ih}/nope"),
    ] {
        let r = d.req("GET", &target, &[], b"", T);
        assert_one_line_error(&r, 404, "file not found", &target);
    }
    for range in [
        "bytes=abc",
        "items=0-1",
        "bytes=5-2",
        "bytes=1-x",
        "bytes=--1",
    ] {
        let r = d.req(
            "GET",
            &format!("/data?ih={ih}&path=big.bin"),
            &[("Range", range)],
            b"",
            T,
        );
        assert_one_line_error(&r, 416, "invalid range", &format!("Range: {range}"));
    }
    let r = d.req(
        "GET",
        &format!("/data?ih={ih}&path=big.bin"),
        &[("Range", "bytes=67108864-")],
        b"",
        T,
    );
    assert_eq!(r.status, 416, "unsatisfiable range: {}", r.text());
    assert_one_line(&r, "unsatisfiable range");
    d.assert_healthy();
}

/// An info dict that is bencode but not a valid info → 400 with the reason, and no junk
/// torrent is left in the metainfo store.
#[test]
fn post_metainfo_with_an_invalid_info_answers_400_and_stores_nothing() {
    let d = Daemon::start(&["-torrentGrace=1s", "-disableTrackers"]);
    let info = b"d4:name1:xe";
    let body = [&b"d4:info"[..], info, b"e"].concat();
    let r = d.req("POST", "/metainfo", &[], &body, T);
    assert_eq!(r.status, 400, "POST invalid info: {}", r.text());
    assert!(
        r.text().starts_with("error putting metainfo: "),
        "POST invalid info: body {:?}",
        r.text()
    );
    assert_one_line(&r, "POST invalid info");
    let junk = d
        .data_dir
        .join("torrents")
        .join(format!("{}.torrent", common::sha1_hex(info)));
    assert!(!junk.exists(), "{} was left behind", junk.display());
    d.assert_healthy();
}
