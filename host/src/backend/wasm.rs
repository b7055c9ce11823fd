//! The Wasm backend: a web dyno whose requests are served by a WASI 0.2
//! component (`wasi:http/proxy`) on wasmtime, a fresh instance per request
//! (or a kept one, when its process type opts into reuse); a process dyno
//! that runs a `wasi:cli/command` component.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;

use super::{
    BodyError, BoxError, Failure, ProcessBackend, ProcessFailure, RequestBody, Served, Timeouts,
    WebBackend,
};
use crate::capability::ProcessIo;
use crate::logplex::{AppLog, Process};
use crate::runtime::{
    CommandComponent, CommandFailure, CommandSpec, GuestFailure, HttpComponent, InstanceSpec,
    Reuse, SharedInstances,
};

/// One web dyno's component, and what each of its instances gets.
pub struct WasmWeb {
    component: Arc<HttpComponent>,
    spec: InstanceSpec,
    instances: Instances,
}

/// Which instance serves a request.
enum Instances {
    /// A fresh one for every request.
    Fresh,
    /// WASI 0.2 with reuse: a kept instance, one request at a time.
    Kept(Arc<Reuse>),
    /// WASI 0.3 with reuse: a kept instance, several requests at once.
    Shared(SharedInstances),
}

impl WasmWeb {
    /// `reuse`: requests one instance may serve (0: a fresh one for each),
    /// with `concurrency` requests at once in the dyno (and, for a WASI 0.3
    /// component, in one instance, as far as the component accepts them).
    pub fn new(
        component: Arc<HttpComponent>,
        spec: InstanceSpec,
        reuse: u32,
        concurrency: usize,
    ) -> WasmWeb {
        let single_use = component.single_use().filter(|_| reuse > 0);
        if let Some(reason) = single_use {
            // The platform refuses such a formation; one stored before it
            // did, or `renga dev --reuse`, gets fresh instances.
            spec.log.emit(
                crate::logplex::Source::Renga,
                spec.caps.name(),
                format!(
                    "Instance reuse is off for {}: its component {reason}; every request gets a fresh instance",
                    spec.caps.name()
                ),
            );
        }
        let instances = if reuse == 0 || single_use.is_some() {
            Instances::Fresh
        } else if let Some(shared) = component.shared(spec.clone(), reuse, concurrency) {
            Instances::Shared(shared)
        } else {
            Instances::Kept(Arc::new(Reuse::new(reuse, concurrency)))
        };
        WasmWeb {
            component,
            spec,
            instances,
        }
    }
}

#[async_trait::async_trait]
impl WebBackend for WasmWeb {
    async fn serve(
        &self,
        request: http::Request<RequestBody>,
        timeouts: &Timeouts,
    ) -> Result<Served, Failure> {
        let request = request.map(|body| body.map_err(wasi_error));
        let served = match &self.instances {
            Instances::Fresh => {
                let component = &self.component;
                component.serve(&self.spec, request, timeouts, None).await
            }
            Instances::Kept(reuse) => {
                let component = &self.component;
                component
                    .serve(&self.spec, request, timeouts, Some(reuse))
                    .await
            }
            Instances::Shared(shared) => shared.serve(request, timeouts).await,
        }
        .map_err(failure)?;
        Ok(Served {
            response: served
                .response
                .map(|body| Box::pin(body.map_err(|e| Box::new(e) as BoxError)) as _),
            connect: served.connect,
        })
    }

    fn kept(&self) -> usize {
        match &self.instances {
            Instances::Fresh => 0,
            Instances::Kept(reuse) => reuse.kept(),
            Instances::Shared(shared) => shared.alive(),
        }
    }
}

/// A request body's failure, as wasi:http reports it to the guest.
fn wasi_error(e: BodyError) -> wasmtime_wasi_http::Error {
    match e {
        BodyError::TooLarge(limit) => wasmtime_wasi_http::Error::HttpRequestBodySize(Some(limit)),
        BodyError::Client(e) => match e.downcast::<hyper::Error>() {
            Ok(e) => wasmtime_wasi_http::Error::from(*e),
            Err(_) => wasmtime_wasi_http::Error::HttpProtocolError,
        },
    }
}

fn failure(e: GuestFailure) -> Failure {
    match e {
        GuestFailure::Instantiate(why) => Failure::Start(why),
        GuestFailure::Timeout => Failure::Timeout,
        GuestFailure::Trap(why) => Failure::Crashed(why),
        GuestFailure::MemoryExceeded { limit } => Failure::MemoryExceeded { limit },
        GuestFailure::NoResponse => Failure::NoResponse,
        GuestFailure::ErrorResponse(code) => Failure::ErrorResponse(code),
    }
}

/// A command component, and what each of its runs gets.
pub struct WasmProcess {
    component: Arc<CommandComponent>,
    spec: CommandSpec,
}

impl WasmProcess {
    pub fn new(component: Arc<CommandComponent>, spec: CommandSpec) -> WasmProcess {
        WasmProcess { component, spec }
    }
}

#[async_trait::async_trait]
impl ProcessBackend for WasmProcess {
    fn name(&self) -> &Process {
        self.spec.caps.name()
    }

    fn log(&self) -> &AppLog {
        &self.spec.log
    }

    async fn run(
        &self,
        io: ProcessIo,
        time_limit: Option<Duration>,
    ) -> Result<i32, ProcessFailure> {
        let limited;
        let spec = if time_limit == self.spec.time_limit {
            &self.spec
        } else {
            limited = CommandSpec {
                time_limit,
                ..self.spec.clone()
            };
            &limited
        };
        self.component.run(spec, io).await.map_err(|e| match e {
            CommandFailure::Instantiate(why) => ProcessFailure::Start(why),
            CommandFailure::Timeout(limit) => ProcessFailure::Timeout(limit),
            CommandFailure::Trap(why) => ProcessFailure::Crashed(why),
            CommandFailure::MemoryExceeded { limit } => ProcessFailure::MemoryExceeded { limit },
            CommandFailure::Stopped => ProcessFailure::Stopped,
        })
    }
}
