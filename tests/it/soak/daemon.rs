//! The daemon under soak: started with its data dir on the soak's tmpfs and its log outside it
//! (a full disk must not eat the log the panic check greps), stopped by PID.

use std::{
    fs::{self, OpenOptions},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::{client::open, common::free_port, common::fuse::mounted};

pub struct Config {
    pub data: PathBuf,
    pub log: PathBuf,
    pub mnt: PathBuf,
    pub args: Vec<String>,
}

pub struct Proc {
    child: Option<Child>,
    pub port: u16,
    pub pid: u32,
}

impl Config {
    /// Starts the daemon on a free port; waits (≤ 30 s) for `/health` and the mount.
    pub fn launch(&self) -> Result<Proc, String> {
        let mut last = String::new();
        for _ in 0..5 {
            match self.try_launch(free_port()) {
                Ok(p) => return Ok(p),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn try_launch(&self, port: u16) -> Result<Proc, String> {
        fs::create_dir_all(&self.data)
            .map_err(|e| format!("creating {}: {e}", self.data.display()))?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let child = Command::new(super::common::binary())
            .arg(format!("-addr=127.0.0.1:{port}"))
            .arg("-torrentAddr=127.0.0.1:0")
            .arg("-dht=false")
            .arg(format!("-dataDir={}", self.data.display()))
            .arg(format!("-mount={}", self.mnt.display()))
            .args(&self.args)
            .env(
                "RUST_LOG",
                "info,librqbit=warn,librqbit_dht=warn,librqbit_tracker_comms=warn",
            )
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawning confluence: {e}"))?;
        let pid = child.id();
        let mut p = Proc {
            child: Some(child),
            port,
            pid,
        };
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = p.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                p.child = None;
                return Err(format!(
                    "confluence exited at start ({st}); see {}",
                    self.log.display()
                ));
            }
            let healthy = open(port, "GET", "/health", &[]).is_ok_and(|r| r.status == 200);
            if healthy && mounted(&self.mnt) {
                return Ok(p);
            }
            if Instant::now() > until {
                p.term();
                return Err(format!(
                    "no /health and mount within 30 s; see {}",
                    self.log.display()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Proc {
    /// SIGKILL, no chance to clean up (the mount is left stale).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, ≤ 10 s, then SIGKILL; always reaped. Returns whether it exited on SIGTERM.
    pub fn term(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        // SAFETY: our own child, not yet reaped.
        unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.term();
    }
}

/// Open file descriptors of `pid`, by what they point to (`socket`, `pipe`,
/// `anon_inode:[eventfd]`, a path...).
pub fn fds(pid: u32) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for e in fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let t = fs::read_link(e.path()).map_or("?".into(), |p| p.to_string_lossy().into_owned());
        let kind = match t.split_once(":[") {
            Some(("socket", inode)) => socket(pid, inode.trim_end_matches(']')),
            Some((k, _)) if !k.starts_with("anon_inode") => k.to_string(),
            _ => t,
        };
        *out.entry(kind).or_default() += 1;
    }
    out
}

/// What socket `inode` of `pid` is: `socket tcp 127.0.0.1:80 -> 127.0.0.2:6881 01` (the
/// kernel's state number), from `/proc/<pid>/net`.
fn socket(pid: u32, inode: &str) -> String {
    let addr = |h: &str| -> String {
        let (ip, port) = h.split_once(':').unwrap_or((h, "0"));
        let port = u16::from_str_radix(port, 16).unwrap_or(0);
        match u32::from_str_radix(ip, 16) {
            Ok(v) if ip.len() == 8 => {
                format!("{}:{port}", std::net::Ipv4Addr::from(v.swap_bytes()))
            }
            _ => format!("[v6]:{port}"),
        }
    };
    for proto in ["tcp", "tcp6", "udp", "udp6"] {
        let table = fs::read_to_string(format!("/proc/{pid}/net/{proto}")).unwrap_or_default();
        for l in table.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 9 && f[9] == inode {
                return format!("socket {proto} {} -> {} {}", addr(f[1]), addr(f[2]), f[3]);
            }
        }
    }
    "socket (other)".to_string()
}

/// How many mounts sit on `dir` (a stale mount left under a new one would make this 2).
pub fn mounts_on(dir: &std::path::Path) -> usize {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = dir.to_string_lossy();
    info.lines()
        .filter(|l| l.split(' ').nth(4) == Some(want.as_ref()))
        .count()
}
