//! `-dlna`: a real UPnP control point (async-upnp-client from PyPI, `tests/dlna_cp.py`) finds
//! the daemon by M-SEARCH, browses it and streams items; NOTIFY alive and byebye; the device UUID
//! survives a restart; bad SOAP gets UPnP faults or 4xx; `/data` speaks the DLNA headers.
//!
//! SSDP is multicast (239.255.255.250:1900), and a `-dlna` daemon announces itself as soon as it
//! starts. So every test here runs in a network namespace of its own
//! ([`common::netns::enter_private`] at its start): only `lo`, up, no route off it. The daemon
//! (`-dlnaInterfaces=127.0.0.1`), the control point, the NOTIFY listener and the test's own
//! requests all live there; no datagram reaches the machine's network, its `lo` included, and
//! tests running side by side do not hear each other. The harness swarm is in the root
//! namespace, out of reach: what the tests stream is uploaded (`/upload`) and served from the
//! daemon's cache.

use crate::common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::OnceLock,
    time::{Duration, Instant},
};

use common::{
    form::{upload_form, Form},
    netns::{self, enter_private, PrivateNet},
    *,
};
use serde_json::Value;

const CDS: &str = "urn:schemas-upnp-org:service:ContentDirectory:1";
const CM: &str = "urn:schemas-upnp-org:service:ConnectionManager:1";
const MEDIA_SERVER: &str = "urn:schemas-upnp-org:device:MediaServer:1";
const EVIL_NAME: &str = "conf <b>&\"x";
const EVIL_FILE: &str = "<b>&\"x.mp4";
const EVIL_DIR: &str = "dir<&>";

/// A venv under `target/` with async-upnp-client (pinned), made once (bounded waits). pip needs
/// PyPI: call this before [`enter_private`].
fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dlna-venv");
        let ok = dir.join(".installed-async-upnp-client-0.49.0");
        if ok.exists() {
            return dir;
        }
        assert!(
            !netns::is_private(),
            "the DLNA venv is made with pip, which cannot reach PyPI from a private namespace"
        );
        let _ = std::fs::remove_dir_all(&dir);
        let (st, _, err) = run_bounded(
            Command::new("python3").args(["-m", "venv"]).arg(&dir),
            Duration::from_secs(120),
        );
        assert!(
            st.is_some_and(|s| s.success()),
            "python3 -m venv failed (install python3-venv: tests/deps.txt): {err}"
        );
        let (st, out, err) = run_bounded(
            Command::new(dir.join("bin/pip")).args([
                "install",
                "-q",
                "--disable-pip-version-check",
                "async-upnp-client==0.49.0",
            ]),
            Duration::from_secs(600),
        );
        assert!(
            st.is_some_and(|s| s.success()),
            "pip install async-upnp-client failed: {out} {err}"
        );
        std::fs::write(&ok, b"").unwrap();
        dir
    })
}

/// Runs the control point (in the caller's network namespace) against the daemon on `port`;
/// `fetch` are titles to stream.
fn control_point(venv: &Path, port: u16, page: u32, fetch: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dlna_cp.py");
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.arg(script).arg(port.to_string()).arg(page.to_string());
    cmd.args(fetch);
    let (st, out, err) = run_bounded(&mut cmd, Duration::from_secs(200));
    assert!(
        st.is_some_and(|s| s.success()),
        "control point failed ({st:?}): {err}\n{out}"
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("control point output: {e}: {out}"))
}

/// Uploads a torrent whose names need escaping; returns its infohash and the media bytes.
fn upload_evil(d: &Daemon) -> (String, Vec<u8>) {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    // The names go in `filename*`: they hold quotes a plain `filename` cannot carry.
    let (ctype, body) = Form::new("dlnaTestBoundary7e3")
        .field("name", "evil <i>&\"t")
        .file_utf8(&format!("{EVIL_DIR}/{EVIL_FILE}"), &data)
        .file_utf8("notes.txt", b"not media")
        .finish();
    (upload(d, &ctype, &body), data)
}

/// POSTs a multipart upload; returns the infohash of the torrent the daemon answers with.
fn upload(d: &Daemon, ctype: &str, body: &[u8]) -> String {
    let r = d.req(
        "POST",
        "/upload",
        &[("Content-Type", ctype)],
        body,
        Duration::from_secs(60),
    );
    assert_eq!(r.status, 200, "upload: {}", r.text());
    sha1_hex(&TorrentFile::parse(&r.body).info)
}

/// Two real clips, `clip.mp4` (its `moov` at the end, as a player finds it in the wild) and
/// `clip.mkv`: 4 s of 320x240 H.264 and AAC made by ffmpeg once per test process (bounded).
fn clips() -> &'static (Vec<u8>, Vec<u8>) {
    static CLIPS: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    CLIPS.get_or_init(|| {
        let dir = temp_dir("dlna-clips");
        let make = |name: &str, format: &str| {
            let out = dir.join(name);
            let (st, _, err) = run_bounded(
                Command::new("ffmpeg")
                    .args(["-nostdin", "-loglevel", "error", "-y"])
                    .args([
                        "-f",
                        "lavfi",
                        "-i",
                        "testsrc2=size=320x240:rate=25:duration=4",
                    ])
                    .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=4"])
                    .args(["-map", "0:v", "-map", "1:a", "-c:v", "libx264"])
                    .args(["-preset", "veryfast", "-g", "50", "-pix_fmt", "yuv420p"])
                    .args(["-threads", "1", "-c:a", "aac", "-b:a", "64k", "-f", format])
                    .arg(&out),
                Duration::from_secs(120),
            );
            assert!(
                st.is_some_and(|s| s.success()),
                "ffmpeg {name} ({st:?}; ffmpeg: tests/deps.txt): {err}"
            );
            std::fs::read(&out).unwrap()
        };
        let clips = (make("clip.mp4", "mp4"), make("clip.mkv", "matroska"));
        let _ = std::fs::remove_dir_all(&dir);
        clips
    })
}

/// Uploads torrent `media` with [`clips`]; returns its infohash.
fn upload_media(d: &Daemon) -> String {
    let (mp4, mkv) = clips();
    let (ctype, body) = upload_form("media", &[("clip.mp4", mp4), ("clip.mkv", mkv)]);
    upload(d, &ctype, &body)
}

/// Starts a daemon with `args` and checks it runs in the test's namespace.
fn start_in_ns(ns: &PrivateNet, dir: Option<&Path>, args: &[&str]) -> Daemon {
    let d = match dir {
        Some(dir) => Daemon::start_in(dir, args),
        None => Daemon::start(args),
    };
    ns.assert_holds(d.pid().unwrap(), "the daemon");
    d
}

fn objects(v: &Value) -> &Vec<Value> {
    v["objects"].as_array().expect("objects")
}

fn find<'a>(v: &'a Value, title: &str) -> &'a Value {
    objects(v)
        .iter()
        .find(|o| o["title"] == title)
        .unwrap_or_else(|| panic!("no object titled {title:?} in {:#}", v["objects"]))
}

fn sts(v: &Value, target: &str) -> Vec<String> {
    v["searches"][target]
        .as_array()
        .unwrap_or_else(|| panic!("no search {target}"))
        .iter()
        .map(|a| a["st"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn control_point_discovers_browses_and_streams() {
    // Made before entering the namespace: pip needs PyPI.
    let venv = venv();
    let Some(ns) = enter_private("control_point_discovers_browses_and_streams") else {
        return;
    };
    let (mp4, mkv) = clips();
    let d = start_in_ns(
        &ns,
        None,
        &[
            "-dlna",
            "-dlnaInterfaces=127.0.0.1",
            &format!("-dlnaName={EVIL_NAME}"),
        ],
    );
    let media_ih = upload_media(&d);
    let (evil_ih, evil_data) = upload_evil(&d);

    // Page size 1: every container is read with StartingIndex 0, 1, 2, ...
    let v = control_point(venv, d.port, 1, &["clip.mp4", "clip.mkv", EVIL_FILE]);

    let uuid = std::fs::read_to_string(d.data_dir.join("dlna-uuid")).unwrap();
    let uuid = uuid.trim();
    let mut all = sts(&v, "ssdp:all");
    all.sort();
    let mut want = vec![
        "upnp:rootdevice".to_owned(),
        uuid.to_owned(),
        MEDIA_SERVER.to_owned(),
        CDS.to_owned(),
        CM.to_owned(),
    ];
    want.sort();
    assert_eq!(all, want, "ssdp:all answers");
    assert_eq!(sts(&v, "upnp:rootdevice"), ["upnp:rootdevice"]);
    assert_eq!(sts(&v, MEDIA_SERVER), [MEDIA_SERVER]);
    assert_eq!(sts(&v, CDS), [CDS]);
    assert_eq!(
        v["locations"],
        serde_json::json!([d.url("/dlna/description.xml")])
    );
    assert_eq!(v["friendly_name"], EVIL_NAME);
    assert_eq!(v["udn"], uuid);
    assert_eq!(v["device_type"], MEDIA_SERVER);
    assert!(v["source_protocol_info"]
        .as_str()
        .unwrap()
        .contains("http-get:*:video/mp4:DLNA.ORG_OP=01;"));

    // Root → torrents → directories → items.
    let root = &objects(&v)[0];
    assert_eq!(
        (&root["id"], &root["title"]),
        (&"0".into(), &EVIL_NAME.into())
    );
    assert_eq!(root["child_count"], "2");
    let m = find(&v, "media");
    assert_eq!(
        (&m["id"], &m["parent_id"]),
        (&media_ih.as_str().into(), &"0".into())
    );
    assert_eq!(m["child_count"], "2");
    for (name, bytes, mime) in [
        ("clip.mp4", mp4, "video/mp4"),
        ("clip.mkv", mkv, "video/x-matroska"),
    ] {
        let it = find(&v, name);
        assert_eq!(it["parent_id"], media_ih.as_str(), "{name}");
        assert_eq!(it["class"], "object.item.videoItem", "{name}");
        let res = &it["res"][0];
        assert_eq!(res["size"], bytes.len(), "{name}");
        let pi = res["protocol_info"].as_str().unwrap();
        assert!(
            pi.starts_with(&format!("http-get:*:{mime}:DLNA.ORG_OP=01;")),
            "{pi}"
        );
        assert_eq!(
            res["url"],
            d.url(&format!("/data/infohash/{media_ih}/{name}"))
        );
        let f = &v["fetched"][name];
        assert_eq!(f["status"], 200, "{name}");
        assert_eq!(
            f["sha256"],
            sha256_hex(bytes),
            "{name} streamed through <res>"
        );
        assert_eq!(f["transfer_mode"], "Streaming", "{name}");
        assert!(
            f["content_features"]
                .as_str()
                .unwrap()
                .contains("DLNA.ORG_OP=01"),
            "{f}"
        );
    }
    // Names that need escaping round-trip; non-media files are not listed.
    let e = find(&v, "evil <i>&\"t");
    assert_eq!(e["id"], evil_ih.as_str());
    assert_eq!(e["child_count"], "1", "notes.txt is not media");
    let dir = find(&v, EVIL_DIR);
    assert_eq!(dir["parent_id"], evil_ih.as_str());
    let it = find(&v, EVIL_FILE);
    assert_eq!(it["parent_id"], dir["id"]);
    assert_eq!(v["fetched"][EVIL_FILE]["sha256"], sha256_hex(&evil_data));
    assert!(!objects(&v).iter().any(|o| o["title"] == "notes.txt"));

    // ffprobe reads the clip from its <res> URL.
    let url = find(&v, "clip.mp4")["res"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, out, err) = run_bounded(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-show_entries",
            "format=format_name:stream=codec_type",
            "-of",
            "default=nw=1",
            &url,
        ]),
        Duration::from_secs(60),
    );
    assert!(st.is_some_and(|s| s.success()), "ffprobe {url}: {err}");
    assert!(out.contains("format_name=mov,mp4"), "{out}");
    assert!(out.contains("codec_type=video"), "{out}");
    d.assert_healthy();
}

/// The description's `<UDN>`.
fn udn(d: &Daemon) -> String {
    let r = d.get("/dlna/description.xml");
    assert_eq!(r.status, 200, "{}", r.text());
    let t = r.text();
    let start = t.find("<UDN>").expect("UDN") + 5;
    let end = t[start..].find("</UDN>").expect("UDN end") + start;
    t[start..end].to_owned()
}

#[test]
fn uuid_survives_a_restart() {
    let Some(ns) = enter_private("uuid_survives_a_restart") else {
        return;
    };
    let dir = temp_dir("dlna-uuid");
    let mut d = start_in_ns(&ns, Some(&dir), &["-dlna", "-dlnaInterfaces=127.0.0.1"]);
    let first = udn(&d);
    assert!(first.starts_with("uuid:") && first.len() == 41, "{first}");
    d.stop();
    let mut d = start_in_ns(&ns, Some(&dir), &["-dlna", "-dlnaInterfaces=lo"]);
    assert_eq!(udn(&d), first, "same UUID after a restart");
    d.stop();
    // Without -dlnaInterfaces SSDP runs on -addr's address (127.0.0.1 here).
    let other = start_in_ns(&ns, None, &["-dlna"]);
    assert!(
        other.log().contains("DLNA: SSDP on [127.0.0.1]"),
        "{}",
        other.log_tail(5)
    );
    assert_ne!(udn(&other), first, "another data dir, another device");
    // Without -dlna there is no /dlna/.
    let plain = Daemon::start_in(&dir, &[]);
    assert_eq!(plain.get("/dlna/description.xml").status, 404);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_flags_stop_the_daemon_with_a_reason() {
    // In a namespace too: a daemon that wrongly started would announce itself.
    let Some(_ns) = enter_private("bad_flags_stop_the_daemon_with_a_reason") else {
        return;
    };
    for (args, want) in [
        (
            &["-dlna", "-authToken=s3cret"][..],
            "-dlna cannot be used with -authToken",
        ),
        // All of 127.0.0.0/8 routes to `lo`, but only 127.0.0.1 is an address of it: SSDP
        // cannot run on the others (an address, not a route, is what it binds and announces).
        (
            &["-dlna", "-dlnaInterfaces=127.0.0.77"],
            "127.0.0.77 is not an address of this machine",
        ),
        (
            &["-dlna", "-dlnaInterfaces=nosuch0"],
            "\"nosuch0\" is neither an IPv4 address",
        ),
        (&["-dlna", "-dlnaInterfaces=,"], "no interface given"),
    ] {
        let dir = temp_dir("dlna-flags");
        let port = free_port();
        let r = Daemon::launch(
            &dir,
            vec![format!("-addr=127.0.0.1:{port}")],
            port,
            args.iter().map(|s| s.to_string()).collect(),
        );
        let err = r.err().unwrap_or_else(|| panic!("{args:?} started"));
        assert!(err.contains(want), "{args:?}: {err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn soap(d: &Daemon, service: &str, action: &str, args: &str) -> Resp {
    let ns = if service == "ConnectionManager" {
        CM
    } else {
        CDS
    };
    let body = format!(
        r#"<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:{action} xmlns:u="{ns}">{args}</u:{action}></s:Body></s:Envelope>"#
    );
    raw_soap(d, service, &format!("\"{ns}#{action}\""), body.as_bytes())
}

fn raw_soap(d: &Daemon, service: &str, soap_action: &str, body: &[u8]) -> Resp {
    d.req(
        "POST",
        &format!("/dlna/control/{service}"),
        &[
            ("Content-Type", "text/xml; charset=\"utf-8\""),
            ("SOAPACTION", soap_action),
        ],
        body,
        Duration::from_secs(30),
    )
}

fn browse_args(id: &str, flag: &str, start: &str, count: &str) -> String {
    format!(
        "<ObjectID>{id}</ObjectID><BrowseFlag>{flag}</BrowseFlag><Filter>*</Filter>\
         <StartingIndex>{start}</StartingIndex><RequestedCount>{count}</RequestedCount>\
         <SortCriteria></SortCriteria>"
    )
}

fn tag(t: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let s = t
        .find(&open)
        .map(|i| i + open.len())
        .unwrap_or_else(|| panic!("no {name}: {t}"));
    let e = t[s..].find(&format!("</{name}>")).unwrap() + s;
    t[s..e].to_owned()
}

fn assert_fault(r: &Resp, code: u16, what: &str) {
    let t = r.text();
    assert_eq!(r.status, 500, "{what}: {t}");
    assert_eq!(tag(&t, "errorCode"), code.to_string(), "{what}: {t}");
    let desc = tag(&t, "errorDescription");
    assert!(!desc.is_empty() && !desc.contains('\n'), "{what}: {desc:?}");
}

#[test]
fn bad_soap_gets_faults_and_4xx() {
    let Some(ns) = enter_private("bad_soap_gets_faults_and_4xx") else {
        return;
    };
    let d = start_in_ns(&ns, None, &["-dlna", "-dlnaInterfaces=127.0.0.1"]);
    let id = |d: &Daemon| {
        let r = soap(d, "ContentDirectory", "GetSystemUpdateID", "");
        assert_eq!(r.status, 200, "{}", r.text());
        tag(&r.text(), "Id")
    };
    let before = id(&d);
    let (ih, _) = upload_evil(&d);
    assert_ne!(
        id(&d),
        before,
        "SystemUpdateID moves when a torrent is added"
    );
    // A torrent without metadata yet: listed under its infohash, empty, never waited for.
    let waiting = random_ih();
    assert_eq!(d.get(&format!("/info?ih={waiting}&nowait=1")).status, 202);
    let r = soap(
        &d,
        "ContentDirectory",
        "Browse",
        &browse_args(&waiting, "BrowseMetadata", "0", "0"),
    );
    let didl = tag(&r.text(), "Result")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    assert!(
        didl.contains(&format!("<dc:title>{waiting}</dc:title>")),
        "{didl}"
    );
    assert!(didl.contains("childCount=\"0\""), "{didl}");
    let r = soap(
        &d,
        "ContentDirectory",
        "Browse",
        &browse_args(&waiting, "BrowseDirectChildren", "0", "0"),
    );
    assert_eq!(tag(&r.text(), "TotalMatches"), "0");
    let ok = soap(
        &d,
        "ContentDirectory",
        "Browse",
        &browse_args(&ih, "BrowseDirectChildren", "0", "0"),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(tag(&ok.text(), "TotalMatches"), "1");
    let r = soap(
        &d,
        "ContentDirectory",
        "Browse",
        &browse_args("0", "BrowseDirectChildren", "0", "0"),
    );
    assert_eq!(
        tag(&r.text(), "TotalMatches"),
        "2",
        "the upload and the waiting torrent"
    );
    let item = format!("{ih}/f0");

    let faults: Vec<(&str, Resp, u16)> = vec![
        ("not XML", raw_soap(&d, "ContentDirectory", "", b"not xml at all"), 402),
        ("empty body", raw_soap(&d, "ContentDirectory", "", b""), 402),
        ("truncated", raw_soap(&d, "ContentDirectory", "", b"<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><u:Browse"), 402),
        ("a DTD", raw_soap(&d, "ContentDirectory", "", b"<!DOCTYPE x [<!ENTITY a 'aaaa'>]><x>&a;</x>"), 402),
        ("nested 20 000 deep", raw_soap(&d, "ContentDirectory", "", deep().as_bytes()), 402),
        ("unknown entity", soap(&d, "ContentDirectory", "Browse", &browse_args("&nope;", "BrowseMetadata", "0", "0")), 402),
        ("unknown object", soap(&d, "ContentDirectory", "Browse", &browse_args(&"f".repeat(40), "BrowseMetadata", "0", "0")), 701),
        ("garbage object", soap(&d, "ContentDirectory", "Browse", &browse_args("&lt;script&gt;", "BrowseMetadata", "0", "0")), 701),
        ("object past the files", soap(&d, "ContentDirectory", "Browse", &browse_args(&format!("{ih}/f99"), "BrowseMetadata", "0", "0")), 701),
        ("non-media file", soap(&d, "ContentDirectory", "Browse", &browse_args(&format!("{ih}/f1"), "BrowseMetadata", "0", "0")), 701),
        ("children of an item", soap(&d, "ContentDirectory", "Browse", &browse_args(&item, "BrowseDirectChildren", "0", "0")), 710),
        ("negative StartingIndex", soap(&d, "ContentDirectory", "Browse", &browse_args("0", "BrowseDirectChildren", "-1", "0")), 402),
        ("RequestedCount past u32", soap(&d, "ContentDirectory", "Browse", &browse_args("0", "BrowseDirectChildren", "0", "99999999999")), 402),
        ("RequestedCount not a number", soap(&d, "ContentDirectory", "Browse", &browse_args("0", "BrowseDirectChildren", "0", "ten")), 402),
        ("bad BrowseFlag", soap(&d, "ContentDirectory", "Browse", &browse_args("0", "BrowseEverything", "0", "0")), 402),
        ("no ObjectID", soap(&d, "ContentDirectory", "Browse", "<BrowseFlag>BrowseMetadata</BrowseFlag>"), 402),
        ("unknown action", soap(&d, "ContentDirectory", "DestroyObject", "<ObjectID>0</ObjectID>"), 401),
        ("another service's action", soap(&d, "ConnectionManager", "Browse", ""), 401),
        ("SOAPACTION disagrees", raw_soap(&d, "ContentDirectory", &format!("\"{CDS}#Search\""), soap_body_browse().as_bytes()), 401),
        ("unknown connection", soap(&d, "ConnectionManager", "GetCurrentConnectionInfo", "<ConnectionID>7</ConnectionID>"), 706),
    ];
    for (what, r, code) in &faults {
        assert_fault(r, *code, what);
        d.assert_healthy();
    }

    // Huge paging is capped, not refused; past the end is empty.
    let r = soap(
        &d,
        "ContentDirectory",
        "Browse",
        &browse_args("0", "BrowseDirectChildren", "0", "4294967295"),
    );
    assert_eq!(
        (r.status, tag(&r.text(), "NumberReturned")),
        (200, "2".to_owned())
    );
    let r = soap(
        &d,
        "ContentDirectory",
        "Browse",
        &browse_args("0", "BrowseDirectChildren", "4294967295", "1"),
    );
    let t = r.text();
    assert_eq!(
        (r.status, tag(&t, "NumberReturned"), tag(&t, "TotalMatches")),
        (200, "0".to_owned(), "2".to_owned())
    );

    // Bodies over 64 KiB: 413 by Content-Length before reading, or as they arrive (chunked).
    let big = vec![b' '; 64 * 1024 + 1];
    let r = raw_soap(&d, "ContentDirectory", "", &big);
    assert_one_line_error(
        &r,
        413,
        "413 SOAP request body too large (limit 65536 bytes)",
        "big body",
    );
    let started = Instant::now();
    let r = raw_request(
        d.port,
        b"POST /dlna/control/ContentDirectory HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\nConnection: close\r\n\r\n<s:Envelope",
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut chunked = b"POST /dlna/control/ContentDirectory HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..80 {
        chunked.extend_from_slice(format!("{:x}\r\n{}\r\n", 1024, " ".repeat(1024)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = raw_request(d.port, &chunked, Duration::from_secs(30)).unwrap();
    assert_eq!(r.status, 413, "{}", r.text());

    // Wrong methods and paths.
    assert_eq!(d.get("/dlna/control/ContentDirectory").status, 405);
    assert_eq!(
        d.req(
            "POST",
            "/dlna/control/Nope",
            &[],
            b"",
            Duration::from_secs(10)
        )
        .status,
        404
    );
    assert_eq!(
        d.req(
            "POST",
            "/dlna/description.xml",
            &[],
            b"",
            Duration::from_secs(10)
        )
        .status,
        405
    );
    let r = d.req(
        "SUBSCRIBE",
        "/dlna/event/ContentDirectory",
        &[("CALLBACK", "<http://127.0.0.1:9/>"), ("NT", "upnp:event")],
        b"",
        Duration::from_secs(10),
    );
    assert_one_line_error(
        &r,
        501,
        "501 event subscriptions are not supported",
        "SUBSCRIBE",
    );
    d.assert_healthy();
}

/// A SOAP header nested 20 000 elements deep (60 KB: under the body limit).
fn deep() -> String {
    format!(
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header>{}"#,
        "<a>".repeat(20_000)
    )
}

fn soap_body_browse() -> String {
    format!(
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:Browse xmlns:u="{CDS}">{}</u:Browse></s:Body></s:Envelope>"#,
        browse_args("0", "BrowseMetadata", "0", "0")
    )
}

#[test]
fn data_speaks_dlna_headers() {
    let Some(ns) = enter_private("data_speaks_dlna_headers") else {
        return;
    };
    let d = start_in_ns(&ns, None, &["-dlna", "-dlnaInterfaces=127.0.0.1"]);
    let (ih, data) = upload_evil(&d);
    let target = format!(
        "/data/infohash/{ih}/{}/{}",
        penc_path(EVIL_DIR),
        penc_path(EVIL_FILE)
    );
    let r = d.req(
        "HEAD",
        &target,
        &[
            ("transferMode.dlna.org", "Streaming"),
            ("getcontentFeatures.dlna.org", "1"),
        ],
        b"",
        Duration::from_secs(30),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.content_length(), Some(data.len() as u64));
    assert!(r.body.is_empty());
    assert_eq!(r.header("transferMode.dlna.org"), Some("Streaming"));
    assert_eq!(
        r.header("contentFeatures.dlna.org"),
        Some("DLNA.ORG_OP=01;DLNA.ORG_CI=0;DLNA.ORG_FLAGS=01700000000000000000000000000000")
    );
    let r = d.get_h(
        &target,
        &[
            ("transferMode.dlna.org", "interactive"),
            ("Range", "bytes=100-199"),
        ],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[100..200]);
    assert_eq!(r.header("transferMode.dlna.org"), Some("Interactive"));
    assert_eq!(r.header("contentFeatures.dlna.org"), None, "not asked for");
    let r = d.get_h(&target, &[("transferMode.dlna.org", "Teleport")]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("transferMode.dlna.org"),
        None,
        "unknown modes are not echoed"
    );
}

/// Listens for SSDP NOTIFYs to the group on `lo` (stdlib Python) until 1 s after the first
/// byebye of `uuid`, or 30 s; prints one JSON object per NOTIFY of that device. Bound to the
/// group's address, so it gets only datagrams sent to the group.
const NOTIFY_LISTENER: &str = r#"
import json, socket, sys, time
uuid, ready = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("239.255.255.250", 1900))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             socket.inet_aton("239.255.255.250") + socket.inet_aton("127.0.0.1"))
open(ready, "w").close()
deadline = time.time() + 30
while time.time() < deadline:
    s.settimeout(max(0.1, deadline - time.time()))
    try:
        data, _ = s.recvfrom(8192)
    except socket.timeout:
        break
    lines = data.decode("utf-8", "replace").split("\r\n")
    if not lines[0].startswith("NOTIFY "):
        continue
    h = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if ":" in l)}
    if not h.get("usn", "").startswith(uuid):
        continue
    print(json.dumps(h), flush=True)
    if h.get("nts") == "ssdp:byebye":
        deadline = min(deadline, time.time() + 1)
"#;

/// A child process that is killed (by PID) and reaped if the test ends before it does.
struct Reaped(Option<Child>);

impl Reaped {
    fn id(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }

    /// Its output once it exits, or once `limit` has passed (then it is killed).
    fn output_within(&mut self, limit: Duration) -> std::process::Output {
        let mut child = self.0.take().expect("running");
        let deadline = Instant::now() + limit;
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait_with_output().unwrap()
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn notify_alive_at_start_and_byebye_at_stop() {
    let Some(ns) = enter_private("notify_alive_at_start_and_byebye_at_stop") else {
        return;
    };
    let dir = temp_dir("dlna-notify");
    std::fs::create_dir_all(&dir).unwrap();
    let uuid = "uuid:0a1b2c3d-1111-4222-8333-444444444444";
    std::fs::write(dir.join("dlna-uuid"), format!("{uuid}\n")).unwrap();
    let ready = dir.join("listener-ready");
    let mut listener = Reaped(Some(
        Command::new("python3")
            .args(["-c", NOTIFY_LISTENER, uuid])
            .arg(&ready)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3"),
    ));
    ns.assert_holds(listener.id(), "the NOTIFY listener");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ready.exists(), "the NOTIFY listener did not start");
    let mut d = start_in_ns(&ns, Some(&dir), &["-dlna", "-dlnaInterfaces=127.0.0.1"]);
    assert_eq!(udn(&d), uuid, "an existing dlna-uuid is used");
    // The first two announcements go out at 0 and 1 s.
    std::thread::sleep(Duration::from_millis(1500));
    let location = d.url("/dlna/description.xml");
    d.stop();
    let out = listener.output_within(Duration::from_secs(40));
    let text = String::from_utf8_lossy(&out.stdout);
    let seen: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let nts = |kind: &str| -> Vec<String> {
        let mut v: Vec<String> = seen
            .iter()
            .filter(|h| h["nts"] == kind)
            .map(|h| h["nt"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let mut all = vec![
        "upnp:rootdevice".to_owned(),
        uuid.to_owned(),
        MEDIA_SERVER.to_owned(),
        CDS.to_owned(),
        CM.to_owned(),
    ];
    all.sort();
    assert_eq!(nts("ssdp:alive"), all, "alive: {text}");
    assert_eq!(nts("ssdp:byebye"), all, "byebye: {text}");
    for h in seen.iter().filter(|h| h["nts"] == "ssdp:alive") {
        assert_eq!(h["location"], location.as_str(), "{h}");
        assert_eq!(h["cache-control"], "max-age=1800", "{h}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the tests above rely on: inside the namespace there is no route, so multicast leaves only
/// from a socket tied to `lo`'s 127.0.0.1 (bound to it, or naming it with `IP_MULTICAST_IF`);
/// threads spawned inside are inside; the thread leaves the namespace with the guard.
#[test]
fn the_private_namespace_is_lo_only_and_is_left() {
    let outer = netns::current();
    {
        let Some(ns) = enter_private("the_private_namespace_is_lo_only_and_is_left") else {
            return;
        };
        assert!(netns::is_private());
        assert_ne!(ns.id, outer);
        let group = "239.255.255.250:1900";
        let any = std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let e = any
            .send_to(b"M-SEARCH", group)
            .expect_err("multicast from an unbound socket has no route in the namespace");
        assert_eq!(e.raw_os_error(), Some(libc::ENETUNREACH), "{e}");
        let lo = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        lo.send_to(b"M-SEARCH", group)
            .expect("multicast from 127.0.0.1 goes out of lo");
        // A thread spawned inside inherits the namespace.
        let id = std::thread::spawn(netns::current).join().unwrap();
        assert_eq!(id, ns.id, "a thread spawned inside");
    }
    assert_eq!(netns::current(), outer, "the thread is back where it was");
    assert!(!netns::is_private());
}
