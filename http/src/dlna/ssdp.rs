//! SSDP (UPnP Device Architecture 1.0, §1): `ssdp:alive` NOTIFYs at start and then every ten
//! minutes, `ssdp:byebye` at stop, and answers to M-SEARCH for `ssdp:all`, `upnp:rootdevice`, the
//! device UUID, the device type and the two service types, on the chosen IPv4 addresses only.

use std::{
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    sync::Arc,
    time::Duration,
};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::{net::UdpSocket, sync::Notify, task::JoinHandle, time::Instant};
use tracing::{debug, info, warn};

use super::{cds, ifaces::Subnet, DESCRIPTION_PATH, DEVICE_TYPE};

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);
const PORT: u16 = 1900;
const MAX_AGE: u64 = 1800;
/// Announcements at start (UDP may lose one), then every [`RENEW`].
const FIRST: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_secs(1),
    Duration::from_secs(3),
];
const RENEW: Duration = Duration::from_secs(600);
/// Longest datagram read; an M-SEARCH is a few hundred bytes.
const MAX_DATAGRAM: usize = 8192;

/// What SSDP announces.
#[derive(Clone, Debug)]
pub struct SsdpConfig {
    /// `uuid:…`.
    pub uuid: String,
    /// Our addresses; only searchers on their subnets are answered.
    pub addresses: Vec<Subnet>,
    pub http_port: u16,
}

struct Inner {
    cfg: SsdpConfig,
    recv: UdpSocket,
    /// One sender per address: multicast goes out of that interface, unicast from it.
    send: Vec<(Ipv4Addr, UdpSocket)>,
    server: String,
    budget: Budget,
}

/// Most M-SEARCHes answered per second.
const ANSWERS_PER_SEC: u32 = 50;

/// A per-second budget of answers.
struct Budget(std::sync::Mutex<(Instant, u32)>);

impl Budget {
    fn take(&self) -> bool {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now.duration_since(g.0) >= Duration::from_secs(1) {
            *g = (now, 0);
        }
        g.1 += 1;
        g.1 <= ANSWERS_PER_SEC
    }
}

/// The running announcer; [`Ssdp::stop`] says byebye.
pub struct Ssdp {
    inner: Arc<Inner>,
    stop: Arc<Notify>,
    task: JoinHandle<()>,
}

fn receiver(addresses: &[Subnet]) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    // Other UPnP software on this machine listens on 1900 too.
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT)).into())?;
    // Only the groups joined here, on the chosen interfaces.
    s.set_multicast_all_v4(false)?;
    for a in addresses {
        s.join_multicast_v4(&GROUP, &a.ip)?;
    }
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

fn sender(ip: Ipv4Addr) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.bind(&SocketAddr::from((ip, 0)).into())?;
    s.set_multicast_if_v4(&ip)?;
    s.set_multicast_ttl_v4(2)?;
    s.set_multicast_loop_v4(true)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

impl Ssdp {
    /// Binds UDP 1900 on the configured addresses and starts announcing. Call inside a tokio
    /// runtime.
    pub fn start(cfg: SsdpConfig) -> io::Result<Ssdp> {
        let recv = receiver(&cfg.addresses)
            .map_err(|e| io::Error::new(e.kind(), format!("SSDP on UDP port {PORT}: {e}")))?;
        let send = cfg
            .addresses
            .iter()
            .map(|a| a.ip)
            .map(|ip| {
                sender(ip)
                    .map(|s| (ip, s))
                    .map_err(|e| io::Error::new(e.kind(), format!("SSDP sender on {ip}: {e}")))
            })
            .collect::<io::Result<Vec<_>>>()?;
        info!(
            "DLNA: SSDP on {:?}, device {} at http://<address>:{}{DESCRIPTION_PATH}",
            cfg.addresses.iter().map(|a| a.ip).collect::<Vec<_>>(),
            cfg.uuid,
            cfg.http_port
        );
        let inner = Arc::new(Inner {
            cfg,
            recv,
            send,
            server: format!("Linux UPnP/1.0 confluence/{}", env!("CARGO_PKG_VERSION")),
            budget: Budget(std::sync::Mutex::new((Instant::now(), 0))),
        });
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn(run(inner.clone(), stop.clone()));
        Ok(Ssdp { inner, stop, task })
    }

    /// Stops answering and sends `ssdp:byebye` on every address.
    pub async fn stop(self) {
        self.stop.notify_one();
        let _ = self.task.await;
        self.inner.notify("ssdp:byebye").await;
        debug!("DLNA: SSDP stopped");
    }
}

async fn run(inner: Arc<Inner>, stop: Arc<Notify>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let start = Instant::now();
    let mut sent = 0usize;
    let next = |sent: usize| match FIRST.get(sent) {
        Some(d) => start + *d,
        None => start + FIRST[FIRST.len() - 1] + RENEW * (sent - FIRST.len() + 1) as u32,
    };
    loop {
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep_until(next(sent)) => {
                inner.notify("ssdp:alive").await;
                sent += 1;
            }
            r = inner.recv.recv_from(&mut buf) => match r {
                Ok((n, src)) => inner.answer(&buf[..n], src).await,
                Err(e) => {
                    warn!("DLNA: SSDP receive: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

impl Inner {
    /// (NT or ST, USN) of everything announced.
    fn targets(&self) -> Vec<(String, String)> {
        let uuid = &self.cfg.uuid;
        let mut v = vec![
            (
                "upnp:rootdevice".to_owned(),
                format!("{uuid}::upnp:rootdevice"),
            ),
            (uuid.clone(), uuid.clone()),
        ];
        for t in [DEVICE_TYPE, cds::CDS, cds::CM] {
            v.push((t.to_owned(), format!("{uuid}::{t}")));
        }
        v
    }

    fn location(&self, ip: Ipv4Addr) -> String {
        format!("http://{ip}:{}{DESCRIPTION_PATH}", self.cfg.http_port)
    }

    async fn notify(&self, nts: &str) {
        let group = SocketAddr::V4(SocketAddrV4::new(GROUP, PORT));
        for (ip, sock) in &self.send {
            for (nt, usn) in self.targets() {
                let mut m = format!(
                    "NOTIFY * HTTP/1.1\r\nHOST: {GROUP}:{PORT}\r\nNT: {nt}\r\nNTS: {nts}\r\nUSN: {usn}\r\n"
                );
                if nts == "ssdp:alive" {
                    m.push_str(&format!(
                        "CACHE-CONTROL: max-age={MAX_AGE}\r\nLOCATION: {}\r\nSERVER: {}\r\n",
                        self.location(*ip),
                        self.server
                    ));
                }
                m.push_str("\r\n");
                if let Err(e) = sock.send_to(m.as_bytes(), group).await {
                    debug!("DLNA: SSDP {nts} on {ip}: {e}");
                }
            }
        }
    }

    /// Answers an M-SEARCH (anything else is ignored) from the address whose route leads to
    /// the searcher, if that address is one of ours.
    async fn answer(&self, datagram: &[u8], src: SocketAddr) {
        let Some(st) = msearch_target(datagram) else {
            return;
        };
        // Never answer beyond our subnets (an answer is five datagrams: no reflection to the
        // internet), and at most ANSWERS_PER_SEC searches a second.
        let on_subnet = match src.ip() {
            std::net::IpAddr::V4(ip) => self.cfg.addresses.iter().any(|a| a.contains(ip)),
            std::net::IpAddr::V6(_) => false,
        };
        if !on_subnet || !self.budget.take() {
            debug!(%src, on_subnet, "DLNA: M-SEARCH not answered");
            return;
        }
        let targets: Vec<(String, String)> = self
            .targets()
            .into_iter()
            .filter(|(t, _)| st == "ssdp:all" || *t == st)
            .collect();
        if targets.is_empty() {
            return;
        }
        let Some((ip, sock)) =
            local_ip_towards(src).and_then(|ip| self.send.iter().find(|(a, _)| *a == ip))
        else {
            debug!(%src, "DLNA: M-SEARCH from outside the SSDP interfaces, not answered");
            return;
        };
        for (st, usn) in targets {
            let m = format!(
                "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age={MAX_AGE}\r\nEXT:\r\nLOCATION: {}\r\n\
                 SERVER: {}\r\nST: {st}\r\nUSN: {usn}\r\nCONTENT-LENGTH: 0\r\n\r\n",
                self.location(*ip),
                self.server
            );
            if let Err(e) = sock.send_to(m.as_bytes(), src).await {
                debug!(%src, "DLNA: SSDP answer: {e}");
            }
        }
    }
}

/// The local address the kernel would send from to reach `dst`.
fn local_ip_towards(dst: SocketAddr) -> Option<Ipv4Addr> {
    let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    s.connect(dst).ok()?;
    match s.local_addr().ok()? {
        SocketAddr::V4(a) => Some(*a.ip()),
        SocketAddr::V6(_) => None,
    }
}

/// The `ST` of a well-formed M-SEARCH (`MAN: "ssdp:discover"`), else `None`.
fn msearch_target(datagram: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(datagram).ok()?;
    let mut lines = text.split("\r\n");
    let first = lines.next()?;
    let mut words = first.split_whitespace();
    if words.next()? != "M-SEARCH" || words.next()? != "*" || !words.next()?.starts_with("HTTP/1.")
    {
        return None;
    }
    let (mut man, mut st) = (None, None);
    for l in lines.take(64) {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "man" => man = Some(v.trim()),
            "st" => st = Some(v.trim()),
            _ => {}
        }
    }
    (man? == "\"ssdp:discover\"").then(|| st.map(str::to_owned))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_msearch() {
        let m = b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 2\r\nST: ssdp:all\r\n\r\n";
        assert_eq!(msearch_target(m).as_deref(), Some("ssdp:all"));
        let m = b"M-SEARCH * HTTP/1.1\r\nman: \"ssdp:discover\"\r\nst: upnp:rootdevice\r\n\r\n";
        assert_eq!(msearch_target(m).as_deref(), Some("upnp:rootdevice"));
        for bad in [
            &b""[..],
            b"\xff\xfe",
            b"NOTIFY * HTTP/1.1\r\nNT: x\r\n\r\n",
            b"M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\n\r\n",
            b"M-SEARCH * HTTP/1.1\r\nMAN: ssdp:discover\r\nST: ssdp:all\r\n\r\n",
            b"M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\n\r\n",
            b"M-SEARCH /x HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\nST: ssdp:all\r\n\r\n",
        ] {
            assert_eq!(
                msearch_target(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
