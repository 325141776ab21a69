//! The one storage trick: the piece cache poses as librqbit's filesystem storage.
//!
//! librqbit 9.1's JSON session persistence is what writes and reads fastresume bitfields (so a
//! torrent added again is not re-hashed), and it refuses every storage factory that does not
//! say it is a `FilesystemStorageFactory` (`session_persistence/json.rs`, `update_db`: it asks
//! `is_type_id(TypeId::of::<FilesystemStorageFactory>())` and nothing else in librqbit asks).
//! The cache's pieces are files on disk too, and the bitfield librqbit is given at each add is
//! written from the cache index (core's `backend`), so the cache answers yes. The tests below
//! fail loudly when a librqbit upgrade changes that gate or how boxed factories forward it.

use std::any::TypeId;

use librqbit::storage::filesystem::FilesystemStorageFactory;

/// What a storage factory of ours, whose own type is `own`, answers to librqbit's
/// `StorageFactory::is_type_id(type_id)`: its own type, and librqbit's filesystem storage (see
/// the module doc for why, and what depends on it).
pub fn poses_as_filesystem_storage(type_id: TypeId, own: TypeId) -> bool {
    type_id == TypeId::of::<FilesystemStorageFactory>() || type_id == own
}

#[cfg(test)]
mod tests {
    use std::{any::TypeId, path::PathBuf, sync::Arc};

    use librqbit::storage::{
        filesystem::FilesystemStorageFactory, StorageFactory, StorageFactoryExt,
    };

    use crate::{CacheStorageFactory, PieceCache};

    fn vendored(rel: &str) -> String {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../vendor/librqbit")
            .join(rel);
        std::fs::read_to_string(&p).unwrap_or_else(|e| {
            panic!(
                "{}: {e}. librqbit is no longer the vendored 9.1.0: check that its JSON session \
                 persistence still asks is_type_id(FilesystemStorageFactory) before it keeps \
                 fastresume bitfields (cache/src/fastresume.rs), then update this test",
                p.display()
            )
        })
    }

    /// The gate this trick answers is still there, and still the only question asked.
    #[test]
    fn librqbit_still_gates_fastresume_on_filesystem_storage() {
        let toml = vendored("Cargo.toml");
        assert!(
            toml.contains("\nversion = \"9.1.0\""),
            "librqbit is no longer 9.1.0: re-check the fastresume gate (cache/src/fastresume.rs)"
        );
        let json = vendored("src/session_persistence/json.rs");
        assert!(
            json.contains(".is_type_id(TypeId::of::<FilesystemStorageFactory>())"),
            "librqbit's JSON persistence no longer gates on FilesystemStorageFactory: \
             poses_as_filesystem_storage may now be wrong or useless (fastresume bitfields)"
        );
    }

    /// The cache's factory answers yes, also once librqbit boxes and clones it.
    #[test]
    fn the_cache_factory_poses_as_filesystem_storage_through_librqbit_boxes() {
        let dir =
            std::env::temp_dir().join(format!("confluence-fastresume-{}", std::process::id()));
        let cache = PieceCache::open(&dir, Some(1 << 20), Arc::new(|_| {})).expect("cache");
        let fs = TypeId::of::<FilesystemStorageFactory>();
        let f = CacheStorageFactory::new(cache);
        assert!(f.is_type_id(fs));
        assert!(f.is_type_id(TypeId::of::<CacheStorageFactory>()));
        assert!(!f.is_type_id(TypeId::of::<u8>()));
        let boxed = f.boxed();
        assert!(
            boxed.is_type_id(fs),
            "librqbit's box no longer forwards is_type_id"
        );
        assert!(
            boxed.clone_box().is_type_id(fs),
            "librqbit's clone_box no longer forwards it"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
