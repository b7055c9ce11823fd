//! `renga server` for tests: a real server on ephemeral ports, the real CLI
//! and `git` run against it, and components built by the real Rust buildpack.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::{Output, Reply, copy_app, copy_tree, renga, repo, request, shared_cache, signal};

/// The admin token every test server starts with.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A component built from `relative` (a crate in the repository) by the real
/// Rust buildpack, once per test run.
pub fn built_component(relative: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<std::collections::HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap();
    if let Some(path) = built.get(relative) {
        return path.clone();
    }
    let name = Path::new(relative)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let root = shared_cache().join("test-builds").join(&name);
    let build = root.join("build");
    let _ = std::fs::remove_dir_all(&build);
    copy_tree(&repo().join(relative), &build);
    let env_dir = root.join("env");
    std::fs::create_dir_all(&env_dir).unwrap();
    let mut command = Command::new(repo().join("buildpacks/rust/bin/compile"));
    command
        .arg(&build)
        .arg(root.join("cache"))
        .arg(&env_dir)
        .env_clear()
        .env("RENGA_TOOLS", shared_cache().join("tools"))
        .env("CARGO_TERM_COLOR", "never");
    for key in [
        "PATH",
        "HOME",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
    ] {
        if let Ok(value) = std::env::var(key) {
            command.env(key, value);
        }
    }
    let output = command.output().expect("running the Rust buildpack");
    assert!(
        output.status.success(),
        "the Rust buildpack failed on {relative}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // A library crate's component is named with underscores, as cargo names it.
    let wasm = [name.clone(), name.replace('-', "_")]
        .iter()
        .map(|n| build.join(format!("{n}.wasm")))
        .find(|p| p.is_file())
        .unwrap_or_else(|| build.join(format!("{name}.wasm")));
    assert!(
        wasm.is_file(),
        "the buildpack did not produce {}",
        wasm.display()
    );
    built.insert(relative.to_string(), wasm.clone());
    wasm
}

/// A running `renga server` on ephemeral ports.
pub struct Server {
    child: Option<Child>,
    pub output: Output,
    pub api: String,
    pub http_port: u16,
    pub data: PathBuf,
    home: PathBuf,
}

/// What a CLI command did.
#[derive(Debug)]
pub struct Ran {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Panics, showing everything, unless the command succeeded.
    pub fn ok(self) -> Ran {
        assert!(self.status.success(), "{self}");
        self
    }

    /// Panics, showing everything, unless the command failed.
    pub fn failed(self) -> Ran {
        assert!(!self.status.success(), "expected a failure:\n{self}");
        self
    }
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "command: {}\nstatus: {}\nstdout:\n{}\nstderr:\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

impl Server {
    /// Starts `renga server` on `data` (which may hold an earlier server's state).
    pub fn start(data: &Path) -> Server {
        Server::start_with(data, &[])
    }

    /// The same, with more `renga server` flags.
    pub fn start_with(data: &Path, extra: &[&str]) -> Server {
        Server::start_with_env(data, extra, &[("RENGA_ADMIN_TOKEN", ADMIN_TOKEN)])
    }

    /// The same, with environment variables of its own (they replace the
    /// test's admin token when they name one).
    pub fn start_with_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let home = data.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let mut command = Command::new(renga());
        command
            .args(["server", "--api", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(extra)
            .env("RENGA_DATA", data)
            .env("RENGA_CACHE", shared_cache())
            .env_remove("RENGA_ADMIN_TOKEN")
            .envs(env.iter().copied())
            .env("RENGA_LOG", "warn,renga=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let description = format!("{command:?}");
        let mut child = command.spawn().expect("spawning renga server");
        let output = Output::default();
        output.capture(child.stdout.take().unwrap(), "");
        output.capture(child.stderr.take().unwrap(), "[stderr] ");
        let api = output.wait_for(Duration::from_secs(120), |l| {
            l.contains("API listening on http://")
        });
        let apps = output.wait_for(Duration::from_secs(10), |l| {
            l.contains("Apps served at http://")
        });
        let (Some(api), Some(apps)) = (api, apps) else {
            let _ = child.kill();
            panic!(
                "renga server did not start.\ncommand: {description}\noutput:\n{}",
                output.text()
            );
        };
        let api = api
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap()
            .to_string();
        let http_port = apps
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .and_then(|url| url.rsplit(':').next())
            .and_then(|port| port.parse().ok())
            .unwrap();
        Server {
            child: Some(child),
            output,
            api,
            http_port,
            data: data.to_path_buf(),
            home,
        }
    }

    /// Runs the `renga` CLI against this server as the admin.
    pub fn cli(&self, args: &[&str]) -> Ran {
        self.cli_as(ADMIN_TOKEN, args)
    }

    pub fn cli_as(&self, token: &str, args: &[&str]) -> Ran {
        if token == ADMIN_TOKEN {
            return self.cli_in(&self.home, args);
        }
        let mut command = Command::new(renga());
        command
            .args(args)
            .env("RENGA_API_URL", &self.api)
            .env("RENGA_API_KEY", token)
            .env("HOME", &self.home)
            .env_remove("RENGA_APP")
            .env_remove("XDG_CONFIG_HOME")
            .current_dir(&self.home)
            .stdin(Stdio::null());
        let description = format!("renga {}", args.join(" "));
        let output = command.output().expect("running renga");
        Ran {
            command: description,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs the `renga` CLI in `dir` (a git repository, for `git:remote`).
    pub fn cli_in(&self, dir: &Path, args: &[&str]) -> Ran {
        self.run_in(renga(), dir, args, &format!("renga {}", args.join(" ")))
    }

    /// Runs the real `git` in `dir` with this server's credentials in the
    /// environment (what `renga git:remote`'s credential helper reads).
    pub fn git(&self, dir: &Path, args: &[&str]) -> Ran {
        self.run_in("git".into(), dir, args, &format!("git {}", args.join(" ")))
    }

    /// Runs the `renga` CLI with `input` as its stdin.
    pub fn cli_with_stdin(&self, args: &[&str], input: &[u8]) -> Ran {
        use std::io::Write as _;
        let mut child = Command::new(renga())
            .args(args)
            .env("RENGA_API_URL", &self.api)
            .env("RENGA_API_KEY", ADMIN_TOKEN)
            .env("HOME", &self.home)
            .env_remove("RENGA_APP")
            .env_remove("XDG_CONFIG_HOME")
            .current_dir(&self.home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running renga");
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let output = child.wait_with_output().expect("waiting for renga");
        let _ = feeder.join();
        Ran {
            command: format!("renga {}", args.join(" ")),
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn run_in(&self, program: PathBuf, dir: &Path, args: &[&str], description: &str) -> Ran {
        let output = Command::new(program)
            .args(args)
            .env("RENGA_API_URL", &self.api)
            .env("RENGA_API_KEY", ADMIN_TOKEN)
            .env("HOME", &self.home)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", "Dev")
            .env("GIT_AUTHOR_EMAIL", "dev@example.com")
            .env("GIT_COMMITTER_NAME", "Dev")
            .env("GIT_COMMITTER_EMAIL", "dev@example.com")
            .env_remove("RENGA_APP")
            .env_remove("XDG_CONFIG_HOME")
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .expect("running a command");
        Ran {
            command: description.to_string(),
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// A git repository holding a copy of `relative`, committed on `main`.
    pub fn git_repo(&self, relative: &str, into: &Path) -> PathBuf {
        let dir = copy_app(relative, into);
        self.git(&dir, &["init", "-q", "-b", "main"]).ok();
        self.commit_all(&dir, "first");
        dir
    }

    pub fn commit_all(&self, dir: &Path, message: &str) {
        self.git(dir, &["add", "-A"]).ok();
        self.git(dir, &["commit", "-q", "--allow-empty", "-m", message])
            .ok();
    }

    /// An HTTP request to an app, through the router.
    pub fn app_get(&self, app: &str, path: &str) -> Reply {
        request(
            "GET",
            &format!("http://127.0.0.1:{}{path}", self.http_port),
            &[("Host", &format!("{app}.localhost"))],
            None,
        )
    }

    /// A raw API request with an optional token.
    pub fn api_request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Accept", "application/vnd.heroku+json; version=3")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth.as_str()));
        }
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        request(method, &format!("{}{path}", self.api), &headers, body)
    }

    /// Creates an app and deploys the component built from `component` (a
    /// crate in the repository) to it, as the admin.
    pub fn deploy_component(&self, app: &str, component: &str) {
        self.cli(&["apps:create", app]).ok();
        let file = built_component(component);
        self.cli(&["deploy", "--component", file.to_str().unwrap(), "-a", app])
            .ok();
    }

    /// The app's recent log.
    pub fn logs(&self, app: &str) -> String {
        self.cli(&["logs", "-n", "1500", "-a", app]).ok().stdout
    }

    /// Waits for `pred` to hold on the app's log; panics with the log if it
    /// never does.
    pub fn wait_for_log(&self, app: &str, timeout: Duration, pred: impl Fn(&str) -> bool) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let text = self.logs(app);
            if pred(&text) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the log of {app} never matched:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until `ps` shows the app's `web.1` unloaded (`idle`).
    pub fn wait_until_idle(&self, app: &str, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let ps = self.cli(&["ps", "-a", app]).ok().stdout;
            if ps.contains("web.1: idle") {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never went idle: {ps}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates a user (as the admin) and returns their token.
    pub fn create_user(&self, name: &str) -> String {
        let created = self.cli(&["users:create", name]).ok();
        created
            .stdout
            .split_whitespace()
            .last()
            .unwrap()
            .to_string()
    }

    /// The server's live figures (`GET /server/stats`).
    pub fn stats(&self) -> serde_json::Value {
        let reply = self.api_request("GET", "/server/stats", Some(ADMIN_TOKEN), None);
        assert_eq!(reply.status, 200, "{}", reply.body);
        serde_json::from_str(&reply.body).unwrap()
    }

    /// Waits (up to 30 s) for the server's live figures to satisfy `done`,
    /// as resources come back after load; panics with them if they never do.
    pub fn wait_for_stats(
        &self,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let stats = self.stats();
            if done(&stats) {
                return stats;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what} never came back to the baseline: {stats:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        signal(&child, libc::SIGTERM);
        child.wait().unwrap()
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        signal(&child, libc::SIGKILL);
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
