//! Issue 4, "Tests": every flag's parsed value and its effect against the real binary; a magnet
//! with no tracker and no peers resolved through a DHT of aria2c nodes on loopback; and the §8
//! checklist rows of the behaviour doc that no other test file covers, with our documented
//! differences asserted as such.
//!
//! Already covered elsewhere and not repeated here: `-h`, unknown and unsupported flags,
//! `-addr 127.0.0.1:P` / `--addr=` (tests/it/flags.rs); `-debugOnMain`, `/events`, `/fileState`,
//! `/status`, `/metrics`, `/upload`, `/bep44` with `-dht=false`, unclean paths, `/`, `/data/`,
//! `/status/`, `/data/infohash` → 301 (tests/it/surface.rs); the Range battery and HEAD
//! (tests/it/range.rs); `/info`, `/metainfo`, nowait (tests/it/meta.rs); bad infohashes, `/data/infohash/`
//! → 400, 404 bodies, `-authToken` refusals (tests/bad_input*.rs); upper-case ih, `filename=` on
//! the whole torrent (tests/it/data.rs); restart with a cached metainfo (tests/it/cache.rs).

use crate::common;

use std::{
    fs,
    io::Read,
    net::{TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::{
    assert_bytes_eq, assert_one_line, assert_one_line_error, bdecode, binary, form::Form, qenc,
    request, run_bounded, serial, swarm, temp_dir, wait_until, Daemon, Resp,
};

const SHORT: Duration = Duration::from_secs(20);

// ------------------------------------------------------------------------------------------
// Helpers

/// `/status` as JSON.
fn status_json(d: &Daemon) -> serde_json::Value {
    let r = d.req(
        "GET",
        "/status",
        &[("Accept", "application/json")],
        b"",
        SHORT,
    );
    assert_eq!(r.status, 200, "/status JSON");
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("/status JSON: {e}: {}", r.text()))
}

/// How many torrents `/status` lists (text form, `# Torrents: N`).
fn num_torrents(d: &Daemon) -> usize {
    let t = d.req("GET", "/status", &[], b"", SHORT).text();
    t.lines()
        .find_map(|l| l.strip_prefix("# Torrents: "))
        .unwrap_or_else(|| panic!("/status without `# Torrents: `:\n{t}"))
        .trim()
        .parse()
        .unwrap()
}

/// A two-byte read of `big.bin` of `single` (posted first, so no metadata wait): one request
/// that takes and releases a torrent reference.
fn touch_single(d: &Daemon) -> String {
    let s = swarm();
    let ih = s.ih("single");
    d.post_metainfo(&s.torrent_bytes("single"), &ih);
    let r = d.req(
        "GET",
        &format!("/data?ih={ih}&path=big.bin"),
        &[("Range", "bytes=0-1")],
        b"",
        common::HTTP_TIMEOUT,
    );
    assert_eq!(r.status, 206, "ranged read of big.bin: {}", r.text());
    assert_bytes_eq(&r.body, &s.payload("big.bin")[..2], "first two bytes");
    ih
}

/// The `announce-list` tiers of a bencoded metainfo.
fn tiers(metainfo: &[u8]) -> Vec<Vec<String>> {
    let top = bdecode(metainfo).unwrap_or_else(|e| panic!("metainfo is not bencode: {e}"));
    top.get("announce-list")
        .and_then(|l| l.list())
        .map(|l| l.iter().map(|t| t.strings()).collect())
        .unwrap_or_default()
}

/// Runs the binary with safe defaults plus `args` and expects it to exit by itself (≤ 20 s).
fn run_to_exit(args: &[&str]) -> (Option<i32>, String, String) {
    let dir = temp_dir("flag-exit");
    let mut cmd = Command::new(binary());
    cmd.arg("-addr=127.0.0.1:0")
        .arg("-torrentAddr=127.0.0.1:0")
        .arg("-dht=false")
        .arg(format!("-dataDir={}", dir.display()))
        .args(args);
    let (status, out, err) = run_bounded(&mut cmd, SHORT);
    let _ = fs::remove_dir_all(&dir);
    (status.and_then(|s| s.code()), out, err)
}

// ------------------------------------------------------------------------------------------
// -torrentGrace, -expireTorrents, -seed

#[test]
fn torrent_grace_zero_drops_the_torrent_right_after_the_request() {
    let _g = serial();
    let d = Daemon::start(&["-torrentGrace=0s"]);
    let ih = touch_single(&d);
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(8), || num_torrents(&d) == 0),
        "-torrentGrace=0s: /status still lists {ih} 8 s after the request"
    );
    let took = t0.elapsed();
    assert!(
        d.wait_log_count("torrent dropped", 0, Duration::from_secs(5)),
        "-torrentGrace=0s: no `torrent dropped` in the log:\n{}",
        d.log_tail(20)
    );
    eprintln!("-torrentGrace=0s: gone from /status {took:?} after the request");
}

#[test]
fn torrent_grace_holds_the_torrent_that_long() {
    let _g = serial();
    let d = Daemon::start(&["-torrentGrace=6s"]);
    touch_single(&d);
    let t0 = Instant::now();
    thread::sleep(Duration::from_secs(2));
    assert_eq!(num_torrents(&d), 1, "-torrentGrace=6s: gone after 2 s");
    assert!(
        wait_until(Duration::from_secs(20), || num_torrents(&d) == 0),
        "-torrentGrace=6s: still listed 20 s later"
    );
    assert!(
        t0.elapsed() >= Duration::from_secs(5),
        "-torrentGrace=6s: dropped after only {:?}",
        t0.elapsed()
    );
}

/// `-expireTorrents=false` and `-seed` both keep the torrent in the session after its last
/// reference went (past the grace).
#[test]
fn expire_torrents_false_and_seed_keep_the_torrent() {
    let _g = serial();
    for flag in ["-expireTorrents=false", "-seed"] {
        let d = Daemon::start(&["-torrentGrace=1s", flag]);
        let ih = touch_single(&d);
        thread::sleep(Duration::from_secs(4));
        assert_eq!(
            num_torrents(&d),
            1,
            "{flag}: torrent gone 4 s after a 1 s grace"
        );
        assert_eq!(
            d.log_count("torrent dropped"),
            0,
            "{flag}: log says dropped"
        );
        let v = status_json(&d);
        assert_eq!(v["torrents"][0]["infohash"], ih.as_str(), "{flag}");
        assert_eq!(
            v["torrents"][0]["references"], 0,
            "{flag}: the torrent stays without references"
        );
    }
    // The control: the same with neither flag drops it.
    let d = Daemon::start(&["-torrentGrace=1s"]);
    touch_single(&d);
    assert!(
        wait_until(Duration::from_secs(15), || num_torrents(&d) == 0),
        "control: torrent not dropped after a 1 s grace"
    );
}

// ------------------------------------------------------------------------------------------
// -implicitTracker, -overrideTrackers

/// The original's add-on-demand: a new torrent gets its cached tiers plus one tier of implicit
/// trackers (behaviour doc §5.2); later trackers (magnet `tr`, POST) merge by tier index.
#[test]
fn implicit_trackers_are_one_extra_tier_in_metainfo() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("single");
    let (u1, u2) = ("http://127.0.0.1:1/a", "http://127.0.0.1:2/b");
    let dir = temp_dir("implicit");
    // Cache single's metainfo (tiers [[http 6969], [udp 6969]]) with no implicit trackers.
    {
        let d = Daemon::start_in(&dir, &["-torrentGrace=0s", "-disableTrackers"]);
        d.post_metainfo(&s.torrent_bytes("single"), &ih);
        assert!(
            wait_until(Duration::from_secs(10), || num_torrents(&d) == 0),
            "not dropped"
        );
    }
    let d = Daemon::start_in(
        &dir,
        &[
            "-torrentGrace=30s",
            "-disableTrackers",
            &format!("-implicitTracker={u1}"),
            &format!("-implicitTracker={u2}"),
        ],
    );
    let r = d.get(&format!("/metainfo?ih={ih}"));
    assert_eq!(r.status, 200, "GET /metainfo: {}", r.text());
    let own = tiers(&s.torrent_bytes("single"));
    let mut want = own.clone();
    want.push(vec![u1.to_string(), u2.to_string()]);
    assert_eq!(
        tiers(&r.body),
        want,
        "cached tiers {own:?} plus one implicit tier [u1, u2]"
    );
    // A torrent created from a bare infohash has just that tier.
    let other = common::random_ih();
    let r = d.get(&format!("/metainfo?ih={other}&nowait=1"));
    assert_eq!(r.status, 202, "unknown torrent: {}", r.text());
    let st = status_json(&d);
    let listed = st["torrents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["infohash"] == other.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{other} not in /status: {st}"));
    assert_eq!(
        listed["trackers"],
        serde_json::json!([[u1, u2]]),
        "trackers of a torrent created from a bare ih"
    );
    drop(d);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn override_trackers_ignores_the_stored_trackers_only() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("single");
    let own = "http://127.0.0.1:6969/announce";
    let tr = "http://127.0.0.1:3/m";
    let dir = temp_dir("override");
    // Store single's metainfo (with its trackers), then let the torrent go.
    {
        let d = Daemon::start_in(&dir, &["-torrentGrace=0s", "-disableTrackers"]);
        d.post_metainfo(&s.torrent_bytes("single"), &ih);
        assert!(
            wait_until(Duration::from_secs(10), || num_torrents(&d) == 0),
            "not dropped"
        );
    }
    assert!(
        dir.join("torrents").join(format!("{ih}.torrent")).is_file(),
        "metainfo not stored"
    );
    let urls = |d: &Daemon, target: &str| -> Vec<String> {
        let r = d.get(target);
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        tiers(&r.body).concat()
    };
    // Control: without the flag the stored trackers come back.
    {
        let d = Daemon::start_in(&dir, &["-torrentGrace=0s", "-disableTrackers"]);
        let u = urls(&d, &format!("/metainfo?ih={ih}"));
        assert!(u.iter().any(|x| x == own), "stored tracker kept: {u:?}");
    }
    let d = Daemon::start_in(
        &dir,
        &["-torrentGrace=30s", "-disableTrackers", "-overrideTrackers"],
    );
    let magnet = format!("magnet:?xt=urn:btih:{ih}&tr={}", qenc(tr));
    let u = urls(&d, &format!("/metainfo?magnet={}", qenc(&magnet)));
    assert!(
        !u.iter().any(|x| x == own),
        "-overrideTrackers: stored tracker still there: {u:?}"
    );
    assert!(
        u.iter().any(|x| x == tr),
        "-overrideTrackers: the magnet's tracker is kept: {u:?}"
    );
    // POSTed trackers are kept.
    d.post_metainfo(&s.torrent_bytes("single"), &ih);
    let u = urls(&d, &format!("/metainfo?ih={ih}"));
    assert!(
        u.iter().any(|x| x == own),
        "-overrideTrackers: POSTed tracker dropped: {u:?}"
    );
    drop(d);
    let _ = fs::remove_dir_all(&dir);
}

// ------------------------------------------------------------------------------------------
// -fileDir

#[test]
fn file_dir_lays_files_out_under_ih_and_name_and_removes_them() {
    let _g = serial();
    let s = swarm();
    let t = s.torrent("multi");
    let ih = s.ih("multi");
    let fdir = temp_dir("filedir");
    let d = Daemon::start(&["-torrentGrace=2s", &format!("-fileDir={}", fdir.display())]);
    d.post_metainfo(&s.torrent_bytes("multi"), &ih);
    let path = "dir/a.bin";
    let want = s.file_payload(&t, path);
    let r = d.get(&format!("/data?ih={ih}&path={}", qenc(path)));
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    assert_bytes_eq(&r.body, &want, path);
    let on_disk = fdir.join(&ih).join(&t.name).join(path);
    assert!(
        wait_until(Duration::from_secs(10), || fs::read(&on_disk)
            .map(|b| b == want)
            .unwrap_or(false)),
        "{} does not hold the file's bytes; tree: {:?}",
        on_disk.display(),
        list_tree(&fdir)
    );
    // Nothing of this torrent outside DIR/<ih>/.
    for e in fs::read_dir(&fdir).unwrap() {
        let name = e.unwrap().file_name();
        assert_eq!(
            name.to_string_lossy(),
            ih.as_str(),
            "stray entry in -fileDir"
        );
    }
    assert!(
        wait_until(Duration::from_secs(20), || !fdir.join(&ih).exists()),
        "{}/<ih> not removed after the grace; tree: {:?}",
        fdir.display(),
        list_tree(&fdir)
    );
    assert_eq!(num_torrents(&d), 0);
    drop(d);
    let _ = fs::remove_dir_all(&fdir);
}

fn list_tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// -cacheCapacity, -unlimitedCache, space and `--` forms of other flags

#[test]
fn cache_capacity_and_unlimited_cache_show_in_status() {
    for (args, want) in [
        (
            vec!["-cacheCapacity=1GiB"],
            serde_json::json!(1073741824u64),
        ),
        (
            vec!["-cacheCapacity=500MB"],
            serde_json::json!(500000000u64),
        ),
        (vec!["-cacheCapacity=12345"], serde_json::json!(12345u64)),
        (
            vec!["-cacheCapacity", "2gib"],
            serde_json::json!(2147483648u64),
        ),
        (vec!["--cacheCapacity=1kB"], serde_json::json!(1000u64)),
        (vec![], serde_json::json!(10737418240u64)),
        (vec!["-unlimitedCache"], serde_json::Value::Null),
        (
            vec!["-cacheCapacity=1GiB", "-unlimitedCache=true"],
            serde_json::Value::Null,
        ),
    ] {
        let d = Daemon::start(&args);
        let v = status_json(&d);
        assert!(v["cache"].is_object(), "{args:?}: no cache in /status: {v}");
        assert_eq!(v["cache"]["capacity"], want, "{args:?}: cache.capacity");
    }
    for bad in ["-cacheCapacity=lots", "-cacheCapacity=", "-torrentGrace=5"] {
        let (code, _, err) = run_to_exit(&[bad]);
        assert_eq!(code, Some(2), "{bad}: exit code (stderr {err:?})");
    }
}

#[test]
fn torrent_grace_in_the_space_form() {
    let _g = serial();
    let d = Daemon::start(&["-torrentGrace", "0s"]);
    let before = d.log_count("torrent dropped");
    touch_single(&d);
    assert!(
        d.wait_log_count("torrent dropped", before, Duration::from_secs(10)),
        "`-torrentGrace 0s`: not dropped within 10 s"
    );
}

// ------------------------------------------------------------------------------------------
// -addr=127.0.0.1:0, -torrentAddr

/// A child stopped by PID (SIGTERM, then SIGKILL after 5 s) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: our own child, not yet reaped.
            unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// §8: `-addr=127.0.0.1:0` listens on a kernel-chosen port and logs `serving http at …`.
#[test]
fn addr_port_zero_logs_where_it_serves() {
    let dir = temp_dir("addr0");
    let log = dir.join("daemon.log");
    let f = fs::File::create(&log).unwrap();
    let child = Command::new(binary())
        .arg("-addr=127.0.0.1:0")
        .arg("-torrentAddr=127.0.0.1:0")
        .arg("-dht=false")
        .arg(format!("-dataDir={}", dir.display()))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap();
    let p = Proc(child);
    let mut port = None;
    let found = wait_until(SHORT, || {
        let text = fs::read_to_string(&log).unwrap_or_default();
        port = text
            .lines()
            .find_map(|l| l.split("serving http at 127.0.0.1:").nth(1))
            .and_then(|rest| {
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse::<u16>()
                    .ok()
            });
        port.is_some()
    });
    assert!(
        found,
        "no `serving http at 127.0.0.1:<port>` within 20 s:\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    let port = port.unwrap();
    assert_ne!(port, 0, "the logged port is the real one");
    let r = request(port, "GET", "/health", &[], b"", SHORT);
    assert_eq!(r.status, 200, "/health on the logged port");
    drop(p);
    let _ = fs::remove_dir_all(&dir);
}

/// `-torrentAddr=127.0.0.1:P`: peers are accepted there and `/status` reports P.
#[test]
fn torrent_addr_is_the_peer_port() {
    let port = free_tcp_port("127.0.0.1");
    let d = Daemon::start(&[&format!("-torrentAddr=127.0.0.1:{port}")]);
    let v = status_json(&d);
    assert_eq!(v["listen_port"], port, "/status listen_port");
    assert!(
        d.get("/status")
            .text()
            .starts_with(&format!("Listen port: {port}")),
        "/status text starts with the listen port"
    );
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("no peer listener on 127.0.0.1:{port}: {e}"));
}

// ------------------------------------------------------------------------------------------
// -disableTrackers, -tcpPeers/-utpPeers, -pex, -dhtPublicIP, -authToken

#[test]
fn disable_trackers_keeps_a_tracker_only_magnet_unresolved() {
    let _g = serial();
    let s = swarm();
    let magnet = s.magnet("single");
    assert!(magnet.contains("&tr="), "the swarm magnet has a tracker");
    let target = format!("/info?nowait=1&magnet={}", qenc(&magnet));
    let d = Daemon::start(&["-torrentGrace=30s", "-disableTrackers"]);
    let r = d.get(&target);
    assert_eq!(r.status, 202, "first nowait: {}", r.text());
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(6) {
        let r = d.get(&target);
        assert_eq!(
            r.status,
            202,
            "-disableTrackers: info resolved after {:?} (it cannot: no tracker, no DHT)",
            t0.elapsed()
        );
        thread::sleep(Duration::from_millis(500));
    }
    drop(d);
    // Control: the same magnet resolves through the tracker without the flag.
    let d = Daemon::start(&["-torrentGrace=30s"]);
    let _ = d.get(&target);
    assert!(
        wait_until(Duration::from_secs(60), || d.get(&target).status == 200),
        "control: the tracker magnet did not resolve within 60 s"
    );
}

#[test]
fn no_peer_transport_exits_non_zero_with_a_message() {
    let (code, _, err) = run_to_exit(&["-tcpPeers=false", "-utpPeers=false"]);
    assert!(
        matches!(code, Some(c) if c != 0),
        "both transports off: exit {code:?}"
    );
    assert!(
        err.contains("-tcpPeers=false and -utpPeers=false"),
        "message does not name the flags: {err:?}"
    );
    // Either one alone is fine.
    for args in [["-tcpPeers=false"], ["-utpPeers=false"]] {
        let d = Daemon::start(&args);
        d.assert_healthy();
    }
}

#[test]
fn pex_false_and_dht_public_ip_are_accepted_with_a_warning() {
    let d = Daemon::start(&["-pex=false"]);
    d.assert_healthy();
    assert!(
        d.log()
            .contains("-pex=false: librqbit always exchanges peers"),
        "-pex=false: no warning; log:\n{}",
        d.log_tail(20)
    );
    drop(d);
    let d = Daemon::start(&["-pex=true"]);
    assert!(!d.log().contains("-pex=false"), "-pex=true warns");
    drop(d);

    let d = Daemon::start(&["-dhtPublicIP=127.1.2.3"]);
    d.assert_healthy();
    assert!(
        d.log().contains("-dhtPublicIP"),
        "-dhtPublicIP: no warning that librqbit cannot use it; log:\n{}",
        d.log_tail(20)
    );
    // Its one effect: /upload's `nodes`.
    let (ct, body) = Form::new("flag-effects-b0undary")
        .field("name", "up")
        .file("x.bin", b"hello")
        .finish();
    let r = d.req("POST", "/upload", &[("Content-Type", &ct)], &body, SHORT);
    assert_eq!(r.status, 200, "/upload: {}", r.text());
    let top = bdecode(&r.body).unwrap();
    let nodes = top.get("nodes").map(|n| n.strings()).unwrap_or_default();
    assert!(
        nodes.len() == 1 && nodes[0].starts_with("127.1.2.3:"),
        "-dhtPublicIP=127.1.2.3: /upload nodes {nodes:?}"
    );
    drop(d);
    let (code, _, err) = run_to_exit(&["-dhtPublicIP=nope"]);
    assert_eq!(code, Some(2), "-dhtPublicIP=nope (stderr {err:?})");
}

#[test]
fn auth_token_is_required_and_accepted_in_both_forms() {
    let d = Daemon::start(&["-torrentGrace=1s", "-authToken=T0k"]);
    for target in ["/health", "/status"] {
        for m in ["GET", "POST"] {
            let r = d.req(m, target, &[], b"", SHORT);
            assert_eq!(r.status, 401, "{m} {target} without a token");
        }
        let r = d.req(
            "GET",
            target,
            &[("Authorization", "Bearer T0k")],
            b"",
            SHORT,
        );
        assert_eq!(r.status, 200, "{target} with a Bearer token");
        let sep = if target.contains('?') { '&' } else { '?' };
        let r = d.get(&format!("{target}{sep}token=T0k"));
        assert_eq!(r.status, 200, "{target}?token=");
        let r = d.req(
            "GET",
            target,
            &[("Authorization", "Bearer t0k")],
            b"",
            SHORT,
        );
        assert_eq!(r.status, 401, "{target}: token compared case-sensitively");
    }
    // Without the flag nothing is asked.
    let d = Daemon::start(&[]);
    assert_eq!(d.get("/status").status, 200);
}

// ------------------------------------------------------------------------------------------
// DHT through aria2c nodes on loopback

/// aria2c DHT nodes on loopback, each on its own 127.0.0.6x; stopped by PID (SIGINT, then
/// SIGKILL after 5 s) when dropped. They also exit with this test process
/// (`--stop-with-process`).
struct Aria2Dht {
    children: Vec<Child>,
    dir: PathBuf,
    /// `ip:dht_port` of each node.
    nodes: Vec<String>,
}

impl Drop for Aria2Dht {
    fn drop(&mut self) {
        for c in &mut self.children {
            if let Ok(None) = c.try_wait() {
                // SAFETY: our own child, not yet reaped.
                unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGINT) };
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in &mut self.children {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if thread::panicking() {
            eprintln!("--- aria2c DHT node logs kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn free_udp_port(ip: &str) -> u16 {
    UdpSocket::bind((ip, 0))
        .and_then(|s| s.local_addr())
        .unwrap_or_else(|e| panic!("binding UDP {ip}:0: {e}"))
        .port()
}

fn free_tcp_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|s| s.local_addr())
        .unwrap_or_else(|e| panic!("binding TCP {ip}:0: {e}"))
        .port()
}

impl Aria2Dht {
    /// Three nodes; the third also seeds `single` from the swarm payload (no tracker). The
    /// other two "download" `multi` into a scratch dir, which nobody seeds here: that only keeps
    /// their DHT running (aria2c runs its DHT only with a BitTorrent download).
    fn start() -> Aria2Dht {
        let s = swarm();
        let dir = temp_dir("aria2-dht");
        let ips = ["127.0.0.61", "127.0.0.62", "127.0.0.63"];
        let ports: Vec<u16> = ips.iter().map(|ip| free_udp_port(ip)).collect();
        let nodes: Vec<String> = ips
            .iter()
            .zip(&ports)
            .map(|(ip, p)| format!("{ip}:{p}"))
            .collect();
        let mut g = Aria2Dht {
            children: Vec::new(),
            dir: dir.clone(),
            nodes: nodes.clone(),
        };
        for (i, ip) in ips.iter().enumerate() {
            let nd = dir.join(format!("node{i}"));
            fs::create_dir_all(&nd).unwrap();
            let entry = &nodes[(i + 1) % nodes.len()];
            let mut cmd = Command::new("aria2c");
            cmd.arg(format!("--interface={ip}"))
                .arg(format!("--listen-port={}", free_tcp_port(ip)))
                .arg(format!("--dht-listen-port={}", ports[i]))
                .arg(format!("--dht-entry-point={entry}"))
                .arg(format!("--dht-file-path={}", nd.join("dht.dat").display()))
                .arg(format!("--stop-with-process={}", std::process::id()))
                .args([
                    "--enable-dht=true",
                    "--enable-dht6=false",
                    "--disable-ipv6=true",
                    "--bt-enable-lpd=false",
                    "--enable-peer-exchange=false",
                    "--bt-exclude-tracker=*",
                    "--seed-ratio=0.0",
                    "--auto-file-renaming=false",
                    "--console-log-level=warn",
                    "--summary-interval=0",
                    "--show-console-readout=false",
                    "--log-level=info",
                ])
                .arg(format!("--log={}", nd.join("aria2.log").display()));
            if i == 2 {
                cmd.arg(format!("--dir={}", s.dir.join("payload").display()))
                    .args(["--check-integrity=true", "--bt-hash-check-seed=true"])
                    .arg(s.dir.join("torrents/single.torrent"));
            } else {
                cmd.arg(format!("--dir={}", nd.join("dl").display()))
                    .arg(s.dir.join("torrents/multi.torrent"));
            }
            let out = fs::File::create(nd.join("aria2.out")).unwrap();
            cmd.stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run aria2c (swarm.sh deps installs it): {e}"));
            g.children.push(child);
        }
        // The seeder must have announced itself to another node before the daemon asks.
        let seeder_log = dir.join("node2/aria2.log");
        let announced = wait_until(Duration::from_secs(60), || {
            let mut s = String::new();
            let _ = fs::File::open(&seeder_log).and_then(|mut f| f.read_to_string(&mut s));
            s.contains("dht response announce_peer")
        });
        for c in &mut g.children {
            assert!(
                matches!(c.try_wait(), Ok(None)),
                "an aria2c DHT node exited at start; see {}",
                dir.display()
            );
        }
        assert!(
            announced,
            "the aria2c seeder never got an announce_peer answer within 60 s; see {}",
            seeder_log.display()
        );
        g
    }

    fn bootstrap_flag(&self) -> String {
        format!("-dhtBootstrap={}", self.nodes.join(","))
    }
}

/// The DHT read itself: a magnet with nothing but the btih, `-disableTrackers`, `/data` must
/// stream `big.bin` byte-exact within 90 s; `/status` shows a DHT section.
fn dht_read(extra: &[&str]) {
    let s = swarm();
    let ih = s.ih("single");
    let nodes = Aria2Dht::start();
    let boot = nodes.bootstrap_flag();
    let mut args = vec!["-dht=true", &boot, "-disableTrackers", "-torrentGrace=1s"];
    args.extend_from_slice(extra);
    let d = Daemon::start(&args);
    let magnet = format!("magnet:?xt=urn:btih:{ih}");
    let target = format!("/data?magnet={}&path=big.bin", qenc(&magnet));
    let t0 = Instant::now();
    let r = common::try_request(d.port, "GET", &target, &[], b"", Duration::from_secs(90));
    let took = t0.elapsed();
    let dht = status_json(&d)["dht"].clone();
    let r: Resp = r.unwrap_or_else(|e| {
        panic!(
            "{args:?}: /data of a DHT-only magnet did not finish in 90 s ({e}); /status dht: {dht}; \
             daemon DHT log lines:\n{}",
            d.log()
                .lines()
                .filter(|l| l.contains("dht"))
                .take(10)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    assert_eq!(r.status, 200, "{args:?}: {}", r.text());
    assert_bytes_eq(&r.body, &s.payload("big.bin"), "big.bin through the DHT");
    eprintln!("{args:?}: big.bin through a loopback DHT in {took:?}");
    assert!(
        dht.is_object(),
        "-dht=true: /status has a DHT section: {dht}"
    );
    // /bep44 with the DHT on: our documented 501 (librqbit has no BEP 44 get).
    let r = d.get(&format!("/bep44?target={}", "ab".repeat(20)));
    assert_eq!(r.status, 501, "/bep44 with the DHT on: {}", r.text());
    assert_one_line(&r, "/bep44 501");
}

/// As the brief has it: every transport on, `-torrentAddr=127.0.0.1:0`.
#[test]
fn dht_only_magnet_streams_through_loopback_aria2_nodes() {
    let _g = serial();
    dht_read(&[]);
}

/// The same with uTP off: isolates the DHT lookup from the shared UDP port (see the report).
#[test]
fn dht_only_magnet_streams_through_loopback_aria2_nodes_tcp_only() {
    let _g = serial();
    dht_read(&["-utpPeers=false"]);
}

// ------------------------------------------------------------------------------------------
// §8 rows no other test file covers

struct Row {
    what: String,
    method: &'static str,
    target: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    want_body: Option<Vec<u8>>,
    /// Header → expected value (`None`: must be absent).
    want_headers: Vec<(&'static str, Option<String>)>,
}

fn row(what: &str, method: &'static str, target: String, status: u16) -> Row {
    Row {
        what: what.to_string(),
        method,
        target,
        headers: Vec::new(),
        body: Vec::new(),
        status,
        want_body: None,
        want_headers: Vec::new(),
    }
}

impl Row {
    fn body(mut self, b: impl AsRef<[u8]>) -> Row {
        self.want_body = Some(b.as_ref().to_vec());
        self
    }
    fn hdr(mut self, k: &'static str, v: Option<&str>) -> Row {
        self.want_headers.push((k, v.map(str::to_string)));
        self
    }
    fn send(mut self, k: &'static str, v: &str) -> Row {
        self.headers.push((k, v.to_string()));
        self
    }
    fn with_body(mut self, b: &[u8]) -> Row {
        self.body = b.to_vec();
        self
    }
    fn check(&self, d: &Daemon) -> Result<(), String> {
        let hs: Vec<(&str, &str)> = self.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = request(
            d.port,
            self.method,
            &self.target,
            &hs,
            &self.body,
            common::HTTP_TIMEOUT,
        );
        let mut errs = Vec::new();
        if r.status != self.status {
            errs.push(format!("status {} (want {})", r.status, self.status));
        }
        if let Some(b) = &self.want_body {
            if &r.body != b {
                errs.push(format!(
                    "body {:?} (want {:?})",
                    String::from_utf8_lossy(&r.body[..r.body.len().min(200)]),
                    String::from_utf8_lossy(b)
                ));
            }
        }
        for (k, v) in &self.want_headers {
            if r.header(k) != v.as_deref() {
                errs.push(format!("{k}: {:?} (want {v:?})", r.header(k)));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} — {} {}: {}",
                self.what,
                self.method,
                self.target,
                errs.join("; ")
            ))
        }
    }
}

#[test]
fn checklist_rows_not_covered_elsewhere() {
    let _g = serial();
    let s = swarm();
    let single = s.ih("single");
    let multi = s.ih("multi");
    let tm = s.torrent("multi");
    // Trackers on: the 200 rows download from the swarm's seeders.
    let d = Daemon::start(&["-torrentGrace=5s"]);
    d.post_metainfo(&s.torrent_bytes("single"), &single);
    d.post_metainfo(&s.torrent_bytes("multi"), &multi);
    let nf = b"file not found\n";
    let all_multi = s.torrent_payload(&tm);
    let a_bin = s.file_payload(&tm, "dir/a.bin");
    let cd = |v: &str| Some(format!("filename={v}"));
    let rows = vec![
        // /data 404s keep the Content-Disposition (set before the lookup).
        row("empty path", "GET", format!("/data?ih={single}&path="), 404)
            .body(nf)
            .hdr("content-disposition", cd("\"\"").as_deref()),
        row(
            "no such file",
            "GET",
            format!("/data?ih={single}&path=nope"),
            404,
        )
        .body(nf)
        .hdr("content-disposition", Some("filename=\"nope\"")),
        row(
            "a directory",
            "GET",
            format!("/data?ih={multi}&path=dir"),
            404,
        )
        .body(nf)
        .hdr("content-disposition", Some("filename=\"dir\"")),
        row(
            "leading slash",
            "GET",
            format!("/data?ih={multi}&path=%2Fdir%2Fa.bin"),
            404,
        )
        .body(nf)
        .hdr("content-disposition", Some("filename=\"/dir/a.bin\"")),
        row(
            "404 with filename=",
            "GET",
            format!("/data?ih={single}&path=nope&filename=x.bin"),
            404,
        )
        .body(nf)
        .hdr("content-disposition", Some("filename=\"x.bin\"")),
        // filename= beats the path, Go-quoted.
        row(
            "filename beats path",
            "GET",
            format!("/data?ih={multi}&path=dir%2Fa.bin&filename=My%20%22A%22.bin"),
            200,
        )
        .body(&a_bin)
        .hdr("content-disposition", Some(r#"filename="My \"A\".bin""#)),
        row(
            "empty filename beats path",
            "GET",
            format!("/data?ih={multi}&path=dir%2Fa.bin&filename="),
            200,
        )
        .body(&a_bin)
        .hdr("content-disposition", Some("filename=\"\"")),
        row(
            "path-form Content-Disposition is the full display path",
            "GET",
            format!("/data/infohash/{multi}/dir/a.bin"),
            200,
        )
        .body(&a_bin)
        .hdr("content-disposition", Some("filename=\"dir/a.bin\"")),
        // `/data/infohash/<ih>/` is the whole torrent, like `<ih>` (covered in data.rs).
        row(
            "path form with a trailing slash",
            "GET",
            format!("/data/infohash/{multi}/"),
            200,
        )
        .body(&all_multi)
        .hdr("content-disposition", None),
        row(
            "upper-case ih in the path form",
            "GET",
            format!("/data/infohash/{}/dir/a.bin", multi.to_uppercase()),
            200,
        )
        .body(&a_bin),
        // `magnet` beats `ih`.
        row(
            "magnet beats ih",
            "GET",
            format!(
                "/data?magnet={}&ih={single}&path=dir%2Fa.bin",
                qenc(&format!("magnet:?xt=urn:btih:{multi}"))
            ),
            200,
        )
        .body(&a_bin),
        // POST /metainfo: no info → sha1 of nothing; the query is ignored.
        row(
            "POST /metainfo with no info",
            "POST",
            "/metainfo".into(),
            200,
        )
        .with_body(b"de")
        .body("da39a3ee5e6b4b0d3255bfef95601890afd80709\n"),
        row(
            "POST /metainfo ignores the query",
            "POST",
            format!("/metainfo?ih={single}"),
            200,
        )
        .with_body(&s.torrent_bytes("multi"))
        .body(format!("{multi}\n")),
        // GET /metainfo with another Accept is bencode.
        row(
            "GET /metainfo, Accept: text/html",
            "GET",
            format!("/metainfo?ih={single}"),
            200,
        )
        .send("Accept", "text/html")
        .hdr("content-type", Some("application/x-bittorrent"))
        .hdr("content-disposition", None),
        // /health: any method, empty body (HEAD and PUT too).
        row("HEAD /health", "HEAD", "/health".into(), 200).body(b""),
        row("PUT /health", "PUT", "/health".into(), 200).body(b""),
        // Whole-torrent HEAD: the total length, no body.
        row(
            "HEAD whole torrent",
            "HEAD",
            format!("/data?ih={multi}"),
            200,
        )
        .body(b"")
        .hdr("content-length", Some(&all_multi.len().to_string())),
    ];
    let mut fails = Vec::new();
    let n = rows.len();
    for r in &rows {
        if let Err(e) = r.check(&d) {
            fails.push(e);
        }
        d.assert_healthy();
    }
    assert!(
        fails.is_empty(),
        "{} of {n} rows failed:\n{}",
        fails.len(),
        fails.join("\n")
    );
    // The info-less torrent of `de` is not a junk torrent that blocks: /info on it waits.
    let r = d.get("/info?ih=da39a3ee5e6b4b0d3255bfef95601890afd80709&nowait=1");
    assert_one_line_error(&r, 202, "info not ready", "/info of the empty-info torrent");
}
