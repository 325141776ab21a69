//! Memory for pieces being downloaded and for verified pieces on their way to disk.
//!
//! librqbit writes a piece in 16 KiB chunks and then reads it back in 64 KiB blocks to hash it,
//! all on the engine thread that also reads every peer connection. Done through a staging file,
//! that is ~20 page-cache syscalls per 256 KiB piece, and `perf` of a cold 64 MiB stream put a
//! quarter of the engine thread in them. A piece held in memory costs a `memcpy` per chunk
//! instead; the cache's writer thread puts the verified piece on disk (see `writer`).
//!
//! Memory is bounded: [`PieceBuffers`] hands out at most [`BUDGET`] bytes at once, and a piece
//! that does not fit is staged in a file as before. Freed buffers are kept for reuse (up to
//! [`KEEP_IDLE`] bytes) so that a piece's chunks do not fault in fresh pages.

use std::{
    ops::{Deref, DerefMut},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use parking_lot::Mutex;

/// At most this many bytes of pieces are held in memory at once. One seeder connection keeps
/// 2 MiB of chunks in flight (8 pieces of 256 KiB), so this is room for a dozen fast peers, or
/// for a few pieces of a torrent with huge pieces.
pub const BUDGET: u64 = 32 << 20;

/// Freed buffers kept for the next pieces, in bytes.
const KEEP_IDLE: u64 = 4 << 20;

/// The pool every torrent's pieces take their memory from (see the module doc).
pub struct PieceBuffers {
    budget: u64,
    used: AtomicU64,
    idle: Mutex<Vec<Vec<u8>>>,
}

/// A piece's bytes in memory, zeroed when handed out. Dropping it gives the memory back.
pub struct PieceBuf {
    buf: Vec<u8>,
    pool: Arc<PieceBuffers>,
}

impl PieceBuffers {
    pub fn new(budget: u64) -> Arc<Self> {
        Arc::new(Self {
            budget,
            used: AtomicU64::new(0),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// A zeroed buffer of `len` bytes, or `None` when the budget has no room for it.
    pub fn take(self: &Arc<Self>, len: usize) -> Option<PieceBuf> {
        let want = len as u64;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + want <= self.budget).then_some(used + want)
            })
            .ok()?;
        let reused = {
            let mut idle = self.idle.lock();
            idle.iter()
                .position(|b| b.capacity() >= len)
                .map(|i| idle.swap_remove(i))
        };
        let mut buf = reused.unwrap_or_default();
        buf.clear();
        buf.resize(len, 0);
        Some(PieceBuf {
            buf,
            pool: self.clone(),
        })
    }

    /// Bytes handed out and not yet given back.
    #[cfg(test)]
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }
}

impl Drop for PieceBuf {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.pool.used.fetch_sub(buf.len() as u64, Ordering::AcqRel);
        let mut idle = self.pool.idle.lock();
        let kept: u64 = idle.iter().map(|b| b.capacity() as u64).sum();
        if kept + buf.capacity() as u64 <= KEEP_IDLE {
            idle.push(buf);
        }
    }
}

impl Deref for PieceBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf
    }
}

impl DerefMut for PieceBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_enforced_and_memory_comes_back_zeroed() {
        let pool = PieceBuffers::new(1000);
        let mut a = pool.take(600).unwrap();
        assert!(pool.take(500).is_none(), "over budget");
        a.fill(9);
        let b = pool.take(400).unwrap();
        assert_eq!(pool.used(), 1000);
        drop(a);
        assert_eq!(pool.used(), 400);
        // The reused buffer is zeroed and has the asked length.
        let c = pool.take(300).unwrap();
        assert_eq!(c.len(), 300);
        assert!(c.iter().all(|&x| x == 0));
        drop((b, c));
        assert_eq!(pool.used(), 0);
    }
}
