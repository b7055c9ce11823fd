//! `log-sessions`: a session is made for an app, then read once at its
//! `logplex_url`, as Heroku's CLI does; a tail goes on until the client goes
//! away.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use serde_json::json;

use super::auth::Caller;
use super::body::{ApiResult, JsonOrDefault, created, text_stream};
use super::extract::Param;
use super::{Api, views};
use crate::platform::Platform;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/apps/{app}/log-sessions", post(create))
        .route("/log-sessions/{id}", get(read))
}

#[derive(serde::Deserialize, Default)]
struct Create {
    lines: Option<usize>,
    tail: Option<bool>,
}

async fn create(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(app): Param<String>,
    JsonOrDefault(create): JsonOrDefault<Create>,
) -> ApiResult {
    let id = platform.create_log_session(
        &user,
        &app,
        create.lines.unwrap_or(100),
        create.tail.unwrap_or(false),
    )?;
    created(json!({
        "id": id,
        "logplex_url": format!("{}/log-sessions/{id}", platform.public_url()),
        "created_at": views::timestamp(crate::store::now_ms()),
    }))
}

/// The session's last lines, then (for a tail) new ones as they come. The
/// task that feeds the response ends when the client goes away.
async fn read(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(id): Param<String>,
) -> ApiResult {
    let (session, log) = platform.open_log_session(&user, &id)?;
    let (lines, mut live) = log.tail(session.lines);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    tokio::spawn(async move {
        for line in lines {
            if tx.send(Bytes::from(format!("{line}\n"))).await.is_err() {
                return;
            }
        }
        if !session.tail {
            return;
        }
        loop {
            let text = match live.recv().await {
                Ok(line) => format!("{line}\n"),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    format!("(renga: {n} log lines dropped: this tail fell behind)\n")
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            if tx.send(Bytes::from(text)).await.is_err() {
                return;
            }
        }
    });
    let chunks = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    Ok(text_stream(chunks))
}
