//! platform: what `renga server` does, composed from the modules that own
//! each record.
//!
//! Every change goes the same way: check it, write it through the module that
//! owns it, flush the store, then switch what the router serves. Changes to
//! one app are serialized; a release's component is compiled and its dynos
//! built before the router switches to them, so no request sees a half-made
//! release and requests in flight finish on the dynos they started on.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

mod addons;
mod apps;
mod building;
mod cluster;
mod components;
mod drains;
mod dynos;
mod hosts;
mod janitor;
mod logs;
mod metrics;
mod native;
mod oneoff;
mod placement;
mod providers;
mod releases;
mod routes;
mod sharing;
mod workers;

pub use addons::{AddonInfo, AttachmentInfo, MAX_ADDONS, MAX_ATTACHMENTS};
pub use dynos::{Running, RunningDyno};
pub use logs::{LogRequest, LogSession};
pub use metrics::{FEATURES, Feature, find_feature};
pub use oneoff::{DETACHED_TIME_LIMIT, MAX_ONE_OFFS, OneOff};
pub use providers::{MAX_PROVIDER_BYTES, Registration};
pub use releases::{KEPT_RELEASES, LISTED_RELEASES};
pub use routes::ServerRoutes;

use crate::addon::Addons;
use crate::app::{App, Apps, Collaborators};
use crate::auth::{Auth, User};
use crate::builds::Builds;
use crate::capability::{ImportProblem, ReleaseCapabilities, ReleaseInputs};
use crate::config::ConfigVars;
use crate::domain::Domains;
use crate::formation::Formations;
use crate::logplex::{Logplex, Process, Source};
use crate::procfile::{Command, ProcessType, Procfile};
use crate::release::{Ledger, NewRelease, Release, ReleaseAddons};
use crate::router::{AllRoutes, AppRoute, WebState};
use crate::runtime::{AppCpu, LoadError, Runtime, Timeouts};
use crate::sandbox::{JailLimits, Sandbox};
use crate::slug::{Slug, SlugError, Slugs};
use crate::store::{Db, StoreError};

/// How the platform runs apps.
#[derive(Clone, Debug)]
pub struct PlatformConfig {
    pub data: PathBuf,
    /// Caches: precompiled code, buildpack toolchains (and apps' build
    /// caches, unless `build_caches` is elsewhere).
    pub cache: PathBuf,
    /// Each app's build cache, in a folder named by the app's id.
    pub build_caches: PathBuf,
    /// On a cluster, the largest packed build cache hosts share.
    pub max_build_cache_bytes: u64,
    /// Where this server's API answers, for its own git hooks.
    pub api_url: String,
    /// The API's address as clients reach it: every URL the API hands out
    /// (git remotes, upload and log URLs) starts with it, never with the
    /// `Host` a request came with.
    pub public_url: String,
    /// Apps answer at `http://NAME.DOMAIN:PORT`.
    pub domain: String,
    pub http_port: u16,
    /// Caps every dyno size's memory per instance.
    pub memory_cap: u64,
    /// Replaces every dyno size's request timeout, when set.
    pub timeout: Option<Duration>,
    /// Unload an app's web dynos after this long without a request, unless
    /// the app sets its own period; `None`: never.
    pub idle_after: Option<Duration>,
    /// How long a component's compiled code stays mapped after its last
    /// dyno is unloaded (zero: not at all).
    pub keep_code_for: Duration,
    pub max_slug_bytes: u64,
    /// The largest source tarball a build may start from.
    pub max_source_bytes: u64,
    /// What a slug or a source may unpack to.
    pub unpacked: crate::archive::Limits,
    /// How long one build (and one release phase) may run.
    pub build_time_limit: Duration,
    /// How long a native web process has to bind `$PORT`.
    pub boot_timeout: Duration,
    /// What one build's sandbox may use.
    pub build_limits: JailLimits,
    /// The operator's PostgreSQL and Redis, for add-ons that live there.
    pub servers: crate::provider::Servers,
    /// Where log drains may go, and the certificates they trust.
    pub drains: Arc<crate::drain::DrainPolicy>,
    /// Count requests, instances and calls for `/metrics` (off: the
    /// meters count nothing).
    pub metrics: bool,
    /// How often `log-runtime-metrics` lines are written.
    pub runtime_metrics_every: Duration,
    /// This host's name among the cluster's (`renga hosts`).
    pub host_name: String,
    /// Where this host's router answers (`IP:PORT`), for other hosts'
    /// forwarded requests.
    pub router_addr: String,
}

/// Why an operation was refused. Each maps to an HTTP status and a Heroku
/// error id in the API.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    /// Another change to the same record came first (on a cluster: from
    /// another host); nothing was changed.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

impl From<SlugError> for PlatformError {
    fn from(e: SlugError) -> Self {
        match e {
            SlugError::Store(e) => PlatformError::Store(e),
            SlugError::Io(e) => PlatformError::Internal(e),
            bad if bad.is_bad_input() => PlatformError::Invalid(bad.to_string()),
            other => PlatformError::Internal(anyhow::anyhow!("{other}")),
        }
    }
}

impl From<LoadError> for PlatformError {
    /// A component that cannot run is the app's fault; one that cannot be
    /// read is the server's.
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Read { .. } => PlatformError::Internal(anyhow::anyhow!("{e}")),
            other => PlatformError::Invalid(other.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for PlatformError {
    fn from(e: tokio::task::JoinError) -> Self {
        PlatformError::Internal(anyhow::anyhow!("a background step failed: {e}"))
    }
}

type Result<T, E = PlatformError> = std::result::Result<T, E>;

/// How often idle apps are looked for.
const IDLE_CHECK: Duration = Duration::from_millis(250);

/// How many times a config change is made again after losing a race with
/// another host's change to the same app.
const CONFLICT_RETRIES: u32 = 8;

pub struct Platform {
    db: Db,
    apps: Apps,
    collaborators: Collaborators,
    domains: Domains,
    drains: crate::drain::Drains,
    /// Each delivered drain's outlet, by drain id.
    drain_outlets: drains::DrainOutlets,
    addons: Addons,
    auth: Auth,
    ledger: Ledger,
    slugs: Slugs,
    formations: Formations,
    hosts: crate::hosts::Hosts,
    builds: Builds,
    runtime: Arc<Runtime>,
    routes: Arc<ServerRoutes>,
    logs: Logplex,
    metrics: crate::metrics::Metrics,
    config: PlatformConfig,
    components: Arc<components::ComponentCache>,
    workers: Mutex<HashMap<String, Vec<workers::WorkerDyno>>>,
    one_offs: oneoff::OneOffRegistry,
    /// Each app's claim on the CPU, shared by all its instances.
    cpu: Mutex<HashMap<String, Arc<AppCpu>>>,
    /// What the capabilities hold for each app's current release (by
    /// release id): built once, shared by its web dynos, workers and
    /// one-off dynos.
    release_caps: Mutex<HashMap<String, (String, Arc<ReleaseCapabilities>)>>,
    /// The build sandbox, or why this server cannot build.
    sandbox: std::result::Result<Arc<Sandbox>, String>,
    /// Background upkeep (expiring sources, unused slugs); stops with the
    /// platform.
    janitor: Mutex<Option<tokio::task::JoinHandle<()>>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// One build at a time per app (held for the whole build, while `locks`
    /// is held only for each change).
    build_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Apps' build caches, shared through the cluster when there is one.
    build_caches: crate::build_cache::BuildCaches,
    sessions: Mutex<HashMap<String, LogSession>>,
    /// On a cluster: this host's place in it (drained, last heartbeat,
    /// other hosts' routers).
    placing: placement::Placing,
}

impl Platform {
    /// Opens the platform's records; also starts the check that unloads idle
    /// apps (so call it inside the tokio runtime).
    pub fn open(
        db: Db,
        runtime: Runtime,
        sandbox: std::result::Result<Sandbox, String>,
        config: PlatformConfig,
    ) -> anyhow::Result<Platform> {
        let runtime = Arc::new(runtime);
        let routes = Arc::new(ServerRoutes::new(&config.domain));
        let weak: Weak<dyn AllRoutes> = Arc::downgrade(&routes) as Weak<dyn AllRoutes>;
        tokio::spawn(crate::router::sleep_idle_apps(weak, IDLE_CHECK));
        let components = Arc::new(components::ComponentCache::new(
            runtime.clone(),
            config.keep_code_for,
        ));
        tokio::spawn(components::forget_unused_components(Arc::downgrade(
            &components,
        )));
        let platform = Platform {
            apps: Apps::open(&db)?,
            collaborators: Collaborators::open(&db)?,
            domains: Domains::open(&db)?,
            drains: crate::drain::Drains::open(&db)?,
            drain_outlets: Mutex::default(),
            addons: Addons::open(&db)?,
            auth: Auth::open(&db)?,
            ledger: Ledger::open(&db)?,
            slugs: Slugs::open(&db, &config.data.join("slugs"), config.unpacked)?,
            formations: Formations::open(&db)?,
            hosts: crate::hosts::Hosts::open(&db)?,
            builds: Builds::open(&db, &config.data)?,
            build_caches: crate::build_cache::BuildCaches::new(
                config.build_caches.clone(),
                db.blobs("build-caches")?,
                config.max_build_cache_bytes,
            ),
            db,
            components,
            runtime,
            routes,
            logs: Logplex::default(),
            metrics: crate::metrics::Metrics::new(config.metrics),
            config,
            workers: Mutex::default(),
            one_offs: Arc::default(),
            cpu: Mutex::default(),
            release_caps: Mutex::default(),
            sandbox: sandbox.map(Arc::new),
            janitor: Mutex::default(),
            locks: Mutex::default(),
            build_locks: Mutex::default(),
            sessions: Mutex::default(),
            placing: placement::Placing::default(),
        };
        platform.load_providers()?;
        Ok(platform)
    }

    /// Makes every write so far durable.
    pub async fn flush(&self) -> Result<()> {
        Ok(self.db.flush().await?)
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    pub fn routes(&self) -> Arc<ServerRoutes> {
        self.routes.clone()
    }

    pub fn config(&self) -> &PlatformConfig {
        &self.config
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Serves every app's current release again (after a start or a crash),
    /// after clearing what a stopped server left half done, and starts the
    /// janitor.
    pub async fn restore(self: &Arc<Self>) -> anyhow::Result<usize> {
        for source in self.builds.fail_interrupted()? {
            let _ = self.builds.delete_source(&source);
        }
        self.db.flush().await?;
        let (slugs, builds) = (self.slugs.clone(), self.builds.clone());
        let sandbox = self.sandbox.clone().ok();
        let native_scratch = self.native_scratch();
        // Leftovers that cannot be removed are reported, not fatal: the
        // apps serve either way.
        tokio::task::spawn_blocking(move || {
            if let Err(e) = slugs.clean_leftovers() {
                tracing::warn!(error = %format!("{e:#}"), "could not remove slug leftovers");
            }
            if let Err(e) = builds.clean_leftovers() {
                tracing::warn!(error = %format!("{e:#}"), "could not remove build leftovers");
            }
            if let Some(sandbox) = sandbox {
                sandbox.clean_leftovers();
            }
            if native_scratch.exists() {
                let _ = crate::sandbox::remove_tree(&native_scratch);
            }
        })
        .await?;
        self.start_janitor();
        self.start_runtime_metrics(self.config.runtime_metrics_every);
        self.start_metrics_history();
        self.apps.repair()?;
        self.domains.repair()?;
        self.start_drains()?;
        let apps = self.apps.all()?;
        for app in &apps {
            let log = self.logs.app(&app.id);
            self.routes.insert(
                &app.id,
                app.name.as_str(),
                Arc::new(
                    AppRoute::new(app.name.as_str(), log.clone(), self.empty_web(app))
                        .with_meter(self.metrics.app(&app.id).router()),
                ),
            );
            self.route_domains(app)?;
            if let Some(release) = self.ledger.current(&app.id)?
                && let Err(e) = self.activate(app, &release).await
            {
                tracing::warn!(app = %app.name, error = %e, "could not start the current release");
                log.emit(
                    Source::Renga,
                    &api_process(),
                    format!("Could not start {}: {e}", release.version()),
                );
            }
        }
        Ok(apps.len())
    }

    // ---- internals ------------------------------------------------------------

    /// Appends the release after version `after` (the one the change was
    /// made from), makes it durable, and switches the app to it. The dynos
    /// are built before the release is written, so a component that cannot
    /// run makes no release. [`PlatformError::Conflict`] if another host
    /// released the app since `after`.
    async fn release(
        &self,
        app: &App,
        user: &User,
        after: u32,
        slug: Option<String>,
        config: ConfigVars,
        description: String,
    ) -> Result<Release> {
        let draft = Release {
            id: String::new(),
            app: app.id.clone(),
            version: 0,
            slug: slug.clone(),
            config: config.clone(),
            description: description.clone(),
            user_id: user.id.clone(),
            user_name: user.name.clone(),
            created_at: 0,
            expired: false,
            addons: ReleaseAddons::default(),
        };
        if self
            .formations
            .get(&app.id, &ProcessType::web())?
            .is_some_and(|f| f.reuse > 0)
        {
            self.refuse_single_use(app, draft.slug.as_deref(), &ProcessType::web())
                .await?;
        }
        let caps = self.capabilities_of(app, &draft)?;
        let web = self.web_state(app, &draft, &caps).await?;
        let release = self
            .ledger
            .append(
                &app.id,
                after,
                NewRelease {
                    slug,
                    config,
                    description,
                    user_id: &user.id,
                    user_name: &user.name,
                    addons: self.release_addons(&app.id)?,
                },
            )?
            .ok_or_else(|| {
                PlatformError::Conflict(format!(
                    "{} was released elsewhere while this change was made (v{} is taken); nothing was changed, try again",
                    app.name,
                    after + 1
                ))
            })?;
        self.ledger
            .expire(&app.id, KEPT_RELEASES, LISTED_RELEASES)?;
        self.db.flush().await?;
        self.release_caps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(app.id.clone(), (release.id.clone(), caps));
        self.switch(app, &release, web).await;
        self.say(app, format!("{} by {}", release.description, user.name));
        self.announce(app, &release);
        Ok(release)
    }

    /// What the capabilities hold for a release: built once per release
    /// and kept for the app's current one. A release not yet written (no
    /// id) gets its own. An error is the release's fault (a malformed
    /// setting).
    pub(super) fn capabilities_of(
        &self,
        app: &App,
        release: &Release,
    ) -> Result<Arc<ReleaseCapabilities>> {
        if !release.id.is_empty()
            && let Some((id, caps)) = self
                .release_caps
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&app.id)
            && *id == release.id
        {
            return Ok(caps.clone());
        }
        let caps = self.configure_capabilities(app, &release.config)?;
        if !release.id.is_empty() {
            self.release_caps
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(app.id.clone(), (release.id.clone(), caps.clone()));
        }
        Ok(caps)
    }

    /// What the capabilities hold for a release of `app` with `config`.
    pub(super) fn configure_capabilities(
        &self,
        app: &App,
        config: &ConfigVars,
    ) -> Result<Arc<ReleaseCapabilities>> {
        self.runtime
            .capabilities()
            .configure(&ReleaseInputs {
                app: app.name.as_str(),
                config,
                addons: &self.addon_bindings(&app.id)?,
            })
            .map_err(|e| PlatformError::Invalid(format!("{e:#}")))
    }

    /// Refuses a component whose imports the release cannot serve (an
    /// interface with no add-on behind it), naming every one.
    pub(super) fn check_imports(
        &self,
        app: &App,
        caps: &ReleaseCapabilities,
        path: &str,
        imports: &[String],
    ) -> Result<()> {
        let problems = caps.check(imports, app.name.as_str());
        if problems.is_empty() {
            return Ok(());
        }
        // Imports that miss the same add-on share one hint.
        let mut list: Vec<String> = Vec::new();
        let mut hints: Vec<(&str, Vec<&str>)> = Vec::new();
        for problem in &problems {
            match problem {
                ImportProblem::Unprovisioned { import, why } => {
                    match hints.iter_mut().find(|(w, _)| *w == why.as_str()) {
                        Some((_, imports)) => imports.push(import),
                        None => hints.push((why, vec![import])),
                    }
                }
                unknown => list.push(unknown.to_string()),
            }
        }
        list.extend(
            hints
                .into_iter()
                .map(|(why, imports)| format!("{}: {why}", imports.join(", "))),
        );
        Err(PlatformError::Invalid(format!(
            "{path} cannot run on {}: {}",
            app.name,
            list.join("; ")
        )))
    }

    fn empty_web(&self, app: &App) -> WebState {
        WebState::new(
            Vec::new(),
            app.maintenance,
            Timeouts::new(self.config.timeout.unwrap_or(Duration::from_secs(30))),
        )
    }

    /// Serializes changes to one app. `app` is read again once the lock is
    /// held, so that a change that waited behind a rename works on the new
    /// name (and never on a route or record under the old one, which
    /// another app may hold by then).
    async fn lock(&self, app: &mut App) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(app.id.clone())
            .or_default()
            .clone();
        let guard = lock.lock_owned().await;
        if let Ok(Some(fresh)) = self.apps.find(&app.id) {
            *app = fresh;
        }
        guard
    }

    /// Refuses a change to an app that was destroyed while the change
    /// waited for its lock.
    fn still_there(&self, app: &App) -> Result<()> {
        match self.apps.find(&app.id)? {
            Some(_) => Ok(()),
            None => Err(PlatformError::NotFound(format!(
                "Couldn't find that app: {}",
                app.name
            ))),
        }
    }

    fn say(&self, app: &App, message: String) {
        self.logs
            .app(&app.id)
            .emit(Source::Renga, &api_process(), message);
    }

    fn announce(&self, app: &App, release: &Release) {
        self.say(
            app,
            format!(
                "Release {} created by {}",
                release.version(),
                release.user_name
            ),
        );
    }
}

fn api_process() -> Process {
    Process::from("api")
}

/// `A, B and 3 more`: a release description names a few config vars.
fn name_list(names: &[String]) -> String {
    const SHOWN: usize = 8;
    if names.len() <= SHOWN {
        names.join(", ")
    } else {
        format!(
            "{} and {} more",
            names[..SHOWN].join(", "),
            names.len() - SHOWN
        )
    }
}

/// A slug's process types as a Procfile.
pub(super) fn procfile_of(slug: &Slug) -> Result<Procfile> {
    let mut map = BTreeMap::new();
    for (kind, command) in &slug.process_types {
        let kind: ProcessType =
            kind.parse()
                .map_err(|e: crate::procfile::InvalidProcessType| {
                    PlatformError::Invalid(e.to_string())
                })?;
        map.insert(kind, Command::parse(command));
    }
    Ok(Procfile::from_map(map))
}
