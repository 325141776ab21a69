//! A peer that stalls mid-piece: a proxy on 127.0.0.10:6881 to a good seeder that forwards the
//! handshake, the bitfield and part of the first pieces, then stops forwarding while it keeps
//! the connection open. It is announced to the tracker (UDP, from its own address) only during
//! the schedule's stall windows; a daemon that learnt it keeps meeting it afterwards too.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use super::ctx::{Ctx, Rng};

pub const ADDR: &str = "127.0.0.10:6881";
const UPSTREAMS: [&str; 2] = ["127.0.0.2:6881", "127.0.0.3:6881"];
const MAX_CONNS: usize = 16;

/// Accepts connections until the soak stops, counting them and those it stalled.
pub fn serve(ctx: Arc<Ctx>, mut rng: Rng, accepted: Arc<AtomicUsize>, stalled: Arc<AtomicUsize>) {
    let l =
        TcpListener::bind(ADDR).unwrap_or_else(|e| panic!("binding the stalling peer {ADDR}: {e}"));
    l.set_nonblocking(true).unwrap();
    let live = Arc::new(AtomicUsize::new(0));
    while !ctx.stopped() {
        match l.accept() {
            Ok((c, _)) if live.load(Ordering::SeqCst) < MAX_CONNS => {
                let _ = c.set_nonblocking(false);
                // Past the handshake and bitfield, into the first piece or two.
                let limit = rng.range(16_000, 300_000) as usize;
                accepted.fetch_add(1, Ordering::SeqCst);
                let (ctx, live, stalled) = (ctx.clone(), live.clone(), stalled.clone());
                live.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || {
                    if proxy(&ctx, c, limit) {
                        stalled.fetch_add(1, Ordering::SeqCst);
                    }
                    live.fetch_sub(1, Ordering::SeqCst);
                });
            }
            Ok((c, _)) => drop(c),
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
    // Bounded wait for the connection threads (each ends within 2 s of the stop).
    let until = Instant::now() + Duration::from_secs(10);
    while live.load(Ordering::SeqCst) > 0 && Instant::now() < until {
        thread::sleep(Duration::from_millis(50));
    }
}

/// Forwards `limit` bytes from the seeder, then holds the connection silent until the client
/// gives up, the soak stops, or 2 minutes pass. True if it stalled.
fn proxy(ctx: &Ctx, c: TcpStream, limit: usize) -> bool {
    let Some(up) = UPSTREAMS.iter().find_map(|a| {
        TcpStream::connect_timeout(&a.parse::<SocketAddr>().unwrap(), Duration::from_secs(2)).ok()
    }) else {
        return false;
    };
    let (mut c_r, mut up_w) = (c.try_clone().unwrap(), up.try_clone().unwrap());
    // Client → seeder, until either side closes.
    let fwd = thread::spawn(move || {
        let _ = c_r.set_read_timeout(Some(Duration::from_secs(130)));
        let mut b = [0u8; 16384];
        while let Ok(n) = c_r.read(&mut b) {
            if n == 0 || up_w.write_all(&b[..n]).is_err() {
                break;
            }
        }
        let _ = up_w.shutdown(Shutdown::Both);
    });
    let (mut up_r, mut c_w) = (up, c);
    let _ = up_r.set_read_timeout(Some(Duration::from_secs(1)));
    let mut sent = 0;
    let mut b = [0u8; 16384];
    let until = Instant::now() + Duration::from_secs(120);
    while sent < limit && !ctx.stopped() && Instant::now() < until && !fwd.is_finished() {
        match up_r.read(&mut b) {
            Ok(0) => break,
            Ok(n) => {
                let n = n.min(limit - sent);
                if c_w.write_all(&b[..n]).is_err() {
                    break;
                }
                sent += n;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let stalled = sent >= limit;
    // Silent: nothing more is read from the seeder or sent to the client.
    while stalled && !ctx.stopped() && Instant::now() < until && !fwd.is_finished() {
        thread::sleep(Duration::from_millis(100));
    }
    let _ = c_w.shutdown(Shutdown::Both);
    let _ = up_r.shutdown(Shutdown::Both);
    let _ = fwd.join();
    stalled
}

/// Announces the stalling peer for `ihs` to the tracker over UDP (BEP 15), `started` or
/// `stopped`, from 127.0.0.10 so the tracker lists that address.
pub fn announce(ihs: &[String], started: bool) -> Result<(), String> {
    let s = UdpSocket::bind("127.0.0.10:0").map_err(|e| format!("udp bind: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.connect("127.0.0.1:6969")
        .map_err(|e| format!("udp connect: {e}"))?;
    let mut b = [0u8; 2048];
    let mut req = 0x41727101980u64.to_be_bytes().to_vec();
    req.extend_from_slice(&0u32.to_be_bytes());
    req.extend_from_slice(&7u32.to_be_bytes());
    s.send(&req).map_err(|e| e.to_string())?;
    let n = s
        .recv(&mut b)
        .map_err(|e| format!("tracker connect: {e}"))?;
    if n < 16 || b[..4] != [0, 0, 0, 0] {
        return Err(format!("tracker connect answer of {n} bytes"));
    }
    let conn = b[8..16].to_vec();
    for ih in ihs {
        let mut a = conn.clone();
        a.extend_from_slice(&1u32.to_be_bytes());
        a.extend_from_slice(&8u32.to_be_bytes());
        a.extend_from_slice(&hex::decode(ih).map_err(|e| e.to_string())?);
        a.extend_from_slice(b"-SK0001-soakstallpee");
        a.extend_from_slice(&[0u8; 8]); // downloaded
        a.extend_from_slice(&[0u8; 8]); // left: a seeder
        a.extend_from_slice(&[0u8; 8]); // uploaded
        a.extend_from_slice(&(if started { 2u32 } else { 3 }).to_be_bytes());
        a.extend_from_slice(&[0u8; 4]); // ip: the source address
        a.extend_from_slice(&0x5eedu32.to_be_bytes());
        a.extend_from_slice(&(-1i32).to_be_bytes());
        a.extend_from_slice(&6881u16.to_be_bytes());
        s.send(&a).map_err(|e| e.to_string())?;
        let n = s
            .recv(&mut b)
            .map_err(|e| format!("tracker announce: {e}"))?;
        if n < 8 || b[..4] != [0, 0, 0, 1] {
            return Err(format!(
                "tracker announce of {ih}: {}",
                String::from_utf8_lossy(&b[8..n.max(8)])
            ));
        }
    }
    Ok(())
}
