//! dyno: the running units of an app's process types (`web.1`, `worker.2`).
//!
//! A web dyno pairs a release's pre-instantiated component with what each of
//! its instances gets (environment, memory limit, log stream) and counts the
//! requests it is serving. It never routes and never compiles; the router
//! picks dynos and the runtime runs them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::ConfigVars;
use crate::logplex::{AppLog, Process};
use crate::runtime::{GuestFailure, HttpComponent, InstanceSpec, Served, Timeouts};

/// One web dyno.
pub struct WebDyno {
    component: Arc<HttpComponent>,
    spec: InstanceSpec,
    in_flight: AtomicUsize,
}

impl WebDyno {
    /// `index` is the dyno's number: `web.1` is 1.
    pub fn new(
        index: u32,
        component: Arc<HttpComponent>,
        config: &ConfigVars,
        memory_limit: u64,
        log: AppLog,
    ) -> WebDyno {
        let dyno = format!("web.{index}");
        let mut env: Vec<(String, String)> = config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.retain(|(k, _)| k != "DYNO");
        env.push(("DYNO".to_string(), dyno.clone()));
        WebDyno {
            component,
            spec: InstanceSpec {
                dyno: Process::from(dyno),
                env: env.into(),
                memory_limit,
                log,
            },
            in_flight: AtomicUsize::new(0),
        }
    }

    pub fn name(&self) -> &Process {
        &self.spec.dyno
    }

    pub fn memory_limit(&self) -> u64 {
        self.spec.memory_limit
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request against this dyno until the guard is dropped (when
    /// its response body is finished).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    pub async fn serve<B>(
        &self,
        request: hyper::Request<B>,
        timeouts: &Timeouts,
    ) -> Result<Served, GuestFailure>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        self.component.serve(&self.spec, request, timeouts).await
    }
}

/// A request in progress on a dyno.
pub struct InFlight(Arc<WebDyno>);

impl InFlight {
    pub fn dyno(&self) -> &Arc<WebDyno> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
