//! The operator files of `examples/`: the systemd units pass `systemd-analyze verify` with no
//! complaint, and the command lines of the units and the Dockerfile name flags the real binary
//! has and start a daemon that serves `/health`. Booting a unit needs systemd as PID 1.

use crate::common;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::{run_bounded, Daemon};

fn example(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(rel)
}

const UNITS: &[&str] = &[
    "systemd/confluence.service",
    "systemd/confluence-mount.service",
];

/// The value of the first `Key=` line of a unit (or `KEY ` instruction of a Dockerfile).
fn directive<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
}

/// `confluence -h`.
fn help() -> String {
    let (st, out, err) = run_bounded(
        Command::new(common::binary()).arg("-h"),
        Duration::from_secs(10),
    );
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{err}");
    out
}

/// Checks the flags of a command line against the real binary: every name is in `-h`, and a
/// daemon started with them serves `/health` (the address, data dir and mount flags are the
/// test harness's own, so they are checked by name only).
fn check_flags(args: &[String], what: &str) {
    let help = help();
    let mut kept = Vec::new();
    for a in args {
        let name = a
            .trim_start_matches('-')
            .split('=')
            .next()
            .unwrap_or_default();
        assert!(
            a.starts_with('-')
                && (help.contains(&format!("--{name} ")) || help.contains(&format!("--{name}["))),
            "{what}: {a:?} is not a flag of confluence:\n{help}"
        );
        if !["addr", "torrentAddr", "dataDir", "mount", "dht"].contains(&name) {
            kept.push(a.as_str());
        }
    }
    let d = Daemon::start(&kept);
    d.assert_healthy();
}

#[test]
fn systemd_units_verify_cleanly() {
    let (st, _, _) = run_bounded(
        Command::new("sh").args(["-c", "command -v systemd-analyze"]),
        Duration::from_secs(10),
    );
    assert!(
        st.is_some_and(|s| s.success()),
        "systemd-analyze is missing (tests/deps.txt: systemd)"
    );
    let dir = common::temp_dir("units");
    let mut paths = Vec::new();
    for unit in UNITS {
        let text = fs::read_to_string(example(unit)).unwrap();
        // The units name the installed binary; verify checks that it exists and is executable.
        let text = text.replace("/usr/local/bin/confluence", common::binary());
        let p = dir.join(Path::new(unit).file_name().unwrap());
        fs::write(&p, text).unwrap();
        paths.push(p);
    }
    let (st, out, err) = run_bounded(
        Command::new("systemd-analyze").arg("verify").args(&paths),
        Duration::from_secs(60),
    );
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{out}{err}");
    // Unknown keys and bad values are warnings (exit 0): any output is a failure.
    assert_eq!(
        format!("{out}{err}").trim(),
        "",
        "systemd-analyze verify complained"
    );
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn systemd_units_are_hardened_and_run_real_flags() {
    for unit in UNITS {
        let text = fs::read_to_string(example(unit)).unwrap();
        for key in [
            "NoNewPrivileges=yes",
            "RestrictAddressFamilies=",
            "CacheDirectory=confluence",
            "EnvironmentFile=-/etc/confluence/env",
            "CapabilityBoundingSet=",
        ] {
            assert!(text.contains(key), "{unit}: no {key}");
        }
        let caps = directive(&text, "CapabilityBoundingSet=").unwrap();
        let mount = unit.contains("mount");
        assert_eq!(caps, if mount { "CAP_SYS_ADMIN" } else { "" }, "{unit}");
        if !mount {
            for key in [
                "DynamicUser=yes",
                "ProtectSystem=strict",
                "PrivateDevices=yes",
            ] {
                assert!(text.contains(key), "{unit}: no {key}");
            }
        }
        assert!(
            !text.contains("-authToken"),
            "{unit}: the token belongs in the EnvironmentFile"
        );
        let exec = directive(&text, "ExecStart=").unwrap();
        let mut words = exec.split_whitespace().map(String::from);
        assert_eq!(words.next().as_deref(), Some("/usr/local/bin/confluence"));
        let args: Vec<String> = words.collect();
        assert_eq!(
            args.iter().any(|a| a.starts_with("-mount=")),
            mount,
            "{unit}"
        );
        check_flags(&args, unit);
    }
}

#[test]
fn dockerfile_matches_the_binary() {
    let text = fs::read_to_string(example("Dockerfile")).unwrap();
    let json = |key: &str| -> Vec<String> {
        let v = directive(&text, key).unwrap_or_else(|| panic!("no {key}"));
        serde_json::from_str(v).unwrap_or_else(|e| panic!("{key} is not a JSON array: {e}"))
    };
    assert_eq!(json("ENTRYPOINT "), ["/usr/local/bin/confluence"]);
    assert!(text.contains("COPY --from=build /out/confluence /usr/local/bin/confluence"));
    assert!(text.contains("--bin confluence"), "builds another binary");
    let cmd = json("CMD ");
    let data_dir = cmd
        .iter()
        .find_map(|a| a.strip_prefix("-dataDir="))
        .unwrap();
    assert_eq!(json("VOLUME "), [data_dir]);
    let port = cmd
        .iter()
        .find_map(|a| a.strip_prefix("-addr="))
        .and_then(|a| a.rsplit(':').next())
        .unwrap();
    assert!(
        text.contains(&format!("http://127.0.0.1:{port}/health")),
        "HEALTHCHECK does not ask /health on the -addr port"
    );
    let user = directive(&text, "USER ").unwrap();
    assert_ne!(user, "root");
    assert!(text.contains("--device /dev/fuse --cap-add SYS_ADMIN"));
    check_flags(&cmd, "Dockerfile CMD");
}

/// Boots `confluence.service` (binary and port adapted) under the machine's systemd and checks
/// `/health`, the dynamic user and the cache directory.
#[test]
#[ignore = "needs systemd as PID 1 and root; the test machine's PID 1 is not systemd (a container)"]
fn systemd_unit_boots() {
    let comm = fs::read_to_string("/proc/1/comm").unwrap_or_default();
    assert_eq!(comm.trim(), "systemd", "PID 1 is {comm:?}, not systemd");
    let port = common::free_port();
    let text = fs::read_to_string(example("systemd/confluence.service"))
        .unwrap()
        .replace("/usr/local/bin/confluence", common::binary())
        .replace("-addr=localhost:8080", &format!("-addr=127.0.0.1:{port}"))
        .replace("-torrentAddr=:42069", "-torrentAddr=127.0.0.1:0 -dht=false");
    let name = format!("confluence-test-{}.service", std::process::id());
    let path = Path::new("/run/systemd/system").join(&name);
    fs::write(&path, text).unwrap();
    let ctl = |args: &[&str]| {
        run_bounded(
            Command::new("systemctl").args(args),
            Duration::from_secs(60),
        )
    };
    ctl(&["daemon-reload"]);
    let (st, _, err) = ctl(&["start", &name]);
    let healthy = st.is_some_and(|s| s.success())
        && (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            common::try_request(port, "GET", "/health", &[], b"", Duration::from_secs(2))
                .is_ok_and(|r| r.status == 200)
        });
    let (_, user, _) = ctl(&["show", "-p", "User", "-p", "ActiveState", &name]);
    ctl(&["stop", &name]);
    let _ = fs::remove_file(&path);
    ctl(&["daemon-reload"]);
    assert!(healthy, "the unit did not serve /health: {err}");
    assert!(user.contains("ActiveState=active"), "{user}");
}
