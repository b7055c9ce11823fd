//! provider: the add-on backends. Embedded: `renga-kv` and `renga-sql`
//! (SQLite files, below) and `renga-blob` (files, `blob`). On the operator's
//! servers: `renga-postgres` (`postgres`) and `renga-kv:redis` (`redis`).
//!
//! Each embedded key-value or SQL add-on is one SQLite file of its own (the bundled SQLite, so nothing
//! is needed on the machine): one app's data never shares a file with
//! another's, a plan's quota is a limit on that file, and destroying an
//! add-on deletes its folder. The files are in WAL mode with
//! `synchronous=NORMAL`: a call that returned success is in the file before
//! it returns, so it survives the server being killed; an operating-system
//! crash may lose the last moments of writes, never the file.
//!
//! Every call runs on tokio's blocking threads, never on the async workers
//! that serve requests. Providers know nothing of wasmtime: the capabilities
//! (`crate::capability`) turn guests' calls into these.

pub mod blob;
pub mod kv;
pub mod postgres;
pub mod redis;
pub mod sql;

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// The operator's servers that add-ons may live on (`renga server
/// --postgres URL --redis URL`).
#[derive(Clone, Default)]
pub struct Servers {
    pub postgres: Option<Arc<postgres::PgServer>>,
    pub redis: Option<Arc<redis::RedisServer>>,
}

impl std::fmt::Debug for Servers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Servers")
            .field("postgres", &self.postgres.is_some())
            .field("redis", &self.redis.is_some())
            .finish()
    }
}

impl Servers {
    /// Why an add-on on `backend` cannot be reached here, if it cannot.
    pub fn missing(&self, backend: crate::addon::BackendKind) -> Option<String> {
        use crate::addon::BackendKind;
        match backend {
            BackendKind::Embedded => None,
            BackendKind::Postgres if self.postgres.is_none() => Some(
                "this renga server has no PostgreSQL configured: start it with `renga server --postgres postgres://USER:PASSWORD@HOST/DB` (or set RENGA_POSTGRES_URL), naming a server and an account that may create roles and databases".to_string(),
            ),
            BackendKind::Redis if self.redis.is_none() => Some(
                "this renga server has no Redis configured: start it with `renga server --redis redis://[USER:PASSWORD@]HOST:PORT` (or set RENGA_REDIS_URL), naming Redis 6 or later, or Valkey".to_string(),
            ),
            _ => None,
        }
    }
}

/// Which add-on a backend belongs to, for messages.
#[derive(Clone, Debug)]
pub struct AddonRef {
    /// Its folder under the add-ons root (the add-on's id).
    pub id: String,
    /// Its name, `renga-kv-shiny-12345`.
    pub name: String,
    /// Bytes its plan allows.
    pub quota: u64,
    /// Where its data lives.
    pub backend: crate::addon::BackendKind,
    /// Its URL with credentials, for an add-on on an external server.
    pub url: Option<String>,
    /// For an add-on a provider component serves: which, and with what.
    pub provider: Option<Arc<ProviderSpec>>,
}

/// What a provider component's add-on is served with.
#[derive(Clone, Debug)]
pub struct ProviderSpec {
    /// The provider's service name, for messages.
    pub service: String,
    /// The sha256 of its component.
    pub digest: String,
    /// The options it was provisioned with: the provider's config.
    pub options: Vec<(String, String)>,
    /// The hosts its outbound HTTP may reach.
    pub outbound: Vec<String>,
}

impl AddonRef {
    /// An embedded add-on of `renga dev` or a test: a local folder.
    pub fn local(id: String, name: String, quota: u64) -> AddonRef {
        AddonRef {
            id,
            name,
            quota,
            backend: crate::addon::BackendKind::Embedded,
            url: None,
            provider: None,
        }
    }
}

/// How long a statement waits for another connection's write lock.
const BUSY_WAIT: Duration = Duration::from_secs(5);

/// Opens (creating it, private to renga's user) an add-on's SQLite file.
fn open_file(path: &Path, quota: u64) -> rusqlite::Result<Connection> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir);
    }
    // SQLite gives its -wal and -shm files the mode of the database file.
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_WAIT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!(
                "the file would not switch to WAL mode (it stays in {mode})"
            )),
        ));
    }
    conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY;")?;
    apply_quota(&conn, quota)?;
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA,
        false,
    )?;
    Ok(conn)
}

/// The plan's quota, as a page count: writes past it fail with "database
/// or disk is full". Guests cannot change it (see `sql::authorize`).
fn apply_quota(conn: &Connection, quota: u64) -> rusqlite::Result<()> {
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
    let pages = (quota / page_size.max(512) as u64).max(16);
    conn.query_row(&format!("PRAGMA max_page_count={pages}"), [], |_| Ok(()))
}

/// An add-on's quota, which a plan change moves while its backend is open.
#[derive(Debug)]
struct Quota(std::sync::atomic::AtomicU64);

impl Quota {
    fn new(bytes: u64) -> Quota {
        Quota(std::sync::atomic::AtomicU64::new(bytes))
    }

    fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set(&self, bytes: u64) {
        self.0.store(bytes, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Runs blocking work off the async workers. A panic in it (a bug) is an
/// error for the call, not a crash of the server.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => Err(format!("the backend call failed: {e}")),
    }
}

/// Open backends by add-on id, shared by every release and app attached to
/// the add-on, closed with the last release that uses them.
pub struct Open<T> {
    root: PathBuf,
    open: Mutex<std::collections::HashMap<String, Weak<T>>>,
}

impl<T> Open<T> {
    pub fn new(root: PathBuf) -> Open<T> {
        Open {
            root,
            open: Mutex::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The backend of `addon`, made with `make` from its folder if none is
    /// open (an open one takes the add-on's quota as it is now).
    pub fn get(&self, addon: &AddonRef, make: impl FnOnce(PathBuf) -> T) -> Arc<T>
    where
        T: Backend,
    {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = open.get(&addon.id).and_then(Weak::upgrade) {
            live.set_quota(addon.quota);
            return live;
        }
        open.retain(|_, weak| weak.strong_count() > 0);
        let live = Arc::new(make(self.root.join(&addon.id)));
        open.insert(addon.id.clone(), Arc::downgrade(&live));
        live
    }
}

/// What every backend does besides its own calls.
pub trait Backend {
    /// Moves its quota (a plan change); connections apply it before their
    /// next call.
    fn set_quota(&self, bytes: u64);
}

/// `sqlite` error text in renga's words: what failed, and SQLite's message.
fn describe(addon: &str, e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => format!(
            "{addon} is full: it holds its plan's quota (`renga addons:upgrade` gives it a bigger plan), or the disk is full ({e})"
        ),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            format!("{addon}'s file is damaged: {e}")
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            format!("{addon} is busy with another write: {e}")
        }
        _ => format!("{addon}: {e}"),
    }
}
