//! git over smart HTTP: `git push` to `http://API/git/APP.git`.
//!
//! Each app has a bare repository under `DATA/repos/`. Requests are handed
//! to the system's `git http-backend` (git's own CGI program) with the
//! request's token checked first; renga never speaks git's protocol itself.
//! The repository's `pre-receive` hook runs `renga git:pre-receive`, which
//! builds what was pushed to `main` or `master` through the builds API while
//! the push waits, so the build's output reaches the pusher as `remote:`
//! lines and a failed build rejects the push before any ref moves.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use futures::StreamExt;
use http::StatusCode;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::auth::{Caller, Token};
use super::body::ApiResult;
use super::{Api, ApiError};
use crate::app::App;
use crate::platform::Platform;

/// The hook every app repository runs before it accepts a push.
const PRE_RECEIVE: &str = "#!/bin/sh
# renga: builds what is pushed to main or master before the push is accepted.
if [ -z \"$RENGA_EXE\" ]; then
  echo 'Push through the renga API: git push renga main' >&2
  exit 1
fi
exec \"$RENGA_EXE\" git:pre-receive
";

/// What a client may ask of an app repository.
const SERVICES: &[&str] = &["info/refs", "git-receive-pack", "git-upload-pack", "HEAD"];

/// A CGI response head larger than this is not git's.
const MAX_HEAD_BYTES: usize = 16 << 10;

pub(super) fn routes() -> Router<Api> {
    Router::new().route("/git/{*repository}", any(serve))
}

/// One request of git's, for any method, answered by `git http-backend`.
async fn serve(
    State(platform): State<Arc<Platform>>,
    Caller(user): Caller,
    Token(token): Token,
    request: Request,
) -> ApiResult {
    let path = request.uri().path().to_string();
    let rest = path.strip_prefix("/git/").unwrap_or_default();
    let (repo, service) = rest
        .split_once(".git/")
        .ok_or_else(|| ApiError::not_found(&path))?;
    if !SERVICES.contains(&service) {
        return Err(ApiError::not_found(&path));
    }
    let app = platform.app(&user, repo)?;
    let root = platform.config().data.join("repos");
    prepare_repository(&root, &app)
        .await
        .map_err(crate::platform::PlatformError::Internal)?;

    let (parts, body) = request.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut command = Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", &root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", format!("/{}.git/{service}", app.id))
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("REMOTE_USER", &user.name)
        .env("REMOTE_ADDR", "127.0.0.1")
        // What the hook needs to build through the API as the pusher.
        .env("RENGA_EXE", std::env::current_exe().unwrap_or_default())
        .env("RENGA_API_URL", &platform.config().api_url)
        .env("RENGA_API_KEY", &token)
        // By id: a rename during the push must not send the build to
        // whichever app takes the old name.
        .env("RENGA_APP", &app.id)
        .env("RENGA_APP_NAME", app.name.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (cgi, name) in [
        ("CONTENT_TYPE", "content-type"),
        ("CONTENT_LENGTH", "content-length"),
        ("HTTP_CONTENT_ENCODING", "content-encoding"),
        ("GIT_PROTOCOL", "git-protocol"),
    ] {
        if let Some(value) = header(name) {
            command.env(cgi, value);
        }
    }
    let mut child = command.spawn().map_err(|e| {
        crate::platform::PlatformError::Internal(anyhow::anyhow!(
            "cannot run `git http-backend` (is git installed?): {e}"
        ))
    })?;

    // The request body goes to the CGI's stdin while its answer is read.
    let mut stdin = child.stdin.take().expect("piped");
    tokio::spawn(async move {
        let mut body = body;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref()
                && stdin.write_all(data).await.is_err()
            {
                return;
            }
        }
        let _ = stdin.shutdown().await;
    });
    let mut stderr = child.stderr.take().expect("piped");
    let app_name = app.name.to_string();
    tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            tracing::warn!(app = %app_name, "git http-backend: {line}");
        }
    });

    let mut stdout = child.stdout.take().expect("piped");
    let (head, rest) = read_cgi_head(&mut stdout).await?;
    let mut response = Response::builder().status(StatusCode::OK);
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("500");
            response = response.status(code.parse::<u16>().unwrap_or(500));
        } else {
            response = response.header(name.trim(), value);
        }
    }
    let stream = futures::stream::unfold(
        (Some(Bytes::from(rest)), stdout, child),
        |(first, mut stdout, child)| async move {
            if let Some(first) = first.filter(|b| !b.is_empty()) {
                return Some((first, (None, stdout, child)));
            }
            let mut buf = vec![0u8; 16 << 10];
            match stdout.read(&mut buf).await {
                Ok(0) | Err(_) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Bytes::from(buf), (None, stdout, child)))
                }
            }
        },
    );
    let body = Body::from_stream(stream.map(Ok::<_, std::convert::Infallible>));
    response
        .body(body)
        .map_err(|e| crate::platform::PlatformError::Internal(e.into()).into())
}

/// Reads the CGI's header block; returns it and whatever body bytes came
/// with it.
async fn read_cgi_head(
    stdout: &mut tokio::process::ChildStdout,
) -> Result<(String, Vec<u8>), ApiError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((end, skip)) = find_blank_line(&buf) {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return Ok((head, buf[end + skip..].to_vec()));
        }
        if buf.len() > MAX_HEAD_BYTES {
            break;
        }
        let n = stdout
            .read(&mut chunk)
            .await
            .map_err(|e| crate::platform::PlatformError::Internal(e.into()))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Err(crate::platform::PlatformError::Internal(anyhow::anyhow!(
        "git http-backend gave no response head"
    ))
    .into())
}

fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// The app's bare repository, created on first use, with renga's hook.
async fn prepare_repository(root: &Path, app: &App) -> anyhow::Result<PathBuf> {
    let dir = root.join(format!("{}.git", app.id));
    if !dir.join("HEAD").is_file() {
        tokio::fs::create_dir_all(root).await?;
        let status = Command::new("git")
            .args(["init", "--bare", "--quiet", "--initial-branch=main"])
            .arg(&dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", root)
            .status()
            .await?;
        anyhow::ensure!(status.success(), "git init failed ({status})");
        let status = Command::new("git")
            .arg("--git-dir")
            .arg(&dir)
            .args(["config", "http.receivepack", "true"])
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", root)
            .status()
            .await?;
        anyhow::ensure!(status.success(), "git config failed ({status})");
    }
    let hook = dir.join("hooks").join("pre-receive");
    if tokio::fs::read_to_string(&hook).await.ok().as_deref() != Some(PRE_RECEIVE) {
        tokio::fs::create_dir_all(hook.parent().expect("a folder")).await?;
        tokio::fs::write(&hook, PRE_RECEIVE).await?;
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).await?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_heads_end_at_the_first_blank_line() {
        assert_eq!(find_blank_line(b"Status: 200\r\n\r\nbody"), Some((11, 4)));
        assert_eq!(find_blank_line(b"A: b\n\nbody\r\n\r\n"), Some((4, 2)));
        assert_eq!(find_blank_line(b"A: b\r\n"), None);
    }
}
