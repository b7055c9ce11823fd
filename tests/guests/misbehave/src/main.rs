//! A guest that misbehaves on request, so that renga's tests can show each
//! failure stays inside its own request.
//!
//! - `/`            answers `ok`
//! - `/trap`        panics
//! - `/unreachable` executes `unreachable`
//! - `/overflow`    recurses until the stack overflows
//! - `/loop`        spins forever without yielding
//! - `/oom`         allocates until memory runs out
//! - `/sleep/MS`    answers after MS milliseconds
//! - `/env`         lists its environment, one `KEY=VALUE` per line
//! - `/headers`     lists the request headers, one `name: value` per line
//! - `/log`         writes a line to stdout and one to stderr
//! - `/echo`        answers with the request body
//! - `/fs`          tries to read files
//! - `/net`         tries an outbound HTTP request
//! - `/count`       how many requests this instance has served (1 unless
//!   the dyno reuses instances)
//! - `/trap-after-head` sends its response head and a first chunk, then
//!   panics while the body is streaming

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

/// Requests this instance has served.
static SERVED: AtomicU64 = AtomicU64::new(0);

use wstd::http::{Body, Client, Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let path = request.uri().path().to_string();
    let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
    let text = match path.as_str() {
        "/" => "ok\n".to_string(),
        "/count" => format!("{served}\n"),
        "/trap" => panic!("the /trap route panics on purpose"),
        "/unreachable" => core::arch::wasm32::unreachable(),
        "/overflow" => format!("{}\n", recurse(black_box(1))),
        "/loop" => loop {
            black_box(0u64);
        },
        "/oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                black_box(&hoard);
            }
        }
        "/env" => {
            let mut vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
            vars.sort();
            vars.join("\n") + "\n"
        }
        "/headers" => {
            let mut lines: Vec<String> = request
                .headers()
                .iter()
                .map(|(k, v)| format!("{}: {}", k, v.to_str().unwrap_or("<binary>")))
                .collect();
            lines.sort();
            lines.join("\n") + "\n"
        }
        "/log" => {
            println!("a line on stdout");
            eprintln!("a line on stderr");
            "logged\n".to_string()
        }
        "/trap-after-head" => {
            use futures_lite::StreamExt as _;
            let chunks = futures_lite::stream::iter(0..3).map(|i| {
                if i == 2 {
                    panic!("the /trap-after-head route panics while its body streams");
                }
                format!("chunk {i}\n")
            });
            return Ok(Response::new(Body::from_stream(chunks)));
        }
        "/echo" => {
            let mut body = request.into_body();
            let bytes = body.contents().await?;
            return Ok(Response::new(bytes.to_vec().into()));
        }
        "/fs" => {
            let mut report = String::new();
            for path in ["/", ".", "/etc/passwd", "Cargo.toml"] {
                let outcome = match std::fs::read_dir(path) {
                    Ok(_) => "readable".to_string(),
                    Err(e) => match std::fs::read(path) {
                        Ok(_) => "readable".to_string(),
                        Err(_) => format!("denied ({e})"),
                    },
                };
                report.push_str(&format!("{path}: {outcome}\n"));
            }
            report
        }
        "/net" => {
            let outbound = Request::get("http://127.0.0.1:9/").body(Body::empty())?;
            match Client::new().send(outbound).await {
                Ok(response) => format!("outbound allowed: {}\n", response.status()),
                Err(e) => format!("outbound denied: {e}\n"),
            }
        }
        _ if path.starts_with("/sleep/") => {
            let ms: u64 = path["/sleep/".len()..].parse().unwrap_or(0);
            wstd::task::sleep(wstd::time::Duration::from_millis(ms)).await;
            format!("slept {ms}ms\n")
        }
        _ => {
            let mut response = Response::new(Body::from("not found\n".to_string()));
            *response.status_mut() = StatusCode::NOT_FOUND;
            return Ok(response);
        }
    };
    Ok(Response::new(text.into()))
}

#[allow(unconditional_recursion, reason = "the /overflow route overflows the stack on purpose")]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 64]);
    recurse(black_box(depth + 1)) + frame[0]
}
