//! `-authToken`: optional access control for a daemon exposed beyond localhost.
//!
//! Every route (the websocket included) requires the token, as `Authorization: Bearer <token>`
//! or a `token=` query parameter, or (for the web page's `<video>` and websocket) the cookie the
//! page's token form sets (`page::token`); anything else gets 401, the page routes answering a
//! browser with the token form. The comparison takes the same time
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
        || crate::page::token::cookie_matches(req, token)
}

/// The middleware: 401 `unauthorized` unless the request carries the token.
pub async fn require_token(
    token: Option<String>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    match token {
        Some(_) if crate::page::is_public_asset(req.path()) => {
            Ok(next.call(req).await?.map_into_boxed_body())
        }
        Some(t) if !authorized(&req, &t) => {
            if let Some(resp) = crate::page::token::login_page(&req) {
                return Ok(req.into_response(resp));
            }
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
        Some(t) => match crate::page::token::set_cookie_redirect(&req, &t) {
            Some(resp) => Ok(req.into_response(resp)),
            None => Ok(next.call(req).await?.map_into_boxed_body()),
        },
        None => Ok(next.call(req).await?.map_into_boxed_body()),
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
