//! Provider components: add-ons served by a component someone registered
//! with `renga addons:services:add` (the `renga:app/key-value-provider`
//! world in `wit/provider.wit`).
//!
//! A provider runs in stores of its own, never in the app's: the app's
//! `wasi:keyvalue` call reaches renga's key-value capability as for any
//! add-on, whose backend for this add-on is [`ProviderKv`], which makes the
//! same call of the provider's exports in one of the add-on's instances.
//! So a provider that traps, loops or runs out of memory fails that one
//! call with an error value (the instance is thrown away, the next call
//! gets a fresh one), and the app's request goes on; it is limited like
//! any guest (memory, a time limit per call, the CPU scheduler's turns, no
//! files, no network beyond the hosts the admin allowed, an environment of
//! its options only). Each add-on has its own instances and its own SQL
//! database (`addons/{id}/provider`), so two apps' add-ons of one provider
//! never share state; the instances of an add-on live as long as a release
//! that reaches it.
//!
//! Why a store of its own and not the app's: see BENCHMARKS.md, "Add-ons
//! served by provider components".

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use wasmtime::Store;
use wasmtime::component::{Component, ResourceAny};

use super::cpu::{AppCpu, CpuScheduler};
use super::http::describe_error;
use super::state::{Cpu, DynoState, new_store};
use super::{LoadError, exported_interfaces};
use crate::capability::{
    AddonBinding, Capabilities, DynoCapabilities, DynoInputs, ImportProblem, InstanceInputs,
    ReleaseInputs,
};
use crate::config::ConfigVars;
use crate::logplex::{AppLog, Process};
use crate::provider::AddonRef;
use crate::provider::kv::{Kv, LIST_PAGE, Page, Seen};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "renga:app/key-value-provider",
        exports: { default: async },
    });
}

use bindings::KeyValueProvider;
use bindings::exports::wasi::keyvalue::atomics::CasError;
use bindings::exports::wasi::keyvalue::store::Error as StoreError;

/// The interfaces a key-value provider must export.
pub const KEY_VALUE_EXPORTS: &[&str] = &[
    "wasi:keyvalue/store@0.2.0-draft2",
    "wasi:keyvalue/atomics@0.2.0-draft2",
    "wasi:keyvalue/batch@0.2.0-draft2",
    "renga:app/provisioning@0.1.0",
];
/// The most linear memory one provider instance may have.
pub const MEMORY_LIMIT: u64 = 64 << 20;
/// How long one call of a provider may take, waiting for its instance
/// included.
pub const CALL_LIMIT: Duration = Duration::from_secs(2);
/// Instances one add-on may have at once: calls past them wait their turn.
pub const MAX_INSTANCES: usize = 4;
/// The most config vars a provider may answer at provisioning, and the
/// most bytes they may hold.
const MAX_PROVIDED_VARS: usize = 16;
const MAX_PROVIDED_BYTES: usize = 16 << 10;

/// A provider's component, compiled and linked once per server.
pub struct ProviderComponent {
    name: String,
    pre: bindings::KeyValueProviderPre<DynoState>,
    imports: Vec<String>,
}

impl ProviderComponent {
    pub fn imports(&self) -> &[String] {
        &self.imports
    }
}

/// What the runtime gives the providers once it exists.
struct Linked {
    scheduler: Arc<CpuScheduler>,
    capabilities: Weak<Capabilities>,
}

/// The provider components this server has, and the instances of each
/// add-on they serve.
#[derive(Default)]
pub struct Providers {
    components: Mutex<HashMap<String, Arc<ProviderComponent>>>,
    pools: Mutex<HashMap<String, Weak<Pool>>>,
    linked: OnceLock<Linked>,
}

impl Providers {
    pub(super) fn link(&self, scheduler: Arc<CpuScheduler>, capabilities: Weak<Capabilities>) {
        let _ = self.linked.set(Linked {
            scheduler,
            capabilities,
        });
    }

    /// Makes a loaded component the one that serves `digest`.
    pub(super) fn insert(&self, digest: &str, component: Arc<ProviderComponent>) {
        lock(&self.components).insert(digest.to_string(), component);
    }

    /// The key-value backend of a provider's add-on: its pool of instances.
    pub fn kv(&self, addon: &AddonRef) -> Result<Arc<dyn Kv>, String> {
        Ok(Arc::new(ProviderKv(self.pool(addon)?)))
    }

    /// Provisions a new add-on: a fresh instance of its own answers
    /// `provision` with the config vars its apps get.
    pub async fn provision(
        &self,
        addon: &AddonRef,
        options: &[(String, String)],
    ) -> Result<Vec<(String, String)>, String> {
        let pool = self.pool(addon)?;
        let options = options.to_vec();
        let answer = pool
            .call("provision", move |i| {
                Box::pin(async move {
                    let provisioning = i.provider.renga_app_provisioning();
                    provisioning.call_provision(&mut i.store, &options).await
                })
            })
            .await?;
        let vars = answer.map_err(|why| format!("its provider refused: {why}"))?;
        check_provided(&vars)?;
        Ok(vars)
    }

    fn pool(&self, addon: &AddonRef) -> Result<Arc<Pool>, String> {
        let spec = addon
            .provider
            .as_ref()
            .ok_or_else(|| format!("{} is not served by a provider component", addon.name))?;
        let mut pools = lock(&self.pools);
        if let Some(pool) = pools.get(&addon.id).and_then(Weak::upgrade) {
            return Ok(pool);
        }
        pools.retain(|_, pool| pool.strong_count() > 0);
        let component = lock(&self.components)
            .get(&spec.digest)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "{}: its provider {} is not loaded on this server (`renga addons:services` lists what is)",
                    addon.name, spec.service
                )
            })?;
        let linked = self
            .linked
            .get()
            .ok_or("the runtime is not running providers")?;
        let capabilities = linked
            .capabilities
            .upgrade()
            .ok_or("the runtime is stopping")?;
        let pool = Arc::new(Pool::new(addon, component, linked, &capabilities)?);
        pools.insert(addon.id.clone(), Arc::downgrade(&pool));
        Ok(pool)
    }
}

/// The release a provider's instances of one add-on run with: its options
/// as config, its own SQL database, the hosts it may call.
fn provider_release(
    addon: &AddonRef,
    capabilities: &Arc<Capabilities>,
) -> Result<Arc<crate::capability::ReleaseCapabilities>, String> {
    let spec = addon.provider.as_ref().expect("a provider's add-on");
    let mut config = ConfigVars::new();
    for (key, value) in &spec.options {
        if let Ok(key) = key.parse() {
            config.set(key, value.clone());
        }
    }
    if !spec.outbound.is_empty()
        && let Ok(key) = crate::capability::ALLOWED_HOSTS_VAR.parse()
    {
        config.set(key, spec.outbound.join(","));
    }
    let own = AddonBinding {
        service: crate::capability::SQL_SERVICES[0].to_string(),
        attachment: "RENGA_SQL".to_string(),
        addon: AddonRef::local(
            format!("{}/provider", addon.id),
            format!("{}'s own database", addon.name),
            addon.quota,
        ),
    };
    let inputs = ReleaseInputs {
        app: &addon.name,
        config: &config,
        addons: std::slice::from_ref(&own),
    };
    capabilities
        .configure(&inputs)
        .map_err(|e| format!("{}: {e:#}", addon.name))
}

/// What a provider answered at provisioning, checked: config var names of
/// uppercase letters, digits and `_`, few and small.
fn check_provided(vars: &[(String, String)]) -> Result<(), String> {
    if vars.len() > MAX_PROVIDED_VARS {
        return Err(format!(
            "its provider answered {} config vars; at most {MAX_PROVIDED_VARS} are allowed",
            vars.len()
        ));
    }
    let bytes: usize = vars.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_PROVIDED_BYTES {
        return Err(format!(
            "its provider answered {bytes} bytes of config vars; at most {MAX_PROVIDED_BYTES} are allowed"
        ));
    }
    for (name, value) in vars {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !valid || value.contains('\0') {
            return Err(format!(
                "its provider answered a config var renga cannot set: {name:?} (names are uppercase letters, digits and _)"
            ));
        }
        if name == "NAME" || name == "URL" {
            return Err(format!(
                "its provider answered {name}, which renga sets itself"
            ));
        }
    }
    Ok(())
}

impl super::Runtime {
    /// Loads a provider's component: compiled (or from the artefact cache),
    /// its exports and imports checked, in renga's words. Returns its
    /// sha256; from then on add-ons of that digest are served by it.
    pub fn load_provider(&self, name: &str, bytes: &[u8]) -> Result<String, LoadError> {
        let (component, _, digest) = self.compile(name, bytes)?;
        let loaded = self.provider_component(name, &component)?;
        self.capabilities
            .providers()
            .insert(&digest, Arc::new(loaded));
        Ok(digest)
    }

    fn provider_component(
        &self,
        name: &str,
        component: &Component,
    ) -> Result<ProviderComponent, LoadError> {
        let exports = exported_interfaces(component.engine(), component);
        let missing: Vec<&str> = KEY_VALUE_EXPORTS
            .iter()
            .copied()
            .filter(|want| !exports.iter().any(|e| e == want))
            .collect();
        if !missing.is_empty() {
            return Err(LoadError::NotProvider {
                name: name.to_string(),
                missing: missing.join(", "),
            });
        }
        let (pre, imports) = self.link(name, component)?;
        // What a provider may import: its own database and config, and the
        // rest of what any guest gets; never the add-ons of an app.
        let own = AddonBinding {
            service: crate::capability::SQL_SERVICES[0].to_string(),
            attachment: "RENGA_SQL".to_string(),
            addon: AddonRef::local("provider-check".into(), "its own database".into(), 0),
        };
        let release = self
            .capabilities
            .configure(&ReleaseInputs {
                app: name,
                config: &ConfigVars::new(),
                addons: std::slice::from_ref(&own),
            })
            .map_err(|e| LoadError::Invalid {
                name: name.to_string(),
                reason: format!("{e:#}"),
            })?;
        let problems: Vec<String> = release
            .check(&imports, "the provider")
            .iter()
            .map(|problem| match problem {
                ImportProblem::Unknown { import } => format!("{import}: renga does not provide it"),
                ImportProblem::Unprovisioned { import, .. } => format!(
                    "{import}: a provider reaches no add-ons of its own but its renga:sql database"
                ),
            })
            .collect();
        if !problems.is_empty() {
            return Err(LoadError::UnknownImports {
                name: name.to_string(),
                imports: problems,
            });
        }
        let pre =
            bindings::KeyValueProviderPre::new(pre).map_err(|e| LoadError::UnsatisfiedImport {
                name: name.to_string(),
                reason: format!("{e:#}"),
            })?;
        Ok(ProviderComponent {
            name: name.to_string(),
            pre,
            imports,
        })
    }
}

/// One add-on's instances of its provider.
struct Pool {
    addon: AddonRef,
    component: Arc<ProviderComponent>,
    caps: Arc<DynoCapabilities>,
    cpu: Cpu,
    idle: Mutex<Vec<Instance>>,
    slots: tokio::sync::Semaphore,
}

/// One instance of a provider, with the bucket it opened for its add-on.
struct Instance {
    store: Store<DynoState>,
    provider: KeyValueProvider,
    bucket: Option<ResourceAny>,
}

/// What a call of a provider's export gives back: its answer, or a trap.
type Called<'a, T> = BoxFuture<'a, wasmtime::Result<T>>;

impl Pool {
    fn new(
        addon: &AddonRef,
        component: Arc<ProviderComponent>,
        linked: &Linked,
        capabilities: &Arc<Capabilities>,
    ) -> Result<Pool, String> {
        let release = provider_release(addon, capabilities)?;
        let log = AppLog::new(16);
        let name = Process::from(format!("provider.{}", addon.name));
        let caps = release.dyno(&DynoInputs {
            name: &name,
            log: &log,
            meter: &crate::metrics::DynoMeter::off(),
        });
        Ok(Pool {
            addon: addon.clone(),
            component,
            caps,
            cpu: Cpu {
                scheduler: linked.scheduler.clone(),
                app: AppCpu::new(1),
            },
            idle: Mutex::default(),
            slots: tokio::sync::Semaphore::new(MAX_INSTANCES),
        })
    }

    /// Runs `call` in one of the add-on's instances (a fresh one if none is
    /// idle). A trap, a timeout or a memory limit throws the instance away
    /// and is a message for the app; so is a caller giving up.
    async fn call<T, F>(&self, what: &str, call: F) -> Result<T, String>
    where
        F: for<'a> FnOnce(&'a mut Instance) -> Called<'a, T>,
    {
        let limit = tokio::time::Instant::now() + CALL_LIMIT;
        let ran = tokio::time::timeout_at(limit, async {
            let _slot = self
                .slots
                .acquire()
                .await
                .map_err(|_| "the add-on is closing".to_string())?;
            let idle = lock(&self.idle).pop();
            let mut instance = match idle {
                Some(instance) => instance,
                None => self.instantiate().await?,
            };
            instance.store.data_mut().ticks = 0;
            match call(&mut instance).await {
                Ok(answer) => {
                    lock(&self.idle).push(instance);
                    Ok(answer)
                }
                Err(trap) => Err(self.failure(what, &instance, &trap)),
            }
        })
        .await;
        match ran {
            Ok(result) => result,
            Err(_) => Err(format!(
                "{}: its provider {} did not answer {what} within {:?} and was stopped",
                self.addon.name, self.component.name, CALL_LIMIT
            )),
        }
    }

    async fn instantiate(&self) -> Result<Instance, String> {
        let state = DynoState::new(&self.caps, MEMORY_LIMIT, InstanceInputs::default());
        let mut store = new_store(self.component.pre.engine(), state, self.cpu.clone());
        match self.component.pre.instantiate_async(&mut store).await {
            Ok(provider) => Ok(Instance {
                store,
                provider,
                bucket: None,
            }),
            Err(e) => Err(format!(
                "{}: its provider {} could not start: {}",
                self.addon.name,
                self.component.name,
                describe_error(&e)
            )),
        }
    }

    fn failure(&self, what: &str, instance: &Instance, trap: &wasmtime::Error) -> String {
        let why = if instance.store.data().limits.exceeded {
            format!("needed more than its {} MiB of memory", MEMORY_LIMIT >> 20)
        } else {
            describe_error(trap)
        };
        format!(
            "{}: its provider {} failed in {what}: {why}",
            self.addon.name, self.component.name
        )
    }
}

impl Instance {
    /// The bucket of the add-on, opened on the instance's first call.
    async fn bucket(&mut self, addon: &str) -> wasmtime::Result<Result<ResourceAny, StoreError>> {
        if let Some(bucket) = self.bucket {
            return Ok(Ok(bucket));
        }
        let opened = self
            .provider
            .wasi_keyvalue_store()
            .call_open(&mut self.store, addon)
            .await?;
        if let Ok(bucket) = opened {
            self.bucket = Some(bucket);
        }
        Ok(opened)
    }
}

/// An add-on served by a provider, as the key-value capability calls it.
pub struct ProviderKv(Arc<Pool>);

/// A provider's error value, for the app.
fn refused(addon: &str, error: StoreError) -> String {
    match error {
        StoreError::NoSuchStore => format!("{addon}: its provider has no such store"),
        StoreError::AccessDenied => format!("{addon}: its provider denied access"),
        StoreError::Other(why) => format!("{addon}: {why}"),
    }
}

/// Calls a method of the add-on's bucket in one of its instances, and
/// turns the provider's error value into a message.
macro_rules! bucket_call {
    ($self:ident, $what:literal, |$i:ident, $bucket:ident| $body:expr) => {{
        let addon = $self.0.addon.name.clone();
        let answer = $self
            .0
            .call($what, move |$i| {
                Box::pin(async move {
                    let $bucket = match $i.bucket(&addon).await? {
                        Ok(bucket) => bucket,
                        Err(e) => return Ok(Err(e)),
                    };
                    $body
                })
            })
            .await?;
        answer.map_err(|e| refused(&$self.0.addon.name, e))
    }};
}

#[async_trait::async_trait]
impl Kv for ProviderKv {
    fn addon(&self) -> &AddonRef {
        &self.0.addon
    }

    async fn get(&self, key: String) -> Result<Option<Vec<u8>>, String> {
        bucket_call!(self, "get", |i, bucket| {
            i.provider
                .wasi_keyvalue_store()
                .bucket()
                .call_get(&mut i.store, bucket, &key)
                .await
        })
    }

    async fn set(&self, key: String, value: Vec<u8>) -> Result<(), String> {
        bucket_call!(self, "set", |i, bucket| {
            i.provider
                .wasi_keyvalue_store()
                .bucket()
                .call_set(&mut i.store, bucket, &key, &value)
                .await
        })
    }

    async fn delete(&self, key: String) -> Result<(), String> {
        bucket_call!(self, "delete", |i, bucket| {
            i.provider
                .wasi_keyvalue_store()
                .bucket()
                .call_delete(&mut i.store, bucket, &key)
                .await
        })
    }

    async fn exists(&self, key: String) -> Result<bool, String> {
        bucket_call!(self, "exists", |i, bucket| {
            i.provider
                .wasi_keyvalue_store()
                .bucket()
                .call_exists(&mut i.store, bucket, &key)
                .await
        })
    }

    async fn list_after(&self, after: Option<String>) -> Result<Page<String>, String> {
        let page = bucket_call!(self, "list-keys", |i, bucket| {
            i.provider
                .wasi_keyvalue_store()
                .bucket()
                .call_list_keys(&mut i.store, bucket, after.as_deref())
                .await
        })?;
        Ok(Page {
            keys: page.keys,
            next: page.cursor,
        })
    }

    async fn list_from(&self, offset: u64) -> Result<Page<u64>, String> {
        // The provider pages by its own cursor: walk to the offset.
        let (mut keys, mut skipped, mut cursor) = (Vec::new(), 0u64, None);
        loop {
            let page = self.list_after(cursor).await?;
            for key in page.keys {
                if skipped < offset {
                    skipped += 1;
                } else if keys.len() < LIST_PAGE {
                    keys.push(key);
                }
            }
            let full = keys.len() == LIST_PAGE;
            if full || page.next.is_none() {
                let next = full.then(|| offset + LIST_PAGE as u64);
                return Ok(Page { keys, next });
            }
            cursor = page.next;
        }
    }

    async fn increment(
        &self,
        key: String,
        delta: i128,
        range: (i128, i128),
    ) -> Result<i128, String> {
        let delta = i64::try_from(delta)
            .map_err(|_| format!("{}: the increment is out of range", self.0.addon.name))?;
        let sum = bucket_call!(self, "increment", |i, bucket| {
            i.provider
                .wasi_keyvalue_atomics()
                .call_increment(&mut i.store, bucket, &key, delta)
                .await
        })?;
        let sum = i128::from(sum);
        if sum < range.0 || sum > range.1 {
            return Err(format!(
                "{}: the sum {sum} is out of range",
                self.0.addon.name
            ));
        }
        Ok(sum)
    }

    async fn get_many(&self, keys: Vec<String>) -> Result<Vec<(String, Option<Vec<u8>>)>, String> {
        bucket_call!(self, "get-many", |i, bucket| {
            i.provider
                .wasi_keyvalue_batch()
                .call_get_many(&mut i.store, bucket, &keys)
                .await
        })
    }

    async fn set_many(&self, pairs: Vec<(String, Vec<u8>)>) -> Result<(), String> {
        bucket_call!(self, "set-many", |i, bucket| {
            i.provider
                .wasi_keyvalue_batch()
                .call_set_many(&mut i.store, bucket, &pairs)
                .await
        })
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<(), String> {
        bucket_call!(self, "delete-many", |i, bucket| {
            i.provider
                .wasi_keyvalue_batch()
                .call_delete_many(&mut i.store, bucket, &keys)
                .await
        })
    }

    async fn watch(&self, key: String) -> Result<Seen, String> {
        Ok(Seen {
            value: self.get(key).await?,
            version: None,
        })
    }

    async fn swap(&self, key: String, seen: &Seen, value: Vec<u8>) -> Result<bool, String> {
        // The provider's own compare-and-swap, from a value it reads now:
        // when that is still what the app saw, the swap succeeds only if
        // nothing changed it in between.
        let expected = seen.value.clone();
        let swapped = bucket_call!(self, "swap", |i, bucket| {
            swap_if(i, bucket, key, expected, value).await
        })?;
        Ok(swapped)
    }
}

/// `cas.new`, compared with what the app saw, then `swap`.
fn swap_if(
    i: &mut Instance,
    bucket: ResourceAny,
    key: String,
    expected: Option<Vec<u8>>,
    value: Vec<u8>,
) -> Called<'_, Result<bool, StoreError>> {
    Box::pin(async move {
        let atomics = i.provider.wasi_keyvalue_atomics();
        let cas = match atomics.cas().call_new(&mut i.store, bucket, &key).await? {
            Ok(cas) => cas,
            Err(e) => return Ok(Err(e)),
        };
        let current = atomics.cas().call_current(&mut i.store, cas).await?;
        match current {
            Ok(current) if current == expected => {}
            other => {
                cas.resource_drop_async(&mut i.store).await?;
                return Ok(other.map(|_| false));
            }
        }
        Ok(match atomics.call_swap(&mut i.store, cas, &value).await? {
            Ok(()) => Ok(true),
            Err(CasError::CasFailed(cas)) => {
                cas.resource_drop_async(&mut i.store).await?;
                Ok(false)
            }
            Err(CasError::StoreError(e)) => Err(e),
        })
    })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provided_config_vars_are_checked() {
        assert!(check_provided(&[("TTL_SECONDS".into(), "60".into())]).is_ok());
        assert!(check_provided(&[("ttl".into(), "60".into())]).is_err());
        assert!(check_provided(&[("URL".into(), "x".into())]).is_err());
        let many: Vec<(String, String)> =
            (0..20).map(|n| (format!("V{n}"), String::new())).collect();
        assert!(check_provided(&many).is_err());
    }
}
