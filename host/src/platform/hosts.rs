//! The host's heartbeat, and the list of hosts the admin reads.

use std::sync::Arc;

use tokio_util::task::AbortOnDropHandle;

use super::{Platform, PlatformError, Result};
use crate::auth::User;
use crate::hosts::{BEAT, HostRecord};
use crate::store::now_ms;

impl Platform {
    /// Writes this host's record now and every [`BEAT`] until the handle
    /// is dropped.
    pub fn start_heartbeat(self: &Arc<Platform>) -> AbortOnDropHandle<()> {
        let platform = Arc::downgrade(self);
        let started_at = now_ms();
        AbortOnDropHandle::new(tokio::spawn(async move {
            let mut every = tokio::time::interval(BEAT);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(platform) = platform.upgrade() else {
                    return;
                };
                if let Err(e) = platform.beat(started_at) {
                    tracing::warn!(error = %e, "could not write this host's heartbeat");
                }
            }
        }))
    }

    fn beat(&self, started_at: u64) -> Result<()> {
        let drained = self.hosts.is_drained(&self.config.host_name)?;
        self.placing
            .drained
            .store(drained, std::sync::atomic::Ordering::Relaxed);
        let record = HostRecord {
            name: self.config.host_name.clone(),
            api_url: self.config.public_url.clone(),
            router: self.config.router_addr.clone(),
            draining: drained,
            dynos: self.dynos_here(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at,
            seen_at: now_ms(),
            apps: self.routes.app_count(),
            instances: crate::runtime::live_instances(),
            max_instances: self.runtime.max_instances() as usize,
            rss_bytes: crate::api::rss_bytes(),
        };
        self.hosts.beat(&record)?;
        self.placing
            .beat_at
            .store(record.seen_at, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Whether the records live on a cluster.
    pub fn is_cluster(&self) -> bool {
        self.db.is_cluster()
    }

    /// The cluster's forwarding secret (see `router::ClusterRouting`).
    pub fn forward_secret(&self) -> Result<String> {
        Ok(self.hosts.forward_secret()?)
    }

    /// Drains the host `name` (its dynos move to the others and its router
    /// forwards), or takes it back into service: the admin's.
    pub fn drain_host(&self, user: &User, name: &str, drained: bool) -> Result<HostRecord> {
        let record = self
            .hosts(user)?
            .into_iter()
            .find(|h| h.name == name)
            .ok_or_else(|| PlatformError::NotFound(format!("Couldn't find that host: {name}")))?;
        self.hosts.set_drained(name, drained)?;
        Ok(record)
    }

    /// Every host that has beaten, by name: the admin's to read.
    pub fn hosts(&self, user: &User) -> Result<Vec<HostRecord>> {
        if !user.admin {
            return Err(PlatformError::Forbidden(
                "Only the admin can list the platform's hosts".into(),
            ));
        }
        Ok(self.hosts.list()?)
    }
}
