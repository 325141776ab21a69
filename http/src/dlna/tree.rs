//! The ContentDirectory's view of a torrent: the directory tree every front door shows
//! ([`confluence_core::tree`]), with only media files as items.
//!
//! Object IDs: `0` is the root; `<ih>` a torrent; `<ih>/d<n>` its directory `n`; `<ih>/f<n>`
//! file `n` of its info. They depend only on the info dict, so they are stable across restarts.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use confluence_core::{
    ident::InfoHash,
    metainfo::Info,
    tree::{FileTree, Kind},
};

/// What a media file is, for its `upnp:class`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Media {
    Video,
    Audio,
    Image,
}

impl Media {
    /// The class for a MIME type; `None`: not media (left out of the listing).
    pub fn of_mime(mime: &str) -> Option<Media> {
        match mime.split('/').next()? {
            "video" => Some(Media::Video),
            "audio" => Some(Media::Audio),
            "image" => Some(Media::Image),
            _ => None,
        }
    }

    pub fn upnp_class(self) -> &'static str {
        match self {
            Media::Video => "object.item.videoItem",
            Media::Audio => "object.item.audioItem.musicTrack",
            Media::Image => "object.item.imageItem.photo",
        }
    }
}

/// A torrent as the ContentDirectory shows it: the front doors' shared tree
/// ([`confluence_core::tree`]) with the MIME type and class of each media file.
#[derive(Debug)]
pub(crate) struct Tree {
    pub files: FileTree,
    /// The MIME type and class of each file of `info.files` that is listed (shown and media).
    media: Vec<Option<(String, Media)>>,
}

impl Tree {
    pub fn build(info: Arc<Info>) -> Tree {
        let files = FileTree::new(info);
        let mut media = vec![None; files.info().files.len()];
        for (i, f) in files.files() {
            let mime =
                crate::range::content_type_for(f.components.last().map_or("", String::as_str));
            media[i] = Media::of_mime(&mime).map(|m| (mime, m));
        }
        Tree { files, media }
    }

    pub fn info(&self) -> &Arc<Info> {
        self.files.info()
    }

    pub fn ih(&self) -> InfoHash {
        self.info().info_hash
    }

    /// What container `dir` lists: its directories and media files, in torrent order (nothing
    /// for a directory the tree does not have).
    pub fn children(&self, dir: usize) -> impl Iterator<Item = Kind> + '_ {
        let entries = self.files.dir(dir).map_or(&[][..], |d| d.entries());
        entries.iter().map(|e| e.kind).filter(|k| match *k {
            Kind::Dir(_) => true,
            Kind::File(f) => self.media[f].is_some(),
        })
    }

    /// A listed file's container, MIME type and class; `None`: file `f` is not listed.
    pub fn item(&self, f: usize) -> Option<(usize, &str, Media)> {
        let (mime, media) = self.media.get(f)?.as_ref()?;
        Some((self.files.file_dir(f)?, mime, *media))
    }
}

/// What an object ID names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ObjectId {
    Root,
    /// A directory of a torrent; `0` is the torrent itself.
    Dir(InfoHash, usize),
    File(InfoHash, usize),
}

impl ObjectId {
    /// `None`: not an ID this server hands out.
    pub fn parse(s: &str) -> Option<ObjectId> {
        if s == "0" {
            return Some(ObjectId::Root);
        }
        let (ih, rest) = match s.split_once('/') {
            Some((ih, rest)) => (ih, Some(rest)),
            None => (s, None),
        };
        if ih.len() != 40 || !ih.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let ih = confluence_core::ident::parse_hex(ih).ok()?;
        let index = |r: &str| -> Option<usize> {
            // Canonical decimal only: one ID per object.
            let ok = !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit());
            let ok = ok && (r == "0" || !r.starts_with('0'));
            ok.then(|| r.parse().ok()).flatten()
        };
        match rest {
            None => Some(ObjectId::Dir(ih, 0)),
            Some(r) => match r.split_at_checked(1)? {
                ("d", n) => index(n).filter(|&d| d > 0).map(|d| ObjectId::Dir(ih, d)),
                ("f", n) => index(n).map(|f| ObjectId::File(ih, f)),
                _ => None,
            },
        }
    }

    pub fn render(self) -> String {
        match self {
            ObjectId::Root => "0".to_owned(),
            ObjectId::Dir(ih, 0) => ih.to_string(),
            ObjectId::Dir(ih, d) => format!("{ih}/d{d}"),
            ObjectId::File(ih, f) => format!("{ih}/f{f}"),
        }
    }
}

/// Trees of recently browsed torrents, so that paging through a large torrent does not rebuild
/// its tree per request. Bounded: when full it starts over.
#[derive(Default)]
pub(crate) struct TreeCache(Mutex<HashMap<InfoHash, Arc<Tree>>>);

const TREE_CACHE_MAX: usize = 64;

impl TreeCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<InfoHash, Arc<Tree>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get_or_build(&self, info: Arc<Info>) -> Arc<Tree> {
        let ih = info.info_hash;
        if let Some(t) = self.lock().get(&ih) {
            return t.clone();
        }
        let tree = Arc::new(Tree::build(info));
        let mut g = self.lock();
        if g.len() >= TREE_CACHE_MAX {
            g.clear();
        }
        g.insert(ih, tree.clone());
        tree
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_round_trip() {
        let ih = "0123456789abcdef0123456789abcdef01234567";
        for s in ["0", ih, &format!("{ih}/d3"), &format!("{ih}/f0")] {
            assert_eq!(ObjectId::parse(s).map(|o| o.render()).as_deref(), Some(s));
        }
        for bad in [
            "",
            "1",
            "-1",
            "00",
            &ih[..39],
            &format!("{ih}/"),
            &format!("{ih}/d0"),
            &format!("{ih}/d01"),
            &format!("{ih}/f-1"),
            &format!("{ih}/x1"),
            &format!("{ih}/f99999999999999999999999"),
            &format!("{ih}/é"),
            "zz23456789abcdef0123456789abcdef01234567",
        ] {
            assert_eq!(ObjectId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lists_media_files_of_the_shared_tree() {
        let mut b = b"d5:filesl".to_vec();
        for path in [
            &["a", "x.mp4"][..],
            &["a", "x.mp4"], // a duplicate: the first wins
            &["b.txt"],      // not media
            &["c.flac"],
            &["c.flac", "y.mp4"], // under a name that is a file
            &["b.txt", "z.mp4"],  // under a name that is a file, though not listed
        ] {
            b.extend_from_slice(b"d6:lengthi1e4:pathl");
            for c in path {
                b.extend_from_slice(format!("{}:{c}", c.len()).as_bytes());
            }
            b.extend_from_slice(b"ee");
        }
        b.extend_from_slice(b"e4:name1:t12:piece lengthi16384e6:pieces20:");
        b.extend_from_slice(&[7; 20]);
        b.push(b'e');
        let info = confluence_core::metainfo::parse_info(&b).unwrap();
        let t = Tree::build(Arc::new(info));
        assert_eq!(t.files.dir_count(), 2);
        let kids = |d| t.children(d).collect::<Vec<_>>();
        assert_eq!(kids(0), [Kind::Dir(1), Kind::File(3)]);
        assert_eq!(kids(1), [Kind::File(0)]);
        assert_eq!(kids(2), []);
        let dirs: Vec<_> = (0..7).map(|f| t.item(f).map(|(d, ..)| d)).collect();
        assert_eq!(dirs, [Some(1), None, None, Some(0), None, None, None]);
        assert_eq!(t.item(3), Some((0, "audio/flac", Media::Audio)));
    }

    #[test]
    fn media_classes() {
        assert_eq!(Media::of_mime("video/mp4"), Some(Media::Video));
        assert_eq!(Media::of_mime("audio/flac"), Some(Media::Audio));
        assert_eq!(Media::of_mime("image/jpeg"), Some(Media::Image));
        assert_eq!(Media::of_mime("text/plain; charset=utf-8"), None);
        assert_eq!(Media::of_mime("application/octet-stream"), None);
    }
}
