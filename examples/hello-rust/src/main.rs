//! renga's hello app.
//!
//! Answers every request with `hello from renga`, or with the config var
//! `GREETING` in place of `hello` when it is set:
//!
//! ```text
//! $ renga config:set GREETING=Howdy
//! $ curl http://hello.localhost:8080/
//! Howdy from renga
//! ```

use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(_request: Request<Body>) -> Result<Response<Body>, Error> {
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "hello".to_string());
    Ok(Response::new(format!("{greeting} from renga\n").into()))
}
