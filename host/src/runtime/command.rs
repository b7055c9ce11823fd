//! Command processes: a `wasi:cli/command` component run once to its end,
//! as a release phase, a worker or a one-off dyno.
//!
//! Each run gets its own store: what its dyno's capabilities give (the
//! config vars as its environment, its add-ons), its arguments, its stdout
//! and stderr as log lines of its process unless a caller is attached, a
//! memory limit and a time limit. Nothing else: no folders, no sockets.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime_wasi::p2::bindings::CommandPre;

use super::artefact::Provenance;
use super::cpu::{AppCpu, CpuScheduler};
use super::http::describe_error;
use super::state::{Cpu, DynoState, new_store};
use super::{LoadError, exported_interfaces};
use crate::capability::{DynoCapabilities, InstanceInputs, ProcessIo};
use crate::logplex::AppLog;

/// The interface every command process must export.
const RUN: &str = "wasi:cli/run@0.2";

/// A command component, compiled and pre-instantiated once.
pub struct CommandComponent {
    pre: CommandPre<DynoState>,
    imports: Vec<String>,
    scheduler: Arc<CpuScheduler>,
    provenance: Provenance,
}

impl std::fmt::Debug for CommandComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandComponent")
            .field("provenance", &self.provenance)
            .finish_non_exhaustive()
    }
}

/// What one run of a command gets.
#[derive(Clone)]
pub struct CommandSpec {
    /// What the process's capabilities give it (its name, `release.1`, its
    /// environment, its add-ons).
    pub caps: Arc<DynoCapabilities>,
    /// `argv`, the program name first.
    pub args: Vec<String>,
    pub memory_limit: u64,
    /// `None`: the process may run for as long as it likes (a worker).
    pub time_limit: Option<Duration>,
    pub log: AppLog,
    /// The app's claim on the CPU, shared by all its instances.
    pub cpu: Arc<AppCpu>,
}

/// Why a command did not finish with an exit code.
#[derive(Debug, thiserror::Error)]
pub enum CommandFailure {
    #[error("the process could not start: {0}")]
    Instantiate(String),
    #[error("the process ran longer than {0:?} and was stopped")]
    Timeout(Duration),
    #[error("the process trapped: {0}")]
    Trap(String),
    #[error("the process needed more than its memory limit")]
    MemoryExceeded { limit: u64 },
    #[error("the process was stopped")]
    Stopped,
}

impl CommandComponent {
    pub(super) fn new(
        name: &str,
        runtime: &super::Runtime,
        component: Component,
        provenance: Provenance,
    ) -> Result<CommandComponent, LoadError> {
        let exports = exported_interfaces(component.engine(), &component);
        if !exports.iter().any(|e| e.starts_with(RUN)) {
            return Err(LoadError::NotCommand {
                name: name.to_string(),
                exports: if exports.is_empty() {
                    "nothing".into()
                } else {
                    exports.join(", ")
                },
            });
        }
        let (pre, imports) = runtime.link(name, &component)?;
        let pre = CommandPre::new(pre).map_err(|e| LoadError::NotCommand {
            name: name.to_string(),
            exports: format!("{} ({e:#})", exports.join(", ")),
        })?;
        Ok(CommandComponent {
            pre,
            imports,
            scheduler: runtime.scheduler.clone(),
            provenance,
        })
    }

    pub fn provenance(&self) -> Provenance {
        self.provenance
    }

    /// Every interface the component imports.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// Runs the command to its end: its exit code (0 when `run` returns
    /// success, 1 when it returns an error, or what it passed to `exit`).
    ///
    /// Dropping the future stops the process at once (its instance is freed).
    pub async fn run(&self, spec: &CommandSpec, io: ProcessIo) -> Result<i32, CommandFailure> {
        let mut store = new_store(
            self.pre.engine(),
            DynoState::new(
                &spec.caps,
                spec.memory_limit,
                InstanceInputs {
                    args: &spec.args,
                    io,
                },
            ),
            Cpu {
                scheduler: self.scheduler.clone(),
                app: spec.cpu.clone(),
            },
        );
        let memory_limit = spec.memory_limit;
        let meter = spec.caps.meter().clone();
        let run = meter.timed(async {
            let command = self.pre.instantiate_async(&mut store).await?;
            command.wasi_cli_run().call_run(&mut store).await
        });
        let (outcome, limit) = match spec.time_limit {
            Some(limit) => (tokio::time::timeout(limit, run).await, limit),
            None => (Ok(run.await), Duration::ZERO),
        };
        let exceeded = store.data().limits.exceeded;
        match outcome {
            Err(_) => Err(CommandFailure::Timeout(limit)),
            Ok(Ok(Ok(()))) => Ok(0),
            Ok(Ok(Err(()))) => Ok(1),
            Ok(Err(e)) => {
                if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                    Ok(exit.0)
                } else if exceeded {
                    Err(CommandFailure::MemoryExceeded {
                        limit: memory_limit,
                    })
                } else if e.downcast_ref::<wasmtime::Trap>().is_some() {
                    Err(CommandFailure::Trap(describe_error(&e)))
                } else {
                    Err(CommandFailure::Instantiate(describe_error(&e)))
                }
            }
        }
    }
}
