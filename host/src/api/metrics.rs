//! `metrics`: the meters in Prometheus's text format (a user sees their
//! apps; the admin every app and the host); app `features`, as `heroku
//! labs` reads and changes them (renga has no account features).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::auth::Caller;
use super::body::{ApiResult, JsonBody, ok};
use super::extract::Param;
use super::{Api, ApiError, views};
use crate::app::App;
use crate::platform::{FEATURES, Feature, Platform, find_feature};

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/account/features", get(account_features))
        .route("/account/features/{feature}", get(account_feature))
        .route("/apps/{app}/features", get(app_features))
        .route(
            "/apps/{app}/features/{feature}",
            get(app_feature).patch(set_app_feature),
        )
}

async fn metrics(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
) -> Result<Response, ApiError> {
    let text = platform.metrics_text(&user)?;
    Ok((
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn account_features() -> ApiResult {
    ok(Value::Array(Vec::new()))
}

async fn account_feature(Param(feature): Param<String>) -> ApiResult {
    Err(ApiError::from(crate::platform::PlatformError::NotFound(
        format!(
            "Couldn't find that feature: {feature} (renga's features are app features: use -a APP)"
        ),
    )))
}

/// A feature in Heroku's `app-feature` shape.
fn feature_view(app: &App, feature: &Feature) -> Value {
    json!({
        "id": feature.name,
        "name": feature.name,
        "display_name": feature.name,
        "description": feature.description,
        "doc_url": "",
        "feedback_email": "",
        "state": "beta",
        "enabled": app.features.contains(feature.name),
        "created_at": views::timestamp(app.created_at),
        "updated_at": views::timestamp(app.updated_at),
    })
}

async fn app_features(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(app): Param<String>,
) -> ApiResult {
    let app = platform.app(&user, &app)?;
    ok(FEATURES.iter().map(|f| feature_view(&app, f)).collect())
}

async fn app_feature(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param((app, feature)): Param<(String, String)>,
) -> ApiResult {
    let app = platform.app(&user, &app)?;
    ok(feature_view(&app, find_feature(&feature)?))
}

#[derive(serde::Deserialize)]
struct SetFeature {
    enabled: bool,
}

async fn set_app_feature(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param((app, feature)): Param<(String, String)>,
    JsonBody(set): JsonBody<SetFeature>,
) -> ApiResult {
    let (app, feature) = platform
        .set_feature(&user, &app, &feature, set.enabled)
        .await?;
    ok(feature_view(&app, feature))
}
