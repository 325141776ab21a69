//! The librqbit storage adapter: how a live torrent writes into and reads from the piece cache.
//!
//! librqbit calls these methods with per-file offsets. Chunks of a piece being downloaded go to
//! memory (see `membuf`) or, when the memory budget is used up, to a staging file (an empty file
//! the cache made ahead, see `spare`); once librqbit has verified the piece's hash it calls
//! `on_piece_completed` and the piece moves into the [`PieceCache`]. Reads (hash checks, uploads
//! to peers) look in staging first, then in the cache.
//!
//! Two rules from librqbit's internals shape this file:
//! - a failed write puts the torrent in an error state, so writes never fail: an I/O error is
//!   logged and swallowed, and the piece then fails its hash check and is downloaded again;
//! - during the initial check a missing piece must read as zeros (an error would mark the rest of
//!   the file broken); once live, a missing piece is an error (librqbit only reads pieces it
//!   believes it has, so this happens for an evicted piece: the uploading peer is dropped).

use std::{
    any::TypeId,
    collections::HashMap,
    fs::File,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use librqbit::{
    storage::{BoxStorageFactory, StorageFactory, StorageFactoryExt, TorrentStorage},
    ManagedTorrentShared, TorrentMetadata,
};
use librqbit_core::lengths::ValidPieceIndex;
use parking_lot::Mutex;
use tracing::warn;

use crate::{
    index::{Ih, Key, PieceCache},
    membuf::PieceBuf,
};

/// Creates a [`CacheStorage`] for each torrent librqbit adds.
#[derive(Clone)]
pub struct CacheStorageFactory {
    cache: Arc<PieceCache>,
}

impl CacheStorageFactory {
    pub fn new(cache: Arc<PieceCache>) -> Self {
        Self { cache }
    }
}

impl StorageFactory for CacheStorageFactory {
    type Storage = CacheStorage;

    fn create(
        &self,
        shared: &ManagedTorrentShared,
        metadata: &TorrentMetadata,
    ) -> anyhow::Result<CacheStorage> {
        let ih = shared.info_hash.0;
        let lengths = metadata.lengths();
        // Each instance stages into files of its own: when a torrent is re-added while the old
        // instance still finishes a write, the two never share a staging file.
        Ok(CacheStorage {
            inner: Arc::new(Inner {
                cache: self.cache.clone(),
                ih,
                piece_len: u64::from(lengths.default_piece_length()),
                total_len: lengths.total_length(),
                file_offsets: metadata
                    .file_infos
                    .iter()
                    .map(|f| f.offset_in_torrent)
                    .collect(),
                staging: Mutex::new(HashMap::new()),
            }),
            checking: true,
        })
    }

    /// Poses as librqbit's filesystem storage, for fastresume: see [`crate::fastresume`].
    fn is_type_id(&self, type_id: TypeId) -> bool {
        crate::fastresume::poses_as_filesystem_storage(type_id, TypeId::of::<Self>())
    }

    fn clone_box(&self) -> BoxStorageFactory {
        self.clone().boxed()
    }
}

struct Inner {
    cache: Arc<PieceCache>,
    ih: Ih,
    piece_len: u64,
    total_len: u64,
    file_offsets: Vec<u64>,
    /// Where each piece being downloaded is staged.
    staging: Mutex<HashMap<u32, Staged>>,
}

enum Staged {
    Memory(PieceBuf),
    File {
        path: PathBuf,
        file: Arc<File>,
    },
    /// Verified and handed to the cache's writer thread; librqbit may read it meanwhile.
    Writing(Arc<PieceBuf>),
}

impl Staged {
    /// The piece's bytes, when they are in memory.
    fn in_memory(&self) -> Option<&[u8]> {
        match self {
            Staged::Memory(buf) => Some(buf),
            Staged::Writing(buf) => Some(buf),
            Staged::File { .. } => None,
        }
    }
}

impl Inner {
    /// Forgets every piece being downloaded, deleting what was staged.
    fn drop_staged(&self) {
        for (piece, staged) in self.staging.lock().drain() {
            if let Staged::File { path, .. } = staged {
                let _ = std::fs::remove_file(&path);
            }
            self.cache.set_partial(Key { ih: self.ih, piece }, false);
        }
    }

    /// The length of a piece (the last one is short).
    fn piece_length(&self, piece: u32) -> u64 {
        self.piece_len
            .min(self.total_len - u64::from(piece) * self.piece_len)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.drop_staged();
    }
}

/// One torrent's view of the piece cache (see the module doc).
pub struct CacheStorage {
    inner: Arc<Inner>,
    /// True until librqbit's initial check ends (it then calls `take`).
    checking: bool,
}

impl Inner {
    /// Splits a per-file range into (piece, offset in piece, offset in buf, len) segments.
    fn segments(
        &self,
        file_id: usize,
        offset: u64,
        len: usize,
    ) -> anyhow::Result<Vec<(u32, u64, usize, usize)>> {
        let base = *self
            .file_offsets
            .get(file_id)
            .ok_or_else(|| anyhow::anyhow!("no file {file_id}"))?;
        let mut abs = base
            .checked_add(offset)
            .filter(|a| a.saturating_add(len as u64) <= self.total_len)
            .ok_or_else(|| anyhow::anyhow!("range past the end of the torrent"))?;
        let mut out = Vec::with_capacity(1);
        let mut done = 0usize;
        while done < len {
            let piece = abs / self.piece_len;
            let in_piece = abs % self.piece_len;
            let n = ((self.piece_len - in_piece) as usize).min(len - done);
            out.push((u32::try_from(piece)?, in_piece, done, n));
            done += n;
            abs += n as u64;
        }
        Ok(out)
    }

    /// Reads `out.len()` bytes at `in_piece` from the piece's staging, if it is being staged.
    fn read_staged(&self, piece: u32, in_piece: u64, out: &mut [u8]) -> bool {
        let file = match self.staging.lock().get(&piece) {
            None => return false,
            Some(Staged::File { file, .. }) => file.clone(),
            Some(staged) => {
                copy_or_zero(staged.in_memory().unwrap_or_default(), in_piece, out);
                return true;
            }
        };
        read_or_zero(&file, in_piece, out);
        true
    }

    /// Writes `data` at `in_piece` into the piece's staging, staging the piece first if needed:
    /// in memory when the budget has room, else in a spare file.
    fn write_staged(&self, piece: u32, in_piece: u64, data: &[u8]) -> std::io::Result<()> {
        let mut staging = self.staging.lock();
        let staged = match staging.entry(piece) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let len = self.piece_length(piece) as usize;
                let staged = match self.cache.piece_buffer(len) {
                    Some(buf) => Staged::Memory(buf),
                    None => {
                        let (path, file) = self.cache.spare_file()?;
                        Staged::File {
                            path,
                            file: Arc::new(file),
                        }
                    }
                };
                self.cache.set_partial(Key { ih: self.ih, piece }, true);
                e.insert(staged)
            }
        };
        match staged {
            Staged::Memory(buf) => {
                let at = in_piece as usize;
                match buf.get_mut(at..at + data.len()) {
                    Some(dst) => dst.copy_from_slice(data),
                    None => return Err(std::io::ErrorKind::InvalidInput.into()),
                }
                Ok(())
            }
            Staged::File { file, .. } => {
                let file = file.clone();
                drop(staging);
                file.write_all_at(data, in_piece)
            }
            // librqbit writes a piece only while it lacks it.
            Staged::Writing(_) => Ok(()),
        }
    }
}

/// Copies what `buf` has at `offset` and zero-fills the rest.
fn copy_or_zero(buf: &[u8], offset: u64, out: &mut [u8]) {
    let src = buf.get(offset as usize..).unwrap_or_default();
    let n = src.len().min(out.len());
    out[..n].copy_from_slice(&src[..n]);
    out[n..].fill(0);
}

/// Reads as much as the file has at `offset` and zero-fills the rest: a short staging file only
/// means a write was lost, and the hash check then rejects the piece.
fn read_or_zero(f: &File, offset: u64, buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => done += n,
        }
    }
    buf[done..].fill(0);
}

impl TorrentStorage for CacheStorage {
    fn init(&mut self, _: &ManagedTorrentShared, _: &TorrentMetadata) -> anyhow::Result<()> {
        self.inner.drop_staged();
        Ok(())
    }

    fn pread_exact(&self, file_id: usize, offset: u64, buf: &mut [u8]) -> anyhow::Result<()> {
        let inner = &self.inner;
        for (piece, in_piece, at, n) in inner.segments(file_id, offset, buf.len())? {
            let out = &mut buf[at..at + n];
            if inner.read_staged(piece, in_piece, out) {
                continue;
            }
            if inner.cache.read(
                Key {
                    ih: inner.ih,
                    piece,
                },
                in_piece,
                out,
                false,
            )? {
                continue;
            }
            if self.checking {
                out.fill(0);
            } else {
                anyhow::bail!("piece {piece} is not in the cache (evicted)");
            }
        }
        Ok(())
    }

    fn pwrite_all(&self, file_id: usize, offset: u64, buf: &[u8]) -> anyhow::Result<()> {
        let inner = &self.inner;
        let segments = match inner.segments(file_id, offset, buf.len()) {
            Ok(s) => s,
            Err(e) => {
                warn!("dropping a write librqbit should not have made: {e:#}");
                return Ok(());
            }
        };
        for (piece, in_piece, at, n) in segments {
            if let Err(e) = inner.write_staged(piece, in_piece, &buf[at..at + n]) {
                // Never fail a write (see the module doc): the piece will fail its hash check.
                // The cache logs it (once per 10 s) and waiting readers give up with it.
                inner.cache.write_failed(piece, &e);
            }
        }
        Ok(())
    }

    fn remove_file(&self, _: usize, _: &Path) -> anyhow::Result<()> {
        Ok(())
    }

    fn remove_directory_if_empty(&self, _: &Path) -> anyhow::Result<()> {
        Ok(())
    }

    fn ensure_file_length(&self, _: usize, _: u64) -> anyhow::Result<()> {
        Ok(())
    }

    fn take(&self) -> anyhow::Result<Box<dyn TorrentStorage>> {
        Ok(Box::new(CacheStorage {
            inner: self.inner.clone(),
            checking: false,
        }))
    }

    fn on_piece_completed(&self, piece: ValidPieceIndex) -> anyhow::Result<()> {
        let inner = &self.inner;
        let piece = piece.get();
        let key = Key {
            ih: inner.ih,
            piece,
        };
        let offset = u64::from(piece) * inner.piece_len;
        let mut staging = inner.staging.lock();
        let staged = match staging.remove(&piece) {
            None => return Ok(()),
            Some(writing @ Staged::Writing(_)) => {
                staging.insert(piece, writing);
                return Ok(());
            }
            Some(staged) => staged,
        };
        match staged {
            Staged::Writing(_) => {}
            Staged::Memory(buf) => {
                // Readable by librqbit from here until the writer thread has stored it.
                let buf = Arc::new(buf);
                staging.insert(piece, Staged::Writing(buf.clone()));
                drop(staging);
                inner.cache.set_partial(key, false);
                let (owner, ours) = (Arc::downgrade(inner), Arc::downgrade(&buf));
                let done = Box::new(move || {
                    let Some(inner) = owner.upgrade() else { return };
                    let mut staging = inner.staging.lock();
                    if let Some(Staged::Writing(b)) = staging.get(&piece) {
                        if std::ptr::eq(Arc::as_ptr(b), ours.as_ptr()) {
                            staging.remove(&piece);
                        }
                    }
                });
                inner.cache.store_bytes(key, offset, buf, done);
            }
            Staged::File { path, .. } => {
                drop(staging);
                inner.cache.set_partial(key, false);
                if let Err(e) = inner
                    .cache
                    .store(key, offset, &path, inner.piece_length(piece))
                {
                    inner.cache.write_failed(piece, &e);
                }
            }
        }
        Ok(())
    }
}
