//! `renga-blob`: object storage on the filesystem, one folder per add-on.
//!
//! An add-on's objects live under `DATA/addons/<id>/blob/`: a folder per
//! container, a file per object, each named by [`encode`]ing its name, so
//! that no name becomes `.`, `..` or a path (a `/` is `%2F`) and none starts
//! with `.`, which is kept for renga's own files (`.spool/`, `.tmp-*`,
//! `.trash-*`). Folders are private to renga's user (0700), files too
//! (0600). An object's size and creation time are its file's.
//!
//! Bytes on their way in go to a [`Spool`], a file in `blob/.spool/`; to
//! become an object it is linked into its container under a temporary name
//! and renamed over the object, so a reader sees the old object or the new
//! one, never a part of either, and a reader that opened the old one keeps
//! it. A copy is written to a temporary file beside its target the same way.
//!
//! The plan's quota bounds the sum of the add-on's object sizes plus the
//! bytes on their way in: a write that would pass it is refused with an
//! error that says so. Every filesystem call runs on tokio's blocking
//! threads. Providers know nothing of wasmtime.

use std::fmt::Write as _;
use std::fs;
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::{AddonRef, Backend, Quota, blocking};
use crate::store::new_id;
use crate::units::ByteSize;

/// Containers one add-on may hold.
pub const MAX_CONTAINERS: usize = 1000;
/// The longest container name, in bytes (encoded, at most three times as
/// long: well inside a file name).
pub const MAX_CONTAINER_NAME: usize = 63;
/// The longest encoded object name: a file name's limit.
const MAX_FILE_NAME: usize = 255;
/// Names one read of a listing gives at most.
pub const LIST_BATCH: u64 = 10_000;
/// Where values are spooled, beside the containers.
const SPOOL: &str = ".spool";
/// Files of a server that stopped mid-write are removed after this long.
const STALE: Duration = Duration::from_secs(24 * 60 * 60);

/// A name as a file name: ASCII letters, digits, `-`, `_` and `.` (but a
/// leading `.`) stay; every other byte is `%XX`, upper-case. One file name
/// per name, and the other way round.
pub fn encode(name: &str) -> String {
    let mut file = String::with_capacity(name.len());
    for (i, byte) in name.bytes().enumerate() {
        let keep =
            byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' || (byte == b'.' && i > 0);
        if keep {
            file.push(byte as char);
        } else {
            let _ = write!(file, "%{byte:02X}");
        }
    }
    file
}

/// The name a file name encodes, if it is one [`encode`] makes (renga's own
/// files and anything else put in the folder are not).
pub fn decode(file: &str) -> Option<String> {
    if file.is_empty() {
        return None;
    }
    let bytes = file.as_bytes();
    let mut name = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = file.get(i + 1..i + 3)?;
            name.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            name.push(bytes[i]);
            i += 1;
        }
    }
    let name = String::from_utf8(name).ok()?;
    (encode(&name) == file).then_some(name)
}

/// A container's folder name, or why `name` cannot be a container's.
fn container_file(name: &str) -> Result<String, String> {
    if name.is_empty() || name.len() > MAX_CONTAINER_NAME || name.chars().any(char::is_control) {
        return Err(format!(
            "{name:?} is not a container name: a container name is 1 to {MAX_CONTAINER_NAME} bytes of text without control characters"
        ));
    }
    Ok(encode(name))
}

/// An object's file name, or why `name` cannot be an object's.
fn object_file(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("an object name may not be empty".to_string());
    }
    let file = encode(name);
    if file.len() > MAX_FILE_NAME {
        return Err(format!(
            "an object name of {} bytes is too long: stored, it may take {MAX_FILE_NAME} bytes (letters, digits, `-`, `_` and `.` take one, any other byte three), and it would take {}",
            name.len(),
            file.len()
        ));
    }
    Ok(file)
}

/// Whether `name` may name an object (checked before a value is written).
pub fn check_object_name(name: &str) -> Result<(), String> {
    object_file(name).map(drop)
}

fn no_such_container(name: &str) -> String {
    format!("container {name:?} does not exist")
}

fn no_such_object(container: &str, name: &str) -> String {
    format!("object {name:?} does not exist in container {container:?}")
}

/// An object, by container and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectKey {
    pub container: String,
    pub name: String,
}

/// What a container's folder tells of it.
#[derive(Clone, Copy, Debug)]
pub struct ContainerInfo {
    /// Seconds since the Unix epoch.
    pub created_at: u64,
}

/// What an object's file tells of it.
#[derive(Clone, Copy, Debug)]
pub struct ObjectInfo {
    pub size: u64,
    /// Seconds since the Unix epoch: when these bytes were stored.
    pub created_at: u64,
}

/// When a file or folder was made (its birth time where the filesystem
/// keeps one, else its last change), in seconds since the Unix epoch.
fn created_at(meta: &fs::Metadata) -> u64 {
    meta.created()
        .or_else(|_| meta.modified())
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// One add-on's objects.
pub struct BlobStore {
    addon: AddonRef,
    /// `DATA/addons/<id>/blob`.
    dir: PathBuf,
    quota: Quota,
    /// Bytes held, counted from the files on first use. Its lock also
    /// orders the renames and removals that change them.
    usage: Mutex<Option<Usage>>,
}

#[derive(Debug, Default)]
struct Usage {
    /// The sum of the objects' sizes.
    objects: u64,
    /// Bytes spooled or being copied: not objects yet, but counted.
    reserved: u64,
}

impl Backend for BlobStore {
    fn set_quota(&self, bytes: u64) {
        self.quota.set(bytes);
    }
}

impl BlobStore {
    /// The store in the add-on's folder `dir` (nothing is read or made
    /// until the first call).
    pub fn new(addon: AddonRef, dir: PathBuf) -> BlobStore {
        BlobStore {
            dir: dir.join("blob"),
            quota: Quota::new(addon.quota),
            addon,
            usage: Mutex::new(None),
        }
    }

    pub fn addon(&self) -> &AddonRef {
        &self.addon
    }

    /// Runs `work` off the async workers.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&BlobStore) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let store = self.clone();
        blocking(move || work(&store)).await
    }

    // Blocking helpers: called on tokio's blocking threads only.

    /// Runs `work` on the usage (counted first, if it has not been).
    fn with_usage<T>(
        &self,
        work: impl FnOnce(&mut Usage) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        if usage.is_none() {
            *usage = Some(self.scan()?);
        }
        work(usage.as_mut().expect("counted above"))
    }

    /// Counts the objects' bytes, and removes what a server that stopped
    /// mid-write left behind.
    fn scan(&self) -> Result<Usage, String> {
        make_dir(&self.dir).map_err(|e| self.io("making its folder", &e))?;
        let mut usage = Usage::default();
        let read = |e: io::Error| self.io("reading its folder", &e);
        for entry in fs::read_dir(&self.dir).map_err(read)? {
            let entry = entry.map_err(read)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let path = entry.path();
            if name == SPOOL {
                remove_stale(&path, |_| true);
            } else if name.starts_with(".trash-") {
                let _ = fs::remove_dir_all(&path);
            } else if decode(&name).is_some() && entry.file_type().is_ok_and(|t| t.is_dir()) {
                usage.objects += objects_size(&path).map_err(read)?;
                remove_stale(&path, |file| file.starts_with(".tmp-"));
            }
        }
        Ok(usage)
    }

    /// Holds `bytes` of the quota for bytes on their way in.
    fn reserve(&self, bytes: u64) -> Result<(), String> {
        self.with_usage(|usage| {
            let after = usage
                .objects
                .saturating_add(usage.reserved)
                .saturating_add(bytes);
            if after > self.quota.get() {
                return Err(self.full(bytes, usage));
            }
            usage.reserved += bytes;
            Ok(())
        })
    }

    /// Gives back `bytes` held by [`BlobStore::reserve`].
    fn release(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(usage) = usage.as_mut() {
            usage.reserved = usage.reserved.saturating_sub(bytes);
        }
    }

    /// Renames the finished file `tmp` over `target`: an object of `len`
    /// bytes, `reserved` of which were held for it. Removes `tmp` if it
    /// fails (the reservation stays the caller's).
    fn put(&self, tmp: &Path, target: &Path, len: u64, reserved: u64) -> Result<(), String> {
        let outcome = self.with_usage(|usage| {
            let replaced = file_len(target);
            let more = len.saturating_sub(reserved).saturating_sub(replaced);
            if more > 0
                && usage
                    .objects
                    .saturating_add(usage.reserved)
                    .saturating_add(more)
                    > self.quota.get()
            {
                return Err(self.full(more, usage));
            }
            fs::rename(tmp, target).map_err(|e| self.io("storing an object", &e))?;
            usage.objects = usage.objects.saturating_sub(replaced).saturating_add(len);
            usage.reserved = usage.reserved.saturating_sub(reserved);
            Ok(())
        });
        if outcome.is_err() {
            let _ = fs::remove_file(tmp);
        }
        outcome
    }

    /// The refusal of a write that would pass the quota.
    fn full(&self, more: u64, usage: &Usage) -> String {
        format!(
            "{} is full: {} more would pass its plan's quota of {} ({} stored); `renga addons:upgrade` gives it a bigger plan",
            self.addon.name,
            ByteSize(more),
            ByteSize(self.quota.get()),
            ByteSize(usage.objects)
        )
    }

    /// A filesystem error in renga's words.
    fn io(&self, what: &str, e: &io::Error) -> String {
        match e.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => {
                format!("{} is full: the disk is full ({e})", self.addon.name)
            }
            _ => format!("{}: {what}: {e}", self.addon.name),
        }
    }

    /// A container's folder, if the container exists.
    fn find_container(&self, name: &str) -> Result<Option<PathBuf>, String> {
        let dir = self.dir.join(container_file(name)?);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => Ok(Some(dir)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io("reading a container", &e)),
        }
    }

    fn existing_container(&self, name: &str) -> Result<PathBuf, String> {
        self.find_container(name)?
            .ok_or_else(|| no_such_container(name))
    }

    /// Where an object of an existing container is (or would be).
    fn object_path(&self, key: &ObjectKey) -> Result<PathBuf, String> {
        let file = object_file(&key.name)?;
        Ok(self.existing_container(&key.container)?.join(file))
    }

    fn count_containers(&self) -> Result<usize, String> {
        let read = |e: io::Error| self.io("reading its folder", &e);
        let mut count = 0;
        for entry in fs::read_dir(&self.dir).map_err(read)? {
            let entry = entry.map_err(read)?;
            let is_container = entry.file_name().to_str().and_then(decode).is_some()
                && entry.file_type().is_ok_and(|t| t.is_dir());
            count += usize::from(is_container);
        }
        Ok(count)
    }

    // The calls.

    /// Makes a container (nothing, if it exists).
    pub async fn create_container(self: &Arc<Self>, name: String) -> Result<ContainerInfo, String> {
        self.run(move |store| {
            let dir = store.dir.join(container_file(&name)?);
            store.with_usage(|_| {
                if let Ok(meta) = fs::symlink_metadata(&dir)
                    && meta.is_dir()
                {
                    return Ok(ContainerInfo {
                        created_at: created_at(&meta),
                    });
                }
                if store.count_containers()? >= MAX_CONTAINERS {
                    return Err(format!(
                        "{} holds {MAX_CONTAINERS} containers, as many as an add-on may; delete one first",
                        store.addon.name
                    ));
                }
                match fs::DirBuilder::new().mode(0o700).create(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(store.io("making a container", &e)),
                }
                let meta =
                    fs::symlink_metadata(&dir).map_err(|e| store.io("making a container", &e))?;
                Ok(ContainerInfo {
                    created_at: created_at(&meta),
                })
            })
        })
        .await
    }

    pub async fn container_info(self: &Arc<Self>, name: String) -> Result<ContainerInfo, String> {
        self.run(move |store| {
            let dir = store.existing_container(&name)?;
            let meta =
                fs::symlink_metadata(&dir).map_err(|e| store.io("reading a container", &e))?;
            Ok(ContainerInfo {
                created_at: created_at(&meta),
            })
        })
        .await
    }

    pub async fn container_exists(self: &Arc<Self>, name: String) -> Result<bool, String> {
        self.run(move |store| Ok(store.find_container(&name)?.is_some()))
            .await
    }

    /// Deletes a container and its objects (nothing, if it does not exist).
    pub async fn delete_container(self: &Arc<Self>, name: String) -> Result<(), String> {
        self.run(move |store| {
            // Out of the way at once (a rename), removed after.
            let trash = store.with_usage(|usage| {
                let Some(dir) = store.find_container(&name)? else {
                    return Ok(None);
                };
                let size = objects_size(&dir).map_err(|e| store.io("reading a container", &e))?;
                let trash = store.dir.join(format!(".trash-{}", new_id()));
                fs::rename(&dir, &trash).map_err(|e| store.io("deleting a container", &e))?;
                usage.objects = usage.objects.saturating_sub(size);
                Ok(Some(trash))
            })?;
            if let Some(trash) = trash
                && let Err(e) = fs::remove_dir_all(&trash)
            {
                // Gone for the app already; the next count removes the rest.
                tracing::warn!(addon = %store.addon.name, "removing a deleted container: {e}");
            }
            Ok(())
        })
        .await
    }

    pub async fn object_info(self: &Arc<Self>, key: ObjectKey) -> Result<ObjectInfo, String> {
        self.run(move |store| {
            let path = store.object_path(&key)?;
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() => Ok(ObjectInfo {
                    size: meta.len(),
                    created_at: created_at(&meta),
                }),
                Ok(_) => Err(no_such_object(&key.container, &key.name)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Err(no_such_object(&key.container, &key.name))
                }
                Err(e) => Err(store.io("reading an object", &e)),
            }
        })
        .await
    }

    pub async fn has_object(self: &Arc<Self>, key: ObjectKey) -> Result<bool, String> {
        self.run(move |store| {
            let path = store.object_path(&key)?;
            match fs::symlink_metadata(&path) {
                Ok(meta) => Ok(meta.is_file()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(store.io("reading an object", &e)),
            }
        })
        .await
    }

    /// The bytes `start` to `end` (both included, as `get-data` counts) of
    /// an object, as it is now: a later write or delete does not change
    /// them. A range past the end is cut at the end.
    pub async fn open(
        self: &Arc<Self>,
        key: ObjectKey,
        start: u64,
        end: u64,
    ) -> Result<ObjectRange, String> {
        if end < start {
            return Err(format!("the range {start} to {end} ends before it starts"));
        }
        self.run(move |store| {
            let path = store.object_path(&key)?;
            let read = |e: io::Error| store.io("reading an object", &e);
            let mut file = open_object(&path)
                .map_err(read)?
                .ok_or_else(|| no_such_object(&key.container, &key.name))?;
            let size = file.metadata().map_err(read)?.len();
            let len = if start >= size {
                0
            } else {
                end.min(size - 1) - start + 1
            };
            if len > 0 {
                file.seek(SeekFrom::Start(start)).map_err(read)?;
            }
            Ok(ObjectRange {
                file,
                len,
                addon: store.addon.name.clone(),
            })
        })
        .await
    }

    /// Deletes objects of a container; a missing one is no error.
    pub async fn delete_objects(
        self: &Arc<Self>,
        container: String,
        names: Vec<String>,
    ) -> Result<(), String> {
        self.run(move |store| {
            let dir = store.existing_container(&container)?;
            let paths = names
                .iter()
                .map(|name| object_file(name).map(|file| dir.join(file)))
                .collect::<Result<Vec<_>, _>>()?;
            store.with_usage(|usage| {
                for path in paths {
                    let len = file_len(&path);
                    match fs::remove_file(&path) {
                        Ok(()) => usage.objects = usage.objects.saturating_sub(len),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(store.io("deleting an object", &e)),
                    }
                }
                Ok(())
            })
        })
        .await
    }

    /// Deletes every object of a container, and keeps the container.
    pub async fn clear(self: &Arc<Self>, container: String) -> Result<(), String> {
        self.run(move |store| {
            let dir = store.existing_container(&container)?;
            store.with_usage(|usage| {
                let read = |e: io::Error| store.io("clearing a container", &e);
                for entry in fs::read_dir(&dir).map_err(read)? {
                    let entry = entry.map_err(read)?;
                    let is_object = entry.file_name().to_str().and_then(decode).is_some();
                    let Ok(meta) = entry.metadata() else {
                        continue;
                    };
                    if is_object && meta.is_file() {
                        match fs::remove_file(entry.path()) {
                            Ok(()) => usage.objects = usage.objects.saturating_sub(meta.len()),
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => return Err(read(e)),
                        }
                    }
                }
                Ok(())
            })
        })
        .await
    }

    /// The names of a container's objects, read as they are asked for.
    pub async fn list(self: &Arc<Self>, container: String) -> Result<ObjectNames, String> {
        self.run(move |store| {
            let dir = store.existing_container(&container)?;
            let entries = fs::read_dir(&dir).map_err(|e| store.io("listing objects", &e))?;
            Ok(ObjectNames(Arc::new(Mutex::new(Listing {
                entries,
                peeked: None,
                done: false,
                addon: store.addon.name.clone(),
            }))))
        })
        .await
    }

    /// Copies an object, over whatever `to` holds. The target container
    /// must exist.
    pub async fn copy(self: &Arc<Self>, from: ObjectKey, to: ObjectKey) -> Result<(), String> {
        self.run(move |store| {
            let source = store.object_path(&from)?;
            let dir = store.existing_container(&to.container)?;
            let target = dir.join(object_file(&to.name)?);
            let read = |e: io::Error| store.io("copying an object", &e);
            let mut file = open_object(&source)
                .map_err(read)?
                .ok_or_else(|| no_such_object(&from.container, &from.name))?;
            if source == target {
                return Ok(());
            }
            let len = file.metadata().map_err(read)?.len();
            store.reserve(len)?;
            let tmp = temp_path(&dir);
            let copied = create_private(&tmp).and_then(|mut out| io::copy(&mut file, &mut out));
            let outcome = match copied {
                Ok(copied) => store.put(&tmp, &target, copied, len),
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    Err(read(e))
                }
            };
            if outcome.is_err() {
                store.release(len);
            }
            outcome
        })
        .await
    }

    /// Moves (renames) an object, over whatever `to` holds. The target
    /// container must exist.
    pub async fn rename(self: &Arc<Self>, from: ObjectKey, to: ObjectKey) -> Result<(), String> {
        self.run(move |store| {
            let source = store.object_path(&from)?;
            let target = store.object_path(&to)?;
            store.with_usage(|usage| {
                if !fs::symlink_metadata(&source).is_ok_and(|meta| meta.is_file()) {
                    return Err(no_such_object(&from.container, &from.name));
                }
                if source == target {
                    return Ok(());
                }
                let replaced = file_len(&target);
                fs::rename(&source, &target).map_err(|e| store.io("moving an object", &e))?;
                usage.objects = usage.objects.saturating_sub(replaced);
                Ok(())
            })
        })
        .await
    }

    /// A new, empty value to write into (its file is made on the first
    /// write).
    pub fn spool(self: &Arc<Self>) -> Spool {
        Spool(Arc::new(tokio::sync::Mutex::new(SpoolFile {
            store: self.clone(),
            file: None,
            len: 0,
            reserved: 0,
            stored: false,
            sealed: false,
            failed: None,
        })))
    }
}

/// Makes a folder (and its parents) private to renga's user.
fn make_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Makes a new file private to renga's user.
fn create_private(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Opens an object's file to read, if it is one (not a link, not a folder).
fn open_object(path: &Path) -> io::Result<Option<fs::File>> {
    match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(file) => Ok(file.metadata()?.is_file().then_some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A file's size; 0 if it is not a file.
fn file_len(path: &Path) -> u64 {
    fs::symlink_metadata(path)
        .ok()
        .filter(fs::Metadata::is_file)
        .map_or(0, |meta| meta.len())
}

/// The sum of the sizes of the objects in a container's folder.
fn objects_size(dir: &Path) -> io::Result<u64> {
    let mut size = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_str().and_then(decode).is_some()
            && let Ok(meta) = entry.metadata()
            && meta.is_file()
        {
            size += meta.len();
        }
    }
    Ok(size)
}

/// A new temporary name in a container's folder (never an object's: it
/// starts with `.`).
fn temp_path(dir: &Path) -> PathBuf {
    dir.join(format!(".tmp-{}", new_id()))
}

/// Removes the files of `dir` that `matches` picks and that have not
/// changed for [`STALE`].
fn remove_stale(dir: &Path, matches: impl Fn(&str) -> bool) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > STALE);
        if stale && entry.file_name().to_str().is_some_and(&matches) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Links `from` as `to` (the same bytes, no copy), or copies it where the
/// filesystem cannot link.
fn link_or_copy(from: &Path, to: &Path) -> io::Result<()> {
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    let mut source = fs::File::open(from)?;
    let mut out = create_private(to)?;
    io::copy(&mut source, &mut out).map(drop)
}

/// Some bytes of an object, held open: they stay readable if the object is
/// replaced or deleted.
#[derive(Debug)]
pub struct ObjectRange {
    /// Positioned at the range's start.
    file: fs::File,
    len: u64,
    addon: String,
}

impl ObjectRange {
    /// Its length in bytes.
    pub fn size(&self) -> u64 {
        self.len
    }

    /// All its bytes, if there are at most `limit`.
    pub async fn read_all(self, limit: u64) -> Result<Vec<u8>, String> {
        if self.len > limit {
            return Err(format!(
                "the value is {}, more than the {} one call may read at once; read it as a stream",
                ByteSize(self.len),
                ByteSize(limit)
            ));
        }
        blocking(move || {
            let mut bytes = Vec::with_capacity(self.len as usize);
            (&self.file)
                .take(self.len)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("{}: reading an object: {e}", self.addon))?;
            Ok(bytes)
        })
        .await
    }

    /// Its bytes as an async reader (tokio reads the file on its blocking
    /// threads, a chunk at a time).
    pub fn into_reader(self) -> tokio::io::Take<tokio::fs::File> {
        use tokio::io::AsyncReadExt;
        tokio::fs::File::from_std(self.file).take(self.len)
    }
}

/// The names of a container's objects, read from its folder as they are
/// asked for, in no particular order.
#[derive(Clone)]
pub struct ObjectNames(Arc<Mutex<Listing>>);

struct Listing {
    entries: fs::ReadDir,
    /// The name after the last one given (read to know whether the
    /// listing has ended).
    peeked: Option<String>,
    done: bool,
    addon: String,
}

impl ObjectNames {
    /// Up to `max` names (at most [`LIST_BATCH`] at once), and whether the
    /// listing has ended.
    pub async fn read(&self, max: u64) -> Result<(Vec<String>, bool), String> {
        let listing = self.0.clone();
        blocking(move || {
            let mut listing = listing.lock().unwrap_or_else(|e| e.into_inner());
            let mut names = Vec::new();
            let end = listing.take(max.min(LIST_BATCH), |name| names.push(name))?;
            Ok((names, end))
        })
        .await
    }

    /// Skips up to `max` names: how many it skipped, and whether the
    /// listing has ended.
    pub async fn skip(&self, max: u64) -> Result<(u64, bool), String> {
        let listing = self.0.clone();
        blocking(move || {
            let mut listing = listing.lock().unwrap_or_else(|e| e.into_inner());
            let mut skipped = 0;
            let end = listing.take(max, |_| skipped += 1)?;
            Ok((skipped, end))
        })
        .await
    }
}

impl Listing {
    fn next(&mut self) -> Result<Option<String>, String> {
        if let Some(name) = self.peeked.take() {
            return Ok(Some(name));
        }
        while !self.done {
            match self.entries.next() {
                None => self.done = true,
                Some(Err(e)) => return Err(format!("{}: listing objects: {e}", self.addon)),
                Some(Ok(entry)) => {
                    let name = entry.file_name().to_str().and_then(decode);
                    if let Some(name) = name
                        && entry.file_type().is_ok_and(|t| t.is_file())
                    {
                        return Ok(Some(name));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Gives up to `max` names to `each`; whether the listing has ended.
    fn take(&mut self, max: u64, mut each: impl FnMut(String)) -> Result<bool, String> {
        for _ in 0..max {
            match self.next()? {
                Some(name) => each(name),
                None => return Ok(true),
            }
        }
        match self.next()? {
            Some(name) => {
                self.peeked = Some(name);
                Ok(false)
            }
            None => Ok(true),
        }
    }
}

/// A value on its way in: bytes appended to a private file under the
/// add-on's `.spool/` (made on the first append, removed with the last
/// handle), stored as one or more objects once complete. Its bytes count
/// against the quota as they arrive.
#[derive(Clone)]
pub struct Spool(Arc<tokio::sync::Mutex<SpoolFile>>);

struct SpoolFile {
    store: Arc<BlobStore>,
    file: Option<(PathBuf, fs::File)>,
    len: u64,
    /// Quota held for its bytes, until they are first stored.
    reserved: u64,
    stored: bool,
    /// No more appends: it has been stored, or finished.
    sealed: bool,
    /// An append failed: it is incomplete, and is never stored.
    failed: Option<String>,
}

/// Why an append could not start.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The value is complete: stored or finished.
    Sealed,
    /// An append (or a store) is under way.
    Busy,
}

/// An append under way on a blocking thread. Dropping it does not stop
/// it: the spool stays taken until it lands.
pub struct Append(tokio::task::JoinHandle<Result<(), String>>);

impl Future for Append {
    type Output = Result<(), String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|joined| joined.unwrap_or_else(|e| Err(format!("the write failed: {e}"))))
    }
}

impl Spool {
    /// Starts appending `bytes`. The spool is taken now, so a later
    /// [`Spool::seal`] or [`Spool::store`] waits for this append.
    pub fn start_append(&self, bytes: Bytes) -> Result<Append, Refused> {
        let mut file = self.0.clone().try_lock_owned().map_err(|_| Refused::Busy)?;
        if file.sealed {
            return Err(Refused::Sealed);
        }
        Ok(Append(tokio::task::spawn_blocking(move || {
            file.append(&bytes)
        })))
    }

    /// Ends appends (waiting for one under way): its length, or why it is
    /// incomplete.
    pub async fn seal(&self) -> Result<u64, String> {
        let mut file = self.0.lock().await;
        file.sealed = true;
        match &file.failed {
            Some(e) => Err(format!("the value is incomplete: {e}")),
            None => Ok(file.len),
        }
    }

    /// Seals it and stores its bytes as the object `name` of `container`
    /// (over any object of that name).
    pub async fn store(&self, container: String, name: String) -> Result<(), String> {
        let mut file = self.0.clone().lock_owned().await;
        file.sealed = true;
        if let Some(e) = &file.failed {
            return Err(format!("the value was not stored: it is incomplete: {e}"));
        }
        blocking(move || file.store(&container, &name)).await
    }
}

impl SpoolFile {
    fn append(&mut self, bytes: &[u8]) -> Result<(), String> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let outcome = self.write(bytes);
        if let Err(e) = &outcome {
            self.failed = Some(e.clone());
        }
        outcome
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        let store = self.store.clone();
        let n = bytes.len() as u64;
        store.reserve(n)?;
        self.reserved += n;
        if self.file.is_none() {
            let dir = store.dir.join(SPOOL);
            let path = dir.join(new_id());
            let file = make_dir(&dir)
                .and_then(|()| create_private(&path))
                .map_err(|e| store.io("spooling a value", &e))?;
            self.file = Some((path, file));
        }
        let (_, file) = self.file.as_mut().expect("made above");
        file.write_all(bytes)
            .map_err(|e| store.io("spooling a value", &e))?;
        self.len += n;
        Ok(())
    }

    fn store(&mut self, container: &str, name: &str) -> Result<(), String> {
        let store = self.store.clone();
        let dir = store.existing_container(container)?;
        let target = dir.join(object_file(name)?);
        let tmp = temp_path(&dir);
        let made = match &self.file {
            Some((path, _)) => link_or_copy(path, &tmp),
            None => create_private(&tmp).map(drop),
        };
        made.map_err(|e| store.io("storing an object", &e))?;
        // The first store turns the bytes held for the spool into an
        // object's; a second one needs room of its own.
        let reserved = if self.stored { 0 } else { self.reserved };
        store.put(&tmp, &target, self.len, reserved)?;
        if !self.stored {
            self.stored = true;
            self.reserved = 0;
        }
        Ok(())
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        let store = self.store.clone();
        let reserved = self.reserved;
        let path = self.file.take().map(|(path, _)| path);
        let clean = move || {
            if let Some(path) = path {
                let _ = fs::remove_file(path);
            }
            store.release(reserved);
        };
        // Off the async workers when there are any (the last handle often
        // goes in a guest's call).
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(clean)),
            Err(_) => clean(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        store: Arc<BlobStore>,
        dir: PathBuf,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    fn fixture(quota: u64) -> Fixture {
        let dir =
            std::env::temp_dir().join(format!("renga-blob-{}-{}", std::process::id(), new_id()));
        let addon = AddonRef::local("a".into(), "renga-blob-test".into(), quota);
        Fixture {
            store: Arc::new(BlobStore::new(addon, dir.clone())),
            dir,
        }
    }

    fn key(container: &str, name: &str) -> ObjectKey {
        ObjectKey {
            container: container.into(),
            name: name.into(),
        }
    }

    /// The object sizes and reserved bytes the store counts.
    fn usage(store: &BlobStore) -> (u64, u64) {
        let usage = store.usage.lock().unwrap();
        let usage = usage.as_ref().expect("counted");
        (usage.objects, usage.reserved)
    }

    async fn put(store: &Arc<BlobStore>, container: &str, name: &str, bytes: &[u8]) {
        let spool = store.spool();
        for chunk in bytes.chunks(64 << 10) {
            spool
                .start_append(Bytes::copy_from_slice(chunk))
                .unwrap()
                .await
                .unwrap();
        }
        spool.store(container.into(), name.into()).await.unwrap();
    }

    async fn get(store: &Arc<BlobStore>, container: &str, name: &str) -> Vec<u8> {
        store
            .open(key(container, name), 0, u64::MAX)
            .await
            .unwrap()
            .read_all(u64::MAX)
            .await
            .unwrap()
    }

    #[test]
    fn names_are_encoded_into_one_safe_file_name() {
        assert_eq!(encode("photo.jpg"), "photo.jpg");
        assert_eq!(encode("a/b"), "a%2Fb");
        assert_eq!(encode(".."), "%2E.");
        assert_eq!(encode("."), "%2E");
        assert_eq!(encode(".hidden"), "%2Ehidden");
        assert_eq!(encode("100%"), "100%25");
        assert_eq!(encode("é"), "%C3%A9");
        for name in [
            "a/b",
            "..",
            ".",
            "../../etc/passwd",
            "100%",
            "é ü",
            "x\ny",
            "a.b.c",
        ] {
            let file = encode(name);
            assert!(!file.contains('/') && !file.starts_with('.'), "{file}");
            assert_eq!(decode(&file).as_deref(), Some(name));
        }
        // Only the one spelling encode makes is a name; renga's own files
        // and anything else are not.
        for file in [
            "%2f", "a%2", "%zz", "%+F", ".tmp-1", ".spool", "a b", "%41", "",
        ] {
            assert_eq!(decode(file), None, "{file}");
        }
        assert!(container_file("").is_err());
        assert!(container_file(&"c".repeat(MAX_CONTAINER_NAME + 1)).is_err());
        assert!(container_file("bad\u{7}name").is_err());
        assert_eq!(container_file("../up").unwrap(), "%2E.%2Fup");
        assert!(object_file("").is_err());
        assert!(object_file(&"é".repeat(60)).is_err());
        assert!(object_file(&"x".repeat(255)).is_ok());
    }

    #[tokio::test]
    async fn objects_are_stored_listed_read_and_deleted() {
        let f = fixture(64 << 20);
        let store = &f.store;
        let err = store.container_info("photos".into()).await.unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        store.create_container("photos".into()).await.unwrap();
        // Creating it again gives the same container.
        store.create_container("photos".into()).await.unwrap();
        assert!(store.container_exists("photos".into()).await.unwrap());
        assert!(!store.container_exists("videos".into()).await.unwrap());

        put(store, "photos", "../../escape", b"hello").await;
        put(store, "photos", "a/b/c.txt", b"").await;
        put(store, "photos", "big", &vec![7; 200_000]).await;
        // Nothing escaped the container's folder.
        let files: Vec<String> = fs::read_dir(f.dir.join("blob").join("photos"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(
            files
                .iter()
                .all(|f| !f.contains('/') && !f.starts_with('.'))
        );

        assert_eq!(get(store, "photos", "../../escape").await, b"hello");
        assert_eq!(get(store, "photos", "a/b/c.txt").await, b"");
        let info = store.object_info(key("photos", "big")).await.unwrap();
        assert_eq!(info.size, 200_000);
        assert!(info.created_at > 0);
        // Ranges count both ends and stop at the object's end.
        let part = store
            .open(key("photos", "../../escape"), 1, 3)
            .await
            .unwrap();
        assert_eq!(part.size(), 3);
        assert_eq!(part.read_all(10).await.unwrap(), b"ell");
        let tail = store
            .open(key("photos", "../../escape"), 3, 1000)
            .await
            .unwrap();
        assert_eq!(tail.read_all(10).await.unwrap(), b"lo");
        let past = store
            .open(key("photos", "../../escape"), 9, 9)
            .await
            .unwrap();
        assert_eq!(past.size(), 0);
        assert!(store.open(key("photos", "big"), 5, 4).await.is_err());
        let too_big = store.open(key("photos", "big"), 0, u64::MAX).await.unwrap();
        let err = too_big.read_all(1000).await.unwrap_err();
        assert!(err.contains("as a stream"), "{err}");
        let err = store.open(key("photos", "nope"), 0, 0).await.unwrap_err();
        assert!(err.contains("does not exist"), "{err}");

        // A listing, paged, with every name once.
        let names = store.list("photos".into()).await.unwrap();
        let (first, end) = names.read(2).await.unwrap();
        assert_eq!((first.len(), end), (2, false));
        let (rest, end) = names.read(10).await.unwrap();
        assert_eq!((rest.len(), end), (1, true));
        let mut all: Vec<String> = first.into_iter().chain(rest).collect();
        all.sort();
        assert_eq!(all, ["../../escape", "a/b/c.txt", "big"]);
        let names = store.list("photos".into()).await.unwrap();
        assert_eq!(names.skip(5).await.unwrap(), (3, true));

        assert_eq!(usage(store), (200_005, 0));
        store
            .delete_objects("photos".into(), vec!["big".into(), "never-was".into()])
            .await
            .unwrap();
        assert!(!store.has_object(key("photos", "big")).await.unwrap());
        assert_eq!(usage(store), (5, 0));
        store.clear("photos".into()).await.unwrap();
        assert!(
            !store
                .has_object(key("photos", "../../escape"))
                .await
                .unwrap()
        );
        assert!(store.container_exists("photos".into()).await.unwrap());
        put(store, "photos", "again", b"xyz").await;
        store.delete_container("photos".into()).await.unwrap();
        assert!(!store.container_exists("photos".into()).await.unwrap());
        assert_eq!(usage(store), (0, 0));
        // Deleting what is not there is no error.
        store.delete_container("photos".into()).await.unwrap();
        let err = store
            .delete_objects("photos".into(), vec!["x".into()])
            .await
            .unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[tokio::test]
    async fn a_full_store_refuses_writes_with_an_error() {
        let f = fixture(1 << 20);
        let store = &f.store;
        store.create_container("c".into()).await.unwrap();
        put(store, "c", "first", &vec![1; 600 << 10]).await;

        let spool = store.spool();
        spool
            .start_append(Bytes::from(vec![2u8; 300 << 10]))
            .unwrap()
            .await
            .unwrap();
        let err = spool
            .start_append(Bytes::from(vec![2u8; 300 << 10]))
            .unwrap()
            .await
            .unwrap_err();
        assert!(err.contains("renga-blob-test is full"), "{err}");
        // The value is incomplete: it is never stored.
        let err = spool.store("c".into(), "second".into()).await.unwrap_err();
        assert!(err.contains("incomplete"), "{err}");
        assert!(!store.has_object(key("c", "second")).await.unwrap());
        drop(spool);

        // A copy needs room too.
        let err = store
            .copy(key("c", "first"), key("c", "copy"))
            .await
            .unwrap_err();
        assert!(err.contains("is full"), "{err}");

        // A dropped spool gives its bytes and its file back (on a blocking
        // thread).
        let spooled = || {
            fs::read_dir(f.dir.join("blob").join(SPOOL))
                .unwrap()
                .count()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while usage(store).1 != 0 || spooled() != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}, {} spooled",
                usage(store),
                spooled()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(usage(store), (600 << 10, 0));

        // Room again once something is deleted. A replacement counts
        // beside the object it replaces while it is written, and only
        // itself once stored.
        store
            .delete_objects("c".into(), vec!["first".into()])
            .await
            .unwrap();
        put(store, "c", "second", &vec![3; 400 << 10]).await;
        put(store, "c", "second", &vec![4; 500 << 10]).await;
        assert_eq!(usage(store), (500 << 10, 0));
        assert_eq!(get(store, "c", "second").await, vec![4; 500 << 10]);

        // A plan change moves the quota of an open store.
        store.set_quota(4 << 20);
        store
            .copy(key("c", "second"), key("c", "third"))
            .await
            .unwrap();
        assert_eq!(usage(store), (1000 << 10, 0));
    }

    #[tokio::test]
    async fn a_value_can_be_stored_twice_and_not_written_after() {
        let f = fixture(8 << 20);
        let store = &f.store;
        store.create_container("a".into()).await.unwrap();
        store.create_container("b".into()).await.unwrap();
        let spool = store.spool();
        spool
            .start_append(Bytes::from_static(b"one value"))
            .unwrap()
            .await
            .unwrap();
        spool.store("a".into(), "x".into()).await.unwrap();
        spool.store("b".into(), "y".into()).await.unwrap();
        assert_eq!(
            spool.start_append(Bytes::from_static(b"more")).err(),
            Some(Refused::Sealed)
        );
        assert_eq!(spool.seal().await.unwrap(), 9);
        drop(spool);
        assert_eq!(get(store, "a", "x").await, b"one value");
        assert_eq!(get(store, "b", "y").await, b"one value");
        assert_eq!(usage(store).0, 18);
        // An empty value stores an empty object; a missing container is an
        // error.
        let empty = store.spool();
        empty.store("a".into(), "empty".into()).await.unwrap();
        assert_eq!(get(store, "a", "empty").await, b"");
        let err = store
            .spool()
            .store("zzz".into(), "x".into())
            .await
            .unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[tokio::test]
    async fn objects_copy_and_move_between_containers() {
        let f = fixture(8 << 20);
        let store = &f.store;
        store.create_container("src".into()).await.unwrap();
        store.create_container("dst".into()).await.unwrap();
        put(store, "src", "o", b"payload").await;
        put(store, "dst", "old", b"0123456789").await;

        store.copy(key("src", "o"), key("dst", "o2")).await.unwrap();
        assert_eq!(get(store, "src", "o").await, b"payload");
        assert_eq!(get(store, "dst", "o2").await, b"payload");
        assert_eq!(usage(store), (24, 0));

        // A reader keeps the bytes it opened when the object is replaced.
        let held = store.open(key("dst", "old"), 0, u64::MAX).await.unwrap();
        store
            .rename(key("dst", "o2"), key("dst", "old"))
            .await
            .unwrap();
        assert!(!store.has_object(key("dst", "o2")).await.unwrap());
        assert_eq!(get(store, "dst", "old").await, b"payload");
        assert_eq!(held.read_all(100).await.unwrap(), b"0123456789");
        assert_eq!(usage(store), (14, 0));

        store
            .rename(key("src", "o"), key("dst", "moved"))
            .await
            .unwrap();
        assert!(!store.has_object(key("src", "o")).await.unwrap());
        assert_eq!(get(store, "dst", "moved").await, b"payload");
        // Onto itself: nothing changes.
        store
            .copy(key("dst", "moved"), key("dst", "moved"))
            .await
            .unwrap();
        store
            .rename(key("dst", "moved"), key("dst", "moved"))
            .await
            .unwrap();
        assert_eq!(get(store, "dst", "moved").await, b"payload");
        assert_eq!(usage(store), (14, 0));

        let err = store
            .copy(key("src", "gone"), key("dst", "x"))
            .await
            .unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        let err = store
            .rename(key("dst", "moved"), key("nowhere", "x"))
            .await
            .unwrap_err();
        assert!(err.contains("does not exist"), "{err}");

        // A fresh store counts what is on disk.
        let again = Arc::new(BlobStore::new(store.addon().clone(), f.dir.clone()));
        assert!(again.container_exists("dst".into()).await.unwrap());
        again.create_container("more".into()).await.unwrap();
        assert_eq!(usage(&again), (14, 0));
    }

    #[tokio::test]
    async fn an_addon_holds_at_most_max_containers() {
        let f = fixture(1 << 20);
        let store = &f.store;
        for i in 0..MAX_CONTAINERS {
            store.create_container(format!("c{i}")).await.unwrap();
        }
        let err = store.create_container("one-more".into()).await.unwrap_err();
        assert!(err.contains("as many as an add-on may"), "{err}");
        // An existing one is still given.
        store.create_container("c0".into()).await.unwrap();
        let err = store.create_container(String::new()).await.unwrap_err();
        assert!(err.contains("not a container name"), "{err}");
    }
}
