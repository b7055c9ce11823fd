//! api: the control plane over HTTP, in the shapes of Heroku's Platform API v3.
//!
//! Owns the API's router: one axum handler per endpoint, grouped by resource
//! in the files beside this one, extractors that parse requests (the caller,
//! the app, path parameters, JSON bodies with size limits, `Range`), and the
//! mapping of refusals to statuses and `{"id", "message"}` bodies. Every
//! route needs a token; a request without a valid one is answered 401 before
//! anything else is read. It never changes a record itself: each handler
//! calls one platform operation.

mod account;
mod addons;
mod apps;
mod auth;
mod body;
mod config;
mod dashboard;
mod error;
mod extract;
mod formation;
mod git;
mod hosts;
mod logs;
mod metrics;
pub mod range;
mod releases;
mod run;
mod sharing;
mod stats;
mod views;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRef;
use http::{Method, Request, Uri};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use crate::platform::Platform;

pub use error::ApiError;
pub use stats::rss_bytes;
// The property tests feed these parsers generated bodies.
#[cfg(test)]
pub(crate) use {apps::idle_after, config::config_changes, formation::FormationUpdate};

/// What every handler shares.
#[derive(Clone)]
struct Api {
    platform: Arc<Platform>,
}

impl FromRef<Api> for Arc<Platform> {
    fn from_ref(api: &Api) -> Arc<Platform> {
        api.platform.clone()
    }
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    platform: Arc<Platform>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let router = router(platform);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let router = router.clone();
                // The request goes to the router as hyper gave it, so
                // `hyper::upgrade::on` still finds its connection.
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    router.clone().oneshot(tidy_path(request))
                });
                let connection = graceful.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned());
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    // Log tails never end by themselves; give other requests a moment.
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    Ok(())
}

/// Every endpoint, each resource's from its own file, behind the token check,
/// except log-session URLs (their random id is their credential), merged
/// after the `authenticate` layer, which covers only what is added before it.
fn router(platform: Arc<Platform>) -> Router {
    let api = Api { platform };
    Router::new()
        .merge(account::routes())
        .merge(apps::routes())
        .merge(config::routes())
        .merge(releases::routes())
        .merge(formation::routes())
        .merge(sharing::routes())
        .merge(logs::routes())
        .merge(addons::routes())
        .merge(git::routes())
        .merge(metrics::routes())
        .merge(hosts::routes())
        // A known path with another method is as unknown as any other.
        .method_not_allowed_fallback(no_such_route)
        .fallback(no_such_route)
        .layer(axum::middleware::from_fn(body::read_small_body))
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            auth::authenticate,
        ))
        .merge(logs::public_routes())
        .merge(dashboard::routes())
        .with_state(api)
}

async fn no_such_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(&format!("{method} {}", uri.path()))
}

/// Empty path segments mean nothing: `//apps/x/` is `/apps/x`, as clients
/// with a trailing slash on their API URL send it.
fn tidy_path<B>(mut request: Request<B>) -> Request<B> {
    let path = request.uri().path();
    if !path.contains("//") && (path == "/" || !path.ends_with('/')) {
        return request;
    }
    let mut tidy = String::with_capacity(path.len());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        tidy.push('/');
        tidy.push_str(segment);
    }
    if tidy.is_empty() {
        tidy.push('/');
    }
    if let Some(query) = request.uri().query() {
        tidy.push('?');
        tidy.push_str(query);
    }
    let mut parts = request.uri().clone().into_parts();
    if let Ok(path_and_query) = tidy.parse() {
        parts.path_and_query = Some(path_and_query);
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tidied(uri: &str) -> String {
        let request = Request::builder().uri(uri).body(()).unwrap();
        tidy_path(request).uri().to_string()
    }

    #[test]
    fn empty_path_segments_are_dropped_before_routing() {
        assert_eq!(tidied("/apps"), "/apps");
        assert_eq!(tidied("/"), "/");
        assert_eq!(tidied("/apps/"), "/apps");
        assert_eq!(tidied("//apps//x/"), "/apps/x");
        assert_eq!(tidied("//"), "/");
        assert_eq!(
            tidied("/addon-services/x/?outbound=a"),
            "/addon-services/x?outbound=a"
        );
    }
}
