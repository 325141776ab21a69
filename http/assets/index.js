// `/`: refreshes rates, peers and % cached from /ui/torrents every 2 s while the page is
// visible, and uploads a .torrent through POST /metainfo. Only textContent is ever set.
(function () {
  "use strict";
  try { sessionStorage.removeItem("confluenceTokenTried"); } catch (e) { /* storage disabled */ }
  function token() { try { return localStorage.getItem("confluenceToken"); } catch (e) { return null; } }
  function api(url, opts) {
    opts = opts || {};
    var t = token();
    if (t) { opts.headers = Object.assign({}, opts.headers, { Authorization: "Bearer " + t }); }
    opts.credentials = "same-origin";
    return fetch(url, opts);
  }
  function bytes(n) {
    var u = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if (n < 10) { return n + " B"; }
    var e = Math.min(Math.floor(Math.log(n) / Math.log(1000)), u.length - 1);
    var v = Math.floor(n / Math.pow(1000, e) * 10 + 0.5) / 10;
    return (v < 10 ? v.toFixed(1) : v.toFixed(0)) + " " + u[e];
  }
  function pct(a, b) { return b ? (100 * a / b).toFixed(1) + "%" : "100%"; }
  function set(el, text) { if (el && el.textContent !== text) { el.textContent = text; } }

  var tbody = document.querySelector("#torrents tbody");
  function row(t) {
    var tr = tbody.querySelector('tr[data-ih="' + t.ih + '"]');
    if (tr) { return tr; }
    var empty = tbody.querySelector("tr.empty");
    if (empty) { empty.remove(); }
    tr = document.createElement("tr");
    tr.setAttribute("data-ih", t.ih);
    ["name", "size", "cached", "state", "peers", "down", "up", "readers"].forEach(function (c) {
      var td = document.createElement("td");
      td.className = c;
      tr.appendChild(td);
    });
    var a = document.createElement("a");
    a.href = "t/" + t.ih;
    tr.querySelector(".name").appendChild(a);
    tbody.appendChild(tr);
    return tr;
  }
  function render(o) {
    o.torrents.forEach(function (t) {
      var tr = row(t);
      set(tr.querySelector(".name a"), t.name === null ? t.ih + " (waiting for metadata)" : t.name);
      set(tr.querySelector(".size"), t.size === null ? "?" : bytes(t.size));
      set(tr.querySelector(".cached"), t.size === null ? "?" : pct(t.cached, t.size));
      set(tr.querySelector(".state"), t.state);
      set(tr.querySelector(".peers"), String(t.peers));
      set(tr.querySelector(".down"), bytes(Math.round(t.down)) + "/s");
      set(tr.querySelector(".up"), bytes(Math.round(t.up)) + "/s");
      set(tr.querySelector(".readers"), String(t.readers));
    });
    set(document.getElementById("count"), String(o.torrents.length + o.more));
    var c = o.cache, used = document.getElementById("cache-used");
    if (c.bytes !== null && c.capacity !== null) {
      var m = document.getElementById("cache-meter");
      if (used && used.firstChild) { set(used.firstChild, bytes(c.bytes) + " of " + bytes(c.capacity) + " "); }
      if (m) { m.value = c.capacity ? c.bytes / c.capacity : 1; }
    } else if (c.bytes !== null) {
      set(used, bytes(c.bytes) + " (unlimited)");
    }
    var lookups = c.hits + c.misses;
    set(document.getElementById("cache-ratio"), lookups ? pct(c.hits, lookups) : "n/a");
    set(document.getElementById("open-readers"), String(c.open_readers));
  }
  var busy = false;
  function refresh() {
    if (busy || document.hidden) { return; }
    busy = true;
    api("ui/torrents").then(function (r) {
      if (!r.ok) { throw new Error(r.status); }
      return r.json();
    }).then(render).catch(function () { /* next tick retries */ }).then(function () { busy = false; });
  }
  setInterval(refresh, 2000);
  document.addEventListener("visibilitychange", refresh);

  var file = document.getElementById("upload-file"), msg = document.getElementById("upload-msg");
  file.addEventListener("change", function () {
    var f = file.files[0];
    if (!f) { return; }
    msg.textContent = "uploading…";
    api("metainfo", { method: "POST", body: f }).then(function (r) {
      return r.text().then(function (body) {
        if (!r.ok) { throw new Error(body.trim() || String(r.status)); }
        location.href = "t/" + body.trim();
      });
    }).catch(function (e) { msg.textContent = "refused: " + e.message; });
  });
})();
