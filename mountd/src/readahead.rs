//! The mount's kernel readahead.
//!
//! At INIT the kernel offers a FUSE file system at most the default readahead of a new backing
//! device (128 KiB), so a sequential reader (`cat`, a player) has at most about two reads of
//! 128 KiB in flight: each is a round trip through the daemon, and a stream advances by that
//! ping-pong, while HTTP's body task runs ahead of its client. Root may raise it once INIT is
//! done, in `/sys/class/bdi/<major>:<minor>/read_ahead_kb`; the kernel then sends reads of up to
//! `max_pages` (1 MiB by default) several at a time, and files opened afterwards read ahead that
//! far. A read at a random offset is not widened: the kernel reads ahead only once the access
//! looks sequential (or from the start of a file).

use std::{fs, io, os::unix::fs::MetadataExt, path::Path};

use tracing::{debug, info};

/// How far the kernel reads ahead of a sequential reader, KiB: several 1 MiB requests in
/// flight. Well inside the 32 MiB that librqbit downloads ahead of a reader's stream (and that
/// the cache pins), so a read ahead waits for pieces already on their way. Measured
/// (bench/README.md, issue 18): 1 MiB left cached reads at 0.76x HTTP's rate, 8 MiB 1.24x,
/// 32 MiB no better.
pub(crate) const READ_AHEAD_KB: u32 = 8192;

/// Raises the readahead of the FUSE mount at `dir` to [`READ_AHEAD_KB`]. Call it once the
/// session runs: it waits for the INIT exchange (a value written before INIT would be cut back
/// to 128 KiB by it). Failing (not root, no sysfs) only costs speed, so it is logged, not fatal.
pub(crate) fn raise(dir: &Path) {
    match try_raise(dir) {
        Ok(path) => debug!("{path}: {READ_AHEAD_KB}"),
        Err(e) => {
            info!("FUSE readahead stays at the kernel's default (sequential reads are slower): {e}")
        }
    }
}

fn try_raise(dir: &Path) -> io::Result<String> {
    // Opening the root is a request to the daemon, and the kernel holds every request until
    // INIT is answered: once this returns, INIT is done.
    drop(fs::read_dir(dir)?);
    let dev = fs::metadata(dir)?.dev();
    let path = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    fs::write(&path, READ_AHEAD_KB.to_string())
        .map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
    Ok(path)
}
