//! Files in the cluster: a JetStream object store per name, chunked and
//! replicated like the buckets (the slugs and build caches every host can
//! fetch).

use async_nats::jetstream::object_store;
use tokio::runtime::Handle;

use super::{Cluster, START_TIMEOUT, block, block_for, until_answered};
use crate::store::StoreError;

impl Cluster {
    /// The object store `renga-<name>` (made on first use, like a bucket).
    pub(in crate::store) fn blobs(&self, name: &str) -> anyhow::Result<Blobs> {
        let config = object_store::Config {
            bucket: format!("renga-{name}"),
            description: Some(format!("renga's {name}, by sha256")),
            num_replicas: self.replicas,
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        };
        let (jetstream, config) = (&self.jetstream, &config);
        let made = until_answered(&config.bucket, move || async move {
            match jetstream.create_object_store(config.clone()).await {
                Ok(store) => Ok(store),
                Err(made) => jetstream
                    .get_object_store(&config.bucket)
                    .await
                    .map_err(|found| format!("{made}; {found}")),
            }
        });
        let store = block_for(
            START_TIMEOUT,
            &self.handle,
            "creating the object store",
            async { Ok::<_, String>(made.await) },
        )?;
        Ok(Blobs {
            store,
            handle: self.handle.clone(),
        })
    }
}

/// Files by name in a JetStream object store (chunked, replicated like the
/// buckets). Blocking: call from a blocking task.
pub(in crate::store) struct Blobs {
    store: object_store::ObjectStore,
    handle: Handle,
}

impl Blobs {
    /// Returns the stored object's nuid, which every store of a name
    /// changes.
    pub(in crate::store) fn put_file(
        &self,
        name: &str,
        path: &std::path::Path,
    ) -> Result<String, StoreError> {
        block(&self.handle, "storing a file in the cluster", async {
            let mut file = tokio::fs::File::open(path)
                .await
                .map_err(|e| e.to_string())?;
            self.store
                .put(name, &mut file)
                .await
                .map(|info| info.nuid)
                .map_err(|e| e.to_string())
        })
    }

    /// The nuid of the object `name`, if there is one (not deleted).
    pub(in crate::store) fn stamp(&self, name: &str) -> Result<Option<String>, StoreError> {
        block(&self.handle, "looking up a file in the cluster", async {
            match self.store.info(name).await {
                Ok(info) if info.deleted => Ok(None),
                Ok(info) => Ok(Some(info.nuid)),
                Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    /// Deletes the object `name` (none there is no error).
    pub(in crate::store) fn remove(&self, name: &str) -> Result<(), StoreError> {
        block(&self.handle, "deleting a file from the cluster", async {
            match self.store.delete(name).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == object_store::DeleteErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    /// Writes the object `name` to `dest` (fsynced); false if there is none.
    pub(in crate::store) fn get_file(
        &self,
        name: &str,
        dest: &std::path::Path,
    ) -> Result<bool, StoreError> {
        block(&self.handle, "fetching a file from the cluster", async {
            let mut object = match self.store.get(name).await {
                Ok(object) => object,
                Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e.to_string()),
            };
            let mut file = tokio::fs::File::create(dest)
                .await
                .map_err(|e| e.to_string())?;
            tokio::io::copy(&mut object, &mut file)
                .await
                .map_err(|e| e.to_string())?;
            file.sync_all().await.map_err(|e| e.to_string())?;
            Ok(true)
        })
    }
}
