//! `hosts`: the renga servers sharing this platform, from their heartbeats
//! (the admin's to read).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

use super::Api;
use super::auth::Caller;
use super::body::{ApiResult, ok};
use super::views::timestamp;
use crate::platform::Platform;
use crate::store::now_ms;

pub(super) fn routes() -> Router<Api> {
    Router::new().route("/hosts", get(list))
}

async fn list(State(platform): State<Arc<Platform>>, Caller(user): Caller) -> ApiResult {
    let now = now_ms();
    let hosts: Vec<Value> = platform
        .hosts(&user)?
        .iter()
        .map(|host| {
            json!({
                "name": host.name,
                "state": if host.is_up(now) { "up" } else { "lost" },
                "api_url": host.api_url,
                "version": host.version,
                "started_at": timestamp(host.started_at),
                "updated_at": timestamp(host.seen_at),
                "seen_ms_ago": now.saturating_sub(host.seen_at),
                "apps": host.apps,
                "instances": host.instances,
                "max_instances": host.max_instances,
                "rss_bytes": host.rss_bytes,
            })
        })
        .collect();
    ok(Value::Array(hosts))
}
