//! Which torrents the daemon holds, and for how long: the one owner of the torrent map, the
//! references on each torrent, the grace period after the last one, and the cap on torrents
//! waiting for metadata.
//!
//! A torrent enters the map when a request names it ([`Registry::acquire`]) and leaves it when
//! its last [`TorrentRef`] has been gone for the grace period. Every change of the map and of a
//! reference count happens here, under the map's lock, so an acquire racing the end of a grace
//! period either keeps the torrent or gets a fresh one, never a torrent that is leaving. The
//! registry also owns the metainfo store: what is stored and what is in memory together are the
//! torrents the daemon knows.

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc, Weak},
    time::Duration,
};

use parking_lot::Mutex;
use tracing::{debug, info, warn};

use crate::{
    config::Config,
    ident::InfoHash,
    metainfo::{parse_info, Info, Metainfo},
    store::MetaStore,
    swarm::Swarm,
    torrent::{Host, Torrent},
};

/// Why a torrent could not be acquired: `-maxPendingTorrents` torrents already wait for their
/// metadata (→ 429 on HTTP, EAGAIN in the mount).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "too many torrents waiting for metadata ({0}, the -maxPendingTorrents limit); try again later"
)]
pub struct TooManyPending(pub usize);

/// The flags that decide how long torrents stay and what they start with.
struct Policy {
    grace: Duration,
    expire: bool,
    seed: bool,
    max_pending: usize,
    override_trackers: bool,
    implicit_trackers: Vec<String>,
}

/// The torrents in memory and their stored metainfo (see the module doc).
pub(crate) struct Registry {
    swarm: Arc<Swarm>,
    store: MetaStore,
    policy: Policy,
    torrents: Mutex<HashMap<InfoHash, Arc<Torrent>>>,
    /// Handed to every torrent (to store metainfo) and every reference (to release it).
    me: Weak<Registry>,
}

/// A reference on a torrent: while one exists the torrent stays; the last one's drop starts the
/// grace period after which the torrent leaves the session.
pub struct TorrentRef {
    torrent: Arc<Torrent>,
    registry: Weak<Registry>,
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
            registry: self.registry.clone(),
        }
    }
}

impl Drop for TorrentRef {
    fn drop(&mut self) {
        match self.registry.upgrade() {
            Some(registry) => registry.release_later(self.torrent.clone()),
            None => {
                self.torrent.refs.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

impl Registry {
    pub(crate) fn new(swarm: Arc<Swarm>, store: MetaStore, config: &Config) -> Arc<Registry> {
        let policy = Policy {
            grace: config.torrent_grace,
            expire: config.expire_torrents,
            seed: config.seed,
            max_pending: config.max_pending_torrents,
            override_trackers: config.override_trackers,
            implicit_trackers: config.implicit_trackers.clone(),
        };
        Arc::new_cyclic(|me| Registry {
            swarm,
            store,
            policy,
            torrents: Mutex::new(HashMap::new()),
            me: me.clone(),
        })
    }

    /// The torrent with this infohash, if in memory.
    pub(crate) fn get(&self, ih: &InfoHash) -> Option<Arc<Torrent>> {
        self.torrents.lock().get(ih).cloned()
    }

    /// The torrents in memory (live, or held by a reference), sorted.
    pub(crate) fn torrents(&self) -> Vec<Arc<Torrent>> {
        let mut v: Vec<_> = self.torrents.lock().values().cloned().collect();
        v.sort_by_key(|t| t.ih);
        v
    }

    /// Every torrent the daemon knows: in memory or with stored metainfo.
    pub(crate) fn known(&self) -> Vec<InfoHash> {
        let mut v = self.store.list();
        v.extend(self.torrents.lock().keys().copied());
        v.sort();
        v.dedup();
        v
    }

    /// Torrents in memory whose metadata is not known yet.
    pub(crate) fn pending(&self) -> usize {
        let map = self.torrents.lock();
        map.values().filter(|t| t.info().is_none()).count()
    }

    /// The info of a known torrent without taking a reference: from memory, else from the
    /// metainfo store (a blocking file read). `None` when it is not known yet or its stored
    /// info does not hash to `ih`.
    pub(crate) fn info_of(&self, ih: &InfoHash) -> Option<Arc<Info>> {
        if let Some(info) = self.get(ih).and_then(|t| t.info()) {
            return Some(info);
        }
        let stored = self.store.load(ih)?;
        let info = parse_info(stored.info_bytes.as_ref()?).ok()?;
        (info.info_hash == *ih).then(|| Arc::new(info))
    }

    /// Stores a torrent's metainfo; beyond `-maxStoredMetainfo` the least recently used
    /// metainfo of a torrent neither in memory nor with cached pieces makes room.
    pub(crate) fn save_metainfo(&self, ih: &InfoHash, m: &Metainfo) -> std::io::Result<()> {
        self.store.save(ih, m, |other, meta| {
            if self.get(other).is_some() {
                return true;
            }
            let Some(cache) = self.swarm.storage.cache() else {
                return false;
            };
            let pieces = meta
                .info_bytes
                .as_ref()
                .and_then(|b| parse_info(b).ok())
                .map_or(0, |i| i.num_pieces);
            cache.have_pieces(other.0, pieces).into_iter().any(|h| h)
        })
    }

    /// A reference on the torrent `ih`, creating it (and starting to resolve its metadata) if
    /// needed. `trackers` (from a magnet) are merged into tier 0. Refused when creating it would
    /// make more than `-maxPendingTorrents` torrents wait for metadata.
    pub(crate) fn acquire(
        &self,
        ih: InfoHash,
        trackers: &[String],
    ) -> Result<TorrentRef, TooManyPending> {
        let (tref, created) = {
            let mut map = self.torrents.lock();
            self.check_pending_cap(&map, &ih)?;
            self.take_ref(&mut map, ih)
        };
        self.settle(&tref, created, trackers, None);
        Ok(tref)
    }

    /// A reference on the torrent `ih` with metadata the caller has (a POST or an upload; a
    /// POST of an empty info brings none), so never capped. Says whether the metadata was new
    /// to the torrent.
    pub(crate) fn acquire_with_info(
        &self,
        ih: InfoHash,
        info: Option<Arc<Info>>,
    ) -> (TorrentRef, bool) {
        let (tref, created) = self.take_ref(&mut self.torrents.lock(), ih);
        let new_info = self.settle(&tref, created, &[], info);
        (tref, new_info)
    }

    /// Refuses a new torrent when `-maxPendingTorrents` torrents already wait for metadata and
    /// none is stored for it.
    fn check_pending_cap(
        &self,
        map: &HashMap<InfoHash, Arc<Torrent>>,
        ih: &InfoHash,
    ) -> Result<(), TooManyPending> {
        let max = self.policy.max_pending;
        if max > 0
            && !map.contains_key(ih)
            && map.values().filter(|t| t.info().is_none()).count() >= max
            && !self.store.contains(ih)
        {
            return Err(TooManyPending(max));
        }
        Ok(())
    }

    /// Counts a reference on `ih` (under the map lock the caller holds), creating the torrent
    /// if needed. Says whether it was created.
    fn take_ref(
        &self,
        map: &mut HashMap<InfoHash, Arc<Torrent>>,
        ih: InfoHash,
    ) -> (TorrentRef, bool) {
        let mut created = false;
        let t = map
            .entry(ih)
            .or_insert_with(|| {
                created = true;
                Arc::new(Torrent::new(ih, self.host()))
            })
            .clone();
        t.refs.fetch_add(1, Ordering::SeqCst);
        let tref = TorrentRef {
            torrent: t,
            registry: self.me.clone(),
        };
        (tref, created)
    }

    /// Brings a just referenced torrent up to date: a new one from its stored metainfo, then
    /// the caller's metadata and trackers (re-adding a live torrent for new trackers); a resolve
    /// starts while the metadata is unknown. Says whether `info` was new to the torrent.
    fn settle(
        &self,
        t: &Arc<Torrent>,
        created: bool,
        trackers: &[String],
        info: Option<Arc<Info>>,
    ) -> bool {
        if created {
            self.load_stored(t);
        }
        let mut new_info = false;
        if let Some(info) = info {
            if t.info().is_none() {
                t.set_info(info);
                new_info = true;
            }
        }
        if !trackers.is_empty() && t.merge_trackers(&[trackers.to_vec()]) {
            if let Some(live) = t.live_now() {
                let t = t.clone();
                self.swarm.rt.spawn(async move {
                    let _ = t.readd(live.generation).await;
                });
            }
        }
        if t.info().is_none() {
            t.start_resolver();
        }
        new_info
    }

    /// What a new torrent gets of the daemon: the session, and this registry's store for the
    /// metainfo it learns from peers.
    fn host(&self) -> Host {
        let me = self.me.clone();
        Host {
            swarm: Arc::downgrade(&self.swarm),
            save_metainfo: Arc::new(move |ih, m| match me.upgrade() {
                Some(registry) => registry.save_metainfo(ih, m),
                None => Err(std::io::Error::other("the daemon is shutting down")),
            }),
        }
    }

    /// A new torrent starts from its stored metainfo, if any, plus one `-implicitTracker` tier.
    fn load_stored(&self, t: &Torrent) {
        if let Some(m) = self.store.load(&t.ih) {
            if !self.policy.override_trackers {
                t.merge_trackers(&m.announce_list);
            }
            *t.creation_date.lock() = m.creation_date;
            if let Some(b) = &m.info_bytes {
                if let Err(e) = t.set_info_bytes(b) {
                    warn!(ih = %t.ih, "stored metainfo is unusable: {e:#}");
                }
            }
        }
        if !self.policy.implicit_trackers.is_empty() {
            let mut tiers = t.trackers();
            tiers.push(self.policy.implicit_trackers.clone());
            t.merge_trackers(&tiers);
        }
    }

    /// Called when a reference drops: after the grace period, release it; the last release
    /// takes the torrent out of the session (unless `-expireTorrents=false`).
    fn release_later(self: Arc<Self>, t: Arc<Torrent>) {
        let rt = self.swarm.rt.clone();
        rt.spawn(async move {
            if !self.policy.grace.is_zero() {
                tokio::time::sleep(self.policy.grace).await;
            }
            let last = t.refs.fetch_sub(1, Ordering::SeqCst) == 1;
            // With -seed a torrent stays in the session to keep seeding what the cache holds.
            if !last || !self.policy.expire || self.policy.seed {
                return;
            }
            debug!(ih = %t.ih, "last reference released");
            t.leave_session().await;
            if self.forget_if_unused(&t) {
                // A dropped torrent's peers, buffers and streams were freed just now.
                let _ = tokio::task::spawn_blocking(crate::memory::return_free_memory).await;
            }
        });
    }

    /// Takes `t` out of the map unless it was acquired again (or replaced) meanwhile.
    fn forget_if_unused(&self, t: &Arc<Torrent>) -> bool {
        let mut map = self.torrents.lock();
        let ours = t.refs.load(Ordering::SeqCst) == 0
            && map.get(&t.ih).is_some_and(|cur| Arc::ptr_eq(cur, t));
        if ours {
            map.remove(&t.ih);
            self.swarm.events.forget(&t.ih);
            info!(ih = %t.ih, "torrent dropped");
        }
        ours
    }
}
