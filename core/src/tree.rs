//! A torrent's visible files as one directory tree, the one every front door shows (the FUSE
//! mount, WebDAV, DLNA), so that a file has the same place, or is left out, in all of them.
//!
//! The rules: the torrent name is not a level (the tree's root is the torrent directory);
//! names are the display components ([`FileEntry::components`], lossy UTF-8); BEP 47 padding
//! files are never shown ([`Info::visible_files`]); a file with a component that no file system
//! can show (empty, `.`, `..`, or holding `/` or NUL) is left out; and where two entries would
//! have one name in one directory, the first in torrent order wins (a later file under a name
//! that is already a file is left out too). Entries keep torrent order.
//!
//! Directory and file indices depend only on the info dict, so front doors can build ids on
//! them that stay the same across restarts: directories are numbered in the order the files
//! first need them ([`ROOT`] is the torrent directory), files by their index in `info.files`.

use std::{collections::HashMap, sync::Arc};

use crate::metainfo::{FileEntry, Info};

/// The index of the torrent directory.
pub const ROOT: usize = 0;

/// What an entry, or a path, names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A directory: its index in the tree.
    Dir(usize),
    /// A file: its index in `info.files`.
    File(usize),
}

/// One name in a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
}

/// A directory of the tree.
#[derive(Debug, Default)]
pub struct Dir {
    name: String,
    parent: Option<usize>,
    entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
}

impl Dir {
    /// Its name in its parent (`""` for the torrent directory).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory that holds it; `None` for the torrent directory.
    pub fn parent(&self) -> Option<usize> {
        self.parent
    }

    /// Subdirectories and files, in torrent order (stable: positions serve as listing offsets).
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }

    fn add(&mut self, name: &str, kind: Kind) {
        self.by_name.insert(name.to_owned(), self.entries.len());
        self.entries.push(Entry {
            name: name.to_owned(),
            kind,
        });
    }
}

/// A torrent's visible files as a directory tree (see the module doc for the rules).
#[derive(Debug)]
pub struct FileTree {
    info: Arc<Info>,
    /// `dirs[ROOT]` is the torrent directory.
    dirs: Vec<Dir>,
    /// The directory of each file of `info.files` that is shown.
    file_dir: Vec<Option<usize>>,
    /// Visible files that are not shown (unusable or duplicate names).
    left_out: usize,
}

/// A name every front door can show: not empty, `.` or `..`, and without `/` or NUL (a file
/// system could not hold it, and a client would read it as a path).
pub fn usable(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

impl FileTree {
    pub fn new(info: Arc<Info>) -> FileTree {
        let mut dirs = vec![Dir::default()];
        let mut file_dir = vec![None; info.files.len()];
        let mut left_out = 0;
        for (i, f) in info.visible_files() {
            match place(&mut dirs, &f.components) {
                Some(d) => {
                    dirs[d].add(f.components.last().expect("placed"), Kind::File(i));
                    file_dir[i] = Some(d);
                }
                None => left_out += 1,
            }
        }
        FileTree {
            info,
            dirs,
            file_dir,
            left_out,
        }
    }

    pub fn info(&self) -> &Arc<Info> {
        &self.info
    }

    /// Directory `d`, if the tree has it.
    pub fn dir(&self, d: usize) -> Option<&Dir> {
        self.dirs.get(d)
    }

    /// How many directories the tree has (the torrent directory included): indices are
    /// `0..dir_count()`.
    pub fn dir_count(&self) -> usize {
        self.dirs.len()
    }

    /// The entry `name` of directory `dir`.
    pub fn child(&self, dir: usize, name: &str) -> Option<&Entry> {
        self.dirs.get(dir)?.get(name)
    }

    /// What `path` (components below the torrent directory; empty: the torrent directory)
    /// names, if anything.
    pub fn resolve<S: AsRef<str>>(&self, path: &[S]) -> Option<Kind> {
        let mut node = Kind::Dir(ROOT);
        for c in path {
            let Kind::Dir(d) = node else {
                return None;
            };
            node = self.child(d, c.as_ref())?.kind;
        }
        Some(node)
    }

    /// The directory that shows file `f` (an index into `info.files`); `None`: not shown.
    pub fn file_dir(&self, f: usize) -> Option<usize> {
        self.file_dir.get(f).copied().flatten()
    }

    /// File `f` of the info, if the tree shows it.
    pub fn file(&self, f: usize) -> Option<&FileEntry> {
        self.file_dir(f).map(|_| &self.info.files[f])
    }

    /// The files the tree shows, in torrent order.
    pub fn files(&self) -> impl Iterator<Item = (usize, &FileEntry)> + '_ {
        self.info
            .visible_files()
            .filter(|&(i, _)| self.file_dir[i].is_some())
    }

    /// The names from the torrent directory down to directory `d` (empty for [`ROOT`]).
    pub fn dir_path(&self, d: usize) -> Vec<&str> {
        let mut path = Vec::new();
        let mut cur = self.dirs.get(d);
        while let Some(dir) = cur {
            let Some(p) = dir.parent else { break };
            path.push(dir.name.as_str());
            cur = self.dirs.get(p);
        }
        path.reverse();
        path
    }

    /// How many visible files the tree leaves out (unusable or duplicate names).
    pub fn left_out(&self) -> usize {
        self.left_out
    }
}

/// Makes the directories above a file whose path is `comps` and returns the one it goes in;
/// `None` when the file is left out (see the module doc). Directories are only made for a file
/// that is then shown: a new directory is empty, so nothing below it can clash.
fn place(dirs: &mut Vec<Dir>, comps: &[String]) -> Option<usize> {
    if !comps.iter().all(|c| usable(c)) {
        return None;
    }
    let (last, parents) = comps.split_last()?;
    let mut cur = ROOT;
    for c in parents {
        match dirs[cur].get(c).map(|e| e.kind) {
            Some(Kind::Dir(d)) => cur = d,
            Some(Kind::File(_)) => return None,
            None => {
                let d = dirs.len();
                dirs.push(Dir {
                    name: c.clone(),
                    parent: Some(cur),
                    ..Dir::default()
                });
                dirs[cur].add(c, Kind::Dir(d));
                cur = d;
            }
        }
    }
    (dirs[cur].get(last).is_none()).then_some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::parse_info;

    /// A multi-file info dict with files of length 1 at `paths` (components split on `|`, so
    /// that a component may hold `/`); `pads` marks BEP 47 padding files by index.
    fn info(paths: &[&str], pads: &[usize]) -> Arc<Info> {
        let mut b = b"d5:filesl".to_vec();
        for (i, p) in paths.iter().enumerate() {
            b.extend_from_slice(b"d");
            if pads.contains(&i) {
                b.extend_from_slice(b"4:attr1:p");
            }
            b.extend_from_slice(b"6:lengthi1e4:pathl");
            for c in p.split('|') {
                b.extend_from_slice(format!("{}:{c}", c.len()).as_bytes());
            }
            b.extend_from_slice(b"ee");
        }
        b.extend_from_slice(b"e4:name1:t12:piece lengthi16384e6:pieces20:");
        b.extend_from_slice(&[7; 20]);
        b.push(b'e');
        Arc::new(parse_info(&b).expect("valid info"))
    }

    fn names(t: &FileTree, d: usize) -> Vec<&str> {
        let dir = t.dir(d).expect("dir");
        dir.entries().iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn first_name_wins_and_unusable_names_are_left_out() {
        let t = FileTree::new(info(
            &[
                "a|b.txt", "a|c|d", "e", "a", "..", "a|b.txt", "e|x", "f|.|g",
            ],
            &[],
        ));
        assert_eq!(t.resolve::<&str>(&[]), Some(Kind::Dir(ROOT)));
        assert_eq!(t.resolve(&["a", "b.txt"]), Some(Kind::File(0)));
        assert_eq!(t.resolve(&["a", "c", "d"]), Some(Kind::File(1)));
        assert_eq!(t.resolve(&["e"]), Some(Kind::File(2)));
        // "a" is a directory first; "e/x" would need the file "e" to be a directory.
        assert_eq!(t.resolve(&["a"]), Some(Kind::Dir(1)));
        assert_eq!(t.resolve(&["a", "c"]), Some(Kind::Dir(2)));
        assert_eq!(t.resolve(&["e", "x"]), None);
        assert_eq!(t.resolve(&["a", "b.txt", "x"]), None);
        assert_eq!(t.resolve(&[".."]), None);
        assert_eq!(
            t.resolve(&["f"]),
            None,
            "no directory is made for a left-out file"
        );
        assert_eq!(names(&t, ROOT), ["a", "e"]);
        assert_eq!(names(&t, 1), ["b.txt", "c"]);
        assert_eq!(t.dir_count(), 3);
        assert_eq!(t.left_out(), 5);
        let shown: Vec<usize> = t.files().map(|(i, _)| i).collect();
        assert_eq!(shown, [0, 1, 2]);
        assert_eq!(
            (0..8).map(|f| t.file_dir(f)).collect::<Vec<_>>(),
            [Some(1), Some(2), Some(0), None, None, None, None, None]
        );
        assert_eq!(t.file_dir(99), None);
    }

    #[test]
    fn dirs_know_their_place() {
        let t = FileTree::new(info(&["x|y|z.mkv", "x|w"], &[]));
        let y = match t.resolve(&["x", "y"]) {
            Some(Kind::Dir(d)) => d,
            other => panic!("x/y is {other:?}"),
        };
        assert_eq!(t.dir_path(y), ["x", "y"]);
        assert!(t.dir_path(ROOT).is_empty());
        assert!(t.dir_path(99).is_empty());
        let dir = t.dir(y).expect("y");
        assert_eq!((dir.name(), dir.parent()), ("y", Some(1)));
        assert_eq!(t.dir(ROOT).map(Dir::parent), Some(None));
        assert!(t.dir(t.dir_count()).is_none());
        assert_eq!(t.child(y, "z.mkv").map(|e| e.kind), Some(Kind::File(0)));
        assert!(t.child(99, "z.mkv").is_none());
    }

    #[test]
    fn padding_files_are_never_shown() {
        let t = FileTree::new(info(&["a", ".pad|0", "b"], &[1]));
        assert_eq!(names(&t, ROOT), ["a", "b"]);
        assert_eq!(t.resolve(&[".pad", "0"]), None);
        assert!(t.file(1).is_none());
        assert_eq!(t.file(2).map(|f| f.path.as_str()), Some("b"));
        assert_eq!(t.left_out(), 0, "a padding file is not a left-out file");
    }

    #[test]
    fn a_single_file_torrent_is_one_file_at_the_root() {
        let mut b = b"d6:lengthi5e4:name5:x.mp412:piece lengthi16384e6:pieces20:".to_vec();
        b.extend_from_slice(&[7; 20]);
        b.push(b'e');
        let t = FileTree::new(Arc::new(parse_info(&b).expect("valid info")));
        assert_eq!(names(&t, ROOT), ["x.mp4"]);
        assert_eq!(t.resolve(&["x.mp4"]), Some(Kind::File(0)));
        assert_eq!(t.file(0).map(|f| f.length), Some(5));
    }
}
