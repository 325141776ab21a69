//! The ContentDirectory:1 and ConnectionManager:1 actions over the torrents the daemon knows.

use std::{collections::HashMap, sync::Arc};

use confluence_core::{ident::InfoHash, metainfo::Info, tree::Kind, Engine};
use quick_xml::{events::BytesText, Writer};

use super::{
    soap::{Action, Fault, INVALID_ACTION, INVALID_CONNECTION, NO_SUCH_CONTAINER, NO_SUCH_OBJECT},
    tree::{ObjectId, Tree},
    State,
};

pub(crate) const CDS: &str = "urn:schemas-upnp-org:service:ContentDirectory:1";
pub(crate) const CM: &str = "urn:schemas-upnp-org:service:ConnectionManager:1";

/// Most objects in one Browse answer (`RequestedCount` 0, "all", included): a control point
/// pages on with `StartingIndex`.
pub(crate) const MAX_PAGE: usize = 500;

/// The fourth field of every `protocolInfo`: byte-range seeking (`OP=01`), not transcoded,
/// streaming transfer mode, DLNA 1.5.
pub(crate) const DLNA_FEATURES: &str =
    "DLNA.ORG_OP=01;DLNA.ORG_CI=0;DLNA.ORG_FLAGS=01700000000000000000000000000000";

/// What `GetProtocolInfo` lists as this source's formats.
const SOURCE_MIMES: &[&str] = &[
    "video/mp4",
    "video/x-matroska",
    "video/webm",
    "video/x-msvideo",
    "video/quicktime",
    "video/mp2t",
    "video/mpeg",
    "audio/mpeg",
    "audio/flac",
    "audio/ogg",
    "audio/mp4",
    "audio/wav",
    "image/jpeg",
    "image/png",
    "image/gif",
];

/// What an action needs: the engine, the shared state, and the base of `<res>` URLs.
pub(crate) struct Ctx<'a> {
    pub engine: &'a Engine,
    pub state: &'a State,
    pub base_url: &'a str,
}

pub(crate) type Out = Vec<(&'static str, String)>;

/// A `ui4` argument; absent means 0.
fn ui4(a: &Action, name: &str) -> Result<usize, Fault> {
    let Some(v) = a.arg(name) else {
        return Ok(0);
    };
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Fault::invalid_args(format!(
            "{name} must be an unsigned 32-bit integer, not {v:.40?}"
        )));
    }
    v.parse::<u32>()
        .map(|n| n as usize)
        .map_err(|_| Fault::invalid_args(format!("{name} {v:.40} is larger than 4294967295")))
}

pub(crate) fn content_directory(ctx: &Ctx<'_>, a: &Action) -> Result<Out, Fault> {
    match a.name.as_str() {
        "GetSearchCapabilities" => Ok(vec![("SearchCaps", String::new())]),
        "GetSortCapabilities" => Ok(vec![("SortCaps", String::new())]),
        "GetSystemUpdateID" => Ok(vec![("Id", ctx.update_id().to_string())]),
        "Browse" => browse(ctx, a),
        other => Err(Fault::new(
            INVALID_ACTION,
            format!("Invalid Action: ContentDirectory has no action {other:.60?}"),
        )),
    }
}

pub(crate) fn connection_manager(a: &Action) -> Result<Out, Fault> {
    match a.name.as_str() {
        "GetProtocolInfo" => {
            let source = SOURCE_MIMES
                .iter()
                .map(|m| format!("http-get:*:{m}:{DLNA_FEATURES}"))
                .collect::<Vec<_>>()
                .join(",");
            Ok(vec![("Source", source), ("Sink", String::new())])
        }
        "GetCurrentConnectionIDs" => Ok(vec![("ConnectionIDs", "0".to_owned())]),
        "GetCurrentConnectionInfo" => {
            if a.arg("ConnectionID").map(str::trim) != Some("0") {
                return Err(Fault::new(
                    INVALID_CONNECTION,
                    "Invalid connection reference: only connection 0 exists",
                ));
            }
            Ok(vec![
                ("RcsID", "-1".to_owned()),
                ("AVTransportID", "-1".to_owned()),
                ("ProtocolInfo", String::new()),
                ("PeerConnectionManager", String::new()),
                ("PeerConnectionID", "-1".to_owned()),
                ("Direction", "Output".to_owned()),
                ("Status", "OK".to_owned()),
            ])
        }
        other => Err(Fault::new(
            INVALID_ACTION,
            format!("Invalid Action: ConnectionManager has no action {other:.60?}"),
        )),
    }
}

/// One object of a Browse answer.
enum Obj {
    Root {
        children: usize,
    },
    Container {
        tree: Option<Arc<Tree>>,
        ih: InfoHash,
        dir: usize,
    },
    Item {
        tree: Arc<Tree>,
        file: usize,
    },
}

impl Ctx<'_> {
    /// Moves when a torrent comes or goes, or one waiting for its metadata gets it (its
    /// folder's content changes); not when a stored torrent is loaded or dropped from memory.
    fn update_id(&self) -> u32 {
        let waiting: Vec<InfoHash> = self
            .engine
            .torrents()
            .iter()
            .filter(|t| t.info().is_none())
            .map(|t| t.ih)
            .collect();
        self.state.update_id(&self.engine.known(), &waiting)
    }

    /// The torrent's info if it is known now (from memory or the metainfo store); never waits.
    fn info(
        &self,
        ih: InfoHash,
        live: Option<&HashMap<InfoHash, Option<Arc<Info>>>>,
    ) -> Option<Arc<Info>> {
        if let Some(Some(i)) = live.and_then(|l| l.get(&ih)) {
            return Some(i.clone());
        }
        // As the mount does: a short-lived reference loads stored metainfo without peers.
        // Beyond -maxPendingTorrents the torrent shows as an empty folder, as one without info.
        self.engine.acquire(ih, &[]).ok()?.info()
    }

    fn torrent(&self, ih: InfoHash, info: Option<Arc<Info>>) -> Obj {
        Obj::Container {
            tree: info.map(|i| self.state.trees.get_or_build(i)),
            ih,
            dir: 0,
        }
    }
}

fn browse(ctx: &Ctx<'_>, a: &Action) -> Result<Out, Fault> {
    let id_text = a
        .arg("ObjectID")
        .ok_or_else(|| Fault::invalid_args("ObjectID is missing"))?;
    let children = match a.arg("BrowseFlag").map(str::trim) {
        Some("BrowseMetadata") => false,
        Some("BrowseDirectChildren") => true,
        other => {
            return Err(Fault::invalid_args(format!(
                "BrowseFlag must be BrowseMetadata or BrowseDirectChildren, not {:.40?}",
                other.unwrap_or("")
            )))
        }
    };
    let start = ui4(a, "StartingIndex")?;
    let count = match ui4(a, "RequestedCount")? {
        0 => MAX_PAGE,
        n => n.min(MAX_PAGE),
    };
    let no_such = || Fault::new(NO_SUCH_OBJECT, format!("No such object: {id_text:.100?}"));
    let id = ObjectId::parse(id_text.trim()).ok_or_else(no_such)?;
    let known = ctx.engine.known();
    let obj = match id {
        ObjectId::Root => Obj::Root {
            children: known.len(),
        },
        ObjectId::Dir(ih, d) | ObjectId::File(ih, d) => {
            if known.binary_search(&ih).is_err() {
                return Err(no_such());
            }
            let tree = ctx.info(ih, None).map(|i| ctx.state.trees.get_or_build(i));
            match (id, tree) {
                (ObjectId::Dir(_, 0), tree) => Obj::Container { tree, ih, dir: 0 },
                (ObjectId::Dir(..), Some(t)) if t.files.dir(d).is_some() => Obj::Container {
                    tree: Some(t),
                    ih,
                    dir: d,
                },
                (ObjectId::File(..), Some(t)) if t.item(d).is_some() => {
                    Obj::Item { tree: t, file: d }
                }
                _ => return Err(no_such()),
            }
        }
    };
    let (objs, total) = if !children {
        (vec![obj], 1)
    } else {
        list_children(ctx, obj, &known, start, count, id_text)?
    };
    let mut w = Writer::new(Vec::new());
    let _ = didl(&mut w, ctx, &objs);
    Ok(vec![
        (
            "Result",
            String::from_utf8_lossy(&w.into_inner()).into_owned(),
        ),
        ("NumberReturned", objs.len().to_string()),
        ("TotalMatches", total.to_string()),
        ("UpdateID", ctx.update_id().to_string()),
    ])
}

fn list_children(
    ctx: &Ctx<'_>,
    obj: Obj,
    known: &[InfoHash],
    start: usize,
    count: usize,
    id_text: &str,
) -> Result<(Vec<Obj>, usize), Fault> {
    match obj {
        Obj::Root { children } => {
            let live: HashMap<InfoHash, Option<Arc<Info>>> = ctx
                .engine
                .torrents()
                .into_iter()
                .map(|t| (t.ih, t.info()))
                .collect();
            let page = known.iter().skip(start).take(count);
            let objs = page
                .map(|&ih| ctx.torrent(ih, ctx.info(ih, Some(&live))))
                .collect();
            Ok((objs, children))
        }
        Obj::Container { tree: None, .. } => Ok((Vec::new(), 0)),
        Obj::Container {
            tree: Some(t),
            dir,
            ih,
        } => {
            let objs = t
                .children(dir)
                .skip(start)
                .take(count)
                .map(|c| match c {
                    Kind::Dir(d) => Obj::Container {
                        tree: Some(t.clone()),
                        ih,
                        dir: d,
                    },
                    Kind::File(f) => Obj::Item {
                        tree: t.clone(),
                        file: f,
                    },
                })
                .collect();
            Ok((objs, t.children(dir).count()))
        }
        Obj::Item { .. } => Err(Fault::new(
            NO_SUCH_CONTAINER,
            format!("No such container: {id_text:.100?} is an item"),
        )),
    }
}

/// `/data/infohash/<ih>/<path>`, each byte of the display path outside the unreserved set
/// percent-encoded (`/` kept).
pub(crate) fn data_url(base: &str, ih: InfoHash, raw_path: &[u8]) -> String {
    let mut s = format!("{base}/data/infohash/{ih}/");
    for &b in raw_path {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

const DIDL_NS: &str = "urn:schemas-upnp-org:metadata-1-0/DIDL-Lite/";
const DC_NS: &str = "http://purl.org/dc/elements/1.1/";
const UPNP_NS: &str = "urn:schemas-upnp-org:metadata-1-0/upnp/";

fn didl(w: &mut Writer<Vec<u8>>, ctx: &Ctx<'_>, objs: &[Obj]) -> std::io::Result<()> {
    w.create_element("DIDL-Lite")
        .with_attribute(("xmlns", DIDL_NS))
        .with_attribute(("xmlns:dc", DC_NS))
        .with_attribute(("xmlns:upnp", UPNP_NS))
        .write_inner_content(|w| {
            for o in objs {
                object(w, ctx, o)?;
            }
            Ok(())
        })?;
    Ok(())
}

fn container(
    w: &mut Writer<Vec<u8>>,
    id: &str,
    parent: &str,
    children: usize,
    title: &str,
) -> std::io::Result<()> {
    w.create_element("container")
        .with_attribute(("id", id))
        .with_attribute(("parentID", parent))
        .with_attribute(("restricted", "1"))
        .with_attribute(("searchable", "0"))
        .with_attribute(("childCount", children.to_string().as_str()))
        .write_inner_content(|w| {
            w.create_element("dc:title")
                .write_text_content(BytesText::new(&super::soap::xml_safe(title)))?;
            w.create_element("upnp:class")
                .write_text_content(BytesText::new("object.container.storageFolder"))?;
            // Required of a storageFolder; -1 is "unknown".
            w.create_element("upnp:storageUsed")
                .write_text_content(BytesText::new("-1"))?;
            Ok(())
        })?;
    Ok(())
}

fn object(w: &mut Writer<Vec<u8>>, ctx: &Ctx<'_>, o: &Obj) -> std::io::Result<()> {
    match o {
        Obj::Root { children } => container(w, "0", "-1", *children, &ctx.state.friendly_name),
        Obj::Container { tree, ih, dir } => {
            let id = ObjectId::Dir(*ih, *dir).render();
            let Some(t) = tree else {
                return container(w, &id, "0", 0, &ih.to_string());
            };
            let Some(d) = t.files.dir(*dir) else {
                return Ok(());
            };
            let (parent, title) = match d.parent() {
                None => ("0".to_owned(), t.info().name.as_str()),
                Some(p) => (ObjectId::Dir(*ih, p).render(), d.name()),
            };
            container(w, &id, &parent, t.children(*dir).count(), title)
        }
        Obj::Item { tree, file } => item(w, ctx, tree, *file),
    }
}

fn item(w: &mut Writer<Vec<u8>>, ctx: &Ctx<'_>, t: &Tree, file: usize) -> std::io::Result<()> {
    let Some((dir, mime, media)) = t.item(file) else {
        return Ok(());
    };
    let f = &t.info().files[file];
    let title = f.components.last().map_or("", String::as_str);
    let url = data_url(ctx.base_url, t.ih(), &f.raw_path);
    let protocol = format!("http-get:*:{mime}:{DLNA_FEATURES}");
    w.create_element("item")
        .with_attribute(("id", ObjectId::File(t.ih(), file).render().as_str()))
        .with_attribute(("parentID", ObjectId::Dir(t.ih(), dir).render().as_str()))
        .with_attribute(("restricted", "1"))
        .write_inner_content(|w| {
            w.create_element("dc:title")
                .write_text_content(BytesText::new(&super::soap::xml_safe(title)))?;
            w.create_element("upnp:class")
                .write_text_content(BytesText::new(media.upnp_class()))?;
            w.create_element("res")
                .with_attribute(("protocolInfo", protocol.as_str()))
                .with_attribute(("size", f.length.to_string().as_str()))
                .write_text_content(BytesText::new(&url))?;
            Ok(())
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_escape_paths() {
        let ih =
            confluence_core::ident::parse_hex("0123456789abcdef0123456789abcdef01234567").unwrap();
        assert_eq!(
            data_url("http://h:1", ih, "d/<b>&\"x é.mp4".as_bytes()),
            "http://h:1/data/infohash/0123456789abcdef0123456789abcdef01234567/\
             d/%3Cb%3E%26%22x%20%C3%A9.mp4"
        );
    }
}
