//! On a cluster: which of an app's dynos this host runs, and where its
//! router sends the requests of apps it runs no web dyno of.
//!
//! Dynos are placed by rendezvous hashing ([`crate::placement`]) over the
//! hosts that are up and not drained, as each host reads the heartbeats.
//! Every [`BEAT`] this host looks at that set again: when it changed, every
//! app's web dynos and workers are placed again; in any case, workers whose
//! lease came free are taken. A worker runs only on the host holding its
//! lease, so a worker runs once even while two hosts disagree on who is up.
//!
//! Scale to zero and wake stay per host: each host that runs web dynos
//! puts them to sleep and wakes them on its own. A host that runs none of
//! an app's web dynos keeps the app ready to wake (its slug fetched, its
//! component compiled) and forwards its requests; when no host takes one,
//! it wakes the app itself, which for a Wasm app takes about a millisecond.
//! That makes failover, for requests, as quick as a refused connection,
//! while the dynos themselves move when the lost host misses its
//! heartbeats.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio_util::task::AbortOnDropHandle;

use super::Platform;
use crate::app::App;
use crate::hosts::{BEAT, LOST_AFTER};
use crate::procfile::ProcessType;
use crate::router::{AppRoute, Elsewhere, Peer};
use crate::store::now_ms;

/// What this host knows of its place in the cluster.
#[derive(Default)]
pub(super) struct Placing {
    /// Whether the admin drained this host.
    pub(super) drained: AtomicBool,
    /// When this host's heartbeat was last written (ms since the epoch).
    pub(super) beat_at: AtomicU64,
    /// Other hosts' routers, by host name, with their kept connections.
    peers: Mutex<HashMap<String, Arc<Peer>>>,
}

/// A host that has not written its heartbeat for this long stops its
/// workers: the others may count it lost a beat later and take them.
const FENCE_AFTER: u64 = LOST_AFTER.as_millis() as u64 - BEAT.as_millis() as u64;

impl Platform {
    /// The hosts dynos may be placed on now: on one machine, this one.
    pub(super) fn placeable_hosts(&self) -> Vec<String> {
        let me = &self.config.host_name;
        if !self.db.is_cluster() {
            return vec![me.clone()];
        }
        let mut hosts = self.hosts.placeable(now_ms()).unwrap_or_default();
        hosts.retain(|h| h != me);
        if !self.placing.drained.load(Ordering::Relaxed) {
            hosts.push(me.clone());
        }
        hosts.sort_unstable();
        hosts
    }

    /// Which of an app's `quantity` web dynos run here (`[1, 3]`).
    pub(super) fn web_dynos_here(&self, app: &App, quantity: u32) -> Vec<u32> {
        if !self.db.is_cluster() {
            return (1..=quantity).collect();
        }
        crate::placement::web_dynos_on(
            &app.id,
            quantity,
            &self.placeable_hosts(),
            &self.config.host_name,
        )
    }

    fn web_quantity(&self, app: &App) -> u32 {
        self.formations
            .get(&app.id, &ProcessType::web())
            .ok()
            .flatten()
            .map_or(0, |f| f.quantity)
    }

    /// Sends the app's requests to the hosts running its web dynos when
    /// this host runs none; serves them here otherwise.
    pub(super) fn place_route(&self, app: &App, route: &AppRoute) {
        if !self.db.is_cluster() {
            return;
        }
        let quantity = self.web_quantity(app);
        let hosts = self.placeable_hosts();
        let mut placed = crate::placement::web_hosts(&app.id, quantity, &hosts);
        placed.sort_unstable();
        placed.dedup();
        let me = self.config.host_name.as_str();
        if placed.is_empty() || placed.contains(&me) {
            route.send_elsewhere(None);
            return;
        }
        let peers: Vec<Arc<Peer>> = placed.iter().filter_map(|h| self.peer(h)).collect();
        route.send_elsewhere((!peers.is_empty()).then(|| Elsewhere::new(peers)));
    }

    /// Another host's router, as its heartbeat gives it.
    fn peer(&self, host: &str) -> Option<Arc<Peer>> {
        let record = self
            .hosts
            .list()
            .ok()?
            .into_iter()
            .find(|h| h.name == host)?;
        let addr: SocketAddr = record.router.parse().ok()?;
        let mut peers = self.placing.peers.lock().unwrap_or_else(|e| e.into_inner());
        let peer = peers
            .entry(host.to_string())
            .or_insert_with(|| Arc::new(Peer::new(host, addr)));
        if peer.addr != addr {
            *peer = Arc::new(Peer::new(host, addr));
        }
        Some(peer.clone())
    }

    /// Whether this host may run workers now: on a cluster, only while its
    /// heartbeat is current and it is not drained.
    pub(super) fn may_run_workers(&self) -> bool {
        if !self.db.is_cluster() {
            return true;
        }
        let beat_at = self.placing.beat_at.load(Ordering::Relaxed);
        !self.placing.drained.load(Ordering::Relaxed)
            && now_ms().saturating_sub(beat_at) < FENCE_AFTER
    }

    /// Whether this host runs the worker dyno `kind.index` of `app`: it
    /// holds its lease, or takes it (free, or held by a lost host) when
    /// the placement names this host. On one machine, always.
    pub(super) fn runs_worker(&self, app: &App, hosts: &[String], dyno: &str) -> bool {
        if !self.db.is_cluster() {
            return true;
        }
        if !self.may_run_workers() {
            return false;
        }
        let me = self.config.host_name.as_str();
        let key = lease_key(app, dyno);
        let now = now_ms();
        match self.hosts.lease(&key) {
            Ok(Some(lease)) if lease.host == me => return true,
            Ok(Some(lease)) if self.hosts.is_up(&lease.host, now).unwrap_or(true) => {
                return false;
            }
            Ok(_) => {}
            Err(_) => return false,
        }
        if crate::placement::worker_host(&app.id, dyno, hosts) != Some(me) {
            return false;
        }
        self.hosts
            .take_lease(&key, me, |lease| {
                !self.hosts.is_up(&lease.host, now_ms()).unwrap_or(true)
            })
            .unwrap_or(false)
    }

    /// Gives up the leases of worker dynos this host stopped, once `stops`
    /// (their stops, grace periods included) are done.
    pub(super) fn give_up_leases_after(
        &self,
        app_id: &str,
        dynos: Vec<String>,
        stops: Vec<tokio::task::JoinHandle<()>>,
    ) {
        if !self.db.is_cluster() || dynos.is_empty() {
            return;
        }
        let (hosts, me, app_id) = (
            self.hosts.clone(),
            self.config.host_name.clone(),
            app_id.to_string(),
        );
        tokio::spawn(async move {
            for stop in stops {
                let _ = stop.await;
            }
            for dyno in dynos {
                let key = format!("{app_id}/{dyno}");
                if let Err(e) = hosts.give_up_lease(&key, &me) {
                    tracing::warn!(%key, error = %e, "could not give up a worker's lease");
                }
            }
        });
    }

    /// On a cluster: places dynos again whenever the hosts that are up
    /// change, and takes workers whose lease came free, every [`BEAT`],
    /// until the handle is dropped. `None` on one machine.
    pub fn start_placing(self: &Arc<Platform>) -> Option<AbortOnDropHandle<()>> {
        if !self.db.is_cluster() {
            return None;
        }
        let platform: Weak<Platform> = Arc::downgrade(self);
        Some(AbortOnDropHandle::new(tokio::spawn(async move {
            let mut every = tokio::time::interval(BEAT);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last: Vec<String> = Vec::new();
            loop {
                every.tick().await;
                let Some(platform) = platform.upgrade() else {
                    return;
                };
                let hosts = platform.placeable_hosts();
                let moved = hosts != last;
                last = hosts;
                let Ok(apps) = platform.apps.all() else {
                    continue;
                };
                for app in apps {
                    if moved {
                        platform.follow_app(&app.id).await;
                    } else {
                        platform.check_workers(&app).await;
                    }
                }
            }
        })))
    }

    /// Starts workers whose lease this host can take now, and stops those
    /// it may no longer run.
    async fn check_workers(&self, app: &App) {
        let has_workers = self
            .formations
            .list(&app.id)
            .is_ok_and(|list| list.iter().any(|f| f.kind != "web" && f.quantity > 0));
        let runs_some = self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&app.id)
            .is_some_and(|w| !w.is_empty());
        if !has_workers && !runs_some {
            return;
        }
        let mut app = app.clone();
        let _lock = self.lock(&mut app).await;
        if let Ok(Some(release)) = self.ledger.current(&app.id) {
            self.reconcile_workers(&app, &release).await;
        }
    }

    /// The dynos this host runs, for its heartbeat (`shop web.1`).
    pub(super) fn dynos_here(&self) -> Vec<String> {
        let mut dynos = Vec::new();
        let Ok(apps) = self.apps.all() else {
            return dynos;
        };
        let workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        for app in apps {
            let quantity = self.web_quantity(&app);
            for index in self.web_dynos_here(&app, quantity) {
                dynos.push(format!("{} web.{index}", app.name));
            }
            for worker in workers.get(&app.id).into_iter().flatten() {
                dynos.push(format!("{} {}", app.name, worker.name()));
            }
        }
        dynos
    }
}

impl Platform {
    /// On a cluster, the app's dynos other hosts run: web dynos where the
    /// placement puts them, workers where their leases are held (by a host
    /// that is up), as their heartbeats report them.
    pub(super) fn dynos_elsewhere(
        &self,
        app: &App,
        procfile: &crate::procfile::Procfile,
    ) -> Vec<super::RunningDyno> {
        if !self.db.is_cluster() {
            return Vec::new();
        }
        let me = self.config.host_name.as_str();
        let now = now_ms();
        let Ok(formations) = self.formations.list(&app.id) else {
            return Vec::new();
        };
        let hosts = self.placeable_hosts();
        let mut dynos = Vec::new();
        for formation in &formations {
            let command = formation
                .kind
                .parse::<ProcessType>()
                .ok()
                .and_then(|k| procfile.get(&k).map(|c| c.to_string()))
                .unwrap_or_default();
            let mut add = |name: String, host: &str, since: u64| {
                dynos.push(super::RunningDyno {
                    name,
                    kind: formation.kind.clone(),
                    command: command.clone(),
                    size: formation.size,
                    state: crate::dyno::worker::Status::Up,
                    since,
                    host: Some(host.to_string()),
                });
            };
            if formation.kind == "web" {
                let placed = crate::placement::web_hosts(&app.id, formation.quantity, &hosts);
                for (host, index) in placed.into_iter().zip(1..) {
                    if host != me {
                        add(format!("web.{index}"), host, now);
                    }
                }
                continue;
            }
            for index in 1..=formation.quantity {
                let name = format!("{}.{index}", formation.kind);
                if let Ok(Some(lease)) = self.hosts.lease(&lease_key(app, &name))
                    && lease.host != me
                    && self.hosts.is_up(&lease.host, now).unwrap_or(false)
                {
                    add(name, &lease.host, lease.since);
                }
            }
        }
        dynos
    }
}

fn lease_key(app: &App, dyno: &str) -> String {
    format!("{}/{dyno}", app.id)
}
