//! build_cache: each app's build cache, kept on the host that built it and,
//! on a cluster, shared through the cluster's object store so that a build
//! through another host starts warm.
//!
//! An app's cache is the folder `CACHE/builds/APP_ID`, owned by the app's
//! build uid and written only by its builds (package caches, compiler
//! output). After a successful build on a cluster it is packed (files,
//! folders and links only, at most `max_bytes` gzipped) and stored as the
//! object `APP_ID` of `renga-build-caches`, replacing the one before. Before
//! a build, a host whose copy is not the cluster's newest fetches it and
//! unpacks it with the same checks as an uploaded source, within the build's
//! own disk and file limits, then gives it to the build uid. Which stored
//! cache a host's copy is sits beside it, in `APP_ID.shared`, where builds
//! cannot write. A cache the cluster cannot give (too large, unreadable,
//! refused) never fails a build: the build runs on the host's own copy.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::archive::{self, Limits};
use crate::sandbox::Sandbox;
use crate::store::Blobs;

/// The default bound on a packed cache a cluster shares.
pub const DEFAULT_MAX_BYTES: u64 = 500 << 20;

/// Every app's build cache on this host, and the cluster's copies.
#[derive(Clone)]
pub struct BuildCaches {
    dir: PathBuf,
    shared: Option<Blobs>,
    max_bytes: u64,
}

/// What happened to an app's cache before a build.
#[derive(Debug, PartialEq, Eq)]
pub enum Restored {
    /// The host's own copy is the newest there is (or there is no cluster).
    Kept,
    /// The cluster's newer cache replaced the host's copy: its packed size.
    Fetched(u64),
}

/// What happened to an app's cache after a build.
#[derive(Debug, PartialEq, Eq)]
pub enum Shared {
    /// Not a cluster: the cache stays on this host.
    Local,
    /// Stored in the cluster: its packed size.
    Stored(u64),
    /// Packed, it passes the bound: it stays on this host only.
    TooLarge(u64),
}

impl BuildCaches {
    /// `dir` is `CACHE/builds`; `shared` the cluster's object store, if any.
    pub fn new(dir: PathBuf, shared: Option<Blobs>, max_bytes: u64) -> BuildCaches {
        BuildCaches {
            dir,
            shared,
            max_bytes,
        }
    }

    /// The app's cache folder on this host.
    pub fn dir(&self, app_id: &str) -> PathBuf {
        self.dir.join(app_id)
    }

    fn beside(&self, app_id: &str, suffix: &str) -> PathBuf {
        self.dir.join(format!("{app_id}.{suffix}"))
    }

    /// Brings the cluster's cache of the app in when it is newer than this
    /// host's copy, unpacked within `limits` and given to `owner` (the
    /// sandbox and the build uid). On any failure the host's copy stays as
    /// it was. Blocking.
    pub fn restore(
        &self,
        app_id: &str,
        limits: Limits,
        owner: Option<(&Sandbox, u32)>,
    ) -> anyhow::Result<Restored> {
        let Some(shared) = &self.shared else {
            return Ok(Restored::Kept);
        };
        let Some(stamp) = shared.stamp(app_id)? else {
            return Ok(Restored::Kept);
        };
        let stamp_file = self.beside(app_id, "shared");
        if std::fs::read_to_string(&stamp_file).is_ok_and(|held| held == stamp) {
            return Ok(Restored::Kept);
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let download = self.beside(app_id, "download.tgz");
        let incoming = self.beside(app_id, "incoming");
        let result = (|| -> anyhow::Result<Restored> {
            remove_if_there(&incoming)?;
            if !shared.get_file(app_id, &download)? {
                return Ok(Restored::Kept);
            }
            let size = std::fs::metadata(&download)?.len();
            archive::unpack(archive::open(&download)?, &incoming, limits)
                .map_err(|e| anyhow::anyhow!("the cluster's copy was refused: {e}"))?;
            if let Some((sandbox, uid)) = owner {
                sandbox
                    .give(&incoming, uid)
                    .with_context(|| format!("giving {} to the build", incoming.display()))?;
            }
            let dir = self.dir(app_id);
            remove_if_there(&dir)?;
            std::fs::rename(&incoming, &dir)
                .with_context(|| format!("moving the fetched cache to {}", dir.display()))?;
            std::fs::write(&stamp_file, &stamp)
                .with_context(|| format!("writing {}", stamp_file.display()))?;
            Ok(Restored::Fetched(size))
        })();
        let _ = std::fs::remove_file(&download);
        if result.is_err() {
            let _ = remove_if_there(&incoming);
        }
        result
    }

    /// Stores the app's cache in the cluster, in place of the one before,
    /// unless its packed size passes the bound. Blocking.
    pub fn share(&self, app_id: &str) -> anyhow::Result<Shared> {
        let Some(shared) = &self.shared else {
            return Ok(Shared::Local);
        };
        let dir = self.dir(app_id);
        if !dir.is_dir() {
            return Ok(Shared::Local);
        }
        let packed = self.beside(app_id, "upload.tgz");
        let size = match archive::pack_folder(&dir, &packed, self.max_bytes, None) {
            Ok((_, size)) => size,
            Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
                return Ok(Shared::TooLarge(self.max_bytes));
            }
            Err(e) => return Err(anyhow::Error::from(e).context("packing the build cache")),
        };
        let stored = shared.put_file(app_id, &packed);
        let _ = std::fs::remove_file(&packed);
        let stamp = stored?;
        let stamp_file = self.beside(app_id, "shared");
        std::fs::write(&stamp_file, &stamp)
            .with_context(|| format!("writing {}", stamp_file.display()))?;
        Ok(Shared::Stored(size))
    }

    /// Forgets the app's cache: this host's copy and the cluster's.
    /// Blocking.
    pub fn remove(&self, app_id: &str) -> anyhow::Result<()> {
        for suffix in ["incoming", "download.tgz", "upload.tgz", "shared"] {
            remove_if_there(&self.beside(app_id, suffix))?;
        }
        remove_if_there(&self.dir(app_id))?;
        if let Some(shared) = &self.shared {
            shared.remove(app_id)?;
        }
        Ok(())
    }
}

/// Removes a file or a folder (also one a build left unreadable), if there.
fn remove_if_there(path: &Path) -> anyhow::Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => crate::sandbox::remove_tree(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    result.with_context(|| format!("removing {}", path.display()))
}
