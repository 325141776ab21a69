//! The torrent engine: the handle front doors hold. It ties together the librqbit session and
//! what every torrent shares ([`Swarm`]) with the torrents the daemon holds ([`Registry`]);
//! each owns its own state, and the engine only routes calls to them.
//!
//! The engine and librqbit run on a tokio runtime of their own (the binary's is current-thread,
//! driven by one `engine` thread: librqbit then writes and hashes inline instead of through
//! `block_in_place`). Front doors call in through [`Engine::runtime`]: HTTP handlers and FUSE
//! operations spawn there and get their answers back over channels.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use librqbit::Session;
use tokio::sync::broadcast;
use tracing::warn;

use crate::{
    config::Config,
    events::PieceEvent,
    ident::InfoHash,
    metainfo::{parse_info, parse_metainfo},
    registry::{Registry, TooManyPending, TorrentRef},
    store::MetaStore,
    swarm::{Stats, Swarm},
    torrent::Torrent,
};

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) swarm: Arc<Swarm>,
    pub(crate) registry: Arc<Registry>,
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

impl Engine {
    /// Starts the session, on the runtime it will live on (librqbit picks inline writes or
    /// `block_in_place` by that runtime's flavor).
    pub async fn start(config: Config) -> anyhow::Result<Engine> {
        let data = &config.data_dir;
        std::fs::create_dir_all(data)
            .with_context(|| format!("creating data dir {}", data.display()))?;
        let store = MetaStore::open(&data.join("torrents"), config.max_stored_metainfo)
            .context("opening the metainfo store")?;
        let swarm = Arc::new(Swarm::start(&config).await?);
        let registry = Registry::new(swarm.clone(), store, &config);
        Ok(Engine {
            inner: Arc::new(Inner {
                config,
                swarm,
                registry,
            }),
        })
    }

    /// The runtime the engine (and librqbit) runs on.
    pub fn runtime(&self) -> tokio::runtime::Handle {
        self.inner.swarm.rt.clone()
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.swarm.stats
    }

    /// The peer listen address (with the port actually used).
    pub fn listen_addr(&self) -> SocketAddr {
        self.inner.swarm.listen_addr
    }

    pub fn cache_usage(&self) -> Option<confluence_cache::Usage> {
        self.inner.swarm.storage.cache().map(|c| c.usage())
    }

    pub fn session(&self) -> &Arc<Session> {
        &self.inner.swarm.session
    }

    pub fn subscribe(&self) -> broadcast::Receiver<PieceEvent> {
        self.inner.swarm.events.subscribe()
    }

    /// A reference on the torrent `ih`, creating it (and starting to resolve its metadata) if
    /// needed. `trackers` (from a magnet) are merged into tier 0. Refused when creating it would
    /// make more than `-maxPendingTorrents` torrents wait for metadata.
    pub fn acquire(&self, ih: InfoHash, trackers: &[String]) -> Result<TorrentRef, TooManyPending> {
        let _rt = self.inner.swarm.rt.enter();
        self.inner.registry.acquire(ih, trackers)
    }

    /// Torrents in memory whose metadata is not known yet.
    pub fn pending(&self) -> usize {
        self.inner.registry.pending()
    }

    /// The torrents in memory (live, or held by a reference), sorted.
    pub fn torrents(&self) -> Vec<Arc<Torrent>> {
        self.inner.registry.torrents()
    }

    /// Every torrent the daemon knows: in memory or with stored metainfo.
    pub fn known(&self) -> Vec<InfoHash> {
        self.inner.registry.known()
    }

    /// The metadata of a known torrent without taking a reference (so without adding it or
    /// keeping it): from memory, else from the metainfo store (a blocking file read). `None`
    /// when it is not known yet or its stored info does not hash to `ih`.
    pub fn info_of(&self, ih: &InfoHash) -> Option<Arc<crate::metainfo::Info>> {
        self.inner.registry.info_of(ih)
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
        let _rt = self.inner.swarm.rt.enter();
        // A POST brings its metadata (or names the one infohash of an empty info): never capped.
        let (tref, new_info) = self.inner.registry.acquire_with_info(ih, info);
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
                if let Err(e) = self.inner.registry.save_metainfo(&ih, &meta) {
                    warn!(%ih, "cannot store metainfo: {e}");
                    return Err(PostError::Store(e.to_string()));
                }
            }
            // librqbit cannot add trackers to a live torrent: re-add it with them.
            if let Some(live) = tref.live_now() {
                let t = tref.clone();
                self.inner.swarm.rt.spawn(async move {
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
        self.inner.swarm.session.cancellation_token().cancel();
        // Verified pieces still in memory go to disk, so that the next start serves them.
        if let Some(cache) = self.inner.swarm.storage.cache().cloned() {
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
