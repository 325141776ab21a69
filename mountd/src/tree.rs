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
    ffi::OsStr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use confluence_core::{
    ident::InfoHash,
    metainfo::Info,
    tree::{Entry, FileTree, Kind, ROOT as TOP},
};
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
    /// A directory inside a torrent: its index in the torrent's [`FileTree`] (never 0: that is
    /// the torrent directory itself).
    Dir(InfoHash, usize),
    /// A file: an index into `info.files`.
    File(InfoHash, usize),
}

/// A torrent's tree as the mount shows it: the front doors' shared tree
/// ([`confluence_core::tree`]) with an inode number for each of its nodes.
#[derive(Debug)]
pub(crate) struct Tree {
    pub files: FileTree,
    pub mtime: SystemTime,
    /// The inode of each directory of `files` (`dir_inos[0]`: the torrent directory).
    dir_inos: Vec<u64>,
    /// The inode of each file of `info.files` (`None`: not shown).
    file_inos: Vec<Option<u64>>,
}

impl Tree {
    pub fn info(&self) -> &Arc<Info> {
        self.files.info()
    }

    /// The entry `name` of directory `dir` (names are UTF-8: any other name is not there).
    pub fn child(&self, dir: usize, name: &OsStr) -> Option<&Entry> {
        self.files.child(dir, name.to_str()?)
    }

    pub fn dir_ino(&self, dir: usize) -> u64 {
        self.dir_inos[dir]
    }

    /// The inode of the directory that holds `dir` (the root for the torrent directory).
    pub fn parent_ino(&self, dir: usize) -> u64 {
        match self.files.dir(dir).and_then(|d| d.parent()) {
            Some(p) => self.dir_inos[p],
            None => ROOT,
        }
    }

    pub fn ino(&self, kind: Kind) -> Option<u64> {
        match kind {
            Kind::Dir(d) => self.dir_inos.get(d).copied(),
            Kind::File(f) => self.file_inos.get(f).copied().flatten(),
        }
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

    /// Numbers directory `dir` of `files` and those above it that have no number yet
    /// (`inos[d] == 0`; the torrent directory has one), top down.
    fn number_dirs(&mut self, ih: InfoHash, files: &FileTree, dir: usize, inos: &mut [u64]) {
        let mut todo = Vec::new();
        let mut d = dir;
        while inos[d] == 0 {
            todo.push(d);
            d = files.dir(d).and_then(|x| x.parent()).unwrap_or(TOP);
        }
        for &d in todo.iter().rev() {
            let path = format!("/{}", files.dir_path(d).join("/"));
            inos[d] = self.alloc(ih, b'd', &path, Node::Dir(ih, d));
        }
    }
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
        let files = FileTree::new(info);
        let mut dir_inos = vec![0; files.dir_count()];
        dir_inos[TOP] = g.alloc(ih, b't', "", Node::Torrent(ih));
        let mut file_inos = vec![None; files.info().files.len()];
        // Each file's directories get their numbers when the first file in them does, before
        // it: the order numbers were always taken in (it decides only which of two colliding
        // paths takes the next free number).
        for (i, f) in files.files() {
            let dir = files.file_dir(i).expect("a shown file has a directory");
            g.number_dirs(ih, &files, dir, &mut dir_inos);
            let path = format!("/{}", f.components.join("/"));
            file_inos[i] = Some(g.alloc(ih, b'f', &path, Node::File(ih, i)));
        }
        if files.left_out() > 0 {
            let skipped = files.left_out();
            warn!(%ih, skipped, "files with unusable or duplicate names are not shown in the mount");
        }
        let tree = Arc::new(Tree {
            files,
            mtime: creation_date.map_or(self.started, unix_time),
            dir_inos,
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
        self.attr(tree.dir_ino(dir), FileType::Directory, 0, tree.mtime)
    }

    pub fn file_attr(&self, tree: &Tree, file: usize) -> Option<FileAttr> {
        let ino = tree.ino(Kind::File(file))?;
        Some(self.attr(
            ino,
            FileType::RegularFile,
            tree.info().files[file].length,
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

#[cfg(test)]
mod tree_tests {
    use super::*;

    /// Files of length 1: `a/b.txt`, `a/c/d`, `e`, and `a/b.txt` again.
    fn info() -> Arc<Info> {
        let files = [
            "d6:lengthi1e4:pathl1:a5:b.txtee",
            "d6:lengthi1e4:pathl1:a1:c1:dee",
            "d6:lengthi1e4:pathl1:eee",
            "d6:lengthi1e4:pathl1:a5:b.txtee",
        ]
        .concat();
        let pieces = "01234567890123456789";
        let b = format!("d5:filesl{files}e4:name1:t12:piece lengthi16384e6:pieces20:{pieces}e");
        Arc::new(confluence_core::metainfo::parse_info(b.as_bytes()).expect("valid info"))
    }

    /// Inode numbers come from (infohash, kind, display path), so they are the same in every
    /// mount and run; `.` and `..` of each directory are its own and its parent's.
    #[test]
    fn inodes_are_derived_from_paths() {
        let t = Table::new();
        let tree = t.add_tree(info(), Some(0));
        let ih = tree.info().info_hash;
        let derived = |kind: u8, path: &str| fnv1a(&[&ih.0, &[kind], path.as_bytes()]) >> 1;
        let kind = |path: &[&str]| tree.files.resolve(path).expect("in the tree");
        let ino = |path: &[&str]| tree.ino(kind(path));
        assert_eq!(tree.dir_ino(0), derived(b't', ""));
        assert_eq!(t.torrent_ino(ih), tree.dir_ino(0));
        assert_eq!(ino(&["a"]), Some(derived(b'd', "/a")));
        assert_eq!(ino(&["a", "c"]), Some(derived(b'd', "/a/c")));
        assert_eq!(ino(&["a", "b.txt"]), Some(derived(b'f', "/a/b.txt")));
        assert_eq!(ino(&["a", "c", "d"]), Some(derived(b'f', "/a/c/d")));
        assert_eq!(ino(&["e"]), Some(derived(b'f', "/e")));
        assert_eq!(tree.ino(Kind::File(3)), None, "a duplicate is not shown");
        let Kind::Dir(c) = kind(&["a", "c"]) else {
            panic!("a/c is a directory");
        };
        assert_eq!(tree.parent_ino(c), derived(b'd', "/a"));
        assert_eq!(tree.parent_ino(0), ROOT);
        let nodes = [
            (b'd', "/a/c", Node::Dir(ih, c)),
            (b'f', "/e", Node::File(ih, 2)),
        ];
        for (k, path, node) in nodes {
            let got = t.node(derived(k, path));
            assert_eq!(format!("{got:?}"), format!("{:?}", Some(node)), "{path}");
        }
        let attr = t.file_attr(&tree, 2).expect("e is shown");
        assert_eq!((attr.size, attr.mtime), (1, UNIX_EPOCH));
        assert!(t.file_attr(&tree, 3).is_none());
        assert!(
            Arc::ptr_eq(&tree, &t.add_tree(tree.info().clone(), None)),
            "built once"
        );
    }
}
