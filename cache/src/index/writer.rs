//! The cache's writer thread: puts verified pieces that were downloaded into memory (see
//! `membuf`) on disk, off the engine thread.
//!
//! A piece enters the cache, and readers see it, only once it is on disk: a full disk is then
//! the same clear error as when chunks were written straight to staging files. Until then the
//! storage adapter keeps serving librqbit's reads of the piece from memory, and
//! [`PieceCache::is_writing`] tells a reader that librqbit's claim on it is not stale.
//!
//! The keys being written (queued, or stored by another path) are counted here: the eviction
//! listener does not punch a piece's place while a new copy of it is being written there.

use std::{
    collections::HashMap,
    sync::{mpsc, Arc, Weak},
    time::{Duration, Instant},
};

use parking_lot::{Condvar, Mutex};

use super::{Key, PieceCache};
use crate::membuf::PieceBuf;

/// Called once the piece is stored (or failed to be): the storage adapter drops its copy.
pub type Done = Box<dyn FnOnce() + Send>;

pub(super) struct Job {
    key: Key,
    offset: u64,
    bytes: Arc<PieceBuf>,
    done: Done,
}

/// Keys being written, with how many copies of each.
pub(super) type Writing = Arc<Mutex<HashMap<Key, u32>>>;

/// The queue to the writer thread and the keys being written.
pub(super) struct Writer {
    tx: Mutex<mpsc::Sender<Job>>,
    writing: Writing,
    drained: Condvar,
}

impl Writer {
    /// The queue, and its receiving end for [`spawn`].
    pub(super) fn new() -> (Self, mpsc::Receiver<Job>) {
        let (tx, rx) = mpsc::channel();
        let writer = Self {
            tx: Mutex::new(tx),
            writing: Writing::default(),
            drained: Condvar::new(),
        };
        (writer, rx)
    }

    pub(super) fn writing(&self) -> Writing {
        self.writing.clone()
    }

    pub(super) fn begin(&self, key: Key) {
        *self.writing.lock().entry(key).or_default() += 1;
    }

    pub(super) fn finished(&self, key: Key) {
        let mut writing = self.writing.lock();
        if let Some(n) = writing.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                writing.remove(&key);
            }
        }
        if writing.is_empty() {
            self.drained.notify_all();
        }
    }
}

/// Starts the thread. It holds the cache weakly and ends when the cache is dropped.
pub(super) fn spawn(cache: Weak<PieceCache>, rx: mpsc::Receiver<Job>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("cache-writer".into())
        .spawn(move || {
            while let Ok(job) = rx.recv() {
                let Some(cache) = cache.upgrade() else { return };
                let (key, bytes) = (job.key, &job.bytes);
                let len = bytes.len() as u64;
                if let Err(e) = cache.put(key, job.offset, len, |disk| {
                    disk.write(&key.ih, job.offset, bytes)
                }) {
                    // Like a failed staging write: the piece is not stored, readers learn why.
                    cache.write_failed(key.piece, &e);
                }
                // `done` first: once `flush` sees the key finished, its memory is released too.
                (job.done)();
                cache.writer.finished(key);
            }
        })?;
    Ok(())
}

impl PieceCache {
    /// Queues a verified piece held in memory for the writer thread, which stores it at
    /// `offset` of its torrent's data file; `done` runs after that (whether or not the write
    /// succeeded).
    pub fn store_bytes(&self, key: Key, offset: u64, bytes: Arc<PieceBuf>, done: Done) {
        self.writer.begin(key);
        let job = Job {
            key,
            offset,
            bytes,
            done,
        };
        if let Err(mpsc::SendError(job)) = self.writer.tx.lock().send(job) {
            // The thread is gone: the cache is being dropped, so nothing can be stored.
            self.writer.finished(key);
            (job.done)();
        }
    }

    /// Whether a verified piece is being written (not yet in the cache).
    pub fn is_writing(&self, key: Key) -> bool {
        self.writer.writing.lock().contains_key(&key)
    }

    /// Waits (at most `timeout`) until every piece queued so far is stored; returns whether
    /// nothing is left to write.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut writing = self.writer.writing.lock();
        while !writing.is_empty() {
            if self
                .writer
                .drained
                .wait_until(&mut writing, deadline)
                .timed_out()
            {
                return writing.is_empty();
            }
        }
        true
    }
}
