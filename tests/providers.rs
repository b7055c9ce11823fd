//! Add-ons served by provider components: components built with the
//! provider SDK (`sdk/provider`) by the real Rust buildpack, registered
//! with `renga addons:services:add`, provisioned with `addons:create`, and
//! reached by an unchanged app through `wasi:keyvalue`; each add-on's state
//! kept apart; a provider that traps, loops or runs out of memory failing
//! only the app's call; instances back to their baseline afterwards.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{Server, TempDir, app_request, built_component, create_addon};

const ADDONS: &str = "tests/guests/addons";
const KV_TTL: &str = "examples/provider-kv-ttl";
const RATE_LIMIT: &str = "examples/provider-rate-limit";
const MISBEHAVE: &str = "tests/guests/provider-misbehave";

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `addons:create SERVICE -a APP -- OPTIONS...`: the add-on as the API
/// shows it, or what the CLI said when it refused.
fn create_with(
    server: &Server,
    app: &str,
    service: &str,
    options: &[&str],
) -> Result<serde_json::Value, String> {
    let mut args = vec!["addons:create", service, "-a", app, "--json", "--"];
    args.extend_from_slice(options);
    let ran = server.cli(&args);
    if ran.status.success() {
        Ok(serde_json::from_str(&ran.stdout).unwrap())
    } else {
        Err(format!("{}{}", ran.stdout, ran.stderr))
    }
}

fn register(server: &Server, crate_dir: &str, name: &str) {
    let wasm = built_component(crate_dir);
    server
        .cli(&["addons:services:add", path(&wasm), "--name", name])
        .ok();
}

/// Deploys the add-ons guest, which imports SQL too: the app gets a
/// `renga-sql` add-on first.
fn deploy_addons_guest(server: &Server, app: &str) {
    create_addon(server, app, &["renga-sql"]);
    let wasm = built_component(ADDONS);
    server
        .cli(&["deploy", "--component", path(&wasm), "-a", app])
        .ok();
}

fn kv(server: &Server, app: &str, route: &str, body: &str) -> (u16, String) {
    let reply = app_request(
        server,
        "POST",
        app,
        &format!("/kv/{route}"),
        body.as_bytes(),
    );
    (reply.status, reply.body.trim().to_string())
}

#[test]
fn a_provider_component_serves_an_apps_key_value_calls() {
    let tmp = TempDir::new("providers");
    let data = tmp.join("data");
    let server = Server::start(&data);
    let ttl_wasm = built_component(KV_TTL);

    // Only the admin registers providers, and only components that are
    // providers.
    let user = server.create_user("dev@example.com");
    let refused = server.cli_as(
        &user,
        &["addons:services:add", path(&ttl_wasm), "--name", "kv-ttl"],
    );
    assert!(
        !refused.status.success() && refused.stderr.contains("Only the admin"),
        "{refused}"
    );
    let not_provider = server
        .cli(&[
            "addons:services:add",
            path(&built_component(ADDONS)),
            "--name",
            "not-a-provider",
        ])
        .failed();
    assert!(
        not_provider.stderr.contains("is not a key-value provider")
            && not_provider
                .stderr
                .contains("wasi:keyvalue/store@0.2.0-draft2"),
        "{not_provider}"
    );
    register(&server, KV_TTL, "kv-ttl");
    let services = server.cli(&["addons:services"]).ok();
    assert!(services.stdout.contains("kv-ttl"), "{services}");

    // Its add-on on an app, with an option its provider checks.
    server.cli(&["apps:create", "sessions"]).ok();
    let bad = create_with(&server, "sessions", "kv-ttl", &["--ttl", "banana"]).unwrap_err();
    assert!(bad.contains("refused"), "{bad}");
    let addon = create_with(&server, "sessions", "kv-ttl", &["--ttl", "2"]).unwrap();
    deploy_addons_guest(&server, "sessions");
    let vars = addon["config_vars"].to_string();
    assert!(vars.contains("KV_TTL_TTL_SECONDS"), "{addon:#}");
    let config = server
        .cli(&["config:get", "KV_TTL_TTL_SECONDS", "-a", "sessions"])
        .ok();
    assert_eq!(config.stdout.trim(), "2");

    // The app's unchanged wasi:keyvalue calls reach the provider.
    assert_eq!(
        kv(&server, "sessions", "set?key=user", "ada"),
        (200, "ok".into())
    );
    assert_eq!(
        kv(&server, "sessions", "get?key=user", ""),
        (200, "ada".into())
    );
    assert_eq!(
        kv(&server, "sessions", "incr?key=visits&by=5", ""),
        (200, "5".into())
    );
    assert_eq!(
        kv(&server, "sessions", "incr?key=visits", ""),
        (200, "6".into())
    );
    assert_eq!(
        kv(&server, "sessions", "cas?key=trail", ""),
        (200, "ok".into())
    );
    assert_eq!(
        kv(&server, "sessions", "cas?key=trail", ""),
        (200, "ok".into())
    );
    assert_eq!(
        kv(&server, "sessions", "get?key=trail", ""),
        (200, "xx".into())
    );
    assert_eq!(
        kv(&server, "sessions", "keys", ""),
        (200, "trail\nuser\nvisits".into())
    );
    // ... and its keys expire, as the provider promises.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        kv(&server, "sessions", "get?key=user", ""),
        (404, "missing".into())
    );
    assert_eq!(kv(&server, "sessions", "keys", ""), (200, String::new()));

    // Another app's add-on of the same provider is a store of its own.
    server.cli(&["apps:create", "carts"]).ok();
    create_addon(&server, "carts", &["kv-ttl"]);
    deploy_addons_guest(&server, "carts");
    assert_eq!(
        kv(&server, "sessions", "set?key=shared", "mine"),
        (200, "ok".into())
    );
    assert_eq!(
        kv(&server, "carts", "get?key=shared", ""),
        (404, "missing".into())
    );

    // A second provider: the rate limiter, counting hits in a window.
    register(&server, RATE_LIMIT, "rate-limit");
    server.cli(&["apps:create", "api"]).ok();
    create_with(
        &server,
        "api",
        "rate-limit",
        &["--limit", "3", "--window", "60"],
    )
    .unwrap();
    deploy_addons_guest(&server, "api");
    let limit = server
        .cli(&["config:get", "RATE_LIMIT_LIMIT", "-a", "api"])
        .ok();
    assert_eq!(limit.stdout.trim(), "3");
    let counts: Vec<String> = (0..4)
        .map(|_| kv(&server, "api", "incr?key=ip-10.0.0.1", "").1)
        .collect();
    assert_eq!(counts, ["1", "2", "3", "4"]);
    assert_eq!(
        kv(&server, "api", "incr?key=ip-10.0.0.2", ""),
        (200, "1".into())
    );
    let (status, said) = kv(&server, "api", "set?key=ip-10.0.0.1", "0");
    assert_eq!(status, 500, "{said}");

    // Registered providers come back with the server, and so does the data
    // their add-ons keep.
    assert_eq!(
        kv(&server, "carts", "set?key=kept", "yes"),
        (200, "ok".into())
    );
    server.terminate();
    let server = Server::start(&data);
    assert_eq!(
        kv(&server, "carts", "get?key=kept", ""),
        (200, "yes".into())
    );

    // A service with add-ons is not removed; without them it is.
    let busy = server
        .cli(&["addons:services:remove", "rate-limit"])
        .failed();
    assert!(busy.stderr.contains("destroy them first"), "{busy}");
    // (The app's code needs a key-value add-on: it gets a built-in one.)
    create_addon(&server, "api", &["renga-kv", "--as", "SPARE"]);
    server
        .cli(&[
            "addons:destroy",
            "RATE_LIMIT",
            "-a",
            "api",
            "--confirm",
            "api",
        ])
        .ok();
    server.cli(&["addons:services:remove", "rate-limit"]).ok();
    let gone = create_with(&server, "api", "rate-limit", &[]).unwrap_err();
    assert!(gone.contains("Couldn't find that add-on service"), "{gone}");
}

#[test]
fn a_provider_that_traps_loops_or_runs_out_of_memory_fails_only_the_call() {
    let tmp = TempDir::new("provider-faults");
    let server = Server::start(&tmp.join("data"));
    register(&server, MISBEHAVE, "misbehave");
    server.cli(&["apps:create", "victim"]).ok();
    server.cli(&["apps:create", "bystander"]).ok();
    create_addon(&server, "bystander", &["renga-kv"]);
    deploy_addons_guest(&server, "bystander");
    let baseline = server.stats()["live"]["instances"].as_u64().unwrap();

    let refused = create_with(&server, "victim", "misbehave", &["--refuse"]).unwrap_err();
    assert!(refused.contains("refused"), "{refused}");
    let addons = server.cli(&["addons", "-a", "victim"]).ok();
    assert!(addons.stdout.contains("has no add-ons"), "{addons}");
    create_with(&server, "victim", "misbehave", &[]).unwrap();
    deploy_addons_guest(&server, "victim");
    let mode = server
        .cli(&["config:get", "MISBEHAVE_MODE", "-a", "victim"])
        .ok();
    assert_eq!(mode.stdout.trim(), "misbehave");

    assert_eq!(
        kv(&server, "victim", "set?key=good", "fine"),
        (200, "ok".into())
    );
    for (key, expect) in [
        ("trap", "failed in get"),
        ("loop", "did not answer get within"),
        ("oom", "needed more than its 64 MiB of memory"),
    ] {
        let started = Instant::now();
        let (status, said) = kv(&server, "victim", &format!("get?key={key}"), "");
        assert_eq!(status, 500, "{key}: {said}");
        assert!(said.contains(expect), "{key}: {said}");
        assert!(said.contains("misbehave"), "{key}: {said}");
        assert!(started.elapsed() < Duration::from_secs(10), "{key}");
        // The app's instance went on to answer; the next call gets a fresh
        // instance of the provider, which still has the add-on's data.
        assert_eq!(
            kv(&server, "victim", "get?key=good", ""),
            (200, "fine".into())
        );
        // Every other app kept serving.
        assert_eq!(
            kv(&server, "bystander", "set?key=k", "v"),
            (200, "ok".into())
        );
    }

    // The provider's instances are bounded, and gone with its add-on.
    let live = server.stats()["live"]["instances"].as_u64().unwrap();
    assert!(live <= baseline + 4, "{live} instances alive");
    create_addon(&server, "victim", &["renga-kv", "--as", "SPARE"]);
    server
        .cli(&[
            "addons:destroy",
            "MISBEHAVE",
            "-a",
            "victim",
            "--confirm",
            "victim",
        ])
        .ok();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = server.stats();
        if stats["live"]["instances"].as_u64() <= Some(baseline) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "provider instances outlived their add-on: {stats:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
