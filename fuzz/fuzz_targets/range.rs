//! `Range` parsing and the `/data` response decision: never a panic, never a range outside the
//! entity, and what parses round-trips through its own header.
#![no_main]

use confluence_http::range::{decide, parse_range, sum_exceeds, Decision, Multipart, MAX_RANGES};
use libfuzzer_sys::fuzz_target;

const ETAG: &str = "\"b2c3b7512da2afa97c033aa9a76f97e173bab23a-0\"";

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes are the entity size, the rest the header (as actix hands it over, lossy).
    let (size, header) = match data.split_first_chunk::<8>() {
        Some((s, rest)) => (u64::from_le_bytes(*s), rest),
        None => (67_108_864, data),
    };
    let header = String::from_utf8_lossy(header);
    if let Ok(ranges) = parse_range(&header, size) {
        assert!(!ranges.is_empty() && ranges.len() <= MAX_RANGES);
        for r in &ranges {
            assert!(r.len > 0);
            assert!(r.start.checked_add(r.len).is_some_and(|end| end <= size));
        }
        let again = format!(
            "bytes={}",
            ranges
                .iter()
                .map(|r| format!("{}-{}", r.start, r.start + r.len - 1))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(parse_range(&again, size), Ok(ranges));
    }
    for get in [true, false] {
        match decide(
            get,
            size,
            ETAG,
            Some(&header),
            Some(&header),
            Some(&header),
            Some(&header),
        ) {
            Decision::Partial(r) => assert!(r.start.saturating_add(r.len) <= size),
            Decision::Multipart(rs) => {
                assert!(rs.len() >= 2 && !sum_exceeds(&rs, size));
                let _ =
                    Multipart::with_boundary("x".into(), &rs, "text/plain", size).content_length();
            }
            _ => {}
        }
    }
});
