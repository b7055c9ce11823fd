//! WASI 0.3 web processes (`wasi:http/service@0.3`, component-model
//! async): the same per-request path as WASI 0.2's, a fresh store and
//! instance per request, the guest on its own task, bounded by the same
//! timeouts, limits and CPU turns.
//!
//! What differs: the guest's `handler.handle` is an async call made inside
//! the store's event loop (`run_concurrent`), and the response body is a
//! stream the guest may keep writing after `handle` returned, so the task
//! stays in that loop until the guest has no work left (or the client is
//! gone and the grace period is over).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::HOST;
use http_body::Body;
use http_body_util::BodyExt;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p3::Request;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use super::{
    AbortOnDrop, GuestBody, GuestFailure, GuestTask, InstanceSpec, Late, Outcome, Served, Timeouts,
    abandoned, instantiated, web_store,
};
use crate::runtime::cpu::CpuScheduler;
use crate::runtime::state::DynoState;

/// What the guest answered: a response whose body may still stream, or its
/// error code.
type Answer = Result<hyper::Response<HyperOutgoingBody>, String>;

pub(super) async fn serve<B>(
    pre: &ServicePre<DynoState>,
    scheduler: &Arc<CpuScheduler>,
    spec: &InstanceSpec,
    request: hyper::Request<B>,
    timeouts: &Timeouts,
) -> Result<Served, GuestFailure>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let started = Instant::now();
    let deadline = started + timeouts.response;
    let request_id = request.headers().get("x-request-id").cloned();
    let mut store = web_store(pre.engine(), spec, scheduler);

    let meter = spec.caps.meter().clone();
    let instance = tokio::time::timeout_at(
        deadline.into(),
        meter.timed(pre.instantiate_async(&mut store)),
    )
    .await;
    let service = instantiated(instance, store.data().limits.exceeded, spec.memory_limit)?;
    let connect = started.elapsed();
    let request = with_authority(request).map(|body| body.map_err(Into::into).boxed_unsync());
    let (request, request_io) = Request::from_http(store.data_mut().http().hooks, request);

    let (answer_tx, answer_rx) = tokio::sync::oneshot::channel::<Answer>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let late = Late::new(spec, request_id);
    let task_late = late.clone();
    let grace = timeouts.grace;
    let task = tokio::spawn(async move {
        let _counted = GuestTask::new();
        let call = meter.timed(
            store.run_concurrent(async move |guest| -> wasmtime::Result<()> {
                match service.handle(guest, request).await? {
                    Err(code) => {
                        let _ = answer_tx.send(Err(format!("{code:?}")));
                    }
                    Ok(response) => {
                        let response = guest.with(|store| response.into_http(store, request_io))?;
                        let _ = answer_tx.send(Ok(response));
                        // The body streams from tasks the guest keeps running:
                        // stay in the event loop until they are done.
                        std::future::poll_fn(|cx| guest.poll_no_interesting_tasks(cx)).await;
                    }
                }
                Ok(())
            }),
        );
        let outcome = tokio::select! {
            biased;
            result = call => Outcome::of(result.and_then(|r| r)),
            () = abandoned(done_rx, grace) => Outcome::Abandoned,
        };
        let exceeded = store.data().limits.exceeded;
        task_late.guest_ended(&outcome, exceeded);
        (outcome, exceeded)
    });
    let task = AbortOnDrop(Some(task));

    match tokio::time::timeout_at(deadline.into(), answer_rx).await {
        Ok(Ok(Ok(response))) => {
            let response = response.map(|inner| GuestBody::new(inner, timeouts, late, done_tx));
            task.detach();
            Ok(Served { response, connect })
        }
        Ok(Ok(Err(code))) => Err(GuestFailure::ErrorResponse(code)),
        // The guest's call ended without an answer: it trapped, ran out of
        // memory, or returned nothing.
        Ok(Err(_)) => Err(task.failure(deadline, spec.memory_limit).await),
        // Dropping the task's future drops the instance with it.
        Err(_) => Err(GuestFailure::Timeout),
    }
}

/// WASI 0.3 reads the scheme and authority from the request's URI only (the
/// `Host` header is not passed on), and HTTP/1.1 requests carry just a
/// path: give the URI `http://HOST`, as WASI 0.2's handler sees it.
pub(super) fn with_authority<B>(request: hyper::Request<B>) -> hyper::Request<B> {
    let (mut parts, body) = request.into_parts();
    if parts.uri.authority().is_none()
        && let Some(host) = parts.headers.get(HOST).and_then(|h| h.to_str().ok())
    {
        let mut uri = parts.uri.clone().into_parts();
        uri.scheme = Some(http::uri::Scheme::HTTP);
        uri.authority = host.parse().ok();
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        if let Ok(full) = http::Uri::from_parts(uri) {
            parts.uri = full;
        }
    }
    hyper::Request::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_header_becomes_the_authority() {
        let request = hyper::Request::builder()
            .uri("/hello?x=1")
            .header(HOST, "app.localhost:8080")
            .body(())
            .unwrap();
        let request = with_authority(request);
        assert_eq!(
            request.uri().to_string(),
            "http://app.localhost:8080/hello?x=1"
        );
    }
}
