//! `GET /playlist?ih=|magnet=`: an extended M3U of a torrent's audio and video files, in
//! natural order, for players (`mpv URL`, VLC); `GET /playlist` without either: every known
//! torrent whose metadata is known (in memory or stored), never waiting for any.
//!
//! URLs are absolute ([`BaseUrl`]: right behind a proxy). Players cannot send headers, so with
//! `-authToken` every URL carries `?token=`.

use std::sync::Arc;

use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse,
};
use confluence_core::{metainfo::Info, Engine};

use crate::{
    error::{text_response, HttpError},
    natural,
    public_url::{encode_component, BaseUrl},
    query::Query,
    range,
    resolve::{Named, Nowait, Resolved},
    Options,
};

/// The playlist's media type.
pub const CONTENT_TYPE: &str = "audio/x-mpegurl";

/// Whether a file is played: its type (by extension, as `/data` serves it) is audio or video.
pub fn is_media(path: &str) -> bool {
    let t = range::content_type_for(path);
    t.starts_with("video/") || t.starts_with("audio/")
}

/// The media files of a torrent in natural order of their display paths: (display path, raw
/// path bytes).
pub fn media_files(info: &Info) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = info
        .visible_files()
        .map(|(_, f)| f)
        .filter(|f| is_media(&f.path))
        .map(|f| (f.path.clone(), f.raw_path.clone()))
        .collect();
    v.sort_by(|a, b| natural::cmp(&a.0, &b.0));
    v
}

/// A title for `#EXTINF`: one line, no control characters.
fn title(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Appends the entries of one torrent; `prefix_name` puts the torrent's name before each title.
fn push_torrent(out: &mut String, base: &BaseUrl, info: &Info, token: &str, prefix_name: bool) {
    for (path, raw) in media_files(info) {
        let t = if prefix_name && info.multi_file {
            format!("{}/{path}", info.name)
        } else {
            path
        };
        out.push_str(&format!(
            "#EXTINF:-1,{}\n{}{token}\n",
            title(&t),
            base.data_url(&info.info_hash, &raw)
        ));
    }
}

/// A file name for `Content-Disposition`: the torrent's name without separators or controls.
fn file_name(name: &str) -> String {
    let n: String = name
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | '"') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let n = n.trim_matches(['.', ' ']);
    if n.is_empty() {
        "playlist.m3u8".into()
    } else {
        format!("{n}.m3u8")
    }
}

fn answer(body: String, name: &str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, CONTENT_TYPE))
        .insert_header((
            header::CONTENT_DISPOSITION,
            range::content_disposition(file_name(name)),
        ))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(body)
}

/// The route (any method, as every route of the original).
pub async fn playlist(
    req: HttpRequest,
    engine: web::Data<Engine>,
) -> Result<HttpResponse, HttpError> {
    let q = Query::parse(req.query_string());
    let base = BaseUrl::of(&req);
    let token = req
        .app_data::<web::Data<Options>>()
        .and_then(|o| o.auth_token.clone())
        .map_or(String::new(), |t| {
            format!("?token={}", encode_component(t.as_bytes()))
        });
    if q.bytes("ih").is_none() && q.bytes("magnet").is_none() {
        return Ok(all(engine, base, token).await);
    }
    let named = Named::from_query(&q)?;
    let info = Resolved::new(&req, named, Nowait::Honour).await?.info;
    let mut body = String::from("#EXTM3U\n");
    push_torrent(&mut body, &base, &info, &token, false);
    Ok(answer(body, &info.name))
}

/// Every known torrent with metadata, in natural order of their names.
async fn all(engine: web::Data<Engine>, base: BaseUrl, token: String) -> HttpResponse {
    let e = engine.clone();
    let infos = web::block(move || {
        e.known()
            .into_iter()
            .filter_map(|ih| e.info_of(&ih))
            .collect::<Vec<Arc<Info>>>()
    })
    .await;
    let mut infos = match infos {
        Ok(v) => v,
        Err(e) => {
            return text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("error listing torrents: {e}"),
            )
        }
    };
    infos.sort_by(|a, b| natural::cmp(&a.name, &b.name).then(a.info_hash.cmp(&b.info_hash)));
    let mut body = String::from("#EXTM3U\n");
    for info in &infos {
        push_torrent(&mut body, &base, info, &token, true);
    }
    answer(body, "confluence")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_and_names() {
        assert!(is_media("a/b.MKV") && is_media("x.mp4") && is_media("s.flac"));
        assert!(!is_media("a.txt") && !is_media("b.srt") && !is_media("noext"));
        assert_eq!(file_name("my show"), "my show.m3u8");
        assert_eq!(file_name("a/b\"c\n"), "a_b_c_.m3u8");
        assert_eq!(file_name(".."), "playlist.m3u8");
        assert_eq!(title("a\nb\r#EXTINF"), "a b #EXTINF");
    }
}
