//! The chaos soak (issue 17): mixed HTTP, FUSE and API load on one daemon while faults from a
//! seeded schedule hit it (seeders stopped, killed, corrupt, stalling; a full disk; `kill -9`
//! and restart; a cache far smaller than the files), with every byte any client received
//! checked against the payload. Ends with a table; fails if a must-be-zero is not zero or a
//! bound is broken, printing the seed to replay the schedule.
//!
//! Not part of the suite (`#[ignore]`): run it on demand,
//! `CONFLUENCE_SOAK_MINUTES=30 cargo test --test it soak:: -- --ignored --nocapture`
//! (default 30 minutes, `CONFLUENCE_SOAK_SEED=N` replays a schedule); CI runs 3 minutes.

mod api_load;
mod chaos;
mod client;
mod ctx;
mod daemon;
mod fuse_load;
mod http_load;
mod report;
mod stall;
mod table;

use crate::common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use chaos::Act;
use common::disk::Tmpfs;
use ctx::{Ctx, Rng, Target};
use daemon::{fds, mounts_on, Config, Proc};
use report::Live;

/// The piece cache: far smaller than the 64 MiB and 160 MiB torrents, so pieces are evicted and
/// downloaded again all the time.
pub const CAPACITY: u64 = 16 << 20;
/// Torrents leave 2 s after their last request, so adds and expiries run all the time.
const GRACE_SECS: u64 = 2;

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seed() -> u64 {
    std::env::var("CONFLUENCE_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 % 1_000_000_000)
        })
}

/// The files the workers read: every non-empty file of `single`, `multi`, `media` and six of
/// `many` (whose 160 MiB the churn worker adds and lets expire).
fn targets(sw: &common::Swarm) -> Vec<Target> {
    let mut out = Vec::new();
    for key in ["single", "multi", "media", "many"] {
        let t = sw.torrent(key);
        for (path, len) in t.files.iter().filter(|(_, l)| *l > 0).take(6) {
            let rel = if t.single {
                t.name.clone()
            } else {
                format!("{}/{path}", t.name)
            };
            out.push(Target {
                ih: sw.ih(key),
                path: path.clone(),
                len: *len,
                payload: sw.payload_path(&rel),
            });
        }
    }
    out
}

/// Puts the swarm back as the soak found it (seed1 only), also when the soak fails.
struct SwarmRestore {
    script: PathBuf,
    dir: PathBuf,
    ihs: Vec<String>,
}

impl Drop for SwarmRestore {
    fn drop(&mut self) {
        let _ = stall::announce(&self.ihs, false);
        for (a, n) in [("start", "seed1"), ("stop", "seed2"), ("stop", "corrupt")] {
            if let Err(e) = chaos::seeder(&self.script, &self.dir, a, n) {
                eprintln!("soak: restoring the swarm: {e}");
            }
        }
    }
}

/// The daemon process and what the soak knows about it.
struct Rig {
    cfg: Config,
    proc: Proc,
    live: Arc<Live>,
    /// Open fds of the current process right after its start, before any client saw it.
    fds_at_start: BTreeMap<String, usize>,
    restarts: u32,
    disk_on: Arc<AtomicBool>,
    filler: Option<thread::JoinHandle<()>>,
    filler_path: PathBuf,
    harness_errors: Vec<String>,
}

impl Rig {
    fn publish(&mut self, ctx: &Ctx) {
        self.fds_at_start = fds(self.proc.pid);
        *self.live.started.lock().unwrap() = ctx.secs();
        self.live.inst.store(self.restarts, Ordering::SeqCst);
        self.live.pid.store(self.proc.pid, Ordering::SeqCst);
        ctx.set_restarting(false, self.proc.port);
    }

    fn act(
        &mut self,
        ctx: &Arc<Ctx>,
        sw: &common::Swarm,
        ihs: &[String],
        act: Act,
    ) -> Result<(), String> {
        match act {
            Act::Seeder(a, n) => {
                if let Err(e) = chaos::seeder(&common::harness_script(), &sw.dir, a, n) {
                    self.harness_errors.push(e);
                }
            }
            Act::StallOn | Act::StallOff => {
                if let Err(e) = stall::announce(ihs, act == Act::StallOn) {
                    self.harness_errors
                        .push(format!("announcing the stalling peer: {e}"));
                }
            }
            Act::DiskFullOn => {
                ctx.set_disk_full(true);
                self.disk_on.store(true, Ordering::SeqCst);
                let (c, p, on) = (ctx.clone(), self.filler_path.clone(), self.disk_on.clone());
                self.filler = Some(thread::spawn(move || chaos::fill_while_full(c, p, on)));
            }
            Act::DiskFullOff => self.disk_off(ctx),
            Act::Kill9 => {
                ctx.set_restarting(true, 0);
                self.live.pid.store(0, Ordering::SeqCst);
                self.proc.kill9();
                self.proc = self
                    .cfg
                    .launch()
                    .map_err(|e| format!("restart after kill -9: {e}"))?;
                self.restarts += 1;
                self.publish(ctx);
            }
        }
        Ok(())
    }

    fn disk_off(&mut self, ctx: &Ctx) {
        self.disk_on.store(false, Ordering::SeqCst);
        if let Some(h) = self.filler.take() {
            let _ = h.join();
        }
        ctx.set_disk_full(false);
    }
}

fn spawn_workers(
    ctx: &Arc<Ctx>,
    seed: u64,
    sw: &common::Swarm,
    stalled: &[Arc<AtomicUsize>; 2],
) -> Vec<(&'static str, thread::JoinHandle<()>)> {
    let added: Vec<api_load::Added> = ["multi", "media", "many"]
        .iter()
        .map(|k| api_load::Added {
            ih: sw.ih(k),
            torrent: sw.torrent_bytes(k),
            magnet: sw.magnet(k),
        })
        .collect();
    let mut added = Some(added);
    let mut out = Vec::new();
    let kinds: [(&'static str, usize); 8] = [
        ("http reader", 4),
        ("cached reader", 1),
        ("aborter", 1),
        ("events", 1),
        ("poller", 1),
        ("churn", 1),
        ("fuse reader", 2),
        ("stalling peer", 1),
    ];
    let mut i = 0;
    for (name, n) in kinds {
        for _ in 0..n {
            i += 1;
            let (c, rng) = (ctx.clone(), Rng::new(seed.wrapping_add(i * 7919)));
            let h = match name {
                "http reader" => thread::spawn(move || http_load::readers(c, rng)),
                "cached reader" => thread::spawn(move || http_load::cached(c, rng)),
                "aborter" => thread::spawn(move || http_load::aborts(c, rng)),
                "events" => thread::spawn(move || api_load::events(c, rng)),
                "poller" => thread::spawn(move || api_load::pollers(c, rng)),
                "churn" => {
                    let a = added.take().unwrap();
                    thread::spawn(move || api_load::churn(c, rng, a))
                }
                "fuse reader" => thread::spawn(move || fuse_load::readers(c, rng)),
                _ => {
                    let [a, st] = stalled.clone();
                    thread::spawn(move || stall::serve(c, rng, a, st))
                }
            };
            out.push((name, h));
        }
    }
    out
}

/// `/status` JSON: (torrents, references, open readers), or None if it does not answer.
fn status(port: u16) -> Option<(usize, u64, u64)> {
    let b = client::open(port, "GET", "/status", &[("Accept", "application/json")])
        .and_then(|r| r.expect(200))
        .and_then(|mut r| r.body(16 << 20))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&b).ok()?;
    let ts = v["torrents"].as_array()?;
    let refs = ts.iter().filter_map(|t| t["references"].as_u64()).sum();
    Some((ts.len(), refs, v["open_readers"].as_u64()?))
}

fn wait_quiet(port: u16, limit: Duration) -> Option<(usize, u64, u64)> {
    let until = Instant::now() + limit;
    loop {
        let s = status(port);
        if s == Some((0, 0, 0)) || Instant::now() > until {
            return s;
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// The daemon's fds once connections of dropped torrents had up to 15 s to close: polled
/// until there are no more than at the start (cache files and CLOSE_WAIT sockets aside, see
/// the table).
fn settled_fds(pid: u32, start: &BTreeMap<String, usize>) -> BTreeMap<String, usize> {
    let others = |m: &BTreeMap<String, usize>| -> usize {
        m.iter()
            .filter(|(k, _)| !k.contains("/cache/pieces/") && !k.ends_with(" 08"))
            .map(|(_, n)| n)
            .sum()
    };
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let now = fds(pid);
        if others(&now) <= others(start) || Instant::now() > until {
            return now;
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// Stops the workers (and the disk filler) when the soak ends, also by a panic, before the
/// daemon, the mount and the tmpfs are taken down.
struct StopOnDrop(Arc<Ctx>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::SeqCst);
    }
}

/// The lines of the log at `path` that contain `needle`.
fn log_lines(path: &Path, needle: &str) -> Vec<String> {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "the chaos soak takes minutes: CONFLUENCE_SOAK_MINUTES=3 cargo test --test it soak:: -- --ignored --nocapture"]
fn soak() {
    let dur = env_f64("CONFLUENCE_SOAK_MINUTES", 30.0) * 60.0;
    let seed = seed();
    eprintln!(
        "soak: CONFLUENCE_SOAK_SEED={seed} CONFLUENCE_SOAK_MINUTES={}",
        dur / 60.0
    );
    assert!(
        Path::new("/dev/fuse").exists(),
        "the soak needs /dev/fuse (FUSE readers)"
    );
    // SAFETY: geteuid cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the soak needs root (tmpfs and FUSE mounts)"
    );
    let _serial = common::serial();
    let sw = common::swarm();
    let work = common::temp_dir("soak");
    let tmpfs = Tmpfs::mount_on(work.join("disk"), "512m");
    let mnt = common::fuse::MountDir(work.join("mnt"));
    std::fs::create_dir_all(&mnt.0).unwrap();
    let ihs: Vec<String> = ["single", "multi", "media", "many"]
        .iter()
        .map(|k| sw.ih(k))
        .collect();
    let restore = SwarmRestore {
        script: common::harness_script(),
        dir: sw.dir.clone(),
        ihs: ihs.clone(),
    };
    chaos::seeder(&restore.script, &sw.dir, "start", "seed2").unwrap_or_else(|e| panic!("{e}"));

    let events = chaos::schedule(seed, dur);
    eprintln!("soak: {} faults scheduled:", events.len());
    for e in &events {
        eprintln!("  {e}");
    }
    let cfg = Config {
        data: tmpfs.0.join("data"),
        log: work.join("daemon.log"),
        mnt: mnt.0.clone(),
        args: vec![
            format!("-cacheCapacity={CAPACITY}"),
            format!("-torrentGrace={GRACE_SECS}s"),
            common::fuse::TRACKER.to_string(),
        ],
    };
    let ctx = Arc::new(Ctx::new(mnt.0.clone(), targets(sw)));
    let proc = cfg.launch().unwrap_or_else(|e| panic!("soak: {e}"));
    let mut rig = Rig {
        cfg,
        proc,
        live: Arc::new(Live::default()),
        fds_at_start: BTreeMap::new(),
        restarts: 0,
        disk_on: Arc::new(AtomicBool::new(false)),
        filler: None,
        filler_path: tmpfs.0.join("filler"),
        harness_errors: Vec::new(),
    };
    rig.publish(&ctx);
    let _stop = StopOnDrop(ctx.clone());
    let start_status = status(rig.proc.port);
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (c, l, s, d) = (
            ctx.clone(),
            rig.live.clone(),
            samples.clone(),
            tmpfs.0.join("data/cache"),
        );
        thread::spawn(move || report::sampler(c, l, d, s))
    };
    let stalled = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
    let workers = spawn_workers(&ctx, seed, sw, &stalled);

    let mut fatal = None;
    for e in &events {
        ctx.sleep(Duration::from_secs_f64((e.at - ctx.secs()).max(0.0)));
        eprintln!("soak: {e}");
        if let Err(err) = rig.act(&ctx, sw, &ihs, e.act) {
            fatal = Some(err);
            break;
        }
    }
    ctx.sleep(Duration::from_secs_f64((dur - ctx.secs()).max(0.0)));
    rig.disk_off(&ctx);
    eprintln!("soak: t={:.1}s load stops", ctx.secs());
    ctx.stop.store(true, Ordering::SeqCst);
    let until = Instant::now() + ctx::BOUND + Duration::from_secs(20);
    let mut stuck = Vec::new();
    for (name, h) in workers {
        while !h.is_finished() && Instant::now() < until {
            thread::sleep(Duration::from_millis(50));
        }
        if h.is_finished() {
            if h.join().is_err() {
                stuck.push(format!("{name} worker panicked"));
            }
        } else {
            stuck.push(format!(
                "{name} worker still busy {:?} after the stop",
                ctx::BOUND
            ));
        }
    }
    let _ = sampler.join();
    drop(restore);

    let port = rig.proc.port;
    let end_status = wait_quiet(port, Duration::from_secs(GRACE_SECS + 60));
    let end = table::End {
        seed,
        dur,
        fatal,
        stuck,
        start_status,
        end_status,
        fds_start: rig.fds_at_start.clone(),
        fds_end: settled_fds(rig.proc.pid, &rig.fds_at_start),
        rss_after: common::vm_rss(rig.proc.pid),
        cache_end: common::dir_size(&tmpfs.0.join("data/cache")),
        data_end: common::dir_size(&tmpfs.0.join("data")),
        mounts_running: mounts_on(&mnt.0),
        restarts: rig.restarts,
        harness_errors: std::mem::take(&mut rig.harness_errors),
        clean_exit: rig.proc.term(),
        mounts_after: mounts_on(&mnt.0),
        tmpfs_unmounted: tmpfs.unmount(),
        panics: log_lines(&work.join("daemon.log"), "panicked"),
        bad_pieces: log_lines(&work.join("daemon.log"), "did not validate").len(),
        stalled: (
            stalled[0].load(Ordering::SeqCst),
            stalled[1].load(Ordering::SeqCst),
        ),
        log: work.join("daemon.log"),
    };
    let samples = samples.lock().unwrap().clone();
    let failures = table::print(&ctx, &end, &samples);
    report::write_samples(&work.join("samples.csv"), &samples);
    if failures.is_empty() {
        // The daemon log and the RSS samples (samples.csv) are kept only when the soak fails.
        let _ = std::fs::remove_dir_all(&work);
    }
    assert!(
        failures.is_empty(),
        "soak failed (replay: CONFLUENCE_SOAK_SEED={seed} CONFLUENCE_SOAK_MINUTES={}): {}",
        dur / 60.0,
        failures.join("; ")
    );
}
