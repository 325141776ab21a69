//! `/data?ih=|magnet=&path=` and `/data/infohash/<ih>/<path>`: a torrent file (or the whole
//! torrent) over HTTP, with Range and conditional requests; bytes flow as pieces verify.

use std::borrow::Cow;

use actix_web::{
    body::SizedStream,
    http::{header, Method, StatusCode},
    web, HttpRequest, HttpResponse,
};
use bytes::Bytes;
use confluence_core::{
    ident::{self, InfoHash},
    BodyPart, Engine, Selection,
};
use futures::StreamExt;

use crate::{
    conn::ConnFd,
    error::{text_response, HttpError},
    listing,
    query::{unescape, Query},
    range::{self, Decision},
};

/// What a `/data` request names, once parsed.
pub(crate) struct Target {
    pub ih: InfoHash,
    pub trackers: Vec<String>,
    /// `None`: the whole torrent.
    pub path: Option<Vec<u8>>,
    pub disposition: Option<String>,
    /// The path form: a directory named without its `/` is redirected to its listing.
    pub path_form: bool,
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
pub async fn query_form(req: HttpRequest, engine: web::Data<Engine>) -> HttpResponse {
    let q = Query::parse(req.query_string());
    let (ih, trackers) = match ident::resolve(q.get("magnet").as_deref(), q.get("ih").as_deref()) {
        Ok(r) => r,
        Err(e) => return HttpError::bad_request(e.http_message()).into(),
    };
    let path = q.bytes("path").map(<[u8]>::to_vec);
    let target = Target {
        ih,
        trackers,
        disposition: disposition(&q, path.as_deref()),
        path,
        path_form: false,
    };
    serve(req, engine, target).await
}

/// `/data/infohash/<ih>[/<path>]`.
pub async fn path_form(req: HttpRequest, engine: web::Data<Engine>) -> HttpResponse {
    let rest = req
        .uri()
        .path()
        .strip_prefix("/data/infohash/")
        .unwrap_or_default();
    let (ih_part, file_part) = rest.split_once('/').unwrap_or((rest, ""));
    let ih = match unescape(ih_part, false)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .ok_or_else(|| "invalid URL escape".to_string())
        .and_then(|s| ident::parse_hex(&s).map_err(|e| e.to_string()))
    {
        Ok(ih) => ih,
        Err(e) => {
            return HttpError::bad_request(format!("error determining requested infohash: {e}"))
                .into()
        }
    };
    let Some(file) = unescape(file_part, false) else {
        return HttpError::bad_request("invalid URL escape in path").into();
    };
    // Directory listings (see `listing.rs`): a path ending in `/`, and the root when asked.
    if let Some(dir) = file.strip_suffix(b"/") {
        let format = listing::negotiate(&req).unwrap_or(listing::Format::Html);
        return listing::serve(req, engine, ih, dir.to_vec(), format).await;
    }
    if file.is_empty() {
        if let Some(format) = listing::negotiate(&req).filter(|_| rest.ends_with('/')) {
            return listing::serve(req, engine, ih, Vec::new(), format).await;
        }
    }
    let q = Query::parse(req.query_string());
    let path = (!file.is_empty()).then_some(file);
    let target = Target {
        ih,
        trackers: Vec::new(),
        disposition: disposition(&q, path.as_deref()),
        path,
        path_form: true,
    };
    // `<ih>/` is the whole torrent or a listing depending on `Accept`: tell caches.
    let root = target.path.is_none() && rest.ends_with('/');
    let mut resp = serve(req, engine, target).await;
    if root {
        resp.headers_mut()
            .append(header::VARY, header::HeaderValue::from_static("Accept"));
    }
    resp
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

pub(crate) async fn serve(
    req: HttpRequest,
    engine: web::Data<Engine>,
    target: Target,
) -> HttpResponse {
    let with_disposition = |mut r: HttpResponse| {
        if let Some(d) = &target.disposition {
            if let Ok(v) = header::HeaderValue::from_bytes(d.as_bytes()) {
                r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
        }
        r
    };
    let torrent = match engine.acquire(target.ih, &target.trackers) {
        Ok(t) => t,
        Err(e) => return HttpError::from(e).into(),
    };
    let conn = ConnFd::of(&req);
    let info = tokio::select! {
        info = torrent.wait_info() => info,
        _ = ConnFd::closed(conn.clone()) => return crate::client_gone(),
    };
    let (sel, name) = match &target.path {
        Some(p) => match info.find_file(p) {
            Some(i) => (Selection::File(i), info.files[i].path.clone()),
            None if target.path_form && listing::is_dir(&info, p) => {
                return listing::dir_redirect(&req)
            }
            None => return with_disposition(HttpError::not_found("file not found").into()),
        },
        None => (Selection::All, info.name.clone()),
    };
    let size = match sel {
        Selection::File(i) => info.files[i].length,
        Selection::All => info.total_length,
    };
    let etag = match sel {
        Selection::File(i) => format!("\"{}-{i}\"", target.ih),
        Selection::All => format!("\"{}\"", target.ih),
    };
    let content_type = range::content_type_for(&name);
    let get_or_head = matches!(*req.method(), Method::GET | Method::HEAD);
    let (range_h, if_range, if_match, if_none_match) = (
        header_str(&req, header::RANGE),
        header_str(&req, header::IF_RANGE),
        header_str(&req, header::IF_MATCH),
        header_str(&req, header::IF_NONE_MATCH),
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
    let mut resp = HttpResponse::Ok();
    resp.insert_header((header::ETAG, etag.clone()));
    let (status, parts, length, ctype) = match decision {
        Decision::NotModified => {
            return with_disposition(
                HttpResponse::NotModified()
                    .insert_header((header::ETAG, etag))
                    .finish(),
            )
        }
        Decision::PreconditionFailed => {
            return with_disposition(text_response(
                StatusCode::PRECONDITION_FAILED,
                "precondition failed",
            ))
        }
        Decision::Unsatisfiable {
            content_range,
            body,
        } => {
            let mut r = text_response(StatusCode::RANGE_NOT_SATISFIABLE, body);
            if let Some(cr) = content_range.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
                r.headers_mut().insert(header::CONTENT_RANGE, cr);
            }
            return with_disposition(r);
        }
        Decision::Full => (
            StatusCode::OK,
            vec![BodyPart::Range {
                start: 0,
                len: size,
            }],
            size,
            content_type,
        ),
        Decision::Partial(r) => {
            resp.insert_header((header::CONTENT_RANGE, range::content_range(&r, size)));
            (
                StatusCode::PARTIAL_CONTENT,
                vec![BodyPart::Range {
                    start: r.start,
                    len: r.len,
                }],
                r.len,
                content_type,
            )
        }
        Decision::Multipart(ranges) => {
            let mp = range::Multipart::new(&ranges, &content_type, size);
            let mut parts = Vec::with_capacity(mp.parts.len() * 2 + 1);
            for (head, r) in &mp.parts {
                parts.push(BodyPart::Literal(Bytes::from(head.clone())));
                parts.push(BodyPart::Range {
                    start: r.start,
                    len: r.len,
                });
            }
            parts.push(BodyPart::Literal(Bytes::from(mp.closing.clone())));
            (
                StatusCode::PARTIAL_CONTENT,
                parts,
                mp.content_length(),
                mp.content_type(),
            )
        }
    };
    resp.status(status)
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::CONTENT_TYPE, ctype));
    for h in crate::dlna::data_headers(&req) {
        resp.insert_header(h);
    }
    let mut resp = if *req.method() == Method::HEAD || length == 0 {
        // No body is sent, but Content-Length must still say how long it would be.
        let empty = futures::stream::empty::<Result<Bytes, std::io::Error>>();
        resp.body(SizedStream::new(length, empty))
    } else {
        let reader = engine.reader(torrent, info, sel);
        let mut rx = engine.stream_body(reader, parts, ConnFd::closed(conn.clone()));
        // The head goes out with the first bytes: a failure before any byte (a full disk, a
        // torrent librqbit refuses) is then an error status with its reason, not a 200 that
        // stops short.
        let first = tokio::select! {
            first = rx.recv() => first,
            _ = ConnFd::closed(conn) => return crate::client_gone(),
        };
        let first = match first {
            Some(Ok(bytes)) => bytes,
            Some(Err(e)) => return with_disposition(read_error(&e)),
            None => return crate::client_gone(),
        };
        let rest = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let stream = futures::stream::once(async move { Ok(first) }).chain(rest);
        resp.body(SizedStream::new(length, stream))
    };
    if let Some(d) = &target.disposition {
        if let Ok(v) = header::HeaderValue::from_bytes(d.as_bytes()) {
            resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    // A stream may wait for pieces: a proxy (nginx) must pass bytes on as they come.
    resp.headers_mut().insert(
        header::HeaderName::from_static("x-accel-buffering"),
        header::HeaderValue::from_static("no"),
    );
    resp
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
