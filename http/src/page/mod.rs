//! The web page: `/` (every known torrent, live rates, an add form) and `/t/<ih>` (file tree,
//! players, links, a live piece map), their JSON (`/ui/torrents`, `/ui/pieces?ih=`), the add
//! route (`/add?q=<magnet or infohash>`) and the embedded assets (`/ui/<file>`).
//!
//! Server-rendered HTML that works without JavaScript; the scripts only refresh numbers and
//! paint the piece map. Every torrent-controlled string goes through [`html::esc`]; pages send
//! a strict Content-Security-Policy (scripts and styles from this origin only) and no referrer.

pub mod evicted;
pub mod html;
pub mod model;
pub mod token;

use std::time::Duration;

use actix_web::{
    guard,
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse,
};
use confluence_core::{ident, Engine};
use serde::Serialize;

use crate::{
    error::{text_response, HttpError},
    query::Query,
};

/// How long `/add` keeps a reference on a torrent while its metadata is fetched.
const ADD_HOLD: Duration = Duration::from_secs(120);

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The embedded assets: name, content type, body.
const ASSETS: [(&str, &str, &str); 4] = [
    (
        "page.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/page.css"),
    ),
    (
        "index.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/index.js"),
    ),
    (
        "torrent.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/torrent.js"),
    ),
    (
        "login.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/login.js"),
    ),
];

/// Assets the login page needs, served without the token (they hold nothing secret).
pub fn is_public_asset(path: &str) -> bool {
    matches!(path, "/ui/page.css" | "/ui/login.js")
}

/// A page route a browser navigates to (answered with the login page when the token is missing).
pub fn is_page(path: &str) -> bool {
    path == "/" || path.strip_prefix("/t/").is_some_and(|r| !r.contains('/'))
}

/// Whether the client asks for HTML (browsers do; curl does not).
pub fn accepts_html(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .any(|v| String::from_utf8_lossy(v.as_bytes()).contains("text/html"))
}

pub fn html_response(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

fn json_response<T: Serialize>(v: &T) -> HttpResponse {
    match serde_json::to_string(v) {
        Ok(s) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(s),
        Err(e) => text_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The routes of the page (added to the API's).
pub fn routes(cfg: &mut web::ServiceConfig) {
    // GET and HEAD; other methods fall through to the API's `404 page not found`.
    let get = || web::route().guard(guard::Any(guard::Get()).or(guard::Head()));
    cfg.route("/", get().to(index))
        .route("/t/{ih}", get().to(torrent))
        .route("/add", web::get().to(add))
        .route("/ui/torrents", get().to(torrents_json))
        .route("/ui/pieces", get().to(pieces_json))
        .route("/ui/{file}", get().to(asset));
}

/// `GET /`: the HTML page, or a plain-text table for clients that do not accept HTML.
async fn index(req: HttpRequest, engine: web::Data<Engine>) -> HttpResponse {
    evicted::tracker(&engine);
    let o = model::overview(&engine);
    if accepts_html(&req) {
        html_response(StatusCode::OK, html::index(&o))
    } else {
        HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
            .body(html::index_text(&o))
    }
}

fn parse_ih(s: &str) -> Result<ident::InfoHash, HttpError> {
    ident::parse_hex(s)
        .map_err(|e| HttpError::bad_request(format!("error determining requested infohash: {e}")))
}

/// `GET /t/<ih>[?play=<file index>]`. Never adds the torrent.
async fn torrent(
    req: HttpRequest,
    path: web::Path<String>,
    engine: web::Data<Engine>,
) -> HttpResponse {
    let ih = match parse_ih(&path) {
        Ok(ih) => ih,
        Err(e) => return e.into(),
    };
    let ihs = ih.to_string();
    let Some(info) = engine.info_of(&ih) else {
        let known = engine.torrent(&ih).is_some();
        let status = if known {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        return html_response(status, html::waiting(&ihs, known));
    };
    let q = Query::parse(req.query_string());
    let play = match q.get("play") {
        None => None,
        Some(p) => match p.parse::<usize>() {
            Ok(i) if info.is_visible(i) => Some(i),
            _ => {
                return text_response(
                    StatusCode::BAD_REQUEST,
                    "play: not a file index of this torrent",
                )
            }
        },
    };
    let states = engine.known_piece_states(&ih, info.num_pieces);
    let evicted = evicted::tracker(&engine).of(&ih);
    let view = html::TorrentView {
        ih: &ihs,
        info: &info,
        states: &states,
        evicted: &evicted,
        play,
    };
    html_response(StatusCode::OK, html::torrent(&view))
}

/// `GET /add?q=<magnet or infohash>`: adds the torrent (holding it while its metadata comes)
/// and redirects to its page.
async fn add(req: HttpRequest, engine: web::Data<Engine>) -> HttpResponse {
    let q = Query::parse(req.query_string());
    let input = q.get("q").unwrap_or_default();
    let input = input.trim();
    if input.is_empty() {
        return text_response(
            StatusCode::BAD_REQUEST,
            "add: missing q (a magnet link or an infohash)",
        );
    }
    let resolved = if input.len() >= 7 && input[..7].eq_ignore_ascii_case("magnet:") {
        ident::resolve(Some(input), None)
    } else {
        ident::resolve(None, Some(input))
    };
    let (ih, trackers) = match resolved {
        Ok(r) => r,
        Err(e) => return text_response(StatusCode::BAD_REQUEST, &e.http_message()),
    };
    let torrent = match engine.acquire(ih, &trackers) {
        Ok(t) => t,
        Err(e) => return crate::HttpError::from(e).into(),
    };
    actix_web::rt::spawn(async move {
        let _ = tokio::time::timeout(ADD_HOLD, torrent.wait_info()).await;
        drop(torrent);
    });
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("t/{ih}")))
        .finish()
}

/// `GET /ui/torrents`: what `/` shows, as JSON (polled by the page).
async fn torrents_json(engine: web::Data<Engine>) -> HttpResponse {
    json_response(&model::overview(&engine))
}

#[derive(Serialize)]
struct Pieces {
    /// One letter per piece (see [`model::piece_letters`]).
    pieces: String,
    /// Cached bytes of each file, in info order.
    files: Vec<u64>,
    cached: u64,
    size: u64,
}

/// `GET /ui/pieces?ih=`: the piece map and per-file cached bytes. Never adds the torrent.
async fn pieces_json(req: HttpRequest, engine: web::Data<Engine>) -> HttpResponse {
    let q = Query::parse(req.query_string());
    let ih = match parse_ih(&q.get("ih").unwrap_or_default()) {
        Ok(ih) => ih,
        Err(e) => return e.into(),
    };
    let Some(info) = engine.info_of(&ih) else {
        return text_response(StatusCode::NOT_FOUND, "torrent info not known");
    };
    let states = engine.known_piece_states(&ih, info.num_pieces);
    let evicted = evicted::tracker(&engine).of(&ih);
    json_response(&Pieces {
        pieces: model::piece_letters(&states, &evicted),
        files: info
            .files
            .iter()
            .map(|f| model::cached_bytes(&info, &states, f.offset, f.length))
            .collect(),
        cached: model::cached_bytes(&info, &states, 0, info.total_length),
        size: info.total_length,
    })
}

/// `GET /ui/<file>`: an embedded asset.
async fn asset(path: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|(n, _, _)| *n == path.as_str()) {
        Some((_, ctype, body)) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, *ctype))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .body(*body),
        None => text_response(StatusCode::NOT_FOUND, "404 page not found"),
    }
}
