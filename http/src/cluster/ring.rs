//! nginx's `hash $key consistent` (ketama), computed exactly as
//! `ngx_http_upstream_hash_module.c` does, so that a daemon knows which upstream nginx sends an
//! infohash to.
//!
//! Each `server` of the upstream (weight 1) gets 160 points: the CRC-32 of `HOST \0 PORT
//! PREV_HASH`, where `HOST`/`PORT` are the `server` text split at its last `:` (when only digits
//! follow it) and `PREV_HASH` the previous point's value as 4 little-endian bytes (0 for the
//! first). The points are sorted by value and equal values merged. A key's CRC-32 selects the
//! first point at or above it (wrapping to the first); when that point's server is down, nginx
//! moves on point by point, so [`Ring::order`] lists the servers in the order they are met.

/// The points of one upstream.
#[derive(Debug, Clone)]
pub struct Ring {
    /// (point value, index of its server), sorted by value, values unique.
    points: Vec<(u32, usize)>,
    servers: usize,
}

/// nginx's split of a `server` text into host and port (`unix:` paths have no port).
fn host_port(server: &str) -> (&[u8], &[u8]) {
    let b = server.as_bytes();
    if b.len() >= 5 && b[..5].eq_ignore_ascii_case(b"unix:") {
        return (&b[5..], b"");
    }
    for j in 0..b.len() {
        let c = b[b.len() - j - 1];
        if c == b':' {
            return (&b[..b.len() - j - 1], &b[b.len() - j..]);
        }
        if !c.is_ascii_digit() {
            break;
        }
    }
    (b, b"")
}

/// The points a server contributes (weight 1).
pub const POINTS_PER_SERVER: usize = 160;

impl Ring {
    /// The ring of `servers`, each written exactly as in nginx's `server` lines.
    pub fn new<S: AsRef<str>>(servers: &[S]) -> Ring {
        let mut points = Vec::with_capacity(servers.len() * POINTS_PER_SERVER);
        for (i, server) in servers.iter().enumerate() {
            let (host, port) = host_port(server.as_ref());
            let mut base = crc32fast::Hasher::new();
            base.update(host);
            base.update(&[0]);
            base.update(port);
            let mut prev = 0u32;
            for _ in 0..POINTS_PER_SERVER {
                let mut h = base.clone();
                h.update(&prev.to_le_bytes());
                prev = h.finalize();
                points.push((prev, i));
            }
        }
        // nginx sorts with qsort and keeps the first of equal values: which server wins a tie
        // is unspecified there (a 2^-32 event per pair of points); here the earlier server.
        points.sort_by_key(|&(v, i)| (v, i));
        points.dedup_by_key(|p| p.0);
        Ring {
            points,
            servers: servers.len(),
        }
    }

    /// nginx's hash of a key: CRC-32 (`ngx_crc32_long`).
    pub fn key_hash(key: &[u8]) -> u32 {
        crc32fast::hash(key)
    }

    /// The servers (indexes) in the order nginx tries them for `key`: the owner first, then
    /// each server as the walk along the ring first meets it.
    pub fn order(&self, key: &[u8]) -> Vec<usize> {
        let n = self.points.len();
        let mut out = Vec::with_capacity(self.servers);
        if n == 0 {
            return out;
        }
        let hash = Ring::key_hash(key);
        let start = self.points.partition_point(|p| p.0 < hash);
        for step in 0..n {
            let server = self.points[(start + step) % n].1;
            if !out.contains(&server) {
                out.push(server);
                if out.len() == self.servers {
                    break;
                }
            }
        }
        out
    }

    /// The owner of `key` when every server is up.
    pub fn owner(&self, key: &[u8]) -> Option<usize> {
        self.order(key).first().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_as_nginx() {
        assert_eq!(
            host_port("127.0.0.1:8080"),
            (&b"127.0.0.1"[..], &b"8080"[..])
        );
        assert_eq!(host_port("[::1]:81"), (&b"[::1]"[..], &b"81"[..]));
        assert_eq!(host_port("backend"), (&b"backend"[..], &b""[..]));
        assert_eq!(
            host_port("unix:/run/c.sock"),
            (&b"/run/c.sock"[..], &b""[..])
        );
        assert_eq!(host_port("a:b"), (&b"a:b"[..], &b""[..]));
    }

    #[test]
    fn points_are_ketama() {
        // The first point of a server is crc32("HOST\0PORT" + 4 zero bytes).
        let r = Ring::new(&["10.0.0.1:80"]);
        assert_eq!(r.points.len(), POINTS_PER_SERVER);
        let first = crc32fast::hash(b"10.0.0.1\x0080\0\0\0\0");
        assert!(r.points.iter().any(|p| p.0 == first));
        let second = crc32fast::hash(&[&b"10.0.0.1\x0080"[..], &first.to_le_bytes()].concat());
        assert!(r.points.iter().any(|p| p.0 == second));
    }

    #[test]
    fn order_lists_every_server_once_and_is_stable_under_removal() {
        let all = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"];
        let r3 = Ring::new(&all);
        let mut owners = [0usize; 3];
        for i in 0..3000u32 {
            let key = format!("{:040x}", i.wrapping_mul(2654435761));
            let order = r3.order(key.as_bytes());
            assert_eq!(order.len(), 3);
            owners[order[0]] += 1;
            // Without the owner, nginx's walk picks the second in the order: the ring of the
            // two others must agree.
            let rest: Vec<&str> = all
                .iter()
                .copied()
                .filter(|s| *s != all[order[0]])
                .collect();
            let r2 = Ring::new(&rest);
            assert_eq!(rest[r2.owner(key.as_bytes()).unwrap()], all[order[1]]);
        }
        assert!(owners.iter().all(|&n| n > 600), "{owners:?}");
    }
}
