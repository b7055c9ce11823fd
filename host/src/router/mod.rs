//! router: HTTP in, to an app's web dynos, by `Host`.
//!
//! Owns the listener, connection limits (header size, body size, slow
//! clients), the forwarding headers, and the one log line per request in
//! Heroku's format. It reads which dynos serve an app from an [`AppRoute`]
//! (written by whoever manages dynos) without taking a lock, and it never
//! touches wasmtime or the disk.

mod access;
mod io;
mod proxy;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::dyno::WebDyno;
use crate::logplex::AppLog;
use crate::runtime::Timeouts;

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
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            max_header_bytes: 64 << 10,
            max_body_bytes: 100 << 20,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(55),
            shutdown_grace: Duration::from_secs(30),
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

/// What the router needs to know about one app; swapped whole, atomically,
/// when its release, formation or maintenance flag changes.
pub struct AppRoute {
    name: Arc<str>,
    log: AppLog,
    web: ArcSwap<WebState>,
}

/// An app's web side at one moment.
pub struct WebState {
    /// Web dynos of the current release; empty means `web=0` (H14).
    pub dynos: Vec<Arc<WebDyno>>,
    /// Answer every request with 503 H80.
    pub maintenance: bool,
    pub timeouts: Timeouts,
    /// Where the next search for the least busy dyno starts, so that equally
    /// busy dynos take turns.
    next: std::sync::atomic::AtomicUsize,
}

impl WebState {
    pub fn new(dynos: Vec<Arc<WebDyno>>, maintenance: bool, timeouts: Timeouts) -> WebState {
        WebState {
            dynos,
            maintenance,
            timeouts,
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The least busy web dyno; equally busy ones take turns.
    pub fn pick(&self) -> Option<Arc<WebDyno>> {
        let n = self.dynos.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n;
        (0..n)
            .map(|i| &self.dynos[(start + i) % n])
            .min_by_key(|d| d.in_flight())
            .cloned()
    }
}

impl AppRoute {
    pub fn new(name: impl Into<Arc<str>>, log: AppLog, web: WebState) -> AppRoute {
        AppRoute {
            name: name.into(),
            log,
            web: ArcSwap::from_pointee(web),
        }
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
        self.web.store(Arc::new(web));
    }

    pub fn current(&self) -> Arc<WebState> {
        self.web.load_full()
    }
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
