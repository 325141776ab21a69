//! Test-side bencode: a decoder that keeps each dict value's byte span (to hash an `info` as
//! it was sent), the parts of a .torrent the tests need, and an encoder for torrents made up
//! on the spot (nobody seeds them; their pieces are never checked).

use super::{find, sha1_hex};

#[derive(Debug, Clone)]
pub enum Bencode {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Bencode>),
    /// Keys with their values and each value's byte span in the input.
    Dict(Vec<(Vec<u8>, Bencode, std::ops::Range<usize>)>),
}

impl Bencode {
    pub fn get(&self, key: &str) -> Option<&Bencode> {
        match self {
            Bencode::Dict(d) => d
                .iter()
                .find(|(k, _, _)| k == key.as_bytes())
                .map(|(_, v, _)| v),
            _ => None,
        }
    }

    pub fn span(&self, key: &str) -> Option<std::ops::Range<usize>> {
        match self {
            Bencode::Dict(d) => d
                .iter()
                .find(|(k, _, _)| k == key.as_bytes())
                .map(|(_, _, s)| s.clone()),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Bencode::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Bencode::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn str(&self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// Every string inside this value, recursively (e.g. the URLs of an `announce-list`).
    pub fn strings(&self) -> Vec<String> {
        match self {
            Bencode::Bytes(b) => vec![String::from_utf8_lossy(b).into_owned()],
            Bencode::List(l) => l.iter().flat_map(Bencode::strings).collect(),
            Bencode::Dict(d) => d.iter().flat_map(|(_, v, _)| v.strings()).collect(),
            Bencode::Int(_) => Vec::new(),
        }
    }

    pub fn list(&self) -> Option<&[Bencode]> {
        match self {
            Bencode::List(l) => Some(l),
            _ => None,
        }
    }
}

/// Decodes one value at `pos`; returns it and the offset just past it.
pub fn bdecode_at(b: &[u8], pos: usize) -> Result<(Bencode, usize), String> {
    let err = |m: &str| format!("bencode at {pos}: {m}");
    match b.get(pos) {
        None => Err(err("unexpected end")),
        Some(b'i') => {
            let end = pos + 1 + find(&b[pos + 1..], b"e").ok_or_else(|| err("unterminated int"))?;
            let s = std::str::from_utf8(&b[pos + 1..end]).map_err(|_| err("bad int"))?;
            Ok((
                Bencode::Int(s.parse().map_err(|_| err("bad int"))?),
                end + 1,
            ))
        }
        Some(b'l') => {
            let mut p = pos + 1;
            let mut out = Vec::new();
            while b.get(p) != Some(&b'e') {
                let (v, e) = bdecode_at(b, p)?;
                out.push(v);
                p = e;
            }
            Ok((Bencode::List(out), p + 1))
        }
        Some(b'd') => {
            let mut p = pos + 1;
            let mut out = Vec::new();
            while b.get(p) != Some(&b'e') {
                let (k, e) = bdecode_at(b, p)?;
                let Bencode::Bytes(k) = k else {
                    return Err(err("dict key is not a string"));
                };
                let (v, e2) = bdecode_at(b, e)?;
                out.push((k, v, e..e2));
                p = e2;
            }
            Ok((Bencode::Dict(out), p + 1))
        }
        Some(c) if c.is_ascii_digit() => {
            let colon = pos + find(&b[pos..], b":").ok_or_else(|| err("no colon"))?;
            let n: usize = std::str::from_utf8(&b[pos..colon])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| err("bad length"))?;
            let data = b
                .get(colon + 1..colon + 1 + n)
                .ok_or_else(|| err("string past the end"))?;
            Ok((Bencode::Bytes(data.to_vec()), colon + 1 + n))
        }
        Some(c) => Err(err(&format!("unexpected byte {c:#x}"))),
    }
}

/// Decodes a whole buffer holding exactly one value.
pub fn bdecode(b: &[u8]) -> Result<Bencode, String> {
    let (v, end) = bdecode_at(b, 0)?;
    if end != b.len() {
        return Err(format!("{} trailing bytes after the value", b.len() - end));
    }
    Ok(v)
}

/// The parts of a .torrent the tests need.
#[derive(Debug, Clone)]
pub struct TorrentFile {
    /// The raw bytes of the `info` value.
    pub info: Vec<u8>,
    pub name: String,
    pub piece_length: u64,
    pub single: bool,
    /// Display paths and lengths, in torrent order.
    pub files: Vec<(String, u64)>,
}

impl TorrentFile {
    pub fn parse(bytes: &[u8]) -> TorrentFile {
        let top = bdecode(bytes).unwrap_or_else(|e| panic!("bad .torrent: {e}"));
        let span = top.span("info").expect(".torrent without info");
        TorrentFile::from_info(&bytes[span])
    }

    pub fn from_info(info_bytes: &[u8]) -> TorrentFile {
        let info = bdecode(info_bytes).unwrap_or_else(|e| panic!("bad info: {e}"));
        let name = info
            .get("name")
            .and_then(Bencode::str)
            .expect("info without name");
        let piece_length = info
            .get("piece length")
            .and_then(Bencode::int)
            .expect("no piece length") as u64;
        let (single, files) = match info.get("files").and_then(Bencode::list) {
            Some(list) => (
                false,
                list.iter()
                    .map(|f| {
                        let len = f
                            .get("length")
                            .and_then(Bencode::int)
                            .expect("file without length") as u64;
                        let path = f
                            .get("path")
                            .and_then(Bencode::list)
                            .expect("file without path")
                            .iter()
                            .map(|c| c.str().expect("bad path component"))
                            .collect::<Vec<_>>()
                            .join("/");
                        (path, len)
                    })
                    .collect(),
            ),
            None => {
                let len = info
                    .get("length")
                    .and_then(Bencode::int)
                    .expect("no length") as u64;
                (true, vec![(name.clone(), len)])
            }
        };
        TorrentFile {
            info: info_bytes.to_vec(),
            name,
            piece_length,
            single,
            files,
        }
    }

    pub fn total_length(&self) -> u64 {
        self.files.iter().map(|(_, l)| l).sum()
    }

    /// Offset of file `path` in the torrent's byte stream.
    pub fn file_offset(&self, path: &str) -> u64 {
        let mut off = 0;
        for (p, l) in &self.files {
            if p == path {
                return off;
            }
            off += l;
        }
        panic!("no file {path:?} in torrent {}", self.name)
    }

    /// The first piece boundary strictly inside file `path`, at least `margin` bytes from
    /// both of its ends, as an offset within the file.
    pub fn piece_boundary_in(&self, path: &str, margin: u64) -> u64 {
        let start = self.file_offset(path);
        let len = self.files.iter().find(|(p, _)| p == path).unwrap().1;
        let mut b = (start / self.piece_length + 1) * self.piece_length;
        while b - start < margin {
            b += self.piece_length;
        }
        let off = b - start;
        assert!(
            off + margin <= len,
            "file {path:?} has no piece boundary {margin} bytes inside"
        );
        off
    }
}

/// A value to encode. Dict keys are given in sorted order (bencode requires it; the daemon
/// refuses an unsorted info dict).
pub enum Benc {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Benc>),
    Dict(Vec<(&'static str, Benc)>),
    /// Bytes already encoded, taken as they are (an `info` whose hash was taken of them).
    Raw(Vec<u8>),
}

impl Benc {
    /// A byte string from text.
    pub fn str(s: &str) -> Benc {
        Benc::Bytes(s.as_bytes().to_vec())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Benc::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Benc::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Benc::List(l) => {
                out.push(b'l');
                l.iter().for_each(|v| v.encode_into(out));
                out.push(b'e');
            }
            Benc::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Benc::str(k).encode_into(out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Benc::Raw(b) => out.extend_from_slice(b),
        }
    }
}

/// An info dict of piece length 16 KiB for `total` bytes, whose piece hashes are all `fill`
/// bytes (nobody has data that matches them): the keys before `name`, the name, and the rest.
/// `files` is `("length", …)` for one file or `("files", …)` for several.
pub fn fake_info(files: (&'static str, Benc), name: &[u8], total: u64, fill: u8) -> Benc {
    let pieces = total.div_ceil(16384).max(1) as usize;
    Benc::Dict(vec![
        files,
        ("name", Benc::Bytes(name.to_vec())),
        ("piece length", Benc::Int(16384)),
        ("pieces", Benc::Bytes(vec![fill; pieces * 20])),
    ])
}

/// A `files` entry: `length` and the `path` components.
pub fn file_entry(path: &[&[u8]], length: u64) -> Benc {
    Benc::Dict(vec![
        ("length", Benc::Int(length as i64)),
        (
            "path",
            Benc::List(path.iter().map(|c| Benc::Bytes(c.to_vec())).collect()),
        ),
    ])
}

/// A .torrent of `info` and the other top-level keys `top` (`announce`, `creation date`, …):
/// (metainfo bytes, hex infohash).
pub fn metainfo(mut top: Vec<(&'static str, Benc)>, info: Benc) -> (Vec<u8>, String) {
    let info = info.encode();
    let ih = sha1_hex(&info);
    top.push(("info", Benc::Raw(info)));
    top.sort_by_key(|(k, _)| *k);
    (Benc::Dict(top).encode(), ih)
}
