//! Property tests (issue 7) for the `Range` parser and the response decision built on it.
//!
//! Arbitrary headers never panic and never yield a range outside the entity; valid headers
//! round-trip (`parse(format(ranges)) == ranges`), whatever the spacing; numbers past u64 are
//! invalid, not wrapped. The `cargo fuzz` target `range` in `fuzz/` covers the same functions.

use confluence_http::range::{
    content_range, decide, parse_range, sum_exceeds, ByteRange, Decision, Multipart, RangeError,
    MAX_RANGES,
};
use proptest::prelude::*;

const ETAG: &str = "\"b2c3b7512da2afa97c033aa9a76f97e173bab23a-0\"";

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 3000,
        ..ProptestConfig::default()
    }
}

/// Header-like strings: mostly the range grammar's alphabet, sometimes anything.
fn headerish() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "(bytes=)?[0-9 ,\t-]{0,40}",
        1 => "(bytes=)?([0-9]{15,25}-[0-9]{0,25},?){0,4}",
        1 => any::<String>(),
        1 => prop::collection::vec("[0-9]{1,3}-[0-9]{1,3}", 0..300)
            .prop_map(|v| format!("bytes={}", v.join(","))),
    ]
}

fn sizes() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1u64),
        1u64..4096,
        Just(67_108_864u64),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

/// One spec of a valid header, for an entity of `size` (≥ 1) bytes, and the range it selects
/// (`None`: the spec selects nothing, e.g. `-0` or a start past the end).
#[derive(Debug, Clone)]
enum Spec {
    Closed(u64, u64),
    Open(u64),
    Suffix(u64),
}

impl Spec {
    fn text(&self) -> String {
        match self {
            Spec::Closed(a, b) => format!("{a}-{b}"),
            Spec::Open(a) => format!("{a}-"),
            Spec::Suffix(n) => format!("-{n}"),
        }
    }

    fn expected(&self, size: u64) -> Option<ByteRange> {
        match *self {
            Spec::Closed(a, b) if a < size => Some(ByteRange {
                start: a,
                len: b.min(size - 1) - a + 1,
            }),
            Spec::Open(a) if a < size => Some(ByteRange {
                start: a,
                len: size - a,
            }),
            Spec::Suffix(n) if n > 0 => {
                let n = n.min(size);
                Some(ByteRange {
                    start: size - n,
                    len: n,
                })
            }
            _ => None,
        }
    }
}

fn spec(size: u64) -> impl Strategy<Value = Spec> {
    let near = move || {
        prop_oneof![
            0..size.saturating_add(1).max(1),
            Just(size.saturating_sub(1)),
            any::<u64>()
        ]
    };
    prop_oneof![
        (near(), any::<u64>())
            .prop_map(|(a, extra)| Spec::Closed(a, a.saturating_add(extra % 1_000_000_007))),
        near().prop_map(Spec::Open),
        near().prop_map(Spec::Suffix),
    ]
}

fn valid_header() -> impl Strategy<Value = (u64, Vec<Spec>, Vec<&'static str>)> {
    prop_oneof![1u64..10_000, Just(67_108_864u64), 1u64..u64::MAX].prop_flat_map(|size| {
        (
            Just(size),
            prop::collection::vec(spec(size), 1..=MAX_RANGES),
            prop::collection::vec(
                prop_oneof![Just(""), Just(" "), Just("\t"), Just(" ,")],
                MAX_RANGES + 1,
            ),
        )
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_headers_never_panic_and_stay_inside(h in headerish(), size in sizes()) {
        match parse_range(&h, size) {
            Ok(ranges) => {
                prop_assert!(!ranges.is_empty() && ranges.len() <= MAX_RANGES);
                for r in &ranges {
                    prop_assert!(r.len > 0, "{h:?}: {r:?}");
                    prop_assert!(r.start.checked_add(r.len).is_some_and(|end| end <= size), "{h:?}: {r:?}");
                }
            }
            Err(e) => prop_assert!(!e.message().contains('\n')),
        }
        for method_get in [true, false] {
            match decide(method_get, size, ETAG, Some(&h), Some(&h), None, Some(&h)) {
                Decision::Partial(r) => prop_assert!(r.start.saturating_add(r.len) <= size),
                Decision::Multipart(rs) => {
                    prop_assert!(rs.len() >= 2 && rs.len() <= MAX_RANGES);
                    prop_assert!(!sum_exceeds(&rs, size));
                    let mp = Multipart::with_boundary("b".into(), &rs, "application/octet-stream", size);
                    prop_assert!(mp.content_length() >= rs.iter().map(|r| r.len).sum::<u64>());
                }
                _ => {}
            }
        }
    }

    #[test]
    fn valid_headers_parse_to_the_model((size, specs, ws) in valid_header()) {
        // Spacing around specs and empty list elements are allowed, as in Go.
        let mut h = String::from("bytes=");
        for (i, s) in specs.iter().enumerate() {
            if i > 0 {
                h.push(',');
            }
            h.push_str(ws[i]);
            h.push_str(&s.text());
            h.push_str(ws[i + 1].trim_end_matches(','));
        }
        let want: Vec<ByteRange> = specs.iter().filter_map(|s| s.expected(size)).collect();
        let got = parse_range(&h, size);
        if want.is_empty() {
            prop_assert_eq!(got, Err(RangeError::NoOverlap), "{}", h);
        } else {
            prop_assert_eq!(got, Ok(want), "{}", h);
        }
    }

    #[test]
    fn ranges_round_trip_through_their_header(
        size in prop_oneof![1u64..100_000, 1u64..u64::MAX],
        raw in prop::collection::vec((any::<u64>(), any::<u64>()), 1..=MAX_RANGES),
    ) {
        // Any list of in-entity ranges, formatted as a header, parses back to itself.
        let ranges: Vec<ByteRange> = raw
            .iter()
            .map(|&(a, b)| {
                let start = a % size;
                ByteRange { start, len: 1 + b % (size - start) }
            })
            .collect();
        let header = format!(
            "bytes={}",
            ranges
                .iter()
                .map(|r| format!("{}-{}", r.start, r.start + r.len - 1))
                .collect::<Vec<_>>()
                .join(",")
        );
        prop_assert_eq!(parse_range(&header, size), Ok(ranges.clone()));
        // And each range's Content-Range names exactly its bytes.
        for r in &ranges {
            let cr = content_range(r, size);
            let want = format!("bytes {}-{}/{}", r.start, r.start + r.len - 1, size);
            prop_assert_eq!(cr, want);
        }
        // One range is a 206 of exactly that range.
        if ranges.len() == 1 {
            prop_assert_eq!(
                decide(true, size, ETAG, Some(&header), None, None, None),
                Decision::Partial(ranges[0])
            );
        }
    }

    #[test]
    fn numbers_past_u64_are_invalid(digits in "[1-9][0-9]{20,40}", size in 1u64..u64::MAX, form in 0..3) {
        let h = match form {
            0 => format!("bytes={digits}-"),
            1 => format!("bytes=0-{digits}"),
            _ => format!("bytes=-{digits}"),
        };
        prop_assert_eq!(parse_range(&h, size), Err(RangeError::Invalid));
    }

    #[test]
    fn too_many_ranges_are_refused(n in (MAX_RANGES + 1)..5000, size in 1u64..u64::MAX) {
        let h = format!("bytes={}", vec!["0-0"; n].join(","));
        prop_assert_eq!(parse_range(&h, size), Err(RangeError::TooMany));
    }

    #[test]
    fn reversed_ranges_are_invalid(a in 1u64..u64::MAX, d in 1u64..u64::MAX, size in 1u64..u64::MAX) {
        let b = a.saturating_sub(d);
        prop_assume!(b < a);
        prop_assert_eq!(parse_range(&format!("bytes={a}-{b}"), size), Err(RangeError::Invalid));
    }
}
