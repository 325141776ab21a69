//! What the daemon can say about itself: piece states, torrents, peers, cache use. Read by
//! `/status`, `/metrics` and `/fileState`; computed on demand, nothing is tracked for it.

use std::sync::{atomic::Ordering, Arc};

use serde::Serialize;

use crate::{backend::librqbit_haves, engine::Engine, ident::InfoHash, torrent::Torrent};

/// Piece priority, numbered as anacrolix/torrent's (what `/fileState` reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Priority {
    None = 0,
    Readahead = 3,
    Now = 5,
}

/// The state of one piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PieceState {
    /// Verified and readable now.
    pub complete: bool,
    /// Some chunks downloaded, not yet verified.
    pub partial: bool,
    pub priority: Priority,
}

/// Peer counts from librqbit.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Peers {
    pub live: u32,
    pub connecting: u32,
    pub queued: u32,
    pub seen: u32,
    pub dead: u32,
}

/// One torrent, for `/status` and `/metrics`.
#[derive(Clone, Debug, Serialize)]
pub struct TorrentStatus {
    pub infohash: String,
    pub name: Option<String>,
    pub total_length: Option<u64>,
    pub piece_length: Option<u64>,
    pub num_pieces: u32,
    pub completed_pieces: u32,
    /// librqbit's state ("initializing", "live", …), or "idle" when not in the session.
    pub state: String,
    pub references: usize,
    pub readers: usize,
    pub peers: Peers,
    pub download_bytes_per_sec: f64,
    pub upload_bytes_per_sec: f64,
    pub downloaded_bytes: u64,
    pub uploaded_bytes: u64,
    pub trackers: Vec<Vec<String>>,
    /// Run-length piece states like the original's (`10C 2R 100`).
    pub piece_runs: String,
}

/// Cache use, for `/status` and `/metrics`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct CacheStatus {
    pub capacity: Option<u64>,
    pub bytes: u64,
    pub pieces: u64,
    pub pinned_bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

/// The whole daemon.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub listen_port: u16,
    pub dht: Option<DhtStatus>,
    pub cache: Option<CacheStatus>,
    pub open_readers: usize,
    pub bytes_served: u64,
    pub repairs: u64,
    pub torrents: Vec<TorrentStatus>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DhtStatus {
    pub id: String,
    pub routing_table_size: usize,
    pub outstanding_requests: usize,
}

/// Run-length encoding of piece states: a run count, then `!` (now) or `R` (readahead)
/// priority, then `C` complete or `P` partial.
pub fn piece_runs(states: &[PieceState]) -> String {
    fn code(s: &PieceState) -> String {
        let mut c = String::new();
        c.push_str(match s.priority {
            Priority::Now => "!",
            Priority::Readahead => "R",
            Priority::None => "",
        });
        if s.complete {
            c.push('C');
        } else if s.partial {
            c.push('P');
        }
        c
    }
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < states.len() {
        let c = code(&states[i]);
        let mut j = i + 1;
        while j < states.len() && code(&states[j]) == c {
            j += 1;
        }
        out.push(format!("{}{c}", j - i));
        i = j;
    }
    out.join(" ")
}

impl Engine {
    /// The state of every piece of a torrent whose info is known.
    pub fn piece_states(&self, t: &Torrent) -> Option<Vec<PieceState>> {
        let info = t.info()?;
        let n = info.num_pieces;
        let mut states = vec![
            PieceState {
                complete: false,
                partial: false,
                priority: Priority::None,
            };
            n as usize
        ];
        let swarm = &self.inner.swarm;
        match swarm.storage.cache() {
            Some(cache) => {
                for (i, have) in cache.have_pieces(t.ih.0, n).into_iter().enumerate() {
                    states[i].complete = have;
                }
                for p in cache.partial_pieces(t.ih.0) {
                    if let Some(s) = states.get_mut(p as usize) {
                        s.partial = !s.complete;
                    }
                }
                for w in cache.windows(t.ih.0) {
                    for p in w.clone() {
                        if let Some(s) = states.get_mut(p as usize) {
                            let pri = if p == w.start {
                                Priority::Now
                            } else {
                                Priority::Readahead
                            };
                            if pri == Priority::Now || s.priority == Priority::None {
                                s.priority = pri;
                            }
                        }
                    }
                }
            }
            None => {
                // One copy of librqbit's bitfield for all pieces (not one per piece).
                let haves = t
                    .live_now()
                    .and_then(|live| librqbit_haves(&live.handle, &swarm.api));
                for (s, have) in states.iter_mut().zip(haves.unwrap_or_default()) {
                    s.complete = have;
                }
            }
        }
        Some(states)
    }

    fn torrent_status(&self, t: &Arc<Torrent>) -> TorrentStatus {
        let info = t.info();
        let states = self.piece_states(t).unwrap_or_default();
        let mut st = TorrentStatus {
            infohash: t.ih.to_string(),
            name: info.as_ref().map(|i| i.name.clone()),
            total_length: info.as_ref().map(|i| i.total_length),
            piece_length: info.as_ref().map(|i| i.piece_length),
            num_pieces: info.as_ref().map_or(0, |i| i.num_pieces),
            completed_pieces: states.iter().filter(|s| s.complete).count() as u32,
            state: "idle".into(),
            references: t.refs.load(Ordering::SeqCst),
            readers: self
                .inner
                .swarm
                .storage
                .cache()
                .map_or(0, |c| c.windows(t.ih.0).len()),
            peers: Peers::default(),
            download_bytes_per_sec: 0.0,
            upload_bytes_per_sec: 0.0,
            downloaded_bytes: 0,
            uploaded_bytes: 0,
            trackers: t.trackers(),
            piece_runs: piece_runs(&states),
        };
        if let Some(live) = t.live_now() {
            let stats = live.handle.stats();
            st.state = stats.state.to_string();
            st.uploaded_bytes = stats.uploaded_bytes;
            if let Some(l) = stats.live {
                let p = &l.snapshot.peer_stats;
                st.peers = Peers {
                    live: p.live,
                    connecting: p.connecting,
                    queued: p.queued,
                    seen: p.seen,
                    dead: p.dead,
                };
                st.downloaded_bytes = l.snapshot.fetched_bytes;
                st.download_bytes_per_sec = l.download_speed.mbps * 1024.0 * 1024.0;
                st.upload_bytes_per_sec = l.upload_speed.mbps * 1024.0 * 1024.0;
            }
        }
        st
    }

    /// A snapshot of the daemon and every torrent in memory.
    pub fn status(&self) -> Status {
        let swarm = &self.inner.swarm;
        Status {
            listen_port: self.listen_addr().port(),
            dht: swarm.session.get_dht().map(|d| {
                let s = d.stats();
                DhtStatus {
                    id: hex::encode(s.id.0),
                    routing_table_size: s.routing_table_size + s.routing_table_size_v6,
                    outstanding_requests: s.outstanding_requests,
                }
            }),
            cache: self.cache_usage().map(|u| CacheStatus {
                capacity: u.capacity,
                bytes: u.indexed_bytes + u.pinned_bytes,
                pieces: u.indexed_pieces + u.pinned_pieces,
                pinned_bytes: u.pinned_bytes,
                hits: u.hits,
                misses: u.misses,
                evictions: u.evictions,
            }),
            open_readers: swarm.stats.open_readers.load(Ordering::Relaxed),
            bytes_served: swarm.stats.bytes_served.load(Ordering::Relaxed),
            repairs: swarm.stats.repairs.load(Ordering::Relaxed),
            torrents: self
                .torrents()
                .iter()
                .map(|t| self.torrent_status(t))
                .collect(),
        }
    }

    /// The torrent with this infohash, if in memory.
    pub fn torrent(&self, ih: &InfoHash) -> Option<Arc<Torrent>> {
        self.inner.registry.get(ih)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_encode_like_the_original() {
        let c = PieceState {
            complete: true,
            partial: false,
            priority: Priority::None,
        };
        let n = PieceState {
            complete: false,
            partial: false,
            priority: Priority::None,
        };
        let r = PieceState {
            priority: Priority::Readahead,
            ..n
        };
        assert_eq!(piece_runs(&[c, c, r, n, n, n]), "2C 1R 3");
        assert_eq!(piece_runs(&[]), "");
    }
}
