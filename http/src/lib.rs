//! The HTTP front door: every confluence route on actix-web, thin handlers over the core.
//!
//! # Embedding
//!
//! [`server`] serves the whole API (with the `-authToken` check of [`Options::auth_token`]) on
//! a listener you bound, on actix-web's runtime: run it inside an `actix_web::rt::System` on a
//! thread of its own, not on the engine's runtime. [`routes`] adds the routes to an actix `App`
//! of your own instead (then the token check is yours to add, and the `App` must carry
//! `web::Data<Engine>`).
//!
//! Shut down with the server's handle (`handle.stop(false).await`, from any async context)
//! before `Engine::shutdown`.
//!
//! ```no_run
//! use confluence_core::{Config, Engine};
//!
//! # fn main() -> anyhow::Result<()> {
//! let rt = tokio::runtime::Runtime::new()?; // the engine's runtime
//! let engine = rt.block_on(Engine::start(Config::new("/tmp/confluence".into())))?;
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?; // an ephemeral port
//! println!("API on http://{}", listener.local_addr()?);
//! let options = confluence_http::Options {
//!     auth_token: std::env::var("CONFLUENCE_AUTH_TOKEN").ok(),
//!     ..Default::default()
//! };
//! let http_engine = engine.clone();
//! let http = std::thread::spawn(move || {
//!     actix_web::rt::System::new().block_on(async move {
//!         let server = confluence_http::server(http_engine, listener, options)?;
//!         // Keep `server.handle()` to stop it: `handle.stop(false).await`.
//!         server.await
//!     })
//! });
//! # let _ = http;
//! // ... later, after stopping the server:
//! rt.block_on(engine.shutdown());
//! # Ok(())
//! # }
//! ```

mod access;
mod auth;
pub mod bep44;
mod body;
pub mod cluster;
mod conn;
mod data;
pub mod dav;
pub mod dlna;
mod error;
pub mod events;
pub mod filestate;
pub use confluence_core::gocompat as go_quote;
mod meta;
pub mod page;
mod query;
pub mod range;
mod resolve;
pub mod status;
mod upload;

// Issue 15 B: listings, playlists, proxy-aware URLs, CORS.
pub mod cors;
pub mod listing;
pub mod natural;
pub mod playlist;
pub mod public_url;

use std::net::{IpAddr, TcpListener};

use actix_web::{
    http::{header, StatusCode},
    web, App, HttpRequest, HttpResponse, HttpServer,
};
use confluence_core::Engine;

pub use error::HttpError;

/// What the HTTP side needs from the command line besides the engine.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `-debugOnMain`: serve `/metrics` and `/debug/…` on the main address.
    pub debug_on_main: bool,
    /// `-authToken`: required on every route when set.
    pub auth_token: Option<String>,
    /// `-publicIp4`/`-publicIp6`: given as `nodes` (with the peer port) in `/upload` answers.
    pub public_ips: Vec<IpAddr>,
    /// `-dlna`: the UPnP MediaServer's routes under `/dlna/` (SSDP runs from main).
    pub dlna: Option<dlna::DlnaOptions>,
    /// `-publicURL`: the base of every absolute URL handed out, whoever asks.
    pub public_url: Option<public_url::BaseUrl>,
    /// `-trustedProxies`: peers whose `Forwarded`/`X-Forwarded-*` headers are believed.
    pub trusted_proxies: public_url::TrustedProxies,
    /// `-corsOrigins`: origins allowed to read `/data`, `/info` and `/playlist`.
    pub cors_origins: cors::CorsOrigins,
    /// `-nodeName`: sent as `X-Confluence-Node` on every answer (none when empty).
    pub node_name: String,
    /// `-clusterPeers`: this node's place among the daemons behind nginx.
    pub cluster: Option<std::sync::Arc<cluster::Cluster>>,
}

/// Largest accepted request body (`POST /metainfo`): metainfo of very large torrents is a few
/// MiB; anything bigger is refused with 413.
pub const MAX_BODY: usize = 32 * 1024 * 1024;

async fn not_found() -> HttpResponse {
    error::text_response(StatusCode::NOT_FOUND, "404 page not found")
}

/// Unclean paths (`//`, `/./`, `/../`) get a 301 to the cleaned path, as Go's ServeMux does.
fn clean_path(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut c = format!("/{}", out.join("/"));
    if p.ends_with('/') && c != "/" {
        c.push('/');
    }
    c
}

/// The 301 to the cleaned path, when the request path is unclean.
fn redirect_unclean(req: &HttpRequest) -> Option<HttpResponse> {
    let path = req.uri().path();
    let clean = clean_path(path);
    if clean == path {
        return None;
    }
    let mut loc = clean;
    if !req.query_string().is_empty() {
        loc = format!("{loc}?{}", req.query_string());
    }
    Some(
        HttpResponse::MovedPermanently()
            .insert_header((header::LOCATION, loc))
            .finish(),
    )
}

/// `/data/infohash/…`, after the unclean-path redirect the original's mux does first.
async fn data_path_form(req: HttpRequest, engine: web::Data<Engine>) -> HttpResponse {
    if let Some(r) = redirect_unclean(&req) {
        return r;
    }
    data::path_form(req, engine).await
}

async fn fallback(req: HttpRequest) -> HttpResponse {
    if let Some(r) = redirect_unclean(&req) {
        return r;
    }
    let path = req.uri().path();
    if path == "/data/infohash" {
        let mut loc = "/data/infohash/".to_string();
        if !req.query_string().is_empty() {
            loc = format!("{loc}?{}", req.query_string());
        }
        return HttpResponse::MovedPermanently()
            .insert_header((header::LOCATION, loc))
            .finish();
    }
    not_found().await
}

/// The routes with default [`Options`], for tests.
pub fn configure(cfg: &mut web::ServiceConfig) {
    routes(cfg, &Options::default());
}

/// The routes: every route of the original (any method, as its mux), plus `/metrics` and
/// `/debug/…` with `-debugOnMain`.
pub fn routes(cfg: &mut web::ServiceConfig, opts: &Options) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY))
        .app_data(web::Data::new(opts.clone()))
        .route("/data", web::to(data::query_form))
        .route("/data/infohash/{rest:.*}", web::to(data_path_form))
        .route("/info", web::to(meta::info))
        .route("/metainfo", web::post().to(meta::post))
        .route("/metainfo", web::to(meta::metainfo))
        .route("/health", web::to(meta::health))
        .route("/events", web::to(events::events))
        .route("/fileState", web::to(filestate::file_state_route))
        .route("/status", web::to(status::status))
        .route("/upload", web::to(upload::upload))
        .route("/bep44", web::to(bep44::bep44))
        .route("/playlist", web::to(playlist::playlist));
    // WebDAV (read-only): every method, the share's own answers.
    cfg.route(dav::ROUTE, web::to(dav::handle))
        .route("/dav/{rest:.*}", web::to(dav::handle));
    // The web page: `/`, `/t/<ih>`, `/add`, `/ui/…` (see `page`).
    page::routes(cfg);
    if opts.debug_on_main {
        cfg.route("/metrics", web::to(status::metrics))
            .route("/debug/{rest:.*}", web::to(status::debug));
    }
    if let Some(d) = &opts.dlna {
        dlna::routes(cfg, d);
    }
    cfg.default_service(web::to(fallback));
}

/// Serves the API on `listener` until the returned server is stopped.
pub fn server(
    engine: Engine,
    listener: TcpListener,
    opts: Options,
) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::new(engine);
    Ok(HttpServer::new(move || {
        let opts = opts.clone();
        let token = opts.auth_token.clone();
        let cors_origins = std::sync::Arc::new(opts.cors_origins.clone());
        // Outermost, so that refusals carry it too; a forwarded answer keeps its owner's.
        let mut node = actix_web::middleware::DefaultHeaders::new();
        if !opts.node_name.is_empty() {
            node = node.add((cluster::NODE, opts.node_name.clone()));
        }
        App::new()
            .app_data(data.clone())
            .wrap(actix_web::middleware::from_fn(move |req, next| {
                auth::require_token(token.clone(), req, next)
            }))
            // Outside the token check: preflights carry no credentials.
            .wrap(actix_web::middleware::from_fn(move |req, next| {
                cors::cors(cors_origins.clone(), req, next)
            }))
            .wrap(node)
            .configure(move |cfg| routes(cfg, &opts))
    })
    .on_connect(conn::on_connect)
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(0)
    .run())
}
