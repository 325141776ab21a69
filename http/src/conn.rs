//! Noticing that a client went away while its request waits.
//!
//! actix-web does not cancel a handler whose client disconnects, and a request here may wait
//! indefinitely (for metadata, for a piece). Like Go's server, which the original relied on, we
//! treat end-of-file on the connection as "the client is gone": each connection keeps a
//! duplicate of its socket descriptor, and a waiting request peeks at it periodically.

use std::{
    any::Any,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::Arc,
    time::Duration,
};

use actix_web::{dev::Extensions, HttpRequest};

/// The connection's socket (a duplicate, closed with the connection's extensions).
#[derive(Clone)]
pub struct ConnFd(Arc<OwnedFd>);

/// `HttpServer::on_connect` hook that records the socket.
pub fn on_connect(conn: &dyn Any, ext: &mut Extensions) {
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        // SAFETY: dup returns a new descriptor we own, or -1 (checked).
        let fd = unsafe { libc::dup(tcp.as_raw_fd()) };
        if fd >= 0 {
            // SAFETY: fd is a fresh descriptor owned by nobody else.
            ext.insert(ConnFd(Arc::new(unsafe { OwnedFd::from_raw_fd(fd) })));
        }
    }
}

impl ConnFd {
    pub fn of(req: &HttpRequest) -> Option<ConnFd> {
        req.conn_data::<ConnFd>().cloned()
    }

    /// True once the peer closed (EOF) or reset the connection.
    fn gone(&self) -> bool {
        let mut b = [0u8; 1];
        // SAFETY: a 1-byte peek into a valid buffer on a descriptor we own.
        let n = unsafe {
            libc::recv(
                self.0.as_raw_fd(),
                b.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if n == 0 {
            return true;
        }
        n < 0
            && !matches!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EAGAIN) | Some(libc::EINTR)
            )
    }

    /// Resolves when the client is gone (checked every 200 ms); never, without a socket.
    pub async fn closed(conn: Option<ConnFd>) {
        let Some(conn) = conn else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if conn.gone() {
                return;
            }
        }
    }
}
