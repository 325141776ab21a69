//! The librqbit stream a reader keeps to steer downloads toward itself.
//!
//! librqbit downloads only the window ahead of an open `FileStream`, so a reader that waits
//! keeps one pointed at its position. The stream is a priority cursor and nothing more: bytes
//! are never read through it. When the reader goes, the stream is parked on the torrent for the
//! next reader to adopt (see [`crate::parked`]).

use std::{
    io::{self, SeekFrom},
    sync::Arc,
};

use tokio::io::AsyncSeekExt;
use tracing::debug;

use crate::{
    backend::io_error,
    parked::Stream,
    torrent::{Live, Torrent},
};

/// librqbit's hard-coded per-stream lookahead.
pub const STREAM_WINDOW: u64 = 32 * 1024 * 1024;

/// Where a reader's stream must point: a file of the torrent and a position in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Spot {
    pub(crate) file: usize,
    pub(crate) pos: u64,
}

/// An open stream: the generation it was opened on, and where it points.
struct Cursor {
    generation: u64,
    spot: Spot,
    stream: Stream,
}

/// A reader's steering stream, if it has one.
#[derive(Default)]
pub(crate) struct Steering(Option<Cursor>);

impl Steering {
    /// Keeps the stream a (re-)add opened at `spot` on `generation` for this reader.
    pub(crate) fn adopt(&mut self, generation: u64, spot: Spot, stream: Stream) {
        self.0 = Some(Cursor {
            generation,
            spot,
            stream,
        });
    }

    /// Keeps an existing stream on `spot`'s file at `spot` after a cache hit, so the
    /// lookahead follows the reader.
    pub(crate) async fn follow(&mut self, spot: Spot) {
        if let Some(c) = self.0.as_mut().filter(|c| c.spot.file == spot.file) {
            if c.spot.pos != spot.pos && c.stream.seek(SeekFrom::Start(spot.pos)).await.is_ok() {
                c.spot.pos = spot.pos;
            }
        }
    }

    /// Points the stream at `spot`, first taking one of the `live` generation if needed (a
    /// parked one, else a new one). Returns whether the window jumped (a new stream, or a seek
    /// outside the old window): librqbit's peers may then be asleep.
    pub(crate) async fn steer(
        &mut self,
        torrent: &Arc<Torrent>,
        live: &Live,
        spot: Spot,
    ) -> io::Result<bool> {
        let reuse = self
            .0
            .as_ref()
            .is_some_and(|c| c.generation == live.generation && c.spot.file == spot.file);
        let mut jumped = !reuse;
        if !reuse {
            self.park(torrent);
            let (stream, pos0) = match torrent.unpark(live.generation, spot.file) {
                // Its position is unknown here: seek it in any case below.
                Some(s) => (s, u64::MAX),
                None => {
                    let (file, pos) = (spot.file, spot.pos);
                    debug!(ih = %torrent.ih, file, pos, "opening a librqbit stream");
                    let s = live.handle.clone().stream(file).await.map_err(io_error)?;
                    (Box::new(s) as Stream, 0)
                }
            };
            let at = Spot { pos: pos0, ..spot };
            self.adopt(live.generation, at, stream);
        }
        let c = self.0.as_mut().expect("cursor was just set");
        if c.spot.pos != spot.pos {
            let (pos, old) = (spot.pos, c.spot.pos);
            jumped |= pos < old || pos >= old.saturating_add(STREAM_WINDOW);
            c.stream.seek(SeekFrom::Start(pos)).await?;
            c.spot.pos = pos;
        }
        Ok(jumped)
    }

    /// Leaves the stream, if any, parked on `torrent` for the next reader.
    pub(crate) fn park(&mut self, torrent: &Arc<Torrent>) {
        if let Some(c) = self.0.take() {
            torrent.park(c.generation, c.spot.file, c.stream);
        }
    }
}
