//! Issue 14, "Behaviour holes": a stuck add must not wedge a torrent; every client-driven
//! queue or store has a bound; `-maxPendingTorrents`; `-seed` seeds uploads at once.

use crate::common;

use std::{thread, time::Duration};

use common::{
    assert_bytes_eq,
    bencode::{fake_info, metainfo, Benc},
    qenc, request, serial, swarm, Daemon,
};

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

/// A one-file torrent nobody seeds, distinct per `name`: (.torrent bytes, hex infohash).
fn tiny_torrent(name: &str) -> (Vec<u8>, String) {
    metainfo(
        vec![],
        fake_info(("length", Benc::Int(1)), name.as_bytes(), 1, 7),
    )
}

fn stored(d: &Daemon, ih: &str) -> bool {
    d.data_dir
        .join("torrents")
        .join(format!("{ih}.torrent"))
        .is_file()
}

/// `-maxPendingTorrents=2`: two infohashes nobody can resolve wait for metadata; a third is
/// refused at once with 429 and a one-line reason, while a POSTed torrent and the waiting
/// ones are still accepted.
#[test]
fn max_pending_torrents_refuses_a_third_unresolved_torrent() {
    let d = Daemon::start(&["-maxPendingTorrents=2", "-torrentGrace=1m"]);
    let (a, b, c) = (
        common::random_ih(),
        common::random_ih(),
        common::random_ih(),
    );
    for ih in [&a, &b] {
        let r = common::try_request(
            d.port,
            "GET",
            &format!("/info?ih={ih}"),
            &[],
            b"",
            Duration::from_secs(1),
        );
        assert!(
            r.is_err(),
            "/info of an unresolvable torrent should wait: {:?}",
            r.map(|r| r.status)
        );
    }
    let r = d.req(
        "GET",
        &format!("/info?ih={c}"),
        &[],
        b"",
        Duration::from_secs(10),
    );
    common::assert_one_line(&r, "third pending torrent");
    assert_eq!(r.status, 429, "third pending torrent: {}", r.text());
    assert!(
        r.text().contains("-maxPendingTorrents"),
        "reason: {:?}",
        r.text()
    );
    let r = d.req(
        "GET",
        &format!("/data?ih={c}&path=x"),
        &[],
        b"",
        Duration::from_secs(10),
    );
    assert_eq!(
        r.status,
        429,
        "/data of a third pending torrent: {}",
        r.text()
    );
    // One already waiting may be asked for again (it is no new pending torrent).
    let r = common::try_request(
        d.port,
        "GET",
        &format!("/info?ih={a}"),
        &[],
        b"",
        Duration::from_secs(1),
    );
    assert!(
        r.is_err(),
        "a pending torrent asked again should wait, not be refused: {:?}",
        r.map(|r| r.status)
    );
    // A torrent whose metadata comes with the request is never pending.
    let (t, ih) = tiny_torrent("posted");
    d.post_metainfo(&t, &ih);
    let r = d.get(&format!("/info?ih={ih}"));
    assert_eq!(r.status, 200, "/info of a posted torrent: {}", r.text());
    d.assert_healthy();
}

/// `-maxStoredMetainfo=2`: a third POST evicts the least recently used metainfo of a torrent
/// no longer in use; when every stored torrent is in use, the POST is refused with 507.
#[test]
fn metainfo_store_is_bounded_and_evicts_the_least_recently_used() {
    let d = Daemon::start(&["-maxStoredMetainfo=2", "-torrentGrace=0s"]);
    let (ta, a) = tiny_torrent("a");
    let (tb, b) = tiny_torrent("b");
    let (tc, c) = tiny_torrent("c");
    d.post_metainfo(&ta, &a);
    thread::sleep(Duration::from_millis(50));
    d.post_metainfo(&tb, &b);
    thread::sleep(Duration::from_millis(50));
    // Using `a` makes `b` the least recently used.
    let r = d.get(&format!("/info?ih={a}"));
    assert_eq!(r.status, 200, "/info of a: {}", r.text());
    // Torrents leave memory right after their requests (grace 0); wait for that.
    thread::sleep(Duration::from_millis(500));
    d.post_metainfo(&tc, &c);
    assert!(stored(&d, &a), "a was used last, it must stay");
    assert!(!stored(&d, &b), "b is the least recently used, it must go");
    assert!(stored(&d, &c), "c was just posted");
    let n = std::fs::read_dir(d.data_dir.join("torrents"))
        .unwrap()
        .count();
    assert_eq!(n, 2, "files in the store");

    // Every stored torrent in use: nothing may be evicted, the POST is refused.
    let mut d = d;
    d.stop();
    let d = Daemon::start(&["-maxStoredMetainfo=1", "-torrentGrace=1h"]);
    d.post_metainfo(&ta, &a);
    let r = d.req("POST", "/metainfo", &[], &tb, Duration::from_secs(10));
    assert_eq!(
        r.status,
        507,
        "a POST the full store cannot take: {}",
        r.text()
    );
    common::assert_one_line(&r, "full store");
    assert!(
        r.text().contains("-maxStoredMetainfo"),
        "reason: {:?}",
        r.text()
    );
    assert!(stored(&d, &a) && !stored(&d, &b));
}

/// A multipart form with `n` one-byte `files` parts plus a `name`.
fn form_with_files(n: usize) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nmany\r\n");
    for i in 0..n {
        b.extend_from_slice(
            format!("--XyZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"f{i}\"\r\n\r\nx\r\n")
                .as_bytes(),
        );
    }
    b.extend_from_slice(b"--XyZ--\r\n");
    b
}

/// `/upload` takes at most 1000 parts (Go's limit); more is a 400 with the reason, and the
/// daemon stored nothing for it.
#[test]
fn upload_parts_are_bounded() {
    let d = Daemon::start(&[]);
    let ct = [("Content-Type", "multipart/form-data; boundary=XyZ")];
    let r = d.req(
        "POST",
        "/upload",
        &ct,
        &form_with_files(999),
        Duration::from_secs(60),
    );
    assert_eq!(r.status, 200, "1000 parts: {}", r.text());
    let r = d.req(
        "POST",
        "/upload",
        &ct,
        &form_with_files(1000),
        Duration::from_secs(60),
    );
    common::assert_one_line_error(
        &r,
        400,
        "parsing multipart form: multipart: message too large (more than 1000 parts)",
        "1001 parts",
    );
    let n = std::fs::read_dir(d.data_dir.join("torrents"))
        .unwrap()
        .count();
    assert_eq!(n, 1, "only the first upload's metainfo is stored");
    d.assert_healthy();
}

/// `-fileDir`: once a file was read, `/fileState` reports each of its pieces complete (the
/// states come from one copy of librqbit's bitfield, not one per piece).
#[test]
fn file_dir_file_state_reports_downloaded_pieces() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("multi");
    let t = s.torrent("multi");
    let fdir = common::temp_dir("filedir");
    let d = Daemon::start(&["-torrentGrace=1m", &format!("-fileDir={}", fdir.display())]);
    d.post_metainfo(&s.torrent_bytes("multi"), &ih);
    let path = "with space/nested deeper/odd.bin";
    let r = d.get(&format!("/data?ih={ih}&path={}", qenc(path)));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_bytes_eq(&r.body, &s.file_payload(&t, path), path);
    let r = d.get(&format!("/fileState?ih={ih}&path={}", qenc(path)));
    assert_eq!(r.status, 200, "/fileState: {}", r.text());
    let text = r.text();
    let pieces = text.matches("\"Complete\":").count();
    assert!(pieces > 0, "no pieces in {text}");
    assert_eq!(
        text.matches("\"Complete\":true").count(),
        pieces,
        "every piece of a file just read is complete: {text}"
    );
    drop(d);
    let _ = std::fs::remove_dir_all(&fdir);
}

/// The harness's mini tracker (answers every announce with just `peer`), stopped by PID.
struct MiniTracker {
    child: std::process::Child,
    port: u16,
}

impl MiniTracker {
    fn start(peer: &str) -> MiniTracker {
        let dir = common::temp_dir("minitracker");
        let portfile = dir.join("port");
        let tool = common::harness_script().with_file_name("swarmtool.py");
        let child = std::process::Command::new("python3")
            .arg("-B")
            .arg(&tool)
            .arg("minitracker")
            .arg(&portfile)
            .arg(peer)
            .spawn()
            .unwrap_or_else(|e| panic!("python3 {}: {e}", tool.display()));
        let mut t = MiniTracker { child, port: 0 };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while t.port == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "mini tracker did not start"
            );
            thread::sleep(Duration::from_millis(50));
            t.port = std::fs::read_to_string(&portfile)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
        }
        t
    }
}

impl Drop for MiniTracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With `-seed`, a torrent made by `/upload` seeds at once: a second daemon downloads it from
/// the uploader (found through a tracker that names only the uploader), with no request to
/// the uploader after the upload.
#[test]
fn seed_shares_an_upload_at_once() {
    let up = Daemon::start(&["-seed"]);
    let tracker = MiniTracker::start(&format!("127.0.0.1:{}", up.peer_port()));
    let data: Vec<u8> = (0u32..300_000)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut body =
        b"--XyZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nshared\r\n".to_vec();
    body.extend_from_slice(
        b"--XyZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"file.bin\"\r\n\r\n",
    );
    body.extend_from_slice(&data);
    body.extend_from_slice(b"\r\n--XyZ--\r\n");
    let ct = [("Content-Type", "multipart/form-data; boundary=XyZ")];
    let r = up.req("POST", "/upload", &ct, &body, Duration::from_secs(60));
    assert_eq!(r.status, 200, "upload: {}", r.text());
    let torrent = r.body;
    let top = common::bdecode(&torrent).expect("bencoded metainfo");
    let ih = common::sha1_hex(&torrent[top.span("info").expect("info")]);

    let tr = format!(
        "-implicitTracker=http://127.0.0.1:{}/announce",
        tracker.port
    );
    let down = Daemon::start(&[tr.as_str(), "-torrentGrace=2s"]);
    down.post_metainfo(&torrent, &ih);
    let r = down.req(
        "GET",
        &format!("/data?ih={ih}&path=file.bin"),
        &[],
        b"",
        Duration::from_secs(60),
    );
    assert_eq!(
        r.status,
        200,
        "download from the seeding uploader: {}",
        r.text()
    );
    assert_bytes_eq(&r.body, &data, "the upload, downloaded from its uploader");
    assert!(
        up.log_count("-seed: seeding the upload") == 1,
        "uploader log: {}",
        up.log_tail(20)
    );
}

/// In the mount, `-maxPendingTorrents=1`: the first unknown infohash looked up is a (bare)
/// directory; a second one is EAGAIN while the first still waits for metadata.
#[test]
fn max_pending_torrents_is_eagain_in_the_mount() {
    if !common::fuse::can_mount("max_pending_torrents_is_eagain_in_the_mount") {
        return;
    }
    let f = common::fuse::Fuse::start(&["-maxPendingTorrents=1", "-torrentGrace=1m"]);
    let (a, b) = (common::random_ih(), common::random_ih());
    let m = common::fuse::metadata(&f.path(&a)).expect("stat of the first unknown infohash");
    assert!(m.is_dir(), "{a} is a directory");
    let e = common::fuse::metadata(&f.path(&b)).expect_err("a second pending torrent");
    assert_eq!(e.raw_os_error(), Some(libc::EAGAIN), "stat {b}: {e}");
    f.daemon.assert_healthy();
}

/// A magnet add that can never resolve (its only tracker is dead) must not keep its torrent
/// for ever: once its requests are gone and the grace period is over it is dropped, and with
/// `-maxPendingTorrents=1` a new infohash is accepted again.
#[test]
fn a_stuck_magnet_add_does_not_keep_its_torrent_past_grace() {
    let d = Daemon::start(&["-torrentGrace=1s", "-maxPendingTorrents=1"]);
    let ih = common::random_ih();
    let target = format!("/info?magnet={}", qenc(&dead_magnet(&ih)));
    let r = common::try_request(d.port, "GET", &target, &[], b"", Duration::from_secs(2));
    assert!(r.is_err(), "/info of an unresolvable magnet should wait");
    assert!(
        d.wait_log_count("torrent dropped", 0, Duration::from_secs(20)),
        "the stuck torrent was never dropped: {}",
        d.log_tail(20)
    );
    let other = common::random_ih();
    let r = common::try_request(
        d.port,
        "GET",
        &format!("/info?ih={other}"),
        &[],
        b"",
        Duration::from_secs(1),
    );
    assert!(
        r.is_err(),
        "a new infohash should be accepted (and wait), not refused: {:?}",
        r.map(|r| r.status)
    );
    d.assert_healthy();
}
