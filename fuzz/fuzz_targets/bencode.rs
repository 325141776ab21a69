//! Bencode and the metainfo/info parsers on top of it: never a panic (no huge allocation from a
//! length prefix, no stack overflow from nesting), decoded values round-trip, and file names
//! from an accepted info dict never escape the torrent's directory.
#![no_main]

use confluence_core::{bencode, ident::InfoHash, metainfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((v, used)) = bencode::decode_prefix(data) {
        assert!(used > 0 && used <= data.len());
        let enc = bencode::encode(&v);
        assert_eq!(bencode::decode(&enc).as_ref(), Ok(&v));
        assert_eq!(bencode::encode(&bencode::decode(&enc).unwrap()), enc);
        if let bencode::Value::Dict(d) = &v {
            for (k, item) in d {
                assert_eq!(
                    bencode::raw_dict_value(&enc, k),
                    Ok(Some(&bencode::encode(item)[..]))
                );
            }
        }
    }
    let _ = bencode::raw_dict_value(data, b"info");
    let _ = metainfo::parse_metainfo(data);
    if let Ok(info) = metainfo::parse_info(data) {
        assert_eq!(info.info_hash, InfoHash::from_sha1_of(data));
        for i in 0..info.files.len() {
            if let Some(p) = info.safe_relative_path(i) {
                assert!(p
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_))));
                assert!(!p.as_os_str().is_empty());
            }
        }
    }
});
