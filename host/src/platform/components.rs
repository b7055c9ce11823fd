//! Compiled web components, shared by every release and app that runs the
//! same one, kept loaded for a while after their last dyno went; and the
//! recipe that makes an app's web dynos from one, at release and at each
//! wake from zero.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::capability::ReleaseCapabilities;
use crate::dyno::{WebDyno, WebLimits};
use crate::logplex::AppLog;
use crate::router::Wake;
use crate::runtime::{AppCpu, HttpComponent, LoadError, Runtime};

/// Compiled web components by slug checksum and path, shared by every
/// release (and every app) that runs the same one. A component stays loaded
/// while a dyno runs it, and for `keep_for` (`--keep-code-for`) after that
/// while its code fits in [`KEEP_CODE_BYTES`] with the more recently loaded
/// ones: an app that wakes within that time maps and links nothing.
pub(super) struct ComponentCache {
    runtime: Arc<Runtime>,
    loaded: Mutex<HashMap<String, Weak<HttpComponent>>>,
    /// The artefact digest of each component loaded once, so that waking it
    /// maps the precompiled code without reading the component again, and
    /// why its instances cannot be kept, if they cannot.
    digests: Mutex<HashMap<String, (String, Option<String>)>>,
    /// The components kept loaded, the most recently used first.
    kept: Mutex<VecDeque<Kept>>,
    keep_for: Duration,
}

/// How much compiled code the components kept loaded after their last
/// dyno went may map together. The code is the artefact file's pages,
/// which the kernel can drop and read again under memory pressure.
const KEEP_CODE_BYTES: usize = 256 << 20;

struct Kept {
    component: Arc<HttpComponent>,
    /// When it was last loaded, or last seen running in a dyno.
    used: Instant,
}

impl ComponentCache {
    pub(super) fn new(runtime: Arc<Runtime>, keep_for: Duration) -> ComponentCache {
        ComponentCache {
            runtime,
            loaded: Mutex::default(),
            digests: Mutex::default(),
            kept: Mutex::default(),
            keep_for,
        }
    }

    /// Keeps `component` loaded as the most recently used (and lets go of
    /// the least recent ones past [`KEEP_CODE_BYTES`]). Blocking: the last
    /// reference to a component unmaps its code.
    fn keep(&self, component: &Arc<HttpComponent>) {
        // One too large to keep at all must not push out all the others.
        if self.keep_for.is_zero() || component.code_bytes() > KEEP_CODE_BYTES {
            return;
        }
        let mut gone: Vec<Kept> = Vec::new();
        {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            let same = kept
                .iter()
                .position(|k| k.component.digest() == component.digest());
            gone.extend(same.and_then(|at| kept.remove(at)));
            kept.push_front(Kept {
                component: component.clone(),
                used: Instant::now(),
            });
            let mut bytes = 0;
            let within = kept
                .iter()
                .take_while(|k| {
                    bytes += k.component.code_bytes();
                    bytes <= KEEP_CODE_BYTES
                })
                .count();
            gone.extend(kept.split_off(within));
        }
        drop(gone);
    }

    /// Takes out the components no dyno has run for `keep_for` (those a
    /// dyno runs now count as used now). They are unloaded when what this
    /// returns is dropped.
    fn expired(&self) -> Vec<Arc<HttpComponent>> {
        let now = Instant::now();
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let mut gone = Vec::new();
        kept.retain_mut(|k| {
            if Arc::strong_count(&k.component) > 1 {
                k.used = now;
            }
            let keep = now.duration_since(k.used) < self.keep_for;
            if !keep {
                gone.push(k.component.clone());
            }
            keep
        });
        gone
    }

    /// Why the component `key` cannot keep its instances between requests
    /// (`Some(None)`: it can), when it was loaded once.
    pub(super) fn single_use_of(&self, key: &str) -> Option<Option<String>> {
        self.digests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .map(|(_, single_use)| single_use.clone())
    }

    /// The component `key` (`checksum/path`) from `file`, which must have the
    /// sha256 `expected` (recorded when its slug was stored), kept loaded
    /// as the most recently used. Blocking: compiling can take seconds the
    /// first time.
    pub(super) fn get(
        &self,
        key: &str,
        file: &std::path::Path,
        expected: &str,
    ) -> Result<Arc<HttpComponent>, Loaded> {
        let component = self.load(key, file, expected)?;
        self.keep(&component);
        Ok(component)
    }

    fn load(
        &self,
        key: &str,
        file: &std::path::Path,
        expected: &str,
    ) -> Result<Arc<HttpComponent>, Loaded> {
        if let Some(component) = self
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .and_then(Weak::upgrade)
        {
            return Ok(component);
        }
        let known = self
            .digests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned();
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let component = match known
            .and_then(|(d, single_use)| self.runtime.reload_http(&name, &d, single_use))
        {
            Some(component) => component,
            None => self.runtime.load_http(file).map_err(Loaded::Refused)?,
        };
        if component.digest() != expected {
            return Err(Loaded::Tampered);
        }
        self.digests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                key.to_string(),
                (
                    component.digest().to_string(),
                    component.single_use().map(str::to_string),
                ),
            );
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        loaded.retain(|_, weak| weak.strong_count() > 0);
        loaded.insert(key.to_string(), Arc::downgrade(&component));
        Ok(component)
    }
}

/// Why a component was not loaded.
pub(super) enum Loaded {
    Refused(LoadError),
    /// The unpacked file does not have the digest its slug recorded.
    Tampered,
}

/// How to make an app's web dynos for one release: used when the release
/// goes live, and again each time the app wakes from zero.
pub(super) struct WebRecipe {
    pub(super) cache: Arc<ComponentCache>,
    pub(super) key: String,
    pub(super) file: PathBuf,
    /// The component's sha256, as its slug recorded it.
    pub(super) digest: String,
    /// The numbers of the web dynos it makes (on a cluster, those placed
    /// on this host).
    pub(super) indexes: Vec<u32>,
    pub(super) caps: Arc<ReleaseCapabilities>,
    pub(super) limits: WebLimits,
    pub(super) log: AppLog,
    pub(super) cpu: Arc<AppCpu>,
    pub(super) meter: Arc<crate::metrics::AppMeter>,
}

impl WebRecipe {
    pub(super) fn dynos(&self, component: &Arc<HttpComponent>) -> Vec<Arc<WebDyno>> {
        self.indexes
            .iter()
            .map(|&index| {
                Arc::new(WebDyno::new(
                    index,
                    component.clone(),
                    &self.caps,
                    self.limits,
                    self.log.clone(),
                    self.cpu.clone(),
                    self.meter.dyno(&format!("web.{index}")),
                ))
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl Wake for WebRecipe {
    async fn wake(&self) -> std::result::Result<Vec<Arc<WebDyno>>, String> {
        let (cache, key, file, digest) = (
            self.cache.clone(),
            self.key.clone(),
            self.file.clone(),
            self.digest.clone(),
        );
        let component = tokio::task::spawn_blocking(move || cache.get(&key, &file, &digest))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| match e {
                Loaded::Refused(e) => e.to_string(),
                Loaded::Tampered => format!(
                    "{} does not match its slug's archive (it was changed on disk); deploy or restart to unpack it again",
                    self.file.display()
                ),
            })?;
        Ok(self.dynos(&component))
    }
}

/// How often kept components are checked for their time, at most.
const FORGET_CHECK: Duration = Duration::from_secs(15);

/// Lets go of the components kept past their time, for as long as `cache`
/// lives.
pub(super) async fn forget_unused_components(cache: Weak<ComponentCache>) {
    let every = match cache.upgrade() {
        Some(cache) if !cache.keep_for.is_zero() => {
            (cache.keep_for / 4).clamp(Duration::from_millis(100), FORGET_CHECK)
        }
        _ => return,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(cache) = cache.upgrade() else {
            return;
        };
        let gone = cache.expired();
        if !gone.is_empty() {
            // Unmapping code takes a while: not on an async worker.
            tokio::task::spawn_blocking(move || drop(gone));
        }
    }
}
