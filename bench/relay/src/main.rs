//! `relay`: the floor of a streaming torrent client, for `bench/bench.py` (P1's `relay` columns).
//!
//! Why it exists: issue 6 asks for P1 (a cold 64 MiB stream) at 0.8x rqbit's time, on a 2-core
//! box that the seeder and the consumer (`curl | sha256`) share. Whether that is within reach of
//! *any* client depends on how much CPU the bare minimum of streaming costs there. This program
//! is that bare minimum, run in the same runs as the real clients: one peer-wire connection to
//! one seeder, every block requested in order and pipelined, each piece forwarded to one HTTP
//! client as soon as it is complete. With `--verify` each piece is first checked against its
//! SHA-1 (the hasher the daemon's librqbit uses), with `--store FILE` it is written to a file:
//! what a correct client that keeps what it streamed must do at least.
//!
//! It is not a torrent client: no choking, no other peers, no retries, single-file torrents only,
//! one HTTP response, then it exits. Any protocol surprise is an error (exit 1), so a run of it
//! either streams the right bytes or fails; the bench checks the bytes with sha256 as for every tool.
//!
//! `relay --listen ADDR --seeder ADDR --torrent FILE [--verify] [--store FILE]`

use std::collections::BTreeMap;
use std::error::Error;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::FileExt;

use librqbit_sha1_wrapper::{ISha1, Sha1};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const BLOCK: u32 = 16 * 1024;
/// Requests kept in flight (4 MiB), as the bench's ideal-connection probe does.
const DEPTH: usize = 256;
/// Requests sent before the first block arrives (one piece). aria2c reads a batch of requests
/// before it sends any block: 256 at once delayed the first piece by ~30 ms, 16 by ~8 ms.
const FIRST: usize = 16;

struct Args {
    listen: String,
    seeder: String,
    torrent: String,
    verify: bool,
    store: Option<String>,
}

fn args() -> Res<Args> {
    let mut a = Args {
        listen: String::new(),
        seeder: String::new(),
        torrent: String::new(),
        verify: false,
        store: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{k} needs a value"));
        match k.as_str() {
            "--listen" => a.listen = val()?,
            "--seeder" => a.seeder = val()?,
            "--torrent" => a.torrent = val()?,
            "--store" => a.store = Some(val()?),
            "--verify" => a.verify = true,
            _ => return Err(format!("unknown argument {k:?}").into()),
        }
    }
    if a.listen.is_empty() || a.seeder.is_empty() || a.torrent.is_empty() {
        return Err(
            "usage: relay --listen ADDR --seeder ADDR --torrent FILE [--verify] [--store FILE]"
                .into(),
        );
    }
    Ok(a)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("relay: {e}");
        std::process::exit(1);
    }
}

/// What the torrent says about its one file.
struct Meta {
    info_hash: [u8; 20],
    length: u64,
    piece_length: u64,
    hashes: Vec<u8>,
}

impl Meta {
    fn pieces(&self) -> u32 {
        self.length.div_ceil(self.piece_length) as u32
    }
    fn piece_len(&self, i: u32) -> u32 {
        (self.length - i as u64 * self.piece_length).min(self.piece_length) as u32
    }
}

fn run() -> Res<()> {
    let a = args()?;
    let raw = std::fs::read(&a.torrent)?;
    let t = librqbit_core::torrent_metainfo::torrent_from_bytes(&raw)
        .map_err(|e| format!("{}: {e}", a.torrent))?;
    let info = &t.info.data;
    let meta = Meta {
        info_hash: t.info_hash.0,
        length: info.length.ok_or("single-file torrents only")?,
        piece_length: info.piece_length as u64,
        hashes: info.pieces.as_ref().to_vec(),
    };
    let listener = TcpListener::bind(&a.listen)?;
    // The clock runs from the add: connect and say hello before the HTTP client even asks.
    let seeder: SocketAddr = a.seeder.parse()?;
    let peer = TcpStream::connect(seeder)?;
    peer.set_nodelay(true)?;
    let mut hello = Vec::with_capacity(68);
    hello.extend_from_slice(b"\x13BitTorrent protocol\0\0\0\0\0\0\0\0");
    hello.extend_from_slice(&meta.info_hash);
    hello.extend_from_slice(b"-CR0001-relay-bench-");
    (&peer).write_all(&hello)?;
    // The first connection that sends a request head is the client (the bench's port probe
    // connects and closes without one).
    let mut client = loop {
        let (mut c, _) = listener.accept()?;
        if read_request_head(&mut c).is_ok() {
            break c;
        }
    };
    let store = a.store.as_deref().map(File::create).transpose()?;
    stream(&meta, peer, &mut client, a.verify, store.as_ref())
}

fn read_request_head(c: &mut TcpStream) -> Res<()> {
    let mut head = Vec::new();
    let mut b = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.read(&mut b)?;
        if n == 0 || head.len() > 16 * 1024 {
            return Err("bad HTTP request".into());
        }
        head.extend_from_slice(&b[..n]);
    }
    Ok(())
}

/// One piece being filled.
struct Partial {
    buf: Vec<u8>,
    got: u32,
}

fn stream(
    meta: &Meta,
    peer: TcpStream,
    client: &mut TcpStream,
    verify: bool,
    store: Option<&File>,
) -> Res<()> {
    let mut rd = BufReader::with_capacity(1 << 20, peer.try_clone()?);
    let mut wr = peer;
    let mut answer = [0u8; 68];
    rd.read_exact(&mut answer)?;
    if answer[28..48] != meta.info_hash {
        return Err("seeder answered with another infohash".into());
    }
    wr.write_all(&[0, 0, 0, 1, 2])?; // interested
    while read_message(&mut rd, |_, _| Ok(()))? != Some(1) {} // until unchoke

    write!(
        client,
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        meta.length
    )?;
    let blocks: Vec<(u32, u32, u32)> = (0..meta.pieces())
        .flat_map(|p| {
            let len = meta.piece_len(p);
            (0..len.div_ceil(BLOCK)).map(move |b| (p, b * BLOCK, (len - b * BLOCK).min(BLOCK)))
        })
        .collect();
    let mut sent = 0;
    let request_upto = |wr: &mut TcpStream, sent: &mut usize, upto: usize| -> Res<()> {
        let mut out = Vec::with_capacity((upto - *sent) * 17);
        for &(p, begin, len) in &blocks[*sent..upto] {
            out.extend_from_slice(&13u32.to_be_bytes());
            out.push(6);
            for v in [p, begin, len] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        *sent = upto;
        Ok(wr.write_all(&out)?)
    };
    request_upto(&mut wr, &mut sent, FIRST.min(blocks.len()))?;

    // This thread receives; a second one checks, stores and forwards each complete piece, so
    // the seeder's socket is drained while the client is written to (as in any real client).
    let (done_tx, done_rx) = std::sync::mpsc::channel::<(u32, Vec<u8>)>();
    let (spare_tx, spare_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| -> Res<()> {
        let sender = s.spawn(move || forward(meta, done_rx, spare_tx, client, verify, store));
        let mut partial: BTreeMap<u32, Partial> = BTreeMap::new();
        let (mut received, mut pieces) = (0usize, 0u32);
        while pieces < meta.pieces() {
            let mut done = None;
            let id = read_message(&mut rd, |rd, len| {
                let mut hdr = [0u8; 8];
                rd.read_exact(&mut hdr)?;
                let p = u32::from_be_bytes(hdr[..4].try_into().unwrap());
                let begin = u32::from_be_bytes(hdr[4..].try_into().unwrap());
                let n = len - 9;
                if p >= meta.pieces() || begin as u64 + n as u64 > meta.piece_len(p) as u64 {
                    return Err(format!(
                        "seeder sent a block outside the torrent: piece {p} at {begin}"
                    )
                    .into());
                }
                let e = partial.entry(p).or_insert_with(|| {
                    let mut buf = spare_rx.try_recv().unwrap_or_default();
                    buf.resize(meta.piece_len(p) as usize, 0);
                    Partial { buf, got: 0 }
                });
                rd.read_exact(&mut e.buf[begin as usize..(begin + n) as usize])?;
                e.got += n;
                if e.got == meta.piece_len(p) {
                    done = Some(p);
                }
                Ok(())
            })?;
            match id {
                Some(0) => return Err("seeder choked us".into()),
                Some(7) => received += 1,
                _ => continue,
            }
            if sent < blocks.len() && sent - received <= DEPTH - 32 {
                request_upto(&mut wr, &mut sent, (received + DEPTH).min(blocks.len()))?;
            }
            if let Some(p) = done {
                pieces += 1;
                if done_tx.send((p, partial.remove(&p).unwrap().buf)).is_err() {
                    break; // the forwarder failed: its error is returned below
                }
            }
        }
        drop(done_tx);
        sender.join().map_err(|_| "forwarder panicked")?
    })
}

/// Checks, stores and forwards complete pieces in order.
fn forward(
    meta: &Meta,
    done: std::sync::mpsc::Receiver<(u32, Vec<u8>)>,
    spare: std::sync::mpsc::Sender<Vec<u8>>,
    client: &mut TcpStream,
    verify: bool,
    store: Option<&File>,
) -> Res<()> {
    let mut ready: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut next = 0u32;
    for (p, piece) in done {
        if verify {
            let mut h = Sha1::new();
            h.update(&piece);
            if h.finish()[..] != meta.hashes[p as usize * 20..p as usize * 20 + 20] {
                return Err(format!("piece {p} failed its hash check").into());
            }
        }
        if let Some(f) = store {
            f.write_all_at(&piece, p as u64 * meta.piece_length)?;
        }
        ready.insert(p, piece);
        while let Some(piece) = ready.remove(&next) {
            client.write_all(&piece)?;
            let _ = spare.send(piece);
            next += 1;
        }
    }
    if next < meta.pieces() {
        return Err(format!("stream ended at piece {next} of {}", meta.pieces()).into());
    }
    Ok(())
}

/// Reads one message; a piece (id 7) goes to `on_piece` with its length, the rest is skipped.
/// Returns the id (None for a keep-alive).
fn read_message(
    rd: &mut BufReader<TcpStream>,
    mut on_piece: impl FnMut(&mut BufReader<TcpStream>, u32) -> Res<()>,
) -> Res<Option<u8>> {
    let mut len = [0u8; 4];
    rd.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len);
    if len == 0 {
        return Ok(None);
    }
    let mut id = [0u8; 1];
    rd.read_exact(&mut id)?;
    if id[0] == 7 && len >= 9 {
        on_piece(rd, len)?;
    } else {
        std::io::copy(&mut rd.by_ref().take(len as u64 - 1), &mut std::io::sink())?;
    }
    Ok(Some(id[0]))
}
