//! `formation` (scaling each process type) and `dynos` (listing,
//! restarting, stopping; one-offs are [`super::run`]'s).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::{delete, get, patch, post};
use serde_json::{Value, json};

use super::auth::Caller;
use super::body::{ApiResult, JsonBody, ok};
use super::extract::{AppRef, Param};
use super::range::{Range, paged};
use super::{Api, ApiError, run, views};
use crate::auth::User;
use crate::formation::{InvalidQuantity, Quantity};
use crate::platform::Platform;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/apps/{app}/formation", get(list).patch(scale))
        .route("/apps/{app}/formation/{kind}", patch(scale_one))
        .route(
            "/apps/{app}/dynos",
            get(dynos).post(run::create).delete(restart_all),
        )
        .route("/apps/{app}/dynos/{which}", delete(restart))
        .route("/apps/{app}/dynos/{which}/actions/stop", post(stop))
}

async fn list(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    AppRef { name, app }: AppRef,
    range: Option<Range>,
) -> ApiResult {
    let list = platform.formation(&user, &name)?;
    let commands = process_commands(&platform, &user, &name);
    paged(
        list.iter()
            .map(|f| views::formation(&app, f, command_of(&commands, &f.kind)))
            .collect(),
        range,
    )
}

#[derive(serde::Deserialize)]
struct Updates {
    updates: Vec<FormationUpdate>,
}

async fn scale(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    AppRef { name, app }: AppRef,
    JsonBody(updates): JsonBody<Updates>,
) -> ApiResult {
    let changes = updates
        .updates
        .into_iter()
        .map(|u| {
            let kind = u
                .kind
                .clone()
                .ok_or_else(|| ApiError::invalid("each update needs a type (for example web)"))?;
            Ok((kind, u.change()?))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let formations = platform.scale(&user, &name, changes).await?;
    let commands = process_commands(&platform, &user, &name);
    ok(Value::Array(
        formations
            .iter()
            .map(|f| views::formation(&app, f, command_of(&commands, &f.kind)))
            .collect(),
    ))
}

async fn scale_one(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    AppRef { name, app }: AppRef,
    Param((_, kind)): Param<(String, String)>,
    JsonBody(update): JsonBody<FormationUpdate>,
) -> ApiResult {
    let formations = platform
        .scale(&user, &name, vec![(kind, update.change()?)])
        .await?;
    let commands = process_commands(&platform, &user, &name);
    let formation = formations
        .first()
        .ok_or_else(|| ApiError::invalid("nothing changed"))?;
    ok(views::formation(
        &app,
        formation,
        command_of(&commands, &formation.kind),
    ))
}

async fn dynos(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    AppRef { name, app }: AppRef,
    range: Option<Range>,
) -> ApiResult {
    let running = platform.dynos(&user, &name)?;
    paged(
        running
            .dynos
            .iter()
            .map(|d| views::dyno(&app, d, &running.release))
            .collect(),
        range,
    )
}

async fn restart_all(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(app): Param<String>,
) -> ApiResult {
    platform.restart(&user, &app, None).await?;
    ok(json!({}))
}

async fn restart(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param((app, which)): Param<(String, String)>,
) -> ApiResult {
    platform.restart(&user, &app, Some(which.as_str())).await?;
    ok(json!({}))
}

async fn stop(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param((app, which)): Param<(String, String)>,
) -> ApiResult {
    platform.stop_dyno(&user, &app, &which).await?;
    ok(json!({}))
}

/// The current release's command of each process type.
fn process_commands(platform: &Platform, user: &User, app: &str) -> BTreeMap<String, String> {
    platform.process_commands(user, app).unwrap_or_default()
}

fn command_of<'a>(commands: &'a BTreeMap<String, String>, kind: &str) -> &'a str {
    commands.get(kind).map(String::as_str).unwrap_or("")
}

/// One process type's change in `PATCH /apps/{app}/formation`: Heroku's
/// `quantity` (a number, or a string: `"2"`, or a step, `"+1"`, `"-1"`, as
/// Heroku's CLI sends) and `size`, and renga's `reuse`.
#[derive(serde::Deserialize)]
pub(crate) struct FormationUpdate {
    #[serde(rename = "type")]
    kind: Option<String>,
    quantity: Option<Value>,
    size: Option<String>,
    reuse: Option<u32>,
}

impl FormationUpdate {
    pub(crate) fn change(&self) -> Result<crate::formation::Change, ApiError> {
        let size = match &self.size {
            Some(size) => Some(
                size.parse::<crate::size::Size>()
                    .map_err(|e| ApiError::invalid(e.to_string()))?,
            ),
            None => None,
        };
        let quantity = match &self.quantity {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(Quantity::Exactly(
                n.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| ApiError::invalid(InvalidQuantity(n.to_string()).to_string()))?,
            )),
            Some(Value::String(s)) => Some(
                s.parse::<Quantity>()
                    .map_err(|e| ApiError::invalid(e.to_string()))?,
            ),
            Some(other) => {
                return Err(ApiError::invalid(
                    InvalidQuantity(other.to_string()).to_string(),
                ));
            }
        };
        if quantity.is_none() && size.is_none() && self.reuse.is_none() {
            return Err(ApiError::invalid(
                "each update needs a quantity, a size or a reuse count",
            ));
        }
        Ok(crate::formation::Change {
            quantity,
            size,
            reuse: self.reuse,
        })
    }
}
