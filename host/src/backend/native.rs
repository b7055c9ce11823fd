//! The native backend: an app that is not a component (a Django or Express
//! app, a binary) runs as processes in a sandbox, Heroku's way.
//!
//! Every native process runs in a jail of [`crate::sandbox`]: its own mount,
//! PID, IPC, UTS and network namespaces; the slug read-only at `/app`; a
//! writable `$HOME` and `/tmp` of its own, gone when it stops; the app's
//! unprivileged uid; a cgroup with its dyno size's memory (twice the quota
//! as a hard limit, R15 beyond it; R14 above the quota), a process limit
//! and a full CPU share; an environment of the config vars, `PORT`, `DYNO`,
//! `HOME` and a system `PATH` (the slug's `.profile.d/*.sh` add to it, as on
//! Heroku). Its network namespace has only its own loopback, plus the
//! internet through slirp4netns (never the host's loopback) when the app's
//! outbound allow-list is not empty.
//!
//! A web dyno ([`NativeWeb`]) is one supervised process. The router reaches
//! it over loopback inside the jail's namespace, through a [`Connector`]:
//! nothing else can. The supervisor follows Heroku's lifecycle: the process
//! must accept connections on `$PORT` within the boot timeout (else R10,
//! and a restart); a crash restarts it with backoff; memory over the quota
//! is logged as R14, and past the hard limit as R15, with a restart; when
//! the dyno is dropped (a deploy, a scale-down, a restart, sleep) its
//! processes get SIGTERM and, after a grace period, SIGKILL with R12. A
//! process dyno ([`NativeProcess`]) runs a command to its end: a worker, a
//! one-off (attached or not) or the release phase.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;

use super::{
    BoxError, Failure, ProcessBackend, ProcessFailure, RequestBody, Served, Timeouts, WebBackend,
};
use crate::capability::GuestOutput;
use crate::capability::ProcessIo;
use crate::dyno::worker::{Status, StatusCell, change_status, count_crash};
use crate::logplex::{AppLog, Process, Source};
use crate::sandbox::{Bind, Connector, Ended, Jail, JailHandle, JailLimits, Jailed, Sandbox};
use crate::units::{ByteSize, HumanDuration};

/// The port a native web process is given in `$PORT`: its network
/// namespace is its own, so every dyno can have the same.
pub const PORT: u16 = 5000;

/// Where the slug appears in a native dyno, as on Heroku.
pub const APP_DIR: &str = "/app";

/// A native dyno's writable home folder.
pub const HOME_DIR: &str = "/home/dyno";

/// The `PATH` a native process starts with; the slug's `.profile.d`
/// scripts add the stack's tools and the app's own.
const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// How often a native dyno's memory is read.
const MEMORY_CHECK: Duration = Duration::from_secs(1);

/// How often R14 is repeated while a dyno stays over its quota.
const R14_EVERY: Duration = Duration::from_secs(20);

/// How often a booting process's port is tried.
const PORT_CHECK: Duration = Duration::from_millis(10);

/// Keep-alive connections kept to one web process.
const KEPT_CONNECTIONS: usize = 64;

/// Heroku's lifecycle times.
#[derive(Clone, Copy, Debug)]
pub struct Lifecycle {
    /// How long a web process has to accept connections on `$PORT`.
    pub boot_timeout: Duration,
    /// How long processes have to exit after SIGTERM.
    pub grace: Duration,
}

/// What every native process of one release gets.
pub struct NativeSpec {
    pub sandbox: Arc<Sandbox>,
    /// The app's uid.
    pub uid: u32,
    /// The unpacked slug, seen read-only at [`APP_DIR`].
    pub slug: PathBuf,
    /// Where the dynos' writable homes are made (one folder per run,
    /// removed when it stops).
    pub scratch: PathBuf,
    /// The release's config vars.
    pub config: Vec<(String, String)>,
    /// Whether the processes may reach the internet.
    pub network: bool,
    /// The dyno size's memory quota (R14 above it; the hard limit, R15,
    /// is twice it).
    pub memory: u64,
    pub processes: u32,
    /// Bytes and files the writable home may hold; `/tmp`'s size.
    pub disk: u64,
    pub files: u64,
    pub tmp: u64,
    pub lifecycle: Lifecycle,
    pub log: AppLog,
}

impl NativeSpec {
    /// Starts `command` (a shell line, run after the slug's `.profile.d`
    /// scripts) as the dyno `name`, with `port` in `$PORT` when it serves.
    async fn start(
        &self,
        name: &Process,
        command: &str,
        port: Option<u16>,
        stdin: Stdio,
        output: (Stdio, Stdio),
    ) -> anyhow::Result<Run> {
        let home = self.scratch.join(uuid::Uuid::new_v4().simple().to_string());
        std::fs::create_dir_all(&home)?;
        let home = Home(home);
        self.sandbox.give(&home.0, self.uid)?;
        let mut env: Vec<(String, String)> = self
            .config
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "PORT" | "DYNO" | "HOME"))
            .cloned()
            .collect();
        env.push(("DYNO".into(), name.to_string()));
        env.push(("HOME".into(), HOME_DIR.into()));
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), SYSTEM_PATH.into()));
        }
        if let Some(port) = port {
            env.push(("PORT".into(), port.to_string()));
        }
        let jail = Jail {
            uid: self.uid,
            binds: vec![
                Bind::read_only(&self.slug, APP_DIR),
                Bind::writable(&home.0, HOME_DIR),
            ],
            env,
            cwd: PathBuf::from(APP_DIR),
            network: self.network,
            limits: JailLimits {
                memory: self.memory.saturating_mul(2),
                processes: self.processes,
                disk: self.disk,
                files: self.files,
                tmp: self.tmp,
                cpu_shares: 1024,
            },
        };
        // The profile scripts run first; then the command replaces the
        // shell, so that a simple command (`node server.js`) is the jail's
        // main process and gets SIGTERM itself, as on Heroku.
        let script = format!(
            "for f in {APP_DIR}/.profile.d/*.sh; do [ -r \"$f\" ] && . \"$f\"; done; unset f; exec /bin/bash -c \"$1\""
        );
        let args = [
            OsString::from("-c"),
            OsString::from(script),
            OsString::from("renga-dyno"),
            OsString::from(command),
        ];
        let jailed = self
            .sandbox
            .spawn_with_stdin(
                &jail,
                Path::new("/bin/bash"),
                &args,
                stdin,
                output.0,
                output.1,
            )
            .await?;
        Ok(Run {
            handle: jailed.handle(),
            jailed,
            _home: home,
        })
    }
}

/// A dyno's writable home, removed when its run ends.
struct Home(PathBuf);

impl Drop for Home {
    fn drop(&mut self) {
        let path = std::mem::take(&mut self.0);
        let remove = move || {
            let _ = crate::sandbox::remove_tree(&path);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(remove);
            }
            Err(_) => remove(),
        }
    }
}

/// One run of a native process. Dropping it kills every process of it.
struct Run {
    // Dropped first: the jail (and its processes) before its home.
    jailed: Jailed,
    handle: JailHandle,
    _home: Home,
}

impl Run {
    /// Copies the jail's stdout and stderr into `app[NAME]` log lines.
    fn log_output(&mut self, log: &AppLog, name: &Process) {
        if let Some(mut out) = self.jailed.stdout() {
            let mut lines = GuestOutput::new(log.clone(), name.clone());
            tokio::spawn(async move { tokio::io::copy(&mut out, &mut lines).await });
        }
        if let Some(mut err) = self.jailed.stderr() {
            let mut lines = GuestOutput::new(log.clone(), name.clone());
            tokio::spawn(async move { tokio::io::copy(&mut err, &mut lines).await });
        }
    }

    /// Asks every process to stop with SIGTERM, then stops them with
    /// SIGKILL after `grace`, saying so as Heroku does.
    async fn stop(mut self, grace: Duration, say: &(dyn Fn(String) + Sync)) {
        say("Stopping all processes with SIGTERM".into());
        self.handle.signal(libc::SIGTERM);
        match tokio::time::timeout(grace, self.jailed.wait()).await {
            Ok(ended) => say(exit_line(&ended)),
            Err(_) => {
                say(format!(
                    "Error R12 (Exit timeout) -> At least one process failed to exit within {} of SIGTERM",
                    HumanDuration(grace)
                ));
                say("Stopping remaining processes with SIGKILL".into());
                self.jailed.kill().await;
            }
        }
    }
}

fn exit_line(ended: &std::io::Result<Ended>) -> String {
    match ended {
        Ok(Ended::Exited(status)) => match status.code() {
            Some(code) => format!("Process exited with status {code}"),
            None => format!("Process ended: {status}"),
        },
        Ok(Ended::OverLimit(reason)) => format!("Process stopped: {reason}"),
        Err(e) => format!("Process could not be waited for: {e}"),
    }
}

/// Where a web process is in its life, as the router sees it.
#[derive(Clone)]
enum Phase {
    Starting,
    Up(Arc<Connector>),
    Crashed,
}

/// One native web dyno: a supervised process behind the router.
pub struct NativeWeb {
    phase: tokio::sync::watch::Receiver<Phase>,
    /// Keep-alive connections to the process, for the next requests.
    idle: Mutex<Vec<SendRequest<RequestBody>>>,
    /// Dropped with the dyno: its supervisor then stops the process.
    _stop: tokio::sync::oneshot::Sender<()>,
    status: StatusCell,
}

impl NativeWeb {
    /// Starts the dyno `name` running `command`; it serves once its process
    /// accepts connections ([`NativeWeb::ready`]).
    pub fn start(spec: Arc<NativeSpec>, name: Process, command: String) -> NativeWeb {
        let (phase_tx, phase) = tokio::sync::watch::channel(Phase::Starting);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let status = Arc::new(Mutex::new((Status::Starting, crate::store::now_ms())));
        tokio::spawn(supervise_web(
            spec,
            name,
            command,
            phase_tx,
            stopped,
            status.clone(),
        ));
        NativeWeb {
            phase,
            idle: Mutex::new(Vec::new()),
            _stop: stop,
            status,
        }
    }

    /// Waits until the process accepts connections, for at most `limit`.
    pub async fn ready(&self, limit: Duration) -> bool {
        let mut phase = self.phase.clone();
        tokio::time::timeout(limit, phase.wait_for(|p| matches!(p, Phase::Up(_))))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Its state and since when (ms since the epoch), for `renga ps`.
    pub fn status(&self) -> (Status, u64) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn kept(&self) -> Option<SendRequest<RequestBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|s| !s.is_closed());
        let ready = idle.iter().position(|s| s.is_ready())?;
        Some(idle.swap_remove(ready))
    }

    fn keep(&self, sender: SendRequest<RequestBody>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < KEPT_CONNECTIONS {
            idle.push(sender);
        }
    }
}

#[async_trait::async_trait]
impl WebBackend for NativeWeb {
    async fn serve(
        &self,
        request: http::Request<RequestBody>,
        timeouts: &Timeouts,
    ) -> Result<Served, Failure> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + timeouts.response;
        // A crashed process answers at once (H10); one that is starting is
        // waited for, within the response timeout (else H20).
        if matches!(&*self.phase.borrow(), Phase::Crashed) {
            return Err(Failure::AppCrashed(
                "its process exited and is restarted after a backoff".into(),
            ));
        }
        let mut phase = self.phase.clone();
        let connector =
            match tokio::time::timeout_at(deadline, phase.wait_for(|p| matches!(p, Phase::Up(_))))
                .await
            {
                Ok(Ok(phase)) => match &*phase {
                    Phase::Up(connector) => connector.clone(),
                    _ => unreachable!("waited for up"),
                },
                Ok(Err(_)) => return Err(Failure::Start("the dyno was stopped".into())),
                Err(_) => return Err(Failure::BootTimeout),
            };
        let kept = self.kept();
        let reused = kept.is_some();
        let mut sender = match kept {
            Some(sender) => sender,
            None => open(&connector, deadline).await?,
        };
        let connect = started.elapsed();
        let (mut parts, body) = request.into_parts();
        super::for_next_hop(&mut parts);
        let mut request = http::Request::from_parts(parts, body);
        // A kept connection the process closed meanwhile fails before the
        // request leaves: then it goes once more, on a new connection.
        let mut retried = !reused;
        let response = loop {
            match tokio::time::timeout_at(deadline, sender.try_send_request(request)).await {
                Err(_) => return Err(Failure::Timeout),
                Ok(Ok(response)) => break response,
                Ok(Err(mut e)) => match e.take_message() {
                    Some(unsent) if !retried => {
                        retried = true;
                        request = unsent;
                        sender = open(&connector, deadline).await?;
                    }
                    _ => {
                        let e = e.into_error();
                        return Err(
                            if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
                                Failure::NoResponse
                            } else {
                                Failure::Crashed(e.to_string())
                            },
                        );
                    }
                },
            }
        };
        self.keep(sender);
        Ok(Served {
            response: response.map(|body| Box::pin(body.map_err(|e| Box::new(e) as BoxError)) as _),
            connect,
        })
    }

    fn status(&self) -> Option<(Status, u64)> {
        Some(NativeWeb::status(self))
    }
}

/// A new HTTP/1.1 connection to the process's `$PORT`.
async fn open(
    connector: &Connector,
    deadline: tokio::time::Instant,
) -> Result<SendRequest<RequestBody>, Failure> {
    let stream = tokio::time::timeout_at(deadline, connector.connect(PORT))
        .await
        .map_err(|_| Failure::Timeout)?
        .map_err(|e| Failure::Crashed(format!("connecting to $PORT: {e}")))?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| Failure::Crashed(format!("connecting to $PORT: {e}")))?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Runs a web dyno's process for as long as the dyno lives: starts it,
/// waits for its port, restarts it after a crash, watches its memory, and
/// stops it gracefully when the dyno is dropped.
async fn supervise_web(
    spec: Arc<NativeSpec>,
    name: Process,
    command: String,
    phase: tokio::sync::watch::Sender<Phase>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
    status: StatusCell,
) {
    let say = |message: String| spec.log.emit(Source::Renga, &name, message);
    let set = |next: Status| change_status(&status, next, &say);
    let grace = spec.lifecycle.grace;
    let mut crashes = 0u32;
    loop {
        say(format!("Starting process with command `{command}`"));
        let started = Instant::now();
        let run = spec
            .start(
                &name,
                &command,
                Some(PORT),
                Stdio::null(),
                (Stdio::piped(), Stdio::piped()),
            )
            .await;
        let outcome = match run {
            Err(e) => format!("Process could not start: {e:#}"),
            Ok(mut run) => {
                run.log_output(&spec.log, &name);
                let connector = match run.jailed.connector() {
                    Ok(connector) => Arc::new(connector),
                    Err(e) => {
                        say(format!("Process could not be reached: {e}"));
                        return;
                    }
                };
                // Boot: the port must accept a connection in time.
                let booted = tokio::select! {
                    booted = wait_for_port(&connector, spec.lifecycle.boot_timeout) => booted,
                    ended = run.jailed.wait() => {
                        let line = exit_line(&ended);
                        Err(line)
                    }
                    _ = &mut stopped => {
                        run.stop(grace, &say).await;
                        set(Status::Down);
                        return;
                    }
                };
                match booted {
                    Ok(()) => {
                        let _ = phase.send(Phase::Up(connector));
                        set(Status::Up);
                        let outcome = tokio::select! {
                            outcome = watch(&mut run, &spec, &say) => outcome,
                            _ = &mut stopped => {
                                run.stop(grace, &say).await;
                                set(Status::Down);
                                return;
                            }
                        };
                        outcome
                    }
                    Err(reason) if reason.is_empty() => {
                        say(format!(
                            "Error R10 (Boot timeout) -> Web process failed to bind to $PORT within {} of launch",
                            HumanDuration(spec.lifecycle.boot_timeout)
                        ));
                        say("Stopping process with SIGKILL".into());
                        run.jailed.kill().await;
                        String::new()
                    }
                    Err(line) => line,
                }
            }
        };
        if !outcome.is_empty() {
            say(outcome);
        }
        let _ = phase.send(Phase::Crashed);
        set(Status::Crashed);
        let delay = count_crash(&mut crashes, started.elapsed(), &say);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = &mut stopped => {
                set(Status::Down);
                return;
            }
        }
        set(Status::Starting);
        let _ = phase.send(Phase::Starting);
    }
}

/// Waits until something accepts a connection on the jail's `$PORT`: `Ok`,
/// or `Err("")` when the boot timeout passed first.
async fn wait_for_port(connector: &Connector, limit: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if connector.connect(PORT).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(String::new());
        }
        tokio::time::sleep(PORT_CHECK).await;
    }
}

/// Follows a running process until it ends, saying R14 while its memory is
/// over the quota and stopping it with R15 when the kernel had to kill for
/// memory. Returns the line that says how it ended.
async fn watch(run: &mut Run, spec: &NativeSpec, say: &(dyn Fn(String) + Sync)) -> String {
    let mut tick = tokio::time::interval(MEMORY_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_r14: Option<Instant> = None;
    loop {
        tokio::select! {
            ended = run.jailed.wait() => {
                if run.handle.ran_out_of_memory() || matches!(ended, Ok(Ended::OverLimit(ref r)) if r.contains("memory")) {
                    return r15(spec);
                }
                return exit_line(&ended);
            }
            _ = tick.tick() => {
                if run.handle.ran_out_of_memory() {
                    say(r15(spec));
                    run.jailed.kill().await;
                    return "Process stopped with SIGKILL".into();
                }
                let used = run.handle.memory_used().unwrap_or(0);
                if used > spec.memory && last_r14.is_none_or(|t| t.elapsed() >= R14_EVERY) {
                    last_r14 = Some(Instant::now());
                    say(format!(
                        "Process running mem={} ({}%)",
                        ByteSize(used),
                        used * 100 / spec.memory.max(1)
                    ));
                    say("Error R14 (Memory quota exceeded)".into());
                }
            }
        }
    }
}

fn r15(spec: &NativeSpec) -> String {
    format!(
        "Error R15 (Memory quota vastly exceeded) -> the dyno went past {}, twice its {} quota, and was stopped",
        ByteSize(spec.memory.saturating_mul(2)),
        ByteSize(spec.memory)
    )
}

/// A process dyno of a native app: `worker.1`, `run.3`, `release.1`.
pub struct NativeProcess {
    spec: Arc<NativeSpec>,
    name: Process,
    command: String,
}

impl NativeProcess {
    pub fn new(spec: Arc<NativeSpec>, name: Process, command: String) -> NativeProcess {
        NativeProcess {
            spec,
            name,
            command,
        }
    }
}

#[async_trait::async_trait]
impl ProcessBackend for NativeProcess {
    fn name(&self) -> &Process {
        &self.name
    }

    fn log(&self) -> &AppLog {
        &self.spec.log
    }

    async fn run(
        &self,
        io: ProcessIo,
        time_limit: Option<Duration>,
    ) -> Result<i32, ProcessFailure> {
        let piped = |given: bool| if given { Stdio::piped() } else { Stdio::null() };
        let ProcessIo {
            stdin,
            stdout,
            stderr,
            terminate,
        } = io;
        let mut run = self
            .spec
            .start(
                &self.name,
                &self.command,
                None,
                piped(stdin.is_some()),
                (Stdio::piped(), Stdio::piped()),
            )
            .await
            .map_err(|e| ProcessFailure::Start(format!("{e:#}")))?;
        let mut copies = Vec::new();
        if let (Some(mut from), Some(mut to)) = (stdin, run.jailed.stdin()) {
            copies.push(tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from, &mut to).await;
            }));
        }
        let mut outputs = Vec::new();
        for (sink, source) in [
            (
                stdout,
                run.jailed
                    .stdout()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            ),
            (
                stderr,
                run.jailed
                    .stderr()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            ),
        ] {
            let Some(mut source) = source else { continue };
            let mut sink: Box<dyn tokio::io::AsyncWrite + Send + Unpin> = match sink {
                Some(sink) => sink,
                None => Box::new(GuestOutput::new(self.spec.log.clone(), self.name.clone())),
            };
            outputs.push(tokio::spawn(async move {
                let _ = tokio::io::copy(&mut source, &mut sink).await;
                let _ = tokio::io::AsyncWriteExt::flush(&mut sink).await;
            }));
        }
        let handle = run.handle.clone();
        let terminated = async move {
            match terminate {
                Some(mut t) => {
                    let _ = t.wait_for(|stop| *stop).await;
                    handle.signal(libc::SIGTERM);
                    std::future::pending::<()>().await
                }
                None => std::future::pending().await,
            }
        };
        let limit = time_limit.unwrap_or(Duration::MAX);
        let ended = tokio::select! {
            ended = tokio::time::timeout(limit, run.jailed.wait()) => ended,
            () = terminated => unreachable!("never ends"),
        };
        for copy in copies {
            copy.abort();
        }
        // The output left in the pipes is read to its end (the processes
        // are gone, so the pipes close).
        for output in outputs {
            let _ = tokio::time::timeout(Duration::from_secs(1), output).await;
        }
        let out_of_memory = run.handle.ran_out_of_memory();
        match ended {
            Err(_) => Err(ProcessFailure::Timeout(limit)),
            Ok(_) if out_of_memory => Err(ProcessFailure::MemoryExceeded {
                limit: self.spec.memory.saturating_mul(2),
            }),
            Ok(Ok(Ended::Exited(status))) => Ok(status.code().unwrap_or(128 + 9)),
            Ok(Ok(Ended::OverLimit(reason))) => Err(ProcessFailure::Crashed(reason)),
            Ok(Err(e)) => Err(ProcessFailure::Crashed(e.to_string())),
        }
    }
}
