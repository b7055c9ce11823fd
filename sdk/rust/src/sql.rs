//! A SQL database: the app's `renga-sql` add-on, through `renga:sql`
//! (SQLite's dialect).
//!
//! ```no_run
//! use renga_sdk::sql::{Database, Value};
//! let db = Database::open_default()?;
//! db.execute_batch("CREATE TABLE IF NOT EXISTS todo (id INTEGER PRIMARY KEY, title TEXT)")?;
//! db.execute("INSERT INTO todo (title) VALUES (?1)", &["write it".into()])?;
//! for row in db.query("SELECT id, title FROM todo", &[])?.rows {
//!     let title: &str = row[1].as_str().unwrap_or_default();
//! }
//! db.transaction(|tx| {
//!     tx.execute("UPDATE todo SET title = ?1", &["done".into()])?;
//!     Ok(())
//! })?;
//! # Ok::<(), renga_sdk::sql::Error>(())
//! ```

use crate::bindings::renga::sql::sql::{Database as RawDatabase, Transaction as RawTransaction};
pub use crate::bindings::renga::sql::sql::{Error, Outcome, Rows, Value};

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

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Blob(v)
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

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Blob(b) => Some(b),
            Value::Text(t) => Some(t.as_bytes()),
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
}

/// An open database.
pub struct Database {
    raw: RawDatabase,
}

impl Database {
    /// The app's default database (the add-on attached as `RENGA_SQL`,
    /// else the first one).
    pub fn open_default() -> Result<Database, Error> {
        Database::open("default")
    }

    /// The database attached under `name`, or named `name`.
    pub fn open(name: &str) -> Result<Database, Error> {
        Ok(Database {
            raw: RawDatabase::open(name)?,
        })
    }

    /// Runs one statement; `?1`, `?2`... are `params`.
    pub fn execute(&self, statement: &str, params: &[Value]) -> Result<Outcome, Error> {
        self.raw.execute(statement, params)
    }

    /// Runs one statement and returns its rows.
    pub fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, Error> {
        self.raw.query(statement, params)
    }

    /// Runs several `;`-separated statements (a schema), all or none.
    pub fn execute_batch(&self, statements: &str) -> Result<(), Error> {
        self.raw.execute_batch(statements)
    }

    /// Runs `work` in a transaction: committed when it returns `Ok`, rolled
    /// back when it returns `Err` (or panics).
    pub fn transaction<T>(
        &self,
        work: impl FnOnce(&Transaction) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let tx = Transaction {
            raw: self.raw.begin()?,
        };
        match work(&tx) {
            Ok(value) => {
                tx.raw.commit()?;
                Ok(value)
            }
            Err(e) => {
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
