//! The piece index: which verified pieces are on disk, and which of them may be evicted.
//!
//! Verified pieces live in one sparse data file per torrent (see `disk`). A moka cache, weighted
//! by bytes and LRU-ordered, decides which of them stay: its eviction listener punches the
//! piece's bytes out of the file.
//!
//! Pieces that an open reader is about to read (they lie in its lookahead window) are *pinned*:
//! they stay out of moka until every window has moved past them, so a cache smaller than the
//! lookahead cannot evict data before it is read. Disk use is therefore bounded by
//! `capacity + pinned bytes`, and pinned bytes by the windows of the open readers.
//!
//! A piece downloaded into memory (see `membuf`) is written to its file by the writer thread
//! (`writer`), and enters the index once it is on disk.

mod disk;
mod pins;
mod writer;

use pins::Pins;

use std::{
    collections::HashMap,
    fs::File,
    io,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use moka::{notification::RemovalCause, policy::EvictionPolicy, sync::Cache};
use parking_lot::Mutex;
use tracing::{debug, info, warn};

use crate::{
    membuf::{PieceBuf, PieceBuffers, BUDGET},
    spare::SpareFiles,
};

/// A torrent's v1 infohash, as raw bytes (the cache does not need anything richer).
pub type Ih = [u8; 20];

/// Identifies one piece of one torrent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Key {
    pub ih: Ih,
    pub piece: u32,
}

/// A verified piece on disk: where it is in its torrent's data file.
#[derive(Debug)]
struct Slot {
    offset: u64,
    len: u64,
    /// Set when the piece leaves the cache, before its bytes are punched out.
    dropped: AtomicBool,
}

impl Slot {
    fn new(offset: u64, len: u64) -> Arc<Self> {
        Arc::new(Self {
            offset,
            len,
            dropped: AtomicBool::new(false),
        })
    }
}

/// What the cache tells its owner about (for `/events`, `/status` and staleness checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheEvent {
    /// A verified piece was stored.
    Stored(Key),
    /// A piece left the cache (its file is deleted).
    Evicted(Key),
}

pub type EventSink = Arc<dyn Fn(CacheEvent) + Send + Sync>;

/// Counters shown by `/status` and `/metrics`.
#[derive(Default, Debug)]
pub struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub evictions: AtomicU64,
    pub stored: AtomicU64,
}

/// A snapshot of cache use.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub capacity: Option<u64>,
    pub indexed_bytes: u64,
    pub indexed_pieces: u64,
    pub pinned_bytes: u64,
    pub pinned_pieces: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

/// The on-disk piece cache shared by every torrent (see the module doc).
pub struct PieceCache {
    disk: Arc<disk::Disk>,
    staging_root: PathBuf,
    capacity: Option<u64>,
    index: Cache<Key, Arc<Slot>>,
    pins: Mutex<HashMap<Ih, Pins>>,
    /// Pieces evicted since the torrent was last (re-)added: librqbit may still claim them.
    evicted: Arc<Mutex<HashMap<Ih, std::collections::HashSet<u32>>>>,
    /// Pieces with chunks in staging (being downloaded), for `/fileState`'s `Partial`.
    partial: Mutex<HashMap<Ih, std::collections::BTreeSet<u32>>>,
    next_window: AtomicU64,
    counters: Arc<Counters>,
    events: EventSink,
    /// The last failed write of a piece being downloaded (a full disk), until a piece is stored
    /// again; and when it was last logged.
    write_error: Mutex<Option<WriteError>>,
    /// Empty files for pieces about to be downloaded, in `staging/spare`.
    spares: SpareFiles,
    /// Memory for pieces being downloaded and pieces not yet written (see `membuf`).
    buffers: Arc<PieceBuffers>,
    writer: writer::Writer,
}

/// See [`PieceCache::write_failed`].
struct WriteError {
    error: String,
    kind: io::ErrorKind,
    at: Instant,
    logged: Option<Instant>,
    unlogged: u64,
}

impl PieceCache {
    /// Opens (or creates) the cache under `dir`: verified pieces in `dir/pieces`, pieces being
    /// downloaded in `dir/staging` (wiped: a piece that was not verified before a crash is never
    /// trusted). The index is rebuilt from the logs found, oldest first, so that a smaller
    /// capacity than last time evicts the least recently written pieces.
    pub fn open(dir: &Path, capacity: Option<u64>, events: EventSink) -> io::Result<Arc<Self>> {
        let root = dir.join("pieces");
        let staging_root = dir.join("staging");
        std::fs::create_dir_all(&root)?;
        if staging_root.exists() {
            std::fs::remove_dir_all(&staging_root)?;
        }
        std::fs::create_dir_all(&staging_root)?;

        let disk = Arc::new(disk::Disk::new(root));
        let (writer, queue) = writer::Writer::new();
        let counters = Arc::new(Counters::default());
        let evicted: Arc<Mutex<HashMap<Ih, std::collections::HashSet<u32>>>> = Arc::default();
        let listener = {
            let (disk, writing) = (disk.clone(), writer.writing());
            let (counters, events, evicted) = (counters.clone(), events.clone(), evicted.clone());
            move |key: Arc<Key>, slot: Arc<Slot>, cause| {
                debug!(piece = key.piece, ?cause, "piece evicted");
                if cause == RemovalCause::Replaced {
                    // The new copy is at the same place and its bytes are the same verified
                    // piece: a reader holding the old slot may go on reading.
                    return;
                }
                slot.dropped.store(true, Ordering::SeqCst);
                {
                    // A copy being written now is at the same place: leave its bytes be.
                    let _layout = disk.layout.lock();
                    if !writing.lock().contains_key(&key) {
                        if let Err(e) = disk.punch(&key.ih, key.piece, slot.offset, slot.len) {
                            // E.g. a file system without hole punching: said once, not per piece.
                            static SAID: AtomicBool = AtomicBool::new(false);
                            if !SAID.swap(true, Ordering::Relaxed) {
                                warn!("cannot free evicted pieces, disk use may exceed the capacity: {e}");
                            }
                        }
                    }
                }
                evicted.lock().entry(key.ih).or_default().insert(key.piece);
                counters.evictions.fetch_add(1, Ordering::Relaxed);
                events(CacheEvent::Evicted(*key));
            }
        };
        let index = Cache::builder()
            .max_capacity(capacity.unwrap_or(u64::MAX))
            .weigher(|_k: &Key, v: &Arc<Slot>| u32::try_from(v.len).unwrap_or(u32::MAX))
            .eviction_policy(EvictionPolicy::lru())
            .eviction_listener(listener)
            .build();

        let cache = Arc::new(Self {
            disk,
            capacity,
            index,
            pins: Mutex::new(HashMap::new()),
            partial: Mutex::new(HashMap::new()),
            evicted,
            next_window: AtomicU64::new(0),
            counters,
            events,
            write_error: Mutex::new(None),
            spares: SpareFiles::start(&staging_root.join("spare"))?,
            staging_root,
            buffers: PieceBuffers::new(BUDGET),
            writer,
        });
        writer::spawn(Arc::downgrade(&cache), queue)?;
        cache.rescan()?;
        Ok(cache)
    }

    /// Rebuilds the index from disk at start-up.
    fn rescan(&self) -> io::Result<()> {
        let mut found = self.disk.scan()?;
        found.sort_by_key(|f| f.time);
        let (n, bytes) = (found.len(), found.iter().map(|f| f.len).sum::<u64>());
        for f in found {
            self.index.insert(f.key, Slot::new(f.offset, f.len));
        }
        self.index.run_pending_tasks();
        info!(pieces = n, bytes, "piece cache index rebuilt");
        Ok(())
    }

    pub fn staging_root(&self) -> &Path {
        &self.staging_root
    }

    /// An empty file, already created, to stage a piece being downloaded in (see `spare`).
    pub fn spare_file(&self) -> io::Result<(PathBuf, File)> {
        self.spares.take()
    }

    /// Memory for a piece of `len` bytes about to be downloaded, if the budget has room.
    pub fn piece_buffer(&self, len: usize) -> Option<PieceBuf> {
        self.buffers.take(len)
    }

    /// Stores a verified piece staged in a file, which is then deleted: its bytes go to `offset`
    /// of the torrent's data file. Pinned if a reader's window covers it, otherwise indexed
    /// (which may evict older pieces).
    pub fn store(&self, key: Key, offset: u64, staged: &Path, len: u64) -> io::Result<()> {
        let res = File::open(staged).and_then(|src| {
            self.put_now(key, offset, len, |disk| {
                disk.copy_from(&key.ih, offset, &src, len)
            })
        });
        let _ = std::fs::remove_file(staged);
        res
    }

    /// Stores the verified piece `bytes` at `offset` of the torrent's data file, now (blocking):
    /// for pieces that are not being downloaded, such as an upload's.
    pub fn store_slice(&self, key: Key, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.put_now(key, offset, bytes.len() as u64, |disk| {
            disk.write(&key.ih, offset, bytes)
        })
    }

    /// [`put`](Self::put) on the caller's thread, registered as being written meanwhile.
    fn put_now(
        &self,
        key: Key,
        offset: u64,
        len: u64,
        write: impl FnOnce(&disk::Disk) -> io::Result<()>,
    ) -> io::Result<()> {
        self.writer.begin(key);
        let res = self.put(key, offset, len, write);
        self.writer.finished(key);
        res
    }

    /// Writes a verified piece with `write` (under the layout lock), logs it, and admits it.
    /// The caller has registered the key as being written (see `writer`).
    fn put(
        &self,
        key: Key,
        offset: u64,
        len: u64,
        write: impl FnOnce(&disk::Disk) -> io::Result<()>,
    ) -> io::Result<()> {
        {
            let _layout = self.disk.layout.lock();
            write(&self.disk)?;
            self.disk.log_added(key, offset, len)?;
        }
        let file = Slot::new(offset, len);
        {
            // The pins and the index change together, under the pins lock: a window moving past
            // the piece meanwhile (`pins`) must not see it half-way, or the index could lose
            // this copy or keep an older one.
            let mut pins = self.pins.lock();
            match pins.get_mut(&key.ih).filter(|p| p.in_window(key.piece)) {
                Some(p) => {
                    debug!(piece = key.piece, "piece stored, pinned");
                    p.pinned.insert(key.piece, file);
                    // An older copy in the index must not outlive this one (its eviction would
                    // punch this one's bytes); the key is still registered as being written, so
                    // removing it punches nothing.
                    self.index.invalidate(&key);
                }
                None => {
                    debug!(piece = key.piece, "piece stored");
                    self.index.insert(key, file);
                }
            }
        }
        self.index.run_pending_tasks();
        if let Some(set) = self.evicted.lock().get_mut(&key.ih) {
            set.remove(&key.piece);
        }
        if let Some(e) = self.write_error.lock().take() {
            info!(
                "downloaded data is stored again (last failure: {})",
                e.error
            );
        }
        self.counters.stored.fetch_add(1, Ordering::Relaxed);
        (self.events)(CacheEvent::Stored(key));
        Ok(())
    }

    /// Records a failed write into staging (a piece being downloaded), e.g. a full disk. It is
    /// logged at once, then once every 10 s with the number of failures, not once per chunk.
    pub fn write_failed(&self, piece: u32, e: &io::Error) {
        let now = Instant::now();
        let mut slot = self.write_error.lock();
        let w = slot.get_or_insert_with(|| WriteError {
            error: String::new(),
            kind: e.kind(),
            at: now,
            logged: None,
            unlogged: 0,
        });
        (w.error, w.kind, w.at) = (e.to_string(), e.kind(), now);
        w.unlogged += 1;
        if w.logged
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
        {
            warn!(
                piece,
                failed_writes = w.unlogged,
                "cannot store downloaded data: {e}"
            );
            (w.logged, w.unlogged) = (Some(now), 0);
        }
    }

    /// The last failed write of downloaded data, if it happened within `within` and no piece
    /// was stored since: a reader waiting for a piece then gives up with this error instead of
    /// waiting for ever.
    pub fn recent_write_error(&self, within: Duration) -> Option<io::Error> {
        let slot = self.write_error.lock();
        let w = slot.as_ref().filter(|w| w.at.elapsed() <= within)?;
        Some(io::Error::new(
            w.kind,
            format!("cannot store downloaded data: {}", w.error),
        ))
    }

    /// Whether the piece was evicted since [`PieceCache::reset_evicted`] for its torrent (and not
    /// stored again): a live torrent that claims it is stale.
    pub fn was_evicted(&self, key: Key) -> bool {
        self.evicted
            .lock()
            .get(&key.ih)
            .is_some_and(|s| s.contains(&key.piece))
    }

    /// Forgets a torrent's evictions (it is being (re-)added with a bitfield from the cache, or
    /// leaves the session).
    pub fn reset_evicted(&self, ih: Ih) {
        self.evicted.lock().remove(&ih);
    }

    /// Records whether a piece has chunks in staging.
    pub fn set_partial(&self, key: Key, partial: bool) {
        let mut map = self.partial.lock();
        if partial {
            map.entry(key.ih).or_default().insert(key.piece);
        } else if let Some(set) = map.get_mut(&key.ih) {
            set.remove(&key.piece);
            if set.is_empty() {
                map.remove(&key.ih);
            }
        }
    }

    /// Pieces of a torrent with chunks in staging.
    pub fn partial_pieces(&self, ih: Ih) -> Vec<u32> {
        self.partial
            .lock()
            .get(&ih)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Whether the piece is on disk, without touching its recency.
    pub fn contains(&self, key: Key) -> bool {
        self.pins
            .lock()
            .get(&key.ih)
            .is_some_and(|p| p.pinned.contains_key(&key.piece))
            || self.index.contains_key(&key)
    }

    /// Which of a torrent's pieces are on disk (for the fastresume bitfield).
    pub fn have_pieces(&self, ih: Ih, num_pieces: u32) -> Vec<bool> {
        (0..num_pieces)
            .map(|piece| self.contains(Key { ih, piece }))
            .collect()
    }

    fn lookup(&self, key: Key) -> Option<Arc<Slot>> {
        if let Some(f) = self
            .pins
            .lock()
            .get(&key.ih)
            .and_then(|p| p.pinned.get(&key.piece).cloned())
        {
            return Some(f);
        }
        self.index.get(&key)
    }

    /// Reads `buf.len()` bytes at `offset` within a cached piece. `Ok(false)` means the piece is
    /// not (or no longer) cached. `count` says whether this is a client read (for the hit ratio).
    pub fn read(&self, key: Key, offset: u64, buf: &mut [u8], count: bool) -> io::Result<bool> {
        let hit = match self.lookup(key) {
            Some(slot) => {
                if offset.saturating_add(buf.len() as u64) > slot.len {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "read past the end of a piece",
                    ));
                }
                self.disk.read(&key.ih, slot.offset + offset, buf, || {
                    slot.dropped.load(Ordering::SeqCst)
                })?
            }
            None => false,
        };
        if count {
            let c = if hit {
                &self.counters.hits
            } else {
                &self.counters.misses
            };
            c.fetch_add(1, Ordering::Relaxed);
        }
        Ok(hit)
    }

    pub fn usage(&self) -> Usage {
        self.index.run_pending_tasks();
        let (pinned_pieces, pinned_bytes) = self
            .pins
            .lock()
            .values()
            .flat_map(|p| p.pinned.values())
            .fold((0, 0), |(n, b), f| (n + 1, b + f.len));
        Usage {
            capacity: self.capacity,
            indexed_bytes: self.index.weighted_size(),
            indexed_pieces: self.index.entry_count(),
            pinned_bytes,
            pinned_pieces,
            hits: self.counters.hits.load(Ordering::Relaxed),
            misses: self.counters.misses.load(Ordering::Relaxed),
            evictions: self.counters.evictions.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests;
