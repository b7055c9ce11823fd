//! `renga-kv`: a key-value store, one SQLite file per add-on.
//!
//! Keys are strings of up to [`MAX_KEY_BYTES`], values bytes of up to
//! [`MAX_VALUE_BYTES`]. Every write replaces the row, so a row's id is a
//! version that never repeats: compare-and-swap compares it. One connection
//! per store, used by one call at a time, so `increment` is atomic across
//! dynos and requests without waiting on SQLite's lock.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use super::{AddonRef, Backend, Quota, apply_quota, blocking, describe, open_file};

/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 4096;
/// The largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Keys per page of `list-keys`.
pub const LIST_PAGE: usize = 1000;
/// Keys one batch call may name.
pub const MAX_BATCH_KEYS: usize = 1000;
/// Bytes one batch call may read or write.
pub const MAX_BATCH_BYTES: usize = 16 << 20;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS kv (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    value BLOB NOT NULL
)";

/// One add-on's store.
pub struct KvStore {
    addon: AddonRef,
    file: PathBuf,
    quota: Quota,
    /// The connection, and the quota it applies.
    conn: Mutex<Option<(Connection, u64)>>,
}

impl Backend for KvStore {
    fn set_quota(&self, bytes: u64) {
        self.quota.set(bytes);
    }
}

/// A page of keys and where the next one starts.
pub struct Page<C> {
    pub keys: Vec<String>,
    pub next: Option<C>,
}

/// A value as a compare-and-swap saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub value: Option<Vec<u8>>,
    /// The embedded store's row version; other backends compare the value.
    pub(crate) version: Option<i64>,
}

/// A key-value backend, as the capabilities call it: the embedded store,
/// a key prefix on Redis, or a provider component. Every failure is a
/// message for the guest.
#[async_trait::async_trait]
pub trait Kv: Send + Sync {
    /// The add-on it serves, for messages.
    fn addon(&self) -> &AddonRef;
    async fn get(&self, key: String) -> Result<Option<Vec<u8>>, String>;
    async fn set(&self, key: String, value: Vec<u8>) -> Result<(), String>;
    async fn delete(&self, key: String) -> Result<(), String>;
    async fn exists(&self, key: String) -> Result<bool, String>;
    /// Keys in order, after the key `after` (the page before's last).
    async fn list_after(&self, after: Option<String>) -> Result<Page<String>, String>;
    /// Keys in order, from the `offset`th.
    async fn list_from(&self, offset: u64) -> Result<Page<u64>, String>;
    /// Adds `delta` to the number at `key` (missing is 0), atomically; a
    /// sum outside `range` is refused.
    async fn increment(
        &self,
        key: String,
        delta: i128,
        range: (i128, i128),
    ) -> Result<i128, String>;
    async fn get_many(&self, keys: Vec<String>) -> Result<Vec<(String, Option<Vec<u8>>)>, String>;
    async fn set_many(&self, pairs: Vec<(String, Vec<u8>)>) -> Result<(), String>;
    async fn delete_many(&self, keys: Vec<String>) -> Result<(), String>;
    /// What `key` holds now, for a later [`Kv::swap`].
    async fn watch(&self, key: String) -> Result<Seen, String>;
    /// Sets `key` if it still holds what `seen` saw; false if it changed.
    async fn swap(&self, key: String, seen: &Seen, value: Vec<u8>) -> Result<bool, String>;
}

#[async_trait::async_trait]
impl Kv for Arc<KvStore> {
    fn addon(&self) -> &AddonRef {
        &self.addon
    }
    async fn get(&self, key: String) -> Result<Option<Vec<u8>>, String> {
        KvStore::get(self, key).await
    }
    async fn set(&self, key: String, value: Vec<u8>) -> Result<(), String> {
        KvStore::set(self, key, value).await
    }
    async fn delete(&self, key: String) -> Result<(), String> {
        KvStore::delete(self, key).await
    }
    async fn exists(&self, key: String) -> Result<bool, String> {
        KvStore::exists(self, key).await
    }
    async fn list_after(&self, after: Option<String>) -> Result<Page<String>, String> {
        KvStore::list_after(self, after).await
    }
    async fn list_from(&self, offset: u64) -> Result<Page<u64>, String> {
        KvStore::list_from(self, offset).await
    }
    async fn increment(
        &self,
        key: String,
        delta: i128,
        range: (i128, i128),
    ) -> Result<i128, String> {
        KvStore::increment(self, key, delta, range).await
    }
    async fn get_many(&self, keys: Vec<String>) -> Result<Vec<(String, Option<Vec<u8>>)>, String> {
        KvStore::get_many(self, keys).await
    }
    async fn set_many(&self, pairs: Vec<(String, Vec<u8>)>) -> Result<(), String> {
        KvStore::set_many(self, pairs).await
    }
    async fn delete_many(&self, keys: Vec<String>) -> Result<(), String> {
        KvStore::delete_many(self, keys).await
    }
    async fn watch(&self, key: String) -> Result<Seen, String> {
        KvStore::watch(self, key).await
    }
    async fn swap(&self, key: String, seen: &Seen, value: Vec<u8>) -> Result<bool, String> {
        KvStore::swap(self, key, seen, value).await
    }
}

impl KvStore {
    /// The store in `dir` (the file is opened on first use).
    pub fn new(addon: AddonRef, dir: PathBuf) -> KvStore {
        KvStore {
            file: dir.join("kv.sqlite3"),
            quota: Quota::new(addon.quota),
            addon,
            conn: Mutex::new(None),
        }
    }

    pub fn addon(&self) -> &AddonRef {
        &self.addon
    }

    /// Runs `work` with the store's connection, off the async workers.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let store = self.clone();
        blocking(move || {
            let mut slot = store.conn.lock().unwrap_or_else(|e| e.into_inner());
            let quota = store.quota.get();
            if slot.is_none() {
                let conn = open_file(&store.file, quota)
                    .and_then(|conn| conn.execute_batch(SCHEMA).map(|_| conn))
                    .map_err(|e| describe(&store.addon.name, &e))?;
                *slot = Some((conn, quota));
            }
            let (conn, applied) = slot.as_mut().expect("opened above");
            if *applied != quota {
                apply_quota(conn, quota).map_err(|e| describe(&store.addon.name, &e))?;
                *applied = quota;
            }
            work(conn).map_err(|e| {
                let text = describe(&store.addon.name, &e);
                // A damaged or vanished file is opened again next time.
                if matches!(
                    e.sqlite_error_code(),
                    Some(
                        rusqlite::ErrorCode::DatabaseCorrupt
                            | rusqlite::ErrorCode::NotADatabase
                            | rusqlite::ErrorCode::SystemIoFailure
                    )
                ) {
                    *slot = None;
                }
                text
            })
        })
        .await
    }

    pub async fn get(self: &Arc<Self>, key: String) -> Result<Option<Vec<u8>>, String> {
        check_key(&key)?;
        self.run(move |conn| {
            conn.prepare_cached("SELECT value FROM kv WHERE key = ?1")?
                .query_row([&key], |row| row.get(0))
                .optional()
        })
        .await
    }

    pub async fn set(self: &Arc<Self>, key: String, value: Vec<u8>) -> Result<(), String> {
        check_key(&key)?;
        check_value(&value)?;
        self.run(move |conn| {
            conn.prepare_cached("INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)")?
                .execute(params![key, value])
                .map(|_| ())
        })
        .await
    }

    pub async fn delete(self: &Arc<Self>, key: String) -> Result<(), String> {
        check_key(&key)?;
        self.run(move |conn| {
            conn.prepare_cached("DELETE FROM kv WHERE key = ?1")?
                .execute([&key])
                .map(|_| ())
        })
        .await
    }

    pub async fn exists(self: &Arc<Self>, key: String) -> Result<bool, String> {
        check_key(&key)?;
        self.run(move |conn| {
            conn.prepare_cached("SELECT 1 FROM kv WHERE key = ?1")?
                .exists([&key])
        })
        .await
    }

    /// Keys in order, after the key `after` (the page before's last).
    pub async fn list_after(
        self: &Arc<Self>,
        after: Option<String>,
    ) -> Result<Page<String>, String> {
        self.run(move |conn| {
            let mut keys: Vec<String> = conn
                .prepare_cached("SELECT key FROM kv WHERE key > ?1 ORDER BY key LIMIT ?2")?
                .query_map(
                    params![after.unwrap_or_default(), LIST_PAGE as i64 + 1],
                    |row| row.get(0),
                )?
                .collect::<rusqlite::Result<_>>()?;
            let more = keys.len() > LIST_PAGE;
            keys.truncate(LIST_PAGE);
            let next = more.then(|| keys.last().cloned()).flatten();
            Ok(Page { keys, next })
        })
        .await
    }

    /// Keys in order, from the `offset`th.
    pub async fn list_from(self: &Arc<Self>, offset: u64) -> Result<Page<u64>, String> {
        let offset = i64::try_from(offset).map_err(|_| "the cursor is past the last key")?;
        self.run(move |conn| {
            let mut keys: Vec<String> = conn
                .prepare_cached("SELECT key FROM kv ORDER BY key LIMIT ?1 OFFSET ?2")?
                .query_map(params![LIST_PAGE as i64 + 1, offset], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let more = keys.len() > LIST_PAGE;
            keys.truncate(LIST_PAGE);
            let next = more.then_some(offset as u64 + LIST_PAGE as u64);
            Ok(Page { keys, next })
        })
        .await
    }

    /// Adds `delta` to the number stored at `key` (a missing key is 0) and
    /// returns the sum, atomically. Numbers are stored as decimal text, as
    /// Redis and wasmtime store them. A sum outside `range` is refused.
    pub async fn increment(
        self: &Arc<Self>,
        key: String,
        delta: i128,
        range: (i128, i128),
    ) -> Result<i128, String> {
        check_key(&key)?;
        let name = self.addon.name.clone();
        let outcome = self
            .run(move |conn| {
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let current: Option<Vec<u8>> = tx
                    .prepare_cached("SELECT value FROM kv WHERE key = ?1")?
                    .query_row([&key], |row| row.get(0))
                    .optional()?;
                let current = match current {
                    None => 0,
                    Some(bytes) => match std::str::from_utf8(&bytes)
                        .ok()
                        .and_then(|text| text.trim().parse::<i128>().ok())
                    {
                        Some(n) => n,
                        None => return Ok(Err(format!("{key} does not hold a number"))),
                    },
                };
                let sum = current
                    .checked_add(delta)
                    .filter(|n| (range.0..=range.1).contains(n));
                let Some(sum) = sum else {
                    return Ok(Err(format!(
                        "{key} + {delta} is out of range ({} to {})",
                        range.0, range.1
                    )));
                };
                tx.prepare_cached("INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)")?
                    .execute(params![key, sum.to_string().into_bytes()])?;
                tx.commit()?;
                Ok(Ok(sum))
            })
            .await?;
        outcome.map_err(|e| format!("{name}: {e}"))
    }

    /// The values of `keys`, in order (`None` where a key is missing).
    pub async fn get_many(
        self: &Arc<Self>,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, String> {
        check_batch(&keys)?;
        for key in &keys {
            check_key(key)?;
        }
        let name = self.addon.name.clone();
        self.run(move |conn| {
            let mut out = Vec::with_capacity(keys.len());
            let mut total = 0usize;
            let mut statement = conn.prepare_cached("SELECT value FROM kv WHERE key = ?1")?;
            for key in keys {
                let value: Option<Vec<u8>> =
                    statement.query_row([&key], |row| row.get(0)).optional()?;
                total += value.as_ref().map_or(0, Vec::len);
                if total > MAX_BATCH_BYTES {
                    return Ok(Err(format!(
                        "{name}: the values asked for are more than the {} one call may read; ask for fewer keys",
                        crate::units::ByteSize(MAX_BATCH_BYTES as u64)
                    )));
                }
                out.push((key, value));
            }
            Ok(Ok(out))
        })
        .await?
    }

    /// Sets every pair, all or none.
    pub async fn set_many(self: &Arc<Self>, pairs: Vec<(String, Vec<u8>)>) -> Result<(), String> {
        check_batch(&pairs)?;
        let mut total = 0usize;
        for (key, value) in &pairs {
            check_key(key)?;
            check_value(value)?;
            total += value.len();
        }
        if total > MAX_BATCH_BYTES {
            return Err(format!(
                "the values are more than the {} one call may write",
                crate::units::ByteSize(MAX_BATCH_BYTES as u64)
            ));
        }
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut statement =
                    tx.prepare_cached("INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)")?;
                for (key, value) in pairs {
                    statement.execute(params![key, value])?;
                }
            }
            tx.commit()
        })
        .await
    }

    /// Deletes every key, all or none.
    pub async fn delete_many(self: &Arc<Self>, keys: Vec<String>) -> Result<(), String> {
        check_batch(&keys)?;
        for key in &keys {
            check_key(key)?;
        }
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut statement = tx.prepare_cached("DELETE FROM kv WHERE key = ?1")?;
                for key in keys {
                    statement.execute([key])?;
                }
            }
            tx.commit()
        })
        .await
    }

    /// What `key` holds now, for a later [`KvStore::swap`].
    pub async fn watch(self: &Arc<Self>, key: String) -> Result<Seen, String> {
        check_key(&key)?;
        self.run(move |conn| {
            let row: Option<(i64, Vec<u8>)> = conn
                .prepare_cached("SELECT version, value FROM kv WHERE key = ?1")?
                .query_row([&key], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            Ok(match row {
                Some((version, value)) => Seen {
                    value: Some(value),
                    version: Some(version),
                },
                None => Seen {
                    value: None,
                    version: None,
                },
            })
        })
        .await
    }

    /// Sets `key` to `value` if it still holds what `seen` saw; false (and
    /// nothing written) if it changed since.
    pub async fn swap(
        self: &Arc<Self>,
        key: String,
        seen: &Seen,
        value: Vec<u8>,
    ) -> Result<bool, String> {
        check_key(&key)?;
        check_value(&value)?;
        let expected = seen.version;
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let now: Option<i64> = tx
                .prepare_cached("SELECT version FROM kv WHERE key = ?1")?
                .query_row([&key], |row| row.get(0))
                .optional()?;
            if now != expected {
                return Ok(false);
            }
            tx.prepare_cached("INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)")?
                .execute(params![key, value])?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }
}

pub(crate) fn check_key(key: &str) -> Result<(), String> {
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "a key of {} bytes is longer than the {MAX_KEY_BYTES} a key may have",
            key.len()
        ));
    }
    Ok(())
}

pub(crate) fn check_value(value: &[u8]) -> Result<(), String> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "a value of {} is larger than the {} a value may have",
            crate::units::ByteSize(value.len() as u64),
            crate::units::ByteSize(MAX_VALUE_BYTES as u64)
        ));
    }
    Ok(())
}

pub(crate) fn check_batch<T>(items: &[T]) -> Result<(), String> {
    if items.len() > MAX_BATCH_KEYS {
        return Err(format!(
            "{} keys are more than the {MAX_BATCH_KEYS} one batch call may name",
            items.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(quota: u64) -> (Arc<KvStore>, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "renga-kv-{}-{}",
            std::process::id(),
            crate::store::new_id()
        ));
        let addon = AddonRef::local("a".into(), "renga-kv-test".into(), quota);
        (Arc::new(KvStore::new(addon, dir.clone())), dir)
    }

    #[tokio::test]
    async fn values_counters_pages_and_swaps() {
        let (kv, dir) = store(64 << 20);
        assert_eq!(kv.get("a".into()).await.unwrap(), None);
        kv.set("a".into(), b"1".to_vec()).await.unwrap();
        assert_eq!(kv.get("a".into()).await.unwrap(), Some(b"1".to_vec()));
        assert!(kv.exists("a".into()).await.unwrap());
        let range = (i64::MIN as i128, i64::MAX as i128);
        assert_eq!(kv.increment("a".into(), 41, range).await.unwrap(), 42);
        assert_eq!(kv.increment("n".into(), -2, range).await.unwrap(), -2);
        let err = kv
            .increment("n".into(), 1, (0, u64::MAX as i128))
            .await
            .unwrap_err();
        assert!(err.contains("out of range"), "{err}");
        kv.set("t".into(), b"text".to_vec()).await.unwrap();
        let err = kv.increment("t".into(), 1, range).await.unwrap_err();
        assert!(err.contains("not hold a number"), "{err}");

        let seen = kv.watch("a".into()).await.unwrap();
        assert_eq!(seen.value.as_deref(), Some(&b"42"[..]));
        kv.set("a".into(), b"42".to_vec()).await.unwrap();
        // Rewritten with the same bytes: still a change.
        assert!(!kv.swap("a".into(), &seen, b"x".to_vec()).await.unwrap());
        let seen = kv.watch("a".into()).await.unwrap();
        assert!(kv.swap("a".into(), &seen, b"x".to_vec()).await.unwrap());

        let many: Vec<(String, Vec<u8>)> =
            (0..2500).map(|i| (format!("k{i:05}"), vec![1])).collect();
        for chunk in many.chunks(1000) {
            kv.set_many(chunk.to_vec()).await.unwrap();
        }
        let mut after = None;
        let mut seen_keys = 0;
        loop {
            let page = kv.list_after(after).await.unwrap();
            seen_keys += page.keys.len();
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen_keys, 2500 + 3);
        let page = kv.list_from(2000).await.unwrap();
        assert_eq!(page.keys.len(), 503);
        assert_eq!(page.next, None);

        let err = kv
            .set("big".into(), vec![0; MAX_VALUE_BYTES + 1])
            .await
            .unwrap_err();
        assert!(err.contains("larger than"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_full_store_refuses_with_an_error() {
        let (kv, dir) = store(1 << 20);
        let mut failed = None;
        for i in 0..10 {
            if let Err(e) = kv.set(format!("k{i}"), vec![7; 512 << 10]).await {
                failed = Some(e);
                break;
            }
        }
        let err = failed.expect("a 1 MiB store refuses 5 MiB");
        assert!(err.contains("renga-kv-test is full"), "{err}");
        // Small writes that fit still work after a refusal.
        kv.delete("k0".into()).await.unwrap();
        kv.set("small".into(), b"1".to_vec()).await.unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
}
