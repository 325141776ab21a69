//! `-nodeName`, `-clusterPeers` and `-clusterSelf` → the HTTP side's [`confluence_http::Options`].

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use confluence_http::cluster::Cluster;

use crate::flags::Flags;

/// The host's name (`gethostname`), or `localhost` when it has none.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // truncates (the last byte stays 0).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
    match std::str::from_utf8(&buf[..end]) {
        Ok(h) if rc == 0 && !h.is_empty() => h.to_string(),
        _ => "localhost".to_string(),
    }
}

/// Fills in the node name (default `HOSTNAME:PORT`) and the cluster, checking that this node
/// is one of `-clusterPeers`.
pub fn options(
    f: &Flags,
    http_addr: SocketAddr,
    opts: &mut confluence_http::Options,
) -> anyhow::Result<()> {
    opts.node_name = f
        .node_name
        .clone()
        .unwrap_or_else(|| format!("{}:{}", hostname(), http_addr.port()));
    if let Some(peers) = &f.cluster_peers {
        let me = f.cluster_self.as_deref().unwrap_or(&f.addr);
        let c = Cluster::new(peers.clone(), me)
            .map_err(anyhow::Error::msg)
            .context("-clusterPeers")?;
        tracing::info!(
            node = %opts.node_name,
            "cluster of {} daemons; this one is {me}",
            c.peers().len()
        );
        opts.cluster = Some(Arc::new(c));
    } else if f.cluster_self.is_some() {
        anyhow::bail!("-clusterSelf needs -clusterPeers");
    }
    Ok(())
}
