//! "Give me these bytes, waiting until they exist": the read path shared by HTTP and FUSE.
//!
//! A [`Reader`] reads one file of a torrent (or the whole torrent) at arbitrary offsets. Cached
//! pieces are read straight from the cache. For a missing piece it makes sure the torrent is
//! live, points its own librqbit `FileStream` at the position (librqbit downloads a 32 MiB window
//! ahead of every open stream, and nothing else), and waits for the piece to be verified. The
//! stream is only a priority cursor: bytes are never read through it, so a piece evicted from the
//! cache cannot surface as a librqbit read error. If librqbit claims a piece the cache no longer
//! has, the torrent is re-added with a bitfield from the cache (a repair).
//!
//! The pieces ahead of the reader, inside that window, are pinned in the cache until the reader
//! passes them, so even a cache smaller than the window never evicts data before it is read.

use std::{
    io::{self, SeekFrom},
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use bytes::Bytes;
use tokio::{io::AsyncSeekExt, sync::broadcast};
use tracing::debug;

use crate::{
    backend::librqbit_has,
    engine::{Engine, Inner, PieceEvent, PieceEventKind},
    metainfo::Info,
    torrent::{Live, Stream, TorrentRef},
};

/// How long a reader waits without any progress of its torrent before it suspects sleeping
/// peers. Longer than a reconnect (peers dropped as "not needed" come back when a stream opens,
/// and a seeder may take most of a second to send its bitfield), shorter than librqbit's 5 s
/// idle sleep.
const STALL: Duration = Duration::from_millis(2000);

/// librqbit's hard-coded per-stream lookahead.
pub const STREAM_WINDOW: u64 = 32 * 1024 * 1024;

/// What a reader reads: one file, or all files concatenated in torrent order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    File(usize),
    All,
}

/// The librqbit stream that steers downloads toward this reader.
struct Cursor {
    generation: u64,
    file: usize,
    pos: u64,
    stream: Stream,
}

/// Reads bytes of one selection of a torrent, blocking until they are verified (see the module
/// doc). Holds a reference on the torrent for its whole life.
pub struct Reader {
    engine: Arc<Inner>,
    torrent: TorrentRef,
    info: Arc<Info>,
    start: u64,
    len: u64,
    window: Option<u64>,
    cursor: Option<Cursor>,
}

/// An I/O error with `e`'s whole chain of causes (`{:#}`: an anyhow error's `to_string` is
/// only its outermost context, e.g. "adding the torrent to the session"). Its kind is
/// `StorageFull` when any cause is a full disk (front doors pick 507/ENOSPC by kind), else
/// `Other`.
fn other(e: impl Into<anyhow::Error>) -> io::Error {
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

/// Whether an I/O error says the disk is full (by kind or errno, never by text).
pub fn is_storage_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(libc::ENOSPC)
}

impl Engine {
    /// A reader over `sel` of a torrent whose info is known.
    pub fn reader(&self, torrent: TorrentRef, info: Arc<Info>, sel: Selection) -> Reader {
        let (start, len) = match sel {
            Selection::File(i) => info.files.get(i).map_or((0, 0), |f| (f.offset, f.length)),
            Selection::All => (0, info.total_length),
        };
        let window = self
            .inner
            .storage
            .cache()
            .map(|c| c.open_window(torrent.ih.0));
        self.inner
            .stats
            .open_readers
            .fetch_add(1, Ordering::Relaxed);
        Reader {
            engine: self.inner.clone(),
            torrent,
            info,
            start,
            len,
            window,
            cursor: None,
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(c) = self.cursor.take() {
            self.torrent.park(c.generation, c.file, c.stream);
        }
        if let (Some(c), Some(w)) = (self.engine.storage.cache(), self.window) {
            c.close_window(self.torrent.ih.0, w);
        }
        self.engine
            .stats
            .open_readers
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Reader {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn info(&self) -> &Arc<Info> {
        &self.info
    }

    pub fn torrent(&self) -> &TorrentRef {
        &self.torrent
    }

    /// Reads up to `max` bytes at `offset` (relative to the selection), never crossing a piece
    /// boundary; empty at or past the end. Waits as long as it takes: cancel by dropping.
    pub async fn read(&mut self, offset: u64, max: usize) -> io::Result<Bytes> {
        if offset >= self.len || max == 0 {
            return Ok(Bytes::new());
        }
        let abs = self.start + offset;
        let pl = self.info.piece_length;
        let piece = u32::try_from(abs / pl).map_err(other)?;
        let in_piece = abs % pl;
        let n = (pl - in_piece).min(self.len - offset).min(max as u64) as usize;
        self.move_window(abs);
        let mut buf = crate::chunk::buffer(n);
        if self.read_now(piece, in_piece, &mut buf).await? {
            self.follow(abs).await;
            return self.served(buf);
        }
        let mut events = self.engine.events.subscribe();
        let _ = self.engine.events.send(PieceEvent {
            ih: self.torrent.ih,
            piece,
            kind: PieceEventKind::Wanted,
        });
        let file = self
            .file_at(abs)
            .ok_or_else(|| other(anyhow::anyhow!("offset outside the torrent's files")))?;
        let pos = abs - self.info.files[file].offset;
        loop {
            if self.read_now(piece, in_piece, &mut buf).await? {
                return self.served(buf);
            }
            let (mut live, primed) = self
                .torrent
                .live_for(file, pos, None)
                .await
                .map_err(other)?;
            self.adopt(&live, file, pos, primed);
            if self.engine.storage.cache().is_some()
                && librqbit_has(&live.handle, &self.engine.api, piece)
            {
                // librqbit sets its have bit just before it hands the piece to the cache, whose
                // writer thread may take a while to store it: unless the cache evicted it, give
                // that time before deciding the claim is stale.
                let cache = self.engine.storage.cache().expect("checked above");
                let key = confluence_cache::Key {
                    ih: self.torrent.ih.0,
                    piece,
                };
                if !cache.was_evicted(key) {
                    loop {
                        let writing = cache.is_writing(key);
                        wait_piece(
                            &mut events,
                            &self.torrent,
                            piece,
                            Duration::from_millis(300),
                        )
                        .await;
                        if self.read_now(piece, in_piece, &mut buf).await? {
                            return self.served(buf);
                        }
                        if !writing {
                            break;
                        }
                    }
                }
                if librqbit_has(&live.handle, &self.engine.api, piece) {
                    debug!(ih = %self.torrent.ih, piece, "librqbit claims a piece the cache lacks");
                    self.engine.stats.repairs.fetch_add(1, Ordering::Relaxed);
                    let (l, primed) = self
                        .torrent
                        .live_for(
                            file,
                            pos,
                            Some((live.generation, "the cache dropped pieces librqbit claims")),
                        )
                        .await
                        .map_err(other)?;
                    self.adopt(&l, file, pos, primed);
                    live = l;
                }
            }
            let jumped = match self.steer(&live, abs).await {
                Ok(jumped) => jumped,
                // Another reader re-added the torrent after `live_for` answered, and librqbit
                // dropped the handle of this generation: start over on the new one.
                Err(_)
                    if self
                        .torrent
                        .live_now()
                        .is_none_or(|l| l.generation != live.generation) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            let idle = jumped && self.torrent.peers_idle(&live);
            let fetched = live.fetched();
            let progress = idle || wait_piece(&mut events, &self.torrent, piece, STALL).await;
            let stalled = idle || (!progress && !self.read_now(piece, in_piece, &mut buf).await?);
            if let Some(e) = self
                .engine
                .storage
                .cache()
                .filter(|_| stalled)
                .and_then(|c| c.recent_write_error(STALL))
            {
                // Downloaded data cannot be stored (a full disk): fail with the reason instead
                // of waiting for a piece that cannot arrive.
                return Err(e);
            }
            // Blocks arriving mean the peers are awake: with slow peers no piece may complete
            // within STALL, and re-adding then would drop every connection and partial piece,
            // again and again.
            let asleep = idle || (stalled && live.fetched() == fetched);
            if asleep && self.torrent.may_kick(live.generation) {
                // Nothing at all arrived: librqbit's peers are probably asleep (a peer that
                // found nothing to request sleeps 5 s, and a new stream does not wake it).
                // Re-adding reconnects them with this reader's window already in place.
                debug!(ih = %self.torrent.ih, piece, "no progress; reconnecting peers");
                self.engine.stats.kicks.fetch_add(1, Ordering::Relaxed);
                let (l, primed) = self
                    .torrent
                    .live_for(
                        file,
                        pos,
                        Some((live.generation, "no progress: waking idle peers")),
                    )
                    .await
                    .map_err(other)?;
                self.adopt(&l, file, pos, primed);
            }
        }
    }

    /// Keeps the stream a (re-)add opened for this reader.
    fn adopt(&mut self, live: &Live, file: usize, pos: u64, primed: Option<Stream>) {
        if let Some(stream) = primed {
            self.cursor = Some(Cursor {
                generation: live.generation,
                file,
                pos,
                stream,
            });
        }
    }

    fn served(&self, buf: Vec<u8>) -> io::Result<Bytes> {
        self.engine
            .stats
            .bytes_served
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(crate::chunk::into_bytes(buf))
    }

    /// Fills `buf` from the stored piece, if it is there. The file read runs on a blocking
    /// thread: the engine's runtime has one thread, which every peer connection shares, and a
    /// read from a slow disk must not stall them.
    /// (The future holds no `&self`: a `Reader` is not `Sync`.)
    fn read_now<'a>(
        &self,
        piece: u32,
        in_piece: u64,
        buf: &'a mut Vec<u8>,
    ) -> impl std::future::Future<Output = io::Result<bool>> + Send + 'a {
        let engine = self.engine.clone();
        let info = self.info.clone();
        let live = self.torrent.live_now();
        async move {
            let mut owned = std::mem::take(buf);
            let (hit, owned) = tokio::task::spawn_blocking(move || {
                let ctx = live.as_ref().map(|l| (l.handle.clone(), &engine.api));
                let hit = engine
                    .storage
                    .read(&info, ctx.as_ref(), piece, in_piece, &mut owned);
                (hit, owned)
            })
            .await
            .map_err(other)?;
            *buf = owned;
            hit
        }
    }

    /// Pins the pieces librqbit will fetch for this reader: from its position to the end of the
    /// stream window (clipped to the file the position is in, as librqbit clips it).
    fn move_window(&mut self, abs: u64) {
        let (Some(cache), Some(w)) = (self.engine.storage.cache(), self.window) else {
            return;
        };
        let pl = self.info.piece_length;
        let file_end = self.file_at(abs).map_or(self.start + self.len, |i| {
            let f = &self.info.files[i];
            f.offset + f.length
        });
        let end = abs.saturating_add(STREAM_WINDOW).min(file_end).max(abs + 1);
        let first = (abs / pl) as u32;
        let last = end.div_ceil(pl) as u32;
        cache.set_window(self.torrent.ih.0, w, first..last);
    }

    /// The index of the (non-empty) file containing torrent offset `abs`.
    fn file_at(&self, abs: u64) -> Option<usize> {
        self.info
            .files
            .iter()
            .position(|f| f.length > 0 && abs >= f.offset && abs < f.offset + f.length)
    }

    /// Keeps an existing stream at the reader's position after a cache hit, so the lookahead
    /// follows the reader.
    async fn follow(&mut self, abs: u64) {
        if let Some(file) = self.file_at(abs) {
            if let Some(c) = self.cursor.as_mut().filter(|c| c.file == file) {
                let pos = abs - self.info.files[file].offset;
                if c.pos != pos && c.stream.seek(SeekFrom::Start(pos)).await.is_ok() {
                    c.pos = pos;
                }
            }
        }
    }

    /// Points this reader's librqbit stream at `abs`, opening one on the live generation if
    /// needed.
    /// Returns whether the window jumped (a new stream, or a seek outside the old window):
    /// librqbit's peers may then be asleep.
    async fn steer(&mut self, live: &Live, abs: u64) -> io::Result<bool> {
        let file = self
            .file_at(abs)
            .ok_or_else(|| other(anyhow::anyhow!("offset outside the torrent's files")))?;
        let pos = abs - self.info.files[file].offset;
        let reuse = self
            .cursor
            .as_ref()
            .is_some_and(|c| c.generation == live.generation && c.file == file);
        let mut jumped = !reuse;
        if !reuse {
            if let Some(c) = self.cursor.take() {
                self.torrent.park(c.generation, c.file, c.stream);
            }
            let (stream, pos0) = match self.torrent.unpark(live.generation, file) {
                // Its position is unknown here: seek it in any case below.
                Some(s) => (s, u64::MAX),
                None => {
                    debug!(ih = %self.torrent.ih, file, pos, "opening a librqbit stream");
                    let s = live.handle.clone().stream(file).await.map_err(other)?;
                    (Box::new(s) as Stream, 0)
                }
            };
            self.cursor = Some(Cursor {
                generation: live.generation,
                file,
                pos: pos0,
                stream,
            });
        }
        let c = self.cursor.as_mut().expect("cursor was just set");
        if c.pos != pos {
            jumped |= pos < c.pos || pos >= c.pos.saturating_add(STREAM_WINDOW);
            c.stream.seek(SeekFrom::Start(pos)).await?;
            c.pos = pos;
        }
        Ok(jumped)
    }
}

/// Waits until `piece` of the torrent is reported complete, or `timeout` passes. Returns
/// whether the torrent made any progress (some piece of it completed) meanwhile.
async fn wait_piece(
    events: &mut broadcast::Receiver<PieceEvent>,
    torrent: &TorrentRef,
    piece: u32,
    timeout: Duration,
) -> bool {
    let mut progress = false;
    let wait = async {
        loop {
            match events.recv().await {
                Ok(e) if e.ih == torrent.ih && e.kind == PieceEventKind::Complete => {
                    progress = true;
                    if e.piece == piece {
                        return;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    progress = true;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    };
    let _ = tokio::time::timeout(timeout, wait).await;
    progress
}

/// One piece of a response body: literal bytes (e.g. a multipart header) or a range of the
/// reader's selection.
#[derive(Clone, Debug)]
pub enum BodyPart {
    Literal(Bytes),
    Range { start: u64, len: u64 },
}

/// The largest chunk handed to a front door at once.
pub const CHUNK: usize = 256 * 1024;

impl Engine {
    /// Streams `parts` through `reader` on the engine's runtime. Chunks arrive as soon as each
    /// piece is verified. Dropping the receiver, or `cancel` resolving (a client that went
    /// away), ends any wait at once and drops the reader, releasing its torrent reference.
    pub fn stream_body(
        &self,
        mut reader: Reader,
        parts: Vec<BodyPart>,
        cancel: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::sync::mpsc::Receiver<io::Result<Bytes>> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        self.inner.rt.spawn(async move {
            tokio::pin!(cancel);
            for part in parts {
                match part {
                    BodyPart::Literal(b) => {
                        if tx.send(Ok(b)).await.is_err() {
                            return;
                        }
                    }
                    BodyPart::Range { start, len } => {
                        let end = start.saturating_add(len);
                        let mut pos = start;
                        while pos < end {
                            let max = (end - pos).min(CHUNK as u64) as usize;
                            let chunk = tokio::select! {
                                r = reader.read(pos, max) => r,
                                _ = tx.closed() => return,
                                _ = &mut cancel => return,
                            };
                            let chunk = match chunk {
                                Ok(c) if c.is_empty() => {
                                    Err(other(anyhow::anyhow!("unexpected end of data")))
                                }
                                other => other,
                            };
                            let failed = chunk.is_err();
                            if let Ok(c) = &chunk {
                                pos += c.len() as u64;
                            }
                            if tx.send(chunk).await.is_err() || failed {
                                return;
                            }
                        }
                    }
                }
            }
        });
        rx
    }
}
