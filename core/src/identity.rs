//! How the daemon names itself to the outside: the peer id's Azureus-style prefix, the client
//! name in the extended handshake (`v`, BEP 10), and the `User-Agent` of tracker requests.
//! Peers and trackers see `confluence 0.1.0` and `-CF0100-…`, not librqbit's `rqbit 9.1.0`.

use librqbit_core::hash_id::Id20;

/// The crate version, which is the workspace's (and the binary's) version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The two letters of the Azureus-style peer id prefix (`-CF` + four version digits + `-`).
pub const PEER_ID_CLIENT: [u8; 2] = *b"CF";

/// `confluence <version>`: the extended handshake's `v` and the trackers' `User-Agent`.
pub fn client_name_and_version() -> String {
    format!("confluence {VERSION}")
}

/// The four version digits of the peer id prefix: major, minor, patch, 0. A part above 63 (the
/// largest digit the encoding has) is written as 63.
fn version_digits() -> (u8, u8, u8, u8) {
    let part = |s: &str| s.parse::<u8>().unwrap_or(u8::MAX).min(63);
    (
        part(env!("CARGO_PKG_VERSION_MAJOR")),
        part(env!("CARGO_PKG_VERSION_MINOR")),
        part(env!("CARGO_PKG_VERSION_PATCH")),
        0,
    )
}

/// The 8-byte prefix every peer id of this build starts with, e.g. `-CF0100-`.
pub fn peer_id_prefix() -> [u8; 8] {
    let id = librqbit::generate_azereus_style(PEER_ID_CLIENT, version_digits());
    let mut p = [0u8; 8];
    p.copy_from_slice(&id.0[..8]);
    p
}

/// A fresh peer id: the prefix, then 12 random bytes (a new one per daemon start).
pub fn new_peer_id() -> Id20 {
    librqbit::generate_azereus_style(PEER_ID_CLIENT, version_digits())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_follows_the_crate_version() {
        let p = peer_id_prefix();
        let (a, b, c, _) = version_digits();
        let digit = |d: u8| b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[d as usize];
        assert_eq!(&p[..3], b"-CF");
        assert_eq!(&p[3..7], &[digit(a), digit(b), digit(c), b'0']);
        assert_eq!(p[7], b'-');
        assert_eq!(&new_peer_id().0[..8], &p);
        assert_ne!(new_peer_id(), new_peer_id());
        assert_eq!(client_name_and_version(), format!("confluence {VERSION}"));
    }
}
