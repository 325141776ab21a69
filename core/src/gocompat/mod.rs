//! Go's parsing and quoting rules that scripts written for the original confluence see: one
//! copy for the core, the HTTP API and the flags.
//!
//! - [`quote`]: `strconv.Quote` (Content-Disposition values, error messages);
//! - [`parse_bool`]: `strconv.ParseBool` (boolean flags, `?nowait=` style query flags);
//! - [`unescape`] and [`parse_query`]: `url.QueryUnescape`/`PathUnescape` and `url.ParseQuery`;
//! - [`hex_val`]: one hex digit, either case (`encoding/hex`).

mod quote;

pub use quote::quote;

/// Go's `strconv.ParseBool`: `None` for anything else.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The value of one hex digit, either case.
pub fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `s`, with `+` as a space when `plus` is set (Go's `QueryUnescape`; without
/// it, `PathUnescape`); `None` on a malformed escape. The result may not be UTF-8.
pub fn unescape(s: &str, plus: bool) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'%' => {
                let hi = hex_val(*b.get(i + 1)?)?;
                let lo = hex_val(*b.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Go's `url.ParseQuery`, keeping pairs in order: pairs with `;` or a bad escape are dropped,
/// `+` is a space. Keys and values are bytes (may not be UTF-8).
pub fn parse_query(q: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    q.split('&')
        .filter(|pair| !pair.is_empty() && !pair.contains(';'))
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((unescape(k, true)?, unescape(v, true)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_bool_is_gos() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for bad in ["", "yes", "tRUE", "2", " true"] {
            assert_eq!(parse_bool(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn query_rules_are_gos() {
        let q = parse_query("ih=a&ih=b&path=a+b%2Fc&bad=%zz&x;y=1&raw=%ff&&k");
        let want: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"ih".to_vec(), b"a".to_vec()),
            (b"ih".to_vec(), b"b".to_vec()),
            (b"path".to_vec(), b"a b/c".to_vec()),
            (b"raw".to_vec(), vec![0xff]),
            (b"k".to_vec(), Vec::new()),
        ];
        assert_eq!(q, want);
        assert_eq!(unescape("a+b%2f", false).as_deref(), Some(&b"a+b/"[..]));
        assert_eq!(unescape("%4", true), None);
        assert_eq!(unescape("%g0", true), None);
    }
}
