//! backend: the dyno-backend seam. What serves a web dyno's requests, and
//! which kind of backend a Procfile command gets.
//!
//! The router and the dyno bookkeeping speak only this module's words: a
//! request with a boxed body, a response with a boxed body, and a plain
//! [`Failure`] that the router maps to Heroku's H-codes; a process run to
//! its end, with an exit code or a plain [`ProcessFailure`]. A backend
//! implements [`WebBackend`] (web dynos) and [`ProcessBackend`] (workers,
//! one-off dynos, the release phase): the Wasm one ([`wasm`], WASI 0.2 and
//! 0.3 components on wasmtime) and the native one ([`native`], sandboxed
//! processes). [`kind`] is the one place that decides
//! which backend a Procfile command gets.

pub mod native;
pub mod wasm;

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;

use crate::capability::ProcessIo;
use crate::logplex::{AppLog, Process};
use crate::procfile::Command;

pub use crate::runtime::Timeouts;

/// Why a request body could not be read in full.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Past the router's limit, in bytes.
    #[error("the request body is larger than {0} bytes")]
    TooLarge(u64),
    /// The client broke off or sent something that is not HTTP (the HTTP
    /// library's error).
    #[error("the client's request body failed: {0}")]
    Client(BoxError),
}

/// A request body as a backend receives it.
pub type RequestBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BodyError>;

/// A response body as a backend produces it: it streams, and it may end
/// with an error (a stalled or failed guest), which ends the response.
pub type ResponseBody = Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send>>;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response, and how long getting something to serve it took.
pub struct Served {
    pub response: http::Response<ResponseBody>,
    /// Time to get a running instance or process (Heroku's `connect=`).
    pub connect: Duration,
}

/// Why a request got no response, in terms every backend shares.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The instance or process could not start.
    #[error("the dyno could not start: {0}")]
    Start(String),
    /// No response head before the response timeout.
    #[error("the dyno did not answer in time")]
    Timeout,
    /// The code failed while serving (a trap, a crash).
    #[error("the dyno failed: {0}")]
    Crashed(String),
    /// It needed more memory than its dyno size allows.
    #[error("the dyno needed more than its memory limit")]
    MemoryExceeded { limit: u64 },
    /// It finished without sending a response.
    #[error("the dyno returned without sending a response")]
    NoResponse,
    /// It answered with an error instead of a response.
    #[error("the dyno answered with an error: {0}")]
    ErrorResponse(String),
    /// Its process crashed and waits to be restarted (Heroku's H10).
    #[error("the dyno crashed: {0}")]
    AppCrashed(String),
    /// Its process was starting and did not accept connections within the
    /// request's wait (Heroku's H20).
    #[error("the dyno did not boot in time")]
    BootTimeout,
}

/// What serves one web dyno's requests.
#[async_trait::async_trait]
pub trait WebBackend: Send + Sync {
    /// Serves one request; the response's body streams after this returns.
    async fn serve(
        &self,
        request: http::Request<RequestBody>,
        timeouts: &Timeouts,
    ) -> Result<Served, Failure>;

    /// Instances (or processes) kept warm for the next requests.
    fn kept(&self) -> usize {
        0
    }

    /// Where a dyno that runs a process is in its life (for `renga ps`);
    /// `None` when it has no process of its own (a Wasm dyno is up while
    /// it exists).
    fn status(&self) -> Option<(crate::dyno::worker::Status, u64)> {
        None
    }
}

/// Why a process did not finish with an exit code.
#[derive(Debug, thiserror::Error)]
pub enum ProcessFailure {
    #[error("the process could not start: {0}")]
    Start(String),
    #[error("the process ran longer than {0:?} and was stopped")]
    Timeout(Duration),
    #[error("the process failed: {0}")]
    Crashed(String),
    #[error("the process needed more than its memory limit")]
    MemoryExceeded { limit: u64 },
    #[error("the process was stopped")]
    Stopped,
}

/// What runs one process dyno (`worker.1`, `run.3`, `release.1`): once per
/// call of [`ProcessBackend::run`], again after a crash.
#[async_trait::async_trait]
pub trait ProcessBackend: Send + Sync {
    /// Its name, `worker.1`.
    fn name(&self) -> &Process;
    /// Where its lines go.
    fn log(&self) -> &AppLog;
    /// Runs the process to its end with `io` as its standard streams (the
    /// log where `io` gives none), for at most `time_limit`: its exit code.
    /// Dropping the future stops the process at once.
    async fn run(&self, io: ProcessIo, time_limit: Option<Duration>)
    -> Result<i32, ProcessFailure>;
}

/// Which backend a Procfile command gets, with what it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// A component inside the slug (`web: app.wasm --flag`), run on
    /// wasmtime: its path in the slug and its arguments.
    Wasm { path: &'a str, args: &'a [String] },
    /// Any other command line (`gunicorn app:app`, `node server.js`,
    /// `bin/server`), run by bash in a sandbox, with the slug at `/app`.
    Native { line: &'a str },
}

/// The backend a process type's command gets: a `.wasm` path is a
/// component, anything else a native process.
pub fn kind(command: &Command) -> Kind<'_> {
    match command {
        Command::Component { path, args } => Kind::Wasm { path, args },
        Command::Native(line) => Kind::Native { line },
    }
}

/// A request head as the next HTTP hop takes it: origin form (the Host
/// header carries the rest), without this connection's hop-by-hop headers.
pub fn for_next_hop(parts: &mut http::request::Parts) {
    if let Some(path) = parts.uri.path_and_query() {
        parts.uri = http::Uri::from(path.clone());
    }
    for hop in [
        http::header::CONNECTION,
        http::header::TE,
        http::header::TRAILER,
        http::header::UPGRADE,
        http::header::PROXY_AUTHORIZATION,
    ] {
        parts.headers.remove(hop);
    }
    parts.headers.remove("keep-alive");
}
