//! Native dynos: apps that are not components (a gunicorn app, a Node.js
//! server, a script named by a Procfile) pushed with the real `git`, built
//! by renga's native buildpacks, and run as sandboxed processes behind the
//! router: served, restarted after a crash with backoff, R10 when the web
//! process never binds its port, stopped with
//! SIGTERM then SIGKILL and R12, stopped with R14/R15 past their memory
//! while other apps keep serving, put to sleep and woken, and unable to
//! reach the data folder, the host's processes or the API port.

mod support;

use std::time::{Duration, Instant};

use support::{Server, Steady, TempDir};

const HELLO: &str = "examples/hello-rust";

fn all(ran: &support::Ran) -> String {
    format!("{}{}", ran.stdout, ran.stderr)
}

/// Pushes `example` to a new app `app` with git; returns the push's output.
fn push(server: &Server, tmp: &TempDir, example: &str, app: &str) -> String {
    server.cli(&["apps:create", app]).ok();
    let repo = server.git_repo(example, &tmp.join(app));
    server.cli_in(&repo, &["git:remote", "-a", app]).ok();
    all(&server.git(&repo, &["push", "renga", "main"]).ok())
}

/// Polls `path` of `app` until it answers 200 with `body` in it.
fn wait_for_body(server: &Server, app: &str, path: &str, body: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let reply = server.app_get(app, path);
        if reply.status == 200 && reply.body.contains(body) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{app}{path} never answered {body:?}; last: {} {}\nlog:\n{}",
            reply.status,
            reply.body,
            server.logs(app)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Processes on this machine run by `uid`.
fn processes_of(uid: u32) -> usize {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| e.metadata().is_ok_and(|m| m.uid() == uid))
        .count()
}

#[test]
fn a_native_python_app_is_served_sandboxed_restarted_and_woken() {
    let tmp = TempDir::new("native-python");
    let data = tmp.join("data");
    let server = Server::start(&data);
    let app = "snake";
    server.deploy_component("other", HELLO);

    server.cli(&["apps:create", app]).ok();
    server
        .cli(&["config:set", "GREETING=Howdy", "-a", app])
        .ok();
    let repo = server.git_repo("examples/native-python", &tmp.join(app));
    server.cli_in(&repo, &["git:remote", "-a", app]).ok();
    let pushed = all(&server.git(&repo, &["push", "renga", "main"]).ok());
    assert!(pushed.contains("Python (native) app detected"), "{pushed}");
    assert!(
        pushed.contains("Successfully installed gunicorn"),
        "{pushed}"
    );
    assert!(
        pushed.contains("web                         -> native process, sandboxed"),
        "{pushed}"
    );
    let hello = server.app_get(app, "/");
    assert_eq!(hello.status, 200, "{}", server.logs(app));
    assert_eq!(hello.body, "Howdy from renga (native)\n");
    let log = server.logs(app);
    assert!(
        log.contains("renga[router]: at=info method=GET path=\"/\""),
        "{log}"
    );
    assert!(log.contains("dyno=web.1"), "{log}");
    assert!(
        log.contains("app[web.1]:") && log.contains("Starting gunicorn"),
        "{log}"
    );

    // The environment is the config vars, PORT, DYNO, HOME and PATH (and
    // what bash and gunicorn add), nothing of the host's.
    let env: Vec<String> = serde_json::from_str(&server.app_get(app, "/env").body).unwrap();
    for name in ["GREETING", "PORT", "DYNO", "HOME", "PATH"] {
        assert!(env.iter().any(|e| e == name), "{name} missing: {env:?}");
    }
    let allowed = [
        "GREETING",
        "PORT",
        "DYNO",
        "HOME",
        "PATH",
        "PWD",
        "SHLVL",
        "_",
        "LC_CTYPE",
        "PYTHONUNBUFFERED",
        "SERVER_SOFTWARE",
    ];
    let extra: Vec<&String> = env
        .iter()
        .filter(|e| !allowed.contains(&e.as_str()))
        .collect();
    assert!(extra.is_empty(), "unexpected variables: {extra:?}");

    // Inside: an unprivileged uid, the slug read-only at /app, nothing of
    // the data folder, no host process, no API or router port.
    let whoami = server.app_get(app, "/whoami").body;
    assert!(whoami.contains("cwd=/app home=/home/dyno"), "{whoami}");
    let uid: u32 = whoami
        .strip_prefix("uid=")
        .and_then(|w| w.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .unwrap();
    assert_ne!(uid, 0);
    let data_dir = data.to_str().unwrap();
    for path in [
        data_dir.to_string(),
        format!("{data_dir}/db"),
        format!("{data_dir}/slugs"),
        "/proc/1/root/etc/shadow".to_string(),
    ] {
        let read = server.app_get(app, &format!("/read?path={path}")).body;
        assert!(read.starts_with("refused"), "{path}: {read}");
    }
    let read = server.app_get(app, "/read?path=/app/Procfile").body;
    assert!(read.contains("gunicorn"), "{read}");
    let processes: Vec<u32> =
        serde_json::from_str(&server.app_get(app, "/processes").body).unwrap();
    assert!(
        processes.len() < 8,
        "it sees other processes: {processes:?}"
    );
    let api_port = server.api.rsplit(':').next().unwrap().trim_end_matches('/');
    for port in [api_port.to_string(), server.http_port.to_string()] {
        let reached = server.app_get(app, &format!("/connect?port={port}")).body;
        assert!(reached.starts_with("refused"), "port {port}: {reached}");
    }

    // A crash: the router answers with an error, the dyno restarts.
    let crashed = server.app_get(app, "/crash");
    assert!(crashed.status >= 500, "{}", crashed.status);
    server.wait_for_log(app, Duration::from_secs(10), |l| {
        l.contains("State changed from up to crashed")
            && l.contains("Restarting in 0s (crash 1 in a row)")
    });
    // A second crash in a row waits a second before its restart; a request
    // meanwhile gets H10 at once.
    wait_for_body(&server, app, "/", "Howdy", Duration::from_secs(30));
    let _ = server.app_get(app, "/crash");
    for _ in 0..10 {
        if server.app_get(app, "/?while=crashed").status == 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    server.wait_for_log(app, Duration::from_secs(10), |l| {
        l.contains("Restarting in 1s (crash 2 in a row)")
            && l.contains(
                "at=error code=H10 desc=\"App crashed\" method=GET path=\"/?while=crashed\"",
            )
    });
    wait_for_body(&server, app, "/", "Howdy", Duration::from_secs(30));

    // Memory: past the quota is R14, past twice the quota the dyno is
    // stopped with R15 and restarted; the other app keeps serving.
    for _ in 0..10 {
        let _ = server.app_get(app, "/hog?mb=120");
        if server.logs(app).contains("Error R15") {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    server.wait_for_log(app, Duration::from_secs(10), |l| {
        l.contains("Error R14 (Memory quota exceeded)")
            && l.contains("Error R15 (Memory quota vastly exceeded)")
            && l.contains("State changed from up to crashed")
            && l.contains("Restarting in")
    });
    assert_eq!(server.app_get("other", "/").status, 200);
    wait_for_body(&server, app, "/", "Howdy", Duration::from_secs(30));

    // Sleep and wake.
    server.cli(&["ps:idle", "1s", "-a", app]).ok();
    server.wait_until_idle(app, Duration::from_secs(15));
    server.wait_for_log(app, Duration::from_secs(15), |l| {
        l.contains("unloaded 1 web dyno(s)") && l.contains("State changed from up to down")
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    while processes_of(uid) > 0 {
        assert!(
            Instant::now() < deadline,
            "the sleeping dyno's processes stayed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let woken = server.app_get(app, "/");
    assert_eq!(woken.status, 200, "{}", server.logs(app));
    assert_eq!(woken.body, "Howdy from renga (native)\n");
    assert!(server.logs(app).contains("Woke 1 web dyno(s) from zero in"));

    // Scaled to zero, nothing of it is left: no process, no jail.
    server.cli(&["ps:idle", "never", "-a", app]).ok();
    server.cli(&["ps:scale", "web=0", "-a", app]).ok();
    let deadline = Instant::now() + Duration::from_secs(15);
    while processes_of(uid) > 0 || server.stats()["live"]["jails"] != 0 {
        assert!(
            Instant::now() < deadline,
            "left behind: {} processes, {}",
            processes_of(uid),
            server.stats()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_native_node_app_deploys_without_downtime_and_stops_with_sigterm_then_sigkill() {
    let tmp = TempDir::new("native-node");
    let server = Server::start_with(&tmp.join("data"), &["--boot-timeout", "3s"]);
    let app = "noder";
    let pushed = push(&server, &tmp, "examples/native-node", app);
    assert!(pushed.contains("Node.js (native) app detected"), "{pushed}");
    assert!(
        pushed.contains("Installing dependencies with npm ci"),
        "{pushed}"
    );
    assert_eq!(server.app_get(app, "/").body, "hello from renga (node)\n");
    // The router's headers reach the process.
    let headers: serde_json::Value =
        serde_json::from_str(&server.app_get(app, "/headers").body).unwrap();
    assert!(headers["x-request-id"].is_string(), "{headers}");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "{headers}");
    assert_eq!(headers["host"], format!("{app}.localhost"), "{headers}");

    // A deploy is zero downtime: the new process serves before the old one
    // is stopped.
    let steady = Steady::start_with_host(
        format!("http://127.0.0.1:{}/", server.http_port),
        Some(format!("{app}.localhost")),
        "from renga (node)",
    );
    std::thread::sleep(Duration::from_millis(300));
    server
        .cli(&["config:set", "IGNORE_SIGTERM=1", "-a", app])
        .ok();
    std::thread::sleep(Duration::from_millis(500));
    let (ok, failures) = steady.stop();
    assert!(ok > 0 && failures.is_empty(), "{ok} ok, {failures:?}");
    server.wait_for_log(app, Duration::from_secs(10), |l| {
        l.contains("got SIGTERM, closing") && l.contains("State changed from up to down")
    });

    // This release ignores SIGTERM: a restart kills it after the grace
    // period, with R12.
    server.cli(&["ps:restart", "web", "-a", app]).ok();
    server.wait_for_log(app, Duration::from_secs(20), |l| {
        l.contains("got SIGTERM, ignoring it")
            && l.contains("Error R12 (Exit timeout)")
            && l.contains("Stopping remaining processes with SIGKILL")
    });
    assert_eq!(server.app_get(app, "/").status, 200);

    // A worker, stopped with SIGTERM when scaled down.
    server.cli(&["ps:scale", "worker=1", "-a", app]).ok();
    server.wait_for_log(app, Duration::from_secs(10), |l| {
        l.contains("app[worker.1]: tick 2 from worker.1")
    });
    server.cli(&["ps:scale", "worker=0", "-a", app]).ok();
    server.wait_for_log(app, Duration::from_secs(10), |l| {
        l.contains("worker got SIGTERM")
            && l.contains("renga[worker.1]: Process exited with status 0")
    });

    // A one-off dyno, attached, with stdin.
    let ran = server.cli_with_stdin(
        &[
            "run",
            "-a",
            app,
            "--",
            "node",
            "-e",
            "process.stdin.on('data', d => process.stdout.write('got ' + d)); console.log('in ' + process.env.DYNO)",
        ],
        b"hello\n",
    );
    assert!(ran.status.success(), "{ran}");
    assert!(ran.stdout.contains("in run.1"), "{ran}");
    assert!(ran.stdout.contains("got hello"), "{ran}");
    // A command line of several commands, as `heroku run 'a; b'`.
    let ran = server
        .cli(&["run", "-a", app, "--", "echo one; echo two"])
        .ok();
    assert!(ran.stdout.contains("one\ntwo"), "{ran}");

    // A web process that never binds $PORT: R10 after the boot timeout,
    // stopped, and started again.
    let sleeper = tmp.join("sleeper");
    std::fs::create_dir_all(&sleeper).unwrap();
    std::fs::write(sleeper.join("Procfile"), "web: sleep 600\n").unwrap();
    server.git(&sleeper, &["init", "-q", "-b", "main"]).ok();
    server.commit_all(&sleeper, "never binds");
    server.cli(&["apps:create", "sleeper"]).ok();
    server
        .cli_in(&sleeper, &["git:remote", "-a", "sleeper"])
        .ok();
    server.git(&sleeper, &["push", "renga", "main"]).ok();
    server.wait_for_log("sleeper", Duration::from_secs(20), |l| {
        l.contains(
            "Error R10 (Boot timeout) -> Web process failed to bind to $PORT within 3s of launch",
        ) && l.contains("Restarting in")
    });
    assert_eq!(server.app_get(app, "/").status, 200);

    // A Procfile alone: its command runs as it is.
    let pushed = push(&server, &tmp, "tests/guests/native-procfile", "plain");
    assert!(
        pushed.contains("Procfile (native processes) app detected"),
        "{pushed}"
    );
    wait_for_body(
        &server,
        "plain",
        "/",
        "plain web.1 from a Procfile\n",
        Duration::from_secs(5),
    );
}
