//! What the pages show, computed from the engine: one summary per known torrent, the cached
//! share of a byte range, a torrent's file tree, and its pieces as one letter each.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Mutex,
};

use confluence_core::{
    ident::InfoHash,
    metainfo::Info,
    status::{PieceState, Priority, TorrentStatus},
    Engine,
};
use serde::Serialize;

/// At most this many torrents are listed on `/` (the rest are counted).
pub const MAX_LISTED: usize = 1000;

/// One row of `/`.
#[derive(Serialize, Debug, Clone)]
pub struct Summary {
    pub ih: String,
    /// `None` while the info is not known.
    pub name: Option<String>,
    pub size: Option<u64>,
    pub files: usize,
    /// Bytes of verified pieces (0..=size).
    pub cached: u64,
    /// "idle" when not in the session.
    pub state: String,
    pub peers: u32,
    pub down: f64,
    pub up: f64,
    pub readers: usize,
}

/// The cache line of `/`.
#[derive(Serialize, Debug, Clone, Default)]
pub struct CacheLine {
    /// `None`: no piece cache (`-fileDir`).
    pub bytes: Option<u64>,
    pub capacity: Option<u64>,
    pub hits: u64,
    pub misses: u64,
    pub open_readers: usize,
}

/// Everything `/` shows (also its JSON, `/ui/torrents`).
#[derive(Serialize, Debug, Clone)]
pub struct Overview {
    pub cache: CacheLine,
    pub torrents: Vec<Summary>,
    /// Known torrents not listed (beyond [`MAX_LISTED`]).
    pub more: usize,
}

/// Bytes of `[offset, offset+len)` that lie in complete pieces.
pub fn cached_bytes(info: &Info, states: &[PieceState], offset: u64, len: u64) -> u64 {
    if len == 0 || info.piece_length == 0 {
        return 0;
    }
    let pl = info.piece_length;
    let end = offset + len;
    let (first, last) = (offset / pl, (end - 1) / pl);
    (first..=last)
        .filter(|&p| states.get(p as usize).is_some_and(|s| s.complete))
        .map(|p| end.min((p + 1) * pl) - offset.max(p * pl))
        .sum()
}

/// One letter per piece: `C` cached, `N` wanted now, `R` read ahead, `P` partly downloaded,
/// `E` evicted (in `evicted`), `.` nothing.
pub fn piece_letters(states: &[PieceState], evicted: &BTreeSet<u32>) -> String {
    states
        .iter()
        .enumerate()
        .map(|(i, s)| match (s.complete, s.priority, s.partial) {
            (true, _, _) => 'C',
            (_, Priority::Now, _) => 'N',
            (_, Priority::Readahead, _) => 'R',
            (_, _, true) => 'P',
            _ if evicted.contains(&(i as u32)) => 'E',
            _ => '.',
        })
        .collect()
}

/// What `/` needs of a torrent's info, remembered per infohash (an info never changes), so the
/// page's refresh does not re-read and re-parse stored metainfo every 2 s.
#[derive(Clone, Debug)]
struct Brief {
    name: String,
    size: u64,
    files: usize,
    piece_length: u64,
    num_pieces: u32,
}

/// Briefs remembered at most (the memo is emptied when full).
const MAX_BRIEFS: usize = 4 * MAX_LISTED;

static BRIEFS: Mutex<BTreeMap<InfoHash, Brief>> = Mutex::new(BTreeMap::new());

fn brief(engine: &Engine, ih: &InfoHash) -> Option<Brief> {
    let mut memo = BRIEFS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = memo.get(ih) {
        return Some(b.clone());
    }
    let info = engine.info_of(ih)?;
    let b = Brief {
        name: info.name.clone(),
        size: info.total_length,
        files: info.visible_files().count(),
        piece_length: info.piece_length,
        num_pieces: info.num_pieces,
    };
    if memo.len() >= MAX_BRIEFS {
        memo.clear();
    }
    memo.insert(*ih, b.clone());
    Some(b)
}

/// Bytes of a whole torrent in complete pieces (the last piece may be short).
fn cached_total(b: &Brief, states: &[PieceState]) -> u64 {
    let pl = b.piece_length;
    states
        .iter()
        .enumerate()
        .filter(|(_, s)| s.complete)
        .map(|(p, _)| pl.min(b.size.saturating_sub(p as u64 * pl)))
        .sum()
}

fn summary_of(engine: &Engine, ih: &InfoHash, live: Option<&TorrentStatus>) -> Summary {
    let b = brief(engine, ih);
    let cached = b.as_ref().map_or(0, |b| {
        cached_total(b, &engine.known_piece_states(ih, b.num_pieces))
    });
    Summary {
        ih: ih.to_string(),
        name: b.as_ref().map(|b| b.name.clone()),
        size: b.as_ref().map(|b| b.size),
        files: b.as_ref().map_or(0, |b| b.files),
        cached,
        state: live.map_or_else(|| "idle".into(), |t| t.state.clone()),
        peers: live.map_or(0, |t| t.peers.live),
        down: live.map_or(0.0, |t| t.download_bytes_per_sec),
        up: live.map_or(0.0, |t| t.upload_bytes_per_sec),
        readers: live.map_or(0, |t| t.readers),
    }
}

/// The overview of every known torrent, named ones first (by name), then by infohash.
pub fn overview(engine: &Engine) -> Overview {
    let st = engine.status();
    let live: BTreeMap<&str, &TorrentStatus> = st
        .torrents
        .iter()
        .map(|t| (t.infohash.as_str(), t))
        .collect();
    let known = engine.known();
    let more = known.len().saturating_sub(MAX_LISTED);
    let mut torrents: Vec<Summary> = known
        .iter()
        .take(MAX_LISTED)
        .map(|ih| summary_of(engine, ih, live.get(ih.to_string().as_str()).copied()))
        .collect();
    torrents.sort_by(|a, b| {
        (
            a.name.is_none(),
            a.name.as_deref().map(str::to_lowercase),
            &a.ih,
        )
            .cmp(&(
                b.name.is_none(),
                b.name.as_deref().map(str::to_lowercase),
                &b.ih,
            ))
    });
    let cache = match st.cache {
        Some(c) => CacheLine {
            bytes: Some(c.bytes),
            capacity: c.capacity,
            hits: c.hits,
            misses: c.misses,
            open_readers: st.open_readers,
        },
        None => CacheLine {
            open_readers: st.open_readers,
            ..CacheLine::default()
        },
    };
    Overview {
        cache,
        torrents,
        more,
    }
}

/// A node of a torrent's file tree: directories by name, then files (index into `info.files`).
#[derive(Default, Debug)]
pub struct Dir {
    pub dirs: BTreeMap<String, Dir>,
    pub files: Vec<usize>,
}

impl Dir {
    /// Total length of the files below.
    pub fn size(&self, info: &Info) -> u64 {
        self.files
            .iter()
            .map(|&i| info.files[i].length)
            .sum::<u64>()
            + self.dirs.values().map(|d| d.size(info)).sum::<u64>()
    }

    /// Cached bytes of the files below.
    pub fn cached(&self, info: &Info, states: &[PieceState]) -> u64 {
        self.files
            .iter()
            .map(|&i| cached_bytes(info, states, info.files[i].offset, info.files[i].length))
            .sum::<u64>()
            + self
                .dirs
                .values()
                .map(|d| d.cached(info, states))
                .sum::<u64>()
    }
}

/// The file tree of a torrent (single-file torrents: one file at the root), BEP 47 padding
/// files left out ([`Info::visible_files`]).
pub fn tree(info: &Info) -> Dir {
    let mut root = Dir::default();
    for (i, _) in info.visible_files() {
        let comps = &info.files[i].components;
        let mut d = &mut root;
        if info.multi_file && comps.len() > 1 {
            for c in &comps[..comps.len() - 1] {
                d = d.dirs.entry(c.clone()).or_default();
            }
        }
        d.files.push(i);
    }
    root
}

/// The last component of a file's display path.
pub fn file_name(info: &Info, i: usize) -> &str {
    let f = &info.files[i];
    if info.multi_file {
        f.components.last().map_or(f.path.as_str(), String::as_str)
    } else {
        f.path.as_str()
    }
}

/// How a browser can play a file, by extension: `Some("video")`, `Some("audio")` or `None`.
pub fn media_kind(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    match ext.as_str() {
        "mp4" | "m4v" | "mkv" | "webm" | "mov" | "ogv" => Some("video"),
        "mp3" | "m4a" | "aac" | "flac" | "ogg" | "oga" | "opus" | "wav" => Some("audio"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(complete: bool, priority: Priority, partial: bool) -> PieceState {
        PieceState {
            complete,
            partial,
            priority,
        }
    }

    #[test]
    fn letters_per_piece() {
        let states = [
            st(true, Priority::Now, false),
            st(false, Priority::Now, true),
            st(false, Priority::Readahead, false),
            st(false, Priority::None, true),
            st(false, Priority::None, false),
            st(false, Priority::None, false),
        ];
        let evicted: BTreeSet<u32> = [0, 5].into_iter().collect();
        assert_eq!(piece_letters(&states, &evicted), "CNRP.E");
    }

    #[test]
    fn media_kinds() {
        assert_eq!(media_kind("a.MP4"), Some("video"));
        assert_eq!(media_kind("x.flac"), Some("audio"));
        assert_eq!(media_kind("notes.txt"), None);
        assert_eq!(media_kind("mkv"), None);
    }
}
