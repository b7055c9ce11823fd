//! router: HTTP in, to an app's web dynos, by `Host`.
//!
//! Owns the listener, connection limits (header size, body size, slow
//! clients), the forwarding headers, the one log line per request in
//! Heroku's format, the spreading of requests over an app's web dynos (the
//! least busy one with a free slot; a bounded backlog, then H11), and
//! scale to zero: an idle app's dynos are dropped and the next request waits
//! for them to be rebuilt. It reads which dynos serve an app from an
//! [`AppRoute`] (written by whoever manages dynos) without taking a lock,
//! and it never touches wasmtime or the disk.

mod access;
mod forward;
mod io;
mod proxy;

pub use forward::{ClusterRouting, Elsewhere, Peer};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::backend::Timeouts;
use crate::dyno::{InFlight, WebDyno};
use crate::logplex::{AppLog, Process, Source};
use crate::units::HumanDuration;

/// Limits that protect the router from its clients.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// Request line plus headers, in bytes (431 past it).
    pub max_header_bytes: usize,
    /// Request body, in bytes (413 past it).
    pub max_body_bytes: u64,
    /// A client must send its whole request head within this time.
    pub header_timeout: Duration,
    /// A connection with no byte in either direction for this long is closed.
    pub idle_timeout: Duration,
    /// On shutdown, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
    /// On a cluster: this host's name and the forwarding secret.
    pub cluster: Option<Arc<ClusterRouting>>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            max_header_bytes: 64 << 10,
            max_body_bytes: 100 << 20,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(55),
            shutdown_grace: Duration::from_secs(30),
            cluster: None,
        }
    }
}

/// Finds the app a request is for.
pub trait RouteTable: Send + Sync + 'static {
    /// `host` is lowercase and without a port.
    fn lookup(&self, host: &str) -> Option<Arc<AppRoute>>;
}

/// Every request goes to one app, whatever its `Host` (`renga dev`).
pub struct SingleApp(pub Arc<AppRoute>);

impl RouteTable for SingleApp {
    fn lookup(&self, _host: &str) -> Option<Arc<AppRoute>> {
        Some(self.0.clone())
    }
}

/// What the router needs to know about one app; its web side is swapped
/// whole, atomically, when its release, formation or maintenance flag
/// changes, and when it falls asleep or wakes.
pub struct AppRoute {
    name: Arc<str>,
    log: AppLog,
    web: ArcSwap<WebState>,
    /// When the app last got a request, in ms since `born`.
    last_request: AtomicU64,
    /// Unload the web dynos after this long without a request (0: never).
    idle_after_ms: AtomicU64,
    born: Instant,
    /// One wake at a time; requests that arrive meanwhile wait for it.
    waking: tokio::sync::Mutex<()>,
    /// What the router does for the app without a dyno (refusals, wakes).
    meter: Arc<crate::metrics::DynoMeter>,
    /// On a cluster, when this host runs none of the app's web dynos: the
    /// hosts that do, which its requests are forwarded to.
    elsewhere: arc_swap::ArcSwapOption<Elsewhere>,
}

/// Rebuilds an app's web dynos after it slept: from precompiled code, so in
/// milliseconds.
#[async_trait::async_trait]
pub trait Wake: Send + Sync {
    async fn wake(&self) -> Result<Vec<Arc<WebDyno>>, String>;
}

/// An app's web side at one moment.
pub struct WebState {
    /// Web dynos of the current release; empty means `web=0` (H14), or that
    /// the app sleeps when `wake` is set.
    pub dynos: Vec<Arc<WebDyno>>,
    /// Answer every request with 503 H80.
    pub maintenance: bool,
    pub timeouts: Timeouts,
    /// How to bring the dynos back after the app is unloaded; `None` for an
    /// app that never sleeps.
    pub wake: Option<Arc<dyn Wake>>,
    /// Whether this is the unloaded state.
    asleep: bool,
    /// Since when this state holds (ms since the epoch).
    pub since: u64,
    /// One permit per request slot of every dyno: a request holding one is
    /// sure to find a dyno with a free slot.
    slots: Arc<tokio::sync::Semaphore>,
    /// Requests holding a slot or waiting for one. A slot given back
    /// leaves this count at once, so a kept connection's next request never
    /// finds its own previous one still counted.
    admitted: Arc<AtomicUsize>,
    /// Where the next search for the least busy dyno starts, so that equally
    /// busy dynos take turns.
    next: AtomicUsize,
}

/// How long a request may wait in an app's backlog for a free dyno slot.
pub const BACKLOG_WAIT: Duration = Duration::from_secs(5);

/// Why a request got no dyno.
#[derive(Debug, PartialEq, Eq)]
pub enum NoDyno {
    /// `web=0`.
    NoneRunning,
    /// Every slot is busy and the backlog is full, or the wait was too long.
    BacklogTooDeep,
}

/// A request counted in its app (holding a slot or waiting for one);
/// uncounted when dropped.
struct Admitted {
    count: Arc<AtomicUsize>,
    /// Requests that were counted before this one.
    ahead: usize,
}

impl Admitted {
    fn take(count: &Arc<AtomicUsize>) -> Admitted {
        let ahead = count.fetch_add(1, Ordering::AcqRel);
        Admitted {
            count: count.clone(),
            ahead,
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request's slot on a dyno; given back when dropped.
pub struct Slot {
    in_flight: InFlight,
    _permit: tokio::sync::OwnedSemaphorePermit,
    _admitted: Admitted,
}

impl Slot {
    pub fn dyno(&self) -> &Arc<WebDyno> {
        self.in_flight.dyno()
    }
}

impl WebState {
    pub fn new(dynos: Vec<Arc<WebDyno>>, maintenance: bool, timeouts: Timeouts) -> WebState {
        WebState::build(dynos, maintenance, timeouts, None, false)
    }

    /// A state that can be unloaded when idle and woken by `wake`.
    pub fn waking(
        dynos: Vec<Arc<WebDyno>>,
        maintenance: bool,
        timeouts: Timeouts,
        wake: Arc<dyn Wake>,
    ) -> WebState {
        WebState::build(dynos, maintenance, timeouts, Some(wake), false)
    }

    /// An app this host runs no web dyno of, kept ready: asleep, woken by
    /// a request no other host took.
    pub fn standby(maintenance: bool, timeouts: Timeouts, wake: Arc<dyn Wake>) -> WebState {
        WebState::build(Vec::new(), maintenance, timeouts, Some(wake), true)
    }

    fn build(
        dynos: Vec<Arc<WebDyno>>,
        maintenance: bool,
        timeouts: Timeouts,
        wake: Option<Arc<dyn Wake>>,
        asleep: bool,
    ) -> WebState {
        let slots: usize = dynos.iter().map(|d| d.concurrency()).sum();
        WebState {
            dynos,
            maintenance,
            timeouts,
            wake,
            asleep,
            since: crate::store::now_ms(),
            slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            admitted: Arc::new(AtomicUsize::new(0)),
            next: AtomicUsize::new(0),
        }
    }

    /// The same app, unloaded: no dynos, only the way back.
    fn asleep(&self) -> WebState {
        WebState::build(
            Vec::new(),
            self.maintenance,
            self.timeouts,
            self.wake.clone(),
            true,
        )
    }

    /// The same state with maintenance mode switched.
    pub fn with_maintenance(&self, maintenance: bool) -> WebState {
        let mut state = WebState::build(
            self.dynos.clone(),
            maintenance,
            self.timeouts,
            self.wake.clone(),
            self.asleep,
        );
        state.since = self.since;
        state
    }

    pub fn is_asleep(&self) -> bool {
        self.asleep
    }

    /// Requests in progress on every dyno.
    pub fn in_flight(&self) -> usize {
        self.dynos.iter().map(|d| d.in_flight()).sum()
    }

    /// A slot on the least busy dyno. When every slot is taken the request
    /// waits in the app's backlog, which holds as many requests as the app
    /// has slots, for at most [`BACKLOG_WAIT`].
    pub async fn acquire(&self) -> Result<Slot, NoDyno> {
        if self.dynos.is_empty() {
            return Err(NoDyno::NoneRunning);
        }
        let deadline = tokio::time::Instant::now() + BACKLOG_WAIT;
        // Counted until its slot is given back, or its wait ends however it
        // ends (a client that goes away while waiting too).
        let admitted = Admitted::take(&self.admitted);
        let capacity: usize = self.dynos.iter().map(|d| d.concurrency()).sum();
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // Every slot taken, and as many requests as there are slots
                // already waiting.
                if admitted.ahead >= 2 * capacity {
                    return Err(NoDyno::BacklogTooDeep);
                }
                let waited =
                    tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned()).await;
                match waited {
                    Ok(Ok(permit)) => permit,
                    _ => return Err(NoDyno::BacklogTooDeep),
                }
            }
        };
        // The permit guarantees a free slot somewhere; another request may
        // take the one seen first, so look again until one is ours, within
        // the same backlog deadline. Each pass tries the least busy dyno,
        // starting at a rotating index so that equally busy dynos take turns.
        let n = self.dynos.len();
        loop {
            let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
            let least = (0..n)
                .map(|i| &self.dynos[(start + i) % n])
                .filter(|d| d.in_flight() < d.concurrency())
                .min_by_key(|d| d.in_flight());
            if let Some(in_flight) = least.and_then(|d| d.try_begin()) {
                return Ok(Slot {
                    in_flight,
                    _permit: permit,
                    _admitted: admitted,
                });
            }
            if least.is_none() {
                // Only when a slot is still held through an older state of
                // the same dynos (maintenance mode switched under load).
                if tokio::time::Instant::now() >= deadline {
                    return Err(NoDyno::BacklogTooDeep);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            } else {
                // Lost a race for the slot seen: let the winner run first.
                tokio::task::yield_now().await;
            }
        }
    }
}

impl AppRoute {
    pub fn new(name: impl Into<Arc<str>>, log: AppLog, web: WebState) -> AppRoute {
        AppRoute {
            name: name.into(),
            log,
            web: ArcSwap::from_pointee(web),
            last_request: AtomicU64::new(0),
            idle_after_ms: AtomicU64::new(0),
            born: Instant::now(),
            waking: tokio::sync::Mutex::new(()),
            meter: crate::metrics::DynoMeter::off(),
            elsewhere: arc_swap::ArcSwapOption::empty(),
        }
    }

    /// Forwards the app's requests to these hosts (`None`: serves them
    /// here).
    pub fn send_elsewhere(&self, elsewhere: Option<Elsewhere>) {
        self.elsewhere.store(elsewhere.map(Arc::new));
    }

    pub fn elsewhere(&self) -> Option<Arc<Elsewhere>> {
        self.elsewhere.load_full()
    }

    /// Counts what the router does for the app without a dyno in `meter`.
    pub fn with_meter(mut self, meter: Arc<crate::metrics::DynoMeter>) -> AppRoute {
        self.meter = meter;
        self
    }

    pub fn meter(&self) -> &Arc<crate::metrics::DynoMeter> {
        &self.meter
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log(&self) -> &AppLog {
        &self.log
    }

    /// Switches the app to a new state. Requests already running keep the
    /// dynos they started on until they finish.
    pub fn set(&self, web: WebState) {
        self.touch();
        self.web.store(Arc::new(web));
    }

    pub fn current(&self) -> Arc<WebState> {
        self.web.load_full()
    }

    /// Sets how long the app may go without a request before it is unloaded
    /// (`None`: never).
    pub fn set_idle_after(&self, after: Option<Duration>) {
        let ms = after.map_or(0, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
        });
        self.idle_after_ms.store(ms, Ordering::Relaxed);
    }

    /// Records a request (or a change) now.
    fn touch(&self) {
        let now = self.born.elapsed().as_millis() as u64;
        self.last_request.store(now, Ordering::Relaxed);
    }

    /// Unloads the app's web dynos if it has had no request for its idle
    /// period and none is in flight: its instances, pre-instantiated
    /// component and mapped code are freed once the last reference goes.
    /// Returns whether it fell asleep.
    pub fn sleep_if_idle(&self) -> bool {
        let idle_after = self.idle_after_ms.load(Ordering::Relaxed);
        if idle_after == 0 {
            return false;
        }
        let now = self.born.elapsed().as_millis() as u64;
        if now.saturating_sub(self.last_request.load(Ordering::Relaxed)) < idle_after {
            return false;
        }
        let current = self.current();
        if current.asleep || current.wake.is_none() || current.dynos.is_empty() {
            return false;
        }
        if current.in_flight() > 0 {
            return false;
        }
        let asleep = Arc::new(current.asleep());
        let previous = self.web.compare_and_swap(&current, asleep);
        if !Arc::ptr_eq(&previous, &current) {
            return false;
        }
        self.log.emit(
            Source::Renga,
            &Process::from("web"),
            format!(
                "Idle for {}: unloaded {} web dyno(s); the next request wakes them",
                HumanDuration(Duration::from_millis(idle_after)),
                current.dynos.len()
            ),
        );
        // The last reference to the dynos frees their instances, and with
        // them the component's code when nothing keeps it (0.4–0.7 ms for
        // Python's): not on an async worker.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn_blocking(move || drop((previous, current)));
        }
        true
    }

    /// The state to serve a request with, waking the app first if it sleeps.
    /// The second value is how long the wake took, when this request waited
    /// for one.
    pub async fn serving_state(&self) -> Result<(Arc<WebState>, Option<Duration>), String> {
        self.touch();
        let current = self.current();
        if !current.asleep {
            return Ok((current, None));
        }
        let started = Instant::now();
        let _waking = self.waking.lock().await;
        let current = self.current();
        if !current.asleep {
            return Ok((current, Some(started.elapsed())));
        }
        let Some(wake) = current.wake.clone() else {
            return Ok((current, None));
        };
        let dynos = wake.wake().await?;
        let count = dynos.len();
        let awake = Arc::new(WebState::build(
            dynos,
            current.maintenance,
            current.timeouts,
            Some(wake),
            false,
        ));
        let previous = self.web.compare_and_swap(&current, awake.clone());
        let took = started.elapsed();
        self.meter.wake(took);
        if !Arc::ptr_eq(&previous, &current) {
            // A deploy or scale switched the app while it woke: serve that.
            return Ok((self.current(), Some(took)));
        }
        self.log.emit(
            Source::Renga,
            &Process::from("web"),
            format!(
                "Woke {count} web dyno(s) from zero in {}ms",
                took.as_millis()
            ),
        );
        Ok((awake, Some(took)))
    }
}

/// Unloads idle apps, checking every `every`, for as long as `routes` lives.
pub async fn sleep_idle_apps(routes: std::sync::Weak<dyn AllRoutes>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(routes) = routes.upgrade() else {
            return;
        };
        for route in routes.all() {
            route.sleep_if_idle();
        }
    }
}

/// Every app's route, for the idle check.
pub trait AllRoutes: Send + Sync {
    fn all(&self) -> Vec<Arc<AppRoute>>;
}

/// Serves HTTP on `listener` until `shutdown` resolves, then stops accepting
/// and gives in-flight requests up to `shutdown_grace` to finish.
pub async fn serve(
    listener: TcpListener,
    routes: Arc<dyn RouteTable>,
    config: RouterConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let port = listener.local_addr()?.port();
    let grace = config.shutdown_grace;
    let idle = config.idle_timeout;
    let proxy = Arc::new(proxy::Proxy::new(routes, config.clone(), port));

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_buf_size(config.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));

    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off
                        // rather than spin, and keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let io = TokioIo::new(io::IdleTimeout::new(stream, idle));
                let proxy = proxy.clone();
                let service = hyper::service::service_fn(move |request| {
                    let proxy = proxy.clone();
                    async move { Ok::<_, std::convert::Infallible>(proxy.handle(request, peer).await) }
                });
                let connection = graceful.watch(builder.serve_connection(io, service).into_owned());
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("router: stopped accepting; draining in-flight requests");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("router: shutdown grace period over; dropping remaining connections");
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// The address a listener should print for people to open.
pub fn display_url(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("http://localhost:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}

#[cfg(test)]
mod tests {
    //! Slots, the backlog, sleep and wake, with a backend that answers at
    //! once: no component, no wasmtime.

    use std::sync::atomic::AtomicUsize;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, Full};

    use super::*;
    use crate::backend::{Failure, RequestBody, Served, WebBackend};
    use crate::dyno::WebLimits;

    struct Answer;

    #[async_trait::async_trait]
    impl WebBackend for Answer {
        async fn serve(
            &self,
            _request: http::Request<RequestBody>,
            _timeouts: &Timeouts,
        ) -> Result<Served, Failure> {
            let body = Full::new(Bytes::from_static(b"hi"))
                .map_err(|never| -> crate::backend::BoxError { match never {} });
            Ok(Served {
                response: http::Response::new(Box::pin(body) as _),
                connect: Duration::ZERO,
            })
        }
    }

    fn dyno(index: u32, concurrency: u32) -> Arc<WebDyno> {
        let limits = WebLimits {
            memory: 1 << 20,
            concurrency,
            reuse: 0,
        };
        let name = Process::from(format!("web.{index}"));
        Arc::new(WebDyno::with_backend(
            name,
            limits,
            Box::new(Answer),
            crate::metrics::DynoMeter::off(),
        ))
    }

    fn timeouts() -> Timeouts {
        Timeouts::new(Duration::from_secs(30))
    }

    #[tokio::test]
    async fn slots_are_shared_out_and_given_back() {
        let state = WebState::new(vec![dyno(1, 1), dyno(2, 1)], false, timeouts());
        let first = state.acquire().await.unwrap();
        let second = state.acquire().await.unwrap();
        assert_ne!(first.dyno().name(), second.dyno().name());
        assert_eq!(state.in_flight(), 2);
        drop(first);
        assert_eq!(state.in_flight(), 1);
        let third = state.acquire().await.unwrap();
        let request = http::Request::new(
            Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        let served = third.dyno().serve(request, &state.timeouts).await.unwrap();
        let body = served
            .response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..], b"hi");
        drop((second, third));
        assert_eq!(state.in_flight(), 0);
        assert!(matches!(
            WebState::new(Vec::new(), false, timeouts()).acquire().await,
            Err(NoDyno::NoneRunning)
        ));
    }

    #[tokio::test]
    async fn a_full_backlog_refuses_at_once() {
        let state = Arc::new(WebState::new(vec![dyno(1, 1)], false, timeouts()));
        let _busy = state.acquire().await.unwrap();
        let waiter = tokio::spawn({
            let state = state.clone();
            async move { state.acquire().await.map(|_| ()) }
        });
        while state.admitted.load(Ordering::Acquire) < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(state.acquire().await.err(), Some(NoDyno::BacklogTooDeep));
        // A waiting client that goes away gives its place back.
        waiter.abort();
        assert!(waiter.await.unwrap_err().is_cancelled());
        assert_eq!(state.admitted.load(Ordering::Acquire), 1);
        let next = tokio::spawn({
            let state = state.clone();
            async move { state.acquire().await.map(|_| ()) }
        });
        while state.admitted.load(Ordering::Acquire) < 2 {
            tokio::task::yield_now().await;
        }
        drop(_busy);
        assert_eq!(next.await.unwrap(), Ok(()));
    }

    struct Waker(AtomicUsize);

    #[async_trait::async_trait]
    impl Wake for Waker {
        async fn wake(&self) -> Result<Vec<Arc<WebDyno>>, String> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(vec![dyno(1, 4)])
        }
    }

    #[tokio::test]
    async fn an_idle_app_sleeps_and_its_next_request_wakes_it() {
        let wake = Arc::new(Waker(AtomicUsize::new(0)));
        let state = WebState::waking(vec![dyno(1, 4)], false, timeouts(), wake.clone());
        let route = AppRoute::new("sleepy", AppLog::new(16), state);
        route.set_idle_after(Some(Duration::from_millis(1)));
        // Not while a request is in flight.
        let slot = route.current().acquire().await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!route.sleep_if_idle());
        drop(slot);
        assert!(route.sleep_if_idle());
        assert!(route.current().is_asleep() && route.current().dynos.is_empty());
        let (state, waited) = route.serving_state().await.unwrap();
        assert!(waited.is_some() && !state.is_asleep());
        assert_eq!(state.dynos.len(), 1);
        assert_eq!(wake.0.load(Ordering::SeqCst), 1);
        // Awake, the next request does not wake it again.
        let (_, waited) = route.serving_state().await.unwrap();
        assert!(waited.is_none());
        let lines: Vec<String> = route
            .log()
            .recent(10)
            .iter()
            .map(|l| l.message.clone())
            .collect();
        assert!(lines.iter().any(|l| l.starts_with("Idle for")), "{lines:?}");
        assert!(
            lines.iter().any(|l| l.starts_with("Woke 1 web dyno(s)")),
            "{lines:?}"
        );
    }
}
