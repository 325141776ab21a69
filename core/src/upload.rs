//! `/upload`: a torrent made from uploaded files, its pieces stored as if downloaded.
//!
//! The original builds a multi-file v1 torrent from the files of a multipart form (piece length
//! from 16 KiB up, doubled while there would be 2048 or more pieces), saves the bare metainfo to
//! its metainfo cache, writes every piece straight into storage marked complete, and answers the
//! metainfo with one `-implicitTracker` tier (and a node per public IP) added. It never adds the
//! torrent: a later request finds the metainfo in the store and the data in storage.
//!
//! Here the HTTP side streams each uploaded file to a temporary file ([`UploadDir`]); then
//! [`Engine::import_upload`] reads them once to hash the pieces (the infohash is known only at
//! the end), then once more to write each piece into the piece cache (or, with `-fileDir`, moves
//! the files to `DIR/<ih>/<name>/…`), and stores everything under the infohash.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, Read},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
};

use bytes::Bytes;
use confluence_cache::Key;
use sha1::{Digest, Sha1};
use tracing::{info, warn};

use crate::{
    bencode::{self, Value},
    engine::Engine,
    ident::InfoHash,
    metainfo::{parse_info, Info, Metainfo},
};

/// `created by` of uploaded torrents, as the original writes it.
pub const CREATED_BY: &str = "anacrolix/confluence upload";

/// The smallest piece length; it doubles while the torrent would have 2048 pieces or more
/// (anacrolix `metainfo.ChoosePieceLength`).
pub const MIN_PIECE_LENGTH: u64 = 16 * 1024;
const TARGET_PIECE_COUNT_MAX: u64 = 2048;

/// The largest piece length chosen: one piece is buffered in memory while an upload is hashed
/// and stored. Uploads above 32 GiB get more than 2048 pieces instead of larger ones.
pub const MAX_PIECE_LENGTH: u64 = 16 << 20;

/// The piece length the original chooses for `total` bytes, at most [`MAX_PIECE_LENGTH`].
pub fn choose_piece_length(total: u64) -> u64 {
    let mut piece_length = MIN_PIECE_LENGTH;
    let mut pieces = total / piece_length;
    while pieces >= TARGET_PIECE_COUNT_MAX && piece_length < MAX_PIECE_LENGTH {
        piece_length <<= 1;
        pieces >>= 1;
    }
    piece_length
}

/// One uploaded file: its path in the torrent and the temporary file holding its bytes.
#[derive(Debug, Clone)]
pub struct UploadFile {
    /// Path components, in the torrent (the form's `filename` split on `/`).
    pub path: Vec<String>,
    /// Where the bytes are now (inside an [`UploadDir`]).
    pub data: PathBuf,
    pub length: u64,
}

/// Why an upload was refused. All are the client's doing (→ 400) except [`UploadError::Io`].
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("no files uploaded")]
    NoFiles,
    /// A path component the torrent cannot carry safely (empty, `.`, `..`, or with NUL).
    #[error("bad file path {0:?}: empty, \".\" or \"..\" components are not allowed")]
    BadPath(String),
    #[error("bad torrent name {0:?}")]
    BadName(String),
    #[error("storing upload: {0}")]
    Io(#[from] io::Error),
}

impl UploadError {
    /// True when the request was at fault (400), false for a server-side failure (500).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, UploadError::Io(_))
    }
}

/// The result of an upload.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub ih: InfoHash,
    pub info: Arc<Info>,
    /// Seconds since the epoch, as written in the metainfo.
    pub creation_date: i64,
    /// Pieces written to the piece cache (0 with `-fileDir`).
    pub pieces_stored: u32,
}

/// A temporary directory for one upload's files, removed when dropped.
#[derive(Debug)]
pub struct UploadDir {
    path: PathBuf,
}

impl UploadDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UploadDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                warn!(path = ?self.path, "cannot remove upload scratch dir: {e}");
            }
        }
    }
}

static UPLOAD_SEQ: AtomicU64 = AtomicU64::new(0);
static UPLOADS_SWEPT: AtomicBool = AtomicBool::new(false);

/// Checks one path component for a torrent file path.
fn component_ok(c: &str) -> bool {
    !c.is_empty() && c != "." && c != ".." && !c.contains('\0')
}

/// The info dict of an uploaded torrent, bencoded as the original's Go structs are: always
/// multi-file; each file with `length`, `path` and `path.utf-8`; keys sorted.
pub fn upload_info_bytes(
    name: &str,
    files: &[(Vec<String>, u64)],
    piece_length: u64,
    pieces: &[u8],
) -> Vec<u8> {
    let text = |s: &str| Value::Bytes(s.as_bytes().to_vec());
    let file_list = files
        .iter()
        .map(|(path, length)| {
            let comps = Value::List(path.iter().map(|c| text(c)).collect());
            let mut f = BTreeMap::new();
            f.insert(b"length".to_vec(), Value::Int(*length as i64));
            f.insert(b"path".to_vec(), comps.clone());
            f.insert(b"path.utf-8".to_vec(), comps);
            Value::Dict(f)
        })
        .collect();
    let mut d = BTreeMap::new();
    d.insert(b"files".to_vec(), Value::List(file_list));
    d.insert(b"name".to_vec(), text(name));
    d.insert(b"piece length".to_vec(), Value::Int(piece_length as i64));
    d.insert(b"pieces".to_vec(), Value::Bytes(pieces.to_vec()));
    bencode::encode(&Value::Dict(d))
}

/// An upload's info dict, built from its files without storing anything.
pub struct BuiltInfo {
    pub info_bytes: Vec<u8>,
    pub piece_length: u64,
    /// The SHA-1 of every piece, concatenated.
    pub pieces: Vec<u8>,
}

/// Checks an upload's name and paths and hashes every piece of `files` (in upload order): the
/// info dict `/upload` makes of them. Blocking (reads every byte). The same inputs always give
/// the same info, so a node can learn an upload's infohash before it decides where to store it.
pub fn build_upload_info(name: &str, files: &[UploadFile]) -> Result<BuiltInfo, UploadError> {
    if files.is_empty() {
        return Err(UploadError::NoFiles);
    }
    if name.contains('\0') || name.contains('/') || name == "." || name == ".." {
        return Err(UploadError::BadName(name.to_string()));
    }
    for f in files {
        if f.path.is_empty() || !f.path.iter().all(|c| component_ok(c)) {
            return Err(UploadError::BadPath(f.path.join("/")));
        }
    }
    let total: u64 = files.iter().map(|f| f.length).sum();
    let piece_length = choose_piece_length(total);
    // Every piece hashed (the infohash, which names the cache's data file, is only known at
    // the end).
    let mut pieces = Vec::with_capacity(20 * total.div_ceil(piece_length) as usize);
    let mut buf = vec![0u8; piece_length as usize];
    let mut reader = Concat::new(files);
    loop {
        let n = reader.fill(&mut buf)?;
        if n == 0 {
            break;
        }
        pieces.extend_from_slice(&Sha1::digest(&buf[..n]));
        if n < buf.len() {
            break;
        }
    }
    let listed: Vec<(Vec<String>, u64)> =
        files.iter().map(|f| (f.path.clone(), f.length)).collect();
    let info_bytes = upload_info_bytes(name, &listed, piece_length, &pieces);
    Ok(BuiltInfo {
        info_bytes,
        piece_length,
        pieces,
    })
}

/// The metainfo `/upload` answers: the info, `created by`, `creation date`, one announce tier
/// of `implicit_trackers` (an empty tier when there are none, as the original), and `nodes`
/// (`host:port` strings) when given.
pub fn upload_response(
    info_bytes: &[u8],
    creation_date: i64,
    implicit_trackers: &[String],
    nodes: &[String],
) -> Vec<u8> {
    let text = |s: &str| Value::Bytes(s.as_bytes().to_vec());
    let mut d = BTreeMap::new();
    d.insert(
        b"announce-list".to_vec(),
        Value::List(vec![Value::List(
            implicit_trackers.iter().map(|t| text(t)).collect(),
        )]),
    );
    d.insert(b"created by".to_vec(), text(CREATED_BY));
    if creation_date != 0 {
        d.insert(b"creation date".to_vec(), Value::Int(creation_date));
    }
    d.insert(b"info".to_vec(), Value::Raw(info_bytes.to_vec()));
    if !nodes.is_empty() {
        d.insert(
            b"nodes".to_vec(),
            Value::List(nodes.iter().map(|n| text(n)).collect()),
        );
    }
    bencode::encode(&Value::Dict(d))
}

/// Reads the files one after the other as one byte stream, a piece at a time.
struct Concat<'a> {
    files: &'a [UploadFile],
    next: usize,
    cur: Option<(File, u64)>,
}

impl<'a> Concat<'a> {
    fn new(files: &'a [UploadFile]) -> Self {
        Self {
            files,
            next: 0,
            cur: None,
        }
    }

    /// Fills `buf` completely unless the stream ends; returns the bytes read.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let Some((file, left)) = self.cur.as_mut() else {
                let Some(f) = self.files.get(self.next) else {
                    return Ok(done);
                };
                self.next += 1;
                self.cur = Some((File::open(&f.data)?, f.length));
                continue;
            };
            if *left == 0 {
                self.cur = None;
                continue;
            }
            let want = (buf.len() - done).min(usize::try_from(*left).unwrap_or(usize::MAX));
            let n = file.read(&mut buf[done..done + want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "an uploaded file is shorter than received",
                ));
            }
            *left -= n as u64;
            done += n;
        }
        Ok(done)
    }
}

impl Engine {
    /// The most file data one upload may carry: with the piece cache and a `-cacheCapacity`,
    /// that capacity (a larger upload would evict its own first pieces while being stored, so
    /// the torrent it answers with could not be served); `None` (only the disk bounds it) with
    /// `-fileDir` or `-unlimitedCache`.
    pub fn upload_limit(&self) -> Option<u64> {
        self.inner.swarm.storage.cache()?;
        self.inner.config.cache_capacity
    }

    /// A fresh scratch directory for one upload's files, under the data dir (removed on drop).
    /// Leftovers of an earlier process are removed on the first call.
    pub fn upload_dir(&self) -> io::Result<UploadDir> {
        let root = self.config().data_dir.join("uploads");
        let pid = std::process::id();
        if !UPLOADS_SWEPT.swap(true, Ordering::SeqCst) {
            if let Ok(rd) = std::fs::read_dir(&root) {
                let mine = format!("{pid}-");
                for e in rd.flatten() {
                    if !e.file_name().to_string_lossy().starts_with(&mine) {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let path = root.join(format!(
            "{pid}-{}",
            UPLOAD_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)?;
        Ok(UploadDir { path })
    }

    /// With `-seed`: the uploaded torrent joins the session now and seeds what was stored (it
    /// stays, as every torrent does with `-seed`). Without it, as the original, an upload waits
    /// for a first request.
    fn seed_upload(&self, ih: InfoHash, info: Arc<Info>) {
        let inner = &self.inner;
        let _rt = inner.swarm.rt.enter();
        // Its metadata comes along: never a pending torrent, so never capped.
        let (tref, _) = inner.registry.acquire_with_info(ih, Some(info));
        inner.swarm.rt.spawn(async move {
            match tref.live().await {
                Ok(_) => info!(ih = %tref.ih, "-seed: seeding the upload"),
                Err(e) => warn!(ih = %tref.ih, "-seed: cannot seed the upload: {e:#}"),
            }
        });
    }

    /// Builds the torrent of `files` (in upload order) named `name`, stores its bare metainfo,
    /// and stores its data: every piece into the piece cache as a verified piece, or with
    /// `-fileDir` the files under `DIR/<ih>/<name>/…`. Blocking (reads and writes every byte):
    /// call it from a blocking thread. The files' temporary data is consumed.
    pub fn import_upload(&self, name: &str, files: &[UploadFile]) -> Result<Uploaded, UploadError> {
        let built = build_upload_info(name, files)?;
        let (info_bytes, piece_length, pieces) =
            (built.info_bytes, built.piece_length, built.pieces);
        let total: u64 = files.iter().map(|f| f.length).sum();
        let mut buf = vec![0u8; piece_length as usize];
        let inner = &self.inner;
        let cache = inner.swarm.storage.cache().cloned();
        let info = Arc::new(
            parse_info(&info_bytes)
                .map_err(|e| io::Error::other(format!("the built info does not parse: {e}")))?,
        );
        let ih = info.info_hash;
        let creation_date = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);

        // The bare metainfo first, as the original (trackers and nodes are per run).
        let bare = Metainfo {
            info_bytes: Some(Bytes::copy_from_slice(&info_bytes)),
            creation_date: Some(creation_date),
            created_by: Some(CREATED_BY.into()),
            ..Metainfo::default()
        };
        if let Err(e) = inner.registry.save_metainfo(&ih, &bare) {
            warn!(%ih, "upload: cannot store metainfo: {e}");
            return Err(e.into());
        }

        let mut pieces_stored = 0;
        match &cache {
            Some(cache) => {
                // Second pass: each piece read again and written once, into the data file.
                let mut reader = Concat::new(files);
                loop {
                    let n = reader.fill(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    let key = Key {
                        ih: ih.0,
                        piece: pieces_stored,
                    };
                    let piece = &buf[..n];
                    let at = 20 * key.piece as usize;
                    if pieces.get(at..at + 20) != Some(&Sha1::digest(piece)[..]) {
                        return Err(io::Error::other(
                            "an uploaded file changed while it was being stored",
                        )
                        .into());
                    }
                    cache.store_slice(key, u64::from(key.piece) * piece_length, piece)?;
                    pieces_stored += 1;
                    if n < buf.len() {
                        break;
                    }
                }
            }
            None => {
                let folder = PathBuf::from(inner.swarm.storage.output_folder(&ih, Some(&info)));
                for (i, f) in files.iter().enumerate() {
                    let rel = info
                        .safe_relative_path(i)
                        .ok_or_else(|| UploadError::BadPath(f.path.join("/")))?;
                    let dest = folder.join(rel);
                    if let Some(parent) = dest.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    if std::fs::rename(&f.data, &dest).is_err() {
                        std::fs::copy(&f.data, &dest)?;
                    }
                }
            }
        }

        // A request already waiting for this torrent's info gets it now.
        if let Some(t) = self.torrent(&ih) {
            if t.info().is_none() {
                *t.creation_date.lock() = Some(creation_date);
                t.set_info(info.clone());
                t.stop_resolver();
            }
        }
        info!(%ih, name, files = files.len(), total, piece_length, "upload stored");
        if inner.config.seed {
            self.seed_upload(ih, info.clone());
        }
        Ok(Uploaded {
            ih,
            info,
            creation_date,
            pieces_stored,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_length_rule() {
        assert_eq!(choose_piece_length(0), 16 * 1024);
        assert_eq!(choose_piece_length(4_345_230), 16 * 1024);
        // 2047 pieces of 16 KiB stay; 2048 double.
        assert_eq!(choose_piece_length(2047 * 16384 + 16383), 16384);
        assert_eq!(choose_piece_length(2048 * 16384), 32768);
        assert_eq!(choose_piece_length(64 << 20), 64 << 10);
        assert_eq!(choose_piece_length(10 << 30), 8 << 20);
        // The piece buffer is bounded: no 512 MiB piece for a 1 TiB upload.
        assert_eq!(choose_piece_length(32 << 30), 16 << 20);
        assert_eq!(choose_piece_length(1 << 40), MAX_PIECE_LENGTH);
        assert_eq!(choose_piece_length(u64::MAX), MAX_PIECE_LENGTH);
    }

    #[test]
    fn info_layout_matches_go() {
        let info = upload_info_bytes("n", &[(vec!["a".into(), "b".into()], 3)], 16384, &[7u8; 20]);
        let want = [
            &b"d5:filesld6:lengthi3e4:pathl1:a1:be10:path.utf-8l1:a1:beee4:name1:n12:piece lengthi16384e6:pieces20:"[..],
            &[7u8; 20],
            b"e",
        ]
        .concat();
        assert_eq!(info, want);
        let parsed = parse_info(&info).unwrap();
        assert!(parsed.is_multi_file());
        assert_eq!(parsed.files[0].path, "a/b");
    }

    #[test]
    fn response_layout() {
        let r = upload_response(b"de", 5, &[], &[]);
        assert_eq!(
            r,
            b"d13:announce-listllee10:created by27:anacrolix/confluence upload13:creation datei5e4:infodee"
        );
        let r = upload_response(b"de", 5, &["u1".into(), "u2".into()], &["1.2.3.4:5".into()]);
        let s = String::from_utf8(r).unwrap();
        assert!(s.starts_with("d13:announce-listll2:u12:u2ee"), "{s}");
        assert!(s.ends_with("4:infode5:nodesl9:1.2.3.4:5ee"), "{s}");
    }
}
