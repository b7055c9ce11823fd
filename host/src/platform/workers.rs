//! Worker dynos of an app: started and stopped to match the formation, and
//! the command components they (and release phases) run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::app::App;
use crate::backend::native::NativeProcess;
use crate::backend::wasm::WasmProcess;
use crate::backend::{self, Kind};
use crate::capability::{DynoInputs, ReleaseCapabilities};
use crate::dyno::worker::{Worker, WorkerSpec};
use crate::logplex::Process;
use crate::procfile::{ProcessType, Procfile};
use crate::release::Release;
use crate::runtime::{CommandComponent, CommandSpec};
use crate::size::Size;
use crate::slug::{Slug, SlugError};

use super::{Platform, PlatformError, Result};

/// A worker dyno and what `ps` says of it.
pub(super) struct WorkerDyno {
    pub(super) worker: Worker,
    pub(super) kind: String,
    index: u32,
    pub(super) command: String,
    pub(super) size: Size,
    /// The release it runs.
    version: u32,
}

impl WorkerDyno {
    /// `worker.1`.
    pub(super) fn name(&self) -> String {
        format!("{}.{}", self.kind, self.index)
    }
}

impl Platform {
    /// The command component at `path` in a slug (a worker, a release
    /// phase, a one-off), loaded from the precompiled cache or compiled now,
    /// off the async workers. A file that does not match its slug's recorded
    /// digest is unpacked again from the (checked) archive, once.
    ///
    /// A component whose imports the release cannot serve is refused.
    pub(super) async fn command_component(
        &self,
        app: &App,
        caps: &ReleaseCapabilities,
        slug: &Slug,
        path: &str,
    ) -> Result<Arc<CommandComponent>> {
        let component = self.load_command_component(slug, path).await?;
        self.check_imports(app, caps, path, component.imports())?;
        Ok(component)
    }

    async fn load_command_component(
        &self,
        slug: &Slug,
        path: &str,
    ) -> Result<Arc<CommandComponent>> {
        let (slugs, runtime) = (self.slugs.clone(), self.runtime.clone());
        let (slug, path) = (slug.clone(), path.to_string());
        tokio::task::spawn_blocking(move || {
            // Only regular `.wasm` files have digests: anything else (a
            // link, say) is not a component of the slug.
            let expected = slugs.component_digest(&slug, &path)?.ok_or_else(|| {
                PlatformError::Invalid(format!(
                    "{path} is not a component file in the slug (a .wasm file, not a link)"
                ))
            })?;
            for attempt in 0..2 {
                let dir = slugs.unpacked(&slug)?;
                let file = crate::slug::file_inside(&dir, &path)
                    .map_err(|e| PlatformError::NotFound(format!("{e:#}")))?;
                let (component, digest) = runtime.load_command(&file)?;
                if expected == digest {
                    return Ok(component);
                }
                if attempt == 0 {
                    slugs.discard_unpacked(&slug);
                }
            }
            Err(SlugError::Tampered { path }.into())
        })
        .await?
    }

    // ---- workers -------------------------------------------------------------

    /// Stops the app's workers (all, those of one type, or one dyno), each
    /// with its grace period, in the background. On a cluster this host
    /// keeps their leases: they start again here (restart, new release).
    pub(super) fn stop_workers(&self, app: &App, which: Option<&str>) {
        let mut all = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let Some(workers) = all.get_mut(&app.id) else {
            return;
        };
        let (stopping, kept): (Vec<WorkerDyno>, Vec<WorkerDyno>) = std::mem::take(workers)
            .into_iter()
            .partition(|d| which.is_none_or(|w| w == d.kind || w == d.worker.name().as_ref()));
        *workers = kept;
        for dyno in stopping {
            drop(dyno.worker.stop());
        }
    }

    /// Stops every worker of an app that is gone and, on a cluster, gives
    /// up their leases once they have stopped.
    pub(super) fn end_workers(&self, app_id: &str) {
        let stopping = self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(app_id)
            .unwrap_or_default();
        let (mut stops, mut names) = (Vec::new(), Vec::new());
        for dyno in stopping {
            names.push(dyno.name());
            stops.push(dyno.worker.stop());
        }
        self.give_up_leases_after(app_id, names, stops);
    }

    /// Starts and stops workers until each process type runs as many as its
    /// formation says, of the release given. Components are loaded without
    /// holding the workers' lock.
    pub(super) async fn reconcile_workers(&self, app: &App, release: &Release) {
        let formations = match self.formations.list(&app.id) {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(app = %app.name, error = %e, "could not read the formation");
                return;
            }
        };
        let procfile = self.procfile_for(app, release).unwrap_or_default();
        let slug = release
            .slug
            .as_ref()
            .and_then(|id| self.slugs.find(&app.id, id).ok().flatten());
        let wanted: BTreeMap<String, (u32, Size)> = formations
            .iter()
            .filter(|f| f.kind != "web" && f.kind != "release")
            .map(|f| (f.kind.clone(), (f.quantity, f.size)))
            .collect();
        // On a cluster, only the workers this host holds the lease of.
        let hosts = self.placeable_hosts();
        let here: BTreeSet<(String, u32)> = wanted
            .iter()
            .flat_map(|(kind, (quantity, _))| (1..=*quantity).map(move |i| (kind.clone(), i)))
            .filter(|(kind, index)| self.runs_worker(app, &hosts, &format!("{kind}.{index}")))
            .collect();
        #[allow(clippy::type_complexity)]
        let (missing, stopped): (
            Vec<(String, u32, Size)>,
            (Vec<tokio::task::JoinHandle<()>>, Vec<String>),
        ) = {
            let mut all = self.workers.lock().unwrap_or_else(|e| e.into_inner());
            let workers = all.entry(app.id.clone()).or_default();
            // Fewer (the highest-numbered ones go), of an older release, or
            // no longer this host's.
            let (stopping, kept): (Vec<WorkerDyno>, Vec<WorkerDyno>) =
                std::mem::take(workers).into_iter().partition(|d| {
                    d.version != release.version || !here.contains(&(d.kind.clone(), d.index))
                });
            *workers = kept;
            // Their leases go once they have stopped, so that no other host
            // starts one while it runs out its grace period here: those
            // scaled away, and, on a drained host (or one cut off from the
            // cluster), every one.
            let drained = self
                .placing
                .drained
                .load(std::sync::atomic::Ordering::Relaxed);
            let (mut stops, mut freed) = (Vec::new(), Vec::new());
            for dyno in stopping {
                let unwanted = wanted
                    .get(&dyno.kind)
                    .is_none_or(|(quantity, _)| dyno.index > *quantity);
                if unwanted || drained {
                    freed.push(dyno.name());
                }
                stops.push(dyno.worker.stop());
            }
            let missing = wanted
                .iter()
                .flat_map(|(kind, (quantity, size))| {
                    (1..=*quantity).map(move |index| (kind.clone(), index, *size))
                })
                .filter(|(kind, index, _)| {
                    here.contains(&(kind.clone(), *index))
                        && !workers.iter().any(|d| d.kind == *kind && d.index == *index)
                })
                .collect();
            (missing, (stops, freed))
        };
        let (mut stops, mut freed) = stopped;
        if self
            .placing
            .drained
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            // Leases a drained host still holds for workers it no longer
            // runs (stopped earlier, while it was cut off): given up once
            // any such stop has had its grace period.
            let me = self.config.host_name.as_str();
            for (kind, (quantity, _)) in &wanted {
                for index in 1..=*quantity {
                    let name = format!("{kind}.{index}");
                    let held = self
                        .hosts
                        .lease(&format!("{}/{name}", app.id))
                        .is_ok_and(|l| l.is_some_and(|l| l.host == me));
                    if held && !freed.contains(&name) {
                        freed.push(name);
                        stops.push(tokio::spawn(tokio::time::sleep(
                            crate::dyno::worker::STOP_GRACE,
                        )));
                    }
                }
            }
        }
        self.give_up_leases_after(&app.id, freed, stops);
        let Some(slug) = &slug else { return };
        // More: start the missing numbers.
        for (kind, index, size) in missing {
            match self
                .worker_spec(app, release, slug, &procfile, &kind, index, size)
                .await
            {
                Ok(spec) => {
                    let command = spec.command.clone();
                    let mut all = self.workers.lock().unwrap_or_else(|e| e.into_inner());
                    let workers = all.entry(app.id.clone()).or_default();
                    if !workers.iter().any(|d| d.kind == kind && d.index == index) {
                        workers.push(WorkerDyno {
                            worker: Worker::start(spec),
                            kind,
                            index,
                            command,
                            size,
                            version: release.version,
                        });
                    }
                }
                Err(e) => self.logs.app(&app.id).emit(
                    crate::logplex::Source::Renga,
                    &Process::from(format!("{kind}.{index}")),
                    format!("Could not start {kind}.{index}: {e}"),
                ),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn worker_spec(
        &self,
        app: &App,
        release: &Release,
        slug: &Slug,
        procfile: &Procfile,
        kind: &str,
        index: u32,
        size: Size,
    ) -> Result<WorkerSpec> {
        let kind_parsed: ProcessType =
            kind.parse()
                .map_err(|e: crate::procfile::InvalidProcessType| {
                    PlatformError::Invalid(e.to_string())
                })?;
        let command = procfile.get(&kind_parsed).ok_or_else(|| {
            PlatformError::NotFound(format!("the release does not declare a {kind} process"))
        })?;
        let name = Process::from(format!("{kind}.{index}"));
        let (path, args) = match backend::kind(command) {
            Kind::Wasm { path, args } => (path, args),
            Kind::Native { line } => {
                let spec = self.native_spec(app, slug, &release.config, size).await?;
                return Ok(WorkerSpec {
                    process: Box::new(NativeProcess::new(spec, name, line.to_string())),
                    command: command.to_string(),
                });
            }
        };
        let caps = self.capabilities_of(app, release)?;
        let component = self.command_component(app, &caps, slug, path).await?;
        let mut argv = vec![path.to_string()];
        argv.extend(args.iter().cloned());
        let log = self.logs.app(&app.id);
        let spec = CommandSpec {
            caps: caps.dyno(&DynoInputs {
                name: &name,
                log: &log,
                meter: &self.metrics.app(&app.id).dyno(&name),
            }),
            args: argv,
            memory_limit: self.memory_of(size),
            time_limit: None,
            log,
            cpu: self.cpu_of(app),
        };
        Ok(WorkerSpec {
            process: Box::new(WasmProcess::new(component, spec)),
            command: command.to_string(),
        })
    }
}
