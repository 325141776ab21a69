//! The web page (`/`, `/t/<ih>`, `/add`, `/ui/…`): HTTP-level checks, and a real browser
//! (Debian's headless Chromium driven by selenium, `tests/page/browser.py`) adding, browsing,
//! playing and watching the piece map against the local swarm.
//!
//! Screenshots of every browser scenario are kept under `$TMPDIR/confluence-page-shots-<pid>/`
//! (the path is printed).

use crate::common;

use std::{path::PathBuf, process::Command, time::Duration};

use common::{form::Form, qenc, run_bounded, serial, swarm, Daemon, Resp};

const SHORT: Duration = Duration::from_secs(20);
const PYTHON: &str = "/usr/bin/python3";

/// The browser tools, or a panic that says how to get them.
fn need_browser() {
    let missing: Vec<&str> = ["/usr/bin/chromium", "/usr/bin/chromedriver", PYTHON]
        .into_iter()
        .filter(|p| !std::path::Path::new(p).exists())
        .collect();
    let selenium = Command::new(PYTHON)
        .args(["-c", "import selenium"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        missing.is_empty() && selenium,
        "the browser tests need Debian's chromium, chromium-driver and python3-selenium \
         (tests/deps.txt; tests/run.sh installs them): missing {missing:?}, selenium: {selenium}"
    );
}

fn shots_dir() -> PathBuf {
    std::env::temp_dir().join(format!("confluence-page-shots-{}", std::process::id()))
}

/// Runs one scenario of `browser.py` against `d`; it must print `PASS <scenario>`.
fn browser(d: &Daemon, scenario: &str, params: serde_json::Value) {
    need_browser();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/page/browser.py");
    let shots = shots_dir();
    let (status, out, err) = run_bounded(
        Command::new(PYTHON).args([
            "-B",
            script,
            scenario,
            &d.url(""),
            &shots.display().to_string(),
            &params.to_string(),
        ]),
        Duration::from_secs(240),
    );
    println!("--- browser.py {scenario}:\n{out}\n{err}");
    assert!(
        status.is_some_and(|s| s.success()) && out.contains(&format!("PASS {scenario}")),
        "browser scenario {scenario} failed ({status:?}): {}\nstderr: {}\ndaemon log:\n{}",
        out.trim(),
        err.lines().rev().take(15).collect::<Vec<_>>().join("\n"),
        d.log_tail(30)
    );
}

fn has_header(r: &Resp, name: &str, needle: &str) -> bool {
    r.header(name).is_some_and(|v| v.contains(needle))
}

/// `/upload` of one file; returns the infohash (the torrent is also POSTed to /metainfo).
fn upload(d: &Daemon, name: &str, file: &str, data: &[u8]) -> String {
    let (ct, body) = Form::new("page-test-b0undary")
        .field("name", name)
        .file(file, data)
        .finish();
    let r = d.req("POST", "/upload", &[("Content-Type", &ct)], &body, SHORT);
    assert_eq!(r.status, 200, "/upload: {}", r.text());
    let r = d.req("POST", "/metainfo", &[], &r.body, SHORT);
    assert_eq!(r.status, 200, "POST /metainfo: {}", r.text());
    r.text().trim().to_string()
}

const HOSTILE_NAME: &str = "<svg onload=alert('n')>&amp;\"";
const HOSTILE_FILE: &str = "<img src=x onerror=alert(1)>.mkv";

#[test]
fn page_http_answers() {
    let d = Daemon::start(&["-torrentGrace=1s"]);
    let ih = upload(&d, HOSTILE_NAME, HOSTILE_FILE, b"not really matroska");

    // `/` for curl: plain text; for a browser: the page, with its security headers.
    let r = d.get("/");
    assert_eq!(r.status, 200);
    assert!(
        has_header(&r, "Content-Type", "text/plain"),
        "{:?}",
        r.headers
    );
    assert!(
        r.text().contains(&ih),
        "curl / lists the torrent: {}",
        r.text()
    );
    let html = d.get_h("/", &[("Accept", "text/html")]);
    assert_eq!(html.status, 200);
    assert!(has_header(
        &html,
        "Content-Security-Policy",
        "script-src 'self'"
    ));
    assert!(has_header(&html, "Referrer-Policy", "no-referrer"));
    let body = html.text();
    assert!(!body.contains("<svg") && !body.contains("<img src=x"));
    assert!(
        body.contains("&lt;svg onload=alert(&#39;n&#39;)&gt;&amp;amp;&quot;"),
        "{body}"
    );
    let page = d.get(&format!("/t/{ih}")).text();
    assert!(
        page.contains("&lt;img src=x onerror=alert(1)&gt;.mkv"),
        "{page}"
    );
    assert!(!page.contains("<img"), "{page}");
    // Links are percent-encoded and relative (a proxy's sub-path survives).
    let enc = "%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.mkv";
    assert!(
        page.contains(&format!("href=\"../data/infohash/{ih}/{enc}?download=1\"")),
        "{page}"
    );

    // Download links: attachment with the file name.
    let r = d.get(&format!("/data/infohash/{ih}/{enc}?download=1"));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Disposition"),
        Some("attachment; filename=\"<img src=x onerror=alert(1)>.mkv\"")
    );
    let r = d.get(&format!("/data/infohash/{ih}/{enc}"));
    assert!(
        has_header(&r, "Content-Disposition", "filename=")
            && !has_header(&r, "Content-Disposition", "attachment")
    );

    // The JSON the scripts read.
    let r = d.get(&format!("/ui/pieces?ih={ih}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["pieces"], "C", "an uploaded torrent is cached: {v}");
    assert_eq!(v["cached"], v["size"]);
    let v: serde_json::Value = serde_json::from_slice(&d.get("/ui/torrents").body).unwrap();
    assert_eq!(v["torrents"][0]["ih"], ih.as_str());
    assert_eq!(v["torrents"][0]["name"], HOSTILE_NAME);

    // Bad input: one-line 4xx reasons; unknown paths stay the original's 404.
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    for (target, status, reason) in [
        (
            "/t/xyz",
            400,
            "error determining requested infohash: hash hex string has bad length: 3",
        ),
        (&format!("/t/{unknown}") as &str, 404, ""),
        (
            &format!("/t/{ih}?play=7"),
            400,
            "play: not a file index of this torrent",
        ),
        (
            &format!("/t/{ih}?play=-1"),
            400,
            "play: not a file index of this torrent",
        ),
        ("/add", 400, "add: missing q (a magnet link or an infohash)"),
        (
            "/add?q=magnet%3A%3Fdn%3Dx",
            400,
            "error determining requested infohash",
        ),
        ("/add?q=nothex", 400, "error determining requested infohash"),
        (
            "/ui/pieces?ih=",
            400,
            "error determining requested infohash",
        ),
        (
            &format!("/ui/pieces?ih={unknown}"),
            404,
            "torrent info not known",
        ),
        ("/ui/nope.js", 404, "404 page not found"),
        ("/nope", 404, "404 page not found"),
        ("/t/", 404, "404 page not found"),
        (&format!("/t/{ih}/x"), 404, "404 page not found"),
    ] {
        let r = d.get(target);
        assert_eq!(r.status, status, "{target}: {}", r.text());
        assert!(r.text().starts_with(reason), "{target}: {:?}", r.text());
        assert!(
            r.text().trim_end().lines().count() <= 1 || status == 404,
            "{target}"
        );
    }
    // `/t/<unknown>` offers to add it; `/add` adds and redirects to the page.
    let r = d.get(&format!("/add?q={}", unknown.to_uppercase()));
    assert_eq!(r.status, 303);
    assert_eq!(r.header("Location"), Some(format!("t/{unknown}").as_str()));
    let r = d.req("POST", "/", &[], b"", SHORT);
    assert_eq!(r.status, 404, "POST / is not a page");
    let r = d.req("HEAD", "/", &[("Accept", "text/html")], b"", SHORT);
    assert_eq!(r.status, 200, "HEAD /");
    assert_eq!(d.get("/ui/page.css").status, 200);
    d.assert_healthy();
}

#[test]
fn page_token_form_and_cookie() {
    let d = Daemon::start(&["-torrentGrace=1s", "-authToken=s3cr&t"]);
    let html = [("Accept", "text/html")];
    // A browser gets the token form (401), curl the API's 401, assets of the form are public.
    let r = d.get_h("/", &html);
    assert_eq!(r.status, 401);
    assert!(r.text().contains("id=login-form") && !r.text().contains("torrents"));
    let r = d.get("/");
    assert_eq!(
        (r.status, r.text().trim()),
        (401, "unauthorized: missing or wrong token")
    );
    assert_eq!(d.get("/ui/login.js").status, 200);
    assert_eq!(d.get("/ui/page.css").status, 200);
    assert_eq!(d.get("/ui/index.js").status, 401);
    assert_eq!(d.get("/ui/torrents").status, 401);
    // A wrong token sets nothing; the right one sets an HttpOnly cookie and drops the token.
    let r = d.get_h("/?token=nope", &html);
    assert_eq!(r.status, 401);
    assert!(r.header("Set-Cookie").is_none());
    let r = d.get_h(
        &format!("/t/{}?token={}&play=0", "ab".repeat(20), qenc("s3cr&t")),
        &html,
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(
        r.header("Location"),
        Some(format!("./{}?play=0", "ab".repeat(20)).as_str())
    );
    let cookie = r.header("Set-Cookie").unwrap_or_default().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    // The cookie opens every route, like the header.
    assert_eq!(d.get_h("/ui/torrents", &[("Cookie", pair)]).status, 200);
    assert_eq!(d.get_h("/status", &[("Cookie", pair)]).status, 200);
    assert_eq!(
        d.get_h("/status", &[("Cookie", "confluence_token=s3cr")])
            .status,
        401
    );
    assert_eq!(
        d.get_h("/", &[("Authorization", "Bearer s3cr&t")]).status,
        200
    );
}

fn swarm_params() -> serde_json::Value {
    let s = swarm();
    serde_json::json!({
        "single_magnet": s.magnet("single"),
        "single_ih": s.ih("single"),
        "multi_ih": s.ih("multi"),
        "multi_torrent": s.dir.join("torrents/multi.torrent"),
        "multi_magnet": s.magnet("multi"),
        "odd_len": s.payload("multi/with space/nested deeper/odd.bin").len(),
        "media_magnet": s.magnet("media"),
        "media_ih": s.ih("media"),
        "mkv_len": s.payload("media/clip.mkv").len(),
    })
}

#[test]
fn page_browser_adds_by_magnet_and_follows_the_tree() {
    need_browser();
    let _g = serial();
    let p = swarm_params();
    let d = Daemon::start(&["-torrentGrace=30s"]);
    browser(&d, "add_by_magnet", p);
}

#[test]
fn page_browser_piece_map_and_playback() {
    need_browser();
    let _g = serial();
    let p = swarm_params();
    let d = Daemon::start(&["-torrentGrace=30s"]);
    browser(&d, "media", p);
}

#[test]
fn page_browser_piece_map_shows_evictions() {
    need_browser();
    let _g = serial();
    let p = swarm_params();
    let d = Daemon::start(&["-torrentGrace=30s", "-cacheCapacity=1MiB"]);
    browser(&d, "evictions", p);
}

#[test]
fn page_browser_works_without_javascript() {
    need_browser();
    let _g = serial();
    let p = swarm_params();
    let d = Daemon::start(&["-torrentGrace=30s"]);
    browser(&d, "nojs", p);
}

#[test]
fn page_browser_hostile_names_stay_text() {
    need_browser();
    let d = Daemon::start(&["-torrentGrace=1s"]);
    let ih = upload(&d, HOSTILE_NAME, HOSTILE_FILE, b"not really matroska");
    browser(
        &d,
        "hostile",
        serde_json::json!({"ih": ih, "name": HOSTILE_NAME, "file": HOSTILE_FILE}),
    );
}

#[test]
fn page_browser_asks_for_the_token_once() {
    need_browser();
    let d = Daemon::start(&["-torrentGrace=1s", "-authToken=s3cr&t"]);
    let boundary = "b";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nbig.bin\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.bin\"\r\n\r\nx\r\n--{boundary}--\r\n"
    );
    let ct = format!("multipart/form-data; boundary={boundary}");
    let auth = ("Authorization", "Bearer s3cr&t");
    let r = d.req(
        "POST",
        "/upload",
        &[("Content-Type", &ct), auth],
        body.as_bytes(),
        SHORT,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = d.req("POST", "/metainfo", &[auth], &r.body, SHORT);
    assert_eq!(r.status, 200, "{}", r.text());
    let ih = r.text().trim().to_string();
    browser(
        &d,
        "token",
        serde_json::json!({"token": "s3cr&t", "ih": ih}),
    );
}
