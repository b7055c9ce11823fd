//! Request and response bodies: JSON within the router's size limit, uploads
//! streamed to a file, and text streamed for as long as a log or a build
//! goes on.

use std::path::PathBuf;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::middleware::Next;
use axum::response::Response;
use futures::{Stream, StreamExt};
use http::StatusCode;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::ApiError;
use crate::platform::PlatformError;

/// JSON request bodies larger than this are refused with 413 (uploads have
/// their own limits).
pub(super) const MAX_JSON_BYTES: usize = 1 << 20;

/// How much of a refused JSON body is read and thrown away before the 413 is
/// sent. A client still writing its body when the connection closes sees a
/// broken pipe, never the answer; reading a bounded rest costs bandwidth, not
/// memory, and lets an honest client with an oversized body read why it was
/// refused. Beyond this the connection is closed at once.
const MAX_DISCARDED_BYTES: usize = 16 << 20;

/// A handler's answer, or its refusal.
pub(super) type ApiResult = Result<Response, ApiError>;

/// A JSON request body.
pub(super) struct JsonBody<T>(pub T);

/// A JSON request body, or `T::default()` when there is none (Heroku's CLI
/// sends none where every field is optional).
pub(super) struct JsonOrDefault<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<JsonBody<T>, ApiError> {
        let bytes = json_bytes(request).await?;
        parse(&bytes).map(JsonBody)
    }
}

impl<S, T> FromRequest<S> for JsonOrDefault<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<JsonOrDefault<T>, ApiError> {
        let bytes = json_bytes(request).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonOrDefault(T::default()));
        }
        parse(&bytes).map(JsonOrDefault)
    }
}

/// Reads a small body (one with a `Content-Length` within
/// [`MAX_JSON_BYTES`]) whole before its route runs. hyper keeps a connection
/// for the client's next request only when the last request's body was read
/// to its end; a route that needs no body (`POST /sources`, to which clients
/// send `{}`) would otherwise answer before a late body arrived and close
/// the connection the client's next request is already on its way over.
pub(super) async fn read_small_body(request: Request, next: Next) -> ApiResult {
    let small = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|length| length > 0 && length <= MAX_JSON_BYTES);
    if !small {
        return Ok(next.run(request).await);
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_JSON_BYTES)
        .await
        .map_err(|e| ApiError::bad_request(format!("Reading the request body: {e}")))?;
    Ok(next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await)
}

/// A JSON body, whole, within [`MAX_JSON_BYTES`]. A longer one is refused
/// with 413 once it has been read to its end (up to [`MAX_DISCARDED_BYTES`]),
/// so that the client, still sending, can read the refusal.
async fn json_bytes(request: Request) -> Result<Bytes, ApiError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let too_large = || {
        ApiError::too_large(format!(
            "Request bodies are limited to {}",
            crate::units::ByteSize(MAX_JSON_BYTES as u64)
        ))
    };
    if declared.is_some_and(|length| length > MAX_DISCARDED_BYTES) {
        return Err(too_large());
    }
    let mut body = request.into_body();
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("Reading the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if kept.len() + data.len() > MAX_JSON_BYTES {
            drop(kept);
            discard_rest(&mut body, MAX_DISCARDED_BYTES).await;
            return Err(too_large());
        }
        kept.extend_from_slice(&data);
    }
    Ok(Bytes::from(kept))
}

/// Reads and throws away what is left of a refused body, up to `budget`
/// bytes, so that the client can finish sending and read the refusal.
async fn discard_rest(body: &mut Body, budget: usize) {
    let mut seen = 0usize;
    while seen <= budget {
        match body.frame().await {
            Some(Ok(frame)) => seen += frame.data_ref().map_or(0, Bytes::len),
            _ => return,
        }
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))
}

/// Streams an upload to `path` while hashing it, refusing it past `limit`.
pub(super) async fn receive_blob(
    mut body: Body,
    path: PathBuf,
    limit: u64,
    what: &str,
) -> Result<(PathBuf, String, u64), ApiError> {
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| PlatformError::Internal(e.into()))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let result: Result<(), ApiError> = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ApiError::bad_request(e.to_string()))?;
            if let Some(data) = frame.data_ref() {
                size += data.len() as u64;
                if size > limit {
                    discard_rest(&mut body, MAX_DISCARDED_BYTES).await;
                    return Err(ApiError::too_large(format!(
                        "The {what} is larger than the {} limit",
                        crate::units::ByteSize(limit)
                    )));
                }
                hasher.update(data);
                file.write_all(data)
                    .await
                    .map_err(|e| PlatformError::Internal(e.into()))?;
            }
        }
        file.flush()
            .await
            .map_err(|e| PlatformError::Internal(e.into()))?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(e);
    }
    Ok((path, hex::encode(hasher.finalize()), size))
}

/// Plain text, sent as `chunks` come; dropped (and with it whatever feeds
/// it) when the client goes away.
pub(super) fn text_stream(chunks: impl Stream<Item = Bytes> + Send + 'static) -> Response {
    let body = Body::from_stream(chunks.map(Ok::<_, std::convert::Infallible>));
    let mut response = Response::new(body);
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

pub(super) fn ok(value: Value) -> ApiResult {
    Ok(json_response(StatusCode::OK, &value))
}

pub(super) fn created(value: Value) -> ApiResult {
    Ok(json_response(StatusCode::CREATED, &value))
}

pub(super) fn json_response(status: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
