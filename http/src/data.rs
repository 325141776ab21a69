//! `/data?ih=|magnet=&path=` and `/data/infohash/<ih>/<path>`: a torrent file (or the whole
//! torrent) over HTTP, with Range and conditional requests; bytes flow as pieces verify.

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

use crate::{
    conn::ConnFd,
    error::{text_response, HttpError},
    query::{unescape, Query},
    range::{self, Decision},
};

/// What a `/data` request names, once parsed.
struct Target {
    ih: InfoHash,
    trackers: Vec<String>,
    /// `None`: the whole torrent.
    path: Option<Vec<u8>>,
    disposition: Option<String>,
}

fn header_str(req: &HttpRequest, name: header::HeaderName) -> Option<&str> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
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
    let q = Query::parse(req.query_string());
    let path = (!file.is_empty()).then_some(file);
    let target = Target {
        ih,
        trackers: Vec::new(),
        disposition: disposition(&q, path.as_deref()),
        path,
    };
    serve(req, engine, target).await
}

/// `filename=` wins; else the display path; the whole torrent has none.
fn disposition(q: &Query, path: Option<&[u8]>) -> Option<String> {
    q.bytes("filename").or(path).map(range::content_disposition)
}

async fn serve(req: HttpRequest, engine: web::Data<Engine>, target: Target) -> HttpResponse {
    let with_disposition = |mut r: HttpResponse| {
        if let Some(d) = &target.disposition {
            if let Ok(v) = header::HeaderValue::from_bytes(d.as_bytes()) {
                r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
        }
        r
    };
    let torrent = engine.acquire(target.ih, &target.trackers);
    let conn = ConnFd::of(&req);
    let info = tokio::select! {
        info = torrent.wait_info() => info,
        _ = ConnFd::closed(conn.clone()) => return crate::client_gone(),
    };
    let (sel, name) = match &target.path {
        Some(p) => match info.find_file(p) {
            Some(i) => (Selection::File(i), info.files[i].path.clone()),
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
    let decision = range::decide(
        get_or_head,
        size,
        &etag,
        header_str(&req, header::RANGE),
        header_str(&req, header::IF_RANGE),
        header_str(&req, header::IF_MATCH),
        header_str(&req, header::IF_NONE_MATCH),
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
    let mut resp = if *req.method() == Method::HEAD || length == 0 {
        // No body is sent, but Content-Length must still say how long it would be.
        let empty = futures::stream::empty::<Result<Bytes, std::io::Error>>();
        resp.body(SizedStream::new(length, empty))
    } else {
        let reader = engine.reader(torrent, info, sel);
        let rx = engine.stream_body(reader, parts, ConnFd::closed(conn));
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        resp.body(SizedStream::new(length, stream))
    };
    if let Some(d) = &target.disposition {
        if let Ok(v) = header::HeaderValue::from_bytes(d.as_bytes()) {
            resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    resp
}
