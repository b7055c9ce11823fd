//! WASI 0.3 web processes with instance reuse: each kept instance serves
//! several requests at once.
//!
//! A WASI 0.3 handler is an async export, so one instance can take a new
//! request while others wait on I/O; the component itself says how many
//! through the component model's backpressure. wasmtime's own dispatcher
//! ([`ProxyHandler`], what `wasmtime serve` runs) drives this: a request
//! goes to an instance that can take it (ready for another concurrent call,
//! under the dyno's concurrency, under its reuse count), or to a new one.
//! renga supplies the store (memory limit, CPU turns, capabilities), the
//! timeouts and the log lines.
//!
//! What sharing an instance means for a tenant: the requests in one
//! instance share its memory limit, and a trap ends every request the
//! instance holds (each gets an error; the log says why once). An instance
//! that sat idle for [`IDLE_KEEP`], or served its reuse count, is dropped.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt;
use wasmtime::component::GuestTaskId;
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi_http::handler::{
    ExpirationError, HandlerState, Instance, InstantiationError, Proxy, ProxyHandler, ShouldAccept,
    WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

use super::p3::with_authority;
use super::{GuestBody, GuestFailure, GuestTask, InstanceSpec, Late, Served, Timeouts, web_store};
use crate::logplex::Source;
use crate::runtime::cpu::CpuScheduler;
use crate::runtime::state::DynoState;

/// How long an instance with nothing to do is kept for the next request.
pub const IDLE_KEEP: Duration = Duration::from_secs(10);

/// How long an instance may take to start. The request that asked for it
/// has its own deadline; this bounds the instance's worker, which outlives
/// that request.
const START_LIMIT: Duration = Duration::from_secs(30);

/// How long past the last deadline of the requests it holds an instance
/// whose guest keeps its store busy is given before it is dropped.
const BUSY_GRACE: Duration = Duration::from_secs(1);

/// One WASI 0.3 web dyno's shared instances.
pub struct SharedInstances {
    handler: ProxyHandler<Host>,
}

impl SharedInstances {
    /// Instances that serve up to `max_uses` requests each, at most
    /// `concurrency` at once.
    pub(super) fn new(
        pre: ServicePre<DynoState>,
        scheduler: Arc<CpuScheduler>,
        spec: InstanceSpec,
        max_uses: u32,
        concurrency: usize,
    ) -> SharedInstances {
        SharedInstances {
            handler: ProxyHandler::new(Host {
                pre,
                scheduler,
                spec,
                max_uses: max_uses as usize,
                concurrency: concurrency.max(1),
                alive: Arc::new(AtomicUsize::new(0)),
                streaming: Arc::new(AtomicUsize::new(0)),
            }),
        }
    }

    /// Instances alive right now (serving or idle).
    pub fn alive(&self) -> usize {
        self.handler.state().alive.load(Ordering::Relaxed)
    }

    /// Serves one request in a shared instance.
    pub async fn serve<B>(
        &self,
        request: hyper::Request<B>,
        timeouts: &Timeouts,
    ) -> Result<Served, GuestFailure>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let started = Instant::now();
        let deadline = started + timeouts.response;
        let host = self.handler.state();
        let spec = &host.spec;
        let late = Late::new(spec, request.headers().get("x-request-id").cloned());
        let request = with_authority(request).map(|body| body.map_err(Into::into).boxed_unsync());
        let accepted = Arc::new(std::sync::OnceLock::new());
        let data = RequestData {
            deadline,
            accepted: accepted.clone(),
        };
        let handled = tokio::time::timeout_at(deadline.into(), self.handler.handle(data, request));
        match handled.await {
            Ok(Ok(response)) => {
                let connect = accepted.get().map_or(Duration::ZERO, |at: &Instant| {
                    at.saturating_duration_since(started)
                });
                let streaming = Streaming::new(&host.streaming);
                let response =
                    response.map(|inner| GuestBody::shared(inner, timeouts, late, streaming));
                Ok(Served { response, connect })
            }
            Ok(Err(error)) => Err(failure(&error, spec.memory_limit)),
            Err(_) => Err(GuestFailure::Timeout),
        }
    }
}

/// Why `ProxyHandler::handle` gave no response.
fn failure(error: &wasmtime::Error, memory_limit: u64) -> GuestFailure {
    if error.downcast_ref::<ExpirationError>().is_some() {
        return GuestFailure::Timeout;
    }
    if let Some(code) =
        error.downcast_ref::<wasmtime_wasi_http::p3::bindings::http::types::ErrorCode>()
    {
        return GuestFailure::ErrorResponse(format!("{code:?}"));
    }
    if let Some(start) = error.downcast_ref::<InstantiationError<RequestData>>() {
        if start.error.downcast_ref::<OutOfMemory>().is_some() {
            return GuestFailure::MemoryExceeded {
                limit: memory_limit,
            };
        }
        return GuestFailure::Instantiate(super::describe_error(&start.error));
    }
    // The instance trapped (or ran out of memory) while it held this
    // request; its worker logs why, once for all of them.
    GuestFailure::Trap(format!(
        "the shared instance serving it failed ({})",
        super::describe_error(error)
    ))
}

/// Instantiation stopped by the memory limit.
#[derive(Debug, thiserror::Error)]
#[error("the instance needed more than its memory limit to start")]
struct OutOfMemory;

/// What renga hands wasmtime's dispatcher with each request.
struct RequestData {
    /// When the response head is due (Heroku's H12).
    deadline: Instant,
    /// When an instance took the request, for the router's `connect=`.
    accepted: Arc<std::sync::OnceLock<Instant>>,
}

/// The dispatcher's view of a dyno: how to make an instance.
struct Host {
    pre: ServicePre<DynoState>,
    scheduler: Arc<CpuScheduler>,
    spec: InstanceSpec,
    max_uses: usize,
    concurrency: usize,
    alive: Arc<AtomicUsize>,
    /// Response bodies of this dyno's shared instances still streaming.
    streaming: Arc<AtomicUsize>,
}

/// Counts a response body of a shared instance while it streams.
pub(in crate::runtime) struct Streaming(Arc<AtomicUsize>);

impl Streaming {
    fn new(count: &Arc<AtomicUsize>) -> Streaming {
        count.fetch_add(1, Ordering::Relaxed);
        Streaming(count.clone())
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl HandlerState for Host {
    type StoreData = DynoState;
    type WorkerExpiration = Expiry;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<DynoState, Expiry, Worker>> {
        let mut store = web_store(self.pre.engine(), &self.spec, &self.scheduler);
        let started = tokio::time::timeout(START_LIMIT, self.pre.instantiate_async(&mut store));
        let service = match started.await {
            Ok(Ok(service)) => service,
            Ok(Err(_)) if store.data().limits.exceeded => return Err(OutOfMemory.into()),
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(wasmtime::format_err!(
                    "the instance did not start within {}s",
                    START_LIMIT.as_secs()
                ));
            }
        };
        let due = Arc::new(Mutex::new(None));
        Ok(Instance {
            store,
            proxy: Proxy::P3(service),
            view: http_view,
            expiration: Expiry {
                due: due.clone(),
                streaming: self.streaming.clone(),
                timer: None,
            },
            state: Worker::new(self, due),
        })
    }
}

fn http_view(state: &mut DynoState) -> WasiHttpCtxView<'_> {
    state.http()
}

/// One shared instance's bookkeeping, for as long as it lives.
struct Worker {
    spec: InstanceSpec,
    /// The latest deadline of the requests it took.
    due: Due,
    max_uses: usize,
    concurrency: usize,
    alive: Arc<AtomicUsize>,
    _counted: GuestTask,
}

impl Worker {
    fn new(host: &Host, due: Due) -> Worker {
        host.alive.fetch_add(1, Ordering::Relaxed);
        Worker {
            spec: host.spec.clone(),
            due,
            max_uses: host.max_uses,
            concurrency: host.concurrency,
            alive: host.alive.clone(),
            _counted: GuestTask::new(),
        }
    }
}

impl WorkerState for Worker {
    type StoreData = DynoState;
    type RequestData = RequestData;

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.max_uses {
            ShouldAccept::Never
        } else if concurrent >= self.concurrency {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, DynoState>,
        data: RequestData,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        let _ = data.accepted.set(Instant::now());
        let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        *due = Some(due.map_or(data.deadline, |d: Instant| d.max(data.deadline)));
        drop(due);
        Box::pin(tokio::time::sleep_until(data.deadline.into()))
    }

    fn drop(&self, store: Store<DynoState>, result: wasmtime::Result<()>) {
        let Err(error) = result else { return };
        let why = if store.data().limits.exceeded {
            format!(
                "it needed more than the {} memory limit of this dyno",
                crate::units::ByteSize(self.spec.memory_limit)
            )
        } else if error.downcast_ref::<ExpirationError>().is_some()
            || error.to_string() == "guest timed out"
        {
            "a request it held ran past its timeout".to_string()
        } else {
            format!("it trapped: {}", super::describe_error(&error))
        };
        self.spec.log.emit(
            Source::Renga,
            self.spec.caps.name(),
            format!(
                "Error (Guest failed): a shared instance stopped, with the requests it held, because {why}"
            ),
        );
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.alive.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The latest response deadline of the requests an instance took.
type Due = Arc<Mutex<Option<Instant>>>;

/// When a shared instance is done: every request it holds is past its
/// deadline (each request's own deadline fails it first; this catches a
/// guest that keeps the store too busy for those to fire); its requests are
/// all answered, no response body of the dyno's shared instances is still
/// streaming, and the guest kept working for [`AFTER_RESPONSES`] more (a
/// task it left running, or a request that expired while the guest still
/// works on it); or it has been idle for [`IDLE_KEEP`].
struct Expiry {
    due: Due,
    streaming: Arc<AtomicUsize>,
    /// The timer for the current state and its start.
    timer: Option<(WorkerStatus, Instant, Pin<Box<tokio::time::Sleep>>)>,
}

/// How long a shared instance's guest may keep working once its requests
/// are answered and their bodies sent.
const AFTER_RESPONSES: Duration = Duration::from_secs(1);

impl WorkerExpiration for Expiry {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let this = &mut *self;
        loop {
            let current = matches!(&this.timer, Some((s, t, _)) if *s == status && *t == start);
            if !current {
                let until = match status {
                    WorkerStatus::Requests => {
                        let due = *this.due.lock().unwrap_or_else(|e| e.into_inner());
                        due.unwrap_or(start) + BUSY_GRACE
                    }
                    WorkerStatus::PostReturn => start + AFTER_RESPONSES,
                    WorkerStatus::Idle => start + IDLE_KEEP,
                };
                this.timer = Some((
                    status,
                    start,
                    Box::pin(tokio::time::sleep_until(until.into())),
                ));
            }
            let Some((_, _, sleep)) = &mut this.timer else {
                return Poll::Pending;
            };
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if status != WorkerStatus::PostReturn || this.streaming.load(Ordering::Relaxed) == 0 {
                return Poll::Ready(());
            }
            // A body still streams (bounded by its own idle timeout): look
            // again a little later.
            let again = Instant::now() + AFTER_RESPONSES;
            sleep.as_mut().reset(again.into());
        }
    }
}
