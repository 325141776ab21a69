//! What the web page lists: every torrent the daemon knows (in memory or in the metainfo
//! store) with its info and piece states, read without adding anything to the session.

use crate::{
    engine::Engine,
    ident::InfoHash,
    status::{PieceState, Priority},
};

impl Engine {
    /// Every piece's state of a torrent with `num_pieces` pieces: the in-memory torrent's
    /// (readers' windows included), else what the cache holds for it.
    pub fn known_piece_states(&self, ih: &InfoHash, num_pieces: u32) -> Vec<PieceState> {
        if let Some(states) = self
            .inner
            .registry
            .get(ih)
            .and_then(|t| self.piece_states(&t))
        {
            if states.len() == num_pieces as usize {
                return states;
            }
        }
        let none = PieceState {
            complete: false,
            partial: false,
            priority: Priority::None,
        };
        match self.inner.swarm.storage.cache() {
            Some(cache) => cache
                .have_pieces(ih.0, num_pieces)
                .into_iter()
                .map(|complete| PieceState { complete, ..none })
                .collect(),
            None => vec![none; num_pieces as usize],
        }
    }
}
