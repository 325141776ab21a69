//! The torrent core: one librqbit session, torrents added on demand and dropped after a grace
//! period, metainfo kept on disk, and the "wait for these bytes" read path that the HTTP and FUSE
//! front doors share.
//!
//! # Embedding
//!
//! Build a [`Config`] (the daemon's flags, as fields; [`Config::new`] has the original's
//! defaults) and start an [`Engine`] with [`Engine::start`] on a tokio runtime that you keep
//! for the engine: librqbit spawns its tasks there and the engine stays bound to it (front
//! doors reach it through [`Engine::runtime`]). A multi-thread runtime works; the `confluence`
//! binary uses a current-thread runtime driven by one thread of its own, which is faster (see
//! `src/main.rs`). `Engine` is a cheap handle: clone it for every front door.
//!
//! To stop: stop the front doors first, then `engine.shutdown().await` on the engine's runtime
//! (it announces `stopped` to trackers for ≤ 1 s and flushes the piece cache), then drop or
//! shut down the runtime.
//!
//! ```no_run
//! use confluence_core::{Config, Engine};
//!
//! # fn main() -> anyhow::Result<()> {
//! let rt = tokio::runtime::Builder::new_multi_thread()
//!     .enable_all()
//!     .build()?;
//! let mut config = Config::new("/var/cache/my-app/confluence".into());
//! config.dht = false;
//! config.torrent_addr = "127.0.0.1:0".parse()?; // any free peer port
//! let engine = rt.block_on(Engine::start(config))?;
//! println!("peers on {}", engine.listen_addr());
//!
//! // Serve it: `confluence_http::server(engine.clone(), listener, options)`, or read bytes
//! // yourself through `engine.acquire(infohash, &trackers)` and a `Reader`.
//!
//! rt.block_on(engine.shutdown());
//! rt.shutdown_timeout(std::time::Duration::from_secs(1));
//! # Ok(())
//! # }
//! ```
//!
//! `examples/embed.rs` in the repository runs this with the HTTP front door and reads a range
//! through it.

mod announce;
mod backend;
pub mod bencode;
mod body;
mod catalog;
mod chunk;
mod config;
mod cursor;
mod engine;
mod events;
pub mod gocompat;
mod hooked;
pub mod ident;
pub mod identity;
pub mod memory;
pub mod metainfo;
mod parked;
mod reader;
mod registry;
mod rqbit;
pub mod status;
mod store;
mod swarm;
mod torrent;
pub mod tree;
pub mod upload;

pub use backend::is_storage_full;
pub use body::BodyPart;
pub use chunk::CHUNK;
pub use config::Config;
pub use cursor::STREAM_WINDOW;
pub use engine::{Engine, PostError};
pub use events::{PieceEvent, PieceEventKind};
pub use reader::{Reader, Selection};
pub use registry::{TooManyPending, TorrentRef};
pub use swarm::Stats;
pub use torrent::{Live, Torrent};
