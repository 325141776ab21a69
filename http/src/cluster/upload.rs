//! `/upload` in a cluster: the torrent an upload makes is only known once every piece is hashed,
//! so nginx cannot route it. The node that receives it hashes it ([`build_upload_info`]) and,
//! when another node owns the infohash, sends the same files there as a new form (the owner
//! builds the same torrent from them) and relays the owner's answer.

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    time::Duration,
};

use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use confluence_core::{
    ident::InfoHash,
    upload::{build_upload_info, UploadFile},
    Engine,
};

use super::{client::Part, request_like, Cluster};
use crate::{error::HttpError, Options};

/// How long the owner may take to store a forwarded upload and answer.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// A boundary nobody can predict, so file data cannot forge a part.
fn boundary() -> String {
    let mut b = String::from("confluence-");
    for _ in 0..2 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0);
        b.push_str(&format!("{:016x}", h.finish()));
    }
    b
}

/// A form field's `filename*` value (RFC 8187: UTF-8, percent-encoded).
fn ext_value(s: &str) -> String {
    let mut out = String::from("UTF-8''");
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// The form the owner gets: `name` and every file as a `files` part named by its path.
fn form(boundary: &str, name: &str, files: &[UploadFile]) -> Vec<Part> {
    let text = |s: String| Part::Bytes(Bytes::from(s));
    let mut parts = vec![
        text(format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n"
        )),
        Part::Bytes(Bytes::copy_from_slice(name.as_bytes())),
        text("\r\n".into()),
    ];
    for f in files {
        parts.push(text(format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename*={}\r\n\
             Content-Type: application/octet-stream\r\n\r\n",
            ext_value(&f.path.join("/"))
        )));
        parts.push(Part::File(f.data.clone(), f.length));
        parts.push(text("\r\n".into()));
    }
    parts.push(text(format!("--{boundary}--\r\n")));
    parts
}

/// The owner's answer when another node owns this upload; `None` when this node stores it (or
/// the upload is refused: this node gives the 400).
pub async fn forward_upload(
    req: &HttpRequest,
    engine: &Engine,
    opts: &Options,
    cluster: &Cluster,
    name: &str,
    files: &[UploadFile],
) -> Option<Result<HttpResponse, HttpError>> {
    let (n, f) = (name.to_string(), files.to_vec());
    let built = engine
        .runtime()
        .spawn_blocking(move || build_upload_info(&n, &f))
        .await
        .ok()?
        .ok()?;
    let ih = InfoHash::from_sha1_of(&built.info_bytes);
    if cluster.order(&ih).first() == Some(&cluster.me()) {
        return None;
    }
    let b = boundary();
    let ct = format!("multipart/form-data; boundary={b}");
    let fwd = request_like(req, &opts.node_name, Some(ct), form(&b, name, files));
    cluster.forward(&ih, fwd, UPLOAD_TIMEOUT).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filename_is_rfc8187() {
        assert_eq!(ext_value("a b/ü.txt"), "UTF-8''a%20b%2F%C3%BC.txt");
        assert_ne!(boundary(), boundary());
    }
}
