//! dyno: the running units of an app's process types (`web.1`, `worker.2`,
//! `run.3`).
//!
//! A web dyno pairs a release's pre-instantiated component with what each of
//! its instances gets (environment, memory limit, log stream), counts the
//! requests it is serving against its size's concurrency, and keeps
//! instances between requests when its process type opts in. A worker dyno
//! is a supervised command process ([`worker`]). Dynos never route and never
//! compile; the router picks web dynos and the runtime runs them.

pub mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::backend::wasm::WasmWeb;
use crate::backend::{Failure, RequestBody, Served, Timeouts, WebBackend};
use crate::capability::{DynoInputs, ReleaseCapabilities};
use crate::logplex::{AppLog, Process};
use crate::metrics::DynoMeter;
use crate::runtime::{AppCpu, HttpComponent, InstanceSpec};

/// What a web dyno may use, from its process type's size and formation.
#[derive(Clone, Copy, Debug)]
pub struct WebLimits {
    /// Linear memory per instance.
    pub memory: u64,
    /// Requests served at once.
    pub concurrency: u32,
    /// Requests one instance may serve (0: a fresh instance for each).
    pub reuse: u32,
}

/// One web dyno: its name, its request slots, and the backend that serves
/// its requests.
pub struct WebDyno {
    name: Process,
    memory_limit: u64,
    concurrency: usize,
    backend: Box<dyn WebBackend>,
    in_flight: AtomicUsize,
    meter: Arc<DynoMeter>,
}

impl WebDyno {
    /// A dyno of a WASI 0.2 component. `index` is the dyno's number:
    /// `web.1` is 1.
    pub fn new(
        index: u32,
        component: Arc<HttpComponent>,
        release: &Arc<ReleaseCapabilities>,
        limits: WebLimits,
        log: AppLog,
        cpu: Arc<AppCpu>,
        meter: Arc<DynoMeter>,
    ) -> WebDyno {
        let name = Process::from(format!("web.{index}"));
        let concurrency = limits.concurrency.max(1) as usize;
        let spec = InstanceSpec {
            caps: release.dyno(&DynoInputs {
                name: &name,
                log: &log,
                meter: &meter,
            }),
            memory_limit: limits.memory,
            log,
            cpu,
        };
        let backend = WasmWeb::new(component, spec, limits.reuse, concurrency);
        WebDyno::with_backend(name, limits, Box::new(backend), meter)
    }

    /// A dyno whose requests `backend` serves, counted in `meter`.
    pub fn with_backend(
        name: Process,
        limits: WebLimits,
        backend: Box<dyn WebBackend>,
        meter: Arc<DynoMeter>,
    ) -> WebDyno {
        WebDyno {
            name,
            memory_limit: limits.memory,
            concurrency: limits.concurrency.max(1) as usize,
            backend,
            in_flight: AtomicUsize::new(0),
            meter,
        }
    }

    /// Where the dyno's requests and instances are counted.
    pub fn meter(&self) -> &Arc<DynoMeter> {
        &self.meter
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Where its process is in its life, when it runs one (a native dyno).
    pub fn status(&self) -> Option<(worker::Status, u64)> {
        self.backend.status()
    }

    /// Instances this dyno keeps for its next requests.
    pub fn kept_instances(&self) -> usize {
        self.backend.kept()
    }

    pub fn name(&self) -> &Process {
        &self.name
    }

    pub fn memory_limit(&self) -> u64 {
        self.memory_limit
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Takes one of this dyno's request slots, if it has one free. The slot
    /// is given back when the guard is dropped (when the response body is
    /// finished).
    pub fn try_begin(self: &Arc<Self>) -> Option<InFlight> {
        let mut current = self.in_flight.load(Ordering::Relaxed);
        while current < self.concurrency {
            match self.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(InFlight(self.clone())),
                Err(now) => current = now,
            }
        }
        None
    }

    pub async fn serve(
        &self,
        request: hyper::Request<RequestBody>,
        timeouts: &Timeouts,
    ) -> Result<Served, Failure> {
        self.backend.serve(request, timeouts).await
    }
}

/// A request in progress on a dyno: one of its slots.
pub struct InFlight(Arc<WebDyno>);

impl InFlight {
    pub fn dyno(&self) -> &Arc<WebDyno> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
