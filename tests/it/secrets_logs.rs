//! Operators' expectations of secrets and logs: `-authToken` also comes from
//! `$CONFLUENCE_AUTH_TOKEN` (so it is not in `ps`; the flag wins), the token never shows in the
//! log or on a `/debug` page, logs carry no ANSI colours when stderr is not a terminal, and
//! `-logFormat=json` writes one JSON object per line.
//!
//! No swarm: these daemons never add a torrent.

use crate::common;

use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::{temp_dir, try_request, Resp};

/// A daemon started with its own environment; stderr (not a terminal) goes to `log`.
struct Proc {
    child: Child,
    port: u16,
    log: PathBuf,
    dir: PathBuf,
}

impl Proc {
    /// `confluence -addr=127.0.0.1:<free> -torrentAddr=127.0.0.1:0 -dht=false -dataDir=… args`,
    /// with `env` added and `RUST_LOG` removed (the built-in default filter is under test too);
    /// waits ≤ 20 s for `/health` (with `token`, if any) to answer 200.
    fn start(args: &[&str], env: &[(&str, &str)], token: Option<&str>) -> Proc {
        let dir = temp_dir("ops");
        let port = common::free_port();
        let log = dir.join("daemon.log");
        let file = fs::File::create(&log).unwrap();
        let child = Command::new(common::binary())
            .arg(format!("-addr=127.0.0.1:{port}"))
            .args(["-torrentAddr=127.0.0.1:0", "-dht=false"])
            .arg(format!("-dataDir={}", dir.display()))
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("CONFLUENCE_AUTH_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawning confluence");
        let mut p = Proc {
            child,
            port,
            log,
            dir,
        };
        let health = match token {
            Some(t) => format!("/health?token={}", common::qenc(t)),
            None => "/health".into(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = p.child.try_wait() {
                panic!("confluence exited at start ({st}): {}", p.log());
            }
            let r = try_request(port, "GET", &health, &[], b"", Duration::from_secs(2));
            if r.is_ok_and(|r| r.status == 200) {
                return p;
            }
            assert!(Instant::now() < deadline, "no /health in 20 s: {}", p.log());
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn get(&self, target: &str, headers: &[(&str, &str)]) -> Resp {
        common::request(
            self.port,
            "GET",
            target,
            headers,
            b"",
            Duration::from_secs(10),
        )
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, ≤ 5 s, then SIGKILL; returns the log.
    fn stop(mut self) -> String {
        // SAFETY: our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = self.log();
        let _ = fs::remove_dir_all(&self.dir);
        log
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every page a `-debugOnMain` daemon serves about itself.
const PAGES: &[&str] = &[
    "/status",
    "/metrics",
    "/debug/",
    "/debug/vars",
    "/debug/status",
    "/debug/runtime",
    "/debug/dht",
    "/debug/filecache/status",
];

#[test]
fn token_from_env_is_required_and_never_shown() {
    let secret = "env-Secret-7f3a9c";
    let bearer = format!("Bearer {secret}");
    let p = Proc::start(
        &["-debugOnMain"],
        &[("CONFLUENCE_AUTH_TOKEN", secret)],
        Some(secret),
    );
    assert_eq!(p.get("/health", &[]).status, 401, "no token");
    assert_eq!(
        p.get("/health", &[("Authorization", "Bearer wrong")])
            .status,
        401
    );
    assert_eq!(p.get("/health", &[("Authorization", &bearer)]).status, 200);
    let cmdline = fs::read(format!("/proc/{}/cmdline", p.child.id())).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(secret),
        "the token is in the command line"
    );
    for page in PAGES {
        let r = p.get(page, &[("Authorization", &bearer)]);
        assert_eq!(r.status, 200, "{page}: {}", r.text());
        assert!(!r.text().contains(secret), "{page} shows the token");
    }
    let log = p.stop();
    assert!(log.contains("HTTP clients must send the token"), "{log}");
    assert!(!log.contains(secret), "the log shows the token: {log}");
    assert!(
        !log.contains('\x1b'),
        "ANSI escapes in a non-terminal log: {log:?}"
    );
}

#[test]
fn token_flag_wins_and_is_redacted_from_debug_vars() {
    let p = Proc::start(
        &["-debugOnMain", "-authToken=flag-Secret-91b2"],
        &[("CONFLUENCE_AUTH_TOKEN", "env-Secret-0c4d")],
        Some("flag-Secret-91b2"),
    );
    assert_eq!(p.get("/health?token=env-Secret-0c4d", &[]).status, 401);
    for page in PAGES {
        let r = p.get(&format!("{page}?token=flag-Secret-91b2"), &[]);
        assert_eq!(r.status, 200, "{page}");
        assert!(!r.text().contains("Secret"), "{page} shows a token");
    }
    let vars = p.get("/debug/vars?token=flag-Secret-91b2", &[]).text();
    assert!(vars.contains("-authToken=REDACTED"), "{vars}");
    let log = p.stop();
    assert!(!log.contains("Secret"), "the log shows a token: {log}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let p = Proc::start(&["-logFormat=json"], &[], None);
    assert_eq!(p.get("/health", &[]).status, 200);
    let log = p.stop();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log at all");
    let mut saw_start = false;
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string(), "no level: {l}");
        assert!(v["timestamp"].is_string(), "no timestamp: {l}");
        assert!(v["message"].is_string(), "no message: {l}");
        saw_start |= v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("serving http at"));
    }
    assert!(saw_start, "no start-up line: {log}");
}

#[test]
fn text_logs_have_no_colours_off_a_terminal() {
    let p = Proc::start(&["-logFormat=text"], &[], None);
    let log = p.stop();
    assert!(log.contains("serving http at"), "{log}");
    assert!(log.contains(" INFO "), "{log}");
    assert!(!log.contains('\x1b'), "ANSI escapes: {log:?}");
}

#[test]
fn unknown_log_format_is_a_usage_error() {
    let (st, _, err) = common::run_bounded(
        Command::new(common::binary()).arg("-logFormat=xml"),
        Duration::from_secs(10),
    );
    assert_eq!(st.and_then(|s| s.code()), Some(2), "{err}");
    assert!(err.contains("logFormat"), "{err}");
}
