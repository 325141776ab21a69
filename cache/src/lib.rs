//! The piece cache: verified pieces as files on disk, indexed by a byte-weighted moka LRU with an
//! enforced capacity, plus the librqbit storage adapter that fills it. It outlives torrents and
//! the process: a later request for a cached piece is served without a download.

pub mod fastresume;
mod index;
mod membuf;
mod spare;
mod storage;

pub use index::{CacheEvent, EventSink, Ih, Key, PieceCache, Usage};
pub use membuf::PieceBuf;
pub use storage::{CacheStorage, CacheStorageFactory};
