//! `/info`, `/metainfo` (GET and POST) and `/health`.

use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse,
};
use confluence_core::{
    ident,
    metainfo::{build_torrent, to_json},
    Engine, PostError,
};

use futures::StreamExt;

use crate::{
    body::{declared_length, timeout_error, Idle},
    error::{text_response, HttpError},
    resolve::ResolvedNowait,
    MAX_BODY,
};

/// `GET /info`: the raw bencoded info dict (its SHA-1 is the infohash).
pub async fn info(ResolvedNowait(r): ResolvedNowait) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/octet-stream"))
        .body(r.info.info_bytes.clone())
}

/// `POST /metainfo`: stores a metainfo (the route's other methods are [`metainfo`]).
pub async fn post(
    req: HttpRequest,
    payload: web::Payload,
    engine: web::Data<Engine>,
    opts: web::Data<crate::Options>,
) -> Result<HttpResponse, HttpError> {
    let body = read_body(&req, payload).await?;
    if let Some(forwarded) = forward_post(&req, &opts, &body).await {
        return forwarded;
    }
    post_metainfo(&engine, &body)
}

/// `/metainfo` by any method but POST: the torrent's metainfo, as a `.torrent` or (with
/// `Accept: application/json`) as JSON.
pub async fn metainfo(
    req: HttpRequest,
    ResolvedNowait(r): ResolvedNowait,
) -> Result<HttpResponse, HttpError> {
    let mut m = r.torrent.metainfo().ok_or_else(|| {
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metainfo missing although the info is known",
        )
    })?;
    m.creation_date = Some(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    );
    m.comment = Some("dynamic metainfo from client".into());
    m.created_by = Some("https://github.com/anacrolix/torrent".into());
    let json = req
        .headers()
        .get(header::ACCEPT)
        .is_some_and(|a| a.as_bytes() == b"application/json");
    Ok(if json {
        HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .body(format!("{}\n", to_json(&m)))
    } else {
        HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "application/x-bittorrent"))
            .body(build_torrent(&m))
    })
}

/// The request body, at most [`MAX_BODY`] bytes: a larger one (by its `Content-Length`, before
/// anything is read, or as it arrives) is a 413, a broken one a 400, one that stops arriving a
/// 408, each with one line.
async fn read_body(req: &HttpRequest, payload: web::Payload) -> Result<Vec<u8>, HttpError> {
    read_body_max(req, payload, MAX_BODY).await
}

/// [`read_body`] with another limit (WebDAV's PROPFIND bodies are small).
pub(crate) async fn read_body_max(
    req: &HttpRequest,
    payload: web::Payload,
    max: usize,
) -> Result<Vec<u8>, HttpError> {
    let too_large = || {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body too large (limit {max} bytes)"),
        )
    };
    let declared = declared_length(req);
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let mut payload = Idle::new(payload);
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            if payload.timed_out() {
                return timeout_error();
            }
            let e = e.to_string().replace(['\n', '\r'], " ");
            HttpError::bad_request(format!("error reading body: {e}"))
        })?;
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// With `-clusterPeers`, a metainfo whose infohash another node owns goes there (nginx cannot
/// see an infohash in a body); `None` when this node is to store it (or it does not parse: the
/// 400 is this node's to give).
async fn forward_post(
    req: &HttpRequest,
    opts: &crate::Options,
    body: &[u8],
) -> Option<Result<HttpResponse, HttpError>> {
    let cluster = opts
        .cluster
        .as_ref()
        .filter(|_| !crate::cluster::is_forwarded(req))?;
    let info = confluence_core::metainfo::parse_metainfo(body)
        .ok()?
        .info_bytes?;
    let ih = ident::InfoHash::from_sha1_of(&info);
    let fwd =
        crate::cluster::request_like(req, &opts.node_name, None, crate::cluster::bytes_body(body));
    cluster
        .forward(&ih, fwd, std::time::Duration::from_secs(30))
        .await
}

fn post_metainfo(engine: &Engine, body: &[u8]) -> Result<HttpResponse, HttpError> {
    match engine.post_metainfo(body) {
        Ok((ih, _t)) => Ok(text_response(StatusCode::OK, &ih.to_string())),
        Err(e @ PostError::Decode(_)) | Err(e @ PostError::Info(_)) => {
            Err(HttpError::bad_request(e.to_string()))
        }
        Err(e @ PostError::Store(_)) => Err(HttpError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            e.to_string(),
        )),
    }
}

/// `/health`: 200, empty, any method.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().finish()
}
