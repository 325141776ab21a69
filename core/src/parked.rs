//! Streams of readers that finished recently, kept open for a while so they keep steering
//! downloads.
//!
//! Without an open stream librqbit drops its peers as "not needed", and the next request (an
//! HTTP player issues one per seek) must reconnect and wait for the seeder's bitfield; with one,
//! the peers stay connected and keep fetching the lookahead, and the next reader adopts it.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use parking_lot::Mutex;

/// A librqbit `FileStream` (not nameable: librqbit does not re-export its type), used as a
/// cursor that steers downloads.
pub type Stream = Box<dyn tokio::io::AsyncSeek + Send + Unpin>;

/// How long a finished reader's stream keeps steering downloads, and how many are kept.
pub(crate) const PARK_FOR: Duration = Duration::from_secs(10);
const MAX_PARKED: usize = 4;

static PARK_ID: AtomicU64 = AtomicU64::new(0);

/// A stream a finished reader left behind.
struct Parked {
    id: u64,
    generation: u64,
    file: usize,
    stream: Stream,
}

/// The parked streams of one torrent (at most `MAX_PARKED`, the oldest goes first).
#[derive(Default)]
pub(crate) struct ParkedStreams(Mutex<Vec<Parked>>);

/// Names one parked stream, to take it back out when its time is up.
#[derive(Clone, Copy)]
pub(crate) struct ParkId(u64);

impl ParkedStreams {
    /// Keeps `stream` (of `file`, opened on `generation`); the caller expires it after
    /// `PARK_FOR` with the returned id.
    pub(crate) fn park(&self, generation: u64, file: usize, stream: Stream) -> ParkId {
        let id = PARK_ID.fetch_add(1, Ordering::Relaxed);
        let mut parked = self.0.lock();
        if parked.len() >= MAX_PARKED {
            parked.remove(0);
        }
        parked.push(Parked {
            id,
            generation,
            file,
            stream,
        });
        ParkId(id)
    }

    /// Drops the stream `id`, unless a reader adopted it meanwhile.
    pub(crate) fn expire(&self, id: ParkId) {
        self.0.lock().retain(|p| p.id != id.0);
    }

    /// A parked stream of this generation on `file`, if any (the newest).
    pub(crate) fn unpark(&self, generation: u64, file: usize) -> Option<Stream> {
        let mut parked = self.0.lock();
        let i = parked
            .iter()
            .rposition(|p| p.generation == generation && p.file == file)?;
        Some(parked.remove(i).stream)
    }

    /// Drops every parked stream (the torrent leaves the session).
    pub(crate) fn clear(&self) {
        self.0.lock().clear();
    }
}
