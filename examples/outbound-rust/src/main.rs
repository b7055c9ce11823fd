//! renga's outbound HTTP example: forwards `GET /PATH` to `UPSTREAM_URL`
//! + `/PATH` and answers with what the upstream said.
//!
//! renga denies every outbound call unless the app's allow-list names the
//! destination (Spin's `allowed_outbound_hosts` syntax):
//!
//! ```text
//! $ renga config:set UPSTREAM_URL=https://api.example.com \
//!     RENGA_ALLOWED_OUTBOUND_HOSTS=https://api.example.com -a outbound
//! $ curl http://outbound.localhost:8080/status
//! upstream said 200 OK: ...
//! ```
//!
//! A call the allow-list does not cover fails with `HTTP-request-denied`,
//! which this app shows as a 502; every call gets a `renga[outbound]` line
//! in `renga logs`.

use wstd::http::{Body, Client, Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let upstream = match renga_sdk::config::get("UPSTREAM_URL") {
        Ok(Some(url)) => url,
        Ok(None) => {
            return Ok(answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "set UPSTREAM_URL (renga config:set UPSTREAM_URL=https://...)\n".to_string(),
            ));
        }
        Err(e) => return Ok(answer(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))),
    };
    let path = request.uri().path();
    let url = format!("{}{path}", upstream.trim_end_matches('/'));
    let outbound = Request::get(url.as_str()).body(Body::empty())?;
    Ok(match Client::new().send(outbound).await {
        Ok(response) => {
            let status = response.status();
            let mut body = response.into_body();
            let text = body.contents().await?;
            answer(
                StatusCode::OK,
                format!("upstream said {status}: {}", String::from_utf8_lossy(text)),
            )
        }
        Err(e) => answer(
            StatusCode::BAD_GATEWAY,
            format!("calling {url} failed: {e}\n"),
        ),
    })
}

fn answer(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
}
