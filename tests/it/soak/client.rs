//! A bounded HTTP/1.1 client that hands the body over as it arrives (so streams are checked
//! piece by piece and time to first byte is measured), a websocket opener, and how a failed
//! request is classified.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use super::ctx::{Ctx, Window, BOUND, STALL};

/// How a request went wrong.
#[derive(Debug)]
pub enum Fail {
    /// No progress for `STALL`, or not done within `BOUND`: the daemon owed an answer.
    Hung(String),
    /// Connection refused/reset or closed early (documented while the daemon restarts).
    Conn(String),
    /// An error status (`507` is documented for a full disk).
    Status(u16, String),
    /// A body that ended before its Content-Length (documented for a full disk / a restart).
    Short(String),
    /// An answer that breaks the protocol or the API (wrong status, headers, listing).
    Bad(String),
    /// Wrong bytes: already counted by the verifier.
    Wrong,
}

/// Files a request's outcome under `kind`. After a failure the worker backs off 200 ms, as a
/// client that retries would.
pub fn settle(ctx: &Ctx, kind: &'static str, w: &Window, r: Result<(), Fail>) {
    if r.is_err() {
        ctx.sleep(Duration::from_millis(200));
    }
    match r {
        Ok(()) => ctx.ok(kind),
        Err(Fail::Wrong) => {}
        Err(Fail::Hung(m)) => ctx.hung(format!("{kind}: {m}")),
        Err(Fail::Conn(m)) => ctx.failed(kind, w, true, &format!("connection: {m}")),
        Err(Fail::Short(m)) => ctx.failed(kind, w, true, &format!("short body: {m}")),
        Err(Fail::Status(s, m)) => {
            let reason = format!("{s} {}", m.lines().next().unwrap_or_default());
            let reason = reason.chars().take(160).collect::<String>();
            // 507: the documented full-disk answer; anything else is a finding.
            ctx.failed(kind, w, s == 507, &reason)
        }
        Err(Fail::Bad(m)) => ctx.failed(kind, w, false, &m),
    }
}

fn io_fail(what: &str, e: io::Error, deadline: Instant) -> Fail {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            let past = Instant::now() >= deadline;
            Fail::Hung(format!(
                "{what}: {}",
                if past {
                    format!("not done within {BOUND:?}")
                } else {
                    format!("no progress for {STALL:?}")
                }
            ))
        }
        _ => Fail::Conn(format!("{what}: {e}")),
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub ttfb: Duration,
    s: TcpStream,
    pending: Vec<u8>,
    deadline: Instant,
    /// Body bytes handed out so far.
    pub got: u64,
}

pub fn connect(port: u16) -> Result<TcpStream, Fail> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| io_fail("connect", e, Instant::now() + BOUND))?;
    let _ = s.set_write_timeout(Some(STALL));
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// Sends `method target` with `headers` (and `Connection: close`) and reads the reply's head.
pub fn open(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, Fail> {
    open_body(port, method, target, headers, b"")
}

pub fn open_body(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, Fail> {
    let t0 = Instant::now();
    let deadline = t0 + BOUND;
    let mut s = connect(port)?;
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
    {
        head.push_str("Connection: close\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body))
        .map_err(|e| io_fail("send", e, deadline))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let end = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if raw.len() > 64 * 1024 {
            return Err(Fail::Bad(format!("{target}: reply head over 64 KiB")));
        }
        let n =
            read_bounded(&mut s, &mut buf, deadline).map_err(|e| io_fail("head", e, deadline))?;
        if n == 0 {
            return Err(Fail::Conn(format!(
                "closed before a reply head ({} bytes)",
                raw.len()
            )));
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let ttfb = t0.elapsed();
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| Fail::Bad(format!("bad status line in {head:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Reply {
        status,
        headers,
        ttfb,
        s,
        pending: raw[end + 4..].to_vec(),
        deadline,
        got: 0,
    })
}

fn read_bounded(s: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline"));
    }
    s.set_read_timeout(Some(left.min(STALL)))?;
    loop {
        match s.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length").and_then(|v| v.parse().ok())
    }

    /// Up to `max` more body bytes; empty at the end of the connection.
    pub fn chunk(&mut self, max: usize) -> Result<Vec<u8>, Fail> {
        if !self.pending.is_empty() {
            let n = self.pending.len().min(max);
            let out: Vec<u8> = self.pending.drain(..n).collect();
            self.got += out.len() as u64;
            return Ok(out);
        }
        let mut buf = vec![0u8; max.min(256 * 1024)];
        let n = read_bounded(&mut self.s, &mut buf, self.deadline)
            .map_err(|e| io_fail(&format!("body after {} bytes", self.got), e, self.deadline))?;
        buf.truncate(n);
        self.got += n as u64;
        Ok(buf)
    }

    /// The rest of the body (Content-Length, else to the close), at most `max` bytes.
    pub fn body(&mut self, max: u64) -> Result<Vec<u8>, Fail> {
        let want = self.content_length();
        let mut out = Vec::new();
        loop {
            if want.is_some_and(|w| out.len() as u64 >= w) || out.len() as u64 > max {
                break;
            }
            let c = self.chunk(256 * 1024)?;
            if c.is_empty() {
                break;
            }
            out.extend_from_slice(&c);
        }
        match want {
            Some(w) if (out.len() as u64) < w => {
                Err(Fail::Short(format!("{} of {w} bytes", out.len())))
            }
            _ if out.len() as u64 > max => Err(Fail::Bad(format!("body over {max} bytes"))),
            _ => Ok(out),
        }
    }

    /// Fails with the status and the body's first line unless the status is `want`.
    pub fn expect(mut self, want: u16) -> Result<Reply, Fail> {
        if self.status == want {
            return Ok(self);
        }
        let body = self.body(64 * 1024).unwrap_or_default();
        let text = String::from_utf8_lossy(&body).into_owned();
        if (400..600).contains(&self.status) {
            Err(Fail::Status(self.status, text))
        } else {
            Err(Fail::Bad(format!(
                "status {} (want {want}): {}",
                self.status,
                text.trim()
            )))
        }
    }

    /// Hangs up without reading the rest.
    pub fn vanish(self) {
        let _ = self.s.shutdown(std::net::Shutdown::Both);
    }

    pub fn into_stream(self) -> (TcpStream, Vec<u8>) {
        (self.s, self.pending)
    }
}

/// Percent-encodes a query value.
pub fn qenc(s: &str) -> String {
    super::common::qenc(s)
}

/// `/data?ih=..&path=..` of a target.
pub fn data_url(ih: &str, path: &str) -> String {
    format!("/data?ih={ih}&path={}", qenc(path))
}
