//! What one instance's store holds: its resource table, one field per
//! capability (see [`crate::capability`]), and its memory limiter; and how
//! every store is set up (limits, and the epoch callback that makes a busy
//! guest yield and take turns with other apps).
//!
//! Every live store is counted, so that a test can see instances return to
//! zero after traps, timeouts and abandoned clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

use super::cpu::{AppCpu, CpuScheduler, HOT_AFTER};
use crate::capability::{DynoCapabilities, InstanceCapabilities, InstanceInputs};
use crate::metrics::DynoMeter;

/// Stores alive right now, across every app.
static LIVE_INSTANCES: AtomicUsize = AtomicUsize::new(0);

/// Instances (stores) alive right now: serving, kept for reuse, or running
/// a command.
pub fn live_instances() -> usize {
    LIVE_INSTANCES.load(Ordering::Relaxed)
}

/// One store's state: its resources, what each capability keeps for it,
/// and its limits. Nothing else.
pub struct DynoState {
    pub(crate) table: ResourceTable,
    pub(crate) caps: InstanceCapabilities,
    pub(crate) limits: MemoryLimiter,
    /// Epoch ticks this request (or process run) has been computing at.
    pub(crate) ticks: u32,
    _live: Live,
}

/// Counts a store from its creation to its drop.
struct Live;

impl Live {
    fn new() -> Live {
        LIVE_INSTANCES.fetch_add(1, Ordering::Relaxed);
        Live
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        LIVE_INSTANCES.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The CPU side of an instance: the runtime's scheduler and the app's claim.
#[derive(Clone)]
pub(crate) struct Cpu {
    pub(crate) scheduler: Arc<CpuScheduler>,
    pub(crate) app: Arc<AppCpu>,
}

/// A new store for one instance: its memory limit, and an epoch callback
/// that makes the guest yield at every tick (and, once it is hot, wait for
/// its app's turn), so that no guest holds a worker thread, a timeout can
/// always stop it, and a busy app leaves the last core to everyone else.
pub(crate) fn new_store(engine: &wasmtime::Engine, state: DynoState, cpu: Cpu) -> Store<DynoState> {
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limits);
    store.epoch_deadline_callback(move |mut ctx| {
        let state = ctx.data_mut();
        state.ticks = state.ticks.saturating_add(1);
        if state.ticks < HOT_AFTER {
            return Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ));
        }
        Ok(match cpu.scheduler.slice(&cpu.app) {
            // tokio's own yield, not a bare self-wake: a task that wakes
            // itself is polled again before the tasks already waiting, so
            // two busy guests on two workers would starve every request
            // queued behind them.
            None => UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())),
            Some(turn) => UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    let _ = turn.await;
                }),
            ),
        })
    });
    store.set_epoch_deadline(1);
    store
}

impl DynoState {
    pub(crate) fn new(
        caps: &DynoCapabilities,
        memory_limit: u64,
        mut inputs: InstanceInputs<'_>,
    ) -> DynoState {
        let meter = caps.meter().clone();
        meter.instance_started();
        DynoState {
            table: ResourceTable::new(),
            caps: caps.instance(&mut inputs),
            limits: MemoryLimiter::new(memory_limit, meter),
            ticks: 0,
            _live: Live::new(),
        }
    }
}

impl DynoState {
    /// Where this instance's dyno counts its instances, CPU and calls.
    pub(crate) fn meter(&self) -> &Arc<DynoMeter> {
        &self.limits.meter
    }
}

impl WasiView for DynoState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.caps.env,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for DynoState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.caps.outbound.http,
            table: &mut self.table,
            hooks: &mut self.caps.outbound.hooks,
        }
    }
}

/// Caps the total linear memory of one instance and remembers whether the
/// guest asked for more, so that a failure can be reported as what it is.
/// What it grants is also counted in the dyno's live memory, until the
/// instance is dropped.
pub(crate) struct MemoryLimiter {
    limit: usize,
    used: usize,
    pub(crate) exceeded: bool,
    meter: Arc<DynoMeter>,
}

impl MemoryLimiter {
    fn new(limit: u64, meter: Arc<DynoMeter>) -> MemoryLimiter {
        MemoryLimiter {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            used: 0,
            exceeded: false,
            meter,
        }
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.meter.instance_ended(self.used as u64);
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let next = self.used.saturating_sub(current).saturating_add(desired);
        if next > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        self.meter
            .memory_grew(next.saturating_sub(self.used) as u64, next as u64);
        self.used = next;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold a pointer per element; a million is 8 MiB of host memory.
        Ok(desired <= 1_000_000)
    }
}
