//! A full disk on demand: a small tmpfs the test mounts (root only) and a filler that takes
//! every byte of it. Shared by the full-disk fault (`faults.rs`), the full-disk add
//! (`full_disk_add.rs`) and the soak, so that all three unmount the same careful way.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use super::{fuse::mounted, run_bounded, temp_dir};

/// A tmpfs mounted for a test; unmounted (lazily if busy) and its mountpoint removed on drop,
/// also when the test fails, so no mount is left behind.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// A tmpfs of `size` (`mount -o size=`, e.g. `16m`) on a fresh temporary directory.
    pub fn mount(size: &str) -> Tmpfs {
        Tmpfs::mount_on(temp_dir("tmpfs"), size)
    }

    /// A tmpfs of `size` on `dir` (created when missing).
    pub fn mount_on(dir: PathBuf, size: &str) -> Tmpfs {
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let (st, _, err) = run_bounded(
            Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0755"),
                    "tmpfs",
                ])
                .arg(&dir),
            Duration::from_secs(10),
        );
        assert!(
            st.is_some_and(|s| s.success()),
            "mount tmpfs on {}: {err}",
            dir.display()
        );
        Tmpfs(dir)
    }

    /// Unmounts it (lazily when a plain `umount` fails, e.g. a daemon still has files open);
    /// whether it is gone from the mount table.
    pub fn unmount(&self) -> bool {
        if !mounted(&self.0) {
            return true;
        }
        let (st, _, _) = run_bounded(Command::new("umount").arg(&self.0), Duration::from_secs(10));
        if !st.is_some_and(|s| s.success()) {
            let _ = run_bounded(
                Command::new("umount").arg("-l").arg(&self.0),
                Duration::from_secs(10),
            );
        }
        !mounted(&self.0)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        self.unmount();
        let _ = fs::remove_dir(&self.0);
    }
}

/// Appends to `f` until its file system is full: 1 MiB writes, then 4 KiB, then single bytes,
/// so not even a page is left. `Ok` once the disk said ENOSPC; another error is returned.
pub fn fill_up(f: &mut fs::File) -> io::Result<()> {
    for chunk in [vec![0x5au8; 1 << 20], vec![0x5au8; 4096], vec![0x5au8; 1]] {
        loop {
            match f.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Fills the file system of `path` with a new file at `path`, then gives back `leave` bytes
/// (0: the disk stays completely full).
pub fn fill(path: &Path, leave: u64) {
    let mut f = fs::File::create(path)
        .unwrap_or_else(|e| panic!("cannot create the filler {}: {e}", path.display()));
    fill_up(&mut f).unwrap_or_else(|e| panic!("filling {}: {e}", path.display()));
    let len = f.metadata().map_or(0, |m| m.len());
    f.set_len(len.saturating_sub(leave))
        .unwrap_or_else(|e| panic!("shrinking {}: {e}", path.display()));
}
