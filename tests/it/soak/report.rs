//! Samples taken while the soak runs (RSS, cache dir size, open readers) and the arithmetic of
//! the final table: RSS level and slope, the data dir bound, time-to-first-byte percentiles.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use super::{
    client::open,
    common::{dir_size, vm_rss},
    ctx::Ctx,
};

pub const MIB: f64 = (1u64 << 20) as f64;
/// librqbit's lookahead window that the cache pins for each open reader (README, "Data
/// directory"), and a margin for the pieces being downloaded.
pub const WINDOW: u64 = 32 << 20;
pub const IN_FLIGHT: u64 = 8 << 20;
/// Samples this soon after a (re)start are not part of the warmed-up level or the slope (a
/// fresh process grows for about a minute as the load reaches it).
pub const WARMUP: f64 = 60.0;

#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub t: f64,
    /// Which daemon process (0 = the first, +1 per restart).
    pub inst: u32,
    /// Seconds since that process started.
    pub age: f64,
    pub rss: u64,
    pub cache: u64,
    pub readers: u64,
}

/// Where the sampler finds the daemon: its pid and instance number (pid 0 while restarting).
#[derive(Default)]
pub struct Live {
    pub pid: AtomicU32,
    pub inst: AtomicU32,
    pub started: Mutex<f64>,
}

pub fn sampler(ctx: Arc<Ctx>, live: Arc<Live>, cache_dir: PathBuf, out: Arc<Mutex<Vec<Sample>>>) {
    while !ctx.stopped() {
        let pid = live.pid.load(Ordering::SeqCst);
        let port = if pid == 0 { None } else { ctx.port() };
        if let Some(port) = port {
            let readers = open(port, "GET", "/status", &[("Accept", "application/json")])
                .and_then(|r| r.expect(200))
                .and_then(|mut r| r.body(16 << 20))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["open_readers"].as_u64());
            let t = ctx.secs();
            let s = Sample {
                t,
                inst: live.inst.load(Ordering::SeqCst),
                age: t - *live.started.lock().unwrap(),
                rss: vm_rss(pid),
                cache: dir_size(&cache_dir),
                readers: readers.unwrap_or(0),
            };
            if s.rss > 0 {
                out.lock().unwrap().push(s);
            }
        }
        ctx.sleep(Duration::from_secs(1));
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    percentile(&mut v, 50.0)
}

pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i.min(v.len() - 1)]
}

/// The warmed-up RSS: the median over the first third of the run, past each process's warm-up
/// (the first process's samples past its warm-up if the first third has none).
pub fn warm_rss(s: &[Sample], dur: f64) -> f64 {
    let pick = |until: f64| -> Vec<f64> {
        s.iter()
            .filter(|x| x.t <= until && x.age >= WARMUP)
            .map(|x| x.rss as f64)
            .collect()
    };
    let v = pick(dur / 3.0);
    median(if v.is_empty() { pick(f64::MAX) } else { v })
}

/// The samples as CSV (t, process, age, rss, cache, readers), kept beside the daemon log of a
/// failed soak so that a memory verdict can be looked at sample by sample.
pub fn write_samples(path: &std::path::Path, s: &[Sample]) {
    let mut out = String::from("t,inst,age,rss,cache,readers\n");
    for x in s {
        out += &format!(
            "{:.1},{},{:.1},{},{},{}\n",
            x.t, x.inst, x.age, x.rss, x.cache, x.readers
        );
    }
    let _ = std::fs::write(path, out);
}

/// RSS slope in bytes per minute over the last two thirds of the run: a least-squares slope
/// pooled over the daemon processes (each process's own mean taken out, since a restart starts
/// from scratch), counting only samples past each process's warm-up.
pub fn rss_slope(s: &[Sample], dur: f64) -> (f64, usize) {
    let v: Vec<&Sample> = s
        .iter()
        .filter(|x| x.t >= dur / 3.0 && x.age >= WARMUP)
        .collect();
    let (mut sxy, mut sxx) = (0.0, 0.0);
    let mut insts: Vec<u32> = v.iter().map(|x| x.inst).collect();
    insts.dedup();
    for i in &insts {
        let g: Vec<&&Sample> = v.iter().filter(|x| x.inst == *i).collect();
        let n = g.len() as f64;
        let mt = g.iter().map(|x| x.t).sum::<f64>() / n;
        let mr = g.iter().map(|x| x.rss as f64).sum::<f64>() / n;
        for x in g {
            sxy += (x.t - mt) * (x.rss as f64 - mr);
            sxx += (x.t - mt) * (x.t - mt);
        }
    }
    (if sxx > 0.0 { sxy / sxx * 60.0 } else { 0.0 }, v.len())
}

/// The largest excess of the cache dir over capacity + one window per open reader (readers
/// taken as the most seen within two samples either side) + the pieces in flight; and the
/// largest cache dir seen with its bound at that moment.
pub fn cache_excess(s: &[Sample], capacity: u64) -> (i64, u64, u64) {
    let mut worst = (i64::MIN, 0, 0);
    for (i, x) in s.iter().enumerate() {
        let lo = i.saturating_sub(2);
        let hi = (i + 3).min(s.len());
        let readers = s[lo..hi].iter().map(|y| y.readers).max().unwrap_or(0);
        let bound = capacity + WINDOW * readers + IN_FLIGHT;
        let excess = x.cache as i64 - bound as i64;
        if excess > worst.0 {
            worst = (excess, x.cache, bound);
        }
    }
    worst
}

/// p50 and p99 (seconds) of cached-read TTFB samples with `lo <= t < hi`, and their count.
pub fn ttfb_window(v: &[(f64, f64)], lo: f64, hi: f64) -> (f64, f64, usize) {
    let mut w: Vec<f64> = v
        .iter()
        .filter(|(t, _)| *t >= lo && *t < hi)
        .map(|(_, d)| *d)
        .collect();
    let n = w.len();
    (percentile(&mut w, 50.0), percentile(&mut w, 99.0), n)
}
