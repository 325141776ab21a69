//! The librqbit session and what every torrent in it shares: where pieces are stored, the piece
//! events, the counters, and the runtime all of it runs on.
//!
//! This is what a [`Torrent`](crate::torrent::Torrent) and a [`Reader`](crate::reader::Reader)
//! need of the daemon, and nothing about which torrents exist: that is the registry's. Keeping
//! the two apart lets torrents hold this without reaching back into the engine that owns them.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, AtomicUsize},
        Arc,
    },
};

use anyhow::Context;
use librqbit::{
    Api, ConnectionOptions, DhtSessionConfig, ListenerMode, ListenerOptions, Session,
    SessionOptions, SessionPersistenceConfig,
};

use crate::{
    backend::Backend,
    config::Config,
    events::{PieceEventKind, PieceEvents},
    ident::InfoHash,
};

/// Counters for `/status` and `/metrics`.
#[derive(Default, Debug)]
pub struct Stats {
    pub open_readers: AtomicUsize,
    pub bytes_served: AtomicU64,
    pub repairs: AtomicU64,
    /// Re-adds done to wake idle peers after a reader saw no progress.
    pub kicks: AtomicU64,
}

/// The session and its surroundings (see the module doc).
pub(crate) struct Swarm {
    pub(crate) rt: tokio::runtime::Handle,
    pub(crate) session: Arc<Session>,
    pub(crate) api: Api,
    pub(crate) storage: Backend,
    pub(crate) events: Arc<PieceEvents>,
    pub(crate) stats: Stats,
    /// The peer listen address, with the port actually used (announced to trackers).
    pub(crate) listen_addr: SocketAddr,
    /// `-disableTrackers`: adds and the `stopped` announce leave trackers alone.
    pub(crate) disable_trackers: bool,
}

/// Picks the concrete listen address: the port of `:0` is chosen now, because librqbit must be
/// told the port to announce (on loopback it would otherwise announce none).
fn concrete_listen_addr(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let l = std::net::TcpListener::bind(addr).context("choosing a peer port")?;
    Ok(l.local_addr()?)
}

/// The piece store `config` asks for: plain files under `-fileDir`, else the piece cache, whose
/// stores and evictions become piece events.
fn open_storage(
    config: &Config,
    session_dir: &std::path::Path,
    events: &Arc<PieceEvents>,
) -> anyhow::Result<Backend> {
    if let Some(dir) = &config.file_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating -fileDir {}", dir.display()))?;
        return Ok(Backend::Files {
            dir: dir.clone(),
            session_dir: session_dir.to_path_buf(),
        });
    }
    let events = events.clone();
    let sink: confluence_cache::EventSink = Arc::new(move |e| {
        let (key, kind) = match e {
            confluence_cache::CacheEvent::Stored(k) => (k, PieceEventKind::Complete),
            confluence_cache::CacheEvent::Evicted(k) => (k, PieceEventKind::Evicted),
        };
        events.publish(InfoHash(key.ih), key.piece, kind);
    });
    let data = &config.data_dir;
    let cache =
        confluence_cache::PieceCache::open(&data.join("cache"), config.cache_capacity, sink)
            .context("opening the piece cache")?;
    let scratch_dir = data.join("scratch");
    let _ = std::fs::remove_dir_all(&scratch_dir);
    Ok(Backend::Cache {
        cache,
        session_dir: session_dir.to_path_buf(),
        scratch_dir,
    })
}

impl Swarm {
    /// Starts the session, on the runtime it will live on (librqbit picks inline writes or
    /// `block_in_place` by that runtime's flavor).
    pub(crate) async fn start(config: &Config) -> anyhow::Result<Swarm> {
        let data = &config.data_dir;
        let session_dir = data.join("session");
        std::fs::create_dir_all(&session_dir)?;
        // The daemon owns the torrent list: librqbit must not restore its own at start-up.
        let _ = std::fs::remove_file(session_dir.join("session.json"));

        let events = Arc::new(PieceEvents::new());
        let storage = open_storage(config, &session_dir, &events)?;
        let on_piece = events.clone();
        let factory = storage.factory(Arc::new(move |ih, piece| {
            on_piece.publish(InfoHash(ih), piece, PieceEventKind::Complete);
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
        Ok(Swarm {
            rt: tokio::runtime::Handle::current(),
            session,
            api,
            storage,
            events,
            stats: Stats::default(),
            listen_addr,
            disable_trackers: config.disable_trackers,
        })
    }
}
