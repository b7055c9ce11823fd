//! `apps`: listing (the caller's, or a user's), creating, showing, updating
//! (rename, maintenance, idle unloading) and destroying apps; and the one
//! region and stack a server has.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::Value;

use super::auth::Caller;
use super::body::{ApiResult, JsonBody, JsonOrDefault, created, ok};
use super::extract::{AppRef, Param};
use super::range::{Range, paged};
use super::{Api, ApiError, views};
use crate::app::App;
use crate::platform::{Platform, PlatformError};

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/apps", get(list).post(create))
        .route("/users/{user}/apps", get(list_of_user))
        .route("/apps/{app}", get(info).patch(update).delete(destroy))
        .route(
            "/regions",
            get(|| async { ok(Value::Array(vec![views::region()])) }),
        )
        .route("/regions/{which}", get(region))
        .route(
            "/stacks",
            get(|| async { ok(Value::Array(vec![views::stack()])) }),
        )
        .route("/stacks/{which}", get(stack))
}

fn views_of(platform: &Platform, apps: &[App]) -> Vec<Value> {
    let base = platform.public_url();
    apps.iter().map(|a| views::app(platform, a, base)).collect()
}

async fn list(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    range: Option<Range>,
) -> ApiResult {
    paged(views_of(&platform, &platform.list_apps(&user)?), range)
}

/// `GET /users/{id-or-email}/apps`: `~` is the caller; the admin may list
/// anyone's, a user only their own.
async fn list_of_user(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(who): Param<String>,
    range: Option<Range>,
) -> ApiResult {
    let owner = if who == "~" || who == user.id || who == user.name {
        user
    } else if user.admin {
        let found = match platform.auth().find(&who).map_err(PlatformError::from)? {
            Some(found) => Some(found),
            None => platform
                .auth()
                .find_by_name(&who)
                .map_err(PlatformError::from)?,
        };
        found.ok_or_else(|| PlatformError::NotFound(format!("Couldn't find that user: {who}")))?
    } else {
        return Err(PlatformError::Forbidden(
            "Only the admin can list another user's apps".to_string(),
        )
        .into());
    };
    paged(views_of(&platform, &platform.list_apps(&owner)?), range)
}

#[derive(serde::Deserialize, Default)]
struct Create {
    name: Option<String>,
    region: Option<String>,
    stack: Option<String>,
}

/// A region or stack asked for by name or id: renga has one of each.
fn only(what: &str, asked: Option<&str>, view: &Value) -> Result<(), ApiError> {
    match asked {
        Some(name) if name != view["name"] && name != view["id"] => {
            Err(ApiError::invalid(format!(
                "This server has one {what}, {}; there is no {name}",
                view["name"].as_str().unwrap_or_default()
            )))
        }
        _ => Ok(()),
    }
}

async fn create(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    JsonOrDefault(create): JsonOrDefault<Create>,
) -> ApiResult {
    only("region", create.region.as_deref(), &views::region())?;
    only("stack", create.stack.as_deref(), &views::stack())?;
    let app = platform.create_app(&user, create.name.as_deref()).await?;
    created(views::app(&platform, &app, platform.public_url()))
}

async fn info(State(platform): State<Arc<Platform>>, AppRef { app, .. }: AppRef) -> ApiResult {
    ok(views::app(&platform, &app, platform.public_url()))
}

#[derive(serde::Deserialize)]
struct Update {
    /// A new name: the app's URL, git remote and route move with it.
    name: Option<String>,
    maintenance: Option<bool>,
    /// Seconds without a request before the web dynos are unloaded: 0
    /// never, `"default"` the server's setting.
    idle_after: Option<Value>,
    build_stack: Option<String>,
}

async fn update(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    AppRef { mut name, mut app }: AppRef,
    JsonBody(update): JsonBody<Update>,
) -> ApiResult {
    only("stack", update.build_stack.as_deref(), &views::stack())?;
    let idle = update.idle_after.as_ref().map(idle_after).transpose()?;
    if let Some(new_name) = update.name {
        app = platform.rename_app(&user, &name, &new_name).await?;
        name = app.id.clone();
    }
    if let Some(on) = update.maintenance {
        app = platform.set_maintenance(&user, &name, on).await?;
    }
    if let Some(seconds) = idle {
        app = platform.set_idle_after(&user, &name, seconds).await?;
    }
    ok(views::app(&platform, &app, platform.public_url()))
}

async fn destroy(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(app): Param<String>,
) -> ApiResult {
    let app = platform.delete_app(&user, &app).await?;
    ok(views::app(&platform, &app, platform.public_url()))
}

async fn region(Param(which): Param<String>) -> ApiResult {
    let region = views::region();
    only("region", Some(&which), &region)
        .map_err(|_| PlatformError::NotFound(format!("Couldn't find that region: {which}")))?;
    ok(region)
}

async fn stack(Param(which): Param<String>) -> ApiResult {
    let stack = views::stack();
    only("stack", Some(&which), &stack)
        .map_err(|_| PlatformError::NotFound(format!("Couldn't find that stack: {which}")))?;
    ok(stack)
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
