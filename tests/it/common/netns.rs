//! A network namespace of one test's own, for tests whose traffic may not touch the machine's
//! network even on `lo`: SSDP multicast (`-dlna` announces on 239.255.255.250, a control point
//! searches there). The rule is that tests use 127.0.0.0/8 only, or a namespace they create.
//!
//! [`enter_private`] moves the calling thread, and only it, into a fresh namespace
//! (`unshare(CLONE_NEWNET)` acts on the calling thread), brings its `lo` up and checks that `lo`
//! is the only link up and 127.0.0.1/8 the only IPv4 address. Everything the thread creates
//! afterwards lives there: its sockets, the threads it spawns and the processes it starts (a
//! fork copies the forking thread's namespaces), so a daemon, a Python control point and the
//! test's own HTTP requests meet on the namespace's `lo` and nowhere else. There is no route but
//! `lo`'s own: multicast goes out only from a socket tied to 127.0.0.1 (bound to it, or naming it
//! with `IP_MULTICAST_IF`, as the daemon and async-upnp-client do), from any other socket it is
//! `ENETUNREACH`. Dropping the guard puts the thread back into the namespace it came from; the
//! namespace ends with the last process or socket in it, so a test stops what it started before
//! the guard drops (declare the guard first).
//!
//! Whatever lives in the root namespace cannot be reached from inside: the harness swarm and its
//! tracker ([`super::swarm`] refuses to run from a private namespace), and anything created
//! before the call. Needs `CAP_SYS_ADMIN` (root): without it the test does not run and says so
//! ([`super::skip_or_fail`]).

use std::{fs, io, os::fd::AsRawFd, path::Path, process::Command, thread, time::Duration};

use super::{run_bounded, skip_or_fail};

/// The calling thread's network namespace, as `/proc` names it (`net:[4026531840]`).
pub fn current() -> String {
    ns_of(Path::new("/proc/thread-self/ns/net"))
}

/// The network namespace of process `pid`.
pub fn of_pid(pid: u32) -> String {
    ns_of(Path::new(&format!("/proc/{pid}/ns/net")))
}

fn ns_of(link: &Path) -> String {
    fs::read_link(link)
        .unwrap_or_else(|e| panic!("readlink {}: {e}", link.display()))
        .to_string_lossy()
        .into_owned()
}

/// Whether the calling thread is in another network namespace than the process's main thread
/// (that is, inside an [`enter_private`]).
pub fn is_private() -> bool {
    current() != ns_of(Path::new("/proc/self/ns/net"))
}

/// The calling thread inside a namespace of its own; back where it was on drop.
#[must_use = "the thread leaves the namespace when the guard drops"]
pub struct PrivateNet {
    /// The namespace the thread came from, to `setns` back to.
    outer: fs::File,
    /// This namespace's `/proc` name.
    pub id: String,
}

/// Moves the calling thread into a fresh network namespace with only `lo`, up. `None` when this
/// machine cannot make one (not root) and `CONFLUENCE_ALLOW_SKIP=1` lets `test` be skipped; the
/// test then returns at once. Panics otherwise (a test that did not run never passes).
pub fn enter_private(test: &str) -> Option<PrivateNet> {
    let outer = fs::File::open("/proc/thread-self/ns/net")
        .unwrap_or_else(|e| panic!("{test}: open /proc/thread-self/ns/net: {e}"));
    let before = current();
    // SAFETY: unshare takes flags only; CLONE_NEWNET affects the calling thread alone.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EPERM) {
            skip_or_fail(
                test,
                "a network namespace of its own needs root (unshare(CLONE_NEWNET): EPERM)",
            );
            return None;
        }
        panic!("{test}: unshare(CLONE_NEWNET): {e}");
    }
    // From here on the guard exists, so a failed check below still puts the thread back.
    let ns = PrivateNet {
        outer,
        id: current(),
    };
    assert_ne!(
        ns.id, before,
        "{test}: unshare did not change the namespace"
    );
    // `ip` runs in this thread's new namespace: the child inherits it.
    let ip = |args: &[&str]| {
        let (st, out, err) = run_bounded(Command::new("ip").args(args), Duration::from_secs(10));
        assert!(
            st.is_some_and(|s| s.success()),
            "{test}: `ip {}` failed ({st:?}; iproute2: tests/deps.txt): {err}",
            args.join(" ")
        );
        out
    };
    ip(&["link", "set", "lo", "up"]);
    // `ip -o link show up`: one line per link that is up, `N: name: <FLAGS> ...`.
    let up: Vec<String> = ip(&["-o", "link", "show", "up"])
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().to_owned())
        .collect();
    assert_eq!(up, ["lo"], "{test}: the new namespace has other links up");
    let addrs: Vec<String> = ip(&["-o", "-4", "addr", "show"])
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_owned))
        .collect();
    assert_eq!(
        addrs,
        ["127.0.0.1/8"],
        "{test}: IPv4 addresses in the namespace"
    );
    Some(ns)
}

impl PrivateNet {
    /// Asserts that process `pid` (a daemon, a client) runs in this namespace.
    #[track_caller]
    pub fn assert_holds(&self, pid: u32, what: &str) {
        assert_eq!(
            of_pid(pid),
            self.id,
            "{what} (pid {pid}) is not in the test's namespace"
        );
    }
}

impl Drop for PrivateNet {
    fn drop(&mut self) {
        // SAFETY: setns on a namespace file we hold open; it moves the calling thread only.
        let rc = unsafe { libc::setns(self.outer.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if thread::panicking() {
                eprintln!("setns back to the outer network namespace: {e}");
            } else {
                panic!("setns back to the outer network namespace: {e}");
            }
        }
    }
}
