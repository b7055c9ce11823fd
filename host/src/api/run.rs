//! `POST /apps/{app}/dynos`: one-off dynos, detached (output to the log) or
//! attached to the caller over an upgraded connection (see [`crate::attach`]).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request, State};
use axum::response::Response;
use http::header::{CONNECTION, UPGRADE};
use http::{HeaderValue, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::ApiError;
use super::auth::Caller;
use super::body::{ApiResult, JsonBody, created};
use super::extract::AppRef;
use crate::attach;
use crate::platform::{DETACHED_TIME_LIMIT, OneOff, Platform};
use crate::runtime::ProcessIo;

#[derive(serde::Deserialize)]
struct Create {
    /// Heroku's shape: one command line, split on whitespace.
    command: Option<String>,
    /// renga's: the words exactly.
    argv: Option<Vec<String>>,
    size: Option<String>,
    #[serde(default)]
    attach: bool,
}

/// The upgrade is taken before the body is read (which consumes the
/// request); hyper hands the connection over once the 101 has gone.
pub(super) async fn create(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    AppRef { name, app }: AppRef,
    mut request: Request,
) -> ApiResult {
    let upgrade = request
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(attach::PROTOCOL));
    let on_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let JsonBody(create) = JsonBody::<Create>::from_request(request, &()).await?;
    let argv = match (create.argv, create.command) {
        (Some(argv), _) => argv,
        (None, Some(command)) => command.split_whitespace().map(str::to_string).collect(),
        (None, None) => return Err(ApiError::invalid("give a command (or argv) to run")),
    };
    let size = match &create.size {
        Some(size) => Some(
            size.parse()
                .map_err(|e: crate::size::UnknownSize| ApiError::invalid(e.to_string()))?,
        ),
        None => None,
    };
    if create.attach && on_upgrade.is_none() {
        // Heroku's CLI asks for an attached dyno this way, then expects a
        // TLS rendezvous address, which renga does not serve.
        return Err(ApiError::invalid(format!(
            "an attached dyno needs `Connection: Upgrade` and `Upgrade: {}`: use `renga run`, \
             or `heroku run:detached` and read its output with `heroku logs --dyno run.N` \
             (renga has no TLS rendezvous for `heroku run`)",
            attach::PROTOCOL
        )));
    }
    let dyno = platform.prepare_run(&user, &name, &argv, size).await?;
    let view = json!({
        "name": dyno.name(),
        "type": "run",
        "state": "up",
        "command": dyno.command(),
        "size": dyno.size(),
        "attach_url": null,
        "app": { "id": app.id, "name": app.name },
    });
    match on_upgrade {
        None => {
            tokio::spawn(async move {
                let _ = dyno
                    .run(ProcessIo::default(), Some(DETACHED_TIME_LIMIT))
                    .await;
            });
            created(view)
        }
        Some(on_upgrade) => {
            let name = dyno.name().to_string();
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => attached(TokioIo::new(upgraded), dyno).await,
                    Err(e) => tracing::debug!(error = %e, "attach upgrade failed"),
                }
            });
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let headers = response.headers_mut();
            headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
            headers.insert(UPGRADE, HeaderValue::from_static(attach::PROTOCOL));
            if let Ok(value) = HeaderValue::from_str(&name) {
                headers.insert("renga-dyno", value);
            }
            Ok(response)
        }
    }
}

/// Runs an attached one-off dyno: frames from the caller feed its stdin, its
/// stdout and stderr go back as frames, then its exit code. If the caller
/// goes away, the dyno is stopped.
async fn attached<S>(connection: S, dyno: OneOff)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut from_caller, mut to_caller) = tokio::io::split(connection);
    let (stdin, mut stdin_writer) = tokio::io::duplex(64 << 10);
    let (stdout_reader, stdout) = tokio::io::duplex(64 << 10);
    let (stderr_reader, stderr) = tokio::io::duplex(64 << 10);
    let (frames, mut outgoing) = tokio::sync::mpsc::channel::<(u8, Bytes)>(32);

    let writer = tokio::spawn(async move {
        while let Some((stream, data)) = outgoing.recv().await {
            let header = attach::header(stream, data.len());
            if to_caller.write_all(&header).await.is_err()
                || to_caller.write_all(&data).await.is_err()
                || to_caller.flush().await.is_err()
            {
                return;
            }
            if stream == attach::EXIT {
                let _ = to_caller.shutdown().await;
                return;
            }
        }
    });
    let note = format!("up, {} ({})", dyno.name(), dyno.size());
    let _ = frames.send((attach::NOTE, Bytes::from(note))).await;
    let stdout_pump = tokio::spawn(pump(stdout_reader, attach::STDOUT, frames.clone()));
    let stderr_pump = tokio::spawn(pump(stderr_reader, attach::STDERR, frames.clone()));

    // The caller's frames: stdin until it closes it, then nothing until it
    // hangs up (which ends this future).
    let caller = async move {
        let mut open = true;
        loop {
            let mut header = [0u8; 8];
            if from_caller.read_exact(&mut header).await.is_err() {
                return;
            }
            let Some((stream, len)) = attach::parse_header(header) else {
                return;
            };
            let mut data = vec![0u8; len as usize];
            if from_caller.read_exact(&mut data).await.is_err() {
                return;
            }
            if stream != attach::STDIN || !open {
                continue;
            }
            if data.is_empty() {
                open = false;
                let _ = stdin_writer.shutdown().await;
            } else if stdin_writer.write_all(&data).await.is_err() {
                open = false;
            }
        }
    };

    let io = ProcessIo {
        stdin: Some(Box::new(stdin)),
        stdout: Some(Box::new(stdout)),
        stderr: Some(Box::new(stderr)),
        terminate: None,
    };
    let run = dyno.run(io, None);
    tokio::select! {
        outcome = run => {
            // The instance is gone, so its output pipes are closed: send what
            // is left, then the exit code.
            let _ = stdout_pump.await;
            let _ = stderr_pump.await;
            let code = match outcome {
                Ok(code) => code,
                Err(failure) => {
                    let _ = frames
                        .send((attach::NOTE, Bytes::from(format!("Process failed: {failure}"))))
                        .await;
                    1
                }
            };
            let _ = frames
                .send((attach::EXIT, Bytes::copy_from_slice(&code.to_be_bytes())))
                .await;
            drop(frames);
            let _ = writer.await;
        }
        () = caller => {
            // The caller hung up: dropping `run` stops the dyno.
            writer.abort();
        }
    }
}

async fn pump(
    mut reader: impl AsyncRead + Unpin,
    stream: u8,
    frames: tokio::sync::mpsc::Sender<(u8, Bytes)>,
) {
    let mut buffer = vec![0u8; 16 << 10];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if frames
                    .send((stream, Bytes::copy_from_slice(&buffer[..n])))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}
