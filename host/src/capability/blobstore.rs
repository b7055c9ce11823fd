//! Object storage (`wasi:blobstore@0.2.0-draft`: `blobstore`, `container`,
//! `types`) on the app's `renga-blob` add-on.
//!
//! Linked at `0.2.0-draft` as wasmCloud 1.x components import it (its
//! WIT in `wit/blobstore-0.2.0-draft`). A guest's containers are folders of
//! one add-on, the app's default `renga-blob` (attached as `RENGA_BLOB`,
//! else the oldest), under the names the guest gives them; under `renga
//! dev`, of a local add-on in the app's `.renga/`.
//!
//! Values stream both ways through `wasi:io` streams that wasmtime-wasi's
//! `wasi:io` serves from the store's resource table: an `outgoing-value`'s
//! stream appends to a spool file, an `incoming-value`'s reads the object's
//! file a chunk at a time, so a large object is never held in memory.
//!
//! An outgoing value is stored when its bytes are complete: at
//! `write-data`, if the guest has dropped its stream, else at `finish`
//! (wasmCloud's guests call `write-data` first and write after). A value
//! dropped without `finish` is not stored, as the WIT says. Its stream is
//! not a child resource of the value: a `finish` that comes before the
//! stream is dropped ends it rather than trapping.
//!
//! Failures (a missing container, a full add-on, a bad name, too many open
//! resources) are `error` values, never traps.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable, ResourceTableError};
use wasmtime_wasi::p2::pipe::AsyncReadStream;
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{
    DynInputStream, DynOutputStream, InputStream, OutputStream, StreamError, StreamResult,
};

use super::{
    Attached, Capability, DynoInputs, ImportName, InstanceInputs, ReleaseInputs, add_on_hint,
};
use crate::provider::blob::{self, Append, BlobStore, ObjectKey, ObjectRange, Refused, Spool};
use crate::provider::{AddonRef, Open};
use crate::runtime::DynoState;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/blobstore-0.2.0-draft",
        world: "wasi:blobstore/imports",
        imports: { default: async | trappable },
        with: {
            // The streams values travel through are wasmtime-wasi's, in
            // the same table: its `wasi:io` serves them.
            "wasi:io": wasmtime_wasi_io::bindings::wasi::io,
            "wasi:blobstore/container.container": super::Container,
            "wasi:blobstore/container.stream-object-names": super::ObjectNames,
            "wasi:blobstore/types.outgoing-value": super::OutgoingValue,
            "wasi:blobstore/types.incoming-value": super::IncomingValue,
        },
        trappable_error_type: {
            "wasi:blobstore/types.error" => super::BlobError,
        },
    });
}

use bindings::wasi::blobstore::{blobstore, container, types};

/// The service whose add-ons back this capability.
pub const SERVICE: &str = "renga-blob";
/// The attachment name the default add-on has.
pub const DEFAULT_ATTACHMENT: &str = "RENGA_BLOB";
/// Containers, values, listings and value streams one instance may hold
/// open at once.
const MAX_OPEN: usize = 64;
/// Bytes one write to a value's stream may carry (`check-write`).
const WRITE_CHUNK: usize = 64 << 10;
/// The largest value `incoming-value-consume-sync` returns: a larger one is
/// read as a stream.
const MAX_SYNC_READ: u64 = 64 << 20;
/// The quota of `renga dev`'s local add-on.
const LOCAL_QUOTA: u64 = 1 << 30;

pub struct Blobstore {
    stores: Arc<Open<BlobStore>>,
    /// `renga dev`: an app with no `renga-blob` add-on gets a local one.
    local: bool,
}

impl Blobstore {
    pub fn new(stores: Arc<Open<BlobStore>>, local: bool) -> Blobstore {
        Blobstore { stores, local }
    }

    /// The store of an add-on (opened on first use).
    pub fn store(&self, addon: &AddonRef) -> Arc<BlobStore> {
        self.stores
            .get(addon, |dir| BlobStore::new(addon.clone(), dir))
    }
}

/// The add-on one release reaches.
pub struct BlobRelease {
    store: Option<Arc<BlobStore>>,
}

/// One instance's object storage: the release's add-on, and how many of
/// its resources the instance holds.
pub struct BlobInstance {
    release: Arc<BlobRelease>,
    /// Made on first use: most instances never open object storage, and
    /// this runs for every store on the request path.
    open: Option<Arc<AtomicUsize>>,
}

/// One of an instance's open resources, given back when it is dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A container, as a guest holds it.
pub struct Container {
    store: Arc<BlobStore>,
    name: String,
    _slot: Slot,
}

/// A listing of a container's objects, as a guest holds it.
pub struct ObjectNames {
    names: blob::ObjectNames,
    _slot: Slot,
}

/// An object's bytes (or some of them), as a guest holds them.
pub struct IncomingValue {
    range: ObjectRange,
    slot: Slot,
}

/// A value being written.
pub struct OutgoingValue {
    /// Its spool, or why it was refused (`new-outgoing-value` cannot fail:
    /// its first use does).
    spool: Result<Spool, String>,
    /// Its stream once taken; dead once the guest has dropped it.
    stream: Option<Weak<()>>,
    /// Where `finish` stores it.
    pending: Vec<(String, String)>,
    _slot: Option<Slot>,
}

/// Why a call failed: a value for the guest, or (a resource the guest does
/// not hold) a trap.
pub enum BlobError {
    Guest(String),
    Trap(wasmtime::Error),
}

impl From<String> for BlobError {
    fn from(e: String) -> Self {
        BlobError::Guest(e)
    }
}

impl From<ResourceTableError> for BlobError {
    fn from(e: ResourceTableError) -> Self {
        BlobError::Trap(e.into())
    }
}

impl Capability for Blobstore {
    type Release = Arc<BlobRelease>;
    type Dyno = Arc<BlobRelease>;
    type Instance = BlobInstance;

    fn link(&self, linker: &mut Linker<DynoState>) -> anyhow::Result<()> {
        fn view(state: &mut DynoState) -> BlobView<'_> {
            state.meter().addon_call();
            BlobView {
                table: &mut state.table,
                blob: &mut state.caps.blobstore,
            }
        }
        // Interface by interface: `wasi:io` is linked already (by the
        // environment), and linking it again would clash.
        types::add_to_linker::<DynoState, HasBlob>(linker, view)?;
        container::add_to_linker::<DynoState, HasBlob>(linker, view)?;
        blobstore::add_to_linker::<DynoState, HasBlob>(linker, view)?;
        Ok(())
    }

    fn claims(&self, import: &ImportName) -> bool {
        import.is("wasi", "blobstore", &["0.2.0-draft"])
    }

    fn configure(&self, release: &ReleaseInputs<'_>) -> anyhow::Result<Arc<BlobRelease>> {
        let attached = Attached::new(release.addons, &[SERVICE], &[DEFAULT_ATTACHMENT], |addon| {
            Ok(self.store(addon))
        });
        let store = match attached.find("default") {
            Some(reached) => reached.ok(),
            None if self.local => Some(self.store(&AddonRef::local(
                "blobstore".to_string(),
                "the local blob store".to_string(),
                LOCAL_QUOTA,
            ))),
            None => None,
        };
        Ok(Arc::new(BlobRelease { store }))
    }

    fn check(&self, release: &Arc<BlobRelease>, _import: &ImportName, app: &str) -> Option<String> {
        release
            .store
            .is_none()
            .then(|| add_on_hint("object storage", SERVICE, app))
    }

    fn dyno(&self, release: &Arc<BlobRelease>, _dyno: &DynoInputs<'_>) -> Arc<BlobRelease> {
        release.clone()
    }

    fn instance(
        &self,
        _release: &Arc<BlobRelease>,
        dyno: &Arc<BlobRelease>,
        _inputs: &mut InstanceInputs<'_>,
    ) -> BlobInstance {
        BlobInstance {
            release: dyno.clone(),
            open: None,
        }
    }
}

/// What a store's state lends the generated bindings.
pub struct BlobView<'a> {
    table: &'a mut ResourceTable,
    blob: &'a mut BlobInstance,
}

struct HasBlob;

impl HasData for HasBlob {
    type Data<'a> = BlobView<'a>;
}

impl BlobView<'_> {
    /// The app's add-on.
    fn store(&self) -> Result<Arc<BlobStore>, String> {
        self.blob.release.store.clone().ok_or_else(|| {
            format!("this app has no object storage add-on: `renga addons:create {SERVICE}` gives it one")
        })
    }

    /// Room for one more open resource.
    fn slot(&mut self) -> Result<Slot, String> {
        let open = self.blob.open.get_or_insert_with(Arc::default);
        if open.load(Ordering::Relaxed) >= MAX_OPEN {
            return Err(format!(
                "an instance may hold {MAX_OPEN} containers, values, listings and value streams open at once; drop one first"
            ));
        }
        open.fetch_add(1, Ordering::Relaxed);
        Ok(Slot(open.clone()))
    }

    /// A container's add-on and name.
    fn container(
        &self,
        container: &Resource<Container>,
    ) -> Result<(Arc<BlobStore>, String), BlobError> {
        let container = self.table.get(container)?;
        Ok((container.store.clone(), container.name.clone()))
    }

    /// An object of a container.
    fn object(
        &self,
        container: &Resource<Container>,
        name: String,
    ) -> Result<(Arc<BlobStore>, ObjectKey), BlobError> {
        let (store, container) = self.container(container)?;
        Ok((store, ObjectKey { container, name }))
    }

    /// Gives the guest a container that exists.
    fn open_container(
        &mut self,
        store: Arc<BlobStore>,
        name: String,
        slot: Slot,
    ) -> Result<Resource<Container>, BlobError> {
        Ok(self.table.push(Container {
            store,
            name,
            _slot: slot,
        })?)
    }
}

fn key(id: types::ObjectId) -> ObjectKey {
    ObjectKey {
        container: id.container,
        name: id.object,
    }
}

impl blobstore::Host for BlobView<'_> {
    async fn create_container(&mut self, name: String) -> Result<Resource<Container>, BlobError> {
        let store = self.store()?;
        let slot = self.slot()?;
        store.create_container(name.clone()).await?;
        self.open_container(store, name, slot)
    }

    async fn get_container(&mut self, name: String) -> Result<Resource<Container>, BlobError> {
        let store = self.store()?;
        let slot = self.slot()?;
        store.container_info(name.clone()).await?;
        self.open_container(store, name, slot)
    }

    async fn delete_container(&mut self, name: String) -> Result<(), BlobError> {
        Ok(self.store()?.delete_container(name).await?)
    }

    async fn container_exists(&mut self, name: String) -> Result<bool, BlobError> {
        Ok(self.store()?.container_exists(name).await?)
    }

    async fn copy_object(
        &mut self,
        src: types::ObjectId,
        dest: types::ObjectId,
    ) -> Result<(), BlobError> {
        Ok(self.store()?.copy(key(src), key(dest)).await?)
    }

    async fn move_object(
        &mut self,
        src: types::ObjectId,
        dest: types::ObjectId,
    ) -> Result<(), BlobError> {
        Ok(self.store()?.rename(key(src), key(dest)).await?)
    }
}

impl container::Host for BlobView<'_> {}

impl container::HostContainer for BlobView<'_> {
    async fn name(&mut self, this: Resource<Container>) -> Result<String, BlobError> {
        Ok(self.table.get(&this)?.name.clone())
    }

    async fn info(
        &mut self,
        this: Resource<Container>,
    ) -> Result<types::ContainerMetadata, BlobError> {
        let (store, name) = self.container(&this)?;
        let info = store.container_info(name.clone()).await?;
        Ok(types::ContainerMetadata {
            name,
            created_at: info.created_at,
        })
    }

    async fn get_data(
        &mut self,
        this: Resource<Container>,
        name: String,
        start: u64,
        end: u64,
    ) -> Result<Resource<IncomingValue>, BlobError> {
        let (store, key) = self.object(&this, name)?;
        let slot = self.slot()?;
        let range = store.open(key, start, end).await?;
        Ok(self.table.push(IncomingValue { range, slot })?)
    }

    async fn write_data(
        &mut self,
        this: Resource<Container>,
        name: String,
        data: Resource<OutgoingValue>,
    ) -> Result<(), BlobError> {
        let (_, container) = self.container(&this)?;
        blob::check_object_name(&name)?;
        let value = self.table.get_mut(&data)?;
        let spool = value.spool.clone()?;
        let written = value
            .stream
            .as_ref()
            .is_some_and(|stream| stream.strong_count() == 0);
        if !written {
            // Its bytes are still to come: stored at `finish`.
            value.pending.push((container, name));
            return Ok(());
        }
        Ok(spool.store(container, name).await?)
    }

    async fn list_objects(
        &mut self,
        this: Resource<Container>,
    ) -> Result<Resource<ObjectNames>, BlobError> {
        let (store, container) = self.container(&this)?;
        let slot = self.slot()?;
        let names = store.list(container).await?;
        Ok(self.table.push(ObjectNames { names, _slot: slot })?)
    }

    async fn delete_object(
        &mut self,
        this: Resource<Container>,
        name: String,
    ) -> Result<(), BlobError> {
        let (store, container) = self.container(&this)?;
        Ok(store.delete_objects(container, vec![name]).await?)
    }

    async fn delete_objects(
        &mut self,
        this: Resource<Container>,
        names: Vec<String>,
    ) -> Result<(), BlobError> {
        let (store, container) = self.container(&this)?;
        Ok(store.delete_objects(container, names).await?)
    }

    async fn has_object(
        &mut self,
        this: Resource<Container>,
        name: String,
    ) -> Result<bool, BlobError> {
        let (store, key) = self.object(&this, name)?;
        Ok(store.has_object(key).await?)
    }

    async fn object_info(
        &mut self,
        this: Resource<Container>,
        name: String,
    ) -> Result<types::ObjectMetadata, BlobError> {
        let (store, key) = self.object(&this, name)?;
        let info = store.object_info(key.clone()).await?;
        Ok(types::ObjectMetadata {
            name: key.name,
            container: key.container,
            created_at: info.created_at,
            size: info.size,
        })
    }

    async fn clear(&mut self, this: Resource<Container>) -> Result<(), BlobError> {
        let (store, container) = self.container(&this)?;
        Ok(store.clear(container).await?)
    }

    async fn drop(&mut self, this: Resource<Container>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl container::HostStreamObjectNames for BlobView<'_> {
    async fn read_stream_object_names(
        &mut self,
        this: Resource<ObjectNames>,
        len: u64,
    ) -> Result<(Vec<String>, bool), BlobError> {
        let names = self.table.get(&this)?.names.clone();
        Ok(names.read(len).await?)
    }

    async fn skip_stream_object_names(
        &mut self,
        this: Resource<ObjectNames>,
        num: u64,
    ) -> Result<(u64, bool), BlobError> {
        let names = self.table.get(&this)?.names.clone();
        Ok(names.skip(num).await?)
    }

    async fn drop(&mut self, this: Resource<ObjectNames>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl types::Host for BlobView<'_> {
    fn convert_error(&mut self, err: BlobError) -> wasmtime::Result<types::Error> {
        match err {
            BlobError::Guest(message) => Ok(message),
            BlobError::Trap(e) => Err(e),
        }
    }
}

impl types::HostOutgoingValue for BlobView<'_> {
    async fn new_outgoing_value(&mut self) -> wasmtime::Result<Resource<OutgoingValue>> {
        let (spool, slot) = match (self.store(), self.slot()) {
            (Ok(store), Ok(slot)) => (Ok(store.spool()), Some(slot)),
            (Err(why), _) | (_, Err(why)) => (Err(why), None),
        };
        Ok(self.table.push(OutgoingValue {
            spool,
            stream: None,
            pending: Vec::new(),
            _slot: slot,
        })?)
    }

    async fn outgoing_value_write_body(
        &mut self,
        this: Resource<OutgoingValue>,
    ) -> wasmtime::Result<Result<Resource<DynOutputStream>, ()>> {
        // The error has no room for a reason: a refused value, a stream
        // taken already, or too many open.
        let Ok(slot) = self.slot() else {
            return Ok(Err(()));
        };
        let value = self.table.get_mut(&this)?;
        let spool = match (&value.spool, &value.stream) {
            (Ok(spool), None) => spool.clone(),
            _ => return Ok(Err(())),
        };
        let token = Arc::new(());
        value.stream = Some(Arc::downgrade(&token));
        let writer: DynOutputStream = Box::new(ValueWriter {
            spool,
            state: Writing::Ready,
            _token: token,
            _slot: slot,
        });
        Ok(Ok(self.table.push(writer)?))
    }

    async fn finish(&mut self, this: Resource<OutgoingValue>) -> Result<(), BlobError> {
        let value = self.table.delete(this)?;
        let spool = value.spool?;
        spool.seal().await?;
        for (container, name) in value.pending {
            spool.store(container, name).await?;
        }
        Ok(())
    }

    async fn drop(&mut self, this: Resource<OutgoingValue>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl types::HostIncomingValue for BlobView<'_> {
    async fn incoming_value_consume_sync(
        &mut self,
        this: Resource<IncomingValue>,
    ) -> Result<Vec<u8>, BlobError> {
        let value = self.table.delete(this)?;
        Ok(value.range.read_all(MAX_SYNC_READ).await?)
    }

    async fn incoming_value_consume_async(
        &mut self,
        this: Resource<IncomingValue>,
    ) -> Result<Resource<DynInputStream>, BlobError> {
        let IncomingValue { range, slot } = self.table.delete(this)?;
        let reader: DynInputStream = Box::new(ValueReader {
            stream: AsyncReadStream::new(range.into_reader()),
            _slot: slot,
        });
        Ok(self.table.push(reader)?)
    }

    async fn size(&mut self, this: Resource<IncomingValue>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&this)?.range.size())
    }

    async fn drop(&mut self, this: Resource<IncomingValue>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

/// An outgoing value's `output-stream`: each write is appended to the
/// value's spool on a blocking thread, and `check-write` says 0 until it
/// has landed, so at most one chunk is in memory.
struct ValueWriter {
    spool: Spool,
    state: Writing,
    /// Dropped with the stream: tells the value its bytes are complete.
    _token: Arc<()>,
    _slot: Slot,
}

enum Writing {
    Ready,
    Busy(Append),
    Failed(String),
    Closed,
}

impl ValueWriter {
    /// The error of a closed stream: the failure that closed it, once, and
    /// `closed` after.
    fn usable(&mut self) -> StreamResult<()> {
        if !matches!(self.state, Writing::Failed(_) | Writing::Closed) {
            return Ok(());
        }
        match std::mem::replace(&mut self.state, Writing::Closed) {
            Writing::Failed(e) => Err(StreamError::LastOperationFailed(wasmtime::format_err!(
                "{e}"
            ))),
            _ => Err(StreamError::Closed),
        }
    }
}

#[async_trait::async_trait]
impl OutputStream for ValueWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.usable()?;
        if !matches!(self.state, Writing::Ready) || bytes.len() > WRITE_CHUNK {
            return Err(StreamError::trap(
                "write not permitted: more than check-write allowed",
            ));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        match self.spool.start_append(bytes) {
            Ok(append) => {
                self.state = Writing::Busy(append);
                Ok(())
            }
            // Finished (or stored) while the guest still held the stream.
            Err(Refused::Sealed) => {
                self.state = Writing::Closed;
                Err(StreamError::Closed)
            }
            Err(Refused::Busy) => Err(StreamError::trap(
                "write not permitted: a write is under way",
            )),
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        // Nothing is buffered here: a write goes to the file as it is made,
        // and `check-write` waits for it.
        self.usable()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.usable()?;
        Ok(match self.state {
            Writing::Busy(_) => 0,
            _ => WRITE_CHUNK,
        })
    }

    async fn cancel(&mut self) {
        // Dropped: the write under way lands first, so the value is
        // complete when `write-data` or `finish` looks.
        if let Writing::Busy(append) = &mut self.state {
            let _ = append.await;
        }
        self.state = Writing::Closed;
    }
}

#[async_trait::async_trait]
impl Pollable for ValueWriter {
    async fn ready(&mut self) {
        if let Writing::Busy(append) = &mut self.state {
            self.state = match append.await {
                Ok(()) => Writing::Ready,
                Err(e) => Writing::Failed(e),
            };
        }
    }
}

/// An incoming value's `input-stream`: wasmtime-wasi's reader over the
/// object's file (tokio reads it on its blocking threads, 64 KiB at a
/// time), holding one of the instance's slots.
struct ValueReader {
    stream: AsyncReadStream,
    _slot: Slot,
}

#[async_trait::async_trait]
impl InputStream for ValueReader {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        self.stream.read(size)
    }

    async fn cancel(&mut self) {
        self.stream.cancel().await;
    }
}

#[async_trait::async_trait]
impl Pollable for ValueReader {
    async fn ready(&mut self) {
        self.stream.ready().await;
    }
}
