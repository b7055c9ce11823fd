//! build: one run of a buildpack over one source tree.
//!
//! Copies the source into a clean build folder, asks each buildpack in turn
//! whether it applies, compiles with the one that does (streaming its output),
//! and merges the app's Procfile over the buildpack's default process types.
//! It never loads or runs what it built; the caller decides that.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use crate::buildpack::{BuildEnv, Buildpack, BuildpackError};
use crate::config::ConfigVars;
use crate::procfile::{Procfile, ProcfileError};

/// Source entries that never go into a build: version control, build output
/// and dependency folders that the buildpack recreates, and local secrets.
pub const NEVER_COPIED: &[&str] = &[".git", "target", "node_modules", ".env", ".renga"];

/// Heroku's build time limit.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(15 * 60);

pub struct BuildPlan<'a> {
    /// The app's source tree.
    pub source: &'a Path,
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
        _ => "what its bin/detect looks for",
    }
}

pub async fn run(
    plan: &BuildPlan<'_>,
    output: &mut (dyn FnMut(String) + Send),
) -> Result<Built, BuildError> {
    prepare(plan).map_err(BuildError::Prepare)?;

    let mut chosen = None;
    for buildpack in plan.buildpacks {
        if let Some(framework) = buildpack.detect(plan.build_dir, plan.env).await? {
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

    std::fs::create_dir_all(plan.cache_dir)
        .with_context(|| format!("creating {}", plan.cache_dir.display()))
        .map_err(BuildError::Prepare)?;
    buildpack
        .compile(
            plan.build_dir,
            plan.cache_dir,
            plan.env_dir,
            plan.env,
            plan.time_limit,
            output,
        )
        .await?;

    let defaults = buildpack.release(plan.build_dir, plan.env).await?;
    let procfile_path = plan.build_dir.join("Procfile");
    output("-----> Discovering process types".to_string());
    let procfile = if procfile_path.is_file() {
        let text = std::fs::read_to_string(&procfile_path)
            .with_context(|| format!("reading {}", procfile_path.display()))
            .map_err(BuildError::Prepare)?;
        let procfile = Procfile::parse(&text)?;
        output(format!(
            "       Procfile declares types     -> {}",
            type_list(&procfile)
        ));
        procfile.with_defaults(&defaults)
    } else {
        defaults.clone()
    };
    if !defaults.is_empty() {
        output(format!(
            "       Default types for buildpack -> {}",
            type_list(&defaults)
        ));
    }
    Ok(Built {
        dir: plan.build_dir.to_path_buf(),
        buildpack: buildpack.name().to_string(),
        procfile,
    })
}

fn prepare(plan: &BuildPlan<'_>) -> anyhow::Result<()> {
    for dir in [plan.build_dir, plan.env_dir] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    copy_tree(plan.source, plan.build_dir)?;
    for (key, value) in plan.config.iter() {
        std::fs::write(plan.env_dir.join(key.as_str()), value)?;
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
