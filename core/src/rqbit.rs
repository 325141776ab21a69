//! The librqbit calls behind a torrent's add and removal, with their quirks worked around: ids
//! that collide, a failed add that lingers in an error state, and a full disk reported as text.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use anyhow::Context;
use librqbit::{api::TorrentIdOrHash, AddTorrent, AddTorrentOptions};
use tracing::warn;

use crate::{
    backend::is_storage_full,
    ident::InfoHash,
    metainfo::{build_torrent, Info, Metainfo},
    swarm::Swarm,
};

/// librqbit's handle of a torrent in its session.
pub type ManagedTorrentHandle = Arc<librqbit::ManagedTorrent>;

/// The id of the next torrent added to the librqbit session (see [`add`]).
static NEXT_SESSION_ID: AtomicUsize = AtomicUsize::new(0);

/// What librqbit is given to add a torrent.
pub(crate) enum AddFrom<'a> {
    /// The metadata is known: the torrent file, with a fastresume bitfield from the cache.
    Metainfo(&'a Info, Metainfo),
    /// It is not: a magnet (peers supply the metadata).
    Magnet(String),
}

fn session_id(ih: &InfoHash) -> TorrentIdOrHash {
    TorrentIdOrHash::Hash(librqbit_core::Id20::new(ih.0))
}

/// A magnet link naming `ih` and every tracker of `tiers`.
pub(crate) fn magnet(ih: &InfoHash, tiers: &[Vec<String>]) -> String {
    let mut m = format!("magnet:?xt=urn:btih:{ih}");
    for tr in tiers.iter().flatten() {
        m.push_str("&tr=");
        m.push_str(
            &percent_encoding::utf8_percent_encode(tr, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
        );
    }
    m
}

/// Takes `ih` out of the session, if it is there (its data stays where the backend keeps it).
pub(crate) async fn remove(swarm: &Swarm, ih: &InfoHash) {
    let id = session_id(ih);
    if swarm.session.get(id).is_some() {
        if let Err(e) = swarm.session.delete(id, false).await {
            warn!(%ih, "removing torrent from the session: {e:#}");
        }
    }
}

/// Adds `ih` to the session (or takes the handle already there), once initialized.
pub(crate) async fn add(
    swarm: &Swarm,
    ih: &InfoHash,
    from: AddFrom<'_>,
    paused: bool,
) -> anyhow::Result<ManagedTorrentHandle> {
    if let Some(h) = swarm.session.get(session_id(ih)) {
        if is_errored(&h) {
            // An earlier add failed (e.g. on a full disk) and librqbit kept the torrent in
            // its error state: every request would get that old error until the torrent
            // idled out. Remove it and add it afresh.
            warn!(%ih, "an earlier add left the torrent in an error state; adding it again");
            remove(swarm, ih).await;
        } else {
            // A resolver that was stopped after librqbit registered the torrent.
            initialized(&h).await?;
            return Ok(h);
        }
    }
    let info = match &from {
        AddFrom::Metainfo(info, _) => Some(*info),
        AddFrom::Magnet(_) => None,
    };
    let opts = AddTorrentOptions {
        // librqbit's JSON persistence picks a new torrent's id as the largest stored id + 1,
        // so two torrents added at once get the same id, and the second add returns the
        // first torrent's handle ("already managed"). Our own ids never collide.
        preferred_id: Some(NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed)),
        paused,
        // Re-announce every minute instead of the tracker's interval (often 15–30 min): a
        // client that drew only dead peers from the tracker must not wait that long.
        force_tracker_interval: Some(std::time::Duration::from_secs(60)),
        only_files: Some(vec![]),
        overwrite: true,
        output_folder: Some(swarm.storage.output_folder(ih, info)),
        disable_trackers: swarm.disable_trackers,
        ..Default::default()
    };
    swarm.storage.prepare_add(ih, info);
    let add = match from {
        AddFrom::Metainfo(_, m) => AddTorrent::from_bytes(build_torrent(&m)),
        AddFrom::Magnet(url) => AddTorrent::from_url(url),
    };
    let resp = swarm
        .session
        .add_torrent(add, Some(opts))
        .await
        .context("adding the torrent to the session")?;
    let handle = resp.into_handle().context("librqbit returned no handle")?;
    anyhow::ensure!(
        handle.info_hash().0 == ih.0,
        "librqbit returned the handle of another torrent ({})",
        hex::encode(handle.info_hash().0)
    );
    initialized(&handle).await?;
    Ok(handle)
}

/// librqbit's `wait_until_initialized`, with a full disk still recognisable by type: librqbit
/// reports a failed initialization as text (`bail!("{e:?}")`), so the cause is read from the
/// torrent's error state, whose chain keeps the I/O error (front doors answer 507 / ENOSPC).
async fn initialized(h: &ManagedTorrentHandle) -> anyhow::Result<()> {
    let Err(e) = h.wait_until_initialized().await else {
        return Ok(());
    };
    let full = h.with_state(|s| match s {
        librqbit::ManagedTorrentState::Error(cause) => cause
            .chain()
            .filter_map(|c| c.downcast_ref::<std::io::Error>())
            .any(is_storage_full),
        _ => false,
    });
    if full {
        let kind = std::io::ErrorKind::StorageFull;
        return Err(std::io::Error::new(kind, format!("{e:#}")).into());
    }
    Err(e)
}

/// Whether librqbit holds the torrent in its error state (a failed add or a failed write).
pub(crate) fn is_errored(h: &ManagedTorrentHandle) -> bool {
    h.with_state(|s| matches!(s, librqbit::ManagedTorrentState::Error(_)))
}
