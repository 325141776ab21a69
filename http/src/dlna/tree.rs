//! The ContentDirectory's view of a torrent: the same directory tree as the FUSE mount
//! (`mountd/src/tree.rs`: display names, the torrent name is not a level, unusable or duplicate
//! names left out), with only media files as items.
//!
//! Object IDs: `0` is the root; `<ih>` a torrent; `<ih>/d<n>` its directory `n`; `<ih>/f<n>`
//! file `n` of its info. They depend only on the info dict, so they are stable across restarts.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use confluence_core::{ident::InfoHash, metainfo::Info};

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Child {
    Dir(usize),
    /// An index into `info.files`.
    File(usize),
}

#[derive(Debug)]
pub(crate) struct Dir {
    /// Display name (unused for `dirs[0]`, the torrent itself).
    pub name: String,
    /// `None` for `dirs[0]`.
    pub parent: Option<usize>,
    /// Subdirectories and media files, in torrent order.
    pub children: Vec<Child>,
}

#[derive(Debug)]
pub(crate) struct Tree {
    pub info: Arc<Info>,
    pub dirs: Vec<Dir>,
    /// The directory of each file of `info.files` that is listed (a media file with a usable name).
    pub file_dir: Vec<Option<usize>>,
    /// The MIME type and class of each listed file.
    pub file_media: Vec<Option<(String, Media)>>,
}

/// A name the mount can show: not empty, `.` or `..`, and without `/` or NUL.
fn usable(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

impl Tree {
    pub fn build(info: Arc<Info>) -> Tree {
        let mut dirs = vec![Dir {
            name: String::new(),
            parent: None,
            children: Vec::new(),
        }];
        // (dir, name) → child, for the mount's first-wins rule on duplicate names.
        let mut names: HashMap<(usize, String), Child> = HashMap::new();
        let mut file_dir = vec![None; info.files.len()];
        let mut file_media = vec![None; info.files.len()];
        'files: for (i, f) in info.visible_files() {
            let comps = &f.components;
            if comps.is_empty() || !comps.iter().all(|c| usable(c)) {
                continue;
            }
            let (last, parents) = comps.split_last().expect("not empty");
            let mut cur = 0usize;
            for c in parents {
                match names.get(&(cur, c.clone())) {
                    Some(Child::Dir(d)) => cur = *d,
                    Some(Child::File(_)) => continue 'files,
                    None => {
                        let d = dirs.len();
                        dirs.push(Dir {
                            name: c.clone(),
                            parent: Some(cur),
                            children: Vec::new(),
                        });
                        dirs[cur].children.push(Child::Dir(d));
                        names.insert((cur, c.clone()), Child::Dir(d));
                        cur = d;
                    }
                }
            }
            if names.contains_key(&(cur, last.clone())) {
                continue;
            }
            names.insert((cur, last.clone()), Child::File(i));
            let mime = crate::range::content_type_for(last);
            let Some(media) = Media::of_mime(&mime) else {
                continue;
            };
            dirs[cur].children.push(Child::File(i));
            file_dir[i] = Some(cur);
            file_media[i] = Some((mime, media));
        }
        Tree {
            info,
            dirs,
            file_dir,
            file_media,
        }
    }

    pub fn ih(&self) -> InfoHash {
        self.info.info_hash
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
    fn tree_follows_the_mount_and_lists_media_only() {
        let mut b = b"d5:filesl".to_vec();
        for path in [
            &["a", "x.mp4"][..],
            &["a", "x.mp4"], // a duplicate: the first wins
            &["b.txt"],      // not media
            &["c.flac"],
            &["c.flac", "y.mp4"], // under a name that is a file
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
        assert_eq!(t.dirs.len(), 2);
        assert_eq!(t.dirs[0].children, [Child::Dir(1), Child::File(3)]);
        assert_eq!((t.dirs[1].name.as_str(), t.dirs[1].parent), ("a", Some(0)));
        assert_eq!(t.dirs[1].children, [Child::File(0)]);
        assert_eq!(t.file_dir, [Some(1), None, None, Some(0), None]);
        assert_eq!(
            t.file_media[3],
            Some(("audio/flac".to_owned(), Media::Audio))
        );
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
