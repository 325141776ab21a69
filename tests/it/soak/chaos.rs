//! The fault schedule, drawn up front from the seed (so the same seed replays it), and the
//! faults themselves: seeders stopped, killed and restarted, the corrupt seeder joining, the
//! stalling peer announced, the data dir's tmpfs filled for a while, the daemon killed -9.

use std::{
    fmt,
    fs::{self, OpenOptions},
    path::{Path, PathBuf},
    process::Command,
    sync::{atomic::Ordering, Arc},
    thread,
    time::Duration,
};

use super::{
    common::{disk::fill_up, run_bounded},
    ctx::{Ctx, Rng},
};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    /// `swarm.sh seeder <action> <name>`.
    Seeder(&'static str, &'static str),
    StallOn,
    StallOff,
    DiskFullOn,
    DiskFullOff,
    /// `kill -9` of the daemon and a restart on the same data dir.
    Kill9,
}

pub struct Event {
    pub at: f64,
    pub act: Act,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t={:>6.1}s {:?}", self.at, self.act)
    }
}

/// The faults of a run of `dur` seconds. Nothing starts in the last 15 s; every fault window
/// closes before the end; at most one good seeder is down at a time, so the swarm always has
/// one; a restart never falls inside a full-disk window.
pub fn schedule(seed: u64, dur: f64) -> Vec<Event> {
    let mut rng = Rng::new(seed ^ 0xC4A05);
    let r = |rng: &mut Rng, lo: f64, hi: f64| lo + (rng.below(1000) as f64 / 1000.0) * (hi - lo);
    let end = dur - 15.0;
    let mut ev = Vec::new();
    // Good seeders: one down at a time, back after 10-30 s.
    let mut t = r(&mut rng, 10.0, 25.0);
    while t + 10.0 < end {
        let name = *rng.pick(&["seed1", "seed2"]);
        let how = *rng.pick(&["stop", "kill"]);
        let back = (t + r(&mut rng, 10.0, 30.0)).min(end);
        ev.push(Event {
            at: t,
            act: Act::Seeder(how, name),
        });
        ev.push(Event {
            at: back,
            act: Act::Seeder("start", name),
        });
        t = back + r(&mut rng, 5.0, 20.0);
    }
    // The corrupt seeder and the stalling peer: windows of 20-60 s, gaps of 20-90 s.
    for (on, off) in [
        (
            Act::Seeder("start", "corrupt"),
            Act::Seeder("stop", "corrupt"),
        ),
        (Act::StallOn, Act::StallOff),
    ] {
        let mut t = r(&mut rng, 5.0, 40.0);
        while t + 20.0 < end {
            let stop = (t + r(&mut rng, 20.0, 60.0)).min(end);
            ev.push(Event { at: t, act: on });
            ev.push(Event { at: stop, act: off });
            t = stop + r(&mut rng, 20.0, 90.0);
        }
    }
    // A full disk for a minute (a quarter of the run if shorter) in every 10 minutes.
    let len = (dur / 4.0).min(60.0);
    let mut full = Vec::new();
    for k in 0..((dur / 600.0).ceil() as u64) {
        let lo = k as f64 * 600.0 + 20.0;
        let hi = (lo + 580.0).min(end) - len;
        if hi > lo {
            let at = r(&mut rng, lo, hi);
            full.push((at, at + len));
            ev.push(Event {
                at,
                act: Act::DiskFullOn,
            });
            ev.push(Event {
                at: at + len,
                act: Act::DiskFullOff,
            });
        }
    }
    // kill -9 every few minutes (the first within the first minute and a half).
    let mut t = r(&mut rng, 45.0, 90.0);
    while t < end - 15.0 {
        if let Some(&(_, e)) = full.iter().find(|(s, e)| t > s - 5.0 && t < e + 5.0) {
            t = e + 10.0;
            continue;
        }
        ev.push(Event {
            at: t,
            act: Act::Kill9,
        });
        t += r(&mut rng, 150.0, 270.0);
    }
    ev.sort_by(|a, b| a.at.total_cmp(&b.at));
    ev
}

/// `swarm.sh seeder <action> <name> <dir>`, bounded.
pub fn seeder(script: &Path, dir: &Path, action: &str, name: &str) -> Result<(), String> {
    let (st, out, err) = run_bounded(
        Command::new("bash")
            .arg(script)
            .args(["seeder", action, name])
            .arg(dir),
        Duration::from_secs(180),
    );
    match st {
        Some(s) if s.success() => Ok(()),
        _ => Err(format!(
            "swarm.sh seeder {action} {name}: {st:?} {}{}",
            err.trim(),
            out.trim()
        )),
    }
}

/// Keeps the file system of `filler` full while the context says the disk is full: appends
/// until ENOSPC, again every half second (evictions free space that the filler takes back).
pub fn fill_while_full(ctx: Arc<Ctx>, filler: PathBuf, on: Arc<std::sync::atomic::AtomicBool>) {
    let mut f = match OpenOptions::new().create(true).append(true).open(&filler) {
        Ok(f) => f,
        Err(e) => panic!("filler {}: {e}", filler.display()),
    };
    while on.load(Ordering::SeqCst) && !ctx.stopped() {
        // Another error than ENOSPC only means this round stops early; the next one retries.
        let _ = fill_up(&mut f);
        thread::sleep(Duration::from_millis(500));
    }
    drop(f);
    let _ = fs::remove_file(&filler);
}
