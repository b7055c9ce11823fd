//! A key-value store: the app's `renga-kv` add-on, through `wasi:keyvalue`.
//!
//! ```no_run
//! let store = renga_sdk::kv::Store::open_default()?;
//! let hits = store.increment("hits", 1)?;
//! store.set("last", b"now")?;
//! # Ok::<(), renga_sdk::kv::Error>(())
//! ```

use crate::bindings::wasi::keyvalue::{atomics, batch, store};

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The app has no store of that name: create one with
    /// `renga addons:create renga-kv -a APP` (or attach it under that name).
    NoSuchStore,
    AccessDenied,
    /// The store refused: a value too large, a full store, a damaged file.
    Other(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NoSuchStore => f.write_str(
                "no such key-value store: create one with `renga addons:create renga-kv`",
            ),
            Error::AccessDenied => f.write_str("access to the key-value store was denied"),
            Error::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::NoSuchStore => Error::NoSuchStore,
            store::Error::AccessDenied => Error::AccessDenied,
            store::Error::Other(m) => Error::Other(m),
        }
    }
}

/// A key and its value, if it has one.
pub type Found = (String, Option<Vec<u8>>);

/// An open store.
pub struct Store {
    bucket: store::Bucket,
}

impl Store {
    /// The app's default store (the add-on attached as `RENGA_KV`, else the
    /// first one).
    pub fn open_default() -> Result<Store, Error> {
        Store::open("default")
    }

    /// The store attached under `name` (`renga addons:create renga-kv --as
    /// NAME`), or named `name`.
    pub fn open(name: &str) -> Result<Store, Error> {
        Ok(Store {
            bucket: store::open(name)?,
        })
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.bucket.get(key)?)
    }

    /// A value as text (`None` when missing or not UTF-8).
    pub fn get_string(&self, key: &str) -> Result<Option<String>, Error> {
        Ok(self.get(key)?.and_then(|v| String::from_utf8(v).ok()))
    }

    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
        Ok(self.bucket.set(key, value.as_ref())?)
    }

    pub fn delete(&self, key: &str) -> Result<(), Error> {
        Ok(self.bucket.delete(key)?)
    }

    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        Ok(self.bucket.exists(key)?)
    }

    /// Adds `delta` to the number at `key` (0 when missing) and returns
    /// the sum, atomically across every dyno.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, Error> {
        Ok(atomics::increment(&self.bucket, key, delta)?)
    }

    /// Sets `key` to what `update` makes of its current value, retrying
    /// when another writer got there first.
    pub fn update(
        &self,
        key: &str,
        mut update: impl FnMut(Option<&[u8]>) -> Vec<u8>,
    ) -> Result<(), Error> {
        let mut cas = atomics::Cas::new(&self.bucket, key)?;
        loop {
            let current = cas.current()?;
            match atomics::swap(cas, &update(current.as_deref())) {
                Ok(()) => return Ok(()),
                Err(atomics::CasError::CasFailed(fresh)) => cas = fresh,
                Err(atomics::CasError::StoreError(e)) => return Err(e.into()),
            }
        }
    }

    /// Every key, in order (pages are fetched as the iterator goes).
    pub fn keys(&self) -> Keys<'_> {
        Keys {
            store: self,
            page: Vec::new().into_iter(),
            cursor: None,
            done: false,
        }
    }

    /// The values of several keys at once, in order (`None` where a key
    /// is missing).
    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Found>, Error> {
        Ok(batch::get_many(&self.bucket, keys)?)
    }

    /// Sets several keys at once, all or none.
    pub fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), Error> {
        Ok(batch::set_many(&self.bucket, pairs)?)
    }

    pub fn delete_many(&self, keys: &[String]) -> Result<(), Error> {
        Ok(batch::delete_many(&self.bucket, keys)?)
    }
}

/// The keys of a store, page by page.
pub struct Keys<'a> {
    store: &'a Store,
    page: std::vec::IntoIter<String>,
    cursor: Option<String>,
    done: bool,
}

impl Iterator for Keys<'_> {
    type Item = Result<String, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(key) = self.page.next() {
                return Some(Ok(key));
            }
            if self.done {
                return None;
            }
            match self.store.bucket.list_keys(self.cursor.as_deref()) {
                Ok(response) => {
                    self.done = response.cursor.is_none();
                    self.cursor = response.cursor;
                    self.page = response.keys.into_iter();
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e.into()));
                }
            }
        }
    }
}
