//! Waits that end when the caller gives up or the mount shuts down.
//!
//! fuser 0.18 answers `FUSE_INTERRUPT` with `ENOSYS`, so the kernel stops sending interrupts and,
//! once a request has been read by us, waits for our reply without letting even a fatal signal
//! through. So we watch the caller ourselves: every [`POLL`] we read `/proc/<tid>/status` of the
//! thread that made the request (the request header's pid) and reply `EINTR` as soon as it has
//! a deliverable signal pending (a fatal signal adds SIGKILL to every thread's pending set) or no
//! longer exists. Shutting the mount down ends every wait with `EIO`.

use std::{future::Future, time::Duration};

use fuser::Errno;
use tokio::sync::watch;

/// How often a blocked request looks at its caller.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// The shutdown flag every blocked request watches.
#[derive(Clone)]
pub(crate) struct Stop(watch::Receiver<bool>);

impl Stop {
    pub fn new() -> (watch::Sender<bool>, Stop) {
        let (tx, rx) = watch::channel(false);
        (tx, Stop(rx))
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the mount is shutting down (or its owner is gone).
    async fn wait(mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }
}

/// The signal masks of `/proc/<tid>/status`: is a signal pending that the thread does not block?
/// `None`: the thread is gone (or a zombie).
fn signal_pending(status: &str) -> Option<bool> {
    let mask = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    let zombie = status
        .lines()
        .find_map(|l| l.strip_prefix("State:"))
        .is_some_and(|s| s.trim_start().starts_with(['Z', 'X']));
    if zombie {
        return None;
    }
    Some((mask("SigPnd:") | mask("ShdPnd:")) & !mask("SigBlk:") != 0)
}

/// Whether the thread `tid` should stop waiting for us (see the module doc).
fn caller_gave_up(tid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{tid}/status")) {
        Ok(s) => signal_pending(&s).unwrap_or(true),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH),
    }
}

/// Resolves when the caller `tid` gives up; never for requests the kernel makes on its own
/// (pid 0).
async fn caller_gone(tid: u32) {
    if tid == 0 {
        return std::future::pending().await;
    }
    loop {
        tokio::time::sleep(POLL).await;
        if caller_gave_up(tid) {
            return;
        }
    }
}

/// Runs `fut` until it completes (`Ok`), its caller gives up (`EINTR`) or the mount shuts down
/// (`EIO`). Giving up drops `fut`, which cancels whatever it waited for.
pub(crate) async fn interruptible<F: Future>(tid: u32, stop: &Stop, fut: F) -> Result<F::Output, Errno> {
    if stop.is_set() {
        return Err(Errno::EIO);
    }
    tokio::select! {
        biased;
        _ = stop.clone().wait() => Err(Errno::EIO),
        _ = caller_gone(tid) => Err(Errno::EINTR),
        v = fut => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tcat\nState:\tS (sleeping)\nSigQ:\t0/96364\nSigPnd:\t0000000000000000\n\
                          ShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n";

    #[test]
    fn masks() {
        assert_eq!(signal_pending(STATUS), Some(false));
        let killed = STATUS.replace("SigPnd:\t0000000000000000", "SigPnd:\t0000000000000100");
        assert_eq!(signal_pending(&killed), Some(true));
        let shared = STATUS.replace("ShdPnd:\t0000000000000000", "ShdPnd:\t0000000000000002");
        assert_eq!(signal_pending(&shared), Some(true));
        let blocked = shared.replace("SigBlk:\t0000000000000000", "SigBlk:\t0000000000000002");
        assert_eq!(signal_pending(&blocked), Some(false));
        let zombie = STATUS.replace("S (sleeping)", "Z (zombie)");
        assert_eq!(signal_pending(&zombie), None);
    }

    #[test]
    fn own_thread_is_not_interrupted() {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        assert!(!caller_gave_up(tid));
        assert!(caller_gave_up(u32::MAX - 1));
    }
}
