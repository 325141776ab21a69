//! Pinning: pieces inside an open reader's lookahead window stay out of moka (see the module doc
//! of `index`) until every window has moved past them.

use std::{
    collections::{BTreeMap, HashMap},
    ops::Range,
    sync::{atomic::Ordering, Arc},
};

use super::{Ih, Key, PieceCache, Slot};

/// Per-torrent pinning state: the lookahead windows of its open readers and the pieces held
/// for them outside moka.
#[derive(Default)]
pub(super) struct Pins {
    pub(super) windows: HashMap<u64, Range<u32>>,
    pub(super) pinned: BTreeMap<u32, Arc<Slot>>,
}

impl Pins {
    pub(super) fn in_window(&self, piece: u32) -> bool {
        self.windows.values().any(|w| w.contains(&piece))
    }
}

impl PieceCache {
    /// The lookahead windows of a torrent's open readers.
    pub fn windows(&self, ih: Ih) -> Vec<Range<u32>> {
        self.pins
            .lock()
            .get(&ih)
            .map(|p| p.windows.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Registers a reader's lookahead window (initially empty) and returns its id.
    pub fn open_window(&self, ih: Ih) -> u64 {
        let id = self.next_window.fetch_add(1, Ordering::Relaxed);
        self.pins
            .lock()
            .entry(ih)
            .or_default()
            .windows
            .insert(id, 0..0);
        id
    }

    /// Moves a reader's window; pieces no window covers any more go to the index.
    pub fn set_window(&self, ih: Ih, id: u64, window: Range<u32>) {
        {
            let mut pins = self.pins.lock();
            let Some(p) = pins.get_mut(&ih) else { return };
            if p.windows.get(&id) == Some(&window) {
                return;
            }
            p.windows.insert(id, window);
            if !self.release_unpinned(ih, p) {
                return;
            }
        }
        self.index.run_pending_tasks();
    }

    /// Drops a reader's window.
    pub fn close_window(&self, ih: Ih, id: u64) {
        {
            let mut pins = self.pins.lock();
            let Some(p) = pins.get_mut(&ih) else { return };
            p.windows.remove(&id);
            let released = self.release_unpinned(ih, p);
            if p.windows.is_empty() && p.pinned.is_empty() {
                pins.remove(&ih);
            }
            if !released {
                return;
            }
        }
        self.index.run_pending_tasks();
    }

    /// Moves the pinned pieces no window covers any more into the index; returns whether there
    /// were any. Called under the pins lock, as `put` pins and indexes under it: a piece is
    /// never out of both, and a newer copy pinned meanwhile is never shadowed by this one.
    fn release_unpinned(&self, ih: Ih, p: &mut Pins) -> bool {
        let out: Vec<u32> = p
            .pinned
            .keys()
            .copied()
            .filter(|piece| !p.in_window(*piece))
            .collect();
        for piece in &out {
            if let Some(slot) = p.pinned.remove(piece) {
                self.index.insert(Key { ih, piece: *piece }, slot);
            }
        }
        !out.is_empty()
    }
}
