//! Query strings decoded by Go's rules, which scripts written for the original rely on: `+` is a
//! space, pairs with a `;` or a bad `%` escape are dropped, and the first value of a key wins.
//! Values are bytes: a file path may be any byte string, sent percent-escaped.

/// A decoded query string.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

pub use confluence_core::gocompat::unescape;

impl Query {
    pub fn parse(qs: &str) -> Self {
        Self {
            pairs: confluence_core::gocompat::parse_query(qs),
        }
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
        self.get(key)
            .and_then(|v| confluence_core::gocompat::parse_bool(&v))
            .unwrap_or(false)
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
