//! Issue 15 (part B): directory listings, playlists, links behind a reverse proxy, CORS.
//!
//! Listings of `multi` (HTML followed link by link into the nested directories and the unicode
//! file, JSON with absolute URLs), playlists (natural order, absolute URLs, the token in every
//! link), mpv playing `/playlist?ih=<media>`, the repository's nginx example in front of the
//! daemon on loopback (`https` and `/torrents/` in every URL; forged headers from an untrusted
//! client ignored) and CORS preflights.

use crate::common;

use std::{
    fs,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::{
    assert_bytes_eq, assert_one_line_error,
    bencode::{fake_info, file_entry, metainfo, Benc},
    penc_path, qenc, random_ih, run_bounded, serial, swarm, temp_dir, Daemon, Resp,
};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);
const JSON: (&str, &str) = ("Accept", "application/json");
/// What Firefox sends for a page.
const BROWSER: (&str, &str) = (
    "Accept",
    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
);

/// The `href` values of a page, `&amp;` decoded.
fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|s| s.split_once('"'))
        .map(|(h, _)| h.replace("&amp;", "&"))
        .collect()
}

/// Resolves a relative `href` (`./x`, `../x`, `x/`) against the directory URL path `base`
/// (ending in `/`).
fn resolve(base: &str, href: &str) -> String {
    let mut segs: Vec<&str> = base.trim_end_matches('/').split('/').collect();
    let mut rest = href;
    loop {
        if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("../") {
            segs.pop();
            rest = r;
        } else {
            break;
        }
    }
    format!("{}/{rest}", segs.join("/"))
}

/// The link of the page whose text is `label`.
fn link_to(html: &str, label: &str) -> String {
    let needle = format!("\">{label}</a>");
    let end = html
        .find(&needle)
        .unwrap_or_else(|| panic!("no link {label:?} in {html}"));
    let start = html[..end].rfind("href=\"").expect("href") + 6;
    html[start..end].replace("&amp;", "&")
}

fn json(r: &Resp, what: &str) -> Value {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{what}: {e}: {}", r.text()))
}

/// (name, path, size, is_dir, url) of a JSON listing.
fn rows(v: &Value) -> Vec<(String, String, u64, bool, String)> {
    v.as_array()
        .expect("a JSON array")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["path"].as_str().unwrap().to_string(),
                e["size"].as_u64().unwrap(),
                e["is_dir"].as_bool().unwrap(),
                e["url"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn listings_of_a_multi_file_torrent_in_html_and_json() {
    let _g = serial();
    let s = swarm();
    let ih = s.ih("multi");
    let t = s.torrent("multi");
    let d = Daemon::start(&["-torrentGrace=1s"]);
    d.post_metainfo(&s.torrent_bytes("multi"), &ih);
    let origin = format!("http://127.0.0.1:{}", d.port);
    let root = format!("/data/infohash/{ih}/");

    // JSON: directories first, then files, each in natural order; absolute, encoded URLs.
    let v = json(&d.get_h(&root, &[JSON]), "root listing");
    let unicode = "ünïcødé файл.txt";
    let want: Vec<(&str, u64, bool)> = vec![
        ("dir", 65536 + 65537, true),
        ("with space", 3158073, true),
        ("empty.bin", 0, false),
        ("one.bin", 1, false),
        ("z last.bin", 1048583, false),
        (unicode, 7500, false),
    ];
    let got = rows(&v);
    assert_eq!(
        got.iter()
            .map(|r| (r.0.as_str(), r.2, r.3))
            .collect::<Vec<_>>(),
        want
    );
    for (name, path, _, is_dir, url) in &got {
        assert_eq!(name, path, "root entries: path is the name");
        let want_url = format!(
            "{origin}{root}{}{}",
            qenc(name),
            if *is_dir { "/" } else { "" }
        );
        assert_eq!(url, &want_url);
    }
    let uni_url = &got[5].4;
    assert!(uni_url.ends_with("/%C3%BCn%C3%AFc%C3%B8d%C3%A9%20%D1%84%D0%B0%D0%B9%D0%BB.txt"));
    let r = d.get(uni_url.strip_prefix(&origin).unwrap());
    assert_eq!(r.status, 200);
    assert_bytes_eq(&r.body, &s.file_payload(&t, unicode), unicode);

    let v = json(
        &d.get_h(&format!("{root}with%20space/"), &[JSON]),
        "sub-dir",
    );
    assert_eq!(
        rows(&v),
        [(
            "nested deeper".to_string(),
            "with space/nested deeper".to_string(),
            3158073,
            true,
            format!("{origin}{root}with%20space/nested%20deeper/")
        )]
    );

    // HTML, as a browser follows it: root → "with space/" → "nested deeper/" → odd.bin.
    let r = d.get_h(&root, &[BROWSER]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("vary"), Some("Accept"));
    let page = r.text();
    assert!(page.contains("<title>Index of multi/</title>"), "{page}");
    let r = d.req("HEAD", &root, &[JSON], b"", T);
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(page.contains(&format!(">{unicode}</a>")), "{page}");
    let href = link_to(&page, unicode);
    assert_eq!(href, format!("./{}", qenc(unicode)));
    let r = d.get(&resolve(&root, &href));
    assert_bytes_eq(
        &r.body,
        &s.file_payload(&t, unicode),
        "unicode file by its link",
    );
    let sub = resolve(&root, &link_to(&page, "with space/"));
    assert_eq!(sub, format!("{root}with%20space/"));
    let page = d.get_h(&sub, &[BROWSER]).text();
    let deeper = resolve(&sub, &link_to(&page, "nested deeper/"));
    let r = d.get(&deeper);
    assert_eq!(r.status, 200);
    let page = r.text();
    assert!(page.contains("Index of multi/with space/nested deeper/"));
    assert_eq!(resolve(&deeper, &link_to(&page, "Parent directory")), sub);
    assert_eq!(resolve(&deeper, &link_to(&page, "multi")), root);
    let playlist = resolve(&deeper, &link_to(&page, "Playlist (m3u8)"));
    assert_eq!(playlist, format!("/playlist?ih={ih}"));
    let odd = resolve(&deeper, &link_to(&page, "odd.bin"));
    let r = d.get(&odd);
    assert_eq!(r.status, 200);
    assert_bytes_eq(
        &r.body,
        &s.file_payload(&t, "with space/nested deeper/odd.bin"),
        "odd.bin by its link",
    );
    assert_eq!(r.header("x-accel-buffering"), Some("no"), "stream header");
    assert!(
        hrefs(&page).iter().all(|h| !h.contains("//")),
        "no absolute links"
    );

    // The root without asking for HTML or JSON is still the whole torrent (the original's).
    for accept in [None, Some("*/*")] {
        let h: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
        let r = d.req("HEAD", &root, &h, b"", T);
        assert_eq!(r.status, 200);
        assert_eq!(r.content_length(), Some(t.total_length()), "{accept:?}");
        assert_eq!(r.header("vary"), Some("Accept"));
    }
    // A directory without its slash is redirected (relative, so it works under a prefix); a
    // file with one, or a directory that is not there, is a 404.
    let r = d.get(&format!("{root}dir?x=1"));
    assert_eq!((r.status, r.header("location")), (301, Some("dir/?x=1")));
    let r = d.get(&format!("{root}with%20space/nested%20deeper"));
    assert_eq!(r.header("location"), Some("nested%20deeper/"));
    for bad in ["dir/a.bin/", "nope/", "dir/nope/", "one.bin/", "%2e%2e/"] {
        let r = d.get_h(&format!("{root}{bad}"), &[JSON]);
        assert_one_line_error(&r, 404, "file not found", bad);
    }
    let r = d.get(&format!("{root}dir/../"));
    assert_eq!((r.status, r.header("location")), (301, Some(root.as_str())));
    let r = d.get_h(
        &format!("/data/infohash/{}/?nowait=1", random_ih()),
        &[JSON],
    );
    assert_one_line_error(&r, 202, "info not ready", "unknown torrent, nowait");
    let r = d.get_h(
        &format!("{root}dir/"),
        &[("Accept", &"text/plain;q=0.1,".repeat(1000))],
    );
    assert_eq!(r.status, 200, "a long Accept naming neither: HTML");
    assert!(r.text().contains("a.bin"));
    d.assert_healthy();
}

/// A multi-file .torrent with these files and no trackers: (bytes, infohash).
fn synthetic_torrent(name: &str, files: &[(&str, u64)]) -> (Vec<u8>, String) {
    let entries = files
        .iter()
        .map(|(path, len)| {
            let path: Vec<&[u8]> = path.split('/').map(str::as_bytes).collect();
            file_entry(&path, *len)
        })
        .collect();
    let total: u64 = files.iter().map(|f| f.1).sum();
    let info = fake_info(("files", Benc::List(entries)), name.as_bytes(), total, 0);
    metainfo(vec![], info)
}

#[test]
fn playlists_in_natural_order_with_absolute_urls_and_the_token() {
    let _g = serial();
    let s = swarm();
    let media = s.ih("media");
    let token = "s3cr/t+x";
    let tq = "?token=s3cr%2Ft%2Bx";
    let d = Daemon::start(&["-torrentGrace=1s", &format!("-authToken={token}")]);
    let auth = ("Authorization", "Bearer s3cr/t+x");
    let origin = format!("http://127.0.0.1:{}", d.port);

    // By magnet: waits for the metadata from the swarm.
    let target = format!("/playlist?magnet={}", qenc(&s.magnet("media")));
    let r = d.req("GET", &target, &[auth], b"", T);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("audio/x-mpegurl"));
    assert_eq!(
        r.header("content-disposition"),
        Some("filename=\"media.m3u8\"")
    );
    let url = |f: &str| format!("{origin}/data/infohash/{media}/{f}{tq}");
    let want = format!(
        "#EXTM3U\n#EXTINF:-1,clip.mkv\n{}\n#EXTINF:-1,clip.mp4\n{}\n",
        url("clip.mkv"),
        url("clip.mp4")
    );
    assert_eq!(r.text(), want);
    // Players cannot send headers: the links work as they are.
    let t = s.torrent("media");
    for f in ["clip.mkv", "clip.mp4"] {
        let r = d.get(url(f).strip_prefix(&origin).unwrap());
        assert_eq!(r.status, 200, "{f}: {}", r.text());
        assert_bytes_eq(&r.body, &s.file_payload(&t, f), f);
    }
    let r = d.get(&format!("/playlist?ih={media}"));
    assert_eq!(r.status, 401, "no token");

    // Natural order (episode 2 before 10), only audio and video, names made safe.
    let (torrent, ih) = synthetic_torrent(
        "Show\n\"S1\"",
        &[
            ("ep10.mkv", 1),
            ("ep2.mkv", 1),
            ("notes.txt", 1),
            ("sub/ep3.mp3", 1),
            ("Ep1 #1?.mkv", 1),
            ("<img src=x onerror=alert(1)>.mkv", 1),
        ],
    );
    let r = d.req("POST", &format!("/metainfo{tq}"), &[], &torrent, T);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = d.req("GET", &format!("/playlist?ih={ih}"), &[auth], b"", T);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-disposition"),
        Some("filename=\"Show__S1_.m3u8\"")
    );
    let text = r.text();
    let lines: Vec<&str> = text.lines().collect();
    let order = [
        "<img src=x onerror=alert(1)>.mkv",
        "Ep1 #1?.mkv",
        "ep2.mkv",
        "ep10.mkv",
        "sub/ep3.mp3",
    ];
    assert_eq!(lines.len(), 1 + 2 * order.len(), "{text}");
    for (i, f) in order.iter().enumerate() {
        assert_eq!(lines[1 + 2 * i], format!("#EXTINF:-1,{f}"));
        assert_eq!(
            lines[2 + 2 * i],
            format!("{origin}/data/infohash/{ih}/{}{tq}", penc_path(f))
        );
    }

    // Every known torrent, each title under its torrent's name.
    let r = d.req("GET", "/playlist", &[auth], b"", T);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-disposition"),
        Some("filename=\"confluence.m3u8\"")
    );
    let all = r.text();
    assert!(
        all.starts_with("#EXTM3U\n#EXTINF:-1,media/clip.mkv\n"),
        "{all}"
    );
    assert!(all.contains("#EXTINF:-1,Show \"S1\"/ep10.mkv\n"), "{all}");
    assert_eq!(all.lines().count(), 1 + 2 * (2 + order.len()));

    // Listings carry a query token on to their links.
    let r = d.req(
        "GET",
        &format!("/data/infohash/{ih}/{tq}"),
        &[BROWSER],
        b"",
        T,
    );
    assert_eq!(r.status, 200);
    let page = r.text();
    assert!(!page.contains("<img"), "escaped: {page}");
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;.mkv"));
    assert_eq!(link_to(&page, "sub/"), format!("./sub/{tq}"));

    // Bad input: the usual 4xx with a reason.
    let r = d.req("GET", "/playlist?ih=abc", &[auth], b"", T);
    assert_one_line_error(
        &r,
        400,
        "error determining requested infohash: hash hex string has bad length: 3",
        "bad ih",
    );
    let r = d.req(
        "GET",
        &format!("/playlist?ih={}&nowait=1", random_ih()),
        &[auth],
        b"",
        T,
    );
    assert_one_line_error(&r, 202, "info not ready", "unknown ih, nowait");
    assert!(
        !d.log().contains(token) && !d.log().contains("s3cr%2F"),
        "the token is in the log"
    );
}

#[test]
fn mpv_plays_the_media_playlist_in_order() {
    let _g = serial();
    let s = swarm();
    let media = s.ih("media");
    assert!(
        Path::new("/usr/bin/mpv").exists(),
        "mpv is not installed (apt-get install mpv; tests/deps.txt lists it)"
    );
    let d = Daemon::start(&["-torrentGrace=1s"]);
    d.post_metainfo(&s.torrent_bytes("media"), &media);
    let url = d.url(&format!("/playlist?ih={media}"));
    let (status, out, err) = run_bounded(
        Command::new("mpv").args([
            "--no-config",
            "--vo=null",
            "--ao=null",
            "--ao-null-untimed",
            "--untimed",
            "--end=3",
            "--msg-level=all=info",
            "--term-status-msg=",
            &url,
        ]),
        Duration::from_secs(120),
    );
    let all = format!("{out}\n{err}");
    assert!(status.is_some(), "mpv did not finish in 120 s:\n{all}");
    assert!(status.unwrap().success(), "mpv failed ({status:?}):\n{all}");
    let playing: Vec<&str> = all
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Playing: "))
        .collect();
    let file = |f: &str| d.url(&format!("/data/infohash/{media}/{f}"));
    assert_eq!(
        playing,
        [file("clip.mkv"), file("clip.mp4")],
        "mpv's log:\n{all}"
    );
    // Both were opened and decoded: a video and an audio track each, and no error.
    assert_eq!(all.matches("(+) Video --vid=1").count(), 2, "{all}");
    assert_eq!(all.matches("(+) Audio --aid=1").count(), 2, "{all}");
    assert!(!all.contains("Failed to open"), "{all}");
    assert!(all.contains("Exiting... (End of file)"), "{all}");
}

// ------------------------------------------------------------------------------------------
// nginx in front of the daemon

/// An nginx run from the repository's example site with the test's substitutions, on
/// 127.0.0.12, stopped by PID on drop.
struct Nginx {
    child: Option<Child>,
    addr: SocketAddr,
    dir: PathBuf,
}

const NGINX_IP: &str = "127.0.0.12";

/// Replaces the one occurrence of `from` (the example must still have it).
fn subst(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "examples/nginx/confluence.conf changed: {from:?} is not there exactly once"
    );
    text.replace(from, to)
}

impl Nginx {
    fn start(upstream_port: u16) -> Nginx {
        let bin = "/usr/sbin/nginx";
        assert!(
            Path::new(bin).exists(),
            "nginx is not installed (apt-get install nginx; tests/deps.txt lists it)"
        );
        let port = TcpListener::bind((NGINX_IP, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port on 127.0.0.12")
            .port();
        let dir = temp_dir("nginx");
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/nginx/confluence.conf");
        let mut site = fs::read_to_string(&example).expect("examples/nginx/confluence.conf");
        // TLS off, but the daemon must still be told https; nginx connects from its own address.
        site = subst(
            &site,
            "server 127.0.0.1:8080;",
            &format!("server 127.0.0.1:{upstream_port};"),
        );
        site = subst(
            &site,
            "listen 443 ssl;",
            &format!("listen {NGINX_IP}:{port};"),
        );
        site = subst(
            &site,
            "X-Forwarded-Proto $scheme;",
            "X-Forwarded-Proto https;",
        );
        site = subst(
            &site,
            "proxy_pass http://confluence/;",
            &format!("proxy_pass http://confluence/;\n        proxy_bind {NGINX_IP};"),
        );
        site = site
            .lines()
            .filter(|l| !l.trim_start().starts_with("ssl_certificate"))
            .collect::<Vec<_>>()
            .join("\n");
        fs::write(dir.join("site.conf"), site).unwrap();
        let d = dir.display();
        let main = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n access_log {d}/access.log;\n client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n include {d}/site.conf;\n}}\n"
        );
        fs::write(dir.join("nginx.conf"), main).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning nginx");
        let mut n = Nginx {
            child: Some(child),
            addr: format!("{NGINX_IP}:{port}").parse().unwrap(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = n.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                n.child = None;
                panic!("nginx exited ({st}): {}", n.error_log());
            }
            if TcpStream::connect_timeout(&n.addr, Duration::from_secs(1)).is_ok() {
                return n;
            }
            assert!(
                Instant::now() < deadline,
                "nginx not listening: {}",
                n.error_log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn error_log(&self) -> String {
        fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// An HTTP/1.0 request (so no chunked answer), `Host: media.example`.
    fn get(&self, target: &str, headers: &[(&str, &str)]) -> Resp {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(10)).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let mut head = format!("GET {target} HTTP/1.0\r\nHost: media.example\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .unwrap_or_else(|e| panic!("GET {target} via nginx: {e}"));
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no head from nginx: {:?}", String::from_utf8_lossy(&raw)));
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Resp {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: our own child, not yet reaped.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if thread::panicking() {
            eprintln!("--- nginx error log:\n{}", self.error_log());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

#[test]
fn behind_nginx_with_a_prefix_urls_are_https_and_forged_headers_are_ignored() {
    let _g = serial();
    let s = swarm();
    let (media, multi) = (s.ih("media"), s.ih("multi"));
    let d = Daemon::start(&[
        "-torrentGrace=1s",
        &format!("-trustedProxies={NGINX_IP}/32"),
    ]);
    d.post_metainfo(&s.torrent_bytes("media"), &media);
    d.post_metainfo(&s.torrent_bytes("multi"), &multi);
    let n = Nginx::start(d.port);
    let public = "https://media.example/torrents";

    let r = n.get(&format!("/torrents/playlist?ih={media}"), &[]);
    assert_eq!(r.status, 200, "{} {}", r.text(), n.error_log());
    let urls: Vec<String> = r
        .text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(String::from)
        .collect();
    assert_eq!(
        urls,
        [
            format!("{public}/data/infohash/{media}/clip.mkv"),
            format!("{public}/data/infohash/{media}/clip.mp4")
        ]
    );
    // The URLs work through the proxy.
    let t = s.torrent("media");
    let r = n.get(urls[1].strip_prefix("https://media.example").unwrap(), &[]);
    assert_eq!(r.status, 200);
    assert_bytes_eq(
        &r.body,
        &s.file_payload(&t, "clip.mp4"),
        "clip.mp4 via nginx",
    );

    // Listings: absolute JSON URLs under the prefix, relative HTML links that work there.
    let root = format!("/torrents/data/infohash/{multi}/");
    let v = json(&n.get(&root, &[JSON]), "listing via nginx");
    let got = rows(&v);
    assert!(got
        .iter()
        .all(|r| r.4.starts_with(&format!("{public}/data/infohash/{multi}/"))));
    let unicode = "ünïcødé файл.txt";
    let uni = got
        .iter()
        .find(|r| r.0 == unicode)
        .expect("unicode file listed");
    let r = n.get(uni.4.strip_prefix("https://media.example").unwrap(), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_bytes_eq(
        &r.body,
        &s.file_payload(&s.torrent("multi"), unicode),
        "via nginx",
    );
    let page = n.get(&root, &[BROWSER]).text();
    let sub = resolve(&root, &link_to(&page, "with space/"));
    let r = n.get(&sub, &[BROWSER]);
    assert_eq!(r.status, 200, "{sub}");
    assert!(r.text().contains("nested deeper/</a>"));
    let r = n.get(&format!("{root}dir"), &[]);
    assert_eq!((r.status, r.header("location")), (301, Some("dir/")));

    // The websocket goes through.
    let mut ws = TcpStream::connect_timeout(&n.addr, Duration::from_secs(10)).unwrap();
    ws.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        ws,
        "GET /torrents/events?ih={media} HTTP/1.1\r\nHost: media.example\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 64];
    let k = ws.read(&mut buf).unwrap();
    let first = String::from_utf8_lossy(&buf[..k]).into_owned();
    assert!(
        first.starts_with("HTTP/1.1 101"),
        "websocket via nginx: {first:?}"
    );
    drop(ws);

    // A client that is not the proxy cannot choose the links.
    let forged = [
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Prefix", "/evil"),
        ("Forwarded", "proto=https;host=evil.example"),
    ];
    let r = d.get_h(&format!("/playlist?ih={media}"), &forged);
    let direct = format!("http://127.0.0.1:{}/data/infohash/{media}/clip.mkv", d.port);
    assert!(r.text().lines().any(|l| l == direct), "{}", r.text());
    assert!(!r.text().contains("evil"));
    let v = json(
        &d.get_h(&format!("/data/infohash/{multi}/"), &[forged[0], JSON]),
        "direct",
    );
    assert!(rows(&v)
        .iter()
        .all(|r| r.4.starts_with("http://127.0.0.1:")));
}

#[test]
fn cors_preflight_and_exposed_headers_for_listed_origins() {
    let _g = serial();
    let s = swarm();
    let multi = s.ih("multi");
    let d = Daemon::start(&[
        "-torrentGrace=1s",
        "-corsOrigins=http://player.example,https://other.example:8443",
        "-authToken=tok",
    ]);
    let r = d.req(
        "POST",
        "/metainfo?token=tok",
        &[],
        &s.torrent_bytes("multi"),
        T,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let target = format!("/data?ih={multi}&path=one.bin");
    let preflight = |origin: &str| {
        d.req(
            "OPTIONS",
            &target,
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "GET"),
                ("Access-Control-Request-Headers", "range"),
            ],
            b"",
            T,
        )
    };
    // Preflights carry no credentials: answered before the token check.
    let r = preflight("http://player.example");
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://player.example")
    );
    assert!(r
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Range"));
    assert!(r
        .header("access-control-allow-methods")
        .unwrap()
        .contains("GET"));
    let r = preflight("http://evil.example");
    assert_one_line_error(
        &r,
        403,
        "CORS: origin not allowed (see -corsOrigins)",
        "evil origin",
    );
    assert_eq!(r.header("access-control-allow-origin"), None);

    let auth = ("Authorization", "Bearer tok");
    let r = d.req(
        "GET",
        &target,
        &[
            auth,
            ("Origin", "https://other.example:8443"),
            ("Range", "bytes=0-0"),
        ],
        b"",
        T,
    );
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://other.example:8443")
    );
    let exposed = r.header("access-control-expose-headers").unwrap();
    for h in ["Content-Range", "Accept-Ranges", "Content-Length"] {
        assert!(exposed.contains(h), "{exposed}");
    }
    for path in [format!("/info?ih={multi}"), format!("/playlist?ih={multi}")] {
        let r = d.req(
            "GET",
            &path,
            &[auth, ("Origin", "http://player.example")],
            b"",
            T,
        );
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("http://player.example")
        );
    }
    // Not for other routes, nor for origins not listed.
    let r = d.req(
        "GET",
        "/status",
        &[auth, ("Origin", "http://player.example")],
        b"",
        T,
    );
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = d.req(
        "GET",
        &target,
        &[auth, ("Origin", "http://evil.example")],
        b"",
        T,
    );
    assert_eq!(
        (r.status, r.header("access-control-allow-origin")),
        (200, None)
    );
    drop(d);

    // `*`: every origin; without -corsOrigins: none, and OPTIONS is an ordinary request.
    let d = Daemon::start(&["-torrentGrace=1s", "-corsOrigins=*"]);
    d.post_metainfo(&s.torrent_bytes("multi"), &multi);
    let r = d.req(
        "OPTIONS",
        &target,
        &[
            ("Origin", "http://a.example"),
            ("Access-Control-Request-Method", "GET"),
        ],
        b"",
        T,
    );
    assert_eq!(
        (r.status, r.header("access-control-allow-origin")),
        (204, Some("*"))
    );
    drop(d);
    let d = Daemon::start(&["-torrentGrace=1s"]);
    d.post_metainfo(&s.torrent_bytes("multi"), &multi);
    let r = d.get_h(&target, &[("Origin", "http://a.example")]);
    assert_eq!(
        (r.status, r.header("access-control-allow-origin")),
        (200, None)
    );
}
