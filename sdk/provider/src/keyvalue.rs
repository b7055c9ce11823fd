//! A key-value provider: the `wasi:keyvalue` (0.2.0-draft2) interfaces it
//! exports, as the traits it implements, and helpers for what most
//! providers do alike.
//!
//! - [`Store`]: `open`, which renga calls with the add-on's name; it
//!   returns a [`Bucket`] made with `Bucket::new(value)` from the
//!   provider's [`GuestBucket`] type (get, set, delete, exists, list-keys).
//! - [`Atomics`]: `increment`, and `swap` of a [`Cas`] made by the
//!   provider's [`GuestCas`] type (`new` and `current`).
//! - [`Batch`]: get-many, set-many, delete-many.
//!
//! Functions that take a bucket get a [`BucketBorrow`]; `bucket.get::<T>()`
//! is the provider's own bucket value. A `Cas` is consumed by `swap`:
//! `cas.into_inner::<T>()` is the provider's value.
//!
//! A [`sql::Error`](crate::sql::Error) or an
//! [`options::Error`](crate::options::Error) converts into [`Error`], so
//! `?` works on the provider's database and options inside these methods.

pub use crate::bindings::exports::wasi::keyvalue::atomics::{
    Cas, CasBorrow, CasError, Guest as Atomics, GuestCas,
};
pub use crate::bindings::exports::wasi::keyvalue::batch::Guest as Batch;
pub use crate::bindings::exports::wasi::keyvalue::store::{
    Bucket, BucketBorrow, Error, Guest as Store, GuestBucket, KeyResponse,
};

/// A key and its value, if it has one: an answer of `get-many`.
pub type Found = (String, Option<Vec<u8>>);

/// Keys in one page of `list-keys`, as renga's own store pages them.
pub const PAGE: usize = 1000;

impl Error {
    /// An error an app sees as `error::other` with this message.
    pub fn other(message: impl std::fmt::Display) -> Error {
        Error::Other(message.to_string())
    }
}

impl From<crate::sql::Error> for Error {
    fn from(e: crate::sql::Error) -> Error {
        Error::Other(e.message().to_string())
    }
}

impl From<crate::options::Error> for Error {
    fn from(e: crate::options::Error) -> Error {
        Error::Other(e.0)
    }
}

impl From<crate::sql::Error> for CasError {
    fn from(e: crate::sql::Error) -> CasError {
        CasError::StoreError(e.into())
    }
}

impl From<Error> for CasError {
    fn from(e: Error) -> CasError {
        CasError::StoreError(e)
    }
}

/// One page of `list-keys`, from the keys after the cursor in order, of
/// which there are up to `page + 1` (ask the database for one more than a
/// page): the first `page` of them, and their last as the cursor when
/// there were more. The next call's cursor is that key, so the query is
/// `WHERE key > $1 ORDER BY key LIMIT <page + 1>`.
pub fn key_page(mut keys: Vec<String>, page: usize) -> KeyResponse {
    let cursor = if keys.len() > page {
        keys.truncate(page);
        keys.last().cloned()
    } else {
        None
    };
    KeyResponse { keys, cursor }
}

/// A counter's value as `increment` reads it: a number in decimal ASCII
/// (as renga's own store and Redis keep numbers, so `get` shows it), a
/// missing value being 0.
pub fn counter(key: &str, value: Option<&[u8]>) -> Result<i64, Error> {
    match value {
        None => Ok(0),
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.trim().parse::<i64>().ok())
            .ok_or_else(|| Error::Other(format!("{key} does not hold a number"))),
    }
}

/// A counter's value as it is stored: decimal ASCII.
pub fn counter_bytes(value: i64) -> Vec<u8> {
    value.to_string().into_bytes()
}

/// `current + delta`, or why it cannot be.
pub fn add(key: &str, current: i64, delta: i64) -> Result<i64, Error> {
    current.checked_add(delta).ok_or_else(|| {
        Error::Other(format!(
            "{key} + {delta} is out of range ({} to {})",
            i64::MIN,
            i64::MAX
        ))
    })
}

/// `get-many` as one `get` per key, for a provider with nothing faster.
pub fn get_each<B: GuestBucket>(bucket: &B, keys: Vec<String>) -> Result<Vec<Found>, Error> {
    keys.into_iter()
        .map(|key| {
            let value = bucket.get(key.clone())?;
            Ok((key, value))
        })
        .collect()
}

/// `set-many` as one `set` per pair, stopping at the first error (the
/// interface promises no atomicity).
pub fn set_each<B: GuestBucket>(bucket: &B, pairs: Vec<(String, Vec<u8>)>) -> Result<(), Error> {
    pairs
        .into_iter()
        .try_for_each(|(key, value)| bucket.set(key, value))
}

/// `delete-many` as one `delete` per key, stopping at the first error.
pub fn delete_each<B: GuestBucket>(bucket: &B, keys: Vec<String>) -> Result<(), Error> {
    keys.into_iter().try_for_each(|key| bucket.delete(key))
}
