//! Found by the chaos soak (tests/it/soak.rs): a torrent whose librqbit add failed on a full disk
//! ("error storing initial check bitfield") stayed in librqbit's session in its error state, and
//! every later request got that old error (507) until the torrent idled out for
//! `-torrentGrace`; a client that kept retrying never saw it recover. Now the next request
//! removes the failed torrent and adds it again.

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

#[test]
fn a_torrent_whose_add_failed_on_a_full_disk_is_added_again_once_space_returns() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test mounts a tmpfs: it needs root");
    }
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
