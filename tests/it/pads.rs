//! Issue 18 (last section): BEP 52 hybrid torrents with BEP 47 pad files, made and seeded by
//! libtorrent 2.x (`tests/pads/hybrid.py`, Debian `python3-libtorrent`) on 127.0.0.31. No front
//! door shows a pad file, a path naming one is 404 / ENOENT, every real file reads byte-exact
//! through `/data` and the mount, and the whole-torrent stream is librqbit's concatenation (pad
//! bytes, zeros, included). A v2-only torrent is refused with a clear 400.
//!
//! The seeder connects to the daemon's BitTorrent port itself, so this test needs neither the
//! harness swarm nor its tracker. The daemon runs with `-dlna` (a front door to check), which
//! announces over SSDP multicast: so the test runs in a network namespace of its own
//! ([`common::netns`]), the seeder and the daemon with it.

use crate::common;

use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::{assert_bytes_eq, bdecode, fuse, qenc, run_bounded, temp_dir, Bencode, Daemon, Resp};

const PY: &str = "/usr/bin/python3";
const T: Duration = Duration::from_secs(90);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pads/hybrid.py")
}

/// One file of the torrent as its info dict has it.
struct TFile {
    path: String,
    len: u64,
    pad: bool,
}

/// The info dict's raw bytes and its files (with BEP 47 `attr`).
fn torrent_files(torrent: &[u8]) -> (Vec<u8>, Vec<TFile>) {
    let top = bdecode(torrent).expect("hybrid.torrent is bencode");
    let info_bytes = torrent[top.span("info").expect("info")].to_vec();
    let info = top.get("info").unwrap();
    assert_eq!(
        info.get("meta version").and_then(Bencode::int),
        Some(2),
        "libtorrent made a hybrid (v1+v2) torrent"
    );
    let files = info
        .get("files")
        .and_then(Bencode::list)
        .expect("multi-file v1 part")
        .iter()
        .map(|f| TFile {
            path: f
                .get("path")
                .and_then(Bencode::list)
                .unwrap()
                .iter()
                .map(|c| c.str().unwrap())
                .collect::<Vec<_>>()
                .join("/"),
            len: f.get("length").and_then(Bencode::int).unwrap() as u64,
            pad: f
                .get("attr")
                .and_then(Bencode::bytes)
                .is_some_and(|a| a.contains(&b'p')),
        })
        .collect();
    (info_bytes, files)
}

/// The seeder process, stopped by PID when dropped.
struct Seeder(Child);

impl Drop for Seeder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn listen_port(d: &Daemon) -> u16 {
    let st = d.get("/status").text();
    st.lines()
        .find_map(|l| l.strip_prefix("Listen port: "))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no listen port in /status: {st}"))
}

#[track_caller]
fn no_pad(r: &Resp, what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    assert!(
        !r.text().contains(".pad"),
        "{what} shows a pad file: {}",
        r.text()
    );
}

/// A ContentDirectory `Browse` of object `id`.
fn browse(d: &Daemon, id: &str, flag: &str) -> Resp {
    const CDS: &str = "urn:schemas-upnp-org:service:ContentDirectory:1";
    let body = format!(
        "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>\
         <u:Browse xmlns:u=\"{CDS}\"><ObjectID>{id}</ObjectID><BrowseFlag>{flag}</BrowseFlag>\
         <Filter>*</Filter><StartingIndex>0</StartingIndex><RequestedCount>0</RequestedCount>\
         <SortCriteria></SortCriteria></u:Browse></s:Body></s:Envelope>"
    );
    let action = format!("\"{CDS}#Browse\"");
    let h = [
        ("Content-Type", "text/xml; charset=\"utf-8\""),
        ("SOAPACTION", action.as_str()),
    ];
    d.req(
        "POST",
        "/dlna/control/ContentDirectory",
        &h,
        body.as_bytes(),
        T,
    )
}

#[test]
fn hybrid_pad_files_hidden_everywhere() {
    assert!(
        Path::new(PY).exists(),
        "{PY} missing: install python3-libtorrent (tests/deps.txt)"
    );
    assert!(
        fuse::can_mount("hybrid_pad_files_hidden_everywhere"),
        "this test needs /dev/fuse and root"
    );
    let Some(ns) = common::netns::enter_private("hybrid_pad_files_hidden_everywhere") else {
        return;
    };
    let dir = temp_dir("pads");
    let (st, out, err) = run_bounded(
        Command::new(PY).arg(script()).arg("make").arg(&dir),
        Duration::from_secs(60),
    );
    assert!(
        st.is_some_and(|s| s.success()),
        "hybrid.py make failed ({st:?}; is python3-libtorrent installed?): {out}{err}"
    );
    let torrent = std::fs::read(dir.join("hybrid.torrent")).unwrap();
    let (info_bytes, files) = torrent_files(&torrent);
    let ih = common::sha1_hex(&info_bytes);
    let pads: Vec<&TFile> = files.iter().filter(|f| f.pad).collect();
    let pad_index = files.iter().position(|f| f.pad).unwrap();
    assert!(!pads.is_empty(), "libtorrent made no pad files");
    let payload = |f: &TFile| std::fs::read(dir.join("payload/hybrid").join(&f.path)).unwrap();

    let mnt = fuse::MountDir::new();
    let mount = format!("-mount={}", mnt.0.display());
    let d = Daemon::start(&[&mount, "-dlna", "-dlnaInterfaces=127.0.0.1"]);
    ns.assert_holds(d.pid().unwrap(), "the daemon");

    // A v2-only torrent keeps its clear 4xx.
    let v2 = std::fs::read(dir.join("v2only.torrent")).unwrap();
    let r = d.req("POST", "/metainfo", &[], &v2, T);
    assert_eq!(r.status, 400, "v2-only: {}", r.text());
    assert!(r.text().contains("v2-only"), "v2-only reason: {}", r.text());
    common::assert_one_line(&r, "v2-only");

    d.post_metainfo(&torrent, &ih);
    let seeder = Command::new(PY)
        .arg(script())
        .arg("seed")
        .arg(&dir)
        .arg(listen_port(&d).to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting hybrid.py seed");
    ns.assert_holds(seeder.id(), "the seeder");
    let _seeder = Seeder(seeder);

    // Every real file, byte-exact through /data.
    for f in files.iter().filter(|f| !f.pad) {
        let r = d.req(
            "GET",
            &format!("/data?ih={ih}&path={}", qenc(&f.path)),
            &[],
            b"",
            T,
        );
        assert_eq!(r.status, 200, "{}: {}", f.path, r.text());
        assert_bytes_eq(&r.body, &payload(f), &f.path);
    }
    // The whole torrent: librqbit's concatenation, pad bytes (zeros) included.
    let mut whole = Vec::new();
    for f in &files {
        match f.pad {
            true => whole.resize(whole.len() + f.len as usize, 0),
            false => whole.extend(payload(f)),
        }
    }
    let r = d.req("GET", &format!("/data?ih={ih}"), &[], b"", T);
    assert_eq!(r.status, 200, "whole torrent: {}", r.text());
    assert_bytes_eq(&r.body, &whole, "whole torrent");

    // A pad path is 404 on every route that takes a path.
    let pad = &pads[0].path;
    for target in [
        format!("/data?ih={ih}&path={}", qenc(pad)),
        format!("/data/infohash/{ih}/{pad}"),
        format!("/data/infohash/{ih}/.pad/"),
        format!("/data/infohash/{ih}/.pad"),
        format!("/fileState?ih={ih}&path={}", qenc(pad)),
        format!("/dav/{ih}/{pad}"),
    ] {
        assert_eq!(d.get(&target).status, 404, "{target}");
    }
    let r = d.get(&format!("/fileState?ih={ih}&path=a.bin"));
    assert_eq!(r.status, 200, "fileState of a real file: {}", r.text());

    // No listing shows one.
    let json = [("Accept", "application/json")];
    let root = d.get_h(&format!("/data/infohash/{ih}/"), &json);
    no_pad(&root, "root listing");
    for name in ["\"a.bin\"", "\"sub\"", "\"z.txt\""] {
        assert!(
            root.text().contains(name),
            "root listing lacks {name}: {}",
            root.text()
        );
    }
    no_pad(
        &d.get_h(&format!("/data/infohash/{ih}/sub/"), &json),
        "sub listing",
    );
    no_pad(&d.get(&format!("/data/infohash/{ih}/")), "HTML listing");
    let pl = d.get(&format!("/playlist?ih={ih}"));
    no_pad(&pl, "playlist");
    assert!(pl.text().contains("c.mkv"), "playlist: {}", pl.text());
    no_pad(&d.get("/status"), "/status");
    no_pad(&d.get_h("/status", &json), "/status JSON");
    no_pad(&d.get(&format!("/t/{ih}")), "web page");
    let dav = d.req(
        "PROPFIND",
        &format!("/dav/{ih}/"),
        &[("Depth", "1")],
        b"",
        T,
    );
    assert_eq!(dav.status, 207, "PROPFIND: {}", dav.text());
    assert!(!dav.text().contains(".pad"), "WebDAV: {}", dav.text());

    // DLNA: no `.pad` container, and a pad file's object ID names nothing.
    let r = browse(&d, &ih, "BrowseDirectChildren");
    assert_eq!(r.status, 200, "DLNA browse: {}", r.text());
    assert!(r.text().contains("sub"), "DLNA browse: {}", r.text());
    assert!(
        !r.text().contains(".pad"),
        "DLNA shows a pad dir: {}",
        r.text()
    );
    let r = browse(&d, &format!("{ih}/f{pad_index}"), "BrowseMetadata");
    assert_eq!(r.status, 500, "DLNA pad object: {}", r.text());
    assert!(
        r.text().contains("<errorCode>701</errorCode>"),
        "{}",
        r.text()
    );

    // The mount: no pad file listed, a pad path is ENOENT, real files byte-exact.
    let top = mnt.0.join(&ih);
    let names = fuse::ls(&top);
    assert_eq!(names, ["a.bin", "sub", "z.txt"], "mount root");
    for p in [top.join(".pad"), top.join(pad)] {
        let e = fuse::metadata(&p).expect_err("a pad path in the mount");
        assert_eq!(e.kind(), ErrorKind::NotFound, "{}", p.display());
    }
    for f in files.iter().filter(|f| !f.pad) {
        let got = fuse::read_file(&top.join(&f.path), T);
        assert_bytes_eq(&got, &payload(f), &format!("mount {}", f.path));
    }

    drop(d);
    // The daemon unmounts on SIGTERM; give the kernel a moment before the guard checks.
    let until = Instant::now() + Duration::from_secs(5);
    while fuse::mounted(&mnt.0) && Instant::now() < until {
        thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
