//! The real Heroku CLI (npm's `heroku`, the version `scripts/setup`
//! installs) against a real `renga server`: a Heroku user's everyday
//! commands work unchanged with `HEROKU_HOST` and `HEROKU_API_KEY`.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{ADMIN_TOKEN, Output, Server, TempDir, built_component, request};

const HELLO: &str = "examples/hello-rust";
/// Pinned in `scripts/setup`.
const HEROKU_CLI_VERSION: &str = "11.10.0";

/// The Heroku CLI, pointed at one server as one user.
struct Heroku {
    bin: PathBuf,
    api: String,
    token: String,
    home: PathBuf,
}

/// What a Heroku CLI command did.
struct Did {
    command: String,
    ok: bool,
    out: String,
}

impl std::fmt::Display for Did {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "heroku {} (ok: {})\n{}", self.command, self.ok, self.out)
    }
}

impl Did {
    /// Panics, showing everything, unless it succeeded and printed `text`.
    fn says(&self, text: &str) -> &Did {
        assert!(self.ok, "{self}");
        assert!(self.out.contains(text), "expected {text:?} in:\n{self}");
        self
    }
}

impl Heroku {
    fn new(server: &Server, token: &str, home: PathBuf) -> Heroku {
        let bin = support::npm_tool(
            &format!("heroku-cli-{HEROKU_CLI_VERSION}"),
            "node_modules/.bin/heroku",
        );
        std::fs::create_dir_all(&home).unwrap();
        Heroku {
            bin,
            api: server.api.clone(),
            token: token.to_string(),
            home,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("HEROKU_HOST", &self.api)
            .env("HEROKU_API_KEY", &self.token)
            // Where `heroku` reports usage and reads account details:
            // nowhere off this machine.
            .env("DISABLE_TELEMETRY", "true")
            .env("HEROKU_PARTICLEBOARD_URL", &self.api)
            .env("HEROKU_SKIP_NEW_VERSION_CHECK", "true")
            .env("HEROKU_UPDATE_INSTRUCTIONS", "none")
            .env("NO_COLOR", "1")
            .env("TERM", "dumb")
            .current_dir(&self.home)
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Did {
        let output = self.command(args).output().expect("running heroku");
        Did {
            command: args.join(" "),
            ok: output.status.success(),
            out: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }

    /// Starts a long-running command (`logs --tail`), its output captured.
    fn spawn(&self, args: &[&str]) -> (Child, Output) {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running heroku");
        let output = Output::default();
        output.capture(child.stdout.take().unwrap(), "");
        output.capture(child.stderr.take().unwrap(), "");
        (child, output)
    }
}

/// A request to the router for `host`: (status, body).
fn app_get(server: &Server, host: &str) -> (u16, String) {
    let reply = request(
        "GET",
        &format!("http://127.0.0.1:{}/", server.http_port),
        &[("Host", host)],
        None,
    );
    (reply.status, reply.body)
}

/// Retries `check` for up to ten seconds (dynos restart asynchronously).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_heroku_cli_runs_an_app_on_renga() {
    let dir = TempDir::new("heroku");
    let server = Server::start(&dir.join("data"));
    let heroku = Heroku::new(&server, ADMIN_TOKEN, dir.join("heroku-home"));
    let wasm = built_component(HELLO);

    // Apps.
    heroku
        .run(&["apps:create", "demo"])
        .says("http://demo.localhost:");
    heroku.run(&["apps"]).says("demo");
    heroku
        .run(&["apps:info", "-a", "demo"])
        .says("Web URL:")
        .says("Owner:");
    server
        .cli(&[
            "deploy",
            "--component",
            wasm.to_str().unwrap(),
            "-a",
            "demo",
        ])
        .ok();
    assert_eq!(
        app_get(&server, "demo.localhost"),
        (200, "hello from renga\n".into())
    );

    // Config: each change is a release, and the CLI names it.
    heroku
        .run(&["config:set", "GREETING=Hej", "-a", "demo"])
        .says("done, v3");
    heroku.run(&["config", "-a", "demo"]).says("GREETING: Hej");
    heroku
        .run(&["config:get", "GREETING", "-a", "demo"])
        .says("Hej");
    eventually("the new config serves", || {
        app_get(&server, "demo.localhost").1.starts_with("Hej")
    });

    // Releases, one release's details with its config, and a rollback.
    heroku
        .run(&["releases", "-a", "demo"])
        .says("v3")
        .says("Set GREETING config vars")
        .says("v2");
    heroku
        .run(&["releases:info", "v2", "-a", "demo"])
        .says("Deploy");
    heroku
        .run(&["rollback", "v2", "-a", "demo"])
        .says("done, v4");
    eventually("the rollback serves", || {
        app_get(&server, "demo.localhost").1.starts_with("hello")
    });
    heroku.run(&["config:unset", "GREETING", "-a", "demo"]);

    // Dynos: list, scale (absolute and relative), restart.
    heroku.run(&["ps", "-a", "demo"]).says("web.1");
    heroku
        .run(&["ps:scale", "web=2", "-a", "demo"])
        .says("web at 2");
    heroku
        .run(&["ps:scale", "web-1", "-a", "demo"])
        .says("web at 1");
    heroku.run(&["ps:restart", "-a", "demo"]).says("done");
    heroku.run(&["ps", "-a", "demo"]).says("web.1");

    // Logs: the recent ones, then a tail that sees a new request.
    heroku
        .run(&["logs", "-n", "50", "-a", "demo"])
        .says("Release v4 created by");
    let (mut tail, tailed) = heroku.spawn(&["logs", "--tail", "-a", "demo"]);
    tailed
        .wait_for(Duration::from_secs(30), |l| l.contains("Release v4"))
        .unwrap_or_else(|| panic!("the tail printed nothing:\n{}", tailed.text()));
    app_get(&server, "demo.localhost");
    let routed = tailed.wait_for(Duration::from_secs(30), |l| {
        l.contains("renga[router]: at=info method=GET path=\"/\"")
    });
    let _ = tail.kill();
    let _ = tail.wait();
    assert!(
        routed.is_some(),
        "the tail missed the request:\n{}",
        tailed.text()
    );

    // An attached one-off is refused with the way that works.
    let run = heroku.run(&["run", "-a", "demo", "--", "ls"]);
    assert!(!run.ok && run.out.contains("heroku run:detached"), "{run}");

    // Maintenance.
    heroku.run(&["maintenance:on", "-a", "demo"]).says("done");
    assert_eq!(app_get(&server, "demo.localhost").0, 503);
    heroku.run(&["maintenance:off", "-a", "demo"]).says("done");
    assert_eq!(app_get(&server, "demo.localhost").0, 200);

    // Add-ons.
    heroku
        .run(&["addons:create", "renga-kv", "-a", "demo"])
        .says("Created");
    heroku.run(&["addons", "-a", "demo"]).says("renga-kv");

    // Log drains (this one's host never answers: the app serves on).
    heroku
        .run(&[
            "drains:add",
            "https://logs.example.com/ingest",
            "-a",
            "demo",
        ])
        .says("Successfully added drain https://logs.example.com/ingest");
    heroku
        .run(&["drains", "-a", "demo"])
        .says("https://logs.example.com/ingest (d.");
    heroku
        .run(&[
            "drains:remove",
            "https://logs.example.com/ingest",
            "-a",
            "demo",
        ])
        .says("Successfully removed drain https://logs.example.com/ingest");

    // App features: log-runtime-metrics.
    heroku
        .run(&["labs:enable", "log-runtime-metrics", "-a", "demo"])
        .says("Enabling log-runtime-metrics for");
    heroku
        .run(&["labs", "-a", "demo"])
        .says("[+] log-runtime-metrics");
    heroku
        .run(&["labs:disable", "log-runtime-metrics", "-a", "demo"])
        .says("Disabling log-runtime-metrics for");
    assert_eq!(app_get(&server, "demo.localhost").0, 200);

    // Domains: the router answers for an added hostname.
    assert_eq!(app_get(&server, "www.example.com").0, 404);
    heroku
        .run(&["domains:add", "www.example.com", "-a", "demo"])
        .says("www.example.com");
    heroku
        .run(&["domains", "-a", "demo"])
        .says("www.example.com");
    assert_eq!(app_get(&server, "www.example.com").0, 200);
    heroku
        .run(&["domains:remove", "www.example.com", "-a", "demo"])
        .says("done");
    assert_eq!(app_get(&server, "www.example.com").0, 404);
    // renga's own CLI does the same; a hostname belongs to one app, and the
    // platform's own domain to no app.
    server
        .cli(&["domains:add", "api.example.org", "-a", "demo"])
        .ok();
    let listed = server.cli(&["domains", "-a", "demo"]).ok();
    assert!(listed.stdout.contains("api.example.org"), "{listed}");
    assert_eq!(app_get(&server, "api.example.org").0, 200);
    server.cli(&["apps:create", "other"]).ok();
    let taken = server
        .cli(&["domains:add", "api.example.org", "-a", "other"])
        .failed();
    assert!(taken.stderr.contains("already taken"), "{taken}");
    let own = server
        .cli(&["domains:add", "demo.localhost", "-a", "other"])
        .failed();
    assert!(own.stderr.contains("renga names apps with"), "{own}");
    server
        .cli(&["domains:remove", "api.example.org", "-a", "demo"])
        .ok();
    assert_eq!(app_get(&server, "api.example.org").0, 404);

    // Rename: the new name serves, the old one is free.
    heroku
        .run(&["apps:rename", "demo-two", "--app", "demo"])
        .says("http://demo-two.localhost:");
    assert_eq!(app_get(&server, "demo-two.localhost").0, 200);
    assert_eq!(app_get(&server, "demo.localhost").0, 404);
    heroku
        .run(&["apps:info", "-a", "demo-two"])
        .says("demo-two");

    // A collaborator works on the app; a stranger does not see it, and a
    // collaborator cannot delete it.
    let ann = Heroku::new(
        &server,
        &server.create_user("ann@example.com"),
        dir.join("ann"),
    );
    let bob = Heroku::new(
        &server,
        &server.create_user("bob@example.com"),
        dir.join("bob"),
    );
    heroku
        .run(&["access:add", "ann@example.com", "-a", "demo-two"])
        .says("done");
    heroku
        .run(&["access", "-a", "demo-two"])
        .says("ann@example.com");
    ann.run(&["apps"]).says("demo-two");
    ann.run(&["config:set", "FROM=ann", "-a", "demo-two"])
        .says("done");
    let refused = ann.run(&["apps:destroy", "demo-two", "--confirm", "demo-two"]);
    assert!(
        !refused.ok && refused.out.contains("Only the owner"),
        "{refused}"
    );
    let hidden = bob.run(&["apps:info", "-a", "demo-two"]);
    assert!(
        !hidden.ok && hidden.out.contains("Couldn't find that app"),
        "{hidden}"
    );
    let listed = server.cli(&["access", "-a", "demo-two"]).ok();
    assert!(listed.stdout.contains("ann@example.com"), "{listed}");
    server
        .cli(&["access:remove", "ann@example.com", "-a", "demo-two"])
        .ok();
    let gone = ann.run(&["apps:info", "-a", "demo-two"]);
    assert!(
        !gone.ok && gone.out.contains("Couldn't find that app"),
        "{gone}"
    );

    heroku
        .run(&["apps:destroy", "demo-two", "--confirm", "demo-two"])
        .says("done");
    assert_eq!(app_get(&server, "demo-two.localhost").0, 404);
}
