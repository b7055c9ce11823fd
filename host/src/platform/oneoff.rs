//! One-off dynos (`renga run`): a command component of the current release,
//! run once as `run.N`, attached to the caller or with its output in the log.
//!
//! An app may run at most [`MAX_ONE_OFFS`] at once, and they count against
//! its share of the instance pool with its formation. `ps:stop run.N`,
//! `ps:restart` and `apps:destroy` stop them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::app::App;
use crate::auth::User;
use crate::backend::native::NativeProcess;
use crate::backend::wasm::WasmProcess;
use crate::backend::{self, Kind};
use crate::backend::{ProcessBackend, ProcessFailure};
use crate::dyno::worker::Status;
use crate::logplex::{AppLog, Process, Source};
use crate::procfile::ProcessType;
use crate::runtime::{CommandSpec, ProcessIo};
use crate::size::Size;

use super::dynos::RunningDyno;
use super::{Platform, PlatformError, Result};

fn too_many_one_offs() -> PlatformError {
    PlatformError::Invalid(format!(
        "an app may run at most {MAX_ONE_OFFS} one-off dynos at once: wait for one to end, or stop one with `renga ps:stop run.N`"
    ))
}

/// A detached one-off dyno is stopped after this long, as on Heroku.
pub const DETACHED_TIME_LIMIT: Duration = Duration::from_secs(24 * 60 * 60);

/// One-off dynos one app may run at once.
pub const MAX_ONE_OFFS: usize = 10;

/// Each app's one-off dynos: the next number and those running.
#[derive(Default)]
pub(super) struct OneOffs {
    next: u32,
    running: Vec<(RunningDyno, tokio::sync::watch::Sender<bool>)>,
}

pub(super) type OneOffRegistry = Arc<Mutex<HashMap<String, OneOffs>>>;

/// A one-off dyno, ready to run.
pub struct OneOff {
    name: String,
    command: String,
    size: Size,
    process: Box<dyn ProcessBackend>,
    /// Listed in `ps` from when it is prepared until it is dropped.
    _registered: Registered,
    /// Becomes true when the dyno is told to stop.
    stop: tokio::sync::watch::Receiver<bool>,
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
        self,
        io: ProcessIo,
        time_limit: Option<Duration>,
    ) -> std::result::Result<i32, ProcessFailure> {
        let log = self.process.log().clone();
        let process = self.process.name().clone();
        let say = |message: String| log.emit(Source::Renga, &process, message);
        say(format!("Starting process with command `{}`", self.command));
        say("State changed from starting to up".into());
        let mut stop = self.stop.clone();
        let outcome = tokio::select! {
            outcome = self.process.run(io, time_limit) => outcome,
            // Dropping the run stops the instance at once.
            _ = stop.wait_for(|stop| *stop) => Err(ProcessFailure::Stopped),
        };
        match &outcome {
            Ok(code) => say(format!("Process exited with status {code}")),
            Err(ProcessFailure::Stopped) => say("Stopping process: the dyno was stopped".into()),
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
            app.running.retain(|(d, _)| d.name != self.name);
            if app.running.is_empty() {
                // Only the counter is left; it stays so that numbers keep
                // growing while the server runs.
                app.running.shrink_to_fit();
            }
        }
    }
}

impl Platform {
    /// Prepares `renga run -- COMMAND ARGS`: COMMAND is a process type of
    /// the current release (its Procfile command, with ARGS appended), or a
    /// component in the slug (`migrate.wasm`, or `migrate` for `migrate.wasm`
    /// or `bin/migrate.wasm`). It must be a `wasi:cli/command` component.
    pub async fn prepare_run(
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
        let size = size.unwrap_or_default();
        self.check_one_off_room(&app)?;
        // A native app's one-off runs a command line in a sandbox, as
        // `heroku run` does: a process type's command with the arguments
        // after it, or the words given (`python manage.py migrate`, `bash`).
        let native_app = procfile
            .iter()
            .any(|(_, c)| matches!(backend::kind(c), Kind::Native { .. }));
        let native_line = match declared.as_ref().map(backend::kind) {
            Some(Kind::Native { line }) => Some(
                std::iter::once(line.to_string())
                    .chain(argv[1..].iter().map(|a| shell_quote(a)))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            // One word is a command line of its own (`renga run 'a; b'`),
            // several are words (as Heroku's CLI builds the command).
            None if native_app && !first.ends_with(".wasm") => Some(if argv.len() == 1 {
                first.clone()
            } else {
                argv.iter()
                    .map(|a| shell_quote(a))
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
            _ => None,
        };
        let runner = match native_line {
            Some(line) => {
                let spec = self.native_spec(&app, &slug, &release.config, size).await?;
                Runner::Native(spec, line)
            }
            None => {
                let (path, mut args) = match declared.as_ref().map(backend::kind) {
                    Some(Kind::Wasm { path, args }) => (Some(path.to_string()), args.to_vec()),
                    _ => (None, Vec::new()),
                };
                args.extend(argv[1..].iter().cloned());
                let candidates = match &path {
                    Some(path) => vec![path.clone()],
                    None if first.ends_with(".wasm") => vec![first.clone()],
                    None => vec![format!("{first}.wasm"), format!("bin/{first}.wasm")],
                };
                let found = {
                    let (slugs, slug, candidates) =
                        (self.slugs.clone(), slug.clone(), candidates.clone());
                    tokio::task::spawn_blocking(move || -> Result<Option<String>> {
                        let dir = slugs.unpacked(&slug)?;
                        Ok(candidates.into_iter().find(|candidate| {
                            crate::slug::file_inside(&dir, candidate).is_ok_and(|f| f.is_file())
                        }))
                    })
                    .await??
                };
                let Some(relative) = found else {
                    return Err(PlatformError::NotFound(format!(
                        "Couldn't find `{first}`: it is neither a process type of {} nor a component in its slug (tried {})",
                        release.version(),
                        candidates.join(", ")
                    )));
                };
                let caps = self.capabilities_of(&app, &release)?;
                let component = self
                    .command_component(&app, &caps, &slug, &relative)
                    .await?;
                let mut full = vec![relative];
                full.extend(args);
                Runner::Wasm(caps, component, full)
            }
        };
        let command = match &runner {
            Runner::Native(_, line) => line.clone(),
            Runner::Wasm(_, _, full) => full.join(" "),
        };

        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let name = {
            let mut all = self.one_offs.lock().unwrap_or_else(|e| e.into_inner());
            let entry = all.entry(app.id.clone()).or_default();
            if entry.running.len() >= MAX_ONE_OFFS {
                return Err(too_many_one_offs());
            }
            entry.next += 1;
            let name = format!("run.{}", entry.next);
            entry.running.push((
                RunningDyno {
                    name: name.clone(),
                    kind: "run".into(),
                    command: command.clone(),
                    size,
                    state: Status::Up,
                    since: crate::store::now_ms(),
                    host: self.db.is_cluster().then(|| self.config.host_name.clone()),
                },
                stop_tx,
            ));
            name
        };
        let log: AppLog = self.logs.app(&app.id);
        let name_for_registry = name.clone();
        self.say(
            &app,
            format!("Starting {name} (`{command}`) by {}", user.name),
        );
        let process: Box<dyn ProcessBackend> = match runner {
            Runner::Native(spec, line) => {
                Box::new(NativeProcess::new(spec, Process::from(name.as_str()), line))
            }
            Runner::Wasm(caps, component, full) => {
                let spec = CommandSpec {
                    caps: caps.dyno(&crate::capability::DynoInputs {
                        name: &Process::from(name.as_str()),
                        log: &log,
                        // One meter for every one-off dyno (`run.N` numbers
                        // never come back).
                        meter: &self.metrics.app(&app.id).dyno("run"),
                    }),
                    args: full,
                    memory_limit: self.memory_of(size),
                    time_limit: None,
                    log,
                    cpu: self.cpu_of(&app),
                };
                Box::new(WasmProcess::new(component, spec))
            }
        };
        Ok(OneOff {
            process,
            name,
            command,
            size,
            _registered: Registered {
                registry: self.one_offs.clone(),
                app_id: app.id.clone(),
                name: name_for_registry,
            },
            stop,
        })
    }

    /// Refuses a new one-off dyno when the app already runs as many as it
    /// may, or when one more would take it past its share of the instance
    /// pool (with its formation).
    fn check_one_off_room(&self, app: &App) -> Result<()> {
        let running = self.one_off_count(app);
        if running >= MAX_ONE_OFFS {
            return Err(too_many_one_offs());
        }
        let share = self.instance_share();
        let formation = super::dynos::instances_of(&self.formations.list(&app.id)?);
        if formation + running as u64 + 1 > share {
            return Err(PlatformError::Invalid(format!(
                "{} already holds {} of the {share} instances one app may hold (half of this server's instance pool): scale its formation down or wait for a one-off dyno to end",
                app.name,
                formation + running as u64
            )));
        }
        Ok(())
    }

    /// `ps:stop DYNO`: a one-off dyno ends at once; a dyno of the formation
    /// is started again (the formation says it should run), as on Heroku.
    pub async fn stop_dyno(&self, user: &User, name_or_id: &str, which: &str) -> Result<()> {
        let app = self.app(user, name_or_id)?;
        if which == "run" || which.starts_with("run.") {
            let name = (which != "run").then_some(which);
            if self.stop_one_offs(&app.id, name) == 0 {
                return Err(PlatformError::NotFound(format!(
                    "Couldn't find that dyno: {which}"
                )));
            }
            self.say(&app, format!("Stop {which} by {}", user.name));
            return Ok(());
        }
        self.restart(user, name_or_id, Some(which)).await
    }

    /// One-off dynos running right now, across every app.
    pub fn one_off_total(&self) -> usize {
        self.one_offs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|o| o.running.len())
            .sum()
    }

    /// One-off dynos the app runs right now.
    pub(super) fn one_off_count(&self, app: &App) -> usize {
        self.one_offs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&app.id)
            .map_or(0, |o| o.running.len())
    }

    /// Stops the app's one-off dynos (all, or the one named); each ends at
    /// once and its instance is freed.
    pub(super) fn stop_one_offs(&self, app_id: &str, which: Option<&str>) -> usize {
        let all = self.one_offs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = all.get(app_id) else {
            return 0;
        };
        let mut stopped = 0;
        for (dyno, stop) in &entry.running {
            if which.is_none_or(|w| w == dyno.name) {
                let _ = stop.send(true);
                stopped += 1;
            }
        }
        stopped
    }

    pub(super) fn one_off_dynos(&self, app: &App) -> Vec<RunningDyno> {
        self.one_offs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&app.id)
            .map(|o| o.running.iter().map(|(d, _)| d.clone()).collect())
            .unwrap_or_default()
    }
}

/// What runs a one-off dyno.
enum Runner {
    Native(Arc<crate::backend::native::NativeSpec>, String),
    Wasm(
        Arc<crate::capability::ReleaseCapabilities>,
        Arc<crate::runtime::CommandComponent>,
        Vec<String>,
    ),
}

/// `word` as one shell word.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}
