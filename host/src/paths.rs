//! Where renga keeps things on disk.
//!
//! Everything lives under one data folder: `$RENGA_DATA`, else
//! `$XDG_DATA_HOME/renga`, else `~/.local/share/renga`. Caches (precompiled
//! artefacts, build caches, buildpack toolchains) go in its `cache/` folder,
//! or in `$RENGA_CACHE` when that is set, so that several servers (for
//! example a test run) can share one. Nothing is written anywhere else.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};

#[derive(Clone, Debug)]
pub struct Paths {
    pub data: PathBuf,
    pub cache: PathBuf,
}

impl Paths {
    pub fn resolve(data: Option<PathBuf>) -> anyhow::Result<Paths> {
        let data = match data.or_else(|| std::env::var_os("RENGA_DATA").map(PathBuf::from)) {
            Some(dir) => dir,
            None => default_data_dir()?,
        };
        let cache = std::env::var_os("RENGA_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| data.join("cache"));
        for dir in [&data, &cache] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(Paths {
            data: absolute(&data)?,
            cache: absolute(&cache)?,
        })
    }

    /// Makes the data folder (and a separate cache folder) readable by
    /// renga's user only, and the files already in its store private too
    /// (a data folder made by an older renga was world-readable).
    pub fn make_private(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        for dir in [&self.data, &self.cache] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("making {} private", dir.display()))?;
        }
        for private in ["db", "admin.token"] {
            let path = self.data.join(private);
            if path.is_dir() {
                for entry in std::fs::read_dir(&path)?.flatten() {
                    let mode = if entry.file_type()?.is_dir() {
                        0o700
                    } else {
                        0o600
                    };
                    std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode))?;
                }
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
            } else if path.is_file() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
        }
        Ok(())
    }

    /// Add-ons' data: one folder per add-on, named by its id.
    pub fn addons(&self) -> PathBuf {
        self.data.join("addons")
    }

    /// Precompiled machine code for components.
    pub fn artefacts(&self) -> PathBuf {
        self.cache.join("precompiled")
    }

    /// Toolchains that buildpacks install, shared by every build.
    pub fn tools(&self) -> PathBuf {
        self.cache.join("tools")
    }

    /// The folders `renga dev` uses for one app source folder.
    pub fn dev(&self, source: &Path) -> DevDirs {
        let digest = hex::encode(&Sha256::digest(source.as_os_str().as_encoded_bytes())[..6]);
        let name = source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "app".into());
        let root = self.cache.join("dev").join(format!("{name}-{digest}"));
        DevDirs {
            build: root.join("build"),
            cache: root.join("cache"),
            env: root.join("env"),
            lock: root.join("lock"),
            last_build: root.join("last-build.json"),
        }
    }
}

pub struct DevDirs {
    pub build: PathBuf,
    pub cache: PathBuf,
    pub env: PathBuf,
    pub lock: PathBuf,
    /// What the last successful build was made from, and what it declared.
    pub last_build: PathBuf,
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME") {
        return Ok(PathBuf::from(xdg).join("renga"));
    }
    let home =
        std::env::var_os("HOME").context("neither RENGA_DATA nor HOME is set: pass --data DIR")?;
    Ok(PathBuf::from(home).join(".local/share/renga"))
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}
