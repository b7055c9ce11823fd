//! `renga-sql`: a SQL database, one SQLite file per add-on.
//!
//! Statements run with typed parameters and give typed rows; a transaction
//! holds one connection until it commits, rolls back or is dropped (which
//! rolls back). What a guest may run is narrowed by an authorizer: no
//! `ATTACH` (a guest names no file), no `BEGIN`/`COMMIT` outside a
//! transaction it asked for, and only the `PRAGMA`s that read the schema or
//! set a connection's own behaviour (never the plan's size limit). Each
//! statement may run for [`STATEMENT_TIME`] and give [`MAX_RESULT_BYTES`];
//! a call whose caller went away is interrupted.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, ErrorCode};

use super::{AddonRef, BUSY_WAIT, Backend, Quota, apply_quota, blocking, open_file};

/// Connections one database keeps at most (transactions hold one each).
pub const MAX_CONNECTIONS: usize = 4;
/// The longest one statement may run.
pub const STATEMENT_TIME: Duration = Duration::from_secs(10);
/// The most one query may return, in bytes of values.
pub const MAX_RESULT_BYTES: usize = 16 << 20;
/// The longest string or blob a value may be.
pub const MAX_VALUE_BYTES: i32 = 16 << 20;
/// The longest statement text.
pub const MAX_STATEMENT_BYTES: i32 = 1 << 20;

/// PRAGMAs a guest may run: they read the schema or set how its own
/// connection behaves.
const ALLOWED_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "foreign_keys",
    "defer_foreign_keys",
    "recursive_triggers",
    "case_sensitive_like",
    "user_version",
    "application_id",
    "integrity_check",
    "quick_check",
    "optimize",
    "data_version",
    "page_count",
    "page_size",
    "freelist_count",
    "function_list",
    "collation_list",
];

/// A value: a parameter, or a column of a row.
pub type Value = SqlValue;

/// Rows a query gave.
#[derive(Debug, Default)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// What a statement changed.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub changes: u64,
    pub last_insert_rowid: i64,
}

/// Why a call failed, with SQLite's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    #[error("{0}")]
    NoSuchDatabase(String),
    #[error("{0}")]
    Syntax(String),
    #[error("{0}")]
    Constraint(String),
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Full(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Other(String),
}

/// A SQL backend, as the capabilities call it: an embedded SQLite file or
/// a database on the operator's PostgreSQL.
#[async_trait::async_trait]
pub trait SqlBackend: Send + Sync {
    /// The add-on it serves, for messages.
    fn addon(&self) -> &AddonRef;
    /// Runs one statement: its changes.
    async fn execute(&self, statement: String, params: Vec<Value>) -> Result<Outcome, SqlError>;
    /// Runs one statement: its rows.
    async fn query(&self, statement: String, params: Vec<Value>) -> Result<Rows, SqlError>;
    /// Several statements without parameters, all or none.
    async fn execute_batch(&self, statements: String) -> Result<(), SqlError>;
    /// A transaction holding one connection until it ends; dropped
    /// unfinished, it rolls back.
    async fn begin(&self) -> Result<Box<dyn SqlTransaction>, SqlError>;
}

/// A transaction in progress.
#[async_trait::async_trait]
pub trait SqlTransaction: Send + Sync {
    async fn execute(&self, statement: String, params: Vec<Value>) -> Result<Outcome, SqlError>;
    async fn query(&self, statement: String, params: Vec<Value>) -> Result<Rows, SqlError>;
    /// Ends it, keeping (`true`) or discarding its changes.
    async fn finish(&self, commit: bool) -> Result<(), SqlError>;
}

#[async_trait::async_trait]
impl SqlBackend for Arc<SqlDatabase> {
    fn addon(&self) -> &AddonRef {
        &self.addon
    }
    async fn execute(&self, statement: String, params: Vec<Value>) -> Result<Outcome, SqlError> {
        SqlDatabase::execute(self, statement, params).await
    }
    async fn query(&self, statement: String, params: Vec<Value>) -> Result<Rows, SqlError> {
        SqlDatabase::query(self, statement, params).await
    }
    async fn execute_batch(&self, statements: String) -> Result<(), SqlError> {
        SqlDatabase::execute_batch(self, statements).await
    }
    async fn begin(&self) -> Result<Box<dyn SqlTransaction>, SqlError> {
        Ok(Box::new(SqlDatabase::begin(self).await?))
    }
}

#[async_trait::async_trait]
impl SqlTransaction for Transaction {
    async fn execute(&self, statement: String, params: Vec<Value>) -> Result<Outcome, SqlError> {
        Transaction::execute(self, statement, params).await
    }
    async fn query(&self, statement: String, params: Vec<Value>) -> Result<Rows, SqlError> {
        Transaction::query(self, statement, params).await
    }
    async fn finish(&self, commit: bool) -> Result<(), SqlError> {
        Transaction::finish(self, commit).await
    }
}

/// One add-on's database.
pub struct SqlDatabase {
    addon: AddonRef,
    file: PathBuf,
    idle: Mutex<Vec<Conn>>,
    permits: Arc<tokio::sync::Semaphore>,
    statement_time: Duration,
    quota: Quota,
}

impl Backend for SqlDatabase {
    fn set_quota(&self, bytes: u64) {
        self.quota.set(bytes);
    }
}

/// A connection and the switches its hooks read.
struct Conn {
    conn: Connection,
    hooks: Arc<Hooks>,
    statement_time: Duration,
    /// The quota it applies.
    quota: u64,
}

#[derive(Default)]
struct Hooks {
    /// Set while renga itself begins or ends a transaction.
    host: AtomicBool,
    /// Set when the call's caller went away.
    cancelled: AtomicBool,
    deadline: Mutex<Option<Instant>>,
}

impl SqlDatabase {
    pub fn new(addon: AddonRef, dir: PathBuf) -> SqlDatabase {
        SqlDatabase {
            file: dir.join("sql.sqlite3"),
            quota: Quota::new(addon.quota),
            addon,
            idle: Mutex::default(),
            permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
            statement_time: STATEMENT_TIME,
        }
    }

    /// The same database with another limit on one statement's time.
    pub fn with_statement_time(mut self, limit: Duration) -> SqlDatabase {
        self.statement_time = limit;
        self
    }

    pub fn addon(&self) -> &AddonRef {
        &self.addon
    }

    /// Runs one statement: its changes, or its rows read to the end and
    /// dropped.
    pub async fn execute(
        self: &Arc<Self>,
        statement: String,
        params: Vec<Value>,
    ) -> Result<Outcome, SqlError> {
        self.with_connection(move |conn, name| conn.execute(name, &statement, &params))
            .await
    }

    pub async fn query(
        self: &Arc<Self>,
        statement: String,
        params: Vec<Value>,
    ) -> Result<Rows, SqlError> {
        self.with_connection(move |conn, name| conn.query(name, &statement, &params))
            .await
    }

    /// Runs several statements separated by `;`, without parameters (a
    /// schema, say), all or none.
    pub async fn execute_batch(self: &Arc<Self>, statements: String) -> Result<(), SqlError> {
        self.with_connection(move |conn, name| {
            conn.host_statement(name, "BEGIN IMMEDIATE")?;
            match conn.batch(name, &statements) {
                Ok(()) => conn.host_statement(name, "COMMIT"),
                Err(e) => {
                    let _ = conn.host_statement(name, "ROLLBACK");
                    Err(e)
                }
            }
        })
        .await
    }

    /// Starts a transaction: it holds a connection (and the write lock)
    /// until it ends.
    pub async fn begin(self: &Arc<Self>) -> Result<Transaction, SqlError> {
        let permit = self.permit().await?;
        let db = self.clone();
        let conn = run_blocking(move || {
            let mut conn = db.take_idle()?;
            conn.host_statement(&db.addon.name, "BEGIN IMMEDIATE")?;
            Ok(conn)
        })
        .await?;
        Ok(Transaction {
            db: self.clone(),
            conn: Arc::new(Mutex::new(Some(conn))),
            _permit: permit,
        })
    }

    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, SqlError> {
        match tokio::time::timeout(BUSY_WAIT, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(SqlError::Busy(format!(
                "{}: all {MAX_CONNECTIONS} of its connections stayed in use (open transactions) for {}",
                self.addon.name,
                crate::units::HumanDuration(BUSY_WAIT)
            ))),
        }
    }

    /// An idle connection, or a new one (blocking).
    fn take_idle(&self) -> Result<Conn, SqlError> {
        let quota = self.quota.get();
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => Conn::open(&self.file, &self.addon, self.statement_time, quota)?,
        };
        if conn.quota != quota {
            apply_quota(&conn.conn, quota).map_err(|e| classify(&self.addon.name, &e))?;
            conn.quota = quota;
        }
        Ok(conn)
    }

    fn put_idle(&self, conn: Conn) {
        // A connection left inside a transaction (it cannot be: the
        // authorizer refuses BEGIN) is closed rather than shared.
        if conn.conn.is_autocommit() {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
        }
    }

    async fn with_connection<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&mut Conn, &str) -> Result<T, SqlError> + Send + 'static,
    ) -> Result<T, SqlError> {
        let _permit = self.permit().await?;
        let db = self.clone();
        let watch = CancelOnDrop::default();
        let running = watch.0.clone();
        run_blocking(move || {
            let mut conn = db.take_idle()?;
            arm(&running, Some(conn.hooks.clone()));
            let result = work(&mut conn, &db.addon.name);
            arm(&running, None);
            db.put_idle(conn);
            result
        })
        .await
    }
}

/// Interrupts the statement a dropped call is running: the blocking work
/// arms it with its connection's hooks while the statement runs.
#[derive(Default)]
struct CancelOnDrop(Arc<Mutex<Option<Arc<Hooks>>>>);

fn arm(slot: &Mutex<Option<Arc<Hooks>>>, hooks: Option<Arc<Hooks>>) {
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = hooks;
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(hooks) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            hooks.cancelled.store(true, Ordering::Relaxed);
        }
    }
}

async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SqlError> + Send + 'static,
) -> Result<T, SqlError> {
    blocking(move || Ok(work()))
        .await
        .map_err(SqlError::Other)?
}

/// A transaction in progress. Dropping it rolls it back.
pub struct Transaction {
    db: Arc<SqlDatabase>,
    conn: Arc<Mutex<Option<Conn>>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Transaction {
    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Conn, &str) -> Result<T, SqlError> + Send + 'static,
    ) -> Result<T, SqlError> {
        let (slot, name) = (self.conn.clone(), self.db.addon.name.clone());
        let watch = CancelOnDrop::default();
        let running = watch.0.clone();
        run_blocking(move || {
            let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
            let conn = guard
                .as_mut()
                .ok_or_else(|| SqlError::Other(format!("{name}: the transaction is over")))?;
            arm(&running, Some(conn.hooks.clone()));
            let result = work(conn, &name);
            arm(&running, None);
            result
        })
        .await
    }

    pub async fn execute(
        &self,
        statement: String,
        params: Vec<Value>,
    ) -> Result<Outcome, SqlError> {
        self.with(move |conn, name| conn.execute(name, &statement, &params))
            .await
    }

    pub async fn query(&self, statement: String, params: Vec<Value>) -> Result<Rows, SqlError> {
        self.with(move |conn, name| conn.query(name, &statement, &params))
            .await
    }

    /// Ends it, keeping (`true`) or discarding its changes; the connection
    /// goes back to the database.
    pub async fn finish(&self, commit: bool) -> Result<(), SqlError> {
        let (slot, db) = (self.conn.clone(), self.db.clone());
        run_blocking(move || {
            let mut conn = slot
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .ok_or_else(|| {
                    SqlError::Other(format!("{}: the transaction is over", db.addon.name))
                })?;
            let result = if commit {
                conn.host_statement(&db.addon.name, "COMMIT")
            } else {
                conn.host_statement(&db.addon.name, "ROLLBACK")
            };
            if result.is_err() && !conn.conn.is_autocommit() {
                let _ = conn.host_statement(&db.addon.name, "ROLLBACK");
            }
            db.put_idle(conn);
            result
        })
        .await
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let db = self.db.clone();
        let rollback = move || {
            let _ = conn.host_statement(&db.addon.name, "ROLLBACK");
            db.put_idle(conn);
        };
        // Off the async workers when there are some.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(rollback);
            }
            Err(_) => rollback(),
        }
    }
}

impl Conn {
    fn open(
        file: &std::path::Path,
        addon: &AddonRef,
        statement_time: Duration,
        quota: u64,
    ) -> Result<Conn, SqlError> {
        let mut conn = open_file(file, quota).map_err(|e| classify(&addon.name, &e))?;
        let _ = conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0);
        let _ = conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES);
        let _ = conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, MAX_STATEMENT_BYTES);
        let hooks = Arc::new(Hooks::default());
        let seen = hooks.clone();
        conn.progress_handler(
            1000,
            Some(move || {
                seen.cancelled.load(Ordering::Relaxed)
                    || seen
                        .deadline
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .is_some_and(|d| Instant::now() > d)
            }),
        )
        .map_err(|e| classify(&addon.name, &e))?;
        let host = hooks.clone();
        conn.authorizer(Some(move |context: AuthContext<'_>| {
            authorize(&context, host.host.load(Ordering::Relaxed))
        }))
        .map_err(|e| classify(&addon.name, &e))?;
        Ok(Conn {
            conn,
            hooks,
            statement_time,
            quota,
        })
    }

    fn start(&self) {
        self.hooks.cancelled.store(false, Ordering::Relaxed);
        *self
            .hooks
            .deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + self.statement_time);
    }

    fn host_statement(&mut self, name: &str, statement: &str) -> Result<(), SqlError> {
        self.hooks.host.store(true, Ordering::Relaxed);
        let result = self.conn.execute_batch(statement);
        self.hooks.host.store(false, Ordering::Relaxed);
        result.map_err(|e| classify(name, &e))
    }

    fn execute(
        &mut self,
        name: &str,
        statement: &str,
        params: &[Value],
    ) -> Result<Outcome, SqlError> {
        self.start();
        let run = || -> rusqlite::Result<()> {
            let mut prepared = self.conn.prepare(statement)?;
            let mut rows = prepared.query(rusqlite::params_from_iter(params))?;
            while rows.next()?.is_some() {}
            Ok(())
        };
        run().map_err(|e| classify(name, &e))?;
        Ok(Outcome {
            changes: self.conn.changes(),
            last_insert_rowid: self.conn.last_insert_rowid(),
        })
    }

    fn query(&mut self, name: &str, statement: &str, params: &[Value]) -> Result<Rows, SqlError> {
        self.start();
        let run = || -> rusqlite::Result<Result<Rows, SqlError>> {
            let mut prepared = self.conn.prepare(statement)?;
            let columns: Vec<String> = prepared.column_names().map(str::to_string).collect();
            let width = columns.len();
            let mut rows = prepared.query(rusqlite::params_from_iter(params))?;
            let mut out = Vec::new();
            let mut total = 0usize;
            while let Some(row) = rows.next()? {
                let mut values = Vec::with_capacity(width);
                for i in 0..width {
                    let value: SqlValue = row.get(i)?;
                    total += match &value {
                        SqlValue::Text(t) => t.len(),
                        SqlValue::Blob(b) => b.len(),
                        _ => 8,
                    };
                    values.push(value);
                }
                if total > MAX_RESULT_BYTES {
                    return Ok(Err(SqlError::Full(format!(
                        "{name}: the result is larger than the {} one query may return; ask for fewer rows",
                        crate::units::ByteSize(MAX_RESULT_BYTES as u64)
                    ))));
                }
                out.push(values);
            }
            Ok(Ok(Rows { columns, rows: out }))
        };
        run().map_err(|e| classify(name, &e))?
    }

    fn batch(&mut self, name: &str, statements: &str) -> Result<(), SqlError> {
        self.start();
        self.conn
            .execute_batch(statements)
            .map_err(|e| classify(name, &e))
    }
}

/// What a guest's statement may do.
fn authorize(context: &AuthContext<'_>, host: bool) -> Authorization {
    match context.action {
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
        AuthAction::Transaction { .. } if !host => Authorization::Deny,
        AuthAction::Pragma { pragma_name, .. } => {
            if ALLOWED_PRAGMAS
                .iter()
                .any(|p| p.eq_ignore_ascii_case(pragma_name))
            {
                Authorization::Allow
            } else {
                Authorization::Deny
            }
        }
        AuthAction::Function { function_name }
            if function_name.eq_ignore_ascii_case("load_extension") =>
        {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}

/// SQLite's error as one of renga's kinds, with its message.
fn classify(name: &str, e: &rusqlite::Error) -> SqlError {
    let text = format!("{name}: {e}");
    match e {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let message = message.clone().unwrap_or_else(|| failure.to_string());
            let text = format!("{name}: {message}");
            match failure.code {
                ErrorCode::ConstraintViolation => SqlError::Constraint(text),
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => SqlError::Busy(text),
                ErrorCode::DiskFull | ErrorCode::TooBig => SqlError::Full(text),
                ErrorCode::OperationInterrupted => SqlError::Timeout(format!(
                    "{name}: the statement ran longer than the {} a statement may take, or its caller went away",
                    crate::units::HumanDuration(STATEMENT_TIME)
                )),
                ErrorCode::AuthorizationForStatementDenied => SqlError::Denied(format!(
                    "{name}: {message} (a statement may not ATTACH a file, BEGIN or COMMIT outside a transaction from `begin`, or set a PRAGMA other than {})",
                    ALLOWED_PRAGMAS.join(", ")
                )),
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                    SqlError::Other(format!("{name}'s file is damaged: {message}"))
                }
                ErrorCode::Unknown => SqlError::Syntax(text),
                _ => SqlError::Other(text),
            }
        }
        rusqlite::Error::MultipleStatement => SqlError::Syntax(format!(
            "{name}: `execute` and `query` run one statement; use `execute-batch` for several"
        )),
        rusqlite::Error::InvalidParameterCount(given, wanted) => SqlError::Syntax(format!(
            "{name}: the statement has {wanted} parameters, {given} were given"
        )),
        rusqlite::Error::SqlInputError { .. } => SqlError::Syntax(text),
        _ => SqlError::Other(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(quota: u64) -> (Arc<SqlDatabase>, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "renga-sql-{}-{}",
            std::process::id(),
            crate::store::new_id()
        ));
        let addon = AddonRef::local("a".into(), "renga-sql-test".into(), quota);
        let db =
            SqlDatabase::new(addon, dir.clone()).with_statement_time(Duration::from_millis(300));
        (Arc::new(db), dir)
    }

    #[tokio::test]
    async fn statements_rows_transactions_and_errors() {
        let (db, dir) = database(64 << 20);
        db.execute_batch(
            "CREATE TABLE todo (id INTEGER PRIMARY KEY, title TEXT NOT NULL UNIQUE, done INTEGER, score REAL, data BLOB);"
                .into(),
        )
        .await
        .unwrap();
        let out = db
            .execute(
                "INSERT INTO todo (title, done, score, data) VALUES (?1, ?2, ?3, ?4)".into(),
                vec![
                    Value::Text("write".into()),
                    Value::Integer(0),
                    Value::Real(1.5),
                    Value::Blob(vec![1, 2]),
                ],
            )
            .await
            .unwrap();
        assert_eq!(out.changes, 1);
        assert_eq!(out.last_insert_rowid, 1);
        let rows = db
            .query(
                "SELECT id, title, done, score, data, NULL FROM todo".into(),
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            rows.columns,
            ["id", "title", "done", "score", "data", "NULL"]
        );
        assert_eq!(
            rows.rows,
            vec![vec![
                Value::Integer(1),
                Value::Text("write".into()),
                Value::Integer(0),
                Value::Real(1.5),
                Value::Blob(vec![1, 2]),
                Value::Null
            ]]
        );
        let err = db
            .execute(
                "INSERT INTO todo (title) VALUES (?1)".into(),
                vec![Value::Text("write".into())],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, SqlError::Constraint(_)), "{err:?}");
        let err = db.query("SELEKT 1".into(), vec![]).await.unwrap_err();
        assert!(
            matches!(err, SqlError::Syntax(ref m) if m.contains("syntax error")),
            "{err:?}"
        );
        for denied in [
            "ATTACH DATABASE '/tmp/elsewhere.db' AS other",
            "PRAGMA max_page_count = 100000000",
            "PRAGMA journal_mode = DELETE",
            "BEGIN",
            "VACUUM INTO '/tmp/renga-sql-copy.db'",
        ] {
            let err = db.execute(denied.into(), vec![]).await.unwrap_err();
            assert!(
                matches!(
                    err,
                    SqlError::Denied(_) | SqlError::Syntax(_) | SqlError::Other(_)
                ),
                "{denied}: {err:?}"
            );
        }
        assert!(!std::path::Path::new("/tmp/renga-sql-copy.db").exists());
        let ok = db
            .query("PRAGMA table_info(todo)".into(), vec![])
            .await
            .unwrap();
        assert_eq!(ok.rows.len(), 5);

        // A transaction commits together; a dropped one leaves nothing.
        let tx = db.begin().await.unwrap();
        tx.execute("INSERT INTO todo (title) VALUES ('a')".into(), vec![])
            .await
            .unwrap();
        let seen = tx
            .query("SELECT count(*) FROM todo".into(), vec![])
            .await
            .unwrap();
        assert_eq!(seen.rows[0][0], Value::Integer(2));
        tx.finish(true).await.unwrap();
        let tx = db.begin().await.unwrap();
        tx.execute("INSERT INTO todo (title) VALUES ('b')".into(), vec![])
            .await
            .unwrap();
        drop(tx);
        let tx = db.begin().await.unwrap();
        tx.execute("INSERT INTO todo (title) VALUES ('c')".into(), vec![])
            .await
            .unwrap();
        tx.finish(false).await.unwrap();
        let count = db
            .query("SELECT count(*) FROM todo".into(), vec![])
            .await
            .unwrap();
        assert_eq!(count.rows[0][0], Value::Integer(2));

        // A runaway statement is stopped.
        let err = db
            .query(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n".into(),
                vec![],
            )
            .await;
        assert!(matches!(err, Err(SqlError::Timeout(_))), "{err:?}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
