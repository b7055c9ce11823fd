//! A hit counter as wasmCloud's examples write it (`http-keyvalue-counter`):
//! only `wasi:*` interfaces, through wasmCloud's own SDK. renga must run it
//! unchanged.
//!
//! - `/`         increments `hits` in the `default` bucket; `GREETING: N`
//! - `/keys`     the bucket's keys, paged with list-keys' cursor
//! - `/config`   every config var, through `wasi:config/store@0.2.0-draft`

use wasmcloud_component::http::{self, ErrorCode};
use wasmcloud_component::wasi::config::store as config;
use wasmcloud_component::wasi::keyvalue::{atomics, batch, store};

struct Counter;

http::export!(Counter);

fn failed(what: &str, e: impl std::fmt::Debug) -> ErrorCode {
    ErrorCode::InternalError(Some(format!("{what}: {e:?}")))
}

impl http::Server for Counter {
    #[allow(refining_impl_trait)]
    fn handle(request: http::IncomingRequest) -> http::Result<http::Response<String>> {
        let bucket = store::open("default").map_err(|e| failed("open", e))?;
        let text = match request.uri().path() {
            "/" => {
                let hits =
                    atomics::increment(&bucket, "hits", 1).map_err(|e| failed("increment", e))?;
                let greeting = config::get("GREETING")
                    .map_err(|e| failed("config", e))?
                    .unwrap_or_else(|| "hits".to_string());
                bucket
                    .set("last", &hits.to_string().into_bytes())
                    .map_err(|e| failed("set", e))?;
                format!("{greeting}: {hits}\n")
            }
            "/keys" => {
                let mut keys = Vec::new();
                let mut cursor = None;
                loop {
                    let page = bucket
                        .list_keys(cursor)
                        .map_err(|e| failed("list-keys", e))?;
                    keys.extend(page.keys);
                    match page.cursor {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
                let values = batch::get_many(&bucket, &keys).map_err(|e| failed("get-many", e))?;
                keys.sort();
                format!(
                    "{} keys, {} values: {}\n",
                    keys.len(),
                    values.iter().flatten().count(),
                    keys.join(",")
                )
            }
            "/config" => config::get_all()
                .map_err(|e| failed("config", e))?
                .iter()
                .map(|(k, v)| format!("{k}={v}\n"))
                .collect(),
            _ => "not found\n".to_string(),
        };
        Ok(http::Response::new(text))
    }
}
