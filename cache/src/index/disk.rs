//! The cache on disk: one sparse data file per torrent, `<hex ih>.data`, with each verified piece
//! at its offset in the torrent, and a log, `<hex ih>.log`, of which pieces in it are verified.
//!
//! A file per piece cost an inode allocation, a rename and an unlink for every piece; on ext4
//! without a journal (this machine) allocation scans past every inode deleted in the last
//! minutes, ~0.3 ms per piece, more CPU than writing the piece. One file per torrent allocates
//! nothing per piece: a piece is a `pwrite` at its offset, an eviction punches a hole.
//!
//! The log is the truth about which bytes are verified: `+ piece offset len time` is appended
//! after the piece's bytes are written, `- piece` after its hole is punched. Bytes not covered
//! by a `+` line are never served, so a crash at any point loses at most pieces, never serves
//! a half-written one. At start-up each log is replayed, checked against its data file and
//! rewritten with the pieces still there; a running daemon does the same after every
//! [`COMPACT_EVERY`] lines appended to one log.

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::{fs::FileExt, io::AsRawFd},
    path::{Path, PathBuf},
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use moka::sync::Cache;
use parking_lot::{Mutex, RwLock};
use tracing::{info, warn};

use super::{Ih, Key};

/// Open files kept (two descriptors each); others are reopened when used.
const OPEN_TORRENTS: u64 = 64;

/// A log is compacted after this many lines were appended to it.
const COMPACT_EVERY: u32 = 4096;

/// One torrent's open files.
struct Files {
    data: File,
    log: File,
}

/// A piece found in a log at start-up.
pub(super) struct Found {
    pub key: Key,
    pub offset: u64,
    pub len: u64,
    /// When it was written (seconds since the epoch), for the recency order.
    pub time: u64,
}

/// The data and log files of every torrent (see the module doc).
pub(super) struct Disk {
    root: PathBuf,
    open: Cache<Ih, Arc<Files>>,
    /// Held shared by every read and exclusively by a punch, so that a read that found its
    /// piece live never sees its bytes turn to zeros under it.
    punching: RwLock<()>,
    /// Held by a piece write and by a punch: a punch never lands on a copy being written. Every
    /// log line is appended under it, so a compaction under it loses none.
    pub layout: Mutex<()>,
    /// Lines appended to each log since it was last compacted.
    appended: Mutex<std::collections::HashMap<Ih, u32>>,
}

impl Disk {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            open: Cache::new(OPEN_TORRENTS),
            punching: RwLock::new(()),
            layout: Mutex::new(()),
            appended: Mutex::default(),
        }
    }

    fn path(&self, ih: &Ih, ext: &str) -> PathBuf {
        self.root.join(format!("{}.{ext}", hex::encode(ih)))
    }

    fn files(&self, ih: &Ih) -> io::Result<Arc<Files>> {
        self.open
            .try_get_with(*ih, || {
                let data = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .read(true)
                    .write(true)
                    .open(self.path(ih, "data"))?;
                let log = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.path(ih, "log"))?;
                Ok(Arc::new(Files { data, log }))
            })
            .map_err(|e: Arc<io::Error>| io::Error::new(e.kind(), e.to_string()))
    }

    /// Writes a piece's bytes at its offset (call with `layout` held, then log it).
    pub fn write(&self, ih: &Ih, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.files(ih)?.data.write_all_at(bytes, offset)
    }

    /// Copies `len` bytes of `src` to `offset` (call with `layout` held, then log it).
    pub fn copy_from(&self, ih: &Ih, offset: u64, src: &File, len: u64) -> io::Result<()> {
        let files = self.files(ih)?;
        match copy_range(src, &files.data, offset, len) {
            // A file system or kernel without copy_file_range: through memory.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOSYS | libc::EXDEV | libc::EOPNOTSUPP | libc::EINVAL)
                ) =>
            {
                let mut buf = vec![0u8; len as usize];
                src.read_exact_at(&mut buf, 0)?;
                files.data.write_all_at(&buf, offset)
            }
            other => other,
        }
    }

    /// Reads at `offset` of a torrent's data file, unless `dropped` says the piece left the
    /// cache (checked under the lock that punches wait for).
    pub fn read(
        &self,
        ih: &Ih,
        offset: u64,
        buf: &mut [u8],
        dropped: impl FnOnce() -> bool,
    ) -> io::Result<bool> {
        let files = self.files(ih)?;
        let _live = self.punching.read();
        if dropped() {
            return Ok(false);
        }
        files.data.read_exact_at(buf, offset)?;
        Ok(true)
    }

    /// Frees a piece's bytes (call with `layout` held) and logs that it is gone.
    pub fn punch(&self, ih: &Ih, piece: u32, offset: u64, len: u64) -> io::Result<()> {
        let files = self.files(ih)?;
        {
            let _no_reads = self.punching.write();
            punch_hole(&files.data, offset, len)?;
        }
        self.append(ih, &format!("- {piece}\n"))
    }

    /// Records that a piece's bytes are written and verified.
    pub fn log_added(&self, key: Key, offset: u64, len: u64) -> io::Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.append(&key.ih, &format!("+ {} {offset} {len} {now}\n", key.piece))
    }

    /// Appends a line to a torrent's log (call with `layout` held), compacting the log now and
    /// then: a long-running cache that keeps evicting would otherwise grow it for ever.
    fn append(&self, ih: &Ih, line: &str) -> io::Result<()> {
        (&self.files(ih)?.log).write_all(line.as_bytes())?;
        let due = {
            let mut appended = self.appended.lock();
            let n = appended.entry(*ih).or_default();
            *n += 1;
            *n >= COMPACT_EVERY && {
                appended.remove(ih);
                true
            }
        };
        if due {
            // The log is replaced by a new file: the next line goes to that one.
            let res = self.replay(ih);
            self.open.invalidate(ih);
            res?;
        }
        Ok(())
    }

    /// Replays every log (see the module doc): returns the pieces on disk, and rewrites each log
    /// with just them. Files that are not a torrent's data or log are removed, as are the
    /// directories of the earlier one-file-per-piece layout.
    pub fn scan(&self) -> io::Result<Vec<Found>> {
        let (mut logs, mut data) = (Vec::new(), Vec::new());
        for e in std::fs::read_dir(&self.root)? {
            let e = e?;
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let parsed = name.split_once('.').and_then(|(stem, ext)| {
                let mut ih = [0u8; 20];
                hex::decode_to_slice(stem, &mut ih).ok()?;
                Some((ih, ext.to_string()))
            });
            match parsed {
                Some((ih, ext)) if ext == "log" && e.file_type()?.is_file() => logs.push(ih),
                Some((ih, ext)) if ext == "data" && e.file_type()?.is_file() => data.push(ih),
                _ if e.file_type()?.is_dir() => {
                    info!(dir = ?path, "removing a piece directory of the old cache layout");
                    let _ = std::fs::remove_dir_all(&path);
                }
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        // Data files without a log hold nothing verified.
        for ih in data.iter().filter(|ih| !logs.contains(ih)) {
            let _ = std::fs::remove_file(self.path(ih, "data"));
        }
        let mut found = Vec::new();
        for ih in logs {
            let pieces = self.replay(&ih)?;
            if pieces.is_empty() {
                let _ = std::fs::remove_file(self.path(&ih, "log"));
                let _ = std::fs::remove_file(self.path(&ih, "data"));
                continue;
            }
            found.extend(pieces);
        }
        Ok(found)
    }

    /// One torrent's log: the pieces it says are there and its data file holds, in log order;
    /// the log is rewritten with just them, and bytes of the data file no piece covers are
    /// freed. With the daemon running, call with `layout` held.
    fn replay(&self, ih: &Ih) -> io::Result<Vec<Found>> {
        let log_path = self.path(ih, "log");
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let data_len = std::fs::metadata(self.path(ih, "data")).map_or(0, |m| m.len());
        // piece -> (position in the log, found)
        let mut live: BTreeMap<u32, (usize, Found)> = BTreeMap::new();
        for (at, line) in text.lines().enumerate() {
            let mut f = line.split(' ');
            match (f.next(), f.next().and_then(|p| p.parse::<u32>().ok())) {
                (Some("+"), Some(piece)) => {
                    let mut num = || f.next().and_then(|n| n.parse::<u64>().ok());
                    if let (Some(offset), Some(len), Some(time)) = (num(), num(), num()) {
                        let key = Key { ih: *ih, piece };
                        let found = Found {
                            key,
                            offset,
                            len,
                            time,
                        };
                        live.insert(piece, (at, found));
                    }
                }
                (Some("-"), Some(piece)) => {
                    live.remove(&piece);
                }
                // A torn last line (a crash while appending): ignored.
                _ => {}
            }
        }
        let mut pieces: Vec<(usize, Found)> = live
            .into_values()
            .filter(|(_, f)| {
                f.offset
                    .checked_add(f.len)
                    .is_some_and(|end| end <= data_len)
            })
            .collect();
        pieces.sort_by_key(|(at, _)| *at);
        let pieces: Vec<Found> = pieces.into_iter().map(|(_, f)| f).collect();
        rewrite(&log_path, &pieces)?;
        if !pieces.is_empty() {
            // Bytes no line covers (a crash between a write and its log line, a write that
            // failed half-way) are freed.
            let mut spans: Vec<(u64, u64)> = pieces.iter().map(|f| (f.offset, f.len)).collect();
            spans.sort_unstable();
            let data = OpenOptions::new().write(true).open(self.path(ih, "data"))?;
            let mut at = 0;
            for (offset, len) in spans.into_iter().chain([(data_len, 0)]) {
                if offset > at {
                    let _ = punch_hole(&data, at, offset - at);
                }
                at = at.max(offset + len);
            }
        }
        Ok(pieces)
    }
}

/// Copies the first `len` bytes of `src` to `offset` of `dst` in the kernel.
fn copy_range(src: &File, dst: &File, offset: u64, len: u64) -> io::Result<()> {
    let (mut from, mut to, mut left) = (0i64, offset as i64, len as usize);
    while left > 0 {
        // SAFETY: both descriptors are open for the call; the offsets are ours.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut from,
                dst.as_raw_fd(),
                &mut to,
                left,
                0,
            )
        };
        match n {
            n if n > 0 => left -= n as usize,
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            _ => return Err(io::Error::last_os_error()),
        }
    }
    Ok(())
}

/// Frees `len` bytes at `offset` of `file`, keeping its size.
fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: the descriptor is open for the call.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Replaces a log with the lines of `pieces` (written aside, then renamed over it).
fn rewrite(log_path: &Path, pieces: &[Found]) -> io::Result<()> {
    let tmp = log_path.with_extension("log.tmp");
    let mut text = String::with_capacity(pieces.len() * 32);
    for f in pieces {
        text.push_str(&format!(
            "+ {} {} {} {}\n",
            f.key.piece, f.offset, f.len, f.time
        ));
    }
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, log_path).inspect_err(|e| {
        warn!(path = ?log_path, "cannot rewrite the piece log: {e}");
    })
}
