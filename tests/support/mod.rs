//! What renga's end-to-end tests stand on: the real `renga` binary, real
//! folders, real processes and real HTTP.
//!
//! Apps are copied out of the repository before they are built, so tests
//! never write into the checkout. Every test run shares one cache (build
//! caches, toolchains, precompiled code) under cargo's target folder, so each
//! app compiles once per run. A helper that gives up says what ran, where,
//! and everything it printed.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Long enough for a cold build of an app's dependencies on a 2-core machine.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

pub fn renga() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_renga"))
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is inside the repository")
        .to_path_buf()
}

/// Scratch space for this test run, inside cargo's target folder.
pub fn scratch() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e")
}

/// A tool `scripts/setup` installed from npm into `~/.cache/renga/TOOL`
/// (outside the repository): the path `inside` it, which must be there.
pub fn npm_tool(tool: &str, inside: &str) -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
    let path = cache.join("renga").join(tool).join(inside);
    assert!(
        path.exists(),
        "{tool} is not at {}: run scripts/setup",
        path.display()
    );
    path
}

/// The cache every renga process of the test run shares.
pub fn shared_cache() -> PathBuf {
    scratch().join("cache")
}

/// A folder removed when the test is done.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = scratch()
            .join("runs")
            .join(format!("{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, part: &str) -> PathBuf {
        self.0.join(part)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies `relative` (a folder of the repository, such as
/// `examples/hello-rust`) into `into`, without build output.
pub fn copy_app(relative: &str, into: &Path) -> PathBuf {
    let from = repo().join(relative);
    let name = from.file_name().unwrap();
    let to = into.join(name);
    let _ = std::fs::remove_dir_all(&to);
    copy_tree(&from, &to);
    to
}

/// One copy of `relative` per test run, shared by every test that only reads
/// it, so that it is built once.
pub fn shared_app(relative: &str) -> PathBuf {
    static COPIED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let copied = COPIED.get_or_init(Default::default);
    let mut copied = copied.lock().unwrap();
    let apps = scratch().join("apps");
    let path = apps.join(Path::new(relative).file_name().unwrap());
    if copied.insert(relative.to_string()) {
        std::fs::create_dir_all(&apps).unwrap();
        copy_app(relative, &apps);
    }
    path
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == "target" {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Collected output of a child process, with a way to wait for a line.
#[derive(Clone, Default)]
pub struct Output(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Output {
    pub fn capture(&self, stream: impl Read + Send + 'static, prefix: &'static str) {
        let output = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let (lines, changed) = &*output.0;
                lines.lock().unwrap().push(format!("{prefix}{line}"));
                changed.notify_all();
            }
        });
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.0.lock().unwrap().clone()
    }

    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    /// The first line matching `pred`, waiting up to `timeout` for it.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lines, changed) = &*self.0;
        let mut guard = lines.lock().unwrap();
        loop {
            if let Some(line) = guard.iter().find(|l| pred(l)) {
                return Some(line.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            guard = changed.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }
}

/// A running `renga dev`.
pub struct Dev {
    child: Child,
    command: String,
    pub output: Output,
    url: String,
    _data: TempDir,
}

/// A `renga dev` that exited instead of serving.
#[derive(Debug)]
pub struct Refused {
    pub status: ExitStatus,
    pub output: String,
}

impl Dev {
    /// Starts `renga dev APP --port 0 EXTRA...` and waits until it serves.
    pub fn start(app: &Path, extra: &[&str]) -> Dev {
        match Dev::try_start(app, extra) {
            Ok(dev) => dev,
            Err(refused) => panic!(
                "renga dev did not start.\ncommand: renga dev {} --port 0 {}\nstatus: {}\noutput:\n{}",
                app.display(),
                extra.join(" "),
                refused.status,
                refused.output
            ),
        }
    }

    /// Starts `renga dev` and returns it once it serves, or how it exited.
    pub fn try_start(app: &Path, extra: &[&str]) -> Result<Dev, Refused> {
        let data = TempDir::new("dev-data");
        let mut command = Command::new(renga());
        command
            .arg("dev")
            .arg(app)
            .args(["--port", "0"])
            .args(extra)
            .env("RENGA_DATA", data.path())
            .env("RENGA_CACHE", shared_cache())
            .env("RENGA_LOG", "warn,renga=info")
            .env_remove("PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let description = format!("{command:?}");
        let mut child = command.spawn().expect("spawning renga");
        let output = Output::default();
        output.capture(child.stdout.take().unwrap(), "");
        output.capture(child.stderr.take().unwrap(), "[stderr] ");

        let deadline = Instant::now() + BUILD_TIMEOUT;
        loop {
            if let Some(line) = output.wait_for(Duration::from_millis(200), |l| {
                l.contains(" is running at http://")
            }) {
                let url = line
                    .split_whitespace()
                    .find(|w| w.starts_with("http://"))
                    .unwrap()
                    .to_string();
                return Ok(Dev {
                    child,
                    command: description,
                    output,
                    url,
                    _data: data,
                });
            }
            if let Some(status) = child.try_wait().unwrap() {
                // Let the readers drain what the process printed last.
                std::thread::sleep(Duration::from_millis(200));
                return Err(Refused {
                    status,
                    output: output.text(),
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "renga dev did not start within {BUILD_TIMEOUT:?}.\ncommand: {description}\noutput:\n{}",
                    output.text()
                );
            }
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn get(&self, path: &str) -> Reply {
        get(&format!("{}{path}", self.url))
    }

    /// The first output line matching `pred`, or a panic that shows the whole
    /// output.
    pub fn expect_line(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        match self.output.wait_for(timeout, pred) {
            Some(line) => line,
            None => panic!(
                "renga dev never printed {what} (waited {timeout:?}).\ncommand: {}\noutput:\n{}",
                self.command,
                self.output.text()
            ),
        }
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self) -> ExitStatus {
        signal(&self.child, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "renga dev ignored SIGTERM.\noutput:\n{}",
                self.output.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(child: &Child, signal: i32) {
    // SAFETY: kill only sends a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
}

/// An HTTP response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

pub fn get(url: &str) -> Reply {
    request("GET", url, &[], None)
}

pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
    try_request(method, url, headers, body).unwrap_or_else(|e| panic!("{method} {url} failed: {e}"))
}

pub fn try_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Reply, ureq::Error> {
    let mut builder = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let agent = agent();
    let response = match body {
        Some(body) => agent.run(builder.body(body.to_vec()).unwrap())?,
        None => agent.run(builder.body(()).unwrap())?,
    };
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = response.into_body().read_to_string()?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// A response's body as bytes, however large (up to 1 GiB).
pub fn request_bytes(method: &str, url: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let response = agent()
        .run(builder.body(()).unwrap())
        .unwrap_or_else(|e| panic!("{method} {url} failed: {e}"));
    assert_eq!(response.status().as_u16(), 200, "{method} {url}");
    response
        .into_body()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap()
}

/// Sends raw bytes on a fresh connection and returns whatever comes back
/// before the server closes it (or `wait` passes).
pub fn raw_exchange(port: u16, bytes: &[u8], wait: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.write_all(bytes).unwrap();
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    received
}

/// Requests `url` over and over from a background thread until stopped;
/// counts what succeeded and remembers what did not.
pub struct Steady {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl Steady {
    pub fn start(url: String, expect_body: &'static str) -> Steady {
        Steady::start_with_host(url, None, expect_body)
    }

    /// The same, with a `Host` header (to reach an app through the router).
    pub fn start_with_host(url: String, host: Option<String>, expect_body: &'static str) -> Steady {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let agent = agent();
            let (mut ok, mut failures) = (0, Vec::new());
            while !flag.load(Ordering::Relaxed) {
                let mut call = agent.get(&url);
                if let Some(host) = &host {
                    call = call.header("Host", host);
                }
                match call.call() {
                    Ok(response) if response.status() == 200 => {
                        let body = response.into_body().read_to_string().unwrap_or_default();
                        if body.contains(expect_body) {
                            ok += 1;
                        } else {
                            failures.push(format!("unexpected body {body:?}"));
                        }
                    }
                    Ok(response) => failures.push(format!("status {}", response.status())),
                    Err(e) => failures.push(format!("error {e}")),
                }
            }
            (ok, failures)
        });
        Steady { stop, handle }
    }

    /// Stops the stream: (successes, failures).
    pub fn stop(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

mod addons;
pub mod drain_receiver;
mod server;
mod services;
#[allow(unused_imports, reason = "only the add-on tests use these")]
pub use addons::{app_request, create_addon, hits};
#[allow(unused_imports, reason = "the dev tests use no server")]
pub use server::*;
#[allow(
    unused_imports,
    reason = "only the add-on server, drain and cluster tests start these"
)]
pub use services::{Certs, NatsCluster, Postgres, Redis, Rsyslog, free_port, make_certs};
