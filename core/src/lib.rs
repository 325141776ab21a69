//! The torrent core: one librqbit session, torrents added on demand and dropped after a grace
//! period, metainfo kept on disk, and the "wait for these bytes" read path that the HTTP and FUSE
//! front doors share.

mod announce;
mod backend;
pub mod bencode;
mod chunk;
mod config;
mod engine;
pub mod gocompat;
mod hooked;
pub mod ident;
pub mod memory;
pub mod metainfo;
mod reader;
pub mod status;
mod store;
mod torrent;
pub mod upload;

pub use config::Config;
pub use engine::{Engine, PieceEvent, PieceEventKind, PostError, Stats, TooManyPending};
pub use reader::{is_storage_full, BodyPart, Reader, Selection, CHUNK, STREAM_WINDOW};
pub use torrent::{Live, Torrent, TorrentRef};
