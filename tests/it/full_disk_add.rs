//! Found by the chaos soak (tests/it/soak.rs): a torrent whose librqbit add failed on a full disk
//! ("error storing initial check bitfield") stayed in librqbit's session in its error state, and
//! every later request got that old error (507) until the torrent idled out for
//! `-torrentGrace`; a client that kept retrying never saw it recover. Now the next request
//! removes the failed torrent and adds it again.
//!
//! Also here, issue 17: a multi-range request failing on a full disk before any data got a 206
//! that stopped short (the multipart part head went out as if it were data) instead of the 507
//! a single range gets.

use crate::common;

use std::{
    fs, thread,
    time::{Duration, Instant},
};

use common::{
    assert_bytes_eq,
    disk::{fill, Tmpfs},
    serial, swarm, Daemon,
};

/// Panics unless the test runs as root (it mounts a tmpfs).
fn require_root() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test mounts a tmpfs: it needs root");
    }
}

#[test]
fn a_torrent_whose_add_failed_on_a_full_disk_is_added_again_once_space_returns() {
    require_root();
    let _g = serial();
    let s = swarm();
    let ih = s.ih("multi");
    let t = s.torrent("multi");
    let want = s.file_payload(&t, "dir/a.bin");
    let fs_ = Tmpfs::mount("16m");
    // A long grace: the failed torrent must not get a chance to idle out between requests.
    let d = Daemon::start_in(
        &fs_.0.join("data"),
        &["-torrentGrace=60s", common::fuse::TRACKER],
    );
    d.post_metainfo(&s.torrent_bytes("multi"), &ih);
    let target = format!("/data?ih={ih}&path=dir%2Fa.bin");
    let filler = fs_.0.join("filler");
    fill(&filler, 0);
    let r = d.req("GET", &target, &[], b"", Duration::from_secs(60));
    assert_eq!(r.status, 507, "on a full disk: {}", r.text());

    fs::remove_file(&filler).unwrap();
    // Space is back: a client retrying every 200 ms gets the file within 20 s.
    let until = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    loop {
        let r = d.req("GET", &target, &[], b"", Duration::from_secs(60));
        if r.status == 200 {
            assert_bytes_eq(&r.body, &want, "dir/a.bin once space returned");
            break;
        }
        last = format!("{} {}", r.status, r.text().trim());
        assert!(
            Instant::now() < until,
            "still failing 20 s after space returned: {last}"
        );
        thread::sleep(Duration::from_millis(200));
    }
    d.assert_healthy();
    let _ = last;
}

/// A request for two ranges whose first read fails on a full disk gets the 507 and the reason a
/// single range gets, not a 206 whose body stops after the first part's head.
#[test]
fn a_multi_range_request_failing_on_a_full_disk_is_a_507() {
    require_root();
    let _g = serial();
    let s = swarm();
    let ih = s.ih("multi");
    let fs_ = Tmpfs::mount("16m");
    let d = Daemon::start_in(
        &fs_.0.join("data"),
        &["-torrentGrace=60s", common::fuse::TRACKER],
    );
    d.post_metainfo(&s.torrent_bytes("multi"), &ih);
    fill(&fs_.0.join("filler"), 0);
    let target = format!("/data?ih={ih}&path=dir%2Fa.bin");
    for range in ["bytes=0-9", "bytes=0-9,100-109"] {
        let r = common::try_request(
            d.port,
            "GET",
            &target,
            &[("Range", range)],
            b"",
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("{range} on a full disk: no whole answer: {e}"));
        assert_eq!(r.status, 507, "{range} on a full disk: {}", r.text());
        common::assert_one_line(&r, range);
        assert!(
            r.text().starts_with("error reading data: "),
            "{range}: reason {:?}",
            r.text()
        );
    }
    d.assert_healthy();
}
