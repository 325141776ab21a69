//! The FUSE operations. Nothing here blocks fuser's dispatch threads on the network: an
//! operation that has to wait (metadata of a torrent, bytes of a file) moves its reply into a
//! task on the engine's runtime and answers from there, interruptibly (see [`crate::wait`]).

use std::{ffi::OsStr, path::Path, sync::Arc, time::{Duration, SystemTime}};

use confluence_core::{ident, Engine, Selection, TorrentRef};
use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyCreate, ReplyOpen, ReplyWrite, ReplyXattr, RenameFlags, Request, TimeOrNow, WriteFlags,
};
use tracing::debug;

use crate::{
    files::{read_full, Handles},
    tree::{Kind, Node, Table, Tree, ROOT},
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

pub(crate) struct Fs(pub Arc<Shared>);

impl Shared {
    /// The torrent's tree if its metadata is at hand (never waits), else a reference to wait on.
    fn tree_or_ref(&self, ih: ident::InfoHash) -> Result<Arc<Tree>, TorrentRef> {
        if let Some(t) = self.table.tree(&ih) {
            return Ok(t);
        }
        let tref = self.engine.acquire(ih, &[]);
        match tref.info() {
            Some(info) => {
                let date = *tref.creation_date.lock();
                Ok(self.table.add_tree(info, date))
            }
            None => Err(tref),
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
            Err(tref) => {
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

    fn lookup_torrent(self: &Arc<Self>, tid: u32, name: &OsStr, reply: ReplyEntry) {
        let Some(ih) = name
            .to_str()
            .filter(|s| s.len() == 40)
            .and_then(|s| ident::parse_hex(s).ok())
        else {
            return reply.error(Errno::ENOENT);
        };
        if self.table.tree(&ih).is_none() && self.engine.known().binary_search(&ih).is_ok() {
            // Known but maybe still without metadata: answer now, so listing the root with
            // attributes never blocks; its contents wait for the metadata.
            match self.tree_or_ref(ih) {
                Ok(tree) => reply.entry(&TTL_LONG, &self.table.dir_attr(&tree, 0), GEN),
                Err(_) => reply.entry(&TTL_SHORT, &self.table.bare_torrent_attr(ih), GEN),
            }
            return;
        }
        // Unknown: add it on demand, as `/data?ih=` does, and wait for its metadata.
        self.with_tree(tid, ih, move |s, r| match r {
            Ok(tree) => reply.entry(&TTL_LONG, &s.table.dir_attr(&tree, 0), GEN),
            Err(e) => reply.error(e),
        });
    }

    fn lookup_in(self: &Arc<Self>, tid: u32, ih: ident::InfoHash, dir: usize, name: &OsStr, reply: ReplyEntry) {
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

    fn readdir_tree(self: &Arc<Self>, tid: u32, ih: ident::InfoHash, dir: usize, offset: u64, mut reply: ReplyDirectory) {
        self.with_tree(tid, ih, move |_, r| {
            let tree = match r {
                Ok(t) => t,
                Err(e) => return reply.error(e),
            };
            let Some(d) = tree.dirs.get(dir) else {
                return reply.error(Errno::ENOENT);
            };
            let dots = [(d.ino, FileType::Directory, OsStr::new(".")), (d.parent, FileType::Directory, OsStr::new(".."))];
            let entries = d.entries.iter().map(|e| {
                let kind = match e.kind {
                    Kind::Dir(_) => FileType::Directory,
                    Kind::File(_) => FileType::RegularFile,
                };
                (e.ino, kind, e.name.as_os_str())
            });
            for (i, (ino, kind, name)) in dots.into_iter().chain(entries).enumerate().skip(offset as usize) {
                if reply.add(INodeNo(ino), i as u64 + 1, kind, name) {
                    break;
                }
            }
            reply.ok();
        });
    }
}

impl Filesystem for Fs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // The largest readahead the kernel allows, parallel lookups (a lookup waiting for a
        // torrent's metadata must not hold up the rest of the root), and many reads in flight.
        if let Err(max) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let s = &self.0;
        if s.stop.is_set() {
            return reply.error(Errno::EIO);
        }
        match s.table.node(parent.0) {
            Some(Node::Root) => s.lookup_torrent(req.pid(), name, reply),
            Some(Node::Torrent(ih)) => s.lookup_in(req.pid(), ih, 0, name, reply),
            Some(Node::Dir(ih, d)) => s.lookup_in(req.pid(), ih, d, name, reply),
            Some(Node::File(..)) => reply.error(Errno::ENOTDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let t = &self.0.table;
        let tree_attr = |ih, f: &dyn Fn(&Tree) -> Option<fuser::FileAttr>| {
            t.tree(&ih).and_then(|tree| f(&tree))
        };
        match t.node(ino.0) {
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

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let s = &self.0;
        match s.table.node(ino.0) {
            Some(Node::Root) => {
                let list = s
                    .engine
                    .known()
                    .into_iter()
                    .map(|ih| (s.table.torrent_ino(ih), ih.to_string().into()))
                    .collect();
                reply.opened(FileHandle(s.handles.open_listing(list)), FopenFlags::empty());
            }
            Some(Node::File(..)) => reply.error(Errno::ENOTDIR),
            Some(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(&self, req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let s = &self.0;
        if s.stop.is_set() {
            return reply.error(Errno::EIO);
        }
        match s.table.node(ino.0) {
            Some(Node::Root) => {
                let Some(list) = s.handles.listing(fh.0) else {
                    return reply.error(Errno::EBADF);
                };
                let dots = [(ROOT, OsStr::new(".")), (ROOT, OsStr::new(".."))];
                let all = dots.into_iter().chain(list.iter().map(|(i, n)| (*i, n.as_os_str())));
                for (i, (ino, name)) in all.enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(ino), i as u64 + 1, FileType::Directory, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Some(Node::Torrent(ih)) => s.readdir_tree(req.pid(), ih, 0, offset, reply),
            Some(Node::Dir(ih, d)) => s.readdir_tree(req.pid(), ih, d, offset, reply),
            Some(Node::File(..)) => reply.error(Errno::ENOTDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.0.handles.release_listing(fh.0);
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let s = &self.0;
        if s.stop.is_set() {
            return reply.error(Errno::EIO);
        }
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        let (ih, file) = match s.table.node(ino.0) {
            Some(Node::File(ih, f)) => (ih, f),
            Some(_) => return reply.error(Errno::EISDIR),
            None => return reply.error(Errno::ENOENT),
        };
        let Some(tree) = s.table.tree(&ih) else {
            return reply.error(Errno::ENOENT);
        };
        // Never waits: the reader adds the torrent to the session on its first read.
        let tref = s.engine.acquire(ih, &[]);
        let reader = s.engine.reader(tref, tree.info.clone(), Selection::File(file));
        let fh = s.handles.open(reader);
        // Torrent data never changes: let the kernel keep what it cached across opens.
        reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let s = self.0.clone();
        let Some(file) = s.handles.file(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let tid = req.pid();
        s.engine.runtime().spawn(async move {
            let r = interruptible(tid, &s.stop, async {
                let mut reader = file.lock().await;
                read_full(&mut reader, offset, size).await
            })
            .await;
            match r {
                Ok(Ok(data)) => reply.data(&data),
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

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.0.handles.release(fh.0);
        reply.ok();
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply.ok();
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        if self.0.table.node(ino.0).is_none() {
            reply.error(Errno::ENOENT)
        } else if mask.contains(AccessFlags::W_OK) {
            reply.error(Errno::EROFS)
        } else {
            reply.ok()
        }
    }

    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENODATA);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0)
        } else {
            reply.data(&[])
        }
    }

    // Read-only: the mount is `ro`, so the kernel refuses most of these itself; answer the rest
    // the same way.

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, _mode: u32, _umask: u32, _rdev: u32, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, _mode: u32, _umask: u32, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, _target: &Path, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _newparent: INodeNo, _newname: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    fn create(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, _mode: u32, _umask: u32, _flags: i32, reply: ReplyCreate) {
        reply.error(Errno::EROFS);
    }

    fn setxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _value: &[u8], _flags: i32, _position: u32, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn fallocate(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _offset: u64, _length: u64, _mode: i32, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }
}
