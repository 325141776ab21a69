//! A torrent's files as the directory tree the FUSE mount shows (`mountd/src/tree.rs`): display
//! names, the torrent name is not a level, a file whose name is empty, `.`, `..` or holds `/` or
//! NUL is left out, and of two entries with one name the first in torrent order wins.

use std::collections::HashMap;

use confluence_core::metainfo::Info;

/// What a directory entry points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An index into [`Tree::dirs`].
    Dir(usize),
    /// An index into `info.files`.
    File(usize),
}

#[derive(Debug, Default)]
pub struct Dir {
    /// In torrent order.
    pub entries: Vec<(String, Kind)>,
    by_name: HashMap<String, usize>,
}

/// `dirs[0]` is the torrent directory.
#[derive(Debug)]
pub struct Tree {
    pub dirs: Vec<Dir>,
}

/// A name every client can show (the mount's rule).
fn usable(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

impl Tree {
    pub fn build(info: &Info) -> Tree {
        let mut dirs = vec![Dir::default()];
        'files: for (i, f) in info.visible_files() {
            let comps = &f.components;
            if comps.is_empty() || !comps.iter().all(|c| usable(c)) {
                continue;
            }
            let (last, parents) = comps.split_last().expect("not empty");
            let mut cur = 0usize;
            for c in parents {
                match dirs[cur].by_name.get(c).map(|&e| dirs[cur].entries[e].1) {
                    Some(Kind::Dir(d)) => cur = d,
                    Some(Kind::File(_)) => continue 'files,
                    None => {
                        let d = dirs.len();
                        dirs.push(Dir::default());
                        dirs[cur].add(c.clone(), Kind::Dir(d));
                        cur = d;
                    }
                }
            }
            if !dirs[cur].by_name.contains_key(last) {
                dirs[cur].add(last.clone(), Kind::File(i));
            }
        }
        Tree { dirs }
    }

    /// The node at `path` (components below the torrent directory), if any.
    pub fn resolve(&self, path: &[String]) -> Option<Kind> {
        let mut node = Kind::Dir(0);
        for c in path {
            let Kind::Dir(d) = node else {
                return None;
            };
            let dir = &self.dirs[d];
            node = dir.entries[*dir.by_name.get(c)?].1;
        }
        Some(node)
    }
}

impl Dir {
    fn add(&mut self, name: String, kind: Kind) {
        self.by_name.insert(name.clone(), self.entries.len());
        self.entries.push((name, kind));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confluence_core::metainfo::FileEntry;

    fn info(paths: &[&str]) -> Info {
        let files = paths
            .iter()
            .map(|p| FileEntry {
                path: p.to_string(),
                components: p.split('/').map(String::from).collect(),
                raw_path: p.as_bytes().to_vec(),
                length: 1,
                offset: 0,
                pad: false,
            })
            .collect();
        Info {
            info_hash: confluence_core::ident::InfoHash([0; 20]),
            name: "t".into(),
            piece_length: 16384,
            num_pieces: 1,
            piece_hashes: vec![[0; 20]],
            files,
            total_length: paths.len() as u64,
            private: false,
            multi_file: true,
            info_bytes: Default::default(),
        }
    }

    #[test]
    fn builds_like_the_mount() {
        let t = Tree::build(&info(&[
            "a/b.txt", "a/c/d", "e", "a", "..", "a/b.txt", "e/x",
        ]));
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(t.resolve(&[]), Some(Kind::Dir(0)));
        assert_eq!(t.resolve(&s(&["a", "b.txt"])), Some(Kind::File(0)));
        assert_eq!(t.resolve(&s(&["a", "c", "d"])), Some(Kind::File(1)));
        assert_eq!(t.resolve(&s(&["e"])), Some(Kind::File(2)));
        // "a" is a directory first; "e/x" would need the file "e" to be a directory.
        assert!(matches!(t.resolve(&s(&["a"])), Some(Kind::Dir(_))));
        assert_eq!(t.resolve(&s(&["e", "x"])), None);
        assert_eq!(t.resolve(&s(&[".."])), None);
        let names: Vec<_> = t.dirs[0].entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["a", "e"]);
    }
}
