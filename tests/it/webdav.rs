//! Issue 16 (WebDAV half): the read-only share `/dav/`, against the real binary, the harness
//! swarm and real clients: raw PROPFIND (parsed by Python's XML parser), `rclone` and a davfs2
//! mount. Loopback only; every process and mount is bounded and cleaned up.

use crate::common;

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::{
    assert_bytes_eq, assert_no_panic,
    bencode::{fake_info, file_entry, metainfo, Benc},
    fuse::{can_mount, mounted, run_ok, sha256sum, MountDir, TRACKER},
    run_bounded, serial, sha256_hex, swarm, temp_dir, Daemon, Resp, Swarm,
};

const T: Duration = Duration::from_secs(60);
const ALLPROP: &[u8] = br#"<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>"#;

fn propfind(
    d: &Daemon,
    path: &str,
    depth: Option<&str>,
    body: &[u8],
    auth: &[(&str, &str)],
) -> Resp {
    let mut h: Vec<(&str, &str)> = vec![("Content-Type", "application/xml")];
    if let Some(dp) = depth {
        h.push(("Depth", dp));
    }
    h.extend_from_slice(auth);
    d.req("PROPFIND", path, &h, body, T)
}

/// One `<D:response>`: its href, its 200 properties (local name → text; `resourcetype` is
/// `collection` or empty) and the names its 404 propstat lists.
#[derive(Debug)]
struct Entry {
    href: String,
    props: BTreeMap<String, String>,
    missing: Vec<String>,
}

/// Parses a 207 body with Python's XML parser: proves it well-formed and namespaced.
fn multistatus(r: &Resp) -> Vec<Entry> {
    assert_eq!(r.status, 207, "PROPFIND: {}", r.text());
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("application/xml"), "Content-Type {ct:?}");
    let dir = temp_dir("davxml");
    let f = dir.join("body.xml");
    fs::write(&f, &r.body).unwrap();
    let script = r#"
import json, sys, xml.etree.ElementTree as ET
D = '{DAV:}'
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == D + 'multistatus', root.tag
out = []
for resp in root.findall(D + 'response'):
    e = {'href': resp.find(D + 'href').text, 'props': {}, 'missing': []}
    for ps in resp.findall(D + 'propstat'):
        status = ps.find(D + 'status').text
        for p in ps.find(D + 'prop'):
            name = p.tag.split('}')[-1] if p.tag.startswith(D) else p.tag
            if ' 200 ' in status:
                if name == 'resourcetype':
                    e['props'][name] = 'collection' if p.find(D + 'collection') is not None else ''
                else:
                    e['props'][name] = p.text or ''
            else:
                e['missing'].append(name)
    out.append(e)
print(json.dumps(out))
"#;
    let out = run_ok(
        Command::new("python3").arg("-c").arg(script).arg(&f),
        Duration::from_secs(30),
    );
    let _ = fs::remove_dir_all(&dir);
    let v: serde_json::Value = serde_json::from_str(&out).expect("python output");
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| Entry {
            href: e["href"].as_str().unwrap().to_string(),
            props: e["props"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect(),
            missing: e["missing"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect(),
        })
        .collect()
}

fn post(d: &Daemon, s: &Swarm, key: &str) -> String {
    let ih = s.ih(key);
    d.post_metainfo(&s.torrent_bytes(key), &ih);
    ih
}

/// PROPFIND Depth 0 and 1 on the root, a torrent and a nested directory; hrefs percent-encoded;
/// the props a client needs; Depth infinity refused; unknown props in a 404 propstat.
#[test]
fn propfind_lists_the_mount_tree() {
    let _g = serial();
    let s = swarm();
    let d = Daemon::start(&[TRACKER]);
    let multi = post(&d, s, "multi");

    let root = multistatus(&propfind(&d, "/dav/", Some("1"), b"", &[]));
    assert_eq!(root[0].href, "/dav/");
    assert_eq!(root[0].props["resourcetype"], "collection");
    let top = format!("/dav/{multi}/");
    assert!(root.iter().any(|e| e.href == top), "{root:?}");

    let zero = multistatus(&propfind(&d, &top, Some("0"), ALLPROP, &[]));
    assert_eq!(zero.len(), 1, "{zero:?}");
    assert_eq!(zero[0].props["resourcetype"], "collection");
    assert_eq!(
        zero[0].props["getlastmodified"],
        "Thu, 01 Jan 1970 00:00:00 GMT"
    );

    let list = multistatus(&propfind(&d, &top, Some("1"), ALLPROP, &[]));
    let t = s.torrent("multi");
    let by_href: BTreeMap<_, _> = list.iter().map(|e| (e.href.as_str(), e)).collect();
    let uni = "\u{fc}n\u{ef}c\u{f8}d\u{e9} \u{444}\u{430}\u{439}\u{43b}.txt";
    for (name, len) in [
        ("empty.bin", 0u64),
        ("one.bin", 1),
        (uni, 7500),
        ("z last.bin", 1048583),
    ] {
        let href = format!("{top}{}", common::qenc(name));
        let e = by_href
            .get(href.as_str())
            .unwrap_or_else(|| panic!("{href} in {list:?}"));
        assert_eq!(e.props["displayname"], name);
        assert_eq!(e.props["getcontentlength"], len.to_string());
        assert_eq!(e.props["resourcetype"], "");
        assert!(
            e.props["getetag"].starts_with(&format!("\"{multi}-")),
            "{e:?}"
        );
        assert_eq!(e.props["creationdate"], "1970-01-01T00:00:00Z");
    }
    for dir in ["with%20space/", "dir/"] {
        let e = by_href[format!("{top}{dir}").as_str()];
        assert_eq!(e.props["resourcetype"], "collection", "{e:?}");
    }
    // Torrent order, the torrent directory first.
    assert_eq!(list.len(), 1 + 6, "{list:?}");
    assert_eq!(t.files.len(), 7);

    let nested = multistatus(&propfind(
        &d,
        &format!("{top}with%20space/nested%20deeper"),
        Some("1"),
        b"",
        &[],
    ));
    assert_eq!(nested.len(), 2, "{nested:?}");
    assert_eq!(
        nested[0].href,
        format!("{top}with%20space/nested%20deeper/")
    );
    assert_eq!(nested[1].props["getcontentlength"], "3158073");
    assert_eq!(
        nested[1].props["getcontenttype"],
        "application/octet-stream"
    );

    // prop: the known ones at 200, the rest in a 404 propstat.
    let body = br#"<propfind xmlns="DAV:" xmlns:x="urn:x"><prop><getcontentlength/><x:color/><quota-used-bytes/></prop></propfind>"#;
    let one = multistatus(&propfind(
        &d,
        &format!("{top}dir/a.bin"),
        Some("0"),
        body,
        &[],
    ));
    assert_eq!(
        one[0].props.keys().collect::<Vec<_>>(),
        ["getcontentlength"]
    );
    assert_eq!(one[0].props["getcontentlength"], "65536");
    assert_eq!(one[0].missing, ["{urn:x}color", "quota-used-bytes"]);
    // propname: names, no values.
    let names = multistatus(&propfind(
        &d,
        &format!("{top}dir/a.bin"),
        Some("0"),
        br#"<D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>"#,
        &[],
    ));
    assert!(
        names[0].props.contains_key("getetag") && names[0].props["getcontentlength"].is_empty()
    );

    for depth in [Some("infinity"), None] {
        let r = propfind(&d, &top, depth, b"", &[]);
        assert_eq!(r.status, 403, "Depth {depth:?}: {}", r.text());
        assert_eq!(r.text().lines().count(), 1);
    }
    let r = propfind(&d, &format!("{top}nope.bin"), Some("0"), b"", &[]);
    assert_eq!(r.status, 404);
    d.assert_healthy();
}

/// An infohash the daemon has never seen is added by naming it, as in the mount.
#[test]
fn unknown_infohash_is_added_on_demand() {
    let _g = serial();
    let s = swarm();
    let d = Daemon::start(&[TRACKER]);
    let many = s.ih("many");
    let top = format!("/dav/{many}/");
    // Depth 0 on the torrent directory answers at once, without the metadata.
    let zero = multistatus(&propfind(&d, &top, Some("0"), b"", &[]));
    assert_eq!(zero[0].props["resourcetype"], "collection");
    let list = multistatus(&propfind(&d, &top, Some("1"), b"", &[]));
    assert_eq!(list.len(), 41, "{list:?}");
    assert_eq!(list[1].href, format!("{top}f00.bin"));
    assert_eq!(list[1].props["getcontentlength"], (4u64 << 20).to_string());
    let r = d.get_h(&format!("{top}f07.bin"), &[("Range", "bytes=100-199")]);
    assert_eq!(r.status, 206);
    let want = s.payload("many/f07.bin");
    assert_bytes_eq(&r.body, &want[100..200], "f07.bin 100-199");
}

/// GET/HEAD with Range through `/data`'s path; OPTIONS; writes and other methods refused.
#[test]
fn get_range_options_and_refused_writes() {
    let _g = serial();
    let s = swarm();
    let d = Daemon::start(&[TRACKER]);
    let multi = post(&d, s, "multi");
    let href = format!("/dav/{multi}/z%20last.bin");
    let want = s.payload("multi/z last.bin");
    let full = d.get(&href);
    assert_eq!(full.status, 200);
    assert_bytes_eq(&full.body, &want, "GET z last.bin");
    assert_eq!(full.header("etag").unwrap(), format!("\"{multi}-6\""));
    assert_eq!(
        full.header("last-modified"),
        Some("Thu, 01 Jan 1970 00:00:00 GMT")
    );
    let part = d.get_h(&href, &[("Range", "bytes=-7")]);
    assert_eq!(part.status, 206);
    assert_bytes_eq(&part.body, &want[want.len() - 7..], "suffix range");
    let head = d.req("HEAD", &href, &[], b"", T);
    assert_eq!(head.status, 200);
    assert_eq!(head.content_length(), Some(want.len() as u64));
    assert!(head.body.is_empty());

    let opt = d.req("OPTIONS", "/dav/", &[], b"", T);
    assert_eq!(opt.status, 200);
    assert_eq!(opt.header("dav"), Some("1"));
    assert!(opt.header("allow").unwrap().contains("PROPFIND"));

    for m in [
        "PUT",
        "DELETE",
        "MKCOL",
        "MOVE",
        "COPY",
        "PROPPATCH",
        "LOCK",
        "UNLOCK",
        "BREW",
    ] {
        let r = d.req(m, &href, &[("Destination", "/dav/x")], b"x", T);
        assert_eq!(r.status, 405, "{m}: {}", r.text());
        assert_eq!(r.text().lines().count(), 1, "{m}: {}", r.text());
        assert!(r.header("allow").is_some(), "{m}");
    }
    // A collection has no body.
    let r = d.get(&format!("/dav/{multi}/dir/"));
    assert_eq!(r.status, 405);
    let r = d.get(&format!("/dav/{multi}/dir/nope"));
    assert_eq!(r.status, 404);
    d.assert_healthy();
    assert_no_panic(&d);
}

// ------------------------------------------------------------------------------------------
// rclone

/// rclone with no config file of its own: `:webdav:` plus `--webdav-url`, HOME in a temp dir.
fn rclone(d: &Daemon, args: &[&str], out: &Path) -> std::process::ExitStatus {
    let home = temp_dir("rclone-home");
    let mut child = Command::new("rclone")
        .args(args)
        .arg(format!("--webdav-url=http://127.0.0.1:{}/dav/", d.port))
        .args([
            "--webdav-vendor=other",
            "--low-level-retries=1",
            "--retries=1",
        ])
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", &home)
        .env("XDG_CACHE_HOME", &home)
        .env("RCLONE_CONFIG", home.join("none.conf"))
        .stdin(Stdio::null())
        .stdout(fs::File::create(out).unwrap())
        .stderr(fs::File::create(out.with_extension("err")).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run rclone (apt-get install rclone): {e}"));
    let deadline = Instant::now() + Duration::from_secs(120);
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rclone {args:?} took over 120 s");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let _ = fs::remove_dir_all(&home);
    if !st.success() {
        let err = fs::read_to_string(out.with_extension("err")).unwrap_or_default();
        panic!("rclone {args:?} failed ({st}): {err}");
    }
    st
}

/// rclone lists the tree and `cat`s files byte-exact, whole and as a range; with
/// `-authToken` it logs in with Basic auth (any user, the token as password).
#[test]
fn rclone_lists_and_cats_byte_exact() {
    let _g = serial();
    let s = swarm();
    let d = Daemon::start(&[TRACKER, "-authToken=dav-s3cret"]);
    let r = d.req("PROPFIND", "/dav/", &[("Depth", "0")], b"", T);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Basic realm="confluence", charset="UTF-8""#)
    );
    // Basic: any user name, the token as password; a wrong password is refused.
    let basic = |cred: &str| format!("Basic {}", data_encoding::BASE64.encode(cred.as_bytes()));
    for (cred, status) in [
        ("anyone:dav-s3cret", 207),
        (":dav-s3cret", 207),
        ("anyone:dav-s3cre", 401),
        ("dav-s3cret", 401),
    ] {
        let auth = basic(cred);
        let r = propfind(&d, "/dav/", Some("0"), b"", &[("Authorization", &auth)]);
        assert_eq!(r.status, status, "Basic {cred:?}: {}", r.text());
    }
    d.req(
        "POST",
        "/metainfo?token=dav-s3cret",
        &[],
        &s.torrent_bytes("multi"),
        T,
    );
    d.req(
        "POST",
        "/metainfo?token=dav-s3cret",
        &[],
        &s.torrent_bytes("single"),
        T,
    );
    let (multi, single) = (s.ih("multi"), s.ih("single"));
    let dir = temp_dir("rclone");
    let out = dir.join("out");
    let obscured = run_ok(
        Command::new("rclone").args(["obscure", "dav-s3cret"]),
        Duration::from_secs(30),
    );
    let user = "--webdav-user=anyone".to_string();
    let pass = format!("--webdav-pass={}", obscured.trim());
    let auth = [user.as_str(), pass.as_str()];
    let run = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend_from_slice(&auth);
        rclone(&d, &a, &out);
        fs::read(&out).unwrap()
    };

    let root = String::from_utf8(run(&["lsf", ":webdav:"])).unwrap();
    assert!(root.lines().any(|l| l == format!("{multi}/")), "{root}");
    let listing = String::from_utf8(run(&["lsjson", "-R", &format!(":webdav:{multi}")])).unwrap();
    let v: serde_json::Value = serde_json::from_str(&listing).unwrap();
    let t = s.torrent("multi");
    for (path, len) in &t.files {
        let e = v
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["Path"] == path.as_str())
            .unwrap_or_else(|| panic!("{path} not in {listing}"));
        assert_eq!(e["Size"].as_u64(), Some(*len), "{path}");
    }

    for (path, rel) in [
        (
            "with space/nested deeper/odd.bin",
            "multi/with space/nested deeper/odd.bin",
        ),
        (
            "\u{fc}n\u{ef}c\u{f8}d\u{e9} \u{444}\u{430}\u{439}\u{43b}.txt",
            "multi/\u{fc}n\u{ef}c\u{f8}d\u{e9} \u{444}\u{430}\u{439}\u{43b}.txt",
        ),
    ] {
        let got = run(&["cat", &format!(":webdav:{multi}/{path}")]);
        assert_bytes_eq(&got, &s.payload(rel), path);
    }
    let big = s.payload("big.bin");
    let got = run(&["cat", &format!(":webdav:{single}/big.bin")]);
    assert_eq!(sha256_hex(&got), sha256_hex(&big), "rclone cat big.bin");
    let got = run(&[
        "cat",
        "--offset=1000000",
        "--count=300000",
        &format!(":webdav:{single}/big.bin"),
    ]);
    assert_bytes_eq(
        &got,
        &big[1_000_000..1_300_000],
        "rclone cat --offset --count",
    );
    let _ = fs::remove_dir_all(&dir);
    d.assert_healthy();
}

// ------------------------------------------------------------------------------------------
// davfs2

/// A davfs2 mount of `/dav/` (with `-authToken`, credentials from a secrets file): the
/// sha256 of files read through it matches the payload. Unmounted always, bounded.
#[test]
fn davfs2_mount_reads_files() {
    if !can_mount("davfs2_mount_reads_files") {
        return;
    }
    assert!(
        Path::new("/sbin/mount.davfs").exists() || Path::new("/usr/sbin/mount.davfs").exists(),
        "mount.davfs is missing: apt-get install davfs2 (tests/deps.txt)"
    );
    let _g = serial();
    let s = swarm();
    let d = Daemon::start(&[TRACKER, "-authToken=davfs-token"]);
    d.req(
        "POST",
        "/metainfo?token=davfs-token",
        &[],
        &s.torrent_bytes("single"),
        T,
    );
    d.req(
        "POST",
        "/metainfo?token=davfs-token",
        &[],
        &s.torrent_bytes("multi"),
        T,
    );
    let (single, multi) = (s.ih("single"), s.ih("multi"));

    let dir = temp_dir("davfs");
    let url = format!("http://127.0.0.1:{}/dav/", d.port);
    let secrets = dir.join("secrets");
    fs::write(&secrets, format!("{url} someone davfs-token\n")).unwrap();
    fs::set_permissions(&secrets, fs::Permissions::from_mode(0o600)).unwrap();
    let conf = dir.join("davfs2.conf");
    fs::write(
        &conf,
        // buf_size 64: davfs2 1.6/1.7 cannot list a directory on Linux >= 6.16 with its default
        // buffer (getdents fails with EINVAL, davfs2 issue #22).
        format!(
            "secrets {}\nuse_locks 0\nask_auth 0\nbuf_size 64\n",
            secrets.display()
        ),
    )
    .unwrap();
    let mnt = MountDir::new();
    let (st, out, err) = run_bounded(
        Command::new("mount")
            .args(["-t", "davfs", "-o"])
            .arg(format!("ro,conf={}", conf.display()))
            .arg(&url)
            .arg(&mnt.0),
        Duration::from_secs(60),
    );
    assert!(
        st.is_some_and(|s| s.success()) && mounted(&mnt.0),
        "mount -t davfs failed ({st:?}): {err}{out}"
    );
    let result = std::panic::catch_unwind(|| {
        let root = common::fuse::ls(&mnt.0);
        assert!(root.contains(&single) && root.contains(&multi), "{root:?}");
        let odd = mnt.0.join(&multi).join("with space/nested deeper/odd.bin");
        let want = sha256_hex(&s.payload("multi/with space/nested deeper/odd.bin"));
        assert_eq!(sha256sum(&odd), want, "odd.bin through davfs2");
        let big = mnt.0.join(&single).join("big.bin");
        assert_eq!(
            sha256sum(&big),
            sha256_hex(&s.payload("big.bin")),
            "big.bin through davfs2"
        );
        // Read-only.
        let w = fs::write(mnt.0.join(&multi).join("new.txt"), b"x");
        assert!(w.is_err(), "a write through the davfs2 mount succeeded");
    });
    let (st, _, err) = run_bounded(Command::new("umount").arg(&mnt.0), Duration::from_secs(60));
    if !st.is_some_and(|s| s.success()) {
        eprintln!("umount {}: {st:?} {err}", mnt.0.display());
    }
    drop(mnt); // lazily unmounts if still mounted
    let _ = fs::remove_dir_all(&dir);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    d.assert_healthy();
}

/// A metainfo (no seeder needed) of `n` one-byte files in directory `big/` plus files whose
/// names XML and URLs must escape, created at 1700000000. Returns (metainfo, hex infohash).
fn crafted_torrent(n: usize) -> (Vec<u8>, String) {
    let mut files = vec![
        file_entry(&[b"<a href=\"x\">&amp;<b>.txt"], 1),
        file_entry(&[b"ctl\x01\x7f.bin"], 1),
        file_entry(&[b"100% #?;.txt"], 1),
    ];
    for i in 0..n {
        files.push(file_entry(&[b"big", format!("f{i:05}.bin").as_bytes()], 1));
    }
    let info = fake_info(("files", Benc::List(files)), b"crafted", n as u64 + 3, 9);
    metainfo(vec![("creation date", Benc::Int(1_700_000_000))], info)
}

/// A directory of 3000 entries streams (chunked) as one well-formed multistatus that rclone
/// lists too; names with markup, control characters and URL syntax come back escaped; dates
/// are the torrent's creation date.
#[test]
fn big_listings_stream_and_names_are_escaped() {
    let d = Daemon::start(&["-torrentGrace=1s"]);
    let (torrent, ih) = crafted_torrent(3000);
    d.post_metainfo(&torrent, &ih);
    let r = propfind(&d, &format!("/dav/{ih}/big/"), Some("1"), ALLPROP, &[]);
    assert_eq!(
        r.header("transfer-encoding"),
        Some("chunked"),
        "a big listing streams"
    );
    let list = multistatus(&r);
    assert_eq!(list.len(), 3001);
    assert_eq!(list[3000].href, format!("/dav/{ih}/big/f02999.bin"));
    assert_eq!(
        list[3000].props["getlastmodified"],
        "Tue, 14 Nov 2023 22:13:20 GMT"
    );
    assert_eq!(list[3000].props["creationdate"], "2023-11-14T22:13:20Z");

    let top = multistatus(&propfind(&d, &format!("/dav/{ih}/"), Some("1"), b"", &[]));
    assert!(top.len() == 5, "{top:?}");
    let names: Vec<(&str, &str)> = top[1..]
        .iter()
        .map(|e| (e.href.as_str(), e.props["displayname"].as_str()))
        .collect();
    let base = format!("/dav/{ih}/");
    assert_eq!(
        names,
        [
            (
                format!("{base}%3Ca%20href%3D%22x%22%3E%26amp%3B%3Cb%3E.txt").as_str(),
                "<a href=\"x\">&amp;<b>.txt"
            ),
            (
                format!("{base}ctl%01%7F.bin").as_str(),
                "ctl\u{fffd}\u{7f}.bin"
            ),
            (
                format!("{base}100%25%20%23%3F%3B.txt").as_str(),
                "100% #?;.txt"
            ),
            (format!("{base}big/").as_str(), "big"),
        ]
    );

    // A real client follows the escaped hrefs and the chunked listing.
    let dir = temp_dir("rclone-big");
    let out = dir.join("out");
    rclone(&d, &["lsf", &format!(":webdav:{ih}/big")], &out);
    assert_eq!(fs::read_to_string(&out).unwrap().lines().count(), 3000);
    rclone(&d, &["lsf", &format!(":webdav:{ih}")], &out);
    let top = fs::read_to_string(&out).unwrap();
    assert!(top.lines().any(|l| l == "100% #?;.txt"), "{top}");
    let _ = fs::remove_dir_all(&dir);
    d.assert_healthy();
}
