//! `renga-postgres`: SQL add-ons on the operator's PostgreSQL, named with
//! `renga server --postgres URL`.
//!
//! Each add-on is a database and a login role of its own, with a random
//! password: the role owns its database, nobody else may connect to it
//! (`CONNECT` is revoked from `PUBLIC`), and the role may create no roles
//! or databases. Its URL is the app's `DATABASE_URL`, for native dynos and
//! `pg:psql`. Wasm dynos reach it through `renga:sql`, with a pool of
//! [`MAX_CONNECTIONS`] per add-on in the host that logs in as the add-on's
//! own role, so that even the host's path cannot reach another add-on's
//! tables. Each statement may run for [`STATEMENT_TIME`] (the server's
//! `statement_timeout`, and a cancel from the host past it); a pool that
//! stays busy answers `busy` after [`POOL_WAIT`].
//!
//! Values travel as renga:sql's five kinds: integers, reals, text and blobs
//! are bound to the type the server infers for each parameter (a text to a
//! `uuid`, `json`, `date` or `timestamptz` column is converted), and
//! columns come back as the closest kind (booleans as 0 and 1; numerics,
//! dates, times, UUIDs and JSON as text; other types as their binary form).

mod database;
mod server;
mod values;

use std::error::Error as _;
use std::time::Duration;

pub use database::{PgDatabase, PgTransaction};
pub use server::{PgInfo, PgServer};

/// Connections one add-on's pool keeps at most.
pub const MAX_CONNECTIONS: usize = 4;
/// The longest one statement may run.
pub const STATEMENT_TIME: Duration = Duration::from_secs(10);
/// How long a call waits for a free connection, and for a new one.
pub const POOL_WAIT: Duration = Duration::from_secs(5);

pub(super) fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("…"));
            }
            parsed.to_string()
        }
        Err(_) => "the PostgreSQL server".to_string(),
    }
}

/// A database error in one line: the server's message, else the client's.
pub(super) fn message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => match e.source() {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

/// Quotes an identifier renga made (letters, digits and `_` only).
pub(super) fn ident(name: &str) -> String {
    debug_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    format!("\"{name}\"")
}
