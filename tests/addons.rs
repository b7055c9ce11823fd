//! Add-ons end to end: `renga-kv` and `renga-sql` provisioned with the real
//! CLI, reached from components built by the real buildpacks through
//! `wasi:keyvalue`, `wasi:config` and `renga:sql`; outbound HTTP behind the
//! allow-list; components built with wasmCloud's and Spin's SDKs running
//! unchanged; isolation between apps, durability across `kill -9`, and
//! resources back at their baseline afterwards.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{
    Dev, Server, TempDir, app_request, built_component, copy_app, create_addon, hits, request,
};

const COUNTER: &str = "examples/counter-rust";
const ADDONS: &str = "tests/guests/addons";
const KV_COMMAND: &str = "tests/guests/kv-command";
const WASMCLOUD: &str = "tests/guests/wasmcloud-counter";
const SPIN: &str = "tests/guests/spin-counter";
const UNSUPPORTED: &str = "tests/guests/wasmcloud-unsupported";

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Deploys the component built from `component` to an existing app.
fn deploy(server: &Server, app: &str, component: &str) -> support::Ran {
    let file = built_component(component);
    server.cli(&["deploy", "--component", path(&file), "-a", app])
}

/// Waits until the server's live figures satisfy `done`.

#[test]
fn the_counter_counts_across_requests_dynos_and_restarts() {
    let tmp = TempDir::new("counter");
    let data = tmp.join("data");
    let server = Server::start(&data);
    server.cli(&["apps:create", "counter"]).ok();

    // Without the add-on, the release never goes live, and says what to do.
    let refused = deploy(&server, "counter", COUNTER).failed();
    let said = format!("{}{}", refused.stdout, refused.stderr);
    assert!(
        said.contains("wasi:keyvalue/store@0.2.0-draft2")
            && said.contains("renga addons:create renga-kv -a counter"),
        "{refused}"
    );
    assert_eq!(server.app_get("counter", "/").status, 503);

    let addon = create_addon(&server, "counter", &["renga-kv"]);
    let name = addon["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("renga-kv-"), "{addon:#}");
    assert_eq!(addon["state"], "provisioned", "{addon:#}");
    assert_eq!(addon["plan"]["name"], "renga-kv:mini", "{addon:#}");
    assert_eq!(addon["addon_service"]["name"], "renga-kv", "{addon:#}");
    assert_eq!(addon["app"]["name"], "counter", "{addon:#}");
    assert_eq!(addon["config_vars"], serde_json::json!(["RENGA_KV_NAME"]));
    let config = server.cli(&["config", "-a", "counter"]).ok().stdout;
    assert!(
        config.contains("RENGA_KV_NAME") && config.contains(&name),
        "{config}"
    );
    deploy(&server, "counter", COUNTER).ok();

    for n in 1..=3 {
        assert_eq!(hits(&server.app_get("counter", "/")), n);
    }
    assert_eq!(hits(&server.app_get("counter", "/page/about")), 1);

    // Two web dynos share one count.
    server.cli(&["ps:scale", "web=2", "-a", "counter"]).ok();
    for n in 4..=23 {
        assert_eq!(hits(&server.app_get("counter", &format!("/?two={n}"))), n);
    }
    let log = server.logs("counter");
    for dyno in ["dyno=web.1 ", "dyno=web.2 "] {
        assert!(
            log.lines()
                .any(|l| l.contains("renga[router]") && l.contains("two=") && l.contains(dyno)),
            "no request reached {dyno}:\n{log}"
        );
    }

    // A clean restart, then SIGKILL right after a write: nothing is lost.
    assert!(server.terminate().success());
    let server = Server::start(&data);
    assert_eq!(hits(&server.app_get("counter", "/")), 24);
    for n in 25..=29 {
        assert_eq!(hits(&server.app_get("counter", "/")), n);
    }
    server.kill9();
    let server = Server::start(&data);
    assert_eq!(hits(&server.app_get("counter", "/")), 30);

    // A rollback keeps the add-on (Heroku's rule); destroying it needs the
    // app's name, then takes the data and the config var with it.
    server.cli(&["rollback", "v3", "-a", "counter"]).ok();
    let config = server.cli(&["config", "-a", "counter"]).ok().stdout;
    assert!(config.contains("RENGA_KV_NAME"), "{config}");
    assert_eq!(hits(&server.app_get("counter", "/")), 31);
    server
        .cli(&[
            "addons:destroy",
            &name,
            "--confirm",
            "wrong-app",
            "-a",
            "counter",
        ])
        .failed();
    assert!(data.join("addons").read_dir().unwrap().next().is_some());
    // While the app's code uses it, the add-on stays: the release that
    // would drop it could not run.
    let kept = server
        .cli(&[
            "addons:destroy",
            &name,
            "--confirm",
            "counter",
            "-a",
            "counter",
        ])
        .failed();
    assert!(
        kept.stderr.contains("still uses it")
            && kept.stderr
                .contains("wasi:keyvalue/store@0.2.0-draft2, wasi:keyvalue/atomics@0.2.0-draft2: counter has no key-value add-on"),
        "{kept}"
    );
    assert_eq!(hits(&server.app_get("counter", "/")), 32);
    deploy(&server, "counter", "examples/hello-rust").ok();
    server
        .cli(&[
            "addons:destroy",
            &name,
            "--confirm",
            "counter",
            "-a",
            "counter",
        ])
        .ok();
    let config = server.cli(&["config", "-a", "counter"]).ok().stdout;
    assert!(!config.contains("RENGA_KV_NAME"), "{config}");
    assert!(
        data.join("addons").read_dir().unwrap().next().is_none(),
        "the add-on's data outlived it"
    );
    assert_eq!(server.app_get("counter", "/").body, "hello from renga\n");
}

#[test]
fn concurrent_increments_lose_no_count() {
    let tmp = TempDir::new("increments");
    let server = Server::start(&tmp.join("data"));
    server.cli(&["apps:create", "busy"]).ok();
    create_addon(&server, "busy", &["renga-kv"]);
    deploy(&server, "busy", COUNTER).ok();
    // 128 requests at once on two dynos, the rest in the backlog.
    server
        .cli(&["ps:scale", "web=2:performance-m", "-a", "busy"])
        .ok();
    // The baseline: the add-on's backend is open once the app has used it.
    assert_eq!(hits(&server.app_get("busy", "/")), 1);
    let before = server.stats();

    let port = server.http_port;
    let start = std::sync::Arc::new(std::sync::Barrier::new(200));
    let threads: Vec<_> = (0..200)
        .map(|_| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                request(
                    "GET",
                    &format!("http://127.0.0.1:{port}/"),
                    &[("Host", "busy.localhost")],
                    None,
                )
            })
        })
        .collect();
    let mut counts: Vec<u64> = threads
        .into_iter()
        .map(|t| hits(&t.join().unwrap()))
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, (2..=201).collect::<Vec<u64>>());
    assert_eq!(hits(&server.app_get("busy", "/")), 202);

    server.wait_for_stats("instances, tasks and files", |s| {
        s["live"]["instances"] == 0
            && s["live"]["guest_tasks"] == 0
            && s["live"]["tasks"].as_u64() <= before["live"]["tasks"].as_u64()
            && s["live"]["open_files"].as_u64() <= before["live"]["open_files"].as_u64()
    });
}

#[test]
fn apps_reach_only_their_own_addons() {
    let tmp = TempDir::new("isolation");
    let server = Server::start(&tmp.join("data"));
    let alice = server.create_user("alice@example.com");
    let mallory = server.create_user("mallory@example.com");
    server.cli_as(&alice, &["apps:create", "alpha"]).ok();
    server.cli_as(&mallory, &["apps:create", "beta"]).ok();
    let mut alpha_kv = String::new();
    for (token, app) in [(&alice, "alpha"), (&mallory, "beta")] {
        let kv = server
            .cli_as(token, &["addons:create", "renga-kv", "-a", app, "--json"])
            .ok();
        let kv: serde_json::Value = serde_json::from_str(&kv.stdout).unwrap();
        if app == "alpha" {
            alpha_kv = kv["name"].as_str().unwrap().to_string();
        }
        server
            .cli_as(token, &["addons:create", "renga-sql", "-a", app])
            .ok();
        let file = built_component(ADDONS);
        server
            .cli_as(token, &["deploy", "--component", path(&file), "-a", app])
            .ok();
    }
    server
        .cli_as(
            &alice,
            &["addons:create", "renga-kv", "--as", "CACHE", "-a", "alpha"],
        )
        .ok();

    // Same bucket names, different data.
    let set = app_request(&server, "PUT", "alpha", "/kv/set?key=k", b"alpha's secret");
    assert_eq!(set.status, 200, "{set:?}");
    assert_eq!(server.app_get("beta", "/kv/get?key=k").status, 404);
    app_request(&server, "PUT", "beta", "/kv/set?key=k", b"beta's own");
    assert_eq!(
        server.app_get("alpha", "/kv/get?key=k").body,
        "alpha's secret"
    );
    assert_eq!(
        server.app_get("alpha", "/kv/get?key=k&store=default").body,
        "alpha's secret"
    );
    app_request(
        &server,
        "PUT",
        "alpha",
        "/kv/set?key=c&store=cache",
        b"cached",
    );
    assert_eq!(
        server.app_get("alpha", "/kv/get?key=c&store=CACHE").body,
        "cached"
    );

    // Whatever name beta passes, alpha's add-ons stay out of reach.
    for store in [
        alpha_kv.as_str(),
        "cache",
        "CACHE",
        "../alpha",
        "alpha",
        "*",
        "%2F",
    ] {
        let probe = server.app_get("beta", &format!("/kv/get?key=k&store={store}"));
        assert_eq!(probe.status, 500, "{store}: {probe:?}");
        assert!(
            probe.body.contains("no such key-value store"),
            "{store}: {probe:?}"
        );
    }

    // SQL: a table in alpha's database is not in beta's.
    let made = app_request(
        &server,
        "POST",
        "alpha",
        "/sql/batch",
        b"CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('alpha only');",
    );
    assert_eq!(made.status, 200, "{made:?}");
    let peek = app_request(
        &server,
        "POST",
        "beta",
        "/sql/query",
        b"SELECT * FROM notes",
    );
    assert_eq!(peek.status, 500, "{peek:?}");
    assert!(peek.body.contains("no such table"), "{peek:?}");
    let attach = app_request(
        &server,
        "POST",
        "beta",
        "/sql/execute",
        b"ATTACH DATABASE '../x/sql.db' AS other",
    );
    assert!(attach.body.contains("Denied"), "{attach:?}");

    // Mallory cannot attach alice's add-on to her app, nor see it.
    let stolen = server
        .cli_as(&mallory, &["addons:attach", &alpha_kv, "-a", "beta"])
        .failed();
    assert!(
        stolen.stderr.contains("Couldn't find that add-on"),
        "{stolen}"
    );
    let listed = server
        .api_request("GET", "/addons", Some(&mallory), None)
        .body;
    assert!(!listed.contains(&alpha_kv), "{listed}");

    // Alice shares it with an app of hers, Heroku's way; detaching ends it.
    server.cli_as(&alice, &["apps:create", "gamma"]).ok();
    for service in ["renga-kv", "renga-sql"] {
        server
            .cli_as(&alice, &["addons:create", service, "-a", "gamma"])
            .ok();
    }
    server
        .cli_as(
            &alice,
            &["addons:attach", &alpha_kv, "--as", "SHARED", "-a", "gamma"],
        )
        .ok();
    let file = built_component(ADDONS);
    server
        .cli_as(
            &alice,
            &["deploy", "--component", path(&file), "-a", "gamma"],
        )
        .ok();
    assert_eq!(
        server.app_get("gamma", "/kv/get?key=k&store=shared").body,
        "alpha's secret"
    );
    assert_eq!(server.app_get("gamma", "/kv/get?key=k").status, 404);
    let attachments = server
        .cli_as(&alice, &["addons", "-a", "gamma"])
        .ok()
        .stdout;
    assert!(
        attachments.contains(&alpha_kv) && attachments.contains("SHARED"),
        "{attachments}"
    );
    server
        .cli_as(&alice, &["addons:detach", "SHARED", "-a", "gamma"])
        .ok();
    let after = server.app_get("gamma", "/kv/get?key=k&store=shared");
    assert!(after.body.contains("no such key-value store"), "{after:?}");
    assert_eq!(
        server.app_get("alpha", "/kv/get?key=k").body,
        "alpha's secret"
    );
}

#[test]
fn sql_and_key_value_calls_give_typed_values_and_errors_as_values() {
    let tmp = TempDir::new("sql");
    let data = tmp.join("data");
    let server = Server::start(&data);
    server.cli(&["apps:create", "store"]).ok();
    create_addon(&server, "store", &["renga-kv"]);
    create_addon(&server, "store", &["renga-sql"]);
    deploy(&server, "store", ADDONS).ok();
    let sql = |server: &Server, route: &str, statement: &str| {
        app_request(
            server,
            "POST",
            "store",
            &format!("/sql/{route}"),
            statement.as_bytes(),
        )
    };

    assert_eq!(
        sql(
            &server,
            "batch",
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE, price REAL, data BLOB)"
        )
        .status,
        200
    );
    let inserted = sql(
        &server,
        "execute",
        "INSERT INTO items (name, price, data) VALUES ('tea', 2.5, x'0102'), ('cake', NULL, NULL)",
    );
    assert_eq!(inserted.body, "changes=2 last=2", "{inserted:?}");
    let rows = sql(
        &server,
        "query",
        "SELECT id, name, price, data FROM items ORDER BY id",
    );
    assert_eq!(
        rows.body,
        "id\tname\tprice\tdata\n1\ttea\t2.5\t2 bytes\n2\tcake\tNULL\tNULL\n"
    );

    // Errors are values with SQLite's message.
    let syntax = sql(&server, "query", "SELEC nothing");
    assert_eq!(syntax.status, 500);
    assert!(
        syntax.body.contains("Syntax(") && syntax.body.contains("syntax error"),
        "{syntax:?}"
    );
    let unique = sql(
        &server,
        "execute",
        "INSERT INTO items (name) VALUES ('tea')",
    );
    assert!(
        unique.body.contains("Constraint(") && unique.body.contains("UNIQUE"),
        "{unique:?}"
    );
    let begin = sql(&server, "execute", "BEGIN");
    assert!(begin.body.contains("Denied("), "{begin:?}");

    // Transactions commit together, or not at all.
    assert_eq!(
        server.app_get("store", "/sql/transaction?name=a").body,
        "committed"
    );
    let failed = server.app_get("store", "/sql/transaction?name=b&fail=1");
    assert!(failed.body.contains("Constraint("), "{failed:?}");
    let rows = sql(
        &server,
        "query",
        "SELECT name, count(*) FROM t GROUP BY name ORDER BY name",
    );
    assert_eq!(rows.body, "name\tcount(*)\na\t2\n");

    // Key-value: values past the limit, and a bucket past its plan's quota,
    // fail as values; reads keep working; a bigger plan lifts the quota.
    let huge = server.app_get("store", "/kv/fill?bytes=1100000");
    assert_eq!(huge.status, 500, "{huge:?}");
    assert!(huge.body.contains("1 MiB"), "{huge:?}");
    let mut refused = None;
    for n in 0..40 {
        let fill = server.app_get("store", &format!("/kv/fill?bytes=1000000&key=big{n}"));
        if fill.status != 200 {
            refused = Some((n, fill));
            break;
        }
    }
    let (n, refusal) = refused.expect("the mini plan's 16 MiB quota never applied");
    assert!((10..=17).contains(&n), "refused after {n} MiB: {refusal:?}");
    assert!(refusal.body.contains("quota"), "{refusal:?}");
    assert_eq!(
        server.app_get("store", "/kv/get?key=big0").body.len(),
        1_000_000
    );
    let listed = server.cli(&["addons", "-a", "store", "--json"]).ok().stdout;
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let kv = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["addon_service"]["name"] == "renga-kv")
        .unwrap()
        .clone();
    let kv_name = kv["name"].as_str().unwrap().to_string();
    let kv_id = kv["id"].as_str().unwrap().to_string();
    server
        .cli(&[
            "addons:upgrade",
            &kv_name,
            "renga-kv:standard",
            "-a",
            "store",
        ])
        .ok();
    let fill = server.app_get("store", &format!("/kv/fill?bytes=1000000&key=big{n}"));
    assert_eq!(fill.status, 200, "{fill:?}");

    // Keys page with a cursor; compare-and-swap appends without losing any.
    for _ in 0..5 {
        assert_eq!(server.app_get("store", "/kv/cas?key=trail").status, 200);
    }
    assert_eq!(server.app_get("store", "/kv/get?key=trail").body, "xxxxx");
    let keys = server.app_get("store", "/kv/keys").body;
    assert!(
        keys.contains("trail\n") && keys.contains("big0\n"),
        "{keys}"
    );

    // A damaged database file fails that app's calls as values; other
    // apps keep serving.
    server.cli(&["apps:create", "bystander"]).ok();
    create_addon(&server, "bystander", &["renga-kv"]);
    create_addon(&server, "bystander", &["renga-sql"]);
    deploy(&server, "bystander", ADDONS).ok();
    app_request(&server, "PUT", "bystander", "/kv/set?key=k", b"fine");
    let server = {
        assert!(server.terminate().success());
        let file = data.join("addons").join(&kv_id).join("kv.sqlite3");
        assert!(file.is_file(), "no {}", file.display());
        for stale in ["kv.sqlite3-wal", "kv.sqlite3-shm"] {
            let _ = std::fs::remove_file(file.with_file_name(stale));
        }
        std::fs::write(&file, vec![b'?'; 8192]).unwrap();
        Server::start(&data)
    };
    let damaged = server.app_get("store", "/kv/get?key=trail");
    assert_eq!(damaged.status, 500, "{damaged:?}");
    assert!(damaged.body.contains("file is damaged"), "{damaged:?}");
    assert_eq!(server.app_get("bystander", "/kv/get?key=k").body, "fine");
    assert_eq!(
        sql(&server, "query", "SELECT count(*) FROM items").body,
        "count(*)\n2\n"
    );
}

#[test]
fn workers_one_offs_and_the_release_phase_reach_the_addons() {
    let tmp = TempDir::new("processes");
    let server = Server::start(&tmp.join("data"));
    server.cli(&["apps:create", "jobs"]).ok();
    create_addon(&server, "jobs", &["renga-kv"]);
    server
        .cli(&["config:set", "MOTTO=keep counting", "-a", "jobs"])
        .ok();
    // Built by `git push`, in the build sandbox, with renga's SDK.
    let repo = server.git_repo(KV_COMMAND, tmp.path());
    std::fs::write(
        repo.join("Procfile"),
        "release: kv-command.wasm incr releases\nworker: kv-command.wasm tick ticks\nconsole: kv-command.wasm\n",
    )
    .unwrap();
    server.commit_all(&repo, "processes");
    server.cli_in(&repo, &["git:remote", "-a", "jobs"]).ok();
    let push = server.git(&repo, &["push", "renga", "main"]).ok();
    let said = format!("{}{}", push.stdout, push.stderr);
    assert!(
        said.contains("Running release command: kv-command.wasm incr releases")
            && said.contains("releases=1"),
        "{said}"
    );

    let run = server
        .cli(&["run", "-a", "jobs", "--", "console", "get", "releases"])
        .ok();
    assert!(run.stdout.contains("releases=1"), "{run}");
    let run = server
        .cli(&["run", "-a", "jobs", "--", "console", "config", "MOTTO"])
        .ok();
    assert!(run.stdout.contains("keep counting"), "{run}");

    server.cli(&["ps:scale", "worker=1", "-a", "jobs"]).ok();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run = server
            .cli(&["run", "-a", "jobs", "--", "console", "get", "ticks"])
            .ok();
        let ticks: u64 = run
            .stdout
            .trim()
            .strip_prefix("ticks=")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if ticks >= 5 {
            break;
        }
        assert!(Instant::now() < deadline, "the worker never counted: {run}");
        std::thread::sleep(Duration::from_millis(300));
    }
    server.cli(&["ps:scale", "worker=0", "-a", "jobs"]).ok();
}

/// A one-request-at-a-time HTTP server on an ephemeral port that answers
/// every request with `pong`; it stops when the test ends.
fn upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut stream = stream;
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\npong\n",
            );
            // Closing with bytes unread (an empty chunked body's last
            // chunk) would send a reset that can beat the answer to the
            // client: end the write side, and read until the client closes.
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        }
    });
    port
}

#[test]
fn outbound_http_follows_the_allow_list() {
    let tmp = TempDir::new("outbound");
    let server = Server::start(&tmp.join("data"));
    let allowed = upstream();
    let other = upstream();
    server.cli(&["apps:create", "caller"]).ok();
    server
        .cli(&[
            "config:set",
            &format!("UPSTREAM_URL=http://127.0.0.1:{allowed}"),
            "-a",
            "caller",
        ])
        .ok();
    deploy(&server, "caller", "examples/outbound-rust").ok();

    // Denied by default. The guest sees the refusal as `HttpRequestDenied`,
    // or, when the refusal beats its write of the (empty) request body, as
    // that write's error; the host's line names the request it denied.
    let denied = server.app_get("caller", "/status");
    assert_eq!(denied.status, 502, "{denied:?}");
    assert!(denied.body.contains("failed"), "{denied:?}");
    let denied_line = |port: u16| {
        move |log: &str| {
            log.lines().any(|l| {
                l.contains("renga[outbound]: at=error code=denied")
                    && l.contains(&format!("host=127.0.0.1:{port}"))
                    && l.contains("status=denied")
            })
        }
    };
    server.wait_for_log("caller", Duration::from_secs(10), denied_line(allowed));

    server
        .cli(&[
            "config:set",
            &format!("RENGA_ALLOWED_OUTBOUND_HOSTS=http://127.0.0.1:{allowed}"),
            "-a",
            "caller",
        ])
        .ok();
    let through = server.app_get("caller", "/status");
    assert_eq!(through.status, 200, "{through:?}");
    assert_eq!(through.body, "upstream said 200 OK: pong\n");

    // The same host on another port is not on the list.
    server
        .cli(&[
            "config:set",
            &format!("UPSTREAM_URL=http://127.0.0.1:{other}"),
            "-a",
            "caller",
        ])
        .ok();
    let refused = server.app_get("caller", "/status");
    assert_eq!(refused.status, 502, "{refused:?}");
    server.wait_for_log("caller", Duration::from_secs(10), denied_line(other));

    // A router-style line per outbound call, allowed or not.
    server.wait_for_log("caller", Duration::from_secs(10), |log| {
        log.lines().any(|l| {
            l.contains("renga[outbound]:")
                && l.contains("method=GET")
                && l.contains(&format!("host=127.0.0.1:{allowed}"))
                && l.contains("status=200")
                && l.contains("service=")
        }) && log.lines().any(|l| {
            l.contains("renga[outbound]:") && l.contains(&format!("host=127.0.0.1:{other}"))
        })
    });
}

#[test]
fn components_built_for_wasmcloud_and_spin_run_unchanged() {
    let tmp = TempDir::new("foreign");
    let server = Server::start(&tmp.join("data"));
    for (app, guest) in [("wasmcloud", WASMCLOUD), ("spin", SPIN)] {
        server.cli(&["apps:create", app]).ok();
        let refused = deploy(&server, app, guest).failed();
        assert!(
            format!("{refused}").contains(&format!("renga addons:create renga-kv -a {app}")),
            "{refused}"
        );
        create_addon(&server, app, &["renga-kv"]);
        deploy(&server, app, guest).ok();
        assert_eq!(server.app_get(app, "/").body, "hits: 1\n");
        assert_eq!(server.app_get(app, "/").body, "hits: 2\n");
        server
            .cli(&["config:set", "GREETING=Howdy", "-a", app])
            .ok();
        assert_eq!(server.app_get(app, "/").body, "Howdy: 3\n");
    }
    // wasmCloud's 0.2.0-draft: list-keys with its numeric cursor, get-many,
    // and wasi:config/store@0.2.0-draft.
    assert_eq!(
        server.app_get("wasmcloud", "/keys").body,
        "2 keys, 2 values: hits,last\n"
    );
    let config = server.app_get("wasmcloud", "/config").body;
    assert!(
        config.contains("GREETING=Howdy\n") && config.contains("RENGA_KV_NAME="),
        "{config}"
    );
    // Spin's draft2: compare-and-swap.
    assert_eq!(server.app_get("spin", "/swap").body, "x\n");
    assert_eq!(server.app_get("spin", "/swap").body, "xx\n");

    // A component that needs what renga does not provide is refused with
    // every such import named, in renga's words.
    server.cli(&["apps:create", "lattice"]).ok();
    create_addon(&server, "lattice", &["renga-kv"]);
    let refused = deploy(&server, "lattice", UNSUPPORTED).failed();
    let said = format!("{refused}");
    for import in [
        "wasi:logging/logging@0.1.0-draft",
        "wasmcloud:bus/lattice@2.0.0 (wasmCloud's lattice links components across wasmCloud hosts",
    ] {
        assert!(said.contains(import), "{import} not named: {said}");
    }
    assert!(said.contains("renga does not provide"), "{said}");
    // Object storage is provided (renga-blob); only the add-on is missing,
    // which a release says once the component links.
    assert!(
        !said.contains("wrong type") && !said.contains("wasi:keyvalue/store"),
        "{said}"
    );
}

#[test]
fn renga_dev_gives_an_app_local_addons() {
    let tmp = TempDir::new("dev-addons");
    let app = copy_app(COUNTER, tmp.path());
    let dev = Dev::start(&app, &[]);
    assert_eq!(hits(&dev.get("/")), 1);
    assert_eq!(hits(&dev.get("/")), 2);
    assert!(dev.terminate().success());
    let local = app.join(".renga");
    let ignore = std::fs::read_to_string(local.join(".gitignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l == "*"),
        "git must ignore the local add-ons: {ignore}"
    );
    let mut mode = String::new();
    let _ = std::process::Command::new("stat")
        .args(["-c", "%a"])
        .arg(&local)
        .output()
        .map(|o| o.stdout.as_slice().read_to_string(&mut mode));
    assert_eq!(mode.trim(), "700");

    // The count lives in the app folder, across `renga dev` runs.
    let dev = Dev::start(&app, &[]);
    assert_eq!(hits(&dev.get("/")), 3);
    assert!(dev.terminate().success());
}

#[test]
fn the_python_counter_builds_against_its_addons_and_counts() {
    let tmp = TempDir::new("counter-python");
    let server = Server::start(&tmp.join("data"));
    server.cli(&["apps:create", "pycount"]).ok();
    let repo = server.git_repo("examples/counter-python", tmp.path());
    server.cli_in(&repo, &["git:remote", "-a", "pycount"]).ok();

    // app.json names the add-on, so the build imports wasi:keyvalue; the
    // release waits for the add-on.
    let push = server.git(&repo, &["push", "renga", "main"]).failed();
    let said = format!("{}{}", push.stdout, push.stderr);
    assert!(
        said.contains("world renga:app/http with keyvalue"),
        "{said}"
    );
    assert!(
        said.contains("renga addons:create renga-kv -a pycount"),
        "{said}"
    );

    create_addon(&server, "pycount", &["renga-kv"]);
    server.commit_all(&repo, "again");
    server.git(&repo, &["push", "renga", "main"]).ok();
    for n in 1..=3 {
        assert_eq!(hits(&server.app_get("pycount", "/")), n);
    }
    assert_eq!(hits(&server.app_get("pycount", "/page/about?x=1")), 1);
    assert_eq!(hits(&server.app_get("pycount", "/")), 4);
}

/// A statement that would never end: `WITH RECURSIVE` without a bound.
const RUNAWAY: &str =
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n";

#[test]
fn runaway_and_abandoned_statements_stop_and_give_everything_back() {
    let tmp = TempDir::new("runaway");
    let server = Server::start(&tmp.join("data"));
    server.cli(&["apps:create", "slow"]).ok();
    create_addon(&server, "slow", &["renga-kv"]);
    create_addon(&server, "slow", &["renga-sql"]);
    deploy(&server, "slow", ADDONS).ok();
    let ok = app_request(&server, "POST", "slow", "/sql/query", b"SELECT 1 AS one");
    assert_eq!(ok.body, "one\n1\n");
    let before = server.wait_for_stats("the baseline", |s| {
        s["live"]["guest_tasks"] == 0 && s["live"]["instances"] == 0
    });

    // Clients that hang up: their statements stop with them. The
    // database's pool may keep up to 4 connections (3 files each: the
    // database, its WAL and its shared memory) open, and no more: 18
    // abandoned statements that each kept one file would show.
    let abandon = || {
        for _ in 0..6 {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
            write!(
                stream,
                "POST /sql/query HTTP/1.1\r\nHost: slow.localhost\r\ncontent-length: {}\r\n\r\n{RUNAWAY}",
                RUNAWAY.len()
            )
            .unwrap();
            std::thread::sleep(Duration::from_millis(200));
            drop(stream);
        }
    };
    for _ in 0..3 {
        abandon();
    }
    let pool = 4 * 3;
    server.wait_for_stats("instances, tasks and files", |s| {
        s["live"]["guest_tasks"] == 0
            && s["live"]["instances"] == 0
            && s["live"]["tasks"].as_u64() <= before["live"]["tasks"].as_u64()
            && s["live"]["open_files"].as_u64().unwrap()
                <= before["live"]["open_files"].as_u64().unwrap() + pool
    });
    // The database's connections are free again.
    let started = Instant::now();
    let ok = app_request(&server, "POST", "slow", "/sql/query", b"SELECT 2 AS two");
    assert_eq!(ok.body, "two\n2\n");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A statement past its time limit fails as a value; the app serves on.
    let stopped = app_request(&server, "POST", "slow", "/sql/query", RUNAWAY.as_bytes());
    assert_eq!(stopped.status, 500, "{stopped:?}");
    assert!(stopped.body.contains("Timeout("), "{stopped:?}");
    assert_eq!(server.app_get("slow", "/kv/incr?key=n").body, "1");
}
