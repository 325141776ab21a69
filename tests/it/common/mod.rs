//! Shared helpers for the black-box integration tests: the harness swarm, a daemon guard, a tiny
//! HTTP/1.1 client with timeouts, a bencode span parser and byte-comparison helpers.
//!
//! Rules every test follows (DEVELOPERS' guide): only 127.0.0.0/8 (or a network namespace the
//! test creates itself, [`netns`]), `-dht=false` always, one temporary data dir per daemon, a
//! bound on every wait, every process stopped by PID.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    fs::{self, OpenOptions},
    io::{self, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, OnceLock,
    },
    thread,
    time::{Duration, Instant},
};

use sha1::Digest as _;

pub mod bencode;
pub mod disk;
pub mod form;
pub mod fuse;
pub mod netns;

pub use bencode::{bdecode, Bencode, TorrentFile};

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;

/// Default timeout of one HTTP request: a 64 MiB download from loopback takes seconds, and a
/// client that re-announces every minute while it lacks peers (as anacrolix does) fits too.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(90);

/// The log filter given to every daemon, so that `torrent dropped` (info) is always logged.
const DAEMON_LOG: &str = "info,librqbit=warn,librqbit_dht=warn,librqbit_tracker_comms=warn";

// ------------------------------------------------------------------------------------------
// Serialisation of swarm tests

static SERIAL: Mutex<()> = Mutex::new(());

/// Held by a test that talks to the swarm: the in-process lock, and an exclusive `flock` on
/// `/tmp/confluence-swarm.lock`, so that two test processes (two checkouts of the repository on
/// one machine) never share the one swarm at the same time either.
pub struct SerialGuard {
    _file: fs::File,
    _guard: MutexGuard<'static, ()>,
}

/// Every test that talks to the swarm holds this for its whole run: some tests stop `seed1`,
/// and the others must not see that. A failed test poisons nothing here. The file lock goes
/// with the process, so a crashed test process cannot leave it held.
pub fn serial() -> SerialGuard {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let path = "/tmp/confluence-swarm.lock";
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor we own; it blocks until the other process's test ends.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {path}: {}", io::Error::last_os_error());
    SerialGuard {
        _file: file,
        _guard: guard,
    }
}

// ------------------------------------------------------------------------------------------
// Bounded waits

/// Polls `f` every 50 ms until it holds; false once `limit` has passed (`f` is asked one last
/// time at the deadline, so a slow `f` still gets its answer counted).
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ------------------------------------------------------------------------------------------
// Root-only tests

/// A root-only test (FUSE mounts, a network namespace of its own) that cannot run here. It fails
/// with the reason, unless `CONFLUENCE_ALLOW_SKIP=1` lets it be skipped (loudly, `SKIPPED …` on
/// stderr; returns false). `CONFLUENCE_REQUIRE_ROOT=1` (set by `.ci/run`) makes it fail even then.
pub fn skip_or_fail(test: &str, why: &str) -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| v == "1");
    if set("CONFLUENCE_REQUIRE_ROOT") || !set("CONFLUENCE_ALLOW_SKIP") {
        panic!(
            "{test} cannot run: {why}. Run the tests as root (FUSE tests also need /dev/fuse), or \
             set CONFLUENCE_ALLOW_SKIP=1 to skip root-only tests (CONFLUENCE_REQUIRE_ROOT=1 forbids that)"
        );
    }
    // Straight to stderr: libtest's capture would hide an `eprintln!` of a passing test.
    let _ = writeln!(
        io::stderr(),
        "SKIPPED {test}: {why} (CONFLUENCE_ALLOW_SKIP=1): this test did not run"
    );
    false
}

// ------------------------------------------------------------------------------------------
// Running commands with a bound

/// Runs `cmd` to completion, killing it after `timeout`. Returns (status, stdout, stderr);
/// `None` status means it was killed for taking too long.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> (Option<ExitStatus>, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    // A grandchild may keep the pipes open; do not wait for it forever.
    let join = |t: thread::JoinHandle<Vec<u8>>| {
        let until = Instant::now() + Duration::from_secs(5);
        while !t.is_finished() && Instant::now() < until {
            thread::sleep(Duration::from_millis(10));
        }
        if t.is_finished() {
            String::from_utf8_lossy(&t.join().unwrap_or_default()).into_owned()
        } else {
            String::from("<output still open>")
        }
    };
    (status, join(t_out), join(t_err))
}

// ------------------------------------------------------------------------------------------
// The swarm

/// The repository's own swarm harness, `tests/swarm/swarm.sh`, or `$CONFLUENCE_HARNESS`.
pub fn harness_script() -> PathBuf {
    match std::env::var_os("CONFLUENCE_HARNESS") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/swarm/swarm.sh"),
    }
}

/// The one swarm dir of every test: `$CONFLUENCE_SWARM_DIR`, default `/tmp/confluence-swarm`.
pub fn swarm_dir() -> PathBuf {
    match std::env::var_os("CONFLUENCE_SWARM_DIR") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("/tmp/confluence-swarm"),
    }
}

pub struct Swarm {
    pub dir: PathBuf,
    script: PathBuf,
    infohashes: BTreeMap<String, String>,
    magnets: BTreeMap<String, String>,
}

static SWARM: OnceLock<Result<Swarm, String>> = OnceLock::new();

/// The harness swarm, brought up once per test process (`swarm.sh up` is idempotent and
/// locked). Panics with the script's message when it cannot come up: never a silent pass.
pub fn swarm() -> &'static Swarm {
    assert!(
        !netns::is_private(),
        "swarm() from a test's private network namespace: the swarm lives in the root one"
    );
    match SWARM.get_or_init(Swarm::up) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn read_pairs(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect())
}

impl Swarm {
    fn up() -> Result<Swarm, String> {
        let script = harness_script();
        let dir = swarm_dir();
        if !script.is_file() {
            return Err(format!(
                "harness not found at {} (set CONFLUENCE_HARNESS)",
                script.display()
            ));
        }
        let (status, out, err) = run_bounded(
            Command::new("bash").arg(&script).arg("up").arg(&dir),
            Duration::from_secs(300),
        );
        match status {
            Some(s) if s.success() => {}
            Some(s) => {
                return Err(format!(
                    "`swarm.sh up {}` failed ({s}): {}{}",
                    dir.display(),
                    err.trim(),
                    out.trim()
                ))
            }
            None => {
                return Err(format!(
                    "`swarm.sh up {}` did not finish in 300 s",
                    dir.display()
                ))
            }
        }
        Ok(Swarm {
            infohashes: read_pairs(&dir.join("infohashes"))?,
            magnets: read_pairs(&dir.join("magnets"))?,
            dir,
            script,
        })
    }

    /// The hex infohash of torrent `key` (`single`, `multi`, …).
    pub fn ih(&self, key: &str) -> String {
        self.infohashes
            .get(key)
            .unwrap_or_else(|| panic!("no torrent {key:?} in {}/infohashes", self.dir.display()))
            .clone()
    }

    pub fn magnet(&self, key: &str) -> String {
        self.magnets
            .get(key)
            .unwrap_or_else(|| panic!("no torrent {key:?} in {}/magnets", self.dir.display()))
            .clone()
    }

    pub fn torrent_bytes(&self, key: &str) -> Vec<u8> {
        let p = self.dir.join("torrents").join(format!("{key}.torrent"));
        fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
    }

    pub fn torrent(&self, key: &str) -> TorrentFile {
        TorrentFile::parse(&self.torrent_bytes(key))
    }

    /// A payload file, relative to `DIR/payload` (e.g. `big.bin`, `multi/dir/a.bin`).
    pub fn payload_path(&self, rel: &str) -> PathBuf {
        self.dir.join("payload").join(rel)
    }

    pub fn payload(&self, rel: &str) -> Vec<u8> {
        let p = self.payload_path(rel);
        fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
    }

    /// The bytes of file `path` (display path) of torrent `key`, read from the payload.
    pub fn file_payload(&self, t: &TorrentFile, path: &str) -> Vec<u8> {
        if t.single {
            self.payload(&t.name)
        } else {
            self.payload(&format!("{}/{}", t.name, path))
        }
    }

    /// The whole torrent's byte stream: every file's payload in torrent order.
    pub fn torrent_payload(&self, t: &TorrentFile) -> Vec<u8> {
        let mut all = Vec::with_capacity(t.total_length() as usize);
        for (p, _) in &t.files {
            all.extend_from_slice(&self.file_payload(t, p));
        }
        all
    }

    fn seeder(&self, action: &str, name: &str) -> Result<(), String> {
        let (status, out, err) = run_bounded(
            Command::new("bash")
                .arg(&self.script)
                .args(["seeder", action, name])
                .arg(&self.dir),
            Duration::from_secs(180),
        );
        match status {
            Some(s) if s.success() => Ok(()),
            _ => Err(format!(
                "`swarm.sh seeder {action} {name}` failed ({status:?}): {}{}",
                err.trim(),
                out.trim()
            )),
        }
    }

    /// Stops seeder `name`; it is started again (and re-registered) when the guard drops,
    /// also when the test fails.
    pub fn stop_seeder(&'static self, name: &'static str) -> SeederGuard {
        self.seeder_change("stop", name, "start")
    }

    /// SIGKILLs seeder `name` (no `stopped` announce: the tracker keeps listing a dead peer);
    /// it is started again when the guard drops.
    pub fn kill_seeder(&'static self, name: &'static str) -> SeederGuard {
        self.seeder_change("kill", name, "start")
    }

    /// Starts seeder `name` (`seed2`, `corrupt`) and waits until the tracker lists it; it is
    /// stopped again when the guard drops, also when the test fails.
    pub fn start_seeder(&'static self, name: &'static str) -> SeederGuard {
        self.seeder_change("start", name, "stop")
    }

    /// Runs `swarm.sh <action> <name>`; the guard runs `<undo> <name>` when it drops.
    fn seeder_change(
        &'static self,
        action: &str,
        name: &'static str,
        undo: &'static str,
    ) -> SeederGuard {
        let guard = SeederGuard {
            swarm: self,
            name,
            undo,
        };
        if let Err(e) = self.seeder(action, name) {
            panic!("{e}");
        }
        guard
    }
}

/// Puts a seeder back as the swarm had it (see [`Swarm::stop_seeder`] and its siblings).
#[must_use]
pub struct SeederGuard {
    swarm: &'static Swarm,
    name: &'static str,
    undo: &'static str,
}

impl Drop for SeederGuard {
    fn drop(&mut self) {
        if let Err(e) = self.swarm.seeder(self.undo, self.name) {
            if thread::panicking() {
                eprintln!("{e}");
            } else {
                panic!("{e}");
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Temporary directories and ports

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty directory under the system temp dir, unique to this process and call.
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("confluence-test-{tag}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap_or_else(|e| panic!("cannot create {}: {e}", d.display()));
    d
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// Bytes allocated to the regular files under `dir` (files vanishing meanwhile are skipped).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            // Allocated bytes: the cache's data files are sparse.
            Ok(t) if t.is_file() => e
                .metadata()
                .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
                .unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Samples `dir_size(dir)` every 50 ms on a thread until stopped; `stop()` returns the max.
pub struct DirSampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    handle: Option<thread::JoinHandle<()>>,
}

impl DirSampler {
    pub fn start(dir: PathBuf) -> DirSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(0));
        let (s, m) = (stop.clone(), max.clone());
        let handle = thread::spawn(move || {
            // Bounded even if nobody stops it: 30 minutes.
            let until = Instant::now() + Duration::from_secs(1800);
            while !s.load(Ordering::SeqCst) && Instant::now() < until {
                m.fetch_max(dir_size(&dir), Ordering::SeqCst);
                thread::sleep(Duration::from_millis(50));
            }
        });
        DirSampler {
            stop,
            max,
            handle: Some(handle),
        }
    }

    /// The largest size seen so far.
    pub fn max(&self) -> u64 {
        self.max.load(Ordering::SeqCst)
    }

    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.max()
    }
}

impl Drop for DirSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// ------------------------------------------------------------------------------------------
// The daemon

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_confluence")
}

/// A running `confluence`, stopped by PID when dropped (SIGTERM, ≤ 5 s, then SIGKILL).
/// Its stderr and stdout are appended to `<dataDir>/daemon.log`.
pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    /// The arguments after the fixed ones (`-addr`, `-torrentAddr`, `-dht`, `-dataDir`).
    args: Vec<String>,
    owned_dir: bool,
}

impl Daemon {
    /// Starts a daemon on a fresh temporary data dir with `args` added to the fixed ones.
    pub fn start(args: &[&str]) -> Daemon {
        let dir = temp_dir("daemon");
        let mut d = Daemon::start_in(&dir, args);
        d.owned_dir = true;
        d
    }

    /// Starts a daemon on data dir `dir` (not removed on drop).
    pub fn start_in(dir: &Path, args: &[&str]) -> Daemon {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let addr = vec![format!("-addr=127.0.0.1:{port}")];
            match Daemon::launch(dir, addr, port, args.clone()) {
                Ok(d) => return d,
                Err(e) => last = e,
            }
            // Only a lost race for the port is worth another try.
            if !last.contains("Address already in use") {
                break;
            }
        }
        panic!("daemon did not start: {last}");
    }

    /// Starts `confluence <addr_args> -torrentAddr=127.0.0.1:0 -dht=false -dataDir=<dir> <args>`
    /// and waits (≤ 20 s) until `/health` on `port` answers 200.
    pub fn launch(
        dir: &Path,
        addr_args: Vec<String>,
        port: u16,
        args: Vec<String>,
    ) -> Result<Daemon, String> {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let log_path = dir.join("daemon.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new(binary());
        cmd.args(&addr_args)
            .arg("-torrentAddr=127.0.0.1:0")
            .arg("-dht=false")
            .arg(format!("-dataDir={}", dir.display()))
            .args(&args)
            .env("RUST_LOG", DAEMON_LOG)
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot spawn {}: {e}", binary()))?;
        let mut d = Daemon {
            child: Some(child),
            port,
            data_dir: dir.to_path_buf(),
            args,
            owned_dir: false,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                d.child = None;
                let log = fs::read(&log_path).unwrap_or_default();
                let tail = String::from_utf8_lossy(&log[(log_start as usize).min(log.len())..])
                    .into_owned();
                return Err(format!(
                    "confluence exited at start ({st}): {}",
                    tail.trim()
                ));
            }
            if let Ok(r) = try_request(port, "GET", &d.health(), &[], b"", Duration::from_secs(2)) {
                if r.status == 200 {
                    return Ok(d);
                }
            }
            if Instant::now() > deadline {
                d.stop();
                return Err(format!(
                    "/health on port {port} not 200 within 20 s; log: {}",
                    d.log_tail(20)
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `/health`, with `?token=` when the daemon runs with `-authToken`.
    pub fn health(&self) -> String {
        match self.args.iter().find_map(|a| a.strip_prefix("-authToken=")) {
            Some(t) => format!("/health?token={}", qenc(t)),
            None => "/health".to_string(),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `http://127.0.0.1:<port><target>`.
    /// The peer port the daemon listens on, from its start-up line (`…; peers on IP:PORT; …`).
    pub fn peer_port(&self) -> u16 {
        let log = self.log();
        let addr = log
            .split("peers on ")
            .nth(1)
            .and_then(|s| s.split(';').next())
            .unwrap_or_else(|| panic!("no `peers on` in the log: {log}"));
        addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn url(&self, target: &str) -> String {
        format!("http://127.0.0.1:{}{target}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// GET `target` (path and query), with the default timeout; panics on I/O errors.
    pub fn get(&self, target: &str) -> Resp {
        request(self.port, "GET", target, &[], b"", HTTP_TIMEOUT)
    }

    pub fn get_h(&self, target: &str, headers: &[(&str, &str)]) -> Resp {
        request(self.port, "GET", target, headers, b"", HTTP_TIMEOUT)
    }

    pub fn req(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout: Duration,
    ) -> Resp {
        request(self.port, method, target, headers, body, timeout)
    }

    /// POSTs a .torrent to `/metainfo`; asserts 200 and the body `<ih>\n`.
    pub fn post_metainfo(&self, torrent: &[u8], ih: &str) {
        let r = request(
            self.port,
            "POST",
            "/metainfo",
            &[],
            torrent,
            Duration::from_secs(30),
        );
        assert_eq!(r.status, 200, "POST /metainfo: {}", r.text());
        assert_eq!(r.text(), format!("{ih}\n"), "POST /metainfo body");
    }

    /// Asserts `/health` answers 200 (the daemon still serves).
    pub fn assert_healthy(&self) {
        let r = request(
            self.port,
            "GET",
            &self.health(),
            &[],
            b"",
            Duration::from_secs(10),
        );
        assert_eq!(r.status, 200, "/health");
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("daemon.log")
    }

    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Polls the log every 50 ms until more than `than` lines contain `needle`; false after
    /// `timeout`.
    pub fn wait_log_count(&self, needle: &str, than: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log_count(needle) > than {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, wait ≤ 5 s, then SIGKILL; always reaps the child.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as libc::pid_t;
        if let Ok(None) = child.try_wait() {
            // SAFETY: `pid` is our own child, not yet reaped, so it names this process.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops this daemon and starts it again on the same data dir with the same arguments plus
    /// `extra` (on a new free port).
    pub fn restart(&mut self, extra: &[&str]) {
        self.stop();
        let mut args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        let owned = self.owned_dir;
        let new = Daemon::start_in(&self.data_dir.clone(), &args);
        self.owned_dir = false;
        *self = new;
        self.owned_dir = owned;
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!(
                "--- daemon log ({}), last lines:\n{}\n--- data dir kept: {}",
                self.log_path().display(),
                self.log_tail(40),
                self.data_dir.display()
            );
        } else if self.owned_dir && std::env::var_os("CONFLUENCE_KEEP_TEST_DIRS").is_none() {
            let _ = fs::remove_dir_all(&self.data_dir);
        }
    }
}

// ------------------------------------------------------------------------------------------
// HTTP/1.1 client over a plain TcpStream (Connection: close, bounded)

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length").map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad Content-Length {v:?}"))
        })
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

/// Sends one request and reads the whole response (until the server closes). The request
/// carries `Host` and `Connection: close` plus `headers`; a body gets a Content-Length.
pub fn try_request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<Resp> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, timeout.min(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(timeout))?;
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let raw = read_until_close(&mut s, deadline, timeout)?;
    parse_response(method, raw)
}

/// Reads until the server closes the connection, at most until `deadline`.
fn read_until_close(
    s: &mut TcpStream,
    deadline: Instant,
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out(&format!(
                "no complete response within {timeout:?} ({} bytes read)",
                raw.len()
            )));
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out(&format!(
                    "no complete response within {timeout:?} ({} bytes read)",
                    raw.len()
                )))
            }
            // A reset after the whole response arrived is fine; the parse below decides.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !raw.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    Ok(raw)
}

/// Sends `bytes` as they are (no `Host`, no framing added: for requests an HTTP client would
/// refuse to send or would normalise) and reads the response until the server closes. A write
/// that fails because the server already answered and closed is not an error.
pub fn raw_request(port: u16, bytes: &[u8], timeout: Duration) -> io::Result<Resp> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, timeout.min(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(timeout))?;
    if let Err(e) = s.write_all(bytes) {
        if !matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ) {
            return Err(e);
        }
    }
    let raw = read_until_close(&mut s, deadline, timeout)?;
    let method = bytes
        .split(|&b| b == b' ')
        .next()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .unwrap_or_default();
    parse_response(&method, raw)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_response(method: &str, raw: Vec<u8>) -> io::Result<Resp> {
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let end = find(&raw, b"\r\n\r\n")
        .ok_or_else(|| bad(format!("no header end in {} bytes", raw.len())))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut resp = Resp {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    };
    let chunked = resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        resp.body = dechunk(&resp.body).ok_or_else(|| bad("bad chunked body".into()))?;
    } else if method != "HEAD" && status != 304 && status != 204 {
        if let Some(cl) = resp.content_length() {
            if resp.body.len() as u64 != cl {
                return Err(bad(format!(
                    "status {status}: body has {} bytes, Content-Length says {cl}",
                    resp.body.len()
                )));
            }
        }
    }
    Ok(resp)
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = find(b, b"\r\n")?;
        let size_str = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// Like [`try_request`] but panics with context on an I/O error.
pub fn request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Resp {
    try_request(port, method, target, headers, body, timeout)
        .unwrap_or_else(|e| panic!("{method} {target} (port {port}): {e}"))
}

/// Percent-encodes `s` for a query value: everything but ALPHA / DIGIT / `-._~`.
pub fn qenc(s: &str) -> String {
    let mut out = String::new();
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a file path for the URL path, keeping its `/` separators.
pub fn penc_path(s: &str) -> String {
    s.split('/').map(qenc).collect::<Vec<_>>().join("/")
}

// ------------------------------------------------------------------------------------------
// Hashes and comparisons

pub fn sha1_hex(b: &[u8]) -> String {
    hex::encode(sha1::Sha1::digest(b))
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

/// Asserts `actual == expected` without printing megabytes: lengths, sha256 and the first
/// differing offset.
#[track_caller]
pub fn assert_bytes_eq(actual: &[u8], expected: &[u8], what: &str) {
    if actual == expected {
        return;
    }
    let first = actual.iter().zip(expected).position(|(a, b)| a != b);
    panic!(
        "{what}: bytes differ: got {} bytes (sha256 {}), expected {} bytes (sha256 {}); first difference at {}",
        actual.len(),
        sha256_hex(actual),
        expected.len(),
        sha256_hex(expected),
        first.map_or_else(|| format!("offset {} (one is a prefix of the other)", actual.len().min(expected.len())), |o| format!("offset {o}"))
    );
}

/// Asserts that the daemon's log has no panic: a panic in a request handler or a task does not
/// stop the process, so `/health` alone would not show it.
#[track_caller]
pub fn assert_no_panic(d: &Daemon) {
    assert_eq!(
        d.log_count("panicked"),
        0,
        "the daemon panicked:\n{}",
        d.log_tail(40)
    );
}

/// Asserts a plain-text error: `status`, a `text/plain` type and exactly one line `line\n`.
#[track_caller]
pub fn assert_one_line_error(r: &Resp, status: u16, line: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: status (body {:?})", r.text());
    assert_eq!(r.text(), format!("{line}\n"), "{what}: body");
    assert_one_line(r, what);
}

/// Asserts a text/plain body that is exactly one non-empty line ending in `\n`.
#[track_caller]
pub fn assert_one_line(r: &Resp, what: &str) {
    let t = r.text();
    assert!(
        t.ends_with('\n') && t.matches('\n').count() == 1 && t.len() > 1,
        "{what}: body is not exactly one line: {t:?}"
    );
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("text/plain"),
        "{what}: Content-Type {ct:?}, want text/plain"
    );
}

/// 40 random hex digits (not a torrent of the swarm).
pub fn random_ih() -> String {
    let seed = format!(
        "{:?}{}{}",
        Instant::now(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    sha1_hex(seed.as_bytes())
}

/// Opens a raw connection and sends a GET without reading the answer (for abort tests).
pub fn send_get(port: u16, target: &str) -> io::Result<TcpStream> {
    send_get_h(port, target, &[])
}

/// [`send_get`] with extra headers.
pub fn send_get_h(port: u16, target: &str, headers: &[(&str, &str)]) -> io::Result<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    Ok(s)
}

/// Closes both directions of `s` at once (the "client went away" case).
pub fn hang_up(s: TcpStream) {
    let _ = s.shutdown(Shutdown::Both);
}

/// One aborted request: send the GET, read `keep` bytes of the answer (0: none at all), hang up.
pub fn abort_one(port: u16, target: &str, keep: usize) -> Result<(), String> {
    abort_one_h(port, target, &[], keep)
}

/// [`abort_one`] with extra headers (e.g. a `Range` from the middle of a file).
pub fn abort_one_h(
    port: u16,
    target: &str,
    headers: &[(&str, &str)],
    keep: usize,
) -> Result<(), String> {
    let mut s = send_get_h(port, target, headers).map_err(|e| format!("connect/send: {e}"))?;
    let mut got = 0;
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(60);
    while got < keep {
        if Instant::now() > deadline {
            return Err(format!("only {got} of {keep} bytes within 60 s"));
        }
        match s.read(&mut buf) {
            Ok(0) => return Err(format!("server closed after {got} bytes")),
            Ok(n) => got += n,
            Err(e) => return Err(format!("read after {got} bytes: {e}")),
        }
    }
    hang_up(s);
    Ok(())
}

/// `/metrics` (the daemon needs `-debugOnMain`) as name → value, labels kept in the name.
pub fn metrics(d: &Daemon) -> BTreeMap<String, f64> {
    let r = d.req("GET", "/metrics", &[], b"", Duration::from_secs(10));
    assert_eq!(
        r.status,
        200,
        "/metrics (is -debugOnMain set?): {}",
        r.text()
    );
    r.text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// One value of `/metrics`; panics if it is missing.
pub fn metric(d: &Daemon, name: &str) -> f64 {
    *metrics(d)
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// Resident set size of process `pid` in bytes (`VmRSS` of /proc/<pid>/status).
pub fn vm_rss(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Calls `f` on every entry under `dir` (directories too, each before its contents).
#[allow(dead_code)]
pub fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        f(&p);
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&p, f);
        }
    }
}
