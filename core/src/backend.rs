//! Where piece data lives: the piece cache (default) or plain files (`-fileDir`).
//!
//! The rest of the core asks the backend three things: is this piece readable now, read it, and
//! prepare/forget a torrent around its stay in the session. With the cache, "readable" is what
//! the cache index says and librqbit's own have bits may be stale (the cache evicts); with plain
//! files, librqbit's have bits are the truth.

use std::{
    io,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use confluence_cache::{Key, PieceCache};
use librqbit::storage::{
    filesystem::FilesystemStorageFactory, BoxStorageFactory, StorageFactoryExt,
};

use tracing::warn;

use crate::{hooked::HookedFactory, ident::InfoHash, metainfo::Info};

/// librqbit's handle of a torrent in its session.
type ManagedTorrentHandle = Arc<librqbit::ManagedTorrent>;

/// Whether an I/O error says the disk is full (by kind or errno, never by text).
pub fn is_storage_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(libc::ENOSPC)
}

/// An I/O error with `e`'s whole chain of causes (`{:#}`: an anyhow error's `to_string` is
/// only its outermost context, e.g. "adding the torrent to the session"). Its kind is
/// `StorageFull` when any cause is a full disk (front doors pick 507/ENOSPC by kind), else
/// `Other`.
pub(crate) fn io_error(e: impl Into<anyhow::Error>) -> io::Error {
    let e: anyhow::Error = e.into();
    let full = e
        .chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(is_storage_full);
    let kind = if full {
        io::ErrorKind::StorageFull
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, format!("{e:#}"))
}

pub(crate) enum Backend {
    Cache {
        cache: Arc<PieceCache>,
        /// librqbit's JSON persistence folder, where fastresume `.bitv` files live.
        session_dir: PathBuf,
        scratch_dir: PathBuf,
    },
    Files {
        dir: PathBuf,
        session_dir: PathBuf,
    },
}

/// Whether librqbit's have bit is set for `piece` (false when not live or unknown).
pub(crate) fn librqbit_has(handle: &ManagedTorrentHandle, api: &librqbit::Api, piece: u32) -> bool {
    librqbit_haves(handle, api).is_some_and(|h| h.get(piece as usize).copied().unwrap_or(false))
}

/// librqbit's have bits of every piece, from one copy of its bitfield (`None` when unknown).
pub(crate) fn librqbit_haves(
    handle: &ManagedTorrentHandle,
    api: &librqbit::Api,
) -> Option<Vec<bool>> {
    let id = librqbit::api::TorrentIdOrHash::Hash(handle.info_hash());
    let (bf, n) = api.api_dump_haves(id).ok()?;
    let raw = bf.as_raw_slice();
    Some(
        (0..n)
            .map(|p| {
                raw.get((p / 8) as usize)
                    .is_some_and(|b| b & (0x80 >> (p % 8)) != 0)
            })
            .collect(),
    )
}

impl Backend {
    pub(crate) fn factory(&self, sink: crate::hooked::PieceSink) -> BoxStorageFactory {
        match self {
            Backend::Cache { cache, .. } => {
                confluence_cache::CacheStorageFactory::new(cache.clone()).boxed()
            }
            Backend::Files { .. } => {
                HookedFactory::new(FilesystemStorageFactory::default(), sink).boxed()
            }
        }
    }

    pub(crate) fn cache(&self) -> Option<&Arc<PieceCache>> {
        match self {
            Backend::Cache { cache, .. } => Some(cache),
            Backend::Files { .. } => None,
        }
    }

    fn session_dir(&self) -> &Path {
        match self {
            Backend::Cache { session_dir, .. } | Backend::Files { session_dir, .. } => session_dir,
        }
    }

    /// Where librqbit puts files: unused scratch space with the cache; `DIR/<ih>[/<name>]` with
    /// plain files (the original's layout).
    pub(crate) fn output_folder(&self, ih: &InfoHash, info: Option<&Info>) -> String {
        let p = match self {
            Backend::Cache { scratch_dir, .. } => scratch_dir.join(ih.to_string()),
            Backend::Files { dir, .. } => {
                let base = dir.join(ih.to_string());
                match info {
                    Some(i) if i.is_multi_file() => base.join(sanitize(&i.name)),
                    _ => base,
                }
            }
        };
        p.to_string_lossy().into_owned()
    }

    /// Before an add: the fastresume bitfield librqbit will trust. With the cache it is written
    /// from the cache index (so nothing is re-hashed and nothing evicted is claimed); without
    /// metadata, or with plain files whose directory was removed, it is deleted.
    pub(crate) fn prepare_add(&self, ih: &InfoHash, info: Option<&Info>) {
        let path = self.session_dir().join(format!("{ih}.bitv"));
        let write = match (self, info) {
            (Backend::Cache { cache, .. }, Some(info)) => {
                cache.reset_evicted(ih.0);
                let have = cache.have_pieces(ih.0, info.num_pieces);
                let mut bits = vec![0u8; have.len().div_ceil(8)];
                for (i, h) in have.iter().enumerate() {
                    if *h {
                        bits[i / 8] |= 0x80 >> (i % 8);
                    }
                }
                Some(bits)
            }
            _ => None,
        };
        let res = match write {
            Some(bits) => {
                // A new inode: an old torrent's flusher may still hold the previous file open.
                let tmp = path.with_extension("bitv.tmp");
                std::fs::write(&tmp, bits).and_then(|_| std::fs::rename(&tmp, &path))
            }
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                r => r,
            },
        };
        if let Err(e) = res {
            warn!(%ih, "cannot prepare the fastresume bitfield: {e}");
        }
    }

    /// After the torrent left the session for good: plain files are deleted (as the original
    /// does); cached pieces stay for later requests.
    pub(crate) fn forget(&self, ih: &InfoHash, _info: Option<&Info>) {
        if let Some(c) = self.cache() {
            c.reset_evicted(ih.0);
        }
        if let Backend::Files { dir, .. } = self {
            let d = dir.join(ih.to_string());
            if let Err(e) = std::fs::remove_dir_all(&d) {
                if e.kind() != io::ErrorKind::NotFound {
                    warn!(path = ?d, "cannot remove torrent files: {e}");
                }
            }
        }
    }

    /// Reads within one piece if it is available. `Ok(false)`: not available (yet).
    pub(crate) fn read(
        &self,
        info: &Info,
        live: Option<&(ManagedTorrentHandle, &librqbit::Api)>,
        piece: u32,
        in_piece: u64,
        buf: &mut [u8],
    ) -> io::Result<bool> {
        match self {
            Backend::Cache { cache, .. } => cache.read(
                Key {
                    ih: info.info_hash.0,
                    piece,
                },
                in_piece,
                buf,
                true,
            ),
            Backend::Files { .. } => {
                let Some((handle, api)) = live else {
                    return Ok(false);
                };
                if !librqbit_has(handle, api, piece) {
                    return Ok(false);
                }
                let folder = PathBuf::from(self.output_folder(&info.info_hash, Some(info)));
                let abs = u64::from(piece) * info.piece_length + in_piece;
                read_files(info, &folder, abs, buf)?;
                Ok(true)
            }
        }
    }
}

/// Reads torrent bytes at `abs` from the plain files of a `-fileDir` torrent.
fn read_files(info: &Info, folder: &Path, abs: u64, buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0usize;
    for (i, f) in info.files.iter().enumerate() {
        if done == buf.len() {
            break;
        }
        let pos = abs + done as u64;
        if f.length == 0 || pos < f.offset || pos >= f.offset + f.length {
            continue;
        }
        let n = ((f.offset + f.length - pos) as usize).min(buf.len() - done);
        let rel = if info.is_multi_file() {
            info.safe_relative_path(i)
        } else {
            Some(PathBuf::from(sanitize(&info.name)))
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unsafe file name in torrent"))?;
        let file = std::fs::File::open(folder.join(rel))?;
        file.read_exact_at(&mut buf[done..done + n], pos - f.offset)?;
        done += n;
    }
    if done != buf.len() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "read past the torrent's files",
        ));
    }
    Ok(())
}

/// A torrent name as one safe path component.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    match s.as_str() {
        "" | "." | ".." => "_".to_string(),
        _ => s,
    }
}
