//! CORS for browser players on other origins (`-corsOrigins`): `/data` (listings included),
//! `/info` and `/playlist`.
//!
//! Off by default. With origins listed, a request from one of them gets
//! `Access-Control-Allow-Origin` and the range headers exposed; a preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is answered here, before the token check (browsers send
//! preflights without credentials), and one from an origin not listed gets a 403. `*` allows
//! every origin: only for a daemon whose content is public anyway (it still needs the token
//! when `-authToken` is set, sent as a header).

use actix_web::{
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{
        header::{self, HeaderMap, HeaderValue},
        Method, StatusCode,
    },
    middleware::Next,
    Error, HttpResponse,
};

use crate::error::text_response;

/// The allowed origins of `-corsOrigins`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CorsOrigins {
    any: bool,
    origins: Vec<String>,
}

/// Headers a cross-origin script may read.
const EXPOSE: &str = "Content-Range, Accept-Ranges, Content-Length, Content-Disposition, ETag";
/// Request headers a cross-origin script may send.
const ALLOW_HEADERS: &str = "Range, If-Range, If-Match, If-None-Match, Accept, Authorization";
const ALLOW_METHODS: &str = "GET, HEAD, OPTIONS";

impl CorsOrigins {
    /// A comma-separated list of `scheme://host[:port]` origins, or `*`; empty: none.
    pub fn parse(s: &str) -> Result<CorsOrigins, String> {
        let mut out = CorsOrigins::default();
        for o in s.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            if o == "*" {
                out.any = true;
                continue;
            }
            let o = o.trim_end_matches('/');
            let valid = o.split_once("://").is_some_and(|(scheme, host)| {
                matches!(scheme, "http" | "https") && crate::public_url::valid_authority(host)
            });
            if !valid {
                return Err(format!(
                    "invalid CORS origin {o:?}: expected * or scheme://host[:port]"
                ));
            }
            out.origins.push(o.to_ascii_lowercase());
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        !self.any && self.origins.is_empty()
    }

    /// The `Access-Control-Allow-Origin` value for `origin`, if allowed.
    fn allow(&self, origin: &str) -> Option<HeaderValue> {
        if self.any {
            return Some(HeaderValue::from_static("*"));
        }
        let o = origin.to_ascii_lowercase();
        self.origins
            .contains(&o)
            .then(|| HeaderValue::from_str(origin).ok())
            .flatten()
    }
}

/// Whether CORS applies to this path.
fn covered(path: &str) -> bool {
    matches!(path, "/data" | "/info" | "/playlist") || path.starts_with("/data/infohash/")
}

fn add_headers(h: &mut HeaderMap, allow: HeaderValue) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE),
    );
    h.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// The middleware; wraps outside the token check.
pub async fn cors(
    origins: std::sync::Arc<CorsOrigins>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_string);
    let Some(origin) = origin.filter(|_| !origins.is_empty() && covered(req.path())) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let allow = origins.allow(&origin);
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let resp = match allow {
            Some(allow) => {
                let mut r = HttpResponse::NoContent()
                    .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS))
                    .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS))
                    .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
                    .finish();
                add_headers(r.headers_mut(), allow);
                r
            }
            None => text_response(
                StatusCode::FORBIDDEN,
                "CORS: origin not allowed (see -corsOrigins)",
            ),
        };
        return Ok(req.into_response(resp));
    }
    let mut resp = next.call(req).await?.map_into_boxed_body();
    if let Some(allow) = allow {
        add_headers(resp.headers_mut(), allow);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_origins() {
        let o = CorsOrigins::parse("https://a.example, http://b.example:8080/").unwrap();
        assert!(o.allow("https://a.example").is_some());
        assert!(o.allow("HTTPS://A.example").is_some());
        assert!(o.allow("http://b.example:8080").is_some());
        assert!(o.allow("https://b.example:8080").is_none());
        assert!(o.allow("null").is_none());
        assert_eq!(CorsOrigins::parse("*").unwrap().allow("x").unwrap(), "*");
        assert!(CorsOrigins::parse("").unwrap().is_empty());
        for bad in ["a.example", "ftp://a", "https://a/b", "https://"] {
            assert!(CorsOrigins::parse(bad).is_err(), "{bad}");
        }
        assert!(covered("/data/infohash/x/") && covered("/playlist") && !covered("/status"));
    }
}
