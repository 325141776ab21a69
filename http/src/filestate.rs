//! `/fileState?ih=&path=`: the state of each piece a file overlaps, as the original's JSON.
//!
//! One element per piece, in the original's field order (anacrolix `FilePieceState` with its
//! embedded structs flattened). `Bytes` is how many of the file's bytes lie in that piece, so the
//! elements sum to the file's length; a zero-length file gives `null`. We have no separate
//! "completion known" state, so `Ok` equals `Complete`; hashing happens inside librqbit and is
//! not observable, so `Checking`/`Hashing`/`QueuedForHash`/`Marking` are false, and `Err` null.
//! With `Accept-Encoding` containing `gzip` the body (the 404 included) is gzipped.

use std::io::Write;

use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse,
};
use confluence_core::{
    metainfo::Info,
    status::{PieceState, Priority},
    Engine,
};
use serde::Serialize;

use crate::{error::HttpError, resolve::Resolved};

/// One element of the answer; field names and order are the original's.
#[derive(Serialize, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct FilePieceState {
    pub bytes: u64,
    pub priority: u8,
    pub complete: bool,
    pub ok: bool,
    /// Always null: storage errors are not kept per piece.
    pub err: Option<()>,
    pub checking: bool,
    pub hashing: bool,
    pub queued_for_hash: bool,
    pub marking: bool,
    pub partial: bool,
    pub missing_piece_layer_hash: bool,
}

fn priority_number(p: Priority) -> u8 {
    match p {
        Priority::None => 0,
        Priority::Readahead => 3,
        Priority::Now => 5,
    }
}

/// The elements for file `file` of `info`, given every piece's state (anacrolix `File.State`).
/// `None` for a zero-length file (the original encodes a nil slice as `null`).
pub fn file_state(info: &Info, file: usize, states: &[PieceState]) -> Option<Vec<FilePieceState>> {
    let f = &info.files[file];
    if f.length == 0 || info.piece_length == 0 {
        return None;
    }
    let mut out = Vec::new();
    let mut off = f.offset % info.piece_length;
    let mut remaining = f.length;
    let mut piece = (f.offset / info.piece_length) as usize;
    while remaining > 0 {
        let len = (info.piece_length - off).min(remaining);
        let s = states.get(piece).copied().unwrap_or(PieceState {
            complete: false,
            partial: false,
            priority: Priority::None,
        });
        out.push(FilePieceState {
            bytes: len,
            priority: priority_number(s.priority),
            complete: s.complete,
            ok: s.complete,
            err: None,
            checking: false,
            hashing: false,
            queued_for_hash: false,
            marking: false,
            partial: s.partial && !s.complete,
            missing_piece_layer_hash: false,
        });
        off = 0;
        remaining -= len;
        piece += 1;
    }
    Some(out)
}

fn wants_gzip(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .any(|v| String::from_utf8_lossy(v.as_bytes()).contains("gzip"))
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(body)?;
    enc.finish()
}

/// Sends `body` with `status`, gzipped when asked (Content-Encoding and Vary set, as the
/// original's gzip wrapper does).
fn respond(
    req: &HttpRequest,
    status: StatusCode,
    content_type: &str,
    body: Vec<u8>,
) -> HttpResponse {
    let mut r = HttpResponse::build(status);
    r.insert_header((header::CONTENT_TYPE, content_type));
    if wants_gzip(req) {
        match gzip(&body) {
            Ok(z) => {
                return r
                    .insert_header((header::CONTENT_ENCODING, "gzip"))
                    .insert_header((header::VARY, "Accept-Encoding"))
                    .body(z)
            }
            Err(e) => tracing::warn!("gzip failed, sending plain: {e}"),
        }
    }
    r.body(body)
}

/// `/fileState?ih=…|magnet=…&path=P` (any method, as the original).
pub(crate) async fn file_state_route(
    req: HttpRequest,
    engine: web::Data<Engine>,
    resolved: Resolved,
) -> Result<HttpResponse, HttpError> {
    let Resolved {
        torrent,
        info,
        query,
    } = resolved;
    let path = query.bytes("path").unwrap_or_default();
    let Some(file) = info.find_file(path) else {
        let mut r = respond(
            &req,
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            b"file not found\n".to_vec(),
        );
        r.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            header::HeaderValue::from_static("nosniff"),
        );
        return Ok(r);
    };
    let states = engine.piece_states(&torrent).unwrap_or_default();
    let elems = file_state(&info, file, &states);
    let mut body = serde_json::to_vec(&elems)
        .map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    body.push(b'\n');
    Ok(respond(&req, StatusCode::OK, "application/json", body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use confluence_core::metainfo::parse_info;

    fn info(files: &[(&str, u64)], piece_length: u64) -> Info {
        let total: u64 = files.iter().map(|f| f.1).sum();
        let n = total.div_ceil(piece_length) as usize;
        let listed: Vec<(Vec<String>, u64)> = files
            .iter()
            .map(|(p, l)| (vec![p.to_string()], *l))
            .collect();
        let bytes = confluence_core::upload::upload_info_bytes(
            "t",
            &listed,
            piece_length,
            &vec![0u8; 20 * n],
        );
        parse_info(&bytes).unwrap()
    }

    #[test]
    fn bytes_sum_to_length_and_fields_are_in_order() {
        let i = info(&[("a", 10), ("b", 40), ("c", 0), ("d", 5)], 16);
        let st = |complete, partial| PieceState {
            complete,
            partial,
            priority: Priority::None,
        };
        let states = [
            st(true, false),
            st(false, true),
            st(false, false),
            st(true, false),
        ];
        let b = file_state(&i, 1, &states).unwrap();
        assert_eq!(
            b.iter().map(|e| e.bytes).collect::<Vec<_>>(),
            [6, 16, 16, 2]
        );
        assert!(b[0].complete && b[0].ok && !b[0].partial);
        assert!(b[1].partial && !b[1].ok);
        assert!(file_state(&i, 2, &states).is_none());
        assert_eq!(
            file_state(&i, 3, &states)
                .unwrap()
                .iter()
                .map(|e| e.bytes)
                .sum::<u64>(),
            5
        );
        let json = serde_json::to_string(&b[0]).unwrap();
        assert_eq!(
            json,
            r#"{"Bytes":6,"Priority":0,"Complete":true,"Ok":true,"Err":null,"Checking":false,"Hashing":false,"QueuedForHash":false,"Marking":false,"Partial":false,"MissingPieceLayerHash":false}"#
        );
        assert_eq!(
            serde_json::to_string(&file_state(&i, 2, &states)).unwrap(),
            "null"
        );
    }
}
