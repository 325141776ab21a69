"""Drives Debian's headless Chromium (selenium + chromedriver) through the web page.

Usage: browser.py SCENARIO BASE_URL ARTEFACT_DIR JSON_PARAMS
Each scenario checks what a person would see and exits 1 with one line `FAIL: …` when
something is wrong (0 and `PASS <scenario>` otherwise). Screenshots go to ARTEFACT_DIR.
Every wait is bounded; the browser only talks to BASE_URL (127.0.0.1).
"""
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from urllib.parse import quote

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Seconds for a whole scenario (tests/it/page.rs kills this script after 240).
DEADLINE = 200

# Counts the cached (green) cells of the piece map: pixels equal to #2e9e4f.
CANVAS_GREEN = """
const c = document.getElementById('pieces');
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let n = 0;
for (let i = 0; i < d.length; i += 4) {
  if (d[i] === 0x2e && d[i + 1] === 0x9e && d[i + 2] === 0x4f) n++;
}
return n;
"""

# Counts the evicted (red) cells: pixels equal to #d04848.
CANVAS_RED = CANVAS_GREEN.replace("0x2e", "0xd0").replace("0x9e", "0x48").replace("0x4f", "0x48")

# Recorded before any page script runs: every dialog a page tries to open.
DIALOG_TRAP = """
window.__dialogs = [];
for (const f of ['alert', 'confirm', 'prompt']) {
  window[f] = function (m) { window.__dialogs.push(f + ':' + m); };
}
// Counts the frames the page's websockets receive (the piece map's /events).
window.__wsFrames = 0;
const NativeWS = window.WebSocket;
window.WebSocket = function (url, protocols) {
  const ws = new NativeWS(url, protocols);
  ws.addEventListener('message', () => { window.__wsFrames++; });
  return ws;
};
window.WebSocket.prototype = NativeWS.prototype;
"""


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def wait_for(what, fn, timeout=30.0, step=0.2):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # a page mid-load: try again
            last = e
        time.sleep(step)
    raise Fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


class Browser:
    def __init__(self, artefacts, javascript=True):
        self.profile = tempfile.mkdtemp(prefix="confluence-chromium-")
        self.artefacts = artefacts
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for a in [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--mute-audio", "--autoplay-policy=no-user-gesture-required",
            "--window-size=1280,900", f"--user-data-dir={self.profile}",
        ]:
            opts.add_argument(a)
        if not javascript:
            opts.add_experimental_option(
                "prefs", {"profile.managed_default_content_settings.javascript": 2})
        self.d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        self.d.set_page_load_timeout(60)
        self.d.set_script_timeout(60)
        self.d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": DIALOG_TRAP})

    def shot(self, name):
        path = os.path.join(self.artefacts, name + ".png")
        self.d.save_screenshot(path)
        print(f"screenshot: {path}")

    def no_dialogs(self):
        try:
            a = self.d.switch_to.alert
            raise Fail(f"a dialog opened: {a.text!r}")
        except NoAlertPresentException:
            pass
        got = self.d.execute_script("return window.__dialogs || []")
        check(got == [], f"the page called a dialog: {got}")

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def close(self):
        try:
            self.d.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


def add_by_magnet(b, base, p):
    """Adds `single` through the form, sees its file; then follows `multi`'s tree."""
    d = b.d
    d.get(base + "/")
    check(d.title == "confluence", f"title of / is {d.title!r}")
    q = d.find_element(By.ID, "add-q")
    q.send_keys(p["single_magnet"])
    d.find_element(By.ID, "add-go").click()
    wait_for("the torrent page of single", lambda: d.current_url.endswith("/t/" + p["single_ih"]))
    wait_for("big.bin in the file tree", lambda: (
        d.find_element(By.CSS_SELECTOR, "#tree li.file .fname").text == "big.bin"
    ))
    check(d.find_element(By.ID, "tname").text == "big.bin", "torrent name shown")
    b.shot("single-page")
    d.get(base + "/")
    row = wait_for("single's row on /", lambda: d.find_element(
        By.CSS_SELECTOR, f'tr[data-ih="{p["single_ih"]}"] td.name a'))
    check(row.text == "big.bin", f"single's row says {row.text!r}")

    # multi: added by uploading its .torrent from the form, then its tree, into the nested
    # directories and the unicode name.
    d.find_element(By.ID, "upload-file").send_keys(p["multi_torrent"])
    wait_for("the upload to lead to multi's page", lambda: d.current_url.endswith("/t/" + p["multi_ih"]))
    wait_for("multi's page", lambda: d.find_element(By.ID, "tname").text == "multi")
    names = [e.text for e in d.find_elements(By.CSS_SELECTOR, "#tree > ul > li.file .fname")]
    check("ünïcødé файл.txt" in names, f"root files of multi: {names}")
    odd = d.find_element(By.XPATH, "//li[contains(@class,'file')][span[@class='fname' and text()='odd.bin']]")
    visible = lambda: b.js("return arguments[0].checkVisibility()", odd)
    check(not visible(), "odd.bin visible before opening its directories")
    for dname in ["with space/", "nested deeper/"]:
        s = d.find_element(By.XPATH, f"//summary[span[@class='dname' and text()='{dname}']]")
        s.click()
    wait_for("odd.bin shown after opening with space/nested deeper", visible, 5)
    link = odd.find_element(By.CSS_SELECTOR, "a.copy").get_attribute("href")
    check(link.endswith("/with%20space/nested%20deeper/odd.bin"), f"odd.bin's link {link}")
    # Follow the unicode file's link: the daemon must find it (percent-encoded UTF-8).
    uni = d.find_element(By.XPATH, "//li[contains(@class,'file')][span[@class='fname' and text()='ünïcødé файл.txt']]")
    href = uni.find_element(By.CSS_SELECTOR, "a.copy").get_attribute("href")
    got = d.execute_async_script(
        "const done = arguments[1]; fetch(arguments[0]).then(r => r.arrayBuffer().then("
        "b => done([r.status, b.byteLength]))).catch(e => done(['error', String(e)]));", href)
    check(got == [200, 7500], f"GET {href} from the page: {got}")
    dl = uni.find_element(By.CSS_SELECTOR, "a.download").get_attribute("href")
    check(dl.endswith("?download=1"), f"download link {dl}")
    b.shot("multi-page")
    b.no_dialogs()


def green(b):
    return b.js(CANVAS_GREEN)


def media(b, base, p):
    """The piece map fills while a file streams; clip.mp4 plays, seeks and plays on."""
    d = b.d
    ih = p["media_ih"]
    d.get(base + "/add?q=" + quote(p["media_magnet"], safe=""))
    wait_for("media's page", lambda: d.find_element(By.ID, "tname").text == "media")
    wait_for("the events websocket", lambda: d.find_element(By.ID, "live").text == "live", 20)
    g0 = green(b)
    check(g0 == 0, f"a cold torrent's map has {g0} cached pixels")
    # Stream clip.mkv from the page (no reload) and watch the canvas.
    mkv = d.find_element(By.XPATH, "//li[span[@class='fname' and text()='clip.mkv']]//a[@class='copy']")
    b.js("fetch(arguments[0]).then(r => r.arrayBuffer()).then(b => { window.__mkv = b.byteLength; });",
         mkv.get_attribute("href"))
    samples = [g0]
    end = time.monotonic() + 30
    while time.monotonic() < end:
        time.sleep(0.25)
        samples.append(green(b))
        if b.js("return window.__mkv || 0") and samples[-1] == samples[-2] and samples[-1] > 0:
            break
    check(b.js("return window.__mkv || 0") == p["mkv_len"], "clip.mkv streamed in full")
    check(samples[-1] > g0, f"the piece map never turned green: {samples}")
    print(f"piece map cached pixels while clip.mkv streamed: {sorted(set(samples))}")
    pct = d.find_element(By.CSS_SELECTOR, "li.file[data-file='0'] .fpct").text
    check(pct == "100.0%", f"clip.mkv's % cached after streaming: {pct}")
    b.shot("media-map")

    # Press play on clip.mp4.
    d.find_element(By.XPATH, "//li[span[@class='fname' and text()='clip.mp4']]//a[contains(@class,'play')]").click()
    video = wait_for("the video element", lambda: d.find_element(By.ID, "media"))
    wait_for("autoplay to start", lambda: b.js("return !arguments[0].paused || arguments[0].play() && false", video), 15)
    t1 = wait_for("currentTime past 1.5 s", lambda: b.js(
        "const v = arguments[0]; return v.error ? 'error ' + v.error.code : (v.currentTime > 1.5 && v.currentTime)",
        video), 30)
    check(not str(t1).startswith("error"), f"the video failed: {t1}")
    b.shot("media-playing")
    b.js("arguments[0].currentTime = 6", video)
    t2 = wait_for("currentTime past 7 after seeking to 6", lambda: b.js(
        "const v = arguments[0]; return !v.seeking && v.currentTime > 7 && v.currentTime", video), 30)
    check(not b.js("return arguments[0].error", video), "video error after seek")
    print(f"played to {t1:.2f} s, seeked to 6 s, played on to {t2:.2f} s")
    # The player page's map, loaded before playback, shows clip.mp4's pieces arriving.
    g_mkv = samples[-1]
    g_end = wait_for("clip.mp4's pieces on the map", lambda: green(b) > g_mkv * 1.5 and green(b), 15)
    frames = b.js("return window.__wsFrames")
    check(frames > 0, "no /events frame reached the page")
    print(f"cached pixels: {g_mkv} after clip.mkv, {g_end} after playing clip.mp4; {frames} /events frames")
    b.shot("media-after-play")
    b.no_dialogs()


def evictions(b, base, p):
    """With a cache smaller than a file, the map shows evicted pieces (from the server's state)."""
    d = b.d
    d.get(base + "/add?q=" + quote(p["multi_magnet"], safe=""))
    wait_for("multi's page", lambda: d.find_element(By.ID, "tname").text == "multi")
    wait_for("the events websocket", lambda: d.find_element(By.ID, "live").text == "live", 20)
    check(b.js(CANVAS_RED) == 0, "evicted pieces before anything was read")
    odd = d.find_element(By.XPATH, "//li[span[@class='fname' and text()='odd.bin']]//a[@class='copy']")
    got = d.execute_async_script(
        "const done = arguments[1]; fetch(arguments[0]).then(r => r.arrayBuffer().then("
        "b => done([r.status, b.byteLength]))).catch(e => done(['error', String(e)]));",
        odd.get_attribute("href"))
    check(got == [200, p["odd_len"]], f"GET odd.bin from the page: {got}")
    red = wait_for("red (evicted) cells on the map", lambda: b.js(CANVAS_RED), 15)
    g = green(b)
    check(g > 0, "no cached cells after reading odd.bin")
    # A fresh load shows them too: the state is the server's, not only what this page saw.
    d.refresh()
    wait_for("the map after a reload", lambda: d.find_element(By.ID, "pieces"))
    red2 = b.js(CANVAS_RED)
    letters = d.find_element(By.ID, "pieces").get_attribute("data-pieces")
    check(red2 > 0 and "E" in letters, f"after a reload: {red2} red pixels, pieces {letters}")
    print(f"evicted pixels {red} live, {red2} after reload; cached pixels {g}; pieces {letters}")
    b.shot("evictions")
    b.no_dialogs()


def nojs(b, base, p):
    """With JavaScript off: add by the form, wait for the metadata, play a clip."""
    d = b.d
    d.get(base + "/")
    check(d.find_element(By.ID, "torrents"), "the table")
    d.find_element(By.ID, "add-q").send_keys(p["media_magnet"])
    d.find_element(By.ID, "add-go").click()
    wait_for("media's page (the waiting page reloads by itself)",
             lambda: d.find_element(By.ID, "tname").text == "media", 40)
    check(d.find_element(By.ID, "live").text == "", "page scripts ran with JavaScript off")
    d.find_element(By.XPATH, "//li[span[@class='fname' and text()='clip.mp4']]//a[contains(@class,'play')]").click()
    video = wait_for("the video element", lambda: d.find_element(By.ID, "media"))
    check(video.get_attribute("src").endswith("/data/infohash/" + p["media_ih"] + "/clip.mp4"),
          f"video src {video.get_attribute('src')}")
    t = wait_for("the clip to play (autoplay, no page script)", lambda: b.js(
        "return arguments[0].currentTime > 1 && arguments[0].currentTime", video), 30)
    print(f"played to {t:.2f} s without page scripts")
    d.get(base + "/")
    row = d.find_element(By.CSS_SELECTOR, f'tr[data-ih="{p["media_ih"]}"] td.name a')
    check(row.text == "media", f"media's row: {row.text!r}")
    b.shot("nojs")


def hostile(b, base, p):
    """A torrent and a file named like markup render as text; nothing runs."""
    d = b.d
    for url in [base + "/", base + "/t/" + p["ih"]]:
        d.get(url)
        time.sleep(0.5)
        b.no_dialogs()
        imgs = d.find_elements(By.CSS_SELECTOR, "img, svg, script:not([src])")
        check(imgs == [], f"{url}: markup from a name became elements: {len(imgs)}")
    d.get(base + "/")
    a = d.find_element(By.CSS_SELECTOR, f'tr[data-ih="{p["ih"]}"] td.name a')
    check(a.text == p["name"], f"torrent name on / shown as {a.text!r}")
    a.click()
    wait_for("the torrent page", lambda: d.find_element(By.ID, "tname").text == p["name"])
    f = d.find_element(By.CSS_SELECTOR, "#tree li.file .fname")
    check(f.text == p["file"], f"file name shown as {f.text!r}")
    check(d.title == p["name"], f"title {d.title!r}")
    # Wait for the live refresh to run too (it writes names with textContent only).
    time.sleep(2.5)
    d.get(base + "/")
    time.sleep(2.5)
    b.no_dialogs()
    b.shot("hostile")


def token(b, base, p):
    """With -authToken: the page asks once, then works (fetches and websocket included)."""
    d = b.d
    d.get(base + "/")
    field = wait_for("the token form", lambda: d.find_element(By.ID, "login-token"))
    b.shot("token-form")
    field.send_keys(p["token"])
    d.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait_for("/ after the token", lambda: d.find_elements(By.ID, "torrents"))
    check("token" not in d.current_url, f"the token stayed in the address: {d.current_url}")
    check(p["token"] not in b.js("return document.cookie"), "the cookie is readable by scripts")
    check(b.js("return localStorage.getItem('confluenceToken')") == p["token"], "token kept")
    d.get(base + "/t/" + p["ih"])
    wait_for("the torrent page", lambda: d.find_element(By.ID, "tname").text == "big.bin")
    wait_for("the websocket with the token", lambda: d.find_element(By.ID, "live").text == "live", 20)
    got = d.execute_async_script(
        "const done = arguments[0]; fetch('../ui/torrents').then(r => done(r.status));")
    check(got == 200, f"/ui/torrents from the page: {got}")
    # A new browser session (cookie gone) gets in with the stored token, without typing.
    d.delete_all_cookies()
    d.get(base + "/")
    wait_for("/ again from the stored token", lambda: d.find_elements(By.ID, "torrents"), 15)
    b.no_dialogs()


SCENARIOS = {"add_by_magnet": add_by_magnet, "media": media, "evictions": evictions, "nojs": nojs, "hostile": hostile, "token": token}


def main():
    scenario, base, artefacts, params = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    os.makedirs(artefacts, exist_ok=True)

    # A bound on the whole scenario, below the Rust side's (which kills this process and so
    # could leave the browser behind): past it, fail and still close the browser.
    def too_long(_sig, _frame):
        raise Fail(f"scenario {scenario} took over {DEADLINE} s")

    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(DEADLINE)
    b = Browser(artefacts, javascript=scenario != "nojs")
    try:
        SCENARIOS[scenario](b, base, params)
    except Fail as e:
        try:
            b.shot(scenario + "-failure")
        except Exception:
            pass
        print(f"FAIL: {e}")
        return 1
    finally:
        b.close()
    print(f"PASS {scenario}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
