//! Range, conditional-request and content-header logic for `GET`/`HEAD /data`.
//!
//! `/data` serves an immutable entity (a file of a torrent, or the whole
//! torrent) of known size. The original confluence handed it to Go's
//! `http.ServeContent`, so this module reproduces what ServeContent does with
//! `Range`, `If-Range`, `If-Match` and `If-None-Match`, the multipart/byteranges
//! body and the Content-Type choice. Unlike the original we have a validator: a
//! strong ETag chosen by the caller (the content never changes), so conditional
//! requests follow RFC 9110 the way Go's `checkPreconditions` does when an ETag
//! is set. There is no `Last-Modified`, so `If-Modified-Since` and
//! `If-Unmodified-Since` are ignored, and a date in `If-Range` never matches.
//!
//! Everything here is pure: no I/O, no panics on any input, and allocations
//! bounded by [`MAX_RANGES`] or by the size of the input.
//!
//! Deliberate differences from Go (see each item's docs):
//! * more than [`MAX_RANGES`] range specs → 416 `invalid range: too many ranges`;
//! * `bytes=-0` is unsatisfiable (Go answers a broken zero-length 206);
//! * an empty spec list (`bytes=`, `bytes=,`) is invalid (Go serves 200);
//! * `a-b` with `b < a` is invalid even when `a` is past the end (Go skips it);
//! * numbers are plain digits (Go's `ParseInt` also accepts a leading `+`);
//! * on an empty entity every Range is ignored (Go still 416s on bad syntax).

use std::fmt;

/// The most range specs accepted in one `Range` header.
///
/// Go has no limit, but many small ranges make a large multipart response out
/// of a small request (Go's "ranges add up to more than the size" rule does not
/// catch them), and parsing an arbitrarily long list is wasted work. Real
/// clients (players, download managers) send one range, rarely a handful.
pub const MAX_RANGES: usize = 100;

/// A non-empty run of bytes within an entity: `len` bytes from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub len: u64,
}

/// Why a `Range` header cannot be served; each maps to a 416 response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeError {
    /// Bad syntax: another unit, a spec without `-`, `a-b` with `b < a`,
    /// something that is not a number, a number too big for u64, or no
    /// specs at all. Answered without `Content-Range`.
    Invalid,
    /// Every spec starts at or past the end (or is `-0`). Answered with
    /// `Content-Range: bytes */size`.
    NoOverlap,
    /// More than [`MAX_RANGES`] specs.
    TooMany,
}

impl RangeError {
    /// The 416 body, as Go's `http.Error` would write it (minus its `\n`).
    pub fn message(self) -> &'static str {
        match self {
            RangeError::Invalid => "invalid range",
            RangeError::NoOverlap => "invalid range: failed to overlap",
            RangeError::TooMany => "invalid range: too many ranges",
        }
    }
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for RangeError {}

/// Parses a `Range` header value against an entity of `size` bytes.
///
/// Follows Go's `parseRange`: only the `bytes=` unit (case-sensitive, as in
/// Go), comma-separated specs with optional whitespace around them and around
/// their numbers, empty list elements ignored. `a-b` is clamped to the end,
/// `a-` runs to the end, `-n` is the last `n` bytes (all of them when
/// `n > size`). Specs that start at or past the end are skipped; if that leaves
/// nothing, the result is [`RangeError::NoOverlap`]. Ranges are returned in
/// request order, overlaps included, and are never empty.
///
/// `size` should be non-zero: on an empty entity nothing can overlap (the
/// caller serves 200 instead, see [`decide`]).
pub fn parse_range(header: &str, size: u64) -> Result<Vec<ByteRange>, RangeError> {
    let specs = trim_ows(header)
        .strip_prefix("bytes=")
        .ok_or(RangeError::Invalid)?;
    let mut ranges = Vec::new();
    let mut spec_count = 0usize;
    for spec in specs.split(',') {
        let spec = trim_ows(spec);
        if spec.is_empty() {
            continue;
        }
        // Counted before the spec is parsed, so a huge header is rejected
        // after at most MAX_RANGES + 1 specs (and as many ranges stored).
        spec_count += 1;
        if spec_count > MAX_RANGES {
            return Err(RangeError::TooMany);
        }
        let (first, last) = spec.split_once('-').ok_or(RangeError::Invalid)?;
        let (first, last) = (trim_ows(first), trim_ows(last));
        if first.is_empty() {
            // Suffix range `-n`: the last n bytes.
            let n = parse_digits(last).ok_or(RangeError::Invalid)?.min(size);
            if n == 0 {
                // `-0` (or any suffix of an empty entity) selects no byte:
                // unsatisfiable per RFC 9110 §14.1.1.
                continue;
            }
            ranges.push(ByteRange {
                start: size - n,
                len: n,
            });
            continue;
        }
        let start = parse_digits(first).ok_or(RangeError::Invalid)?;
        let last = if last.is_empty() {
            None
        } else {
            let last = parse_digits(last).ok_or(RangeError::Invalid)?;
            if last < start {
                return Err(RangeError::Invalid);
            }
            Some(last)
        };
        if start >= size {
            continue;
        }
        // start < size, so size - 1 does not underflow and last >= start.
        let last = last.map_or(size - 1, |l| l.min(size - 1));
        ranges.push(ByteRange {
            start,
            len: last - start + 1,
        });
    }
    if spec_count == 0 {
        return Err(RangeError::Invalid);
    }
    if ranges.is_empty() {
        return Err(RangeError::NoOverlap);
    }
    Ok(ranges)
}

/// Whether the ranges add up to more bytes than the entity has.
///
/// Go's ServeContent then ignores the Range and sends the whole entity (200):
/// such a request is either an attack (overlapping ranges multiplying the
/// output) or a confused client, and the full body is cheaper for both sides.
pub fn sum_exceeds(ranges: &[ByteRange], size: u64) -> bool {
    ranges
        .iter()
        .try_fold(0u64, |sum, r| sum.checked_add(r.len))
        .is_none_or(|sum| sum > size)
}

/// What the `/data` handler must answer, headers aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// 304: no body, no Content-Type or Content-Length (keep the ETag).
    NotModified,
    /// 412, no body beyond the status.
    PreconditionFailed,
    /// 200 with the whole entity (and `Accept-Ranges: bytes`).
    Full,
    /// 206 with `Content-Range: ` [`content_range`] and just these bytes.
    Partial(ByteRange),
    /// 206 `multipart/byteranges` with these parts (at least two); see
    /// [`Multipart`].
    Multipart(Vec<ByteRange>),
    /// 416 with `body` as a text/plain error; add `Content-Range` when given.
    /// No `Accept-Ranges` (Go sends none on a 416).
    Unsatisfiable {
        content_range: Option<String>,
        body: &'static str,
    },
}

/// Decides the response to a request for an entity of `size` bytes whose
/// strong ETag is `etag` (as sent in the `ETag` header, quotes included,
/// e.g. `"<infohash>-<index>"`).
///
/// The header arguments are the raw header values (`None` when absent; an
/// empty value counts as absent, like Go's `Header.Get`). A header sent on
/// several lines should be passed joined with `, `.
///
/// Order, as in Go's `checkPreconditions` and `serveContent`:
/// 1. `If-Match` (`*` or a strongly matching tag passes) fails → 412;
/// 2. `If-None-Match` (`*` or a weakly matching tag) matches → 304 for
///    GET/HEAD, 412 otherwise;
/// 3. no `Range` → 200; for GET/HEAD, an `If-Range` that is not a strongly
///    matching ETag (a date, a weak or another tag) → 200;
/// 4. an empty entity → 200 whatever the Range says;
/// 5. [`parse_range`] errors → 416; ranges adding up to more than the size
///    ([`sum_exceeds`]) → 200; one range → 206; several → 206 multipart.
pub fn decide(
    method_is_get_or_head: bool,
    size: u64,
    etag: &str,
    range: Option<&str>,
    if_range: Option<&str>,
    if_match: Option<&str>,
    if_none_match: Option<&str>,
) -> Decision {
    if let Some(list) = present(if_match) {
        if !list_matches(list, |tag| strong_match(tag, etag)) {
            return Decision::PreconditionFailed;
        }
    }
    if let Some(list) = present(if_none_match) {
        if list_matches(list, |tag| weak_match(tag, etag)) {
            return if method_is_get_or_head {
                Decision::NotModified
            } else {
                Decision::PreconditionFailed
            };
        }
    }
    let Some(range) = present(range) else {
        return Decision::Full;
    };
    // Go only looks at If-Range for GET and HEAD.
    if method_is_get_or_head {
        if let Some(if_range) = present(if_range) {
            let matches = scan_etag(if_range).is_some_and(|(tag, _)| strong_match(tag, etag));
            if !matches {
                return Decision::Full;
            }
        }
    }
    // Some clients send a Range with every request; an empty entity has no
    // byte to satisfy it with, so answer 200 rather than 416.
    if size == 0 {
        return Decision::Full;
    }
    match parse_range(range, size) {
        Err(e) => Decision::Unsatisfiable {
            content_range: (e == RangeError::NoOverlap).then(|| format!("bytes */{size}")),
            body: e.message(),
        },
        Ok(ranges) if sum_exceeds(&ranges, size) => Decision::Full,
        Ok(ranges) => match ranges.as_slice() {
            [] => Decision::Full,
            [one] => Decision::Partial(*one),
            _ => Decision::Multipart(ranges),
        },
    }
}

/// The `Content-Range` value for a 206 (or a multipart part): `bytes a-b/size`.
///
/// An empty range has no last byte; it gives the unsatisfied form
/// `bytes */size` rather than a malformed value (never produced by
/// [`parse_range`]).
pub fn content_range(r: &ByteRange, size: u64) -> String {
    match r.len.checked_sub(1).and_then(|l| r.start.checked_add(l)) {
        Some(last) => format!("bytes {}-{last}/{size}", r.start),
        None => format!("bytes */{size}"),
    }
}

/// A `multipart/byteranges` body, laid out exactly as Go's ServeContent writes
/// it with `mime/multipart`: each part is its header bytes followed by the
/// entity's bytes for its range, and `closing` ends the body.
///
/// The handler streams `parts[i].0`, then the bytes of `parts[i].1`, for each
/// part in order, then `closing`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multipart {
    pub boundary: String,
    pub parts: Vec<(Vec<u8>, ByteRange)>,
    pub closing: Vec<u8>,
}

impl Multipart {
    /// Lays out `ranges` of an entity of `size` bytes and type `content_type`
    /// with a fresh random boundary (60 hex digits, like Go's).
    pub fn new(ranges: &[ByteRange], content_type: &str, size: u64) -> Multipart {
        Multipart::with_boundary(random_boundary(), ranges, content_type, size)
    }

    /// Like [`Multipart::new`] with a given boundary (deterministic, for
    /// tests). `boundary` and `content_type` must be valid in a header.
    pub fn with_boundary(
        boundary: String,
        ranges: &[ByteRange],
        content_type: &str,
        size: u64,
    ) -> Multipart {
        let parts = ranges
            .iter()
            .enumerate()
            .map(|(i, r)| {
                // mime/multipart puts the CRLF that ends a part's body in
                // front of the next delimiter, so only the first has none.
                // Part headers come sorted by name, as Go writes them.
                let lead = if i == 0 { "" } else { "\r\n" };
                let header = format!(
                    "{lead}--{boundary}\r\nContent-Range: {}\r\nContent-Type: {content_type}\r\n\r\n",
                    content_range(r, size)
                );
                (header.into_bytes(), *r)
            })
            .collect();
        let closing = format!("\r\n--{boundary}--\r\n").into_bytes();
        Multipart {
            boundary,
            parts,
            closing,
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(&self) -> String {
        format!("multipart/byteranges; boundary={}", self.boundary)
    }

    /// The exact body length, for `Content-Length`. Saturates at `u64::MAX`,
    /// which only absurd ranges could reach.
    pub fn content_length(&self) -> u64 {
        let len = |b: &Vec<u8>| u64::try_from(b.len()).unwrap_or(u64::MAX);
        self.parts
            .iter()
            .fold(len(&self.closing), |sum, (header, r)| {
                sum.saturating_add(len(header)).saturating_add(r.len)
            })
    }
}

/// 60 random hex digits (30 bytes from the OS-seeded thread RNG), like Go's `multipart.Writer`
/// boundary: unguessable, so entity bytes cannot be crafted to contain it.
fn random_boundary() -> String {
    hex::encode(rand::random::<[u8; 30]>())
}

/// The Content-Type for a file called `name` (a display path or torrent name).
///
/// Like Go's `mime.TypeByExtension(filepath.Ext(name))`, but with a fixed
/// table instead of the host's mime.types: the media and subtitle types
/// players care about are pinned here, the rest comes from `mime_guess`
/// (`text/*` gets `; charset=utf-8`, as Go adds it). Unknown or missing
/// extensions give `application/octet-stream`: we do not sniff the content,
/// since that would make even HEAD wait for the first piece.
pub fn content_type_for(name: &str) -> String {
    // filepath.Ext: from the last '.' of the last path element.
    let base = name.rsplit('/').next().unwrap_or(name);
    let ext = match base.rfind('.') {
        Some(dot) => base[dot + 1..].to_ascii_lowercase(),
        None => String::new(),
    };
    let pinned = match ext.as_str() {
        "" => Some("application/octet-stream"),
        "mkv" => Some("video/x-matroska"),
        "mp4" | "m4v" => Some("video/mp4"),
        "webm" => Some("video/webm"),
        "avi" => Some("video/x-msvideo"),
        "mov" => Some("video/quicktime"),
        "ts" => Some("video/mp2t"),
        "mp3" => Some("audio/mpeg"),
        "flac" => Some("audio/flac"),
        "ogg" | "opus" => Some("audio/ogg"),
        "m4a" => Some("audio/mp4"),
        "wav" => Some("audio/wav"),
        "srt" => Some("application/x-subrip"),
        "vtt" => Some("text/vtt"),
        "ass" | "ssa" => Some("text/x-ssa"),
        "nfo" | "txt" => Some("text/plain; charset=utf-8"),
        _ => None,
    };
    if let Some(t) = pinned {
        return t.to_owned();
    }
    match mime_guess::from_ext(&ext).first_raw() {
        Some(t) if t.starts_with("text/") && !t.contains("charset=") => {
            format!("{t}; charset=utf-8")
        }
        Some(t) => t.to_owned(),
        None => "application/octet-stream".to_owned(),
    }
}

/// The `Content-Disposition` value the original sent: `filename="…"` quoted
/// with Go's `strconv.Quote` (see [`crate::go_quote`]), with no `inline` or
/// `attachment` token. Accepts names that are not UTF-8 (`&[u8]`), whose bad
/// bytes become `\x..`. The result is always a valid header value.
pub fn content_disposition(filename: impl AsRef<[u8]>) -> String {
    format!("filename={}", crate::go_quote::quote(filename.as_ref()))
}

/// A header value, or `None` when it is absent or blank (Go's `Header.Get`
/// gives "" for both, and ServeContent treats "" as absent).
fn present(h: Option<&str>) -> Option<&str> {
    h.map(trim_ows).filter(|v| !v.is_empty())
}

/// Trims HTTP optional whitespace (and CR/LF, as Go's `textproto.TrimString`).
fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t', '\r', '\n'])
}

/// A non-empty run of ASCII digits as u64; `None` on anything else or overflow.
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.bytes().try_fold(0u64, |n, b| {
        let digit = b.is_ascii_digit().then(|| u64::from(b - b'0'))?;
        n.checked_mul(10)?.checked_add(digit)
    })
}

/// Splits an entity-tag (`"x"` or `W/"x"`) off the front of `s` (after
/// whitespace), returning it and the rest; `None` if `s` does not start with a
/// well-formed one. Same rules as Go's `scanETag`.
fn scan_etag(s: &str) -> Option<(&str, &str)> {
    let s = trim_ows(s);
    let open = if s.starts_with("W/") { 2 } else { 0 };
    let bytes = s.as_bytes();
    if bytes.get(open) != Some(&b'"') {
        return None;
    }
    for (i, &c) in bytes.iter().enumerate().skip(open + 1) {
        match c {
            // The closing quote is ASCII, so both slices are on char boundaries.
            b'"' => return Some((&s[..=i], &s[i + 1..])),
            0x21 | 0x23..=0x7e | 0x80..=0xff => {}
            _ => return None,
        }
    }
    None
}

/// Strong comparison (RFC 9110 §8.8.3.2): both strong and identical.
fn strong_match(a: &str, b: &str) -> bool {
    a == b && a.starts_with('"')
}

/// Weak comparison: identical once any `W/` prefix is dropped.
fn weak_match(a: &str, b: &str) -> bool {
    a.strip_prefix("W/").unwrap_or(a) == b.strip_prefix("W/").unwrap_or(b)
}

/// Whether an `If-Match`/`If-None-Match` list is `*` or holds a tag for which
/// `matches` holds. Like Go, reading stops at the first malformed element,
/// which (with what follows it) matches nothing.
fn list_matches(list: &str, matches: impl Fn(&str) -> bool) -> bool {
    let mut rest = list;
    loop {
        rest = trim_ows(rest);
        if rest.is_empty() {
            return false;
        }
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
            continue;
        }
        if rest.starts_with('*') {
            return true;
        }
        match scan_etag(rest) {
            Some((tag, _)) if matches(tag) => return true,
            Some((_, after)) => rest = after,
            None => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETAG: &str = "\"abc-0\"";

    fn br(start: u64, len: u64) -> ByteRange {
        ByteRange { start, len }
    }

    fn ok(header: &str, size: u64) -> Vec<(u64, u64)> {
        parse_range(header, size)
            .unwrap_or_else(|e| panic!("{header:?}: {e:?}"))
            .iter()
            .map(|r| (r.start, r.len))
            .collect()
    }

    fn err(header: &str, size: u64) -> RangeError {
        parse_range(header, size).expect_err(header)
    }

    /// GET with just a Range header.
    fn get(size: u64, range: &str) -> Decision {
        decide(true, size, ETAG, Some(range), None, None, None)
    }

    fn unsatisfiable(content_range: Option<&str>, body: &'static str) -> Decision {
        Decision::Unsatisfiable {
            content_range: content_range.map(str::to_owned),
            body,
        }
    }

    fn no_overlap(size: u64) -> Decision {
        unsatisfiable(
            Some(&format!("bytes */{size}")),
            "invalid range: failed to overlap",
        )
    }

    fn invalid() -> Decision {
        unsatisfiable(None, "invalid range")
    }

    /// Assembles a multipart body the way the handler streams it.
    fn assemble(m: &Multipart, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (header, r) in &m.parts {
            out.extend_from_slice(header);
            let start = usize::try_from(r.start).unwrap();
            out.extend_from_slice(&data[start..start + usize::try_from(r.len).unwrap()]);
        }
        out.extend_from_slice(&m.closing);
        out
    }

    // ---- parse_range ----

    #[test]
    fn single_ranges() {
        assert_eq!(ok("bytes=0-0", 10), [(0, 1)], "first byte");
        assert_eq!(ok("bytes=9-9", 10), [(9, 1)], "last byte");
        assert_eq!(ok("bytes=-1", 10), [(9, 1)], "last byte as suffix");
        assert_eq!(ok("bytes=0-", 10), [(0, 10)]);
        assert_eq!(ok("bytes=3-", 10), [(3, 7)]);
        assert_eq!(ok("bytes=2-5", 10), [(2, 4)]);
        assert_eq!(ok("bytes=-3", 10), [(7, 3)]);
        assert_eq!(ok("bytes=0-99", 10), [(0, 10)], "end clamped");
        assert_eq!(ok("bytes=5-18446744073709551615", 10), [(5, 5)]);
        assert_eq!(ok("bytes=-100", 10), [(0, 10)], "suffix larger than size");
        assert_eq!(ok("bytes=-10", 10), [(0, 10)]);
        assert_eq!(ok("bytes=007-008", 10), [(7, 2)], "leading zeros");
    }

    #[test]
    fn several_ranges_in_request_order_with_overlaps() {
        assert_eq!(ok("bytes=0-1,4-5", 10), [(0, 2), (4, 2)]);
        assert_eq!(ok("bytes=5-7,0-2,9-", 10), [(5, 3), (0, 3), (9, 1)]);
        assert_eq!(ok("bytes=0-5,2-7", 10), [(0, 6), (2, 6)]);
        assert_eq!(ok("bytes=5-5,5-5", 10), [(5, 1), (5, 1)]);
    }

    #[test]
    fn whitespace_and_empty_elements() {
        assert_eq!(ok("bytes= 0-1 , 4-5", 10), [(0, 2), (4, 2)]);
        assert_eq!(ok("bytes=\t0 - 1\t,4-5 ", 10), [(0, 2), (4, 2)]);
        assert_eq!(ok("  bytes=0-1", 10), [(0, 2)]);
        assert_eq!(ok("bytes=0-1,,4-5,", 10), [(0, 2), (4, 2)]);
        assert_eq!(ok("bytes=, -2", 10), [(8, 2)]);
    }

    #[test]
    fn ranges_past_the_end_are_skipped() {
        assert_eq!(ok("bytes=0-1,10-12,20-", 10), [(0, 2)]);
        assert_eq!(ok("bytes=10-,-0,3-3", 10), [(3, 1)]);
        assert_eq!(ok("bytes=-0,0-1", 10), [(0, 2)]);
        assert_eq!(err("bytes=10-", 10), RangeError::NoOverlap);
        assert_eq!(err("bytes=10-20", 10), RangeError::NoOverlap);
        assert_eq!(err("bytes=100-,11-", 10), RangeError::NoOverlap);
        assert_eq!(
            err("bytes=18446744073709551615-", 10),
            RangeError::NoOverlap
        );
        assert_eq!(
            err("bytes=-0", 10),
            RangeError::NoOverlap,
            "-0 selects nothing"
        );
        assert_eq!(err("bytes=0-", 0), RangeError::NoOverlap);
        assert_eq!(err("bytes=-5", 0), RangeError::NoOverlap);
    }

    #[test]
    fn syntax_errors() {
        for header in [
            "items=0-1",
            "Bytes=0-1",
            "bytes 0-1",
            "0-1",
            "",
            "bytes=",
            "bytes=,",
            "bytes= , ",
            "bytes=abc",
            "bytes=1",
            "bytes=-",
            "bytes=--1",
            "bytes=-1-",
            "bytes=1--2",
            "bytes=1-2-3",
            "bytes=+1-2",
            "bytes=1-+2",
            "bytes=-+2",
            "bytes=0x1-2",
            "bytes=1.5-2",
            "bytes=١-٢",
            "bytes=5-2",
            "bytes=20-10",
            "bytes=0-1,x",
            "bytes=0-1,5-2",
            "bytes=18446744073709551616-",
            "bytes=0-18446744073709551616",
            "bytes=-18446744073709551616",
            "bytes=99999999999999999999999999999-",
        ] {
            assert_eq!(err(header, 10), RangeError::Invalid, "{header:?}");
        }
    }

    #[test]
    fn range_count_is_capped() {
        let list = |n: usize| {
            let specs: Vec<String> = (0..n).map(|i| format!("{}-{}", i % 10, i % 10)).collect();
            format!("bytes={}", specs.join(","))
        };
        assert_eq!(
            parse_range(&list(MAX_RANGES), 10).unwrap().len(),
            MAX_RANGES
        );
        assert_eq!(err(&list(MAX_RANGES + 1), 10), RangeError::TooMany);
        // Skipped specs count too: the cap bounds the work, not the output.
        let past_end = format!("bytes={}0-0", "20-,".repeat(MAX_RANGES));
        assert_eq!(err(&past_end, 10), RangeError::TooMany);

        let huge = list(10_000);
        let started = std::time::Instant::now();
        assert_eq!(err(&huge, 10), RangeError::TooMany);
        assert_eq!(
            decide(true, 10, ETAG, Some(&huge), None, None, None),
            unsatisfiable(None, "invalid range: too many ranges")
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn huge_sizes_do_not_overflow() {
        let max = u64::MAX;
        assert_eq!(ok("bytes=0-", max), [(0, max)]);
        assert_eq!(ok("bytes=-5", max), [(max - 5, 5)]);
        assert_eq!(ok("bytes=-18446744073709551615", max), [(0, max)]);
        assert_eq!(ok("bytes=18446744073709551614-", max), [(max - 1, 1)]);
        assert_eq!(ok("bytes=0-18446744073709551615", max), [(0, max)]);
        assert_eq!(
            err("bytes=18446744073709551615-", max),
            RangeError::NoOverlap
        );
        assert_eq!(ok("bytes=0-", 1), [(0, 1)]);
    }

    /// Random headers over the range grammar's alphabet: parsing never panics
    /// and every returned range lies inside the entity.
    #[test]
    fn random_headers_give_ranges_within_the_entity() {
        const ALPHABET: &[u8] = b"bytes=-,0123456789 \t+x";
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            seed >> 33
        };
        for _ in 0..20_000 {
            let len = usize::try_from(next() % 24).unwrap();
            let mut header = String::from(if next() % 4 == 0 { "" } else { "bytes=" });
            for _ in 0..len {
                header.push(char::from(
                    ALPHABET[usize::try_from(next()).unwrap() % ALPHABET.len()],
                ));
            }
            for size in [0, 1, 10, u64::MAX] {
                if let Ok(ranges) = parse_range(&header, size) {
                    assert!(
                        !ranges.is_empty() && ranges.len() <= MAX_RANGES,
                        "{header:?}"
                    );
                    for r in &ranges {
                        assert!(r.len > 0 && r.start < size, "{header:?} {r:?}");
                        assert!(
                            r.start.checked_add(r.len).is_some_and(|end| end <= size),
                            "{header:?} {r:?}"
                        );
                    }
                }
                let _ = decide(
                    true,
                    size,
                    ETAG,
                    Some(&header),
                    Some(&header),
                    Some(&header),
                    Some(&header),
                );
            }
        }
    }

    // ---- sum_exceeds ----

    #[test]
    fn sum_exceeds_size() {
        assert!(!sum_exceeds(&[], 10));
        assert!(
            !sum_exceeds(&[br(0, 5), br(5, 5)], 10),
            "equal to the size is fine"
        );
        assert!(
            !sum_exceeds(&[br(0, 5), br(3, 5)], 10),
            "overlap within the size"
        );
        assert!(sum_exceeds(&[br(0, 6), br(2, 6)], 10));
        assert!(sum_exceeds(&[br(0, 10), br(0, 10)], 10));
        assert!(
            sum_exceeds(&[br(0, u64::MAX), br(0, u64::MAX)], u64::MAX),
            "overflow"
        );
    }

    // ---- decide: Range ----

    #[test]
    fn decide_range_cases() {
        assert_eq!(get(1000, "bytes=0-99"), Decision::Partial(br(0, 100)));
        assert_eq!(get(1000, "bytes=-100"), Decision::Partial(br(900, 100)));
        assert_eq!(get(1000, "bytes=100-"), Decision::Partial(br(100, 900)));
        assert_eq!(get(10, "bytes=0-"), Decision::Partial(br(0, 10)));
        assert_eq!(get(10, "bytes=-100"), Decision::Partial(br(0, 10)));
        assert_eq!(
            get(10, "bytes=0-1,4-5"),
            Decision::Multipart(vec![br(0, 2), br(4, 2)])
        );
        assert_eq!(
            get(10, "bytes= 0-1 , 4-5"),
            Decision::Multipart(vec![br(0, 2), br(4, 2)])
        );
        // Overlapping ranges are served as asked while they fit in the size…
        assert_eq!(
            get(10, "bytes=0-4,2-6"),
            Decision::Multipart(vec![br(0, 5), br(2, 5)])
        );
        // …and ignored (full body) once they add up to more.
        assert_eq!(get(10, "bytes=0-5,2-7"), Decision::Full);
        assert_eq!(get(10, "bytes=0-9,0-9"), Decision::Full);
        // A range past the end among valid ones is skipped.
        assert_eq!(get(10, "bytes=0-1,10-12"), Decision::Partial(br(0, 2)));
        assert_eq!(get(10, "bytes=10-"), no_overlap(10));
        assert_eq!(get(1000, "bytes=1000-2000"), no_overlap(1000));
        assert_eq!(get(10, "bytes=-0"), no_overlap(10));
        assert_eq!(get(10, "items=0-1"), invalid());
        assert_eq!(get(10, "bytes=5-2"), invalid());
        assert_eq!(get(10, "bytes=abc"), invalid());
        assert_eq!(get(10, "bytes=18446744073709551616-"), invalid());
    }

    #[test]
    fn decide_without_range_is_full() {
        assert_eq!(
            decide(true, 10, ETAG, None, None, None, None),
            Decision::Full
        );
        assert_eq!(
            decide(true, 10, ETAG, Some(""), None, None, None),
            Decision::Full
        );
        assert_eq!(
            decide(true, 10, ETAG, Some(" "), None, None, None),
            Decision::Full
        );
        assert_eq!(
            decide(true, 10, ETAG, None, Some("\"x\""), None, None),
            Decision::Full
        );
    }

    #[test]
    fn decide_empty_entity_ignores_range() {
        for range in [
            "bytes=0-1",
            "bytes=0-",
            "bytes=-5",
            "bytes=5-2",
            "items=0-1",
            "bytes=-0",
        ] {
            assert_eq!(get(0, range), Decision::Full, "{range:?}");
        }
        // Preconditions still apply.
        assert_eq!(
            decide(true, 0, ETAG, Some("bytes=0-1"), None, None, Some("*")),
            Decision::NotModified
        );
    }

    #[test]
    fn decide_treats_post_like_get_for_ranges() {
        assert_eq!(
            decide(false, 10, ETAG, Some("bytes=0-1"), None, None, None),
            Decision::Partial(br(0, 2))
        );
    }

    // ---- decide: conditional requests ----

    #[test]
    fn if_range() {
        let with_if_range = |get_or_head: bool, if_range: &str| {
            decide(
                get_or_head,
                10,
                ETAG,
                Some("bytes=0-1"),
                Some(if_range),
                None,
                None,
            )
        };
        let partial = Decision::Partial(br(0, 2));
        assert_eq!(
            with_if_range(true, ETAG),
            partial,
            "strong match honours the Range"
        );
        assert_eq!(with_if_range(true, " \"abc-0\" "), partial);
        assert_eq!(with_if_range(true, "\"other\""), Decision::Full);
        assert_eq!(
            with_if_range(true, "W/\"abc-0\""),
            Decision::Full,
            "weak never matches strongly"
        );
        assert_eq!(
            with_if_range(true, "Mon, 02 Jan 2006 15:04:05 GMT"),
            Decision::Full,
            "no Last-Modified"
        );
        assert_eq!(
            with_if_range(true, "abc-0"),
            Decision::Full,
            "unquoted is not an ETag"
        );
        assert_eq!(with_if_range(true, "*"), Decision::Full);
        assert_eq!(with_if_range(true, ""), partial, "empty counts as absent");
        // Like Go, only the first tag counts and trailing junk is ignored.
        assert_eq!(with_if_range(true, "\"abc-0\" junk"), partial);
        // Go only evaluates If-Range for GET and HEAD.
        assert_eq!(with_if_range(false, "\"other\""), partial);
        // If-Range never turns an error into a success or vice versa when it matches.
        assert_eq!(
            decide(true, 10, ETAG, Some("bytes=20-"), Some(ETAG), None, None),
            no_overlap(10)
        );
        assert_eq!(
            decide(
                true,
                10,
                ETAG,
                Some("bytes=5-2"),
                Some("\"other\""),
                None,
                None
            ),
            Decision::Full
        );
    }

    #[test]
    fn if_match() {
        let with_if_match =
            |if_match: &str| decide(true, 10, ETAG, None, None, Some(if_match), None);
        for passes in [
            "*",
            ETAG,
            "\"x\", \"abc-0\"",
            "\"x\",*",
            ",,\"abc-0\"",
            "  \"abc-0\"  ",
            "",
            " ",
        ] {
            assert_eq!(with_if_match(passes), Decision::Full, "{passes:?}");
        }
        for fails in [
            "\"x\"",
            "W/\"abc-0\"",
            "abc-0",
            "\"abc-0",
            "junk, \"abc-0\"",
            "\"x\" junk, \"abc-0\"",
            "\"ABC-0\"",
        ] {
            assert_eq!(
                with_if_match(fails),
                Decision::PreconditionFailed,
                "{fails:?}"
            );
        }
        assert_eq!(
            decide(
                false,
                10,
                ETAG,
                Some("bytes=0-1"),
                None,
                Some("\"x\""),
                None
            ),
            Decision::PreconditionFailed
        );
        assert_eq!(
            decide(true, 10, ETAG, Some("bytes=0-1"), None, Some(ETAG), None),
            Decision::Partial(br(0, 2))
        );
    }

    #[test]
    fn if_none_match() {
        let with_inm = |get_or_head: bool, inm: &str| {
            decide(
                get_or_head,
                10,
                ETAG,
                Some("bytes=0-1"),
                None,
                None,
                Some(inm),
            )
        };
        // Like Go, a missing comma between tags is tolerated.
        for matches in [
            "*",
            ETAG,
            "W/\"abc-0\"",
            "\"x\", W/\"abc-0\"",
            " *",
            "\"x\",*",
            "\"x\" \"abc-0\"",
        ] {
            assert_eq!(
                with_inm(true, matches),
                Decision::NotModified,
                "{matches:?}"
            );
            assert_eq!(
                with_inm(false, matches),
                Decision::PreconditionFailed,
                "{matches:?}"
            );
        }
        for no_match in [
            "\"x\"",
            "junk",
            "junk, \"abc-0\"",
            "abc-0",
            "",
            "W/\"abc-1\"",
        ] {
            assert_eq!(
                with_inm(true, no_match),
                Decision::Partial(br(0, 2)),
                "{no_match:?}"
            );
            assert_eq!(
                with_inm(false, no_match),
                Decision::Partial(br(0, 2)),
                "{no_match:?}"
            );
        }
    }

    #[test]
    fn if_match_is_checked_before_if_none_match() {
        assert_eq!(
            decide(true, 10, ETAG, None, None, Some("\"x\""), Some("*")),
            Decision::PreconditionFailed
        );
        assert_eq!(
            decide(true, 10, ETAG, None, None, Some(ETAG), Some(ETAG)),
            Decision::NotModified
        );
        // Preconditions come before Range errors.
        assert_eq!(
            decide(true, 10, ETAG, Some("items=0-1"), None, None, Some("*")),
            Decision::NotModified
        );
    }

    #[test]
    fn etag_scanning() {
        assert_eq!(scan_etag("\"a\", \"b\""), Some(("\"a\"", ", \"b\"")));
        assert_eq!(scan_etag(" W/\"a\"x"), Some(("W/\"a\"", "x")));
        assert_eq!(scan_etag("\"\""), Some(("\"\"", "")));
        assert_eq!(scan_etag("\"é\""), Some(("\"é\"", "")));
        assert_eq!(scan_etag("\"a b\""), None);
        assert_eq!(scan_etag("\"a"), None);
        assert_eq!(scan_etag("\""), None);
        assert_eq!(scan_etag("W/"), None);
        assert_eq!(scan_etag("w/\"a\""), None);
        assert_eq!(scan_etag(""), None);
    }

    // ---- content_range ----

    #[test]
    fn content_range_values() {
        assert_eq!(content_range(&br(0, 100), 1000), "bytes 0-99/1000");
        assert_eq!(content_range(&br(9, 1), 10), "bytes 9-9/10");
        assert_eq!(
            content_range(&br(0, u64::MAX), u64::MAX),
            "bytes 0-18446744073709551614/18446744073709551615"
        );
        assert_eq!(content_range(&br(5, 0), 10), "bytes */10");
        assert_eq!(content_range(&br(u64::MAX, 2), 10), "bytes */10");
    }

    // ---- multipart ----

    /// Byte for byte what Go 1.19's ServeContent sent for `bytes=0-1,4-5` of
    /// "0123456789" named a.mkv (Content-Length: 328).
    #[test]
    fn multipart_matches_go() {
        let boundary = "4e964c0a8c473aa6189e77ff107c5bab76cc0c1df86948c456295483352c";
        let m = Multipart::with_boundary(
            boundary.to_owned(),
            &[br(0, 2), br(4, 2)],
            "video/x-matroska",
            10,
        );
        let want = format!(
            "--{boundary}\r\nContent-Range: bytes 0-1/10\r\nContent-Type: video/x-matroska\r\n\r\n01\
             \r\n--{boundary}\r\nContent-Range: bytes 4-5/10\r\nContent-Type: video/x-matroska\r\n\r\n45\
             \r\n--{boundary}--\r\n"
        );
        let body = assemble(&m, b"0123456789");
        assert_eq!(String::from_utf8(body).unwrap(), want);
        assert_eq!(m.content_length(), 328);
        assert_eq!(
            m.content_type(),
            format!("multipart/byteranges; boundary={boundary}")
        );
    }

    #[test]
    fn multipart_content_length_is_exact() {
        let data: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let size = data.len() as u64;
        let samples: &[&[ByteRange]] = &[
            &[br(5, 3), br(0, 3), br(9, 1)],
            &[br(0, 1), br(4999, 1)],
            &[br(0, 2500), br(2500, 2500)],
            &[br(10, 100), br(10, 100), br(4000, 999)],
            &[br(7, 1)],
            &[],
        ];
        for ranges in samples {
            for content_type in [
                "text/plain; charset=utf-8",
                "application/octet-stream",
                "video/x-matroska",
            ] {
                let m = Multipart::new(ranges, content_type, size);
                let body = assemble(&m, &data);
                assert_eq!(
                    m.content_length(),
                    body.len() as u64,
                    "{ranges:?} {content_type}"
                );
                assert_eq!(m.parts.len(), ranges.len());
            }
        }
        // Go's count for "bytes=5-7,0-2,9-" of a 10-byte text file.
        let m = Multipart::with_boundary(
            "b".repeat(60),
            &[br(5, 3), br(0, 3), br(9, 1)],
            "text/plain; charset=utf-8",
            10,
        );
        assert_eq!(m.content_length(), 487);
    }

    #[test]
    fn multipart_boundaries_are_60_hex_and_fresh() {
        let a = Multipart::new(&[br(0, 1), br(2, 1)], "text/plain", 3);
        let b = Multipart::new(&[br(0, 1), br(2, 1)], "text/plain", 3);
        for m in [&a, &b] {
            assert_eq!(m.boundary.len(), 60);
            assert!(m
                .boundary
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
        assert_ne!(a.boundary, b.boundary);
    }

    #[test]
    fn multipart_content_length_saturates() {
        let m = Multipart::with_boundary(
            "b".into(),
            &[br(0, u64::MAX), br(0, u64::MAX)],
            "x/y",
            u64::MAX,
        );
        assert_eq!(m.content_length(), u64::MAX);
    }

    // ---- content_type_for ----

    #[test]
    fn pinned_content_types() {
        for (name, want) in [
            ("a.mkv", "video/x-matroska"),
            ("a.mp4", "video/mp4"),
            ("a.m4v", "video/mp4"),
            ("a.webm", "video/webm"),
            ("a.avi", "video/x-msvideo"),
            ("a.mov", "video/quicktime"),
            ("a.ts", "video/mp2t"),
            ("a.mp3", "audio/mpeg"),
            ("a.flac", "audio/flac"),
            ("a.ogg", "audio/ogg"),
            ("a.opus", "audio/ogg"),
            ("a.m4a", "audio/mp4"),
            ("a.wav", "audio/wav"),
            ("a.srt", "application/x-subrip"),
            ("a.vtt", "text/vtt"),
            ("a.ass", "text/x-ssa"),
            ("a.ssa", "text/x-ssa"),
            ("a.nfo", "text/plain; charset=utf-8"),
            ("a.txt", "text/plain; charset=utf-8"),
        ] {
            assert_eq!(content_type_for(name), want, "{name}");
        }
    }

    #[test]
    fn other_content_types() {
        for (name, want) in [
            ("Sintel/Sintel.MKV", "video/x-matroska"),
            (".mkv", "video/x-matroska"),
            ("dir.d/a.b.mp4", "video/mp4"),
            ("index.html", "text/html; charset=utf-8"),
            ("style.css", "text/css; charset=utf-8"),
            ("cover.JPG", "image/jpeg"),
            ("a.json", "application/json"),
            ("a.torrent", "application/x-bittorrent"),
            ("a.pdf", "application/pdf"),
            ("README", "application/octet-stream"),
            ("dir.mkv/README", "application/octet-stream"),
            ("trailing.", "application/octet-stream"),
            ("a.zzzunknown", "application/octet-stream"),
            ("a.é", "application/octet-stream"),
            ("", "application/octet-stream"),
            (".pad/123", "application/octet-stream"),
        ] {
            assert_eq!(content_type_for(name), want, "{name}");
        }
    }

    // ---- content_disposition ----

    #[test]
    fn content_disposition_values() {
        assert_eq!(content_disposition("Sintel.mp4"), "filename=\"Sintel.mp4\"");
        assert_eq!(content_disposition("a/b c.mkv"), "filename=\"a/b c.mkv\"");
        assert_eq!(content_disposition(""), "filename=\"\"");
        assert_eq!(
            content_disposition("say \"hi\"\\"),
            r#"filename="say \"hi\"\\""#
        );
        assert_eq!(
            content_disposition("a\tb\nc\x01\x7f"),
            r#"filename="a\tb\nc\x01\x7f""#
        );
        assert_eq!(
            content_disposition("日本語 é.mkv"),
            "filename=\"日本語 é.mkv\""
        );
        assert_eq!(
            content_disposition("\u{a0}\u{200b}"),
            r#"filename="\u00a0\u200b""#
        );
        assert_eq!(content_disposition("\u{f0000}"), r#"filename="\U000f0000""#);
        assert_eq!(
            content_disposition(b"bad\xffname".as_slice()),
            r#"filename="bad\xffname""#
        );
        assert_eq!(
            content_disposition(String::from("x.mkv")),
            "filename=\"x.mkv\""
        );
    }
}
