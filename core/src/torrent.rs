//! One torrent as the daemon sees it: its metadata (once known), its trackers, the requests that
//! hold it, and its presence in the librqbit session.
//!
//! A torrent is *known* as soon as a request names it and *live* while librqbit has it. Going
//! live (an add), re-adding after the cache dropped a piece librqbit believes it has (a repair)
//! and leaving the session all run under one async mutex per torrent, so concurrent requests
//! share one add and never race a removal.

use std::{
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Weak,
    },
    time::Duration,
};

use anyhow::Context;
use librqbit::{AddTorrent, AddTorrentOptions};

/// A librqbit `FileStream` (not nameable: librqbit does not re-export its type), used as a
/// cursor that steers downloads.
pub type Stream = Box<dyn tokio::io::AsyncSeek + Send + Unpin>;

/// librqbit's handle of a torrent in its session.
pub type ManagedTorrentHandle = Arc<librqbit::ManagedTorrent>;
use parking_lot::Mutex;
use tokio::{io::AsyncSeekExt, sync::watch};
use tracing::{debug, info, warn};

use crate::{
    engine::Inner,
    ident::InfoHash,
    metainfo::{build_torrent, parse_info, Info, Metainfo},
};

/// The id of the next torrent added to the librqbit session (see [`Torrent::add`]).
static NEXT_SESSION_ID: AtomicUsize = AtomicUsize::new(0);

/// The librqbit handle of a live torrent and its generation: every (re-)add is a new
/// generation, and a reader's stream belongs to the generation it was opened on.
#[derive(Clone)]
pub struct Live {
    pub generation: u64,
    pub handle: ManagedTorrentHandle,
}

impl Live {
    /// Bytes librqbit received for this generation, verified or not: the progress a slow swarm
    /// shows long before a piece completes.
    pub fn fetched(&self) -> u64 {
        self.handle
            .stats()
            .live
            .map_or(0, |l| l.snapshot.fetched_bytes)
    }
}

/// A torrent known to the daemon (see the module doc).
pub struct Torrent {
    pub ih: InfoHash,
    pub(crate) engine: Weak<Inner>,
    info: watch::Sender<Option<Arc<Info>>>,
    /// Announce tiers used when the torrent is (re-)added.
    trackers: Mutex<Vec<Vec<String>>>,
    /// Bumped whenever `trackers` gains an entry: a magnet add waiting on the old ones restarts.
    trackers_epoch: watch::Sender<u64>,
    /// Bumped when the torrent leaves the session: a magnet add still resolving gives up.
    leaving: watch::Sender<u64>,
    /// Held references (requests, open files). Changed under the engine's torrent map lock.
    pub(crate) refs: AtomicUsize,
    live: tokio::sync::Mutex<Option<Live>>,
    generation: AtomicU64,
    resolver: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Streams of readers that finished recently, kept steering downloads for a while (see
    /// `park`).
    parked: Mutex<Vec<Parked>>,
    /// When the torrent was last added to the session (peers need time to connect).
    added_at: Mutex<std::time::Instant>,
    /// The creation date of the metainfo, when known (FUSE mtime).
    pub creation_date: Mutex<Option<i64>>,
}

/// A stream a finished reader left behind.
struct Parked {
    id: u64,
    generation: u64,
    file: usize,
    stream: Stream,
}

/// How long a finished reader's stream keeps steering downloads, and how many are kept.
const PARK_FOR: Duration = Duration::from_secs(10);
const MAX_PARKED: usize = 4;

static PARK_ID: AtomicU64 = AtomicU64::new(0);

/// A reference on a torrent: while one exists the torrent stays; the last one's drop starts the
/// grace period after which the torrent leaves the session.
pub struct TorrentRef {
    torrent: Arc<Torrent>,
}

impl std::ops::Deref for TorrentRef {
    type Target = Arc<Torrent>;
    fn deref(&self) -> &Arc<Torrent> {
        &self.torrent
    }
}

impl Clone for TorrentRef {
    fn clone(&self) -> Self {
        self.torrent.refs.fetch_add(1, Ordering::SeqCst);
        Self {
            torrent: self.torrent.clone(),
        }
    }
}

impl Drop for TorrentRef {
    fn drop(&mut self) {
        if let Some(engine) = self.torrent.engine.upgrade() {
            engine.release_later(self.torrent.clone());
        } else {
            self.torrent.refs.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl TorrentRef {
    /// Only the engine creates references (it counts them under its lock).
    pub(crate) fn new(torrent: Arc<Torrent>) -> Self {
        Self { torrent }
    }
}

fn merge_tiers(into: &mut Vec<Vec<String>>, tiers: &[Vec<String>]) -> bool {
    let mut changed = false;
    for (i, tier) in tiers.iter().enumerate() {
        if into.len() <= i {
            into.push(Vec::new());
        }
        for url in tier {
            if !into[i].contains(url) {
                into[i].push(url.clone());
                changed = true;
            }
        }
    }
    changed
}

impl Torrent {
    pub(crate) fn new(ih: InfoHash, engine: Weak<Inner>) -> Self {
        Self {
            ih,
            engine,
            info: watch::channel(None).0,
            trackers: Mutex::new(Vec::new()),
            trackers_epoch: watch::channel(0).0,
            leaving: watch::channel(0).0,
            refs: AtomicUsize::new(0),
            live: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            resolver: Mutex::new(None),
            parked: Mutex::new(Vec::new()),
            added_at: Mutex::new(std::time::Instant::now()),
            creation_date: Mutex::new(None),
        }
    }

    fn engine(&self) -> anyhow::Result<Arc<Inner>> {
        self.engine.upgrade().context("the daemon is shutting down")
    }

    /// The metadata, if known.
    pub fn info(&self) -> Option<Arc<Info>> {
        self.info.borrow().clone()
    }

    /// Waits until the metadata is known (from the store, a POST, or peers). Cancel by dropping.
    pub async fn wait_info(&self) -> Arc<Info> {
        let mut rx = self.info.subscribe();
        loop {
            if let Some(i) = rx.borrow_and_update().clone() {
                return i;
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as self, which we borrow: unreachable in practice.
                std::future::pending::<()>().await;
            }
        }
    }

    pub fn trackers(&self) -> Vec<Vec<String>> {
        self.trackers.lock().clone()
    }

    /// Merges announce tiers by index (the original's rule). Returns whether anything was new.
    pub(crate) fn merge_trackers(&self, tiers: &[Vec<String>]) -> bool {
        let changed = merge_tiers(&mut self.trackers.lock(), tiers);
        if changed {
            self.trackers_epoch.send_modify(|e| *e += 1);
        }
        changed
    }

    /// Sets the metadata once (later calls with the same infohash are no-ops).
    pub(crate) fn set_info(&self, info: Arc<Info>) {
        self.info.send_if_modified(|cur| {
            if cur.is_none() {
                *cur = Some(info);
                true
            } else {
                false
            }
        });
    }

    /// Parses and sets raw info bytes; they must hash to this torrent's infohash.
    pub(crate) fn set_info_bytes(&self, info_bytes: &[u8]) -> anyhow::Result<Arc<Info>> {
        if let Some(i) = self.info() {
            return Ok(i);
        }
        let info = Arc::new(parse_info(info_bytes).context("unmarshalling info bytes")?);
        anyhow::ensure!(
            info.info_hash == self.ih,
            "info does not match the infohash"
        );
        self.set_info(info.clone());
        Ok(info)
    }

    /// The metainfo to store and to hand librqbit: info plus current trackers.
    pub fn metainfo(&self) -> Option<Metainfo> {
        let info = self.info()?;
        Some(Metainfo {
            info_bytes: Some(info.info_bytes.clone()),
            announce_list: self.trackers(),
            url_list: Vec::new(),
            nodes: Vec::new(),
            creation_date: *self.creation_date.lock(),
            comment: None,
            created_by: None,
        })
    }

    /// The current live handle without waiting, if any.
    pub fn live_now(&self) -> Option<Live> {
        self.live.try_lock().ok().and_then(|g| g.clone())
    }

    /// Starts resolving the metadata from peers in the background (for a torrent whose info is
    /// not stored). Retries with back-off while the torrent is known, until the info is known.
    pub(crate) fn start_resolver(self: &Arc<Self>) {
        let mut slot = self.resolver.lock();
        if slot.as_ref().is_some_and(|h| !h.is_finished()) || self.info().is_some() {
            return;
        }
        let Ok(engine) = self.engine() else { return };
        let this = Arc::downgrade(self);
        *slot = Some(engine.rt.spawn(async move {
            let mut backoff = Duration::from_millis(500);
            loop {
                let Some(t) = this.upgrade() else { return };
                if t.info().is_some() {
                    return;
                }
                match t.live().await {
                    Ok(_) => return,
                    Err(e) => debug!(ih = %t.ih, "resolving metadata failed, will retry: {e:#}"),
                }
                drop(t);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }));
    }

    /// Stops a background resolve (its add may be waiting for metadata that a POST just gave).
    pub(crate) fn stop_resolver(&self) {
        if let Some(h) = self.resolver.lock().take() {
            h.abort();
        }
    }

    /// The live torrent, adding it to the session first if needed (single flight).
    pub async fn live(self: &Arc<Self>) -> anyhow::Result<Live> {
        Ok(self.ensure_live(None, None).await?.0)
    }

    /// Re-adds generation `stale_generation` so librqbit picks up new trackers (it has no
    /// call to add them to a live torrent). Concurrent callers share one re-add.
    pub async fn readd(self: &Arc<Self>, stale_generation: u64) -> anyhow::Result<Live> {
        let stale = Some((stale_generation, "new trackers"));
        Ok(self.ensure_live(stale, None).await?.0)
    }

    /// The live torrent for a reader about to wait at `pos` of `file`; when this call (re-)adds
    /// it, the reader's stream comes with it (see `ensure_live`).
    pub async fn live_for(
        self: &Arc<Self>,
        file: usize,
        pos: u64,
        stale: Option<(u64, &'static str)>,
    ) -> anyhow::Result<(Live, Option<Stream>)> {
        self.ensure_live(stale, Some((file, pos))).await
    }

    /// The single flight behind every add: returns the current generation unless it is
    /// `stale` (then re-added, logging the reason) or in librqbit's error state. With `prime`,
    /// the torrent is added paused, a stream is opened at that (file, position), and only then
    /// are peers connected: a peer that finds nothing to request sleeps for seconds in
    /// librqbit, so it must find the reader's window already there.
    ///
    /// It runs as a task of its own: a caller dropped half way (its client went away) must not
    /// abandon librqbit's add in the middle, which leaves a torrent that never initializes for
    /// the next caller to wait on for ever, with the lock held.
    async fn ensure_live(
        self: &Arc<Self>,
        stale: Option<(u64, &'static str)>,
        prime: Option<(usize, u64)>,
    ) -> anyhow::Result<(Live, Option<Stream>)> {
        let this = self.clone();
        let rt = self.engine()?.rt.clone();
        rt.spawn(async move { this.ensure_live_now(stale, prime).await })
            .await
            .context("the add task failed")?
    }

    async fn ensure_live_now(
        &self,
        stale: Option<(u64, &'static str)>,
        prime: Option<(usize, u64)>,
    ) -> anyhow::Result<(Live, Option<Stream>)> {
        let mut guard = self.live.lock().await;
        if let Some(l) = guard.as_ref() {
            let reason = stale.filter(|(g, _)| *g == l.generation).map(|(_, r)| r);
            if reason.is_none() && !is_errored(&l.handle) {
                return Ok((l.clone(), None));
            }
            if let Some(reason) = reason {
                info!(ih = %self.ih, generation = l.generation, "re-adding torrent: {reason}");
            } else {
                warn!(ih = %self.ih, "torrent is in an error state; re-adding it");
            }
            self.remove_from_session(guard.take()).await;
        }
        let handle = self.add_superseding(prime.is_some()).await?;
        let stream = match prime {
            Some((file, pos)) => {
                let mut stream = handle.clone().stream(file).await?;
                stream.seek(std::io::SeekFrom::Start(pos)).await?;
                if handle.is_paused() {
                    self.engine()?.session.unpause(&handle).await?;
                }
                Some(Box::new(stream) as Stream)
            }
            None => None,
        };
        let live = Live {
            generation: self.generation.fetch_add(1, Ordering::SeqCst) + 1,
            handle,
        };
        *guard = Some(live.clone());
        *self.added_at.lock() = std::time::Instant::now();
        Ok((live, stream))
    }

    /// `add`, except that a magnet add (metadata unknown; librqbit resolves it with no
    /// timeout, e.g. while its only tracker is dead) is abandoned and started again as soon as
    /// the metadata arrives (a POST) or the trackers change (a magnet naming new ones): the
    /// caller holds the `live` lock, and every reader waits on it.
    async fn add_superseding(&self, paused: bool) -> anyhow::Result<ManagedTorrentHandle> {
        loop {
            // Subscribe before looking, so a change in between is not missed.
            let mut info_rx = self.info.subscribe();
            let mut trackers_rx = self.trackers_epoch.subscribe();
            let mut leaving_rx = self.leaving.subscribe();
            if self.info().is_some() {
                return self.add(paused).await;
            }
            tokio::select! {
                r = self.add(paused) => return r,
                _ = leaving_rx.changed() => {
                    anyhow::bail!("the torrent left before its metadata was resolved");
                }
                _ = info_rx.changed() => {
                    info!(ih = %self.ih, "metadata arrived while resolving: adding from it");
                }
                _ = trackers_rx.changed() => {
                    info!(ih = %self.ih, "new trackers while resolving: resolving with them");
                }
            }
        }
    }

    /// Whether a reader that saw no progress may re-add generation `generation` to wake
    /// librqbit's peers: not while a fresh add's peers are still connecting (they need a tracker
    /// round trip and a bitfield, ~0.6 s on loopback).
    pub fn may_kick(&self, generation: u64) -> bool {
        let current = self.generation.load(Ordering::SeqCst);
        current == generation && self.added_at.lock().elapsed() >= std::time::Duration::from_secs(1)
    }

    /// Whether librqbit has connected peers but is downloading nothing: they found nothing to
    /// request and sleep, so a new window will not be served until they wake.
    pub fn peers_idle(&self, live: &Live) -> bool {
        let quiet = self.engine().is_ok_and(|e| {
            e.progress
                .lock()
                .get(&self.ih)
                .is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(300))
        });
        quiet
            && live
                .handle
                .stats()
                .live
                .is_some_and(|l| l.snapshot.peer_stats.live > 0)
    }

    /// Keeps a finished reader's stream for `PARK_FOR`. Without an open stream librqbit drops
    /// its peers as "not needed", and the next request (an HTTP player issues one per seek)
    /// must reconnect and wait for the seeder's bitfield; with it, the peers stay connected and
    /// keep fetching the lookahead, and the next reader adopts the stream.
    pub(crate) fn park(&self, generation: u64, file: usize, stream: Stream) {
        let Ok(engine) = self.engine() else { return };
        if self.live_now().is_none_or(|l| l.generation != generation) {
            return;
        }
        let id = PARK_ID.fetch_add(1, Ordering::Relaxed);
        {
            let mut parked = self.parked.lock();
            if parked.len() >= MAX_PARKED {
                parked.remove(0);
            }
            parked.push(Parked {
                id,
                generation,
                file,
                stream,
            });
        }
        let this = self.engine.clone();
        let ih = self.ih;
        engine.rt.spawn(async move {
            tokio::time::sleep(PARK_FOR).await;
            if let Some(t) = this.upgrade().and_then(|e| e.get(&ih)) {
                t.parked.lock().retain(|p| p.id != id);
            }
        });
    }

    /// A parked stream of this generation on `file`, if any (the newest).
    pub(crate) fn unpark(&self, generation: u64, file: usize) -> Option<Stream> {
        let mut parked = self.parked.lock();
        let i = parked
            .iter()
            .rposition(|p| p.generation == generation && p.file == file)?;
        Some(parked.remove(i).stream)
    }

    /// Takes the torrent out of the session (its data stays in the cache). A magnet add that
    /// is still resolving (it may never: a dead tracker) gives up, so it cannot hold the torrent
    /// for ever.
    pub(crate) async fn leave_session(self: &Arc<Self>) {
        self.stop_resolver();
        self.leaving.send_modify(|e| *e += 1);
        let mut guard = self.live.lock().await;
        if self.refs.load(Ordering::SeqCst) > 0 {
            // Asked for again during the grace period's end: keep resolving.
            if self.info().is_none() {
                self.start_resolver();
            }
            return;
        }
        self.parked.lock().clear();
        let live = guard.take();
        let stopped = self.stopped_announce(live.as_ref());
        self.remove_from_session(live).await;
        if let Some(announce) = stopped {
            announce.await;
        }
        if let Ok(engine) = self.engine() {
            engine.storage.forget(&self.ih, self.info().as_deref());
        }
    }

    /// The `stopped` announce for a live torrent about to leave (see `announce`).
    pub(crate) fn stopped_announce(
        &self,
        live: Option<&Live>,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let live = live?;
        let engine = self.engine().ok()?;
        if engine.config.disable_trackers {
            return None;
        }
        let tiers = self.trackers();
        let (ih, peer_id, port) = (
            self.ih,
            live.handle.shared().peer_id.0,
            engine.listen_addr.port(),
        );
        Some(async move { crate::announce::announce_stopped(&tiers, ih, peer_id, port).await })
    }

    async fn remove_from_session(&self, _live: Option<Live>) {
        let Ok(engine) = self.engine() else { return };
        let id = librqbit::api::TorrentIdOrHash::Hash(librqbit_core::Id20::new(self.ih.0));
        if engine.session.get(id).is_some() {
            if let Err(e) = engine.session.delete(id, false).await {
                warn!(ih = %self.ih, "removing torrent from the session: {e:#}");
            }
        }
    }

    /// Adds the torrent to librqbit: from its metainfo when known (with a fastresume bitfield
    /// written from the cache, so nothing is re-hashed), else from a magnet (peers supply it).
    async fn add(&self, paused: bool) -> anyhow::Result<ManagedTorrentHandle> {
        let engine = self.engine()?;
        let id = librqbit::api::TorrentIdOrHash::Hash(librqbit_core::Id20::new(self.ih.0));
        if let Some(h) = engine.session.get(id) {
            if is_errored(&h) {
                // An earlier add failed (e.g. on a full disk) and librqbit kept the torrent in
                // its error state: every request would get that old error until the torrent
                // idled out. Remove it and add it afresh.
                warn!(ih = %self.ih, "an earlier add left the torrent in an error state; adding it again");
                self.remove_from_session(None).await;
            } else {
                // A resolver that was stopped after librqbit registered the torrent.
                initialized(&h).await?;
                self.adopt_metadata(&engine, &h);
                return Ok(h);
            }
        }
        let opts = AddTorrentOptions {
            // librqbit's JSON persistence picks a new torrent's id as the largest stored id + 1,
            // so two torrents added at once get the same id, and the second add returns the
            // first torrent's handle ("already managed"). Our own ids never collide.
            preferred_id: Some(NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed)),
            paused,
            // Re-announce every minute instead of the tracker's interval (often 15–30 min): a
            // client that drew only dead peers from the tracker must not wait that long.
            force_tracker_interval: Some(std::time::Duration::from_secs(60)),
            only_files: Some(vec![]),
            overwrite: true,
            output_folder: Some(
                engine
                    .storage
                    .output_folder(&self.ih, self.info().as_deref()),
            ),
            disable_trackers: engine.config.disable_trackers,
            ..Default::default()
        };
        let add = match self.metainfo() {
            Some(m) => {
                engine.storage.prepare_add(&self.ih, self.info().as_deref());
                AddTorrent::from_bytes(build_torrent(&m))
            }
            None => {
                engine.storage.prepare_add(&self.ih, None);
                AddTorrent::from_url(self.magnet())
            }
        };
        let resp = engine
            .session
            .add_torrent(add, Some(opts))
            .await
            .context("adding the torrent to the session")?;
        let handle = resp.into_handle().context("librqbit returned no handle")?;
        anyhow::ensure!(
            handle.info_hash().0 == self.ih.0,
            "librqbit returned the handle of another torrent ({})",
            hex::encode(handle.info_hash().0)
        );
        initialized(&handle).await?;
        self.adopt_metadata(&engine, &handle);
        Ok(handle)
    }

    /// After a magnet add: keep the metadata peers gave and store it.
    fn adopt_metadata(&self, engine: &Inner, handle: &ManagedTorrentHandle) {
        if self.info().is_some() {
            return;
        }
        let Some(meta) = handle.metadata.load_full() else {
            return;
        };
        match self.set_info_bytes(&meta.info_bytes) {
            Ok(_) => {
                if let Some(m) = self.metainfo() {
                    if let Err(e) = engine.save_metainfo(&self.ih, &m) {
                        warn!(ih = %self.ih, "cannot store metainfo: {e}");
                    }
                }
            }
            Err(e) => warn!(ih = %self.ih, "metadata from peers rejected: {e:#}"),
        }
    }

    fn magnet(&self) -> String {
        let mut m = format!("magnet:?xt=urn:btih:{}", self.ih);
        for tier in self.trackers() {
            for tr in tier {
                m.push_str("&tr=");
                m.push_str(
                    &percent_encoding::utf8_percent_encode(&tr, percent_encoding::NON_ALPHANUMERIC)
                        .to_string(),
                );
            }
        }
        m
    }
}

/// librqbit's `wait_until_initialized`, with a full disk still recognisable by type: librqbit
/// reports a failed initialization as text (`bail!("{e:?}")`), so the cause is read from the
/// torrent's error state, whose chain keeps the I/O error (front doors answer 507 / ENOSPC).
async fn initialized(h: &ManagedTorrentHandle) -> anyhow::Result<()> {
    let Err(e) = h.wait_until_initialized().await else {
        return Ok(());
    };
    let full = h.with_state(|s| match s {
        librqbit::ManagedTorrentState::Error(cause) => cause
            .chain()
            .filter_map(|c| c.downcast_ref::<std::io::Error>())
            .any(crate::reader::is_storage_full),
        _ => false,
    });
    if full {
        let kind = std::io::ErrorKind::StorageFull;
        return Err(std::io::Error::new(kind, format!("{e:#}")).into());
    }
    Err(e)
}

fn is_errored(h: &ManagedTorrentHandle) -> bool {
    h.with_state(|s| matches!(s, librqbit::ManagedTorrentState::Error(_)))
}

#[cfg(test)]
mod tests {
    use super::merge_tiers;

    #[test]
    fn tiers_merge_by_index() {
        let mut t = vec![vec!["a".to_string()]];
        assert!(merge_tiers(
            &mut t,
            &[vec!["a".into(), "b".into()], vec!["c".into()]]
        ));
        assert_eq!(t, vec![vec!["a".to_string(), "b".into()], vec!["c".into()]]);
        assert!(!merge_tiers(&mut t, &[vec!["b".into()]]));
    }
}
