//! What the FUSE operations do. Nothing here blocks fuser's dispatch threads on the network:
//! an operation that has to wait (metadata of a torrent, bytes of a file) moves its reply into
//! a task on the engine's runtime and answers from there, interruptibly (see [`crate::wait`]).

use std::{ffi::OsStr, sync::Arc, time::Duration};

use confluence_core::{ident, tree::Kind, Engine, Selection, TorrentRef};
use fuser::{
    Errno, FileHandle, FileType, FopenFlags, Generation, INodeNo, OpenAccMode, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen,
};
use tracing::debug;

use crate::{
    files::{self, read_full, Handles},
    tree::{Node, Table, Tree, ROOT},
    wait::{interruptible, Stop},
};

/// Attributes and entries of torrent contents never change.
const TTL_LONG: Duration = Duration::from_secs(3600);
/// The root changes as torrents come and go; a torrent directory's times change once its
/// metadata arrives.
const TTL_SHORT: Duration = Duration::from_secs(1);
const GEN: Generation = Generation(0);

/// State shared by the dispatch threads and the tasks that answer for them.
pub(crate) struct Shared {
    pub engine: Engine,
    pub table: Table,
    pub handles: Handles,
    pub stop: Stop,
}

impl Shared {
    /// The torrent's tree if its metadata is at hand (never waits), else a reference to wait on
    /// (`Err(None)`: EAGAIN, `-maxPendingTorrents` torrents already wait for metadata).
    fn tree_or_ref(&self, ih: ident::InfoHash) -> Result<Arc<Tree>, Option<TorrentRef>> {
        if let Some(t) = self.table.tree(&ih) {
            return Ok(t);
        }
        let tref = match self.engine.acquire(ih, &[]) {
            Ok(t) => t,
            Err(e) => {
                debug!(%ih, "{e}");
                return Err(None);
            }
        };
        match tref.info() {
            Some(info) => {
                let date = *tref.creation_date.lock();
                Ok(self.table.add_tree(info, date))
            }
            None => Err(Some(tref)),
        }
    }

    /// Calls `f` with the torrent's tree: at once when its metadata is known, else from a task
    /// once it arrives (holding a reference only while waiting), or with the errno that ended
    /// the wait.
    fn with_tree<F>(self: &Arc<Self>, tid: u32, ih: ident::InfoHash, f: F)
    where
        F: FnOnce(&Shared, Result<Arc<Tree>, Errno>) + Send + 'static,
    {
        match self.tree_or_ref(ih) {
            Ok(tree) => f(self, Ok(tree)),
            Err(None) => f(self, Err(Errno::EAGAIN)),
            Err(Some(tref)) => {
                let this = self.clone();
                self.engine.runtime().spawn(async move {
                    debug!(%ih, "waiting for metadata");
                    let r = interruptible(tid, &this.stop, tref.wait_info())
                        .await
                        .map(|info| this.table.add_tree(info, *tref.creation_date.lock()));
                    drop(tref);
                    f(&this, r);
                });
            }
        }
    }

    fn lookup_torrent(&self, name: &OsStr, reply: ReplyEntry) {
        let Some(ih) = name
            .to_str()
            .filter(|s| s.len() == 40)
            .and_then(|s| ident::parse_hex(s).ok())
        else {
            return reply.error(Errno::ENOENT);
        };
        // Known or not, with metadata or not: answer now, so that listing the root with
        // attributes never blocks, and neither does an operation the kernel starts with a
        // lookup (`mkdir <ih>` gets EEXIST, not a wait for metadata that may never come). An
        // unknown infohash is added on demand, as `/data?ih=` does; its contents wait for the
        // metadata.
        match self.tree_or_ref(ih) {
            Ok(tree) => reply.entry(&TTL_LONG, &self.table.dir_attr(&tree, 0), GEN),
            Err(None) => reply.error(Errno::EAGAIN),
            Err(Some(_)) => match self.table.lookup_bare_torrent(ih) {
                Some(attr) => reply.entry(&TTL_SHORT, &attr, GEN),
                None => {
                    debug!(%ih, "too many infohashes without metadata looked up");
                    reply.error(Errno::EAGAIN)
                }
            },
        }
    }

    fn lookup_in(
        self: &Arc<Self>,
        tid: u32,
        ih: ident::InfoHash,
        dir: usize,
        name: &OsStr,
        reply: ReplyEntry,
    ) {
        let name = name.to_owned();
        self.with_tree(tid, ih, move |s, r| {
            let attr = r.and_then(|tree| {
                tree.child(dir, &name)
                    .and_then(|e| s.table.entry_attr(&tree, e))
                    .ok_or(Errno::ENOENT)
            });
            match attr {
                Ok(a) => reply.entry(&TTL_LONG, &a, GEN),
                Err(e) => reply.error(e),
            }
        });
    }

    fn readdir_tree(
        self: &Arc<Self>,
        tid: u32,
        ih: ident::InfoHash,
        dir: usize,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.with_tree(tid, ih, move |_, r| {
            let tree = match r {
                Ok(t) => t,
                Err(e) => return reply.error(e),
            };
            let Some(d) = tree.files.dir(dir) else {
                return reply.error(Errno::ENOENT);
            };
            let dots = [
                (tree.dir_ino(dir), FileType::Directory, OsStr::new(".")),
                (tree.parent_ino(dir), FileType::Directory, OsStr::new("..")),
            ];
            let entries = d.entries().iter().filter_map(|e| {
                let kind = match e.kind {
                    Kind::Dir(_) => FileType::Directory,
                    Kind::File(_) => FileType::RegularFile,
                };
                Some((tree.ino(e.kind)?, kind, OsStr::new(&e.name)))
            });
            for (i, (ino, kind, name)) in dots
                .into_iter()
                .chain(entries)
                .enumerate()
                .skip(offset as usize)
            {
                if reply.add(INodeNo(ino), i as u64 + 1, kind, name) {
                    break;
                }
            }
            reply.ok();
        });
    }

    pub fn lookup(self: &Arc<Self>, tid: u32, parent: u64, name: &OsStr, reply: ReplyEntry) {
        if self.stop.is_set() {
            return reply.error(Errno::EIO);
        }
        match self.table.node(parent) {
            Some(Node::Root) => self.lookup_torrent(name, reply),
            Some(Node::Torrent(ih)) => self.lookup_in(tid, ih, 0, name, reply),
            Some(Node::Dir(ih, d)) => self.lookup_in(tid, ih, d, name, reply),
            Some(Node::File(..)) => reply.error(Errno::ENOTDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    /// The kernel dropped `n` references to `ino` (see [`Table::forget`]).
    pub fn forget(&self, ino: u64, n: u64) {
        self.table.forget(ino, n);
    }

    pub fn getattr(&self, ino: u64, reply: ReplyAttr) {
        let t = &self.table;
        let tree_attr = |ih, f: &dyn Fn(&Tree) -> Option<fuser::FileAttr>| {
            t.tree(&ih).and_then(|tree| f(&tree))
        };
        match t.node(ino) {
            Some(Node::Root) => reply.attr(&TTL_SHORT, &t.root_attr()),
            Some(Node::Torrent(ih)) => match t.tree(&ih) {
                Some(tree) => reply.attr(&TTL_LONG, &t.dir_attr(&tree, 0)),
                None => reply.attr(&TTL_SHORT, &t.bare_torrent_attr(ih)),
            },
            Some(Node::Dir(ih, d)) => match tree_attr(ih, &|tree| Some(t.dir_attr(tree, d))) {
                Some(a) => reply.attr(&TTL_LONG, &a),
                None => reply.error(Errno::ENOENT),
            },
            Some(Node::File(ih, f)) => match tree_attr(ih, &|tree| t.file_attr(tree, f)) {
                Some(a) => reply.attr(&TTL_LONG, &a),
                None => reply.error(Errno::ENOENT),
            },
            None => reply.error(Errno::ENOENT),
        }
    }

    pub fn opendir(&self, ino: u64, reply: ReplyOpen) {
        match self.table.node(ino) {
            Some(Node::Root) => {
                let list = self
                    .engine
                    .known()
                    .into_iter()
                    .map(|ih| (self.table.torrent_ino(ih), ih.to_string().into()))
                    .collect();
                reply.opened(
                    FileHandle(self.handles.open_listing(list)),
                    FopenFlags::empty(),
                );
            }
            Some(Node::File(..)) => reply.error(Errno::ENOTDIR),
            Some(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            None => reply.error(Errno::ENOENT),
        }
    }

    pub fn readdir(
        self: &Arc<Self>,
        tid: u32,
        ino: u64,
        fh: u64,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if self.stop.is_set() {
            return reply.error(Errno::EIO);
        }
        match self.table.node(ino) {
            Some(Node::Root) => {
                let Some(list) = self.handles.listing(fh) else {
                    return reply.error(Errno::EBADF);
                };
                let dots = [(ROOT, OsStr::new(".")), (ROOT, OsStr::new(".."))];
                let all = dots
                    .into_iter()
                    .chain(list.iter().map(|(i, n)| (*i, n.as_os_str())));
                for (i, (ino, name)) in all.enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(ino), i as u64 + 1, FileType::Directory, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Some(Node::Torrent(ih)) => self.readdir_tree(tid, ih, 0, offset, reply),
            Some(Node::Dir(ih, d)) => self.readdir_tree(tid, ih, d, offset, reply),
            Some(Node::File(..)) => reply.error(Errno::ENOTDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    pub fn open(&self, ino: u64, flags: OpenFlags, reply: ReplyOpen) {
        if self.stop.is_set() {
            return reply.error(Errno::EIO);
        }
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        let (ih, file) = match self.table.node(ino) {
            Some(Node::File(ih, f)) => (ih, f),
            Some(_) => return reply.error(Errno::EISDIR),
            None => return reply.error(Errno::ENOENT),
        };
        let Some(tree) = self.table.tree(&ih) else {
            return reply.error(Errno::ENOENT);
        };
        // Never waits: the reader adds the torrent to the session on its first read.
        // The tree exists, so the metadata is known: the pending cap does not apply.
        let Ok(tref) = self.engine.acquire(ih, &[]) else {
            return reply.error(Errno::EAGAIN);
        };
        let reader = self
            .engine
            .reader(tref, tree.info().clone(), Selection::File(file));
        let fh = self.handles.open(reader);
        // Torrent data never changes: let the kernel keep what it cached across opens.
        reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
    }

    pub fn read(self: &Arc<Self>, tid: u32, fh: u64, offset: u64, size: u32, reply: ReplyData) {
        let s = self.clone();
        let Some(file) = s.handles.file(fh) else {
            return reply.error(Errno::EBADF);
        };
        s.engine.runtime().spawn(async move {
            let r = interruptible(tid, &s.stop, async {
                let mut reader = file.lock().await;
                read_full(&mut reader, offset, size).await
            })
            .await;
            match r {
                Ok(Ok(chunks)) => {
                    // Off this (single-threaded) runtime: see `files::reply`.
                    tokio::task::spawn_blocking(move || files::reply(chunks, reply));
                }
                Ok(Err(e)) => {
                    debug!("read failed: {e}");
                    reply.error(Errno::EIO)
                }
                Err(errno) => {
                    debug!(offset, size, "read ended: {errno:?}");
                    reply.error(errno)
                }
            }
        });
    }
}
