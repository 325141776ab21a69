//! A storage middleware that reports verified pieces, for `-fileDir` (librqbit's own filesystem
//! storage has no hook of its own; readers and `/events` wait on these reports).

use std::{any::TypeId, io::IoSlice, path::Path, sync::Arc};

use librqbit::{
    storage::{BoxStorageFactory, StorageFactory, StorageFactoryExt, TorrentStorage},
    ManagedTorrentShared, TorrentMetadata,
};
use librqbit_core::lengths::ValidPieceIndex;

/// Called with (infohash, piece) after librqbit verified a piece.
pub(crate) type PieceSink = Arc<dyn Fn([u8; 20], u32) + Send + Sync>;

#[derive(Clone)]
pub(crate) struct HookedFactory<F> {
    inner: F,
    sink: PieceSink,
}

impl<F> HookedFactory<F> {
    pub(crate) fn new(inner: F, sink: PieceSink) -> Self {
        Self { inner, sink }
    }
}

impl<F: StorageFactory + Clone> StorageFactory for HookedFactory<F> {
    type Storage = Hooked<F::Storage>;

    fn create(
        &self,
        shared: &ManagedTorrentShared,
        metadata: &TorrentMetadata,
    ) -> anyhow::Result<Self::Storage> {
        Ok(Hooked {
            inner: self.inner.create(shared, metadata)?,
            ih: shared.info_hash.0,
            sink: self.sink.clone(),
        })
    }

    fn is_type_id(&self, type_id: TypeId) -> bool {
        self.inner.is_type_id(type_id)
    }

    fn clone_box(&self) -> BoxStorageFactory {
        self.clone().boxed()
    }
}

pub(crate) struct Hooked<S> {
    inner: S,
    ih: [u8; 20],
    sink: PieceSink,
}

impl<S: TorrentStorage> TorrentStorage for Hooked<S> {
    fn init(&mut self, s: &ManagedTorrentShared, m: &TorrentMetadata) -> anyhow::Result<()> {
        self.inner.init(s, m)
    }
    fn pread_exact(&self, file_id: usize, offset: u64, buf: &mut [u8]) -> anyhow::Result<()> {
        self.inner.pread_exact(file_id, offset, buf)
    }
    fn pwrite_all(&self, file_id: usize, offset: u64, buf: &[u8]) -> anyhow::Result<()> {
        self.inner.pwrite_all(file_id, offset, buf)
    }
    fn pwrite_all_vectored(
        &self,
        file_id: usize,
        offset: u64,
        bufs: [IoSlice<'_>; 2],
    ) -> anyhow::Result<usize> {
        self.inner.pwrite_all_vectored(file_id, offset, bufs)
    }
    fn remove_file(&self, file_id: usize, filename: &Path) -> anyhow::Result<()> {
        self.inner.remove_file(file_id, filename)
    }
    fn remove_directory_if_empty(&self, path: &Path) -> anyhow::Result<()> {
        self.inner.remove_directory_if_empty(path)
    }
    fn ensure_file_length(&self, file_id: usize, length: u64) -> anyhow::Result<()> {
        self.inner.ensure_file_length(file_id, length)
    }
    fn take(&self) -> anyhow::Result<Box<dyn TorrentStorage>> {
        Ok(Box::new(Hooked {
            inner: self.inner.take()?,
            ih: self.ih,
            sink: self.sink.clone(),
        }))
    }
    fn on_piece_completed(&self, piece: ValidPieceIndex) -> anyhow::Result<()> {
        let r = self.inner.on_piece_completed(piece);
        (self.sink)(self.ih, piece.get());
        r
    }
}
