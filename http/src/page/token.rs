//! `-authToken` for browsers: a page can neither put a header on `<video src>` nor on a
//! websocket, so after the token form (`?token=` on a page) the daemon sets it as an HttpOnly,
//! SameSite=Strict cookie, which the token check (`crate::auth`) accepts like the header, and redirects to the
//! address without the token.

use actix_web::{
    dev::ServiceRequest,
    http::{header, Method, StatusCode},
    HttpResponse,
};
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};

use super::{html, html_response, is_page};
use crate::{access::constant_time_eq, query::Query};

/// The cookie's name.
pub const COOKIE: &str = "confluence_token";

/// Whether a `Cookie` header of the request carries `token`.
pub fn cookie_matches(req: &ServiceRequest, token: &str) -> bool {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(|(k, _)| *k == COOKIE)
        .any(|(_, v)| {
            let v: Vec<u8> = percent_decode_str(v).collect();
            constant_time_eq(&v, token.as_bytes())
        })
}

fn is_browser_page(req: &ServiceRequest) -> bool {
    matches!(*req.method(), Method::GET | Method::HEAD)
        && is_page(req.path())
        && req
            .headers()
            .get_all(header::ACCEPT)
            .any(|v| String::from_utf8_lossy(v.as_bytes()).contains("text/html"))
}

/// Leads from a page to the root: `""` for `/`, `"../"` for `/t/<ih>`.
fn up(path: &str) -> &'static str {
    if path == "/" {
        ""
    } else {
        "../"
    }
}

/// The answer to a page request without a valid token: the token form (401).
pub fn login_page(req: &ServiceRequest) -> Option<HttpResponse> {
    if !is_browser_page(req) {
        return None;
    }
    let mut r = html_response(StatusCode::UNAUTHORIZED, html::login(up(req.path())));
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    Some(r)
}

/// The answer to an authorized page request that carries `?token=`: set the cookie and
/// redirect (relative, so a proxy's sub-path survives) to the same page without the token.
pub fn set_cookie_redirect(req: &ServiceRequest, token: &str) -> Option<HttpResponse> {
    let q = Query::parse(req.query_string());
    let given = q.bytes("token")?;
    if !is_browser_page(req) || !constant_time_eq(given, token.as_bytes()) {
        return None;
    }
    let rest: Vec<&str> = req
        .query_string()
        .split('&')
        .filter(|kv| !kv.is_empty() && kv.split('=').next() != Some("token"))
        .collect();
    let path = req.path();
    let mut loc = match path.rsplit_once('/') {
        Some((_, "")) | None => "./".to_string(),
        // `./` keeps a segment like `https:host` a path, never a scheme.
        Some((_, last)) => format!("./{last}"),
    };
    if !rest.is_empty() {
        loc = format!("{loc}?{}", rest.join("&"));
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        utf8_percent_encode(token, NON_ALPHANUMERIC)
    );
    Some(
        HttpResponse::SeeOther()
            .insert_header((header::LOCATION, loc))
            .insert_header((header::SET_COOKIE, cookie))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
    )
}
