//! One torrent as the daemon sees it: its metadata (once known), its trackers, and its presence
//! in the librqbit session.
//!
//! A torrent is *known* as soon as a request names it and *live* while librqbit has it. Going
//! live (an add), re-adding after the cache dropped a piece librqbit believes it has (a repair)
//! and leaving the session all run under one async mutex per torrent, so concurrent requests
//! share one add and never race a removal. Which torrents exist, and for how long, is the
//! registry's business: a torrent only reaches the daemon through its [`Host`].

use std::{
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Weak,
    },
    time::Duration,
};

use anyhow::Context;
use parking_lot::Mutex;
use tokio::{io::AsyncSeekExt, sync::watch};
use tracing::{debug, info, warn};

use crate::{
    ident::InfoHash,
    metainfo::{parse_info, Info, Metainfo},
    parked::{ParkedStreams, Stream, PARK_FOR},
    rqbit::{self, is_errored, AddFrom, ManagedTorrentHandle},
    swarm::Swarm,
};

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

/// Stores a torrent's metainfo (the registry decides what the store may drop to make room).
pub(crate) type SaveMetainfo =
    Arc<dyn Fn(&InfoHash, &Metainfo) -> std::io::Result<()> + Send + Sync>;

/// What a torrent needs of the daemon, and nothing more: the session it lives in, and a place
/// for the metainfo it learns from peers. The session is held weakly: a torrent outliving the
/// engine (a reference kept past shutdown) fails its adds instead of keeping the session alive.
#[derive(Clone)]
pub(crate) struct Host {
    pub(crate) swarm: Weak<Swarm>,
    pub(crate) save_metainfo: SaveMetainfo,
}

/// A torrent known to the daemon (see the module doc).
pub struct Torrent {
    pub ih: InfoHash,
    host: Host,
    info: watch::Sender<Option<Arc<Info>>>,
    /// Announce tiers used when the torrent is (re-)added.
    trackers: Mutex<Vec<Vec<String>>>,
    /// Bumped whenever `trackers` gains an entry: a magnet add waiting on the old ones restarts.
    trackers_epoch: watch::Sender<u64>,
    /// Bumped when the torrent leaves the session: a magnet add still resolving gives up.
    leaving: watch::Sender<u64>,
    /// Held references (requests, open files). Counted by the registry, under its map lock;
    /// read here to tell whether the torrent was wanted again while it was leaving.
    pub(crate) refs: AtomicUsize,
    live: tokio::sync::Mutex<Option<Live>>,
    generation: AtomicU64,
    resolver: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Streams of readers that finished recently, kept steering downloads for a while.
    parked: ParkedStreams,
    /// When the torrent was last added to the session (peers need time to connect).
    added_at: Mutex<std::time::Instant>,
    /// The creation date of the metainfo, when known (FUSE mtime).
    pub creation_date: Mutex<Option<i64>>,
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
    pub(crate) fn new(ih: InfoHash, host: Host) -> Self {
        Self {
            ih,
            host,
            info: watch::channel(None).0,
            trackers: Mutex::new(Vec::new()),
            trackers_epoch: watch::channel(0).0,
            leaving: watch::channel(0).0,
            refs: AtomicUsize::new(0),
            live: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            resolver: Mutex::new(None),
            parked: ParkedStreams::default(),
            added_at: Mutex::new(std::time::Instant::now()),
            creation_date: Mutex::new(None),
        }
    }

    fn swarm(&self) -> anyhow::Result<Arc<Swarm>> {
        self.host
            .swarm
            .upgrade()
            .context("the daemon is shutting down")
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
        let Ok(swarm) = self.swarm() else { return };
        let this = Arc::downgrade(self);
        *slot = Some(swarm.rt.spawn(async move {
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
        let rt = self.swarm()?.rt.clone();
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
                    self.swarm()?.session.unpause(&handle).await?;
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
        let quiet = self.swarm().is_ok_and(|s| {
            s.events
                .last_progress(&self.ih)
                .is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(300))
        });
        quiet
            && live
                .handle
                .stats()
                .live
                .is_some_and(|l| l.snapshot.peer_stats.live > 0)
    }

    /// Keeps a finished reader's stream for `PARK_FOR` (see [`crate::parked`]), if it belongs
    /// to the current generation.
    pub(crate) fn park(self: &Arc<Self>, generation: u64, file: usize, stream: Stream) {
        let Ok(swarm) = self.swarm() else { return };
        if self.live_now().is_none_or(|l| l.generation != generation) {
            return;
        }
        let id = self.parked.park(generation, file, stream);
        let this = Arc::downgrade(self);
        swarm.rt.spawn(async move {
            tokio::time::sleep(PARK_FOR).await;
            if let Some(t) = this.upgrade() {
                t.parked.expire(id);
            }
        });
    }

    /// A parked stream of this generation on `file`, if any (the newest).
    pub(crate) fn unpark(&self, generation: u64, file: usize) -> Option<Stream> {
        self.parked.unpark(generation, file)
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
        self.parked.clear();
        let live = guard.take();
        let stopped = self.stopped_announce(live.as_ref());
        self.remove_from_session(live).await;
        if let Some(announce) = stopped {
            announce.await;
        }
        if let Ok(swarm) = self.swarm() {
            swarm.storage.forget(&self.ih, self.info().as_deref());
        }
    }

    /// The `stopped` announce for a live torrent about to leave (see `announce`).
    pub(crate) fn stopped_announce(
        &self,
        live: Option<&Live>,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let live = live?;
        let swarm = self.swarm().ok()?;
        if swarm.disable_trackers {
            return None;
        }
        let tiers = self.trackers();
        let (ih, peer_id, port) = (
            self.ih,
            live.handle.shared().peer_id.0,
            swarm.listen_addr.port(),
        );
        Some(async move { crate::announce::announce_stopped(&tiers, ih, peer_id, port).await })
    }

    async fn remove_from_session(&self, _live: Option<Live>) {
        if let Ok(swarm) = self.swarm() {
            rqbit::remove(&swarm, &self.ih).await;
        }
    }

    /// Adds the torrent to librqbit: from its metainfo when known (with a fastresume bitfield
    /// written from the cache, so nothing is re-hashed), else from a magnet (peers supply it).
    async fn add(&self, paused: bool) -> anyhow::Result<ManagedTorrentHandle> {
        let swarm = self.swarm()?;
        let info = self.info();
        let from = match (&info, self.metainfo()) {
            (Some(info), Some(m)) => AddFrom::Metainfo(info, m),
            _ => AddFrom::Magnet(rqbit::magnet(&self.ih, &self.trackers())),
        };
        let handle = rqbit::add(&swarm, &self.ih, from, paused).await?;
        self.adopt_metadata(&handle);
        Ok(handle)
    }

    /// After a magnet add: keep the metadata peers gave and store it.
    fn adopt_metadata(&self, handle: &ManagedTorrentHandle) {
        if self.info().is_some() {
            return;
        }
        let Some(meta) = handle.metadata.load_full() else {
            return;
        };
        match self.set_info_bytes(&meta.info_bytes) {
            Ok(_) => {
                if let Some(m) = self.metainfo() {
                    if let Err(e) = (self.host.save_metainfo)(&self.ih, &m) {
                        warn!(ih = %self.ih, "cannot store metainfo: {e}");
                    }
                }
            }
            Err(e) => warn!(ih = %self.ih, "metadata from peers rejected: {e:#}"),
        }
    }
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
