//! A key-value provider whose keys expire: each write gives its key the
//! add-on's time to live (`--ttl SECONDS`, an hour by default), and a key
//! that has outlived it is gone: `get`, `exists`, `list-keys` and the
//! batch calls never see it. Apps reach it through `wasi:keyvalue` as they
//! reach `renga-kv`.
//!
//! Entries live in the add-on's SQL database with the time they expire;
//! each write also deletes a few expired ones, so the table does not keep
//! what nobody reads. Counters (`increment`) are decimal text, as in
//! renga's own store, and an increment is a write: it renews the key's time
//! to live. Compare-and-swap compares values: `swap` writes only if the key
//! still holds (or still lacks) what `cas.new` saw.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::OnceLock;

use renga_provider_sdk::keyvalue::{
    self, Atomics, Batch, Bucket, BucketBorrow, Cas, CasError, Error, Found, GuestBucket, GuestCas,
    KeyResponse, Store,
};
use renga_provider_sdk::now_ms;
use renga_provider_sdk::options::Options;
use renga_provider_sdk::provisioning::Provisioning;
use renga_provider_sdk::sql::{self, Database, Execute, placeholders};

/// The time to live of an add-on made without `--ttl`: an hour.
const DEFAULT_TTL: i64 = 3600;
/// The longest time to live: 30 days.
const MAX_TTL: i64 = 30 * 24 * 3600;
/// Expired entries one write deletes at most: a write's cost stays bounded
/// however many keys expired at once, and writes outnumber what expires.
const PURGE_BATCH: i64 = 100;
/// Keys one statement of a batch call names.
const CHUNK: usize = 500;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_expires_at ON entries (expires_at);
";

const LIVE_VALUE: &str = "SELECT value FROM entries WHERE key = $1 AND expires_at > $2";
const UPSERT: &str = "INSERT INTO entries (key, value, expires_at) VALUES ($1, $2, $3) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at";
const PURGE: &str = "DELETE FROM entries WHERE key IN \
     (SELECT key FROM entries WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)";

struct Provider;

/// The add-on's one bucket (renga opens it by the add-on's name; the
/// database is the add-on's own, so the name changes nothing).
struct Entries;

/// A compare-and-swap in progress: the key, and what it held at `cas.new`.
struct Seen {
    key: String,
    value: Option<Vec<u8>>,
}

fn db() -> Result<Rc<Database>, sql::Error> {
    sql::database(SCHEMA)
}

/// The time to live, in seconds, from the add-on's options (which
/// `provision` checked: at a call, only `ttl` is read).
fn ttl_seconds(options: &Options) -> Result<i64, String> {
    let ttl = options.parse("ttl", DEFAULT_TTL)?;
    if !(1..=MAX_TTL).contains(&ttl) {
        return Err(format!(
            "--ttl {ttl}: a key lives from 1 to {MAX_TTL} seconds (30 days)"
        ));
    }
    Ok(ttl)
}

/// The time to live in milliseconds, read once per instance: an add-on's
/// options never change.
fn ttl_ms() -> Result<i64, Error> {
    static TTL_MS: OnceLock<i64> = OnceLock::new();
    if let Some(ms) = TTL_MS.get() {
        return Ok(*ms);
    }
    let ttl = ttl_seconds(&Options::current()?).map_err(Error::Other)?;
    Ok(*TTL_MS.get_or_init(|| ttl * 1000))
}

/// What `key` holds at `now`, unless it has expired.
fn live_value(db: &impl Execute, key: &str, now: i64) -> Result<Option<Vec<u8>>, sql::Error> {
    let row = db
        .query(LIVE_VALUE, &[key.into(), now.into()])?
        .into_first();
    Ok(row.and_then(|row| row.into_iter().next()?.into_bytes()))
}

/// Writes `key`, which then lives the add-on's time to live from `now`.
fn write(db: &impl Execute, key: &str, value: Vec<u8>, now: i64) -> Result<(), Error> {
    db.execute(
        UPSERT,
        &[key.into(), value.into(), (now + ttl_ms()?).into()],
    )?;
    Ok(())
}

/// Deletes a few of the entries that expired by `now`.
fn purge(db: &impl Execute, now: i64) -> Result<(), sql::Error> {
    db.execute(PURGE, &[now.into(), PURGE_BATCH.into()])?;
    Ok(())
}

impl Provisioning for Provider {
    fn provision(options: Vec<(String, String)>) -> Result<Vec<(String, String)>, String> {
        let options = Options::new(options);
        options.check_known(&["ttl"])?;
        let ttl = ttl_seconds(&options)?;
        Ok(vec![("TTL_SECONDS".into(), ttl.to_string())])
    }
}

impl Store for Provider {
    type Bucket = Entries;

    fn open(_add_on: String) -> Result<Bucket, Error> {
        Ok(Bucket::new(Entries))
    }
}

impl GuestBucket for Entries {
    fn get(&self, key: String) -> Result<Option<Vec<u8>>, Error> {
        Ok(live_value(&*db()?, &key, now_ms())?)
    }

    fn set(&self, key: String, value: Vec<u8>) -> Result<(), Error> {
        let db = db()?;
        let now = now_ms();
        purge(&*db, now)?;
        write(&*db, &key, value, now)
    }

    fn delete(&self, key: String) -> Result<(), Error> {
        db()?.execute("DELETE FROM entries WHERE key = $1", &[key.into()])?;
        Ok(())
    }

    fn exists(&self, key: String) -> Result<bool, Error> {
        let rows = db()?.query(
            "SELECT 1 FROM entries WHERE key = $1 AND expires_at > $2",
            &[key.into(), now_ms().into()],
        )?;
        Ok(!rows.rows.is_empty())
    }

    /// Keys in order, a page at a time; the cursor is the last key of the
    /// page before.
    fn list_keys(&self, cursor: Option<String>) -> Result<KeyResponse, Error> {
        let now = now_ms();
        let limit = (keyvalue::PAGE + 1) as i64;
        let db = db()?;
        let rows = match cursor {
            None => db.query(
                "SELECT key FROM entries WHERE expires_at > $1 ORDER BY key LIMIT $2",
                &[now.into(), limit.into()],
            )?,
            Some(after) => db.query(
                "SELECT key FROM entries WHERE key > $1 AND expires_at > $2 ORDER BY key LIMIT $3",
                &[after.into(), now.into(), limit.into()],
            )?,
        };
        Ok(keyvalue::key_page(rows.strings(0), keyvalue::PAGE))
    }
}

impl Atomics for Provider {
    type Cas = Seen;

    /// Adds `delta` to the number `key` holds (an expired or missing key
    /// holds 0) and renews the key's time to live, in one transaction.
    fn increment(_bucket: BucketBorrow<'_>, key: String, delta: i64) -> Result<i64, Error> {
        let db = db()?;
        let now = now_ms();
        purge(&*db, now)?;
        db.transaction(|tx| {
            let current = keyvalue::counter(&key, live_value(tx, &key, now)?.as_deref())?;
            let sum = keyvalue::add(&key, current, delta)?;
            write(tx, &key, keyvalue::counter_bytes(sum), now)?;
            Ok(sum)
        })
    }

    /// Writes `value` if the key still holds what `cas.new` saw, reading
    /// and writing in one transaction; else hands back a CAS that has seen
    /// what it holds now.
    fn swap(cas: Cas, value: Vec<u8>) -> Result<(), CasError> {
        let seen = cas.into_inner::<Seen>();
        let db = db()?;
        let now = now_ms();
        db.transaction(|tx| {
            let current = live_value(tx, &seen.key, now)?;
            if current != seen.value {
                return Err(CasError::CasFailed(Cas::new(Seen {
                    key: seen.key.clone(),
                    value: current,
                })));
            }
            write(tx, &seen.key, value, now)?;
            Ok(())
        })
    }
}

impl GuestCas for Seen {
    fn new(_bucket: BucketBorrow<'_>, key: String) -> Result<Cas, Error> {
        let value = live_value(&*db()?, &key, now_ms())?;
        Ok(Cas::new(Seen { key, value }))
    }

    /// What the key held when this CAS began: what `swap` compares with.
    fn current(&self) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.value.clone())
    }
}

impl Batch for Provider {
    /// One statement per few hundred keys; the answer is in the order of
    /// `keys`.
    fn get_many(_bucket: BucketBorrow<'_>, keys: Vec<String>) -> Result<Vec<Found>, Error> {
        let db = db()?;
        let now = now_ms();
        let mut found: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for chunk in keys.chunks(CHUNK) {
            let statement = format!(
                "SELECT key, value FROM entries WHERE expires_at > $1 AND key IN ({})",
                placeholders(2, chunk.len())
            );
            let mut params: Vec<sql::Value> = vec![now.into()];
            params.extend(chunk.iter().map(Into::into));
            for row in db.query(&statement, &params)?.rows {
                let mut row = row.into_iter();
                let (key, value) = (row.next(), row.next().and_then(sql::Value::into_bytes));
                if let (Some(sql::Value::Text(key)), Some(value)) = (key, value) {
                    found.insert(key, value);
                }
            }
        }
        Ok(keys
            .into_iter()
            .map(|key| {
                let value = found.get(&key).cloned();
                (key, value)
            })
            .collect())
    }

    /// Every pair in one transaction, all with the same expiry.
    fn set_many(_bucket: BucketBorrow<'_>, pairs: Vec<(String, Vec<u8>)>) -> Result<(), Error> {
        let db = db()?;
        let now = now_ms();
        purge(&*db, now)?;
        db.transaction(|tx| {
            pairs
                .into_iter()
                .try_for_each(|(key, value)| write(tx, &key, value, now))
        })
    }

    fn delete_many(_bucket: BucketBorrow<'_>, keys: Vec<String>) -> Result<(), Error> {
        let db = db()?;
        for chunk in keys.chunks(CHUNK) {
            let statement = format!(
                "DELETE FROM entries WHERE key IN ({})",
                placeholders(1, chunk.len())
            );
            let params: Vec<sql::Value> = chunk.iter().map(Into::into).collect();
            db.execute(&statement, &params)?;
        }
        Ok(())
    }
}

renga_provider_sdk::export!(Provider);
