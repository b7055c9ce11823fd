//! Builds end to end: source pushed with the real `git` client (or uploaded
//! with `renga deploy`) to a real `renga server`, built by the real
//! buildpacks, and served through the router.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{Server, TempDir, built_component};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Both streams of a command, for looking for lines.
fn all(ran: &support::Ran) -> String {
    format!("{}{}", ran.stdout, ran.stderr)
}

fn current_version(server: &Server, app: &str) -> u64 {
    let reply = server.api_request(
        "GET",
        &format!("/apps/{app}/releases"),
        Some(support::ADMIN_TOKEN),
        None,
    );
    let releases: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    releases
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_u64().unwrap())
        .max()
        .unwrap()
}

#[test]
fn git_push_builds_rust_reuses_the_cache_and_rejects_what_fails() {
    let tmp = TempDir::new("push-rust");
    let server = Server::start(&tmp.join("data"));
    server.cli(&["apps:create", "pushed"]).ok();
    let repo = server.git_repo("examples/hello-rust", tmp.path());
    server.cli_in(&repo, &["git:remote", "-a", "pushed"]).ok();

    // The first push builds everything and releases v2.
    let push = server.git(&repo, &["push", "renga", "main"]).ok();
    let text = all(&push);
    assert!(text.contains("remote: -----> Rust app detected"), "{text}");
    assert!(text.contains("remote: -----> Released v2"), "{text}");
    assert!(text.contains("http://pushed.localhost:"), "{text}");
    assert_eq!(server.app_get("pushed", "/").body, "hello from renga\n");

    // A second push recompiles only the app: its dependencies come from the
    // app's build cache.
    std::fs::write(repo.join("NOTES.md"), "second push\n").unwrap();
    server.commit_all(&repo, "second");
    let push = server.git(&repo, &["push", "renga", "main"]).ok();
    let text = all(&push);
    assert!(text.contains("Compiling hello-rust"), "{text}");
    assert!(
        !text.contains("Compiling wstd"),
        "the second build did not reuse the cache:\n{text}"
    );
    assert!(text.contains("Released v3"), "{text}");
    let good_commit = server.git(&repo, &["rev-parse", "HEAD"]).ok().stdout;

    // A compile error rejects the push with the compiler's own message, the
    // ref does not move, and v3 keeps serving.
    let main_rs = repo.join("src/main.rs");
    let mut source = std::fs::read_to_string(&main_rs).unwrap();
    source.push_str("\nfn broken( {\n");
    std::fs::write(&main_rs, source).unwrap();
    server.commit_all(&repo, "broken");
    let push = server.git(&repo, &["push", "renga", "main"]).failed();
    let text = all(&push);
    assert!(text.contains("unclosed delimiter"), "{text}");
    assert!(text.contains("pre-receive hook declined"), "{text}");
    assert!(text.contains("Push rejected to pushed"), "{text}");
    let remote = server
        .git(&repo, &["ls-remote", "renga", "refs/heads/main"])
        .ok();
    assert!(
        remote.stdout.starts_with(good_commit.trim()),
        "the rejected push moved main: {remote}"
    );
    assert_eq!(current_version(&server, "pushed"), 3);
    assert_eq!(server.app_get("pushed", "/").body, "hello from renga\n");
    server.git(&repo, &["reset", "-q", "--hard", "HEAD~1"]).ok();

    // A release phase runs before the release goes live; its output shows in
    // the push. When it fails, the push is rejected and v4 keeps serving.
    std::fs::create_dir_all(repo.join("src/bin")).unwrap();
    std::fs::write(
        repo.join("src/bin/migrate.rs"),
        "fn main() {\n    let greeting = std::env::var(\"GREETING\").unwrap_or_default();\n    println!(\"migrating for {greeting:?}\");\n}\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("Procfile"),
        "web: hello-rust.wasm\nrelease: migrate.wasm\n",
    )
    .unwrap();
    server
        .cli(&["config:set", "GREETING=Howdy", "-a", "pushed"])
        .ok();
    server.commit_all(&repo, "release phase");
    let push = server.git(&repo, &["push", "renga", "main"]).ok();
    let text = all(&push);
    assert!(
        text.contains("Running release command: migrate.wasm"),
        "{text}"
    );
    assert!(text.contains("migrating for \"Howdy\""), "{text}");
    assert!(text.contains("Released v5"), "{text}");
    assert_eq!(server.app_get("pushed", "/").body, "Howdy from renga\n");

    std::fs::write(
        repo.join("src/bin/migrate.rs"),
        "fn main() {\n    eprintln!(\"migration 7 failed: table exists\");\n    std::process::exit(3);\n}\n",
    )
    .unwrap();
    server.commit_all(&repo, "failing release phase");
    let push = server.git(&repo, &["push", "renga", "main"]).failed();
    let text = all(&push);
    assert!(text.contains("migration 7 failed: table exists"), "{text}");
    // WASI 0.2's `exit` carries success or failure only: any failure is 1.
    assert!(text.contains("failed with exit code 1"), "{text}");
    assert_eq!(current_version(&server, "pushed"), 5);
    assert_eq!(server.app_get("pushed", "/").body, "Howdy from renga\n");
    let logs = server.cli(&["logs", "-n", "200", "-a", "pushed"]).ok();
    assert!(
        logs.stdout.contains("app[release.1]: migration 7 failed"),
        "{}",
        logs.stdout
    );
    // The build's own output is in the log too, as renga[build].
    assert!(
        logs.stdout
            .contains("renga[build]: -----> Rust app detected"),
        "{}",
        logs.stdout
    );

    // `renga deploy DIR` runs the same pipeline from a folder, and the build
    // is listed with its output.
    server.git(&repo, &["reset", "-q", "--hard", "HEAD~1"]).ok();
    let deploy = server.cli(&["deploy", path(&repo), "-a", "pushed"]).ok();
    assert!(deploy.stdout.contains("Released v6"), "{deploy}");
    let builds = server.cli(&["builds", "-a", "pushed"]).ok();
    assert!(builds.stdout.contains("succeeded"), "{builds}");
    assert!(builds.stdout.contains("failed"), "{builds}");
    let info = server.cli(&["builds:info", "-a", "pushed"]).ok();
    assert!(info.stdout.contains("Status:  succeeded"), "{info}");
    assert!(info.stdout.contains("Rust app detected"), "{info}");
}

#[test]
fn a_third_party_buildpack_set_with_buildpacks_set_builds_the_app() {
    let tmp = TempDir::new("classic-bp");
    let server = Server::start(&tmp.join("data"));
    server.cli(&["apps:create", "classic"]).ok();

    // A classic buildpack in shell: it detects a `site.conf`, copies a
    // vendored component into place, and reads a config var from ENV_DIR.
    let bp = tmp.join("vendored-bp");
    std::fs::create_dir_all(bp.join("bin")).unwrap();
    let scripts = [
        (
            "detect",
            "#!/bin/sh\n[ -f \"$1/site.conf\" ] && echo 'Vendored site' && exit 0\nexit 1\n",
        ),
        (
            "compile",
            "#!/bin/sh\nset -e\necho \"-----> Vendoring the component\"\ncp \"$1/vendor/app.wasm\" \"$1/app.wasm\"\necho \"       GREETING is $(cat \"$3/GREETING\")\"\n",
        ),
        (
            "release",
            "#!/bin/sh\necho '---'\necho 'default_process_types:'\necho '  web: app.wasm'\n",
        ),
    ];
    for (name, text) in scripts {
        let file = bp.join("bin").join(name);
        std::fs::write(&file, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let site = tmp.join("site");
    std::fs::create_dir_all(site.join("vendor")).unwrap();
    std::fs::write(site.join("site.conf"), "x\n").unwrap();
    std::fs::copy(
        built_component("examples/hello-rust"),
        site.join("vendor/app.wasm"),
    )
    .unwrap();

    server
        .cli(&["config:set", "GREETING=Ahoy", "-a", "classic"])
        .ok();
    // Without it, nothing detects the app, and the message says what each
    // buildpack looks for.
    let refused = server
        .cli(&["deploy", path(&site), "-a", "classic"])
        .failed();
    let text = all(&refused);
    assert!(text.contains("no buildpack recognised this app"), "{text}");
    assert!(text.contains("rust: a Cargo.toml"), "{text}");

    server
        .cli(&["buildpacks:set", path(&bp), "-a", "classic"])
        .ok();
    let listed = server.cli(&["buildpacks", "-a", "classic"]).ok();
    assert!(listed.stdout.contains("vendored-bp"), "{listed}");
    let deploy = server.cli(&["deploy", path(&site), "-a", "classic"]).ok();
    assert!(
        deploy.stdout.contains("Vendored site app detected"),
        "{deploy}"
    );
    assert!(deploy.stdout.contains("GREETING is Ahoy"), "{deploy}");
    assert_eq!(server.app_get("classic", "/").body, "Ahoy from renga\n");

    // Not a folder with bin/detect and bin/compile: refused, nothing changes.
    let bad = server
        .cli(&["buildpacks:set", "/nonexistent/buildpack", "-a", "classic"])
        .failed();
    assert!(all(&bad).contains("is not a buildpack"), "{bad}");
    let unknown = server
        .cli(&["buildpacks:set", "cobol", "-a", "classic"])
        .failed();
    assert!(all(&unknown).contains("unknown buildpack"), "{unknown}");
}

#[test]
fn git_pushes_need_a_token_and_reach_only_your_apps() {
    let tmp = TempDir::new("push-auth");
    let server = Server::start(&tmp.join("data"));
    server.cli(&["apps:create", "guarded"]).ok();
    let repo = server.git_repo("examples/hello-rust", tmp.path());
    let url = format!("{}/git/guarded.git", server.api);

    // No credentials: git is told to authenticate and gives up.
    let push = server.git(&repo, &["push", &url, "main"]).failed();
    assert!(
        all(&push).contains("Authentication failed")
            || all(&push).contains("could not read Username"),
        "{push}"
    );

    // Another user's token: the app does not exist for them.
    let created = server.cli(&["users:create", "mallory"]).ok();
    let token = created
        .stdout
        .split_whitespace()
        .last()
        .unwrap()
        .to_string();
    let with_token = url.replace("http://", &format!("http://renga:{token}@"));
    let push = server.git(&repo, &["push", &with_token, "main"]).failed();
    assert!(
        all(&push).contains("404") || all(&push).contains("not found"),
        "{push}"
    );

    // A push to another branch is accepted but not built.
    let admin = url.replace(
        "http://",
        &format!("http://renga:{}@", support::ADMIN_TOKEN),
    );
    let push = server.git(&repo, &["push", &admin, "main:feature"]).ok();
    assert!(
        all(&push).contains("refs/heads/feature is not built"),
        "{push}"
    );
    let builds = server.cli(&["builds", "-a", "guarded", "--json"]).ok();
    assert_eq!(builds.stdout.trim(), "[]");

    // Source no buildpack recognises: the push is rejected, saying what
    // each buildpack looks for.
    let docs = tmp.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("README.md"), "just words\n").unwrap();
    server.git(&docs, &["init", "-q", "-b", "main"]).ok();
    server.commit_all(&docs, "docs");
    let push = server.git(&docs, &["push", &admin, "main"]).failed();
    let text = all(&push);
    assert!(text.contains("no buildpack recognised this app"), "{text}");
    assert!(text.contains("python: a requirements.txt"), "{text}");
    assert!(text.contains("pre-receive hook declined"), "{text}");
}

/// Pushes an example app with git, with a config var set first, and checks
/// the greeting it answers through the router. Returns the server and the
/// repository for more pushes.
fn push_example(
    label: &str,
    example: &str,
    detected: &str,
) -> (Server, std::path::PathBuf, TempDir) {
    let tmp = TempDir::new(label);
    let server = Server::start(&tmp.join("data"));
    let app = format!("hello-{label}");
    server.cli(&["apps:create", &app]).ok();
    server
        .cli(&["config:set", "GREETING=Howdy", "-a", &app])
        .ok();
    let repo = server.git_repo(example, tmp.path());
    server.cli_in(&repo, &["git:remote", "-a", &app]).ok();
    let push = server.git(&repo, &["push", "renga", "main"]).ok();
    let text = all(&push);
    assert!(
        text.contains(&format!("remote: -----> {detected} app detected")),
        "{text}"
    );
    assert!(text.contains("Released v3"), "{text}");
    assert_eq!(server.app_get(&app, "/").body, "Howdy from renga\n");
    server.cli(&["config:unset", "GREETING", "-a", &app]).ok();
    assert_eq!(server.app_get(&app, "/").body, "hello from renga\n");
    (server, repo, tmp)
}

/// The Python worker: a Heroku-style script, run as `python worker.py`.
const PYTHON_WORKER: &str = r#"import os
import time


def main():
    for tick in range(1, 1000):
        print(f"worker.py says {os.environ.get('GREETING', 'hello')}, tick {tick}", flush=True)
        time.sleep(1)


if __name__ == "__main__":
    main()
"#;

/// A Python one-off command: arguments, stdin, stderr and the exit code.
const PYTHON_COMMAND: &str = r#"import sys

data = sys.stdin.read()
print("count", ",".join(sys.argv[1:]), f"read {len(data)} bytes")
if "--fail" in sys.argv:
    print("failing on purpose", file=sys.stderr)
    sys.exit(3)
"#;

const JS_WORKER: &str = r#"import { getEnvironment } from "wasi:cli/environment@0.2.10";
import { subscribeDuration } from "wasi:clocks/monotonic-clock@0.2.10";

export default function main() {
  const greeting = getEnvironment().find(([k]) => k === "GREETING")?.[1] ?? "hello";
  for (let tick = 1; tick < 1000; tick++) {
    console.log(`worker.js says ${greeting}, tick ${tick}`);
    subscribeDuration(1_000_000_000n).block();
  }
}
"#;

const JS_COMMAND: &str = r#"export default function main(args) {
  console.log("count", args.join(","));
  if (args.includes("--fail")) throw new Error("failing on purpose");
}
"#;

/// Pushes `worker.EXT` and `bin/count.EXT` to an app built by push_example:
/// they become command components, the worker a process type that runs
/// when scaled, `count` a one-off with its arguments and exit status.
fn commands_become_workers_and_one_offs(
    server: &Server,
    repo: &Path,
    app: &str,
    (ext, worker, command): (&str, &str, &str),
) {
    std::fs::create_dir_all(repo.join("bin")).unwrap();
    std::fs::write(repo.join(format!("worker.{ext}")), worker).unwrap();
    std::fs::write(repo.join(format!("bin/count.{ext}")), command).unwrap();
    server.commit_all(repo, "a worker and a command");
    let push = server.git(repo, &["push", "renga", "main"]).ok();
    let text = all(&push);
    for built in [
        format!("Building worker.wasm from worker.{ext} (a wasi:cli/command component)"),
        format!("Building count.wasm from bin/count.{ext} (a wasi:cli/command component)"),
        "-> component worker.wasm".to_string(),
    ] {
        assert!(text.contains(&built), "{built}: {text}");
    }
    assert_eq!(server.app_get(app, "/").body, "hello from renga\n");

    server.cli(&["config:set", "GREETING=Hej", "-a", app]).ok();
    server.cli(&["ps:scale", "worker=1", "-a", app]).ok();
    server.wait_for_log(app, Duration::from_secs(30), |l| {
        l.contains(&format!("app[worker.1]: worker.{ext} says Hej, tick 2"))
    });
    server.cli(&["ps:scale", "worker=0", "-a", app]).ok();

    let ran = server.cli_with_stdin(&["run", "-a", app, "--", "count", "a", "b"], b"four");
    assert_eq!(ran.status.code(), Some(0), "{ran}");
    assert!(ran.stdout.contains("count a,b"), "{ran}");
    let failed = server.cli_with_stdin(&["run", "-a", app, "--", "count", "--fail"], b"");
    assert_eq!(failed.status.code(), Some(1), "{failed}");
    assert!(failed.stderr.contains("failing on purpose"), "{failed}");
}

#[test]
fn git_push_builds_the_python_example() {
    let (server, repo, _tmp) = push_example("python", "examples/hello-python", "Python");
    commands_become_workers_and_one_offs(
        &server,
        &repo,
        "hello-python",
        ("py", PYTHON_WORKER, PYTHON_COMMAND),
    );
}

#[test]
fn git_push_builds_the_javascript_example() {
    let (server, repo, _tmp) = push_example("js", "examples/hello-js", "JavaScript");
    componentize_js_is_refused_instance_reuse(&server);
    commands_become_workers_and_one_offs(&server, &repo, "hello-js", ("js", JS_WORKER, JS_COMMAND));
}

/// componentize-js 0.23 answers one request per instance (a kept instance
/// never answers the second), so instance reuse is refused up front: by
/// `ps:type`, and by a release that would run such a component with reuse
/// on. Either way the app goes on serving what it served.
fn componentize_js_is_refused_instance_reuse(server: &Server) {
    let refused = server
        .cli(&[
            "ps:type",
            "web=standard-1x",
            "--reuse",
            "128",
            "-a",
            "hello-js",
        ])
        .failed();
    for said in ["componentize-js 0.23.0", "--reuse 0"] {
        assert!(refused.stderr.contains(said), "{said}: {refused}");
    }
    let formation = server
        .cli(&["ps:type", "web=standard-1x", "-a", "hello-js"])
        .ok();
    assert!(!formation.stdout.contains("reused"), "{formation}");
    for _ in 0..3 {
        assert_eq!(server.app_get("hello-js", "/").body, "hello from renga\n");
    }

    // An app that reuses instances is refused the JavaScript component.
    server.deploy_component("kept", "tests/guests/misbehave");
    server
        .cli(&["ps:type", "web=standard-1x", "--reuse", "8", "-a", "kept"])
        .ok();
    let js = files_named(&server.data, "app.wasm")
        .into_iter()
        .max_by_key(|f| f.metadata().unwrap().len())
        .expect("the JavaScript app's unpacked component");
    let refused = server
        .cli(&["deploy", "--component", js.to_str().unwrap(), "-a", "kept"])
        .failed();
    assert!(
        refused.stderr.contains("componentize-js 0.23.0"),
        "{refused}"
    );
    assert_eq!(server.app_get("kept", "/").body, "ok\n");
    server
        .cli(&["apps:destroy", "-a", "kept", "--confirm", "kept"])
        .ok();
}

/// Every file called `name` under `dir`.
fn files_named(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(files_named(&path, name));
        } else if entry.file_name() == name {
            found.push(path);
        }
    }
    found
}

#[test]
fn git_push_builds_the_c_example() {
    let (server, repo, _tmp) = push_example("c", "examples/hello-c", "C");
    // A command in bin/ becomes a process type: here the release phase.
    std::fs::create_dir_all(repo.join("bin")).unwrap();
    std::fs::write(
        repo.join("bin/release.c"),
        "#include <stdio.h>\n#include <stdlib.h>\nint main(void) {\n  printf(\"release phase in C, greeting %s\\n\", getenv(\"GREETING\") ? getenv(\"GREETING\") : \"unset\");\n  return 0;\n}\n",
    )
    .unwrap();
    server
        .cli(&["config:set", "GREETING=Hej", "-a", "hello-c"])
        .ok();
    server.commit_all(&repo, "release phase");
    let push = server.git(&repo, &["push", "renga", "main"]).ok();
    let text = all(&push);
    assert!(
        text.contains("Running release command: release.wasm"),
        "{text}"
    );
    assert!(text.contains("release phase in C, greeting Hej"), "{text}");
    assert_eq!(server.app_get("hello-c", "/").body, "Hej from renga\n");
}
