//! Command-line flags of the real binary: `-h`, unknown and unsupported flags, and the
//! `-name value` / `--name` forms.

use crate::common;

use std::{path::Path, process::Command, time::Duration};

use common::{binary, free_port, run_bounded, temp_dir, Daemon};

/// Runs the binary with `args` plus safe defaults (loopback, no DHT, a temp data dir) so that a
/// flag that is wrongly accepted cannot start a daemon on the default address; ≤ 20 s.
fn run(args: &[&str], dir: &Path) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .arg("-addr=127.0.0.1:0")
        .arg("-torrentAddr=127.0.0.1:0")
        .arg("-dht=false")
        .arg(format!("-dataDir={}", dir.display()));
    let (status, out, err) = run_bounded(&mut cmd, Duration::from_secs(20));
    (status.and_then(|s| s.code()), out, err)
}

#[test]
fn help_exits_0_with_usage_on_stdout() {
    let dir = temp_dir("flags");
    for h in ["-h", "-help", "--help"] {
        let (code, out, _) = run(&[h], &dir);
        assert_eq!(code, Some(0), "{h}: exit code");
        for flag in [
            "-addr",
            "-torrentAddr",
            "-cacheCapacity",
            "-unlimitedCache",
            "-torrentGrace",
            "-expireTorrents",
            "-fileDir",
            "-dht",
            "-dataDir",
        ] {
            assert!(
                out.contains(flag),
                "{h}: usage on stdout does not list {flag}:\n{out}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_flag_exits_2() {
    let dir = temp_dir("flags");
    for bad in ["-nosuch", "-nosuch=1", "--nosuch"] {
        let (code, _, err) = run(&[bad], &dir);
        assert_eq!(code, Some(2), "{bad}: exit code (stderr {err:?})");
        assert!(
            err.contains("nosuch"),
            "{bad}: stderr does not name the flag: {err:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sqlite_storage_exits_2_with_a_one_line_message() {
    let dir = temp_dir("flags");
    for flag in ["-sqliteStorage", "-sqliteStorage=/tmp/x.db"] {
        let (code, _, err) = run(&[flag], &dir);
        assert_eq!(code, Some(2), "{flag}: exit code (stderr {err:?})");
        let msg = err.trim_end();
        assert!(
            !msg.is_empty() && !msg.contains('\n'),
            "{flag}: want a one-line message on stderr, got {err:?}"
        );
        assert!(
            msg.contains("sqliteStorage"),
            "{flag}: message does not name the flag: {msg:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn addr_with_a_space_or_two_dashes_works() {
    for form in ["space", "dashes"] {
        let dir = temp_dir("flags");
        let port = free_port();
        let addr = match form {
            "space" => vec!["-addr".to_string(), format!("127.0.0.1:{port}")],
            _ => vec![format!("--addr=127.0.0.1:{port}")],
        };
        let d = Daemon::launch(&dir, addr.clone(), port, vec!["-torrentGrace=1s".into()])
            .unwrap_or_else(|e| panic!("{addr:?}: {e}"));
        d.assert_healthy();
        let r = d.get("/nosuch");
        assert_eq!(r.status, 404, "{addr:?}: /nosuch");
        drop(d);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
