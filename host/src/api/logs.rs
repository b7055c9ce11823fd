//! `log-sessions`: a session is made for an app, then read at its
//! `logplex_url` (no token needed: the URL's random id is the credential,
//! until the session expires), as Heroku's CLI does; a tail goes on until
//! the client goes away. `log-drains`: where an app's log is also sent.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use serde_json::json;

use http::HeaderMap;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};

use super::auth::Caller;
use super::body::{ApiResult, JsonBody, JsonOrDefault, created, ok, text_stream};
use super::extract::Param;
use super::range::{Range, paged};
use super::{Api, views};
use crate::app::App;
use crate::drain::Drain;
use crate::logplex::LogLine;
use crate::platform::{LogRequest, Platform};

/// How often an event-stream tail with nothing to say sends a comment.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/apps/{app}/log-sessions", post(create))
        .route("/apps/{app}/log-drains", get(drains).post(add_drain))
        .route(
            "/apps/{app}/log-drains/{which}",
            get(drain).delete(remove_drain),
        )
}

/// Outside the token check: a session's URL is its own credential.
pub(super) fn public_routes() -> Router<Api> {
    Router::new().route("/log-sessions/{id}", get(read))
}

#[derive(serde::Deserialize, Default)]
struct Create {
    lines: Option<usize>,
    tail: Option<bool>,
    source: Option<String>,
    dyno: Option<String>,
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
        LogRequest {
            lines: create.lines,
            tail: create.tail.unwrap_or(false),
            source: create.source,
            dyno: create.dyno,
        },
    )?;
    created(json!({
        "id": id,
        "logplex_url": format!("{}/log-sessions/{id}", platform.public_url()),
        "created_at": views::timestamp(crate::store::now_ms()),
        "updated_at": views::timestamp(crate::store::now_ms()),
    }))
}

/// The session's last lines, then (for a tail) new ones as they come: plain
/// lines, or server-sent events (one `data:` event per line) when the
/// client accepts `text/event-stream`, as Heroku's CLI does. The task that
/// feeds the response ends when the client goes away.
async fn read(
    State(platform): State<Arc<Platform>>,
    Param(id): Param<String>,
    headers: HeaderMap,
) -> ApiResult {
    let (session, log) = platform.open_log_session(&id)?;
    let events = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"));
    let frame = move |text: &str| {
        if events {
            // One `data:` field per line: a line ending inside a message
            // must not end the event or start a forged one.
            let mut event = String::with_capacity(text.len() + 8);
            for line in text.split(['\r', '\n']) {
                event.push_str("data: ");
                event.push_str(line);
                event.push('\n');
            }
            event.push('\n');
            Bytes::from(event)
        } else {
            Bytes::from(format!("{text}\n"))
        }
    };
    let wanted = {
        let session = session.clone();
        move |line: &LogLine| line.matches(session.source.as_deref(), session.dyno.as_deref())
    };
    let filtered = session.source.is_some() || session.dyno.is_some();
    // Filters look further back, so that `-n 50 --dyno router` shows up to
    // 50 router lines.
    let (lines, mut live) = log.tail(if filtered {
        crate::logplex::DEFAULT_BUFFER_LINES
    } else {
        session.lines
    });
    let mut recent: Vec<_> = lines.into_iter().filter(|l| wanted(l)).collect();
    let skip = recent.len().saturating_sub(session.lines);
    recent.drain(..skip);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    tokio::spawn(async move {
        for line in recent {
            if tx.send(frame(&line.to_string())).await.is_err() {
                return;
            }
        }
        if !session.tail {
            return;
        }
        let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
        keep_alive.reset();
        loop {
            // Ends as soon as the client is gone, even when no line passes
            // the filters.
            let received = tokio::select! {
                () = tx.closed() => return,
                _ = keep_alive.tick() => {
                    // An event-stream comment: it shows nothing, and it makes
                    // a connection the client dropped fail, which ends this.
                    if events && tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                        return;
                    }
                    continue;
                }
                received = live.recv() => received,
            };
            let text = match received {
                Ok(line) if wanted(&line) => line.to_string(),
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    format!("(renga: {n} log lines dropped: this tail fell behind)")
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            if tx.send(frame(&text)).await.is_err() {
                return;
            }
        }
    });
    let chunks = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let mut response = text_stream(chunks);
    if events {
        response.headers_mut().insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        response
            .headers_mut()
            .insert(CACHE_CONTROL, http::HeaderValue::from_static("no-cache"));
    }
    Ok(response)
}

// ---- log drains ----------------------------------------------------------------

/// A drain in Heroku's shape (`addon` is always null: no add-on makes
/// drains on renga).
fn drain_view(app: &App, drain: &Drain) -> serde_json::Value {
    json!({
        "id": drain.id,
        "url": drain.url,
        "token": drain.token,
        "addon": null,
        "app": { "id": app.id, "name": app.name },
        "created_at": views::timestamp(drain.created_at),
        "updated_at": views::timestamp(drain.created_at),
    })
}

async fn drains(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(app): Param<String>,
    range: Option<Range>,
) -> ApiResult {
    let (app, drains) = platform.drains(&user, &app)?;
    paged(drains.iter().map(|d| drain_view(&app, d)).collect(), range)
}

async fn drain(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param((app, which)): Param<(String, String)>,
) -> ApiResult {
    let (app, drain) = platform.drain(&user, &app, &which)?;
    ok(drain_view(&app, &drain))
}

#[derive(serde::Deserialize)]
struct AddDrain {
    url: String,
}

async fn add_drain(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param(app): Param<String>,
    JsonBody(add): JsonBody<AddDrain>,
) -> ApiResult {
    let (app, drain) = platform.add_drain(&user, &app, &add.url).await?;
    created(drain_view(&app, &drain))
}

async fn remove_drain(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Param((app, which)): Param<(String, String)>,
) -> ApiResult {
    let (app, drain) = platform.remove_drain(&user, &app, &which).await?;
    ok(drain_view(&app, &drain))
}
