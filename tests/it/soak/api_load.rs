//! The rest of the API under load: `/events` subscribers (ones that read, ones that never do),
//! `/status`, `/fileState` and `/metainfo` pollers, and torrents added by POST and by magnet
//! while others leave by grace.

use std::{
    io::{Read, Write},
    net::TcpStream,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    client::{open, open_body, qenc, settle, Fail},
    common::{bdecode, sha1_hex},
    ctx::{Ctx, Rng},
};

/// A swarm torrent as the churn worker adds it.
pub struct Added {
    pub ih: String,
    pub torrent: Vec<u8>,
    pub magnet: String,
}

fn ws_open(port: u16, ih: &str) -> Result<(TcpStream, Vec<u8>), Fail> {
    let h = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    let r = open(port, "GET", &format!("/events?ih={ih}"), &h)?.expect(101)?;
    Ok(r.into_stream())
}

/// Reads frames for `secs`, checking each text frame is `{"PieceChanged":<n>}`; then closes.
fn ws_read(s: &mut TcpStream, mut buf: Vec<u8>, secs: u64) -> Result<u64, Fail> {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut frames = 0;
    let mut chunk = [0u8; 8192];
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    while Instant::now() < until {
        while let Some((op, payload, used)) = frame(&buf) {
            match op {
                1 => {
                    let t = String::from_utf8_lossy(&payload);
                    let n = t
                        .strip_prefix("{\"PieceChanged\":")
                        .and_then(|r| r.strip_suffix('}'));
                    if n.and_then(|n| n.parse::<u32>().ok()).is_none() {
                        return Err(Fail::Bad(format!("/events frame {t:?}")));
                    }
                    frames += 1;
                }
                8 => return Ok(frames),
                _ => {}
            }
            buf.drain(..used);
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err(Fail::Conn(format!("/events closed after {frames} frames"))),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(Fail::Conn(format!("/events: {e}"))),
        }
    }
    // A masked close frame, code 1000.
    let mask = [1u8, 2, 3, 4];
    let code = [0x03u8 ^ mask[0], 0xE8 ^ mask[1]];
    let _ = s.write_all(&[
        0x88, 0x82, mask[0], mask[1], mask[2], mask[3], code[0], code[1],
    ]);
    Ok(frames)
}

/// One unmasked server frame at the start of `b`: (opcode, payload, bytes used).
fn frame(b: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (op, l) = (b.first()? & 0x0f, b.get(1)? & 0x7f);
    let (len, hdr) = match l {
        126 => (
            u16::from_be_bytes(b.get(2..4)?.try_into().ok()?) as usize,
            4usize,
        ),
        127 => (
            u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let p = b.get(hdr..hdr.checked_add(len)?)?;
    Some((op, p.to_vec(), hdr + len))
}

/// `/events` subscribers: one that reads for a while, and up to four that never read.
pub fn events(ctx: Arc<Ctx>, mut rng: Rng) {
    let mut idle: Vec<(TcpStream, Instant)> = Vec::new();
    while let Some(port) = ctx.port() {
        let t = rng.pick(&ctx.targets);
        idle.retain(|(_, until)| Instant::now() < *until);
        let w = ctx.window();
        if idle.len() < 4 && rng.chance(50) {
            let r = ws_open(port, &t.ih).map(|(s, _)| {
                idle.push((s, Instant::now() + Duration::from_secs(rng.range(5, 30))));
            });
            settle(&ctx, "events never read", &w, r);
        }
        let w = ctx.window();
        let secs = rng.range(1, 6);
        let r = ws_open(port, &t.ih).and_then(|(mut s, buf)| ws_read(&mut s, buf, secs).map(drop));
        settle(&ctx, "events reader", &w, r);
    }
}

fn status(port: u16, json: bool) -> Result<(), Fail> {
    let h: &[(&str, &str)] = if json {
        &[("Accept", "application/json")]
    } else {
        &[]
    };
    let body = open(port, "GET", "/status", h)?
        .expect(200)?
        .body(16 << 20)?;
    if json {
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| Fail::Bad(format!("/status JSON: {e}")))?;
        if !v["torrents"].is_array() {
            return Err(Fail::Bad("/status JSON without torrents".into()));
        }
    } else if body.is_empty() {
        return Err(Fail::Bad("/status: empty page".into()));
    }
    Ok(())
}

fn file_state(port: u16, ih: &str, path: &str, len: u64) -> Result<(), Fail> {
    let url = format!("/fileState?ih={ih}&path={}", qenc(path));
    let body = open(port, "GET", &url, &[])?.expect(200)?.body(16 << 20)?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| Fail::Bad(format!("/fileState JSON: {e}")))?;
    let sum: u64 = v
        .as_array()
        .map_or(0, |a| a.iter().filter_map(|p| p["Bytes"].as_u64()).sum());
    if sum != len {
        return Err(Fail::Bad(format!(
            "/fileState of {path}: Bytes sum to {sum}, want {len}"
        )));
    }
    Ok(())
}

fn info_hash_of(torrent: &[u8]) -> Result<String, Fail> {
    let top = bdecode(torrent).map_err(|e| Fail::Bad(format!("bad .torrent: {e}")))?;
    let span = top
        .span("info")
        .ok_or_else(|| Fail::Bad(".torrent without info".into()))?;
    Ok(sha1_hex(&torrent[span]))
}

fn metainfo(port: u16, ih: &str) -> Result<(), Fail> {
    let body = open(port, "GET", &format!("/metainfo?ih={ih}"), &[])?
        .expect(200)?
        .body(16 << 20)?;
    let got = info_hash_of(&body)?;
    if got != ih {
        return Err(Fail::Bad(format!(
            "/metainfo?ih={ih}: info hashes to {got}"
        )));
    }
    Ok(())
}

/// `/status` (JSON and page), `/fileState` and `/metainfo`, a few times a second.
pub fn pollers(ctx: Arc<Ctx>, mut rng: Rng) {
    while let Some(port) = ctx.port() {
        let t = rng.pick(&ctx.targets);
        let w = ctx.window();
        let (kind, r) = match rng.below(4) {
            0 => ("poll /status json", status(port, true)),
            1 => ("poll /status page", status(port, false)),
            2 => ("poll /fileState", file_state(port, &t.ih, &t.path, t.len)),
            _ => ("poll /metainfo", metainfo(port, &t.ih)),
        };
        settle(&ctx, kind, &w, r);
        ctx.sleep(Duration::from_millis(rng.range(100, 500)));
    }
}

/// Adds torrents by POST `/metainfo`, by magnet (`/info`, `/data`), then leaves them idle
/// long enough to expire by grace.
pub fn churn(ctx: Arc<Ctx>, mut rng: Rng, added: Vec<Added>) {
    while let Some(port) = ctx.port() {
        let a = rng.pick(&added);
        let w = ctx.window();
        let m = qenc(&a.magnet);
        let (kind, r) = match rng.below(3) {
            0 => (
                "churn POST /metainfo",
                (|| {
                    let body = open_body(port, "POST", "/metainfo", &[], &a.torrent)?
                        .expect(200)?
                        .body(1024)?;
                    match body == format!("{}\n", a.ih).as_bytes() {
                        true => Ok(()),
                        false => Err(Fail::Bad(format!(
                            "POST /metainfo answered {:?}",
                            String::from_utf8_lossy(&body)
                        ))),
                    }
                })(),
            ),
            1 => (
                "churn /info?magnet",
                (|| {
                    let body = open(port, "GET", &format!("/info?magnet={m}"), &[])?
                        .expect(200)?
                        .body(16 << 20)?;
                    match sha1_hex(&body) == a.ih {
                        true => Ok(()),
                        false => Err(Fail::Bad(
                            "/info by magnet: info does not hash to the infohash".into(),
                        )),
                    }
                })(),
            ),
            _ => (
                "churn /data?magnet",
                (|| {
                    let files: Vec<_> = ctx
                        .targets
                        .iter()
                        .filter(|t| t.ih == a.ih && t.len > 0)
                        .collect();
                    let t = rng.pick(&files);
                    let from = rng.below(t.len);
                    let to = (from + 128 * 1024).min(t.len) - 1;
                    let h = format!("bytes={from}-{to}");
                    let url = format!("/data?magnet={m}&path={}", qenc(&t.path));
                    let body = open(port, "GET", &url, &[("Range", &h)])?
                        .expect(206)?
                        .body(to - from + 1)?;
                    match ctx.verify(t, from, &body, "magnet read") {
                        true => Ok(()),
                        false => Err(Fail::Wrong),
                    }
                })(),
            ),
        };
        settle(&ctx, kind, &w, r);
        ctx.sleep(Duration::from_millis(rng.range(500, 4000)));
    }
}
