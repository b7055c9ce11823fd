//! One-off dynos (`renga run`): a command component of the current release,
//! run once as `run.N`, attached to the caller or with its output in the log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::app::App;
use crate::auth::User;
use crate::dyno::worker::Status;
use crate::logplex::{AppLog, Process, Source};
use crate::procfile::{Command, ProcessType};
use crate::runtime::{CommandComponent, CommandFailure, CommandSpec, ProcessIo};
use crate::size::Size;

use super::dynos::{RunningDyno, dyno_env};
use super::{Platform, PlatformError, Result};

/// A detached one-off dyno is stopped after this long, as on Heroku.
pub const DETACHED_TIME_LIMIT: Duration = Duration::from_secs(24 * 60 * 60);

/// Each app's one-off dynos: the next number and those running.
#[derive(Default)]
pub(super) struct OneOffs {
    next: u32,
    running: Vec<RunningDyno>,
}

pub(super) type OneOffRegistry = Arc<Mutex<HashMap<String, OneOffs>>>;

/// A one-off dyno, ready to run.
pub struct OneOff {
    name: String,
    command: String,
    size: Size,
    component: Arc<CommandComponent>,
    spec: CommandSpec,
    /// Listed in `ps` from when it is prepared until it is dropped.
    _registered: Registered,
}

impl OneOff {
    /// `run.N`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn size(&self) -> Size {
        self.size
    }

    pub fn command(&self) -> &str {
        &self.command
    }

    /// Runs it to its end with `io` as its standard streams (the log where
    /// `io` gives none); `time_limit` bounds it. Shown in `ps` while it runs.
    pub async fn run(
        mut self,
        io: ProcessIo,
        time_limit: Option<Duration>,
    ) -> std::result::Result<i32, CommandFailure> {
        self.spec.time_limit = time_limit;
        let log = self.spec.log.clone();
        let process = self.spec.process.clone();
        let say = |message: String| log.emit(Source::Renga, &process, message);
        say(format!("Starting process with command `{}`", self.command));
        say("State changed from starting to up".into());
        let outcome = self.component.run(&self.spec, io).await;
        match &outcome {
            Ok(code) => say(format!("Process exited with status {code}")),
            Err(failure) => say(format!("Process failed: {failure}")),
        }
        say("State changed from up to complete".into());
        outcome
    }
}

/// Takes a one-off dyno out of `ps` when its run ends, however it ends.
struct Registered {
    registry: OneOffRegistry,
    app_id: String,
    name: String,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut all = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(app) = all.get_mut(&self.app_id) {
            app.running.retain(|d| d.name != self.name);
        }
    }
}

impl Platform {
    /// Prepares `renga run -- COMMAND ARGS`: COMMAND is a process type of
    /// the current release (its Procfile command, with ARGS appended), or a
    /// component in the slug (`migrate.wasm`, or `migrate` for `migrate.wasm`
    /// or `bin/migrate.wasm`). It must be a `wasi:cli/command` component.
    pub fn prepare_run(
        &self,
        user: &User,
        name_or_id: &str,
        argv: &[String],
        size: Option<Size>,
    ) -> Result<OneOff> {
        let app = self.app(user, name_or_id)?;
        let Some(first) = argv.first().filter(|a| !a.is_empty()) else {
            return Err(PlatformError::Invalid(
                "Nothing to run: give a process type or a component, for example `renga run -- worker`".into(),
            ));
        };
        let release = self.current_release(&app)?;
        let Some(slug_id) = &release.slug else {
            return Err(PlatformError::Invalid(format!(
                "{} has no code yet: deploy before running a one-off dyno",
                app.name
            )));
        };
        let slug = self.slugs.find(&app.id, slug_id)?.ok_or_else(|| {
            PlatformError::NotFound(format!("Couldn't find that slug: {slug_id}"))
        })?;
        let procfile = self.procfile_for(&app, &release)?;
        let declared = first
            .parse::<ProcessType>()
            .ok()
            .and_then(|kind| procfile.get(&kind).cloned());
        let (path, mut args) = match declared {
            Some(Command::Component { path, args }) => (Some(path), args),
            Some(native @ Command::Native(_)) => {
                return Err(PlatformError::Invalid(format!(
                    "`{first}` runs `{native}`, which is not a .wasm component; native processes are not supported yet"
                )));
            }
            None => (None, Vec::new()),
        };
        args.extend(argv[1..].iter().cloned());
        let size = size.unwrap_or_default();
        let component = tokio::task::block_in_place(|| -> Result<_> {
            let dir = self.slugs.unpacked(&slug)?;
            let candidates = match &path {
                Some(path) => vec![path.clone()],
                None if first.ends_with(".wasm") => vec![first.clone()],
                None => vec![format!("{first}.wasm"), format!("bin/{first}.wasm")],
            };
            let found = candidates.iter().find_map(|candidate| {
                crate::slug::file_inside(&dir, candidate)
                    .ok()
                    .filter(|f| f.is_file())
                    .map(|f| (candidate.clone(), f))
            });
            let Some((relative, file)) = found else {
                return Err(PlatformError::NotFound(format!(
                    "Couldn't find `{first}`: it is neither a process type of {} nor a component in its slug (tried {})",
                    release.version(),
                    candidates.join(", ")
                )));
            };
            let component = self
                .runtime
                .load_command(&file)
                .map_err(|e| PlatformError::Invalid(e.to_string()))?;
            Ok((relative, component))
        })?;
        let (relative, component) = component;
        let mut full = vec![relative];
        full.extend(args);
        let command = full.join(" ");

        let name = {
            let mut all = self.one_offs.lock().unwrap_or_else(|e| e.into_inner());
            let entry = all.entry(app.id.clone()).or_default();
            entry.next += 1;
            let name = format!("run.{}", entry.next);
            entry.running.push(RunningDyno {
                name: name.clone(),
                kind: "run".into(),
                command: command.clone(),
                size,
                state: Status::Up,
                since: crate::store::now_ms(),
            });
            name
        };
        let log: AppLog = self.logs.app(&app.id);
        let name_for_registry = name.clone();
        self.say(
            &app,
            format!("Starting {name} (`{command}`) by {}", user.name),
        );
        Ok(OneOff {
            spec: CommandSpec {
                process: Process::from(name.as_str()),
                env: dyno_env(&release.config, &name),
                args: full,
                memory_limit: self.memory_of(size),
                time_limit: None,
                log,
            },
            name,
            command,
            size,
            component,
            _registered: Registered {
                registry: self.one_offs.clone(),
                app_id: app.id.clone(),
                name: name_for_registry,
            },
        })
    }

    pub(super) fn one_off_dynos(&self, app: &App) -> Vec<RunningDyno> {
        self.one_offs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&app.id)
            .map(|o| o.running.clone())
            .unwrap_or_default()
    }
}
