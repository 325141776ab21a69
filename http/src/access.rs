//! What the token check and the pages that show the command line share, with no route of
//! their own: the comparison of a presented token, and the command line with the token hidden.
//! A leaf module, so that the middleware (`auth`), the page's cookie (`page::token`) and
//! `/debug/vars` (`status`) each use it without depending on one another.

/// Compares in time that depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The command line with the value of `-authToken` (any of its spellings) replaced by
/// `REDACTED`, for the pages that show it (`/debug/vars`).
pub fn redacted_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut hide_next = false;
    for a in args {
        if std::mem::take(&mut hide_next) {
            out.push("REDACTED".to_string());
            continue;
        }
        let body = a.strip_prefix("--").or_else(|| a.strip_prefix('-'));
        match body.map(|b| b.split_once('=').map_or((b, None), |(n, v)| (n, Some(v)))) {
            Some(("authToken", None)) => {
                hide_next = true;
                out.push(a);
            }
            Some(("authToken", Some(_))) => {
                let name = a.split_once('=').map_or(a.as_str(), |(n, _)| n);
                out.push(format!("{name}=REDACTED"));
            }
            _ => out.push(a),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{constant_time_eq, redacted_args};

    #[test]
    fn redacts_the_token() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            redacted_args(args(&[
                "confluence",
                "-authToken=s3cret",
                "--authToken",
                "s3cret",
                "-authToken",
                "s3cret",
                "--authToken=a=b",
                "-addr=x:1",
                "-authTokenX=keep",
            ])),
            args(&[
                "confluence",
                "-authToken=REDACTED",
                "--authToken",
                "REDACTED",
                "-authToken",
                "REDACTED",
                "--authToken=REDACTED",
                "-addr=x:1",
                "-authTokenX=keep",
            ])
        );
    }

    #[test]
    fn compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
