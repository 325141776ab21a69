//! Directory listings of a torrent: `/data/infohash/<ih>/` and `/data/infohash/<ih>/<dir>/`.
//!
//! A sub-directory (a path ending in `/` that is a directory of the torrent) always answers a
//! listing: HTML, or JSON `[{name, path, size, is_dir, url}]` with `Accept: application/json`.
//! The torrent's root (`<ih>/`) answered the whole torrent in the original, which scripts may
//! rely on, so it lists only when the client asks for `text/html` (browsers do) or
//! `application/json`; `*/*` (curl, players) still gets the bytes. A directory named without
//! its `/` is redirected to it (see `data.rs`); a file named with one is a 404.
//!
//! HTML links are relative (they work under any proxy prefix), every name is escaped, and the
//! page loads nothing. JSON `url`s are absolute ([`BaseUrl`]). A `?token=` in the request is
//! carried on to every link, so a browser that opened a listing with it can follow them.

use std::collections::BTreeMap;

use actix_web::{http::header, HttpRequest, HttpResponse};
use confluence_core::{ident::InfoHash, metainfo::Info};

use crate::{
    error::HttpError,
    natural,
    page::html::esc,
    public_url::{encode_component, BaseUrl},
    resolve::Resolved,
};

/// What a listing is answered as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
}

/// One entry of a directory.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    /// The component's bytes, as the torrent has them.
    pub name: Vec<u8>,
    /// The path inside the torrent (display path bytes).
    pub path: Vec<u8>,
    /// A file's length, a directory's total.
    pub size: u64,
    pub is_dir: bool,
}

/// The format the client asked for with `Accept`: `application/json` wins over `text/html`
/// unless given a lower `q`; neither named (or `q=0`) is `None`.
pub fn negotiate(req: &HttpRequest) -> Option<Format> {
    let accept = req.headers().get(header::ACCEPT)?.to_str().ok()?;
    let (mut json, mut html) = (None::<f32>, None::<f32>);
    for range in accept.split(',') {
        let mut params = range.split(';');
        let media = params.next().unwrap_or("").trim();
        let q = params
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if media.eq_ignore_ascii_case("application/json") {
            json = json.or(Some(q));
        } else if media.eq_ignore_ascii_case("text/html") {
            html = html.or(Some(q));
        }
    }
    let (json, html) = (json.filter(|&q| q > 0.0), html.filter(|&q| q > 0.0));
    match (json, html) {
        (Some(j), Some(h)) if h > j => Some(Format::Html),
        (Some(_), _) => Some(Format::Json),
        (None, Some(_)) => Some(Format::Html),
        (None, None) => None,
    }
}

/// Whether `path` (no trailing `/`) is a directory of the torrent.
pub fn is_dir(info: &Info, path: &[u8]) -> bool {
    !path.is_empty()
        && info
            .visible_files()
            .any(|(_, f)| under(&f.raw_path, path).is_some())
}

/// The rest of `file` below directory `dir` (`""` is the root), if it is below it.
fn under<'a>(file: &'a [u8], dir: &[u8]) -> Option<&'a [u8]> {
    if dir.is_empty() {
        return Some(file);
    }
    file.strip_prefix(dir)?.strip_prefix(b"/")
}

/// The entries of directory `dir` (`""`: the root), directories first, each group in natural
/// order; `None` when `dir` is not a directory of the torrent.
pub fn entries(info: &Info, dir: &[u8]) -> Option<Vec<Entry>> {
    let mut dirs: BTreeMap<&[u8], u64> = BTreeMap::new();
    let mut files = Vec::new();
    let mut found = dir.is_empty();
    for (_, f) in info.visible_files() {
        let Some(rest) = under(&f.raw_path, dir) else {
            continue;
        };
        found = true;
        match rest.iter().position(|&b| b == b'/') {
            Some(i) => *dirs.entry(&rest[..i]).or_default() += f.length,
            None => files.push((rest, f)),
        }
    }
    if !found {
        return None;
    }
    let join = |name: &[u8]| match dir {
        [] => name.to_vec(),
        d => [d, b"/", name].concat(),
    };
    let mut out: Vec<Entry> = dirs
        .into_iter()
        .map(|(name, size)| Entry {
            name: name.to_vec(),
            path: join(name),
            size,
            is_dir: true,
        })
        .collect();
    out.extend(files.into_iter().map(|(name, f)| Entry {
        name: name.to_vec(),
        path: f.raw_path.clone(),
        size: f.length,
        is_dir: false,
    }));
    out.sort_by(|a, b| {
        b.is_dir
            .cmp(&a.is_dir)
            .then_with(|| natural::cmp(&lossy(&a.name), &lossy(&b.name)))
    });
    Some(out)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Answers the listing of `dir` of a resolved torrent (`data.rs` resolves it, honouring
/// `nowait=1`, and routes here).
pub(crate) fn answer(
    req: &HttpRequest,
    resolved: &Resolved,
    dir: &[u8],
    format: Format,
) -> HttpResponse {
    let info = &resolved.info;
    let Some(entries) = entries(info, dir) else {
        return HttpError::not_found("file not found").into();
    };
    let token = resolved.query.bytes("token").map(encode_component);
    let mut resp = match format {
        Format::Json => {
            let base = BaseUrl::of(req);
            let body = json(&base, &info.info_hash, &entries, token.as_deref());
            HttpResponse::Ok()
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .body(body)
        }
        Format::Html => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .insert_header((
                "Content-Security-Policy",
                "default-src 'none'; style-src 'unsafe-inline'",
            ))
            .body(html(info, dir, &entries, token.as_deref())),
    };
    resp.headers_mut()
        .append(header::VARY, header::HeaderValue::from_static("Accept"));
    resp
}

/// `[{name, path, size, is_dir, url}]`, one line.
fn json(base: &BaseUrl, ih: &InfoHash, entries: &[Entry], token: Option<&str>) -> String {
    let with_token = |u: String| match token {
        Some(t) => format!("{u}?token={t}"),
        None => u,
    };
    let list: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            let url = if e.is_dir {
                base.listing_url(ih, &e.path)
            } else {
                base.data_url(ih, &e.path)
            };
            serde_json::json!({
                "name": lossy(&e.name),
                "path": lossy(&e.path),
                "size": e.size,
                "is_dir": e.is_dir,
                "url": with_token(url),
            })
        })
        .collect();
    format!("{}\n", serde_json::Value::Array(list))
}

/// `1.5 MiB` (bytes below 1 KiB as `N B`).
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse}td,th{padding:.2em 1em .2em 0;text-align:left}\
td.size{text-align:right;font-variant-numeric:tabular-nums}h1{font-size:1.3em;word-break:break-all}";

/// The HTML page. Links are relative to the listing's own URL (`…/<ih>/<dir>/`).
fn html(info: &Info, dir: &[u8], entries: &[Entry], token: Option<&str>) -> String {
    let depth = if dir.is_empty() {
        0
    } else {
        dir.split(|&b| b == b'/').count()
    };
    let up = |n: usize| {
        if n == 0 {
            "./".to_string()
        } else {
            "../".repeat(n)
        }
    };
    let tq = |sep: char| token.map_or(String::new(), |t| format!("{sep}token={t}"));
    let title = if dir.is_empty() {
        format!("{}/", info.name)
    } else {
        format!("{}/{}/", info.name, lossy(dir))
    };
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Index of {}</title><style>{STYLE}</style></head>\n<body>\n<h1>Index of ",
        esc(&title)
    );
    // Breadcrumbs: the torrent's root, then each directory.
    h.push_str(&format!(
        "<a href=\"{}{}\">{}</a>/",
        up(depth),
        tq('?'),
        esc(&info.name)
    ));
    if !dir.is_empty() {
        let comps: Vec<&[u8]> = dir.split(|&b| b == b'/').collect();
        for (i, c) in comps.iter().enumerate() {
            h.push_str(&format!(
                "<a href=\"{}{}\">{}</a>/",
                up(depth - 1 - i),
                tq('?'),
                esc(&lossy(c))
            ));
        }
    }
    h.push_str("</h1>\n<p>");
    if depth > 0 {
        h.push_str(&format!(
            "<a href=\"../{}\">Parent directory</a> · ",
            tq('?')
        ));
    }
    h.push_str(&format!(
        "<a href=\"{}playlist?ih={}{}\">Playlist (m3u8)</a> · {} in {} files</p>\n",
        up(depth + 3),
        info.info_hash,
        tq('&'),
        esc(&human_size(
            info.visible_files().map(|(_, f)| f.length).sum()
        )),
        info.visible_files().count()
    ));
    h.push_str("<table>\n<thead><tr><th>Name</th><th>Size</th></tr></thead>\n<tbody>\n");
    for e in entries {
        let (href, label) = if e.is_dir {
            (
                format!("./{}/", encode_component(&e.name)),
                format!("{}/", lossy(&e.name)),
            )
        } else {
            (format!("./{}", encode_component(&e.name)), lossy(&e.name))
        };
        h.push_str(&format!(
            "<tr><td><a href=\"{}{}\">{}</a></td><td class=\"size\" title=\"{} bytes\">{}</td></tr>\n",
            esc(&href),
            tq('?'),
            esc(&label),
            e.size,
            esc(&human_size(e.size))
        ));
    }
    h.push_str("</tbody>\n</table>\n</body></html>\n");
    h
}

/// The relative `Location` that adds the missing `/` to a directory requested without it: the
/// last segment of the request path as sent, plus `/` and the query.
pub fn dir_redirect(req: &HttpRequest) -> HttpResponse {
    let last = req.uri().path().rsplit('/').next().unwrap_or("");
    let mut loc = format!("{last}/");
    if !req.query_string().is_empty() {
        loc = format!("{loc}?{}", req.query_string());
    }
    HttpResponse::MovedPermanently()
        .insert_header((header::LOCATION, loc))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use confluence_core::metainfo::parse_info;

    /// A multi-file info dict with these (path, length) files.
    fn info(files: &[(&str, u64)]) -> Info {
        let mut list = String::new();
        for (p, l) in files {
            let comps: String = p.split('/').map(|c| format!("{}:{c}", c.len())).collect();
            list.push_str(&format!("d6:lengthi{l}e4:pathl{comps}ee"));
        }
        let total: u64 = files.iter().map(|f| f.1).sum();
        let pieces = total.div_ceil(16384).max(1);
        let mut b = format!(
            "d5:filesl{list}e4:name5:multi12:piece lengthi16384e6:pieces{}:",
            pieces * 20
        )
        .into_bytes();
        b.extend(std::iter::repeat_n(0u8, pieces as usize * 20));
        b.push(b'e');
        parse_info(&b).unwrap()
    }

    #[test]
    fn lists_directories_first_in_natural_order() {
        let i = info(&[
            ("e10.mkv", 1),
            ("e2.mkv", 2),
            ("sub/x.bin", 3),
            ("sub/deep/y.bin", 4),
            ("a dir/z", 5),
        ]);
        let root = entries(&i, b"").unwrap();
        let names: Vec<_> = root
            .iter()
            .map(|e| (lossy(&e.name), e.size, e.is_dir))
            .collect();
        assert_eq!(
            names,
            [
                ("a dir".to_string(), 5, true),
                ("sub".to_string(), 7, true),
                ("e2.mkv".to_string(), 2, false),
                ("e10.mkv".to_string(), 1, false),
            ]
        );
        let sub = entries(&i, b"sub").unwrap();
        assert_eq!(sub[0].path, b"sub/deep");
        assert_eq!(sub[1].path, b"sub/x.bin");
        assert!(entries(&i, b"su").is_none());
        assert!(entries(&i, b"e2.mkv").is_none());
        assert!(is_dir(&i, b"sub/deep") && !is_dir(&i, b"sub/x.bin") && !is_dir(&i, b""));
    }

    #[test]
    fn html_escapes_names() {
        let i = info(&[("<img src=x onerror=alert(1)>.mkv", 1), ("a\"b/'c'", 2)]);
        let page = html(&i, b"", &entries(&i, b"").unwrap(), None);
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;.mkv"));
        assert!(page.contains("href=\"./%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.mkv\""));
        assert!(page.contains("href=\"./a%22b/\">a&quot;b/</a>"));
        let sub = html(&i, b"a\"b", &entries(&i, b"a\"b").unwrap(), Some("s%20t"));
        assert!(
            sub.contains("href=\"./%27c%27?token=s%20t\">&#39;c&#39;</a>"),
            "{sub}"
        );
        assert!(sub.contains("<a href=\"../?token=s%20t\">Parent directory</a>"));
        assert!(sub.contains("href=\"../../../../playlist?ih="));
    }

    #[test]
    fn sizes_and_negotiation_helpers() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 << 20), "3.0 MiB");
        assert_eq!(human_size(u64::MAX), "16.0 EiB");
    }
}
