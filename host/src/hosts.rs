//! hosts: each renga server's heartbeat (the `hosts` tree). Every host
//! writes its record every [`BEAT`]: its name, where its API answers, since
//! when it runs, and its load. On a cluster every host reads every other's;
//! a host whose record is older than [`LOST_AFTER`] has stopped beating and
//! is shown as lost. The admin can drain a host (`renga hosts:drain`):
//! its dynos are placed on the others, and it forwards what its router gets.
//!
//! Worker dynos are leased: the `leases` tree holds, for each worker dyno
//! of the cluster, the host running it, written with a revision check so
//! that two hosts never both take one. A lease is given up by its holder
//! (scale down, drain) or taken over from a holder that is lost.

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
    /// Where its router answers (`IP:PORT`), for requests other hosts
    /// forward.
    #[serde(default)]
    pub router: String,
    /// Whether the admin has drained it.
    #[serde(default)]
    pub draining: bool,
    /// The dynos it runs (`shop web.1`, `jobs worker.1`).
    #[serde(default)]
    pub dynos: Vec<String>,
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

#[derive(Clone)]
pub struct Hosts {
    tree: Tree,
    /// Drained hosts, by name, written by the admin.
    drained: Tree,
    leases: Tree,
    /// The cluster's own secrets (the forwarding secret).
    secrets: Tree,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Drained {
    since: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Secret {
    secret: String,
}

/// A worker dyno's holder.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    pub host: String,
    pub since: u64,
}

impl Hosts {
    pub fn open(db: &Db) -> anyhow::Result<Hosts> {
        Ok(Hosts {
            tree: db.tree("hosts")?,
            drained: db.tree("host-drains")?,
            leases: db.tree("leases")?,
            secrets: db.tree("cluster-secrets")?,
        })
    }

    /// The secret routers show each other on forwarded requests: made by
    /// the first host that asks, read by the others.
    pub fn forward_secret(&self) -> Result<String, StoreError> {
        let made = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        self.secrets.put_new(
            "forward",
            &Secret {
                secret: made.clone(),
            },
        )?;
        Ok(self
            .secrets
            .get::<Secret>("forward")?
            .map_or(made, |s| s.secret))
    }

    /// Drains `name` (or takes it back into service).
    pub fn set_drained(&self, name: &str, drained: bool) -> Result<(), StoreError> {
        if drained {
            self.drained.put(name, &Drained { since: now_ms() })
        } else {
            self.drained.remove(name)
        }
    }

    pub fn is_drained(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.drained.get::<Drained>(name)?.is_some())
    }

    /// The hosts dynos may be placed on at `now`: up and not drained.
    pub fn placeable(&self, now: u64) -> Result<Vec<String>, StoreError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|h| h.is_up(now) && !h.draining)
            .map(|h| h.name)
            .collect())
    }

    /// Whether `name` beat within [`LOST_AFTER`].
    pub fn is_up(&self, name: &str, now: u64) -> Result<bool, StoreError> {
        Ok(self
            .tree
            .get::<HostRecord>(name)?
            .is_some_and(|h| h.is_up(now)))
    }

    pub fn lease(&self, key: &str) -> Result<Option<Lease>, StoreError> {
        self.leases.get(key)
    }

    /// Takes the lease at `key` for `host` if it is free, or held by a host
    /// for which `taken_over` says yes; whether `host` holds it now.
    pub fn take_lease(
        &self,
        key: &str,
        host: &str,
        taken_over: impl Fn(&Lease) -> bool,
    ) -> Result<bool, StoreError> {
        let lease = self.leases.update(key, |held: Option<Lease>| match held {
            Some(lease) if lease.host != host && !taken_over(&lease) => lease,
            Some(lease) if lease.host == host => lease,
            _ => Lease {
                host: host.to_string(),
                since: now_ms(),
            },
        })?;
        Ok(lease.host == host)
    }

    /// Gives up `host`'s lease at `key` (if it still holds it).
    pub fn give_up_lease(&self, key: &str, host: &str) -> Result<(), StoreError> {
        if self
            .leases
            .get::<Lease>(key)?
            .is_some_and(|l| l.host == host)
        {
            self.leases.remove(key)?;
        }
        Ok(())
    }

    /// Every lease whose key starts with `prefix` (`APP_ID/`), with its key.
    pub fn leases(&self, prefix: &str) -> Result<Vec<(String, Lease)>, StoreError> {
        self.leases.scan_with_keys(prefix)
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
