//! The smallest HTTP client the cluster needs: one request to a peer daemon over a fresh
//! connection (HTTP/1.0, so the answer is delimited by the close and never chunked), a body
//! made of byte strings and files (an upload is sent from its spooled files), and a response
//! read whole, up to a limit. Peers are daemons of this cluster, so nothing fancier is needed.

use std::{path::PathBuf, time::Duration};

use bytes::Bytes;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// How long a connection to a peer may take before it counts as down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A piece of a request body.
pub enum Part {
    Bytes(Bytes),
    /// A file sent whole; its length is known in advance.
    File(PathBuf, u64),
}

impl Part {
    fn len(&self) -> u64 {
        match self {
            Part::Bytes(b) => b.len() as u64,
            Part::File(_, n) => *n,
        }
    }
}

/// One request to a peer.
pub struct Request {
    pub method: String,
    /// Path and query, as received.
    pub target: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<Part>,
}

/// A peer's whole answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Bytes,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// Why a request to a peer failed. `Connect` means nothing was sent: another node may take it.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
    #[error("{0}")]
    Failed(String),
}

async fn connect(addr: &str) -> Result<TcpStream, SendError> {
    let err = |e: String| SendError::Connect(addr.to_string(), e);
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(err(e.to_string())),
        Err(_) => Err(err(format!("no answer within {CONNECT_TIMEOUT:?}"))),
    }
}

fn head(addr: &str, req: &Request) -> Vec<u8> {
    let length: u64 = req.body.iter().map(Part::len).sum();
    let mut h = format!("{} {} HTTP/1.0\r\nHost: {addr}\r\n", req.method, req.target).into_bytes();
    for (k, v) in &req.headers {
        h.extend_from_slice(k.as_bytes());
        h.extend_from_slice(b": ");
        h.extend_from_slice(v);
        h.extend_from_slice(b"\r\n");
    }
    if length > 0 || req.method == "POST" {
        h.extend_from_slice(format!("Content-Length: {length}\r\n").as_bytes());
    }
    h.extend_from_slice(b"\r\n");
    h
}

async fn write_request(s: &mut TcpStream, addr: &str, req: &Request) -> std::io::Result<()> {
    s.write_all(&head(addr, req)).await?;
    for part in &req.body {
        match part {
            Part::Bytes(b) => s.write_all(b).await?,
            Part::File(path, n) => {
                let f = tokio::fs::File::open(path).await?;
                let copied = tokio::io::copy(&mut f.take(*n), s).await?;
                if copied != *n {
                    return Err(std::io::Error::other(format!(
                        "{} is shorter than {n} bytes",
                        path.display()
                    )));
                }
            }
        }
    }
    s.flush().await
}

fn parse(raw: &[u8]) -> Result<Response, SendError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    let n = match r.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(SendError::Failed("incomplete response head".into()))
        }
        Err(e) => return Err(SendError::Failed(format!("bad response: {e}"))),
    };
    let status = r.code.unwrap_or(0);
    let headers: Vec<(String, Vec<u8>)> = r
        .headers
        .iter()
        .map(|h| (h.name.to_string(), h.value.to_vec()))
        .collect();
    let mut body = &raw[n..];
    let declared = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok());
    if let Some(len) = declared {
        if body.len() < len {
            return Err(SendError::Failed(format!(
                "response body ended after {} of {len} bytes",
                body.len()
            )));
        }
        body = &body[..len];
    }
    Ok(Response {
        status,
        headers,
        body: Bytes::copy_from_slice(body),
    })
}

/// Sends `req` to `addr` (`host:port`) and reads the answer: at most `limit` bytes, within
/// `timeout` after the connection is made.
pub async fn send(
    addr: &str,
    req: &Request,
    limit: usize,
    timeout: Duration,
) -> Result<Response, SendError> {
    let mut s = connect(addr).await?;
    let exchange = async {
        write_request(&mut s, addr, req)
            .await
            .map_err(|e| SendError::Failed(format!("sending to {addr}: {e}")))?;
        let mut raw = Vec::new();
        (&mut s)
            .take(limit as u64 + 1)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| SendError::Failed(format!("reading from {addr}: {e}")))?;
        if raw.len() > limit {
            return Err(SendError::Failed(format!(
                "answer of {addr} is larger than {limit} bytes"
            )));
        }
        parse(&raw)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(SendError::Failed(format!(
            "no complete answer from {addr} within {timeout:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_sized_answer() {
        let r = parse(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabcdef").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], b"abc");
        assert_eq!(r.header("x-a"), Some(&b"b"[..]));
        let r = parse(b"HTTP/1.0 404 Not Found\r\n\r\nrest").unwrap();
        assert_eq!(&r.body[..], b"rest");
        assert!(parse(b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nab").is_err());
        assert!(parse(b"HTTP/1.0 200").is_err());
    }

    #[test]
    fn head_has_length_and_host() {
        let req = Request {
            method: "POST".into(),
            target: "/metainfo?x=1".into(),
            headers: vec![("X-Y".into(), b"z".to_vec())],
            body: vec![Part::Bytes(Bytes::from_static(b"abc"))],
        };
        let h = String::from_utf8(head("h:1", &req)).unwrap();
        assert_eq!(
            h,
            "POST /metainfo?x=1 HTTP/1.0\r\nHost: h:1\r\nX-Y: z\r\nContent-Length: 3\r\n\r\n"
        );
    }
}
