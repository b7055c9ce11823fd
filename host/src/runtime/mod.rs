//! The Wasm runtime: with [`crate::capability`], the only module that
//! touches wasmtime.
//!
//! Owns the engine (its pooling allocator and the one epoch ticker), the
//! linker with every capability in it, the precompiled-artefact cache, the
//! checks that a file is a component of the right world whose imports renga
//! serves, and the per-request instances of web dynos. It never routes,
//! never chooses a dyno, and writes nothing outside its artefact folder.

mod artefact;
mod command;
mod compile_cache;
mod cpu;
mod http;
mod producers;
mod provider;
mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

pub use artefact::Provenance;
pub use command::{CommandComponent, CommandFailure, CommandSpec};
pub use cpu::{AppCpu, CpuScheduler};
pub use http::{
    GuestBody, GuestFailure, HttpComponent, InstanceSpec, Reuse, Served, SharedInstances, Timeouts,
    live_guest_tasks,
};
pub use provider::{ProviderComponent, ProviderKv, Providers};
pub use state::{DynoState, live_instances};

pub use crate::capability::ProcessIo;
use crate::capability::{Capabilities, CapabilitiesConfig};
use artefact::ArtefactCache;
use compile_cache::FunctionCache;
pub use producers::single_use_reason;

/// The wasmtime release renga is built on (checked against Cargo.lock by a test).
pub const WASMTIME_VERSION: &str = "48.0.8";

/// How the runtime is sized. The pool is reserved once, at start.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Where precompiled machine code is kept (a cache, never the truth).
    pub artefact_dir: PathBuf,
    /// Most instances alive at once, across every app and dyno.
    pub max_instances: u32,
    /// The largest linear memory any one instance may reach.
    pub max_memory: u64,
    /// How often the engine's epoch advances: the granularity at which a
    /// busy guest yields and at which timeouts can take effect.
    pub epoch_tick: Duration,
    /// Try the pooling allocator (falls back to on-demand if the machine
    /// refuses its reservation).
    pub pooling: bool,
    /// How the capabilities guests import are set up.
    pub capabilities: CapabilitiesConfig,
}

impl RuntimeConfig {
    pub fn new(artefact_dir: impl Into<PathBuf>) -> RuntimeConfig {
        RuntimeConfig {
            artefact_dir: artefact_dir.into(),
            max_instances: 1000,
            max_memory: 4 << 30,
            epoch_tick: Duration::from_millis(1),
            pooling: true,
            capabilities: CapabilitiesConfig::default(),
        }
    }
}

/// Which instance allocator the engine ended up with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allocator {
    Pooling,
    OnDemand,
}

impl std::fmt::Display for Allocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Allocator::Pooling => "pooling",
            Allocator::OnDemand => "on-demand",
        })
    }
}

/// Why a file cannot become a web dyno.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{name} is not a WebAssembly file (it does not start with the `\\0asm` magic bytes)")]
    NotWasm { name: String },
    #[error(
        "{name} is a core WebAssembly module, not a component: build it for the wasm32-wasip2 target, or wrap it with `wasm-tools component new`"
    )]
    CoreModule { name: String },
    #[error("{name} is not a valid component: {reason}")]
    Invalid { name: String, reason: String },
    #[error(
        "{name} is a component of the wrong world: a web process must export wasi:http/incoming-handler (the wasi:http/proxy world), but it exports {exports}"
    )]
    WrongWorld { name: String, exports: String },
    #[error(
        "{name} is not a command component: a process that runs to its end (a release phase, a worker) must export wasi:cli/run (the wasi:cli/command world), but it exports {exports}"
    )]
    NotCommand { name: String, exports: String },
    #[error(
        "{name} is not a key-value provider: a provider must export wasi:keyvalue/store, atomics and batch @0.2.0-draft2 and renga:app/provisioning@0.1.0 (the renga:app/key-value-provider world; see sdk/provider), and it lacks {missing}"
    )]
    NotProvider { name: String, missing: String },
    #[error("{name} imports {} renga does not provide: {}", if .imports.len() == 1 { "an interface" } else { "interfaces" }, .imports.join(", "))]
    UnknownImports { name: String, imports: Vec<String> },
    #[error(
        "{name} imports an interface renga provides, but not in the shape renga provides it: {reason}"
    )]
    UnsatisfiedImport { name: String, reason: String },
}

/// The engines, their linkers and caches. One per process.
///
/// Two engines: one for WASI 0.2 components, with the component model's
/// async support switched off (it costs every store and every call a
/// quarter of the request rate, measured in BENCHMARKS.md), and one for
/// WASI 0.3 components, which need it. A component is compiled for the
/// first and, if it uses the async ABI, for the second.
pub struct Runtime {
    engine: Engine,
    linker: Linker<DynoState>,
    /// WASI 0.3: its engine, linker and artefacts.
    concurrent: Concurrent,
    capabilities: Arc<Capabilities>,
    artefacts: ArtefactCache,
    allocator: Allocator,
    max_instances: u32,
    scheduler: Arc<CpuScheduler>,
    _ticker: EpochTicker,
}

impl Runtime {
    pub fn new(config: &RuntimeConfig) -> anyhow::Result<Runtime> {
        let functions = open_function_cache(config);
        let (engine, allocator) = build_engine(config, false, functions.clone())?;
        let mut linker = Linker::new(&engine);
        let capabilities = Arc::new(Capabilities::new(&config.capabilities));
        capabilities.link(&mut linker)?;
        let artefacts = ArtefactCache::open(&config.artefact_dir, &engine)?;
        let concurrent = Concurrent::new(config, &capabilities, functions)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let scheduler = Arc::new(CpuScheduler::new(u32::try_from(cores).unwrap_or(1)));
        capabilities
            .providers()
            .link(scheduler.clone(), Arc::downgrade(&capabilities));
        let ticker = EpochTicker::start(
            vec![engine.clone(), concurrent.engine.clone()],
            scheduler.clone(),
            config.epoch_tick,
        );
        Ok(Runtime {
            engine,
            linker,
            concurrent,
            capabilities,
            artefacts,
            allocator,
            max_instances: config.max_instances,
            scheduler,
            _ticker: ticker,
        })
    }

    /// Every capability, to configure a release with.
    pub fn capabilities(&self) -> &Arc<Capabilities> {
        &self.capabilities
    }

    pub fn allocator(&self) -> Allocator {
        self.allocator
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads a web process's component: from the precompiled cache when it
    /// holds this exact component for this engine, else validated and
    /// compiled (seconds for a large component: call from a blocking task).
    pub fn load_http(&self, path: &Path) -> Result<Arc<HttpComponent>, LoadError> {
        let (name, bytes) = read_component(path)?;
        self.load_http_bytes(&name, &bytes)
    }

    pub fn load_http_bytes(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<Arc<HttpComponent>, LoadError> {
        let (component, provenance, digest) = self.compile(name, bytes)?;
        let single_use = single_use_reason(bytes);
        http::HttpComponent::new(name, self, component, provenance, digest, single_use)
            .map(Arc::new)
    }

    /// Loads a web component straight from its precompiled artefact, by the
    /// digest an earlier load reported: what waking an app from zero costs.
    /// `single_use` is what that load reported too (the artefact does not
    /// keep the component's `producers` section). `None` when the artefact
    /// is gone (then load the file again).
    pub fn reload_http(
        &self,
        name: &str,
        digest: &str,
        single_use: Option<String>,
    ) -> Option<Arc<HttpComponent>> {
        let component = self
            .artefacts
            .load_cached(&self.engine, digest)
            .or_else(|| {
                let concurrent = &self.concurrent;
                concurrent.artefacts.load_cached(&concurrent.engine, digest)
            })?;
        http::HttpComponent::new(
            name,
            self,
            component,
            Provenance::Cached,
            digest.to_string(),
            single_use,
        )
        .ok()
        .map(Arc::new)
    }

    /// Most instances alive at once, across every app.
    pub fn max_instances(&self) -> u32 {
        self.max_instances
    }

    /// Hot guests waiting for a CPU slice right now.
    pub fn waiting_for_cpu(&self) -> usize {
        self.scheduler.waiting()
    }

    /// Loads a command process's component (a release phase, a worker), like
    /// [`Runtime::load_http`]; also returns the sha256 of the file.
    pub fn load_command(&self, path: &Path) -> Result<(Arc<CommandComponent>, String), LoadError> {
        let (name, bytes) = read_component(path)?;
        let (component, provenance, digest) = self.compile(&name, &bytes)?;
        let component = command::CommandComponent::new(&name, self, component, provenance)?;
        Ok((Arc::new(component), digest))
    }

    /// A component's imports, checked against the capabilities, and the
    /// component pre-instantiated with them: every import no capability
    /// serves is named, in renga's words, before the linker is asked.
    fn link(
        &self,
        name: &str,
        component: &Component,
    ) -> Result<(wasmtime::component::InstancePre<DynoState>, Vec<String>), LoadError> {
        let engine = component.engine();
        let imports: Vec<String> = component
            .component_type()
            .imports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let unknown = self.capabilities.unknown(&imports);
        if !unknown.is_empty() {
            return Err(LoadError::UnknownImports {
                name: name.to_string(),
                imports: unknown,
            });
        }
        let linker = if Engine::same(engine, &self.engine) {
            &self.linker
        } else {
            &self.concurrent.linker
        };
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| LoadError::UnsatisfiedImport {
                name: name.to_string(),
                reason: format!("{e:#}"),
            })?;
        Ok((pre, imports))
    }

    fn compile(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<(Component, Provenance, String), LoadError> {
        check_component_header(name, bytes)?;
        let invalid = |e: anyhow::Error| LoadError::Invalid {
            name: name.to_string(),
            reason: format!("{e:#}"),
        };
        match self.artefacts.load(&self.engine, bytes) {
            Ok(loaded) => Ok(loaded),
            // A WASI 0.3 component (the async ABI) compiles only where the
            // component model's async support is on; anything else that
            // does not compile keeps the first engine's reason.
            Err(e) => {
                let concurrent = &self.concurrent;
                concurrent
                    .artefacts
                    .load(&concurrent.engine, bytes)
                    .map_err(|_| invalid(e))
            }
        }
    }
}

/// The engine for WASI 0.3 components: the component model's async
/// support on, a pool of its own (a quarter of the instances: WASI 0.3
/// components are the fewer), the same capabilities linked.
struct Concurrent {
    engine: Engine,
    linker: Linker<DynoState>,
    artefacts: ArtefactCache,
}

impl Concurrent {
    fn new(
        config: &RuntimeConfig,
        capabilities: &Capabilities,
        functions: Option<Arc<FunctionCache>>,
    ) -> anyhow::Result<Concurrent> {
        let quarter = RuntimeConfig {
            max_instances: (config.max_instances / 4).max(16),
            ..config.clone()
        };
        let (engine, _) = build_engine(&quarter, true, functions)?;
        let mut linker = Linker::new(&engine);
        capabilities.link_concurrent(&mut linker)?;
        let artefacts = ArtefactCache::open(&config.artefact_dir, &engine)?;
        Ok(Concurrent {
            engine,
            linker,
            artefacts,
        })
    }
}

/// A component file's bytes, and its file name for messages.
fn read_component(path: &Path) -> Result<(String, Vec<u8>), LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    Ok((name, bytes))
}

/// Distinguishes "not wasm", "a core module" and "a component" from the
/// first eight bytes, before the compiler gives a less helpful message.
fn check_component_header(name: &str, bytes: &[u8]) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(LoadError::NotWasm {
            name: name.to_string(),
        });
    }
    // Core modules are version 1, layer 0; components have layer 1.
    match (bytes[6], bytes[7]) {
        (0, 0) => Err(LoadError::CoreModule {
            name: name.to_string(),
        }),
        _ => Ok(()),
    }
}

fn exported_interfaces(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Cranelift's per-function cache, beside the precompiled artefacts; none
/// (every function compiled) when the folder cannot be made.
fn open_function_cache(config: &RuntimeConfig) -> Option<Arc<FunctionCache>> {
    let dir = config.artefact_dir.join("functions");
    FunctionCache::open(&dir)
        .inspect_err(|e| {
            tracing::warn!(folder = %dir.display(), error = %e, "no compiled-function cache; every push compiles its whole component")
        })
        .ok()
}

/// What both engines share.
fn base_config(functions: Option<Arc<FunctionCache>>) -> anyhow::Result<Config> {
    let mut base = Config::new();
    if let Some(functions) = functions {
        base.enable_incremental_compilation(functions)?;
    }
    base.epoch_interruption(true)
        .cranelift_opt_level(OptLevel::Speed)
        .parallel_compilation(true)
        // Trap messages name the guest function, but never read DWARF at
        // runtime, whatever WASMTIME_BACKTRACE_DETAILS says.
        .wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Disable);
    Ok(base)
}

/// An engine with the component model's async support on (`concurrent`,
/// for WASI 0.3) or off (WASI 0.2, whose components never use it: its
/// bookkeeping in every store is left to the other engine).
fn build_engine(
    config: &RuntimeConfig,
    concurrent: bool,
    functions: Option<Arc<FunctionCache>>,
) -> anyhow::Result<(Engine, Allocator)> {
    let mut base = base_config(functions)?;
    base.concurrency_support(concurrent);

    if config.pooling {
        // Best first: a slot's memory stays resident between instances and
        // only the pages a guest dirtied are reset, found with the
        // PAGEMAP_SCAN ioctl (Linux 6.7+). Without it, resetting a large
        // resident region costs more than it saves, so keep little.
        let attempts = [
            (Allocator::Pooling, true, 1 << 20),
            (Allocator::Pooling, false, 64 << 10),
        ];
        for (allocator, pagemap, keep_resident) in attempts {
            let mut pooled = base.clone();
            pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(
                config,
                pagemap,
                keep_resident,
            )));
            match Engine::new(&pooled) {
                Ok(engine) => {
                    tracing::info!(
                        max_instances = config.max_instances,
                        pagemap_scan = pagemap,
                        keep_resident,
                        "instance allocator: pooling"
                    );
                    return Ok((engine, allocator));
                }
                Err(e) => tracing::debug!(
                    pagemap_scan = pagemap,
                    error = %format!("{e:#}"),
                    "pooling allocator configuration refused"
                ),
            }
        }
        tracing::warn!(
            "instance allocator: on-demand (this machine refused the pooling allocator's reservation)"
        );
    } else {
        tracing::info!("instance allocator: on-demand (pooling disabled)");
    }
    let engine = Engine::new(&base).map_err(anyhow::Error::from)?;
    Ok((engine, Allocator::OnDemand))
}

fn pooling_config(
    config: &RuntimeConfig,
    pagemap: bool,
    keep_resident: usize,
) -> PoolingAllocationConfig {
    let n = config.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        // Components built by componentize-py and jco hold a dozen or more
        // core instances and several tables each; leave room for them.
        .total_core_instances(n.saturating_mul(16))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(8))
        .total_stacks(n)
        .max_memory_size(config.max_memory as usize)
        .max_tables_per_module(8)
        .max_memories_per_module(2)
        // Reset the low pages of a finished instance's memory in place rather
        // than with madvise: each madvise and each copy-on-write fault that
        // follows costs a TLB shootdown across cores, which dominated the
        // per-request cost (see BENCHMARKS.md).
        .linear_memory_keep_resident(keep_resident)
        .table_keep_resident(64 << 10)
        .pagemap_scan(if pagemap {
            wasmtime::Enabled::Yes
        } else {
            wasmtime::Enabled::No
        });
    pool
}

/// The one thread that advances the engines' epochs and, with them, hands
/// out the next tick's CPU slices. Stops when dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engines: Vec<Engine>, scheduler: Arc<CpuScheduler>, tick: Duration) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("renga-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    for engine in &engines {
                        engine.increment_epoch();
                    }
                    scheduler.tick();
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasmtime_version_matches_the_lockfile() {
        let lock = include_str!("../../../Cargo.lock");
        let entry = format!("name = \"wasmtime\"\nversion = \"{WASMTIME_VERSION}\"");
        assert!(
            lock.contains(&entry),
            "Cargo.lock does not pin wasmtime {WASMTIME_VERSION}"
        );
    }

    #[test]
    fn header_check_names_the_problem() {
        assert!(matches!(
            check_component_header("x", b"hello world"),
            Err(LoadError::NotWasm { .. })
        ));
        assert!(matches!(
            check_component_header("x", b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule { .. })
        ));
        assert!(check_component_header("x", b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn bad_files_are_refused_before_compiling() {
        let dir = std::env::temp_dir().join(format!("renga-rt-{}", std::process::id()));
        let mut config = RuntimeConfig::new(&dir);
        config.max_instances = 4;
        let runtime = Runtime::new(&config).unwrap();
        let err = runtime
            .load_http_bytes("junk.wasm", b"\0asm\x0d\0\x01\0garbage")
            .unwrap_err();
        assert!(matches!(err, LoadError::Invalid { .. }), "{err}");
        let err = runtime
            .load_http_bytes("text.wasm", b"#!/bin/sh\necho hi\n")
            .unwrap_err();
        assert!(err.to_string().contains("not a WebAssembly file"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
