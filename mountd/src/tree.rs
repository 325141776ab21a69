//! The inode table: what every inode number names, and each torrent's directory tree.
//!
//! Inode numbers are stable: a hash of (infohash, kind, display path), so the same file gets the
//! same number in every mount and every run (a collision, which 64 bits make unlikely, takes the
//! next free number). Inodes of torrents with metadata stay for the life of the mount. The
//! directory of an infohash whose metadata is unknown (any 40-hex name looked up) is counted:
//! each lookup reply is one kernel reference, `forget` drops them, and at zero the inode goes;
//! at most [`MAX_BARE`] such inodes exist at once (beyond: EAGAIN).

use std::{
    collections::HashMap,
    ffi::{OsStr, OsString},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use confluence_core::{ident::InfoHash, metainfo::Info};
use fuser::{FileAttr, FileType, INodeNo};
use parking_lot::RwLock;
use tracing::warn;

pub(crate) const ROOT: u64 = 1;

/// Most inodes of infohashes without metadata that the kernel may hold at once.
pub(crate) const MAX_BARE: usize = 4096;

/// The I/O size hint reported in `st_blksize`.
const BLKSIZE: u32 = 128 * 1024;

/// What an inode number names.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Node {
    Root,
    /// The `<infohash>` directory.
    Torrent(InfoHash),
    /// A directory inside a torrent: an index into [`Tree::dirs`] (never 0: that is the torrent
    /// directory itself).
    Dir(InfoHash, usize),
    /// A file: an index into `info.files`.
    File(InfoHash, usize),
}

/// What a directory entry points at.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Dir(usize),
    File(usize),
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub name: OsString,
    pub ino: u64,
    pub kind: Kind,
}

#[derive(Debug)]
pub(crate) struct DirNode {
    pub ino: u64,
    pub parent: u64,
    /// In torrent order.
    pub entries: Vec<Entry>,
    by_name: HashMap<OsString, usize>,
}

/// A torrent's files as a directory tree (display names; the torrent name is not a level).
#[derive(Debug)]
pub(crate) struct Tree {
    pub info: Arc<Info>,
    pub mtime: SystemTime,
    /// `dirs[0]` is the torrent directory.
    pub dirs: Vec<DirNode>,
    /// The inode of each file of `info.files` (`None`: not representable, left out).
    pub file_inos: Vec<Option<u64>>,
}

impl Tree {
    pub fn child(&self, dir: usize, name: &OsStr) -> Option<&Entry> {
        let d = self.dirs.get(dir)?;
        d.by_name.get(name).map(|&i| &d.entries[i])
    }
}

#[derive(Default)]
struct Inner {
    nodes: HashMap<u64, Node>,
    keys: HashMap<(InfoHash, u8, String), u64>,
    trees: HashMap<InfoHash, Arc<Tree>>,
    /// Kernel references (lookup replies not yet forgotten) of metadata-less torrent inodes.
    bare_lookups: HashMap<u64, u64>,
}

/// The inode table (see the module doc).
pub(crate) struct Table {
    inner: RwLock<Inner>,
    /// Ownership and default times of every node.
    pub uid: u32,
    pub gid: u32,
    pub started: SystemTime,
}

/// FNV-1a, 64 bits: stable across builds and runs (unlike std's hasher).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Inner {
    fn alloc(&mut self, ih: InfoHash, kind: u8, path: &str, node: Node) -> u64 {
        let key = (ih, kind, path.to_owned());
        if let Some(&ino) = self.keys.get(&key) {
            return ino;
        }
        // Leave the top bit clear for tools that keep inode numbers in signed 64-bit integers.
        let mut ino = fnv1a(&[&ih.0, &[kind], path.as_bytes()]) >> 1;
        while ino <= ROOT || self.nodes.contains_key(&ino) {
            ino = (ino + 1) & (u64::MAX >> 1);
        }
        self.nodes.insert(ino, node);
        self.keys.insert(key, ino);
        ino
    }
}

/// A name the kernel can show: not empty, `.` or `..`, and without `/` or NUL.
fn usable(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

fn unix_time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

impl Table {
    pub fn new() -> Self {
        let mut inner = Inner::default();
        inner.nodes.insert(ROOT, Node::Root);
        // SAFETY: geteuid/getegid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        Self {
            inner: RwLock::new(inner),
            uid,
            gid,
            started: SystemTime::now(),
        }
    }

    pub fn node(&self, ino: u64) -> Option<Node> {
        self.inner.read().nodes.get(&ino).copied()
    }

    pub fn tree(&self, ih: &InfoHash) -> Option<Arc<Tree>> {
        self.inner.read().trees.get(ih).cloned()
    }

    /// The inode of the `<ih>` directory.
    pub fn torrent_ino(&self, ih: InfoHash) -> u64 {
        if let Some(&ino) = self.inner.read().keys.get(&(ih, b't', String::new())) {
            return ino;
        }
        self.inner.write().alloc(ih, b't', "", Node::Torrent(ih))
    }

    /// The torrent's tree, built once its info is known (later calls return the first one).
    pub fn add_tree(&self, info: Arc<Info>, creation_date: Option<i64>) -> Arc<Tree> {
        let ih = info.info_hash;
        if let Some(t) = self.tree(&ih) {
            return t;
        }
        let mut g = self.inner.write();
        if let Some(t) = g.trees.get(&ih) {
            return t.clone();
        }
        let top = g.alloc(ih, b't', "", Node::Torrent(ih));
        let mut dirs = vec![DirNode {
            ino: top,
            parent: ROOT,
            entries: Vec::new(),
            by_name: HashMap::new(),
        }];
        let mut file_inos = vec![None; info.files.len()];
        let mut skipped = 0usize;
        'files: for (i, f) in info.visible_files() {
            let comps = &f.components;
            if comps.is_empty() || !comps.iter().all(|c| usable(c)) {
                skipped += 1;
                continue;
            }
            let (last, parents) = comps.split_last().expect("not empty");
            let mut cur = 0usize;
            let mut path = String::new();
            for c in parents {
                path.push('/');
                path.push_str(c);
                let name = OsString::from(c);
                match dirs[cur]
                    .by_name
                    .get(&name)
                    .map(|&e| dirs[cur].entries[e].kind)
                {
                    Some(Kind::Dir(d)) => cur = d,
                    Some(Kind::File(_)) => {
                        skipped += 1;
                        continue 'files;
                    }
                    None => {
                        let d = dirs.len();
                        let ino = g.alloc(ih, b'd', &path, Node::Dir(ih, d));
                        let parent = dirs[cur].ino;
                        dirs.push(DirNode {
                            ino,
                            parent,
                            entries: Vec::new(),
                            by_name: HashMap::new(),
                        });
                        let at = dirs[cur].entries.len();
                        dirs[cur].entries.push(Entry {
                            name: name.clone(),
                            ino,
                            kind: Kind::Dir(d),
                        });
                        dirs[cur].by_name.insert(name, at);
                        cur = d;
                    }
                }
            }
            let name = OsString::from(last);
            if dirs[cur].by_name.contains_key(&name) {
                skipped += 1;
                continue;
            }
            path.push('/');
            path.push_str(last);
            let ino = g.alloc(ih, b'f', &path, Node::File(ih, i));
            let at = dirs[cur].entries.len();
            dirs[cur].entries.push(Entry {
                name: name.clone(),
                ino,
                kind: Kind::File(i),
            });
            dirs[cur].by_name.insert(name, at);
            file_inos[i] = Some(ino);
        }
        if skipped > 0 {
            warn!(%ih, skipped, "files with unusable or duplicate names are not shown in the mount");
        }
        let tree = Arc::new(Tree {
            info,
            mtime: creation_date.map_or(self.started, unix_time),
            dirs,
            file_inos,
        });
        g.trees.insert(ih, tree.clone());
        tree
    }

    fn attr(&self, ino: u64, kind: FileType, size: u64, mtime: SystemTime) -> FileAttr {
        let dir = kind == FileType::Directory;
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind,
            perm: if dir { 0o555 } else { 0o444 },
            nlink: if dir { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: BLKSIZE,
            flags: 0,
        }
    }

    pub fn root_attr(&self) -> FileAttr {
        self.attr(ROOT, FileType::Directory, 0, self.started)
    }

    /// The `<ih>` directory before its info is known.
    pub fn bare_torrent_attr(&self, ih: InfoHash) -> FileAttr {
        self.attr(self.torrent_ino(ih), FileType::Directory, 0, self.started)
    }

    /// The `<ih>` directory before its info is known, for a lookup reply: counts one kernel
    /// reference. `None` when [`MAX_BARE`] such inodes are already held.
    pub fn lookup_bare_torrent(&self, ih: InfoHash) -> Option<FileAttr> {
        let ino = {
            let mut g = self.inner.write();
            let known = g.keys.get(&(ih, b't', String::new())).copied();
            let counted = known.is_some_and(|ino| g.bare_lookups.contains_key(&ino));
            if !counted && g.bare_lookups.len() >= MAX_BARE {
                return None;
            }
            let ino = match known {
                Some(ino) => ino,
                None => g.alloc(ih, b't', "", Node::Torrent(ih)),
            };
            *g.bare_lookups.entry(ino).or_default() += 1;
            ino
        };
        Some(self.attr(ino, FileType::Directory, 0, self.started))
    }

    /// The kernel dropped `n` references to `ino`: a metadata-less torrent inode with none
    /// left goes (its number is derived again if the name is looked up later).
    pub fn forget(&self, ino: u64, n: u64) {
        let mut g = self.inner.write();
        let Some(count) = g.bare_lookups.get_mut(&ino) else {
            return;
        };
        *count = count.saturating_sub(n);
        if *count > 0 {
            return;
        }
        g.bare_lookups.remove(&ino);
        if let Some(Node::Torrent(ih)) = g.nodes.get(&ino).copied() {
            if !g.trees.contains_key(&ih) {
                g.nodes.remove(&ino);
                g.keys.remove(&(ih, b't', String::new()));
            }
        }
    }

    /// Inodes in the table (the root included).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.read().nodes.len()
    }

    pub fn dir_attr(&self, tree: &Tree, dir: usize) -> FileAttr {
        self.attr(tree.dirs[dir].ino, FileType::Directory, 0, tree.mtime)
    }

    pub fn file_attr(&self, tree: &Tree, file: usize) -> Option<FileAttr> {
        let ino = (*tree.file_inos.get(file)?)?;
        Some(self.attr(
            ino,
            FileType::RegularFile,
            tree.info.files[file].length,
            tree.mtime,
        ))
    }

    pub fn entry_attr(&self, tree: &Tree, e: &Entry) -> Option<FileAttr> {
        match e.kind {
            Kind::Dir(d) => Some(self.dir_attr(tree, d)),
            Kind::File(f) => self.file_attr(tree, f),
        }
    }
}

#[cfg(test)]
mod bare_tests {
    use super::*;

    fn ih(n: u32) -> InfoHash {
        let mut b = [0u8; 20];
        b[..4].copy_from_slice(&n.to_be_bytes());
        InfoHash(b)
    }

    /// Names looked up once leave no inode behind once the kernel forgets them, and no more
    /// than `MAX_BARE` are held at once.
    #[test]
    fn bare_torrent_inodes_are_forgotten_and_bounded() {
        let t = Table::new();
        let a = t.lookup_bare_torrent(ih(1)).expect("first lookup");
        let again = t.lookup_bare_torrent(ih(1)).expect("second lookup");
        assert_eq!(a.ino, again.ino, "one name, one inode");
        assert_eq!(t.len(), 2);
        t.forget(a.ino.0, 1);
        assert!(t.node(a.ino.0).is_some(), "one reference is left");
        t.forget(a.ino.0, 1);
        assert!(
            t.node(a.ino.0).is_none(),
            "no reference left: the inode is gone"
        );
        assert_eq!(t.len(), 1, "only the root is left");

        for n in 0..MAX_BARE as u32 {
            assert!(t.lookup_bare_torrent(ih(100 + n)).is_some(), "lookup {n}");
        }
        assert!(
            t.lookup_bare_torrent(ih(99)).is_none(),
            "one more than MAX_BARE is refused"
        );
        let held = t
            .lookup_bare_torrent(ih(100))
            .expect("a held one may be looked up again");
        t.forget(held.ino.0, 2);
        assert!(
            t.lookup_bare_torrent(ih(99)).is_some(),
            "room again after a forget"
        );
    }
}
