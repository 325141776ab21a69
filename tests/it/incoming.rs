//! Incoming peer connections: one whose handshake check fails must not leave the others
//! unattended. librqbit's listener once stopped polling its pending checks after a failed one
//! (until the next connection arrived), so a peer that hung up sat in CLOSE_WAIT, a leaked fd
//! (vendor/README.md, second patch). Self-contained: no swarm, raw sockets on 127.0.0.1.

use crate::common;

use std::{
    io::{ErrorKind, Read, Write},
    net::{Shutdown, TcpStream},
    thread,
    time::{Duration, Instant},
};

use common::Daemon;

/// A BitTorrent handshake (BEP 3) for `ih` from `peer_id`.
fn handshake(ih: &[u8; 20], peer_id: &[u8; 20]) -> Vec<u8> {
    let mut h = vec![19];
    h.extend_from_slice(b"BitTorrent protocol");
    h.extend_from_slice(&[0u8; 8]);
    h.extend_from_slice(ih);
    h.extend_from_slice(peer_id);
    h
}

/// Reads until the daemon closes the connection (EOF or reset); `false` if it is still open
/// after `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(e) => panic!("reading from the daemon's peer port: {e}"),
        }
    }
}

#[test]
fn a_failed_handshake_check_does_not_strand_the_other_incoming_connections() {
    let d = Daemon::start(&[]);
    let port = d.peer_port();

    // A connects and says nothing yet: its check waits for a handshake (librqbit allows 10 s).
    let mut a = TcpStream::connect(("127.0.0.1", port)).unwrap();
    thread::sleep(Duration::from_millis(200));

    // B asks for a torrent the daemon does not have: its check fails and B is closed.
    let mut b = TcpStream::connect(("127.0.0.1", port)).unwrap();
    b.write_all(&handshake(&[0x5a; 20], b"-XX0000-incomingtest"))
        .unwrap();
    assert!(
        closed_within(&mut b, Duration::from_secs(10)),
        "the daemon kept a connection for an unknown torrent open"
    );

    // A hangs up. The daemon must notice and close its side at once: before the fix A's check
    // was not polled again until another peer connected, and A sat in CLOSE_WAIT.
    a.shutdown(Shutdown::Write).unwrap();
    assert!(
        closed_within(&mut a, Duration::from_secs(3)),
        "a peer that hung up during its handshake was not closed by the daemon (CLOSE_WAIT)"
    );
    d.assert_healthy();
}
