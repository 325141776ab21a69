//! `-authToken`: optional access control for a daemon exposed beyond localhost.
//!
//! Every route (the websocket included) requires the token, as `Authorization: Bearer <token>`
//! or a `token=` query parameter; anything else gets 401. The comparison takes the same time
//! wherever the first difference is, so the token cannot be guessed byte by byte.

use actix_web::{
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{header, StatusCode},
    middleware::Next,
    Error,
};

use crate::{error::text_response, query::Query};

/// Compares in time that depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request carries `token`.
pub fn authorized(req: &ServiceRequest, token: &str) -> bool {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), token.as_bytes()));
    bearer
        || Query::parse(req.query_string())
            .bytes("token")
            .is_some_and(|t| constant_time_eq(t, token.as_bytes()))
}

/// The middleware: 401 `unauthorized` unless the request carries the token.
pub async fn require_token(
    token: Option<String>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    match token {
        Some(t) if !authorized(&req, &t) => {
            let mut resp = text_response(
                StatusCode::UNAUTHORIZED,
                "unauthorized: missing or wrong token",
            );
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            Ok(req.into_response(resp))
        }
        _ => Ok(next.call(req).await?.map_into_boxed_body()),
    }
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
