//! The metainfo store: `torrents/<infohash>.torrent` under the data dir.
//!
//! A torrent's metainfo outlives the torrent in the session and the process, so a torrent that
//! was ever resolved never waits for metadata from peers again and `/info` answers at once.

use std::{
    io,
    path::{Path, PathBuf},
};

use crate::{
    ident::InfoHash,
    metainfo::{build_torrent, parse_metainfo, Metainfo},
};

/// Reads and writes `<dir>/<hex>.torrent` files.
pub struct MetaStore {
    dir: PathBuf,
}

impl MetaStore {
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, ih: &InfoHash) -> PathBuf {
        self.dir.join(format!("{ih}.torrent"))
    }

    /// The stored metainfo, if any; an unreadable or corrupt file counts as absent (and is
    /// logged), so a request falls back to asking peers.
    pub fn load(&self, ih: &InfoHash) -> Option<Metainfo> {
        let bytes = match std::fs::read(self.path(ih)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(%ih, "cannot read stored metainfo: {e}");
                return None;
            }
        };
        match parse_metainfo(&bytes) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(%ih, "ignoring corrupt stored metainfo: {e}");
                None
            }
        }
    }

    /// Writes atomically (tmp + rename): a crash never leaves a truncated file.
    pub fn save(&self, ih: &InfoHash, m: &Metainfo) -> io::Result<()> {
        let path = self.path(ih);
        let tmp = path.with_extension("torrent.tmp");
        std::fs::write(&tmp, build_torrent(m))?;
        std::fs::rename(&tmp, &path)
    }

    /// Every infohash with a stored metainfo.
    pub fn list(&self) -> Vec<InfoHash> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<InfoHash> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name();
                let hex = name.to_str()?.strip_suffix(".torrent")?;
                crate::ident::parse_hex(hex).ok()
            })
            .collect();
        out.sort();
        out
    }
}
