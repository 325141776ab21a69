//! Errors as the original sends them: the status, `text/plain; charset=utf-8`,
//! `X-Content-Type-Options: nosniff`, and a one-line message plus `\n`.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};

/// A client-visible error with its status and one-line reason.
#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub message: String,
}

impl HttpError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// The client went away while its request waited: the 499 the original's logs show, with
    /// no body (nobody receives it).
    pub fn client_gone() -> Self {
        let status = StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST);
        Self::new(status, "")
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        if self.message.is_empty() {
            return HttpResponse::build(self.status).finish();
        }
        text_response(self.status, &self.message)
    }
}

/// A plain-text response in the original's error format.
pub fn text_response(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("Content-Type", "text/plain; charset=utf-8"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(format!("{message}\n"))
}

/// `-maxPendingTorrents` reached: 429 with the reason.
impl From<confluence_core::TooManyPending> for HttpError {
    fn from(e: confluence_core::TooManyPending) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, e.to_string())
    }
}

impl From<HttpError> for HttpResponse {
    fn from(e: HttpError) -> Self {
        e.error_response()
    }
}
