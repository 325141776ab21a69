//! `-dlna`: the flags turned into the HTTP routes' options and the SSDP announcer's settings.

use std::net::SocketAddr;

use anyhow::Context;
use confluence_http::dlna::{
    self,
    ssdp::{Ssdp, SsdpConfig},
    DlnaOptions,
};

use crate::flags::Flags;

/// `None` without `-dlna`. Checked before anything starts: a bad interface, a name that is
/// not ours, or `-authToken` (TVs cannot send a token) stop the daemon with the reason.
pub fn setup(f: &Flags, http: SocketAddr) -> anyhow::Result<Option<(DlnaOptions, SsdpConfig)>> {
    if !f.dlna {
        if f.dlna_name.is_some() || f.dlna_interfaces.is_some() {
            tracing::warn!("-dlnaName and -dlnaInterfaces have no effect without -dlna");
        }
        return Ok(None);
    }
    if f.auth_token.as_deref().is_some_and(|t| !t.is_empty()) {
        anyhow::bail!(
            "-dlna cannot be used with -authToken: TVs cannot send a token, so the media server \
             would expose what the token protects"
        );
    }
    let addresses = dlna::ifaces::ssdp_addresses(f.dlna_interfaces.as_deref(), http)
        .map_err(|e| anyhow::anyhow!("-dlnaInterfaces: {e}"))?;
    let uuid = dlna::device_uuid(&f.data_dir)
        .with_context(|| format!("-dlna: keeping the device UUID in {}", f.data_dir.display()))?;
    let name = match &f.dlna_name {
        Some(n) if !n.trim().is_empty() => n.clone(),
        _ => format!("confluence on {}", hostname()),
    };
    let cfg = SsdpConfig {
        uuid: uuid.clone(),
        addresses,
        http_port: http.port(),
    };
    Ok(Some((DlnaOptions::new(name, uuid), cfg)))
}

/// Starts SSDP (inside the HTTP runtime).
pub fn start(cfg: Option<SsdpConfig>) -> std::io::Result<Option<Ssdp>> {
    cfg.map(Ssdp::start).transpose()
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return "this machine".to_owned();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
