//! A WASI 0.3 HTTP handler (`wasi:http/service@0.3.0`): answers `hello
//! from a WASI 0.3 component` with the request's method, path and host,
//! greeting with `GREETING` when that config var is set.

use wasip3::http::types::{self, ErrorCode};
use wasip3::http_compat::{http_from_wasi_request, http_into_wasi_response};

wasip3::http::service::export!(Hello);

struct Hello;

impl wasip3::exports::http::handler::Guest for Hello {
    async fn handle(request: types::Request) -> Result<types::Response, ErrorCode> {
        let request = http_from_wasi_request(request)?;
        let greeting = std::env::var("GREETING").unwrap_or_else(|_| "hello".into());
        let host = request.uri().host().unwrap_or("none").to_string();
        let body = format!(
            "{greeting} from a WASI 0.3 component: {} {} (host {host})\n",
            request.method(),
            request.uri().path()
        );
        http_into_wasi_response(http::Response::new(body))
    }
}
