//! Add-ons on real servers and in other platforms' shapes: `renga-postgres`
//! on a throwaway PostgreSQL, `renga-kv:redis` on a throwaway Redis,
//! `renga-blob` through `wasi:blobstore`, and components built with Spin's
//! SDK reaching renga's add-ons through Spin's own interfaces. Every app is
//! a component built by the real Rust buildpack; every server is started
//! by the test and stopped after it.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{Postgres, Redis, Server, TempDir, app_request, built_component, create_addon, hits};

const TODO: &str = "examples/todo-rust";
const COUNTER: &str = "examples/counter-rust";
const COMMAND: &str = "tests/guests/command";
const HELLO: &str = "examples/hello-rust";
const KV_COMMAND: &str = "tests/guests/kv-command";
const SPIN_SDK: &str = "tests/guests/spin-sdk-kv";
const BLOBSTORE: &str = "tests/guests/blobstore";

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A config var of an app, as `config:get` prints it.
fn config_get(server: &Server, app: &str, key: &str) -> String {
    server
        .cli(&["config:get", key, "-a", app])
        .ok()
        .stdout
        .trim()
        .to_string()
}

/// Deploys a folder holding the todo app and the command component.
fn deploy_todo(server: &Server, tmp: &TempDir, app: &str) {
    let dir = tmp.join(&format!("{app}-slug"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(built_component(TODO), dir.join("todo.wasm")).unwrap();
    std::fs::copy(built_component(COMMAND), dir.join("command.wasm")).unwrap();
    std::fs::write(dir.join("Procfile"), "web: todo.wasm\n").unwrap();
    server.cli(&["deploy", path(&dir), "-a", app]).ok();
}

/// The todo app's whole life on one app: add, finish, list, history.
fn exercise_todo(server: &Server, app: &str) {
    let added = app_request(server, "POST", app, "/todos", b"buy milk");
    assert_eq!(added.status, 201, "{added:?}");
    assert_eq!(added.body, "1 buy milk\n");
    let added = app_request(server, "POST", app, "/todos", b"walk the dog");
    assert_eq!(added.body, "2 walk the dog\n", "{added:?}");
    let done = app_request(server, "POST", app, "/todos/1/done", b"");
    assert_eq!(done.body, "1 [x] buy milk\n", "{done:?}");
    let list = app_request(server, "GET", app, "/todos", b"");
    assert_eq!(
        list.body, "1 [x] buy milk\n2 [ ] walk the dog\n",
        "{list:?}"
    );
    let refused = app_request(server, "POST", app, "/todos", b"");
    assert_eq!(refused.status, 422, "{refused:?}");
    let history = app_request(server, "GET", app, "/history", b"");
    assert_eq!(history.body, "1 added\n2 added\n1 done\n", "{history:?}");
}

/// Runs SQL as an add-on's own role, from its URL: the rows as text, or
/// the server's refusal.
fn as_role(url: &str, database: Option<&str>, sql: &str) -> Result<Vec<String>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
        if let Some(database) = database {
            config.dbname(database);
        }
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("{e:?}"))?;
        tokio::spawn(connection);
        let rows = client
            .simple_query(sql)
            .await
            .map_err(|e| format!("{e:?}"))?;
        Ok(rows
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    Some(row.get(0).unwrap_or("").to_string())
                }
                _ => None,
            })
            .collect())
    })
}

#[test]
fn postgres_add_ons_serve_the_todo_app_unchanged_and_keep_apps_apart() {
    let tmp = TempDir::new("postgres");
    // Without --postgres, the service says what the server lacks.
    let plain = Server::start(&tmp.join("plain"));
    plain.cli(&["apps:create", "nopg"]).ok();
    let refused = plain
        .cli(&["addons:create", "renga-postgres", "-a", "nopg"])
        .failed();
    assert!(
        refused.stderr.contains("no PostgreSQL configured")
            && refused.stderr.contains("--postgres"),
        "{refused}"
    );
    drop(plain);

    let pg = Postgres::start();
    let server = Server::start_with(&tmp.join("data"), &["--postgres", &pg.url]);

    // The same todo app on SQLite first, then on PostgreSQL.
    server.cli(&["apps:create", "todo-lite"]).ok();
    create_addon(&server, "todo-lite", &["renga-sql"]);
    deploy_todo(&server, &tmp, "todo-lite");
    exercise_todo(&server, "todo-lite");

    server.cli(&["apps:create", "todo-pg"]).ok();
    let addon = create_addon(&server, "todo-pg", &["renga-postgres"]);
    let name = addon["name"].as_str().unwrap().to_string();
    assert_eq!(addon["plan"]["name"], "renga-postgres:mini", "{addon:#}");
    assert_eq!(
        addon["config_vars"],
        serde_json::json!(["DATABASE_NAME", "DATABASE_URL"]),
        "{addon:#}"
    );
    let url = config_get(&server, "todo-pg", "DATABASE_URL");
    assert!(url.starts_with("postgres://renga_"), "{url}");
    deploy_todo(&server, &tmp, "todo-pg");
    exercise_todo(&server, "todo-pg");

    // The rows are in PostgreSQL, in the add-on's own database.
    let rows = as_role(&url, None, "SELECT title FROM todos ORDER BY id").unwrap();
    assert_eq!(rows, ["buy milk", "walk the dog"]);

    // A one-off dyno gets DATABASE_URL in its environment.
    let ran = server
        .cli(&[
            "run",
            "-a",
            "todo-pg",
            "--",
            "command.wasm",
            "env",
            "DATABASE_URL",
        ])
        .ok();
    assert_eq!(ran.stdout.trim(), url, "{ran}");

    // pg:info and pg:psql, as Heroku's CLI has them.
    let info = server.cli(&["pg:info", "-a", "todo-pg"]).ok().stdout;
    for want in [
        "=== DATABASE_URL",
        "renga-postgres:mini",
        "Tables:      2",
        "PG Version:",
        &name,
    ] {
        assert!(info.contains(want), "{want} not in:\n{info}");
    }
    let psql = server
        .cli(&[
            "pg:psql",
            "-a",
            "todo-pg",
            "-c",
            "SELECT count(*) AS n FROM todos",
        ])
        .ok();
    assert!(psql.stdout.contains(" 2"), "{psql}");

    // A second app's role cannot reach the first app's database, nor its
    // tables through its own database.
    server.cli(&["apps:create", "other-pg"]).ok();
    create_addon(&server, "other-pg", &["renga-postgres"]);
    let other_url = config_get(&server, "other-pg", "DATABASE_URL");
    assert_ne!(other_url, url);
    let first_db = url.rsplit('/').next().unwrap().to_string();
    let refused = as_role(&other_url, Some(&first_db), "SELECT title FROM todos").unwrap_err();
    assert!(refused.contains("permission denied"), "{refused}");
    let refused = as_role(&other_url, None, "SELECT title FROM todos").unwrap_err();
    assert!(refused.contains("does not exist"), "{refused}");
    // Nor can it make roles or databases of its own.
    let refused = as_role(&other_url, None, "CREATE DATABASE sneaky").unwrap_err();
    assert!(refused.contains("permission denied"), "{refused}");

    // The pool's connections stay usable after all that.
    let after = app_request(&server, "GET", "todo-pg", "/todos", b"");
    assert_eq!(after.status, 200, "{after:?}");

    // Destroying the add-on drops its database and its role.
    deploy_command_only(&server, &tmp, "todo-pg");
    server
        .cli(&[
            "addons:destroy",
            &name,
            "--confirm",
            "todo-pg",
            "-a",
            "todo-pg",
        ])
        .ok();
    let admin_rows = as_role(
        &pg.url,
        None,
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{first_db}'"),
    )
    .unwrap();
    assert_eq!(admin_rows, ["0"]);
    let roles = as_role(
        &pg.url,
        None,
        &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{first_db}'"),
    )
    .unwrap();
    assert_eq!(roles, ["0"]);
    assert!(as_role(&url, None, "SELECT 1").is_err());
    let config = server.cli(&["config", "-a", "todo-pg"]).ok().stdout;
    assert!(!config.contains("DATABASE_URL"), "{config}");

    // The server's connections to PostgreSQL come back when the pools
    // close: none is left for the destroyed add-on.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = as_role(
            &pg.url,
            None,
            &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{first_db}'"),
        )
        .unwrap();
        if open == ["0"] {
            break;
        }
        assert!(Instant::now() < deadline, "connections left open: {open:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Replaces an app's code with the command component alone, so that
/// nothing uses its SQL add-on any more.
fn deploy_command_only(server: &Server, tmp: &TempDir, app: &str) {
    let dir = tmp.join(&format!("{app}-bare"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(built_component(COMMAND), dir.join("command.wasm")).unwrap();
    std::fs::copy(built_component(HELLO), dir.join("hello.wasm")).unwrap();
    std::fs::write(
        dir.join("Procfile"),
        "web: hello.wasm\nconsole: command.wasm\n",
    )
    .unwrap();
    server.cli(&["deploy", path(&dir), "-a", app]).ok();
}

#[test]
fn the_key_value_counter_runs_unchanged_on_redis() {
    let tmp = TempDir::new("redis");
    let redis = Redis::start();
    let server = Server::start_with(&tmp.join("data"), &["--redis", &redis.url]);
    server.cli(&["apps:create", "counter"]).ok();
    let addon = create_addon(&server, "counter", &["renga-kv:redis"]);
    assert_eq!(
        addon["config_vars"],
        serde_json::json!(["REDIS_NAME", "REDIS_URL"]),
        "{addon:#}"
    );
    let url = config_get(&server, "counter", "REDIS_URL");
    assert!(url.starts_with("redis://renga-"), "{url}");

    let dir = tmp.join("slug");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(built_component(COUNTER), dir.join("counter.wasm")).unwrap();
    std::fs::copy(built_component(KV_COMMAND), dir.join("kv.wasm")).unwrap();
    std::fs::write(dir.join("Procfile"), "web: counter.wasm\n").unwrap();
    server.cli(&["deploy", path(&dir), "-a", "counter"]).ok();
    for n in 1..=5 {
        assert_eq!(hits(&server.app_get("counter", "/")), n);
    }
    server.cli(&["ps:scale", "web=2", "-a", "counter"]).ok();
    for n in 6..=15 {
        assert_eq!(hits(&server.app_get("counter", "/")), n);
    }
    // A one-off reaches the same store, and has REDIS_URL.
    let ran = server
        .cli(&["run", "-a", "counter", "--", "kv.wasm", "get", "hits"])
        .ok();
    assert!(ran.stdout.contains("hits=15"), "{ran}");
    let ran = server
        .cli(&[
            "run",
            "-a",
            "counter",
            "--",
            "kv.wasm",
            "config",
            "REDIS_URL",
        ])
        .ok();
    assert_eq!(ran.stdout.trim(), url, "{ran}");

    // The keys are in Redis under the add-on's prefix; its user (the one
    // native code gets) reads its own keys and no one else's.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let id = addon["id"].as_str().unwrap();
    let own: Option<String> = redis::cmd("GET")
        .arg(format!("renga:{{{id}}}:hits"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(own.as_deref(), Some("15"));
    let foreign: redis::RedisResult<Option<String>> =
        redis::cmd("GET").arg("renga:{other}:hits").query(&mut conn);
    let refused = foreign.unwrap_err().to_string();
    assert!(
        refused.contains("NOPERM") || refused.contains("permission"),
        "{refused}"
    );
    drop(conn);

    // Destroying the add-on (once no code uses it) deletes its keys and
    // its user.
    let name = addon["name"].as_str().unwrap();
    deploy_command_only(&server, &tmp, "counter");
    server
        .cli(&[
            "addons:destroy",
            name,
            "--confirm",
            "counter",
            "-a",
            "counter",
        ])
        .ok();
    let mut admin = redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let left: Vec<String> = redis::cmd("KEYS").arg("renga*").query(&mut admin).unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert!(client.get_connection().is_err(), "its user still logs in");
}

#[test]
fn a_component_built_with_spins_sdk_uses_its_own_interfaces_unchanged() {
    let tmp = TempDir::new("spin-sdk");
    let server = Server::start(&tmp.join("data"));
    server.cli(&["apps:create", "spinner"]).ok();
    create_addon(&server, "spinner", &["renga-kv"]);
    create_addon(&server, "spinner", &["renga-sql"]);
    server
        .cli(&["config:set", "GREETING=hello", "-a", "spinner"])
        .ok();
    let component = built_component(SPIN_SDK);
    server
        .cli(&["deploy", "--component", path(&component), "-a", "spinner"])
        .ok();
    for n in 1..=3 {
        let reply = server.app_get("spinner", "/");
        assert_eq!(reply.body, format!("hello: {n}\n"), "{reply:?}");
    }
    for n in 1..=2 {
        let reply = server.app_get("spinner", "/sql");
        assert_eq!(reply.body, format!("rows: {n}\n"), "{reply:?}");
    }
}

#[test]
fn a_blobstore_component_stores_and_streams_back_a_50_mb_object() {
    let tmp = TempDir::new("blob");
    let server = Server::start(&tmp.join("data"));
    server.cli(&["apps:create", "files"]).ok();
    let component = built_component(BLOBSTORE);
    // Without the add-on, the release says which one it needs.
    let refused = server
        .cli(&["deploy", "--component", path(&component), "-a", "files"])
        .failed();
    assert!(
        refused
            .stderr
            .contains("renga addons:create renga-blob -a files"),
        "{refused}"
    );
    create_addon(&server, "files", &["renga-blob"]);
    server
        .cli(&["deploy", "--component", path(&component), "-a", "files"])
        .ok();

    let size = 50 << 20;
    let body: Vec<u8> = (0..size).map(|i: usize| (i * 7 % 251) as u8).collect();
    let stored = app_request(&server, "PUT", "files", "/objects/big.bin", &body);
    assert_eq!(stored.status, 200, "{}", stored.body);
    let size_reply = app_request(&server, "GET", "files", "/size/big.bin", b"");
    assert_eq!(size_reply.body.trim(), size.to_string(), "{size_reply:?}");
    let back = support::request_bytes(
        "GET",
        &format!("http://127.0.0.1:{}/objects/big.bin", server.http_port),
        &[("Host", "files.localhost")],
    );
    assert_eq!(back.len(), body.len());
    assert!(back == body, "the object came back different");
    let list = app_request(&server, "GET", "files", "/objects", b"");
    assert_eq!(list.body, "big.bin\n", "{list:?}");
    let deleted = app_request(&server, "DELETE", "files", "/objects/big.bin", b"");
    assert_eq!(deleted.status, 200, "{deleted:?}");
    let gone = app_request(&server, "GET", "files", "/size/big.bin", b"");
    assert_eq!(gone.status, 404, "{gone:?}");
}
