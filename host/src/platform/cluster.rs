//! On a cluster: what other hosts change reaches this host's routes.
//!
//! The ledger's watch brings every release and formation change made through
//! another host into this host's mirror; this follower switches the app's
//! web dynos here to the app's current release and formation, as if the
//! change had been made here (the release's slug is fetched from the
//! cluster's object store on first use), and restarts the workers this
//! host holds the leases of (see `placement`). Log lines travel on
//! core NATS subjects (`renga.log.<app id>`): each host publishes its own
//! and takes in every other's.

use std::sync::{Arc, Weak};

use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::task::AbortOnDropHandle;

use super::Platform;
use crate::domain::Domains;
use crate::drain::Drains;
use crate::formation::Formations;
use crate::logplex::Source;
use crate::release::Ledger;

impl Platform {
    /// Follows other hosts' changes until the handle is dropped; `None` on
    /// one machine (nothing else changes the store).
    pub fn follow_cluster(self: &Arc<Platform>) -> Option<AbortOnDropHandle<()>> {
        let changes = Changes {
            releases: self.ledger.changes()?,
            formation: self.formations.changes()?,
            apps: self.apps.changes()?,
            domains: self.domains.changes()?,
            drains: self.drains.changes()?,
        };
        let platform = Arc::downgrade(self);
        Some(AbortOnDropHandle::new(tokio::spawn(follow(
            platform, changes,
        ))))
    }

    /// Brings this host's routing of an app in line with its record as
    /// another host changed it: its name, maintenance mode, idle period and
    /// domains; or stops the app here when it was deleted.
    pub(super) async fn follow_app_record(&self, app_id: &str) {
        let mut app = match self.apps.find(app_id) {
            Ok(Some(app)) => app,
            Ok(None) => {
                if self.routes.of_app(app_id).is_some() {
                    self.app_deleted_elsewhere(app_id).await;
                }
                return;
            }
            Err(e) => {
                tracing::warn!(app = %app_id, error = %e, "could not read an app changed on another host");
                return;
            }
        };
        let _lock = self.lock(&mut app).await;
        let Some((name, route)) = self.routes.of_app(&app.id) else {
            return;
        };
        if name != app.name.as_str() {
            self.routes
                .rename(&app.id, &name, app.name.as_str(), &route);
        }
        let web = route.current();
        if web.maintenance != app.maintenance {
            route.set(web.with_maintenance(app.maintenance));
        }
        route.set_idle_after(self.idle_after(&app));
        if let Err(e) = self.route_domains(&app) {
            tracing::warn!(app = %app.name, error = %e, "could not route an app's domains");
        }
    }

    /// Switches this host's web dynos and workers of `app_id` to its
    /// current release, formation and placement.
    pub(super) async fn follow_app(&self, app_id: &str) {
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
            self.reconcile_workers(&app, &release).await;
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

/// The changes other hosts make that this host follows.
struct Changes {
    releases: Receiver<Vec<u8>>,
    formation: Receiver<Vec<u8>>,
    /// App records, by name.
    apps: Receiver<Vec<u8>>,
    domains: Receiver<Vec<u8>>,
    drains: Receiver<Vec<u8>>,
}

/// What a change asks of this host.
enum Follow {
    /// Run the app's current release and formation.
    Dynos(String),
    /// Route the app as its record says (or stop it: it was deleted).
    Record(String),
    /// Start or stop one of the app's drains: (app id, drain id).
    Drain((String, String)),
}

async fn follow(platform: Weak<Platform>, mut changes: Changes) {
    loop {
        let changed = tokio::select! {
            key = changes.releases.recv() => key.map(|key| Ledger::app_of(&key).map(Follow::Dynos)),
            key = changes.formation.recv() => key.map(|key| Formations::app_of(&key).map(Follow::Dynos)),
            key = changes.domains.recv() => key.map(|key| Domains::app_of(&key).map(Follow::Record)),
            key = changes.drains.recv() => key.map(|key| Drains::key_parts(&key).map(Follow::Drain)),
            key = changes.apps.recv() => key.map(|name| {
                let name = String::from_utf8(name).ok()?;
                let platform = platform.upgrade()?;
                // A deleted app's id is known only to the routes.
                let id = match platform.apps.find(&name) {
                    Ok(Some(app)) => Some(app.id),
                    _ => platform.routes.id_of(&name),
                };
                id.map(Follow::Record)
            }),
        };
        let Some(platform) = platform.upgrade() else {
            return;
        };
        match changed {
            Ok(Some(Follow::Dynos(app_id))) => platform.follow_app(&app_id).await,
            Ok(Some(Follow::Record(app_id))) => platform.follow_app_record(&app_id).await,
            Ok(Some(Follow::Drain((app_id, drain_id)))) => {
                platform.follow_drain(&app_id, &drain_id)
            }
            // Too many changes at once to follow one by one: every app.
            Err(RecvError::Lagged(_)) => {
                for app_id in platform.routes.app_ids() {
                    platform.follow_app_record(&app_id).await;
                }
                platform.follow_every_drain();
                if let Ok(apps) = platform.apps.all() {
                    for app in apps {
                        platform.follow_app(&app.id).await;
                    }
                }
            }
            Ok(None) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

/// Log lines a host may have on their way to the cluster at once.
const SHIPPED_LINES: usize = 4096;

/// A log line on the wire: `renga.log.<app id>`, JSON.
#[derive(serde::Serialize, serde::Deserialize)]
struct Shipped {
    /// The host that wrote it.
    h: String,
    /// Microseconds since the epoch.
    t: u64,
    /// `app` or `renga`.
    s: String,
    p: String,
    m: String,
}

impl Platform {
    /// On a cluster: this host's log lines go to every other host, and
    /// theirs come into this host's logs, so that `renga logs --tail` on
    /// any host shows every host's lines (in order per host). `None` on
    /// one machine.
    pub fn share_logs(self: &Arc<Platform>) -> Option<AbortOnDropHandle<()>> {
        let client = self.db.nats()?;
        let (ship, mut shipped) = tokio::sync::mpsc::channel(SHIPPED_LINES);
        self.logs.ship_to(ship);
        let host = self.config.host_name.clone();
        let platform = Arc::downgrade(self);
        Some(AbortOnDropHandle::new(tokio::spawn(async move {
            let mut lines = match client.subscribe("renga.log.>").await {
                Ok(lines) => lines,
                Err(e) => {
                    tracing::warn!(error = %e, "could not follow the cluster's logs");
                    return;
                }
            };
            loop {
                tokio::select! {
                    line = shipped.recv() => {
                        let Some((app_id, line)) = line else { return };
                        let line: Arc<crate::logplex::LogLine> = line;
                        let wire = Shipped {
                            h: host.clone(),
                            t: line
                                .time
                                .duration_since(std::time::UNIX_EPOCH)
                                .map_or(0, |d| d.as_micros() as u64),
                            s: line.source.as_str().to_string(),
                            p: line.process.to_string(),
                            m: line.message.clone(),
                        };
                        let Ok(payload) = serde_json::to_vec(&wire) else { continue };
                        // A line the connection cannot take now is this
                        // host's only.
                        let _ = client.publish(format!("renga.log.{app_id}"), payload.into()).await;
                    }
                    message = futures::StreamExt::next(&mut lines) => {
                        let Some(message) = message else { return };
                        let Some(platform) = platform.upgrade() else { return };
                        platform.take_line(&host, &message.subject, &message.payload);
                    }
                }
            }
        })))
    }

    /// A line another host shipped, into this host's copy of its app's log.
    fn take_line(&self, host: &str, subject: &str, payload: &[u8]) {
        let Ok(line) = serde_json::from_slice::<Shipped>(payload) else {
            return;
        };
        let Some(app_id) = subject.strip_prefix("renga.log.") else {
            return;
        };
        if line.h == host || !matches!(self.apps.find(app_id), Ok(Some(_))) {
            return;
        }
        self.logs
            .app(app_id)
            .push_from_elsewhere(crate::logplex::LogLine {
                time: std::time::UNIX_EPOCH + std::time::Duration::from_micros(line.t),
                source: if line.s == "app" {
                    Source::App
                } else {
                    Source::Renga
                },
                process: line.p.into(),
                message: line.m,
            });
    }
}
