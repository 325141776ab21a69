//! confluence patch: per-peer flow control. A peer serves requests in the order they were
//! sent, so how much is asked of it at once decides how long a chunk a stream needs now waits
//! behind the rest: each peer's queue is sized from its measured rate and round trip.

use std::time::{Duration, Instant};

use librqbit_core::constants::CHUNK_SIZE;

/// confluence patch: a peer serves requests in the order they were sent, so a chunk a stream
/// needs now waits behind everything asked of that peer before it. Each peer's queue is kept to
/// about this much of its measured rate (a window of `MIN_WINDOW`..=`request_window` chunks),
/// instead of always the full window (128 chunks, 2 MiB: 8 s from a 256 KiB/s peer).
const QUEUE_SECS: f64 = 0.5;
const URGENT_SECS: f64 = 0.25;
const MIN_WINDOW: usize = 8;
const INITIAL_WINDOW: usize = 16;
const RATE_SAMPLE: Duration = Duration::from_millis(500);
const RATE_SAMPLE_MIN: Duration = Duration::from_millis(20);
const RATE_SAMPLE_BYTES: u64 = 1024 * 1024;
const MAX_RTT: Duration = Duration::from_secs(1);

pub(super) struct PeerFlowControl {
    pub(super) i_am_choked: bool,
    pub(super) request_window: usize,
    rate: RateMeter,
    /// confluence patch: the time from an ask sent to an idle peer to its first chunk back
    /// (round trip + one chunk's transfer), low-biased; `probe` is when that ask went out.
    rtt: Option<Duration>,
    probe: Option<Instant>,
}

impl PeerFlowControl {
    pub(super) fn new(max_request_window: usize) -> Self {
        Self {
            i_am_choked: true,
            request_window: max_request_window,
            rate: RateMeter::new(),
            rtt: None,
            probe: None,
        }
    }

    /// confluence patch: asks went out to a peer that had none: time the first chunk back.
    pub(super) fn asked_idle(&mut self, now: Instant) {
        self.probe.get_or_insert(now);
    }

    /// confluence patch: a chunk arrived; a lower sample is taken at once, a higher one slowly
    /// (a seeder's disk or a burst of other traffic delays some answers).
    pub(super) fn chunk_arrived(&mut self) {
        let Some(sent) = self.probe.take() else {
            return;
        };
        let sample = sent.elapsed().min(MAX_RTT);
        self.rtt = Some(match self.rtt {
            Some(rtt) if rtt < sample => rtt.mul_f64(0.8) + sample.mul_f64(0.2),
            _ => sample,
        });
    }

    /// confluence patch: how many chunks may be asked of the peer at once; `fetched` is its byte
    /// counter, `busy` whether requests are out (an idle peer's rate is not sampled).
    pub(super) fn window(&mut self, fetched: u64, busy: bool) -> usize {
        let w = match self.rate.update(fetched, busy) {
            None => INITIAL_WINDOW,
            Some(bps) => (bps * QUEUE_SECS / CHUNK_SIZE as f64).ceil() as usize,
        };
        w.max(MIN_WINDOW).min(self.request_window)
    }

    /// confluence patch: how many urgent chunks may be asked of the peer at once: about
    /// `URGENT_SECS` of its rate, so that a piece a reader waits for is spread over many peers
    /// rather than queued at the first few that connected.
    /// A distant peer gets its round trip more: with only `URGENT_SECS` out, one 250 ms away
    /// would idle between answers.
    pub(super) fn urgent_cap(&self) -> usize {
        let secs = match self.rtt {
            Some(rtt) => URGENT_SECS.max(rtt.as_secs_f64() + URGENT_SECS / 2.0),
            None => URGENT_SECS,
        };
        match self.rate.bps {
            None => 4,
            Some(bps) => ((bps * secs / CHUNK_SIZE as f64).ceil() as usize).max(2),
        }
    }

    /// confluence patch: when a chunk asked now, behind `queued` others, should have arrived.
    pub(super) fn due_in(&self, queued: usize) -> Duration {
        match self.rate.bps {
            None => Duration::from_millis(750),
            Some(bps) => {
                let drain = (queued + 1) as f64 * CHUNK_SIZE as f64 / bps.max(1.0);
                Duration::from_secs_f64((2.0 * drain + 0.25).min(10.0))
            }
        }
    }
}

/// confluence patch: a peer's download rate, averaged over samples taken while it was busy.
struct RateMeter {
    since: Instant,
    bytes_then: u64,
    bps: Option<f64>,
}

impl RateMeter {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            bytes_then: 0,
            bps: None,
        }
    }

    fn update(&mut self, fetched: u64, busy: bool) -> Option<f64> {
        if !busy {
            // A sample covers only time with requests out.
            self.since = Instant::now();
            self.bytes_then = fetched;
            return self.bps;
        }
        let dt = self.since.elapsed();
        let bytes = fetched.saturating_sub(self.bytes_then);
        // A fast peer is measured as soon as it has sent enough to tell.
        if dt >= RATE_SAMPLE || (dt >= RATE_SAMPLE_MIN && bytes >= RATE_SAMPLE_BYTES) {
            let sample = bytes as f64 / dt.as_secs_f64();
            self.bps = Some(match self.bps {
                None => sample,
                Some(r) => 0.5 * r + 0.5 * sample,
            });
            self.since = Instant::now();
            self.bytes_then = fetched;
        }
        self.bps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: f64 = 1024.0;

    fn measured(bps: f64) -> PeerFlowControl {
        let mut f = PeerFlowControl::new(128);
        f.rate.bps = Some(bps);
        f
    }

    #[test]
    fn queue_and_urgent_share_follow_the_rate() {
        let f = measured(4096.0 * KIB);
        assert_eq!(f.urgent_cap(), 64); // 0.25 s of 4 MiB/s in 16 KiB chunks
        let mut f = measured(256.0 * KIB);
        assert_eq!(f.urgent_cap(), 4);
        assert_eq!(f.window(0, false), 8); // 0.5 s of 256 KiB/s
        assert_eq!(PeerFlowControl::new(128).urgent_cap(), 4); // not measured yet
    }

    #[test]
    fn a_distant_peer_gets_its_round_trip_more_urgent_chunks() {
        let mut f = measured(256.0 * KIB);
        let t0 = Instant::now() - Duration::from_millis(310);
        f.asked_idle(t0);
        f.asked_idle(Instant::now()); // a probe already out is not restarted
        f.chunk_arrived();
        let rtt = f.rtt.expect("timed");
        assert!(rtt >= Duration::from_millis(310), "{rtt:?}");
        // 0.31 s + 0.125 s of 256 KiB/s: 7 chunks, where 0.25 s (4) would leave it idle
        // between answers.
        assert_eq!(f.urgent_cap(), 7);
        f.chunk_arrived(); // no probe out: no sample
        assert_eq!(f.rtt, Some(rtt));
    }

    #[test]
    fn the_round_trip_drops_at_once_and_rises_slowly() {
        let mut f = measured(256.0 * KIB);
        f.rtt = Some(Duration::from_millis(300));
        f.asked_idle(Instant::now() - Duration::from_millis(100));
        f.chunk_arrived();
        let low = f.rtt.unwrap();
        assert!(low < Duration::from_millis(150), "{low:?}");
        f.asked_idle(Instant::now() - Duration::from_secs(5));
        f.chunk_arrived();
        let high = f.rtt.unwrap();
        // One slow answer (capped at MAX_RTT) moves it a fifth of the way.
        assert!(high < low + MAX_RTT.mul_f64(0.21), "{high:?}");
        assert_eq!(measured(256.0 * KIB).urgent_cap(), 4);
    }
}
