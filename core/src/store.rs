//! The metainfo store: `torrents/<infohash>.torrent` under the data dir.
//!
//! A torrent's metainfo outlives the torrent in the session and the process, so a torrent that
//! was ever resolved never waits for metadata from peers again and `/info` answers at once.

use std::{
    io,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    time::SystemTime,
};

use parking_lot::Mutex;

use crate::{
    ident::InfoHash,
    metainfo::{build_torrent, parse_metainfo, Metainfo},
};

/// Reads and writes `<dir>/<hex>.torrent` files, at most `max` of them (0: no limit). A file's
/// mtime is its last use (set by `load` and `save`), so the least recently used is evicted
/// first.
pub struct MetaStore {
    dir: PathBuf,
    max: usize,
    /// Files in `dir`; changed under `lock`.
    count: AtomicUsize,
    lock: Mutex<()>,
}

/// Why a metainfo was not stored: the store holds `max` entries and none may be evicted.
pub(crate) fn store_full(max: usize) -> io::Error {
    io::Error::other(format!(
        "metainfo store full: {max} torrents (-maxStoredMetainfo), all in use or with cached pieces"
    ))
}

impl MetaStore {
    pub fn open(dir: &Path, max: usize) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut store = Self {
            dir: dir.to_owned(),
            max,
            count: AtomicUsize::new(0),
            lock: Mutex::new(()),
        };
        *store.count.get_mut() = store.list().len();
        Ok(store)
    }

    fn path(&self, ih: &InfoHash) -> PathBuf {
        self.dir.join(format!("{ih}.torrent"))
    }

    pub fn contains(&self, ih: &InfoHash) -> bool {
        self.path(ih).is_file()
    }

    /// The stored metainfo, if any; an unreadable or corrupt file counts as absent (and is
    /// logged), so a request falls back to asking peers. Marks it used.
    pub fn load(&self, ih: &InfoHash) -> Option<Metainfo> {
        let m = self.read(ih)?;
        let touched = std::fs::File::options()
            .write(true)
            .open(self.path(ih))
            .and_then(|f| f.set_modified(SystemTime::now()));
        if let Err(e) = touched {
            tracing::debug!(%ih, "cannot mark stored metainfo used: {e}");
        }
        Some(m)
    }

    fn read(&self, ih: &InfoHash) -> Option<Metainfo> {
        let bytes = match std::fs::read(self.path(ih)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(%ih, "cannot read stored metainfo: {e}");
                return None;
            }
        };
        match parse_metainfo(&bytes) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(%ih, "ignoring corrupt stored metainfo: {e}");
                None
            }
        }
    }

    /// Writes atomically (tmp + rename): a crash never leaves a truncated file. A new entry
    /// beyond the bound first evicts the least recently used one that `keep` does not hold on
    /// to, or fails with [`store_full`].
    pub fn save(
        &self,
        ih: &InfoHash,
        m: &Metainfo,
        keep: impl Fn(&InfoHash, &Metainfo) -> bool,
    ) -> io::Result<()> {
        let _g = self.lock.lock();
        let path = self.path(ih);
        let new = !path.exists();
        if new && self.max > 0 && self.count.load(Ordering::SeqCst) >= self.max {
            self.evict_one(ih, &keep)?;
        }
        let tmp = path.with_extension("torrent.tmp");
        std::fs::write(&tmp, build_torrent(m))?;
        std::fs::rename(&tmp, &path)?;
        if new {
            self.count.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Removes the least recently used entry other than `except` that `keep` lets go.
    fn evict_one(
        &self,
        except: &InfoHash,
        keep: &impl Fn(&InfoHash, &Metainfo) -> bool,
    ) -> io::Result<()> {
        let mut by_use: Vec<(SystemTime, InfoHash)> = self
            .list()
            .into_iter()
            .filter(|ih| ih != except)
            .filter_map(|ih| {
                let used = std::fs::metadata(self.path(&ih)).ok()?.modified().ok()?;
                Some((used, ih))
            })
            .collect();
        by_use.sort();
        for (_, ih) in by_use {
            let held = self.read(&ih).is_some_and(|m| keep(&ih, &m));
            if held {
                continue;
            }
            match std::fs::remove_file(self.path(&ih)) {
                Ok(()) => {
                    self.count.fetch_sub(1, Ordering::SeqCst);
                    tracing::info!(%ih, "metainfo evicted from the store (-maxStoredMetainfo)");
                    return Ok(());
                }
                Err(e) => tracing::warn!(%ih, "cannot evict stored metainfo: {e}"),
            }
        }
        Err(store_full(self.max))
    }

    /// Every infohash with a stored metainfo.
    pub fn list(&self) -> Vec<InfoHash> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<InfoHash> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name();
                let hex = name.to_str()?.strip_suffix(".torrent")?;
                crate::ident::parse_hex(hex).ok()
            })
            .collect();
        out.sort();
        out
    }
}
