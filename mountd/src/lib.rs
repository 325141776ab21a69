//! The FUSE front door: `/<infohash>/<path>` as read-only files that block until their bytes
//! are verified, over the same engine (and piece cache) as the HTTP API.
//!
//! - [`mount`]: start-up checks, stale-mount clean-up, mounting and a shutdown that never waits
//!   for blocked readers.
//! - `fs`: the `fuser::Filesystem`, handing each operation to `ops`.
//! - `ops`: what the operations do (answered from the engine's runtime when they must wait).
//! - `readahead`: the kernel's readahead for the mount, raised past its 128 KiB default.
//! - `tree`: inode numbers, over each torrent's directory tree (`confluence_core::tree`).
//! - `files`: open files (one core `Reader` each) and root listings.
//! - `wait`: waits that end when the caller is signalled or the mount shuts down.

mod files;
mod fs;
pub mod mount;
mod ops;
mod readahead;
mod tree;
mod wait;

pub use mount::{preflight, Mount, MountError};
