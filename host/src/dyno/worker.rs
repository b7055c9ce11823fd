//! Worker dynos: a `wasi:cli/command` component run as a long-lived process,
//! restarted when it ends.
//!
//! A worker gets its release's config vars as its environment and writes its
//! output to the app's log. When it exits or traps, it is `crashed` and is
//! restarted after a delay that doubles with each crash in a row: the first
//! restart is immediate, then 1 s, 2 s, 4 s, ... up to [`MAX_BACKOFF`]. A
//! worker that stayed up for [`STABLE_AFTER`] starts counting again; a new
//! release makes new workers, so it resets the count too.
//!
//! WASI 0.2 has no signals, so stopping asks politely the one way a guest can
//! notice: its stdin is closed. It then has a grace period to exit before its
//! instance is dropped.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::{ProcessBackend, ProcessFailure};
use crate::logplex::{Process, Source};
use crate::runtime::ProcessIo;
use crate::units::HumanDuration;

/// The longest wait between two restarts of a crashing worker.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// A worker up this long has its crash count reset.
pub const STABLE_AFTER: Duration = Duration::from_secs(600);

/// How long a stopping worker has to exit after its stdin is closed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// The delay before restarting a worker that crashed `crashes` times in a
/// row (1 for the first crash).
pub fn backoff(crashes: u32) -> Duration {
    match crashes {
        0 | 1 => Duration::ZERO,
        n => Duration::from_secs(1u64 << (n - 2).min(20)).min(MAX_BACKOFF),
    }
}

/// A supervised dyno's state and since when (ms since the epoch), shared
/// with `renga ps`.
pub type StatusCell = Arc<Mutex<(Status, u64)>>;

/// Moves a dyno to `next`, saying so as Heroku does ("State changed from
/// up to crashed") when it is a change.
pub fn change_status(status: &StatusCell, next: Status, say: &dyn Fn(String)) {
    let mut current = status.lock().unwrap_or_else(|e| e.into_inner());
    if current.0 != next {
        let previous = current.0;
        *current = (next, crate::store::now_ms());
        drop(current);
        say(format!(
            "State changed from {} to {}",
            previous.as_str(),
            next.as_str()
        ));
    }
}

/// Counts a crash of a process that ran for `up_for` (a process that was
/// up long enough starts the count again) and says when it restarts:
/// the delay before the restart.
pub fn count_crash(crashes: &mut u32, up_for: Duration, say: &dyn Fn(String)) -> Duration {
    if up_for >= STABLE_AFTER {
        *crashes = 0;
    }
    *crashes += 1;
    let delay = backoff(*crashes);
    say(format!(
        "Restarting in {} (crash {} in a row)",
        HumanDuration(delay),
        *crashes
    ));
    delay
}

/// A dyno's state, as `renga ps` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Starting,
    Up,
    Idle,
    Crashed,
    Down,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Up => "up",
            Status::Idle => "idle",
            Status::Crashed => "crashed",
            Status::Down => "down",
        }
    }
}

/// What a worker runs.
pub struct WorkerSpec {
    /// What runs it (its name is `worker.1`), again after each crash.
    pub process: Box<dyn ProcessBackend>,
    /// The Procfile command, for the log.
    pub command: String,
}

/// A running worker dyno and its supervisor.
pub struct Worker {
    name: Process,
    status: Arc<Mutex<(Status, u64)>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Worker {
    pub fn start(spec: WorkerSpec) -> Worker {
        let name = spec.process.name().clone();
        let status = Arc::new(Mutex::new((Status::Starting, crate::store::now_ms())));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(supervise(spec, status.clone(), stopped));
        Worker {
            name,
            status,
            stop,
            task,
        }
    }

    pub fn name(&self) -> &Process {
        &self.name
    }

    /// Its state and since when (ms since the epoch).
    pub fn status(&self) -> (Status, u64) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the worker to stop; the returned task ends once it has (after at
    /// most the grace period).
    pub fn stop(self) -> tokio::task::JoinHandle<()> {
        let _ = self.stop.send(true);
        self.task
    }
}

async fn supervise(
    worker: WorkerSpec,
    status: StatusCell,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let process = &worker.process;
    let say = |message: String| process.log().emit(Source::Renga, process.name(), message);
    let set = |next: Status| change_status(&status, next, &say);
    let mut crashes = 0u32;
    loop {
        say(format!(
            "Starting process with command `{}`",
            worker.command
        ));
        // The worker's stdin: kept open while it runs, closed to ask it to
        // stop (a native process gets SIGTERM instead).
        let (stdin, stdin_writer) = tokio::io::duplex(64);
        let (terminate, terminated) = tokio::sync::watch::channel(false);
        let io = ProcessIo {
            stdin: Some(Box::new(stdin)),
            terminate: Some(terminated),
            ..ProcessIo::default()
        };
        let started = Instant::now();
        let run = process.run(io, None);
        tokio::pin!(run);
        set(Status::Up);
        let outcome = tokio::select! {
            outcome = &mut run => outcome,
            () = stop_requested(&mut stopped) => {
                drop(stdin_writer);
                let _ = terminate.send(true);
                say(format!(
                    "Stopping process: SIGTERM (a component sees its stdin closed); it has {} to exit",
                    HumanDuration(STOP_GRACE)
                ));
                match tokio::time::timeout(STOP_GRACE, &mut run).await {
                    Ok(outcome) => say(ended(&outcome)),
                    Err(_) => {
                        say(format!(
                            "Error R12 (Exit timeout) -> the process failed to exit within {} of being asked to stop",
                            HumanDuration(STOP_GRACE)
                        ));
                        say("Stopping remaining processes with SIGKILL".into());
                    }
                }
                set(Status::Down);
                return;
            }
        };
        drop(stdin_writer);
        say(ended(&outcome));
        set(Status::Crashed);
        let delay = count_crash(&mut crashes, started.elapsed(), &say);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop_requested(&mut stopped) => {
                set(Status::Down);
                return;
            }
        }
        set(Status::Starting);
    }
}

/// Resolves once the worker is asked to stop.
async fn stop_requested(stopped: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

fn ended(outcome: &Result<i32, ProcessFailure>) -> String {
    match outcome {
        Ok(code) => format!("Process exited with status {code}"),
        Err(ProcessFailure::MemoryExceeded { limit }) => format!(
            "Error R14 (Memory quota exceeded): the process needed more than the {} memory limit of this dyno",
            crate::units::ByteSize(*limit)
        ),
        Err(failure) => format!("Process failed: {failure}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_immediate_then_doubles_up_to_a_cap() {
        let delays: Vec<u64> = (1..=6).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [0, 1, 2, 4, 8, 16]);
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
