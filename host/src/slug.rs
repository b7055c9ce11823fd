//! slug: the immutable archive a release runs.
//!
//! A slug is a gzipped tarball (the component(s), the Procfile, static files)
//! stored once under `DATA/slugs/` by its sha256, and unpacked beside it the
//! first time a release needs it. The archive is checked when it is stored
//! (only files, folders and links, inside limits) and its components' digests
//! are recorded; unpacking checks the archive against its sha256 again, and
//! loading a component checks it against its recorded digest, so a file
//! changed on disk is never run. This module owns slug records and files;
//! it never compiles or runs what is inside.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use crate::archive::{self, ArchiveError, Limits};
use crate::store::{Blobs, Db, StoreError, Tree, new_id, now_ms};

/// Heroku's slug size limit.
pub const DEFAULT_MAX_BYTES: u64 = 500 << 20;

/// Slug files younger than this are never collected.
const GRACE: std::time::Duration = std::time::Duration::from_secs(10 * 60);

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Slug {
    pub id: String,
    /// The app's id.
    pub app: String,
    /// Process type to command, as the slug was created with.
    pub process_types: BTreeMap<String, String>,
    /// `sha256` of the archive, hex; `None` until its blob is uploaded.
    pub checksum: Option<String>,
    pub size: u64,
    /// A short description of where the slug came from (a commit, a file).
    pub commit: Option<String>,
    pub created_at: u64,
    /// The sha256 of each `.wasm` file in the archive, by path.
    #[serde(default)]
    pub components: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SlugError {
    #[error("the slug is refused: {0}")]
    Archive(ArchiveError),
    #[error("the slug has no blob yet: upload one first")]
    NoBlob,
    #[error(
        "the slug is larger than the {} limit: list what the app does not need at run time in .slugignore",
        crate::units::ByteSize(*.0)
    )]
    TooLarge(u64),
    #[error(
        "{path} in the slug does not match the slug's archive (it was changed on disk); it was unpacked again from the archive"
    )]
    Tampered { path: String },
    /// The stored archive no longer reads as it did when it was stored: the
    /// server's disk, not the slug, is at fault.
    #[error("the stored slug archive is damaged: {0}")]
    Damaged(ArchiveError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0:#}")]
    Io(anyhow::Error),
}

impl SlugError {
    /// Whether the slug (what the user uploaded or built) is at fault, as
    /// opposed to the server's disk.
    pub fn is_bad_input(&self) -> bool {
        match self {
            SlugError::Archive(e) => e.is_bad_input(),
            SlugError::NoBlob | SlugError::TooLarge(_) => true,
            SlugError::Tampered { .. }
            | SlugError::Damaged(_)
            | SlugError::Store(_)
            | SlugError::Io(_) => false,
        }
    }
}

impl From<ArchiveError> for SlugError {
    fn from(e: ArchiveError) -> Self {
        match e {
            ArchiveError::Io(e) => SlugError::Io(e.into()),
            other => SlugError::Archive(other),
        }
    }
}

#[derive(Clone)]
pub struct Slugs {
    slugs: Tree,
    dir: PathBuf,
    limits: Limits,
    /// On a cluster: every slug archive, so that any host can run any
    /// release; `dir` is then this host's cache of it.
    shared: Option<Blobs>,
}

fn key(app: &str, id: &str) -> String {
    format!("{app}/{id}")
}

impl Slugs {
    pub fn open(db: &Db, dir: &Path, limits: Limits) -> anyhow::Result<Slugs> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Slugs {
            slugs: db.tree("slugs")?,
            dir: dir.to_path_buf(),
            limits,
            shared: db.blobs("slugs")?,
        })
    }

    /// Removes what an earlier run left half done: uploads and unpacks in
    /// progress when it stopped. Call before serving.
    pub fn clean_leftovers(&self) -> anyhow::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if (name.starts_with(".upload-")
                || name.starts_with(".unpack-")
                || name.starts_with(".fetch-"))
                && remove_entry(&entry)
            {
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub fn create(
        &self,
        app: &str,
        process_types: BTreeMap<String, String>,
        commit: Option<String>,
    ) -> Result<Slug, StoreError> {
        let slug = Slug {
            id: new_id(),
            app: app.to_string(),
            process_types,
            checksum: None,
            size: 0,
            commit,
            created_at: now_ms(),
            components: BTreeMap::new(),
        };
        self.slugs.put(key(app, &slug.id), &slug)?;
        Ok(slug)
    }

    pub fn find(&self, app: &str, id: &str) -> Result<Option<Slug>, StoreError> {
        self.slugs.get(key(app, id))
    }

    /// A place to stream an upload to before [`Slugs::commit_blob`].
    pub fn upload_path(&self) -> PathBuf {
        self.dir.join(format!(".upload-{}", new_id()))
    }

    /// Checks an uploaded archive, files it under its checksum (fsynced) and
    /// records it on the slug with its components' digests. Blocking: call
    /// from a blocking task.
    pub fn commit_blob(
        &self,
        slug: &Slug,
        upload: &Path,
        checksum: &str,
        size: u64,
    ) -> Result<Slug, SlugError> {
        let scanned = archive::open(upload)
            .map_err(ArchiveError::from)
            .and_then(|reader| archive::scan(reader, self.limits));
        let contents = match scanned {
            Ok(contents) => contents,
            Err(e) => {
                let _ = std::fs::remove_file(upload);
                return Err(e.into());
            }
        };
        let file = std::fs::File::open(upload).map_err(|e| SlugError::Io(e.into()))?;
        file.sync_all().map_err(|e| SlugError::Io(e.into()))?;
        let stored = self.archive_path(checksum);
        std::fs::rename(upload, &stored).map_err(|e| SlugError::Io(e.into()))?;
        if let Some(shared) = &self.shared {
            shared.put_file(&format!("{checksum}.tgz"), &stored)?;
        }
        let mut slug = slug.clone();
        slug.checksum = Some(checksum.to_string());
        slug.size = size;
        slug.components = contents.components;
        self.slugs.put(key(&slug.app, &slug.id), &slug)?;
        Ok(slug)
    }

    /// The slug's files, unpacked once into `DATA/slugs/<checksum>/` from an
    /// archive whose sha256 is checked on the way. Blocking: call from a
    /// blocking task.
    pub fn unpacked(&self, slug: &Slug) -> Result<PathBuf, SlugError> {
        let checksum = slug.checksum.as_deref().ok_or(SlugError::NoBlob)?;
        let dir = self.dir.join(checksum);
        if dir.is_dir() {
            return Ok(dir);
        }
        let staging = self.dir.join(format!(".unpack-{}", new_id()));
        if let Err(e) = self.read_stored(checksum, |reader| {
            archive::unpack(reader, &staging, self.limits)
        }) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        match std::fs::rename(&staging, &dir) {
            Ok(()) => Ok(dir),
            Err(_) if dir.is_dir() => {
                let _ = std::fs::remove_dir_all(&staging);
                Ok(dir)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                Err(SlugError::Io(e.into()))
            }
        }
    }

    /// Forgets the unpacked copy of a slug (after a file in it did not match
    /// its digest), so that the next [`Slugs::unpacked`] makes a fresh one.
    pub fn discard_unpacked(&self, slug: &Slug) {
        if let Some(checksum) = &slug.checksum {
            let dir = self.dir.join(checksum);
            let trash = self.dir.join(format!(".unpack-{}", new_id()));
            if std::fs::rename(&dir, &trash).is_ok() {
                let _ = std::fs::remove_dir_all(&trash);
            }
        }
    }

    /// The recorded sha256 of the component at `path` in the slug. Slugs
    /// stored before digests were recorded have theirs read from the
    /// (checked) archive.
    pub fn component_digest(&self, slug: &Slug, path: &str) -> Result<Option<String>, SlugError> {
        if !slug.components.is_empty() {
            return Ok(archive::component_digest(&slug.components, path).map(str::to_string));
        }
        let checksum = slug.checksum.as_deref().ok_or(SlugError::NoBlob)?;
        let contents = self.read_stored(checksum, |reader| archive::scan(reader, self.limits))?;
        Ok(archive::component_digest(&contents.components, path).map(str::to_string))
    }

    /// Reads the archive stored under `checksum` with `read`, and checks
    /// that its bytes still have that sha256: an archive that no longer
    /// reads as it did when it was stored is [`SlugError::Damaged`].
    fn read_stored<T>(
        &self,
        checksum: &str,
        read: impl FnOnce(&mut archive::Reader) -> Result<T, ArchiveError>,
    ) -> Result<T, SlugError> {
        let path = self.archive_path(checksum);
        if !path.exists()
            && let Some(shared) = &self.shared
        {
            // Made on another host: fetched once into this host's cache
            // (and checked against its sha256 below, as every read is).
            let fetching = self.dir.join(format!(".fetch-{}", new_id()));
            let fetched = shared.get_file(&format!("{checksum}.tgz"), &fetching);
            if matches!(fetched, Ok(true)) {
                std::fs::rename(&fetching, &path).map_err(|e| SlugError::Io(e.into()))?;
            } else {
                let _ = std::fs::remove_file(&fetching);
                fetched?;
            }
        }
        let mut reader = archive::open(&path).map_err(|e| SlugError::Io(e.into()))?;
        let value = read(&mut reader).map_err(damaged)?;
        let found = reader.finish().map_err(|e| SlugError::Io(e.into()))?;
        if found != checksum {
            return Err(SlugError::Damaged(ArchiveError::Checksum {
                expected: checksum.to_string(),
                found,
            }));
        }
        Ok(value)
    }

    pub fn delete_app(&self, app: &str) -> Result<(), StoreError> {
        self.slugs.remove_prefix(format!("{app}/"))
    }

    /// Forgets the slugs of `app` that no id in `keep` names and that were
    /// made before `before` (ms), so an upload in progress is never taken.
    pub fn prune(
        &self,
        app: &str,
        keep: &std::collections::HashSet<String>,
        before: u64,
    ) -> Result<usize, StoreError> {
        let mut forgotten = 0;
        for slug in self.slugs.scan::<Slug>(format!("{app}/"))? {
            if !keep.contains(&slug.id) && slug.created_at < before {
                self.slugs.remove(key(app, &slug.id))?;
                forgotten += 1;
            }
        }
        Ok(forgotten)
    }

    /// Deletes the archives and unpacked folders that no slug record names
    /// (archives are shared by content, so across apps). Blocking.
    pub fn collect_garbage(&self) -> anyhow::Result<usize> {
        let used: std::collections::HashSet<String> = self
            .slugs
            .scan::<Slug>("")?
            .into_iter()
            .filter_map(|s| s.checksum)
            .collect();
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let checksum = name.strip_suffix(".tgz").unwrap_or(&name);
            // An archive is filed before its record is written: a young
            // file may belong to a slug being committed right now.
            let young = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age < GRACE);
            if !used.contains(checksum) && !young && remove_entry(&entry) {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn archive_path(&self, checksum: &str) -> PathBuf {
        self.dir.join(format!("{checksum}.tgz"))
    }
}

/// Removes a file or a whole folder; whether it is gone.
fn remove_entry(entry: &std::fs::DirEntry) -> bool {
    let path = entry.path();
    match entry.file_type() {
        Ok(kind) if kind.is_dir() => std::fs::remove_dir_all(&path).is_ok(),
        Ok(_) => std::fs::remove_file(&path).is_ok(),
        Err(_) => false,
    }
}

/// An error reading an archive that was checked when it was stored.
fn damaged(e: ArchiveError) -> SlugError {
    match e {
        ArchiveError::Io(e) => SlugError::Io(e.into()),
        other => SlugError::Damaged(other),
    }
}

/// A path named by a Procfile, which must resolve (links and all) to a file
/// inside `root`: a slug cannot point its processes at the host's files.
pub fn file_inside(root: &Path, relative: &str) -> anyhow::Result<PathBuf> {
    let resolved = std::fs::canonicalize(root.join(relative))
        .with_context(|| format!("the Procfile names {relative}, which is not in the app"))?;
    let root = std::fs::canonicalize(root)?;
    anyhow::ensure!(
        resolved.starts_with(&root) && resolved.is_file(),
        "the Procfile names {relative}, which is not a file inside the app"
    );
    Ok(resolved)
}

/// Packs files into a slug archive: `(path inside the slug, contents)`.
pub fn pack(files: &[(&str, &[u8])]) -> anyhow::Result<Vec<u8>> {
    // gzip's fastest level, as for built slugs: the default level took
    // about 30 ms of a 40 ms `renga deploy --component` for a 500 KB
    // component, for an archive a few percent smaller.
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (name, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, name, *contents)?;
    }
    Ok(tar.into_inner()?.finish()?)
}

/// Packs a folder into a slug archive, paths relative to it.
pub fn pack_dir(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    tar.follow_symlinks(false);
    tar.append_dir_all(".", dir)?;
    Ok(tar.into_inner()?.finish()?)
}

/// Packs a build folder into a slug archive at `dest`, leaving out what its
/// `.slugignore` files name (gitignore patterns), and stops with
/// [`SlugError::TooLarge`] once the archive passes `limit` bytes. Returns the
/// archive's sha256 (hex) and size. Blocking.
pub fn pack_build(dir: &Path, dest: &Path, limit: u64) -> Result<(String, u64), SlugError> {
    archive::pack_folder(dir, dest, limit, Some(".slugignore")).map_err(|e| {
        if e.kind() == std::io::ErrorKind::FileTooLarge {
            SlugError::TooLarge(limit)
        } else {
            SlugError::Io(e.into())
        }
    })
}

/// Reads one file out of an archive in memory (for tests and the CLI).
pub fn read_file(archive: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut tar = tar::Archive::new(GzDecoder::new(archive));
    for entry in tar.entries().ok()? {
        let mut entry = entry.ok()?;
        if entry.path().ok()?.as_ref() == Path::new(name) {
            let mut out = Vec::new();
            entry.read_to_end(&mut out).ok()?;
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn pack_and_read_back() {
        let archive = pack(&[("Procfile", b"web: app.wasm\n"), ("app.wasm", b"\0asm")]).unwrap();
        assert_eq!(read_file(&archive, "Procfile").unwrap(), b"web: app.wasm\n");
        assert!(read_file(&archive, "missing").is_none());
    }

    #[test]
    fn build_folders_pack_without_what_slugignore_names() {
        let dir = std::env::temp_dir().join(format!("renga-pack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("app/docs")).unwrap();
        std::fs::write(dir.join("app/.slugignore"), "docs/\n*.log\n").unwrap();
        std::fs::write(dir.join("app/app.wasm"), b"\0asm").unwrap();
        std::fs::write(dir.join("app/debug.log"), b"noise").unwrap();
        std::fs::write(dir.join("app/docs/guide.md"), b"words").unwrap();
        let dest = dir.join("slug.tgz");
        let (checksum, size) = pack_build(&dir.join("app"), &dest, 1 << 20).unwrap();
        let archive = std::fs::read(&dest).unwrap();
        assert_eq!(size, archive.len() as u64);
        assert_eq!(checksum, hex::encode(Sha256::digest(&archive)));
        assert_eq!(read_file(&archive, "app.wasm").unwrap(), b"\0asm");
        assert!(read_file(&archive, "debug.log").is_none());
        assert!(read_file(&archive, "docs/guide.md").is_none());

        std::fs::write(dir.join("app/big.bin"), vec![7u8; 4096]).unwrap();
        let err = pack_build(&dir.join("app"), &dest, 64).unwrap_err();
        assert!(matches!(err, SlugError::TooLarge(64)), "{err}");
        assert!(!dest.exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn archives_escaping_the_slug_are_refused() {
        let dir = std::env::temp_dir().join(format!("renga-slug-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.tgz");
        std::fs::write(&good, pack(&[("a/b.txt", b"x")]).unwrap()).unwrap();
        let verify = |path: &Path| {
            archive::open(path)
                .map_err(ArchiveError::from)
                .and_then(|r| archive::scan(r, Limits::DEFAULT))
        };
        assert!(verify(&good).is_ok());

        let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        // Written by hand: the tar crate refuses `..` in append_data.
        header.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
        header.set_cksum();
        tar.append(&header, &b"x"[..]).unwrap();
        let bad = dir.join("bad.tgz");
        std::fs::write(&bad, tar.into_inner().unwrap().finish().unwrap()).unwrap();
        assert!(matches!(verify(&bad), Err(ArchiveError::UnsafePath(_))));

        let junk = dir.join("junk.tgz");
        std::fs::write(&junk, b"not gzip").unwrap();
        assert!(matches!(verify(&junk), Err(ArchiveError::NotAnArchive(_))));
        let _ = std::fs::remove_dir_all(dir);
    }
}
