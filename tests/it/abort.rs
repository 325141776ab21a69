//! Issue 3, test 7: clients that go away mid-stream release their torrent reference, so the
//! torrent leaves the session one grace period after the last of them.

use crate::common;

use std::{
    thread,
    time::{Duration, Instant},
};

use common::{abort_one, assert_bytes_eq, qenc, serial, swarm, Daemon};

const DROPPED: &str = "torrent dropped";
const ABORTS: usize = 100;
const THREADS: usize = 4;

#[test]
fn aborting_100_streams_mid_way_leaves_no_reference_held() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("single");
    let want = s.payload("big.bin");
    let d = Daemon::start(&["-torrentGrace=1s", "-cacheCapacity=1GiB"]);
    let magnet = qenc(&s.magnet("single"));

    // Mixed aborts: before any answer, after the headers and a little body, deep into the body,
    // from different offsets (some not downloaded yet).
    let started = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let port = d.port;
            let (magnet, ih) = (magnet.clone(), ih.clone());
            thread::spawn(move || -> Result<(), String> {
                for i in (t..ABORTS).step_by(THREADS) {
                    let (target, keep) = match i % 4 {
                        0 => (format!("/data?magnet={magnet}&path=big.bin"), 0),
                        1 => (format!("/data?magnet={magnet}&path=big.bin"), 8 * 1024),
                        2 => (format!("/data?magnet={magnet}&path=big.bin"), 2 << 20),
                        _ => (format!("/data/infohash/{ih}/big.bin?x={i}"), 4 * 1024),
                    };
                    abort_one(port, &target, keep).map_err(|e| format!("abort #{i}: {e}"))?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join()
            .expect("abort thread panicked")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let drops_before = d.log_count(DROPPED);
    let aborted_in = started.elapsed();

    // One grace period (1 s) after the last abort the torrent must leave the session.
    let t0 = Instant::now();
    assert!(
        d.wait_log_count(DROPPED, drops_before, Duration::from_secs(15)),
        "torrent not dropped within 15 s after {ABORTS} aborted requests (aborts took {aborted_in:?}): \
         a reference is still held"
    );
    eprintln!(
        "{ABORTS} aborts in {aborted_in:?}; dropped {:?} after the last",
        t0.elapsed()
    );

    // And the daemon still serves, from the start.
    d.assert_healthy();
    let r = d.get_h(
        &format!("/data?magnet={magnet}&path=big.bin"),
        &[("Range", "bytes=0-1048575")],
    );
    assert_eq!(r.status, 206, "{}", r.text());
    assert_bytes_eq(&r.body, &want[..1 << 20], "first MiB after the aborts");
}
