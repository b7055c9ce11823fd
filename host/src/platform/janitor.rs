//! The janitor: upkeep that no request triggers. Every few minutes it
//! forgets sources no build used within their time, the slugs no release
//! keeps (for every app, not only those that build), and the files no slug
//! names. It stops when the platform is dropped.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Platform;

/// How often the janitor runs.
const EVERY: Duration = Duration::from_secs(5 * 60);

impl Platform {
    pub(super) fn start_janitor(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if !sweep(&weak).await {
                    return;
                }
            }
        });
        if let Some(old) = self
            .janitor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(task)
        {
            old.abort();
        }
    }

    /// One round of upkeep. Blocking work runs off the async workers.
    pub async fn sweep(&self) -> anyhow::Result<()> {
        let builds = self.builds.clone();
        let expired = tokio::task::spawn_blocking(move || builds.expire_sources()).await??;
        if expired > 0 {
            tracing::info!(expired, "forgot uploaded sources no build used");
        }
        for mut app in self.apps.all()? {
            let _lock = self.lock(&mut app).await;
            self.prune_slugs(&app)?;
        }
        self.collect_slug_files();
        self.db.flush().await?;
        Ok(())
    }
}

/// Runs one sweep if the platform still exists; false once it is gone.
async fn sweep(platform: &Weak<Platform>) -> bool {
    let Some(platform) = platform.upgrade() else {
        return false;
    };
    if let Err(e) = platform.sweep().await {
        tracing::warn!(error = %format!("{e:#}"), "upkeep failed; it runs again later");
    }
    true
}

impl Drop for Platform {
    fn drop(&mut self) {
        if let Some(task) = self
            .janitor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }
}
