//! On a cluster: what other hosts change reaches this host's routes.
//!
//! The ledger's watch brings every release and formation change made through
//! another host into this host's mirror; this follower switches the app's
//! web dynos here to the app's current release and formation, as if the
//! change had been made here (the release's slug is fetched from the
//! cluster's object store on first use). Worker dynos stay with the host
//! that made the release, so that each runs once.

use std::sync::{Arc, Weak};

use tokio::sync::broadcast::error::RecvError;
use tokio_util::task::AbortOnDropHandle;

use super::Platform;
use crate::formation::Formations;
use crate::logplex::Source;
use crate::release::Ledger;

impl Platform {
    /// Follows other hosts' changes until the handle is dropped; `None` on
    /// one machine (nothing else changes the store).
    pub fn follow_cluster(self: &Arc<Platform>) -> Option<AbortOnDropHandle<()>> {
        let releases = self.ledger.changes()?;
        let formation = self.formations.changes()?;
        let platform = Arc::downgrade(self);
        Some(AbortOnDropHandle::new(tokio::spawn(follow(
            platform, releases, formation,
        ))))
    }

    /// Switches this host's web dynos of `app_id` to its current release
    /// and formation.
    async fn follow_app(&self, app_id: &str) {
        let Ok(Some(mut app)) = self.apps.find(app_id) else {
            return;
        };
        let _lock = self.lock(&mut app).await;
        let Ok(Some(release)) = self.ledger.current(&app.id) else {
            return;
        };
        let switched = async {
            let caps = self.capabilities_of(&app, &release)?;
            let web = self.web_state(&app, &release, &caps).await?;
            self.switch_web(&app, web);
            Ok::<_, super::PlatformError>(())
        }
        .await;
        if let Err(e) = switched {
            tracing::warn!(app = %app.name, error = %e, "could not follow a change made on another host");
            self.logs.app(&app.id).emit(
                Source::Renga,
                &super::api_process(),
                format!("Could not run {} on this host: {e}", release.version()),
            );
        }
    }
}

async fn follow(
    platform: Weak<Platform>,
    mut releases: tokio::sync::broadcast::Receiver<Vec<u8>>,
    mut formation: tokio::sync::broadcast::Receiver<Vec<u8>>,
) {
    loop {
        let changed = tokio::select! {
            key = releases.recv() => key.map(|key| Ledger::app_of(&key)),
            key = formation.recv() => key.map(|key| Formations::app_of(&key)),
        };
        let Some(platform) = platform.upgrade() else {
            return;
        };
        match changed {
            Ok(Some(app_id)) => platform.follow_app(&app_id).await,
            Ok(None) => {}
            // Too many changes at once to follow one by one: every app.
            Err(RecvError::Lagged(_)) => {
                if let Ok(apps) = platform.apps.all() {
                    for app in apps {
                        platform.follow_app(&app.id).await;
                    }
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}
