//! Request and response bodies: JSON with a size limit, uploads streamed to
//! a file, and text streamed for as long as a log or a build goes on.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{ApiBody, ApiError, ApiResult, BoxError};
use crate::auth::User;
use crate::builds::BuildOutput;
use crate::platform::{Platform, PlatformError};

/// JSON request bodies larger than this are refused with 413.
const MAX_JSON_BYTES: usize = 1 << 20;

/// Streams an upload to `path` while hashing it, refusing it past `limit`.
pub(super) async fn receive_blob(
    mut body: Incoming,
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
            let frame = frame.map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
            })?;
            if let Some(data) = frame.data_ref() {
                size += data.len() as u64;
                if size > limit {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        format!(
                            "The {what} is larger than the {} limit",
                            crate::units::ByteSize(limit)
                        ),
                    ));
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

pub(super) fn stream_logs(platform: &Platform, user: &User, id: &str) -> ApiResult {
    let (session, log) = platform.open_log_session(user, id)?;
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
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, BoxError>(Frame::data(chunk)), rx))
    });
    let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}

/// A build's output as plain text, following it until the build ends.
pub(super) fn stream_build_output(output: Arc<BuildOutput>) -> Response<ApiBody> {
    let stream = futures::stream::unfold((output, 0usize), |(output, read)| async move {
        let lines = output.next(read).await?;
        let read = read + lines.len();
        let mut text = lines.join("\n");
        text.push('\n');
        Some((
            Ok::<_, BoxError>(Frame::data(Bytes::from(text))),
            (output, read),
        ))
    });
    let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    match Limited::new(body, MAX_JSON_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "Request bodies are limited to {}",
                crate::units::ByteSize(MAX_JSON_BYTES as u64)
            ),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            e.to_string(),
        )),
    }
}

pub(super) async fn read_json<T: DeserializeOwned>(body: Incoming) -> Result<T, ApiError> {
    let bytes = read_body(body).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("Invalid JSON body: {e}"),
        )
    })
}

pub(super) async fn read_json_or_default<T: DeserializeOwned + Default>(
    body: Incoming,
) -> Result<T, ApiError> {
    let bytes = read_body(body).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("Invalid JSON body: {e}"),
        )
    })
}

pub(super) fn ok(value: Value) -> ApiResult {
    Ok(json_response(StatusCode::OK, &value))
}

pub(super) fn created(value: Value) -> ApiResult {
    Ok(json_response(StatusCode::CREATED, &value))
}

pub(super) fn json_response(status: StatusCode, value: &Value) -> Response<ApiBody> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
