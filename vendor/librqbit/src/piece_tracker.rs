//! Coordinates piece download state by wrapping ChunkTracker with inflight piece tracking.
//!
//! This module provides the [`PieceTracker`] type which encapsulates the relationship between
//! queued pieces (in ChunkTracker) and in-flight pieces (being downloaded by a peer).
//!
//! The key invariant maintained is: a piece is in exactly one state at any time:
//! - HAVE (completed)
//! - QUEUED (available to download)
//! - IN_FLIGHT (currently being downloaded)
//! - NOT_NEEDED (not selected for download)

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use buffers::ByteBuf;
use librqbit_core::lengths::{ChunkInfo, ValidPieceIndex};
use peer_binary_protocol::Piece;

use crate::{
    chunk_tracker::{ChunkMarkingResult, ChunkTracker},
    file_info::FileInfo,
    shared_piece::{Pick, Sent, SharedPiece},
    type_aliases::{FileInfos, FilePriorities, PeerHandle},
};

/// Tracks a piece currently being downloaded.
#[derive(Debug, Clone)]
pub struct InflightPiece {
    pub peer: PeerHandle,
    pub started: Instant,
    /// confluence patch: the first chunk its owner has not asked for yet (a whole piece is
    /// asked for a window's worth at a time, so that a stream's urgent chunks can go first).
    pub next_chunk: u32,
    /// confluence patch: set once a stream needs the piece soon: its chunks are then handed
    /// out to every peer that has it (`shared_piece`), and `peer` no longer owns it alone.
    pub shared: Option<Box<SharedPiece>>,
}

/// confluence patch: how long a peer that let an urgent chunk go overdue gets no urgent chunks.
const BENCH_FOR: Duration = Duration::from_secs(5);

/// confluence patch: what [`PieceTracker::take_urgent_chunks`] needs to know about the peer.
pub(crate) struct UrgentRequest<U, P> {
    pub peer: PeerHandle,
    /// The pieces streams will read next, most urgent first.
    pub urgent: U,
    pub peer_has_piece: P,
    /// Free request slots.
    pub max: usize,
    pub now: Instant,
    /// When this peer should have answered a request sent now.
    pub due: Instant,
}

/// confluence patch: a chunk that arrived, and what to do about it.
#[derive(Debug)]
pub(crate) enum Arrival {
    /// Write it; then cancel these other asks for it.
    Write { cancel: Vec<PeerHandle> },
    /// Another peer's copy was written already, or the piece is done or no longer ours.
    Ignore,
}

/// Result of attempting to acquire a piece.
#[derive(Debug)]
pub enum AcquireResult {
    /// A new piece was reserved from the queue.
    Reserved(ValidPieceIndex),
    /// A piece was stolen from a slower peer.
    Stolen {
        piece: ValidPieceIndex,
        from_peer: PeerHandle,
    },
    /// No pieces are available for this peer.
    NoneAvailable,
}

/// Parameters for acquiring a piece.
pub struct AcquireRequest<'a, I, P, S>
where
    I: Iterator<Item = ValidPieceIndex>,
    P: Fn(ValidPieceIndex) -> bool,
    S: Fn(ValidPieceIndex) -> bool,
{
    /// The peer requesting a piece.
    pub peer: PeerHandle,
    /// The peer's average piece download time (for steal calculations).
    pub peer_avg_time: Option<Duration>,
    /// Priority pieces to check first (e.g., for streaming).
    pub priority_pieces: I,
    /// File download priority ordering.
    pub file_priorities: &'a FilePriorities,
    /// File metadata for iterating pieces.
    pub file_infos: &'a FileInfos,
    /// Returns true if the peer has the given piece.
    pub peer_has_piece: P,
    /// Returns true if the piece can be stolen (e.g., not locked for writing).
    pub can_steal: S,
}

/// Coordinates piece download state.
///
/// Wraps a [`ChunkTracker`] with tracking of which pieces are currently being downloaded
/// (in-flight) and by which peer. This ensures that:
///
/// - A piece is only assigned to one peer at a time (unless stolen)
/// - Pieces are properly requeued when a peer dies
/// - State transitions maintain invariants
pub struct PieceTracker {
    chunks: ChunkTracker,
    inflight: HashMap<ValidPieceIndex, InflightPiece>,
    /// confluence patch: who sent what in a shared piece whose hash check failed, until an
    /// attempt passes and names the liars (`shared_piece`).
    failed: HashMap<ValidPieceIndex, Vec<Sent>>,
    /// confluence patch: peers caught sending bad chunks; they get no urgent chunks.
    liars: HashSet<PeerHandle>,
    /// confluence patch: peers that let an urgent chunk go overdue, and until when they get none.
    benched: HashMap<PeerHandle, Instant>,
}

impl PieceTracker {
    // === CONSTRUCTION ===

    /// Create a new PieceTracker wrapping the given ChunkTracker.
    pub fn new(chunks: ChunkTracker) -> Self {
        Self {
            chunks,
            inflight: HashMap::new(),
            failed: HashMap::new(),
            liars: HashSet::new(),
            benched: HashMap::new(),
        }
    }

    /// Read-only access to the underlying ChunkTracker.
    pub fn chunks(&self) -> &ChunkTracker {
        &self.chunks
    }

    /// Consume the PieceTracker, requeuing any in-flight pieces.
    ///
    /// This is used when pausing a torrent - any pieces that were being downloaded
    /// need to be put back in the queue so they can be re-downloaded on resume.
    pub fn into_chunks(mut self) -> ChunkTracker {
        // Requeue all in-flight pieces so they'll be re-downloaded on resume
        for piece in self.inflight.into_keys() {
            self.chunks.mark_piece_broken_if_not_have(piece);
        }
        self.chunks
    }

    // === PIECE ACQUISITION ===

    /// Attempt to acquire a piece for the requesting peer.
    ///
    /// The acquisition strategy is:
    /// 1. Try to steal a piece from a peer that's 10x slower
    /// 2. Try to reserve a piece from the queue (priority pieces first)
    /// 3. Try to steal a piece from a peer that's 3x slower
    ///
    /// If `Stolen` is returned, the caller MUST call `peers.on_steal()` to notify
    /// the old peer and update counters.
    pub fn acquire_piece<I, P, S>(&mut self, mut req: AcquireRequest<I, P, S>) -> AcquireResult
    where
        I: Iterator<Item = ValidPieceIndex>,
        P: Fn(ValidPieceIndex) -> bool,
        S: Fn(ValidPieceIndex) -> bool,
    {
        // 1. Try steal with 10x threshold (very slow peer)
        if let Some(result) = self.try_steal(&req, 10.0) {
            return result;
        }

        // 2. Try reserve from priority_pieces then queued pieces
        // First check priority pieces that aren't already downloaded or in-flight
        for piece in &mut req.priority_pieces {
            if !self.chunks.is_piece_have(piece)
                && !self.inflight.contains_key(&piece)
                && (req.peer_has_piece)(piece)
            {
                return self.reserve_piece(piece, req.peer);
            }
        }

        // Then check naturally ordered queued pieces
        // Note: iter_queued_pieces only returns pieces in queue_pieces (not in-flight)
        let queued: Vec<_> = self
            .chunks
            .iter_queued_pieces(req.file_priorities, req.file_infos)
            .collect();

        for piece in queued {
            if (req.peer_has_piece)(piece) {
                return self.reserve_piece(piece, req.peer);
            }
        }

        // 3. Try steal with 3x threshold (moderately slow peer)
        if let Some(result) = self.try_steal(&req, 3.0) {
            return result;
        }

        AcquireResult::NoneAvailable
    }

    /// Reserve a piece: remove from queue, add to inflight.
    fn reserve_piece(&mut self, piece: ValidPieceIndex, peer: PeerHandle) -> AcquireResult {
        self.chunks.reserve_needed_piece(piece);
        self.inflight.insert(
            piece,
            InflightPiece {
                peer,
                started: Instant::now(),
                next_chunk: 0,
                shared: None,
            },
        );
        AcquireResult::Reserved(piece)
    }

    /// Try to steal a piece from a slower peer.
    fn try_steal<I, P, S>(
        &mut self,
        req: &AcquireRequest<I, P, S>,
        threshold: f64,
    ) -> Option<AcquireResult>
    where
        I: Iterator<Item = ValidPieceIndex>,
        P: Fn(ValidPieceIndex) -> bool,
        S: Fn(ValidPieceIndex) -> bool,
    {
        let my_avg = req.peer_avg_time?;
        let min_elapsed = Duration::from_secs_f64(my_avg.as_secs_f64() * threshold);

        // Find the slowest piece from another peer that exceeds threshold
        // and that the stealing peer actually has (can download)
        let (piece, old_peer, _) = self
            .inflight
            .iter()
            .filter(|(_, info)| info.peer != req.peer && info.shared.is_none())
            .filter(|(p, _)| (req.peer_has_piece)(**p))
            .map(|(p, info)| (*p, info.peer, info.started.elapsed()))
            .filter(|(_, _, elapsed)| *elapsed >= min_elapsed)
            .max_by_key(|(_, _, elapsed)| *elapsed)?;

        // Check can_steal (e.g., per_piece_lock)
        if !(req.can_steal)(piece) {
            return None;
        }

        // Update ownership (piece stays in inflight, just changes owner)
        let info = self.inflight.get_mut(&piece)?;
        info.peer = req.peer;
        info.started = Instant::now();
        info.next_chunk = 0;

        Some(AcquireResult::Stolen {
            piece,
            from_peer: old_peer,
        })
    }

    // === PIECE COMPLETION ===

    /// Remove piece from inflight tracking (e.g., after all chunks received).
    ///
    /// Returns download duration if piece was in-flight.
    /// Note: Does NOT mark the piece as downloaded - caller should do hash check
    /// and then call `mark_piece_hash_ok` or `mark_piece_hash_failed`.
    #[allow(dead_code)] // confluence patch: the live code uses `take_inflight_piece`.
    pub fn take_inflight(&mut self, piece: ValidPieceIndex) -> Option<Duration> {
        self.take_inflight_piece(piece).map(|p| p.started.elapsed())
    }

    /// confluence patch: [`Self::take_inflight`], returning the whole record (a shared piece's
    /// download time is not one peer's, and its hash failure may not be one peer's fault).
    pub fn take_inflight_piece(&mut self, piece: ValidPieceIndex) -> Option<InflightPiece> {
        self.inflight.remove(&piece)
    }

    /// confluence patch: a shared piece's hash check failed and more than one peer supplied it:
    /// nobody can be blamed yet. It is requeued remembering who sent what.
    pub fn mark_shared_piece_hash_failed(&mut self, piece: ValidPieceIndex, shared: SharedPiece) {
        self.failed.insert(piece, shared.into_sent());
        self.chunks.mark_piece_broken_if_not_have(piece);
    }

    /// confluence patch: a shared piece passed its hash check: the peers whose chunks in an
    /// earlier failed attempt differ from this one's (they get no urgent chunks from now on).
    pub fn shared_piece_passed(
        &mut self,
        piece: ValidPieceIndex,
        shared: &SharedPiece,
    ) -> Vec<PeerHandle> {
        let Some(failed) = self.failed.remove(&piece) else {
            return Vec::new();
        };
        let liars = shared.liars(&failed);
        self.liars.extend(liars.iter().copied());
        liars
    }

    /// confluence patch: records whose copy of a shared piece's chunk was written.
    pub fn wrote_chunk(&mut self, chunk: &ChunkInfo, from: PeerHandle, digest: u64) {
        if let Some(shared) = self
            .inflight
            .get_mut(&chunk.piece_index)
            .and_then(|i| i.shared.as_mut())
        {
            shared.wrote(chunk.chunk_index, from, digest);
        }
    }

    /// Mark piece as downloaded after successful hash verification.
    pub fn mark_piece_hash_ok(&mut self, piece: ValidPieceIndex) {
        self.chunks.mark_piece_downloaded(piece);
    }

    /// Mark piece as failed after hash verification failure - requeues the piece.
    pub fn mark_piece_hash_failed(&mut self, piece: ValidPieceIndex) {
        self.chunks.mark_piece_broken_if_not_have(piece);
    }

    /// Release all pieces owned by a peer (on peer death).
    ///
    /// Moves all pieces owned by the peer from IN_FLIGHT back to QUEUED.
    /// Returns the number of pieces released.
    ///
    /// confluence patch: a shared piece stays in flight while another peer was handed chunks of
    /// it (they are asked again of others once overdue); only the dead peer's asks are dropped.
    pub fn release_pieces_owned_by(&mut self, peer: PeerHandle) -> usize {
        self.benched.remove(&peer);
        let mut pieces_to_release = Vec::new();
        for (piece, info) in self.inflight.iter_mut() {
            match &mut info.shared {
                Some(shared) => {
                    if !shared.forget(peer) {
                        pieces_to_release.push(*piece);
                    } else if info.peer == peer {
                        info.peer = shared.any_contributor().unwrap_or(peer);
                    }
                }
                None if info.peer == peer => pieces_to_release.push(*piece),
                None => {}
            }
        }

        let count = pieces_to_release.len();
        for piece in pieces_to_release {
            self.inflight.remove(&piece);
            self.chunks.mark_piece_broken_if_not_have(piece);
        }
        count
    }

    // === confluence patch: CHUNK-BY-CHUNK REQUESTS ===

    /// The next chunks (at most `max`) of the whole piece `peer` owns, or none if it no longer
    /// owns it whole (stolen, shared, done) or asked for all of it already.
    pub fn next_owned_chunks(
        &mut self,
        peer: PeerHandle,
        piece: ValidPieceIndex,
        max: usize,
    ) -> Vec<ChunkInfo> {
        let lengths = *self.chunks.get_lengths();
        let Some(info) = self.inflight.get_mut(&piece) else {
            return Vec::new();
        };
        if info.peer != peer || info.shared.is_some() {
            return Vec::new();
        }
        let total = lengths.chunks_per_piece(piece);
        let from = info.next_chunk.min(total);
        let to = (from as usize + max).min(total as usize) as u32;
        info.next_chunk = to;
        lengths
            .iter_chunk_infos(piece)
            .skip(from as usize)
            .take((to - from) as usize)
            .collect()
    }

    /// Chunks of the pieces streams read next for `req.peer`: first ones nobody was asked for,
    /// then ones whose asks are overdue or would come later than from this peer. Pieces that a
    /// stream needs become shared here (see `shared_piece`).
    pub(crate) fn take_urgent_chunks<U, P>(&mut self, req: UrgentRequest<U, P>) -> Vec<ChunkInfo>
    where
        U: Iterator<Item = ValidPieceIndex>,
        P: Fn(ValidPieceIndex) -> bool,
    {
        let now = req.now;
        self.benched.retain(|_, until| *until > now);
        if req.max == 0 || self.benched.contains_key(&req.peer) || self.liars.contains(&req.peer) {
            return Vec::new();
        }
        let pieces: Vec<ValidPieceIndex> = req
            .urgent
            .filter(|p| (req.peer_has_piece)(*p) && self.share(*p, req.peer, now))
            .collect();
        let lengths = *self.chunks.get_lengths();
        let mut out = Vec::new();
        for mode in [Pick::Fresh, Pick::Again] {
            for &piece in &pieces {
                let left = req.max - out.len();
                if left == 0 {
                    return out;
                }
                let chunk_range = lengths.chunk_range(piece);
                let chunks = &self.chunks;
                let Some(shared) = self
                    .inflight
                    .get_mut(&piece)
                    .and_then(|i| i.shared.as_mut())
                else {
                    continue;
                };
                let mut picked = Vec::new();
                let received = |c: u32| chunks.is_chunk_downloaded(chunk_range.start + c as usize);
                let late = shared.pick(req.peer, mode, now, req.due, left, received, &mut picked);
                for p in late {
                    self.benched.insert(p, now + BENCH_FOR);
                }
                out.extend(
                    picked
                        .into_iter()
                        .filter_map(|c| lengths.iter_chunk_infos(piece).nth(c as usize)),
                );
            }
        }
        out
    }

    /// Makes `piece` shared if a stream may fetch it chunk by chunk; whether it now is.
    fn share(&mut self, piece: ValidPieceIndex, peer: PeerHandle, now: Instant) -> bool {
        if self.chunks.is_piece_have(piece) {
            return false;
        }
        let lengths = *self.chunks.get_lengths();
        let total = lengths.chunks_per_piece(piece);
        let chunk_range = lengths.chunk_range(piece);
        match self.inflight.get_mut(&piece) {
            Some(info) if info.shared.is_some() => true,
            Some(info) => {
                // Its owner asked for the first `next_chunk` chunks; their deadlines are not
                // known, so they are given 2 s from now before others may ask for them again.
                let chunks = &self.chunks;
                info.shared = Some(Box::new(SharedPiece::from_whole(
                    info.peer,
                    total,
                    info.next_chunk,
                    now + Duration::from_secs(2),
                    |c| chunks.is_chunk_downloaded(chunk_range.start + c as usize),
                )));
                true
            }
            // A stream may want a piece of a file that is not selected (as upstream's priority
            // pieces do); one with every chunk written is being hash-checked.
            None if !chunk_range
                .clone()
                .all(|c| self.chunks.is_chunk_downloaded(c)) =>
            {
                self.chunks.reserve_needed_piece(piece);
                self.inflight.insert(
                    piece,
                    InflightPiece {
                        peer,
                        started: now,
                        next_chunk: total,
                        shared: Some(Box::new(match self.failed.get(&piece) {
                            Some(failed) => SharedPiece::retry(total, failed.clone()),
                            None => SharedPiece::new(total),
                        })),
                    },
                );
                true
            }
            None => false,
        }
    }

    /// The shared pieces in flight: once no stream needs them, whoever has nothing else to do
    /// finishes them (nobody else would: they are not in the queue).
    pub fn shared_pieces(&self) -> Vec<ValidPieceIndex> {
        self.inflight
            .iter()
            .filter(|(_, i)| i.shared.is_some())
            .map(|(p, _)| *p)
            .collect()
    }

    /// How many of these asks are for shared pieces.
    pub fn shared_asks<'a>(&self, asks: impl Iterator<Item = &'a ChunkInfo>) -> usize {
        asks.filter(|c| {
            self.inflight
                .get(&c.piece_index)
                .is_some_and(|i| i.shared.is_some())
        })
        .count()
    }

    /// A chunk arrived from `peer`: whether to write it, and whose asks for it to cancel.
    pub(crate) fn chunk_arrival(&mut self, peer: PeerHandle, chunk: &ChunkInfo) -> Arrival {
        let downloaded = self
            .chunks
            .is_chunk_downloaded(chunk.absolute_index as usize);
        match self.inflight.get_mut(&chunk.piece_index) {
            Some(InflightPiece {
                shared: Some(shared),
                ..
            }) => {
                let cancel = shared.arrived(chunk.chunk_index, peer);
                if downloaded {
                    Arrival::Ignore
                } else {
                    Arrival::Write { cancel }
                }
            }
            Some(info) if info.peer == peer => Arrival::Write { cancel: Vec::new() },
            _ => Arrival::Ignore,
        }
    }

    // === QUERIES ===

    /// Get the inflight info for a piece, if it's currently being downloaded.
    #[allow(dead_code)] // confluence patch: the live code uses `chunk_arrival`.
    pub fn get_inflight(&self, piece: ValidPieceIndex) -> Option<&InflightPiece> {
        self.inflight.get(&piece)
    }

    /// Check if a piece is currently in-flight.
    #[allow(dead_code)]
    pub fn is_inflight(&self, piece: ValidPieceIndex) -> bool {
        self.inflight.contains_key(&piece)
    }

    /// Get the number of pieces currently in-flight.
    #[allow(dead_code)]
    pub fn inflight_count(&self) -> usize {
        self.inflight.len()
    }

    // === PASS-THROUGH METHODS ===

    /// Mark a chunk as downloaded. Returns the result indicating if the piece is complete.
    pub fn mark_chunk_downloaded(
        &mut self,
        piece: &Piece<ByteBuf<'_>>,
    ) -> Option<ChunkMarkingResult> {
        self.chunks.mark_chunk_downloaded(piece)
    }

    /// Update which files are selected for download.
    pub fn update_only_files(
        &mut self,
        file_infos: &FileInfos,
        new_only_files: &HashSet<usize>,
    ) -> anyhow::Result<crate::chunk_tracker::HaveNeededSelected> {
        self.chunks.update_only_files(file_infos, new_only_files)
    }

    /// Update per-file have bytes when a piece completes. Returns remaining bytes for the file.
    pub fn update_file_have_on_piece_completed(
        &mut self,
        piece_id: ValidPieceIndex,
        file_id: usize,
        file_info: &FileInfo,
    ) -> u64 {
        self.chunks
            .update_file_have_on_piece_completed(piece_id, file_id, file_info)
    }

    /// Flush the have pieces bitfield to disk.
    pub fn flush_have_pieces(&mut self, flush_async: bool) -> anyhow::Result<()> {
        self.chunks.get_have_pieces_mut().flush(flush_async)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{bitv::BitV as BitVTrait, type_aliases::BF};
    use librqbit_core::lengths::Lengths;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    fn peer(id: u8) -> PeerHandle {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, id)), 6881)
    }

    /// Create a simple ChunkTracker for testing.
    /// Creates a torrent with the specified number of pieces, all selected.
    fn make_test_chunk_tracker(num_pieces: u32) -> ChunkTracker {
        chunk_tracker_with(num_pieces, 16384) // 16KB pieces
    }

    fn chunk_tracker_with(num_pieces: u32, piece_length: u32) -> ChunkTracker {
        // Create a simple single-file torrent
        let total_length = piece_length as u64 * num_pieces as u64;

        let lengths = Lengths::new(total_length, piece_length).unwrap();

        let bf_len = lengths.piece_bitfield_bytes();

        // No pieces downloaded yet (empty have)
        let have = BF::from_boxed_slice(vec![0u8; bf_len].into_boxed_slice());

        // All pieces selected
        let mut selected = BF::from_boxed_slice(vec![0u8; bf_len].into_boxed_slice());
        for i in 0..num_pieces as usize {
            selected.set(i, true);
        }

        // Single file spanning all pieces
        let file_infos = vec![crate::file_info::FileInfo {
            relative_filename: "test.dat".into(),
            offset_in_torrent: 0,
            len: total_length,
            piece_range: 0..num_pieces,
            attrs: Default::default(),
        }];

        ChunkTracker::new(have.into_dyn(), selected, lengths, &file_infos).unwrap()
    }

    fn make_test_file_infos(num_pieces: u32) -> FileInfos {
        let piece_length = 16384u64;
        vec![crate::file_info::FileInfo {
            relative_filename: "test.dat".into(),
            offset_in_torrent: 0,
            len: piece_length * num_pieces as u64,
            piece_range: 0..num_pieces,
            attrs: Default::default(),
        }]
    }

    fn make_default_file_priorities(file_infos: &FileInfos) -> FilePriorities {
        (0..file_infos.len()).collect()
    }

    #[test]
    fn test_new_piece_tracker() {
        let chunks = make_test_chunk_tracker(10);
        let tracker = PieceTracker::new(chunks);
        assert_eq!(tracker.inflight_count(), 0);
    }

    #[test]
    fn test_reserve_piece_from_queue() {
        let chunks = make_test_chunk_tracker(5);
        let mut tracker = PieceTracker::new(chunks);

        let file_infos = make_test_file_infos(5);
        let file_priorities = make_default_file_priorities(&file_infos);

        let result = tracker.acquire_piece(AcquireRequest {
            peer: peer(1),
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true, // Peer has all pieces
            can_steal: |_| true,
        });

        // Should reserve piece 0 (first in queue)
        match result {
            AcquireResult::Reserved(piece) => {
                assert_eq!(piece.get(), 0);
                assert!(tracker.is_inflight(piece));
                assert_eq!(tracker.inflight_count(), 1);
            }
            _ => panic!("Expected Reserved, got {:?}", result),
        }
    }

    #[test]
    fn test_reserve_filters_by_peer_has_piece() {
        let chunks = make_test_chunk_tracker(5);
        let mut tracker = PieceTracker::new(chunks);

        let file_infos = make_test_file_infos(5);
        let file_priorities = make_default_file_priorities(&file_infos);

        // Peer only has piece 2 and later
        // Note: iter_queued_pieces iterates in order: first, last, middle
        // So for 0..5: 0, 4, 1, 2, 3
        // With filter >= 2, we get 4 first (skips 0, takes 4)
        let result = tracker.acquire_piece(AcquireRequest {
            peer: peer(1),
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |p| p.get() >= 2,
            can_steal: |_| true,
        });

        match result {
            AcquireResult::Reserved(piece) => {
                // Got piece 4 (first one peer has in iteration order)
                assert!(piece.get() >= 2, "Should have gotten a piece >= 2");
            }
            _ => panic!("Expected Reserved, got {:?}", result),
        }
    }

    #[test]
    fn test_complete_piece() {
        let chunks = make_test_chunk_tracker(5);
        let mut tracker = PieceTracker::new(chunks);

        let file_infos = make_test_file_infos(5);
        let file_priorities = make_default_file_priorities(&file_infos);

        // Reserve a piece first
        let result = tracker.acquire_piece(AcquireRequest {
            peer: peer(1),
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        });

        let piece = match result {
            AcquireResult::Reserved(p) => p,
            _ => panic!("Expected Reserved"),
        };

        // Complete the piece (take_inflight + hash check + mark_piece_hash_ok)
        let duration = tracker.take_inflight(piece);
        assert!(duration.is_some());
        assert!(!tracker.is_inflight(piece));
        // Simulate successful hash check
        tracker.mark_piece_hash_ok(piece);
        assert!(tracker.chunks().is_piece_have(piece));
    }

    #[test]
    fn test_fail_piece_requeues() {
        let chunks = make_test_chunk_tracker(5);
        let mut tracker = PieceTracker::new(chunks);

        let file_infos = make_test_file_infos(5);
        let file_priorities = make_default_file_priorities(&file_infos);

        // Reserve piece 0
        let result = tracker.acquire_piece(AcquireRequest {
            peer: peer(1),
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        });

        let piece = match result {
            AcquireResult::Reserved(p) => p,
            _ => panic!("Expected Reserved"),
        };

        assert!(tracker.is_inflight(piece));

        // Fail the piece (take_inflight + hash check fails + mark_piece_hash_failed)
        let duration = tracker.take_inflight(piece);
        assert!(duration.is_some());
        // Simulate failed hash check
        tracker.mark_piece_hash_failed(piece);

        // Should no longer be in-flight
        assert!(!tracker.is_inflight(piece));
        // Should not be in have
        assert!(!tracker.chunks().is_piece_have(piece));
        // Should be back in queue - verify by trying to reserve it again
        let result2 = tracker.acquire_piece(AcquireRequest {
            peer: peer(2),
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |p| p == piece, // Only has the failed piece
            can_steal: |_| true,
        });

        match result2 {
            AcquireResult::Reserved(p) => assert_eq!(p, piece),
            _ => panic!("Expected piece to be re-reservable after fail"),
        }
    }

    #[test]
    fn test_release_pieces_owned_by_peer() {
        let chunks = make_test_chunk_tracker(5);
        let mut tracker = PieceTracker::new(chunks);

        let file_infos = make_test_file_infos(5);
        let file_priorities = make_default_file_priorities(&file_infos);

        let peer_a = peer(1);
        let peer_b = peer(2);

        // Peer A reserves first two pieces (order: 0, 4, 1, 2, 3)
        // So peer A gets pieces 0 and 4
        let piece_a1 = match tracker.acquire_piece(AcquireRequest {
            peer: peer_a,
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        }) {
            AcquireResult::Reserved(p) => p,
            _ => panic!("Expected Reserved"),
        };
        let piece_a2 = match tracker.acquire_piece(AcquireRequest {
            peer: peer_a,
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        }) {
            AcquireResult::Reserved(p) => p,
            _ => panic!("Expected Reserved"),
        };

        // Peer B reserves next piece
        let piece_b = match tracker.acquire_piece(AcquireRequest {
            peer: peer_b,
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        }) {
            AcquireResult::Reserved(p) => p,
            _ => panic!("Expected Reserved"),
        };

        assert_eq!(tracker.inflight_count(), 3);
        assert!(tracker.is_inflight(piece_a1));
        assert!(tracker.is_inflight(piece_a2));
        assert!(tracker.is_inflight(piece_b));

        // Peer A dies
        let released = tracker.release_pieces_owned_by(peer_a);
        assert_eq!(released, 2);
        assert_eq!(tracker.inflight_count(), 1); // Only peer B's piece remains

        // Verify peer B's piece is still in-flight
        assert!(tracker.is_inflight(piece_b));
        // Verify peer A's pieces are no longer in-flight
        assert!(!tracker.is_inflight(piece_a1));
        assert!(!tracker.is_inflight(piece_a2));
    }

    #[test]
    fn test_into_chunks_requeues_inflight() {
        let chunks = make_test_chunk_tracker(5);
        let mut tracker = PieceTracker::new(chunks);

        let file_infos = make_test_file_infos(5);
        let file_priorities = make_default_file_priorities(&file_infos);

        // Reserve pieces 0 and 1
        tracker.acquire_piece(AcquireRequest {
            peer: peer(1),
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        });
        tracker.acquire_piece(AcquireRequest {
            peer: peer(1),
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        });

        assert_eq!(tracker.inflight_count(), 2);

        // Convert back to chunks (simulates pause)
        let chunks = tracker.into_chunks();

        // Create a new tracker and verify pieces are back in queue
        let mut new_tracker = PieceTracker::new(chunks);
        let result = new_tracker.acquire_piece(AcquireRequest {
            peer: peer(2),
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        });

        // Should get piece 0 again (was requeued)
        match result {
            AcquireResult::Reserved(p) => assert_eq!(p.get(), 0),
            _ => panic!("Expected to reserve piece 0 after into_chunks"),
        }
    }

    #[test]
    fn test_priority_pieces_checked_first() {
        let chunks = make_test_chunk_tracker(5);
        let mut tracker = PieceTracker::new(chunks);

        let file_infos = make_test_file_infos(5);
        let file_priorities = make_default_file_priorities(&file_infos);

        // Priority pieces: piece 3, then piece 2
        let piece3 = tracker
            .chunks()
            .get_lengths()
            .validate_piece_index(3)
            .unwrap();
        let piece2 = tracker
            .chunks()
            .get_lengths()
            .validate_piece_index(2)
            .unwrap();
        let priority = vec![piece3, piece2];

        let result = tracker.acquire_piece(AcquireRequest {
            peer: peer(1),
            peer_avg_time: None,
            priority_pieces: priority.into_iter(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        });

        // Should get piece 3 (first priority piece)
        match result {
            AcquireResult::Reserved(p) => assert_eq!(p.get(), 3),
            _ => panic!("Expected Reserved(3), got {:?}", result),
        }
    }

    #[test]
    fn test_none_available_when_no_pieces() {
        let chunks = make_test_chunk_tracker(5);
        let mut tracker = PieceTracker::new(chunks);

        let file_infos = make_test_file_infos(5);
        let file_priorities = make_default_file_priorities(&file_infos);

        // Peer has no pieces
        let result = tracker.acquire_piece(AcquireRequest {
            peer: peer(1),
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| false, // Peer has nothing
            can_steal: |_| true,
        });

        match result {
            AcquireResult::NoneAvailable => {}
            _ => panic!("Expected NoneAvailable, got {:?}", result),
        }
    }

    #[test]
    fn test_take_inflight_nonexistent_piece_returns_none() {
        let chunks = make_test_chunk_tracker(5);
        let mut tracker = PieceTracker::new(chunks);
        let piece = tracker
            .chunks()
            .get_lengths()
            .validate_piece_index(0)
            .unwrap();

        // Try to take a piece that's not in-flight
        let result = tracker.take_inflight(piece);
        assert!(result.is_none());
    }

    #[test]
    fn test_steal_only_pieces_peer_has() {
        // This test verifies the fix for a bug where try_steal didn't check
        // if the stealing peer actually has the piece in their bitfield.
        // Without this check, a peer could "steal" a piece they can't download,
        // leaving it stuck in inflight forever.

        let chunks = make_test_chunk_tracker(5);
        let mut tracker = PieceTracker::new(chunks);

        let file_infos = make_test_file_infos(5);
        let file_priorities = make_default_file_priorities(&file_infos);

        let peer_a = peer(1);
        let peer_b = peer(2);

        // Peer A reserves pieces 0 and 4 (first two in iteration order)
        let piece_0 = match tracker.acquire_piece(AcquireRequest {
            peer: peer_a,
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        }) {
            AcquireResult::Reserved(p) => {
                assert_eq!(p.get(), 0);
                p
            }
            _ => panic!("Expected Reserved"),
        };

        let piece_4 = match tracker.acquire_piece(AcquireRequest {
            peer: peer_a,
            peer_avg_time: None,
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |_| true,
            can_steal: |_| true,
        }) {
            AcquireResult::Reserved(p) => {
                assert_eq!(p.get(), 4);
                p
            }
            _ => panic!("Expected Reserved"),
        };

        // Sleep briefly so pieces become stealable
        std::thread::sleep(Duration::from_millis(5));

        // Peer B tries to acquire with:
        // - Very short avg_time (1ms) so 3x threshold = 3ms < 5ms elapsed
        // - peer_has_piece returns true ONLY for piece 4, NOT piece 0
        let result = tracker.acquire_piece(AcquireRequest {
            peer: peer_b,
            peer_avg_time: Some(Duration::from_millis(1)),
            priority_pieces: std::iter::empty(),
            file_priorities: &file_priorities,
            file_infos: &file_infos,
            peer_has_piece: |p| p.get() == 4, // Peer B only has piece 4
            can_steal: |_| true,
        });

        // Should steal piece 4 (which peer B has), NOT piece 0 (which peer B doesn't have)
        match result {
            AcquireResult::Stolen { piece, from_peer } => {
                assert_eq!(piece, piece_4, "Should steal piece 4 (the one peer B has)");
                assert_eq!(from_peer, peer_a);
                // Verify piece 0 is still owned by peer A (wasn't stolen)
                assert_eq!(tracker.get_inflight(piece_0).unwrap().peer, peer_a);
            }
            _ => panic!("Expected Stolen, got {:?}", result),
        }
    }

    /// confluence patch: a stream's pieces are handed out chunk by chunk; a dead contributor's
    /// chunks go to others without losing the piece; the first copy of a chunk is written once.
    #[test]
    fn urgent_pieces_are_shared_chunk_by_chunk() {
        let mut t = PieceTracker::new(chunk_tracker_with(4, 4 * 16384));
        let p0 = t.chunks().get_lengths().validate_piece_index(0).unwrap();
        let now = Instant::now();
        let take = |t: &mut PieceTracker, p: PeerHandle, max: usize| -> Vec<u32> {
            t.take_urgent_chunks(UrgentRequest {
                peer: p,
                urgent: [p0].into_iter(),
                peer_has_piece: |_| true,
                max,
                now,
                due: now + Duration::from_secs(1),
            })
            .into_iter()
            .map(|c| c.chunk_index)
            .collect()
        };
        assert_eq!(take(&mut t, peer(1), 2), [0, 1]);
        assert_eq!(take(&mut t, peer(2), 8), [2, 3]);
        assert!(t.is_inflight(p0));
        assert!(!t.chunks().is_piece_queued_for_test(p0));
        assert_eq!(t.shared_pieces(), [p0], "to finish once no stream needs it");

        assert_eq!(
            t.release_pieces_owned_by(peer(1)),
            0,
            "peer 2 still has asks"
        );
        assert_eq!(take(&mut t, peer(3), 8), [0, 1]);

        let chunk = |i: u32| {
            t.chunks
                .get_lengths()
                .iter_chunk_infos(p0)
                .nth(i as usize)
                .unwrap()
        };
        let c2 = chunk(2);
        assert!(
            matches!(t.chunk_arrival(peer(2), &c2), Arrival::Write { ref cancel } if cancel.is_empty())
        );
        let data = vec![0u8; 16384];
        let piece = Piece::from_data(0, c2.offset, &data);
        t.mark_chunk_downloaded(&piece);
        assert!(
            matches!(t.chunk_arrival(peer(3), &c2), Arrival::Ignore),
            "a second copy"
        );

        assert_eq!(t.release_pieces_owned_by(peer(2)), 0);
        assert_eq!(
            t.release_pieces_owned_by(peer(3)),
            1,
            "nobody left: requeued"
        );
        assert!(!t.is_inflight(p0));
    }
}
