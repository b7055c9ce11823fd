//! What the platform shows of its meters: `/metrics` for the apps a user
//! may see (and the host, for the admin), app features (`labs`), and
//! Heroku's `log-runtime-metrics` lines in the app's log.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::app::App;
use crate::auth::User;
use crate::logplex::{Process, Source};
use crate::metrics::history::{self, Sample};
use crate::metrics::{DynoFigures, HostFigures};

use super::{Platform, PlatformError, Result};

/// An app feature: what `labs:enable` turns on.
pub struct Feature {
    pub name: &'static str,
    pub description: &'static str,
}

pub const LOG_RUNTIME_METRICS: &str = "log-runtime-metrics";

/// The app features renga has.
pub const FEATURES: &[Feature] = &[Feature {
    name: LOG_RUNTIME_METRICS,
    description: "Writes each dyno's memory, CPU load and instances to the app's log as sample# lines, like Heroku's log-runtime-metrics",
}];

impl Platform {
    /// `/metrics` in Prometheus's text format: the apps `user` owns or
    /// collaborates on (every app, and the host's figures, for the admin).
    pub fn metrics_text(&self, user: &User) -> Result<String> {
        let apps = if user.admin {
            self.apps.all()?
        } else {
            self.list_apps(user)?
        };
        let figures: Vec<(String, Vec<(String, DynoFigures)>)> = apps
            .iter()
            .map(|app| {
                let figures = self.metrics.find(&app.id).map(|m| m.snapshot());
                (app.name.to_string(), figures.unwrap_or_default())
            })
            .collect();
        let host = user.admin.then(|| HostFigures {
            instances: crate::runtime::live_instances(),
            max_instances: self.runtime.max_instances() as usize,
            waiting_for_cpu: self.runtime.waiting_for_cpu(),
            rss_bytes: crate::api::rss_bytes(),
            drains: crate::drain::deliver::live_drains(),
        });
        Ok(crate::metrics::render(&figures, host.as_ref()))
    }

    /// Turns an app feature on or off.
    pub async fn set_feature(
        &self,
        user: &User,
        name_or_id: &str,
        feature: &str,
        on: bool,
    ) -> Result<(App, &'static Feature)> {
        let feature = find_feature(feature)?;
        let mut app = self.app(user, name_or_id)?;
        let _lock = self.lock(&mut app).await;
        self.still_there(&app)?;
        let app = self.apps.set_feature(&app, feature.name, on)?;
        self.db.flush().await?;
        let verb = if on { "Enable" } else { "Disable" };
        self.say(&app, format!("{verb} {} by {}", feature.name, user.name));
        Ok((app, feature))
    }

    /// Every `interval`, writes `log-runtime-metrics` lines for the apps
    /// that have it on. Stops when the platform is dropped.
    pub(super) fn start_runtime_metrics(self: &Arc<Self>, interval: Duration) {
        let interval = interval.max(Duration::from_secs(1));
        let weak: Weak<Platform> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let mut last: std::collections::HashMap<(String, String), f64> = Default::default();
            loop {
                tick.tick().await;
                let Some(platform) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = platform.log_runtime_metrics(interval, &mut last) {
                    tracing::warn!(error = %e, "could not write runtime metrics");
                }
            }
        });
    }

    /// Every [`history::EVERY`], adds a sample to every app's history (the
    /// dashboard's graphs). Stops when the platform is dropped.
    pub(super) fn start_metrics_history(self: &Arc<Self>) {
        if !self.config.metrics {
            return;
        }
        let weak: Weak<Platform> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(history::EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(platform) = weak.upgrade() else {
                    return;
                };
                platform.metrics.sample_all(crate::store::now_ms() / 1000);
            }
        });
    }

    /// The last hour of an app's samples (see [`history`]), oldest first.
    pub fn metrics_history(&self, user: &User, name_or_id: &str) -> Result<(App, Vec<Sample>)> {
        let app = self.app(user, name_or_id)?;
        let samples = self
            .metrics
            .find(&app.id)
            .map(|m| m.history(crate::store::now_ms() / 1000))
            .unwrap_or_default();
        Ok((app, samples))
    }

    fn log_runtime_metrics(
        &self,
        interval: Duration,
        last_cpu: &mut std::collections::HashMap<(String, String), f64>,
    ) -> Result<()> {
        let apps = self.apps.all()?;
        last_cpu.retain(|(app, _), _| apps.iter().any(|a| &a.id == app));
        for app in apps
            .iter()
            .filter(|a| a.features.contains(LOG_RUNTIME_METRICS))
        {
            let Some(meter) = self.metrics.find(&app.id) else {
                continue;
            };
            let Some(log) = self.logs.find(&app.id) else {
                continue;
            };
            for (dyno, quota) in self.running_dynos(app) {
                let figures = meter.dyno(&dyno).snapshot();
                let key = (app.id.clone(), dyno.clone());
                let before = last_cpu
                    .insert(key, figures.cpu_seconds)
                    .unwrap_or(figures.cpu_seconds);
                let load = (figures.cpu_seconds - before).max(0.0) / interval.as_secs_f64();
                let process = Process::from(dyno.as_str());
                let mb = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
                let tag = format!("source={dyno} dyno=renga.{}.{dyno}", app.id);
                log.emit(
                    Source::Renga,
                    &process,
                    format!(
                        "{tag} sample#memory_total={:.2}MB sample#memory_rss={:.2}MB sample#memory_cache=0.00MB sample#memory_swap=0.00MB sample#memory_quota={:.2}MB sample#instances_total={}",
                        mb(figures.memory),
                        mb(figures.memory),
                        mb(quota),
                        figures.instances,
                    ),
                );
                log.emit(
                    Source::Renga,
                    &process,
                    format!(
                        "{tag} sample#load_avg_1m={load:.2} sample#cpu_seconds_total={:.3}",
                        figures.cpu_seconds
                    ),
                );
            }
        }
        Ok(())
    }

    /// The app's dynos running now and the memory each may use: its web
    /// dynos (memory per instance times the instances it serves at once)
    /// and its workers.
    fn running_dynos(&self, app: &App) -> Vec<(String, u64)> {
        let mut dynos = Vec::new();
        if let Some(route) = self.routes.get(app.name.as_str()) {
            for dyno in &route.current().dynos {
                dynos.push((
                    dyno.name().to_string(),
                    dyno.memory_limit() * dyno.concurrency() as u64,
                ));
            }
        }
        if let Some(workers) = self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&app.id)
        {
            for worker in workers {
                dynos.push((worker.name(), self.memory_of(worker.size)));
            }
        }
        dynos
    }
}

/// A feature by name, or what renga has.
pub fn find_feature(name: &str) -> Result<&'static Feature> {
    FEATURES.iter().find(|f| f.name == name).ok_or_else(|| {
        let names: Vec<&str> = FEATURES.iter().map(|f| f.name).collect();
        PlatformError::NotFound(format!(
            "Couldn't find that feature: {name} (renga has: {})",
            names.join(", ")
        ))
    })
}
