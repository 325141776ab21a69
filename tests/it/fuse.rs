//! Issue 5: the FUSE mount, against the real binary and the harness swarm.
//!
//! Every test mounts its own temporary directory (never inside the daemon's data dir), and a
//! guard lazily unmounts it if the daemon left it behind. Everything that touches the mount runs
//! in a child process or a thread with a deadline, so a hung mount fails the test instead of
//! hanging it. Tests stop `seed1`, so all of them hold `serial()`. Without /dev/fuse or root,
//! each test prints why and returns.

use crate::common;

use std::{
    fs,
    os::unix::{fs::MetadataExt, process::ExitStatusExt},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use common::{
    assert_bytes_eq,
    fuse::{
        blocked_cat, bounded, can_mount, exited, ghost_torrent, ls, metadata, mounted, read_file,
        run_ok, sha256sum, signal, wait_child, Fuse,
    },
    run_bounded, serial, sha256_hex, swarm, Swarm,
};

/// Posts the harness torrent `key` and returns its infohash.
fn post(f: &Fuse, s: &Swarm, key: &str) -> String {
    let ih = s.ih(key);
    f.daemon.post_metainfo(&s.torrent_bytes(key), &ih);
    ih
}

// ------------------------------------------------------------------------------------------
// Tests

/// Test 1: `ls` of the root shows posted torrents; `ls <ih>` of an unknown, seeded infohash adds it
/// and lists its files; names that are not infohashes fail at once; writes are refused.
#[test]
fn ls_root_and_unknown_infohash() {
    if !can_mount("ls_root_and_unknown_infohash") {
        return;
    }
    let _g = serial();
    let s = swarm();
    let f = Fuse::start(&[]);
    let single = post(&f, s, "single");
    let multi = post(&f, s, "multi");
    let root = ls(&f.mnt.0);
    assert!(
        root.contains(&single) && root.contains(&multi),
        "root: {root:?}"
    );

    let many = s.ih("many");
    assert!(!root.contains(&many), "many is not known yet: {root:?}");
    let t0 = Instant::now();
    let files = ls(&f.path(&many));
    eprintln!("ls of unknown {many}: {:?}", t0.elapsed());
    let want: Vec<String> = (0..40).map(|i| format!("f{i:02}.bin")).collect();
    assert_eq!(files, want, "ls {many}");
    assert!(
        ls(&f.mnt.0).contains(&many),
        "many is listed in the root once added"
    );
    // Any case names the same torrent.
    assert_eq!(ls(&f.path(&many.to_uppercase())), want);

    // The multi tree: display names, sizes, modes.
    let t = s.torrent("multi");
    for (path, len) in &t.files {
        let m =
            metadata(&f.path(&format!("{multi}/{path}"))).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(m.is_file(), "{path}");
        assert_eq!(m.len(), *len, "size of {path}");
        assert_eq!(m.mode() & 0o7777, 0o444, "mode of {path}");
    }
    let m = metadata(&f.path(&format!("{multi}/with space/nested deeper"))).expect("nested dir");
    assert!(m.is_dir());
    assert_eq!(m.mode() & 0o7777, 0o555);
    let top = ls(&f.path(&multi));
    assert_eq!(
        top,
        [
            "dir",
            "empty.bin",
            "one.bin",
            "with space",
            "z last.bin",
            "ünïcødé файл.txt"
        ],
        "ls {multi}"
    );
    assert_eq!(ls(&f.path(&single)), ["big.bin"]);

    // Not an infohash: ENOENT at once. Writes: EROFS.
    let t0 = Instant::now();
    let e = metadata(&f.path("not-an-infohash")).expect_err("stat of a non-infohash");
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    assert!(t0.elapsed() < Duration::from_secs(1));
    let (st, _, err) = run_bounded(
        Command::new("mkdir").arg(f.path(&format!("{multi}/new"))),
        Duration::from_secs(10),
    );
    assert!(
        !st.expect("mkdir ends").success() && err.contains("Read-only"),
        "mkdir: {err}"
    );
    let (st, _, err) = run_bounded(
        Command::new("sh").arg("-c").arg(format!(
            "echo x >> '{}'",
            f.path(&format!("{multi}/one.bin")).display()
        )),
        Duration::from_secs(10),
    );
    assert!(
        !st.expect("sh ends").success() && err.contains("Read-only"),
        "append: {err}"
    );

    // Issue 18: the daemon (root) raised the mount's readahead past the kernel's 128 KiB, so a
    // sequential reader has several large reads in flight.
    let dev = metadata(&f.mnt.0).expect("stat of the mount").dev();
    let bdi = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    let ra = fs::read_to_string(&bdi).unwrap_or_else(|e| panic!("{bdi}: {e}"));
    assert_eq!(ra.trim(), "8192", "{bdi}");
    f.daemon.assert_healthy();
}

/// Test 2: sha256 of every file of `single` and `multi` through the mount matches the payload, and
/// `dd` at pseudo-random offsets (piece boundaries, the tail) matches too.
#[test]
fn sha256_of_every_file_and_dd_at_random_offsets() {
    if !can_mount("sha256_of_every_file_and_dd_at_random_offsets") {
        return;
    }
    let _g = serial();
    let s = swarm();
    let f = Fuse::start(&[]);
    let tmp = common::temp_dir("fuse-dd");
    for key in ["single", "multi"] {
        let ih = post(&f, s, key);
        let t = s.torrent(key);
        for (path, _) in &t.files {
            let t0 = Instant::now();
            let got = sha256sum(&f.path(&format!("{ih}/{path}")));
            assert_eq!(
                got,
                sha256_hex(&s.file_payload(&t, path)),
                "sha256 of {key}/{path}"
            );
            eprintln!("sha256 {key}/{path}: {:?}", t0.elapsed());
        }
    }
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let cases = [
        ("single", "big.bin"),
        ("multi", "with space/nested deeper/odd.bin"),
        ("multi", "z last.bin"),
    ];
    for (key, path) in cases {
        let ih = s.ih(key);
        let t = s.torrent(key);
        let want = s.file_payload(&t, path);
        let len = want.len() as u64;
        let mut spans: Vec<(u64, u64)> = (0..6).map(|_| (next(len), 1 + next(300_000))).collect();
        spans.push((t.piece_boundary_in(path, 1000) - 1000, 2000)); // across a piece boundary
        spans.push((len - 10, 100)); // past the end: only 10 bytes
        for (off, n) in spans {
            let out = tmp.join("dd.out");
            run_ok(
                Command::new("dd")
                    .arg(format!("if={}", f.path(&format!("{ih}/{path}")).display()))
                    .arg(format!("of={}", out.display()))
                    .args(["bs=65536", "iflag=skip_bytes,count_bytes", "status=none"])
                    .arg(format!("skip={off}"))
                    .arg(format!("count={n}")),
                Duration::from_secs(60),
            );
            let end = (off + n).min(len) as usize;
            assert_bytes_eq(
                &fs::read(&out).expect("dd output"),
                &want[off as usize..end],
                &format!("dd {path} @{off}+{n}"),
            );
        }
    }
    let _ = fs::remove_dir_all(&tmp);
}

/// Test 3: Two files read concurrently, and one file through HTTP and FUSE at once, are all correct.
#[test]
fn concurrent_reads_and_http_with_fuse() {
    if !can_mount("concurrent_reads_and_http_with_fuse") {
        return;
    }
    let _g = serial();
    let s = swarm();
    let f = Fuse::start(&[]);
    let many = post(&f, s, "many");
    let single = post(&f, s, "single");
    let t0 = Instant::now();
    let readers: Vec<_> = ["f00.bin", "f21.bin"]
        .into_iter()
        .map(|name| {
            let p = f.path(&format!("{many}/{name}"));
            thread::spawn(move || (name, read_file(&p, Duration::from_secs(120))))
        })
        .collect();
    let t = s.torrent("many");
    for r in readers {
        let (name, got) = r.join().expect("reader thread");
        assert_bytes_eq(
            &got,
            &s.file_payload(&t, name),
            &format!("many/{name} read concurrently"),
        );
    }
    eprintln!("two files concurrently: {:?}", t0.elapsed());

    let t0 = Instant::now();
    let port = f.daemon.port;
    let http = thread::spawn(move || {
        common::request(
            port,
            "GET",
            &format!("/data?ih={single}&path=big.bin"),
            &[],
            b"",
            Duration::from_secs(120),
        )
    });
    let fuse = read_file(
        &f.path(&format!("{}/big.bin", s.ih("single"))),
        Duration::from_secs(120),
    );
    let want = s.payload("big.bin");
    assert_bytes_eq(&fuse, &want, "big.bin through FUSE (while HTTP reads it)");
    let r = http.join().expect("http thread");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_bytes_eq(&r.body, &want, "big.bin through HTTP (while FUSE reads it)");
    eprintln!("big.bin through HTTP and FUSE at once: {:?}", t0.elapsed());
}

/// Test 4: With the seeder stopped, a `cat` of an uncached piece blocks; SIGINT ends it within 1 s;
/// the daemon still answers; once the seeder is back, the read succeeds.
#[test]
fn sigint_ends_a_blocked_cat_and_the_read_works_later() {
    if !can_mount("sigint_ends_a_blocked_cat_and_the_read_works_later") {
        return;
    }
    let _g = serial();
    let s = swarm();
    let f = Fuse::start(&["-torrentGrace=2s"]);
    let ih = post(&f, s, "single");
    let file = f.path(&format!("{ih}/big.bin"));
    assert_eq!(metadata(&file).expect("stat big.bin").len(), 64 << 20);
    {
        let _seed1 = s.stop_seeder("seed1");
        let mut cat = blocked_cat(&file, Duration::from_secs(2));
        let t0 = Instant::now();
        signal(cat.id(), libc::SIGINT);
        let st = wait_child(&mut cat, Duration::from_secs(5), "cat after SIGINT");
        let took = t0.elapsed();
        eprintln!("cat ended {took:?} after SIGINT ({st})");
        assert_eq!(
            st.signal(),
            Some(libc::SIGINT),
            "cat should die of SIGINT: {st}"
        );
        assert!(
            took <= Duration::from_secs(1),
            "cat took {took:?} to end after SIGINT"
        );
        f.daemon.assert_healthy();
        assert!(mounted(&f.mnt.0));
    }
    let t0 = Instant::now();
    let got = read_file(&file, Duration::from_secs(180));
    assert_bytes_eq(
        &got,
        &s.payload("big.bin"),
        "big.bin once the seeder is back",
    );
    eprintln!("read after the seeder returned: {:?}", t0.elapsed());
    f.daemon.assert_healthy();
}

/// Test 5: SIGTERM with a blocked reader: the daemon exits within 2 s, the mount is gone, and the
/// reader gets an error instead of hanging.
#[test]
fn sigterm_with_a_blocked_reader_unmounts_within_2s() {
    if !can_mount("sigterm_with_a_blocked_reader_unmounts_within_2s") {
        return;
    }
    let _g = serial();
    let mut f = Fuse::start(&[]);
    let (torrent, ih) = ghost_torrent();
    f.daemon.post_metainfo(&torrent, &ih);
    let file = f.path(&format!("{ih}/ghost.bin"));
    let m = metadata(&file).expect("stat ghost.bin");
    assert_eq!(
        (m.len(), m.mtime()),
        (1 << 20, 1_700_000_000),
        "size and mtime (creation date)"
    );
    let mut cat = blocked_cat(&file, Duration::from_millis(1500));

    let pid = f.daemon.pid().expect("daemon pid");
    let t0 = Instant::now();
    signal(pid, libc::SIGTERM);
    while !exited(pid) && t0.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(10));
    }
    let took = t0.elapsed();
    eprintln!("daemon exited {took:?} after SIGTERM");
    assert!(exited(pid), "daemon still running 10 s after SIGTERM");
    assert!(
        took <= Duration::from_secs(2),
        "daemon took {took:?} to exit"
    );
    assert!(
        !mounted(&f.mnt.0),
        "{} still in /proc/mounts",
        f.mnt.0.display()
    );
    let st = wait_child(
        &mut cat,
        Duration::from_secs(5),
        "the blocked cat after the daemon exited",
    );
    assert!(
        !st.success(),
        "cat of a never-downloaded file cannot succeed: {st}"
    );
    f.daemon.stop(); // reaps it
    assert!(
        f.daemon.log().contains("unmounted"),
        "log: {}",
        f.daemon.log_tail(20)
    );
}

/// Test 6: `kill -9` of the daemon leaves a dead mount; the next start on the same directory cleans
/// it up and mounts again, with the same inode numbers.
#[test]
fn restart_after_kill9_cleans_up_the_stale_mount() {
    if !can_mount("restart_after_kill9_cleans_up_the_stale_mount") {
        return;
    }
    let _g = serial();
    let s = swarm();
    let mut f = Fuse::start(&[]);
    let ih = post(&f, s, "multi");
    let a = f.path(&format!("{ih}/dir/a.bin"));
    let ino = metadata(&a).expect("stat a.bin").ino();
    f.daemon.kill9();
    // A listing reaches the (dead) daemon; a stat may be answered from the attribute cache.
    let m = f.mnt.0.clone();
    let e = bounded(Duration::from_secs(10), "listing a dead mount", move || {
        fs::read_dir(m).map(|_| ())
    })
    .expect_err("listing a dead mount");
    assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN), "dead mount: {e}");
    // Restarted at once: within the kernel's attribute timeout of the dead mount.

    let t0 = Instant::now();
    f.daemon.restart(&[]);
    eprintln!("restart on the stale mount: {:?}", t0.elapsed());
    assert!(mounted(&f.mnt.0));
    assert!(
        f.daemon.log().contains("stale FUSE mount"),
        "log: {}",
        f.daemon.log_tail(20)
    );
    assert!(
        ls(&f.mnt.0).contains(&ih),
        "the stored torrent is listed after the restart"
    );
    assert_eq!(
        metadata(&a).expect("stat a.bin").ino(),
        ino,
        "inode of a.bin after the restart"
    );
    let t = s.torrent("multi");
    assert_eq!(sha256sum(&a), sha256_hex(&s.file_payload(&t, "dir/a.bin")));
}

/// Test 7: ffprobe reads both clips of `media` from the mount with the right duration, and ffmpeg
/// can seek into them (`clip.mp4` has its index at the end).
#[test]
fn ffprobe_and_ffmpeg_seek_on_media() {
    if !can_mount("ffprobe_and_ffmpeg_seek_on_media") {
        return;
    }
    let _g = serial();
    let s = swarm();
    let f = Fuse::start(&[]);
    let ih = post(&f, s, "media");
    for clip in ["clip.mkv", "clip.mp4"] {
        let p = f.path(&format!("{ih}/{clip}"));
        let t0 = Instant::now();
        let out = run_ok(
            Command::new("ffprobe")
                .args([
                    "-v",
                    "error",
                    "-show_entries",
                    "format=duration",
                    "-of",
                    "default=nw=1:nk=1",
                ])
                .arg(&p),
            Duration::from_secs(60),
        );
        let d: f64 = out
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("ffprobe {clip}: {out:?}"));
        assert!((d - 10.0).abs() < 0.1, "duration of {clip}: {d}");
        eprintln!("ffprobe {clip}: {d} s in {:?}", t0.elapsed());
        run_ok(
            Command::new("ffmpeg")
                .args(["-nostdin", "-v", "error", "-ss", "5", "-i"])
                .arg(&p)
                .args(["-frames:v", "1", "-f", "null", "-"]),
            Duration::from_secs(60),
        );
    }
    f.daemon.assert_healthy();
}
