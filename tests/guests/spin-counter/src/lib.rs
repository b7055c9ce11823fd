//! A hit counter as a Spin app writes it, through the standard interfaces
//! Spin's SDK exposes (`spin_sdk::wit::wasi::*`). renga must run it
//! unchanged.
//!
//! - `/`      increments `hits` in the `default` store; `GREETING: N`
//! - `/swap`  appends `x` to `trail` with compare-and-swap, retrying on
//!   conflict; the new value

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;
use spin_sdk::wit::wasi::config::store as config;
use spin_sdk::wit::wasi::keyvalue::atomics::{self, Cas, CasError};
use spin_sdk::wit::wasi::keyvalue::store;

#[http_component]
fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
    let bucket = store::open("default").map_err(|e| anyhow::anyhow!("open: {e:?}"))?;
    let text = match request.path() {
        "/swap" => {
            let mut cas = Cas::new(&bucket, "trail").map_err(|e| anyhow::anyhow!("cas: {e:?}"))?;
            loop {
                let mut value = cas
                    .current()
                    .map_err(|e| anyhow::anyhow!("current: {e:?}"))?
                    .unwrap_or_default();
                value.push(b'x');
                match atomics::swap(cas, &value) {
                    Ok(()) => break format!("{}\n", String::from_utf8_lossy(&value)),
                    Err(CasError::CasFailed(fresh)) => cas = fresh,
                    Err(CasError::StoreError(e)) => anyhow::bail!("swap: {e:?}"),
                }
            }
        }
        _ => {
            let hits = atomics::increment(&bucket, "hits", 1)
                .map_err(|e| anyhow::anyhow!("increment: {e:?}"))?;
            let greeting = config::get("GREETING")
                .map_err(|e| anyhow::anyhow!("config: {e:?}"))?
                .unwrap_or_else(|| "hits".to_string());
            format!("{greeting}: {hits}\n")
        }
    };
    Ok(Response::builder().status(200).body(text).build())
}
