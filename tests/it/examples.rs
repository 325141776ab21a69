//! Every runnable thing in `examples/` runs here against the local swarm: `curl.sh`,
//! `client.py`, the `# tested` lines of `players.md`, and the `embed` example.

use crate::common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::{run_bounded, serial, sha1_hex, swarm, Daemon};
use sha2::Digest as _;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

/// Runs `cmd` (≤ `secs`), asserting it exits 0; returns stdout and stderr.
fn run_ok(cmd: &mut Command, secs: u64) -> (String, String) {
    let (st, out, err) = run_bounded(cmd, Duration::from_secs(secs));
    match st {
        Some(s) if s.success() => (out, err),
        Some(s) => panic!("{cmd:?} failed ({s}):\nstdout: {out}\nstderr: {err}"),
        None => panic!("{cmd:?} took over {secs} s:\nstdout: {out}\nstderr: {err}"),
    }
}

#[test]
fn curl_sh_adds_streams_a_range_and_watches_events() {
    let s = swarm();
    let _g = serial();
    let d = Daemon::start(&[]);
    let (out, err) = run_ok(
        Command::new("bash")
            .arg(examples().join("curl.sh"))
            .arg(s.magnet("single"))
            .arg("big.bin")
            .env("CONFLUENCE", d.url(""))
            .env("WAIT", "60"),
        120,
    );
    let first_mib = &s.payload("big.bin")[..1 << 20];
    assert!(
        out.contains(&sha256_hex(first_mib)),
        "no sha256 of the first MiB:\n{out}\n{err}"
    );
    assert!(out.contains("\"info\":"), "no /metainfo JSON:\n{out}");
    assert!(
        out.contains("{\"PieceChanged\":"),
        "no /events frame:\n{out}\n{err}"
    );
    assert!(err.contains("206"), "no 206 in the headers:\n{err}");
}

/// The Python the examples use: Debian's, with python3-requests and python3-websockets
/// (tests/deps.txt). A clear failure when they are missing, never a silent pass.
fn python() -> &'static str {
    let py = "/usr/bin/python3";
    let (st, _, err) = run_bounded(
        Command::new(py).args(["-c", "import requests, websockets"]),
        Duration::from_secs(30),
    );
    assert!(
        st.is_some_and(|s| s.success()),
        "{py} lacks requests/websockets (apt-get install python3-requests python3-websockets): {err}"
    );
    py
}

#[test]
fn client_py_lists_streams_and_sees_piece_changes() {
    let py = python();
    let s = swarm();
    let _g = serial();
    let d = Daemon::start(&[]);
    let (out, err) = run_ok(
        Command::new(py)
            .arg(examples().join("client.py"))
            .arg(s.magnet("media"))
            .arg("clip.mp4")
            .env("CONFLUENCE", d.url("")),
        120,
    );
    for f in ["clip.mkv", "clip.mp4"] {
        let len = s.payload(&format!("media/{f}")).len();
        assert!(
            out.lines().any(|l| l.trim() == format!("{len}  {f}")),
            "{f} ({len} B) not listed:\n{out}"
        );
    }
    let want = sha256_hex(&s.payload("media/clip.mp4"));
    assert!(
        out.contains(&format!("sha256 {want}  clip.mp4")),
        "wrong or no digest:\n{out}\n{err}"
    );
    let seen: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("piece changes seen: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count of piece changes:\n{out}"));
    assert!(
        seen > 0,
        "no PieceChanged seen on a cold download:\n{out}\n{err}"
    );
    assert!(err.contains("100%"), "no progress bar:\n{err}");
}

/// The shell lines of `players.md` marked `# tested` on the line before (a comment).
fn tested_lines() -> Vec<String> {
    let md = std::fs::read_to_string(examples().join("players.md")).unwrap();
    let lines: Vec<&str> = md.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].trim_start().starts_with('#') && w[0].contains("# tested"))
        .map(|w| w[1].to_string())
        .collect()
}

#[test]
fn players_md_ffprobe_and_mpv_lines_work_over_http() {
    let s = swarm();
    let _g = serial();
    let lines: Vec<String> = tested_lines()
        .into_iter()
        .filter(|l| !l.contains("$MNT"))
        .collect();
    assert_eq!(
        lines.len(),
        3,
        "expected the ffprobe, mpv and playlist lines: {lines:?}"
    );
    let d = Daemon::start(&[]);
    let ih = s.ih("media");
    // `?ih=` alone names no tracker: the torrent was added before, as players.md says.
    d.post_metainfo(&s.torrent_bytes("media"), &ih);
    for line in &lines {
        let tool = line.split_whitespace().next().unwrap();
        let (st, _, _) = run_bounded(
            Command::new("sh").args(["-c", &format!("command -v {tool}")]),
            Duration::from_secs(10),
        );
        assert!(
            st.is_some_and(|s| s.success()),
            "{tool} is missing (tests/deps.txt: ffmpeg, mpv)"
        );
        let (out, err) = run_ok(
            Command::new("bash")
                .args(["-c", line])
                .env("CONFLUENCE", d.url(""))
                .env("IH", &ih),
            120,
        );
        if tool == "ffprobe" {
            for want in ["codec_name=h264", "codec_name=aac", "duration=10.0"] {
                assert!(out.contains(want), "{want} missing:\n{out}\n{err}");
            }
        }
    }
    // mpv read the file through /data: the torrent is known and some of it was served.
    let st = d.get_h("/status", &[("Accept", "application/json")]);
    assert!(st.text().contains(&ih), "{}", st.text());
}

#[test]
fn players_md_ffprobe_line_works_on_the_mount() {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        Path::new("/dev/fuse").exists() && root,
        "this test mounts: it needs /dev/fuse and root"
    );
    let s = swarm();
    let _g = serial();
    let lines: Vec<String> = tested_lines()
        .into_iter()
        .filter(|l| l.contains("$MNT"))
        .collect();
    assert_eq!(lines.len(), 1, "expected one mount line: {lines:?}");
    let f = common::fuse::Fuse::start(&[]);
    let ih = s.ih("media");
    f.daemon.post_metainfo(&s.torrent_bytes("media"), &ih);
    let (out, err) = run_ok(
        Command::new("bash")
            .args(["-c", &lines[0]])
            .env("MNT", &f.mnt.0)
            .env("IH", &ih),
        120,
    );
    assert!(out.contains("duration=10.0"), "{out}\n{err}");
}

#[test]
fn embed_example_serves_a_range_in_process() {
    let s = swarm();
    let _g = serial();
    // Build the example (cargo test builds examples only without a target filter).
    run_ok(
        Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--example", "embed"])
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        1200,
    );
    let bin = Path::new(common::binary())
        .parent()
        .unwrap()
        .join("examples/embed");
    let torrent = s.dir.join("torrents/single.torrent");
    let (out, err) = run_ok(
        Command::new(&bin)
            .arg(&torrent)
            .arg("big.bin")
            .arg("1000-66535"),
        120,
    );
    let want = sha1_hex(&s.payload("big.bin")[1000..66536]);
    assert!(
        out.contains(&format!("added {}", s.ih("single"))),
        "{out}\n{err}"
    );
    assert!(out.contains(": 206"), "{out}\n{err}");
    assert!(
        out.contains(&format!("65536 bytes, sha1 {want}")),
        "{out}\n{err}"
    );
}
