//! `/bep44?target=<hex>[&salt=<raw>]`: a BEP 44 DHT get in the original.
//!
//! The input is checked exactly as the original does (`target` from the query, or for POST, PUT
//! and PATCH from a urlencoded body first; bad hex → 400 with Go's hex error; fewer than 20
//! bytes → 400 `target has bad length`; more are cut to 20), and without a DHT the answer is the
//! original's 500 `no dht servers`. librqbit's DHT has no BEP 44 get (nor put), so with a DHT the
//! answer is 501 with that reason: never a made-up value or a fake "not found".

use actix_web::{
    http::{header, Method, StatusCode},
    web, HttpRequest, HttpResponse,
};
use confluence_core::{ident::IdentError, Engine};

use crate::{error::text_response, query::Query};

/// The reason given when a DHT is running but cannot do the lookup.
pub const UNSUPPORTED: &str =
    "BEP 44 get is not supported by this build (librqbit's DHT has no BEP 44)";

/// Go's `hex.DecodeString` (errors with its exact texts).
pub fn go_hex_decode(s: &[u8]) -> Result<Vec<u8>, String> {
    fn val(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    let bad = |c: u8| IdentError::InvalidHexByte(c).to_string();
    let mut out = Vec::with_capacity(s.len() / 2);
    for pair in s.chunks_exact(2) {
        let hi = val(pair[0]).ok_or_else(|| bad(pair[0]))?;
        let lo = val(pair[1]).ok_or_else(|| bad(pair[1]))?;
        out.push(hi << 4 | lo);
    }
    if s.len() % 2 == 1 {
        let last = s[s.len() - 1];
        if val(last).is_none() {
            return Err(bad(last));
        }
        return Err("encoding/hex: odd length hex string".into());
    }
    Ok(out)
}

/// The validated request: a 20-byte target and the raw salt.
#[derive(Debug, PartialEq, Eq)]
pub struct Bep44Get {
    pub target: [u8; 20],
    pub salt: Vec<u8>,
}

/// Checks `target` (and takes `salt`) as the original; `Err` is the 400 body.
pub fn parse(target: Option<&[u8]>, salt: Option<&[u8]>) -> Result<Bep44Get, String> {
    let bytes = go_hex_decode(target.unwrap_or_default())?;
    if bytes.len() < 20 {
        return Err("target has bad length".into());
    }
    let mut t = [0u8; 20];
    t.copy_from_slice(&bytes[..20]);
    Ok(Bep44Get {
        target: t,
        salt: salt.unwrap_or_default().to_vec(),
    })
}

fn is_form_body(req: &HttpRequest) -> bool {
    matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH)
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
}

/// `/bep44` (any method).
pub async fn bep44(req: HttpRequest, body: web::Bytes, engine: web::Data<Engine>) -> HttpResponse {
    let query = Query::parse(req.query_string());
    let form = if is_form_body(&req) {
        Query::parse(&String::from_utf8_lossy(&body))
    } else {
        Query::default()
    };
    // Go's r.FormValue: body values come before the query's.
    let value = |k: &str| form.bytes(k).or_else(|| query.bytes(k));
    let get = match parse(value("target"), value("salt")) {
        Ok(g) => g,
        Err(e) => return text_response(StatusCode::BAD_REQUEST, &e),
    };
    if engine.session().get_dht().is_none() {
        return text_response(StatusCode::INTERNAL_SERVER_ERROR, "no dht servers");
    }
    tracing::debug!(target = %hex::encode(get.target), salt_len = get.salt.len(), "/bep44: not supported");
    text_response(StatusCode::NOT_IMPLEMENTED, UNSUPPORTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_like_go() {
        assert_eq!(
            parse(Some(b"zz"), None).unwrap_err(),
            "encoding/hex: invalid byte: U+007A 'z'"
        );
        assert_eq!(
            parse(Some(b"abc"), None).unwrap_err(),
            "encoding/hex: odd length hex string"
        );
        assert_eq!(
            parse(Some(b"abg"), None).unwrap_err(),
            "encoding/hex: invalid byte: U+0067 'g'"
        );
        assert_eq!(parse(None, None).unwrap_err(), "target has bad length");
        assert_eq!(
            parse(Some(&[b'a'; 38]), None).unwrap_err(),
            "target has bad length"
        );
        let long = [b'A'; 44];
        let g = parse(Some(&long), Some(b"s")).unwrap();
        assert_eq!(g.target, [0xaa; 20]);
        assert_eq!(g.salt, b"s");
    }
}
