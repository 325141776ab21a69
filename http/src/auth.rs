//! `-authToken`: optional access control for a daemon exposed beyond localhost.
//!
//! Every route (the websocket included) requires the token, as `Authorization: Bearer <token>`
//! or a `token=` query parameter, or as the password of HTTP Basic auth (any user name: WebDAV
//! clients can send nothing else; `/dav/` answers 401 with a Basic challenge), or (for the web
//! page's `<video>` and websocket) the cookie the page's token form sets (`page::token`);
//! anything else gets 401, the page routes answering a browser with the token form. The
//! comparison takes the same time
//! wherever the first difference is, so the token cannot be guessed byte by byte.

use actix_web::{
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{header, StatusCode},
    middleware::Next,
    Error,
};

use crate::{access::constant_time_eq, error::text_response, query::Query};

/// Whether the request carries `token`.
pub fn authorized(req: &ServiceRequest, token: &str) -> bool {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), token.as_bytes()));
    bearer
        || basic_password(req).is_some_and(|p| constant_time_eq(&p, token.as_bytes()))
        || Query::parse(req.query_string())
            .bytes("token")
            .is_some_and(|t| constant_time_eq(t, token.as_bytes()))
        || crate::page::token::cookie_matches(req, token)
}

/// The password of `Authorization: Basic base64(user:password)`, any user name: WebDAV clients
/// cannot send a bearer token, so they give the token as the password.
fn basic_password(req: &ServiceRequest) -> Option<Vec<u8>> {
    let v = req.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = v.split_at(v.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"Basic") {
        return None;
    }
    let decoded = data_encoding::BASE64.decode(rest.trim_ascii()).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some(decoded[colon + 1..].to_vec())
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
            // WebDAV clients answer a Basic challenge (any user, the token as password).
            let challenge = if req.path() == crate::dav::ROUTE
                || req.path().starts_with(&format!("{}/", crate::dav::ROUTE))
            {
                r#"Basic realm="confluence", charset="UTF-8""#
            } else {
                "Bearer"
            };
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static(challenge),
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
