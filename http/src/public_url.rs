//! Absolute URLs that are right for the client, also behind a reverse proxy.
//!
//! Every page or document that hands out links to the daemon (playlists, listings, the web
//! page, WebDAV, DLNA) builds them from a [`BaseUrl`]:
//!
//! ```ignore
//! let base = BaseUrl::of(&req);
//! let url = base.data_url(&ih, b"dir/episode 2.mkv"); // https://host/prefix/data/infohash/<ih>/dir/episode%202.mkv
//! let page = base.url("/status");                     // https://host/prefix/status
//! ```
//!
//! Where the parts come from, first match wins:
//! 1. `-publicURL=https://host/prefix`: all three parts, whoever asks.
//! 2. A peer in `-trustedProxies` (default: loopback): `Forwarded` (`proto=`, `host=`), else
//!    `X-Forwarded-Proto` / `X-Forwarded-Host`; and `X-Forwarded-Prefix` for the prefix. A list
//!    (`a, b`) counts by its last element: the one the proxy next to us wrote.
//! 3. The request's `Host` header, scheme `http`, no prefix.
//!
//! Every value taken from a header is validated (a host is a name or address with an optional
//! port, a prefix a clean percent-encoded path); an invalid one is ignored, as if absent. When
//! nothing usable is left, the address the request arrived on is used.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use actix_web::{http::header::HeaderMap, web, HttpRequest};
use confluence_core::ident::InfoHash;

use crate::Options;

/// An address block of `-trustedProxies`: `10.0.0.0/8`, `::1/128`, or a bare address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parses `ip` or `ip/bits`.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let bad = |why: &str| format!("invalid CIDR {s:?}: {why}");
        let (ip, bits) = match s.split_once('/') {
            Some((ip, bits)) => (ip, Some(bits)),
            None => (s, None),
        };
        let net: IpAddr = ip.parse().map_err(|_| bad("not an IP address"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|&b| b <= max)
                .ok_or_else(|| bad("bad prefix length"))?,
        };
        Ok(Cidr { net, bits })
    }

    /// Whether `ip` is inside the block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.bits),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (full, rest) = (usize::from(bits / 8), bits % 8);
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    }
}

/// The peers whose forwarding headers are believed (`-trustedProxies`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<Cidr>);

impl Default for TrustedProxies {
    /// Loopback: a proxy on the same machine.
    fn default() -> Self {
        TrustedProxies(vec![
            Cidr {
                net: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
                bits: 8,
            },
            Cidr {
                net: IpAddr::V6(Ipv6Addr::LOCALHOST),
                bits: 128,
            },
        ])
    }
}

impl TrustedProxies {
    /// A comma-separated list of CIDRs; empty (or `none`) trusts nobody.
    pub fn parse(s: &str) -> Result<TrustedProxies, String> {
        let s = s.trim();
        if s.is_empty() || s == "none" {
            return Ok(TrustedProxies(Vec::new()));
        }
        s.split(',')
            .map(|c| Cidr::parse(c.trim()))
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }
}

/// Scheme, host and path prefix of the URLs the daemon hands out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    scheme: String,
    authority: String,
    /// Empty, or a clean path starting with `/` and not ending with one.
    prefix: String,
}

impl BaseUrl {
    /// Parses `-publicURL`: `http(s)://host[:port][/prefix]`, no query or fragment.
    pub fn parse(s: &str) -> Result<BaseUrl, String> {
        let bad = |why: &str| format!("invalid public URL {s:?}: {why}");
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| bad("expected http(s)://host[/prefix]"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(bad("the scheme must be http or https"));
        }
        if rest.contains(['?', '#']) {
            return Err(bad("no query or fragment allowed"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if !valid_authority(authority) {
            return Err(bad("bad host"));
        }
        let prefix = clean_prefix(path).ok_or_else(|| bad("bad path"))?;
        Ok(BaseUrl {
            scheme,
            authority: authority.to_string(),
            prefix,
        })
    }

    /// The base URL for answering `req` (see the module doc).
    pub fn of(req: &HttpRequest) -> BaseUrl {
        let opts = req.app_data::<web::Data<Options>>().map(|o| o.get_ref());
        let local = req.app_config().local_addr();
        match opts {
            Some(o) => Self::resolve(o, req.peer_addr().map(|a| a.ip()), req.headers(), local),
            None => Self::resolve(&Options::default(), None, req.headers(), local),
        }
    }

    /// [`BaseUrl::of`] from its inputs: the peer's address, the request headers, and the
    /// address the request arrived on (the last resort for the host).
    pub fn resolve(
        opts: &Options,
        peer: Option<IpAddr>,
        headers: &HeaderMap,
        local: SocketAddr,
    ) -> BaseUrl {
        if let Some(b) = &opts.public_url {
            return b.clone();
        }
        let mut base = BaseUrl {
            scheme: "http".into(),
            authority: header(headers, "host")
                .filter(|h| valid_authority(h))
                .map_or_else(|| local.to_string(), str::to_string),
            prefix: String::new(),
        };
        if peer.is_some_and(|p| opts.trusted_proxies.trusts(p)) {
            let fwd = header(headers, "forwarded").map(forwarded_params);
            let from_fwd = |key: &str| {
                fwd.as_ref()
                    .and_then(|f| f.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)))
                    .map(|(_, v)| v.clone())
            };
            let proto = from_fwd("proto").or_else(|| last_of(headers, "x-forwarded-proto"));
            if let Some(p) = proto.map(|p| p.to_ascii_lowercase()) {
                if p == "http" || p == "https" {
                    base.scheme = p;
                }
            }
            let host = from_fwd("host").or_else(|| last_of(headers, "x-forwarded-host"));
            if let Some(h) = host.filter(|h| valid_authority(h)) {
                base.authority = h;
            }
            if let Some(p) = last_of(headers, "x-forwarded-prefix").and_then(|p| clean_prefix(&p)) {
                base.prefix = p;
            }
        }
        base
    }

    /// `scheme://host[:port]`.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }

    /// The path prefix (`""` or `/torrents`): the daemon's `/` is `<prefix>/` for clients.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The absolute URL of a daemon path (`/status`, `/playlist?ih=…`), already encoded.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{}{}", self.origin(), self.prefix, path_and_query)
    }

    /// The absolute `/data/infohash/<ih>/<path>` URL of a file, `path` being its display path
    /// bytes (each component percent-encoded).
    pub fn data_url(&self, ih: &InfoHash, path: &[u8]) -> String {
        self.url(&format!("/data/infohash/{ih}/{}", encode_path(path)))
    }

    /// The absolute listing URL of a directory of a torrent (`dir` empty for its root).
    pub fn listing_url(&self, ih: &InfoHash, dir: &[u8]) -> String {
        if dir.is_empty() {
            self.url(&format!("/data/infohash/{ih}/"))
        } else {
            self.url(&format!("/data/infohash/{ih}/{}/", encode_path(dir)))
        }
    }

    /// The absolute `/playlist?ih=` URL of a torrent.
    pub fn playlist_url(&self, ih: &InfoHash) -> String {
        self.url(&format!("/playlist?ih={ih}"))
    }
}

/// A header as text, if present and visible ASCII.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The last element of a comma-separated header, trimmed (over all its lines).
fn last_of(headers: &HeaderMap, name: &str) -> Option<String> {
    let v = headers.get_all(name).last()?.to_str().ok()?;
    let last = v.rsplit(',').next()?.trim();
    (!last.is_empty()).then(|| last.to_string())
}

/// The `key=value` pairs of the last element of a `Forwarded` header (RFC 7239), unquoted.
fn forwarded_params(v: &str) -> Vec<(String, String)> {
    let last = v.rsplit(',').next().unwrap_or("");
    last.split(';')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

/// A host as URLs carry it: a DNS name or IPv4 address, or `[IPv6]`, with an optional port.
pub fn valid_authority(s: &str) -> bool {
    if s.is_empty() || s.len() > 255 {
        return false;
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => (v6, Some(port)),
                None => return false,
            },
        }
    } else {
        let (h, p) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        let ok = !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !ok {
            return false;
        }
        (h, p)
    };
    let _ = host;
    port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok())
}

/// A path prefix made clean: `""` for none or `/`; otherwise `/a/b` (no trailing `/`), only
/// unreserved characters, `/` and `%XX` escapes, no `.`/`..` segments. `None` if invalid.
pub fn clean_prefix(p: &str) -> Option<String> {
    let p = p.trim_end_matches('/');
    if p.is_empty() {
        return Some(String::new());
    }
    if !p.starts_with('/') || p.len() > 1024 {
        return None;
    }
    let b = p.as_bytes();
    let chars_ok = b.iter().enumerate().all(|(i, &c)| match c {
        b'%' => b
            .get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)),
        c => c.is_ascii_alphanumeric() || b"-._~/".contains(&c),
    });
    let segs_ok = p[1..]
        .split('/')
        .all(|s| !s.is_empty() && s != "." && s != "..");
    (chars_ok && segs_ok).then(|| p.to_string())
}

/// Percent-encodes one path component: everything but ALPHA / DIGIT / `-._~`. A `/` inside is
/// encoded too, so a component never reads as two.
pub fn encode_component(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for &c in b {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// Percent-encodes a display path for a URL path, keeping its `/` separators.
pub fn encode_path(path: &[u8]) -> String {
    path.split(|&b| b == b'/')
        .map(encode_component)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests;
