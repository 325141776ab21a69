//! The HTML of the pages, written by hand around one escaping helper, [`esc`], through which
//! every torrent-controlled string (names, paths, trackers) goes. URLs are relative, so the
//! pages work unchanged under a reverse proxy's sub-path.

use std::fmt::Write as _;

use confluence_core::{metainfo::Info, status::PieceState};
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::model::{self, Dir, Overview};
use crate::status::humanize_bytes;

/// Escapes text for HTML element content and double- or single-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Bytes kept as they are in a path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A file's `/data/infohash/<ih>/<path>` path, each segment percent-encoded from the raw bytes.
pub fn data_path(ih: &str, info: &Info, file: usize) -> String {
    let mut p = format!("data/infohash/{ih}");
    for seg in info.files[file].raw_path.split(|&b| b == b'/') {
        p.push('/');
        p.extend(percent_encode(seg, SEGMENT));
    }
    p
}

/// `part/whole` as a percentage with one decimal.
pub fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "100%".into();
    }
    format!("{:.1}%", 100.0 * part as f64 / whole as f64)
}

fn rate(bps: f64) -> String {
    format!("{}/s", humanize_bytes(bps.max(0.0) as u64))
}

/// The page frame: head with the embedded stylesheet, then `body`, then the script `js`.
/// `up` leads from this page to the root (`""` or `"../"`).
pub fn frame(title: &str, up: &str, body: &str, js: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>\
<meta name=viewport content=\"width=device-width, initial-scale=1\">\
<meta name=referrer content=no-referrer>\
<title>{title}</title><link rel=stylesheet href=\"{up}ui/page.css\"></head>\
<body data-up=\"{up}\"><header><a class=home href=\"{home}\">confluence</a></header>\n{body}\n\
<script src=\"{up}ui/{js}\"></script></body></html>\n",
        title = esc(title),
        home = if up.is_empty() { "./" } else { up },
    )
}

fn cache_line(o: &Overview) -> String {
    let c = &o.cache;
    let lookups = c.hits + c.misses;
    let ratio = if lookups == 0 {
        "n/a".to_string()
    } else {
        pct(c.hits, lookups)
    };
    let used = match (c.bytes, c.capacity) {
        (Some(b), Some(cap)) => format!(
            "{} of {} <meter id=cache-meter min=0 max=1 value=\"{:.4}\"></meter>",
            humanize_bytes(b),
            humanize_bytes(cap),
            if cap == 0 { 1.0 } else { b as f64 / cap as f64 }
        ),
        (Some(b), None) => format!("{} (unlimited)", humanize_bytes(b)),
        (None, _) => "none (-fileDir)".to_string(),
    };
    format!(
        "<p class=cache>Cache: <span id=cache-used>{used}</span> · hit ratio \
<span id=cache-ratio>{ratio}</span> · open readers <span id=open-readers>{}</span></p>",
        c.open_readers
    )
}

const ADD_FORM: &str = r#"<section class=add><h2>Add a torrent</h2>
<form method=get action="add" class=row><input name=q id=add-q required size=60 placeholder="magnet:?xt=urn:btih:… or a 40-digit infohash" aria-label="magnet link or infohash"><button id=add-go>Add</button></form>
<form id=upload-form class=row><label>or a .torrent file: <input type=file id=upload-file accept=".torrent,application/x-bittorrent"></label><span id=upload-msg class=msg></span></form>
<noscript><p class=msg>Uploading a .torrent needs JavaScript (or: curl --data-binary @x.torrent …/metainfo).</p></noscript>
</section>"#;

/// `/`.
pub fn index(o: &Overview) -> String {
    let mut b = String::new();
    b.push_str(&cache_line(o));
    b.push_str(ADD_FORM);
    let _ = write!(
        b,
        "<section><h2>Torrents <span class=count id=count>{}</span></h2>\
<table id=torrents><thead><tr><th>Name</th><th>Size</th><th>Cached</th><th>State</th>\
<th>Peers</th><th>Down</th><th>Up</th><th>Readers</th></tr></thead><tbody>",
        o.torrents.len() + o.more
    );
    for t in &o.torrents {
        let name = match &t.name {
            Some(n) => esc(n),
            None => format!("<i>{}</i> (waiting for metadata)", t.ih),
        };
        let size = t.size.map_or_else(|| "?".into(), humanize_bytes);
        let cached = t.size.map_or_else(|| "?".into(), |s| pct(t.cached, s));
        let _ = write!(
            b,
            "<tr data-ih=\"{ih}\"><td class=name><a href=\"t/{ih}\">{name}</a></td>\
<td class=size>{size}</td><td class=cached>{cached}</td><td class=state>{state}</td>\
<td class=peers>{peers}</td><td class=down>{down}</td><td class=up>{up}</td>\
<td class=readers>{readers}</td></tr>",
            ih = t.ih,
            state = esc(&t.state),
            peers = t.peers,
            down = rate(t.down),
            up = rate(t.up),
            readers = t.readers,
        );
    }
    if o.torrents.is_empty() {
        b.push_str("<tr class=empty><td colspan=8>No torrents yet: add one above, or ask /data for one.</td></tr>");
    }
    b.push_str("</tbody></table>");
    if o.more > 0 {
        let _ = write!(b, "<p class=msg>… and {} more not listed.</p>", o.more);
    }
    b.push_str("</section>");
    frame("confluence", "", &b, "index.js")
}

/// The plain-text `/` for clients that do not ask for HTML (curl).
pub fn index_text(o: &Overview) -> String {
    let mut s = String::from(
        "confluence: open this address in a browser for the web page.\n\
         infohash                                  size      cached  name\n",
    );
    for t in &o.torrents {
        let _ = writeln!(
            s,
            "{}  {:>9}  {:>6}  {}",
            t.ih,
            t.size.map_or_else(|| "?".into(), humanize_bytes),
            t.size.map_or_else(|| "?".into(), |sz| pct(t.cached, sz)),
            t.name.as_deref().unwrap_or("(waiting for metadata)")
        );
    }
    if o.more > 0 {
        let _ = writeln!(s, "… and {} more", o.more);
    }
    s
}

/// What the torrent page needs besides the info.
pub struct TorrentView<'a> {
    pub ih: &'a str,
    pub info: &'a Info,
    pub states: &'a [PieceState],
    /// Pieces the cache evicted (see [`super::evicted`]).
    pub evicted: &'a std::collections::BTreeSet<u32>,
    /// The file to play at the top (`?play=<index>`), if any.
    pub play: Option<usize>,
}

fn file_row(v: &TorrentView, i: usize, o: &mut String) {
    let f = &v.info.files[i];
    let name = model::file_name(v.info, i);
    let data = data_path(v.ih, v.info, i);
    let cached = model::cached_bytes(v.info, v.states, f.offset, f.length);
    let _ = write!(
        o,
        "<li class=file data-file={i} data-size={len} data-cached={cached}><span class=fname>{name}</span> \
<span class=size>{size}</span> <span class=fpct>{pct}</span> <span class=actions>",
        name = esc(name),
        size = humanize_bytes(f.length),
        pct = pct(cached, f.length),
        len = f.length,
    );
    if let Some(kind) = model::media_kind(name) {
        let _ = write!(
            o,
            "<a class=play href=\"?play={i}#player\" title=\"play in the browser\">▶ play {kind}</a> \
<a href=\"../playlist?ih={ih}\" title=\"open the torrent's playlist in a player (mpv, VLC)\">m3u8</a> ",
            ih = v.ih
        );
    }
    let _ = write!(
        o,
        "<a class=download href=\"../{data}?download=1\" download>download</a> \
<a class=copy href=\"../{data}\" title=\"the file's URL (click to copy)\">link</a></span></li>"
    );
}

fn dir_list(v: &TorrentView, d: &Dir, o: &mut String) {
    o.push_str("<ul>");
    for (name, sub) in &d.dirs {
        let size = sub.size(v.info);
        let _ = write!(
            o,
            "<li class=dir><details><summary><span class=dname>{}/</span> <span class=size>{}</span> \
<span class=dpct>{}</span></summary>",
            esc(name),
            humanize_bytes(size),
            pct(sub.cached(v.info, v.states), size)
        );
        dir_list(v, sub, o);
        o.push_str("</details></li>");
    }
    for &i in &d.files {
        file_row(v, i, o);
    }
    o.push_str("</ul>");
}

fn player(v: &TorrentView, i: usize, o: &mut String) {
    let name = model::file_name(v.info, i);
    let kind = model::media_kind(name).unwrap_or("video");
    let _ = write!(
        o,
        "<section id=player><h2>▶ {name}</h2><{kind} id=media controls autoplay preload=auto \
src=\"../{src}\"></{kind}></section>",
        name = esc(&v.info.files[i].path),
        src = data_path(v.ih, v.info, i),
    );
}

/// `/t/<ih>`.
pub fn torrent(v: &TorrentView) -> String {
    let info = v.info;
    let mut b = String::new();
    let cached = model::cached_bytes(info, v.states, 0, info.total_length);
    let _ = write!(
        b,
        "<h1 id=tname>{name}</h1><p class=meta>{size} in {files} file(s) · {n} pieces of {pl} · \
cached <span id=tpct>{pct}</span> · <code>{ih}</code></p>\
<p class=links><a href=\"../metainfo?ih={ih}\" download=\"{ih}.torrent\">.torrent</a> · \
<a href=\"../playlist?ih={ih}\">playlist (m3u8)</a> · <a href=\"../data/infohash/{ih}/\">listing</a></p>",
        name = esc(&info.name),
        size = humanize_bytes(info.total_length),
        files = info.visible_files().count(),
        n = info.num_pieces,
        pl = humanize_bytes(info.piece_length),
        pct = pct(cached, info.total_length),
        ih = v.ih,
    );
    if let Some(i) = v.play.filter(|&i| info.is_visible(i)) {
        player(v, i, &mut b);
    }
    let _ = write!(
        b,
        "<section><h2>Pieces</h2><canvas id=pieces width=800 height=40 data-ih=\"{ih}\" \
data-pieces=\"{letters}\"></canvas><p class=legend><i class=\"k kC\"></i>cached \
<i class=\"k kN\"></i>wanted now <i class=\"k kR\"></i>read ahead <i class=\"k kP\"></i>downloading \
<i class=\"k kE\"></i>evicted <i class=\"k kX\"></i>not cached <span id=live class=msg></span></p></section>",
        ih = v.ih,
        letters = model::piece_letters(v.states, v.evicted),
    );
    b.push_str("<section><h2>Files</h2><div id=tree>");
    dir_list(v, &model::tree(info), &mut b);
    b.push_str("</div></section>");
    frame(&info.name, "../", &b, "torrent.js")
}

/// `/t/<ih>` of a torrent whose info is not known yet: refreshes itself until it is.
pub fn waiting(ih: &str, known: bool) -> String {
    let body = if known {
        format!(
            "<h1>{ih}</h1><p class=msg>Waiting for the metadata from peers… this page reloads by itself.</p>\
<meta http-equiv=refresh content=2>"
        )
    } else {
        format!(
            "<h1>{ih}</h1><p class=msg>The daemon does not know this torrent.</p>\
<p><a class=button href=\"../add?q={ih}\">Add it</a></p>"
        )
    };
    frame(ih, "../", &body, "torrent.js")
}

/// The page answered instead of `/` or `/t/…` when `-authToken` is set and missing.
pub fn login(up: &str) -> String {
    let body = "<h1>Token required</h1><p>This daemon runs with <code>-authToken</code>. \
Enter the token once; the browser keeps it.</p>\
<form method=get class=row id=login-form><input type=password name=token id=login-token required \
autocomplete=current-password aria-label=token><button>Open</button></form><p id=login-msg class=msg></p>";
    frame("confluence: token", up, body, "login.js")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<img src=x onerror="alert(1)">&'"#),
            "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;&#39;"
        );
        assert_eq!(esc("ünï файл"), "ünï файл");
    }

    #[test]
    fn percentages() {
        assert_eq!(pct(1, 3), "33.3%");
        assert_eq!(pct(0, 0), "100%");
        assert_eq!(pct(5, 5), "100.0%");
    }
}
