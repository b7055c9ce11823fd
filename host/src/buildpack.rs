//! buildpack: Heroku's classic buildpack API.
//!
//! A buildpack is a folder with `bin/detect BUILD_DIR`, `bin/compile BUILD_DIR
//! CACHE_DIR ENV_DIR` and `bin/release BUILD_DIR`. This module runs those
//! scripts with a clean environment, directly (`renga dev`) or in a sandbox
//! (`renga server`), streams their output line by line, and parses what
//! `bin/release` prints. renga's own buildpacks ship inside the binary and
//! are written out to the cache on first use; they also have `bin/tools
//! TOOLS_DIR`, which installs the pinned tools they build with into a folder
//! shared by every build, before `bin/compile` runs with it read-only. It
//! never decides what a build's output becomes; the build module does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use include_dir::{Dir, include_dir};
use sha2::{Digest, Sha256};
use tokio::io::BufReader;
use tokio::process::Command;
use tokio_util::task::AbortOnDropHandle;

use crate::procfile::{Command as ProcessCommand, ProcessType, Procfile};
use crate::sandbox::{Bind, Ended, Jail, Jailed, Sandbox};

/// renga's own buildpacks, in detection order.
static BUILTIN: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../buildpacks");

/// The WIT of renga's app worlds, written beside the buildpacks (as `wit/`)
/// for the ones that generate bindings from it.
static WIT: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../wit");

/// renga's app-side SDKs, written beside the buildpacks (as `sdk/`): the
/// Rust buildpack gives `renga-sdk` to apps that depend on it.
static SDK: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../sdk");

/// The order in which renga's own buildpacks are asked to detect an app:
/// language buildpacks first (a Python or Node.js app whose Procfile runs
/// native commands before the one that makes it a component), then
/// prebuilt components, then a Procfile of native commands alone.
pub const DETECTION_ORDER: &[&str] = &[
    "rust",
    "native-python",
    "python",
    "native-nodejs",
    "javascript",
    "c",
    "wasm",
    "native",
];

/// `bin/detect` and `bin/release` only look at files; they get a minute.
const SHORT_SCRIPT_LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct Buildpack {
    name: String,
    dir: PathBuf,
    /// One of renga's own: its folder sits beside the others and `wit/`.
    builtin: bool,
}

/// Where renga's own buildpacks appear in a sandbox (with `wit/` beside them).
pub const BUILTIN_INSIDE: &str = "/renga/buildpacks";

/// Where a buildpack set by path appears in a sandbox.
pub const CUSTOM_INSIDE: &str = "/buildpack";

#[derive(Debug, thiserror::Error)]
pub enum BuildpackError {
    #[error("buildpack {name}: {script} could not start: {source}")]
    Spawn {
        name: String,
        script: &'static str,
        source: std::io::Error,
    },
    #[error("buildpack {name}: {script} failed ({status})")]
    Failed {
        name: String,
        script: &'static str,
        status: String,
    },
    #[error("buildpack {name}: {script} ran longer than {limit:?} and was stopped")]
    TimedOut {
        name: String,
        script: &'static str,
        limit: Duration,
    },
    #[error("buildpack {name}: bin/release printed YAML renga cannot read: {reason}")]
    BadRelease { name: String, reason: String },
    #[error("buildpack {name}: {script} was stopped: {reason}")]
    OverLimit {
        name: String,
        script: &'static str,
        reason: String,
    },
    #[error("buildpack {name}: {script} could not be sandboxed: {reason}")]
    Sandbox {
        name: String,
        script: &'static str,
        reason: String,
    },
}

/// How a buildpack's scripts run.
#[derive(Clone)]
pub enum Launcher {
    /// As renga's own children, seeing the host (`renga dev`: the developer
    /// builds their own code).
    Direct,
    /// In a jail (`renga server`). The jail's environment and working folder
    /// are replaced by each script's; paths given to scripts are as the jail
    /// sees them.
    Sandboxed(Arc<Sandbox>, Jail),
}

/// A running buildpack script.
enum Running {
    Direct(tokio::process::Child),
    Jailed(Box<Jailed>),
}

impl Running {
    fn stdout(&mut self) -> Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>> {
        match self {
            Running::Direct(child) => child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            Running::Jailed(jailed) => jailed
                .stdout()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        }
    }

    fn stderr(&mut self) -> Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>> {
        match self {
            Running::Direct(child) => child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            Running::Jailed(jailed) => jailed
                .stderr()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        }
    }

    async fn wait(&mut self) -> std::io::Result<Ended> {
        match self {
            Running::Direct(child) => child.wait().await.map(Ended::Exited),
            Running::Jailed(jailed) => jailed.wait().await,
        }
    }

    /// Stops the script and everything it started.
    async fn kill(&mut self) {
        match self {
            Running::Direct(child) => {
                kill_group(child.id());
                let _ = child.wait().await;
            }
            Running::Jailed(jailed) => jailed.kill().await,
        }
    }
}

/// The environment of a buildpack's processes: an allowlist, so that the
/// platform's own secrets never reach a build.
#[derive(Clone, Debug, Default)]
pub struct BuildEnv {
    vars: Vec<(String, String)>,
}

impl BuildEnv {
    /// What a build needs from the host: where its toolchains are and how
    /// this machine reaches package registries, and nothing else.
    pub fn from_host() -> BuildEnv {
        const PASSED: &[&str] = &[
            "PATH",
            "HOME",
            "LANG",
            "TMPDIR",
            "CARGO_HOME",
            "RUSTUP_HOME",
            "RUSTUP_TOOLCHAIN",
            // How this machine reaches package registries (proxies, the CA
            // certificates a proxy signs with, mirrors): buildpacks install
            // toolchains and dependencies from crates.io, PyPI and npm.
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "NO_PROXY",
            "http_proxy",
            "https_proxy",
            "no_proxy",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
            "NODE_EXTRA_CA_CERTS",
            "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
            "CARGO_HTTP_CAINFO",
            "PIP_CERT",
            "PIP_INDEX_URL",
            "PIP_EXTRA_INDEX_URL",
            "PIP_DEFAULT_TIMEOUT",
            "NPM_CONFIG_REGISTRY",
        ];
        let mut vars: Vec<(String, String)> = PASSED
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        vars.push(("STACK".into(), "renga-1".into()));
        vars.push(("CARGO_TERM_COLOR".into(), "never".into()));
        BuildEnv { vars }
    }

    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.to_string(), value.into()));
    }

    pub fn remove(&mut self, key: &str) {
        self.vars.retain(|(k, _)| k != key);
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }
}

/// What `bin/release` says, in Heroku's YAML.
#[derive(Debug, Default, serde::Deserialize)]
struct ReleaseYaml {
    #[serde(default)]
    default_process_types: Option<BTreeMap<String, String>>,
}

impl Buildpack {
    /// A buildpack folder; it must have `bin/detect` and `bin/compile`.
    pub fn from_dir(dir: &Path) -> anyhow::Result<Buildpack> {
        Buildpack::at(dir, false)
    }

    fn at(dir: &Path, builtin: bool) -> anyhow::Result<Buildpack> {
        for script in ["bin/detect", "bin/compile"] {
            anyhow::ensure!(
                dir.join(script).is_file(),
                "{} is not a buildpack: it has no {script}",
                dir.display()
            );
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "buildpack".into());
        Ok(Buildpack {
            name,
            dir: dir.to_path_buf(),
            builtin,
        })
    }

    /// What a sandbox binds so that the buildpack (and, for renga's own,
    /// the `wit/` beside it) is visible read-only.
    pub fn bind(&self) -> Bind {
        if self.builtin {
            let root = self.dir.parent().unwrap_or(&self.dir);
            Bind::read_only(root, BUILTIN_INSIDE)
        } else {
            Bind::read_only(&self.dir, CUSTOM_INSIDE)
        }
    }

    /// Whether it installs shared tools with `bin/tools` (renga's own do).
    pub fn has_tools(&self) -> bool {
        self.builtin && self.dir.join("bin/tools").is_file()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `bin/detect`: the app's framework name if it applies.
    pub async fn detect(
        &self,
        launcher: &Launcher,
        build_dir: &Path,
        env: &BuildEnv,
    ) -> Result<Option<String>, BuildpackError> {
        let (status, stdout) = self.capture(launcher, "bin/detect", build_dir, env).await?;
        if status.success() {
            let said = String::from_utf8_lossy(&stdout).trim().to_string();
            Ok(Some(if said.is_empty() {
                self.name.clone()
            } else {
                said
            }))
        } else {
            Ok(None)
        }
    }

    /// Runs `bin/tools TOOLS_DIR`, handing each output line to `output`.
    pub async fn tools(
        &self,
        launcher: &Launcher,
        tools_dir: &Path,
        env: &BuildEnv,
        limit: Duration,
        output: &mut (dyn FnMut(String) + Send),
    ) -> Result<(), BuildpackError> {
        let args = [tools_dir.as_os_str().to_owned()];
        self.stream(launcher, "bin/tools", &args, env, limit, output)
            .await
    }

    /// Runs `bin/compile`, handing each output line (stdout and stderr) to
    /// `output` as it comes.
    #[allow(clippy::too_many_arguments)]
    pub async fn compile(
        &self,
        launcher: &Launcher,
        build_dir: &Path,
        cache_dir: &Path,
        env_dir: &Path,
        env: &BuildEnv,
        limit: Duration,
        output: &mut (dyn FnMut(String) + Send),
    ) -> Result<(), BuildpackError> {
        let args = [
            build_dir.as_os_str().to_owned(),
            cache_dir.as_os_str().to_owned(),
            env_dir.as_os_str().to_owned(),
        ];
        self.stream(launcher, "bin/compile", &args, env, limit, output)
            .await
    }

    /// Runs `bin/release` (if the buildpack has one): its default process types.
    pub async fn release(
        &self,
        launcher: &Launcher,
        build_dir: &Path,
        env: &BuildEnv,
    ) -> Result<Procfile, BuildpackError> {
        if !self.dir.join("bin/release").is_file() {
            return Ok(Procfile::default());
        }
        let (status, stdout) = self
            .capture(launcher, "bin/release", build_dir, env)
            .await?;
        if !status.success() {
            return Err(BuildpackError::Failed {
                name: self.name.clone(),
                script: "bin/release",
                status: status.to_string(),
            });
        }
        parse_release(&self.name, &String::from_utf8_lossy(&stdout))
    }

    /// Runs a short script (`bin/detect`, `bin/release`) to completion and
    /// keeps its stdout (at most 1 MiB of it).
    async fn capture(
        &self,
        launcher: &Launcher,
        script: &'static str,
        build_dir: &Path,
        env: &BuildEnv,
    ) -> Result<(std::process::ExitStatus, Vec<u8>), BuildpackError> {
        const MAX_CAPTURED: u64 = 1 << 20;
        let args = [build_dir.as_os_str().to_owned()];
        let mut running = self
            .start(launcher, script, &args, env, Stdio::piped(), Stdio::piped())
            .await?;
        let (mut stdout, mut stderr) = (running.stdout(), running.stderr());
        let run = async {
            use tokio::io::AsyncReadExt as _;
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let read_out = async {
                if let Some(stdout) = stdout.as_mut() {
                    let _ = stdout.take(MAX_CAPTURED).read_to_end(&mut out).await;
                }
            };
            let read_err = async {
                if let Some(stderr) = stderr.as_mut() {
                    let _ = stderr.take(MAX_CAPTURED).read_to_end(&mut err).await;
                }
            };
            tokio::join!(read_out, read_err);
            drop((stdout, stderr));
            (running.wait().await, out, err)
        };
        match tokio::time::timeout(SHORT_SCRIPT_LIMIT, run).await {
            // The sandbox itself failed (a missing folder, say): that is
            // not the buildpack saying no.
            Ok((Ok(Ended::Exited(status)), _, err))
                if !status.success() && err.starts_with(b"bwrap: ") =>
            {
                Err(BuildpackError::Sandbox {
                    name: self.name.clone(),
                    script,
                    reason: String::from_utf8_lossy(&err).trim().to_string(),
                })
            }
            Ok((Ok(Ended::Exited(status)), out, _)) => Ok((status, out)),
            Ok((Ok(Ended::OverLimit(reason)), _, _)) => Err(BuildpackError::OverLimit {
                name: self.name.clone(),
                script,
                reason,
            }),
            Ok((Err(source), _, _)) => Err(BuildpackError::Spawn {
                name: self.name.clone(),
                script,
                source,
            }),
            Err(_) => Err(BuildpackError::TimedOut {
                name: self.name.clone(),
                script,
                limit: SHORT_SCRIPT_LIMIT,
            }),
        }
    }

    /// Starts one of the buildpack's scripts.
    async fn start(
        &self,
        launcher: &Launcher,
        script: &'static str,
        args: &[std::ffi::OsString],
        env: &BuildEnv,
        stdout: Stdio,
        stderr: Stdio,
    ) -> Result<Running, BuildpackError> {
        match launcher {
            Launcher::Direct => {
                let mut command = Command::new(self.dir.join(script));
                command
                    .args(args)
                    .env_clear()
                    .envs(env.vars.iter().map(|(k, v)| (k, v)))
                    .current_dir(&self.dir)
                    .stdin(Stdio::null())
                    .stdout(stdout)
                    .stderr(stderr)
                    .kill_on_drop(true)
                    // Its own process group, so that stopping it stops the
                    // compilers it started too.
                    .process_group(0);
                command
                    .spawn()
                    .map(Running::Direct)
                    .map_err(|source| BuildpackError::Spawn {
                        name: self.name.clone(),
                        script,
                        source,
                    })
            }
            Launcher::Sandboxed(sandbox, jail) => {
                let inside = self.bind().inside;
                let dir = if self.builtin {
                    inside.join(&self.name)
                } else {
                    inside
                };
                let mut jail = jail.clone();
                jail.binds.push(self.bind());
                jail.env = env.vars.clone();
                jail.cwd = dir.clone();
                sandbox
                    .spawn(&jail, &dir.join(script), args, stdout, stderr)
                    .await
                    .map(|j| Running::Jailed(Box::new(j)))
                    .map_err(|e| BuildpackError::Sandbox {
                        name: self.name.clone(),
                        script,
                        reason: format!("{e:#}"),
                    })
            }
        }
    }

    async fn stream(
        &self,
        launcher: &Launcher,
        script: &'static str,
        args: &[std::ffi::OsString],
        env: &BuildEnv,
        limit: Duration,
        output: &mut (dyn FnMut(String) + Send),
    ) -> Result<(), BuildpackError> {
        let mut running = self
            .start(launcher, script, args, env, Stdio::piped(), Stdio::piped())
            .await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(256);
        let mut readers = Vec::new();
        for reader in [running.stdout(), running.stderr()].into_iter().flatten() {
            let tx = tx.clone();
            readers.push(AbortOnDropHandle::new(tokio::spawn(async move {
                let mut reader = BufReader::new(reader);
                while let Some(line) = read_line(&mut reader, MAX_LINE_BYTES).await {
                    if tx.send(line).await.is_err() {
                        break;
                    }
                }
            })));
        }
        drop(tx);

        let deadline = tokio::time::Instant::now() + limit;
        let timed_out = || BuildpackError::TimedOut {
            name: self.name.clone(),
            script,
            limit,
        };
        loop {
            tokio::select! {
                line = rx.recv() => match line {
                    Some(line) => output(line),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => {
                    running.kill().await;
                    return Err(timed_out());
                }
            }
        }
        let ended = match tokio::time::timeout_at(deadline, running.wait()).await {
            Ok(Ok(ended)) => ended,
            Ok(Err(source)) => {
                return Err(BuildpackError::Spawn {
                    name: self.name.clone(),
                    script,
                    source,
                });
            }
            Err(_) => {
                running.kill().await;
                return Err(timed_out());
            }
        };
        match ended {
            Ended::Exited(status) if status.success() => Ok(()),
            Ended::Exited(status) => Err(BuildpackError::Failed {
                name: self.name.clone(),
                script,
                status: status.to_string(),
            }),
            Ended::OverLimit(reason) => Err(BuildpackError::OverLimit {
                name: self.name.clone(),
                script,
                reason,
            }),
        }
    }
}

/// Longer output lines are cut here (and the rest is the next line), so
/// that a script printing without newlines cannot fill the server's memory.
const MAX_LINE_BYTES: usize = crate::logplex::MAX_LINE_BYTES;

/// The next line (without its `\n` or `\r\n`), at most `max` bytes of it;
/// `None` at the end.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Option<String> {
    use tokio::io::AsyncBufReadExt as _;
    let mut line = Vec::new();
    loop {
        let available = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(bytes) => bytes,
        };
        let room = max - line.len();
        let (take, done) = match available.iter().take(room).position(|b| *b == b'\n') {
            Some(at) => (at + 1, true),
            None => (
                available.len().min(room),
                line.len() + available.len() >= max,
            ),
        };
        line.extend_from_slice(&available[..take]);
        reader.consume(take);
        if done {
            break;
        }
    }
    if line.is_empty() {
        return None;
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Some(String::from_utf8_lossy(&line).into_owned())
}

/// Aborts a reader task when the script's run is over, however it ended.
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: killpg only sends a signal; the group is the child's own,
        // created with process_group(0).
        unsafe {
            libc::killpg(pid, libc::SIGKILL);
        }
    }
}

fn parse_release(name: &str, yaml: &str) -> Result<Procfile, BuildpackError> {
    if yaml.trim().is_empty() {
        return Ok(Procfile::default());
    }
    let parsed: ReleaseYaml =
        serde_yaml_ng::from_str(yaml).map_err(|e| BuildpackError::BadRelease {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
    let mut processes = BTreeMap::new();
    for (kind, command) in parsed.default_process_types.unwrap_or_default() {
        let kind: ProcessType =
            kind.parse()
                .map_err(
                    |e: crate::procfile::InvalidProcessType| BuildpackError::BadRelease {
                        name: name.to_string(),
                        reason: e.to_string(),
                    },
                )?;
        processes.insert(kind, ProcessCommand::parse(&command));
    }
    Ok(Procfile::from_map(processes))
}

/// renga's own buildpacks, in [`DETECTION_ORDER`]: from `$RENGA_BUILDPACKS`
/// when set (a checkout's `buildpacks/` folder), else written out from the
/// binary into `cache/buildpacks/<content hash>/` once.
pub fn builtin(cache: &Path) -> anyhow::Result<Vec<Buildpack>> {
    let root = match std::env::var_os("RENGA_BUILDPACKS") {
        Some(dir) => PathBuf::from(dir),
        None => materialize(cache)?,
    };
    DETECTION_ORDER
        .iter()
        .map(|name| Buildpack::at(&root.join(name), true))
        .collect()
}

fn materialize(cache: &Path) -> anyhow::Result<PathBuf> {
    let mut files: Vec<(PathBuf, &include_dir::File<'_>)> = Vec::new();
    let mut buildpacks = Vec::new();
    collect(&BUILTIN, &mut buildpacks);
    files.extend(buildpacks.into_iter().map(|f| (f.path().to_path_buf(), f)));
    for (folder, dir) in [("wit", &WIT), ("sdk", &SDK)] {
        let mut found = Vec::new();
        collect(dir, &mut found);
        files.extend(
            found
                .into_iter()
                .map(|f| (Path::new(folder).join(f.path()), f)),
        );
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut hasher = Sha256::new();
    for (path, file) in &files {
        hasher.update(path.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(file.contents());
        hasher.update([0]);
    }
    let digest = hex::encode(&hasher.finalize()[..8]);
    let root = cache.join("buildpacks").join(&digest);
    if root.is_dir() {
        return Ok(root);
    }
    let staging = cache
        .join("buildpacks")
        .join(format!(".{digest}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    use std::os::unix::fs::PermissionsExt;
    // Explicit modes, whatever the server's umask: sandboxed builds run
    // under other uids and must be able to read (never write) these files.
    let readable = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    };
    for (relative, file) in &files {
        let path = staging.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
            let mut dir = parent;
            while dir.starts_with(&staging) {
                readable(dir, 0o755)?;
                match dir.parent() {
                    Some(up) => dir = up,
                    None => break,
                }
            }
        }
        std::fs::write(&path, file.contents())
            .with_context(|| format!("writing {}", path.display()))?;
        let executable = relative
            .parent()
            .is_some_and(|p| p.file_name().is_some_and(|n| n == "bin"));
        readable(&path, if executable { 0o755 } else { 0o644 })?;
    }
    match std::fs::rename(&staging, &root) {
        Ok(()) => {}
        // Another renga process wrote the same buildpacks first.
        Err(_) if root.is_dir() => {
            let _ = std::fs::remove_dir_all(&staging);
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("installing buildpacks into {}", root.display()));
        }
    }
    Ok(root)
}

fn collect<'a>(dir: &'a Dir<'a>, out: &mut Vec<&'a include_dir::File<'a>>) {
    for file in dir.files() {
        out.push(file);
    }
    for sub in dir.dirs() {
        // A buildpack's helper may have been built in place by hand; its
        // build output is not part of the buildpack.
        if sub.path().file_name().is_some_and(|n| n == "target") {
            continue;
        }
        collect(sub, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_yaml_gives_default_process_types() {
        let procfile = parse_release(
            "rust",
            "---\naddons: []\nconfig_vars: {}\ndefault_process_types:\n  web: hello.wasm\n  worker: node worker.js\n",
        )
        .unwrap();
        assert_eq!(procfile.web().unwrap().to_string(), "hello.wasm");
        assert!(matches!(
            procfile.get(&"worker".parse().unwrap()),
            Some(ProcessCommand::Native(_))
        ));
        assert!(parse_release("x", "").unwrap().is_empty());
        assert!(parse_release("x", "default_process_types: [1, 2").is_err());
    }

    #[tokio::test]
    async fn output_lines_are_cut_at_their_limit() {
        let text = format!("short\r\n{}\nend", "x".repeat(25));
        let mut reader = BufReader::with_capacity(4, text.as_bytes());
        let mut lines = Vec::new();
        while let Some(line) = read_line(&mut reader, 10).await {
            lines.push(line);
        }
        assert_eq!(lines, ["short", "xxxxxxxxxx", "xxxxxxxxxx", "xxxxx", "end"]);
    }

    #[test]
    fn builtin_buildpacks_are_complete() {
        for name in DETECTION_ORDER {
            for script in ["bin/detect", "bin/compile", "bin/release"] {
                let path = format!("{name}/{script}");
                assert!(BUILTIN.get_file(&path).is_some(), "missing {path}");
            }
        }
    }
}
