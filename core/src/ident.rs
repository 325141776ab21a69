//! Which torrent a request names: the `ih` and `magnet` query parameters.
//!
//! Confluence's 400 bodies echo Go's error texts verbatim
//! (`hash hex string has bad length: 3`, `encoding/hex: invalid byte: U+0067 'g'`,
//! `parsing magnet: unexpected scheme "http"`, …), so the parsers here follow
//! Go's `net/url`, `encoding/hex` and anacrolix `ParseMagnetUri` closely
//! enough to produce the same messages for the same inputs.

use std::fmt;
use std::str::FromStr;

use sha1::{Digest, Sha1};

/// A BitTorrent v1 infohash: the SHA-1 of the raw bencoded info dict.
/// Displays (and debugs) as 40 lower-case hex digits, as confluence prints it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

impl InfoHash {
    /// The infohash of an info dict given as its exact raw bytes.
    pub fn from_sha1_of(bytes: &[u8]) -> InfoHash {
        InfoHash(Sha1::digest(bytes).into())
    }

    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for InfoHash {
    type Err = IdentError;
    fn from_str(s: &str) -> Result<InfoHash, IdentError> {
        parse_hex(s)
    }
}

/// Why a request's torrent could not be determined. `Display` is the detail
/// only; [`IdentError::http_message`] adds confluence's prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    #[error("expected nonempty query parameter \"magnet\" or \"ih\"")]
    MissingParam,
    /// Length of the `ih` value in bytes.
    #[error("hash hex string has bad length: {0}")]
    BadHexLength(usize),
    /// First byte of `ih` that is not a hex digit.
    #[error("encoding/hex: invalid byte: {}", go_byte_rune(*.0))]
    InvalidHexByte(u8),
    /// The detail of a magnet parse failure (without the `parsing magnet: ` prefix).
    #[error("parsing magnet: {0}")]
    Magnet(String),
}

impl IdentError {
    /// The full 400 body text, without the trailing newline.
    pub fn http_message(&self) -> String {
        format!("error determining requested infohash: {self}")
    }
}

/// Parses exactly 40 hex digits (either case), checking the length first as
/// Go's `infohash.FromHexString` does.
pub fn parse_hex(s: &str) -> Result<InfoHash, IdentError> {
    if s.len() != 40 {
        return Err(IdentError::BadHexLength(s.len()));
    }
    let mut out = [0u8; 20];
    for (dst, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        let hi = hex_val(pair[0]).ok_or(IdentError::InvalidHexByte(pair[0]))?;
        let lo = hex_val(pair[1]).ok_or(IdentError::InvalidHexByte(pair[1]))?;
        *dst = hi << 4 | lo;
    }
    Ok(InfoHash(out))
}

/// What confluence uses from a magnet link. `name` (`dn`) is kept for
/// callers that want it, although the original ignores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    pub info_hash: InfoHash,
    /// `tr` values in order, percent-decoded; empty values are dropped.
    pub trackers: Vec<String>,
    pub name: Option<String>,
}

/// Parses a v1 magnet link like anacrolix `ParseMagnetUri`: the first
/// `xt=urn:btih:` value is the infohash (40 hex or 32 base32 characters;
/// base32 is accepted in either case, unlike Go which wants upper case).
pub fn parse_magnet(s: &str) -> Result<Magnet, IdentError> {
    let err = |detail: String| IdentError::Magnet(detail);
    let query = split_uri(s).map_err(|e| err(format!("error parsing uri: {e}")))?;
    if query.scheme != "magnet" {
        return Err(err(format!(
            "unexpected scheme {}",
            go_quote(&query.scheme)
        )));
    }
    let params = parse_query(query.query);
    let mut info_hash = None;
    let mut trackers = Vec::new();
    let mut name = None;
    for (key, value) in params {
        match key.as_slice() {
            b"xt" if info_hash.is_none() => {
                if let Some(encoded) = value.strip_prefix(b"urn:btih:") {
                    let ih = parse_encoded_v1(encoded).map_err(|e| {
                        let xt = go_quote(&String::from_utf8_lossy(&value));
                        err(format!("error parsing v1 infohash {xt}: {e}"))
                    })?;
                    info_hash = Some(ih);
                }
            }
            b"tr" if !value.is_empty() => {
                trackers.push(String::from_utf8_lossy(&value).into_owned())
            }
            b"dn" if name.is_none() => name = Some(String::from_utf8_lossy(&value).into_owned()),
            _ => {}
        }
    }
    let info_hash = info_hash.ok_or_else(|| err("missing v1 infohash".into()))?;
    Ok(Magnet {
        info_hash,
        trackers,
        name,
    })
}

/// Confluence's resolution rule: a non-empty `magnet` wins over `ih`; else a
/// non-empty `ih` is required. Returns the infohash and the magnet's trackers.
pub fn resolve(
    magnet: Option<&str>,
    ih: Option<&str>,
) -> Result<(InfoHash, Vec<String>), IdentError> {
    if let Some(m) = magnet.filter(|m| !m.is_empty()) {
        let m = parse_magnet(m)?;
        return Ok((m.info_hash, m.trackers));
    }
    match ih.filter(|ih| !ih.is_empty()) {
        Some(ih) => Ok((parse_hex(ih)?, Vec::new())),
        None => Err(IdentError::MissingParam),
    }
}

use crate::gocompat::hex_val;

/// The `btih` payload: 40 hex or 32 base32 characters. Error texts follow
/// anacrolix `parseEncodedV1Infohash`.
fn parse_encoded_v1(encoded: &[u8]) -> Result<InfoHash, String> {
    match encoded.len() {
        40 => {
            let s = std::str::from_utf8(encoded).map_err(|e| {
                let bad = encoded.get(e.valid_up_to()).copied().unwrap_or(0);
                format!("error decoding xt: {}", IdentError::InvalidHexByte(bad))
            })?;
            parse_hex(s).map_err(|e| format!("error decoding xt: {e}"))
        }
        32 => decode_base32(encoded)
            .map_err(|pos| format!("error decoding xt: illegal base32 data at input byte {pos}")),
        n => Err(format!(
            "unhandled xt parameter encoding (encoded length {n})"
        )),
    }
}

/// RFC 4648 base32 of exactly 32 characters (160 bits, no padding), either
/// case. The error is the position of the first bad character.
fn decode_base32(s: &[u8]) -> Result<InfoHash, usize> {
    let mut out = [0u8; 20];
    let mut acc: u64 = 0;
    let mut bits = 0;
    let mut n = 0;
    for (i, &c) in s.iter().enumerate() {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return Err(i),
        };
        acc = (acc << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            let slot = out.get_mut(n).ok_or(i)?;
            *slot = (acc >> bits) as u8;
            n += 1;
        }
    }
    if n != 20 {
        return Err(s.len());
    }
    Ok(InfoHash(out))
}

/// The parts of a URI that magnet parsing needs.
struct UriParts<'a> {
    scheme: String,
    query: &'a str,
}

/// A cut-down Go `url.Parse`: the checks that can fail for magnet-like
/// strings (control bytes, a leading `:`, a colon in the first path segment
/// of a scheme-less URI, bad escapes in the fragment), scheme detection and
/// the raw query. Authority/path validation for other schemes is skipped;
/// those fail with `unexpected scheme` instead.
fn split_uri(raw: &str) -> Result<UriParts<'_>, String> {
    let (before_frag, frag) = raw.split_once('#').unwrap_or((raw, ""));
    let fail = |url: &str, msg: &str| format!("parse {}: {msg}", go_quote(url));
    if before_frag.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(fail(
            before_frag,
            "net/url: invalid control character in URL",
        ));
    }
    let (scheme, rest) = go_scheme(before_frag).map_err(|m| fail(before_frag, m))?;
    let (rest, query) = if rest.ends_with('?') && rest.matches('?').count() == 1 {
        (&rest[..rest.len() - 1], "")
    } else {
        rest.split_once('?').unwrap_or((rest, ""))
    };
    if scheme.is_empty() && !rest.starts_with('/') {
        let segment = rest.split('/').next().unwrap_or("");
        if segment.contains(':') {
            return Err(fail(
                before_frag,
                "first path segment in URL cannot contain colon",
            ));
        }
    }
    if let Some(bad) = bad_escape(frag) {
        return Err(format!(
            "parse {}: invalid URL escape {}",
            go_quote(raw),
            go_quote(bad)
        ));
    }
    Ok(UriParts {
        scheme: scheme.to_ascii_lowercase(),
        query,
    })
}

/// Go's `getScheme`: a letter followed by letters, digits, `+`, `-`, `.`,
/// then `:`. Anything else means "no scheme".
fn go_scheme(raw: &str) -> Result<(&str, &str), &'static str> {
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return Err("missing protocol scheme"),
            b':' => return Ok((&raw[..i], &raw[i + 1..])),
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

/// The first malformed `%` escape in `s` (Go reports up to 3 bytes of it).
fn bad_escape(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let i = b.iter().enumerate().position(|(i, &c)| {
        c == b'%'
            && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })?;
    let end = (i + 3).min(b.len());
    // Cut on a char boundary so slicing cannot panic on multi-byte text.
    let end = (end..=b.len())
        .find(|&e| s.is_char_boundary(e))
        .unwrap_or(b.len());
    s.get(i..end)
}

/// Go's `url.ParseQuery` (see [`crate::gocompat::parse_query`]).
pub use crate::gocompat::parse_query;

/// Percent-decoding with `+` as space; `None` on a malformed escape.
pub fn query_unescape(s: &str) -> Option<Vec<u8>> {
    crate::gocompat::unescape(s, true)
}

/// Go's `%#U` applied to a byte: `U+0067 'g'`, or just `U+0000` when the
/// character is not printable (Go's `strconv.IsPrint` for U+0000..U+00FF).
fn go_byte_rune(b: u8) -> String {
    let printable = matches!(b, 0x20..=0x7e | 0xa1..=0xff) && b != 0xad;
    if printable {
        format!("U+{:04X} '{}'", b, char::from(b))
    } else {
        format!("U+{b:04X}")
    }
}

/// Go's `strconv.Quote` (`%q`) of text.
fn go_quote(s: &str) -> String {
    crate::gocompat::quote(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "b2c3b7512da2afa97c033aa9a76f97e173bab23a";
    const B32: &str = "WLB3OUJNUKX2S7ADHKU2O34X4FZ3VMR2";

    fn ih() -> InfoHash {
        parse_hex(HEX).unwrap()
    }

    #[test]
    fn hex_round_trip_and_case() {
        assert_eq!(ih().to_string(), HEX);
        assert_eq!(format!("{:?}", ih()), HEX);
        assert_eq!(parse_hex(&HEX.to_uppercase()).unwrap(), ih());
        assert_eq!(HEX.parse::<InfoHash>().unwrap().as_bytes()[0], 0xb2);
        assert_eq!(
            InfoHash::from_sha1_of(b"").to_string(),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
    }

    #[test]
    fn hex_errors_match_go() {
        assert_eq!(
            parse_hex("abc").unwrap_err().to_string(),
            "hash hex string has bad length: 3"
        );
        // Length is in bytes, and checked before content.
        assert_eq!(
            parse_hex("ü").unwrap_err().to_string(),
            "hash hex string has bad length: 2"
        );
        assert_eq!(
            parse_hex("zz").unwrap_err().to_string(),
            "hash hex string has bad length: 2"
        );
        let g = format!("{}g", &HEX[..39]);
        assert_eq!(
            parse_hex(&g).unwrap_err().to_string(),
            "encoding/hex: invalid byte: U+0067 'g'"
        );
        let nul = format!("\0{}", &HEX[1..]);
        assert_eq!(
            parse_hex(&nul).unwrap_err().to_string(),
            "encoding/hex: invalid byte: U+0000"
        );
        let uml = format!("ü{}", &HEX[2..]);
        assert_eq!(
            parse_hex(&uml).unwrap_err().to_string(),
            "encoding/hex: invalid byte: U+00C3 'Ã'"
        );
        assert_eq!(
            parse_hex("abc").unwrap_err().http_message(),
            "error determining requested infohash: hash hex string has bad length: 3"
        );
    }

    #[test]
    fn magnet_hex_and_base32() {
        let m = parse_magnet(&format!("magnet:?xt=urn:btih:{HEX}")).unwrap();
        assert_eq!(m.info_hash, ih());
        assert_eq!(
            parse_magnet(&format!("magnet:?xt=urn:btih:{}", HEX.to_uppercase()))
                .unwrap()
                .info_hash,
            ih()
        );
        assert_eq!(
            parse_magnet(&format!("magnet:?xt=urn:btih:{B32}"))
                .unwrap()
                .info_hash,
            ih()
        );
        let lower = B32.to_lowercase();
        assert_eq!(
            parse_magnet(&format!("magnet:?xt=urn:btih:{lower}"))
                .unwrap()
                .info_hash,
            ih()
        );
        assert_eq!(
            parse_magnet(&format!("MAGNET:?xt=urn:btih:{HEX}"))
                .unwrap()
                .info_hash,
            ih()
        );
    }

    #[test]
    fn magnet_trackers_and_name() {
        let s = format!(
            "magnet:?dn=My+File%21&xt=urn:btmh:1220aa&xt=urn:btih:{HEX}&xt=urn:btih:junk\
             &tr=udp%3A%2F%2Ft.example%3A1337%2Fannounce&tr=&tr=http://b/ann?x&bad=%zz&tr=c;d#frag"
        );
        let m = parse_magnet(&s).unwrap();
        assert_eq!(m.info_hash, ih());
        assert_eq!(
            m.trackers,
            vec!["udp://t.example:1337/announce", "http://b/ann?x"]
        );
        assert_eq!(m.name.as_deref(), Some("My File!"));
        let (got, trackers) = resolve(Some(&s), Some("nonsense")).unwrap();
        assert_eq!((got, trackers.len()), (ih(), 2));
    }

    #[test]
    fn magnet_errors() {
        let msg = |s: &str| parse_magnet(s).unwrap_err().to_string();
        assert_eq!(
            msg("http://x/?xt=urn:btih:00"),
            "parsing magnet: unexpected scheme \"http\""
        );
        assert_eq!(
            msg("no scheme here"),
            "parsing magnet: unexpected scheme \"\""
        );
        assert_eq!(msg("magnet:?dn=x"), "parsing magnet: missing v1 infohash");
        assert_eq!(
            msg("magnet:?xt=urn:btmh:1220abcd"),
            "parsing magnet: missing v1 infohash"
        );
        assert_eq!(
            msg("magnet:?xt=urn:btih:abc"),
            "parsing magnet: error parsing v1 infohash \"urn:btih:abc\": unhandled xt parameter encoding (encoded length 3)"
        );
        let bad_hex = format!("magnet:?xt=urn:btih:{}g", &HEX[..39]);
        assert!(
            msg(&bad_hex).ends_with(": error decoding xt: encoding/hex: invalid byte: U+0067 'g'")
        );
        let bad_b32 = format!("magnet:?xt=urn:btih:{}1", &B32[..31]);
        assert!(
            msg(&bad_b32).ends_with(": error decoding xt: illegal base32 data at input byte 31")
        );
        assert_eq!(
            msg(":x"),
            "parsing magnet: error parsing uri: parse \":x\": missing protocol scheme"
        );
        assert_eq!(
            msg("magnet:?\x01"),
            "parsing magnet: error parsing uri: parse \"magnet:?\\x01\": net/url: invalid control character in URL"
        );
        assert_eq!(msg("a/b:c"), "parsing magnet: unexpected scheme \"\"");
        assert_eq!(
            msg("ab c:d"),
            "parsing magnet: error parsing uri: parse \"ab c:d\": first path segment in URL cannot contain colon"
        );
        assert_eq!(
            msg("magnet:?x#%zü"),
            "parsing magnet: error parsing uri: parse \"magnet:?x#%zü\": invalid URL escape \"%zü\""
        );
    }

    #[test]
    fn resolve_rules() {
        let missing = "expected nonempty query parameter \"magnet\" or \"ih\"";
        assert_eq!(resolve(None, None).unwrap_err().to_string(), missing);
        assert_eq!(
            resolve(Some(""), Some("")).unwrap_err().to_string(),
            missing
        );
        assert_eq!(
            resolve(None, None).unwrap_err().http_message(),
            format!("error determining requested infohash: {missing}")
        );
        assert_eq!(resolve(Some(""), Some(HEX)).unwrap(), (ih(), vec![]));
        assert_eq!(resolve(None, Some(&HEX.to_uppercase())).unwrap().0, ih());
        // A present magnet wins even when it is bad and ih is good.
        assert_eq!(
            resolve(Some("http://x"), Some(HEX))
                .unwrap_err()
                .http_message(),
            "error determining requested infohash: parsing magnet: unexpected scheme \"http\""
        );
        assert_eq!(
            resolve(None, Some("abc")).unwrap_err().to_string(),
            "hash hex string has bad length: 3"
        );
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        for s in [
            "",
            "%",
            "magnet:",
            "magnet:?",
            "magnet:??",
            "magnet:?xt",
            "magnet:?xt=urn:btih:",
            "#%",
            "ü:ü",
            "magnet:?x#%",
        ] {
            let _ = parse_magnet(s);
            let _ = resolve(Some(s), Some(s));
        }
        let b32_with_pad = format!("magnet:?xt=urn:btih:{}==", &B32[..30]);
        assert!(parse_magnet(&b32_with_pad).is_err());
    }
}
