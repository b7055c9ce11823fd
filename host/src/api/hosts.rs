//! `hosts`: the renga servers sharing this platform, from their heartbeats
//! (the admin's to read).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::Api;
use super::auth::Caller;
use super::body::{ApiResult, ok};
use super::views::timestamp;
use crate::platform::Platform;
use crate::store::now_ms;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/hosts", get(list))
        .route("/hosts/{name}/actions/drain", post(drain).delete(undrain))
}

/// Moves the host's dynos to the others; its router forwards.
async fn drain(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Path(name): Path<String>,
) -> ApiResult {
    let host = platform.drain_host(&user, &name, true)?;
    ok(view(&host, now_ms()))
}

/// Takes a drained host back into service.
async fn undrain(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Path(name): Path<String>,
) -> ApiResult {
    let host = platform.drain_host(&user, &name, false)?;
    ok(view(&host, now_ms()))
}

fn view(host: &crate::hosts::HostRecord, now: u64) -> Value {
    json!({
        "name": host.name,
        "state": match (host.is_up(now), host.draining) {
            (false, _) => "lost",
            (true, true) => "draining",
            (true, false) => "up",
        },
        "api_url": host.api_url,
        "router": host.router,
        "version": host.version,
        "started_at": timestamp(host.started_at),
        "updated_at": timestamp(host.seen_at),
        "seen_ms_ago": now.saturating_sub(host.seen_at),
        "apps": host.apps,
        "dynos": host.dynos,
        "instances": host.instances,
        "max_instances": host.max_instances,
        "rss_bytes": host.rss_bytes,
    })
}

async fn list(State(platform): State<Arc<Platform>>, Caller(user): Caller) -> ApiResult {
    let now = now_ms();
    let hosts: Vec<Value> = platform
        .hosts(&user)?
        .iter()
        .map(|host| view(host, now))
        .collect();
    ok(Value::Array(hosts))
}
