//! The dashboard: one page, a stylesheet and a script, built into the
//! binary (nothing comes from another host), served outside the token check
//! (they hold no data). The script logs in with an API token and reads and
//! changes everything through the same API as the CLI.

use axum::Router;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use http::HeaderMap;
use http::header::{
    ACCEPT, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};

use super::Api;

const INDEX: &str = include_str!("../../dashboard/index.html");
const SCRIPT: &str = include_str!("../../dashboard/app.js");
const STYLE: &str = include_str!("../../dashboard/style.css");

/// Only the dashboard's own script, styles and API calls; no frames, no
/// inline script, no other origin.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/", get(root))
        .route(
            "/dashboard",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/dashboard/style.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
}

/// A browser asking for the API's root is sent to the dashboard; an API
/// client is told what is there.
async fn root(headers: HeaderMap) -> Response {
    let browser = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if browser {
        Redirect::to("/dashboard").into_response()
    } else {
        super::ApiError::not_found("GET / (the dashboard is at /dashboard)").into_response()
    }
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, kind),
            (CONTENT_SECURITY_POLICY, POLICY),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (X_FRAME_OPTIONS, "DENY"),
            (REFERRER_POLICY, "no-referrer"),
            // The binary is the only version: a new one is fetched after an
            // upgrade.
            (CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
