//! The soak's final table, and the list of what failed (empty when the soak passes).

use std::{collections::BTreeMap, path::PathBuf};

use super::{
    ctx::Ctx,
    report::{cache_excess, rss_slope, ttfb_window, warm_rss, Sample, MIB},
    CAPACITY,
};

/// What the soak measured after the load stopped.
pub struct End {
    pub seed: u64,
    pub dur: f64,
    pub fatal: Option<String>,
    pub stuck: Vec<String>,
    pub start_status: Option<(usize, u64, u64)>,
    pub end_status: Option<(usize, u64, u64)>,
    pub fds_start: BTreeMap<String, usize>,
    pub fds_end: BTreeMap<String, usize>,
    pub rss_after: u64,
    pub cache_end: u64,
    pub data_end: u64,
    pub mounts_running: usize,
    pub restarts: u32,
    pub harness_errors: Vec<String>,
    pub clean_exit: bool,
    pub mounts_after: usize,
    pub tmpfs_unmounted: bool,
    pub panics: Vec<String>,
    /// Pieces librqbit rejected (a bad hash: the corrupt seeder), from the log.
    pub bad_pieces: usize,
    /// Connections the stalling peer accepted, and those it let stall.
    pub stalled: (usize, usize),
    pub log: PathBuf,
}

/// RSS after the soak may be at most this factor of the warmed-up level.
const RSS_FACTOR: f64 = 1.5;
/// The RSS trend over the last two thirds, projected over that span, may add at most this
/// share of the warmed-up level.
const SLOPE_SHARE: f64 = 0.25;
/// The last window's cached-read TTFB may be at most this factor of the first's (plus 5 ms for
/// p50, 20 ms for p99: scheduler noise on a shared 2-core box).
const TTFB_FACTOR: f64 = 2.0;

struct Rows {
    rows: Vec<(String, String, String)>,
    failures: Vec<String>,
}

impl Rows {
    fn row(&mut self, what: &str, value: String, bound: &str, ok: bool) {
        let verdict = if ok { "ok" } else { "FAIL" };
        self.rows.push((
            what.to_string(),
            value.clone(),
            format!("{bound} {verdict}"),
        ));
        if !ok {
            self.failures
                .push(format!("{what}: {value} (bound {bound})"));
        }
    }

    fn zero(&mut self, what: &str, n: usize, detail: &[String]) {
        self.row(what, n.to_string(), "= 0", n == 0);
        for d in detail.iter().take(10) {
            eprintln!("  {what}: {d}");
        }
    }
}

pub fn print(ctx: &Ctx, e: &End, samples: &[Sample]) -> Vec<String> {
    let s = ctx.stats.lock().unwrap();
    let mut r = Rows {
        rows: Vec::new(),
        failures: Vec::new(),
    };
    if let Some(f) = &e.fatal {
        r.failures.push(format!("fatal: {f}"));
    }
    let ok: u64 = s.ok.values().sum();
    let documented: u64 = s.documented.values().sum();
    eprintln!(
        "\nsoak: seed {}, {:.1} min, {} kill -9 restarts",
        e.seed,
        e.dur / 60.0,
        e.restarts
    );
    eprintln!("requests completed, by kind:");
    for (k, n) in &s.ok {
        eprintln!("  {k:<24} {n}");
    }
    eprintln!("documented failures inside fault windows, by reason:");
    for (k, n) in &s.documented {
        eprintln!("  {n:>6}  {k}");
    }
    r.row("requests completed", ok.to_string(), "> 0", ok > 0);
    r.row(
        "bytes verified (ranges)",
        format!(
            "{:.1} MiB ({})",
            s.bytes_verified as f64 / MIB,
            s.ranges_verified
        ),
        "> 0",
        s.bytes_verified > 0,
    );
    r.row(
        "documented failures (fault windows)",
        format!(
            "{documented} ({} started < {:?} after a full disk)",
            s.after_full,
            super::ctx::SETTLE
        ),
        "-",
        true,
    );
    r.row(
        "faults seen: bad pieces rejected / stalling peer connections (stalled)",
        format!("{} / {} ({})", e.bad_pieces, e.stalled.0, e.stalled.1),
        "-",
        true,
    );
    r.zero("wrong bytes (ranges)", s.wrong.len(), &s.wrong);
    r.zero("undocumented failures", s.unexpected.len(), &s.unexpected);
    let mut hung = s.hung.clone();
    hung.extend(e.stuck.iter().cloned());
    r.zero("hung requests", hung.len(), &hung);
    r.zero("daemon panics", e.panics.len(), &e.panics);
    r.zero("harness errors", e.harness_errors.len(), &e.harness_errors);
    let (t0, rf0, rd0) = e.start_status.unwrap_or((usize::MAX, u64::MAX, u64::MAX));
    match e.end_status {
        Some((t, refs, readers)) => {
            r.row(
                "leaked torrents (after grace)",
                format!("{t} (start {t0})"),
                "= start",
                t == t0,
            );
            r.row(
                "leaked references",
                format!("{refs} (start {rf0})"),
                "= start",
                refs == rf0,
            );
            r.row(
                "leaked readers",
                format!("{readers} (start {rd0})"),
                "= start",
                readers == rd0,
            );
        }
        None => r.row(
            "/status after the load",
            "no answer".into(),
            "answers",
            false,
        ),
    }
    // The cache keeps the data and log files of up to 64 torrents open by design
    // (`OPEN_TORRENTS`, cache/src/index/disk.rs): bounded, counted apart.
    // Peer connections the daemon keeps in CLOSE_WAIT after the peer left: their own row (the
    // soak found them: librqbit's listener stopped polling its pending handshake checks after a
    // failed one; vendor/README.md, tests/it/incoming.rs).
    let cache_file = |k: &String| k.contains("/cache/pieces/");
    let close_wait = |k: &String| k.starts_with("socket tcp") && k.ends_with(" 08");
    let count = |m: &BTreeMap<String, usize>, cache: bool| -> usize {
        m.iter()
            .filter(|(k, _)| cache_file(k) == cache && !close_wait(k))
            .map(|(_, n)| n)
            .sum()
    };
    let (n0, n1) = (count(&e.fds_start, false), count(&e.fds_end, false));
    let leaked_fds = n1.saturating_sub(n0);
    let cache_fds = count(&e.fds_end, true);
    r.row(
        "cache files open after the load",
        cache_fds.to_string(),
        "<= 128 (64 torrents)",
        cache_fds <= 128,
    );
    r.row(
        "leaked fds (cache files and CLOSE_WAIT apart)",
        format!("{leaked_fds} ({n0} at start, {n1} at end)"),
        "= 0",
        leaked_fds == 0,
    );
    let close_waits: usize = e
        .fds_end
        .iter()
        .filter(|(k, _)| close_wait(k))
        .map(|(_, n)| n)
        .sum();
    r.row(
        "peer sockets in CLOSE_WAIT after the load",
        close_waits.to_string(),
        "= 0",
        close_waits == 0,
    );
    for (k, n) in &e.fds_end {
        let before = e.fds_start.get(k).copied().unwrap_or(0);
        if *n != before && !cache_file(k) {
            eprintln!("  fds {k}: {before} at start, {n} at end");
        }
    }
    r.row(
        "mounts on the mountpoint while running / after exit",
        format!("{} / {}", e.mounts_running, e.mounts_after),
        "1 / 0",
        e.mounts_running == 1 && e.mounts_after == 0,
    );
    r.row(
        "clean exit on SIGTERM, tmpfs unmounted",
        format!("{} / {}", e.clean_exit, e.tmpfs_unmounted),
        "true / true",
        e.clean_exit && e.tmpfs_unmounted,
    );

    let warm = warm_rss(samples, e.dur);
    let after = e.rss_after as f64;
    r.row(
        "RSS after / warmed-up",
        format!("{:.1} / {:.1} MiB", after / MIB, warm / MIB),
        &format!("<= {RSS_FACTOR}x"),
        after <= warm * RSS_FACTOR,
    );
    let (slope, n) = rss_slope(samples, e.dur);
    let span = e.dur * 2.0 / 3.0 / 60.0;
    r.row(
        "RSS slope, last 2/3 (per process)",
        format!("{:+.2} MiB/min ({n} samples)", slope / MIB),
        &if n < 300 {
            "not judged: < 300 samples".to_string()
        } else {
            format!("x {span:.0} min <= {:.0}% of warm", SLOPE_SHARE * 100.0)
        },
        // Judged with at least 5 minutes of samples past each process's warm-up: a 3-minute
        // smoke with a restart has about one, from a process still growing into its load.
        n < 300 || slope * span <= warm * SLOPE_SHARE,
    );
    let (excess, cache, bound) = cache_excess(samples, CAPACITY);
    let max_cache = samples.iter().map(|x| x.cache).max().unwrap_or(0);
    let max_readers = samples.iter().map(|x| x.readers).max().unwrap_or(0);
    r.row(
        "cache dir max (open readers max)",
        format!("{:.1} MiB ({max_readers})", max_cache as f64 / MIB),
        "cap + 32 MiB/reader + 8 MiB",
        excess <= 0,
    );
    if excess > 0 {
        eprintln!(
            "  cache dir {:.1} MiB over its bound {:.1} MiB at one sample",
            cache as f64 / MIB,
            bound as f64 / MIB
        );
    }
    r.row(
        "cache dir / data dir after the load",
        format!(
            "{:.1} / {:.1} MiB",
            e.cache_end as f64 / MIB,
            e.data_end as f64 / MIB
        ),
        &format!("cache <= {} MiB + 1 MiB of piece logs", CAPACITY >> 20),
        e.cache_end <= CAPACITY + (1 << 20),
    );
    let w = if e.dur >= 900.0 { 300.0 } else { 60.0 };
    let (p50a, p99a, na) = ttfb_window(&s.ttfb, 0.0, w);
    let (p50b, p99b, nb) = ttfb_window(&s.ttfb, e.dur - w, e.dur + 1.0);
    let ms = |x: f64| x * 1000.0;
    r.row(
        &format!("cached TTFB p50, first / last {:.0} min", w / 60.0),
        format!("{:.1} / {:.1} ms ({na} / {nb})", ms(p50a), ms(p50b)),
        &format!("<= {TTFB_FACTOR}x + 5 ms"),
        na > 0 && nb > 0 && p50b <= p50a * TTFB_FACTOR + 0.005,
    );
    r.row(
        &format!("cached TTFB p99, first / last {:.0} min", w / 60.0),
        format!("{:.1} / {:.1} ms", ms(p99a), ms(p99b)),
        &format!("<= {TTFB_FACTOR}x + 20 ms"),
        na > 0 && nb > 0 && p99b <= p99a * TTFB_FACTOR + 0.020,
    );
    let wid = r.rows.iter().map(|x| x.0.len()).max().unwrap_or(0);
    let wv = r.rows.iter().map(|x| x.1.len()).max().unwrap_or(0);
    eprintln!("\n| {:<wid$} | {:<wv$} | bound |", "measure", "value");
    eprintln!("|{}|{}|---|", "-".repeat(wid + 2), "-".repeat(wv + 2));
    for (a, b, c) in &r.rows {
        eprintln!("| {a:<wid$} | {b:<wv$} | {c} |");
    }
    eprintln!("daemon log: {}", e.log.display());
    r.failures
}
