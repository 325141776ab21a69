//! Waits that end when the caller gives up or the mount shuts down.
//!
//! fuser 0.18 answers `FUSE_INTERRUPT` with `ENOSYS`, so the kernel stops sending interrupts and,
//! once a request has been read by us, waits for our reply without letting even a fatal signal
//! through. So we watch the caller ourselves: every [`POLL`] we read `/proc/<tid>/status` of the
//! thread that made the request (the request header's pid) and reply `EINTR` once it has had a
//! deliverable signal pending for two polls in a row (a fatal signal adds SIGKILL to every
//! thread's pending set) or no longer exists: Ctrl-C ends a blocked `cat` within 0.1 to 0.2 s.
//! Shutting the mount down ends every wait with `EIO`.

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

/// Whether the thread `tid` has a signal pending; `None` when it is gone.
fn caller_gave_up(tid: u32) -> Option<bool> {
    match std::fs::read_to_string(format!("/proc/{tid}/status")) {
        Ok(s) => signal_pending(&s),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ESRCH) =>
        {
            None
        }
        Err(_) => Some(false),
    }
}

/// Resolves when the caller `tid` gives up; never for requests the kernel makes on its own
/// (pid 0). A pending signal must be seen twice in a row: one pending for the whole process is
/// usually taken by another of its threads within microseconds, and only one that stays (a
/// fatal signal, or one only this thread can take) means the caller is stuck on us.
async fn caller_gone(tid: u32) {
    if tid == 0 {
        return std::future::pending().await;
    }
    let mut seen = false;
    loop {
        tokio::time::sleep(POLL).await;
        match caller_gave_up(tid) {
            Some(true) if seen => return,
            Some(pending) => seen = pending,
            None => return,
        }
    }
}

/// Runs `fut` until it completes (`Ok`), its caller gives up (`EINTR`) or the mount shuts down
/// (`EIO`). Giving up drops `fut`, which cancels whatever it waited for.
pub(crate) async fn interruptible<F: Future>(
    tid: u32,
    stop: &Stop,
    fut: F,
) -> Result<F::Output, Errno> {
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
        assert_eq!(caller_gave_up(tid), Some(false));
        assert_eq!(caller_gave_up(u32::MAX - 1), None);
    }
}
