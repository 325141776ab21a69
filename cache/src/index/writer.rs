//! The cache's writer thread: puts verified pieces that were downloaded into memory (see
//! `membuf`) on disk, off the engine thread.
//!
//! The thread writes each piece to a spare file and stores it like a staged piece (rename, then
//! index), so a piece enters the cache, and readers see it, only once it is on disk: a full disk
//! is then the same clear error as when chunks were written straight to staging files. Until
//! then the storage adapter keeps serving librqbit's reads of the piece from memory, and
//! [`PieceCache::is_writing`] tells a reader that librqbit's claim on it is not stale.

use std::{
    collections::HashSet,
    os::unix::fs::FileExt,
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
    bytes: Arc<PieceBuf>,
    done: Done,
}

/// The queue to the writer thread and the pieces in it.
pub(super) struct Writer {
    tx: Mutex<mpsc::Sender<Job>>,
    writing: Mutex<HashSet<Key>>,
    drained: Condvar,
}

impl Writer {
    /// The queue, and its receiving end for [`spawn`].
    pub(super) fn new() -> (Self, mpsc::Receiver<Job>) {
        let (tx, rx) = mpsc::channel();
        let writer = Self {
            tx: Mutex::new(tx),
            writing: Mutex::new(HashSet::new()),
            drained: Condvar::new(),
        };
        (writer, rx)
    }

    fn finished(&self, key: Key) {
        let mut writing = self.writing.lock();
        writing.remove(&key);
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
                cache.write_out(job.key, &job.bytes);
                cache.writer.finished(job.key);
                (job.done)();
            }
        })?;
    Ok(())
}

impl PieceCache {
    /// Queues a verified piece held in memory for the writer thread, which stores it; `done`
    /// runs after that (whether or not the write succeeded).
    pub fn store_bytes(&self, key: Key, bytes: Arc<PieceBuf>, done: Done) {
        self.writer.writing.lock().insert(key);
        let job = Job { key, bytes, done };
        if let Err(mpsc::SendError(job)) = self.writer.tx.lock().send(job) {
            // The thread is gone: the cache is being dropped, so nothing can be stored.
            self.writer.finished(key);
            (job.done)();
        }
    }

    /// Whether a verified piece is queued for the writer thread (not yet in the cache).
    pub fn is_writing(&self, key: Key) -> bool {
        self.writer.writing.lock().contains(&key)
    }

    /// Waits (at most `timeout`) until every piece queued so far is stored; returns whether the
    /// queue is empty.
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

    /// Writes one piece to a spare file and stores it. A failure (a full disk) is recorded like
    /// a failed staging write: the piece is not stored, and waiting readers learn why.
    fn write_out(&self, key: Key, bytes: &PieceBuf) {
        let stored = self.spares.take().and_then(|(tmp, f)| {
            let res = f
                .write_all_at(bytes, 0)
                .and_then(|()| self.store(key, &tmp, bytes.len() as u64));
            if res.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            res
        });
        if let Err(e) = stored {
            self.write_failed(key.piece, &e);
        }
    }
}
