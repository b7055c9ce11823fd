//! `renga server` end to end: the real CLI against a real server, with
//! components built by the real Rust buildpack, over real HTTP.

mod support;

use std::time::Duration;

use support::{ADMIN_TOKEN, Server, Steady, TempDir, built_component};

const HELLO: &str = "examples/hello-rust";
const MISBEHAVE: &str = "tests/guests/misbehave";

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// Creates an app and deploys hello-rust to it.
fn hello_app(server: &Server, name: &str) {
    server.cli(&["apps:create", name]).ok();
    server
        .cli(&[
            "deploy",
            "--component",
            path(&built_component(HELLO)),
            "-a",
            name,
        ])
        .ok();
}

fn release_count(server: &Server, app: &str) -> usize {
    let ran = server.cli(&["releases", "-a", app, "--json"]).ok();
    serde_json::from_str::<serde_json::Value>(&ran.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn an_app_lives_its_whole_life_through_the_cli() {
    let tmp = TempDir::new("lifecycle");
    let server = Server::start(tmp.path());

    let created = server.cli(&["apps:create", "lifecycle"]).ok();
    assert!(
        created.stdout.contains("http://lifecycle.localhost:"),
        "{created}"
    );
    assert!(server.cli(&["apps"]).ok().stdout.contains("lifecycle"));
    assert_eq!(
        server.app_get("lifecycle", "/").status,
        503,
        "no release yet: H14"
    );

    let deployed = server
        .cli(&[
            "deploy",
            "--component",
            path(&built_component(HELLO)),
            "-a",
            "lifecycle",
        ])
        .ok();
    assert!(deployed.stdout.contains("Released v2"), "{deployed}");
    assert_eq!(server.app_get("lifecycle", "/").body, "hello from renga\n");

    // A config var reaches the guest, in a new release.
    server
        .cli(&["config:set", "GREETING=Howdy", "-a", "lifecycle"])
        .ok();
    assert_eq!(server.app_get("lifecycle", "/").body, "Howdy from renga\n");
    assert_eq!(
        server
            .cli(&["config:get", "GREETING", "-a", "lifecycle"])
            .ok()
            .stdout,
        "Howdy\n"
    );
    assert!(
        server
            .cli(&["config", "-a", "lifecycle"])
            .ok()
            .stdout
            .contains("GREETING: Howdy")
    );

    // Another component, then a rollback restores both body and config.
    server
        .cli(&[
            "deploy",
            "--component",
            path(&built_component(MISBEHAVE)),
            "-a",
            "lifecycle",
        ])
        .ok();
    server
        .cli(&["config:unset", "GREETING", "-a", "lifecycle"])
        .ok();
    assert_eq!(server.app_get("lifecycle", "/").body, "ok\n");
    let releases = server.cli(&["releases", "-a", "lifecycle"]).ok().stdout;
    for expected in [
        "v5*",
        "Remove GREETING config vars",
        "v4",
        "v3",
        "Set GREETING config vars",
        "v2",
        "Deploy",
        "v1",
        "Initial release",
    ] {
        assert!(
            releases.contains(expected),
            "releases lack {expected:?}:\n{releases}"
        );
    }
    let rolled = server
        .cli(&["releases:rollback", "v3", "-a", "lifecycle"])
        .ok();
    assert!(rolled.stdout.contains("now serving v6"), "{rolled}");
    assert_eq!(server.app_get("lifecycle", "/").body, "Howdy from renga\n");
    assert!(
        server
            .cli(&["releases:info", "-a", "lifecycle"])
            .ok()
            .stdout
            .contains("Rollback to v3")
    );
    // `rollback` with no version goes back one release.
    server.cli(&["rollback", "-a", "lifecycle"]).ok();
    assert_eq!(server.app_get("lifecycle", "/").body, "ok\n");
    server.cli(&["rollback", "v6", "-a", "lifecycle"]).ok();

    // Scaling to zero stops serving (H14); scaling back serves again.
    server.cli(&["ps:scale", "web=0", "-a", "lifecycle"]).ok();
    assert_eq!(server.app_get("lifecycle", "/").status, 503);
    assert!(
        server
            .cli(&["ps", "-a", "lifecycle"])
            .ok()
            .stdout
            .contains("No dynos")
    );
    server.cli(&["ps:scale", "web=2", "-a", "lifecycle"]).ok();
    let ps = server.cli(&["ps", "-a", "lifecycle"]).ok().stdout;
    assert!(ps.contains("web.1: up") && ps.contains("web.2: up"), "{ps}");
    for _ in 0..4 {
        assert_eq!(server.app_get("lifecycle", "/").body, "Howdy from renga\n");
    }
    server.cli(&["ps:restart", "-a", "lifecycle"]).ok();
    assert_eq!(server.app_get("lifecycle", "/").status, 200);

    // Maintenance mode answers 503 with H80, then off again.
    server.cli(&["maintenance:on", "-a", "lifecycle"]).ok();
    assert_eq!(server.app_get("lifecycle", "/").status, 503);
    server.cli(&["maintenance:off", "-a", "lifecycle"]).ok();
    assert_eq!(server.app_get("lifecycle", "/").status, 200);

    // The app's log has the platform's lines and the router's.
    let logs = server
        .cli(&["logs", "-n", "200", "-a", "lifecycle"])
        .ok()
        .stdout;
    for expected in [
        "renga[api]: Release v2 created by admin",
        "renga[api]: Set GREETING config vars by admin",
        "renga[api]: Rollback to v3 by admin",
        "renga[api]: Scaled to web@0:standard-1x by admin",
        "at=error code=H14 desc=\"No web processes running\"",
        "at=error code=H80 desc=\"Maintenance mode\"",
        "dyno=web.2",
    ] {
        assert!(
            logs.contains(expected),
            "the log lacks {expected:?}:\n{logs}"
        );
    }

    // Destroying needs the name again.
    let refused = server.cli(&["apps:destroy", "-a", "lifecycle"]).failed();
    assert!(refused.stderr.contains("--confirm lifecycle"), "{refused}");
    server
        .cli(&["apps:destroy", "-a", "lifecycle", "--confirm", "lifecycle"])
        .ok();
    assert_eq!(server.app_get("lifecycle", "/").status, 404);
    server.cli(&["apps:info", "-a", "lifecycle"]).failed();
}

#[test]
fn acknowledged_state_survives_a_restart_and_kill_9() {
    let tmp = TempDir::new("durable");
    let server = Server::start(tmp.path());
    hello_app(&server, "durable");
    server
        .cli(&["config:set", "GREETING=Kept", "-a", "durable"])
        .ok();
    assert!(server.terminate().success());

    let server = Server::start(tmp.path());
    assert_eq!(server.app_get("durable", "/").body, "Kept from renga\n");
    server
        .cli(&["config:set", "GREETING=Crash-proof", "-a", "durable"])
        .ok();
    server.cli(&["apps:create", "second"]).ok();
    server.kill9();

    let server = Server::start(tmp.path());
    assert_eq!(
        server.app_get("durable", "/").body,
        "Crash-proof from renga\n"
    );
    assert_eq!(release_count(&server, "durable"), 4);
    assert!(server.cli(&["apps"]).ok().stdout.contains("second"));
    assert!(
        server.output.text().contains("(2 apps restored)"),
        "{}",
        server.output.text()
    );
}

#[test]
fn twenty_rapid_releases_under_steady_load_lose_no_request() {
    let tmp = TempDir::new("rapid");
    let server = Server::start(tmp.path());
    hello_app(&server, "rapid");
    let steady = Steady::start_with_host(
        format!("http://127.0.0.1:{}/", server.http_port),
        Some("rapid.localhost".into()),
        "from renga",
    );
    for i in 0..20 {
        server
            .cli(&["config:set", &format!("GREETING=round-{i}"), "-a", "rapid"])
            .ok();
    }
    assert_eq!(server.app_get("rapid", "/").body, "round-19 from renga\n");
    let (ok, failures) = steady.stop();
    assert!(
        failures.is_empty(),
        "requests failed during the releases: {failures:?}"
    );
    assert!(ok > 20, "the steady stream made only {ok} requests");
    assert_eq!(release_count(&server, "rapid"), 22);
}

#[test]
fn the_api_needs_a_token_and_a_wrong_one_changes_nothing() {
    let tmp = TempDir::new("auth");
    let server = Server::start(tmp.path());
    for token in [None, Some("not-the-token")] {
        let reply = server.api_request("POST", "/apps", token, Some(br#"{"name":"sneaky"}"#));
        assert_eq!(reply.status, 401, "{reply:?}");
        assert!(
            reply.body.contains("\"id\": \"unauthorized\""),
            "{}",
            reply.body
        );
        assert_eq!(server.api_request("GET", "/apps", token, None).status, 401);
    }
    assert!(!server.cli(&["apps"]).ok().stdout.contains("sneaky"));
    let ran = server.cli_as("wrong", &["apps"]).failed();
    assert!(ran.stderr.contains("Invalid credentials"), "{ran}");

    // The admin token was written nowhere (it came from the environment);
    // a server without one writes a random one, readable by its owner only.
    assert!(!tmp.join("admin.token").exists());
    let fresh = TempDir::new("auth-fresh");
    let mut command = std::process::Command::new(support::renga());
    command
        .args(["server", "--api", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .env("RENGA_DATA", fresh.path())
        .env("RENGA_CACHE", support::shared_cache())
        .env_remove("RENGA_ADMIN_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = command.spawn().unwrap();
    let token_file = fresh.join("admin.token");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !token_file.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap().trim().len(),
        64
    );
}

#[test]
fn another_users_app_is_out_of_reach() {
    let tmp = TempDir::new("users");
    let server = Server::start(tmp.path());
    hello_app(&server, "admins-app");
    let created = server.cli(&["users:create", "alice"]).ok();
    let alice = created.stdout.lines().last().unwrap().trim().to_string();
    assert_eq!(alice.len(), 64, "{created}");

    assert!(
        !server
            .cli_as(&alice, &["apps"])
            .ok()
            .stdout
            .contains("admins-app")
    );
    for args in [
        vec!["apps:info", "-a", "admins-app"],
        vec!["config", "-a", "admins-app"],
        vec!["config:set", "X=1", "-a", "admins-app"],
        vec!["releases", "-a", "admins-app"],
        vec!["ps:scale", "web=0", "-a", "admins-app"],
        vec!["logs", "-a", "admins-app"],
        vec![
            "apps:destroy",
            "-a",
            "admins-app",
            "--confirm",
            "admins-app",
        ],
    ] {
        let ran = server.cli_as(&alice, &args).failed();
        assert!(ran.stderr.contains("Couldn't find that app"), "{ran}");
    }
    assert_eq!(server.app_get("admins-app", "/").status, 200);
    assert_eq!(release_count(&server, "admins-app"), 2);

    // Alice has her own apps, and cannot make users.
    server.cli_as(&alice, &["apps:create", "alices-app"]).ok();
    assert!(!server.cli(&["apps"]).ok().stdout.contains("alices-app"));
    let ran = server.cli_as(&alice, &["users:create", "mallory"]).failed();
    assert!(ran.stderr.contains("Only the admin"), "{ran}");
    // The platform's hosts are the admin's to list: one, up, serving the
    // admin's app.
    let ran = server.cli_as(&alice, &["hosts"]).failed();
    assert!(ran.stderr.contains("Only the admin"), "{ran}");
    let hosts = || -> serde_json::Value {
        serde_json::from_str(&server.cli(&["hosts", "--json"]).ok().stdout).unwrap()
    };
    let mut listed = hosts();
    // The next heartbeat (every 2 s) counts the apps deployed since.
    for _ in 0..50 {
        if listed[0]["apps"].as_u64() >= Some(2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        listed = hosts();
    }
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["state"], "up", "{listed}");
    assert_eq!(listed[0]["apps"], 2, "{listed}");
    // A log session's URL is its own credential (as Heroku's logplex_url
    // is): it opens without a token, and nothing else near it does.
    let session = server.api_request(
        "POST",
        "/apps/alices-app/log-sessions",
        Some(&alice),
        Some(b"{}"),
    );
    let url: serde_json::Value = serde_json::from_str(&session.body).unwrap();
    let id = url["id"].as_str().unwrap();
    assert_eq!(id.len(), 64, "{url}");
    // The same id with its last digit changed (an id ending in 0 gets a 1).
    let last = if id.ends_with('0') { '1' } else { '0' };
    let guessed = format!("{}{last}", &id[..63]);
    for (which, token) in [
        (guessed.as_str(), None),
        (guessed.as_str(), Some(ADMIN_TOKEN)),
    ] {
        let reply = server.api_request("GET", &format!("/log-sessions/{which}"), token, None);
        assert_eq!(reply.status, 404, "{}", reply.body);
    }
    let opened = server.api_request("GET", &format!("/log-sessions/{id}"), None, None);
    assert_eq!(opened.status, 200, "{}", opened.body);
    assert!(
        opened.body.contains("Release v1 created by alice"),
        "{}",
        opened.body
    );
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let tmp = TempDir::new("bad-input");
    let server = Server::start(tmp.path());
    hello_app(&server, "steady");

    for bad in [
        "ab",
        "Upper",
        "1starts-with-digit",
        "under_score",
        "this-name-is-far-too-long-for-an-app",
    ] {
        let ran = server.cli(&["apps:create", bad]).failed();
        assert!(ran.stderr.contains("invalid app name"), "{ran}");
    }
    let ran = server.cli(&["apps:create", "steady"]).failed();
    assert!(ran.stderr.contains("already taken"), "{ran}");

    let ran = server
        .cli(&["config:set", "BAD-KEY=1", "-a", "steady"])
        .failed();
    assert!(ran.stderr.contains("invalid config var name"), "{ran}");

    // Not WebAssembly, a core module, a component of the wrong world: 422,
    // no release, the old one keeps serving.
    let text = tmp.join("app.wasm");
    std::fs::write(&text, "#!/bin/sh\n").unwrap();
    let ran = server
        .cli(&["deploy", "--component", path(&text), "-a", "steady"])
        .failed();
    assert!(
        ran.stderr.contains("app.wasm is not a WebAssembly file") && ran.stderr.contains("(422)"),
        "{ran}"
    );
    let core = tmp.join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let ran = server
        .cli(&["deploy", "--component", path(&core), "-a", "steady"])
        .failed();
    assert!(ran.stderr.contains("core WebAssembly module"), "{ran}");
    let command = built_component("tests/guests/command");
    let ran = server
        .cli(&["deploy", "--component", path(&command), "-a", "steady"])
        .failed();
    assert!(
        ran.stderr.contains("wrong world") && ran.stderr.contains("wasi:cli/run"),
        "{ran}"
    );

    let ran = server
        .cli(&["releases:rollback", "v99", "-a", "steady"])
        .failed();
    assert!(
        ran.stderr.contains("Couldn't find release v99") && ran.stderr.contains("(404)"),
        "{ran}"
    );
    server
        .cli(&["releases:info", "v99", "-a", "steady"])
        .failed();
    let ran = server
        .cli(&["ps:scale", "worker=1", "-a", "steady"])
        .failed();
    assert!(
        ran.stderr.contains("Couldn't find that process type"),
        "{ran}"
    );

    // Oversized and malformed bodies.
    let huge = format!("{{\"X\": \"{}\"}}", "y".repeat(2 << 20));
    let reply = server.api_request(
        "PATCH",
        "/apps/steady/config-vars",
        Some(ADMIN_TOKEN),
        Some(huge.as_bytes()),
    );
    assert_eq!(reply.status, 413, "{reply:?}");
    let reply = server.api_request(
        "PATCH",
        "/apps/steady/config-vars",
        Some(ADMIN_TOKEN),
        Some(b"{not json"),
    );
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        reply.body.contains("\"id\": \"bad_request\""),
        "{}",
        reply.body
    );
    let reply = server.api_request("GET", "/no/such/route", Some(ADMIN_TOKEN), None);
    assert_eq!(reply.status, 404);

    assert_eq!(
        release_count(&server, "steady"),
        2,
        "no refused change made a release"
    );
    assert_eq!(server.app_get("steady", "/").body, "hello from renga\n");
}

#[test]
fn the_api_speaks_herokus_shapes() {
    let tmp = TempDir::new("shapes");
    let server = Server::start(tmp.path());
    hello_app(&server, "shapes");
    let token = Some(ADMIN_TOKEN);
    let app: serde_json::Value =
        serde_json::from_str(&server.api_request("GET", "/apps/shapes", token, None).body).unwrap();
    for key in [
        "id",
        "name",
        "created_at",
        "updated_at",
        "released_at",
        "maintenance",
        "web_url",
        "git_url",
    ] {
        assert!(app.get(key).is_some(), "app lacks {key}: {app}");
    }
    assert_eq!(app["owner"]["email"], "admin");
    // By id as well as by name.
    let by_id = server.api_request(
        "GET",
        &format!("/apps/{}", app["id"].as_str().unwrap()),
        token,
        None,
    );
    assert_eq!(by_id.status, 200);

    let releases: serde_json::Value = serde_json::from_str(
        &server
            .api_request("GET", "/apps/shapes/releases", token, None)
            .body,
    )
    .unwrap();
    let last = releases.as_array().unwrap().last().unwrap();
    assert_eq!(last["version"], 2);
    assert_eq!(last["current"], true);
    assert_eq!(last["status"], "succeeded");
    assert!(last["slug"]["id"].is_string());
    let v1 = server.api_request("GET", "/apps/shapes/releases/1", token, None);
    assert!(v1.body.contains("Initial release"), "{}", v1.body);

    let patched = server.api_request(
        "PATCH",
        "/apps/shapes/config-vars",
        token,
        Some(br#"{"A": "1", "B": "2"}"#),
    );
    assert_eq!(patched.status, 200);
    let patched = server.api_request(
        "PATCH",
        "/apps/shapes/config-vars",
        token,
        Some(br#"{"A": null}"#),
    );
    let vars: serde_json::Value = serde_json::from_str(&patched.body).unwrap();
    assert_eq!(vars, serde_json::json!({ "B": "2" }), "null deletes");

    let formation: serde_json::Value = serde_json::from_str(
        &server
            .api_request("GET", "/apps/shapes/formation", token, None)
            .body,
    )
    .unwrap();
    assert_eq!(formation[0]["type"], "web");
    assert_eq!(formation[0]["quantity"], 1);
    let dynos: serde_json::Value = serde_json::from_str(
        &server
            .api_request("GET", "/apps/shapes/dynos", token, None)
            .body,
    )
    .unwrap();
    assert_eq!(dynos[0]["name"], "web.1");
    assert_eq!(dynos[0]["state"], "up");
}

#[test]
fn logs_tail_streams_new_lines() {
    let tmp = TempDir::new("tail");
    let server = Server::start(tmp.path());
    hello_app(&server, "tailed");
    let mut tail = std::process::Command::new(support::renga())
        .args(["logs", "--tail", "-n", "1", "-a", "tailed"])
        .env("RENGA_API_URL", &server.api)
        .env("RENGA_API_KEY", ADMIN_TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let output = support::Output::default();
    output.capture(tail.stdout.take().unwrap(), "");
    std::thread::sleep(Duration::from_millis(500));
    let reply = support::request(
        "GET",
        &format!("http://127.0.0.1:{}/tail-me", server.http_port),
        &[
            ("Host", "tailed.localhost"),
            ("X-Request-Id", "tailed-request"),
        ],
        None,
    );
    assert_eq!(reply.status, 200);
    let line = output.wait_for(Duration::from_secs(10), |l| {
        l.contains("request_id=tailed-request")
    });
    let _ = tail.kill();
    let _ = tail.wait();
    let line =
        line.unwrap_or_else(|| panic!("the tail never showed the request:\n{}", output.text()));
    assert!(
        line.contains("renga[router]: at=info method=GET path=\"/tail-me\""),
        "{line}"
    );
}

#[test]
fn login_stores_credentials_and_a_git_remote_names_the_app() {
    let tmp = TempDir::new("login");
    let server = Server::start(tmp.path());
    let home = tmp.join("login-home");
    let project = home.join("project");
    std::fs::create_dir_all(&project).unwrap();
    let renga = |args: &[&str]| {
        let output = std::process::Command::new(support::renga())
            .args(args)
            .env("HOME", &home)
            .env_remove("RENGA_API_URL")
            .env_remove("RENGA_API_KEY")
            .env_remove("RENGA_APP")
            .env_remove("XDG_CONFIG_HOME")
            .current_dir(&project)
            .output()
            .unwrap();
        let text = format!(
            "renga {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{text}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };

    renga(&["login", "--api-url", &server.api, "--token", ADMIN_TOKEN]);
    let stored = home.join(".config/renga/credentials.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(renga(&["auth:token"]).trim(), ADMIN_TOKEN);

    // No name: a random readable one.
    let created = renga(&["apps:create", "--json"]);
    let app: serde_json::Value = serde_json::from_str(&created).unwrap();
    let name = app["name"].as_str().unwrap().to_string();
    assert!(name.split('-').count() == 3, "{name}");

    // Inside a git repository whose `renga` remote is the app's git URL,
    // commands need no -a.
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .args(args)
            .current_dir(&project)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["remote", "add", "renga", app["git_url"].as_str().unwrap()]);
    renga(&["config:set", "FROM_REMOTE=yes"]);
    assert_eq!(renga(&["config:get", "FROM_REMOTE"]).trim(), "yes");
    assert!(renga(&["apps:info"]).contains(&format!("=== {name}")));
}

/// hyper keeps a connection for the next request only when the last
/// request's body was read to its end. A route that needs no body (`POST
/// /sources`, to which the CLI sends `{}`) answers as soon as the headers
/// arrive; a body arriving after them must not cost the client the kept
/// connection its next request (the upload) goes out on.
#[test]
fn a_body_its_route_does_not_need_does_not_close_a_kept_connection() {
    use std::io::Write as _;
    let tmp = TempDir::new("kept");
    let server = Server::start(tmp.path());
    let mut stream = raw_api_connection(&server);
    for round in 0..3 {
        write!(
            stream,
            "POST /sources HTTP/1.1\r\nHost: renga\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\n\r\n"
        )
        .unwrap_or_else(|e| panic!("round {round}: the server closed the connection: {e}"));
        std::thread::sleep(Duration::from_millis(200));
        let _ = stream.write_all(b"{}");
        let (head, body) = read_answer(&mut stream, &format!("round {round}"));
        assert!(head.starts_with("HTTP/1.1 201"), "round {round}: {head}");
        assert!(body.contains("put_url"), "{body}");
    }
}

/// A client still sending an oversized JSON body reads why it was refused,
/// instead of a broken pipe: the server reads the rest before it answers.
#[test]
fn an_oversized_body_is_refused_with_a_reason_the_client_can_read() {
    use std::io::Write as _;
    let tmp = TempDir::new("oversized");
    let server = Server::start(tmp.path());
    hello_app(&server, "steady");
    let mut stream = raw_api_connection(&server);
    let chunk = vec![b'y'; 256 << 10];
    let (start, end) = ("{\"X\": \"", "\"}");
    let length = start.len() + 8 * chunk.len() + end.len();
    write!(
        stream,
        "PATCH /apps/steady/config-vars HTTP/1.1\r\nHost: renga\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n{start}"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..8 {
        stream
            .write_all(&chunk)
            .unwrap_or_else(|e| panic!("chunk {i}: the server stopped reading: {e}"));
        std::thread::sleep(Duration::from_millis(20));
    }
    stream.write_all(end.as_bytes()).unwrap();
    let (head, body) = read_answer(&mut stream, "the refusal");
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(body.contains("Request bodies are limited to 1"), "{body}");
    assert_eq!(release_count(&server, "steady"), 2);
}

/// An upload past `--max-source` is refused with the limit in words, which
/// the uploading client gets to read.
#[test]
fn an_oversized_upload_is_refused_with_a_reason_the_client_can_read() {
    let tmp = TempDir::new("oversized-upload");
    let server = Server::start_with(tmp.path(), &["--max-source", "1MB"]);
    let source = server.api_request("POST", "/sources", Some(ADMIN_TOKEN), Some(b"{}"));
    assert_eq!(source.status, 201, "{source:?}");
    let put_url = source.body.split("\"put_url\": \"").nth(1).unwrap();
    let put_url = &put_url[..put_url.find('"').unwrap()];
    let reply = support::try_request(
        "PUT",
        put_url,
        &[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        Some(&vec![7u8; 3 << 20]),
    )
    .unwrap_or_else(|e| panic!("the client could not read the refusal: {e}"));
    assert_eq!(reply.status, 413, "{reply:?}");
    assert!(
        reply.body.contains("The source is larger than the 1"),
        "{}",
        reply.body
    );
}

fn raw_api_connection(server: &Server) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(server.api.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// One HTTP/1.1 answer with a `Content-Length`: its head and its body.
fn read_answer(stream: &mut std::net::TcpStream, what: &str) -> (String, String) {
    use std::io::Read as _;
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => answer.push(byte[0]),
            other => panic!("{what}: the connection ended ({other:?}) after {answer:?}"),
        }
    }
    let head = String::from_utf8(answer).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|n| n.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{what}: no Content-Length in {head}"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    (head, String::from_utf8_lossy(&body).into_owned())
}
