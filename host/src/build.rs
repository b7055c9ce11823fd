//! build: one run of a buildpack over one source tree.
//!
//! Copies the source into a clean build folder, asks each buildpack in turn
//! whether it applies, compiles with the one that does (streaming its output),
//! and merges the app's Procfile over the buildpack's default process types.
//! On `renga server` every buildpack script runs in a sandbox (see
//! [`BuildSandbox`]); on `renga dev` they run as the developer. It never
//! loads or runs what it built; the caller decides that.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::buildpack::{BuildEnv, Buildpack, BuildpackError, Launcher};
use crate::config::ConfigVars;
use crate::procfile::{Procfile, ProcfileError};
use crate::sandbox::{Bind, Jail, JailLimits, Sandbox};

/// Where a sandboxed build sees its folders.
pub mod inside {
    pub const BUILD_DIR: &str = "/app";
    pub const CACHE_DIR: &str = "/cache";
    pub const ENV_DIR: &str = "/env";
    pub const TOOLS_DIR: &str = "/renga/tools";
    /// The build's home folder, kept with its cache (package caches live
    /// there: cargo's registry, npm's cache).
    pub const HOME: &str = "/cache/.home";
    pub const TOOLS_HOME: &str = "/renga/tools/.home";
}

/// How a build is sandboxed on `renga server`: every buildpack script runs
/// in a jail that sees the build folder, the app's own cache, its config
/// (read-only), the buildpack and the shared tools (read-only), under the
/// app's own uid and within its limits. `bin/tools` runs first in a jail of
/// its own that sees only the tools folder, writable, and no app code.
#[derive(Clone)]
pub struct BuildSandbox {
    pub sandbox: Arc<Sandbox>,
    /// The app's build uid.
    pub uid: u32,
    /// The uid that owns the shared tools folder.
    pub tools_uid: u32,
    pub limits: JailLimits,
}

/// Source entries that never go into a build: version control, build output
/// and dependency folders that the buildpack recreates, and local secrets.
pub const NEVER_COPIED: &[&str] = &[".git", "target", "node_modules", ".env", ".renga"];

/// Heroku's build time limit.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(15 * 60);

pub struct BuildPlan<'a> {
    /// The app's source tree.
    pub source: &'a Path,
    /// Where buildpacks keep the tools they install, shared by every build.
    pub tools_dir: &'a Path,
    /// Emptied, then filled with a copy of the source; the buildpack compiles here.
    pub build_dir: &'a Path,
    /// Kept between builds of the same app.
    pub cache_dir: &'a Path,
    /// Emptied, then given one file per config var (Heroku's ENV_DIR).
    pub env_dir: &'a Path,
    pub buildpacks: &'a [Buildpack],
    pub env: &'a BuildEnv,
    pub config: &'a ConfigVars,
    pub time_limit: Duration,
    /// `None`: the scripts run as renga's own children (`renga dev`).
    pub sandbox: Option<BuildSandbox>,
}

/// A finished build.
#[derive(Debug)]
pub struct Built {
    pub dir: PathBuf,
    pub buildpack: String,
    pub procfile: Procfile,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("no buildpack recognised this app:\n{expectations}")]
    Undetected { expectations: String },
    #[error(transparent)]
    Buildpack(#[from] BuildpackError),
    #[error(transparent)]
    Procfile(#[from] ProcfileError),
    #[error("preparing the build folder: {0:#}")]
    Prepare(anyhow::Error),
    #[error("{0}")]
    Unreadable(String),
}

/// What each of renga's buildpacks looks for, for the "nothing detected"
/// message.
fn expectation(buildpack: &str) -> &'static str {
    match buildpack {
        "rust" => "a Cargo.toml (a Rust crate building a wasi:http component)",
        "python" => "a requirements.txt or pyproject.toml, with the handler in app.py",
        "javascript" => "a package.json, with the handler in its `main` file (default index.js)",
        "c" => "C sources (*.c) at the top of the app, with the handler in one of them",
        "wasm" => "a Procfile whose web: line names a .wasm component in the app",
        "native-python" => {
            "a requirements.txt or pyproject.toml with a Procfile of native commands (`web: gunicorn app:app`)"
        }
        "native-nodejs" => {
            "a package.json with a Procfile of native commands (`web: node server.js`)"
        }
        "native" => "a Procfile of native commands (`web: bin/server`)",
        _ => "what its bin/detect looks for",
    }
}

/// How the scripts of one build see its folders, and how they are started.
struct Steps {
    build_dir: PathBuf,
    cache_dir: PathBuf,
    env_dir: PathBuf,
    tools_dir: PathBuf,
    env: BuildEnv,
    tools_env: BuildEnv,
    /// For `bin/detect` and `bin/release`: no network.
    look: Launcher,
    /// For `bin/compile`: the network, never the host's loopback.
    compile: Launcher,
    /// For `bin/tools`: the tools folder only, writable.
    tools: Launcher,
}

impl Steps {
    fn new(plan: &BuildPlan<'_>) -> Steps {
        let Some(sandboxed) = &plan.sandbox else {
            let mut env = plan.env.clone();
            env.set("RENGA_TOOLS", plan.tools_dir.display().to_string());
            return Steps {
                build_dir: plan.build_dir.to_path_buf(),
                cache_dir: plan.cache_dir.to_path_buf(),
                env_dir: plan.env_dir.to_path_buf(),
                tools_dir: plan.tools_dir.to_path_buf(),
                tools_env: env.clone(),
                env,
                look: Launcher::Direct,
                compile: Launcher::Direct,
                tools: Launcher::Direct,
            };
        };
        let mut env = plan.env.clone();
        // Inside, the home folder is the app's own (package caches persist
        // with the build cache), cargo and rustup are found through it and
        // the read-only toolchains, and nothing points at host folders the
        // jail cannot see.
        env.remove("CARGO_HOME");
        if let Some(rustup) = rustup_home(plan.env) {
            env.set("RUSTUP_HOME", rustup.display().to_string());
        }
        env.set("TMPDIR", "/tmp");
        env.set("RENGA_TOOLS", inside::TOOLS_DIR);
        let mut tools_env = env.clone();
        env.set("HOME", inside::HOME);
        tools_env.set("HOME", inside::TOOLS_HOME);
        let jail = |uid: u32, binds: Vec<Bind>, network: bool| {
            Launcher::Sandboxed(
                sandboxed.sandbox.clone(),
                Jail {
                    uid,
                    binds,
                    env: Vec::new(),
                    cwd: PathBuf::from("/"),
                    network,
                    limits: sandboxed.limits,
                },
            )
        };
        let app_binds = vec![
            Bind::writable(plan.build_dir, inside::BUILD_DIR),
            Bind::writable(plan.cache_dir, inside::CACHE_DIR),
            Bind::read_only(plan.env_dir, inside::ENV_DIR),
            Bind::read_only(plan.tools_dir, inside::TOOLS_DIR),
        ];
        Steps {
            build_dir: inside::BUILD_DIR.into(),
            cache_dir: inside::CACHE_DIR.into(),
            env_dir: inside::ENV_DIR.into(),
            tools_dir: inside::TOOLS_DIR.into(),
            env,
            tools_env,
            look: jail(sandboxed.uid, app_binds.clone(), false),
            compile: jail(sandboxed.uid, app_binds, true),
            tools: jail(
                sandboxed.tools_uid,
                vec![Bind::writable(plan.tools_dir, inside::TOOLS_DIR)],
                true,
            ),
        }
    }
}

/// Where rustup keeps its toolchains: `$RUSTUP_HOME`, else `~/.rustup`.
fn rustup_home(env: &BuildEnv) -> Option<PathBuf> {
    if let Some(home) = env.get("RUSTUP_HOME") {
        return Some(PathBuf::from(home));
    }
    let home = PathBuf::from(env.get("HOME")?).join(".rustup");
    home.is_dir().then_some(home)
}

pub async fn run(
    plan: &BuildPlan<'_>,
    output: &mut (dyn FnMut(String) + Send),
) -> Result<Built, BuildError> {
    {
        let source = plan.source.to_path_buf();
        let build_dir = plan.build_dir.to_path_buf();
        let cache_dir = plan.cache_dir.to_path_buf();
        let env_dir = plan.env_dir.to_path_buf();
        let config = plan.config.clone();
        let owner = plan.sandbox.as_ref().map(|s| (s.sandbox.clone(), s.uid));
        tokio::task::spawn_blocking(move || {
            prepare(&source, &build_dir, &cache_dir, &env_dir, &config)?;
            if let Some((sandbox, uid)) = owner {
                for dir in [&build_dir, &env_dir] {
                    sandbox
                        .give(dir, uid)
                        .with_context(|| format!("giving {} to the build", dir.display()))?;
                }
                give_if_needed(&sandbox, &cache_dir, uid)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| BuildError::Prepare(e.into()))?
        .map_err(BuildError::Prepare)?;
    }
    let steps = Steps::new(plan);

    let mut chosen = None;
    for buildpack in plan.buildpacks {
        if let Some(framework) = buildpack
            .detect(&steps.look, &steps.build_dir, &steps.env)
            .await?
        {
            chosen = Some((buildpack, framework));
            break;
        }
    }
    let Some((buildpack, framework)) = chosen else {
        let expectations = plan
            .buildpacks
            .iter()
            .map(|b| format!("  {}: {}", b.name(), expectation(b.name())))
            .collect::<Vec<_>>()
            .join("\n");
        return Err(BuildError::Undetected { expectations });
    };
    output(format!("-----> {framework} app detected"));

    if buildpack.has_tools() {
        buildpack
            .tools(
                &steps.tools,
                &steps.tools_dir,
                &steps.tools_env,
                plan.time_limit,
                output,
            )
            .await?;
    }
    buildpack
        .compile(
            &steps.compile,
            &steps.build_dir,
            &steps.cache_dir,
            &steps.env_dir,
            &steps.env,
            plan.time_limit,
            output,
        )
        .await?;

    let defaults = buildpack
        .release(&steps.look, &steps.build_dir, &steps.env)
        .await?;
    // What the build left is read by the platform: keep only files, folders
    // and links, and read the Procfile only if it is a regular file.
    let build_dir = plan.build_dir.to_path_buf();
    let procfile_text = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<String>> {
        sanitize_output(&build_dir)?;
        read_regular_file(&build_dir.join("Procfile"), MAX_PROCFILE_BYTES)
    })
    .await
    .map_err(|e| BuildError::Prepare(e.into()))?
    .map_err(|e| BuildError::Unreadable(format!("{e:#}")))?;
    output("-----> Discovering process types".to_string());
    let procfile = match procfile_text {
        Some(text) => {
            let procfile = Procfile::parse(&text)?;
            output(format!(
                "       Procfile declares types     -> {}",
                type_list(&procfile)
            ));
            procfile.with_defaults(&defaults)
        }
        None => defaults.clone(),
    };
    if !defaults.is_empty() {
        output(format!(
            "       Default types for buildpack -> {}",
            type_list(&defaults)
        ));
    }
    // Which backend runs each process type: the one decision of
    // `backend::kind`, said where the developer sees it.
    for (kind, command) in procfile.iter() {
        let runs = match crate::backend::kind(command) {
            crate::backend::Kind::Wasm { path, .. } => format!("component {path}"),
            crate::backend::Kind::Native { .. } => "native process, sandboxed".to_string(),
        };
        output(format!("       {:<27} -> {runs}", kind.to_string()));
    }
    Ok(Built {
        dir: plan.build_dir.to_path_buf(),
        buildpack: buildpack.name().to_string(),
        procfile,
    })
}

/// A Procfile larger than this is not a Procfile.
const MAX_PROCFILE_BYTES: u64 = 64 << 10;

/// Reads a file the build made, refusing anything but a regular file (a
/// link could point the platform at its own files, a pipe would never end).
/// `None` when there is no such file.
pub fn read_regular_file(path: &Path, max: u64) -> anyhow::Result<Option<String>> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    anyhow::ensure!(
        meta.file_type().is_file(),
        "{name} must be a regular file, not a link or a special file"
    );
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("reading {name}"))?;
    let mut text = String::new();
    file.take(max + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("reading {name} (it must be UTF-8 text)"))?;
    anyhow::ensure!(
        text.len() as u64 <= max,
        "{name} is larger than {}",
        crate::units::ByteSize(max)
    );
    Ok(Some(text))
}

/// Makes a folder a build wrote safe for the platform to pack, without
/// following links: removes what is neither a file, a folder nor a link
/// (pipes, sockets, devices), and every `.slugignore` that is not a regular
/// file (packing reads them); one larger than 64 KiB is an error. Blocking.
pub fn sanitize_output(dir: &Path) -> anyhow::Result<()> {
    const MAX_SLUGIGNORE: u64 = 64 << 10;
    let root = dir;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if entry.file_name() == ".slugignore" && !kind.is_dir() {
                if !kind.is_file() {
                    std::fs::remove_file(entry.path())?;
                    continue;
                }
                anyhow::ensure!(
                    entry.metadata()?.len() <= MAX_SLUGIGNORE,
                    "{} is larger than {}",
                    entry
                        .path()
                        .strip_prefix(root)
                        .unwrap_or(&entry.path())
                        .display(),
                    crate::units::ByteSize(MAX_SLUGIGNORE)
                );
            }
            if kind.is_dir() {
                stack.push(entry.path());
            } else if !kind.is_file() && !kind.is_symlink() {
                std::fs::remove_file(entry.path())?;
            }
        }
    }
    Ok(())
}

/// Gives a folder kept between builds to the build's uid the first time.
fn give_if_needed(sandbox: &Sandbox, dir: &Path, uid: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if sandbox.is_root() && std::fs::metadata(dir)?.uid() != uid {
        sandbox
            .give(dir, uid)
            .with_context(|| format!("giving {} to the build", dir.display()))?;
    }
    Ok(())
}

fn prepare(
    source: &Path,
    build_dir: &Path,
    cache_dir: &Path,
    env_dir: &Path,
    config: &ConfigVars,
) -> anyhow::Result<()> {
    for dir in [build_dir, env_dir] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("creating {}", cache_dir.display()))?;
    copy_tree(source, build_dir)?;
    for (key, value) in config.iter() {
        std::fs::write(env_dir.join(key.as_str()), value)?;
    }
    Ok(())
}

fn type_list(procfile: &Procfile) -> String {
    let types: Vec<&str> = procfile.iter().map(|(kind, _)| kind.as_str()).collect();
    if types.is_empty() {
        "(none)".to_string()
    } else {
        types.join(", ")
    }
}

/// Copies a source tree, skipping [`NEVER_COPIED`] at any depth. Symlinks are
/// copied as links, never followed, so a build cannot be pointed outside its
/// source.
pub fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if NEVER_COPIED.iter().any(|skip| name == *skip) {
            continue;
        }
        let source = entry.path();
        let target = to.join(&name);
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_tree(&source, &target)?;
        } else if kind.is_symlink() {
            let link = std::fs::read_link(&source)?;
            std::os::unix::fs::symlink(link, &target)?;
        } else if kind.is_file() {
            std::fs::copy(&source, &target)
                .with_context(|| format!("copying {}", source.display()))?;
        }
    }
    Ok(())
}
