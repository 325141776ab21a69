//! Property tests (issue 7) for the parsers that take untrusted input: infohashes and magnet
//! links (`ident`), bencode, and the info dict built on it (`metainfo`).
//!
//! Arbitrary input never panics, every error is one line (it becomes an HTTP 400 body), and
//! valid input round-trips. The `cargo fuzz` targets in `fuzz/` cover the same functions with
//! coverage-guided input.

use std::collections::BTreeMap;

use confluence_core::{
    bencode::{self, Value},
    ident::{self, InfoHash},
    metainfo,
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2000,
        ..ProptestConfig::default()
    }
}

// ------------------------------------------------------------------------------------------
// Infohashes and magnets

/// Strings built from the characters magnet parsing cares about, plus anything.
fn magnetish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("magnet:".to_string()),
        Just("?".to_string()),
        Just("&".to_string()),
        Just("=".to_string()),
        Just("xt=urn:btih:".to_string()),
        Just("tr=".to_string()),
        Just("dn=".to_string()),
        Just("%".to_string()),
        Just("#".to_string()),
        Just(";".to_string()),
        Just(":".to_string()),
        "[0-9a-fA-F]{0,41}",
        "[A-Za-z2-7=]{0,33}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

fn one_line(s: &str) -> bool {
    !s.contains('\n') && !s.contains('\r')
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ident_parsers_never_panic_and_errors_are_one_line(s in magnetish(), t in any::<String>()) {
        if let Err(e) = ident::parse_hex(&s) {
            prop_assert!(one_line(&e.http_message()), "{:?}", e.http_message());
        }
        if let Err(e) = ident::parse_magnet(&s) {
            prop_assert!(one_line(&e.http_message()), "{:?}", e.http_message());
        }
        match ident::resolve(Some(&s), Some(&t)) {
            Ok((ih, _)) => {
                // A non-empty magnet wins, whatever `ih` says.
                if !s.is_empty() {
                    prop_assert_eq!(Some(ih), ident::parse_magnet(&s).ok().map(|m| m.info_hash));
                }
            }
            Err(e) => prop_assert!(one_line(&e.http_message()), "{:?}", e.http_message()),
        }
        let _ = ident::resolve(None, Some(&t));
        let _ = ident::parse_query(&s);
        let _ = ident::query_unescape(&s);
    }

    #[test]
    fn hex_infohash_round_trips(bytes in any::<[u8; 20]>(), upper in any::<bool>()) {
        let ih = InfoHash(bytes);
        let mut s = ih.to_string();
        prop_assert_eq!(s.len(), 40);
        if upper {
            s = s.to_uppercase();
        }
        prop_assert_eq!(ident::parse_hex(&s), Ok(ih));
        prop_assert_eq!(s.parse::<InfoHash>(), Ok(ih));
        prop_assert_eq!(ident::resolve(None, Some(&s)).map(|r| r.0), Ok(ih));
    }

    #[test]
    fn hex_of_the_wrong_length_is_refused(s in "[0-9a-f]{0,80}") {
        prop_assume!(s.len() != 40);
        prop_assert_eq!(ident::parse_hex(&s), Err(ident::IdentError::BadHexLength(s.len())));
    }

    #[test]
    fn magnet_round_trips(
        bytes in any::<[u8; 20]>(),
        base32 in any::<bool>(),
        lower in any::<bool>(),
        name in proptest::option::of(any::<String>()),
        trackers in prop::collection::vec("[a-z]{1,8}://[ -~]{1,30}", 0..4),
    ) {
        let ih = InfoHash(bytes);
        let mut xt = if base32 {
            data_encoding::BASE32_NOPAD.encode(&bytes)
        } else {
            ih.to_string()
        };
        if lower {
            xt = xt.to_lowercase();
        }
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let mut m = format!("magnet:?xt=urn:btih:{xt}");
        if let Some(n) = &name {
            m.push_str(&format!("&dn={}", enc(n)));
        }
        for tr in &trackers {
            m.push_str(&format!("&tr={}", enc(tr)));
        }
        let parsed = ident::parse_magnet(&m).map_err(|e| e.to_string());
        prop_assert!(parsed.is_ok(), "{m}: {parsed:?}");
        let parsed = parsed.unwrap();
        prop_assert_eq!(parsed.info_hash, ih);
        prop_assert_eq!(parsed.name, name);
        prop_assert_eq!(parsed.trackers, trackers);
        prop_assert_eq!(ident::resolve(Some(&m), Some("not an infohash")).map(|r| r.0), Ok(ih));
    }
}

// ------------------------------------------------------------------------------------------
// Bencode

/// Any value the decoder can produce (no `Raw`), nested a few levels.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::Int),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(Value::Bytes),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
            prop::collection::btree_map(prop::collection::vec(any::<u8>(), 0..8), inner, 0..6)
                .prop_map(Value::Dict),
        ]
    })
}

/// Bytes that look like bencode more often than random bytes do.
fn bencodeish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"d".to_vec()),
        Just(b"l".to_vec()),
        Just(b"e".to_vec()),
        Just(b"i".to_vec()),
        Just(b"-".to_vec()),
        Just(b":".to_vec()),
        "[0-9]{1,21}".prop_map(String::into_bytes),
        Just(b"4:info".to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
        value().prop_map(|v| bencode::encode(&v)),
    ];
    prop::collection::vec(piece, 0..16).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn bencode_decoding_never_panics(b in bencodeish()) {
        match bencode::decode_prefix(&b) {
            Ok((v, used)) => {
                prop_assert!(used > 0 && used <= b.len());
                // What was decoded re-encodes to something that decodes to the same value.
                let again = bencode::encode(&v);
                prop_assert_eq!(bencode::decode(&again), Ok(v));
            }
            Err(e) => prop_assert!(one_line(&e.to_string())),
        }
        let _ = bencode::raw_dict_value(&b, b"info");
        if let Err(e) = metainfo::parse_metainfo(&b) {
            prop_assert!(one_line(&e.to_string()));
        }
        if let Err(e) = metainfo::parse_info(&b) {
            prop_assert!(one_line(&e.to_string()));
        }
    }

    #[test]
    fn bencode_round_trips(v in value(), trailing in prop::collection::vec(any::<u8>(), 0..8)) {
        let enc = bencode::encode(&v);
        prop_assert_eq!(bencode::decode(&enc), Ok(v.clone()));
        // Canonical: encoding what was decoded gives the same bytes.
        prop_assert_eq!(bencode::encode(&bencode::decode(&enc).unwrap()), enc.clone());
        let mut with_tail = enc.clone();
        with_tail.extend_from_slice(&trailing);
        prop_assert_eq!(bencode::decode_prefix(&with_tail), Ok((v.clone(), enc.len())));
        // Every value of a dict is found as its exact raw bytes.
        if let Value::Dict(d) = &v {
            for (k, item) in d {
                let raw = bencode::raw_dict_value(&enc, k);
                prop_assert_eq!(raw, Ok(Some(&bencode::encode(item)[..])));
            }
        }
    }

    #[test]
    fn truncated_bencode_is_an_error(v in value()) {
        let enc = bencode::encode(&v);
        for cut in 0..enc.len() {
            prop_assert!(bencode::decode(&enc[..cut]).is_err(), "{:?}", &enc[..cut]);
        }
    }

    #[test]
    fn huge_length_prefixes_are_refused_without_allocating(n in 1_000_000u64..u64::MAX, body in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut b = format!("d4:info{n}:").into_bytes();
        b.extend_from_slice(&body);
        prop_assert!(bencode::decode(&b).is_err());
        prop_assert!(metainfo::parse_metainfo(&b).is_err());
    }

    #[test]
    fn deep_nesting_is_refused(depth in (bencode::MAX_DEPTH + 1)..10_000, open in prop_oneof![Just(b'l'), Just(b'd')]) {
        let mut b = vec![open; depth];
        b.extend(std::iter::repeat_n(b'e', depth));
        prop_assert!(bencode::decode(&b).is_err());
    }
}

// ------------------------------------------------------------------------------------------
// Info dicts: names from a torrent never escape a directory

fn component() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"..".to_vec()),
        Just(b".".to_vec()),
        Just(b"".to_vec()),
        Just(b"/".to_vec()),
        Just(b"/etc/passwd".to_vec()),
        Just(b"a/../../b".to_vec()),
        Just(b"nul\0byte".to_vec()),
        Just(b"C:\\x".to_vec()),
        "[a-z.]{1,6}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 1..6),
    ]
}

fn info_dict(files: Vec<(Vec<Vec<u8>>, i64)>, name: Vec<u8>) -> Vec<u8> {
    let piece_length = 16 * 1024i64;
    let total: i64 = files.iter().map(|(_, l)| l).sum();
    let pieces = (total + piece_length - 1) / piece_length;
    let mut d = BTreeMap::new();
    d.insert(b"name".to_vec(), Value::Bytes(name));
    d.insert(b"piece length".to_vec(), Value::Int(piece_length));
    d.insert(
        b"pieces".to_vec(),
        Value::Bytes(vec![7u8; (pieces as usize) * 20]),
    );
    let list = files
        .into_iter()
        .map(|(path, length)| {
            let mut f = BTreeMap::new();
            f.insert(b"length".to_vec(), Value::Int(length));
            f.insert(
                b"path".to_vec(),
                Value::List(path.into_iter().map(Value::Bytes).collect()),
            );
            Value::Dict(f)
        })
        .collect();
    d.insert(b"files".to_vec(), Value::List(list));
    bencode::encode(&Value::Dict(d))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn file_names_never_escape_the_torrent_dir(
        files in prop::collection::vec((prop::collection::vec(component(), 0..4), 0i64..100_000), 1..6),
        name in component(),
    ) {
        let bytes = info_dict(files, name);
        let Ok(info) = metainfo::parse_info(&bytes) else { return Ok(()) };
        prop_assert_eq!(info.info_hash, InfoHash::from_sha1_of(&bytes));
        for i in 0..info.files.len() {
            if let Some(p) = info.safe_relative_path(i) {
                prop_assert!(p.is_relative(), "{p:?}");
                for c in p.components() {
                    prop_assert!(matches!(c, std::path::Component::Normal(_)), "{p:?}");
                }
                let s = p.to_string_lossy();
                prop_assert!(!s.contains('\0'), "{p:?}");
                prop_assert!(!s.is_empty());
            }
        }
    }
}
