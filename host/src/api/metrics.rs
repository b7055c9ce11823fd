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
use crate::metrics::history;
use crate::platform::{FEATURES, Feature, Platform, find_feature};

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/apps/{app}/metrics", get(history))
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

/// The last hour of the app, sample by sample (only periods in which
/// something happened): what the dashboard graphs.
async fn history(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(app): Param<String>,
) -> ApiResult {
    let (app, samples) = platform.metrics_history(&user, &app)?;
    let every = history::EVERY.as_secs();
    let now = crate::store::now_ms() / 1000;
    let ms = |seconds: Option<f64>| seconds.map(|s| (s * 1e6).round() / 1e3);
    let samples: Vec<Value> = samples
        .iter()
        .map(|s| {
            json!({
                "time": s.at,
                "requests": s.total(),
                "requests_per_second": s.total() as f64 / every as f64,
                "status": {
                    "1xx": s.requests[0], "2xx": s.requests[1], "3xx": s.requests[2],
                    "4xx": s.requests[3], "5xx": s.requests[4],
                },
                "errors": s.requests[4],
                "latency_ms": {
                    "p50": ms(s.quantile(0.5)),
                    "p95": ms(s.quantile(0.95)),
                    "p99": ms(s.quantile(0.99)),
                },
                "memory_bytes": s.memory,
            })
        })
        .collect();
    ok(json!({
        "app": { "id": app.id, "name": app.name },
        "interval_seconds": every,
        "from": now.saturating_sub(history::KEPT.as_secs()),
        "to": now,
        "samples": samples,
    }))
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
