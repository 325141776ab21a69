//! Which pieces the cache evicted and nothing has stored again since, per torrent, so the piece
//! map can show them (`E`). Fed from the engine's piece events by one task, started by the
//! first page request; bounded to [`MAX_TORRENTS`] torrents, each at most its piece count.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Mutex, OnceLock},
};

use confluence_core::{ident::InfoHash, Engine, PieceEvent, PieceEventKind};
use tokio::sync::broadcast::error::RecvError;

/// Torrents remembered at most (a new one beyond this replaces an arbitrary old one).
pub const MAX_TORRENTS: usize = 256;

#[derive(Default)]
pub struct Evicted {
    map: Mutex<HashMap<InfoHash, BTreeSet<u32>>>,
}

static EVICTED: OnceLock<Evicted> = OnceLock::new();

impl Evicted {
    fn note(&self, ev: PieceEvent) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match ev.kind {
            PieceEventKind::Evicted => {
                if !map.contains_key(&ev.ih) && map.len() >= MAX_TORRENTS {
                    if let Some(old) = map.keys().next().copied() {
                        map.remove(&old);
                    }
                }
                map.entry(ev.ih).or_default().insert(ev.piece);
            }
            PieceEventKind::Complete => {
                if let Some(set) = map.get_mut(&ev.ih) {
                    set.remove(&ev.piece);
                    if set.is_empty() {
                        map.remove(&ev.ih);
                    }
                }
            }
            PieceEventKind::Wanted => {}
        }
    }

    /// The evicted pieces of `ih`.
    pub fn of(&self, ih: &InfoHash) -> BTreeSet<u32> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(ih).cloned().unwrap_or_default()
    }
}

/// The tracker, started on first use (inside the HTTP runtime).
pub fn tracker(engine: &Engine) -> &'static Evicted {
    EVICTED.get_or_init(|| {
        let mut rx = engine.subscribe();
        actix_web::rt::spawn(async move {
            let ev = EVICTED.get_or_init(Evicted::default);
            loop {
                match rx.recv().await {
                    Ok(e) => ev.note(e),
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Evicted::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicted_until_stored_again() {
        let e = Evicted::default();
        let ih = InfoHash([1; 20]);
        let ev = |piece, kind| PieceEvent { ih, piece, kind };
        e.note(ev(3, PieceEventKind::Evicted));
        e.note(ev(5, PieceEventKind::Evicted));
        e.note(ev(3, PieceEventKind::Complete));
        assert_eq!(e.of(&ih).into_iter().collect::<Vec<_>>(), vec![5]);
        for i in 0..(MAX_TORRENTS as u8 + 10) {
            let other = InfoHash([i.wrapping_add(2); 20]);
            e.note(PieceEvent {
                ih: other,
                piece: 0,
                kind: PieceEventKind::Evicted,
            });
        }
        assert!(e.map.lock().unwrap().len() <= MAX_TORRENTS);
    }
}
