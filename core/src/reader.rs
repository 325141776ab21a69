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
    io,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use bytes::Bytes;
use tokio::sync::broadcast;
use tracing::debug;

use crate::{
    backend::{io_error, librqbit_has},
    cursor::{Spot, Steering, STREAM_WINDOW},
    engine::Engine,
    events::{PieceEvent, PieceEventKind},
    ident::InfoHash,
    metainfo::Info,
    registry::TorrentRef,
    swarm::Swarm,
    torrent::Live,
};

/// How long a reader waits without any progress of its torrent before it suspects sleeping
/// peers. Longer than a reconnect (peers dropped as "not needed" come back when a stream opens,
/// and a seeder may take most of a second to send its bitfield), shorter than librqbit's 5 s
/// idle sleep.
const STALL: Duration = Duration::from_millis(2000);

/// What a reader reads: one file, or all files concatenated in torrent order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    File(usize),
    All,
}

/// A read within one piece: where it starts and the buffer it fills.
struct Want {
    /// The torrent offset of its first byte.
    abs: u64,
    piece: u32,
    in_piece: u64,
    buf: Vec<u8>,
}

/// Reads bytes of one selection of a torrent, blocking until they are verified (see the module
/// doc). Holds a reference on the torrent for its whole life.
pub struct Reader {
    swarm: Arc<Swarm>,
    torrent: TorrentRef,
    info: Arc<Info>,
    start: u64,
    len: u64,
    window: Option<u64>,
    steering: Steering,
}

impl Engine {
    /// A reader over `sel` of a torrent whose info is known.
    pub fn reader(&self, torrent: TorrentRef, info: Arc<Info>, sel: Selection) -> Reader {
        let (start, len) = match sel {
            Selection::File(i) => info.files.get(i).map_or((0, 0), |f| (f.offset, f.length)),
            Selection::All => (0, info.total_length),
        };
        let swarm = self.inner.swarm.clone();
        let window = swarm.storage.cache().map(|c| c.open_window(torrent.ih.0));
        swarm.stats.open_readers.fetch_add(1, Ordering::Relaxed);
        Reader {
            swarm,
            torrent,
            info,
            start,
            len,
            window,
            steering: Steering::default(),
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.steering.park(&self.torrent);
        if let (Some(c), Some(w)) = (self.swarm.storage.cache(), self.window) {
            c.close_window(self.torrent.ih.0, w);
        }
        self.swarm
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
    ///
    /// The steps: a cached read; else announce the want and, until the piece is there, make
    /// sure the torrent is live, settle a stale claim of librqbit's, steer this reader's stream
    /// to the position, and wait for the piece, kicking sleeping peers when nothing arrives.
    pub async fn read(&mut self, offset: u64, max: usize) -> io::Result<Bytes> {
        let Some(mut want) = self.want(offset, max)? else {
            return Ok(Bytes::new());
        };
        self.move_window(want.abs);
        if self.cached_read(&mut want).await? {
            return self.served(want);
        }
        let mut events = self.announce(want.piece);
        let spot = self
            .spot(want.abs)
            .ok_or_else(|| io_error(anyhow::anyhow!("offset outside the torrent's files")))?;
        loop {
            if self.read_now(&mut want).await? {
                return self.served(want);
            }
            let live = self.go_live(spot, None).await?;
            let Some(live) = self
                .settle_stale_claim(&mut want, spot, live, &mut events)
                .await?
            else {
                return self.served(want);
            };
            let jumped = match self.steering.steer(&self.torrent, &live, spot).await {
                Ok(jumped) => jumped,
                // Another reader re-added the torrent after `go_live` answered, and librqbit
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
            self.wait_or_kick(&mut want, spot, &live, jumped, &mut events)
                .await?;
        }
    }

    /// The piece-bounded read that `read(offset, max)` asks for; `None` when it asks for
    /// nothing (at or past the end, or `max` 0).
    fn want(&self, offset: u64, max: usize) -> io::Result<Option<Want>> {
        if offset >= self.len || max == 0 {
            return Ok(None);
        }
        let abs = self.start + offset;
        let pl = self.info.piece_length;
        let piece = u32::try_from(abs / pl).map_err(io_error)?;
        let in_piece = abs % pl;
        let n = (pl - in_piece).min(self.len - offset).min(max as u64) as usize;
        Ok(Some(Want {
            abs,
            piece,
            in_piece,
            buf: crate::chunk::buffer(n),
        }))
    }

    /// Step 1: the piece is stored already. The stream, if any, follows the reader so that
    /// the lookahead stays ahead of it.
    async fn cached_read(&mut self, want: &mut Want) -> io::Result<bool> {
        if !self.read_now(want).await? {
            return Ok(false);
        }
        if let Some(spot) = self.spot(want.abs) {
            self.steering.follow(spot).await;
        }
        Ok(true)
    }

    /// Tells `/events` that a reader waits for `piece`, listening for completions first so
    /// that none is missed.
    fn announce(&self, piece: u32) -> broadcast::Receiver<PieceEvent> {
        let events = self.swarm.events.subscribe();
        self.swarm
            .events
            .publish(self.torrent.ih, piece, PieceEventKind::Wanted);
        events
    }

    /// The live torrent (re-added first when `stale` names its generation), keeping the stream
    /// an add opened for this reader at `spot`.
    async fn go_live(
        &mut self,
        spot: Spot,
        stale: Option<(u64, &'static str)>,
    ) -> io::Result<Live> {
        let (live, primed) = self
            .torrent
            .live_for(spot.file, spot.pos, stale)
            .await
            .map_err(io_error)?;
        if let Some(stream) = primed {
            self.steering.adopt(live.generation, spot, stream);
        }
        Ok(live)
    }

    /// Step 2: librqbit may claim the piece (its have bit) while the cache lacks it. librqbit
    /// sets the bit just before it hands the piece to the cache, whose writer thread may take a
    /// while to store it: unless the cache evicted it, that write gets time to land. A claim
    /// still stale after that makes a repair (a re-add with a bitfield from the cache). Returns
    /// the generation to steer on, or `None` when the piece was read meanwhile.
    async fn settle_stale_claim(
        &mut self,
        want: &mut Want,
        spot: Spot,
        live: Live,
        events: &mut broadcast::Receiver<PieceEvent>,
    ) -> io::Result<Option<Live>> {
        let swarm = self.swarm.clone();
        let Some(cache) = swarm.storage.cache() else {
            return Ok(Some(live));
        };
        if !librqbit_has(&live.handle, &swarm.api, want.piece) {
            return Ok(Some(live));
        }
        let key = confluence_cache::Key {
            ih: self.torrent.ih.0,
            piece: want.piece,
        };
        if !cache.was_evicted(key) {
            loop {
                let writing = cache.is_writing(key);
                let landing = Duration::from_millis(300);
                wait_piece(events, self.torrent.ih, want.piece, landing).await;
                if self.read_now(want).await? {
                    return Ok(None);
                }
                if !writing {
                    break;
                }
            }
        }
        if !librqbit_has(&live.handle, &swarm.api, want.piece) {
            return Ok(Some(live));
        }
        debug!(ih = %self.torrent.ih, piece = want.piece, "librqbit claims a piece the cache lacks");
        swarm.stats.repairs.fetch_add(1, Ordering::Relaxed);
        let reason = "the cache dropped pieces librqbit claims";
        self.go_live(spot, Some((live.generation, reason)))
            .await
            .map(Some)
    }

    /// Step 4: waits for the piece, at most `STALL`. When nothing of the torrent arrived (or
    /// the window jumped while peers are idle), fails if downloaded data cannot be stored, else
    /// kicks: librqbit's peers are probably asleep (a peer that found nothing to request sleeps
    /// 5 s, and a new stream does not wake it), and re-adding reconnects them with this reader's
    /// window already in place.
    async fn wait_or_kick(
        &mut self,
        want: &mut Want,
        spot: Spot,
        live: &Live,
        jumped: bool,
        events: &mut broadcast::Receiver<PieceEvent>,
    ) -> io::Result<()> {
        let idle = jumped && self.torrent.peers_idle(live);
        let fetched = live.fetched();
        let progress = idle || wait_piece(events, self.torrent.ih, want.piece, STALL).await;
        let stalled = idle || (!progress && !self.read_now(want).await?);
        if !stalled {
            return Ok(());
        }
        if let Some(e) = self
            .swarm
            .storage
            .cache()
            .and_then(|c| c.recent_write_error(STALL))
        {
            // A full disk: fail with the reason instead of waiting for a piece that cannot
            // arrive.
            return Err(e);
        }
        // Blocks arriving mean the peers are awake: with slow peers no piece may complete
        // within STALL, and re-adding then would drop every connection and partial piece,
        // again and again.
        let asleep = idle || live.fetched() == fetched;
        if asleep && self.torrent.may_kick(live.generation) {
            debug!(ih = %self.torrent.ih, piece = want.piece, "no progress; reconnecting peers");
            self.swarm.stats.kicks.fetch_add(1, Ordering::Relaxed);
            let reason = "no progress: waking idle peers";
            self.go_live(spot, Some((live.generation, reason))).await?;
        }
        Ok(())
    }

    fn served(&self, want: Want) -> io::Result<Bytes> {
        self.swarm
            .stats
            .bytes_served
            .fetch_add(want.buf.len() as u64, Ordering::Relaxed);
        Ok(crate::chunk::into_bytes(want.buf))
    }

    /// Fills the want's buffer from the stored piece, if it is there. The file read runs on a
    /// blocking thread: the engine's runtime has one thread, which every peer connection
    /// shares, and a read from a slow disk must not stall them.
    /// (The future holds no `&self`: a `Reader` is not `Sync`.)
    fn read_now<'a>(
        &self,
        want: &'a mut Want,
    ) -> impl std::future::Future<Output = io::Result<bool>> + Send + 'a {
        let swarm = self.swarm.clone();
        let info = self.info.clone();
        let live = self.torrent.live_now();
        let (piece, in_piece, buf) = (want.piece, want.in_piece, &mut want.buf);
        async move {
            let mut owned = std::mem::take(buf);
            let (hit, owned) = tokio::task::spawn_blocking(move || {
                let ctx = live.as_ref().map(|l| (l.handle.clone(), &swarm.api));
                let hit = swarm
                    .storage
                    .read(&info, ctx.as_ref(), piece, in_piece, &mut owned);
                (hit, owned)
            })
            .await
            .map_err(io_error)?;
            *buf = owned;
            hit
        }
    }

    /// Pins the pieces librqbit will fetch for this reader: from its position to the end of the
    /// stream window (clipped to the file the position is in, as librqbit clips it).
    fn move_window(&mut self, abs: u64) {
        let (Some(cache), Some(w)) = (self.swarm.storage.cache(), self.window) else {
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

    /// Where in which file torrent offset `abs` is.
    fn spot(&self, abs: u64) -> Option<Spot> {
        let file = self.file_at(abs)?;
        let pos = abs - self.info.files[file].offset;
        Some(Spot { file, pos })
    }
}

/// Waits until `piece` of the torrent is reported complete, or `timeout` passes. Returns
/// whether the torrent made any progress (some piece of it completed) meanwhile.
async fn wait_piece(
    events: &mut broadcast::Receiver<PieceEvent>,
    ih: InfoHash,
    piece: u32,
    timeout: Duration,
) -> bool {
    let mut progress = false;
    let wait = async {
        loop {
            match events.recv().await {
                Ok(e) if e.ih == ih && e.kind == PieceEventKind::Complete => {
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
