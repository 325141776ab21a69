//! Torrent metadata: the v1 info dict and the surrounding metainfo file.
//!
//! [`Info`] answers the questions confluence's routes ask of a torrent
//! (which file a display path names, which pieces a byte range covers, how
//! long a piece is). [`Metainfo`] is what `POST /metainfo` accepts and
//! `GET /metainfo` produces; the info dict always travels as its raw bytes so
//! the infohash (SHA-1 of those bytes) never changes through a round trip.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use serde::Serialize;

use crate::bencode::{self, Value};
use crate::ident::InfoHash;

/// One file of a torrent, in info order (BEP 47 padding files included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Display path: components joined with `/` (lossy UTF-8). Multi-file
    /// torrents do not include the torrent name; single-file ones are the name.
    pub path: String,
    /// The components, each lossily converted to UTF-8.
    pub components: Vec<String>,
    /// The exact bytes of the display path, for matching request paths that
    /// percent-escape non-UTF-8 bytes.
    pub raw_path: Vec<u8>,
    pub length: u64,
    /// Byte offset of the file within the torrent's concatenated data.
    pub offset: u64,
    /// A BEP 47 padding file (`attr` contains `p`): part of the torrent's byte stream (and of
    /// librqbit's file indices) but never shown or addressable by path. See [`Info::visible_files`].
    pub pad: bool,
}

/// A validated v1 info dict plus its raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub info_hash: InfoHash,
    pub name: String,
    pub piece_length: u64,
    pub num_pieces: u32,
    pub piece_hashes: Vec<[u8; 20]>,
    pub files: Vec<FileEntry>,
    pub total_length: u64,
    pub private: bool,
    /// True when the info has a non-empty `files` list (display paths then
    /// leave out `name`, and on disk files live under a `name` directory).
    pub multi_file: bool,
    pub info_bytes: Bytes,
}

/// Why an info dict was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error(transparent)]
    Bencode(#[from] bencode::Error),
    #[error("trailing data after info dict")]
    TrailingData,
    #[error("info is not a dict")]
    NotDict,
    /// A required field is missing, or a field has the wrong type or value.
    #[error("missing or invalid {0:?}")]
    Field(&'static str),
    #[error("pieces length {0} is not a multiple of 20")]
    PiecesLength(usize),
    #[error("expected {expected} pieces for {total} bytes, got {got}")]
    PieceCount { expected: u64, total: u64, got: u64 },
    #[error("total length overflows")]
    Overflow,
    /// A BEP 52 v2-only torrent: no v1 `pieces`, which librqbit needs to download it.
    #[error("v2-only torrent (BEP 52) is not supported: it has no v1 piece hashes; use a hybrid or v1 torrent")]
    V2Only,
}

/// Parses and validates a v1 info dict given as its exact raw bytes.
pub fn parse_info(info_bytes: &[u8]) -> Result<Info, MetaError> {
    let (v, used) = bencode::decode_prefix(info_bytes)?;
    if used != info_bytes.len() {
        return Err(MetaError::TrailingData);
    }
    let d = v.as_dict().ok_or(MetaError::NotDict)?;
    let v2 = d.get(&b"meta version"[..]).and_then(Value::as_int) == Some(2)
        || d.contains_key(&b"file tree"[..]);
    if v2 && !d.contains_key(&b"pieces"[..]) {
        return Err(MetaError::V2Only);
    }

    let name_raw = best_bytes(d, b"name.utf-8", b"name").ok_or(MetaError::Field("name"))?;
    let piece_length = match d.get(&b"piece length"[..]).and_then(Value::as_int) {
        Some(n) if n > 0 => n as u64,
        _ => return Err(MetaError::Field("piece length")),
    };
    let pieces = d
        .get(&b"pieces"[..])
        .and_then(Value::as_bytes)
        .ok_or(MetaError::Field("pieces"))?;
    if pieces.len() % 20 != 0 {
        return Err(MetaError::PiecesLength(pieces.len()));
    }
    let piece_hashes: Vec<[u8; 20]> = pieces
        .chunks_exact(20)
        .map(|c| {
            let mut h = [0u8; 20];
            h.copy_from_slice(c);
            h
        })
        .collect();

    let multi = match d.get(&b"files"[..]) {
        None => None,
        Some(Value::List(l)) if l.is_empty() => None,
        Some(Value::List(l)) => Some(l),
        Some(_) => return Err(MetaError::Field("files")),
    };
    let mut files = Vec::new();
    let mut total: u64 = 0;
    match multi {
        Some(list) => {
            for f in list {
                let f = f.as_dict().ok_or(MetaError::Field("files"))?;
                let length = non_negative(f.get(&b"length"[..]))?;
                let comps = best_path(f)?;
                let mut entry = make_entry(&comps, length, total);
                entry.pad = is_pad_attr(f.get(&b"attr"[..]));
                files.push(entry);
                total = total.checked_add(length).ok_or(MetaError::Overflow)?;
            }
        }
        None => {
            let length = non_negative(d.get(&b"length"[..]))?;
            files.push(make_entry(&[name_raw], length, 0));
            total = length;
        }
    }
    if total > i64::MAX as u64 {
        return Err(MetaError::Overflow);
    }

    let got = piece_hashes.len() as u64;
    let expected = total.div_ceil(piece_length);
    if got != expected {
        return Err(MetaError::PieceCount {
            expected,
            total,
            got,
        });
    }
    let num_pieces = u32::try_from(got).map_err(|_| MetaError::Overflow)?;

    Ok(Info {
        info_hash: InfoHash::from_sha1_of(info_bytes),
        name: String::from_utf8_lossy(name_raw).into_owned(),
        piece_length,
        num_pieces,
        piece_hashes,
        files,
        total_length: total,
        private: d.get(&b"private"[..]).and_then(Value::as_int) == Some(1),
        multi_file: multi.is_some(),
        info_bytes: Bytes::copy_from_slice(info_bytes),
    })
}

/// `utf8_key` if it is a non-empty byte string, else `key` (empty if absent).
/// `None` only when `key` is present with the wrong type.
fn best_bytes<'a>(
    d: &'a BTreeMap<Vec<u8>, Value>,
    utf8_key: &[u8],
    key: &[u8],
) -> Option<&'a [u8]> {
    if let Some(b) = d
        .get(utf8_key)
        .and_then(Value::as_bytes)
        .filter(|b| !b.is_empty())
    {
        return Some(b);
    }
    match d.get(key) {
        None => Some(&[]),
        Some(v) => v.as_bytes(),
    }
}

/// A file's path components, preferring a non-empty `path.utf-8`.
fn best_path(f: &BTreeMap<Vec<u8>, Value>) -> Result<Vec<&[u8]>, MetaError> {
    fn comps(v: &Value) -> Option<Vec<&[u8]>> {
        v.as_list()?.iter().map(Value::as_bytes).collect()
    }
    if let Some(c) = f
        .get(&b"path.utf-8"[..])
        .and_then(comps)
        .filter(|c| !c.is_empty())
    {
        return Ok(c);
    }
    f.get(&b"path"[..])
        .and_then(comps)
        .ok_or(MetaError::Field("path"))
}

fn non_negative(v: Option<&Value>) -> Result<u64, MetaError> {
    match v.and_then(Value::as_int) {
        Some(n) if n >= 0 => Ok(n as u64),
        _ => Err(MetaError::Field("length")),
    }
}

/// BEP 47: a file whose `attr` string contains `p` is padding.
fn is_pad_attr(attr: Option<&Value>) -> bool {
    attr.and_then(Value::as_bytes)
        .is_some_and(|a| a.contains(&b'p'))
}

fn make_entry(comps: &[&[u8]], length: u64, offset: u64) -> FileEntry {
    let raw_path = comps.join(&b'/');
    FileEntry {
        path: String::from_utf8_lossy(&raw_path).into_owned(),
        components: comps
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect(),
        raw_path,
        length,
        offset,
        pad: false,
    }
}

impl Info {
    /// See [`Info::multi_file`].
    pub fn is_multi_file(&self) -> bool {
        self.multi_file
    }

    /// The files every front door shows (listings, mount, playlists, WebDAV, DLNA, pages): all
    /// but BEP 47 padding files, each with its index into [`Info::files`] (librqbit's index).
    /// The whole-torrent stream still includes the padding bytes.
    pub fn visible_files(&self) -> impl Iterator<Item = (usize, &FileEntry)> + '_ {
        self.files.iter().enumerate().filter(|(_, f)| !f.pad)
    }

    /// Index of the first visible file whose display path equals `path` byte for byte
    /// (a padding file is never found).
    pub fn find_file(&self, path: &[u8]) -> Option<usize> {
        self.visible_files()
            .find(|(_, f)| f.raw_path == path)
            .map(|(i, _)| i)
    }

    /// Whether file `i` exists and is not a padding file.
    pub fn is_visible(&self, i: usize) -> bool {
        self.files.get(i).is_some_and(|f| !f.pad)
    }

    /// The pieces overlapping bytes `offset..offset+len` of the torrent
    /// (empty for `len == 0`), clamped to the torrent's pieces.
    pub fn piece_range_of(&self, offset: u64, len: u64) -> Range<u32> {
        if self.piece_length == 0 {
            return 0..0;
        }
        let n = u64::from(self.num_pieces);
        let start = (offset / self.piece_length).min(n) as u32;
        if len == 0 {
            return start..start;
        }
        let end = offset
            .saturating_add(len)
            .div_ceil(self.piece_length)
            .min(n) as u32;
        start..end.max(start)
    }

    /// Length of `piece`: the piece length, shorter for the last piece, 0 past the end.
    pub fn piece_len(&self, piece: u32) -> u64 {
        if piece >= self.num_pieces {
            0
        } else if piece + 1 == self.num_pieces {
            let before = self.piece_length.saturating_mul(u64::from(piece));
            self.total_length
                .saturating_sub(before)
                .min(self.piece_length)
        } else {
            self.piece_length
        }
    }

    /// The file's components as a relative path safe to create on disk, or
    /// `None` if any component is empty, `.`, `..`, absolute, or contains
    /// `/` or NUL. Multi-file paths do not include the torrent name.
    pub fn safe_relative_path(&self, file: usize) -> Option<PathBuf> {
        let comps = &self.files.get(file)?.components;
        if comps.is_empty() {
            return None;
        }
        let mut out = PathBuf::new();
        for c in comps {
            if c.is_empty() || c.contains('/') || c.contains('\0') {
                return None;
            }
            // Exactly one normal component: rules out ".", "..", roots and prefixes.
            let mut parts = Path::new(c).components();
            match (parts.next(), parts.next()) {
                (Some(Component::Normal(p)), None) if p == c.as_str() => out.push(p),
                _ => return None,
            }
        }
        Some(out)
    }
}

/// A metainfo file's contents as confluence uses them. The info dict is kept
/// raw (`None` when absent); everything else is optional and lenient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metainfo {
    pub info_bytes: Option<Bytes>,
    pub announce_list: Vec<Vec<String>>,
    pub url_list: Vec<String>,
    /// DHT nodes as `host:port` (IPv6 hosts in brackets).
    pub nodes: Vec<String>,
    pub creation_date: Option<i64>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
}

/// Parses a metainfo body: one bencoded dict, trailing bytes ignored.
/// Unknown keys and optional keys of the wrong type are ignored.
///
/// Trackers: `announce-list` is used when it holds any URL, with `announce`
/// appended as an extra last tier if it is not already listed; otherwise
/// `announce` alone becomes the only tier. (Go's `UpvertedAnnounceList`
/// would drop `announce` entirely in the first case.)
pub fn parse_metainfo(body: &[u8]) -> Result<Metainfo, bencode::Error> {
    let top = bencode::decode(body)?;
    let d = top.as_dict().ok_or(bencode::Error::ExpectedDict)?;
    let text = |key: &[u8]| d.get(key).and_then(Value::as_bytes).map(lossy);

    let mut announce_list: Vec<Vec<String>> = d
        .get(&b"announce-list"[..])
        .and_then(Value::as_list)
        .map(|tiers| {
            tiers
                .iter()
                .filter_map(Value::as_list)
                .map(|tier| tier.iter().filter_map(Value::as_bytes).map(lossy).collect())
                .collect()
        })
        .unwrap_or_default();
    if let Some(announce) = text(b"announce").filter(|a| !a.is_empty()) {
        if !has_url(&announce_list) {
            announce_list = vec![vec![announce]];
        } else if !announce_list.iter().flatten().any(|u| *u == announce) {
            announce_list.push(vec![announce]);
        }
    }

    let url_list = match d.get(&b"url-list"[..]) {
        Some(Value::Bytes(b)) if !b.is_empty() => vec![lossy(b)],
        Some(Value::List(l)) => l
            .iter()
            .filter_map(Value::as_bytes)
            .filter(|b| !b.is_empty())
            .map(lossy)
            .collect(),
        _ => Vec::new(),
    };

    let nodes = d
        .get(&b"nodes"[..])
        .and_then(Value::as_list)
        .map(|l| l.iter().filter_map(node_addr).collect())
        .unwrap_or_default();

    Ok(Metainfo {
        info_bytes: bencode::raw_dict_value(body, b"info")?.map(Bytes::copy_from_slice),
        announce_list,
        url_list,
        nodes,
        creation_date: d.get(&b"creation date"[..]).and_then(Value::as_int),
        comment: text(b"comment"),
        created_by: text(b"created by"),
    })
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn has_url(tiers: &[Vec<String>]) -> bool {
    tiers.iter().flatten().any(|u| !u.is_empty())
}

/// A `[host, port]` node entry as `host:port` (Go's `net.JoinHostPort`).
fn node_addr(v: &Value) -> Option<String> {
    match v.as_list()? {
        [host, port] => {
            let host = std::str::from_utf8(host.as_bytes()?).ok()?;
            let port = port.as_int()?;
            Some(if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            })
        }
        _ => None,
    }
}

/// The bencoded `.torrent` confluence serves: `announce-list` (only if some
/// tier has a URL), `comment`, `created by`, `creation date`, `info` (raw),
/// `url-list`. Empty values are omitted; `announce` and `nodes` never appear.
pub fn build_torrent(m: &Metainfo) -> Vec<u8> {
    let mut d = BTreeMap::new();
    let mut put = |k: &str, v: Value| {
        d.insert(k.as_bytes().to_vec(), v);
    };
    let bytes = |s: &str| Value::Bytes(s.as_bytes().to_vec());
    if has_url(&m.announce_list) {
        let tiers = m
            .announce_list
            .iter()
            .map(|t| Value::List(t.iter().map(|u| bytes(u)).collect()));
        put("announce-list", Value::List(tiers.collect()));
    }
    if let Some(c) = m.comment.as_deref().filter(|c| !c.is_empty()) {
        put("comment", bytes(c));
    }
    if let Some(c) = m.created_by.as_deref().filter(|c| !c.is_empty()) {
        put("created by", bytes(c));
    }
    if let Some(t) = m.creation_date.filter(|&t| t != 0) {
        put("creation date", Value::Int(t));
    }
    if let Some(info) = m.info_bytes.as_ref().filter(|i| !i.is_empty()) {
        put("info", Value::Raw(info.to_vec()));
    }
    if !m.url_list.is_empty() {
        put(
            "url-list",
            Value::List(m.url_list.iter().map(|u| bytes(u)).collect()),
        );
    }
    bencode::encode(&Value::Dict(d))
}

/// The JSON form of `GET /metainfo` (without the trailing newline), with the
/// original's key order and omissions: info (base64), announceList (empty
/// tiers as `null`), nodes, creationDate, comment, createdBy, urlList.
pub fn to_json(m: &Metainfo) -> String {
    let mut fields: Vec<(&str, String)> = Vec::new();
    if let Some(info) = m.info_bytes.as_ref().filter(|i| !i.is_empty()) {
        fields.push(("info", go_json(&data_encoding::BASE64.encode(info))));
    }
    if has_url(&m.announce_list) {
        let tiers: Vec<Option<&Vec<String>>> = m
            .announce_list
            .iter()
            .map(|t| Some(t).filter(|t| !t.is_empty()))
            .collect();
        fields.push(("announceList", go_json(&tiers)));
    }
    if !m.nodes.is_empty() {
        fields.push(("nodes", go_json(&m.nodes)));
    }
    if let Some(t) = m.creation_date.filter(|&t| t != 0) {
        fields.push(("creationDate", t.to_string()));
    }
    if let Some(c) = m.comment.as_deref().filter(|c| !c.is_empty()) {
        fields.push(("comment", go_json(c)));
    }
    if let Some(c) = m.created_by.as_deref().filter(|c| !c.is_empty()) {
        fields.push(("createdBy", go_json(c)));
    }
    if !m.url_list.is_empty() {
        fields.push(("urlList", go_json(&m.url_list)));
    }
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", go_json(k)))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// JSON as Go's `encoding/json` writes it: like serde_json, but `<`, `>`,
/// `&`, U+2028 and U+2029 are escaped. These only occur inside strings, so
/// replacing them in the output is safe.
fn go_json<T: Serialize + ?Sized>(v: &T) -> String {
    let s = serde_json::to_string(v).unwrap_or_else(|_| "null".into());
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::encode;

    fn b(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    fn dict(pairs: Vec<(&str, Value)>) -> Value {
        Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    fn pieces(total: u64, pl: u64) -> Value {
        Value::Bytes(vec![7u8; (total.div_ceil(pl) * 20) as usize])
    }

    fn single(name: &str, len: u64, pl: u64) -> Vec<u8> {
        encode(&dict(vec![
            ("name", b(name)),
            ("length", Value::Int(len as i64)),
            ("piece length", Value::Int(pl as i64)),
            ("pieces", pieces(len, pl)),
        ]))
    }

    fn multi(files: &[(&[&str], u64)], pl: u64) -> Vec<u8> {
        let total: u64 = files.iter().map(|f| f.1).sum();
        let list = files
            .iter()
            .map(|(p, len)| {
                let path = Value::List(p.iter().map(|c| b(c)).collect());
                dict(vec![("length", Value::Int(*len as i64)), ("path", path)])
            })
            .collect();
        encode(&dict(vec![
            ("name", b("top")),
            ("files", Value::List(list)),
            ("piece length", Value::Int(pl as i64)),
            ("pieces", pieces(total, pl)),
        ]))
    }

    #[test]
    fn single_file() {
        let raw = single("big.bin", 1000, 256);
        let info = parse_info(&raw).unwrap();
        assert_eq!(info.info_hash, InfoHash::from_sha1_of(&raw));
        assert_eq!(
            (info.name.as_str(), info.num_pieces, info.total_length),
            ("big.bin", 4, 1000)
        );
        assert_eq!(info.files.len(), 1);
        assert_eq!(
            (info.files[0].path.as_str(), info.files[0].offset),
            ("big.bin", 0)
        );
        assert_eq!(info.find_file(b"big.bin"), Some(0));
        assert_eq!(info.find_file(b"/big.bin"), None);
        assert_eq!(
            (info.piece_len(0), info.piece_len(3), info.piece_len(4)),
            (256, 232, 0)
        );
        assert_eq!(info.safe_relative_path(0), Some(PathBuf::from("big.bin")));
        assert!(!info.private);
        assert!(!info.is_multi_file());
        assert_eq!(&info.info_bytes[..], &raw[..]);
    }

    #[test]
    fn multi_file_paths_and_ranges() {
        let files: &[(&[&str], u64)] = &[
            (&["empty.bin"], 0),
            (&["d", "a.bin"], 300),
            (&[".pad", "212"], 212),
            (&["z"], 1),
        ];
        let info = parse_info(&multi(files, 256)).unwrap();
        let paths: Vec<_> = info
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.length, f.offset))
            .collect();
        assert_eq!(
            paths,
            [
                ("empty.bin", 0, 0),
                ("d/a.bin", 300, 0),
                (".pad/212", 212, 300),
                ("z", 1, 512)
            ]
        );
        assert_eq!(info.name, "top");
        assert!(info.is_multi_file());
        assert_eq!(info.num_pieces, 3);
        assert_eq!(info.find_file(b"d/a.bin"), Some(1));
        assert_eq!(info.find_file(b"top/d/a.bin"), None);
        assert_eq!(info.find_file(b"d"), None);
        assert_eq!(info.piece_range_of(0, 0), 0..0);
        assert_eq!(info.piece_range_of(0, 300), 0..2);
        assert_eq!(info.piece_range_of(512, 1), 2..3);
        assert_eq!(info.piece_range_of(256, 256), 1..2);
        assert_eq!(info.piece_range_of(u64::MAX, u64::MAX), 3..3);
        assert_eq!(info.piece_len(2), 1);
        assert_eq!(info.safe_relative_path(1), Some(PathBuf::from("d/a.bin")));
        assert_eq!(info.safe_relative_path(9), None);
    }

    #[test]
    fn padding_files_hidden_and_v2_only_rejected() {
        let file = |path: &[&str], len: i64, attr: Option<&str>| {
            let mut f = vec![
                ("length", Value::Int(len)),
                ("path", Value::List(path.iter().map(|c| b(c)).collect())),
            ];
            if let Some(a) = attr {
                f.push(("attr", b(a)));
            }
            dict(f)
        };
        let raw = encode(&dict(vec![
            ("name", b("h")),
            (
                "files",
                Value::List(vec![
                    file(&["a.bin"], 10, None),
                    file(&[".pad", "6"], 6, Some("p")),
                    file(&["b.bin"], 16, Some("x")),
                    file(&["d", "pad-like"], 1, Some("hp")),
                ]),
            ),
            ("piece length", Value::Int(16)),
            ("pieces", pieces(33, 16)),
        ]));
        let info = parse_info(&raw).unwrap();
        assert_eq!(info.files.len(), 4, "librqbit's indices keep every file");
        assert_eq!(info.total_length, 33, "the byte stream keeps the padding");
        let pads: Vec<bool> = info.files.iter().map(|f| f.pad).collect();
        assert_eq!(pads, [false, true, false, true]);
        let visible: Vec<_> = info
            .visible_files()
            .map(|(i, f)| (i, f.path.as_str(), f.offset))
            .collect();
        assert_eq!(visible, [(0, "a.bin", 0), (2, "b.bin", 16)]);
        assert_eq!(info.find_file(b".pad/6"), None);
        assert_eq!(info.find_file(b"d/pad-like"), None);
        assert_eq!(info.find_file(b"b.bin"), Some(2));
        assert!(info.is_visible(2) && !info.is_visible(1) && !info.is_visible(9));

        let v2_only = encode(&dict(vec![
            ("name", b("v2")),
            ("meta version", Value::Int(2)),
            ("piece length", Value::Int(16384)),
            ("file tree", dict(vec![])),
        ]));
        let err = parse_info(&v2_only).unwrap_err();
        assert_eq!(err, MetaError::V2Only);
        assert!(err.to_string().contains("v2-only"), "{err}");
    }

    #[test]
    fn utf8_keys_preferred_and_raw_bytes_kept() {
        let f1 = dict(vec![
            ("length", Value::Int(1)),
            ("path", Value::List(vec![Value::Bytes(vec![0xff, b'x'])])),
        ]);
        let f2 = dict(vec![
            ("length", Value::Int(1)),
            ("path", Value::List(vec![b("legacy")])),
            ("path.utf-8", Value::List(vec![b("ünï"), b("ok")])),
        ]);
        let raw = encode(&dict(vec![
            ("name", b("n")),
            ("name.utf-8", b("ñ")),
            ("files", Value::List(vec![f1, f2])),
            ("piece length", Value::Int(16)),
            ("pieces", pieces(2, 16)),
            ("private", Value::Int(1)),
        ]));
        let info = parse_info(&raw).unwrap();
        assert_eq!(info.name, "ñ");
        assert!(info.private);
        assert_eq!(info.files[0].path, "\u{fffd}x");
        assert_eq!(info.find_file(&[0xff, b'x']), Some(0));
        assert_eq!(info.find_file("\u{fffd}x".as_bytes()), None);
        assert_eq!(info.files[1].path, "ünï/ok");
        assert_eq!(info.find_file("ünï/ok".as_bytes()), Some(1));
    }

    #[test]
    fn unsafe_paths_rejected() {
        for bad in [&["..", "x"][..], &["."], &[""], &["a/b"], &["a\0b"], &[]] {
            let raw = multi(&[(&["ok"], 1), (bad, 1)], 16);
            let info = parse_info(&raw).unwrap();
            assert_eq!(info.safe_relative_path(0), Some(PathBuf::from("ok")));
            assert_eq!(info.safe_relative_path(1), None, "{bad:?}");
        }
        assert_eq!(
            parse_info(&single("/etc/passwd", 1, 16))
                .unwrap()
                .safe_relative_path(0),
            None
        );
        assert_eq!(
            parse_info(&single("", 1, 16))
                .unwrap()
                .safe_relative_path(0),
            None
        );
    }

    #[test]
    fn validation_errors() {
        let with = |k: &str, v: Value| {
            let mut d = decode_dict(&single("x", 100, 16));
            d.insert(k.as_bytes().to_vec(), v);
            parse_info(&encode(&Value::Dict(d)))
        };
        assert_eq!(
            with("piece length", Value::Int(0)),
            Err(MetaError::Field("piece length"))
        );
        assert_eq!(
            with("pieces", Value::Bytes(vec![0; 21])),
            Err(MetaError::PiecesLength(21))
        );
        assert!(matches!(
            with("pieces", Value::Bytes(vec![0; 20])),
            Err(MetaError::PieceCount { expected: 7, .. })
        ));
        assert_eq!(
            with("length", Value::Int(-1)),
            Err(MetaError::Field("length"))
        );
        assert_eq!(with("name", Value::Int(1)), Err(MetaError::Field("name")));
        assert_eq!(with("files", b("x")), Err(MetaError::Field("files")));
        assert_eq!(parse_info(b"le"), Err(MetaError::NotDict));
        assert_eq!(
            parse_info(b""),
            Err(MetaError::Bencode(bencode::Error::Eof))
        );
        let mut trailing = single("x", 1, 16);
        trailing.push(b'x');
        assert_eq!(parse_info(&trailing), Err(MetaError::TrailingData));
        // Zero-length torrents have zero pieces.
        assert_eq!(parse_info(&single("x", 0, 16)).unwrap().num_pieces, 0);
        let file = |len: i64| {
            dict(vec![
                ("length", Value::Int(len)),
                ("path", Value::List(vec![b("a")])),
            ])
        };
        let overflow = |n: usize| {
            encode(&dict(vec![
                (
                    "files",
                    Value::List((0..n).map(|_| file(i64::MAX)).collect()),
                ),
                ("piece length", Value::Int(1)),
                ("pieces", b("")),
            ]))
        };
        assert_eq!(parse_info(&overflow(2)), Err(MetaError::Overflow));
        assert_eq!(parse_info(&overflow(3)), Err(MetaError::Overflow));
    }

    fn decode_dict(raw: &[u8]) -> BTreeMap<Vec<u8>, Value> {
        bencode::decode(raw).unwrap().as_dict().unwrap().clone()
    }

    #[test]
    fn metainfo_parse_and_trackers() {
        let info = single("x", 1, 16);
        let body = encode(&dict(vec![
            ("announce", b("http://a/")),
            ("info", Value::Raw(info.clone())),
            ("url-list", b("https://ws/")),
            (
                "nodes",
                Value::List(vec![
                    Value::List(vec![b("1.2.3.4"), Value::Int(6881)]),
                    Value::List(vec![b("::1"), Value::Int(1)]),
                    b("junk"),
                ]),
            ),
            ("creation date", Value::Int(5)),
            ("comment", Value::Int(3)),
            ("created by", b("me")),
        ]));
        let m = parse_metainfo(&body).unwrap();
        assert_eq!(m.info_bytes.as_deref(), Some(&info[..]));
        assert_eq!(m.announce_list, vec![vec!["http://a/".to_string()]]);
        assert_eq!(m.url_list, vec!["https://ws/"]);
        assert_eq!(m.nodes, vec!["1.2.3.4:6881", "[::1]:1"]);
        assert_eq!(
            (m.creation_date, m.comment, m.created_by.as_deref()),
            (Some(5), None, Some("me"))
        );

        let tiers = |t: &[&[&str]]| {
            Value::List(
                t.iter()
                    .map(|t| Value::List(t.iter().map(|u| b(u)).collect()))
                    .collect(),
            )
        };
        let both = |announce: &str| {
            let body = encode(&dict(vec![
                ("announce", b(announce)),
                ("announce-list", tiers(&[&["u1", "u2"], &[], &["u3"]])),
            ]));
            parse_metainfo(&body).unwrap().announce_list
        };
        assert_eq!(both("u3"), vec![vec!["u1", "u2"], vec![], vec!["u3"]]);
        assert_eq!(
            both("new"),
            vec![vec!["u1", "u2"], vec![], vec!["u3"], vec!["new"]]
        );
        let only_empty = encode(&dict(vec![
            ("announce", b("a")),
            ("announce-list", tiers(&[&[]])),
        ]));
        assert_eq!(
            parse_metainfo(&only_empty).unwrap().announce_list,
            vec![vec!["a"]]
        );
        let url_list = encode(&dict(vec![(
            "url-list",
            Value::List(vec![b("x"), Value::Int(1), b("y")]),
        )]));
        assert_eq!(parse_metainfo(&url_list).unwrap().url_list, vec!["x", "y"]);
    }

    #[test]
    fn metainfo_errors_and_leniency() {
        assert_eq!(parse_metainfo(b"").unwrap_err().to_string(), "EOF");
        assert_eq!(parse_metainfo(b"le"), Err(bencode::Error::ExpectedDict));
        assert_eq!(parse_metainfo(b"i1e"), Err(bencode::Error::ExpectedDict));
        let m = parse_metainfo(b"de trailing junk").unwrap();
        assert_eq!(m, Metainfo::default());
        let m = parse_metainfo(b"d13:announce-listi1e4:infoi3ee").unwrap();
        assert_eq!(m.info_bytes.as_deref(), Some(&b"i3e"[..]));
        assert!(m.announce_list.is_empty());
    }

    fn sample() -> Metainfo {
        Metainfo {
            info_bytes: Some(Bytes::from_static(b"d4:name1:xe")),
            announce_list: vec![vec!["udp://t.example:1337/announce".into()], vec![]],
            url_list: vec!["https://ws.example/".into()],
            nodes: vec![],
            creation_date: Some(1719800000),
            comment: Some("dynamic metainfo from client".into()),
            created_by: Some("https://github.com/anacrolix/torrent".into()),
        }
    }

    #[test]
    fn build_torrent_layout() {
        let out = build_torrent(&sample());
        let expected = "d13:announce-listll29:udp://t.example:1337/announceelee7:comment28:dynamic metainfo from client\
                        10:created by36:https://github.com/anacrolix/torrent13:creation datei1719800000e\
                        4:infod4:name1:xe8:url-listl19:https://ws.example/ee";
        assert_eq!(String::from_utf8(out.clone()).unwrap(), expected);
        assert_eq!(
            bencode::raw_dict_value(&out, b"info").unwrap(),
            Some(&b"d4:name1:xe"[..])
        );
        let back = parse_metainfo(&out).unwrap();
        assert_eq!(back, sample());

        let mut bare = Metainfo {
            announce_list: vec![vec![], vec![]],
            ..Metainfo::default()
        };
        assert_eq!(build_torrent(&bare), b"de");
        bare.nodes = vec!["1.2.3.4:1".into()];
        assert_eq!(build_torrent(&bare), b"de");
    }

    #[test]
    fn json_layout() {
        let expected = "{\"info\":\"ZDQ6bmFtZTE6eGU=\",\"announceList\":[[\"udp://t.example:1337/announce\"],null],\
                        \"creationDate\":1719800000,\"comment\":\"dynamic metainfo from client\",\
                        \"createdBy\":\"https://github.com/anacrolix/torrent\",\"urlList\":[\"https://ws.example/\"]}";
        assert_eq!(to_json(&sample()), expected);
        assert_eq!(to_json(&Metainfo::default()), "{}");
        let m = Metainfo {
            nodes: vec!["n:1".into()],
            url_list: vec!["http://x/?a=1&b=<2>\u{2028}\"".into()],
            ..Metainfo::default()
        };
        assert_eq!(
            to_json(&m),
            "{\"nodes\":[\"n:1\"],\"urlList\":[\"http://x/?a=1\\u0026b=\\u003c2\\u003e\\u2028\\\"\"]}"
        );
    }

    /// Checks against the integration harness's torrents when they exist.
    #[test]
    fn harness_torrents() {
        let dir = Path::new("/tmp/confluence-swarm/torrents");
        let load = |name: &str| -> Option<Info> {
            let Ok(body) = std::fs::read(dir.join(name)) else {
                eprintln!("skipping {name}: not found in {}", dir.display());
                return None;
            };
            let m = parse_metainfo(&body).unwrap();
            let info = parse_info(m.info_bytes.as_deref().unwrap()).unwrap();
            assert_eq!(m.announce_list[0][0], "http://127.0.0.1:6969/announce");
            Some(info)
        };
        if let Some(info) = load("single.torrent") {
            assert_eq!(
                info.info_hash.to_string(),
                "b2c3b7512da2afa97c033aa9a76f97e173bab23a"
            );
            assert_eq!(
                (info.name.as_str(), info.total_length),
                ("big.bin", 67108864)
            );
            assert_eq!((info.piece_length, info.num_pieces), (262144, 256));
            assert_eq!(info.find_file(b"big.bin"), Some(0));
        }
        if let Some(info) = load("multi.torrent") {
            assert_eq!(
                info.info_hash.to_string(),
                "728679a5bf3bf2aaca93fdccb047f82830f14a2c"
            );
            assert_eq!((info.piece_length, info.num_pieces), (65536, 67));
            let files: Vec<_> = info
                .files
                .iter()
                .map(|f| (f.path.as_str(), f.length))
                .collect();
            assert_eq!(
                files,
                [
                    ("empty.bin", 0),
                    ("one.bin", 1),
                    ("ünïcødé файл.txt", 7500),
                    ("with space/nested deeper/odd.bin", 3158073),
                    ("dir/a.bin", 65536),
                    ("dir/b.bin", 65537),
                    ("z last.bin", 1048583),
                ]
            );
            assert_eq!(info.find_file("ünïcødé файл.txt".as_bytes()), Some(2));
            for i in 0..files.len() {
                assert!(info.safe_relative_path(i).is_some());
            }
        }
    }
}
