//! buildpack: Heroku's classic buildpack API.
//!
//! A buildpack is a folder with `bin/detect BUILD_DIR`, `bin/compile BUILD_DIR
//! CACHE_DIR ENV_DIR` and `bin/release BUILD_DIR`. This module runs those
//! scripts with a clean environment, streams their output line by line, and
//! parses what `bin/release` prints. renga's own buildpacks ship inside the
//! binary and are written out to the cache on first use. It never decides
//! what a build's output becomes; the build module does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use include_dir::{Dir, include_dir};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::procfile::{Command as ProcessCommand, ProcessType, Procfile};

/// renga's own buildpacks, in detection order.
static BUILTIN: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../buildpacks");

/// The WIT of renga's app worlds, written beside the buildpacks (as `wit/`)
/// for the ones that generate bindings from it.
static WIT: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../wit");

/// The order in which renga's own buildpacks are asked to detect an app:
/// language buildpacks first, then prebuilt components.
pub const DETECTION_ORDER: &[&str] = &["rust", "python", "javascript", "c", "wasm"];

/// `bin/detect` and `bin/release` only look at files; they get a minute.
const SHORT_SCRIPT_LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct Buildpack {
    name: String,
    dir: PathBuf,
}

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
}

/// The environment of a buildpack's processes: an allowlist, so that the
/// platform's own secrets never reach a build.
#[derive(Clone, Debug, Default)]
pub struct BuildEnv {
    vars: Vec<(String, String)>,
}

impl BuildEnv {
    /// What a build needs from the host: where tools are, and nothing else.
    /// `tools` is the shared folder where buildpacks install toolchains.
    pub fn from_host(tools: &Path) -> BuildEnv {
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
        vars.push(("RENGA_TOOLS".into(), tools.display().to_string()));
        vars.push(("CARGO_TERM_COLOR".into(), "never".into()));
        BuildEnv { vars }
    }

    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.to_string(), value.into()));
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
        })
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
        build_dir: &Path,
        env: &BuildEnv,
    ) -> Result<Option<String>, BuildpackError> {
        let output = self.capture("bin/detect", build_dir, env).await?;
        if output.status.success() {
            let said = String::from_utf8_lossy(&output.stdout).trim().to_string();
            Ok(Some(if said.is_empty() {
                self.name.clone()
            } else {
                said
            }))
        } else {
            Ok(None)
        }
    }

    /// Runs `bin/compile`, handing each output line (stdout and stderr) to
    /// `output` as it comes.
    pub async fn compile(
        &self,
        build_dir: &Path,
        cache_dir: &Path,
        env_dir: &Path,
        env: &BuildEnv,
        limit: Duration,
        output: &mut (dyn FnMut(String) + Send),
    ) -> Result<(), BuildpackError> {
        let mut command = self.command("bin/compile", env);
        command.arg(build_dir).arg(cache_dir).arg(env_dir);
        self.stream("bin/compile", command, limit, output).await
    }

    /// Runs `bin/release` (if the buildpack has one): its default process types.
    pub async fn release(
        &self,
        build_dir: &Path,
        env: &BuildEnv,
    ) -> Result<Procfile, BuildpackError> {
        if !self.dir.join("bin/release").is_file() {
            return Ok(Procfile::default());
        }
        let output = self.capture("bin/release", build_dir, env).await?;
        if !output.status.success() {
            return Err(BuildpackError::Failed {
                name: self.name.clone(),
                script: "bin/release",
                status: output.status.to_string(),
            });
        }
        parse_release(&self.name, &String::from_utf8_lossy(&output.stdout))
    }

    /// Runs a short script (`bin/detect`, `bin/release`) to completion and
    /// keeps its output.
    async fn capture(
        &self,
        script: &'static str,
        build_dir: &Path,
        env: &BuildEnv,
    ) -> Result<std::process::Output, BuildpackError> {
        let mut command = self.command(script, env);
        command.arg(build_dir).stdin(Stdio::null());
        match tokio::time::timeout(SHORT_SCRIPT_LIMIT, command.output()).await {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(source)) => Err(BuildpackError::Spawn {
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

    fn command(&self, script: &str, env: &BuildEnv) -> Command {
        let mut command = Command::new(self.dir.join(script));
        command
            .env_clear()
            .envs(env.vars.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.dir)
            .kill_on_drop(true);
        command
    }

    async fn stream(
        &self,
        script: &'static str,
        mut command: Command,
        limit: Duration,
        output: &mut (dyn FnMut(String) + Send),
    ) -> Result<(), BuildpackError> {
        // Its own process group, so that a timeout stops the compilers it
        // started too.
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = command.spawn().map_err(|source| BuildpackError::Spawn {
            name: self.name.clone(),
            script,
            source,
        })?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        for reader in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(reader).split(b'\n');
                while let Ok(Some(line)) = lines.next_segment().await {
                    let mut line = String::from_utf8_lossy(&line).into_owned();
                    if line.ends_with('\r') {
                        line.pop();
                    }
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);

        let pid = child.id();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            tokio::select! {
                line = rx.recv() => match line {
                    Some(line) => output(line),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => {
                    kill_group(pid);
                    let _ = child.wait().await;
                    return Err(BuildpackError::TimedOut { name: self.name.clone(), script, limit });
                }
            }
        }
        let status = match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(source)) => {
                return Err(BuildpackError::Spawn {
                    name: self.name.clone(),
                    script,
                    source,
                });
            }
            Err(_) => {
                kill_group(pid);
                let _ = child.wait().await;
                return Err(BuildpackError::TimedOut {
                    name: self.name.clone(),
                    script,
                    limit,
                });
            }
        };
        if status.success() {
            Ok(())
        } else {
            Err(BuildpackError::Failed {
                name: self.name.clone(),
                script,
                status: status.to_string(),
            })
        }
    }
}

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
        .map(|name| Buildpack::from_dir(&root.join(name)))
        .collect()
}

fn materialize(cache: &Path) -> anyhow::Result<PathBuf> {
    let mut files: Vec<(PathBuf, &include_dir::File<'_>)> = Vec::new();
    let mut buildpacks = Vec::new();
    collect(&BUILTIN, &mut buildpacks);
    files.extend(buildpacks.into_iter().map(|f| (f.path().to_path_buf(), f)));
    let mut wit = Vec::new();
    collect(&WIT, &mut wit);
    files.extend(
        wit.into_iter()
            .map(|f| (Path::new("wit").join(f.path()), f)),
    );
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
    for (relative, file) in &files {
        let path = staging.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, file.contents())
            .with_context(|| format!("writing {}", path.display()))?;
        let executable = relative
            .parent()
            .is_some_and(|p| p.file_name().is_some_and(|n| n == "bin"));
        if executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
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
