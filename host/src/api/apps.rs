//! `apps`: listing, creating, showing, updating (maintenance, idle
//! unloading) and destroying the caller's apps.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::Value;

use super::auth::Caller;
use super::body::{ApiResult, JsonBody, JsonOrDefault, created, ok};
use super::extract::{AppRef, Param};
use super::{Api, ApiError, views};
use crate::platform::Platform;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/apps", get(list).post(create))
        .route("/apps/{app}", get(info).patch(update).delete(destroy))
}

async fn list(State(platform): State<Arc<Platform>>, Caller(user): Caller) -> ApiResult {
    let base = platform.public_url();
    let apps: Vec<Value> = platform
        .list_apps(&user)?
        .iter()
        .map(|a| views::app(&platform, a, &user.name, base))
        .collect();
    ok(Value::Array(apps))
}

#[derive(serde::Deserialize, Default)]
struct Create {
    name: Option<String>,
}

async fn create(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    JsonOrDefault(create): JsonOrDefault<Create>,
) -> ApiResult {
    let app = platform.create_app(&user, create.name.as_deref()).await?;
    created(views::app(
        &platform,
        &app,
        &user.name,
        platform.public_url(),
    ))
}

async fn info(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    AppRef { app, .. }: AppRef,
) -> ApiResult {
    ok(views::app(
        &platform,
        &app,
        &user.name,
        platform.public_url(),
    ))
}

#[derive(serde::Deserialize)]
struct Update {
    maintenance: Option<bool>,
    /// Seconds without a request before the web dynos are unloaded: 0
    /// never, `"default"` the server's setting.
    idle_after: Option<Value>,
}

async fn update(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    AppRef { name, mut app }: AppRef,
    JsonBody(update): JsonBody<Update>,
) -> ApiResult {
    if let Some(on) = update.maintenance {
        app = platform.set_maintenance(&user, &name, on).await?;
    }
    if let Some(idle) = update.idle_after {
        let seconds = idle_after(&idle)?;
        app = platform.set_idle_after(&user, &name, seconds).await?;
    }
    ok(views::app(
        &platform,
        &app,
        &user.name,
        platform.public_url(),
    ))
}

async fn destroy(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(app): Param<String>,
) -> ApiResult {
    let app = platform.delete_app(&user, &app).await?;
    ok(views::app(
        &platform,
        &app,
        &user.name,
        platform.public_url(),
    ))
}

/// `PATCH /apps/{app}`'s `idle_after`: seconds (0: never) or `"default"`.
pub(crate) fn idle_after(value: &Value) -> Result<Option<u64>, ApiError> {
    match value {
        Value::String(s) if s == "default" => Ok(None),
        Value::Number(n) if n.as_u64().is_some() => Ok(n.as_u64()),
        _ => Err(ApiError::invalid(
            "idle_after is a number of seconds (0: never) or \"default\"",
        )),
    }
}
