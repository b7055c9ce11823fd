//! Cranelift's per-function compilation cache, kept on disk.
//!
//! A component is compiled once per digest (see [`super::artefact`]), but a
//! push that changes one line of a Python or JavaScript app makes a new
//! digest for an 18 MB component whose interpreter did not change:
//! componentize-py and componentize-js snapshot the same interpreter with a
//! different app inside. Cranelift can look each function up by a hash of
//! its IR and the target before compiling it (wasmtime's
//! `incremental-cache`); this is where those compiled functions are kept, so
//! that such a push compiles only the functions that changed.
//!
//! One file per function, named by its key, under a folder only renga
//! writes; a file is renamed into place once complete. The folder is bounded:
//! past [`MAX_BYTES`] nothing more is added (a cache, so compiling goes on
//! unaffected). Cranelift checks its own version marker in every entry and
//! ignores one it cannot read.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use wasmtime::CacheStore;

/// The most the folder may hold. An interpreter's functions are about
/// 60 MB (CPython in componentize-py; StarlingMonkey is smaller), so this
/// keeps several versions of each.
pub const MAX_BYTES: u64 = 1 << 30;

#[derive(Debug)]
pub struct FunctionCache {
    dir: PathBuf,
    bytes: AtomicU64,
    full: AtomicBool,
}

impl FunctionCache {
    /// Opens (creating) the folder. What it already holds is counted on a
    /// thread of its own, so that a server's start never waits for it.
    pub fn open(dir: &Path) -> std::io::Result<Arc<FunctionCache>> {
        std::fs::create_dir_all(dir)?;
        let cache = Arc::new(FunctionCache {
            dir: dir.to_path_buf(),
            bytes: AtomicU64::new(0),
            full: AtomicBool::new(false),
        });
        let counting = cache.clone();
        std::thread::Builder::new()
            .name("renga-function-cache".into())
            .spawn(move || {
                let held = held_bytes(&counting.dir);
                counting.bytes.fetch_add(held, Ordering::Relaxed);
            })?;
        Ok(cache)
    }

    fn path(&self, key: &[u8]) -> Option<PathBuf> {
        // Cranelift's keys are sha256 hashes; anything else is not ours.
        if key.len() != 32 {
            return None;
        }
        let name = hex::encode(key);
        Some(self.dir.join(&name[..2]).join(&name[2..]))
    }
}

/// The bytes of every entry under `dir`.
fn held_bytes(dir: &Path) -> u64 {
    let Ok(shards) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut bytes = 0;
    for shard in shards.flatten() {
        let Ok(files) = std::fs::read_dir(shard.path()) else {
            continue;
        };
        for file in files.flatten() {
            bytes += file.metadata().map_or(0, |m| m.len());
        }
    }
    bytes
}

impl CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        std::fs::read(self.path(key)?).ok().map(Cow::Owned)
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let Some(path) = self.path(key) else {
            return false;
        };
        let size = value.len() as u64;
        if self.bytes.fetch_add(size, Ordering::Relaxed) + size > MAX_BYTES {
            self.bytes.fetch_sub(size, Ordering::Relaxed);
            if !self.full.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    folder = %self.dir.display(),
                    "the compiled-function cache is full ({MAX_BYTES} bytes); new functions are compiled but not kept"
                );
            }
            return false;
        }
        let stored = (|| {
            std::fs::create_dir_all(path.parent()?).ok()?;
            let tmp = path.with_extension(format!(
                "tmp-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::write(&tmp, &value).ok()?;
            std::fs::rename(&tmp, &path)
                .map_err(|_| std::fs::remove_file(&tmp))
                .ok()
        })();
        if stored.is_none() {
            self.bytes.fetch_sub(size, Ordering::Relaxed);
        }
        stored.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_it_is_given_and_refuses_what_is_not_a_key() {
        let dir = std::env::temp_dir().join(format!(
            "renga-functions-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let cache = FunctionCache::open(&dir).unwrap();
        let key = [7u8; 32];
        assert!(cache.get(&key).is_none());
        assert!(cache.insert(&key, b"code".to_vec()));
        assert_eq!(cache.get(&key).as_deref(), Some(&b"code"[..]));
        assert!(!cache.insert(b"../../etc/passwd", b"x".to_vec()));
        // What a later open counts: the one entry.
        assert_eq!(held_bytes(&dir), 4);
        let _ = std::fs::remove_dir_all(dir);
    }
}
