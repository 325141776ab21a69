//! Open files and open root listings.
//!
//! An open file owns one core [`Reader`] (which holds a reference on its torrent, like an HTTP
//! request). Reads of one handle share it one at a time, so a sequential reader keeps a single
//! librqbit stream and its lookahead; `release` drops it, and the torrent is released
//! `-torrentGrace` later.

use std::{
    collections::HashMap,
    ffi::OsString,
    io,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use bytes::Bytes;
use confluence_core::Reader;
use fuser::ReplyData;
use parking_lot::Mutex;

/// One open file: its reader, used by one read at a time.
pub(crate) type OpenFile = Arc<tokio::sync::Mutex<Reader>>;

/// A snapshot of the root taken at `opendir`, so a listing read in several parts is consistent.
pub(crate) type Listing = Arc<Vec<(u64, OsString)>>;

#[derive(Default)]
pub(crate) struct Handles {
    next: AtomicU64,
    files: Mutex<HashMap<u64, OpenFile>>,
    listings: Mutex<HashMap<u64, Listing>>,
}

impl Handles {
    fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn open(&self, reader: Reader) -> u64 {
        let fh = self.next();
        self.files
            .lock()
            .insert(fh, Arc::new(tokio::sync::Mutex::new(reader)));
        fh
    }

    pub fn file(&self, fh: u64) -> Option<OpenFile> {
        self.files.lock().get(&fh).cloned()
    }

    /// Forgets the handle; its reader goes when the last read using it ends.
    pub fn release(&self, fh: u64) {
        let f = self.files.lock().remove(&fh);
        drop(f);
    }

    pub fn open_listing(&self, l: Vec<(u64, OsString)>) -> u64 {
        let fh = self.next();
        self.listings.lock().insert(fh, Arc::new(l));
        fh
    }

    pub fn listing(&self, fh: u64) -> Option<Listing> {
        self.listings.lock().get(&fh).cloned()
    }

    pub fn release_listing(&self, fh: u64) {
        self.listings.lock().remove(&fh);
    }

    /// Drops every open file's reader (at shutdown: their torrent references go with them).
    pub fn clear(&self) {
        let files = std::mem::take(&mut *self.files.lock());
        drop(files);
        self.listings.lock().clear();
    }
}

/// Reads `size` bytes at `offset`, fewer only at the end of the file. FUSE wants the whole
/// request answered (a short reply reads as end of file), so this loops over pieces. The chunks
/// are returned as the reader handed them out: joining them is left to [`reply`], off the
/// engine's runtime.
pub(crate) async fn read_full(
    reader: &mut Reader,
    offset: u64,
    size: u32,
) -> io::Result<Vec<Bytes>> {
    let want = (size as u64).min(reader.len().saturating_sub(offset));
    let mut chunks = Vec::new();
    let mut got = 0;
    while got < want {
        let chunk = reader.read(offset + got, (want - got) as usize).await?;
        if chunk.is_empty() {
            break;
        }
        got += chunk.len() as u64;
        chunks.push(chunk);
    }
    Ok(chunks)
}

/// Answers a read with `chunks`, in one piece. Call it on a blocking thread, not on the engine's
/// runtime: the reply is a `writev` to `/dev/fuse` in which the kernel copies the data into the
/// page cache (about as long as a disk-cached read of it), and a request spanning pieces has to
/// be joined first; the engine's runtime is one thread that every peer connection shares, so
/// this work there would slow the download the reader waits for. (HTTP's body likewise leaves
/// the copy and the socket write to actix's threads.)
pub(crate) fn reply(chunks: Vec<Bytes>, reply: ReplyData) {
    match chunks.as_slice() {
        [] => reply.data(&[]),
        [one] => reply.data(one),
        many => reply.data(&many.concat()),
    }
}
