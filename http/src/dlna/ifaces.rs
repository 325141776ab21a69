//! Which IPv4 addresses SSDP runs on (`-dlnaInterfaces`, else derived from `-addr`).

use std::{
    ffi::CStr,
    net::{IpAddr, Ipv4Addr, SocketAddr},
};

/// An address of ours and the subnet it is on: SSDP answers only searchers on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Subnet {
    pub ip: Ipv4Addr,
    pub netmask: Ipv4Addr,
}

impl Subnet {
    pub fn contains(&self, other: Ipv4Addr) -> bool {
        let m = u32::from(self.netmask);
        u32::from(self.ip) & m == u32::from(other) & m
    }
}

/// One IPv4 address of a local interface.
#[derive(Clone, Debug)]
pub struct IfAddr {
    pub name: String,
    pub ip: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub up: bool,
    pub multicast: bool,
    pub loopback: bool,
}

/// The IPv4 addresses of this machine's interfaces (`getifaddrs`).
pub fn local_ipv4() -> std::io::Result<Vec<IfAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_addr points at a sockaddr whose family says what it really is.
        if i32::from(unsafe { (*ifa.ifa_addr).sa_family }) != libc::AF_INET {
            continue;
        }
        // SAFETY: an AF_INET address is a sockaddr_in.
        let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
        let flags = ifa.ifa_flags as libc::c_int;
        let netmask = if ifa.ifa_netmask.is_null() {
            Ipv4Addr::BROADCAST
        } else {
            // SAFETY: the netmask of an AF_INET address is a sockaddr_in too.
            let m = unsafe { &*(ifa.ifa_netmask as *const libc::sockaddr_in) };
            Ipv4Addr::from(u32::from_be(m.sin_addr.s_addr))
        };
        out.push(IfAddr {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            name: unsafe { CStr::from_ptr(ifa.ifa_name) }
                .to_string_lossy()
                .into_owned(),
            ip: Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
            netmask,
            up: flags & libc::IFF_UP != 0,
            multicast: flags & libc::IFF_MULTICAST != 0,
            loopback: flags & libc::IFF_LOOPBACK != 0,
        });
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// The SSDP addresses for `-dlnaInterfaces` (comma-separated IPv4 addresses or interface
/// names) or, without it, for the HTTP address: its own address, or every up, multicast,
/// non-loopback interface when it listens on all of them. Each must be reachable over HTTP.
pub fn ssdp_addresses(flag: Option<&str>, http: SocketAddr) -> Result<Vec<Subnet>, String> {
    let local = local_ipv4().map_err(|e| format!("cannot list network interfaces: {e}"))?;
    let mut out: Vec<Ipv4Addr> = Vec::new();
    match flag {
        Some(list) => {
            for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if let Ok(ip) = item.parse::<Ipv4Addr>() {
                    if !local.iter().any(|a| a.ip == ip) {
                        return Err(format!("{ip} is not an address of this machine"));
                    }
                    out.push(ip);
                    continue;
                }
                let of_name: Vec<Ipv4Addr> = local
                    .iter()
                    .filter(|a| a.name == item)
                    .map(|a| a.ip)
                    .collect();
                if of_name.is_empty() {
                    return Err(format!(
                        "{item:?} is neither an IPv4 address nor an interface with one"
                    ));
                }
                out.extend(of_name);
            }
            if out.is_empty() {
                return Err("no interface given".to_owned());
            }
        }
        None => match http.ip() {
            IpAddr::V4(ip) if !ip.is_unspecified() => out.push(ip),
            ip if ip.is_unspecified() => {
                out.extend(
                    local
                        .iter()
                        .filter(|a| a.up && a.multicast && !a.loopback)
                        .map(|a| a.ip),
                );
                if out.is_empty() {
                    return Err("no up, multicast-capable IPv4 interface found".to_owned());
                }
            }
            ip => {
                return Err(format!(
                    "SSDP runs over IPv4 and -addr is {ip}: name IPv4 interfaces"
                ))
            }
        },
    }
    out.sort();
    out.dedup();
    for ip in &out {
        if !http.ip().is_unspecified() && http.ip() != IpAddr::V4(*ip) {
            return Err(format!(
                "TVs finding the server on {ip} could not reach HTTP on {http}: \
                 set -addr to {ip}:{port} or 0.0.0.0:{port}",
                port = http.port()
            ));
        }
    }
    Ok(out
        .into_iter()
        .map(|ip| Subnet {
            ip,
            netmask: local
                .iter()
                .find(|a| a.ip == ip)
                .map_or(Ipv4Addr::BROADCAST, |a| a.netmask),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let http: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let lo = Subnet {
            ip: Ipv4Addr::LOCALHOST,
            netmask: Ipv4Addr::new(255, 0, 0, 0),
        };
        assert_eq!(ssdp_addresses(None, http), Ok(vec![lo]));
        assert_eq!(ssdp_addresses(Some("127.0.0.1, lo"), http), Ok(vec![lo]));
        assert!(lo.contains(Ipv4Addr::new(127, 9, 9, 9)));
        assert!(!lo.contains(Ipv4Addr::new(192, 0, 2, 1)));
        assert!(ssdp_addresses(Some("nosuch0"), http).is_err());
        assert!(ssdp_addresses(Some(","), http).is_err());
        assert!(ssdp_addresses(Some("192.0.2.77"), http).is_err());
        let all: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(ssdp_addresses(Some("127.0.0.1"), all), Ok(vec![lo]));
        let v6: SocketAddr = "[::1]:8080".parse().unwrap();
        assert!(ssdp_addresses(None, v6).is_err());
    }
}
