//! confluence patch (see vendor/README.md): a piece a stream is about to read, fetched chunk by
//! chunk from every peer that has it instead of whole from one.
//!
//! Upstream hands each piece whole to one peer, which asks that peer for all of its chunks. A
//! reader blocked on the piece then waits for that one peer: 1 MiB from a 256 KiB/s peer is 4 s,
//! however many other peers sit idle, and a peer that goes silent holds it until its connection
//! times out. A shared piece is handed out a few chunks at a time to whichever peer has a free
//! request slot, so every peer works on what the reader needs next. Each ask carries the moment
//! its peer should have answered by; a chunk whose ask is overdue (or that a peer expected to be
//! faster could fetch sooner) is asked again of another peer, up to [`MAX_ASKS`] at once. The
//! first copy to arrive wins and the other asks are cancelled.
//!
//! A shared piece that fails its hash check cannot say which peer lied, so it remembers who sent
//! each chunk and a digest of it. The piece is fetched again (shared, each chunk from another
//! peer than before) and, once it passes, chunks whose digests differ name the liars
//! ("smart ban", as libtorrent does).
//!
//! This type only does the bookkeeping; `PieceTracker` decides which pieces are shared and the
//! peer's request loop sends the requests.

use std::time::Instant;

use crate::type_aliases::PeerHandle;

/// How many peers may be asked for one chunk at once: the first ask and two duplicates.
pub(crate) const MAX_ASKS: usize = 3;

#[derive(Debug, Clone, Copy)]
struct Ask {
    peer: PeerHandle,
    due: Instant,
}

/// Who sent a chunk that was written, and a digest of its bytes.
pub(crate) type Sent = Option<(PeerHandle, u64)>;

/// The chunks of one shared piece: who was asked for each, and by when.
#[derive(Debug, Clone)]
pub struct SharedPiece {
    /// Per chunk, the peers asked for it and not yet answered.
    asks: Vec<Vec<Ask>>,
    /// Everyone ever handed a chunk of it, to know whom a failed hash check can blame.
    contributors: Vec<PeerHandle>,
    /// Per chunk, whose copy was written.
    sent: Vec<Sent>,
    /// Per chunk, who sent it in an attempt that failed its hash check (not asked again).
    avoid: Vec<Sent>,
}

/// A digest of a chunk's bytes, to tell two copies apart.
pub(crate) fn digest(parts: &[&[u8]]) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in parts {
        h.write(p);
    }
    h.finish()
}

/// What [`SharedPiece::pick`] looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pick {
    /// Chunks nobody was asked for.
    Fresh,
    /// Chunks asked of others that are overdue, or due later than this peer would answer.
    Again,
}

impl SharedPiece {
    pub fn new(chunks: u32) -> Self {
        Self {
            asks: vec![Vec::new(); chunks as usize],
            contributors: Vec::new(),
            sent: vec![None; chunks as usize],
            avoid: vec![None; chunks as usize],
        }
    }

    /// A piece fetched again after `failed` (who sent what the last time) failed its check.
    pub fn retry(chunks: u32, failed: Vec<Sent>) -> Self {
        let mut s = Self::new(chunks);
        if failed.len() == s.avoid.len() {
            s.avoid = failed;
        }
        s
    }

    /// Records whose copy of `chunk` was written.
    pub fn wrote(&mut self, chunk: u32, from: PeerHandle, digest: u64) {
        if let Some(s) = self.sent.get_mut(chunk as usize) {
            *s = Some((from, digest));
        }
    }

    /// Who sent each chunk of this attempt.
    pub fn into_sent(self) -> Vec<Sent> {
        self.sent
    }

    /// The peers whose chunks in a `failed` attempt differ from this attempt's, which passed.
    pub fn liars(&self, failed: &[Sent]) -> Vec<PeerHandle> {
        let mut liars: Vec<PeerHandle> = failed
            .iter()
            .zip(&self.sent)
            .filter_map(|(bad, good)| match (bad, good) {
                (Some((peer, b)), Some((_, g))) if b != g => Some(*peer),
                _ => None,
            })
            .collect();
        liars.sort_unstable();
        liars.dedup();
        liars
    }

    /// A piece that `owner` was fetching whole: it asked for the chunks before `requested_upto`.
    pub fn from_whole(
        owner: PeerHandle,
        chunks: u32,
        requested_upto: u32,
        due: Instant,
        received: impl Fn(u32) -> bool,
    ) -> Self {
        let mut s = Self::new(chunks);
        s.contributors.push(owner);
        for c in 0..requested_upto.min(chunks) {
            if !received(c) {
                s.asks[c as usize].push(Ask { peer: owner, due });
            }
        }
        s
    }

    /// Hands `me` up to `max` chunks (indices in the piece, pushed to `out`) that are not
    /// `received`; returns the peers whose overdue asks made a chunk eligible again.
    pub fn pick(
        &mut self,
        me: PeerHandle,
        mode: Pick,
        now: Instant,
        due: Instant,
        max: usize,
        received: impl Fn(u32) -> bool,
        out: &mut Vec<u32>,
    ) -> Vec<PeerHandle> {
        let mut late = Vec::new();
        let mut taken = 0;
        for (c, asks) in self.asks.iter_mut().enumerate() {
            if taken == max {
                break;
            }
            let avoid = self.avoid[c].is_some_and(|(p, _)| p == me);
            let c = c as u32;
            if avoid || received(c) || asks.iter().any(|a| a.peer == me) {
                continue;
            }
            let eligible = match mode {
                Pick::Fresh => asks.is_empty(),
                Pick::Again => {
                    !asks.is_empty()
                        && asks.len() < MAX_ASKS
                        && asks.iter().all(|a| a.due < now || a.due > due)
                }
            };
            if !eligible {
                continue;
            }
            late.extend(asks.iter().filter(|a| a.due < now).map(|a| a.peer));
            asks.push(Ask { peer: me, due });
            out.push(c);
            taken += 1;
        }
        if taken > 0 && !self.contributors.contains(&me) {
            self.contributors.push(me);
        }
        late.sort_unstable();
        late.dedup();
        late
    }

    /// A chunk arrived from `from`: the other peers still asked for it, to cancel.
    pub fn arrived(&mut self, chunk: u32, from: PeerHandle) -> Vec<PeerHandle> {
        match self.asks.get_mut(chunk as usize) {
            Some(asks) => std::mem::take(asks)
                .into_iter()
                .map(|a| a.peer)
                .filter(|p| *p != from)
                .collect(),
            None => Vec::new(),
        }
    }

    /// `peer` is gone: its asks no longer count. Returns whether anyone else was handed a chunk.
    pub fn forget(&mut self, peer: PeerHandle) -> bool {
        for asks in &mut self.asks {
            asks.retain(|a| a.peer != peer);
        }
        self.contributors.retain(|p| *p != peer);
        !self.contributors.is_empty()
    }

    /// Any peer that was handed a chunk, to stand as the piece's owner.
    pub fn any_contributor(&self) -> Option<PeerHandle> {
        self.contributors.first().copied()
    }

    /// Whether more than one peer supplied chunks, so a failed hash check cannot tell who lied.
    pub fn many_contributors(&self) -> bool {
        self.contributors.len() > 1
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::{IpAddr, Ipv4Addr, SocketAddr},
        time::Duration,
    };

    use super::*;

    fn peer(id: u8) -> PeerHandle {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, id)), 6881)
    }

    fn none(_: u32) -> bool {
        false
    }

    #[test]
    fn fresh_chunks_are_split_between_peers_in_order() {
        let now = Instant::now();
        let due = now + Duration::from_secs(1);
        let mut s = SharedPiece::new(8);
        let (mut a, mut b) = (vec![], vec![]);
        s.pick(peer(1), Pick::Fresh, now, due, 3, none, &mut a);
        s.pick(peer(2), Pick::Fresh, now, due, 3, none, &mut b);
        assert_eq!(a, [0, 1, 2]);
        assert_eq!(b, [3, 4, 5]);
        let mut c = vec![];
        s.pick(peer(3), Pick::Fresh, now, due, 10, |c| c == 6, &mut c);
        assert_eq!(c, [7], "received chunks are not handed out");
        assert!(s.many_contributors());
    }

    #[test]
    fn an_overdue_ask_is_asked_again_and_its_peer_reported_late() {
        let t0 = Instant::now();
        let mut s = SharedPiece::new(2);
        let mut got = vec![];
        s.pick(
            peer(1),
            Pick::Fresh,
            t0,
            t0 + Duration::from_millis(500),
            2,
            none,
            &mut got,
        );
        got.clear();
        // Not yet overdue, and peer 2 would be due later: nothing to take.
        let late = s.pick(
            peer(2),
            Pick::Again,
            t0,
            t0 + Duration::from_secs(2),
            2,
            none,
            &mut got,
        );
        assert!(got.is_empty() && late.is_empty());
        // Overdue now.
        let t1 = t0 + Duration::from_secs(1);
        let late = s.pick(
            peer(2),
            Pick::Again,
            t1,
            t1 + Duration::from_secs(2),
            1,
            none,
            &mut got,
        );
        assert_eq!(got, [0]);
        assert_eq!(late, [peer(1)]);
        // Arrival from peer 2 cancels peer 1's ask.
        assert_eq!(s.arrived(0, peer(2)), [peer(1)]);
        assert!(s.arrived(0, peer(2)).is_empty());
    }

    #[test]
    fn a_faster_peer_may_duplicate_but_never_past_the_limit() {
        let t0 = Instant::now();
        let mut s = SharedPiece::new(1);
        let mut got = vec![];
        s.pick(
            peer(1),
            Pick::Fresh,
            t0,
            t0 + Duration::from_secs(5),
            1,
            none,
            &mut got,
        );
        for p in 2..=5 {
            got.clear();
            let due = t0 + Duration::from_millis(100 * p as u64);
            s.pick(peer(p), Pick::Again, t0, due, 1, none, &mut got);
            assert_eq!(got.len(), usize::from(p <= 2), "peer {p}");
        }
    }

    #[test]
    fn whole_piece_conversion_keeps_the_owners_asks_and_forget_drops_them() {
        let t0 = Instant::now();
        let due = t0 + Duration::from_secs(1);
        let first = |c| c == 0;
        let mut s = SharedPiece::from_whole(peer(1), 4, 2, due, first);
        let mut got = vec![];
        s.pick(peer(2), Pick::Fresh, t0, due, 4, first, &mut got);
        assert_eq!(got, [2, 3], "chunk 1 is still asked of the owner");
        assert!(s.forget(peer(1)));
        got.clear();
        s.pick(peer(3), Pick::Fresh, t0, due, 4, first, &mut got);
        assert_eq!(got, [1]);
        assert!(s.forget(peer(2)) && !s.forget(peer(3)));
    }

    #[test]
    fn a_retry_avoids_the_last_senders_and_names_the_liar() {
        let t0 = Instant::now();
        let due = t0 + Duration::from_secs(1);
        let mut first = SharedPiece::new(2);
        first.wrote(0, peer(1), 10);
        first.wrote(1, peer(2), 66);
        let failed = first.into_sent();
        let mut again = SharedPiece::retry(2, failed.clone());
        let mut got = vec![];
        again.pick(peer(2), Pick::Fresh, t0, due, 2, none, &mut got);
        assert_eq!(got, [0], "peer 2 sent chunk 1 last time");
        again.wrote(0, peer(2), 10);
        again.wrote(1, peer(3), 11);
        assert_eq!(again.liars(&failed), [peer(2)]);
    }
}
