//! One request through the router: find the app, pick a dyno, add the
//! forwarding headers, hand the request over, and turn whatever happens into
//! a response and a log line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::access::{
    Access, AccessBody, ErrorCode, H10, H11, H12, H13, H14, H20, H80, H99, R14, error_page,
};
use super::forward::{self, Forwarded};
use super::{NoDyno, RouteTable, RouterConfig};
use crate::backend::{BodyError, Failure};
use crate::dyno::WebDyno;
use crate::logplex::{Process, Source};

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_REQUEST_START: HeaderName = HeaderName::from_static("x-request-start");

/// A forwarding router waits this much longer than the serving one, so
/// that the serving router's H12 is what the client gets.
const FORWARD_MARGIN: std::time::Duration = std::time::Duration::from_secs(2);

/// A client's request id is kept if it is this long at most and made of
/// characters that cannot break the log line.
const MAX_REQUEST_ID: usize = 200;

pub(super) struct Proxy {
    routes: Arc<dyn RouteTable>,
    config: RouterConfig,
    port: HeaderValue,
}

impl Proxy {
    pub(super) fn new(routes: Arc<dyn RouteTable>, config: RouterConfig, port: u16) -> Proxy {
        Proxy {
            routes,
            config,
            port: HeaderValue::from(port),
        }
    }

    pub(super) async fn handle(
        &self,
        mut request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<AccessBody> {
        let started = Instant::now();
        let request_id = request_id(request.headers().get(&X_REQUEST_ID));
        let host = request_host(&request);
        // Only another host of the cluster may say it forwarded a request.
        let forwarded_by = self
            .config
            .cluster
            .as_ref()
            .and_then(|c| c.forwarded_by(request.headers_mut()));
        let Some(route) = self.routes.lookup(&host) else {
            tracing::debug!(%host, "no app for this host");
            return page(StatusCode::NOT_FOUND, "No such app", &request_id, None);
        };

        // A forwarding host has already added its client to the chain.
        let fwd = match &forwarded_by {
            Some(_) => request
                .headers()
                .get(&X_FORWARDED_FOR)
                .and_then(|v| v.to_str().ok())
                .map_or_else(|| peer.ip().to_canonical().to_string(), str::to_string),
            None => forwarded_for(request.headers().get(&X_FORWARDED_FOR), peer),
        };
        let mut access = Access {
            log: route.log().clone(),
            meter: route.meter().clone(),
            method: request.method().clone(),
            path: log_safe(
                request
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/"),
            ),
            host: log_safe(&host),
            request_id: request_id.clone(),
            fwd: fwd.clone(),
            dyno: None,
            connect: std::time::Duration::ZERO,
            wake: None,
            started,
            status: 0,
            error: None,
            protocol: "http",
            served_by: self.config.cluster.as_ref().map(|c| c.host.clone()),
            forwarded_by,
        };

        // Refused before anything is spent on it: no wake, no dyno slot.
        if let Some(length) = content_length(&request)
            && length > self.config.max_body_bytes
        {
            access.status = StatusCode::PAYLOAD_TOO_LARGE.as_u16();
            return page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body too large",
                &request_id,
                Some(access),
            );
        }

        let web = route.current();
        if web.maintenance {
            return fail(
                access,
                StatusCode::SERVICE_UNAVAILABLE,
                H80,
                "Maintenance mode",
            );
        }
        // On a cluster, an app whose web dynos all run on other hosts is
        // served by one of them; if none takes the request, it is served
        // here (a Wasm app wakes on any host in milliseconds).
        if let Some(cluster) = &self.config.cluster
            && access.forwarded_by.is_none()
            && let Some(elsewhere) = route.elsewhere()
        {
            self.forwarding_headers(request.headers_mut(), &request_id, &fwd, &host);
            let wait = web.timeouts.response + FORWARD_MARGIN;
            match forward::forward(cluster, &elsewhere, request, wait).await {
                Forwarded::Answer(response) => {
                    return response.map(|body| {
                        AccessBody::forwarded(Box::pin(
                            body.map_err(|e| Box::new(e) as super::access::BoxError),
                        ))
                    });
                }
                Forwarded::Unreachable(unsent) => request = unsent,
                Forwarded::Failed { host, timed_out } => {
                    access.dyno = Some(Process::from(format!("{host}")));
                    return if timed_out {
                        fail(
                            access,
                            StatusCode::SERVICE_UNAVAILABLE,
                            H12,
                            "Request timeout",
                        )
                    } else {
                        fail(
                            access,
                            StatusCode::SERVICE_UNAVAILABLE,
                            H99,
                            "Application error",
                        )
                    };
                }
            }
        }
        let web = match route.serving_state().await {
            Ok((web, wake)) => {
                access.wake = wake;
                web
            }
            Err(reason) => {
                route.log().emit(
                    Source::Renga,
                    &Process::from("web"),
                    format!("Error (App failed to wake): request {request_id}: {reason}"),
                );
                return fail(
                    access,
                    StatusCode::SERVICE_UNAVAILABLE,
                    H99,
                    "Application error",
                );
            }
        };
        let slot = match web.acquire().await {
            Ok(slot) => slot,
            Err(NoDyno::NoneRunning) => {
                return fail(
                    access,
                    StatusCode::SERVICE_UNAVAILABLE,
                    H14,
                    "No web processes running",
                );
            }
            Err(NoDyno::BacklogTooDeep) => {
                return fail(
                    access,
                    StatusCode::SERVICE_UNAVAILABLE,
                    H11,
                    "Backlog too deep",
                );
            }
        };
        let dyno = slot.dyno().clone();
        access.dyno = Some(dyno.name().clone());
        access.meter = dyno.meter().clone();

        if access.forwarded_by.is_none() {
            self.forwarding_headers(request.headers_mut(), &request_id, &fwd, &host);
        }

        let limit = self.config.max_body_bytes;
        let request = request.map(|body| {
            Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
                .map_err(move |e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        BodyError::TooLarge(limit)
                    } else {
                        BodyError::Client(e)
                    }
                })
                .boxed_unsync()
        });

        match dyno.serve(request, &web.timeouts).await {
            Ok(served) => {
                access.connect = served.connect;
                let (mut parts, body) = served.response.into_parts();
                parts.headers.insert(
                    &X_REQUEST_ID,
                    HeaderValue::from_str(&request_id).expect("request ids are header-safe"),
                );
                access.status = parts.status.as_u16();
                Response::from_parts(parts, AccessBody::dyno(body, access, slot))
            }
            Err(failure) => {
                drop(slot);
                let (status, code, title) = match &failure {
                    Failure::Timeout => (StatusCode::SERVICE_UNAVAILABLE, H12, "Request timeout"),
                    Failure::Crashed(_) => {
                        (StatusCode::INTERNAL_SERVER_ERROR, H13, "Application error")
                    }
                    Failure::MemoryExceeded { .. } => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        R14,
                        "Memory quota exceeded",
                    ),
                    Failure::NoResponse => {
                        (StatusCode::SERVICE_UNAVAILABLE, H13, "Application error")
                    }
                    Failure::ErrorResponse(_) => {
                        (StatusCode::INTERNAL_SERVER_ERROR, H13, "Application error")
                    }
                    Failure::Start(_) => {
                        (StatusCode::SERVICE_UNAVAILABLE, H99, "Application error")
                    }
                    Failure::AppCrashed(_) => {
                        (StatusCode::SERVICE_UNAVAILABLE, H10, "Application error")
                    }
                    Failure::BootTimeout => {
                        (StatusCode::SERVICE_UNAVAILABLE, H20, "Application error")
                    }
                };
                report(&route, dyno.as_ref(), &request_id, &failure);
                fail(access, status, code, title)
            }
        }
    }
}

impl Proxy {
    /// What the app learns of its client: the request id, the chain of
    /// addresses, the protocol and port it came in on, when the router got
    /// it. A forwarded request keeps what the first router set.
    fn forwarding_headers(
        &self,
        headers: &mut http::HeaderMap,
        request_id: &str,
        fwd: &str,
        host: &str,
    ) {
        headers.insert(
            &X_REQUEST_ID,
            HeaderValue::from_str(request_id).expect("request ids are header-safe"),
        );
        if let Ok(value) = HeaderValue::from_str(fwd) {
            headers.insert(&X_FORWARDED_FOR, value);
        }
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        headers.insert(&X_FORWARDED_PORT, self.port.clone());
        headers.insert(&X_REQUEST_START, HeaderValue::from(unix_millis()));
        if !headers.contains_key(HOST)
            && let Ok(value) = HeaderValue::from_str(host)
        {
            headers.insert(HOST, value);
        }
    }
}

/// Explains a failed request in the app's log, from the platform, as Heroku
/// does with `heroku[web.1]: Error R14 (Memory quota exceeded)`.
fn report(route: &super::AppRoute, dyno: &WebDyno, request_id: &str, failure: &Failure) {
    let message = match failure {
        Failure::MemoryExceeded { limit } => format!(
            "Error R14 (Memory quota exceeded): request {request_id} needed more than the {} memory limit of this dyno; the instance was stopped",
            crate::units::ByteSize(*limit)
        ),
        Failure::Timeout => format!(
            "Error H12 (Request timeout): request {request_id} got no response in time; the instance was stopped"
        ),
        Failure::Crashed(trap) => format!("Error (Guest trapped): request {request_id}: {trap}"),
        Failure::NoResponse => {
            format!(
                "Error (No response): request {request_id}: the guest returned without sending a response"
            )
        }
        Failure::ErrorResponse(code) => {
            format!(
                "Error (Error response): request {request_id}: the guest answered with error {code}"
            )
        }
        Failure::Start(reason) => {
            format!("Error (Instance failed to start): request {request_id}: {reason}")
        }
        Failure::AppCrashed(reason) => {
            format!("Error H10 (App crashed): request {request_id}: {reason}")
        }
        Failure::BootTimeout => format!(
            "Error H20 (App boot timeout): request {request_id}: the web process did not accept connections on $PORT in time"
        ),
    };
    route
        .log()
        .emit(Source::Renga, &Process::clone(dyno.name()), message);
}

fn fail(
    mut access: Access,
    status: StatusCode,
    code: ErrorCode,
    title: &str,
) -> Response<AccessBody> {
    access.status = status.as_u16();
    access.error = Some(code);
    let request_id = access.request_id.clone();
    page(status, title, &request_id, Some(access))
}

fn page(
    status: StatusCode,
    title: &str,
    request_id: &str,
    access: Option<Access>,
) -> Response<AccessBody> {
    let body = Bytes::from(error_page(status.as_u16(), title, request_id));
    let mut response = Response::new(AccessBody::page(body, access));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(&X_REQUEST_ID, value);
    }
    response
}

fn request_id(client: Option<&HeaderValue>) -> String {
    if let Some(value) = client.and_then(|v| v.to_str().ok()) {
        let valid = !value.is_empty()
            && value.len() <= MAX_REQUEST_ID
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(&b));
        if valid {
            return value.to_string();
        }
    }
    uuid::Uuid::new_v4().to_string()
}

/// The host a request is for, lowercase and without a port: from the URI's
/// authority (HTTP/2) or the `Host` header (HTTP/1.1).
fn request_host<B>(request: &Request<B>) -> String {
    let raw = request
        .uri()
        .authority()
        .map(|a| a.host())
        .or_else(|| {
            request
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| {
                    h.rsplit_once(':').map_or(h, |(host, port)| {
                        if port.bytes().all(|b| b.is_ascii_digit()) {
                            host
                        } else {
                            h
                        }
                    })
                })
        })
        .unwrap_or("");
    raw.trim_end_matches('.').to_ascii_lowercase()
}

fn forwarded_for(existing: Option<&HeaderValue>, peer: SocketAddr) -> String {
    let ip = peer.ip().to_canonical();
    match existing.and_then(|v| v.to_str().ok()).map(str::trim) {
        Some(chain) if !chain.is_empty() => format!("{chain}, {ip}"),
        _ => ip.to_string(),
    }
}

fn content_length<B>(request: &Request<B>) -> Option<u64> {
    request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Keeps a client-supplied value from breaking the log line's fields.
fn log_safe(value: &str) -> String {
    value
        .replace('"', "%22")
        .replace(char::is_whitespace, "%20")
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_request_ids_are_kept_only_when_safe() {
        let ok = HeaderValue::from_static("client-id-123");
        assert_eq!(request_id(Some(&ok)), "client-id-123");
        let long = HeaderValue::from_str(&"a".repeat(201)).unwrap();
        assert_eq!(request_id(Some(&long)).len(), 36);
        let spaced = HeaderValue::from_static("two words");
        assert_ne!(request_id(Some(&spaced)), "two words");
        assert_eq!(request_id(None).len(), 36);
    }

    #[test]
    fn host_is_lowercase_without_port() {
        let request = Request::builder()
            .header(HOST, "Hello.LocalHost:8080")
            .body(())
            .unwrap();
        assert_eq!(request_host(&request), "hello.localhost");
        let request = Request::builder()
            .uri("http://h2.example/x")
            .body(())
            .unwrap();
        assert_eq!(request_host(&request), "h2.example");
    }

    #[test]
    fn forwarded_for_appends_the_peer() {
        let peer: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        assert_eq!(forwarded_for(None, peer), "10.0.0.2");
        let chain = HeaderValue::from_static("203.0.113.9");
        assert_eq!(forwarded_for(Some(&chain), peer), "203.0.113.9, 10.0.0.2");
    }
}
