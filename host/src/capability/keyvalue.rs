//! Key-value (`wasi:keyvalue`: `store`, `atomics`, `batch`) on the app's
//! `renga-kv` add-ons.
//!
//! Linked at `0.2.0-draft` (wasmtime's wasi-keyvalue, wasmCloud 1.x) and
//! `0.2.0-draft2` (Spin 3 and 4: signed `increment`, compare-and-swap).
//! `open("")` and `open("default")` give the app's default key-value add-on
//! (the one attached as `RENGA_KV`, else the oldest); `open(NAME)` gives the
//! add-on attached under NAME (or named NAME); anything else is
//! `no-such-store`, whatever add-ons other apps have. Under `renga dev`
//! every name is a local store in the app's `.renga/` folder. Failures of
//! the backend (a full bucket, a damaged file, a value too large) are
//! `other(...)` values, never traps.

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable, ResourceTableError};

use super::{
    Attached, Capability, DynoInputs, ImportName, InstanceInputs, ReleaseInputs, add_on_hint,
};
use crate::addon::BackendKind;
use crate::provider::kv::{Kv, KvStore, Seen};
use crate::provider::redis::{RedisKv, RedisServer};
use crate::provider::{AddonRef, Open, Servers};
use crate::runtime::{DynoState, Providers};

mod v1 {
    wasmtime::component::bindgen!({
        path: "wit/keyvalue-0.2.0-draft",
        world: "imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => super::KvError,
        },
    });
}

mod v2 {
    wasmtime::component::bindgen!({
        path: "../wit/deps/keyvalue-0.2.0-draft2",
        world: "imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
            "wasi:keyvalue/atomics.cas": super::Cas,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => super::KvError,
        },
    });
}

/// The service whose add-ons back this capability.
pub const SERVICE: &str = "renga-kv";
/// The attachment names a default add-on has, in order of preference.
pub const DEFAULT_ATTACHMENTS: &[&str] = &["RENGA_KV", "REDIS"];
/// Buckets one instance may hold open at once.
const MAX_OPEN: usize = 64;

/// Where key-value add-ons live: embedded files, the operator's Redis.
/// Shared by every capability that serves key-value interfaces (wasi and
/// Spin's own).
pub struct KvBackends {
    stores: Arc<Open<KvStore>>,
    redis: Option<Arc<RedisServer>>,
    providers: Arc<Providers>,
    /// `renga dev`: every name is a local store.
    local: bool,
}

impl KvBackends {
    pub fn new(
        stores: Arc<Open<KvStore>>,
        servers: &Servers,
        providers: Arc<Providers>,
        local: bool,
    ) -> KvBackends {
        KvBackends {
            stores,
            redis: servers.redis.clone(),
            providers,
            local,
        }
    }

    /// The provider components key-value add-ons may be served by.
    pub fn providers(&self) -> &Arc<Providers> {
        &self.providers
    }

    /// The embedded store of an add-on (opened on first use).
    pub fn store(&self, addon: &AddonRef) -> Arc<KvStore> {
        self.stores
            .get(addon, |dir| KvStore::new(addon.clone(), dir))
    }

    /// The backend of an add-on, or why this server cannot reach it.
    pub fn backend(&self, addon: &AddonRef) -> Result<Arc<dyn Kv>, String> {
        match addon.backend {
            BackendKind::Redis => match &self.redis {
                Some(server) => Ok(Arc::new(RedisKv::new(server.clone(), addon.clone()))),
                None => Err(format!(
                    "{}: {}",
                    addon.name,
                    Servers::default()
                        .missing(BackendKind::Redis)
                        .unwrap_or_default()
                )),
            },
            BackendKind::Provider => self.providers.kv(addon),
            BackendKind::Embedded | BackendKind::Postgres => Ok(Arc::new(self.store(addon))),
        }
    }

    /// The stores one release reaches.
    pub fn release(&self, release: &ReleaseInputs<'_>) -> Arc<KvRelease> {
        Arc::new(KvRelease {
            attached: Attached::new(release.addons, &[SERVICE], DEFAULT_ATTACHMENTS, |addon| {
                self.backend(addon)
            }),
            local: self.local.then(|| self.stores.clone()),
        })
    }
}

pub struct KeyValue {
    backends: Arc<KvBackends>,
}

impl KeyValue {
    pub fn new(backends: Arc<KvBackends>) -> KeyValue {
        KeyValue { backends }
    }

    pub fn backends(&self) -> &Arc<KvBackends> {
        &self.backends
    }
}

/// The stores one release reaches.
pub struct KvRelease {
    attached: Attached<dyn Kv>,
    local: Option<Arc<Open<KvStore>>>,
}

impl KvRelease {
    /// The store a guest's `open(name)` gives.
    pub fn resolve(&self, name: &str) -> Result<Arc<dyn Kv>, KvError> {
        if let Some(reached) = self.attached.find(name) {
            return reached.map_err(KvError::Other);
        }
        let name = if name.is_empty() { "default" } else { name };
        match &self.local {
            Some(local) if is_local_name(name) => {
                let addon = AddonRef::local(
                    format!("keyvalue-{name}"),
                    format!("the local store `{name}`"),
                    1 << 30,
                );
                Ok(Arc::new(
                    local.get(&addon, |dir| KvStore::new(addon.clone(), dir)),
                ))
            }
            Some(_) => Err(KvError::Other(format!(
                "`{name}` is not a store name renga dev can make: use letters, digits, - and _"
            ))),
            None => Err(KvError::NoSuchStore),
        }
    }

    /// Whether the release reaches no store at all.
    pub fn is_empty(&self) -> bool {
        self.attached.is_empty() && self.local.is_none()
    }
}

fn is_local_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// One instance's key-value state: the release's stores and how many
/// buckets it holds open.
pub struct KvInstance {
    release: Arc<KvRelease>,
    open: usize,
}

/// An open bucket, as a guest holds it.
pub struct Bucket(Arc<dyn Kv>);

/// A compare-and-swap in progress (`0.2.0-draft2`).
pub struct Cas {
    store: Arc<dyn Kv>,
    key: String,
    seen: Seen,
}

/// Why a call failed: a value for the guest, or (a resource the guest does
/// not hold) a trap.
pub enum KvError {
    NoSuchStore,
    Other(String),
    Trap(wasmtime::Error),
}

impl From<ResourceTableError> for KvError {
    fn from(e: ResourceTableError) -> Self {
        KvError::Trap(e.into())
    }
}

impl From<String> for KvError {
    fn from(e: String) -> Self {
        KvError::Other(e)
    }
}

impl Capability for KeyValue {
    type Release = Arc<KvRelease>;
    type Dyno = Arc<KvRelease>;
    type Instance = KvInstance;

    fn link(&self, linker: &mut Linker<DynoState>) -> anyhow::Result<()> {
        fn view(state: &mut DynoState) -> KvView<'_> {
            state.meter().addon_call();
            KvView {
                table: &mut state.table,
                kv: &mut state.caps.keyvalue,
            }
        }
        v1::Imports::add_to_linker::<DynoState, HasKv>(linker, view)?;
        v2::Imports::add_to_linker::<DynoState, HasKv>(linker, view)?;
        Ok(())
    }

    fn claims(&self, import: &ImportName) -> bool {
        import.is("wasi", "keyvalue", &["0.2.0-draft", "0.2.0-draft2"])
    }

    fn configure(&self, release: &ReleaseInputs<'_>) -> anyhow::Result<Arc<KvRelease>> {
        Ok(self.backends.release(release))
    }

    fn check(&self, release: &Arc<KvRelease>, _import: &ImportName, app: &str) -> Option<String> {
        release
            .is_empty()
            .then(|| add_on_hint("key-value", SERVICE, app))
    }

    fn dyno(&self, release: &Arc<KvRelease>, _dyno: &DynoInputs<'_>) -> Arc<KvRelease> {
        release.clone()
    }

    fn instance(
        &self,
        _release: &Arc<KvRelease>,
        dyno: &Arc<KvRelease>,
        _inputs: &mut InstanceInputs<'_>,
    ) -> KvInstance {
        KvInstance {
            release: dyno.clone(),
            open: 0,
        }
    }
}

/// What a store's state lends the generated bindings.
pub struct KvView<'a> {
    table: &'a mut ResourceTable,
    kv: &'a mut KvInstance,
}

struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

impl KvView<'_> {
    fn open(&mut self, name: String) -> Result<Resource<Bucket>, KvError> {
        if self.kv.open >= MAX_OPEN {
            return Err(KvError::Other(format!(
                "an instance may hold {MAX_OPEN} buckets open at once; drop one first"
            )));
        }
        let store = self.kv.release.resolve(&name)?;
        let bucket = self.table.push(Bucket(store))?;
        self.kv.open += 1;
        Ok(bucket)
    }

    fn store(&self, bucket: &Resource<Bucket>) -> Result<Arc<dyn Kv>, KvError> {
        Ok(self.table.get(bucket)?.0.clone())
    }

    fn close(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        self.kv.open = self.kv.open.saturating_sub(1);
        Ok(())
    }
}

/// The conversion each version's generated error needs.
macro_rules! convert_error {
    ($error:ty) => {
        fn convert_error(&mut self, err: KvError) -> wasmtime::Result<$error> {
            type E = $error;
            match err {
                KvError::NoSuchStore => Ok(E::NoSuchStore),
                KvError::Other(message) => Ok(E::Other(message)),
                KvError::Trap(e) => Err(e),
            }
        }
    };
}

/// `store` and `batch`, the same at both versions but for the cursor.
macro_rules! store_and_batch {
    ($version:ident, $cursor:ty, $list:ident, $many:ty, $get_many:expr) => {
        impl $version::wasi::keyvalue::store::Host for KvView<'_> {
            async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, KvError> {
                KvView::open(self, identifier)
            }

            convert_error!($version::wasi::keyvalue::store::Error);
        }

        impl $version::wasi::keyvalue::store::HostBucket for KvView<'_> {
            async fn get(
                &mut self,
                bucket: Resource<Bucket>,
                key: String,
            ) -> Result<Option<Vec<u8>>, KvError> {
                Ok(self.store(&bucket)?.get(key).await?)
            }

            async fn set(
                &mut self,
                bucket: Resource<Bucket>,
                key: String,
                value: Vec<u8>,
            ) -> Result<(), KvError> {
                Ok(self.store(&bucket)?.set(key, value).await?)
            }

            async fn delete(
                &mut self,
                bucket: Resource<Bucket>,
                key: String,
            ) -> Result<(), KvError> {
                Ok(self.store(&bucket)?.delete(key).await?)
            }

            async fn exists(
                &mut self,
                bucket: Resource<Bucket>,
                key: String,
            ) -> Result<bool, KvError> {
                Ok(self.store(&bucket)?.exists(key).await?)
            }

            async fn list_keys(
                &mut self,
                bucket: Resource<Bucket>,
                cursor: Option<$cursor>,
            ) -> Result<$version::wasi::keyvalue::store::KeyResponse, KvError> {
                let page = $list(self.store(&bucket)?, cursor).await?;
                Ok($version::wasi::keyvalue::store::KeyResponse {
                    keys: page.keys,
                    cursor: page.next,
                })
            }

            async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
                self.close(bucket)
            }
        }

        impl $version::wasi::keyvalue::batch::Host for KvView<'_> {
            async fn get_many(
                &mut self,
                bucket: Resource<Bucket>,
                keys: Vec<String>,
            ) -> Result<$many, KvError> {
                let found = self.store(&bucket)?.get_many(keys).await?;
                Ok(found.into_iter().map($get_many).collect())
            }

            async fn set_many(
                &mut self,
                bucket: Resource<Bucket>,
                key_values: Vec<(String, Vec<u8>)>,
            ) -> Result<(), KvError> {
                Ok(self.store(&bucket)?.set_many(key_values).await?)
            }

            async fn delete_many(
                &mut self,
                bucket: Resource<Bucket>,
                keys: Vec<String>,
            ) -> Result<(), KvError> {
                Ok(self.store(&bucket)?.delete_many(keys).await?)
            }
        }
    };
}

async fn list_by_offset(
    store: Arc<dyn Kv>,
    cursor: Option<u64>,
) -> Result<crate::provider::kv::Page<u64>, String> {
    store.list_from(cursor.unwrap_or(0)).await
}

async fn list_by_key(
    store: Arc<dyn Kv>,
    cursor: Option<String>,
) -> Result<crate::provider::kv::Page<String>, String> {
    store.list_after(cursor).await
}

store_and_batch!(
    v1,
    u64,
    list_by_offset,
    Vec<Option<(String, Vec<u8>)>>,
    |(key, value): (String, Option<Vec<u8>>)| value.map(|value| (key, value))
);
store_and_batch!(
    v2,
    String,
    list_by_key,
    Vec<(String, Option<Vec<u8>>)>,
    |(key, value): (String, Option<Vec<u8>>)| (key, value)
);

impl v1::wasi::keyvalue::atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, KvError> {
        let sum = self
            .store(&bucket)?
            .increment(key, i128::from(delta), (0, i128::from(u64::MAX)))
            .await?;
        Ok(sum as u64)
    }
}

impl v2::wasi::keyvalue::atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> Result<i64, KvError> {
        let sum = self
            .store(&bucket)?
            .increment(
                key,
                i128::from(delta),
                (i128::from(i64::MIN), i128::from(i64::MAX)),
            )
            .await?;
        Ok(sum as i64)
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), v2::wasi::keyvalue::atomics::CasError>> {
        use v2::wasi::keyvalue::atomics::CasError;
        let taken = self.table.delete(cas)?;
        match taken
            .store
            .swap(taken.key.clone(), &taken.seen, value)
            .await
        {
            Ok(true) => Ok(Ok(())),
            Ok(false) => {
                // Changed since: a fresh compare-and-swap on what is there now.
                match taken.store.watch(taken.key.clone()).await {
                    Ok(seen) => {
                        let fresh = self.table.push(Cas {
                            store: taken.store,
                            key: taken.key,
                            seen,
                        })?;
                        Ok(Err(CasError::CasFailed(fresh)))
                    }
                    Err(e) => Ok(Err(CasError::StoreError(
                        v2::wasi::keyvalue::store::Error::Other(e),
                    ))),
                }
            }
            Err(e) => Ok(Err(CasError::StoreError(
                v2::wasi::keyvalue::store::Error::Other(e),
            ))),
        }
    }
}

impl v2::wasi::keyvalue::atomics::HostCas for KvView<'_> {
    async fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Resource<Cas>, KvError> {
        let store = self.store(&bucket)?;
        let seen = store.watch(key.clone()).await?;
        Ok(self.table.push(Cas { store, key, seen })?)
    }

    async fn current(&mut self, cas: Resource<Cas>) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.table.get(&cas)?.seen.value.clone())
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}
