//! store: the ledger's records, on one machine or on a cluster.
//!
//! Hands each owning module (apps, auth, releases, slugs, formation) its own
//! tree and encodes records as JSON with a schema version. It never
//! interprets a record: the module that owns a tree is the only code that
//! reads or writes it. Two backends keep the trees: sled in the data folder
//! (the default, [`Db::open`]) and NATS JetStream's replicated key-value
//! buckets ([`Db::join`], `renga server --cluster`). Both give the same
//! answers; what differs is durability (sled's writes are made durable by
//! [`Db::flush`], JetStream's are acknowledged by the cluster before they
//! return) and freshness (a JetStream host reads a local mirror that the
//! bucket's watch keeps current, so another host's write shows up a moment
//! later; [`Tree::put_new`] and [`Tree::update`] are decided by the cluster,
//! never by the mirror).

mod jetstream;
mod sled_tree;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use jetstream::ClusterOptions;

/// Raw records with their keys, in key order.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// The schema version every record is written with.
pub const SCHEMA: u32 = 1;

#[derive(Clone)]
pub struct Db {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sled(sled::Db),
    JetStream(Arc<jetstream::Cluster>),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("the cluster's store failed: {0}")]
    Cluster(String),
    #[error("a {kind} record is unreadable: {reason}")]
    Corrupt { kind: &'static str, reason: String },
    #[error("a {kind} record has schema version {found}; this renga reads version {SCHEMA}")]
    NewerSchema { kind: &'static str, found: u32 },
}

impl Db {
    /// The embedded store in `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Db> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            // sled keeps up to 1 GiB of pages in memory by default; records
            // are small and the hot ones are few.
            .cache_capacity(64 << 20)
            .open()
            .with_context(|| {
                format!(
                    "opening the store in {} (is another renga server using it?)",
                    dir.display()
                )
            })?;
        Ok(Db {
            backend: Backend::Sled(db),
        })
    }

    /// The cluster's store in NATS JetStream, shared by every host that
    /// joins the same servers.
    pub async fn join(options: ClusterOptions) -> anyhow::Result<Db> {
        Ok(Db {
            backend: Backend::JetStream(Arc::new(jetstream::Cluster::join(options).await?)),
        })
    }

    /// One kind of record. On a cluster, the first call for a name creates
    /// its bucket (or finds the one another host made) and loads it.
    pub fn tree(&self, name: &'static str) -> anyhow::Result<Tree> {
        let backend = match &self.backend {
            Backend::Sled(db) => TreeBackend::Sled(
                db.open_tree(name)
                    .with_context(|| format!("opening the {name} tree"))?,
            ),
            Backend::JetStream(cluster) => TreeBackend::JetStream(
                cluster
                    .bucket(name)
                    .with_context(|| format!("opening the cluster's {name} bucket"))?,
            ),
        };
        Ok(Tree {
            backend,
            kind: name,
        })
    }

    /// Makes every write so far durable. Called before the API acknowledges
    /// a change. A cluster's writes are durable when they return.
    pub async fn flush(&self) -> Result<(), StoreError> {
        if let Backend::Sled(db) = &self.backend {
            db.flush_async().await?;
        }
        Ok(())
    }

    /// On a cluster, the object store `name`: files every host can fetch.
    pub fn blobs(&self, name: &str) -> anyhow::Result<Option<Blobs>> {
        match &self.backend {
            Backend::Sled(_) => Ok(None),
            Backend::JetStream(cluster) => {
                Ok(Some(Blobs(Arc::new(cluster.blobs(name).with_context(
                    || format!("opening the cluster's {name} object store"),
                )?))))
            }
        }
    }

    /// On a cluster, the connection to its NATS servers (for the subjects
    /// logs travel on).
    pub fn nats(&self) -> Option<async_nats::Client> {
        match &self.backend {
            Backend::Sled(_) => None,
            Backend::JetStream(cluster) => Some(cluster.client()),
        }
    }

    /// Whether the records live on a cluster (and another host may change
    /// them).
    pub fn is_cluster(&self) -> bool {
        matches!(self.backend, Backend::JetStream(_))
    }
}

/// Files by name that every host of a cluster can fetch (slugs, by their
/// sha256; uploaded sources, by id). Blocking: call from a blocking task.
#[derive(Clone)]
pub struct Blobs(Arc<jetstream::Blobs>);

impl Blobs {
    /// Stores the file at `path` as `name`, in place of any object of that
    /// name; returns the stored object's stamp.
    pub fn put_file(&self, name: &str, path: &Path) -> Result<String, StoreError> {
        self.0.put_file(name, path)
    }

    /// A stamp that changes with every store of `name`; `None` if the
    /// cluster has no object of that name.
    pub fn stamp(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.0.stamp(name)
    }

    /// Writes the file `name` to `dest`; false if the cluster has none.
    pub fn get_file(&self, name: &str, dest: &Path) -> Result<bool, StoreError> {
        self.0.get_file(name, dest)
    }

    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.0.remove(name)
    }
}

/// One kind of record, keyed by bytes, in key order.
#[derive(Clone)]
pub struct Tree {
    backend: TreeBackend,
    kind: &'static str,
}

#[derive(Clone)]
enum TreeBackend {
    Sled(sled::Tree),
    JetStream(Arc<jetstream::Bucket>),
}

#[derive(Serialize, serde::Deserialize)]
struct Versioned<T> {
    v: u32,
    #[serde(flatten)]
    record: T,
}

#[derive(serde::Deserialize)]
struct VersionOnly {
    v: u32,
}

impl Tree {
    pub fn get<T: DeserializeOwned>(&self, key: impl AsRef<[u8]>) -> Result<Option<T>, StoreError> {
        let bytes = match &self.backend {
            TreeBackend::Sled(tree) => tree.get(key)?.map(|b| b.to_vec()),
            TreeBackend::JetStream(bucket) => bucket.get(key.as_ref()).map(|(_, b)| b.to_vec()),
        };
        bytes.map(|b| self.decode(&b)).transpose()
    }

    pub fn put<T: Serialize>(&self, key: impl AsRef<[u8]>, record: &T) -> Result<(), StoreError> {
        let bytes = self.encode(record)?;
        match &self.backend {
            TreeBackend::Sled(tree) => {
                tree.insert(key, bytes)?;
            }
            TreeBackend::JetStream(bucket) => bucket.put(key.as_ref(), bytes)?,
        }
        Ok(())
    }

    /// Writes `record` only if `key` is absent; false if it was there (on a
    /// cluster: if any host had written it).
    pub fn put_new<T: Serialize>(
        &self,
        key: impl AsRef<[u8]>,
        record: &T,
    ) -> Result<bool, StoreError> {
        let bytes = self.encode(record)?;
        match &self.backend {
            TreeBackend::Sled(tree) => Ok(tree
                .compare_and_swap(key, None as Option<&[u8]>, Some(bytes))?
                .is_ok()),
            TreeBackend::JetStream(bucket) => bucket.replace(key.as_ref(), None, bytes),
        }
    }

    /// Changes the record at `key` with `change` (given the record there,
    /// if any) and writes the result, unless another writer changed the
    /// record in between: then `change` runs again on what that writer
    /// left. The result is what was written.
    pub fn update<T: Serialize + DeserializeOwned>(
        &self,
        key: impl AsRef<[u8]>,
        mut change: impl FnMut(Option<T>) -> T,
    ) -> Result<T, StoreError> {
        let key = key.as_ref();
        loop {
            match &self.backend {
                TreeBackend::Sled(tree) => {
                    let old = tree.get(key)?;
                    let record = change(old.as_deref().map(|b| self.decode(b)).transpose()?);
                    let new = self.encode(&record)?;
                    if tree.compare_and_swap(key, old, Some(new))?.is_ok() {
                        return Ok(record);
                    }
                }
                TreeBackend::JetStream(bucket) => {
                    let old = bucket.get(key);
                    let record = change(old.as_ref().map(|(_, b)| self.decode(b)).transpose()?);
                    let new = self.encode(&record)?;
                    if bucket.replace(key, old.map(|(revision, _)| revision), new)? {
                        return Ok(record);
                    }
                }
            }
        }
    }

    /// On a cluster, the keys that other hosts' writes change, as they
    /// arrive (a receiver that falls behind is told how many it missed).
    pub fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Vec<u8>>> {
        match &self.backend {
            TreeBackend::Sled(_) => None,
            TreeBackend::JetStream(bucket) => Some(bucket.changes()),
        }
    }

    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<(), StoreError> {
        match &self.backend {
            TreeBackend::Sled(tree) => {
                tree.remove(key)?;
            }
            TreeBackend::JetStream(bucket) => bucket.remove(key.as_ref())?,
        }
        Ok(())
    }

    /// Every record whose key starts with `prefix`, in key order.
    pub fn scan<T: DeserializeOwned>(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> Result<Vec<T>, StoreError> {
        self.raw_scan(prefix.as_ref())?
            .iter()
            .map(|(_, bytes)| self.decode(bytes))
            .collect()
    }

    /// Every record whose key starts with `prefix`, with its key, in key order.
    pub fn scan_with_keys<T: DeserializeOwned>(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> Result<Vec<(String, T)>, StoreError> {
        self.raw_scan(prefix.as_ref())?
            .iter()
            .map(|(key, bytes)| {
                Ok((
                    String::from_utf8_lossy(key).into_owned(),
                    self.decode(bytes)?,
                ))
            })
            .collect()
    }

    /// The record with the greatest key starting with `prefix`.
    pub fn last<T: DeserializeOwned>(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> Result<Option<T>, StoreError> {
        let bytes = match &self.backend {
            TreeBackend::Sled(tree) => sled_tree::last(tree, prefix.as_ref())?,
            TreeBackend::JetStream(bucket) => bucket.last(prefix.as_ref()),
        };
        bytes.map(|b| self.decode(&b)).transpose()
    }

    pub fn remove_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<(), StoreError> {
        for (key, _) in self.raw_scan(prefix.as_ref())? {
            self.remove(key)?;
        }
        Ok(())
    }

    fn raw_scan(&self, prefix: &[u8]) -> Result<Entries, StoreError> {
        match &self.backend {
            TreeBackend::Sled(tree) => sled_tree::scan(tree, prefix),
            TreeBackend::JetStream(bucket) => Ok(bucket.scan(prefix)),
        }
    }

    fn encode<T: Serialize>(&self, record: &T) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(&Versioned { v: SCHEMA, record }).map_err(|e| StoreError::Corrupt {
            kind: self.kind,
            reason: e.to_string(),
        })
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, StoreError> {
        let version: VersionOnly =
            serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
                kind: self.kind,
                reason: e.to_string(),
            })?;
        if version.v > SCHEMA {
            return Err(StoreError::NewerSchema {
                kind: self.kind,
                found: version.v,
            });
        }
        let versioned: Versioned<T> =
            serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
                kind: self.kind,
                reason: e.to_string(),
            })?;
        Ok(versioned.record)
    }
}

/// Milliseconds since the Unix epoch: how records keep time.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A new random identifier (a UUID, as Heroku's API uses).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Thing {
        name: String,
    }

    #[test]
    fn records_carry_a_schema_version() {
        let dir = std::env::temp_dir().join(format!("renga-store-{}", std::process::id()));
        let db = Db::open(&dir).unwrap();
        let tree = db.tree("things").unwrap();
        tree.put("a", &Thing { name: "x".into() }).unwrap();
        assert_eq!(
            tree.get::<Thing>("a").unwrap(),
            Some(Thing { name: "x".into() })
        );
        assert!(!tree.put_new("a", &Thing { name: "y".into() }).unwrap());
        let updated = tree
            .update("a", |thing: Option<Thing>| Thing {
                name: thing.unwrap().name + "z",
            })
            .unwrap();
        assert_eq!(updated.name, "xz");
        let TreeBackend::Sled(raw) = &tree.backend else {
            unreachable!()
        };
        raw.insert("b", br#"{"v":99,"name":"z"}"#.to_vec()).unwrap();
        assert!(matches!(
            tree.get::<Thing>("b"),
            Err(StoreError::NewerSchema { found: 99, .. })
        ));
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }
}
