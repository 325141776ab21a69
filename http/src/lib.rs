//! The HTTP front door: every confluence route on actix-web, thin handlers over the core.

mod conn;
mod data;
mod error;
pub mod go_quote;
mod meta;
mod query;
pub mod range;

use std::net::TcpListener;

use actix_web::{
    http::{header, StatusCode},
    web, App, HttpRequest, HttpResponse, HttpServer,
};
use confluence_core::Engine;

pub use error::HttpError;

/// The status the original writes when a client goes away mid-wait (nobody receives it).
pub(crate) fn client_gone() -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)).finish()
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

async fn fallback(req: HttpRequest) -> HttpResponse {
    let path = req.uri().path();
    let clean = clean_path(path);
    if clean != path {
        let mut loc = clean;
        if !req.query_string().is_empty() {
            loc = format!("{loc}?{}", req.query_string());
        }
        return HttpResponse::MovedPermanently()
            .insert_header((header::LOCATION, loc))
            .finish();
    }
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

/// The routes, for the server and for tests.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY))
        .route("/data", web::to(data::query_form))
        .route("/data/infohash/{rest:.*}", web::to(data::path_form))
        .route("/info", web::to(meta::info))
        .route("/metainfo", web::to(meta::metainfo))
        .route("/health", web::to(meta::health))
        .default_service(web::to(fallback));
}

/// Serves the API on `listener` until the returned server is stopped.
pub fn server(engine: Engine, listener: TcpListener) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::new(engine);
    Ok(HttpServer::new(move || App::new().app_data(data.clone()).configure(configure))
        .on_connect(conn::on_connect)
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(1)
        .run())
}
