//! Reusable buffers for the chunks a reader hands to a front door.
//!
//! Every chunk of a body used to be a fresh `vec![0; 256 KiB]`: glibc serves that size with
//! fresh pages (mmap, or a heap top it trims again), so each chunk cost 64 page faults and a
//! memset before the file read could fill it, half of the page faults of a cold 64 MiB stream.
//! A chunk is a [`Bytes`] whose owner gives its buffer back here when the front door has copied
//! it out (actix copies into its write buffer at once; FUSE replies and drops).

use std::sync::Mutex;

use bytes::Bytes;

/// The largest chunk handed to a front door at once.
pub const CHUNK: usize = 256 * 1024;

/// At most this many idle buffers are kept (each at most [`CHUNK`] bytes): enough for
/// the readers of a few concurrent streams, a bounded 2 MiB when idle.
const KEEP: usize = 8;

static IDLE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A buffer of `len` bytes, reused when one is idle. Its bytes are left from earlier use (or
/// zero): the caller overwrites all of them.
pub(crate) fn buffer(len: usize) -> Vec<u8> {
    let reused = IDLE.lock().ok().and_then(|mut idle| idle.pop());
    let mut buf = reused.unwrap_or_default();
    buf.resize(len, 0);
    buf
}

/// `buf` as [`Bytes`]; its allocation comes back to the pool when the last clone is dropped.
pub(crate) fn into_bytes(buf: Vec<u8>) -> Bytes {
    Bytes::from_owner(Pooled(buf))
}

struct Pooled(Vec<u8>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        if buf.capacity() > CHUNK || buf.capacity() == 0 {
            return;
        }
        if let Ok(mut idle) = IDLE.lock() {
            if idle.len() < KEEP {
                idle.push(buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_and_keep_their_length_contract() {
        let mut b = buffer(1000);
        assert_eq!(b.len(), 1000);
        b.fill(7);
        let ptr = b.as_ptr();
        let bytes = into_bytes(b);
        assert_eq!(&bytes[..], &[7u8; 1000][..]);
        let clone = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(&clone[..], &[7u8; 10][..]);
        drop(clone);
        // Another test may take it first; when it is ours, it is the same allocation.
        let again = buffer(10);
        assert_eq!(again.len(), 10);
        if again.as_ptr() == ptr {
            assert_eq!(again.capacity(), 1000);
        }
    }
}
