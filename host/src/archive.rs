//! archive: the tarballs the platform takes in (sources, slugs, build
//! caches), read with limits, and the ones it packs from folders a build
//! wrote.
//!
//! Owns reading and unpacking: gzipped or plain tar, only regular files,
//! folders and symbolic links, every path inside the archive's root, at most
//! so many files and bytes once unpacked (a small archive can unpack to
//! gigabytes), and error messages that never echo the uploaded bytes. Owns
//! packing by the same rules: links kept as links, anything else that is
//! not a file or a folder left out, modes normalized, the size bounded. It
//! never decides what an archive is for; sources, slugs and build caches
//! do.

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::path::{Component, Path};

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// How much an archive may hold once unpacked.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes of file contents.
    pub bytes: u64,
    /// Entries: files, folders and links.
    pub files: u64,
}

impl Limits {
    /// The platform's default for slugs and sources.
    pub const DEFAULT: Limits = Limits {
        bytes: 1 << 30,
        files: 50_000,
    };
}

/// What an archive holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contents {
    pub entries: u64,
    pub bytes: u64,
    /// The sha256 (hex) of every `.wasm` file, by its path in the archive.
    pub components: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("it is not a tar archive (gzipped or not): {0}")]
    NotAnArchive(String),
    #[error("it contains {0:?}, a path outside the archive's root")]
    UnsafePath(String),
    #[error(
        "it contains {path:?}, a {kind}; only regular files, folders and symbolic links are allowed"
    )]
    UnsupportedEntry { path: String, kind: &'static str },
    #[error(
        "it unpacks to more than {}: a limit of this server",
        crate::units::ByteSize(*.0)
    )]
    TooLarge(u64),
    #[error("it holds more than {0} files and folders: a limit of this server")]
    TooManyFiles(u64),
    #[error(
        "it decompresses to more than {} (headers and files together): a limit of this server",
        crate::units::ByteSize(*.0)
    )]
    Decompressed(u64),
    #[error(
        "its sha256 is {found}, not the {expected} it was stored under: it was changed on disk"
    )]
    Checksum { expected: String, found: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ArchiveError {
    /// Whether the archive itself is at fault (as opposed to the disk).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, ArchiveError::Io(_) | ArchiveError::Checksum { .. })
    }
}

/// Opens an archive file, gzipped or not, hashing every byte read.
pub fn open(path: &Path) -> std::io::Result<Reader> {
    let mut file = std::fs::File::open(path)?;
    let mut magic = [0u8; 2];
    let gzipped = file.read(&mut magic)? == 2 && magic == [0x1f, 0x8b];
    file.rewind()?;
    let hashing = Hashing {
        inner: file,
        hasher: Sha256::new(),
    };
    Ok(if gzipped {
        Reader::Gzip(flate2::read::GzDecoder::new(hashing))
    } else {
        Reader::Plain(hashing)
    })
}

/// An archive being read.
pub enum Reader {
    Gzip(flate2::read::GzDecoder<Hashing>),
    Plain(Hashing),
}

impl Reader {
    /// The sha256 (hex) of the file's bytes: read what is left first, so
    /// that trailing bytes after the archive count too.
    pub fn finish(self) -> std::io::Result<String> {
        let mut hashing = match self {
            Reader::Gzip(gz) => gz.into_inner(),
            Reader::Plain(plain) => plain,
        };
        std::io::copy(&mut hashing, &mut std::io::sink())?;
        Ok(hex::encode(hashing.hasher.finalize()))
    }
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Reader::Gzip(gz) => gz.read(buf),
            Reader::Plain(plain) => plain.read(buf),
        }
    }
}

/// A file reader that hashes what passes through.
pub struct Hashing {
    inner: std::fs::File,
    hasher: Sha256,
}

impl Read for Hashing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Slack for headers (a tar header is 512 bytes, names and pax records may
/// add more) over what an archive's files may hold.
fn decompressed_cap(limits: Limits) -> u64 {
    limits
        .bytes
        .saturating_add(limits.files.saturating_mul(2048))
        .saturating_add(16 << 20)
}

/// A reader that fails once more than `left` bytes went through: the tar
/// crate reads long names and pax headers whole, into memory, before any
/// entry can be checked, so the decompressed stream itself is bounded.
struct Capped<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // One byte more would be past the cap: refuse, with a kind the
            // callers map to "too large".
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(std::io::Error::new(
                    std::io::ErrorKind::FileTooLarge,
                    format!("more than {} bytes", self.limit),
                )),
            };
        }
        let len = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..len])?;
        self.left -= n as u64;
        Ok(n)
    }
}

fn capped<R: Read>(reader: R, limits: Limits) -> Capped<R> {
    let limit = decompressed_cap(limits);
    Capped {
        inner: reader,
        left: limit,
        limit,
    }
}

/// Reads a whole archive without writing anything: checks every entry
/// against the rules and the limits, and hashes its components.
pub fn scan(reader: impl Read, limits: Limits) -> Result<Contents, ArchiveError> {
    with_cap(scan_inner(reader, limits), limits)
}

fn scan_inner(reader: impl Read, limits: Limits) -> Result<Contents, ArchiveError> {
    let mut tar = tar::Archive::new(capped(reader, limits));
    let mut contents = Contents::default();
    for entry in tar.entries().map_err(not_an_archive)? {
        let mut entry = entry.map_err(not_an_archive)?;
        let Some(path) = check_entry(&entry, &mut contents, limits)? else {
            continue;
        };
        if entry.header().entry_type().is_file() && path.ends_with(".wasm") {
            let mut hasher = Sha256::new();
            std::io::copy(&mut entry, &mut HashWriter(&mut hasher)).map_err(not_an_archive)?;
            contents
                .components
                .insert(normalize(&path), hex::encode(hasher.finalize()));
        } else {
            std::io::copy(&mut entry, &mut std::io::sink()).map_err(not_an_archive)?;
        }
    }
    Ok(contents)
}

/// Unpacks an archive into `into` (which must not exist yet), checking every
/// entry as [`scan`] does. On any failure `into` is removed again.
pub fn unpack(reader: impl Read, into: &Path, limits: Limits) -> Result<Contents, ArchiveError> {
    let result = with_cap(unpack_inner(reader, into, limits), limits);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(into);
    }
    result
}

fn unpack_inner(reader: impl Read, into: &Path, limits: Limits) -> Result<Contents, ArchiveError> {
    std::fs::create_dir_all(into)?;
    let mut tar = tar::Archive::new(capped(reader, limits));
    // Modes as the archive says, but never setuid, setgid or writable by
    // others: the platform unpacks as root.
    tar.set_preserve_permissions(false);
    tar.set_mask(0o022);
    tar.set_preserve_mtime(true);
    tar.set_overwrite(true);
    tar.set_unpack_xattrs(false);
    let mut contents = Contents::default();
    for entry in tar.entries().map_err(not_an_archive)? {
        let mut entry = entry.map_err(not_an_archive)?;
        if check_entry(&entry, &mut contents, limits)?.is_none() {
            continue;
        }
        // `unpack_in` refuses paths that leave `into`, also through links
        // unpacked earlier, and never writes through an existing link.
        let shown = printable(
            &entry
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        );
        match entry.unpack_in(into) {
            Ok(true) => {}
            Ok(false) => return Err(ArchiveError::UnsafePath(shown)),
            Err(e) => return Err(unpack_error(&shown, e)),
        }
    }
    Ok(contents)
}

/// Packs the folder `dir` into a gzipped tarball at `dest`, paths relative
/// to it, in name order, leaving out what files named `ignore_file` list
/// (gitignore patterns). Links are kept as links, never followed; entries
/// that are neither files, folders nor links (fifos, sockets, devices) are
/// left out. Modes are normalized for readers under another uid: folders
/// 0755, files 0644 (0755 when executable), never setuid or setgid. Fails
/// with [`std::io::ErrorKind::FileTooLarge`] once the archive passes
/// `limit` bytes; on any failure `dest` is removed. Returns the archive's
/// sha256 (hex) and size. Blocking.
pub fn pack_folder(
    dir: &Path,
    dest: &Path,
    limit: u64,
    ignore_file: Option<&str>,
) -> std::io::Result<(String, u64)> {
    let result = (|| -> std::io::Result<(String, u64)> {
        let file = std::fs::File::create(dest)?;
        let writer = LimitedHashWriter {
            inner: std::io::BufWriter::new(file),
            hasher: Sha256::new(),
            size: 0,
            limit,
        };
        let mut tar = tar::Builder::new(GzEncoder::new(writer, Compression::fast()));
        tar.follow_symlinks(false);
        let mut walk = ignore::WalkBuilder::new(dir);
        walk.standard_filters(false)
            .follow_links(false)
            .sort_by_file_name(|a, b| a.cmp(b));
        if let Some(name) = ignore_file {
            walk.add_custom_ignore_filename(name);
        }
        for entry in walk.build() {
            let entry = entry.map_err(std::io::Error::other)?;
            let relative = entry
                .path()
                .strip_prefix(dir)
                .map_err(std::io::Error::other)?;
            let kept = entry
                .file_type()
                .is_some_and(|t| t.is_file() || t.is_dir() || t.is_symlink());
            if relative.as_os_str().is_empty() || !kept {
                continue;
            }
            append_normalized(&mut tar, entry.path(), relative)?;
        }
        let writer = tar.into_inner()?.finish()?;
        let size = writer.size;
        let checksum = hex::encode(writer.hasher.finalize());
        writer
            .inner
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
        Ok((checksum, size))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result
}

/// Adds one entry with the modes a reader under another uid needs (a
/// native dyno's, a build's): folders 0755, files 0644 (0755 when
/// executable), whatever umask the writer ran under (renga's own is 077);
/// never setuid or setgid.
fn append_normalized<W: std::io::Write>(
    tar: &mut tar::Builder<W>,
    path: &Path,
    relative: &Path,
) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
    let kind = meta.file_type();
    if kind.is_dir() {
        header.set_mode(0o755);
        header.set_size(0);
        tar.append_data(&mut header, relative, std::io::empty())
    } else if kind.is_symlink() {
        header.set_mode(0o777);
        let target = std::fs::read_link(path)?;
        tar.append_link(&mut header, relative, target)
    } else {
        use std::os::unix::fs::PermissionsExt;
        let executable = meta.permissions().mode() & 0o111 != 0;
        header.set_mode(if executable { 0o755 } else { 0o644 });
        tar.append_data(&mut header, relative, std::fs::File::open(path)?)
    }
}

/// Hashes and counts what passes through; fails past `limit` bytes.
struct LimitedHashWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
    limit: u64,
}

impl<W: std::io::Write> std::io::Write for LimitedHashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.size + buf.len() as u64 > self.limit {
            return Err(std::io::ErrorKind::FileTooLarge.into());
        }
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Checks one entry's kind, path and size against the rules and limits, and
/// counts it. Returns its path, or `None` for metadata that is not a file
/// (the pax headers `git archive` writes).
fn check_entry<R: Read>(
    entry: &tar::Entry<'_, R>,
    contents: &mut Contents,
    limits: Limits,
) -> Result<Option<String>, ArchiveError> {
    let kind = entry.header().entry_type();
    if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
        return Ok(None);
    }
    let path = entry.path().map_err(not_an_archive)?.into_owned();
    let shown = printable(&path.display().to_string());
    let safe = path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !safe {
        return Err(ArchiveError::UnsafePath(shown));
    }
    if !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
        return Err(ArchiveError::UnsupportedEntry {
            path: shown,
            kind: describe_kind(kind),
        });
    }
    contents.entries += 1;
    if contents.entries > limits.files {
        return Err(ArchiveError::TooManyFiles(limits.files));
    }
    if kind.is_file() {
        contents.bytes = contents.bytes.saturating_add(entry.size());
        if contents.bytes > limits.bytes {
            return Err(ArchiveError::TooLarge(limits.bytes));
        }
    }
    Ok(Some(path.to_string_lossy().into_owned()))
}

fn describe_kind(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Link => "hard link",
        tar::EntryType::Char => "character device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Fifo => "named pipe",
        tar::EntryType::GNUSparse => "sparse file",
        _ => "special entry",
    }
}

/// `./a/b.wasm` and `a/b.wasm` are the same file.
fn normalize(path: &str) -> String {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The digest [`Contents::components`] records for `path` (as a Procfile
/// names it: `app.wasm`, `./bin/x.wasm`).
pub fn component_digest<'a>(contents: &'a BTreeMap<String, String>, path: &str) -> Option<&'a str> {
    contents.get(&normalize(path)).map(String::as_str)
}

/// Why an entry could not be unpacked, without the folder it was going to
/// (the tar crate's message names it): the archive's fault when its bytes
/// are wrong, else the disk's.
fn unpack_error(entry: &str, e: std::io::Error) -> ArchiveError {
    use std::io::ErrorKind;
    if is_capped(&e) {
        return ArchiveError::Decompressed(0);
    }
    let why = match e.kind() {
        // The disk's fault, not the archive's.
        kind @ (ErrorKind::StorageFull
        | ErrorKind::OutOfMemory
        | ErrorKind::ReadOnlyFilesystem
        | ErrorKind::Interrupted) => {
            return ArchiveError::Io(std::io::Error::new(
                kind,
                format!("unpacking {entry}: {kind}"),
            ));
        }
        ErrorKind::UnexpectedEof => "the archive ends in the middle of it",
        ErrorKind::AlreadyExists | ErrorKind::NotADirectory | ErrorKind::IsADirectory => {
            "it clashes with an entry before it (a file where a folder is, or the other way round)"
        }
        _ => "its bytes are not what a tar archive holds",
    };
    ArchiveError::NotAnArchive(format!("{entry} could not be unpacked: {why}"))
}

fn not_an_archive(e: std::io::Error) -> ArchiveError {
    if is_capped(&e) {
        // The cap is filled in by `with_cap`.
        return ArchiveError::Decompressed(0);
    }
    ArchiveError::NotAnArchive(printable(&e.to_string()))
}

/// Says which cap a [`Capped`] reader hit.
fn with_cap<T>(result: Result<T, ArchiveError>, limits: Limits) -> Result<T, ArchiveError> {
    result.map_err(|e| match e {
        ArchiveError::Decompressed(_) => ArchiveError::Decompressed(decompressed_cap(limits)),
        other => other,
    })
}

/// Whether an error came from [`Capped`] (the tar crate wraps it).
fn is_capped(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::FileTooLarge
        || e.get_ref()
            .and_then(|inner| inner.source())
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|e| e.kind() == std::io::ErrorKind::FileTooLarge)
}

/// Text from an upload, safe to put in a message: printable ASCII only,
/// other bytes escaped, at most 160 characters.
pub fn printable(text: &str) -> String {
    const MAX: usize = 160;
    let mut out = String::new();
    for c in text.chars() {
        if out.len() >= MAX {
            out.push('…');
            break;
        }
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_folder_keeps_files_and_links_and_leaves_out_the_rest() {
        let dir = std::env::temp_dir().join(format!("renga-pack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let tree = dir.join("tree");
        std::fs::create_dir_all(tree.join("bin")).unwrap();
        std::fs::write(tree.join("bin/tool"), b"#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            tree.join("bin/tool"),
            std::fs::Permissions::from_mode(0o4777),
        )
        .unwrap();
        std::fs::write(tree.join("data"), vec![7u8; 4096]).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", tree.join("secret")).unwrap();
        let fifo =
            std::ffi::CString::new(tree.join("pipe").as_os_str().as_encoded_bytes()).unwrap();
        // A fifo with no writer would block a reader forever: it is left out.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);

        let packed = dir.join("packed.tgz");
        let (checksum, size) = pack_folder(&tree, &packed, 1 << 20, None).unwrap();
        assert_eq!(size, std::fs::metadata(&packed).unwrap().len());
        assert_eq!(checksum.len(), 64);
        let into = dir.join("out");
        let contents = unpack(open(&packed).unwrap(), &into, Limits::DEFAULT).unwrap();
        assert_eq!(contents.entries, 4, "bin, bin/tool, data, secret");
        let tool = std::fs::metadata(into.join("bin/tool")).unwrap();
        assert_eq!(tool.permissions().mode() & 0o7777, 0o755);
        assert_eq!(
            std::fs::read_link(into.join("secret")).unwrap(),
            Path::new("/etc/shadow")
        );
        assert!(!into.join("pipe").exists());

        // Past the bound: refused, and nothing is left at `dest`.
        let err = pack_folder(&tree, &packed, 64, None).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::FileTooLarge);
        assert!(!packed.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
    use flate2::Compression;
    use flate2::write::GzEncoder;

    fn archive(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (name, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            if *kind == tar::EntryType::Symlink || *kind == tar::EntryType::Link {
                header.set_link_name("target").unwrap();
            }
            header.set_path(name).unwrap();
            header.set_cksum();
            tar.append(&header, *data).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "renga-archive-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn scan_counts_and_hashes_components() {
        let bytes = archive(&[
            ("app.wasm", tar::EntryType::Regular, b"\0asm"),
            ("./bin/x.wasm", tar::EntryType::Regular, b"x"),
            ("static", tar::EntryType::Directory, b""),
            ("link", tar::EntryType::Symlink, b""),
        ]);
        let contents = scan(flate2::read::GzDecoder::new(&bytes[..]), Limits::DEFAULT).unwrap();
        assert_eq!(contents.entries, 4);
        assert_eq!(contents.bytes, 5);
        assert_eq!(
            component_digest(&contents.components, "app.wasm"),
            Some(hex::encode(Sha256::digest(b"\0asm")).as_str())
        );
        assert!(component_digest(&contents.components, "bin/x.wasm").is_some());
        assert!(component_digest(&contents.components, "./bin/x.wasm").is_some());
    }

    #[test]
    fn a_slug_bomb_is_refused_by_size_and_by_count() {
        let big = vec![0u8; 4096];
        let bytes = archive(&[("a", tar::EntryType::Regular, &big)]);
        let limits = Limits {
            bytes: 1000,
            files: 10,
        };
        let err = scan(flate2::read::GzDecoder::new(&bytes[..]), limits).unwrap_err();
        assert!(matches!(err, ArchiveError::TooLarge(1000)), "{err}");
        let many: Vec<(String, tar::EntryType, &[u8])> = (0..11)
            .map(|i| (format!("f{i}"), tar::EntryType::Regular, &b""[..]))
            .collect();
        let refs: Vec<(&str, tar::EntryType, &[u8])> =
            many.iter().map(|(n, k, d)| (n.as_str(), *k, *d)).collect();
        let bytes = archive(&refs);
        let err = scan(flate2::read::GzDecoder::new(&bytes[..]), limits).unwrap_err();
        assert!(matches!(err, ArchiveError::TooManyFiles(10)), "{err}");

        let into = temp("bomb").join("out");
        let err = unpack(flate2::read::GzDecoder::new(&bytes[..]), &into, limits).unwrap_err();
        assert!(matches!(err, ArchiveError::TooManyFiles(10)), "{err}");
        assert!(!into.exists(), "a failed unpack leaves nothing behind");
    }

    #[test]
    fn git_archives_pax_headers_are_read_past() {
        let mut tar = tar::Builder::new(Vec::new());
        let mut pax = tar::Header::new_ustar();
        let record = b"52 comment=0123456789012345678901234567890123456789\n";
        pax.set_entry_type(tar::EntryType::XGlobalHeader);
        pax.set_size(record.len() as u64);
        pax.set_path("pax_global_header").unwrap();
        pax.set_cksum();
        tar.append(&pax, &record[..]).unwrap();
        let mut file = tar::Header::new_ustar();
        file.set_size(2);
        file.set_mode(0o644);
        file.set_path("Procfile").unwrap();
        file.set_cksum();
        tar.append(&file, &b"x\n"[..]).unwrap();
        let bytes = tar.into_inner().unwrap();
        let contents = scan(&bytes[..], Limits::DEFAULT).unwrap();
        assert_eq!(contents.entries, 1);
        let into = temp("pax").join("out");
        unpack(&bytes[..], &into, Limits::DEFAULT).unwrap();
        assert_eq!(std::fs::read(into.join("Procfile")).unwrap(), b"x\n");
        assert!(!into.join("pax_global_header").exists());
    }

    #[test]
    fn a_huge_pax_header_is_refused_before_it_is_read_whole() {
        // A header declaring 64 MiB of pax records (all zeros, so it
        // gzips to almost nothing): the reader stops at the cap.
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::XHeader);
        header.set_size(64 << 20);
        header.set_path("pax").unwrap();
        header.set_cksum();
        let mut raw = header.as_bytes().to_vec();
        raw.resize(raw.len() + (64 << 20) + 1024, 0);
        let limits = Limits {
            bytes: 1 << 20,
            files: 10,
        };
        let err = scan(&raw[..], limits).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Decompressed(n) if n > 0),
            "{err}"
        );
    }

    #[test]
    fn devices_pipes_and_hard_links_are_refused() {
        for (kind, name) in [
            (tar::EntryType::Char, "character device"),
            (tar::EntryType::Block, "block device"),
            (tar::EntryType::Fifo, "named pipe"),
            (tar::EntryType::Link, "hard link"),
        ] {
            let bytes = archive(&[("dev", kind, b"")]);
            let err = scan(flate2::read::GzDecoder::new(&bytes[..]), Limits::DEFAULT).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn a_non_gzip_upload_error_does_not_echo_its_bytes() {
        let dir = temp("junk");
        let junk = dir.join("junk.tgz");
        let mut bytes = b"\x1f\x8bnot really gzip <script>alert(1)</script>".to_vec();
        bytes.extend_from_slice(&[0, 1, 2, 0xff, b'\n', 0x1b]);
        std::fs::write(&junk, &bytes).unwrap();
        let err = scan(open(&junk).unwrap(), Limits::DEFAULT).unwrap_err();
        let message = err.to_string();
        assert!(message.is_ascii() && !message.contains('\0') && !message.contains('\x1b'));
        let plain = dir.join("plain.tar");
        let mut header = [b'A'; 512];
        header[0] = 0xff;
        header[1] = 0x1b;
        std::fs::write(&plain, header).unwrap();
        let err = scan(open(&plain).unwrap(), Limits::DEFAULT).unwrap_err();
        let message = err.to_string();
        assert!(
            message
                .chars()
                .all(|c| c.is_ascii_graphic() || c == ' ' || c == '…'),
            "{message:?}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn unpacking_checks_the_stored_digest() {
        let dir = temp("digest");
        let path = dir.join("a.tgz");
        let bytes = archive(&[("app.wasm", tar::EntryType::Regular, b"\0asm")]);
        std::fs::write(&path, &bytes).unwrap();
        let mut reader = open(&path).unwrap();
        unpack(&mut reader, &dir.join("out"), Limits::DEFAULT).unwrap();
        assert_eq!(
            reader.finish().unwrap(),
            hex::encode(Sha256::digest(&bytes))
        );
        assert_eq!(std::fs::read(dir.join("out/app.wasm")).unwrap(), b"\0asm");
        let _ = std::fs::remove_dir_all(dir);
    }
}
