//! Precompiled machine code for components, kept on disk.
//!
//! An artefact is keyed by the component's sha256 inside a folder named after
//! the engine's compatibility hash, so a different wasmtime or different
//! engine settings never even look at an old artefact. It is a cache: an
//! unreadable or incompatible file is deleted and rebuilt, never trusted.

use std::collections::HashMap;
use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a loaded component's machine code came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// Mapped from an artefact compiled earlier.
    Cached,
    /// Compiled now, and written to the cache for next time.
    Compiled,
}

pub(super) struct ArtefactCache {
    dir: PathBuf,
    /// One compile per digest at a time: a second load of the same component
    /// waits for the first and then maps its artefact.
    compiling: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl ArtefactCache {
    pub(super) fn open(root: &Path, engine: &Engine) -> anyhow::Result<ArtefactCache> {
        let mut hasher = Sha256Hasher::default();
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        let engine_id = hex::encode(&hasher.0.finalize()[..8]);
        let dir = root.join(engine_id);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the artefact cache {}", dir.display()))?;
        Ok(ArtefactCache {
            dir,
            compiling: Mutex::default(),
        })
    }

    /// Maps the artefact of the component whose sha256 is `digest`, if the
    /// cache holds a usable one: no reading or hashing of the component.
    pub(super) fn load_cached(&self, engine: &Engine, digest: &str) -> Option<Component> {
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let path = self.dir.join(format!("{digest}.cwasm"));
        // SAFETY: as in `load`.
        unsafe { Component::deserialize_file(engine, &path) }.ok()
    }

    /// The component's machine code and the sha256 it is filed under.
    pub(super) fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> anyhow::Result<(Component, Provenance, String)> {
        let digest = hex::encode(Sha256::digest(wasm));
        let path = self.dir.join(format!("{digest}.cwasm"));
        let flight = self
            .compiling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(digest.clone())
            .or_default()
            .clone();
        let result = {
            let _only_one = flight.lock().unwrap_or_else(|e| e.into_inner());
            self.load_locked(engine, wasm, &path, digest)
        };
        drop(flight);
        let mut compiling = self.compiling.lock().unwrap_or_else(|e| e.into_inner());
        compiling.retain(|_, lock| Arc::strong_count(lock) > 1);
        drop(compiling);
        result
    }

    fn load_locked(
        &self,
        engine: &Engine,
        wasm: &[u8],
        path: &Path,
        digest: String,
    ) -> anyhow::Result<(Component, Provenance, String)> {
        let path = path.to_path_buf();
        if path.exists() {
            // SAFETY: the file was written by `store` below from this
            // engine's own `precompile_component`, in a folder keyed by this
            // engine's compatibility hash, and is renamed into place only
            // once complete. wasmtime still checks its header and refuses a
            // mismatched artefact, which we then rebuild.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, Provenance::Cached, digest)),
                Err(e) => {
                    tracing::warn!(artefact = %path.display(), error = %format!("{e:#}"), "discarding an unusable precompiled artefact");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let compiled = engine
            .precompile_component(wasm)
            .map_err(anyhow::Error::from)?;
        match self.store(&path, &compiled) {
            // SAFETY: as above; the file holds exactly `compiled`.
            Ok(()) => match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, Provenance::Compiled, digest)),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "could not map a fresh artefact")
                }
            },
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not write a precompiled artefact; serving from memory")
            }
        }
        // SAFETY: `compiled` came from this engine's precompile_component.
        let component =
            unsafe { Component::deserialize(engine, &compiled) }.map_err(anyhow::Error::from)?;
        Ok((component, Provenance::Compiled, digest))
    }

    fn store(&self, path: &Path, compiled: &[u8]) -> anyhow::Result<()> {
        // Unique per process and per write, so that two servers sharing one
        // cache never write the same temporary file.
        let tmp = path.with_extension(format!(
            "tmp-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(compiled)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// Feeds `Hash` impls into sha256, for a stable name across processes.
#[derive(Default)]
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("sha256 is 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_loads_of_one_new_component_compile_it_once() {
        let dir = std::env::temp_dir().join(format!(
            "renga-artefacts-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let engine = Engine::default();
        let cache = Arc::new(ArtefactCache::open(&dir, &engine).unwrap());
        // The smallest component there is: its header alone.
        let component: &'static [u8] = b"\0asm\x0d\0\x01\0";
        let loads: Vec<_> = (0..8)
            .map(|_| {
                let (cache, engine) = (cache.clone(), engine.clone());
                std::thread::spawn(move || cache.load(&engine, component).unwrap().1)
            })
            .collect();
        let compiled = loads
            .into_iter()
            .map(|l| l.join().unwrap())
            .filter(|p| *p == Provenance::Compiled)
            .count();
        assert_eq!(
            compiled, 1,
            "each load past the first maps the first's artefact"
        );
        let leftovers: Vec<_> = std::fs::read_dir(&cache.dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
