//! Query strings decoded by Go's rules, which scripts written for the original rely on: `+` is a
//! space, pairs with a `;` or a bad `%` escape are dropped, and the first value of a key wins.
//! Values are bytes: a file path may be any byte string, sent percent-escaped.

/// A decoded query string.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Percent-decodes `s` (with `+` as space when `plus` is set); `None` on a bad escape.
pub fn unescape(s: &str, plus: bool) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hi = (hex[0] as char).to_digit(16)?;
                let lo = (hex[1] as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

impl Query {
    pub fn parse(qs: &str) -> Self {
        let pairs = qs
            .split('&')
            .filter(|p| !p.is_empty() && !p.contains(';'))
            .filter_map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                Some((unescape(k, true)?, unescape(v, true)?))
            })
            .collect();
        Self { pairs }
    }

    /// The first value of `key`, as bytes.
    pub fn bytes(&self, key: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of `key` as text (invalid UTF-8 replaced).
    pub fn get(&self, key: &str) -> Option<String> {
        self.bytes(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Go's `strconv.ParseBool` truth (anything unparsable is false).
    pub fn flag(&self, key: &str) -> bool {
        matches!(
            self.get(key).as_deref(),
            Some("1" | "t" | "T" | "TRUE" | "true" | "True")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_rules() {
        let q = Query::parse("ih=a&ih=b&path=a+b%2Fc&bad=%zz&x;y=1&nowait=T&raw=%ff");
        assert_eq!(q.get("ih").as_deref(), Some("a"));
        assert_eq!(q.bytes("path"), Some(&b"a b/c"[..]));
        assert!(q.bytes("bad").is_none());
        assert!(q.bytes("x").is_none());
        assert!(q.flag("nowait"));
        assert_eq!(q.bytes("raw"), Some(&[0xffu8][..]));
        assert!(Query::parse("path").bytes("path").is_some());
    }
}
