//! The provider's own database, through `renga:sql`: one SQLite database
//! per add-on, made on first use and deleted with the add-on, which no app
//! and no other add-on can reach.
//!
//! Parameters are `$1`, `$2`, ... (or `?1`, `?2`, ...). SQLite numbers `$N`
//! parameters in the order they first appear in the statement, whatever
//! their digits, so write them in order: `$1` before `$2`.
//!
//! ```no_run
//! use renga_provider_sdk::sql;
//!
//! let db = sql::database("CREATE TABLE IF NOT EXISTS hits (key TEXT PRIMARY KEY, n INTEGER NOT NULL)")?;
//! db.execute(
//!     "INSERT INTO hits (key, n) VALUES ($1, 1) ON CONFLICT (key) DO UPDATE SET n = n + 1",
//!     &["home".into()],
//! )?;
//! let n = db.query("SELECT n FROM hits WHERE key = $1", &["home".into()])?
//!     .first()
//!     .and_then(|row| row[0].as_i64());
//! let changed = db.transaction(|tx| {
//!     tx.execute("DELETE FROM hits WHERE n > $1", &[100.into()])
//! })?;
//! # Ok::<(), sql::Error>(())
//! ```

use std::cell::RefCell;
use std::rc::Rc;

use crate::bindings::renga::sql::sql::{Database as RawDatabase, Transaction as RawTransaction};
pub use crate::bindings::renga::sql::sql::{Error, Outcome, Rows, Value};

thread_local! {
    /// The add-on's database, once this instance has opened it.
    static DATABASE: RefCell<Option<Rc<Database>>> = const { RefCell::new(None) };
}

/// The add-on's database, opened once per instance: the first call in an
/// instance opens it and runs `schema` (statements separated by `;`, all
/// or none); later calls return the same handle. Instances come and go, so
/// `schema` runs often: write it with `CREATE TABLE IF NOT EXISTS` and
/// `CREATE INDEX IF NOT EXISTS`. Pass the same schema from every call.
pub fn database(schema: &str) -> Result<Rc<Database>, Error> {
    if let Some(db) = DATABASE.with(|slot| slot.borrow().clone()) {
        return Ok(db);
    }
    let db = Rc::new(Database::open_default()?);
    if !schema.is_empty() {
        db.execute_batch(schema)?;
    }
    DATABASE.with(|slot| *slot.borrow_mut() = Some(db.clone()));
    Ok(db)
}

impl Error {
    /// The database's own message.
    pub fn message(&self) -> &str {
        match self {
            Error::NoSuchDatabase(m)
            | Error::Syntax(m)
            | Error::Constraint(m)
            | Error::Busy(m)
            | Error::Full(m)
            | Error::Timeout(m)
            | Error::Denied(m)
            | Error::Other(m) => m,
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Integer(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Integer(v.into())
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Integer(v.into())
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Integer(v.into())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Real(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Blob(v)
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Blob(v.to_vec())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl Value {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Real(r) => Some(*r),
            Value::Integer(i) => Some(*i as f64),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }

    /// A blob's bytes, or a text's.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Blob(b) => Some(b),
            Value::Text(t) => Some(t.as_bytes()),
            _ => None,
        }
    }

    /// A blob's bytes, or a text's, without copying them.
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Value::Blob(b) => Some(b),
            Value::Text(t) => Some(t.into_bytes()),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

impl Rows {
    /// The index of a column by name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The first row, if there is one.
    pub fn first(&self) -> Option<&[Value]> {
        self.rows.first().map(Vec::as_slice)
    }

    /// The first row, taken out of the result.
    pub fn into_first(self) -> Option<Vec<Value>> {
        self.rows.into_iter().next()
    }

    /// The texts in one column, in row order (rows where it is not a text
    /// are skipped).
    pub fn strings(&self, column: usize) -> Vec<String> {
        self.rows
            .iter()
            .filter_map(|row| row.get(column)?.as_str().map(str::to_string))
            .collect()
    }
}

/// What runs statements: a [`Database`] or a [`Transaction`], so that a
/// helper (`fn live(db: &impl Execute, key: &str)`) serves both.
pub trait Execute {
    /// Runs one statement with its parameters.
    fn execute(&self, statement: &str, params: &[Value]) -> Result<Outcome, Error>;
    /// Runs one statement and returns its rows.
    fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, Error>;
}

impl Execute for Database {
    fn execute(&self, statement: &str, params: &[Value]) -> Result<Outcome, Error> {
        self.raw.execute(statement, params)
    }
    fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, Error> {
        self.raw.query(statement, params)
    }
}

impl Execute for Transaction {
    fn execute(&self, statement: &str, params: &[Value]) -> Result<Outcome, Error> {
        self.raw.execute(statement, params)
    }
    fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, Error> {
        self.raw.query(statement, params)
    }
}

/// `$first, $first+1, ...`: `count` parameters for an `IN (...)` list.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An open database.
pub struct Database {
    raw: RawDatabase,
}

impl Database {
    /// The add-on's database, opened anew (see [`database`] for one handle
    /// per instance).
    pub fn open_default() -> Result<Database, Error> {
        Ok(Database {
            raw: RawDatabase::open("default")?,
        })
    }

    /// Runs one statement with its parameters.
    pub fn execute(&self, statement: &str, params: &[Value]) -> Result<Outcome, Error> {
        self.raw.execute(statement, params)
    }

    /// Runs one statement and returns its rows.
    pub fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, Error> {
        self.raw.query(statement, params)
    }

    /// Runs several `;`-separated statements without parameters (a
    /// schema), all or none.
    pub fn execute_batch(&self, statements: &str) -> Result<(), Error> {
        self.raw.execute_batch(statements)
    }

    /// Runs `work` in a transaction, which holds the database's write lock
    /// from its start: committed when `work` returns `Ok`, rolled back when
    /// it returns `Err` (or traps, when renga drops the instance). A read
    /// and a write in one transaction are atomic against every other
    /// caller, in every instance. Inside `work`, run statements through
    /// the transaction only: a write through the database would wait for
    /// the lock the transaction holds.
    pub fn transaction<T, E: From<Error>>(
        &self,
        work: impl FnOnce(&Transaction) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = Transaction {
            raw: self.raw.begin()?,
        };
        match work(&tx) {
            Ok(value) => {
                tx.raw.commit()?;
                Ok(value)
            }
            Err(e) => {
                // The error that ended the work matters more than one
                // rolling back; dropping the transaction rolls back too.
                let _ = tx.raw.rollback();
                Err(e)
            }
        }
    }
}

/// A transaction in progress (see [`Database::transaction`]).
pub struct Transaction {
    raw: RawTransaction,
}

impl Transaction {
    pub fn execute(&self, statement: &str, params: &[Value]) -> Result<Outcome, Error> {
        self.raw.execute(statement, params)
    }

    pub fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, Error> {
        self.raw.query(statement, params)
    }
}
