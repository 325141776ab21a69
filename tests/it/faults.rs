//! Issue 7: faults, with real processes on loopback. The daemon always runs with `-dht=false`.
//!
//! The eight faults: a seeder killed mid-stream while a second one exists (1), a corrupt seeder
//! (2), `kill -9` of the daemon mid-download (3), a storm of aborted requests over HTTP and FUSE
//! (4), a cache smaller than a file with several readers (5), a full disk (6), load on cached
//! data (7), no seeders at all (8). Every test holds `serial()`, and seeders are stopped or
//! started only through guards that restore the swarm (seed1 running, seed2 and corrupt
//! stopped) even when an assertion fails.
//!
//! The CI variants keep this file to about three minutes. `CONFLUENCE_LONG_TESTS=1` runs the long
//! ones (1000 aborts of each kind, load for 30 s, more readers).

use crate::common;

use std::{
    collections::BTreeSet,
    fs,
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    os::unix::fs::FileExt,
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use common::{
    assert_bytes_eq, assert_no_panic, assert_one_line, bdecode,
    disk::{fill, Tmpfs},
    fuse::{can_mount, exited, ghost_torrent, Fuse},
    metric, qenc, random_ih, serial, sha1_hex, swarm, temp_dir, vm_rss, wait_until, Daemon,
    DirSampler, Swarm, TorrentFile, MIB,
};

const DROPPED: &str = "torrent dropped";

fn long() -> bool {
    std::env::var("CONFLUENCE_LONG_TESTS").is_ok_and(|v| v == "1")
}

// ------------------------------------------------------------------------------------------
// Helpers

/// A small xorshift generator; the seed is printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn new(tag: &str) -> Rng {
        let seed = std::env::var("CONFLUENCE_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
                    | 1
            });
        eprintln!("{tag}: CONFLUENCE_TEST_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// A GET whose body is read bit by bit (to act at a chosen point of a stream).
struct Body {
    s: TcpStream,
    pending: Vec<u8>,
    status: u16,
    len: u64,
}

impl Body {
    fn open(port: u16, target: &str) -> Body {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.write_all(
            format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .expect("send");
        let mut head = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        let end = loop {
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            match s.read(&mut buf) {
                Ok(0) => panic!("{target}: connection closed before the head"),
                Ok(n) => head.extend_from_slice(&buf[..n]),
                Err(e) => panic!("{target}: reading the head: {e}"),
            }
        };
        let text = String::from_utf8_lossy(&head[..end]).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let len = text
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        Body {
            s,
            pending: head[end + 4..].to_vec(),
            status,
            len,
        }
    }

    /// Reads until `n` more bytes arrived, the server closed, or `limit` passed.
    fn read(&mut self, n: usize, limit: Duration) -> Vec<u8> {
        let deadline = Instant::now() + limit;
        let mut out = std::mem::take(&mut self.pending);
        let mut buf = vec![0u8; 256 * 1024];
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            match self.s.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => out.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if out.len() > n {
            self.pending = out.split_off(n);
        }
        out
    }
}

/// The SHA-1 of every piece, from the raw info dict.
fn piece_hashes(t: &TorrentFile) -> Vec<[u8; 20]> {
    let info = bdecode(&t.info).expect("info");
    info.get("pieces")
        .and_then(|p| p.bytes())
        .expect("pieces")
        .chunks(20)
        .map(|c| c.try_into().unwrap())
        .collect()
}

/// Checks every piece the cache's log lists for torrent `ih` (see cache/src/index/disk.rs)
/// against its hash, reading it from the torrent's data file. Returns the pieces found; panics
/// naming any whose bytes are not the verified piece.
fn verify_cache(data_dir: &Path, ih: &str, hashes: &[[u8; 20]]) -> BTreeSet<u32> {
    let dir = data_dir.join("cache").join("pieces");
    let log = fs::read_to_string(dir.join(format!("{ih}.log"))).unwrap_or_default();
    let mut live = std::collections::BTreeMap::new();
    for line in log.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| f.get(i).and_then(|n| n.parse::<u64>().ok());
        match (f.first(), num(1), num(2), num(3), num(4)) {
            (Some(&"+"), Some(piece), Some(offset), Some(len), Some(_time)) => {
                live.insert(piece as u32, (offset, len));
            }
            (Some(&"-"), Some(piece), ..) => {
                live.remove(&(piece as u32));
            }
            _ => {} // a line being appended
        }
    }
    let mut bad = Vec::new();
    if !live.is_empty() {
        let data = fs::File::open(dir.join(format!("{ih}.data"))).expect("data file");
        for (&piece, &(offset, len)) in &live {
            let mut bytes = vec![0u8; len as usize];
            if let Err(e) = data.read_exact_at(&mut bytes, offset) {
                bad.push(format!("piece {piece}: {e}"));
                continue;
            }
            let want = hashes.get(piece as usize).map(hex::encode);
            if Some(sha1_hex(&bytes)) != want {
                bad.push(format!(
                    "piece {piece}: {len} bytes at {offset}, wrong hash"
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "unverified data in the piece cache {}: {bad:?}",
        dir.display()
    );
    live.into_keys().collect()
}

/// How many threads process `pid` has.
fn threads(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// VmRSS of `pid` once it is idle again: a burst leaves tokio blocking threads behind (each
/// with its stack and, with glibc, an arena) that exit after 10 s without work. Waits (at most
/// 30 s) for the thread count to come back to about what it was at `threads_at_start`.
fn idle_rss(pid: u32, threads_at_start: usize) -> u64 {
    let idle = wait_until(Duration::from_secs(30), || {
        threads(pid) <= threads_at_start + 2
    });
    if !idle {
        eprintln!(
            "still {} threads (at start: {threads_at_start})",
            threads(pid)
        );
    }
    vm_rss(pid)
}

/// A log line without its ANSI colours.
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

fn single_target(s: &Swarm) -> String {
    format!("/data?magnet={}&path=big.bin", qenc(&s.magnet("single")))
}

// ------------------------------------------------------------------------------------------
// 1. A seeder killed mid-stream while a second seeder of the same torrent exists

#[test]
fn f1_seeder_killed_mid_stream_the_second_seeder_finishes_it() {
    let _g = serial();
    let s = swarm();
    let want = s.payload("big.bin");
    let _seed2 = s.start_seeder("seed2");
    let d = Daemon::start(&["-torrentGrace=1s", "-cacheCapacity=1GiB", "-debugOnMain"]);
    let t0 = Instant::now();
    let mut body = Body::open(d.port, &single_target(s));
    assert_eq!(
        (body.status, body.len),
        (200, want.len() as u64),
        "head of the stream"
    );
    let mut got = body.read(4 << 20, Duration::from_secs(60));
    assert_eq!(got.len(), 4 << 20, "the first 4 MiB");
    // The client pauses: librqbit fetches its 32 MiB window ahead, and no further.
    thread::sleep(Duration::from_millis(500));
    let cached = metric(&d, "confluence_cache_pieces");
    let _seed1 = s.kill_seeder("seed1");
    eprintln!(
        "seed1 killed after {:?}, {cached} of 256 pieces cached",
        t0.elapsed()
    );
    assert!(
        cached < 256.0,
        "the whole file was there before the kill: not a mid-stream kill"
    );
    got.extend(body.read(want.len(), Duration::from_secs(180)));
    assert_bytes_eq(
        &got,
        &want,
        "big.bin, seed1 SIGKILLed mid-stream, seed2 alive",
    );
    eprintln!(
        "64 MiB verified in {:?}; {} pieces came after the kill",
        t0.elapsed(),
        256 - cached as u64
    );
    d.assert_healthy();
    assert_no_panic(&d);
}

// ------------------------------------------------------------------------------------------
// 2. A corrupt seeder: no corrupt byte is ever served; the piece comes again from a good peer

#[test]
fn f2_corrupt_seeder_never_gets_a_bad_byte_served() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("single");
    let want = s.payload("big.bin");
    let t = s.torrent("single");
    let hashes = piece_hashes(&t);
    let pl = t.piece_length as usize;
    let d = Daemon::start(&["-torrentGrace=1s", "-cacheCapacity=1GiB", "-debugOnMain"]);
    d.post_metainfo(&s.torrent_bytes("single"), &ih);
    let target = format!("/data?ih={ih}&path=big.bin");
    let t0 = Instant::now();
    let _corrupt = s.start_seeder("corrupt");
    // (Written when the corrupt seeder starts.)
    let corrupt: Vec<usize> = fs::read_to_string(s.dir.join("corrupt").join("pieces"))
        .expect("corrupt/pieces")
        .split_whitespace()
        .map(|p| p.parse().expect("piece index"))
        .collect();
    assert!(corrupt.contains(&0), "{corrupt:?}");
    {
        // The corrupt seeder alone: its good pieces are served, its bad ones never are.
        let _seed1 = s.stop_seeder("seed1");
        let r = d.get_h(&target, &[("Range", "bytes=262144-524287")]);
        assert_eq!(
            r.status,
            206,
            "piece 1 from the corrupt seeder: {}",
            r.text()
        );
        assert_bytes_eq(
            &r.body,
            &want[pl..2 * pl],
            "piece 1 (good on the corrupt seeder)",
        );
        match common::try_request(
            d.port,
            "GET",
            &target,
            &[("Range", "bytes=0-262143")],
            b"",
            Duration::from_secs(15),
        ) {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(e) => panic!("piece 0 with only the corrupt seeder: {e}"),
            Ok(r) => {
                assert_eq!(r.status, 206, "{}", r.text());
                assert_bytes_eq(&r.body, &want[..pl], "piece 0 with only the corrupt seeder");
                panic!("piece 0 was served although only the corrupt seeder has it");
            }
        }
        assert!(
            d.wait_log_count("did not validate", 0, Duration::from_secs(30)),
            "no hash failure in the log: the corrupt seeder's piece 0 never arrived"
        );
        let fail = d
            .log()
            .lines()
            .find(|l| l.contains("did not validate"))
            .map(plain)
            .unwrap_or_default();
        assert!(
            fail.contains("127.0.0.4"),
            "hash failure not from the corrupt seeder: {fail}"
        );
        eprintln!("corrupt piece rejected after {:?}: {fail}", t0.elapsed());
        verify_cache(&d.data_dir, &ih, &hashes);
    }
    // seed1 is back (and the corrupt seeder still up): every piece, the corrupt ones included,
    // comes right, from the good peer.
    let r = d.req("GET", &target, &[], b"", Duration::from_secs(240));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_bytes_eq(
        &r.body,
        &want,
        "big.bin with the corrupt seeder in the swarm",
    );
    for p in &corrupt {
        let at = p * pl + 1000;
        assert_eq!(r.body[at], want[at], "byte 1000 of corrupt piece {p}");
    }
    let cached = verify_cache(&d.data_dir, &ih, &hashes);
    assert_eq!(cached.len(), 256, "every piece cached and verified");
    eprintln!(
        "64 MiB verified with the corrupt seeder in the swarm, {:?} in all; {} hash failures logged",
        t0.elapsed(),
        d.log_count("did not validate")
    );
    d.assert_healthy();
    assert_no_panic(&d);
}

// ------------------------------------------------------------------------------------------
// 3. kill -9 of the daemon mid-download, then a restart

#[test]
fn f3_kill9_mid_download_then_only_verified_bytes_are_served() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("single");
    let want = s.payload("big.bin");
    let t = s.torrent("single");
    let hashes = piece_hashes(&t);
    let pl = t.piece_length;
    let dir = temp_dir("kill9");
    let mut d = Daemon::start_in(
        &dir,
        &["-torrentGrace=1s", "-cacheCapacity=1GiB", "-debugOnMain"],
    );
    // A magnet: the metainfo comes from peers and must be stored by the time bytes flow.
    let mut body = Body::open(d.port, &single_target(s));
    assert_eq!(body.status, 200);
    let got = body.read(8 << 20, Duration::from_secs(60));
    assert_eq!(got.len(), 8 << 20);
    assert_bytes_eq(&got, &want[..8 << 20], "the first 8 MiB");
    d.kill9();
    drop(body);

    // Only verified pieces are in the cache, and the metainfo is stored.
    let before = verify_cache(&dir, &ih, &hashes);
    assert!(
        before.len() >= 32,
        "only {} pieces cached before the kill",
        before.len()
    );
    assert!(
        dir.join("torrents").join(format!("{ih}.torrent")).is_file(),
        "metainfo not stored"
    );
    // What a crash in the middle of a piece leaves behind: chunks in a staging file.
    let junk_dir = dir.join("cache").join("staging").join("spare");
    fs::create_dir_all(&junk_dir).unwrap();
    let uncached = (0..256u32)
        .find(|p| !before.contains(p))
        .expect("an uncached piece");
    fs::write(
        junk_dir.join(uncached.to_string()),
        vec![0xa5u8; pl as usize],
    )
    .unwrap();

    // Restart with no way to reach a peer: whatever is served comes from the data dir.
    d.restart(&["-disableTrackers"]);
    let r = d.req(
        "GET",
        &format!("/info?ih={ih}&nowait=1"),
        &[],
        b"",
        Duration::from_secs(10),
    );
    assert_eq!(r.status, 200, "/info after kill -9: {}", r.text());
    assert_eq!(sha1_hex(&r.body), ih, "/info after kill -9");
    // Wiped at start: what may be there now are the new process's own empty spare files.
    let mut staged_bytes = 0;
    common::walk(&dir.join("cache").join("staging"), &mut |p| {
        if p.is_file() {
            staged_bytes += fs::metadata(p).map_or(0, |m| m.len());
        }
    });
    assert_eq!(staged_bytes, 0, "staging not wiped at start");
    assert_eq!(
        metric(&d, "confluence_cache_pieces") as usize,
        before.len(),
        "pieces indexed after the restart"
    );
    let target = format!("/data?ih={ih}&path=big.bin");
    for &p in &before {
        let (a, b) = (u64::from(p) * pl, u64::from(p + 1) * pl - 1);
        let r = d.req(
            "GET",
            &target,
            &[("Range", &format!("bytes={a}-{b}"))],
            b"",
            Duration::from_secs(10),
        );
        assert_eq!(r.status, 206, "cached piece {p}: {}", r.text());
        assert_bytes_eq(
            &r.body,
            &want[a as usize..=b as usize],
            &format!("cached piece {p} after kill -9"),
        );
    }
    // The half-written piece is not trusted: without peers it is not served at all.
    let (a, b) = (u64::from(uncached) * pl, u64::from(uncached + 1) * pl - 1);
    match common::try_request(
        d.port,
        "GET",
        &target,
        &[("Range", &format!("bytes={a}-{b}"))],
        b"",
        Duration::from_secs(3),
    ) {
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
        other => panic!("piece {uncached} (only junk in staging) was answered: {other:?}"),
    }
    let served = before.len() as u64 * pl;

    // With peers again, the rest arrives and everything is right.
    d.stop();
    let mut d = Daemon::start_in(
        &dir,
        &["-torrentGrace=1s", "-cacheCapacity=1GiB", "-debugOnMain"],
    );
    let r = d.req("GET", &target, &[], b"", Duration::from_secs(180));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_bytes_eq(&r.body, &want, "big.bin after kill -9 and two restarts");
    assert_eq!(verify_cache(&dir, &ih, &hashes).len(), 256);
    eprintln!(
        "kill -9 after 8 MiB: {} pieces survived ({} MiB served from them without peers), then 64 MiB verified",
        before.len(),
        served >> 20
    );
    assert_no_panic(&d);
    d.stop();
    let _ = fs::remove_dir_all(&dir);
}

// ------------------------------------------------------------------------------------------
// 4. A disconnect storm, HTTP and FUSE

#[test]
fn f4_disconnect_storm_leaves_no_stream_no_reference_no_memory() {
    let _g = serial();
    let s = swarm();
    let single = s.ih("single");
    let multi = s.ih("multi");
    let (n_http, n_fuse, max_keep) = if long() {
        (1000, 1000, 4 << 20)
    } else {
        (150, 100, 1 << 20)
    };
    let fuse = can_mount("f4 (FUSE half)");
    let args = ["-torrentGrace=1s", "-cacheCapacity=16MiB", "-debugOnMain"];
    // With a mount when this machine can mount; the HTTP half runs either way.
    let (fuse_guard, d_http): (Option<Fuse>, Option<Daemon>) = if fuse {
        (Some(Fuse::start(&args)), None)
    } else {
        (None, Some(Daemon::start(&args)))
    };
    let d: &Daemon = match (&fuse_guard, &d_http) {
        (Some(f), _) => &f.daemon,
        (_, Some(d)) => d,
        _ => unreachable!(),
    };
    let pid = d.pid().expect("pid");
    let threads_at_start = threads(pid);
    d.post_metainfo(&s.torrent_bytes("single"), &single);
    d.post_metainfo(&s.torrent_bytes("multi"), &multi);
    let mut rng = Rng::new("f4");

    let storm = |n_http: usize, n_fuse: usize, seed: u64| -> Duration {
        let t0 = Instant::now();
        let mut handles = Vec::new();
        for t in 0..8u64 {
            let port = d.port;
            let (single, multi) = (single.clone(), multi.clone());
            handles.push(thread::spawn(move || -> Result<(), String> {
                let mut rng = Rng(seed ^ (t + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                for i in (t as usize..n_http).step_by(8) {
                    // (target, its size)
                    let (target, size) = match rng.below(4) {
                        0 => (format!("/data?ih={single}&path=big.bin"), 64 << 20),
                        1 => (format!("/data?ih={multi}"), 4_345_230),
                        2 => (format!("/data/infohash/{single}/big.bin?x={i}"), 64 << 20),
                        _ => (format!("/data?ih={multi}&path=z%20last.bin"), 1_048_583),
                    };
                    // Half of them from a random offset, where nothing may be cached yet.
                    let from = if rng.below(2) == 0 {
                        rng.below(size)
                    } else {
                        0
                    };
                    let range = format!("bytes={from}-");
                    let headers: &[(&str, &str)] =
                        if from > 0 { &[("Range", &range)] } else { &[] };
                    // Hang up before the head, in the body, or after up to `max_keep` of it.
                    let keep = rng.below((size - from).min(max_keep)) as usize;
                    common::abort_one_h(port, &target, headers, keep)
                        .map_err(|e| format!("abort #{i}: {e}"))?;
                }
                Ok(())
            }));
        }
        if let Some(f) = &fuse_guard {
            let file = f.path(&format!("{single}/big.bin"));
            let other = f.path(&format!("{multi}/with space/nested deeper/odd.bin"));
            for t in 0..4u64 {
                let (file, other) = (file.clone(), other.clone());
                handles.push(thread::spawn(move || -> Result<(), String> {
                    let mut rng = Rng(seed ^ (t + 101).wrapping_mul(0x2545_f491_4f6c_dd1d));
                    let mut buf = vec![0u8; 1 << 20];
                    for i in (t as usize..n_fuse).step_by(4) {
                        let (p, len) = if rng.below(3) == 0 {
                            (&other, 3_158_073)
                        } else {
                            (&file, 64 << 20)
                        };
                        let f = fs::File::open(p).map_err(|e| format!("fuse #{i}: open: {e}"))?;
                        // Open and close at once, or read a bit at a random offset, then close.
                        if rng.below(4) != 0 {
                            let off = rng.below(len);
                            let n = 1 + rng.below(buf.len() as u64) as usize;
                            f.read_at(&mut buf[..n], off)
                                .map_err(|e| format!("fuse #{i}: read at {off}: {e}"))?;
                        }
                        drop(f);
                    }
                    Ok(())
                }));
            }
        }
        for h in handles {
            h.join()
                .expect("storm thread panicked")
                .unwrap_or_else(|e| panic!("{e}"));
        }
        t0.elapsed()
    };

    let settled = |what: &str| {
        let ok = wait_until(Duration::from_secs(30), || {
            let m = common::metrics(d);
            m.get("confluence_open_readers") == Some(&0.0)
                && m.get("confluence_references") == Some(&0.0)
                && m.get("confluence_num_torrents") == Some(&0.0)
        });
        let m = common::metrics(d);
        assert!(
            ok,
            "{what}: 30 s after the storm, open_readers {:?}, references {:?}, torrents {:?}",
            m.get("confluence_open_readers"),
            m.get("confluence_references"),
            m.get("confluence_num_torrents")
        );
    };

    // A first storm of the same size warms up what a burst leaves for good without leaking:
    // the code pages it touches and the allocator's arenas. The second must not add to it.
    let n_fuse = if fuse { n_fuse } else { 0 };
    let warm = storm(n_http, n_fuse, rng.below(u64::MAX));
    settled("warm-up");
    eprintln!("warm-up storm in {warm:?}");
    let rss_before = idle_rss(pid, threads_at_start);
    let drops_before = d.log_count(DROPPED);
    let took = storm(n_http, n_fuse, rng.below(u64::MAX));
    let t_settle = Instant::now();
    settled("storm");
    assert!(
        d.log_count(DROPPED) > drops_before,
        "no torrent dropped after the storm"
    );
    let rss_after = idle_rss(pid, threads_at_start);
    eprintln!(
        "{n_http} HTTP + {n_fuse} FUSE aborts in {took:?}; streams and references back to 0 and torrents dropped {:?} later; \
         RSS {:.1} MiB before, {:.1} MiB after",
        t_settle.elapsed(),
        rss_before as f64 / MIB as f64,
        rss_after as f64 / MIB as f64
    );
    assert!(rss_before > 0 && rss_after > 0, "no VmRSS for pid {pid}");
    assert!(
        rss_after as f64 <= rss_before as f64 * 1.10,
        "RSS grew from {rss_before} to {rss_after} bytes (more than 10%)"
    );
    // And it still serves, right.
    let want = s.payload("big.bin");
    let r = d.get_h(
        &format!("/data?ih={single}&path=big.bin"),
        &[("Range", "bytes=40000000-41048575")],
    );
    assert_eq!(r.status, 206);
    assert_bytes_eq(
        &r.body,
        &want[40_000_000..41_048_576],
        "a range after the storm",
    );
    assert_no_panic(d);
}

// ------------------------------------------------------------------------------------------
// 5. Cache pressure: a cache smaller than one file, several readers at once

#[test]
fn f5_cache_smaller_than_a_file_with_several_readers() {
    let _g = serial();
    let s = swarm();
    let many = s.ih("many");
    let t = s.torrent("many");
    let readers: usize = if long() { 8 } else { 4 };
    let cache = 2 * MIB;
    let d = Daemon::start(&["-torrentGrace=1s", "-cacheCapacity=2MiB", "-debugOnMain"]);
    d.post_metainfo(&s.torrent_bytes("many"), &many);
    let sampler = DirSampler::start(d.data_dir.join("cache"));
    let t0 = Instant::now();
    // Each reader streams its own run of 4 MiB files, all at once; then all read one file.
    let files: Vec<String> = t.files.iter().map(|(p, _)| p.clone()).collect();
    let per = files.len() / readers;
    let run = |names: Vec<String>| {
        let port = d.port;
        let many = many.clone();
        thread::spawn(move || {
            names
                .into_iter()
                .map(|name| {
                    let r = common::request(
                        port,
                        "GET",
                        &format!("/data?ih={many}&path={name}"),
                        &[],
                        b"",
                        Duration::from_secs(180),
                    );
                    (name, r)
                })
                .collect::<Vec<_>>()
        })
    };
    let mut handles: Vec<_> = (0..readers)
        .map(|i| run(files[i * per..(i + 1) * per].to_vec()))
        .collect();
    handles.extend((0..readers).map(|_| run(vec![files[per / 2].clone()])));
    let mut bytes = 0u64;
    for h in handles {
        for (name, r) in h.join().expect("reader thread") {
            assert_eq!(r.status, 200, "{name}: {}", r.text());
            assert_bytes_eq(&r.body, &s.file_payload(&t, &name), &format!("many/{name}"));
            bytes += r.body.len() as u64;
        }
    }
    let max = sampler.stop();
    // The documented bound: capacity + each reader's window (here a whole 4 MiB file, as
    // librqbit's window stops at the end of the file) + the pieces being downloaded.
    let bound = cache + 2 * readers as u64 * (4 * MIB) + 2 * MIB;
    eprintln!(
        "{readers}+{readers} readers, {:.0} MiB verified in {:?} through a 2 MiB cache; cache dir max {:.1} MiB (bound {} MiB)",
        bytes as f64 / MIB as f64,
        t0.elapsed(),
        max as f64 / MIB as f64,
        bound / MIB
    );
    assert!(max > 0, "the sampler saw nothing");
    assert!(
        max <= bound,
        "cache dir reached {:.1} MiB, over the bound {} MiB",
        max as f64 / MIB as f64,
        bound / MIB
    );
    let u = common::metrics(&d);
    assert!(
        u["confluence_cache_bytes"] <= (cache + 2 * MIB) as f64,
        "cache holds {} bytes with no reader open",
        u["confluence_cache_bytes"]
    );
    d.assert_healthy();
    assert_no_panic(&d);
}

// ------------------------------------------------------------------------------------------
// 6. A full disk (a small tmpfs as the data dir)

#[test]
fn f6_disk_full_is_a_clear_error_and_the_service_recovers() {
    if !common::fuse::is_root(
        "f6_disk_full_is_a_clear_error_and_the_service_recovers",
        "mounting a tmpfs needs root",
    ) {
        return;
    }
    let _g = serial();
    let s = swarm();
    let ih = s.ih("single");
    let want = s.payload("big.bin");
    let hashes = piece_hashes(&s.torrent("single"));
    let fs_ = Tmpfs::mount("16m");
    let dir = fs_.0.join("data");
    let d = Daemon::start_in(
        &dir,
        &["-torrentGrace=1s", "-cacheCapacity=1GiB", "-debugOnMain"],
    );
    d.post_metainfo(&s.torrent_bytes("single"), &ih);
    let target = format!("/data?ih={ih}&path=big.bin");
    let filler = fs_.0.join("filler");
    fill(&filler, 64 << 10);

    // No room for a single piece: the client gets a clear error, not a hang or wrong bytes.
    let t0 = Instant::now();
    let r = d.req(
        "GET",
        &target,
        &[("Range", "bytes=0-1048575")],
        b"",
        Duration::from_secs(90),
    );
    eprintln!(
        "disk full: {} {:?} after {:?}",
        r.status,
        r.text(),
        t0.elapsed()
    );
    assert_eq!(r.status, 507, "disk full: {}", r.text());
    assert_one_line(&r, "disk full");
    assert!(
        r.text().contains("No space left on device"),
        "reason: {:?}",
        r.text()
    );
    assert!(
        d.log_count("No space left on device") > 0,
        "nothing in the log: {}",
        d.log_tail(20)
    );
    let storage_errors = d.log_count("No space left on device");
    verify_cache(&dir, &ih, &hashes);
    d.assert_healthy();

    // Space returns: the same request succeeds, with the right bytes.
    fs::remove_file(&filler).unwrap();
    let t1 = Instant::now();
    let r = d.req(
        "GET",
        &target,
        &[("Range", "bytes=0-1048575")],
        b"",
        Duration::from_secs(90),
    );
    assert_eq!(r.status, 206, "after space returned: {}", r.text());
    assert_bytes_eq(
        &r.body,
        &want[..1 << 20],
        "the first MiB once space returned",
    );

    // The cache itself fills the 16 MiB disk in the middle of a stream: the body stops short,
    // every byte sent is right, and the daemon keeps serving what it has.
    let mut body = Body::open(d.port, &target);
    let got = if body.status == 200 {
        body.read(want.len(), Duration::from_secs(120))
    } else {
        Vec::new()
    };
    assert!(
        got.len() < want.len(),
        "64 MiB fit on a 16 MiB disk? ({} bytes)",
        got.len()
    );
    assert_bytes_eq(
        &got,
        &want[..got.len()],
        "the part sent before the disk filled up",
    );
    let cached = verify_cache(&dir, &ih, &hashes);
    eprintln!(
        "disk filled mid-stream after {} of {} MiB ({} pieces cached, all verified); {} storage errors logged",
        got.len() >> 20,
        want.len() >> 20,
        cached.len(),
        d.log_count("No space left on device") - storage_errors
    );
    let r = d.req(
        "GET",
        &target,
        &[("Range", "bytes=0-1048575")],
        b"",
        Duration::from_secs(30),
    );
    assert_eq!(r.status, 206, "cached bytes on a full disk: {}", r.text());
    assert_bytes_eq(&r.body, &want[..1 << 20], "cached bytes on a full disk");
    eprintln!("recovered {:?} after space returned", t1.elapsed());
    d.assert_healthy();
    assert_no_panic(&d);
    drop(d);
}

// ------------------------------------------------------------------------------------------
// 7. Load: 200 clients on cached data

#[test]
fn f7_load_of_200_clients_on_cached_data() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("single");
    let want = Arc::new(s.payload("big.bin"));
    let clients = 200;
    let secs = if long() { 30 } else { 5 };
    let d = Daemon::start(&["-torrentGrace=1s", "-cacheCapacity=1GiB", "-debugOnMain"]);
    let r = d.get(&single_target(s));
    assert_bytes_eq(&r.body, &want, "warming the cache");
    let pid = d.pid().unwrap();
    let target = format!("/data?ih={ih}&path=big.bin");
    let run = |secs: u64, seed: u64| {
        let stop = Arc::new(AtomicBool::new(false));
        let (requests, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let errors = Arc::new(Mutex::new(Vec::<String>::new()));
        let handles: Vec<_> = (0..clients as u64)
            .map(|c| {
                let (stop, requests, bytes, errors, want, target) = (
                    stop.clone(),
                    requests.clone(),
                    bytes.clone(),
                    errors.clone(),
                    want.clone(),
                    target.clone(),
                );
                let port = d.port;
                thread::spawn(move || {
                    let mut rng = Rng(seed ^ (c + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                    while !stop.load(Ordering::Relaxed) {
                        let len = 1 + rng.below(256 << 10);
                        let a = rng.below(want.len() as u64 - len);
                        let range = format!("bytes={a}-{}", a + len - 1);
                        match common::try_request(
                            port,
                            "GET",
                            &target,
                            &[("Range", &range)],
                            b"",
                            Duration::from_secs(60),
                        ) {
                            Ok(r)
                                if r.status == 206
                                    && r.body == want[a as usize..(a + len) as usize] =>
                            {
                                requests.fetch_add(1, Ordering::Relaxed);
                                bytes.fetch_add(len, Ordering::Relaxed);
                            }
                            Ok(r) => errors.lock().unwrap().push(format!(
                                "{range}: {} ({} bytes)",
                                r.status,
                                r.body.len()
                            )),
                            Err(e) => errors.lock().unwrap().push(format!("{range}: {e}")),
                        }
                    }
                })
            })
            .collect();
        let mut rss_max = 0;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(secs) {
            rss_max = rss_max.max(vm_rss(pid));
            thread::sleep(Duration::from_millis(200));
        }
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().expect("client thread");
        }
        let errors = errors.lock().unwrap().clone();
        (
            requests.load(Ordering::Relaxed),
            bytes.load(Ordering::Relaxed),
            errors,
            rss_max,
        )
    };
    let mut rng = Rng::new("f7");
    // A short first round sets the baseline; the long one must not grow past it.
    let (_, _, errors, rss_warm) = run(2, rng.below(u64::MAX));
    assert!(errors.is_empty(), "warm-up: {errors:?}");
    let t0 = Instant::now();
    let (requests, bytes, errors, rss_max) = run(secs, rng.below(u64::MAX));
    let took = t0.elapsed();
    eprintln!(
        "{clients} clients for {secs} s: {requests} ranged requests, {:.0} MiB verified in {took:?}; \
         {} errors; RSS max {:.1} MiB (warm-up max {:.1} MiB)",
        bytes as f64 / MIB as f64,
        errors.len(),
        rss_max as f64 / MIB as f64,
        rss_warm as f64 / MIB as f64
    );
    assert!(
        errors.is_empty(),
        "{} failed requests, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(requests >= clients as u64, "only {requests} requests");
    // Memory stays bounded: the long round peaks about where the short one did.
    assert!(
        rss_max <= rss_warm + rss_warm / 2 + 32 * MIB,
        "RSS peaked at {rss_max} bytes, warm-up at {rss_warm}"
    );
    assert_eq!(metric(&d, "confluence_open_readers"), 0.0);
    d.assert_healthy();
    assert_no_panic(&d);
}

// ------------------------------------------------------------------------------------------
// 8. No seeders at all

#[test]
fn f8_no_seeders_requests_wait_nowait_answers_202_shutdown_is_prompt() {
    let _g = serial();
    let mut d = Daemon::start(&["-torrentGrace=1s", "-debugOnMain"]);
    let (torrent, ghost) = ghost_torrent();
    d.post_metainfo(&torrent, &ghost);
    let unknown = random_ih();

    // Requests wait, for as long as the client is willing to.
    for target in [
        format!("/data?ih={ghost}&path=ghost.bin"),
        format!("/info?ih={unknown}"),
        format!("/data?ih={unknown}&path=x"),
    ] {
        let t0 = Instant::now();
        match common::try_request(d.port, "GET", &target, &[], b"", Duration::from_secs(3)) {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            other => panic!("{target} without seeders answered: {other:?}"),
        }
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
    // `nowait` answers at once.
    for route in ["info", "metainfo"] {
        let t0 = Instant::now();
        let r = d.req(
            "GET",
            &format!("/{route}?ih={unknown}&nowait=1"),
            &[],
            b"",
            Duration::from_secs(5),
        );
        assert_eq!(
            (r.status, r.text().as_str()),
            (202, "info not ready\n"),
            "/{route} nowait"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "/{route} nowait took {:?}",
            t0.elapsed()
        );
    }
    // Shutdown with waiting requests (HTTP bodies, info waits) is prompt.
    let waiting: Vec<TcpStream> = (0..8)
        .map(|i| {
            let target = match i % 3 {
                0 => format!("/data?ih={ghost}&path=ghost.bin"),
                1 => format!("/info?ih={unknown}"),
                _ => format!("/data?ih={ghost}"),
            };
            common::send_get(d.port, &target).expect("waiting request")
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || metric(
            &d,
            "confluence_open_readers"
        ) >= 3.0),
        "the waiting readers never opened"
    );
    let pid = d.pid().expect("pid");
    let t0 = Instant::now();
    // SAFETY: `pid` is the daemon we started and have not reaped.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) }, 0);
    while !exited(pid) && t0.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(10));
    }
    let took = t0.elapsed();
    assert!(exited(pid), "daemon still running 10 s after SIGTERM");
    eprintln!("shutdown with 8 waiting requests took {took:?}");
    assert!(
        took < Duration::from_secs(3),
        "shutdown took {took:?} with requests waiting"
    );
    for mut w in waiting {
        w.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        // Closed (EOF or reset), not left hanging.
        match w.read_to_end(&mut buf) {
            Ok(_) => {}
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ),
                "a waiting client was left hanging after shutdown"
            ),
        }
    }
    d.stop();
    assert_no_panic(&d);
}
