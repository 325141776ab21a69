//! `/data?ih=|magnet=&path=` and `/data/infohash/<ih>/<path>`: a torrent file (or the whole
//! torrent) over HTTP, with Range and conditional requests; bytes flow as pieces verify.
//!
//! A request goes resolve (which torrent, with its metadata: `crate::resolve`) → plan (which
//! bytes, with which status and headers: [`plan`]) → body (the bytes: [`body`]).

use std::borrow::Cow;

use actix_web::{
    body::SizedStream,
    http::{header, Method, StatusCode},
    web, HttpRequest, HttpResponse, HttpResponseBuilder,
};
use bytes::Bytes;
use confluence_core::{
    ident::{self, InfoHash},
    metainfo::Info,
    BodyPart, Engine, Reader, Selection,
};
use futures::StreamExt;

use crate::{
    conn::ConnFd,
    error::{text_response, HttpError},
    listing,
    query::{unescape, Query},
    range::{self, Decision},
    resolve::{Named, Nowait, Resolved},
};

/// What a `/data` request names inside its torrent, once parsed.
pub(crate) struct Target {
    /// `None`: the whole torrent.
    pub path: Option<Vec<u8>>,
    pub disposition: Option<String>,
    /// The path form: a directory named without its `/` is redirected to its listing.
    pub path_form: bool,
}

impl Target {
    /// `resp` with the `Content-Disposition` the request asked for (errors included, as the
    /// original sets it before it knows the outcome).
    fn dress(&self, mut resp: HttpResponse) -> HttpResponse {
        if let Some(d) = &self.disposition {
            if let Ok(v) = header::HeaderValue::from_bytes(d.as_bytes()) {
                resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
        }
        resp
    }
}

/// A header's value as text. Bytes that are not visible ASCII are replaced rather than making
/// the header vanish: `Range: bytes=\xff-` is an invalid range (416), not a request without one.
fn header_str(req: &HttpRequest, name: header::HeaderName) -> Option<Cow<'_, str>> {
    req.headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .filter(|v| !v.is_empty())
}

/// `GET/HEAD /data?…` (any method, as the original).
pub async fn query_form(
    req: HttpRequest,
    engine: web::Data<Engine>,
    resolved: Resolved,
) -> HttpResponse {
    let path = resolved.query.bytes("path").map(<[u8]>::to_vec);
    let target = Target {
        disposition: disposition(&resolved.query, path.as_deref()),
        path,
        path_form: false,
    };
    serve(req, engine, resolved, target).await
}

/// `/data/infohash/<ih>[/<path>]`: a file, the whole torrent, or a directory's listing.
pub async fn path_form(req: HttpRequest, engine: web::Data<Engine>) -> HttpResponse {
    path_form_answer(&req, engine)
        .await
        .unwrap_or_else(HttpResponse::from)
}

async fn path_form_answer(
    req: &HttpRequest,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, HttpError> {
    let rest = req
        .uri()
        .path()
        .strip_prefix("/data/infohash/")
        .unwrap_or_default();
    let (ih_part, file_part) = rest.split_once('/').unwrap_or((rest, ""));
    let ih = path_infohash(ih_part)?;
    let file = unescape(file_part, false)
        .ok_or_else(|| HttpError::bad_request("invalid URL escape in path"))?;
    if let Some((dir, format)) = listing_of(req, rest, &file) {
        let resolved = Resolved::new(req, Named::bare(ih), Nowait::Honour).await?;
        return Ok(listing::answer(req, &resolved, dir, format));
    }
    // `<ih>/` is the whole torrent or a listing depending on `Accept`: tell caches.
    let root = file.is_empty() && rest.ends_with('/');
    let mut resp = match Resolved::new(req, Named::bare(ih), Nowait::Ignore).await {
        Ok(resolved) => {
            let path = (!file.is_empty()).then_some(file);
            let target = Target {
                disposition: disposition(&resolved.query, path.as_deref()),
                path,
                path_form: true,
            };
            serve(req.clone(), engine, resolved, target).await
        }
        Err(e) => e.into(),
    };
    if root {
        resp.headers_mut()
            .append(header::VARY, header::HeaderValue::from_static("Accept"));
    }
    Ok(resp)
}

/// The infohash segment of the path form (percent-escaped hex).
fn path_infohash(segment: &str) -> Result<InfoHash, HttpError> {
    unescape(segment, false)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .ok_or_else(|| "invalid URL escape".to_string())
        .and_then(|s| ident::parse_hex(&s).map_err(|e| e.to_string()))
        .map_err(|e| HttpError::bad_request(format!("error determining requested infohash: {e}")))
}

/// The directory (no trailing `/`) and format of a listing, when the path form asks for one
/// (see `listing.rs`): a path ending in `/`, and the root when `Accept` names a listing format.
fn listing_of<'a>(
    req: &HttpRequest,
    rest: &str,
    file: &'a [u8],
) -> Option<(&'a [u8], listing::Format)> {
    match file.strip_suffix(b"/") {
        Some(dir) => Some((
            dir,
            listing::negotiate(req).unwrap_or(listing::Format::Html),
        )),
        None if file.is_empty() && rest.ends_with('/') => {
            listing::negotiate(req).map(|f| (file, f))
        }
        None => None,
    }
}

/// `filename=` wins; else the display path; the whole torrent has none. `download=1` (the web
/// page's download links) makes it `attachment; …`, so a browser saves instead of showing.
fn disposition(q: &Query, path: Option<&[u8]>) -> Option<String> {
    let d = q.bytes("filename").or(path).map(range::content_disposition);
    if !q.flag("download") {
        return d;
    }
    Some(d.map_or_else(|| "attachment".to_string(), |d| format!("attachment; {d}")))
}

/// Answers `target` of a resolved torrent: plan the answer from the request's headers, then
/// send its body.
pub(crate) async fn serve(
    req: HttpRequest,
    engine: web::Data<Engine>,
    resolved: Resolved,
    target: Target,
) -> HttpResponse {
    let Resolved { torrent, info, .. } = resolved;
    let (sel, name) = match &target.path {
        Some(p) => match info.find_file(p) {
            Some(i) => (Selection::File(i), info.files[i].path.clone()),
            None if target.path_form && listing::is_dir(&info, p) => {
                return listing::dir_redirect(&req)
            }
            None => return target.dress(HttpError::not_found("file not found").into()),
        },
        None => (Selection::All, info.name.clone()),
    };
    let resp = match plan(&req, &torrent.ih, &info, sel, &name) {
        Ok(plan) => {
            let reader = engine.reader(torrent, info, sel);
            body(&req, &engine, reader, plan).await
        }
        Err(refusal) => *refusal,
    };
    target.dress(resp)
}

/// What a request for data gets, decided before any byte is read.
struct Plan {
    /// 200 or 206 with its headers.
    head: HttpResponseBuilder,
    /// What the body is made of: data ranges, and a multipart's literal part heads.
    parts: Vec<BodyPart>,
    /// The body's length.
    length: u64,
    /// How many bytes of the body come before its first data byte (a multipart's first part
    /// head): the head waits for more than these.
    lead: u64,
}

/// The status and headers for selection `sel` (named `name`) from the request's Range and
/// conditional headers; `Err` is a complete answer without data (304, 412, 416).
fn plan(
    req: &HttpRequest,
    ih: &InfoHash,
    info: &Info,
    sel: Selection,
    name: &str,
) -> Result<Plan, Box<HttpResponse>> {
    let (size, etag) = match sel {
        Selection::File(i) => (info.files[i].length, format!("\"{ih}-{i}\"")),
        Selection::All => (info.total_length, format!("\"{ih}\"")),
    };
    let content_type = range::content_type_for(name);
    let get_or_head = matches!(*req.method(), Method::GET | Method::HEAD);
    let (range_h, if_range, if_match, if_none_match) = (
        header_str(req, header::RANGE),
        header_str(req, header::IF_RANGE),
        header_str(req, header::IF_MATCH),
        header_str(req, header::IF_NONE_MATCH),
    );
    let decision = range::decide(
        get_or_head,
        size,
        &etag,
        range_h.as_deref(),
        if_range.as_deref(),
        if_match.as_deref(),
        if_none_match.as_deref(),
    );
    let mut head = HttpResponse::Ok();
    head.insert_header((header::ETAG, etag.clone()));
    let (status, parts, length, ctype, lead) = match decision {
        Decision::NotModified => {
            let r = HttpResponse::NotModified()
                .insert_header((header::ETAG, etag))
                .finish();
            return Err(Box::new(r));
        }
        Decision::PreconditionFailed => {
            let r = text_response(StatusCode::PRECONDITION_FAILED, "precondition failed");
            return Err(Box::new(r));
        }
        Decision::Unsatisfiable {
            content_range,
            body,
        } => {
            let mut r = text_response(StatusCode::RANGE_NOT_SATISFIABLE, body);
            if let Some(cr) = content_range.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
                r.headers_mut().insert(header::CONTENT_RANGE, cr);
            }
            return Err(Box::new(r));
        }
        Decision::Full => {
            let all = BodyPart::Range {
                start: 0,
                len: size,
            };
            (StatusCode::OK, vec![all], size, content_type, 0)
        }
        Decision::Partial(r) => {
            head.insert_header((header::CONTENT_RANGE, range::content_range(&r, size)));
            let part = BodyPart::Range {
                start: r.start,
                len: r.len,
            };
            (
                StatusCode::PARTIAL_CONTENT,
                vec![part],
                r.len,
                content_type,
                0,
            )
        }
        Decision::Multipart(ranges) => {
            let mp = range::Multipart::new(&ranges, &content_type, size);
            let lead = mp.parts.first().map_or(0, |(h, _)| h.len() as u64);
            let mut parts = Vec::with_capacity(mp.parts.len() * 2 + 1);
            for (head, r) in &mp.parts {
                parts.push(BodyPart::Literal(Bytes::from(head.clone())));
                parts.push(BodyPart::Range {
                    start: r.start,
                    len: r.len,
                });
            }
            parts.push(BodyPart::Literal(Bytes::from(mp.closing.clone())));
            let (length, ctype) = (mp.content_length(), mp.content_type());
            (StatusCode::PARTIAL_CONTENT, parts, length, ctype, lead)
        }
    };
    head.status(status)
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::CONTENT_TYPE, ctype));
    for h in crate::dlna::data_headers(req) {
        head.insert_header(h);
    }
    Ok(Plan {
        head,
        parts,
        length,
        lead,
    })
}

/// Sends the planned body through `reader`, bytes flowing as pieces verify.
///
/// The head goes out with the first data bytes: a failure before any (a full disk, a torrent
/// librqbit refuses) is then an error status with its reason, not a 200 or 206 that stops
/// short. A multipart body starts with a part head that is no data, so that is held back too.
async fn body(req: &HttpRequest, engine: &Engine, reader: Reader, plan: Plan) -> HttpResponse {
    let Plan {
        mut head,
        parts,
        length,
        lead,
    } = plan;
    // A stream may wait for pieces: a proxy (nginx) must pass bytes on as they come.
    head.insert_header((
        header::HeaderName::from_static("x-accel-buffering"),
        header::HeaderValue::from_static("no"),
    ));
    if *req.method() == Method::HEAD || length == 0 {
        // No body is sent, but Content-Length must still say how long it would be.
        let empty = futures::stream::empty::<Result<Bytes, std::io::Error>>();
        return head.body(SizedStream::new(length, empty));
    }
    let conn = ConnFd::of(req);
    let mut rx = engine.stream_body(reader, parts, ConnFd::closed(conn.clone()));
    let gone = ConnFd::closed(conn);
    tokio::pin!(gone);
    let mut held: Vec<std::io::Result<Bytes>> = Vec::new();
    let mut got = 0u64;
    while got <= lead {
        let next = tokio::select! {
            next = rx.recv() => next,
            _ = &mut gone => return HttpError::client_gone().into(),
        };
        match next {
            Some(Ok(bytes)) => {
                got += bytes.len() as u64;
                held.push(Ok(bytes));
            }
            Some(Err(e)) => return read_error(&e),
            // The stream was cancelled: the client left.
            None => return HttpError::client_gone().into(),
        }
    }
    let rest = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let stream = futures::stream::iter(held).chain(rest);
    head.body(SizedStream::new(length, stream))
}

/// The answer to a read that failed before any byte was sent: 507 for a full disk, else 500,
/// with the error chain on one line (librqbit's errors carry causes and a backtrace).
fn read_error(e: &std::io::Error) -> HttpResponse {
    let text = e.to_string();
    let reason = text
        .lines()
        .take_while(|l| !l.starts_with("Stack backtrace"))
        .map(|l| {
            let l = l.trim();
            // "0: cause" lines of anyhow's `{:?}`.
            l.split_once(": ")
                .filter(|(n, _)| n.bytes().all(|b| b.is_ascii_digit()))
                .map_or(l, |(_, cause)| cause)
        })
        .filter(|l| !l.is_empty() && *l != "Caused by:")
        .collect::<Vec<_>>()
        .join(": ");
    let status = if confluence_core::is_storage_full(e) {
        StatusCode::INSUFFICIENT_STORAGE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    tracing::warn!("answering {status}: error reading data: {reason}");
    text_response(status, &format!("error reading data: {reason}"))
}
