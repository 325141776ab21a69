//! Found by the chaos soak (tests/it/soak.rs): a torrent whose librqbit add failed on a full disk
//! ("error storing initial check bitfield") stayed in librqbit's session in its error state, and
//! every later request got that old error (507) until the torrent idled out for
//! `-torrentGrace`; a client that kept retrying never saw it recover. Now the next request
//! removes the failed torrent and adds it again.

use crate::common;

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use common::{assert_bytes_eq, run_bounded, serial, swarm, temp_dir, Daemon};

struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let (st, _, _) = run_bounded(Command::new("umount").arg(&self.0), Duration::from_secs(10));
        if !st.is_some_and(|s| s.success()) {
            let _ = run_bounded(
                Command::new("umount").arg("-l").arg(&self.0),
                Duration::from_secs(10),
            );
        }
        let _ = fs::remove_dir(&self.0);
    }
}

/// Appends to `path` until its file system is full.
fn fill(path: &Path) {
    let mut f = fs::File::create(path).expect("filler");
    for chunk in [vec![0x5au8; 1 << 20], vec![0x5au8; 4096], vec![0x5au8; 1]] {
        while f.write_all(&chunk).is_ok() {}
    }
}

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
    let dir = temp_dir("fulladd");
    let (st, _, err) = run_bounded(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs"])
            .arg(&dir),
        Duration::from_secs(10),
    );
    assert!(st.is_some_and(|s| s.success()), "mount tmpfs: {err}");
    let fs_ = Tmpfs(dir);
    // A long grace: the failed torrent must not get a chance to idle out between requests.
    let d = Daemon::start_in(
        &fs_.0.join("data"),
        &["-torrentGrace=60s", common::fuse::TRACKER],
    );
    d.post_metainfo(&s.torrent_bytes("multi"), &ih);
    let target = format!("/data?ih={ih}&path=dir%2Fa.bin");
    let filler = fs_.0.join("filler");
    fill(&filler);
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
