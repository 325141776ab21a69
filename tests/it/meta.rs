//! Issue 3, test 4: `/info`, `GET /metainfo` (bencode and JSON), `POST /metainfo`, `nowait`.

use crate::common;

use std::time::{Duration, Instant};

use common::{
    assert_bytes_eq, assert_one_line_error, bdecode, qenc, random_ih, serial, sha1_hex, swarm,
    Bencode, Daemon, TorrentFile,
};

/// `/info` bytes hash to the infohash; `GET /metainfo` carries the same info, as a .torrent
/// and as JSON. The info comes from the seeder (magnet), not from a posted torrent.
#[test]
fn info_hashes_to_infohash_and_metainfo_has_the_same_info() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("single");
    let d = Daemon::start(&["-torrentGrace=5s"]);

    let r = d.get(&format!("/info?magnet={}", qenc(&s.magnet("single"))));
    assert_eq!(r.status, 200, "/info: {}", r.text());
    let info = r.body.clone();
    assert_eq!(sha1_hex(&info), ih, "SHA-1 of the /info bytes");
    assert_bytes_eq(
        &info,
        &s.torrent("single").info,
        "/info equals the .torrent's info",
    );

    for target in [
        format!("/metainfo?ih={ih}"),
        format!("/metainfo?ih={ih}&nowait=1"),
    ] {
        let r = d.get(&target);
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        assert_eq!(
            r.header("content-type"),
            Some("application/x-bittorrent"),
            "{target}: Content-Type"
        );
        let top = bdecode(&r.body).unwrap_or_else(|e| panic!("{target}: not bencode: {e}"));
        let span = top
            .span("info")
            .unwrap_or_else(|| panic!("{target}: no info key"));
        assert_eq!(
            sha1_hex(&r.body[span.clone()]),
            ih,
            "{target}: SHA-1 of its info"
        );
        assert_bytes_eq(
            &r.body[span],
            &info,
            &format!("{target}: info equals /info"),
        );
        let announce = top
            .get("announce-list")
            .map(Bencode::strings)
            .unwrap_or_default();
        assert!(
            announce
                .iter()
                .any(|u| u == "http://127.0.0.1:6969/announce"),
            "{target}: the magnet's tracker is in announce-list: {announce:?}"
        );
    }

    let r = d.get_h(
        &format!("/metainfo?ih={ih}"),
        &[("Accept", "application/json")],
    );
    assert_eq!(r.status, 200, "JSON /metainfo: {}", r.text());
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("application/json"),
        "JSON Content-Type: {:?}",
        r.header("content-type")
    );
    let v: serde_json::Value =
        serde_json::from_slice(&r.body).expect("JSON /metainfo does not parse");
    let b64 = v["info"].as_str().expect("JSON without a string \"info\"");
    let decoded = data_encoding::BASE64
        .decode(b64.as_bytes())
        .expect("info is not standard base64");
    assert_bytes_eq(&decoded, &info, "JSON info (base64) equals /info");
}

/// `POST /metainfo` of the `multi` torrent to a fresh daemon: its tracker is then the only
/// source (no DHT, no magnet), and the data downloads.
#[test]
fn post_metainfo_of_multi_makes_its_data_downloadable() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("multi");
    let t = s.torrent("multi");
    let d = Daemon::start(&["-torrentGrace=5s"]);

    // Nothing known yet.
    let r = d.get(&format!("/info?ih={ih}&nowait=1"));
    assert_one_line_error(&r, 202, "info not ready", "/info nowait before the POST");

    d.post_metainfo(&s.torrent_bytes("multi"), &ih);
    // The info is known at once, without peers.
    let t0 = Instant::now();
    let r = d.req(
        "GET",
        &format!("/info?ih={ih}&nowait=1"),
        &[],
        b"",
        Duration::from_secs(10),
    );
    assert_eq!(r.status, 200, "/info nowait after the POST: {}", r.text());
    assert_bytes_eq(&r.body, &t.info, "/info after the POST");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "/info took {:?}",
        t0.elapsed()
    );

    for path in ["z last.bin", "with space/nested deeper/odd.bin"] {
        let r = d.get(&format!("/data?ih={ih}&path={}", qenc(path)));
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_bytes_eq(&r.body, &s.file_payload(&t, path), path);
    }
    // The stored metainfo keeps the tracker of the posted torrent.
    let r = d.get(&format!("/metainfo?ih={ih}"));
    let top = bdecode(&r.body).expect("GET /metainfo is not bencode");
    let announce = top
        .get("announce-list")
        .map(Bencode::strings)
        .unwrap_or_default();
    assert!(
        announce
            .iter()
            .any(|u| u == "http://127.0.0.1:6969/announce"),
        "posted tracker missing from GET /metainfo: {announce:?}"
    );
    assert_eq!(
        TorrentFile::parse(&r.body).files,
        t.files,
        "files of GET /metainfo"
    );
}

/// `nowait=1` for an infohash nobody has → 202 `info not ready`, on /info and /metainfo.
#[test]
fn nowait_for_an_unknown_infohash_is_202_info_not_ready() {
    let d = Daemon::start(&["-torrentGrace=1s"]);
    let ih = random_ih();
    for nowait in ["1", "true", "t"] {
        for route in ["/info", "/metainfo"] {
            let target = format!("{route}?ih={ih}&nowait={nowait}");
            let r = d.req("GET", &target, &[], b"", Duration::from_secs(10));
            assert_one_line_error(&r, 202, "info not ready", &target);
        }
    }
    d.assert_healthy();
}
