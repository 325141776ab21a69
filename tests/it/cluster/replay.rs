//! The replayed request log: 24 torrents made by a daemon's `/upload`, seeded by an aria2c on
//! 127.0.0.21 that `swarmtool.py`'s mini tracker names for any infohash, read by one daemon
//! with a cache of C and by the cluster with three caches of C/3.

use std::{
    fs,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::harness::Cluster;
use super::{node_of, torrent_ih};
use crate::common::{self, assert_bytes_eq, form::upload_form, serial, swarm, Daemon, Resp};

const TORRENTS: usize = 24;
const FILE_LEN: usize = 512 * 1024;
const REQUESTS: usize = 240;

/// `swarmtool.py minitracker`: answers every announce with one peer; stopped by PID.
struct MiniTracker {
    child: Child,
    url: String,
}

impl MiniTracker {
    fn start(peer: &str) -> MiniTracker {
        let dir = common::temp_dir("minitracker");
        let portfile = dir.join("port");
        let tool = common::harness_script().with_file_name("swarmtool.py");
        let child = Command::new("python3")
            .arg("-B")
            .arg(&tool)
            .args(["minitracker", portfile.to_str().unwrap(), peer])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("starting swarmtool.py minitracker");
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            if let Ok(p) = fs::read_to_string(&portfile) {
                if let Ok(p) = p.trim().parse::<u16>() {
                    break p;
                }
            }
            assert!(
                Instant::now() < deadline,
                "minitracker wrote no port in 10 s"
            );
            thread::sleep(Duration::from_millis(50));
        };
        MiniTracker {
            child,
            url: format!("http://127.0.0.1:{port}/announce"),
        }
    }
}

impl Drop for MiniTracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// aria2c seeding every `DIR/t*.torrent` from `DIR` on 127.0.0.21:`port`; stopped by PID.
struct Seeder {
    child: Child,
}

impl Seeder {
    fn start(dir: &std::path::Path, port: u16) -> Seeder {
        let mut torrents: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "torrent"))
            .collect();
        torrents.sort();
        let child = Command::new("aria2c")
            .args(["--interface=127.0.0.21", &format!("--listen-port={port}")])
            .args([
                "--disable-ipv6=true",
                "--enable-dht=false",
                "--enable-dht6=false",
            ])
            .args([
                "--bt-enable-lpd=false",
                "--enable-peer-exchange=false",
                "--seed-ratio=0.0",
            ])
            .args([
                "--bt-max-peers=0",
                "--max-concurrent-downloads=64",
                "--check-integrity=true",
            ])
            .args(["--bt-hash-check-seed=true", "--auto-file-renaming=false"])
            .args(["--console-log-level=warn", "--summary-interval=0"])
            .arg(format!("--dir={}", dir.display()))
            .args(&torrents)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting aria2c (Debian package aria2)");
        let mut s = Seeder { child };
        let addr = std::net::SocketAddr::from(([127, 0, 0, 21], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("aria2c exited at start: {st}");
            }
            assert!(
                Instant::now() < deadline,
                "aria2c not listening on {addr} in 20 s"
            );
            thread::sleep(Duration::from_millis(100));
        }
        s
    }
}

impl Drop for Seeder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic file contents of torrent `i`.
fn content(i: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (i as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (0..FILE_LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A Zipf(1) request log over `n` torrents (the popular few most of the time, as a media
/// library is used), from a fixed seed.
fn zipf_log(n: usize, len: usize) -> Vec<usize> {
    let weights: Vec<f64> = (0..n).map(|k| 1.0 / (k as f64 + 1.0)).collect();
    let total: f64 = weights.iter().sum();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut u = (x >> 11) as f64 / (1u64 << 53) as f64 * total;
            for (k, w) in weights.iter().enumerate() {
                if u < *w {
                    return k;
                }
                u -= w;
            }
            n - 1
        })
        .collect()
}

/// (hits, misses) of one daemon's own cache.
fn cache_counts(port: u16) -> (u64, u64) {
    let r = common::request(
        port,
        "GET",
        "/status",
        &[
            ("Accept", "application/json"),
            ("X-Confluence-Forwarded", "test"),
        ],
        b"",
        common::HTTP_TIMEOUT,
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("/status JSON");
    let c = &v["cache"];
    (
        c["hits"].as_u64().expect("hits"),
        c["misses"].as_u64().expect("misses"),
    )
}

fn ratio((h, m): (u64, u64)) -> f64 {
    if h + m == 0 {
        0.0
    } else {
        h as f64 / (h + m) as f64
    }
}

fn diff(a: (u64, u64), b: (u64, u64)) -> (u64, u64) {
    (a.0 - b.0, a.1 - b.1)
}

fn read(port: u16, ih: &str) -> Resp {
    common::request(
        port,
        "GET",
        &format!("/data?ih={ih}&path=f.bin"),
        &[],
        b"",
        common::HTTP_TIMEOUT,
    )
}

#[test]
fn replayed_log_hit_ratio_and_losing_a_node() {
    let _sw = swarm();
    let _g = serial();
    let seed_port = common::free_port();
    let tracker = MiniTracker::start(&format!("127.0.0.21:{seed_port}"));
    let implicit = format!("-implicitTracker={}", tracker.url);
    let contents: Vec<Vec<u8>> = (0..TORRENTS).map(content).collect();
    let seed_dir = common::temp_dir("cluster-seed");
    let ihs: Vec<String> = {
        let maker = Daemon::start(&[&implicit]);
        contents
            .iter()
            .enumerate()
            .map(|(i, data)| {
                let (ct, body) = upload_form(&format!("t{i}"), &[("f.bin", data)]);
                let r = maker.req(
                    "POST",
                    "/upload",
                    &[("Content-Type", &ct)],
                    &body,
                    common::HTTP_TIMEOUT,
                );
                assert_eq!(r.status, 200, "upload t{i}: {}", r.text());
                fs::create_dir_all(seed_dir.join(format!("t{i}"))).unwrap();
                fs::write(seed_dir.join(format!("t{i}/f.bin")), data).unwrap();
                fs::write(seed_dir.join(format!("t{i}.torrent")), &r.body).unwrap();
                torrent_ih(&r.body)
            })
            .collect()
    };
    let seeder = Seeder::start(&seed_dir, seed_port);
    let log = zipf_log(TORRENTS, REQUESTS);
    let distinct: std::collections::BTreeSet<_> = log.iter().collect();
    assert!(
        distinct.len() >= 20,
        "the log names only {} torrents",
        distinct.len()
    );

    // One daemon with the whole cache.
    let single = Daemon::start(&["-cacheCapacity=6MiB", &implicit]);
    for &t in &log {
        let r = read(single.port, &ihs[t]);
        assert_eq!(r.status, 200, "single daemon, t{t}: {}", r.text());
        assert_bytes_eq(&r.body, &contents[t], "single daemon");
    }
    let single_ratio = ratio(cache_counts(single.port));
    drop(single);

    // The cluster, a third of the cache each.
    let mut c = Cluster::start(3, &["-cacheCapacity=2MiB", &implicit]);
    let owners: Vec<String> = ihs.iter().map(|ih| c.owner(ih)).collect();
    for &t in &log {
        let r = read(c.nginx.port, &ihs[t]);
        assert_eq!(r.status, 200, "cluster, t{t}: {}", r.text());
        assert_eq!(node_of(&r), owners[t], "t{t} always on its owner");
        assert_bytes_eq(&r.body, &contents[t], "cluster");
    }
    let ports: Vec<u16> = c.nodes.iter().map(|d| d.as_ref().unwrap().port).collect();
    let before: Vec<(u64, u64)> = ports.iter().map(|&p| cache_counts(p)).collect();
    let total = before.iter().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let cluster_ratio = ratio(total);
    eprintln!(
        "hit ratio: single {single_ratio:.3}, cluster {cluster_ratio:.3}, per node {before:?}"
    );
    assert!(
        cluster_ratio >= 0.9 * single_ratio,
        "cluster hit ratio {cluster_ratio:.3} < 0.9 × single {single_ratio:.3}"
    );

    // Stop the node that owns the most requested torrent: only its torrents move.
    let gone = owners[log[0]].clone();
    let k: usize = gone[4..].parse().unwrap();
    c.nodes[k].take().unwrap().stop();
    let stayed: Vec<usize> = log.iter().copied().filter(|&t| owners[t] != gone).collect();
    let moved: Vec<usize> = log.iter().copied().filter(|&t| owners[t] == gone).collect();
    assert!(!stayed.is_empty() && !moved.is_empty());
    for &t in &stayed {
        let r = read(c.nginx.port, &ihs[t]);
        assert_eq!(
            (r.status, node_of(&r)),
            (200, owners[t].clone()),
            "t{t} stays put"
        );
        assert_bytes_eq(&r.body, &contents[t], "a torrent that stayed");
    }
    for i in (0..3).filter(|&i| i != k) {
        let now = diff(cache_counts(ports[i]), before[i]);
        eprintln!(
            "node{i}: before {:.3}, after the loss {:.3}",
            ratio(before[i]),
            ratio(now)
        );
        assert!(
            ratio(now) >= 0.9 * ratio(before[i]),
            "node{i}'s hit ratio fell from {:.3} to {:.3} when {gone} stopped",
            ratio(before[i]),
            ratio(now)
        );
    }
    let status = c.nginx.get("/status").text();
    assert!(
        status.starts_with("Cluster: 3 nodes, 2 answering"),
        "{status}"
    );
    let me = &c.peers[k];
    assert!(
        status.contains(&format!("== Node ({me}): no status: ")),
        "{status}"
    );
    for &t in &moved {
        let r = read(c.nginx.port, &ihs[t]);
        assert_eq!(r.status, 200, "t{t} after {gone} stopped: {}", r.text());
        let new_owner = c.owner(&ihs[t]);
        assert_ne!(new_owner, gone);
        assert_eq!(node_of(&r), new_owner, "t{t} on its new owner");
        assert_bytes_eq(&r.body, &contents[t], "a torrent that moved");
    }
    drop(c);
    drop(seeder);
    let _ = fs::remove_dir_all(&seed_dir);
}
