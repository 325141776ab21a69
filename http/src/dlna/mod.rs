//! `-dlna`: a UPnP AV MediaServer:1 (DLNA DMS) for TVs, serving the same tree as the FUSE mount.
//!
//! SSDP ([`ssdp`]) announces `http://<interface>:<port>/dlna/description.xml`; the device
//! description, the two SCPDs and the SOAP control URLs are routes of the main HTTP server, and
//! every item's `<res>` is a `/data/infohash/…` URL, so TVs stream through the same read path and
//! cache as everyone else. XML is written with quick-xml (torrent names are attacker-controlled).
//!
//! librqbit-upnp-serve 9.1.0 was considered and not used: it renders titles into its DIDL
//! templates unescaped, has no paging (StartingIndex/RequestedCount are ignored), answers
//! M-SEARCH only for two of the four search targets, derives the device UUID from the host name
//! instead of keeping one, lists only video, and needs its own axum server.

mod cds;
mod device;
pub mod ifaces;
mod soap;
pub mod ssdp;
mod tree;

use std::{
    fmt,
    sync::{Arc, Mutex},
};

use actix_web::{
    http::{
        header::{self, HeaderName, HeaderValue},
        Method, StatusCode,
    },
    web, HttpRequest, HttpResponse,
};
use confluence_core::{ident::InfoHash, Engine};
use futures::StreamExt;

use crate::error::text_response;

use cds::DLNA_FEATURES;
pub use device::device_uuid;

/// The device type SSDP announces and the description declares.
pub const DEVICE_TYPE: &str = "urn:schemas-upnp-org:device:MediaServer:1";
/// Largest SOAP request body read.
pub const MAX_SOAP_BODY: usize = 64 * 1024;
/// Where the description lives on the HTTP server.
pub const DESCRIPTION_PATH: &str = "/dlna/description.xml";

/// What the DLNA routes need; shared by every HTTP worker.
#[derive(Clone)]
pub struct DlnaOptions(Arc<State>);

impl fmt::Debug for DlnaOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DlnaOptions")
            .field("friendly_name", &self.0.friendly_name)
            .field("uuid", &self.0.uuid)
            .finish()
    }
}

impl DlnaOptions {
    /// `uuid` as from [`device_uuid`] (`uuid:…`).
    pub fn new(friendly_name: String, uuid: String) -> DlnaOptions {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() as u32);
        DlnaOptions(Arc::new(State {
            friendly_name,
            uuid,
            trees: tree::TreeCache::default(),
            update: Mutex::new((0, now)),
        }))
    }

    pub fn uuid(&self) -> &str {
        &self.0.uuid
    }
}

pub(crate) struct State {
    pub friendly_name: String,
    pub uuid: String,
    pub trees: tree::TreeCache,
    /// (fingerprint of the torrents, SystemUpdateID): the ID moves when the fingerprint does.
    update: Mutex<(u64, u32)>,
}

impl State {
    /// The SystemUpdateID for this set of known torrents and of those among them still
    /// waiting for metadata.
    pub fn update_id(&self, known: &[InfoHash], waiting: &[InfoHash]) -> u32 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (tag, list) in [(0u8, known), (1, waiting)] {
            h = (h ^ u64::from(tag)).wrapping_mul(0x0100_0000_01b3);
            for ih in list {
                for &b in &ih.0 {
                    h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                }
            }
        }
        let mut g = self.update.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 != h {
            *g = (h, g.1.wrapping_add(1));
        }
        g.1
    }
}

/// The DLNA routes, under `/dlna/`.
pub(crate) fn routes(cfg: &mut web::ServiceConfig, opts: &DlnaOptions) {
    cfg.app_data(web::Data::new(opts.clone()))
        .route(DESCRIPTION_PATH, web::to(device::description))
        .route("/dlna/ContentDirectory.xml", web::to(device::scpd_cds))
        .route("/dlna/ConnectionManager.xml", web::to(device::scpd_cm))
        .route("/dlna/control/{service}", web::to(control))
        .route("/dlna/event/{service}", web::to(event));
}

/// The `scheme://host[:port][/prefix]` that `<res>` URLs start with: `-publicURL`, a trusted
/// proxy's forwarding headers, else the address the control point reached, from its `Host`
/// header (checked to be a plain host and port), else the socket's local address.
pub fn dlna_base_url(req: &HttpRequest) -> String {
    crate::public_url::BaseUrl::of(req).url("")
}

pub(crate) fn xml_response(status: StatusCode, body: Vec<u8>) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/xml; charset=\"utf-8\""))
        .insert_header(("EXT", ""))
        .body(body)
}

/// Reads at most [`MAX_SOAP_BODY`] bytes; `Err` is the 413 to send.
async fn read_body(req: &HttpRequest, mut payload: web::Payload) -> Result<Vec<u8>, HttpResponse> {
    let too_large = || {
        text_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("413 SOAP request body too large (limit {MAX_SOAP_BODY} bytes)"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_SOAP_BODY as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            text_response(
                StatusCode::BAD_REQUEST,
                &format!("400 reading the body: {e}"),
            )
        })?;
        if body.len() + chunk.len() > MAX_SOAP_BODY {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `POST /dlna/control/{ContentDirectory,ConnectionManager}`: one SOAP action.
async fn control(
    req: HttpRequest,
    payload: web::Payload,
    engine: web::Data<Engine>,
    opts: web::Data<DlnaOptions>,
) -> HttpResponse {
    let service = match req.match_info().get("service") {
        Some("ContentDirectory") => cds::CDS,
        Some("ConnectionManager") => cds::CM,
        _ => return text_response(StatusCode::NOT_FOUND, "404 page not found"),
    };
    if *req.method() != Method::POST {
        let mut r = text_response(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let body = match read_body(&req, payload).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let fault = |f: soap::Fault| xml_response(StatusCode::INTERNAL_SERVER_ERROR, soap::fault(&f));
    let action = match soap::parse(&body) {
        Ok(a) => a,
        Err(f) => return fault(f),
    };
    if let Err(f) = check_soap_action(&req, service, &action) {
        return fault(f);
    }
    let base = dlna_base_url(&req);
    let engine = engine.into_inner();
    let state = opts.0.clone();
    let name = action.name.clone();
    // Listing the store reads a directory and each torrent's metainfo: off the HTTP thread.
    let out = web::block(move || {
        let ctx = cds::Ctx {
            engine: &engine,
            state: &state,
            base_url: &base,
        };
        if service == cds::CDS {
            cds::content_directory(&ctx, &action)
        } else {
            cds::connection_manager(&action)
        }
    })
    .await;
    match out {
        Ok(Ok(args)) => xml_response(StatusCode::OK, soap::response(service, &name, &args)),
        Ok(Err(f)) => fault(f),
        Err(e) => text_response(StatusCode::INTERNAL_SERVER_ERROR, &format!("500 {e}")),
    }
}

/// The action must be addressed to this service, in the body and in `SOAPACTION`
/// (`"<service type>#<action>"`) when the header is there.
fn check_soap_action(
    req: &HttpRequest,
    service: &str,
    a: &soap::Action,
) -> Result<(), soap::Fault> {
    let wrong = |what: &str| {
        soap::Fault::new(
            soap::INVALID_ACTION,
            format!("Invalid Action: {what:.120} is not an action of {service}"),
        )
    };
    if a.service != service {
        return Err(wrong(&format!("{}#{}", a.service, a.name)));
    }
    if let Some(h) = req.headers().get("soapaction") {
        let h = String::from_utf8_lossy(h.as_bytes());
        let h = h.trim().trim_matches('"');
        if h != format!("{service}#{}", a.name) {
            return Err(wrong(h));
        }
    }
    Ok(())
}

/// GENA eventing is not offered: `SUBSCRIBE` gets a clear refusal (control points browse
/// without it).
async fn event(req: HttpRequest) -> HttpResponse {
    match req.match_info().get("service") {
        Some("ContentDirectory" | "ConnectionManager") => text_response(
            StatusCode::NOT_IMPLEMENTED,
            "501 event subscriptions are not supported",
        ),
        _ => text_response(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// The DLNA headers of a `/data` answer: `transferMode.dlna.org` echoed when the client names
/// a mode, and `contentFeatures.dlna.org` (byte seeking, `DLNA.ORG_OP=01`) when it asks with
/// `getcontentFeatures.dlna.org: 1`.
pub(crate) fn data_headers(req: &HttpRequest) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    let mode = req
        .headers()
        .get("transfermode.dlna.org")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let mode = match mode {
        Some(m) if m.eq_ignore_ascii_case("streaming") => Some("Streaming"),
        Some(m) if m.eq_ignore_ascii_case("interactive") => Some("Interactive"),
        Some(m) if m.eq_ignore_ascii_case("background") => Some("Background"),
        _ => None,
    };
    if let Some(m) = mode {
        out.push((
            HeaderName::from_static("transfermode.dlna.org"),
            HeaderValue::from_static(m),
        ));
    }
    let asked = req
        .headers()
        .get("getcontentfeatures.dlna.org")
        .is_some_and(|v| v.as_bytes().trim_ascii() == b"1");
    if asked {
        out.push((
            HeaderName::from_static("contentfeatures.dlna.org"),
            HeaderValue::from_static(DLNA_FEATURES),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_id_moves_with_the_torrents() {
        let o = DlnaOptions::new("n".into(), "uuid:x".into());
        let (a, b) = (InfoHash([1; 20]), InfoHash([2; 20]));
        let first = o.0.update_id(&[a], &[a]);
        assert_eq!(o.0.update_id(&[a], &[a]), first, "nothing changed");
        let got_info = o.0.update_id(&[a], &[]);
        assert_ne!(got_info, first, "metadata arrived");
        let added = o.0.update_id(&[a, b], &[]);
        assert_ne!(added, got_info, "a torrent was added");
        assert_eq!(o.0.update_id(&[a, b], &[]), added);
    }
}
