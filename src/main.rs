//! `confluence`: a torrent client as an HTTP service (and an optional FUSE mount).
//!
//! This file only wires things together: flags → core config, the engine on its own runtime,
//! the HTTP server on actix's, and signals to stop both.

mod cluster;
mod dlna;
mod flags;
mod logging;

use std::{
    net::{SocketAddr, TcpListener, ToSocketAddrs},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context;
use confluence_core::{Config, Engine};
use tracing::{error, info, warn};

/// Resolves a Go-style listen address (`localhost:8080`, `:8080`, `[::1]:0`), preferring IPv4
/// as Go's `net.Listen` does for a host name.
fn listen_addr(s: &str) -> anyhow::Result<SocketAddr> {
    let s = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .with_context(|| format!("bad address {s:?}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .with_context(|| format!("{s:?} resolves to no address"))
}

/// The peer address: `:42069` means every interface, IPv4 and IPv6.
fn torrent_addr(s: &str) -> anyhow::Result<SocketAddr> {
    match s.strip_prefix(':') {
        Some(port) => Ok(SocketAddr::from((
            std::net::Ipv6Addr::UNSPECIFIED,
            port.parse::<u16>()
                .with_context(|| format!("bad port in {s:?}"))?,
        ))),
        None => listen_addr(s),
    }
}

fn config(f: &flags::Flags) -> anyhow::Result<Config> {
    let mut c = Config::new(f.data_dir.clone());
    c.torrent_addr = torrent_addr(&f.torrent_addr).context("-torrentAddr")?;
    c.dht = f.dht;
    c.dht_bootstrap = f.dht_bootstrap.clone();
    c.torrent_grace = f.torrent_grace;
    c.expire_torrents = f.expire_torrents;
    c.cache_capacity = (!f.unlimited_cache).then_some(f.cache_capacity);
    c.file_dir = f.file_dir.clone();
    c.disable_trackers = f.disable_trackers;
    c.implicit_trackers = f.implicit_tracker.clone();
    c.override_trackers = f.override_trackers;
    c.seed = f.seed;
    c.tcp_peers = f.tcp_peers;
    c.utp_peers = f.utp_peers;
    c.upnp_port_forwarding = f.upnp_port_forwarding;
    c.max_pending_torrents = f.max_pending_torrents;
    c.max_stored_metainfo = f.max_stored_metainfo;
    Ok(c)
}

fn main() -> ExitCode {
    confluence_core::memory::limit_arenas();
    let f = flags::parse();
    logging::init(&f.log_format);
    match run(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<confluence_mountd::MountError>() => {
            // A start-up error of the mount: one line, before HTTP serves anything.
            eprintln!("error: -mount: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            error!("{e:#}");
            ExitCode::from(1)
        }
    }
}

/// Flags librqbit cannot honour at run time: said once in the log, never silently ignored.
fn warn_partial(f: &flags::Flags) {
    if f.public_ip4().is_some() || f.public_ip6().is_some() {
        warn!("-publicIp4/-publicIp6/-dhtPublicIP: librqbit cannot be told its public IP (peers and trackers report it); used only as /upload's nodes");
    }
    if !f.pex {
        warn!("-pex=false: librqbit always exchanges peers (PEX); the flag has no effect");
    }
}

/// What the HTTP side takes from the flags.
fn http_options(f: &flags::Flags) -> confluence_http::Options {
    let mut public_ips = Vec::new();
    public_ips.extend(f.public_ip4().map(std::net::IpAddr::V4));
    public_ips.extend(f.public_ip6().map(std::net::IpAddr::V6));
    confluence_http::Options {
        debug_on_main: f.debug_on_main,
        auth_token: f.auth_token.clone().filter(|t| !t.is_empty()),
        public_ips,
        dlna: None,
        public_url: f.public_url.clone(),
        trusted_proxies: f.trusted_proxies.clone(),
        cors_origins: f.cors_origins.clone(),
        ..Default::default()
    }
}

fn run(f: flags::Flags) -> anyhow::Result<()> {
    warn_partial(&f);
    if let Some(dir) = &f.mount {
        // Fail fast on a bad mountpoint, before the engine and the HTTP listener exist.
        confluence_mountd::preflight(dir)?;
    }
    let cfg = config(&f)?;
    let http_addr = listen_addr(&f.addr).context("-addr")?;
    let listener =
        TcpListener::bind(http_addr).with_context(|| format!("listening on addr {http_addr}"))?;
    let http_addr = listener.local_addr()?;
    if !http_addr.ip().is_loopback() && f.auth_token.as_deref().unwrap_or("").is_empty() {
        warn!("HTTP API on {http_addr} is reachable from other machines without -authToken: anyone who can reach it can make this machine download and serve torrents");
    }
    let dlna = dlna::setup(&f, http_addr)?;

    let mut http_opts = http_options(&f);
    cluster::options(&f, http_addr, &mut http_opts)?;
    if f.auth_token.as_deref().is_some_and(|t| !t.is_empty()) {
        // Never the token itself: only that one is required.
        info!(
            "HTTP clients must send the token (-authToken or ${})",
            flags::AUTH_TOKEN_ENV
        );
    }

    let rt = EngineRuntime::start()?;
    let engine = rt
        .block_on(Engine::start(cfg))
        .context("creating torrent client")?;
    info!(
        "serving http at {http_addr}; peers on {}; data in {}",
        engine.listen_addr(),
        engine.config().data_dir.display()
    );

    let mount = match &f.mount {
        Some(dir) => Some(confluence_mountd::Mount::start(engine.clone(), dir)?),
        None => None,
    };

    let http_engine = engine.clone();
    let (dlna_opts, ssdp_cfg) = dlna.unzip();
    http_opts.dlna = dlna_opts;
    let served = actix_web::rt::System::new().block_on(async move {
        let server = confluence_http::server(http_engine, listener, http_opts)?;
        let handle = server.handle();
        let mut ssdp = dlna::start(ssdp_cfg)?;
        tokio::select! {
            r = server => {
                if let Some(s) = ssdp.take() {
                    s.stop().await;
                }
                r
            }
            _ = wait_for_signal() => {
                info!("stopping");
                // Byebye first, while the description is still served.
                if let Some(s) = ssdp.take() {
                    s.stop().await;
                }
                handle.stop(false).await;
                Ok(())
            }
        }
    });

    // Blocked FUSE reads get EIO and the mount goes before the engine stops.
    if let Some(m) = mount {
        m.shutdown();
    }

    tracing::debug!("http stopped");
    rt.block_on(engine.shutdown());
    rt.stop();
    tracing::debug!("engine stopped");
    served?;
    Ok(())
}

/// The runtime librqbit and the engine run on: a current-thread tokio runtime driven by a
/// thread of its own, named `engine`. On it librqbit writes chunks and hashes pieces inline; on
/// a multi-thread runtime it wraps each in `block_in_place`, which hands the worker to another
/// thread for every 16 KiB block. Measured on a cold 64 MiB stream: 10-30k context switches and
/// ~300 ms of CPU with two workers, 1.3k and ~200 ms with this, and the transfer after the
/// seeder's answer 0.31 s -> 0.23 s. Front doors reach it through [`Engine::runtime`].
struct EngineRuntime {
    rt: std::sync::Arc<tokio::runtime::Runtime>,
    stop: std::sync::Arc<tokio::sync::Notify>,
    driver: std::thread::JoinHandle<()>,
}

impl EngineRuntime {
    fn start() -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .thread_name("engine-blocking")
            .enable_all()
            .build()
            .context("starting the engine runtime")?;
        let rt = std::sync::Arc::new(rt);
        let stop = std::sync::Arc::new(tokio::sync::Notify::new());
        let (driven, stopped) = (rt.clone(), stop.clone());
        let driver = std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || driven.block_on(stopped.notified()))
            .context("starting the engine thread")?;
        Ok(Self { rt, stop, driver })
    }

    /// Runs `f` to completion from this (non-engine) thread; the engine thread keeps driving
    /// every other task meanwhile.
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Stops the engine thread, then the runtime (tasks still running get 300 ms).
    fn stop(self) {
        self.stop.notify_one();
        let _ = self.driver.join();
        if let Ok(rt) = std::sync::Arc::try_unwrap(self.rt) {
            rt.shutdown_timeout(Duration::from_millis(300));
        }
    }
}

/// SIGINT or SIGTERM.
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = int.recv() => {},
        _ = term.recv() => {},
    }
}
