//! `apps/{app}/config-vars`: an app's config vars, read and changed (each
//! change a new release).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::Value;

use super::auth::Caller;
use super::body::{ApiResult, JsonBody, ok};
use super::extract::Param;
use super::{Api, ApiError};
use crate::config::ConfigKey;
use crate::platform::Platform;

pub(super) fn routes() -> Router<Api> {
    Router::new().route("/apps/{app}/config-vars", get(show).patch(update))
}

async fn show(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(app): Param<String>,
) -> ApiResult {
    ok(serde_json::to_value(platform.config_vars(&user, &app)?).unwrap_or_default())
}

async fn update(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(app): Param<String>,
    JsonBody(raw): JsonBody<BTreeMap<String, Option<Value>>>,
) -> ApiResult {
    let changes = config_changes(raw)?;
    ok(
        serde_json::to_value(platform.update_config(&user, &app, changes).await?)
            .unwrap_or_default(),
    )
}

/// `PATCH /apps/{app}/config-vars`'s body: names to strings (numbers and
/// booleans as their text), or null to remove. Linear in its size.
pub(crate) fn config_changes(
    raw: BTreeMap<String, Option<Value>>,
) -> Result<BTreeMap<ConfigKey, Option<String>>, ApiError> {
    let mut changes = BTreeMap::new();
    for (key, value) in raw {
        let key: ConfigKey = key
            .parse()
            .map_err(|e: crate::config::InvalidConfigKey| ApiError::invalid(e.to_string()))?;
        let value = match value {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other @ (Value::Number(_) | Value::Bool(_))) => Some(other.to_string()),
            Some(_) => {
                return Err(ApiError::invalid(format!(
                    "config var {key} must be a string or null"
                )));
            }
        };
        changes.insert(key, value);
    }
    Ok(changes)
}
