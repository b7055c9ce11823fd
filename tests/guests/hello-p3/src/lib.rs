//! A WASI 0.3 HTTP handler (`wasi:http/service@0.3.0`): answers `hello
//! from a WASI 0.3 component` with the request's method, path and host,
//! greeting with `GREETING` when that config var is set.
//!
//! For the tests of shared instances: `/sleep/MS` waits MS milliseconds
//! (an async wait, so the instance may take other requests meanwhile) and
//! says how many requests this instance held at once at most, and how many
//! it has served; `/trap` panics.

use std::sync::atomic::{AtomicU32, Ordering};

use wasip3::http::types::{self, ErrorCode};
use wasip3::http_compat::{http_from_wasi_request, http_into_wasi_response};

wasip3::http::service::export!(Hello);

struct Hello;

/// Requests this instance holds right now, at most so far, and in all.
static HOLDING: AtomicU32 = AtomicU32::new(0);
static MOST: AtomicU32 = AtomicU32::new(0);
static SERVED: AtomicU32 = AtomicU32::new(0);

impl wasip3::exports::http::handler::Guest for Hello {
    async fn handle(request: types::Request) -> Result<types::Response, ErrorCode> {
        let request = http_from_wasi_request(request)?;
        let path = request.uri().path().to_string();
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        if path == "/trap" {
            panic!("the guest was asked to trap");
        }
        if let Some(ms) = path.strip_prefix("/sleep/") {
            let ms: u64 = ms.parse().unwrap_or(0);
            let holding = HOLDING.fetch_add(1, Ordering::Relaxed) + 1;
            MOST.fetch_max(holding, Ordering::Relaxed);
            wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
            HOLDING.fetch_sub(1, Ordering::Relaxed);
            let body = format!(
                "slept {ms} ms; this instance held {} requests at once at most and served {served}\n",
                MOST.load(Ordering::Relaxed)
            );
            return http_into_wasi_response(http::Response::new(body));
        }
        let greeting = std::env::var("GREETING").unwrap_or_else(|_| "hello".into());
        let host = request.uri().host().unwrap_or("none").to_string();
        let body = format!(
            "{greeting} from a WASI 0.3 component: {} {} (host {host})\n",
            request.method(),
            path
        );
        http_into_wasi_response(http::Response::new(body))
    }
}
