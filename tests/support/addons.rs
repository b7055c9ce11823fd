//! What the add-on tests share: creating an add-on, requests with a method
//! and a body, and reading a counter's answer.

use super::{Reply, Server, request};

/// `addons:create` with `--json`: the add-on as the API shows it.
pub fn create_addon(server: &Server, app: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["addons:create"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-a", app, "--json"]);
    let ran = server.cli(&all).ok();
    serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("{e}: {ran}"))
}

/// A request to an app through the router, with a method and a body.
pub fn app_request(server: &Server, method: &str, app: &str, path: &str, body: &[u8]) -> Reply {
    request(
        method,
        &format!("http://127.0.0.1:{}{path}", server.http_port),
        &[("Host", &format!("{app}.localhost"))],
        Some(body),
    )
}

/// The count in a counter's `hits: N` answer.
pub fn hits(reply: &Reply) -> u64 {
    assert_eq!(reply.status, 200, "{reply:?}");
    reply
        .body
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a count: {reply:?}"))
}
