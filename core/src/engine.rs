//! The torrent engine: one librqbit session, the torrents requests name, their references and
//! grace periods, and the piece events everything else listens to.
//!
//! The engine and librqbit run on a tokio runtime of their own (the binary's is current-thread,
//! driven by one `engine` thread: librqbit then writes and hashes inline instead of through
//! `block_in_place`). Front doors call in through [`Engine::runtime`]: HTTP handlers and FUSE
//! operations spawn there and get their answers back over channels.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
};

use anyhow::Context;
use librqbit::{
    Api, ConnectionOptions, DhtSessionConfig, ListenerMode, ListenerOptions, Session,
    SessionOptions, SessionPersistenceConfig,
};
use parking_lot::Mutex;
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

use crate::{
    backend::Backend,
    config::Config,
    ident::InfoHash,
    metainfo::{parse_info, parse_metainfo},
    store::MetaStore,
    torrent::{Torrent, TorrentRef},
};

/// A change in a piece's state, for `/events` and for readers waiting on a piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PieceEvent {
    pub ih: InfoHash,
    pub piece: u32,
    pub kind: PieceEventKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceEventKind {
    /// A reader started waiting for the piece (its priority was raised).
    Wanted,
    /// The piece was verified and stored.
    Complete,
    /// The cache evicted the piece.
    Evicted,
}

pub(crate) type Progress = Arc<Mutex<HashMap<InfoHash, std::time::Instant>>>;

/// Sends a piece event, remembering completions per torrent.
fn publish(
    tx: &broadcast::Sender<PieceEvent>,
    progress: &Progress,
    ih: InfoHash,
    piece: u32,
    kind: PieceEventKind,
) {
    if kind == PieceEventKind::Complete {
        progress.lock().insert(ih, std::time::Instant::now());
    }
    let _ = tx.send(PieceEvent { ih, piece, kind });
}

/// Counters for `/status` and `/metrics`.
#[derive(Default, Debug)]
pub struct Stats {
    pub open_readers: AtomicUsize,
    pub bytes_served: AtomicU64,
    pub repairs: AtomicU64,
    /// Re-adds done to wake idle peers after a reader saw no progress.
    pub kicks: AtomicU64,
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) session: Arc<Session>,
    pub(crate) api: Api,
    pub(crate) store: MetaStore,
    pub(crate) storage: Backend,
    pub(crate) events: broadcast::Sender<PieceEvent>,
    pub(crate) stats: Stats,
    /// When each torrent last completed a piece (to tell idle peers from slow ones).
    pub(crate) progress: Progress,
    torrents: Mutex<HashMap<InfoHash, Arc<Torrent>>>,
    pub(crate) rt: tokio::runtime::Handle,
    pub(crate) listen_addr: SocketAddr,
}

/// The torrent core shared by the HTTP and FUSE front doors (see the module doc).
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

/// Why a posted metainfo was refused.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// The body is not bencode (→ 400 `error decoding body: …`).
    #[error("error decoding body: {0}")]
    Decode(String),
    /// The metainfo store cannot take it (full of torrents in use; → 507).
    #[error("error storing metainfo: {0}")]
    Store(String),
    /// The info dict is not a valid torrent (→ 400 `error putting metainfo: …`).
    #[error("error putting metainfo: {0}")]
    Info(String),
}

/// Why a torrent could not be acquired: `-maxPendingTorrents` torrents already wait for their
/// metadata (→ 429 on HTTP, EAGAIN in the mount).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "too many torrents waiting for metadata ({0}, the -maxPendingTorrents limit); try again later"
)]
pub struct TooManyPending(pub usize);

/// Picks the concrete listen address: the port of `:0` is chosen now, because librqbit must be
/// told the port to announce (on loopback it would otherwise announce none).
fn concrete_listen_addr(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let l = std::net::TcpListener::bind(addr).context("choosing a peer port")?;
    Ok(l.local_addr()?)
}

impl Engine {
    /// Starts the session, on the runtime it will live on (librqbit picks inline writes or
    /// `block_in_place` by that runtime's flavor).
    pub async fn start(config: Config) -> anyhow::Result<Engine> {
        let data = &config.data_dir;
        std::fs::create_dir_all(data)
            .with_context(|| format!("creating data dir {}", data.display()))?;
        let store = MetaStore::open(&data.join("torrents"), config.max_stored_metainfo)
            .context("opening the metainfo store")?;
        let session_dir = data.join("session");
        std::fs::create_dir_all(&session_dir)?;
        // The daemon owns the torrent list: librqbit must not restore its own at start-up.
        let _ = std::fs::remove_file(session_dir.join("session.json"));

        let (events, _) = broadcast::channel(16 * 1024);
        let progress: Progress = Arc::default();
        let storage = match &config.file_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating -fileDir {}", dir.display()))?;
                Backend::Files {
                    dir: dir.clone(),
                    session_dir: session_dir.clone(),
                }
            }
            None => {
                let tx = events.clone();
                let progress = progress.clone();
                let sink: confluence_cache::EventSink = Arc::new(move |e| {
                    let (key, kind) = match e {
                        confluence_cache::CacheEvent::Stored(k) => (k, PieceEventKind::Complete),
                        confluence_cache::CacheEvent::Evicted(k) => (k, PieceEventKind::Evicted),
                    };
                    publish(&tx, &progress, InfoHash(key.ih), key.piece, kind);
                });
                let cache = confluence_cache::PieceCache::open(
                    &data.join("cache"),
                    config.cache_capacity,
                    sink,
                )
                .context("opening the piece cache")?;
                let scratch_dir = data.join("scratch");
                let _ = std::fs::remove_dir_all(&scratch_dir);
                Backend::Cache {
                    cache,
                    session_dir: session_dir.clone(),
                    scratch_dir,
                }
            }
        };
        let (tx, pr) = (events.clone(), progress.clone());
        let factory = storage.factory(Arc::new(move |ih, piece| {
            publish(&tx, &pr, InfoHash(ih), piece, PieceEventKind::Complete);
        }));

        let listen_addr = concrete_listen_addr(config.torrent_addr)?;
        let mode = match (config.tcp_peers, config.utp_peers) {
            (true, true) => ListenerMode::TcpAndUtp,
            (true, false) => ListenerMode::TcpOnly,
            (false, true) => ListenerMode::UtpOnly,
            (false, false) => {
                anyhow::bail!("-tcpPeers=false and -utpPeers=false leave no way to reach peers")
            }
        };
        let opts = SessionOptions {
            dht: config.dht.then(|| DhtSessionConfig {
                bootstrap_addrs: config.dht_bootstrap.clone(),
                // The DHT shares the peer port when peers listen on every address. librqbit
                // binds the DHT to the unspecified address, so with peers on one IP its uTP
                // socket (more specific) would receive the DHT's replies: use its own port then.
                port: listen_addr
                    .ip()
                    .is_unspecified()
                    .then_some(listen_addr.port()),
                persistence: None,
            }),
            listen: Some(ListenerOptions {
                mode,
                listen_addr,
                enable_upnp_port_forwarding: config.upnp_port_forwarding,
                announce_port: Some(listen_addr.port()),
                ipv4_only: listen_addr.is_ipv4(),
                ..Default::default()
            }),
            connect: Some(ConnectionOptions {
                enable_tcp: config.tcp_peers,
                ..Default::default()
            }),
            persistence: Some(SessionPersistenceConfig::Json {
                folder: Some(session_dir),
            }),
            fastresume: true,
            default_storage_factory: Some(factory),
            disable_local_service_discovery: true,
            // Each librqbit FileStream holds a permit of this semaphore for its whole life, and
            // chunk writes need one too: a small value deadlocks with many open readers.
            runtime_worker_threads: Some(1024),
            disable_trackers: config.disable_trackers,
            ipv4_only: listen_addr.is_ipv4(),
            // Peers see `-CF0100-…` and `confluence 0.1.0`, trackers that `User-Agent`.
            peer_id: Some(crate::identity::new_peer_id()),
            client_name_and_version: Some(crate::identity::client_name_and_version()),
            ..Default::default()
        };
        let session = Session::new_with_opts(data.join("scratch"), opts)
            .await
            .context("starting the torrent session")?;
        let api = Api::new(session.clone(), None);
        Ok(Engine {
            inner: Arc::new(Inner {
                config,
                session,
                api,
                store,
                storage,
                events,
                stats: Stats::default(),
                progress,
                torrents: Mutex::new(HashMap::new()),
                rt: tokio::runtime::Handle::current(),
                listen_addr,
            }),
        })
    }

    /// The runtime the engine (and librqbit) runs on.
    pub fn runtime(&self) -> tokio::runtime::Handle {
        self.inner.rt.clone()
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// The peer listen address (with the port actually used).
    pub fn listen_addr(&self) -> SocketAddr {
        self.inner.listen_addr
    }

    pub fn cache_usage(&self) -> Option<confluence_cache::Usage> {
        self.inner.storage.cache().map(|c| c.usage())
    }

    pub fn session(&self) -> &Arc<Session> {
        &self.inner.session
    }

    pub fn subscribe(&self) -> broadcast::Receiver<PieceEvent> {
        self.inner.events.subscribe()
    }

    /// A reference on the torrent `ih`, creating it (and starting to resolve its metadata) if
    /// needed. `trackers` (from a magnet) are merged into tier 0. Refused when creating it would
    /// make more than `-maxPendingTorrents` torrents wait for metadata.
    pub fn acquire(&self, ih: InfoHash, trackers: &[String]) -> Result<TorrentRef, TooManyPending> {
        let _rt = self.inner.rt.enter();
        self.inner.acquire(ih, trackers)
    }

    /// Torrents in memory whose metadata is not known yet.
    pub fn pending(&self) -> usize {
        self.inner.pending()
    }

    /// The torrents in memory (live, or held by a reference), sorted.
    pub fn torrents(&self) -> Vec<Arc<Torrent>> {
        let mut v: Vec<_> = self.inner.torrents.lock().values().cloned().collect();
        v.sort_by_key(|t| t.ih);
        v
    }

    /// Every torrent the daemon knows: in memory or with stored metainfo.
    pub fn known(&self) -> Vec<InfoHash> {
        let mut v = self.inner.store.list();
        v.extend(self.inner.torrents.lock().keys().copied());
        v.sort();
        v.dedup();
        v
    }

    /// The metadata of a known torrent without taking a reference (so without adding it or
    /// keeping it): from memory, else from the metainfo store (a blocking file read). `None`
    /// when it is not known yet or its stored info does not hash to `ih`.
    pub fn info_of(&self, ih: &InfoHash) -> Option<Arc<crate::metainfo::Info>> {
        if let Some(info) = self.inner.get(ih).and_then(|t| t.info()) {
            return Some(info);
        }
        let stored = self.inner.store.load(ih)?;
        let info = parse_info(stored.info_bytes.as_ref()?).ok()?;
        (info.info_hash == *ih).then(|| Arc::new(info))
    }

    /// `POST /metainfo`: the infohash is the SHA-1 of the raw info; its trackers are merged.
    pub fn post_metainfo(&self, body: &[u8]) -> Result<(InfoHash, TorrentRef), PostError> {
        let m = parse_metainfo(body).map_err(|e| PostError::Decode(e.to_string()))?;
        let info_bytes = m.info_bytes.clone().unwrap_or_default();
        let ih = InfoHash::from_sha1_of(&info_bytes);
        let info = match &m.info_bytes {
            Some(b) => Some(Arc::new(parse_info(b).map_err(|e| {
                PostError::Info(format!("unmarshalling info bytes: {e}"))
            })?)),
            None => None,
        };
        let _rt = self.inner.rt.enter();
        // A POST brings its metadata (or names the one infohash of an empty info): never capped.
        let (tref, new_info) = self
            .inner
            .acquire_with(ih, &[], info, false)
            .unwrap_or_else(|_| unreachable!("uncapped acquire"));
        let mut changed = tref.merge_trackers(&m.announce_list);
        if new_info {
            if let Some(d) = m.creation_date {
                *tref.creation_date.lock() = Some(d);
            }
            tref.stop_resolver();
            changed = true;
        }
        if changed {
            if let Some(meta) = tref.metainfo() {
                if let Err(e) = self.inner.save_metainfo(&ih, &meta) {
                    warn!(%ih, "cannot store metainfo: {e}");
                    return Err(PostError::Store(e.to_string()));
                }
            }
            // librqbit cannot add trackers to a live torrent: re-add it with them.
            if let Some(live) = tref.live_now() {
                let t = tref.clone();
                self.inner.rt.spawn(async move {
                    if let Err(e) = t.readd(live.generation).await {
                        warn!(ih = %t.ih, "re-adding with new trackers: {e:#}");
                    }
                });
            }
        }
        Ok((ih, tref))
    }

    /// Stops the session's tasks and writes out verified pieces the cache still holds in memory.
    /// Unverified pieces are discarded at the next start, and fastresume bitfields are rewritten
    /// from the cache at every add. (librqbit's own `stop` sleeps a full second.) Trackers are
    /// told that live torrents stopped (bounded to one second).
    pub async fn shutdown(&self) {
        let announces: Vec<_> = self
            .torrents()
            .iter()
            .filter_map(|t| t.stopped_announce(t.live_now().as_ref()))
            .collect();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            futures::future::join_all(announces),
        )
        .await;
        self.inner.session.cancellation_token().cancel();
        // Verified pieces still in memory go to disk, so that the next start serves them.
        if let Some(cache) = self.inner.storage.cache().cloned() {
            let flushed = tokio::task::spawn_blocking(move || {
                cache.flush(std::time::Duration::from_secs(10))
            })
            .await;
            if !matches!(flushed, Ok(true)) {
                tracing::warn!("stopped before every downloaded piece was written to disk");
            }
        }
    }
}

impl Inner {
    /// Stores a torrent's metainfo; beyond `-maxStoredMetainfo` the least recently used
    /// metainfo of a torrent neither in memory nor with cached pieces makes room.
    pub(crate) fn save_metainfo(
        &self,
        ih: &InfoHash,
        m: &crate::metainfo::Metainfo,
    ) -> std::io::Result<()> {
        self.store.save(ih, m, |other, meta| {
            if self.get(other).is_some() {
                return true;
            }
            let Some(cache) = self.storage.cache() else {
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

    /// The torrent with this infohash, if in memory.
    pub(crate) fn get(&self, ih: &InfoHash) -> Option<Arc<Torrent>> {
        self.torrents.lock().get(ih).cloned()
    }

    fn acquire(
        self: &Arc<Self>,
        ih: InfoHash,
        trackers: &[String],
    ) -> Result<TorrentRef, TooManyPending> {
        Ok(self.acquire_with(ih, trackers, None, true)?.0)
    }

    fn pending(&self) -> usize {
        let map = self.torrents.lock();
        map.values().filter(|t| t.info().is_none()).count()
    }

    /// Like `acquire`, with metadata the caller already has (so no resolve is started).
    /// Also says whether that metadata was new to the torrent. With `capped`, creating a
    /// torrent that would wait for metadata beyond `-maxPendingTorrents` is refused.
    pub(crate) fn acquire_with(
        self: &Arc<Self>,
        ih: InfoHash,
        trackers: &[String],
        info: Option<Arc<crate::metainfo::Info>>,
        capped: bool,
    ) -> Result<(TorrentRef, bool), TooManyPending> {
        let (t, created) = {
            let mut map = self.torrents.lock();
            let max = self.config.max_pending_torrents;
            if capped
                && max > 0
                && info.is_none()
                && !map.contains_key(&ih)
                && map.values().filter(|t| t.info().is_none()).count() >= max
                && !self.store.contains(&ih)
            {
                return Err(TooManyPending(max));
            }
            let mut created = false;
            let t = map
                .entry(ih)
                .or_insert_with(|| {
                    created = true;
                    Arc::new(Torrent::new(ih, Arc::downgrade(self)))
                })
                .clone();
            t.refs.fetch_add(1, Ordering::SeqCst);
            (t, created)
        };
        let tref = TorrentRef::new(t.clone());
        if created {
            self.load_stored(&t);
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
                self.rt.spawn(async move {
                    let _ = t.readd(live.generation).await;
                });
            }
        }
        if t.info().is_none() {
            t.start_resolver();
        }
        Ok((tref, new_info))
    }

    /// A new torrent starts from its stored metainfo, if any, plus one `-implicitTracker` tier.
    fn load_stored(&self, t: &Torrent) {
        if let Some(m) = self.store.load(&t.ih) {
            if !self.config.override_trackers {
                t.merge_trackers(&m.announce_list);
            }
            *t.creation_date.lock() = m.creation_date;
            if let Some(b) = &m.info_bytes {
                if let Err(e) = t.set_info_bytes(b) {
                    warn!(ih = %t.ih, "stored metainfo is unusable: {e:#}");
                }
            }
        }
        if !self.config.implicit_trackers.is_empty() {
            let mut tiers = t.trackers();
            tiers.push(self.config.implicit_trackers.clone());
            t.merge_trackers(&tiers);
        }
    }

    /// Called when a reference drops: after the grace period, release it; the last release
    /// takes the torrent out of the session (unless `-expireTorrents=false`).
    pub(crate) fn release_later(self: &Arc<Self>, t: Arc<Torrent>) {
        let grace = self.config.torrent_grace;
        let this = self.clone();
        let release = async move {
            if !grace.is_zero() {
                tokio::time::sleep(grace).await;
            }
            let last = t.refs.fetch_sub(1, Ordering::SeqCst) == 1;
            // With -seed a torrent stays in the session to keep seeding what the cache holds.
            if !last || !this.config.expire_torrents || this.config.seed {
                return;
            }
            debug!(ih = %t.ih, "last reference released");
            t.leave_session().await;
            let dropped = {
                let mut map = this.torrents.lock();
                let ours = t.refs.load(Ordering::SeqCst) == 0
                    && map.get(&t.ih).is_some_and(|cur| Arc::ptr_eq(cur, &t));
                if ours {
                    map.remove(&t.ih);
                    this.progress.lock().remove(&t.ih);
                    info!(ih = %t.ih, "torrent dropped");
                }
                ours
            };
            if dropped {
                // A dropped torrent's peers, buffers and streams were freed just now.
                let _ = tokio::task::spawn_blocking(crate::memory::return_free_memory).await;
            }
        };
        self.rt.spawn(release);
    }
}
