//! What the daemon's flags tell the torrent core.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// Settings of the torrent core, filled from the command line by the binary.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where metainfo, the piece cache and librqbit's session state live.
    pub data_dir: PathBuf,
    /// Peer listen address (TCP and uTP; the DHT uses the same UDP port).
    pub torrent_addr: SocketAddr,
    pub dht: bool,
    /// DHT bootstrap nodes; `None` means librqbit's public routers.
    pub dht_bootstrap: Option<Vec<String>>,
    /// How long a torrent stays after its last reference ends.
    pub torrent_grace: Duration,
    /// Whether torrents leave the session at all once unreferenced.
    pub expire_torrents: bool,
    /// Piece cache capacity in bytes; `None` is unlimited.
    pub cache_capacity: Option<u64>,
    /// Plain files under `DIR/<infohash>/` instead of the piece cache.
    pub file_dir: Option<PathBuf>,
    pub disable_trackers: bool,
    /// One extra tracker tier added to every torrent.
    pub implicit_trackers: Vec<String>,
    /// Ignore the trackers of cached metainfo when a torrent is created.
    pub override_trackers: bool,
    /// Keep torrents in the session (seeding cached data) after their last reference.
    pub seed: bool,
    pub tcp_peers: bool,
    pub utp_peers: bool,
    pub upnp_port_forwarding: bool,
    /// At most this many torrents wait for metadata at once (0: no limit).
    pub max_pending_torrents: usize,
    /// At most this many metainfo files are kept in the store (0: no limit); beyond it the
    /// least recently used of torrents with no cached pieces are removed.
    pub max_stored_metainfo: usize,
}

impl Config {
    /// Defaults of the original confluence, with data under `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            torrent_addr: SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 0], 42069)),
            dht: true,
            dht_bootstrap: None,
            torrent_grace: Duration::from_secs(60),
            expire_torrents: true,
            cache_capacity: Some(10 << 30),
            file_dir: None,
            disable_trackers: false,
            implicit_trackers: Vec::new(),
            override_trackers: false,
            seed: false,
            tcp_peers: true,
            utp_peers: true,
            upnp_port_forwarding: false,
            max_pending_torrents: 256,
            max_stored_metainfo: 10_000,
        }
    }
}
