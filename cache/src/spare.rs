//! Empty files made ahead of need, so that staging a piece in a file never waits for the
//! filesystem to allocate an inode.
//!
//! Pieces being downloaded are staged in memory up to a budget (see `membuf`); beyond it, each
//! gets a staging file. Creating one is slow where it hurts: ext4 scans its inode bitmap past
//! recently deleted inodes, and `perf` of a cold 64 MiB stream put ~0.3 ms per create on the
//! thread that reads the seeder's connection. A background thread keeps [`TARGET`] empty files
//! open and ready; a piece takes one in a few hundred nanoseconds. Most pieces are staged in
//! memory, so the pool only starts filling once the first file has been asked for.

use std::{
    fs::{File, OpenOptions},
    io,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use parking_lot::{Condvar, Mutex};
use tracing::warn;

/// How many empty files are kept ready (a seeder connection has up to 128 chunks, 2 MiB, in
/// flight: 8 pieces of 256 KiB).
const TARGET: usize = 32;

/// A pool of empty, open files in one directory (see the module doc). Dropping it stops its
/// thread; files still in the pool stay on disk until the directory is wiped (at start-up).
pub(crate) struct SpareFiles {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    seq: AtomicU64,
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    ready: Vec<(PathBuf, File)>,
    /// Set by the first `take`: until then no file is made (most daemons never need one).
    wanted: bool,
    closed: bool,
}

impl Shared {
    fn create(&self) -> io::Result<(PathBuf, File)> {
        let path = self
            .dir
            .join(self.seq.fetch_add(1, Ordering::Relaxed).to_string());
        let open = || {
            OpenOptions::new()
                .create_new(true)
                .read(true)
                .write(true)
                .open(&path)
        };
        let file = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.dir)?;
                open()?
            }
            other => other?,
        };
        Ok((path, file))
    }
}

impl SpareFiles {
    /// A pool of files in `dir` (created if needed), filled by a thread of its own.
    pub(crate) fn start(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            seq: AtomicU64::new(0),
            state: Mutex::new(State {
                ready: Vec::new(),
                wanted: false,
                closed: false,
            }),
            changed: Condvar::new(),
        });
        let filler = shared.clone();
        std::thread::Builder::new()
            .name("cache-spares".into())
            .spawn(move || fill(&filler))?;
        Ok(Self { shared })
    }

    /// An empty file of the pool, or (when the thread has not kept up) one made now.
    pub(crate) fn take(&self) -> io::Result<(PathBuf, File)> {
        let ready = {
            let mut st = self.shared.state.lock();
            st.wanted = true;
            st.ready.pop()
        };
        self.shared.changed.notify_one();
        match ready {
            Some(f) => Ok(f),
            None => self.shared.create(),
        }
    }
}

impl Drop for SpareFiles {
    fn drop(&mut self) {
        self.shared.state.lock().closed = true;
        self.shared.changed.notify_one();
    }
}

/// The thread: once a file has been asked for, tops the pool up to [`TARGET`] whenever one is
/// taken. A failure (a full disk) is logged and retried on the next take; `take` then creates
/// its own file and reports the error to its caller.
fn fill(shared: &Shared) {
    loop {
        {
            let mut st = shared.state.lock();
            while !st.closed && (!st.wanted || st.ready.len() >= TARGET) {
                shared.changed.wait(&mut st);
            }
            if st.closed {
                return;
            }
        }
        match shared.create() {
            Ok(f) => shared.state.lock().ready.push(f),
            Err(e) => {
                warn!(dir = ?shared.dir, "cannot make spare cache files: {e}");
                let mut st = shared.state.lock();
                if !st.closed {
                    shared.changed.wait(&mut st);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_distinct_empty_files_and_refills() {
        let dir = std::env::temp_dir().join(format!("spare-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pool = SpareFiles::start(&dir).unwrap();
        // Nothing is made before it is needed.
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let mut paths = std::collections::HashSet::new();
        for _ in 0..3 * TARGET {
            let (p, f) = pool.take().unwrap();
            assert_eq!(f.metadata().unwrap().len(), 0);
            assert!(p.starts_with(&dir) && p.exists());
            assert!(paths.insert(p), "a file was handed out twice");
        }
        // The thread tops the pool up again (bounded wait).
        let t0 = std::time::Instant::now();
        while pool.shared.state.lock().ready.len() < TARGET {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(10),
                "never refilled"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(pool);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
