use super::*;
use std::os::unix::fs::{FileExt, MetadataExt};

/// Test pieces are one file-system block, so that a punched hole frees them.
const PL: u64 = 4096;

fn stage(cache: &PieceCache, name: &str, data: &[u8]) -> PathBuf {
    let p = cache.staging_root().join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// Stores `piece` of `ih`, filled with `fill`, through a staging file.
fn store(cache: &PieceCache, ih: Ih, piece: u32, fill: u8) {
    let p = stage(cache, &format!("s{piece}"), &[fill; PL as usize]);
    cache
        .store(Key { ih, piece }, u64::from(piece) * PL, &p, PL)
        .unwrap();
    assert!(!p.exists(), "the staging file is consumed");
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "confluence-cache-test-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Bytes the data files hold (allocated blocks: holes do not count).
fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("pieces"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .map(|p| std::fs::metadata(p).unwrap().blocks() * 512)
        .sum()
}

#[test]
fn eviction_frees_bytes_and_respects_capacity() {
    let dir = tmpdir("evict");
    let evicted = Arc::new(Mutex::new(Vec::new()));
    let ev = evicted.clone();
    let cache = PieceCache::open(
        &dir,
        Some(4 * PL),
        Arc::new(move |e| {
            if let CacheEvent::Evicted(k) = e {
                ev.lock().push(k.piece)
            }
        }),
    )
    .unwrap();
    let ih = [1u8; 20];
    for piece in 0..10u32 {
        store(&cache, ih, piece, piece as u8);
        assert!(
            disk_bytes(&dir) <= 4 * PL,
            "disk over capacity after piece {piece}"
        );
    }
    let u = cache.usage();
    assert!(u.indexed_bytes <= 4 * PL);
    assert!(!evicted.lock().is_empty());
    // The newest piece is there and reads back; an evicted one is a miss, not zeros.
    let mut buf = [0u8; 10];
    assert!(cache.read(Key { ih, piece: 9 }, 5, &mut buf, true).unwrap());
    assert_eq!(buf, [9u8; 10]);
    assert!(!cache.read(Key { ih, piece: 0 }, 0, &mut buf, true).unwrap());
    // A read past the piece is an error, not bytes of the next one.
    assert!(cache
        .read(Key { ih, piece: 9 }, PL - 5, &mut buf, true)
        .is_err());
    drop(cache);
    // The log agrees with the index after a restart.
    let cache = PieceCache::open(&dir, Some(4 * PL), Arc::new(|_| {})).unwrap();
    let have = cache.have_pieces(ih, 10);
    assert_eq!(have, (0..10).map(|p| p >= 6).collect::<Vec<_>>());
    assert!(cache.read(Key { ih, piece: 7 }, 0, &mut buf, true).unwrap());
    assert_eq!(buf, [7u8; 10]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_running_cache_compacts_its_logs() {
    let dir = tmpdir("compact");
    let ih = [7u8; 20];
    let log = dir.join("pieces").join(format!("{}.log", hex::encode(ih)));
    let n = 2200u32; // a '+' and a '-' line each: past one compaction
    {
        let cache = PieceCache::open(&dir, Some(4 * PL), Arc::new(|_| {})).unwrap();
        for piece in 0..n {
            store(&cache, ih, piece, piece as u8);
        }
        let lines = std::fs::read_to_string(&log).unwrap().lines().count();
        assert!(lines < 2 * 200, "log not compacted: {lines} lines");
    }
    let cache = PieceCache::open(&dir, Some(4 * PL), Arc::new(|_| {})).unwrap();
    let have = cache.have_pieces(ih, n);
    assert_eq!(have.iter().filter(|&&h| h).count(), 4);
    assert!(have[n as usize - 4..].iter().all(|&h| h));
    let mut buf = [0u8; 8];
    assert!(cache
        .read(Key { ih, piece: n - 1 }, 0, &mut buf, false)
        .unwrap());
    assert_eq!(buf, [(n - 1) as u8; 8]);
    assert_eq!(disk_bytes(&dir), 4 * PL);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pinned_pieces_survive_until_the_window_passes() {
    let dir = tmpdir("pin");
    let cache = PieceCache::open(&dir, Some(2 * PL), Arc::new(|_| {})).unwrap();
    let ih = [2u8; 20];
    let w = cache.open_window(ih);
    cache.set_window(ih, w, 0..8);
    for piece in 0..8u32 {
        store(&cache, ih, piece, piece as u8);
    }
    // All eight are held although the capacity is two pieces.
    assert!((0..8).all(|piece| cache.contains(Key { ih, piece })));
    assert_eq!(cache.usage().pinned_pieces, 8);
    // The reader moves on: what it passed becomes evictable.
    cache.set_window(ih, w, 6..8);
    assert!(cache.contains(Key { ih, piece: 6 }));
    assert!(cache.usage().indexed_bytes <= 2 * PL);
    cache.close_window(ih, w);
    assert_eq!(cache.usage().pinned_pieces, 0);
    assert!(disk_bytes(&dir) <= 2 * PL);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_piece_stored_again_keeps_its_bytes() {
    // A second copy of a piece goes to the same place: neither replacing the first in the
    // index nor evicting it may punch the second one's bytes.
    let dir = tmpdir("again");
    let cache = PieceCache::open(&dir, Some(3 * PL), Arc::new(|_| {})).unwrap();
    let ih = [5u8; 20];
    store(&cache, ih, 0, 0xaa);
    let first = cache.lookup(Key { ih, piece: 0 }).unwrap();
    store(&cache, ih, 0, 0xaa);
    // A reader that looked the first copy up may still read it: the bytes are the same.
    assert!(!first.dropped.load(Ordering::SeqCst));
    let w = cache.open_window(ih);
    cache.set_window(ih, w, 0..1);
    store(&cache, ih, 0, 0xaa); // pinned: the indexed copy goes
    for piece in 1..8u32 {
        store(&cache, ih, piece, piece as u8);
    }
    let mut buf = [0u8; 16];
    assert!(cache
        .read(Key { ih, piece: 0 }, 100, &mut buf, false)
        .unwrap());
    assert_eq!(buf, [0xaau8; 16]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pieces_in_memory_are_stored_by_the_writer() {
    let dir = tmpdir("writer");
    let ih = [4u8; 20];
    let done = Arc::new(AtomicU64::new(0));
    {
        let cache = PieceCache::open(&dir, None, Arc::new(|_| {})).unwrap();
        for piece in 0..4u32 {
            let mut buf = cache.piece_buffer(1000).expect("within budget");
            buf.fill(piece as u8 + 1);
            let d = done.clone();
            let done = Box::new(move || {
                d.fetch_add(1, Ordering::SeqCst);
            });
            cache.store_bytes(
                Key { ih, piece },
                u64::from(piece) * 1000,
                Arc::new(buf),
                done,
            );
        }
        assert!(cache.flush(Duration::from_secs(10)), "queue not drained");
        assert_eq!(done.load(Ordering::SeqCst), 4);
        assert!((0..4).all(|piece| !cache.is_writing(Key { ih, piece })));
        let mut buf = [0u8; 10];
        assert!(cache
            .read(Key { ih, piece: 2 }, 990, &mut buf, false)
            .unwrap());
        assert_eq!(buf, [3u8; 10]);
    }
    // On disk: a new process finds them.
    let cache = PieceCache::open(&dir, None, Arc::new(|_| {})).unwrap();
    assert_eq!(
        cache.have_pieces(ih, 5),
        vec![true, true, true, true, false]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rescan_trusts_the_log_and_drops_staging() {
    let dir = tmpdir("rescan");
    let ih = [3u8; 20];
    {
        let cache = PieceCache::open(&dir, None, Arc::new(|_| {})).unwrap();
        for piece in 0..3u32 {
            store(&cache, ih, piece, 7);
        }
        stage(&cache, "half-written", &[1u8; 10]);
    }
    // Bytes written past the logged pieces (a crash before the log line) and a torn last
    // line are not trusted; neither is an old one-file-per-piece directory.
    let data = dir.join("pieces").join(format!("{}.data", hex::encode(ih)));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .write_all_at(&[9u8; PL as usize], 3 * PL)
        .unwrap();
    let log = data.with_extension("log");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("+ 3 12288 40");
    std::fs::write(&log, text).unwrap();
    let old = dir.join("pieces").join(hex::encode([6u8; 20]));
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("0.1"), b"old layout").unwrap();

    let cache = PieceCache::open(&dir, None, Arc::new(|_| {})).unwrap();
    assert_eq!(cache.have_pieces(ih, 4), vec![true, true, true, false]);
    assert!(!old.exists(), "old layout kept");
    assert_eq!(disk_bytes(&dir), 3 * PL, "unlogged bytes not freed");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().lines().count(),
        3,
        "log not compacted"
    );
    // Only the new pool's empty spare files are left in staging.
    let left: Vec<_> = std::fs::read_dir(cache.staging_root())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("spare")]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_window_moving_past_a_piece_being_stored_never_loses_it() {
    // A reader's window sweeps over the pieces while they are stored (twice each, the second
    // copy replacing the first): however a release interleaves with a store, every piece
    // ends up readable, pinned or indexed.
    let dir = tmpdir("sweep");
    let cache = PieceCache::open(&dir, None, Arc::new(|_| {})).unwrap();
    let ih = [6u8; 20];
    const N: u32 = 3000;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sweeper = {
        let (cache, stop) = (cache.clone(), stop.clone());
        std::thread::spawn(move || {
            let w = cache.open_window(ih);
            while !stop.load(Ordering::Relaxed) {
                for i in (0..N).step_by(3) {
                    cache.set_window(ih, w, i..i + 2);
                }
            }
            cache.close_window(ih, w);
        })
    };
    let bytes = [0x5au8; PL as usize];
    for piece in 0..N {
        for _ in 0..2 {
            cache
                .store_slice(Key { ih, piece }, u64::from(piece) * PL, &bytes)
                .unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    sweeper.join().unwrap();
    let lost: Vec<u32> = (0..N)
        .filter(|&piece| {
            let mut buf = [0u8; 8];
            !cache.read(Key { ih, piece }, 0, &mut buf, false).unwrap()
        })
        .collect();
    assert!(lost.is_empty(), "pieces lost: {lost:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
