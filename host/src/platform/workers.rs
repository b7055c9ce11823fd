//! Worker dynos of an app: started and stopped to match the formation, and
//! the command components they (and release phases) run.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::app::App;
use crate::dyno::worker::{Worker, WorkerSpec};
use crate::logplex::Process;
use crate::procfile::{Command, ProcessType, Procfile};
use crate::release::Release;
use crate::runtime::{CommandComponent, CommandSpec};
use crate::size::Size;
use crate::slug::Slug;

use super::dynos::dyno_env;
use super::{Platform, PlatformError, Result};

/// A worker dyno and what `ps` says of it.
pub(super) struct WorkerDyno {
    pub(super) worker: Worker,
    pub(super) kind: String,
    index: u32,
    pub(super) command: String,
    pub(super) size: Size,
}

impl Platform {
    /// The command component at `path` in a slug (a worker, a release
    /// phase), loaded from the precompiled cache or compiled now.
    pub(super) fn command_component(
        &self,
        slug: &Slug,
        path: &str,
    ) -> Result<Arc<CommandComponent>> {
        tokio::task::block_in_place(|| {
            let dir = self.slugs.unpacked(slug)?;
            let file = crate::slug::file_inside(&dir, path)
                .map_err(|e| PlatformError::Invalid(format!("{e:#}")))?;
            self.runtime
                .load_command(&file)
                .map_err(|e| PlatformError::Invalid(e.to_string()))
        })
    }

    // ---- workers -------------------------------------------------------------

    /// Stops the app's workers (all, those of one type, or one dyno), each
    /// with its grace period, in the background.
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

    /// Starts and stops workers until each process type runs as many as its
    /// formation says, of the release given.
    pub(super) fn reconcile_workers(&self, app: &App, release: &Release) {
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
        let mut all = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let workers = all.entry(app.id.clone()).or_default();
        let wanted: BTreeMap<String, (u32, Size)> = formations
            .iter()
            .filter(|f| f.kind != "web" && f.kind != "release")
            .map(|f| (f.kind.clone(), (f.quantity, f.size)))
            .collect();
        // Fewer: stop the highest-numbered ones.
        let (stopping, kept): (Vec<WorkerDyno>, Vec<WorkerDyno>) =
            std::mem::take(workers).into_iter().partition(|d| {
                wanted
                    .get(&d.kind)
                    .is_none_or(|(quantity, _)| d.index > *quantity)
            });
        *workers = kept;
        for dyno in stopping {
            drop(dyno.worker.stop());
        }
        // More: start the missing numbers.
        for (kind, (quantity, size)) in wanted {
            for index in 1..=quantity {
                if workers.iter().any(|d| d.kind == kind && d.index == index) {
                    continue;
                }
                let Some(slug) = &slug else { continue };
                match self.worker_spec(app, release, slug, &procfile, &kind, index, size) {
                    Ok(spec) => {
                        let command = spec.command.clone();
                        workers.push(WorkerDyno {
                            worker: Worker::start(spec),
                            kind: kind.clone(),
                            index,
                            command,
                            size,
                        });
                    }
                    Err(e) => self.logs.app(&app.id).emit(
                        crate::logplex::Source::Renga,
                        &Process::from(format!("{kind}.{index}")),
                        format!("Could not start {kind}.{index}: {e}"),
                    ),
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn worker_spec(
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
        let Command::Component { path, args } = command else {
            return Err(PlatformError::Invalid(format!(
                "`{command}` is not a .wasm component; native processes are not supported yet"
            )));
        };
        let component = self.command_component(slug, path)?;
        let name = format!("{kind}.{index}");
        let mut argv = vec![path.clone()];
        argv.extend(args.iter().cloned());
        Ok(WorkerSpec {
            component,
            spec: CommandSpec {
                process: Process::from(name.as_str()),
                env: dyno_env(&release.config, &name),
                args: argv,
                memory_limit: self.memory_of(size),
                time_limit: None,
                log: self.logs.app(&app.id),
            },
            command: command.to_string(),
        })
    }
}
