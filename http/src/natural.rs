//! Natural order of names, as people sort episodes: `ep2` before `ep10`.
//!
//! Names are split into runs of ASCII digits and runs of everything else. Digit runs compare
//! by value (leading zeros ignored, then fewer zeros first), other runs case-insensitively by
//! Unicode scalar; a full tie is broken by the plain byte order, so the order is total.

use std::cmp::Ordering;

/// Compares two names in natural order.
pub fn cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a, b);
    loop {
        match (x.is_empty(), y.is_empty()) {
            (true, true) => return a.cmp(b),
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        let (rx, restx) = run(x);
        let (ry, resty) = run(y);
        let o = match (is_digits(rx), is_digits(ry)) {
            (true, true) => cmp_digits(rx, ry),
            // A number sorts before text at the same place ("1 a" < "a").
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => cmp_text(rx, ry),
        };
        if o != Ordering::Equal {
            return o;
        }
        (x, y) = (restx, resty);
    }
}

/// The leading run of `s` (all digits, or no digit) and the rest.
fn run(s: &str) -> (&str, &str) {
    let digit = s.as_bytes()[0].is_ascii_digit();
    let end = s
        .bytes()
        .position(|b| b.is_ascii_digit() != digit)
        .unwrap_or(s.len());
    s.split_at(end)
}

fn is_digits(s: &str) -> bool {
    s.as_bytes().first().is_some_and(u8::is_ascii_digit)
}

fn cmp_digits(a: &str, b: &str) -> Ordering {
    let (ta, tb) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    ta.len()
        .cmp(&tb.len())
        .then_with(|| ta.cmp(tb))
        .then_with(|| a.len().cmp(&b.len()))
}

fn cmp_text(a: &str, b: &str) -> Ordering {
    let lower = |s: &str| s.chars().flat_map(char::to_lowercase).collect::<Vec<_>>();
    lower(a).cmp(&lower(b))
}

#[cfg(test)]
mod tests {
    use super::cmp;

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        v.sort_by(|a, b| cmp(a, b));
        v
    }

    #[test]
    fn episodes_in_natural_order() {
        assert_eq!(
            sorted(&["Show E10.mkv", "Show E2.mkv", "Show E1.mkv", "show e3.mkv"]),
            ["Show E1.mkv", "Show E2.mkv", "show e3.mkv", "Show E10.mkv"]
        );
        assert_eq!(
            sorted(&["s02e01", "s01e10", "s01e02", "s10e01"]),
            ["s01e02", "s01e10", "s02e01", "s10e01"]
        );
    }

    #[test]
    fn zeros_huge_numbers_and_ties() {
        assert_eq!(
            sorted(&["a01", "a1", "a001", "a2"]),
            ["a1", "a01", "a001", "a2"]
        );
        // Longer than any integer type: compared as digit strings.
        let big = "x123456789012345678901234567890";
        let bigger = "x923456789012345678901234567890";
        assert_eq!(sorted(&[bigger, big, "x9"]), ["x9", big, bigger]);
        assert_eq!(sorted(&["B", "a", "A", "b"]), ["A", "a", "B", "b"]);
        assert_eq!(sorted(&["clip.mp4", "clip.mkv"]), ["clip.mkv", "clip.mp4"]);
        assert_eq!(sorted(&["", "1", "a"]), ["", "1", "a"]);
        assert_eq!(sorted(&["ü2", "ü10", "Ü1"]), ["Ü1", "ü2", "ü10"]);
    }

    #[test]
    fn total_order() {
        let names = ["a", "A", "a1", "a01", "a10", "b", "1", "01", "", "ä", "Ä"];
        for x in names {
            assert_eq!(cmp(x, x), std::cmp::Ordering::Equal);
            for y in names {
                assert_eq!(cmp(x, y), cmp(y, x).reverse(), "{x:?} {y:?}");
                if x != y {
                    assert_ne!(cmp(x, y), std::cmp::Ordering::Equal, "{x:?} {y:?}");
                }
            }
        }
    }
}
