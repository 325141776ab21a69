//! `POST /upload` (any method, as the original): a multipart form with a `name` field and
//! `files` parts becomes a multi-file torrent whose pieces are stored as if downloaded; the
//! answer is its bencoded metainfo with an `-implicitTracker` tier (see core's `upload`).
//!
//! Differences from the original, on purpose: a missing `name` is a 400 `missing name` (the
//! original panics and drops the connection); multipart errors are 400 (the original's 500),
//! with the same `parsing multipart form: …` text; an upload with no `files` or with a path
//! component that is empty, `.` or `..` is refused with 400; the answer has
//! `Content-Type: application/x-bittorrent` (the original sends none).

use std::net::{IpAddr, SocketAddr};

use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse,
};
use confluence_core::{
    upload::{upload_response, UploadFile},
    Engine,
};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::{
    body::{declared_length, timeout_error, Idle},
    error::HttpError,
    Options,
};

/// Largest non-file field value kept in memory (Go keeps `maxMemory` = 10 MiB of values).
const MAX_VALUE: usize = 10 << 20;

/// Most parts in one form (Go's `multipart` default since 1.20, `multipartmaxparts`): each
/// file part is a scratch file and a torrent file entry, each value an entry in memory.
pub const MAX_PARTS: usize = 1000;

fn form_error(detail: impl std::fmt::Display) -> HttpError {
    HttpError::bad_request(format!("parsing multipart form: {detail}"))
}

/// Go's `multipartReader` checks: the type must be `multipart/form-data`, with a boundary.
fn check_content_type(req: &HttpRequest) -> Result<(), HttpError> {
    let not_multipart = || form_error("request Content-Type isn't multipart/form-data");
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(not_multipart)?;
    let mime: mime_guess::mime::Mime = ct.parse().map_err(|_| not_multipart())?;
    if mime.essence_str() != "multipart/form-data" {
        return Err(not_multipart());
    }
    if mime.get_param("boundary").is_none() {
        return Err(form_error("no multipart boundary param in Content-Type"));
    }
    Ok(())
}

/// The form as the handler uses it: values by name (first wins when read) and the file parts.
struct Form {
    values: Vec<(String, String)>,
    files: Vec<UploadFile>,
}

impl Form {
    fn value(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The 413 for an upload with more than `limit` bytes of file data.
fn too_large(limit: u64) -> HttpError {
    HttpError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "upload is larger than the cache capacity ({limit} bytes): \
             raise -cacheCapacity or use -fileDir"
        ),
    )
}

/// Room in a request body for the form's values and part headers, on top of the file data.
const FORM_OVERHEAD: u64 = MAX_VALUE as u64 + (1 << 20);

/// Reads the whole form, streaming each `files` part to a file in `dir`; more than `limit`
/// bytes of file data in all is a 413 as soon as it is seen.
async fn read_form(
    req: &HttpRequest,
    payload: web::Payload,
    dir: &std::path::Path,
    limit: Option<u64>,
) -> Result<Form, HttpError> {
    let payload = Idle::new(payload);
    let timed_out = payload.timed_out_flag();
    // Every multipart error is a 400, unless the body stopped arriving (a 408).
    let multipart_error = |e: actix_multipart::MultipartError| {
        if timed_out.load(std::sync::atomic::Ordering::Relaxed) {
            timeout_error()
        } else {
            form_error(e)
        }
    };
    let mut mp = actix_multipart::Multipart::new(req.headers(), payload);
    let mut form = Form {
        values: Vec::new(),
        files: Vec::new(),
    };
    let mut value_bytes = 0usize;
    let mut file_bytes = 0u64;
    let mut parts = 0usize;
    while let Some(field) = mp.next().await {
        let mut field = field.map_err(multipart_error)?;
        parts += 1;
        if parts > MAX_PARTS {
            return Err(form_error(format!(
                "multipart: message too large (more than {MAX_PARTS} parts)"
            )));
        }
        let Some(cd) = field.content_disposition().cloned() else {
            continue;
        };
        let name = cd.get_name().unwrap_or_default().to_string();
        let filename = cd
            .get_filename_ext()
            .map(|e| String::from_utf8_lossy(&e.value).into_owned())
            .or_else(|| cd.get_filename().map(str::to_string))
            .filter(|f| !f.is_empty());
        match filename {
            // A file part: only `files` are used, but every file part is read through.
            Some(filename) if name == "files" => {
                let path = dir.join(form.files.len().to_string());
                let mut out = tokio::fs::File::create(&path).await.map_err(|e| {
                    HttpError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("storing upload: {e}"),
                    )
                })?;
                let mut length = 0u64;
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(multipart_error)?;
                    length += chunk.len() as u64;
                    file_bytes += chunk.len() as u64;
                    if let Some(limit) = limit.filter(|&l| file_bytes > l) {
                        return Err(too_large(limit));
                    }
                    out.write_all(&chunk).await.map_err(|e| {
                        HttpError::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("storing upload: {e}"),
                        )
                    })?;
                }
                out.flush().await.map_err(|e| {
                    HttpError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("storing upload: {e}"),
                    )
                })?;
                form.files.push(UploadFile {
                    path: filename.split('/').map(str::to_string).collect(),
                    data: path,
                    length,
                });
            }
            Some(_) => {
                while let Some(chunk) = field.next().await {
                    chunk.map_err(multipart_error)?;
                }
            }
            None => {
                let mut v = Vec::new();
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(multipart_error)?;
                    value_bytes += chunk.len();
                    if value_bytes > MAX_VALUE {
                        return Err(form_error("multipart: message too large"));
                    }
                    v.extend_from_slice(&chunk);
                }
                if !name.is_empty() {
                    form.values
                        .push((name, String::from_utf8_lossy(&v).into_owned()));
                }
            }
        }
    }
    Ok(form)
}

/// `host:port` as Go's `net.JoinHostPort`.
fn node(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

/// `/upload` (see the module doc).
pub async fn upload(
    req: HttpRequest,
    payload: web::Payload,
    engine: web::Data<Engine>,
    opts: web::Data<Options>,
) -> Result<HttpResponse, HttpError> {
    check_content_type(&req)?;
    let limit = engine.upload_limit();
    // A body that says it is too large is refused before it is read.
    if let (Some(limit), Some(n)) = (limit, declared_length(&req)) {
        if n > limit.saturating_add(FORM_OVERHEAD) {
            return Err(too_large(limit));
        }
    }
    let dir = engine.upload_dir().map_err(|e| {
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storing upload: {e}"),
        )
    })?;
    let form = read_form(&req, payload, dir.path(), limit).await?;
    let name = form
        .value("name")
        .ok_or_else(|| HttpError::bad_request("missing name"))?
        .to_string();
    let strip = form.value("strip-top-directory").is_some();
    let mut files = form.files;
    if strip {
        for f in &mut files {
            if f.path.len() > 1 {
                f.path.remove(0);
            }
        }
    }
    if let Some(c) = opts.cluster.as_ref() {
        if !crate::cluster::is_forwarded(&req) {
            let owner = crate::cluster::forward_upload(&req, &engine, &opts, c, &name, &files);
            if let Some(answer) = owner.await {
                return answer;
            }
        }
    }
    let eng = engine.get_ref().clone();
    let imported = engine
        .runtime()
        .spawn_blocking(move || {
            let r = eng.import_upload(&name, &files);
            drop(dir);
            r
        })
        .await
        .map_err(|e| {
            HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("storing upload: {e}"),
            )
        })?;
    let up = match imported {
        Ok(u) => u,
        Err(e) if e.is_client_error() => return Err(HttpError::bad_request(e.to_string())),
        Err(e) => {
            tracing::warn!("error uploading: {e}");
            return Err(HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                e.to_string(),
            ));
        }
    };
    let port = engine.listen_addr().port();
    let nodes: Vec<String> = opts.public_ips.iter().map(|ip| node(*ip, port)).collect();
    let body = upload_response(
        &up.info.info_bytes,
        up.creation_date,
        &engine.config().implicit_trackers,
        &nodes,
    );
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/x-bittorrent"))
        .body(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_join_like_go() {
        assert_eq!(node("1.2.3.4".parse().unwrap(), 42069), "1.2.3.4:42069");
        assert_eq!(node("::1".parse().unwrap(), 1), "[::1]:1");
    }
}
