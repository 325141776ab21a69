//! Issue 14, "Behaviour holes": a stuck add must not wedge a torrent; every client-driven
//! queue or store has a bound; `-maxPendingTorrents`; `-seed` seeds uploads at once.

mod common;

use std::{thread, time::Duration};

use common::{assert_bytes_eq, qenc, request, serial, swarm, Daemon};

/// A tracker nothing listens on: librqbit retries it for ever, so a magnet naming only it
/// never resolves.
const DEAD_TRACKER: &str = "http://127.0.0.1:9/announce";

fn dead_magnet(ih: &str) -> String {
    format!("magnet:?xt=urn:btih:{ih}&tr={}", qenc(DEAD_TRACKER))
}

/// GETs `target` on another thread (the request waits inside the daemon).
fn get_async(port: u16, target: String) -> thread::JoinHandle<common::Resp> {
    thread::spawn(move || request(port, "GET", &target, &[], b"", Duration::from_secs(60)))
}

/// Lets the magnet add start and checks the daemon still answers.
fn wait_for_resolve(d: &Daemon) {
    // The add starts when the request arrives; give librqbit time to enter its resolve.
    thread::sleep(Duration::from_secs(2));
    d.assert_healthy();
}

/// A magnet whose only tracker is dead holds the torrent's add; POSTing the .torrent must
/// let the waiting request and later ones be served.
#[test]
fn post_metainfo_unwedges_a_stuck_magnet_add() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("multi");
    let t = s.torrent("multi");
    let want = s.file_payload(&t, "dir/a.bin");
    let d = Daemon::start(&["-torrentGrace=2s"]);
    let target = format!("/data?magnet={}&path=dir/a.bin", qenc(&dead_magnet(&ih)));
    let waiting = get_async(d.port, target);
    wait_for_resolve(&d);
    d.post_metainfo(&s.torrent_bytes("multi"), &ih);
    let r = waiting.join().expect("request thread");
    assert_eq!(r.status, 200, "the waiting request: {}", r.text());
    assert_bytes_eq(&r.body, &want, "waiting request after POST /metainfo");
    let r = d.get(&format!("/data?ih={ih}&path=dir/b.bin"));
    assert_eq!(r.status, 200, "a later request: {}", r.text());
    assert_bytes_eq(&r.body, &s.file_payload(&t, "dir/b.bin"), "later request");
}

/// Same stuck add; a second request whose magnet names the working tracker must make the
/// new tracker take effect, and both requests are served.
#[test]
fn magnet_with_working_tracker_unwedges_a_stuck_magnet_add() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("multi");
    let t = s.torrent("multi");
    let d = Daemon::start(&["-torrentGrace=2s"]);
    let stuck = format!("/data?magnet={}&path=dir/a.bin", qenc(&dead_magnet(&ih)));
    let waiting = get_async(d.port, stuck);
    wait_for_resolve(&d);
    let good = format!("/data?magnet={}&path=dir/b.bin", qenc(&s.magnet("multi")));
    let second = get_async(d.port, good);
    let r = second.join().expect("request thread");
    assert_eq!(r.status, 200, "the magnet with a tracker: {}", r.text());
    assert_bytes_eq(&r.body, &s.file_payload(&t, "dir/b.bin"), "second request");
    let r = waiting.join().expect("request thread");
    assert_eq!(r.status, 200, "the first (stuck) request: {}", r.text());
    assert_bytes_eq(&r.body, &s.file_payload(&t, "dir/a.bin"), "first request");
}
