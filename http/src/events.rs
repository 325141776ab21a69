//! `/events?ih=`: a websocket with one text frame `{"PieceChanged":<n>}` per piece state change
//! of the torrent (priority raised, verified and stored, evicted).
//!
//! As the original (golang.org/x/net/websocket): the info is awaited before any HTTP is done; a
//! bad handshake gets the original's status and one-word reason; pings are answered; the stream
//! ends, with close 1000, when the client closes or sends any data frame with a payload; the
//! socket holds a torrent reference for as long as it is open; up to [`MAX_QUEUED`] events are
//! queued so a slow client misses none, and a client that falls further behind (one that never
//! reads) is closed with 1008 and the reason.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc,
};

use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse,
};
use actix_ws::{CloseCode, CloseReason, Message};
use confluence_core::{Engine, PieceEvent, TorrentRef};
use futures::StreamExt;
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, warn};

use crate::{error::HttpError, resolve::Resolved};

static OPEN_STREAMS: AtomicU64 = AtomicU64::new(0);
static READ_CLOSED: AtomicU64 = AtomicU64::new(0);

/// Open `/events` websockets (for `/metrics`).
pub fn open_streams() -> u64 {
    OPEN_STREAMS.load(Ordering::Relaxed)
}

/// Streams ended by the client (the original's `confluenceEventHandlerWebsocketReadClosed`).
pub fn read_closed() -> u64 {
    READ_CLOSED.load(Ordering::Relaxed)
}

/// Piece events queued for one socket whose client does not keep up; one more closes it.
pub const MAX_QUEUED: usize = 64 * 1024;

/// The close reason of a socket whose client fell [`MAX_QUEUED`] events behind.
fn overflow_reason() -> String {
    format!("client too slow: more than {MAX_QUEUED} piece events queued")
}

/// The exact frame body the original sends.
pub fn frame(piece: u32) -> String {
    format!("{{\"PieceChanged\":{piece}}}")
}

/// A handshake refusal: status, reason, and whether `Sec-WebSocket-Version: 13` goes along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refusal(StatusCode, &'static str, bool);

impl Refusal {
    /// As golang.org/x/net/websocket writes it: status, reason without newline, connection
    /// closed.
    fn response(self) -> HttpResponse {
        let Refusal(status, reason, version_header) = self;
        let mut r = HttpResponse::build(status);
        r.insert_header((header::CONNECTION, "close"));
        if version_header {
            r.insert_header((header::SEC_WEBSOCKET_VERSION, "13"));
        }
        r.body(reason)
    }
}

fn refuse(status: StatusCode, reason: &'static str, version_header: bool) -> Refusal {
    Refusal(status, reason, version_header)
}

fn header_str(req: &HttpRequest, name: header::HeaderName) -> &str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The handshake checks of x/net/websocket, in its order. `Ok` carries the one subprotocol
/// offered (echoed back), if any.
fn check_handshake(req: &HttpRequest) -> Result<Option<String>, Refusal> {
    if req.method() != actix_web::http::Method::GET {
        return Err(refuse(StatusCode::METHOD_NOT_ALLOWED, "bad method", false));
    }
    let upgrade = header_str(req, header::UPGRADE).to_ascii_lowercase();
    let connection = header_str(req, header::CONNECTION).to_ascii_lowercase();
    if upgrade != "websocket" || !connection.contains("upgrade") {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "not websocket protocol",
            false,
        ));
    }
    if header_str(req, header::SEC_WEBSOCKET_KEY).is_empty() {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "mismatch challenge/response",
            false,
        ));
    }
    if header_str(req, header::SEC_WEBSOCKET_VERSION) != "13" {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "missing or bad WebSocket Version",
            true,
        ));
    }
    let protocols: Vec<&str> = header_str(req, header::SEC_WEBSOCKET_PROTOCOL)
        .trim()
        .split(',')
        .map(str::trim)
        .collect();
    match protocols.as_slice() {
        [""] => Ok(None),
        [one] => Ok(Some(one.to_string())),
        // "You need choose a Protocol in Handshake func in Server": 400, empty body.
        _ => Err(refuse(StatusCode::BAD_REQUEST, "", false)),
    }
}

/// `GET /events?ih=…|magnet=…` (see the module doc).
pub(crate) async fn events(
    req: HttpRequest,
    body: web::Payload,
    engine: web::Data<Engine>,
    Resolved { torrent, .. }: Resolved,
) -> Result<HttpResponse, HttpError> {
    let protocol = match check_handshake(&req) {
        Ok(p) => p,
        Err(r) => return Ok(r.response()),
    };
    // Subscribe before answering, so nothing that happens after the 101 is missed.
    let rx = engine.subscribe();
    let protocols: Vec<&str> = protocol.iter().map(String::as_str).collect();
    let (resp, session, stream) = actix_ws::handle_with_protocols(&req, body, &protocols)
        .map_err(|e| HttpError::bad_request(e.to_string()))?;
    actix_web::rt::spawn(run(torrent, rx, session, stream));
    Ok(resp)
}

/// Drains the engine's broadcast into a queue of this torrent's piece indexes (at most `cap`),
/// so a slow websocket never makes the broadcast drop events. Ends when the queue's reader is
/// gone, or when the queue is full: then the flag is set and the queue closes.
fn forward(
    ih: confluence_core::ident::InfoHash,
    mut rx: broadcast::Receiver<PieceEvent>,
    cap: usize,
) -> (mpsc::Receiver<u32>, Arc<AtomicBool>) {
    let (tx, out) = mpsc::channel(cap);
    let overflow = Arc::new(AtomicBool::new(false));
    let flag = overflow.clone();
    actix_web::rt::spawn(async move {
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(e) if e.ih == ih => match tx.try_send(e.piece) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            warn!(%ih, "/events: {}; closing", overflow_reason());
                            flag.store(true, Ordering::SeqCst);
                            return;
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    },
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!(%ih, missed = n, "/events: piece events were dropped by the engine's queue");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tx.closed() => return,
            }
        }
    });
    (out, overflow)
}

async fn run(
    torrent: TorrentRef,
    rx: broadcast::Receiver<PieceEvent>,
    mut session: actix_ws::Session,
    mut stream: actix_ws::MessageStream,
) {
    let ih = torrent.ih;
    OPEN_STREAMS.fetch_add(1, Ordering::Relaxed);
    let (mut pieces, overflow) = forward(ih, rx, MAX_QUEUED);
    let mut description = None;
    // Whether the client ended the stream (close, hang-up, or a message).
    let mut by_client = true;
    let code = loop {
        tokio::select! {
            piece = pieces.recv() => {
                let Some(piece) = piece else {
                    by_client = false;
                    if overflow.load(Ordering::SeqCst) {
                        description = Some(overflow_reason());
                        break CloseCode::Policy;
                    }
                    break CloseCode::Normal;
                };
                if session.text(frame(piece)).await.is_err() {
                    debug!(%ih, "/events: write failed, client gone");
                    by_client = false;
                    break CloseCode::Normal;
                }
            }
            msg = stream.next() => match msg {
                None => break CloseCode::Normal,
                Some(Ok(Message::Ping(p))) => {
                    if session.pong(&p).await.is_err() {
                        by_client = false;
                        break CloseCode::Normal;
                    }
                }
                Some(Ok(Message::Close(_))) => break CloseCode::Normal,
                Some(Ok(Message::Text(t))) if t.is_empty() => {}
                Some(Ok(Message::Binary(b))) if b.is_empty() => {}
                Some(Ok(Message::Continuation(item))) if continuation_is_empty(&item) => {}
                Some(Ok(Message::Pong(_) | Message::Nop)) => {}
                // Any data frame with a payload ends the stream (the original reads into a
                // zero-length buffer, so any payload counts as "read returned").
                Some(Ok(Message::Text(_) | Message::Binary(_) | Message::Continuation(_))) => {
                    break CloseCode::Normal;
                }
                Some(Err(e)) => {
                    debug!(%ih, "/events: protocol error: {e}");
                    break CloseCode::Protocol;
                }
            },
        }
    };
    if by_client {
        READ_CLOSED.fetch_add(1, Ordering::Relaxed);
    }
    OPEN_STREAMS.fetch_sub(1, Ordering::Relaxed);
    let _ = session.close(Some(CloseReason { code, description })).await;
    drop(torrent);
}

fn continuation_is_empty(item: &actix_ws::Item) -> bool {
    match item {
        actix_ws::Item::FirstText(b)
        | actix_ws::Item::FirstBinary(b)
        | actix_ws::Item::Continue(b)
        | actix_ws::Item::Last(b) => b.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ih: confluence_core::ident::InfoHash, piece: u32) -> PieceEvent {
        PieceEvent {
            ih,
            piece,
            kind: confluence_core::PieceEventKind::Complete,
        }
    }

    /// A reader that never reads gets at most `cap` events queued, then the queue closes with
    /// the overflow flag set; other torrents' events do not count.
    #[actix_web::test]
    async fn the_queue_of_a_client_that_never_reads_is_bounded() {
        let ih = confluence_core::ident::InfoHash([1; 20]);
        let other = confluence_core::ident::InfoHash([2; 20]);
        let (tx, rx) = broadcast::channel(1024);
        let (mut pieces, overflow) = forward(ih, rx, 8);
        for p in 0..8 {
            tx.send(event(other, p)).unwrap();
            tx.send(event(ih, p)).unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            !overflow.load(Ordering::SeqCst),
            "8 queued of 8 is no overflow"
        );
        tx.send(event(ih, 8)).unwrap();
        // Let the forwarder meet the full queue before anything is taken out of it.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut got = Vec::new();
        let drained = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while let Some(p) = pieces.recv().await {
                got.push(p);
            }
        })
        .await;
        assert!(drained.is_ok(), "the queue must close on overflow");
        assert!(overflow.load(Ordering::SeqCst), "overflow flagged");
        assert_eq!(
            got,
            (0..8).collect::<Vec<_>>(),
            "what was queued is delivered"
        );
        assert!(overflow_reason().contains("65536"), "{}", overflow_reason());
    }

    #[test]
    fn frame_is_exact() {
        assert_eq!(frame(7), r#"{"PieceChanged":7}"#);
    }
}
