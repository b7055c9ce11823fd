//! Native dynos on the platform: what a native process of a release gets
//! (its sandbox, uid, slug, config and limits), and how an app's native web
//! dynos are started, woken from zero and switched.
//!
//! A release's native web dynos are started and waited for (up to the boot
//! timeout) before the router switches to them, so a deploy is zero
//! downtime: the previous release's processes serve until the new ones
//! accept connections, and get SIGTERM when their last request is done.

use std::sync::Arc;

use crate::app::App;
use crate::backend::native::{Lifecycle, NativeSpec, NativeWeb};
use crate::capability::ALLOWED_HOSTS_VAR;
use crate::config::ConfigVars;
use crate::dyno::{WebDyno, WebLimits};
use crate::logplex::Process;
use crate::router::Wake;
use crate::size::Size;
use crate::slug::Slug;

use super::{Platform, PlatformError, Result};

/// Processes and threads one native dyno may run at once (Heroku's 256 for
/// its smaller dynos).
const PROCESSES: u32 = 256;

/// Bytes and files a native dyno's writable home may hold.
const HOME_BYTES: u64 = 1 << 30;
const HOME_FILES: u64 = 100_000;

/// How to start an app's native web dynos for one release: when the release
/// goes live, and again each time the app wakes from zero.
pub(super) struct NativeRecipe {
    spec: Arc<NativeSpec>,
    command: String,
    /// The numbers of the web dynos it starts.
    indexes: Vec<u32>,
    limits: WebLimits,
    meter: Arc<crate::metrics::AppMeter>,
}

impl NativeRecipe {
    pub(super) fn new(
        spec: Arc<NativeSpec>,
        command: String,
        indexes: Vec<u32>,
        limits: WebLimits,
        meter: Arc<crate::metrics::AppMeter>,
    ) -> NativeRecipe {
        NativeRecipe {
            spec,
            command,
            indexes,
            limits,
            meter,
        }
    }

    /// Starts the dynos and waits until each accepts connections or its
    /// boot timeout passes (a dyno that has not booted keeps trying; the
    /// router waits for it within a request's timeout).
    pub(super) async fn start(&self) -> Vec<Arc<WebDyno>> {
        let started: Vec<(Process, NativeWeb)> = self
            .indexes
            .iter()
            .map(|index| {
                let name = Process::from(format!("web.{index}"));
                let web = NativeWeb::start(self.spec.clone(), name.clone(), self.command.clone());
                (name, web)
            })
            .collect();
        let boot = self.spec.lifecycle.boot_timeout;
        futures::future::join_all(started.iter().map(|(_, web)| web.ready(boot))).await;
        started
            .into_iter()
            .map(|(name, web)| {
                let meter = self.meter.dyno(&name);
                Arc::new(WebDyno::with_backend(
                    name,
                    self.limits,
                    Box::new(web),
                    meter,
                ))
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl Wake for NativeRecipe {
    async fn wake(&self) -> std::result::Result<Vec<Arc<WebDyno>>, String> {
        Ok(self.start().await)
    }
}

impl Platform {
    /// What every native process of `app` running `slug` with `config` gets.
    pub(super) async fn native_spec(
        &self,
        app: &App,
        slug: &Slug,
        config: &ConfigVars,
        size: Size,
    ) -> Result<Arc<NativeSpec>> {
        let sandbox = self.sandbox.clone().map_err(|reason| {
            PlatformError::Invalid(format!(
                "{} runs native processes, which need the sandbox, and this server has none: {reason}",
                app.name
            ))
        })?;
        if !sandbox.is_root() {
            return Err(PlatformError::Invalid(format!(
                "{} runs native processes, which need renga server to run as root (for each dyno's uid, cgroup and network namespace)",
                app.name
            )));
        }
        let slug_dir = {
            let (slugs, slug) = (self.slugs.clone(), slug.clone());
            tokio::task::spawn_blocking(move || -> Result<std::path::PathBuf> {
                use std::os::unix::fs::PermissionsExt;
                let dir = slugs.unpacked(&slug)?;
                // The app's uid enters it at /app (the data folder around
                // it stays closed to every uid but renga's).
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| PlatformError::Internal(e.into()))?;
                Ok(dir)
            })
            .await??
        };
        let network = config
            .get(ALLOWED_HOSTS_VAR)
            .is_some_and(|hosts| !hosts.trim().is_empty());
        let memory = self.memory_of(size);
        Ok(Arc::new(NativeSpec {
            sandbox,
            uid: super::building::build_uid(&app.id),
            slug: slug_dir,
            scratch: self.native_scratch().join(&app.id),
            config: config
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_string()))
                .collect(),
            network,
            memory,
            processes: PROCESSES,
            disk: HOME_BYTES,
            files: HOME_FILES,
            tmp: memory,
            lifecycle: self.lifecycle(),
            log: self.logs.app(&app.id),
        }))
    }

    pub(super) fn lifecycle(&self) -> Lifecycle {
        Lifecycle {
            boot_timeout: self.config.boot_timeout,
            grace: crate::dyno::worker::STOP_GRACE,
        }
    }

    /// Where native dynos' writable homes are made; emptied at start.
    pub(super) fn native_scratch(&self) -> std::path::PathBuf {
        self.config.cache.join("dynos")
    }
}
