//! A test provider for renga: a plain key-value store on its SQL database
//! that misbehaves on request, so that renga's tests can show a provider's
//! failure stays inside the call that met it and the next call gets a
//! fresh instance.
//!
//! `get` of these keys (and `get-many` naming them) misbehaves:
//!
//! - `trap`  panics
//! - `loop`  spins forever without returning
//! - `oom`   allocates until memory runs out
//!
//! Every other call behaves: get, set, delete, exists, list-keys (pages of
//! 1000 in key order), increment (decimal text), compare-and-swap, and the
//! batch calls. Provisioning refuses an add-on made with `--refuse`, and
//! otherwise answers `MODE=misbehave`.

use std::hint::black_box;
use std::rc::Rc;

use renga_provider_sdk::keyvalue::{
    self, Atomics, Batch, Bucket, BucketBorrow, Cas, CasError, Error, Found, GuestBucket, GuestCas,
    KeyResponse, Store,
};
use renga_provider_sdk::options::Options;
use renga_provider_sdk::provisioning::Provisioning;
use renga_provider_sdk::sql::{self, Database, Execute};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)";
const UPSERT: &str = "INSERT INTO kv (key, value) VALUES ($1, $2) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value";

struct Provider;
struct Plain;

/// A compare-and-swap in progress: the key, and what it held at `cas.new`.
struct Seen {
    key: String,
    value: Option<Vec<u8>>,
}

fn db() -> Result<Rc<Database>, sql::Error> {
    sql::database(SCHEMA)
}

fn value(db: &impl Execute, key: &str) -> Result<Option<Vec<u8>>, sql::Error> {
    let row = db
        .query("SELECT value FROM kv WHERE key = $1", &[key.into()])?
        .into_first();
    Ok(row.and_then(|row| row.into_iter().next()?.into_bytes()))
}

fn misbehave(key: &str) {
    match key {
        "trap" => panic!("the key `trap` panics on purpose"),
        "loop" => loop {
            black_box(());
        },
        "oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 16 << 20]);
                black_box(&hoard);
            }
        }
        _ => {}
    }
}

impl Provisioning for Provider {
    fn provision(options: Vec<(String, String)>) -> Result<Vec<(String, String)>, String> {
        if Options::new(options).get("refuse").is_some() {
            return Err("refused: the add-on was made with --refuse".into());
        }
        Ok(vec![("MODE".into(), "misbehave".into())])
    }
}

impl Store for Provider {
    type Bucket = Plain;

    fn open(_add_on: String) -> Result<Bucket, Error> {
        Ok(Bucket::new(Plain))
    }
}

impl GuestBucket for Plain {
    fn get(&self, key: String) -> Result<Option<Vec<u8>>, Error> {
        misbehave(&key);
        Ok(value(&*db()?, &key)?)
    }

    fn set(&self, key: String, value: Vec<u8>) -> Result<(), Error> {
        db()?.execute(UPSERT, &[key.into(), value.into()])?;
        Ok(())
    }

    fn delete(&self, key: String) -> Result<(), Error> {
        db()?.execute("DELETE FROM kv WHERE key = $1", &[key.into()])?;
        Ok(())
    }

    fn exists(&self, key: String) -> Result<bool, Error> {
        Ok(value(&*db()?, &key)?.is_some())
    }

    fn list_keys(&self, cursor: Option<String>) -> Result<KeyResponse, Error> {
        let limit = (keyvalue::PAGE + 1) as i64;
        let db = db()?;
        let rows = match cursor {
            None => db.query("SELECT key FROM kv ORDER BY key LIMIT $1", &[limit.into()])?,
            Some(after) => db.query(
                "SELECT key FROM kv WHERE key > $1 ORDER BY key LIMIT $2",
                &[after.into(), limit.into()],
            )?,
        };
        Ok(keyvalue::key_page(rows.strings(0), keyvalue::PAGE))
    }
}

impl Atomics for Provider {
    type Cas = Seen;

    fn increment(_bucket: BucketBorrow<'_>, key: String, delta: i64) -> Result<i64, Error> {
        db()?.transaction(|tx| {
            let current = keyvalue::counter(&key, value(tx, &key)?.as_deref())?;
            let sum = keyvalue::add(&key, current, delta)?;
            tx.execute(
                UPSERT,
                &[key.as_str().into(), keyvalue::counter_bytes(sum).into()],
            )?;
            Ok(sum)
        })
    }

    fn swap(cas: Cas, new: Vec<u8>) -> Result<(), CasError> {
        let seen = cas.into_inner::<Seen>();
        db()?.transaction(|tx| {
            let current = value(tx, &seen.key)?;
            if current != seen.value {
                return Err(CasError::CasFailed(Cas::new(Seen {
                    key: seen.key.clone(),
                    value: current,
                })));
            }
            tx.execute(UPSERT, &[seen.key.as_str().into(), new.into()])?;
            Ok(())
        })
    }
}

impl GuestCas for Seen {
    fn new(_bucket: BucketBorrow<'_>, key: String) -> Result<Cas, Error> {
        let value = value(&*db()?, &key)?;
        Ok(Cas::new(Seen { key, value }))
    }

    fn current(&self) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.value.clone())
    }
}

impl Batch for Provider {
    fn get_many(bucket: BucketBorrow<'_>, keys: Vec<String>) -> Result<Vec<Found>, Error> {
        keyvalue::get_each(bucket.get::<Plain>(), keys)
    }

    fn set_many(bucket: BucketBorrow<'_>, pairs: Vec<(String, Vec<u8>)>) -> Result<(), Error> {
        keyvalue::set_each(bucket.get::<Plain>(), pairs)
    }

    fn delete_many(bucket: BucketBorrow<'_>, keys: Vec<String>) -> Result<(), Error> {
        keyvalue::delete_each(bucket.get::<Plain>(), keys)
    }
}

renga_provider_sdk::export!(Provider);
