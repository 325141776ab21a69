//! Issue 3, test 5: the piece cache outlives the torrent in the session and the process, and
//! stays within its documented disk bound.
//!
//! These tests stop `seed1`; every test of this binary holds `serial()`, and the
//! `SeederGuard` restarts the seeder even when an assertion fails.

use crate::common;

use std::time::{Duration, Instant};

use common::{assert_bytes_eq, dir_size, qenc, serial, sha1_hex, swarm, Daemon, DirSampler, MIB};

const DROPPED: &str = "torrent dropped";

/// (a) Read big.bin, wait until the torrent leaves the session (grace 1 s), stop the seeder,
/// read again: the bytes come from the cache.
#[test]
fn cache_serves_a_file_after_its_torrent_is_dropped_and_the_seeder_stopped() {
    let _g = serial();
    let s = swarm();
    let want = s.payload("big.bin");
    let target = format!("/data?magnet={}&path=big.bin", qenc(&s.magnet("single")));
    let d = Daemon::start(&["-torrentGrace=1s", "-cacheCapacity=1GiB"]);

    let r = d.get(&target);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_bytes_eq(&r.body, &want, "first read");
    assert!(
        d.wait_log_count(DROPPED, 0, Duration::from_secs(20)),
        "no `{DROPPED}` in the log within 20 s of the read (grace 1 s)"
    );

    let _seed1 = s.stop_seeder("seed1");
    let r = d.req("GET", &target, &[], b"", Duration::from_secs(60));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_bytes_eq(&r.body, &want, "second read, seeder stopped");
    let r = d.req(
        "GET",
        &target,
        &[("Range", "bytes=30000000-30999999")],
        b"",
        Duration::from_secs(30),
    );
    assert_eq!(r.status, 206);
    assert_bytes_eq(
        &r.body,
        &want[30_000_000..31_000_000],
        "a range, seeder stopped",
    );
}

/// (b) With an 8 MiB cache the 64 MiB file streams correctly twice in a row, and the cache
/// dir never exceeds capacity + one reader's 32 MiB lookahead + 2 MiB of in-flight pieces.
#[test]
fn cache_of_8mib_streams_64mib_twice_within_the_disk_bound() {
    let _g = serial();
    let s = swarm();
    let want = s.payload("big.bin");
    let d = Daemon::start(&["-torrentGrace=1s", "-cacheCapacity=8MiB"]);
    let target = format!("/data?magnet={}&path=big.bin", qenc(&s.magnet("single")));
    let sampler = DirSampler::start(d.data_dir.join("cache"));
    for round in 1..=2 {
        let r = d.get(&target);
        assert_eq!(r.status, 200, "read {round}: {}", r.text());
        assert_bytes_eq(&r.body, &want, &format!("read {round} with an 8 MiB cache"));
    }
    // A range in the middle after the streams, when its pieces have long been evicted.
    let r = d.get_h(&target, &[("Range", "bytes=20000000-20999999")]);
    assert_eq!(r.status, 206);
    assert_bytes_eq(
        &r.body,
        &want[20_000_000..21_000_000],
        "a range after eviction",
    );
    let max = sampler.stop();
    let bound = 8 * MIB + 32 * MIB + 2 * MIB;
    eprintln!(
        "cache dir max {:.1} MiB (bound {} MiB)",
        max as f64 / MIB as f64,
        bound / MIB
    );
    assert!(
        max <= bound,
        "cache dir reached {max} bytes ({:.1} MiB), over the bound {bound} (8 MiB + 32 MiB + 2 MiB)",
        max as f64 / MIB as f64
    );
    assert!(
        max > 0,
        "the sampler never saw the cache dir grow: wrong path?"
    );
    d.assert_healthy();
}

/// (c) Restart on the same data dir with the seeder stopped (and trackers off): `/info`
/// answers at once and the cached pieces are served byte-exact.
#[test]
fn restart_with_the_seeder_stopped_serves_cached_pieces_and_info_at_once() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("single");
    let want = s.payload("big.bin");
    let mut d = Daemon::start(&["-torrentGrace=1s", "-cacheCapacity=1GiB"]);
    let r = d.get(&format!(
        "/data?magnet={}&path=big.bin",
        qenc(&s.magnet("single"))
    ));
    assert_bytes_eq(&r.body, &want, "read before the restart");

    let _seed1 = s.stop_seeder("seed1");
    // No tracker announces either: whatever is served now can only come from the data dir.
    d.restart(&["-disableTrackers"]);

    let t0 = Instant::now();
    let r = d.req(
        "GET",
        &format!("/info?ih={ih}"),
        &[],
        b"",
        Duration::from_secs(10),
    );
    let took = t0.elapsed();
    assert_eq!(r.status, 200, "/info after restart: {}", r.text());
    assert_eq!(sha1_hex(&r.body), ih, "/info after restart");
    assert!(
        took < Duration::from_secs(1),
        "/info took {took:?} after the restart (limit 1 s)"
    );

    let r = d.req(
        "GET",
        &format!("/data?ih={ih}&path=big.bin"),
        &[],
        b"",
        Duration::from_secs(90),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_bytes_eq(&r.body, &want, "cached big.bin after the restart");
}

/// An unclean stop (SIGKILL in the middle of a download) never makes the cache serve wrong
/// bytes after a restart: only verified pieces are trusted.
#[test]
fn restart_after_kill9_mid_download_serves_byte_exact() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("single");
    let want = s.payload("big.bin");
    let mut d = Daemon::start(&["-torrentGrace=1s", "-cacheCapacity=1GiB"]);
    d.post_metainfo(&s.torrent_bytes("single"), &ih);
    // Start a full read on a raw socket, read some of it, then kill the daemon under it.
    let mut sock = common::send_get(d.port, &format!("/data?ih={ih}&path=big.bin")).expect("GET");
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(60);
    while got < 8 * MIB as usize && Instant::now() < deadline {
        match std::io::Read::read(&mut sock, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(
        got > MIB as usize,
        "only {got} bytes arrived before the kill"
    );
    let before = dir_size(&d.data_dir.join("cache"));
    d.kill9();
    drop(sock);
    assert!(before > 0, "nothing cached before the kill");

    d.restart(&[]);
    let r = d.req(
        "GET",
        &format!("/data?ih={ih}&path=big.bin"),
        &[],
        b"",
        Duration::from_secs(120),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_bytes_eq(&r.body, &want, "big.bin after kill -9 and restart");
}
