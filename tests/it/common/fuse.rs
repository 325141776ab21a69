//! FUSE helpers shared by the mount tests (`tests/it/fuse.rs`, `tests/it/bad_input_table.rs`,
//! `tests/it/faults.rs`): a mountpoint guard that never leaves a mount behind, a daemon with
//! `-mount`, bounded file operations (a hung mount fails the test instead of hanging it) and a
//! torrent nobody seeds.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use super::{
    bencode::{metainfo, Benc},
    run_bounded, skip_or_fail, Daemon,
};

pub const TRACKER: &str = "-implicitTracker=http://127.0.0.1:6969/announce";

/// Whether this machine can mount (root and `/dev/fuse`). When it cannot, a root-only test
/// must not count as passed: see [`skip_or_fail`].
pub fn can_mount(test: &str) -> bool {
    if !Path::new("/dev/fuse").exists() {
        return skip_or_fail(test, "/dev/fuse is missing");
    }
    is_root(test, "mounting without fusermount needs root")
}

/// Whether the tests run as root; when not, see [`skip_or_fail`] (`why` says what needs it).
pub fn is_root(test: &str, why: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    root || skip_or_fail(test, why)
}

pub fn mounted(dir: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = dir.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_ref()))
}

/// A temporary mountpoint; unmounted lazily (if still mounted) and removed on drop.
pub struct MountDir(pub PathBuf);

impl MountDir {
    pub fn new() -> MountDir {
        MountDir(super::temp_dir("mnt"))
    }
}

impl Drop for MountDir {
    fn drop(&mut self) {
        if mounted(&self.0) {
            eprintln!("{} still mounted: umount -l", self.0.display());
            let _ = run_bounded(
                Command::new("umount").arg("-l").arg(&self.0),
                Duration::from_secs(10),
            );
        }
        let _ = fs::remove_dir(&self.0);
    }
}

/// A daemon with `-mount`. Drops the daemon (SIGTERM by PID) before the mountpoint guard.
pub struct Fuse {
    pub daemon: Daemon,
    pub mnt: MountDir,
}

impl Fuse {
    pub fn start(extra: &[&str]) -> Fuse {
        let mnt = MountDir::new();
        let mount = format!("-mount={}", mnt.0.display());
        let mut args = vec![mount.as_str(), TRACKER];
        args.extend_from_slice(extra);
        let daemon = Daemon::start(&args);
        assert!(
            mounted(&mnt.0),
            "{} is not mounted once /health answers",
            mnt.0.display()
        );
        Fuse { daemon, mnt }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.0.join(rel)
    }
}

/// Runs `f` on a thread and waits at most `limit` for it (a hung mount must fail the test).
pub fn bounded<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {limit:?}"),
    }
}

/// `fs::read` of a file in the mount, bounded.
pub fn read_file(p: &Path, limit: Duration) -> Vec<u8> {
    let p2 = p.to_owned();
    bounded(limit, &format!("reading {}", p.display()), move || {
        fs::read(&p2)
    })
    .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

pub fn metadata(p: &Path) -> std::io::Result<fs::Metadata> {
    let p2 = p.to_owned();
    bounded(
        Duration::from_secs(30),
        &format!("stat {}", p.display()),
        move || fs::metadata(p2),
    )
}

/// Runs a command that must succeed within `limit`; returns its stdout.
#[track_caller]
pub fn run_ok(cmd: &mut Command, limit: Duration) -> String {
    let what = format!("{cmd:?}");
    let t0 = Instant::now();
    let (st, out, err) = run_bounded(cmd, limit);
    match st {
        Some(s) if s.success() => out,
        Some(s) => panic!(
            "{what} failed ({s}) after {:?}: {}",
            t0.elapsed(),
            err.trim()
        ),
        None => panic!("{what} did not finish within {limit:?}"),
    }
}

pub fn ls(dir: &Path) -> Vec<String> {
    run_ok(
        Command::new("ls").arg("-1").arg(dir),
        Duration::from_secs(30),
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

pub fn sha256sum(p: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(p), Duration::from_secs(120));
    out.split_whitespace().next().unwrap_or_default().to_owned()
}

/// Waits for `child` at most `limit`; SIGKILLs and reaps it (and fails) past that.
pub fn wait_child(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {limit:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A `cat` of `file` that must still be blocked after `after`.
pub fn blocked_cat(file: &Path, after: Duration) -> Child {
    let mut cat = Command::new("cat")
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning cat");
    thread::sleep(after);
    if let Some(st) = cat.try_wait().expect("try_wait") {
        panic!("cat of {} should block, but ended ({st})", file.display());
    }
    cat
}

pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: `pid` is our own child, not yet reaped.
    assert_eq!(
        unsafe { libc::kill(pid as libc::pid_t, sig) },
        0,
        "kill({pid}, {sig})"
    );
}

/// Whether process `pid` has exited (gone, or a zombie not yet reaped).
pub fn exited(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

/// A torrent nobody seeds (1 MiB, `ghost.bin`, creation date 1700000000): reads of it block
/// forever. Returns (metainfo, hex infohash).
pub fn ghost_torrent() -> (Vec<u8>, String) {
    let pieces: Vec<u8> = (0..80u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    let info = Benc::Dict(vec![
        ("length", Benc::Int(1 << 20)),
        ("name", Benc::str("ghost.bin")),
        ("piece length", Benc::Int(256 * 1024)),
        ("pieces", Benc::Bytes(pieces)),
    ]);
    metainfo(vec![("creation date", Benc::Int(1_700_000_000))], info)
}
