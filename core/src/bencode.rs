//! A small, strict bencode codec.
//!
//! Confluence needs bencode in three places: reading POSTed metainfo, parsing
//! the info dict, and generating `.torrent` files. The info dict must be
//! hashed (and re-emitted) from its *raw* bytes, never from a re-encoding, so
//! besides a plain `Value` tree this module can locate the raw bytes of a
//! top-level dict entry ([`raw_dict_value`]) and embed raw bytes when encoding
//! ([`Value::Raw`]).
//!
//! The decoder never panics and never trusts length prefixes: a byte string
//! may not claim more bytes than the input holds, and container nesting is
//! limited to [`MAX_DEPTH`], so hostile input cannot exhaust memory or stack.

use std::collections::BTreeMap;

/// Deepest container nesting the decoder accepts (a top-level list is depth 1).
pub const MAX_DEPTH: usize = 64;

/// A decoded (or to-be-encoded) bencode value.
///
/// Dict keys are kept in a `BTreeMap`, so encoding always writes them in the
/// sorted order bencode requires. When a decoded dict repeats a key, the
/// **last** occurrence wins (as with Go's decoder, where later fields
/// overwrite earlier ones); [`raw_dict_value`] follows the same rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
    /// Already-encoded bencode, written verbatim by [`encode`]. Exists so the
    /// info dict can be embedded byte-for-byte. Never produced by [`decode`].
    Raw(Vec<u8>),
}

impl Value {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The byte string as UTF-8, if it is a byte string and valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&BTreeMap<Vec<u8>, Value>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Looks `key` up if this is a dict; `None` for other kinds.
    pub fn get(&self, key: &[u8]) -> Option<&Value> {
        self.as_dict().and_then(|d| d.get(key))
    }
}

/// Why a buffer is not valid bencode. Messages are short and single-line
/// because they end up in HTTP error bodies (`error decoding body: <msg>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input was empty (Go reports `io.EOF` for an empty body).
    #[error("EOF")]
    Eof,
    #[error("unexpected end of input")]
    UnexpectedEnd,
    #[error("unexpected byte 0x{byte:02x} at offset {offset}")]
    UnexpectedByte { byte: u8, offset: usize },
    #[error("invalid integer")]
    InvalidInt,
    #[error("invalid string length")]
    InvalidLength,
    #[error("string length exceeds input")]
    LengthExceedsInput,
    #[error("nesting too deep")]
    TooDeep,
    #[error("dict key must be a byte string")]
    KeyNotBytes,
    #[error("expected dict")]
    ExpectedDict,
}

/// Decodes one value from the start of `buf`; anything after it is ignored.
pub fn decode(buf: &[u8]) -> Result<Value, Error> {
    decode_prefix(buf).map(|(v, _)| v)
}

/// Decodes one value from the start of `buf` and reports how many bytes it
/// used, so callers can tell whether trailing data followed.
pub fn decode_prefix(buf: &[u8]) -> Result<(Value, usize), Error> {
    if buf.is_empty() {
        return Err(Error::Eof);
    }
    let mut d = Decoder { buf, pos: 0 };
    let v = d.value(0)?;
    Ok((v, d.pos))
}

/// For the dict at the start of `buf`, the exact raw bytes of the value under
/// `key` (last occurrence if repeated), or `None` if the key is absent.
///
/// The whole dict is validated. This exists because the infohash is the
/// SHA-1 of the info dict exactly as it was sent.
pub fn raw_dict_value<'a>(buf: &'a [u8], key: &[u8]) -> Result<Option<&'a [u8]>, Error> {
    if buf.is_empty() {
        return Err(Error::Eof);
    }
    let mut d = Decoder { buf, pos: 0 };
    if d.peek()? != b'd' {
        return Err(Error::ExpectedDict);
    }
    d.pos += 1;
    let mut found = None;
    while d.peek()? != b'e' {
        let k = d.dict_key()?;
        let start = d.pos;
        d.value(1)?;
        if k == key {
            found = buf.get(start..d.pos);
        }
    }
    Ok(found)
}

/// Encodes `v` canonically (dict keys sorted); `Value::Raw` is copied as is.
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(v, &mut out);
    out
}

fn encode_into(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Int(i) => {
            out.push(b'i');
            out.extend_from_slice(i.to_string().as_bytes());
            out.push(b'e');
        }
        Value::Bytes(b) => encode_bytes(b, out),
        Value::List(l) => {
            out.push(b'l');
            for item in l {
                encode_into(item, out);
            }
            out.push(b'e');
        }
        Value::Dict(d) => {
            out.push(b'd');
            for (k, item) in d {
                encode_bytes(k, out);
                encode_into(item, out);
            }
            out.push(b'e');
        }
        Value::Raw(r) => out.extend_from_slice(r),
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// Cursor over the input; every method checks bounds before reading.
struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn peek(&self) -> Result<u8, Error> {
        self.buf.get(self.pos).copied().ok_or(Error::UnexpectedEnd)
    }

    /// `depth` is the number of containers enclosing this value.
    fn value(&mut self, depth: usize) -> Result<Value, Error> {
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let digits = self.until(b'e')?;
                parse_int(digits).map(Value::Int).ok_or(Error::InvalidInt)
            }
            b'0'..=b'9' => self.bytes().map(|b| Value::Bytes(b.to_vec())),
            b'l' => {
                let depth = self.enter(depth)?;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                let depth = self.enter(depth)?;
                let mut map = BTreeMap::new();
                while self.peek()? != b'e' {
                    let k = self.dict_key()?.to_vec();
                    let v = self.value(depth)?;
                    map.insert(k, v); // a repeated key replaces the earlier one
                }
                self.pos += 1;
                Ok(Value::Dict(map))
            }
            byte => Err(Error::UnexpectedByte {
                byte,
                offset: self.pos,
            }),
        }
    }

    /// Consumes a container's opening byte and returns the inner depth.
    fn enter(&mut self, depth: usize) -> Result<usize, Error> {
        if depth >= MAX_DEPTH {
            return Err(Error::TooDeep);
        }
        self.pos += 1;
        Ok(depth + 1)
    }

    fn dict_key(&mut self) -> Result<&'a [u8], Error> {
        match self.peek()? {
            b'0'..=b'9' => self.bytes(),
            _ => Err(Error::KeyNotBytes),
        }
    }

    /// Reads `<len>:<bytes>` without allocating from the length prefix.
    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let digits = self.until(b':')?;
        let len = parse_len(digits).ok_or(Error::InvalidLength)?;
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let data = rest.get(..len).ok_or(Error::LengthExceedsInput)?;
        self.pos += len;
        Ok(data)
    }

    /// Returns the bytes before the next `end` byte and skips past it.
    fn until(&mut self, end: u8) -> Result<&'a [u8], Error> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let n = rest
            .iter()
            .position(|&b| b == end)
            .ok_or(Error::UnexpectedEnd)?;
        self.pos += n + 1;
        Ok(&rest[..n])
    }
}

/// Parses the digits of `i…e`: optional `-`, no leading zeros, no `-0`.
fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || (digits[0] == b'0' && (digits.len() > 1 || neg)) {
        return None;
    }
    let mut n: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        let d = i64::from(c - b'0');
        // Accumulate negatively so i64::MIN is representable.
        n = n.checked_mul(10)?.checked_sub(d)?;
    }
    if neg {
        Some(n)
    } else {
        n.checked_neg()
    }
}

/// Parses a byte-string length prefix: digits only, no leading zeros.
fn parse_len(s: &[u8]) -> Option<usize> {
    if s.is_empty() || (s[0] == b'0' && s.len() > 1) {
        return None;
    }
    s.iter().try_fold(0usize, |n, &c| {
        if !c.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(usize::from(c - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    #[test]
    fn decodes_scalars() {
        assert_eq!(decode(b"i42e").unwrap(), Value::Int(42));
        assert_eq!(decode(b"i-7e").unwrap(), Value::Int(-7));
        assert_eq!(decode(b"i0e").unwrap(), Value::Int(0));
        assert_eq!(
            decode(b"i9223372036854775807e").unwrap(),
            Value::Int(i64::MAX)
        );
        assert_eq!(
            decode(b"i-9223372036854775808e").unwrap(),
            Value::Int(i64::MIN)
        );
        assert_eq!(decode(b"4:spam").unwrap(), bytes("spam"));
        assert_eq!(decode(b"0:").unwrap(), bytes(""));
    }

    #[test]
    fn rejects_bad_integers() {
        for bad in [
            &b"i-0e"[..],
            b"i03e",
            b"ie",
            b"i-e",
            b"i1x2e",
            b"i9223372036854775808e",
            b"i--1e",
        ] {
            assert_eq!(
                decode(bad),
                Err(Error::InvalidInt),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(decode(b"i12"), Err(Error::UnexpectedEnd));
    }

    #[test]
    fn rejects_bad_strings() {
        assert_eq!(decode(b"5:abc"), Err(Error::LengthExceedsInput));
        assert_eq!(
            decode(b"99999999999999999999999:x"),
            Err(Error::InvalidLength)
        );
        assert_eq!(
            decode(b"18446744073709551615:x"),
            Err(Error::LengthExceedsInput)
        );
        assert_eq!(decode(b"01:a"), Err(Error::InvalidLength));
        assert_eq!(decode(b"3"), Err(Error::UnexpectedEnd));
    }

    #[test]
    fn empty_input_is_eof() {
        assert_eq!(decode(b"").unwrap_err().to_string(), "EOF");
        assert_eq!(raw_dict_value(b"", b"info").unwrap_err().to_string(), "EOF");
        assert_eq!(
            decode(b"d").unwrap_err().to_string(),
            "unexpected end of input"
        );
    }

    #[test]
    fn decodes_containers_and_helpers() {
        let v = decode(b"d3:cow3:moo4:listli1e2:abe3:numi5ee").unwrap();
        assert_eq!(v.get(b"cow").and_then(Value::as_str), Some("moo"));
        assert_eq!(v.get(b"num").and_then(Value::as_int), Some(5));
        let list = v.get(b"list").and_then(Value::as_list).unwrap();
        assert_eq!(list, &[Value::Int(1), bytes("ab")]);
        assert_eq!(v.get(b"missing"), None);
        assert_eq!(Value::Int(1).get(b"x"), None);
        assert_eq!(Value::Bytes(vec![0xff]).as_str(), None);
        assert_eq!(Value::Bytes(vec![0xff]).as_bytes(), Some(&[0xff][..]));
    }

    #[test]
    fn dict_rules() {
        // Unsorted keys are accepted; a repeated key keeps the last value.
        let v = decode(b"d1:bi1e1:ai2e1:bi3ee").unwrap();
        assert_eq!(v.get(b"a"), Some(&Value::Int(2)));
        assert_eq!(v.get(b"b"), Some(&Value::Int(3)));
        assert_eq!(decode(b"di1ei2ee"), Err(Error::KeyNotBytes));
        assert_eq!(decode(b"d1:a"), Err(Error::UnexpectedEnd));
        assert_eq!(
            decode(b"d1:ae"),
            Err(Error::UnexpectedByte {
                byte: b'e',
                offset: 4
            })
        );
        assert!(matches!(
            decode(b"x"),
            Err(Error::UnexpectedByte {
                byte: b'x',
                offset: 0
            })
        ));
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        assert_eq!(decode_prefix(b"i1etrailing").unwrap(), (Value::Int(1), 3));
        assert_eq!(decode(b"de junk").unwrap(), Value::Dict(BTreeMap::new()));
    }

    #[test]
    fn nesting_limit() {
        let ok = format!("{}{}", "l".repeat(MAX_DEPTH), "e".repeat(MAX_DEPTH));
        assert!(decode(ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "l".repeat(MAX_DEPTH + 1), "e".repeat(MAX_DEPTH + 1));
        assert_eq!(decode(deep.as_bytes()), Err(Error::TooDeep));
        // Unterminated and very deep: still just an error, no stack overflow.
        assert_eq!(decode(&vec![b'l'; 1_000_000]), Err(Error::TooDeep));
        assert_eq!(decode(&[b'd'; 10]), Err(Error::KeyNotBytes));
    }

    #[test]
    fn raw_dict_value_returns_exact_bytes() {
        let buf = b"d8:announce3:url4:infod4:name1:x6:lengthi1eee";
        assert_eq!(
            raw_dict_value(buf, b"info").unwrap(),
            Some(&b"d4:name1:x6:lengthi1ee"[..])
        );
        assert_eq!(raw_dict_value(buf, b"nope").unwrap(), None);
        assert_eq!(
            raw_dict_value(b"d1:ai1e1:ai2ee", b"a").unwrap(),
            Some(&b"i2e"[..])
        );
        assert_eq!(raw_dict_value(b"le", b"a"), Err(Error::ExpectedDict));
        assert_eq!(
            raw_dict_value(b"d4:infoi1e", b"info"),
            Err(Error::UnexpectedEnd)
        );
        assert_eq!(
            raw_dict_value(b"d4:infoi1eetrailing", b"info").unwrap(),
            Some(&b"i1e"[..])
        );
    }

    #[test]
    fn encode_sorts_and_round_trips() {
        let mut d = BTreeMap::new();
        d.insert(b"zz".to_vec(), Value::Int(-3));
        d.insert(b"aa".to_vec(), Value::List(vec![bytes("x"), Value::Int(0)]));
        d.insert(b"raw".to_vec(), Value::Raw(b"d1:ki1ee".to_vec()));
        let out = encode(&Value::Dict(d));
        assert_eq!(out, b"d2:aal1:xi0ee3:rawd1:ki1ee2:zzi-3ee");
        let back = decode(&out).unwrap();
        assert_eq!(
            back.get(b"raw").and_then(|v| v.get(b"k")),
            Some(&Value::Int(1))
        );
        let plain = decode(b"d1:al1:bi-1eee").unwrap();
        assert_eq!(encode(&plain), b"d1:al1:bi-1eee");
    }

    #[test]
    fn fuzzish_inputs_do_not_panic() {
        let seeds: [&[u8]; 6] = [
            b"d4:infod4:name1:xee",
            b"l1:ai1ee",
            b"i-12e",
            b"3:abc",
            b"dl",
            b"d1:",
        ];
        for seed in seeds {
            for cut in 0..=seed.len() {
                let _ = decode(&seed[..cut]);
                let _ = raw_dict_value(&seed[..cut], b"info");
            }
            for i in 0..seed.len() {
                for b in [0u8, b'0', b'9', b':', b'e', b'i', b'l', b'd', b'-', 0xff] {
                    let mut m = seed.to_vec();
                    m[i] = b;
                    let _ = decode(&m);
                    let _ = raw_dict_value(&m, b"info");
                }
            }
        }
    }
}
