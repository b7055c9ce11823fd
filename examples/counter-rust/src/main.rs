//! renga's hit counter: every request to `/` counts one hit in the app's
//! key-value add-on and answers with the count so far.
//!
//! ```text
//! $ renga addons:create renga-kv -a counter
//! $ git push renga main
//! $ curl http://counter.localhost:8080/
//! hits: 1
//! $ curl http://counter.localhost:8080/
//! hits: 2
//! ```
//!
//! The count is an atomic `increment`, so it stays exact across web dynos,
//! concurrent requests and restarts. `/reset` sets it back to zero; a path
//! such as `/page/about` counts that page on its own.

use renga_sdk::kv::Store;
use wstd::http::{Body, Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let store = match Store::open_default() {
        Ok(store) => store,
        Err(e) => return Ok(answer(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n"))),
    };
    let path = request.uri().path();
    let key = match path {
        "/" => "hits".to_string(),
        "/reset" => {
            return Ok(match store.delete("hits") {
                Ok(()) => answer(StatusCode::OK, "hits: 0\n".to_string()),
                Err(e) => answer(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
            });
        }
        page if page.starts_with("/page/") => format!("hits:{}", &page["/page/".len()..]),
        _ => return Ok(answer(StatusCode::NOT_FOUND, "not found\n".to_string())),
    };
    Ok(match store.increment(&key, 1) {
        Ok(hits) => answer(StatusCode::OK, format!("hits: {hits}\n")),
        Err(e) => answer(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    })
}

fn answer(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
}
