//! hosts: each renga server's heartbeat (the `hosts` tree). Every host
//! writes its record every [`BEAT`]: its name, where its API answers, since
//! when it runs, and its load. On a cluster every host reads every other's;
//! a host whose record is older than [`LOST_AFTER`] has stopped beating and
//! is shown as lost.

use std::time::Duration;

use crate::store::{Db, StoreError, Tree, now_ms};

/// How often a host writes its record.
pub const BEAT: Duration = Duration::from_secs(2);

/// A host silent for this long (three beats) is lost.
pub const LOST_AFTER: Duration = Duration::from_secs(6);

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct HostRecord {
    pub name: String,
    /// Where its API answers.
    pub api_url: String,
    /// The renga version it runs.
    pub version: String,
    pub started_at: u64,
    /// When it last wrote this record.
    pub seen_at: u64,
    /// Apps its router serves.
    pub apps: usize,
    /// Wasm instances alive, and at most.
    pub instances: usize,
    pub max_instances: usize,
    /// The server's resident memory.
    pub rss_bytes: u64,
}

impl HostRecord {
    /// Whether it beat within [`LOST_AFTER`] of `now` (ms).
    pub fn is_up(&self, now: u64) -> bool {
        now.saturating_sub(self.seen_at) <= LOST_AFTER.as_millis() as u64
    }
}

pub struct Hosts {
    tree: Tree,
}

impl Hosts {
    pub fn open(db: &Db) -> anyhow::Result<Hosts> {
        Ok(Hosts {
            tree: db.tree("hosts")?,
        })
    }

    pub fn beat(&self, record: &HostRecord) -> Result<(), StoreError> {
        self.tree.put(&record.name, record)
    }

    /// By name.
    pub fn list(&self) -> Result<Vec<HostRecord>, StoreError> {
        self.tree.scan("")
    }

    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.tree.remove(name)
    }
}

/// Milliseconds since `at`, for "seen 3s ago".
pub fn age_ms(at: u64) -> u64 {
    now_ms().saturating_sub(at)
}
