//! store: the embedded database.
//!
//! Opens sled in the data folder and hands each owning module (apps, auth,
//! releases, slugs, formation) its own tree; encodes records as JSON with a
//! schema version. It never interprets a record: the module that owns a tree
//! is the only code that reads or writes it.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The schema version every record is written with.
pub const SCHEMA: u32 = 1;

#[derive(Clone)]
pub struct Db {
    db: sled::Db,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("a {kind} record is unreadable: {reason}")]
    Corrupt { kind: &'static str, reason: String },
    #[error("a {kind} record has schema version {found}; this renga reads version {SCHEMA}")]
    NewerSchema { kind: &'static str, found: u32 },
}

impl Db {
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
        Ok(Db { db })
    }

    pub fn tree(&self, name: &'static str) -> anyhow::Result<Tree> {
        Ok(Tree {
            tree: self
                .db
                .open_tree(name)
                .with_context(|| format!("opening the {name} tree"))?,
            kind: name,
        })
    }

    /// Makes every write so far durable. Called before the API acknowledges
    /// a change.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }
}

/// One kind of record, keyed by bytes.
#[derive(Clone)]
pub struct Tree {
    tree: sled::Tree,
    kind: &'static str,
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
        match self.tree.get(key)? {
            Some(bytes) => self.decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    pub fn put<T: Serialize>(&self, key: impl AsRef<[u8]>, record: &T) -> Result<(), StoreError> {
        self.tree.insert(key, self.encode(record)?)?;
        Ok(())
    }

    /// Writes `record` only if `key` is absent; false if it was there.
    pub fn put_new<T: Serialize>(
        &self,
        key: impl AsRef<[u8]>,
        record: &T,
    ) -> Result<bool, StoreError> {
        let written =
            self.tree
                .compare_and_swap(key, None as Option<&[u8]>, Some(self.encode(record)?))?;
        Ok(written.is_ok())
    }

    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<(), StoreError> {
        self.tree.remove(key)?;
        Ok(())
    }

    /// Every record whose key starts with `prefix`, in key order.
    pub fn scan<T: DeserializeOwned>(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> Result<Vec<T>, StoreError> {
        self.tree
            .scan_prefix(prefix)
            .map(|entry| {
                let (_, bytes) = entry?;
                self.decode(&bytes)
            })
            .collect()
    }

    /// Every record whose key starts with `prefix`, with its key, in key order.
    pub fn scan_with_keys<T: DeserializeOwned>(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> Result<Vec<(String, T)>, StoreError> {
        self.tree
            .scan_prefix(prefix)
            .map(|entry| {
                let (key, bytes) = entry?;
                Ok((
                    String::from_utf8_lossy(&key).into_owned(),
                    self.decode(&bytes)?,
                ))
            })
            .collect()
    }

    /// The record with the greatest key starting with `prefix`.
    pub fn last<T: DeserializeOwned>(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> Result<Option<T>, StoreError> {
        match self.tree.scan_prefix(prefix).next_back() {
            Some(entry) => {
                let (_, bytes) = entry?;
                self.decode(&bytes).map(Some)
            }
            None => Ok(None),
        }
    }

    pub fn remove_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<(), StoreError> {
        for entry in self.tree.scan_prefix(prefix) {
            let (key, _) = entry?;
            self.tree.remove(key)?;
        }
        Ok(())
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
        tree.tree
            .insert("b", br#"{"v":99,"name":"z"}"#.to_vec())
            .unwrap();
        assert!(matches!(
            tree.get::<Thing>("b"),
            Err(StoreError::NewerSchema { found: 99, .. })
        ));
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }
}
