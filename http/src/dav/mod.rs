//! `/dav/`: a read-only WebDAV share (class 1) of the tree the FUSE mount shows,
//! `/dav/<infohash>/<path>`. PROPFIND (Depth 0 and 1), GET/HEAD through `/data`'s read path
//! (Range, validators, the same cache), OPTIONS; everything that would write is refused.
//! Naming an unknown infohash adds the torrent, as the mount and `/data?ih=` do.

mod xml;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{
    http::{header, Method, StatusCode},
    web, HttpRequest, HttpResponse,
};
use confluence_core::{
    ident::{self, InfoHash},
    metainfo::Info,
    tree::{FileTree, Kind},
    Engine, TorrentRef,
};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use self::xml::{FileProps, Resource};
use crate::{
    data,
    error::{text_response, HttpError},
    query::unescape,
    range,
    resolve::{self, Named, Nowait, Resolved},
};

/// Where the share is routed.
pub const ROUTE: &str = "/dav";
/// The largest PROPFIND body accepted (real ones are well under 1 KiB).
pub const MAX_PROPFIND_BODY: usize = 64 * 1024;
const ALLOW: &str = "OPTIONS, GET, HEAD, PROPFIND";
/// Percent-encoded in hrefs: everything but RFC 3986's unreserved characters.
const HREF: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The path prefix of every href this share writes (`/dav`, no trailing slash), behind the
/// prefix clients see the daemon under (`-publicURL`, or a trusted proxy's
/// `X-Forwarded-Prefix`: see [`crate::public_url`]).
pub fn href_prefix(req: &HttpRequest) -> String {
    format!("{}{ROUTE}", crate::public_url::BaseUrl::of(req).prefix())
}

/// What a request path names.
enum Target {
    Root,
    /// The torrent directory or something below it: the decoded components below it.
    Torrent(InfoHash, Vec<String>),
}

fn not_found(why: &str) -> HttpResponse {
    text_response(StatusCode::NOT_FOUND, why)
}

/// Parses the path below [`ROUTE`]: `""`/`"/"` is the root, then `<ih>/<comp>/…` with each
/// component percent-decoded. Components that are no name (`.`, `..`, not UTF-8) name nothing.
fn parse_path(path: &str) -> Result<Target, HttpError> {
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    let Some(first) = segs.next() else {
        return Ok(Target::Root);
    };
    let ih = unescape(first, false)
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| s.len() == 40)
        .and_then(|s| ident::parse_hex(&s).ok())
        .ok_or_else(|| {
            HttpError::not_found("not found: the share's top level holds only 40-hex infohashes")
        })?;
    let mut comps = Vec::new();
    for s in segs {
        let c = unescape(s, false)
            .ok_or_else(|| HttpError::bad_request("invalid URL escape in path"))?;
        let c = String::from_utf8(c).map_err(|_| HttpError::not_found("not found"))?;
        comps.push(c);
    }
    Ok(Target::Torrent(ih, comps))
}

/// Every method on `/dav` and below.
pub async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    engine: web::Data<Engine>,
) -> HttpResponse {
    let path = req.uri().path();
    let rest = path.strip_prefix(ROUTE).unwrap_or_default();
    if !(rest.is_empty() || rest.starts_with('/')) {
        return not_found("404 page not found");
    }
    let method = req.method().clone();
    match method.as_str() {
        "OPTIONS" => return options(),
        "PROPFIND" | "GET" | "HEAD" => {}
        m @ ("PUT" | "DELETE" | "MKCOL" | "MOVE" | "COPY" | "PROPPATCH" | "LOCK" | "UNLOCK"
        | "POST" | "PATCH") => {
            return refuse(&format!("read-only WebDAV share: {m} is not allowed"))
        }
        m => return refuse(&format!("method {m} is not supported by this WebDAV share")),
    }
    let target = match parse_path(rest) {
        Ok(t) => t,
        Err(e) => return e.into(),
    };
    if method == Method::GET || method == Method::HEAD {
        get(req, engine, target).await
    } else {
        propfind(req, payload, engine, target).await
    }
}

fn options() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("DAV", "1"))
        .insert_header((header::ALLOW, ALLOW))
        // Windows' WebDAV redirector looks for this before treating the server as WebDAV.
        .insert_header(("MS-Author-Via", "DAV"))
        .finish()
}

fn refuse(why: &str) -> HttpResponse {
    let mut r = text_response(StatusCode::METHOD_NOT_ALLOWED, why);
    r.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(ALLOW));
    r
}

/// The torrent's date (its metainfo's creation date), else the epoch: stable across requests.
fn torrent_time(t: &TorrentRef) -> SystemTime {
    match *t.creation_date.lock() {
        Some(s) if s > 0 => UNIX_EPOCH + Duration::from_secs(s as u64),
        _ => UNIX_EPOCH,
    }
}

/// GET/HEAD: a file goes through `/data`'s path; a collection has no body to give.
async fn get(req: HttpRequest, engine: web::Data<Engine>, target: Target) -> HttpResponse {
    let (ih, comps) = match target {
        Target::Torrent(ih, comps) if !comps.is_empty() => (ih, comps),
        _ => return collection_get(),
    };
    let resolved = match Resolved::new(&req, Named::bare(ih), Nowait::Ignore).await {
        Ok(r) => r,
        Err(e) => return e.into(),
    };
    let file = match FileTree::new(resolved.info.clone()).resolve(&comps) {
        Some(Kind::File(f)) => f,
        Some(Kind::Dir(_)) => return collection_get(),
        None => return not_found("file not found"),
    };
    let modified = xml::http_date(torrent_time(&resolved.torrent));
    let target = data::Target {
        path: Some(resolved.info.files[file].raw_path.clone()),
        disposition: None,
        path_form: false,
    };
    let mut resp = data::serve(req, engine, resolved, target).await;
    if let Ok(v) = header::HeaderValue::from_str(&modified) {
        resp.headers_mut().insert(header::LAST_MODIFIED, v);
    }
    resp
}

fn collection_get() -> HttpResponse {
    refuse("a collection has no content: list it with PROPFIND")
}

/// The `Depth` header: 0 or 1; infinity (also what no header means) is refused.
fn depth(req: &HttpRequest) -> Result<bool, HttpError> {
    let v = req.headers().get("Depth").map(|v| v.as_bytes());
    match v {
        Some(b"0") => Ok(false),
        Some(b"1") => Ok(true),
        Some(v) if !v.eq_ignore_ascii_case(b"infinity") => {
            Err(HttpError::bad_request("invalid Depth header: use 0 or 1"))
        }
        _ => Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "PROPFIND with Depth: infinity (or no Depth header) is not supported: use Depth: 0 or 1",
        )),
    }
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, HREF).to_string()
}

fn collection(href: String, name: String, modified: SystemTime) -> Resource {
    Resource {
        href,
        name,
        modified,
        file: None,
    }
}

async fn propfind(
    req: HttpRequest,
    payload: web::Payload,
    engine: web::Data<Engine>,
    target: Target,
) -> HttpResponse {
    let children = match depth(&req) {
        Ok(d) => d,
        Err(e) => return e.into(),
    };
    let body = match crate::meta::read_body_max(&req, payload, MAX_PROPFIND_BODY).await {
        Ok(b) => b,
        Err(e) => return e.into(),
    };
    let want = match xml::parse_propfind(&body) {
        Ok(w) => w,
        Err(e) => return text_response(StatusCode::BAD_REQUEST, &e),
    };
    let prefix = href_prefix(&req);
    let resources = match target {
        Target::Root => Box::new(root_resources(&engine, &prefix, children).into_iter()),
        Target::Torrent(ih, comps) => {
            match torrent_resources(&req, &engine, &prefix, ih, &comps, children).await {
                Ok(r) => r,
                Err(resp) => return resp,
            }
        }
    };
    let body = xml::Multistatus::new(resources, want);
    let mut resp = HttpResponse::build(StatusCode::MULTI_STATUS);
    resp.insert_header((header::CONTENT_TYPE, "application/xml; charset=utf-8"));
    if body.is_small() {
        resp.body(body.into_bytes())
    } else {
        resp.streaming(futures::stream::iter(
            body.map(Ok::<_, std::convert::Infallible>),
        ))
    }
}

/// The root and, with Depth 1, every torrent the daemon knows. Never waits.
fn root_resources(engine: &Engine, prefix: &str, children: bool) -> Vec<Resource> {
    let mut out = vec![collection(format!("{prefix}/"), String::new(), UNIX_EPOCH)];
    if children {
        let live: std::collections::HashMap<InfoHash, SystemTime> = engine
            .torrents()
            .into_iter()
            .filter_map(|t| Some((t.ih, (*t.creation_date.lock())?)))
            .filter(|(_, d)| *d > 0)
            .map(|(ih, d)| (ih, UNIX_EPOCH + Duration::from_secs(d as u64)))
            .collect();
        for ih in engine.known() {
            let when = live.get(&ih).copied().unwrap_or(UNIX_EPOCH);
            out.push(collection(format!("{prefix}/{ih}/"), ih.to_string(), when));
        }
    }
    out
}

type Resources = Box<dyn Iterator<Item = Resource> + Send>;

/// A resource inside a torrent, and its children with Depth 1 (made as the answer is sent).
/// The torrent directory itself at Depth 0 answers at once; anything else waits for the
/// torrent's info.
async fn torrent_resources(
    req: &HttpRequest,
    engine: &Engine,
    prefix: &str,
    ih: InfoHash,
    comps: &[String],
    children: bool,
) -> Result<Resources, HttpResponse> {
    let t = resolve::acquire(engine, &Named::bare(ih)).map_err(HttpResponse::from)?;
    let top = format!("{prefix}/{ih}/");
    if comps.is_empty() && !children && t.info().is_none() {
        let one = collection(top, ih.to_string(), torrent_time(&t));
        return Ok(Box::new(std::iter::once(one)));
    }
    let info = resolve::wait_info(req, &t)
        .await
        .map_err(HttpResponse::from)?;
    let modified = torrent_time(&t);
    let tree = FileTree::new(info.clone());
    let node = tree.resolve(comps).ok_or_else(|| not_found("not found"))?;
    let mut href = top;
    for c in comps {
        href.push_str(&enc(c));
        href.push('/');
    }
    let name = comps.last().cloned().unwrap_or_else(|| ih.to_string());
    let made = Made { info, ih, modified };
    let this = made.resource(href.clone(), name, node);
    // Copied out of the tree (the names move into the resources), so the tree can go now.
    let kids = match (node, children) {
        (Kind::Dir(d), true) => tree.dir(d).map_or_else(Vec::new, |d| d.entries().to_vec()),
        _ => Vec::new(),
    };
    let rest = kids
        .into_iter()
        .map(move |e| made.resource(format!("{href}{}/", enc(&e.name)), e.name, e.kind));
    Ok(Box::new(std::iter::once(this).chain(rest)))
}

/// What every resource of one torrent shares.
struct Made {
    info: std::sync::Arc<Info>,
    ih: InfoHash,
    modified: SystemTime,
}

impl Made {
    /// `href` ends in `/`; a file's loses it.
    fn resource(&self, href: String, name: String, kind: Kind) -> Resource {
        match kind {
            Kind::Dir(_) => collection(href, name, self.modified),
            Kind::File(f) => Resource {
                href: href.strip_suffix('/').map(str::to_owned).unwrap_or(href),
                file: Some(FileProps {
                    length: self.info.files[f].length,
                    content_type: range::content_type_for(&name),
                    // The same strong validator `/data` gives the file.
                    etag: format!("\"{}-{f}\"", self.ih),
                }),
                name,
                modified: self.modified,
            },
        }
    }
}
