//! Mounting and unmounting: start-up checks, stale-mount clean-up, and a shutdown that never
//! waits for blocked readers.

use std::{
    ffi::CString,
    fmt, io,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use confluence_core::Engine;
use fuser::{BackgroundSession, Config, MountOption, SessionACL};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::{files::Handles, fs::Fs, ops::Shared, readahead, tree::Table, wait::Stop};

const DEV_FUSE: &str = "/dev/fuse";

/// Why the mount could not start. Each is one line, meant for the user.
#[derive(Debug)]
pub enum MountError {
    /// The mountpoint does not exist.
    Missing(PathBuf),
    /// The mountpoint is not a directory.
    NotADirectory(PathBuf),
    /// `/dev/fuse` does not exist.
    NoDevice,
    /// Not allowed to open `/dev/fuse` or to mount.
    PermissionDenied(String),
    /// Something is mounted there and answering.
    InUse(PathBuf),
    /// A stale mount is there and could not be removed.
    Stale(PathBuf, io::Error),
    Other(String),
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(d) => write!(f, "mountpoint {} does not exist", d.display()),
            Self::NotADirectory(d) => write!(f, "mountpoint {} is not a directory", d.display()),
            Self::NoDevice => write!(
                f,
                "{DEV_FUSE} is missing: load the fuse kernel module (modprobe fuse), \
                 or give the container the device (--device /dev/fuse)"
            ),
            Self::PermissionDenied(why) => write!(f, "permission denied: {why}"),
            Self::InUse(d) => write!(
                f,
                "{} is already a FUSE mount in use (another confluence?); unmount it first",
                d.display()
            ),
            Self::Stale(d, e) => write!(
                f,
                "{} is a stale FUSE mount and unmounting it failed: {e} (try: umount -l {})",
                d.display(),
                d.display()
            ),
            Self::Other(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for MountError {}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn c_path(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other)
}

/// `umount2(dir, MNT_DETACH)`: gone from the namespace at once, whoever still uses it.
fn detach(dir: &Path) -> io::Result<()> {
    let c = c_path(dir)?;
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether `dir` (canonical) is the mount point of a FUSE file system in this namespace.
fn fuse_mounted_at(dir: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines().any(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-");
        let fstype = sep.and_then(|i| fields.get(i + 1)).copied().unwrap_or("");
        fields
            .get(4)
            .is_some_and(|mp| unescape_mountinfo(mp) == dir.as_os_str().as_bytes())
            && (fstype == "fuse" || fstype.starts_with("fuse."))
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(std::str::from_utf8(o).ok()?, 8).ok());
        match (b[i], oct) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// `dir` made absolute with symlinks resolved, as mountinfo shows it, even when `dir` itself
/// cannot be looked at (a dead mount).
fn canonical(dir: &Path) -> PathBuf {
    if let Ok(p) = dir.canonicalize() {
        return p;
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match (parent.canonicalize(), dir.file_name()) {
        (Ok(p), Some(name)) => p.join(name),
        _ => dir.to_owned(),
    }
}

/// A FUSE mount whose daemon is gone: `ENOTCONN` for whatever reaches it. A stat may still be
/// answered from the kernel's attribute cache for a moment, so a listing decides.
fn is_stale(dir: &Path) -> bool {
    let enotconn = |e: io::Error| e.raw_os_error() == Some(libc::ENOTCONN);
    match std::fs::metadata(dir) {
        Err(e) => enotconn(e),
        Ok(_) => {
            fuse_mounted_at(&canonical(dir)) && std::fs::read_dir(dir).err().is_some_and(enotconn)
        }
    }
}

/// Checks that `dir` can be mounted on, cleaning up a stale mount left by a killed daemon, and
/// returns its canonical path. Cheap: call it before starting anything else.
pub fn preflight(dir: &Path) -> Result<PathBuf, MountError> {
    if is_stale(dir) {
        warn!(
            "-mount: {} is a stale FUSE mount (its daemon died without unmounting); unmounting it",
            dir.display()
        );
        detach(&canonical(dir)).map_err(|e| MountError::Stale(dir.to_owned(), e))?;
    }
    let meta = std::fs::metadata(dir);
    let meta = match meta {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(MountError::Missing(dir.to_owned()))
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(MountError::PermissionDenied(format!(
                "{}: {e}",
                dir.display()
            )))
        }
        Err(e) => {
            return Err(MountError::Other(format!(
                "mountpoint {}: {e}",
                dir.display()
            )))
        }
    };
    if !meta.is_dir() {
        return Err(MountError::NotADirectory(dir.to_owned()));
    }
    let dir = dir
        .canonicalize()
        .map_err(|e| MountError::Other(format!("mountpoint {}: {e}", dir.display())))?;
    if fuse_mounted_at(&dir) {
        return Err(MountError::InUse(dir));
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(DEV_FUSE)
    {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(MountError::NoDevice),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(MountError::PermissionDenied(format!(
                "cannot open {DEV_FUSE}: {e}"
            )))
        }
        Err(e) => return Err(MountError::Other(format!("cannot open {DEV_FUSE}: {e}"))),
    }
    Ok(dir)
}

/// The FUSE mount: `/<infohash>/<path>` for every torrent the engine knows or is asked for.
pub struct Mount {
    dir: PathBuf,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    session: Option<BackgroundSession>,
}

impl Mount {
    /// Mounts at `dir` and serves from background threads until [`Mount::shutdown`]. Call it
    /// outside the engine's runtime.
    pub fn start(engine: Engine, dir: &Path) -> Result<Mount, MountError> {
        let dir = preflight(dir)?;
        let (stop, stop_rx) = Stop::new();
        let shared = Arc::new(Shared {
            engine,
            table: Table::new(),
            handles: Handles::default(),
            stop: stop_rx,
        });
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("confluence".into()),
            MountOption::Subtype("confluence".into()),
            MountOption::RO,
            MountOption::NoSuid,
            MountOption::NoDev,
            MountOption::NoAtime,
            MountOption::DefaultPermissions,
        ];
        // Mounted by root, the files are for every local user (like the HTTP API on localhost),
        // and the modes (0444/0555) are enforced by the kernel.
        config.acl = if is_root() {
            SessionACL::All
        } else {
            SessionACL::Owner
        };
        // Operations never block these threads; two keep a slow disk read from stalling others.
        config.n_threads = Some(2);
        let session =
            fuser::spawn_mount(Fs(shared.clone()), &dir, &config).map_err(|e| match e.kind() {
                io::ErrorKind::PermissionDenied => MountError::PermissionDenied(format!(
                    "mounting {}: {e} (run as root, or install fusermount3)",
                    dir.display()
                )),
                _ => MountError::Other(format!("mounting {}: {e}", dir.display())),
            })?;
        readahead::raise(&dir);
        info!("FUSE mount at {}", dir.display());
        Ok(Mount {
            dir,
            shared,
            stop,
            session: Some(session),
        })
    }

    /// The mountpoint (canonical).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Unmounts within about half a second, however many reads are blocked: they all get `EIO`
    /// at once, open files are closed on our side, and the mount is detached.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        let t0 = Instant::now();
        self.stop.send_replace(true);
        self.shared.handles.clear();
        match detach(&self.dir) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                debug!("{} was already unmounted", self.dir.display())
            }
            Err(e) => warn!("unmounting {}: {e}", self.dir.display()),
        }
        // With no file left open the kernel ends the session now; else when we exit.
        while !session.guard.is_finished() && t0.elapsed() < Duration::from_millis(500) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !session.guard.is_finished() {
            info!(
                "files under {} are still open; the kernel ends them when the daemon exits",
                self.dir.display()
            );
        }
        // Not dropped: its drop unmounts by path again, and fuser takes the aborted connection
        // for a live mount (poll says POLLERR), so it would unmount whatever is there now. The
        // session thread is finished or ends with the process.
        std::mem::forget(session);
        info!("unmounted {} in {:?}", self.dir.display(), t0.elapsed());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.stop_now();
    }
}

#[cfg(test)]
mod tests {
    use super::unescape_mountinfo;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b\134c"), b"/tmp/a b\\c");
        assert_eq!(unescape_mountinfo(r"/x\0"), b"/x\\0");
    }
}
