//! Formation and dynos: what runs for an app (web dynos behind the router,
//! worker dynos under supervision in [`super::workers`]), how big, and how
//! they are switched, restarted, unloaded when idle and woken again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::auth::User;
use crate::backend::{self, Kind};
use crate::capability::ReleaseCapabilities;
use crate::dyno::WebLimits;
use crate::dyno::worker::Status;
use crate::formation::{Change, Formation, MAX_QUANTITY, MAX_REUSE};
use crate::procfile::{ProcessType, Procfile};
use crate::release::Release;
use crate::router::{AppRoute, WebState};
use crate::runtime::{AppCpu, Timeouts};
use crate::size::Size;
use crate::slug::SlugError;

use super::components::{Loaded, WebRecipe};
use super::{Platform, PlatformError, Result, procfile_of};

/// What is running for an app right now.
#[derive(Clone, Debug)]
pub struct Running {
    pub release: Release,
    pub dynos: Vec<RunningDyno>,
}

#[derive(Clone, Debug)]
pub struct RunningDyno {
    pub name: String,
    pub kind: String,
    pub command: String,
    pub size: Size,
    pub state: Status,
    /// Since when it is in that state (ms since the epoch).
    pub since: u64,
    /// On a cluster: the host it runs on.
    pub host: Option<String>,
}

/// The longest idle period an app may set (longer is "never": 0).
pub const MAX_IDLE_AFTER: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// How many instances an app's formation may hold at once: its web dynos'
/// request slots plus one per worker.
pub(super) fn instances_of(formations: &[Formation]) -> u64 {
    formations
        .iter()
        .map(|f| {
            let per_dyno = if f.kind == "web" {
                u64::from(f.size.concurrency())
            } else {
                1
            };
            u64::from(f.quantity) * per_dyno
        })
        .sum()
}

impl Platform {
    // ---- sizes ---------------------------------------------------------------

    /// Instances one app may hold at once (formation and one-off dynos
    /// together): half of the server's pool, so that no app can take it all.
    pub(super) fn instance_share(&self) -> u64 {
        u64::from(self.runtime.max_instances()) / 2
    }

    /// Linear memory per instance for a size, capped by the server's limit.
    pub(super) fn memory_of(&self, size: Size) -> u64 {
        size.memory().min(self.config.memory_cap)
    }

    fn timeouts_of(&self, size: Size) -> Timeouts {
        Timeouts::new(self.config.timeout.unwrap_or(size.request_timeout()))
    }

    /// The app's claim on the CPU, weighted by its largest dyno size.
    pub(super) fn cpu_of(&self, app: &App) -> Arc<AppCpu> {
        let weight = self
            .formations
            .list(&app.id)
            .ok()
            .and_then(|list| list.iter().map(|f| f.size.cpu_share()).max())
            .unwrap_or(1);
        let mut all = self.cpu.lock().unwrap_or_else(|e| e.into_inner());
        let cpu = all
            .entry(app.id.clone())
            .or_insert_with(|| AppCpu::new(weight))
            .clone();
        cpu.set_weight(weight);
        cpu
    }

    /// The app's idle period: its own, else the server's.
    pub(super) fn idle_after(&self, app: &App) -> Option<Duration> {
        match app.idle_after {
            Some(0) => None,
            Some(seconds) => Some(Duration::from_secs(seconds)),
            None => self.config.idle_after,
        }
    }

    // ---- formation -------------------------------------------------------------

    /// The current release's command of each process type.
    pub fn process_commands(
        &self,
        user: &User,
        name_or_id: &str,
    ) -> Result<BTreeMap<String, String>> {
        let app = self.app(user, name_or_id)?;
        let release = self.current_release(&app)?;
        Ok(self
            .procfile_for(&app, &release)?
            .iter()
            .map(|(kind, command)| (kind.to_string(), command.to_string()))
            .collect())
    }

    pub fn formation(&self, user: &User, name_or_id: &str) -> Result<Vec<Formation>> {
        let app = self.app(user, name_or_id)?;
        Ok(self.formations.list(&app.id)?)
    }

    /// Changes the quantity, size or instance reuse of process types, then
    /// makes the running dynos match: web dynos are rebuilt and switched
    /// atomically, workers are started or stopped one by one.
    pub async fn scale(
        &self,
        user: &User,
        name_or_id: &str,
        changes: Vec<(String, Change)>,
    ) -> Result<Vec<Formation>> {
        let mut app = self.app(user, name_or_id)?;
        let _lock = self.lock(&mut app).await;
        let release = self.current_release(&app)?;
        let procfile = self.procfile_for(&app, &release)?;
        let mut checked = Vec::new();
        for (kind, change) in changes {
            let kind: ProcessType =
                kind.parse()
                    .map_err(|e: crate::procfile::InvalidProcessType| {
                        PlatformError::Invalid(e.to_string())
                    })?;
            if procfile.get(&kind).is_none() {
                return Err(PlatformError::NotFound(format!(
                    "Couldn't find that process type ({kind}): the current release does not declare it"
                )));
            }
            // Each change is checked against the stored quantity, so one
            // request names each process type once.
            if checked
                .iter()
                .any(|(k, _): &(ProcessType, Change)| *k == kind)
            {
                return Err(PlatformError::Invalid(format!(
                    "{kind} appears twice: give each process type once per change"
                )));
            }
            let current = self
                .formations
                .get(&app.id, &kind)?
                .map_or(0, |f| f.quantity);
            if let Some(quantity) = change.quantity.map(|q| q.of(current))
                && quantity > MAX_QUANTITY
            {
                return Err(PlatformError::Invalid(format!(
                    "Quantity {quantity} is more than the {MAX_QUANTITY} dynos a process type may have"
                )));
            }
            if let Some(reuse) = change.reuse {
                if reuse > MAX_REUSE {
                    return Err(PlatformError::Invalid(format!(
                        "Reuse {reuse} is more than the {MAX_REUSE} requests one instance may serve"
                    )));
                }
                if reuse > 0 && !kind.is_web() {
                    return Err(PlatformError::Invalid(format!(
                        "Instance reuse applies to web dynos; {kind} dynos keep one instance for as long as they run"
                    )));
                }
            }
            if change.reuse.is_some_and(|r| r > 0) {
                self.refuse_single_use(&app, release.slug.as_deref(), &kind)
                    .await?;
            }
            checked.push((kind, change));
        }

        // One app may hold at most half of the server's instance pool, so
        // that it cannot take every slot from the others.
        let mut planned = self.formations.list(&app.id)?;
        for (kind, change) in &checked {
            let entry = match planned.iter_mut().find(|f| f.kind == kind.as_str()) {
                Some(entry) => entry,
                None => {
                    planned.push(Formation {
                        id: String::new(),
                        app: app.id.clone(),
                        kind: kind.to_string(),
                        quantity: 0,
                        size: Size::default(),
                        reuse: 0,
                        created_at: 0,
                        updated_at: 0,
                    });
                    planned.last_mut().expect("just pushed")
                }
            };
            entry.quantity = change
                .quantity
                .map_or(entry.quantity, |q| q.of(entry.quantity));
            entry.size = change.size.unwrap_or(entry.size);
        }
        let share = self.instance_share();
        let one_offs = self.one_off_count(&app) as u64;
        let wanted = instances_of(&planned) + one_offs;
        if wanted > share {
            return Err(PlatformError::Invalid(format!(
                "That formation could hold {} instances at once{}; one app may hold at most {share} (half of this server's instance pool)",
                wanted,
                if one_offs > 0 {
                    format!(" with its {one_offs} one-off dyno(s)")
                } else {
                    String::new()
                }
            )));
        }

        let mut out = Vec::new();
        let mut web_changed = false;
        for (kind, change) in &checked {
            let formation = self.formations.set(&app.id, kind, *change)?;
            web_changed |= kind.is_web();
            out.push(formation);
        }
        self.db.flush().await?;
        self.cpu_of(&app);
        if web_changed {
            let caps = self.capabilities_of(&app, &release)?;
            let web = self.web_state(&app, &release, &caps).await?;
            self.switch_web(&app, web);
        }
        self.reconcile_workers(&app, &release).await;
        for formation in &out {
            let reuse = if formation.reuse > 0 {
                format!(" (instances reused for up to {} requests)", formation.reuse)
            } else {
                String::new()
            };
            self.say(
                &app,
                format!(
                    "Scaled to {}@{}:{}{reuse} by {}",
                    formation.kind, formation.quantity, formation.size, user.name
                ),
            );
        }
        Ok(out)
    }

    /// Sets how long the app may go without a request before its web dynos
    /// are unloaded: `Some(0)` never, `None` the server's setting.
    pub async fn set_idle_after(
        &self,
        user: &User,
        name_or_id: &str,
        seconds: Option<u64>,
    ) -> Result<App> {
        let mut app = self.app(user, name_or_id)?;
        if let Some(seconds) = seconds.filter(|s| *s > MAX_IDLE_AFTER.as_secs()) {
            return Err(PlatformError::Invalid(format!(
                "an idle period of {seconds} seconds is longer than the longest, {} (use 0 for never)",
                crate::units::HumanDuration(MAX_IDLE_AFTER)
            )));
        }
        let _lock = self.lock(&mut app).await;
        let app = self.apps.set_idle_after(&app, seconds)?;
        self.db.flush().await?;
        if let Some(route) = self.routes.get(app.name.as_str()) {
            route.set_idle_after(self.idle_after(&app));
        }
        Ok(app)
    }

    pub fn app_idle_after(&self, app: &App) -> Option<Duration> {
        self.idle_after(app)
    }

    // ---- dynos ---------------------------------------------------------------

    pub fn dynos(&self, user: &User, name_or_id: &str) -> Result<Running> {
        let app = self.app(user, name_or_id)?;
        let release = self.current_release(&app)?;
        let procfile = self.procfile_for(&app, &release).unwrap_or_default();
        let command_of = |kind: &str| {
            kind.parse::<ProcessType>()
                .ok()
                .and_then(|k| procfile.get(&k).map(|c| c.to_string()))
                .unwrap_or_default()
        };
        let mut dynos = Vec::new();
        // On a cluster, each dyno says where it runs.
        let here = self.db.is_cluster().then(|| self.config.host_name.clone());
        let web_size = self
            .formations
            .get(&app.id, &ProcessType::web())?
            .map(|f| (f.quantity, f.size));
        if let (Some(route), Some((quantity, size))) =
            (self.routes.get(app.name.as_str()), web_size)
        {
            let web = route.current();
            let command = command_of("web");
            if web.is_asleep() {
                // Asleep: the dynos placed here (on a cluster, a host with
                // none keeps only a standby, which is no dyno).
                for index in self.web_dynos_here(&app, quantity) {
                    dynos.push(RunningDyno {
                        name: format!("web.{index}"),
                        kind: "web".into(),
                        command: command.clone(),
                        size,
                        state: Status::Idle,
                        since: web.since,
                        host: here.clone(),
                    });
                }
            } else {
                for dyno in &web.dynos {
                    let (state, since) = dyno.status().unwrap_or((Status::Up, web.since));
                    dynos.push(RunningDyno {
                        name: dyno.name().to_string(),
                        kind: "web".into(),
                        command: command.clone(),
                        size,
                        state,
                        since,
                        host: here.clone(),
                    });
                }
            }
        }
        if let Some(workers) = self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&app.id)
        {
            for dyno in workers {
                let (state, since) = dyno.worker.status();
                dynos.push(RunningDyno {
                    name: dyno.worker.name().to_string(),
                    kind: dyno.kind.clone(),
                    command: dyno.command.clone(),
                    size: dyno.size,
                    state,
                    since,
                    host: here.clone(),
                });
            }
        }
        dynos.extend(self.dynos_elsewhere(&app, &procfile));
        dynos.extend(self.one_off_dynos(&app));
        dynos.sort_by(|a, b| {
            (a.kind.as_str(), dyno_number(&a.name)).cmp(&(b.kind.as_str(), dyno_number(&b.name)))
        });
        Ok(Running { release, dynos })
    }

    /// Restarts every dyno, those of one type, or one dyno. Web dynos are
    /// rebuilt and switched atomically (requests in flight finish on the old
    /// ones); workers are stopped with their grace period and started again.
    pub async fn restart(&self, user: &User, name_or_id: &str, which: Option<&str>) -> Result<()> {
        let mut app = self.app(user, name_or_id)?;
        let _lock = self.lock(&mut app).await;
        let running = self.dynos(user, name_or_id)?;
        if let Some(which) = which {
            let known = running
                .dynos
                .iter()
                .any(|d| d.name == which || d.kind == which);
            if !known {
                return Err(PlatformError::NotFound(format!(
                    "Couldn't find that dyno or process type: {which}"
                )));
            }
        }
        let release = self.current_release(&app)?;
        // One-off dynos are not restarted: they are stopped, as on Heroku.
        if which.is_none_or(|w| w == "run" || w.starts_with("run.")) {
            self.stop_one_offs(&app.id, which.filter(|w| w.starts_with("run.")));
        }
        let web = which.is_none_or(|w| w == "web" || w.starts_with("web."));
        if web {
            let caps = self.capabilities_of(&app, &release)?;
            let state = self.web_state(&app, &release, &caps).await?;
            self.switch_web(&app, state);
        }
        let workers = which.is_none_or(|w| {
            !(w == "web" || w.starts_with("web.") || w == "run" || w.starts_with("run."))
        });
        if workers {
            self.stop_workers(&app, which);
            self.reconcile_workers(&app, &release).await;
        }
        self.say(
            &app,
            format!("Restart {} by {}", which.unwrap_or("all dynos"), user.name),
        );
        Ok(())
    }

    // ---- switching -----------------------------------------------------------

    /// Puts a release's dynos in place: web first (built before the switch),
    /// then workers, stopped and started again.
    pub(super) async fn activate(&self, app: &App, release: &Release) -> Result<()> {
        let caps = self.capabilities_of(app, release)?;
        let web = self.web_state(app, release, &caps).await?;
        self.switch(app, release, web).await;
        Ok(())
    }

    pub(super) async fn switch(&self, app: &App, release: &Release, web: WebState) {
        self.switch_web(app, web);
        self.stop_workers(app, None);
        self.reconcile_workers(app, release).await;
    }

    pub(super) fn switch_web(&self, app: &App, web: WebState) {
        let route = match self.routes.get(app.name.as_str()) {
            Some(route) => {
                route.set(web);
                route
            }
            None => {
                let route = Arc::new(
                    AppRoute::new(app.name.as_str(), self.logs.app(&app.id), web)
                        .with_meter(self.metrics.app(&app.id).router()),
                );
                self.routes
                    .insert(&app.id, app.name.as_str(), route.clone());
                route
            }
        };
        route.set_idle_after(self.idle_after(app));
        self.place_route(app, &route);
    }

    /// The web dynos a release runs with the app's formation, compiled and
    /// pre-instantiated (so that the switch to them is instant).
    pub(super) async fn web_state(
        &self,
        app: &App,
        release: &Release,
        caps: &Arc<ReleaseCapabilities>,
    ) -> Result<WebState> {
        let formation = self.formations.get(&app.id, &ProcessType::web())?;
        let size = formation.as_ref().map(|f| f.size).unwrap_or_default();
        let timeouts = self.timeouts_of(size);
        let procfile = self.procfile_for(app, release)?;
        let (Some(slug_id), Some(web), Some(formation)) =
            (&release.slug, procfile.web(), formation)
        else {
            return Ok(WebState::new(Vec::new(), app.maintenance, timeouts));
        };
        let slug = self.slugs.find(&app.id, slug_id)?.ok_or_else(|| {
            PlatformError::NotFound(format!("Couldn't find that slug: {slug_id}"))
        })?;
        let limits = WebLimits {
            memory: self.memory_of(size),
            concurrency: size.concurrency(),
            reuse: formation.reuse,
        };
        // On a cluster, the web dynos placed on this host; with none here,
        // a Wasm app is kept ready to wake (for requests no other host
        // takes) and a native one runs nothing.
        let here = self.web_dynos_here(app, formation.quantity);
        let path = match backend::kind(web) {
            Kind::Wasm { path, .. } => path,
            Kind::Native { line } => {
                let spec = self.native_spec(app, &slug, &release.config, size).await?;
                let recipe = Arc::new(super::native::NativeRecipe::new(
                    spec,
                    line.to_string(),
                    here.clone(),
                    limits,
                    self.metrics.app(&app.id),
                ));
                if here.is_empty() {
                    return Ok(WebState::new(Vec::new(), app.maintenance, timeouts));
                }
                let dynos = recipe.start().await;
                return Ok(WebState::waking(dynos, app.maintenance, timeouts, recipe));
            }
        };
        let checksum = slug.checksum.clone().ok_or(SlugError::NoBlob)?;
        let (slugs, cache, path) = (
            self.slugs.clone(),
            self.components.clone(),
            path.to_string(),
        );
        let web_path = path.clone();
        let key = format!("{checksum}/{path}");
        let log = self.logs.app(&app.id);
        // Unpacking, hashing and compiling are blocking work: off the async
        // workers. A file that does not match its slug is unpacked again
        // from the (checked) archive, once.
        let (file, digest, component) = {
            let key = key.clone();
            let log = log.clone();
            tokio::task::spawn_blocking(move || -> Result<_> {
                let digest = slugs.component_digest(&slug, &path)?.ok_or_else(|| {
                    PlatformError::Invalid(format!(
                        "the Procfile names {path}, which is not in the slug"
                    ))
                })?;
                let mut retried = false;
                loop {
                    let dir = slugs.unpacked(&slug)?;
                    let file = crate::slug::file_inside(&dir, &path)
                        .map_err(|e| PlatformError::Invalid(format!("{e:#}")))?;
                    if formation.quantity == 0 {
                        return Ok((file, digest, None));
                    }
                    match cache.get(&key, &file, &digest) {
                        Ok(component) => return Ok((file, digest, Some(component))),
                        Err(Loaded::Refused(e)) => return Err(e.into()),
                        Err(Loaded::Tampered) if !retried => {
                            log.emit(
                                crate::logplex::Source::Renga,
                                &super::api_process(),
                                format!(
                                    "{}",
                                    SlugError::Tampered {
                                        path: path.to_string()
                                    }
                                ),
                            );
                            slugs.discard_unpacked(&slug);
                            retried = true;
                        }
                        Err(Loaded::Tampered) => {
                            return Err(SlugError::Tampered {
                                path: path.to_string(),
                            }
                            .into());
                        }
                    }
                }
            })
            .await??
        };
        let recipe = Arc::new(WebRecipe {
            cache: self.components.clone(),
            key,
            file,
            digest,
            indexes: if here.is_empty() {
                vec![1]
            } else {
                here.clone()
            },
            caps: caps.clone(),
            limits,
            log,
            cpu: self.cpu_of(app),
            meter: self.metrics.app(&app.id),
        });
        let Some(component) = component else {
            return Ok(WebState::new(Vec::new(), app.maintenance, timeouts));
        };
        self.check_imports(app, caps, &web_path, component.imports())?;
        if here.is_empty() {
            return Ok(WebState::standby(app.maintenance, timeouts, recipe));
        }
        Ok(WebState::waking(
            recipe.dynos(&component),
            app.maintenance,
            timeouts,
            recipe,
        ))
    }

    /// Refuses instance reuse for `kind` when the slug's component for it
    /// answers only one request per instance (known from the tool that
    /// built it, see [`crate::runtime::single_use_reason`]): a kept
    /// instance would leave the next request waiting for its timeout.
    pub(super) async fn refuse_single_use(
        &self,
        app: &App,
        slug_id: Option<&str>,
        kind: &ProcessType,
    ) -> Result<()> {
        let Some(slug_id) = slug_id.filter(|_| kind.is_web()) else {
            return Ok(());
        };
        let Some(slug) = self.slugs.find(&app.id, slug_id)? else {
            return Ok(());
        };
        let procfile = procfile_of(&slug)?;
        let Some(Kind::Wasm { path, .. }) = procfile.get(kind).map(backend::kind) else {
            return Ok(());
        };
        let path = path.to_string();
        let known = slug
            .checksum
            .as_ref()
            .and_then(|checksum| self.components.single_use_of(&format!("{checksum}/{path}")));
        let reason = match known {
            Some(reason) => reason.map(|reason| format!("{path} {reason}")),
            None => {
                let slugs = self.slugs.clone();
                // Reading a component of several megabytes: off the async
                // workers.
                tokio::task::spawn_blocking(move || -> Result<Option<String>> {
                    let dir = slugs.unpacked(&slug)?;
                    let file = crate::slug::file_inside(&dir, &path)
                        .map_err(|e| PlatformError::Invalid(format!("{e:#}")))?;
                    let bytes =
                        std::fs::read(&file).map_err(|e| PlatformError::Internal(e.into()))?;
                    Ok(crate::runtime::single_use_reason(&bytes)
                        .map(|reason| format!("{path} {reason}")))
                })
                .await??
            }
        };
        match reason {
            Some(reason) => Err(PlatformError::Invalid(format!(
                "{kind} cannot reuse instances: {reason}. Keep `--reuse 0` for {kind} (a fresh instance per request), or build it with a tool that can answer twice"
            ))),
            None => Ok(()),
        }
    }

    pub(super) fn procfile_for(&self, app: &App, release: &Release) -> Result<Procfile> {
        match &release.slug {
            Some(slug_id) => match self.slugs.find(&app.id, slug_id)? {
                Some(slug) => procfile_of(&slug),
                None => Ok(Procfile::default()),
            },
            None => Ok(Procfile::default()),
        }
    }
}

/// The number of `web.12`, for sorting.
fn dyno_number(name: &str) -> u64 {
    name.rsplit_once('.')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}
