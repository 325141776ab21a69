//! HTTP readers: sequential streams, random Ranges, multi-range, HEAD, If-Range, cached re-reads
//! (time to first byte) and aborted requests. Every body byte goes through the verifier.

use std::{io::Write, sync::Arc, time::Duration};

use super::{
    client::{connect, data_url, open, settle, Fail, Reply},
    ctx::{Ctx, Rng, Target},
};

const MIB: u64 = 1 << 20;

/// Reads the body of `r` (which starts at `offset` of `t`) up to `limit` bytes, verifying it
/// in blocks of 1 MiB. Returns the bytes read.
fn read_verified(
    ctx: &Ctx,
    t: &Target,
    r: &mut Reply,
    offset: u64,
    limit: u64,
    what: &str,
) -> Result<u64, Fail> {
    let len = r.content_length().unwrap_or(u64::MAX);
    let limit = limit.min(len);
    let (mut done, mut block) = (0u64, Vec::with_capacity(MIB as usize));
    while done + (block.len() as u64) < limit {
        let want = (limit - done - block.len() as u64).min(256 * 1024) as usize;
        let c = r.chunk(want)?;
        if c.is_empty() {
            if !block.is_empty() && !ctx.verify(t, offset + done, &block, what) {
                return Err(Fail::Wrong);
            }
            return Err(Fail::Short(format!(
                "{} of {len} bytes",
                done + block.len() as u64
            )));
        }
        block.extend_from_slice(&c);
        if block.len() as u64 >= MIB {
            if !ctx.verify(t, offset + done, &block, what) {
                return Err(Fail::Wrong);
            }
            done += block.len() as u64;
            block.clear();
        }
    }
    if !block.is_empty() && !ctx.verify(t, offset + done, &block, what) {
        return Err(Fail::Wrong);
    }
    Ok(done + block.len() as u64)
}

fn stream(ctx: &Ctx, rng: &mut Rng, port: u16, t: &Target) -> Result<(), Fail> {
    let url = data_url(&t.ih, &t.path);
    let from = if rng.chance(50) { 0 } else { rng.below(t.len) };
    // Most streams are read to the end; some stop after a few MiB, as a player that seeks.
    let limit = if rng.chance(70) {
        u64::MAX
    } else {
        rng.range(MIB, 16 * MIB)
    };
    let mut r = if from == 0 {
        open(port, "GET", &url, &[])?.expect(200)?
    } else {
        let range = format!("bytes={from}-");
        open(port, "GET", &url, &[("Range", &range)])?.expect(206)?
    };
    if r.content_length() != Some(t.len - from) {
        return Err(Fail::Bad(format!(
            "stream from {from}: Content-Length {:?}, want {}",
            r.content_length(),
            t.len - from
        )));
    }
    read_verified(ctx, t, &mut r, from, limit, "stream")?;
    r.vanish();
    Ok(())
}

fn range(ctx: &Ctx, rng: &mut Rng, port: u16, t: &Target) -> Result<(), Fail> {
    let a = rng.below(t.len);
    let b = (a + rng.range(1, 2 * MIB)).min(t.len) - 1;
    let h = format!("bytes={a}-{b}");
    let mut r = open(port, "GET", &data_url(&t.ih, &t.path), &[("Range", &h)])?.expect(206)?;
    let cr = format!("bytes {a}-{b}/{}", t.len);
    if r.header("content-range") != Some(cr.as_str()) {
        return Err(Fail::Bad(format!(
            "Content-Range {:?}, want {cr}",
            r.header("content-range")
        )));
    }
    let body = r.body(b - a + 1)?;
    if !ctx.verify(t, a, &body, "range") {
        return Err(Fail::Wrong);
    }
    Ok(())
}

fn multi(ctx: &Ctx, rng: &mut Rng, port: u16, t: &Target) -> Result<(), Fail> {
    if t.len < 64 * 1024 {
        return range(ctx, rng, port, t);
    }
    let n = rng.range(2, 4);
    let mut cuts: Vec<u64> = (0..n * 2).map(|_| rng.below(t.len)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    // Pairs with a gap of at least one byte between them, each at most 512 KiB.
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for c in cuts.chunks_exact(2) {
        let r = (c[0], c[1].min(c[0] + 512 * 1024));
        if ranges.last().is_none_or(|l| l.1 + 1 < r.0) {
            ranges.push(r);
        }
    }
    if ranges.len() < 2 {
        return range(ctx, rng, port, t);
    }
    let h = format!(
        "bytes={}",
        ranges
            .iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut r = open(port, "GET", &data_url(&t.ih, &t.path), &[("Range", &h)])?.expect(206)?;
    let ct = r.header("content-type").unwrap_or_default().to_string();
    let boundary = ct
        .split_once("boundary=")
        .map(|(_, b)| b.trim_matches('"').to_string())
        .ok_or_else(|| Fail::Bad(format!("multi-range Content-Type {ct:?}")))?;
    let body = r.body(8 * MIB)?;
    let parts = multipart(&body, &boundary).map_err(Fail::Bad)?;
    let got: Vec<(u64, u64)> = parts
        .iter()
        .map(|(a, d)| (*a, a + d.len() as u64 - 1))
        .collect();
    if got != ranges {
        return Err(Fail::Bad(format!("multi-range {h}: parts {got:?}")));
    }
    for (a, d) in parts {
        if !ctx.verify(t, a, d, "multi-range part") {
            return Err(Fail::Wrong);
        }
    }
    Ok(())
}

/// The parts of a `multipart/byteranges` body: (first byte, data).
fn multipart<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<(u64, &'a [u8])>, String> {
    let find = |hay: &[u8], n: &[u8], from: usize| {
        hay.get(from..)?
            .windows(n.len())
            .position(|w| w == n)
            .map(|p| p + from)
    };
    let delim = format!("--{boundary}");
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let at = find(body, delim.as_bytes(), pos).ok_or("no boundary")?;
        let after = at + delim.len();
        if body.get(after..after + 2) == Some(b"--") {
            return Ok(out);
        }
        let hend = find(body, b"\r\n\r\n", after).ok_or("part without a head end")?;
        let head = String::from_utf8_lossy(&body[after..hend]).to_ascii_lowercase();
        let cr = head
            .lines()
            .find_map(|l| l.strip_prefix("content-range: bytes "))
            .ok_or(format!("part without Content-Range: {head:?}"))?;
        let (a, b) = cr
            .split('/')
            .next()
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
            .ok_or(format!("bad part Content-Range {cr:?}"))?;
        let data = body
            .get(hend + 4..hend + 4 + (b - a + 1) as usize)
            .ok_or("part data past the body")?;
        out.push((a, data));
        pos = hend + 4 + data.len();
    }
}

fn head(port: u16, t: &Target) -> Result<(), Fail> {
    let mut r = open(port, "HEAD", &data_url(&t.ih, &t.path), &[])?.expect(200)?;
    if r.content_length() != Some(t.len) || r.header("etag").is_none() {
        return Err(Fail::Bad(format!(
            "HEAD: Content-Length {:?} (want {}), ETag {:?}",
            r.content_length(),
            t.len,
            r.header("etag")
        )));
    }
    let extra = r.chunk(1024)?;
    if !extra.is_empty() {
        return Err(Fail::Bad(format!("HEAD sent {} body bytes", extra.len())));
    }
    Ok(())
}

fn if_range(ctx: &Ctx, rng: &mut Rng, port: u16, t: &Target) -> Result<(), Fail> {
    let url = data_url(&t.ih, &t.path);
    let r = open(port, "HEAD", &url, &[])?.expect(200)?;
    let etag = r.header("etag").unwrap_or_default().to_string();
    r.vanish();
    let a = rng.below(t.len);
    let b = (a + rng.range(1, MIB)).min(t.len) - 1;
    let h = format!("bytes={a}-{b}");
    let mut r = open(port, "GET", &url, &[("Range", &h), ("If-Range", &etag)])?.expect(206)?;
    let body = r.body(b - a + 1)?;
    if !ctx.verify(t, a, &body, "If-Range match") {
        return Err(Fail::Wrong);
    }
    if t.len <= 5 * MIB {
        // A stale validator: the whole file instead of the range.
        let mut r = open(
            port,
            "GET",
            &url,
            &[("Range", &h), ("If-Range", "\"stale\"")],
        )?
        .expect(200)?;
        read_verified(ctx, t, &mut r, 0, u64::MAX, "If-Range mismatch")?;
    }
    Ok(())
}

/// Random requests on random files, forever (until the soak stops).
pub fn readers(ctx: Arc<Ctx>, mut rng: Rng) {
    while let Some(port) = ctx.port() {
        let t = rng.pick(&ctx.targets);
        let w = ctx.window();
        let (kind, r) = match rng.below(10) {
            0..=2 => ("http stream", stream(&ctx, &mut rng, port, t)),
            3..=5 => ("http range", range(&ctx, &mut rng, port, t)),
            6 | 7 => ("http multi-range", multi(&ctx, &mut rng, port, t)),
            8 => ("http HEAD", head(port, t)),
            _ => ("http If-Range", if_range(&ctx, &mut rng, port, t)),
        };
        settle(&ctx, kind, &w, r);
    }
}

/// Reads a 64 KiB range and at once reads it again: the second read is served from the cache
/// and its time to first byte is recorded.
pub fn cached(ctx: Arc<Ctx>, mut rng: Rng) {
    while let Some(port) = ctx.port() {
        let t = rng.pick(&ctx.targets);
        if t.len == 0 {
            continue;
        }
        let a = rng.below(t.len);
        let b = (a + 64 * 1024).min(t.len) - 1;
        let h = format!("bytes={a}-{b}");
        let url = data_url(&t.ih, &t.path);
        let w = ctx.window();
        let once = |ctx: &Ctx| -> Result<f64, Fail> {
            let mut r = open(port, "GET", &url, &[("Range", &h)])?.expect(206)?;
            let body = r.body(b - a + 1)?;
            if !ctx.verify(t, a, &body, "cached read") {
                return Err(Fail::Wrong);
            }
            Ok(r.ttfb.as_secs_f64())
        };
        // Timed only if the range's pieces are in the cache just before and just after the
        // second read (a 16 MiB cache under this load may evict them in between).
        let cached = || complete(port, t, a, b);
        let r = once(&ctx).and_then(|_| {
            let before = cached()?;
            let s = once(&ctx)?;
            Ok((before && cached()?).then_some(s))
        });
        match r {
            Ok(Some(s)) => {
                if !ctx.excused(&w) {
                    ctx.ttfb(s);
                }
                settle(&ctx, "http cached re-read", &w, Ok(()));
            }
            Ok(None) => settle(&ctx, "http re-read, evicted meanwhile", &w, Ok(())),
            Err(e) => settle(&ctx, "http cached re-read", &w, Err(e)),
        }
        ctx.sleep(Duration::from_millis(rng.range(20, 200)));
    }
}

/// Whether every piece under bytes `a..=b` of `t` is complete, by `/fileState`.
fn complete(port: u16, t: &Target, a: u64, b: u64) -> Result<bool, Fail> {
    let url = format!(
        "/fileState?ih={}&path={}",
        t.ih,
        super::client::qenc(&t.path)
    );
    let body = open(port, "GET", &url, &[])?.expect(200)?.body(16 << 20)?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| Fail::Bad(format!("/fileState JSON: {e}")))?;
    let mut at = 0;
    for p in v.as_array().into_iter().flatten() {
        let len = p["Bytes"].as_u64().unwrap_or(0);
        if at <= b && a < at + len && p["Complete"] != serde_json::Value::Bool(true) {
            return Ok(false);
        }
        at += len;
    }
    Ok(true)
}

/// Clients that go away: before sending anything, mid-head, after a few body bytes.
pub fn aborts(ctx: Arc<Ctx>, mut rng: Rng) {
    while let Some(port) = ctx.port() {
        let t = rng.pick(&ctx.targets);
        let url = data_url(&t.ih, &t.path);
        let w = ctx.window();
        let r = match rng.below(4) {
            0 => connect(port).map(drop),
            1 => connect(port).map(|mut s| {
                let _ = s.write_all(format!("GET {url} HTTP/1.1\r\nHost: x\r\n").as_bytes());
            }),
            2 => open(port, "GET", &url, &[]).map(|r| r.vanish()),
            _ => {
                let from = rng.below(t.len.max(1));
                let h = format!("bytes={from}-");
                let keep = rng.below(256 * 1024) as usize;
                open(port, "GET", &url, &[("Range", &h)]).and_then(|mut r| {
                    while (r.got as usize) < keep {
                        if r.chunk(keep - r.got as usize)?.is_empty() {
                            break;
                        }
                    }
                    r.vanish();
                    Ok(())
                })
            }
        };
        settle(&ctx, "http abort", &w, r);
        ctx.sleep(Duration::from_millis(rng.range(50, 400)));
    }
}
