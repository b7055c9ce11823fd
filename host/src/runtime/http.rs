//! Web processes: a pre-instantiated `wasi:http/proxy` component, and one
//! fresh instance per request, or, when a process type opts in, an instance
//! kept for up to N requests.
//!
//! By default each request gets its own store (its own memory limit,
//! environment and log streams), so nothing leaks between requests and a
//! guest that traps, loops or eats memory fails only its own request. With
//! reuse, an instance that answered cleanly goes back to its dyno for the
//! next request; one that trapped, timed out or hit its memory limit is
//! dropped. The guest runs on its own task
//! so it can stream a body after answering; the task is bounded by the
//! request timeout before the answer, by the idle timeout while the body
//! flows, and by a short grace period once the client has what it asked for.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use wasmtime::Store;
use wasmtime::component::Component;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use super::artefact::Provenance;
use super::cpu::{AppCpu, CpuScheduler};
use super::state::{Cpu, DynoState, new_store};
use super::{LoadError, exported_interfaces};
use crate::capability::{DynoCapabilities, InstanceInputs};
use crate::logplex::{AppLog, Source};

mod p3;
mod shared;

pub use shared::SharedInstances;

/// The interface a WASI 0.2 web process exports.
const INCOMING_HANDLER: &str = "wasi:http/incoming-handler@0.2";
/// The interface a WASI 0.3 web process exports (`wasi:http/service`).
const HANDLER_P3: &str = "wasi:http/handler@0.3";

/// A web process's component, compiled and pre-instantiated once.
pub struct HttpComponent {
    pre: Pre,
    /// Every interface it imports, `wasi:keyvalue/store@0.2.0-draft2`.
    imports: Vec<String>,
    scheduler: Arc<CpuScheduler>,
    provenance: Provenance,
    /// The sha256 its precompiled artefact is filed under.
    digest: String,
    /// Why its instances cannot be kept between requests, if they cannot
    /// (see [`super::single_use_reason`]).
    single_use: Option<String>,
    /// The size of its compiled code's mapping.
    code_bytes: usize,
}

impl std::fmt::Debug for HttpComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpComponent")
            .field("provenance", &self.provenance)
            .finish_non_exhaustive()
    }
}

/// A component of either world, pre-instantiated.
enum Pre {
    /// `wasi:http/proxy@0.2`: a call of `incoming-handler.handle` per request.
    P2(ProxyPre<DynoState>),
    /// `wasi:http/service@0.3`: an async `handler.handle` per request.
    P3(ServicePre<DynoState>),
}

impl HttpComponent {
    pub(super) fn new(
        name: &str,
        runtime: &super::Runtime,
        component: Component,
        provenance: Provenance,
        digest: String,
        single_use: Option<String>,
    ) -> Result<HttpComponent, LoadError> {
        let exports = exported_interfaces(component.engine(), &component);
        let image = component.image_range();
        let code_bytes = image.end.addr() - image.start.addr();
        let p3 = exports.iter().any(|e| e.starts_with(HANDLER_P3));
        if !p3 && !exports.iter().any(|e| e.starts_with(INCOMING_HANDLER)) {
            return Err(LoadError::WrongWorld {
                name: name.to_string(),
                exports: describe_exports(&exports),
            });
        }
        let (pre, imports) = runtime.link(name, &component)?;
        let wrong = |e: wasmtime::Error| LoadError::WrongWorld {
            name: name.to_string(),
            exports: format!("{} ({e:#})", describe_exports(&exports)),
        };
        let pre = if p3 {
            Pre::P3(ServicePre::new(pre).map_err(wrong)?)
        } else {
            Pre::P2(ProxyPre::new(pre).map_err(wrong)?)
        };
        Ok(HttpComponent {
            pre,
            imports,
            scheduler: runtime.scheduler.clone(),
            provenance,
            digest,
            single_use,
            code_bytes,
        })
    }

    /// The size of its compiled code's mapping (the artefact it was mapped
    /// from or compiled into).
    pub fn code_bytes(&self) -> usize {
        self.code_bytes
    }

    /// Why its instances cannot be kept between requests ("was built by
    /// componentize-js 0.23.0, whose engine ..."), if they cannot.
    pub fn single_use(&self) -> Option<&str> {
        self.single_use.as_deref()
    }

    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Every interface the component imports.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// Whether the machine code was mapped from the cache or compiled now.
    pub fn provenance(&self) -> Provenance {
        self.provenance
    }

    /// Whether it is a WASI 0.3 component (`wasi:http/service`).
    pub fn is_p3(&self) -> bool {
        matches!(self.pre, Pre::P3(_))
    }

    /// For a WASI 0.3 component: instances kept for up to `max_uses`
    /// requests each, serving up to `concurrency` of them at once (a WASI
    /// 0.2 component serves one request at a time: see [`Reuse`]).
    pub fn shared(
        &self,
        spec: InstanceSpec,
        max_uses: u32,
        concurrency: usize,
    ) -> Option<SharedInstances> {
        match &self.pre {
            Pre::P3(pre) => Some(SharedInstances::new(
                pre.clone(),
                self.scheduler.clone(),
                spec,
                max_uses,
                concurrency,
            )),
            Pre::P2(_) => None,
        }
    }

    /// Serves one request: in a fresh instance, or in a kept one when the
    /// dyno reuses instances and has one ready (WASI 0.2 components; a
    /// WASI 0.3 one gets a fresh instance for every request).
    pub async fn serve<B>(
        &self,
        spec: &InstanceSpec,
        request: hyper::Request<B>,
        timeouts: &Timeouts,
        reuse: Option<&Arc<Reuse>>,
    ) -> Result<Served, GuestFailure>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        match &self.pre {
            Pre::P2(pre) => self.serve_p2(pre, spec, request, timeouts, reuse).await,
            Pre::P3(pre) => p3::serve(pre, &self.scheduler, spec, request, timeouts).await,
        }
    }

    async fn serve_p2<B>(
        &self,
        pre: &ProxyPre<DynoState>,
        spec: &InstanceSpec,
        request: hyper::Request<B>,
        timeouts: &Timeouts,
        reuse: Option<&Arc<Reuse>>,
    ) -> Result<Served, GuestFailure>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let started = Instant::now();
        let deadline = started + timeouts.response;
        let request_id = request.headers().get("x-request-id").cloned();
        let kept = reuse.and_then(|r| r.take());
        let (mut store, kept_proxy, uses) = match kept {
            Some(kept) => (kept.store, Some(kept.proxy), kept.uses),
            None => {
                let store = web_store(pre.engine(), spec, &self.scheduler);
                (store, None, 0)
            }
        };
        store.set_epoch_deadline(1);
        // A kept instance starts each request cool.
        store.data_mut().ticks = 0;

        let (answer_tx, answer_rx) = tokio::sync::oneshot::channel();
        let request = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .map_err(|e| GuestFailure::Instantiate(format!("{e:#}")))?;
        let outparam = store
            .data_mut()
            .http()
            .new_response_outparam(answer_tx)
            .map_err(|e| GuestFailure::Instantiate(format!("{e:#}")))?;

        let proxy = match kept_proxy {
            Some(proxy) => proxy,
            None => {
                let meter = spec.caps.meter().clone();
                let started = tokio::time::timeout_at(
                    deadline.into(),
                    meter.timed(pre.instantiate_async(&mut store)),
                )
                .await;
                instantiated(started, store.data().limits.exceeded, spec.memory_limit)?
            }
        };
        let connect = started.elapsed();

        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        // A failure after the guest set its response head can no longer
        // become an error page: the task and the body meet here to report it.
        let late = Late::new(spec, request_id);
        let task_late = late.clone();
        let grace = timeouts.grace;
        let reuse_for_failure = reuse;
        let reuse = reuse.cloned();
        let meter = spec.caps.meter().clone();
        let task = tokio::spawn(async move {
            let _counted = GuestTask::new();
            let call = meter.timed(
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, outparam),
            );
            let outcome = tokio::select! {
                biased;
                result = call => Outcome::of(result),
                () = abandoned(done_rx, grace) => Outcome::Abandoned,
            };
            let exceeded = store.data().limits.exceeded;
            task_late.guest_ended(&outcome, exceeded);
            if let (Outcome::Returned, false, Some(reuse)) = (&outcome, exceeded, reuse) {
                reuse.put(Kept {
                    store,
                    proxy,
                    uses: uses + 1,
                });
            }
            (outcome, exceeded)
        });
        let task = AbortOnDrop(Some(task));

        let result = match tokio::time::timeout_at(deadline.into(), answer_rx).await {
            Ok(Ok(Ok(response))) => {
                let response = response.map(|inner| GuestBody::new(inner, timeouts, late, done_tx));
                // The task now ends on its own: when the guest returns, or a
                // grace period after the body is finished or dropped.
                task.detach();
                Ok(Served { response, connect })
            }
            Ok(Ok(Err(code))) => Err(GuestFailure::ErrorResponse(format!("{code:?}"))),
            // The guest dropped its response-outparam without answering: it
            // returned, trapped or ran out of memory.
            Ok(Err(_)) => Err(task.failure(deadline, spec.memory_limit).await),
            // Dropping the task's future drops the instance with it.
            Err(_) => Err(GuestFailure::Timeout),
        };
        if let (Err(failure), true, Some(reuse)) = (&result, uses > 0, reuse_for_failure) {
            // Some components cannot serve twice (componentize-js 0.23's
            // event loop hangs on a second request): after a kept instance
            // fails, this dyno stops keeping instances.
            if reuse.disable() {
                spec.log.emit(
                    Source::Renga,
                    spec.caps.name(),
                    format!(
                        "An instance failed on a request after serving {uses} ({failure}); {} now gives every request a fresh instance (set `--reuse 0` for this process type if its component cannot serve twice)",
                        spec.caps.name()
                    ),
                );
            }
        }
        result
    }
}

/// A new store for an instance of a web dyno: its capabilities, memory
/// limit and CPU turns.
pub(super) fn web_store(
    engine: &wasmtime::Engine,
    spec: &InstanceSpec,
    scheduler: &Arc<CpuScheduler>,
) -> Store<DynoState> {
    let mut store = new_store(
        engine,
        DynoState::new(&spec.caps, spec.memory_limit, InstanceInputs::default()),
        Cpu {
            scheduler: scheduler.clone(),
            app: spec.cpu.clone(),
        },
    );
    store.set_epoch_deadline(1);
    store
}

/// An instance started within the request's deadline, or why not.
fn instantiated<T>(
    started: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
    exceeded: bool,
    memory_limit: u64,
) -> Result<T, GuestFailure> {
    match started {
        Err(_) => Err(GuestFailure::Timeout),
        Ok(Err(_)) if exceeded => Err(GuestFailure::MemoryExceeded {
            limit: memory_limit,
        }),
        Ok(Err(e)) => Err(GuestFailure::Instantiate(describe_error(&e))),
        Ok(Ok(instance)) => Ok(instance),
    }
}

/// Resolves a grace period after the client has its whole answer (or has
/// gone): the guest may finish what it was doing, briefly, then it is
/// stopped.
async fn abandoned(done: tokio::sync::oneshot::Receiver<()>, grace: Duration) {
    let _ = done.await;
    tokio::time::sleep(grace).await;
}

/// Guest tasks alive right now, across every app.
static GUEST_TASKS: AtomicUsize = AtomicUsize::new(0);

/// Tasks running a guest's request handler (each holds an instance).
pub fn live_guest_tasks() -> usize {
    GUEST_TASKS.load(Ordering::Relaxed)
}

/// Counts a guest task for as long as it lives.
pub(super) struct GuestTask;

impl GuestTask {
    fn new() -> GuestTask {
        GUEST_TASKS.fetch_add(1, Ordering::Relaxed);
        GuestTask
    }
}

impl Drop for GuestTask {
    fn drop(&mut self) {
        GUEST_TASKS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where the guest task and the response body meet to report a failure that
/// came after the guest set its response head: whichever of the two ends
/// second writes the line. A guest that fails while its body streams cuts
/// the body short (the body ends with an error, the client sees the
/// connection cut, the router logs H18); one that fails after the body was
/// complete only gets the log line.
pub(super) struct Late {
    log: AppLog,
    dyno: crate::logplex::Process,
    request_id: Option<http::HeaderValue>,
    memory_limit: u64,
    step: Mutex<LateStep>,
}

enum LateStep {
    Running,
    Failed(String),
    BodyEnded,
}

impl Late {
    /// For one request of a dyno.
    fn new(spec: &InstanceSpec, request_id: Option<http::HeaderValue>) -> Arc<Late> {
        Arc::new(Late {
            log: spec.log.clone(),
            dyno: spec.caps.name().clone(),
            request_id,
            memory_limit: spec.memory_limit,
            step: Mutex::new(LateStep::Running),
        })
    }

    /// The guest's call ended (the task calls this once).
    fn guest_ended(&self, outcome: &Outcome, exceeded: bool) {
        let reason = match (outcome, exceeded) {
            (_, true) => format!(
                "it needed more than the {} memory limit of this dyno",
                crate::units::ByteSize(self.memory_limit)
            ),
            (Outcome::Trapped(e), false) => format!("it trapped: {}", describe_error(e)),
            _ => return,
        };
        let mut step = self.step.lock().unwrap_or_else(|e| e.into_inner());
        match *step {
            LateStep::BodyEnded => {
                drop(step);
                self.emit(&format!(
                    "the guest failed after its response was sent, because {reason}"
                ));
            }
            _ => *step = LateStep::Failed(reason),
        }
    }

    /// The body ended or was dropped; true when the guest had failed, so
    /// that the body ends with an error rather than looking complete.
    fn body_ended(&self) -> bool {
        let mut step = self.step.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *step, LateStep::BodyEnded) {
            LateStep::Failed(reason) => {
                drop(step);
                self.emit(&format!("the response was cut short because {reason}"));
                true
            }
            _ => false,
        }
    }

    fn emit(&self, what: &str) {
        let id = self
            .request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        self.log.emit(
            Source::Renga,
            &self.dyno,
            format!("Error (Guest failed while responding): request {id}: {what}"),
        );
    }
}

/// Instances a dyno keeps between requests, when its process type opts in.
pub struct Reuse {
    /// Requests one instance may serve before it is dropped.
    max_uses: u32,
    /// Instances kept at most (the dyno's concurrency).
    max_kept: usize,
    kept: Mutex<Vec<Kept>>,
    /// Set once a kept instance failed: no more keeping.
    disabled: std::sync::atomic::AtomicBool,
}

struct Kept {
    store: Store<DynoState>,
    proxy: Proxy,
    uses: u32,
}

impl Reuse {
    pub fn new(max_uses: u32, max_kept: usize) -> Reuse {
        Reuse {
            max_uses,
            max_kept,
            kept: Mutex::new(Vec::new()),
            disabled: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn take(&self) -> Option<Kept> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// Stops keeping instances; true the first time.
    fn disable(&self) -> bool {
        let first = !self
            .disabled
            .swap(true, std::sync::atomic::Ordering::AcqRel);
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).clear();
        first
    }

    fn put(&self, kept: Kept) {
        if kept.uses >= self.max_uses || self.disabled.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let mut list = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if list.len() < self.max_kept {
            list.push(kept);
        }
    }

    /// Instances kept right now.
    pub fn kept(&self) -> usize {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

pub(super) enum Outcome {
    Returned,
    Trapped(wasmtime::Error),
    Abandoned,
}

impl Outcome {
    fn of(call: wasmtime::Result<()>) -> Outcome {
        match call {
            Ok(()) => Outcome::Returned,
            Err(e) => Outcome::Trapped(e),
        }
    }
}

/// Aborts the guest task if the request is abandoned before it is answered
/// (a timeout, or a client that went away).
pub(super) struct AbortOnDrop(Option<tokio::task::JoinHandle<(Outcome, bool)>>);

impl AbortOnDrop {
    /// Lets the task run to its own end. Dropping a `JoinHandle` detaches
    /// the task and frees it once it ends; forgetting one would leak it.
    fn detach(mut self) {
        self.0.take();
    }

    async fn join(mut self) -> Option<(Outcome, bool)> {
        let handle = self.0.as_mut()?;
        handle.await.ok()
    }

    /// Why the guest's call ended without an answer (waiting for it until
    /// `deadline`): it trapped, ran out of memory, or returned nothing.
    async fn failure(self, deadline: Instant, memory_limit: u64) -> GuestFailure {
        match tokio::time::timeout_at(deadline.into(), self.join()).await {
            Err(_) => GuestFailure::Timeout,
            Ok(Some((_, true))) => GuestFailure::MemoryExceeded {
                limit: memory_limit,
            },
            Ok(Some((Outcome::Trapped(e), false))) => GuestFailure::Trap(describe_error(&e)),
            Ok(_) => GuestFailure::NoResponse,
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// What an instance of a web process gets from its dyno.
#[derive(Clone)]
pub struct InstanceSpec {
    /// What the dyno's capabilities give each instance (its name, `web.1`,
    /// its environment, its add-ons).
    pub caps: Arc<DynoCapabilities>,
    /// Linear memory the instance may use, in bytes.
    pub memory_limit: u64,
    /// Where the guest's stdout and stderr go.
    pub log: AppLog,
    /// The app's claim on the CPU, shared by all its instances.
    pub cpu: Arc<AppCpu>,
}

/// How long a request may take.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// From arrival to the response head (Heroku's H12, 30 s).
    pub response: Duration,
    /// Longest pause while the guest streams the body (Heroku's 55 s window).
    pub idle: Duration,
    /// How long a guest may keep running after its response is complete.
    pub grace: Duration,
}

impl Timeouts {
    pub fn new(response: Duration) -> Timeouts {
        Timeouts {
            response,
            idle: Duration::from_secs(55).max(response),
            grace: Duration::from_secs(1).min(response),
        }
    }
}

/// A response head from the guest, its body still streaming.
pub struct Served {
    pub response: hyper::Response<GuestBody>,
    /// Time to get a running instance (Heroku's `connect=`).
    pub connect: Duration,
}

/// Why a request got no response from the guest.
#[derive(Debug, thiserror::Error)]
pub enum GuestFailure {
    #[error("the instance could not start: {0}")]
    Instantiate(String),
    #[error("the guest did not answer in time")]
    Timeout,
    #[error("the guest trapped: {0}")]
    Trap(String),
    #[error("the guest needed more than its memory limit")]
    MemoryExceeded { limit: u64 },
    #[error("the guest returned without sending a response")]
    NoResponse,
    #[error("the guest answered with an error: {0}")]
    ErrorResponse(String),
}

/// A guest's response body, as it streams. Ends with an error if the guest
/// stalls for longer than the idle timeout, or failed before finishing it.
pub struct GuestBody {
    inner: Inner,
    idle: Duration,
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    late: Arc<Late>,
    /// Dropped with the body: tells the guest task the client is done (a
    /// shared instance's guest runs on, for its other requests).
    _done: Option<tokio::sync::oneshot::Sender<()>>,
    /// Counted while it streams, for a shared instance.
    _streaming: Option<shared::Streaming>,
}

/// The body as the guest's instance streams it.
enum Inner {
    /// From an instance of its own (WASI 0.2, or 0.3 without reuse).
    Own(HyperOutgoingBody),
    /// From a WASI 0.3 instance shared with other requests.
    Shared(wasmtime_wasi_http::WasiBody),
}

impl GuestBody {
    /// A guest's streaming body, cut short past the idle timeout; dropping
    /// it (`done`) tells the guest's task the client is finished.
    fn new(
        inner: HyperOutgoingBody,
        timeouts: &Timeouts,
        late: Arc<Late>,
        done: tokio::sync::oneshot::Sender<()>,
    ) -> GuestBody {
        GuestBody {
            inner: Inner::Own(inner),
            idle: timeouts.idle,
            stall: None,
            late,
            _done: Some(done),
            _streaming: None,
        }
    }

    /// A body streamed by a shared WASI 0.3 instance.
    fn shared(
        inner: wasmtime_wasi_http::WasiBody,
        timeouts: &Timeouts,
        late: Arc<Late>,
        streaming: shared::Streaming,
    ) -> GuestBody {
        GuestBody {
            inner: Inner::Shared(inner),
            idle: timeouts.idle,
            stall: None,
            late,
            _done: None,
            _streaming: Some(streaming),
        }
    }
}

impl Drop for GuestBody {
    fn drop(&mut self) {
        self.late.body_ended();
    }
}

impl Body for GuestBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let frame = match &mut this.inner {
            Inner::Own(body) => Pin::new(body).poll_frame(cx),
            Inner::Shared(body) => Pin::new(body).poll_frame(cx),
        };
        match frame {
            Poll::Pending => {
                let idle = this.idle;
                let stall = this
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match stall.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpResponseTimeout)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            Poll::Ready(None) => {
                this.stall = None;
                if this.late.body_ended() {
                    Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpProtocolError)))
                } else {
                    Poll::Ready(None)
                }
            }
            Poll::Ready(Some(Err(e))) => {
                this.stall = None;
                this.late.body_ended();
                Poll::Ready(Some(Err(e)))
            }
            ready => {
                this.stall = None;
                ready
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Own(body) => body.is_end_stream(),
            Inner::Shared(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Own(body) => body.size_hint(),
            Inner::Shared(body) => body.size_hint(),
        }
    }
}

/// One line for the log: the trap (or error) and where in the guest it
/// happened, without wasmtime's multi-line backtrace.
pub(super) fn describe_error(error: &wasmtime::Error) -> String {
    let mut text = match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("wasm trap: {trap}"),
        None => format!("{error:#}"),
    };
    if let Some(trace) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
        let frames: Vec<String> = trace
            .frames()
            .iter()
            .filter_map(|f| f.func_name().map(str::to_string))
            .take(3)
            .collect();
        if !frames.is_empty() {
            text.push_str(" in ");
            text.push_str(&frames.join(" <- "));
        }
    }
    text.replace('\n', " ")
}

fn describe_exports(exports: &[String]) -> String {
    if exports.is_empty() {
        "nothing".to_string()
    } else {
        let mut text = exports.join(", ");
        if exports.iter().any(|e| e.starts_with("wasi:cli/run@")) {
            text.push_str(
                " (a command component: it can run as a worker or one-off process, not as web)",
            );
        }
        text
    }
}
