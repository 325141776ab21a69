// A torrent's page: paints the piece map from the server's letters, repaints it when the
// /events websocket reports a piece change (re-reading /ui/pieces at most every 300 ms), keeps
// the per-file and per-directory % cached current, and copies file links. Pieces that were
// cached and are no longer are shown as evicted.
(function () {
  "use strict";
  try { sessionStorage.removeItem("confluenceTokenTried"); } catch (e) { /* storage disabled */ }
  var canvas = document.getElementById("pieces");
  wireCopy();
  if (!canvas) { return; }
  var ih = canvas.getAttribute("data-ih");
  var letters = canvas.getAttribute("data-pieces") || "";
  var evicted = {};
  var COLORS = { C: "#2e9e4f", N: "#1f5fd0", R: "#8fb4ec", P: "#e8b82f", E: "#d04848", ".": "#e6e9ed" };
  // When several pieces share one cell, the most telling state wins.
  var RANK = { ".": 0, C: 1, P: 2, R: 3, E: 4, N: 5 };

  function token() { try { return localStorage.getItem("confluenceToken"); } catch (e) { return null; } }
  function api(url) {
    var h = {}, t = token();
    if (t) { h.Authorization = "Bearer " + t; }
    return fetch(url, { headers: h, credentials: "same-origin" });
  }
  function pct(a, b) { return b ? (100 * a / b).toFixed(1) + "%" : "100%"; }
  function set(el, text) { if (el && el.textContent !== text) { el.textContent = text; } }

  function paint() {
    var n = letters.length, w = canvas.clientWidth || 800;
    var dpr = window.devicePixelRatio || 1;
    // Square-ish cells of 1..14 px, at most 240 px high; several pieces share a cell beyond that.
    var cell = n ? Math.max(1, Math.min(14, Math.floor(Math.sqrt(w * 60 / n)))) : 14;
    var cols = Math.max(1, Math.min(n, Math.floor(w / cell)));
    var rows = Math.max(1, Math.min(Math.ceil(n / cols), Math.floor(240 / cell)));
    var cells = Math.min(n, rows * cols);
    var cw = w / cols, h = rows * cell;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    canvas.style.height = h + "px";
    var ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var gap = cell >= 4 ? 1 : 0;
    for (var c = 0; c < cells; c++) {
      var from = Math.floor(c * n / cells), to = Math.max(from + 1, Math.floor((c + 1) * n / cells));
      var best = ".";
      for (var p = from; p < to; p++) {
        var l = letters.charAt(p);
        if (l === "." && evicted[p]) { l = "E"; }
        if (RANK[l] > RANK[best]) { best = l; }
      }
      var x0 = Math.round((c % cols) * cw), x1 = Math.round((c % cols + 1) * cw);
      ctx.fillStyle = COLORS[best] || COLORS["."];
      ctx.fillRect(x0, Math.floor(c / cols) * cell, Math.max(1, x1 - x0 - gap), cell - gap);
    }
  }

  function updateTree(files) {
    var items = document.querySelectorAll("#tree li.file");
    for (var i = 0; i < items.length; i++) {
      var li = items[i], idx = +li.getAttribute("data-file"), size = +li.getAttribute("data-size");
      li.setAttribute("data-cached", String(files[idx] || 0));
      set(li.querySelector(".fpct"), pct(files[idx] || 0, size));
    }
    var dirs = document.querySelectorAll("#tree li.dir");
    for (var d = 0; d < dirs.length; d++) {
      var sum = 0, tot = 0, inner = dirs[d].querySelectorAll("li.file");
      for (var k = 0; k < inner.length; k++) {
        sum += +inner[k].getAttribute("data-cached");
        tot += +inner[k].getAttribute("data-size");
      }
      set(dirs[d].querySelector(".dpct"), pct(sum, tot));
    }
  }

  function apply(st) {
    for (var p = 0; p < st.pieces.length; p++) {
      var was = letters.charAt(p), now = st.pieces.charAt(p);
      if (was === "C" && now !== "C") { evicted[p] = true; }
      if (now !== ".") { delete evicted[p]; }
    }
    letters = st.pieces;
    canvas.setAttribute("data-pieces", letters);
    paint();
    updateTree(st.files);
    set(document.getElementById("tpct"), pct(st.cached, st.size));
  }

  var pending = null, inflight = false, again = false;
  function refresh() {
    if (inflight) { again = true; return; }
    inflight = true;
    api("../ui/pieces?ih=" + ih).then(function (r) {
      if (!r.ok) { throw new Error(r.status); }
      return r.json();
    }).then(apply).catch(function () { /* the next event or tick retries */ }).then(function () {
      inflight = false;
      if (again) { again = false; schedule(); }
    });
  }
  function schedule() { if (!pending) { pending = setTimeout(function () { pending = null; refresh(); }, 300); } }

  var live = document.getElementById("live"), retries = 0;
  function connect() {
    var u = new URL("../events?ih=" + ih, location.href);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    var ws = new WebSocket(u.href);
    ws.onopen = function () { retries = 0; set(live, "live"); schedule(); };
    ws.onmessage = function () { schedule(); };
    ws.onclose = function () {
      set(live, "reconnecting…");
      retries = Math.min(retries + 1, 10);
      setTimeout(connect, 500 * retries);
    };
  }
  paint();
  window.addEventListener("resize", paint);
  connect();
  setInterval(function () { if (!document.hidden) { schedule(); } }, 5000);

  function wireCopy() {
    document.addEventListener("click", function (ev) {
      var a = ev.target.closest && ev.target.closest("a.copy");
      if (!a) { return; }
      ev.preventDefault();
      var url = a.href, done = function () { a.textContent = "copied"; setTimeout(function () { a.textContent = "link"; }, 1500); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(url).then(done, function () { window.prompt("Copy the link:", url); });
      } else {
        window.prompt("Copy the link:", url);
      }
    });
  }
})();
