//! Request bodies that stop arriving. actix times out a request's head (5 s) but not its body:
//! a client that sends part of a body and then nothing would hold its connection and handler
//! for ever. [`Idle`] wraps a payload so that a pause of [`BODY_IDLE`] ends it with a 408.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use actix_web::{
    error::PayloadError,
    http::{header, StatusCode},
    web, HttpRequest,
};
use bytes::Bytes;
use futures::Stream;

use crate::error::HttpError;

/// The longest pause allowed between two pieces of a request body.
pub const BODY_IDLE: Duration = Duration::from_secs(20);

/// A payload that fails once no byte arrived for [`BODY_IDLE`] (see the module doc).
pub struct Idle {
    payload: web::Payload,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl Idle {
    pub fn new(payload: web::Payload) -> Self {
        Self {
            payload,
            sleep: Box::pin(tokio::time::sleep(BODY_IDLE)),
            timed_out: Arc::default(),
        }
    }

    /// Whether the body ended because the client paused too long.
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }

    /// The same answer, for a caller that hands the payload itself to a parser.
    pub fn timed_out_flag(&self) -> Arc<AtomicBool> {
        self.timed_out.clone()
    }
}

/// The body length the request declares (`Content-Length`), if it is a number.
pub fn declared_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The 408 for a body that stopped arriving.
pub fn timeout_error() -> HttpError {
    HttpError::new(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "request body timed out: no data for {} s",
            BODY_IDLE.as_secs()
        ),
    )
}

impl Stream for Idle {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.timed_out() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.payload).poll_next(cx) {
            Poll::Ready(item) => {
                let deadline = tokio::time::Instant::now() + BODY_IDLE;
                self.sleep.as_mut().reset(deadline);
                Poll::Ready(item)
            }
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.timed_out.store(true, Ordering::Relaxed);
                    Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no data",
                    )))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
