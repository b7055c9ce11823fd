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
    CommandComponent, CommandFailure, CommandSpec, GuestFailure, HttpComponent, InstanceSpec, Reuse,
};

/// One web dyno's component, and what each of its instances gets.
pub struct WasmWeb {
    component: Arc<HttpComponent>,
    spec: InstanceSpec,
    reuse: Option<Arc<Reuse>>,
}

impl WasmWeb {
    /// `reuse`: requests one instance may serve (0: a fresh one for each),
    /// with `concurrency` requests at once.
    pub fn new(
        component: Arc<HttpComponent>,
        spec: InstanceSpec,
        reuse: u32,
        concurrency: usize,
    ) -> WasmWeb {
        WasmWeb {
            component,
            spec,
            reuse: (reuse > 0).then(|| Arc::new(Reuse::new(reuse, concurrency))),
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
        let served = self
            .component
            .serve(&self.spec, request, timeouts, self.reuse.as_ref())
            .await
            .map_err(failure)?;
        Ok(Served {
            response: served
                .response
                .map(|body| Box::pin(body.map_err(|e| Box::new(e) as BoxError)) as _),
            connect: served.connect,
        })
    }

    fn kept(&self) -> usize {
        self.reuse.as_ref().map_or(0, |r| r.kept())
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
