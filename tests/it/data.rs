//! Issue 3, tests 1 and 2: `/data` serves exactly the payload bytes of the swarm's torrents.

use crate::common;

use common::{assert_bytes_eq, penc_path, qenc, serial, swarm, Daemon};

/// Issue test 1: `single` (64 MiB) by `magnet=` whose `tr` names the local tracker.
#[test]
fn single_by_magnet_with_tracker_matches_payload() {
    let _g = serial();
    let s = swarm();
    let magnet = s.magnet("single");
    assert!(
        magnet.contains("tr=http://127.0.0.1:6969/announce"),
        "the harness magnet should name the local tracker: {magnet}"
    );
    let d = Daemon::start(&["-torrentGrace=1s"]);
    let r = d.get(&format!("/data?magnet={}&path=big.bin", qenc(&magnet)));
    assert_eq!(r.status, 200, "{}", r.text());
    let want = s.payload("big.bin");
    assert_eq!(r.content_length(), Some(want.len() as u64));
    assert_bytes_eq(&r.body, &want, "/data?magnet=…&path=big.bin");
}

/// Issue test 1: `single` by `ih=` after `POST /metainfo` of its .torrent (the tracker in it is the only
/// source: no DHT, no magnet).
#[test]
fn single_by_ih_after_post_metainfo_matches_payload() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("single");
    let d = Daemon::start(&["-torrentGrace=1s"]);
    d.post_metainfo(&s.torrent_bytes("single"), &ih);
    let want = s.payload("big.bin");
    let r = d.get(&format!("/data?ih={ih}&path=big.bin"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_bytes_eq(&r.body, &want, "/data?ih=…&path=big.bin");
    assert_eq!(
        r.header("content-disposition"),
        Some("filename=\"big.bin\"")
    );
    // Upper-case hex names the same torrent.
    let r = d.req(
        "GET",
        &format!("/data?ih={}&path=big.bin", ih.to_uppercase()),
        &[("Range", "bytes=1000000-1999999")],
        b"",
        common::HTTP_TIMEOUT,
    );
    assert_eq!(r.status, 206, "{}", r.text());
    assert_bytes_eq(
        &r.body,
        &want[1_000_000..2_000_000],
        "upper-case ih, a range",
    );
}

/// Issue test 2: Every file of `multi` (0-byte, 1-byte, unicode, spaces, nested) byte-exact through the
/// query form and the path form, with `Content-Disposition: filename="<path>"`.
#[test]
fn multi_every_file_byte_exact_by_query_and_path_forms() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("multi");
    let t = s.torrent("multi");
    let names: Vec<&str> = t.files.iter().map(|(p, _)| p.as_str()).collect();
    for want in [
        "empty.bin",
        "one.bin",
        "ünïcødé файл.txt",
        "with space/nested deeper/odd.bin",
        "dir/a.bin",
        "dir/b.bin",
        "z last.bin",
    ] {
        assert!(
            names.contains(&want),
            "multi.torrent lacks {want:?}: {names:?}"
        );
    }
    let d = Daemon::start(&["-torrentGrace=1s"]);
    d.post_metainfo(&s.torrent_bytes("multi"), &ih);
    for (path, len) in &t.files {
        let want = s.file_payload(&t, path);
        assert_eq!(want.len() as u64, *len, "payload size of {path:?}");
        let disposition = format!("filename=\"{path}\"");
        for target in [
            format!("/data?ih={ih}&path={}", qenc(path)),
            format!("/data/infohash/{ih}/{}", penc_path(path)),
        ] {
            let r = d.get(&target);
            assert_eq!(r.status, 200, "{target}: {}", r.text());
            assert_eq!(r.content_length(), Some(*len), "{target}: Content-Length");
            assert_bytes_eq(&r.body, &want, &target);
            assert_eq!(
                r.header("content-disposition"),
                Some(disposition.as_str()),
                "{target}: Content-Disposition"
            );
            assert_eq!(
                r.header("accept-ranges"),
                Some("bytes"),
                "{target}: Accept-Ranges"
            );
        }
    }
    // In the query form `+` is a space (Go's rules), and `%2F` is a `/`.
    let r = d.get(&format!("/data?ih={ih}&path=z+last.bin"));
    assert_eq!(r.status, 200, "path=z+last.bin: {}", r.text());
    assert_bytes_eq(
        &r.body,
        &s.file_payload(&t, "z last.bin"),
        "path=z+last.bin",
    );
    let r = d.get(&format!("/data/infohash/{ih}/dir%2Fa.bin"));
    assert_eq!(r.status, 200, "path form with %2F: {}", r.text());
    assert_bytes_eq(
        &r.body,
        &s.file_payload(&t, "dir/a.bin"),
        "path form dir%2Fa.bin",
    );
}

/// Issue test 2: `/data?ih=` without `path` (and `/data/infohash/<ih>`) is all files concatenated in
/// torrent order, without a Content-Disposition.
#[test]
fn multi_without_path_is_all_files_concatenated() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("multi");
    let t = s.torrent("multi");
    let all = s.torrent_payload(&t);
    assert_eq!(all.len() as u64, t.total_length());
    let d = Daemon::start(&["-torrentGrace=1s"]);
    // By magnet: the info comes from the seeder (BEP 9), not from a posted torrent.
    let r = d.get(&format!("/data?magnet={}", qenc(&s.magnet("multi"))));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_length(), Some(t.total_length()));
    assert_bytes_eq(&r.body, &all, "/data?magnet=… (whole torrent)");
    assert_eq!(
        r.header("content-disposition"),
        None,
        "whole torrent: no Content-Disposition"
    );
    for target in [format!("/data?ih={ih}"), format!("/data/infohash/{ih}")] {
        let r = d.get(&target);
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        assert_bytes_eq(&r.body, &all, &target);
    }
    // `filename=` sets the Content-Disposition of the whole torrent.
    let r = d.get(&format!("/data?ih={ih}&filename=all.bin"));
    assert_eq!(
        r.header("content-disposition"),
        Some("filename=\"all.bin\"")
    );
    assert_bytes_eq(&r.body, &all, "whole torrent with filename=");
}

/// A magnet whose btih is 32 upper-case base32 characters names the same torrent.
#[test]
fn magnet_with_base32_btih_serves_the_same_bytes() {
    let _g = serial();
    let s = swarm();
    let t = s.torrent("multi");
    let ih = hex::decode(s.ih("multi")).expect("hex infohash");
    let b32 = data_encoding::BASE32.encode(&ih);
    assert_eq!(b32.len(), 32);
    let magnet = format!("magnet:?xt=urn:btih:{b32}&dn=multi&tr=http://127.0.0.1:6969/announce");
    let d = Daemon::start(&["-torrentGrace=1s"]);
    let r = d.get(&format!(
        "/data?magnet={}&path={}",
        qenc(&magnet),
        qenc("dir/b.bin")
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_bytes_eq(
        &r.body,
        &s.file_payload(&t, "dir/b.bin"),
        "base32 magnet, dir/b.bin",
    );
}

/// Concurrent first requests for one unknown torrent share one add: all of them get their
/// file, byte-exact.
#[test]
fn concurrent_first_requests_for_one_torrent_all_succeed() {
    let _g = serial();
    let s = swarm();
    let t = s.torrent("multi");
    let d = Daemon::start(&["-torrentGrace=1s"]);
    let magnet = qenc(&s.magnet("multi"));
    let port = d.port;
    let handles: Vec<_> = t
        .files
        .iter()
        .map(|(path, _)| {
            let target = format!("/data?magnet={magnet}&path={}", qenc(path));
            std::thread::spawn(move || {
                common::request(port, "GET", &target, &[], b"", common::HTTP_TIMEOUT)
            })
        })
        .collect();
    for ((path, _), h) in t.files.iter().zip(handles) {
        let r = h.join().expect("request thread panicked");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_bytes_eq(&r.body, &s.file_payload(&t, path), path);
    }
    d.assert_healthy();
}
