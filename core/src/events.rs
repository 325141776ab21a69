//! Piece events: what `/events` streams and what readers wait on, and when each torrent last
//! made progress.
//!
//! One owner for both, because they change together: every completion is broadcast and
//! remembered, so a reader that saw nothing for a while can tell sleeping peers from slow ones.

use std::{collections::HashMap, time::Instant};

use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::ident::InfoHash;

/// A change in a piece's state, for `/events` and for readers waiting on a piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PieceEvent {
    pub ih: InfoHash,
    pub piece: u32,
    pub kind: PieceEventKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceEventKind {
    /// A reader started waiting for the piece (its priority was raised).
    Wanted,
    /// The piece was verified and stored.
    Complete,
    /// The cache evicted the piece.
    Evicted,
}

/// The broadcast of piece events and the time of each torrent's last completed piece.
pub(crate) struct PieceEvents {
    tx: broadcast::Sender<PieceEvent>,
    /// When each torrent last completed a piece (to tell idle peers from slow ones).
    progress: Mutex<HashMap<InfoHash, Instant>>,
}

impl PieceEvents {
    pub(crate) fn new() -> Self {
        Self {
            tx: broadcast::channel(16 * 1024).0,
            progress: Mutex::new(HashMap::new()),
        }
    }

    /// Sends a piece event, remembering completions per torrent.
    pub(crate) fn publish(&self, ih: InfoHash, piece: u32, kind: PieceEventKind) {
        if kind == PieceEventKind::Complete {
            self.progress.lock().insert(ih, Instant::now());
        }
        let _ = self.tx.send(PieceEvent { ih, piece, kind });
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<PieceEvent> {
        self.tx.subscribe()
    }

    /// When a piece of `ih` last completed, if one did while it was in memory.
    pub(crate) fn last_progress(&self, ih: &InfoHash) -> Option<Instant> {
        self.progress.lock().get(ih).copied()
    }

    /// Drops what is remembered of a torrent that left memory.
    pub(crate) fn forget(&self, ih: &InfoHash) {
        self.progress.lock().remove(ih);
    }
}
