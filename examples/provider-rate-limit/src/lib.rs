//! A rate limiter that apps reach through `wasi:keyvalue`: a key is
//! anything an app limits (a client's address, an API token), and
//! `increment(key, 1)` records a hit and answers how many hits the key had
//! in the last `--window` seconds (60 by default). The app compares that
//! with `{ATTACHMENT}_LIMIT` (`--limit`, 100 by default), which
//! provisioning sets beside `{ATTACHMENT}_WINDOW_SECONDS`.
//!
//! The count is the sliding-window estimate: hits are counted in fixed
//! windows, and the sliding window ending now covers all of the current
//! fixed window and the part of the previous one it has not yet left, so
//! the estimate is the current window's count plus the previous window's
//! weighted by that part, rounded up. Two rows per key, whatever the rate.
//!
//! - `get(key)`: the estimate as decimal text, or none without recent hits.
//! - `exists`, `list-keys`: keys with hits in the last two windows.
//! - `delete(key)`, `delete-many`: reset keys.
//! - `set`, `set-many` and compare-and-swap are refused: counts only change
//!   by `increment`.

use std::rc::Rc;
use std::sync::OnceLock;

use renga_provider_sdk::keyvalue::{
    self, Atomics, Batch, Bucket, BucketBorrow, Cas, CasError, Error, Found, GuestBucket, GuestCas,
    KeyResponse, Store,
};
use renga_provider_sdk::now_ms;
use renga_provider_sdk::options::Options;
use renga_provider_sdk::provisioning::Provisioning;
use renga_provider_sdk::sql::{self, Database, Execute};

/// The window of an add-on made without `--window`, in seconds.
const DEFAULT_WINDOW: i64 = 60;
/// The longest window: a day.
const MAX_WINDOW: i64 = 24 * 3600;
/// The limit of an add-on made without `--limit`.
const DEFAULT_LIMIT: i64 = 100;
/// Keys whose old windows one increment deletes at most, so its cost stays
/// bounded.
const PURGE_BATCH: i64 = 100;

/// One row per key and fixed window (`window_index` is the window's start
/// divided by its length) that had hits.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS hits (
    key TEXT NOT NULL,
    window_index BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (key, window_index)
);
CREATE INDEX IF NOT EXISTS hits_window_index ON hits (window_index);
";

const REFUSED_SET: &str = "a rate limit's counts only change by increment (delete resets a key)";
const REFUSED_CAS: &str =
    "a rate limit has no compare-and-swap: its counts only change by increment";

struct Provider;

/// The add-on's one bucket (renga opens it by the add-on's name).
struct Limiter;

/// A compare-and-swap, which this provider never makes.
enum NoCas {}

/// The add-on's options.
#[derive(Clone, Copy)]
struct Settings {
    window_seconds: i64,
    limit: i64,
}

impl Settings {
    /// From the add-on's options (which `provision` checked: at a call,
    /// only these two are read).
    fn from_options(options: &Options) -> Result<Settings, String> {
        let window_seconds = options.parse("window", DEFAULT_WINDOW)?;
        if !(1..=MAX_WINDOW).contains(&window_seconds) {
            return Err(format!(
                "--window {window_seconds}: a window is from 1 to {MAX_WINDOW} seconds (a day)"
            ));
        }
        let limit = options.parse("limit", DEFAULT_LIMIT)?;
        if limit < 1 {
            return Err(format!("--limit {limit}: a limit is 1 hit or more"));
        }
        Ok(Settings {
            window_seconds,
            limit,
        })
    }

    /// The add-on's settings, read once per instance: an add-on's options
    /// never change.
    fn current() -> Result<Settings, Error> {
        static SETTINGS: OnceLock<Settings> = OnceLock::new();
        if let Some(settings) = SETTINGS.get() {
            return Ok(*settings);
        }
        let settings = Settings::from_options(&Options::current()?).map_err(Error::Other)?;
        Ok(*SETTINGS.get_or_init(|| settings))
    }
}

/// Where `now` falls: the current fixed window's index, and how far into it.
#[derive(Clone, Copy)]
struct Clock {
    index: i64,
    elapsed_ms: i64,
    window_ms: i64,
}

impl Clock {
    fn now() -> Result<Clock, Error> {
        let window_ms = Settings::current()?.window_seconds * 1000;
        let now = now_ms();
        Ok(Clock {
            index: now.div_euclid(window_ms),
            elapsed_ms: now.rem_euclid(window_ms),
            window_ms,
        })
    }

    /// The hits in the sliding window ending now, from the previous and
    /// the current fixed windows' counts: the previous one weighted by the
    /// part of it the sliding window still covers, rounded up.
    fn estimate(&self, counts: Counts) -> i64 {
        let window = i128::from(self.window_ms);
        let covered = window - i128::from(self.elapsed_ms);
        let weighted = (i128::from(counts.previous) * covered + window - 1) / window;
        counts
            .current
            .saturating_add(i64::try_from(weighted).unwrap_or(i64::MAX))
    }
}

/// A key's hits in the previous and the current fixed windows.
#[derive(Clone, Copy, Default)]
struct Counts {
    previous: i64,
    current: i64,
}

impl Counts {
    fn any(&self) -> bool {
        self.previous > 0 || self.current > 0
    }
}

fn db() -> Result<Rc<Database>, sql::Error> {
    sql::database(SCHEMA)
}

fn counts(db: &impl Execute, key: &str, clock: Clock) -> Result<Counts, sql::Error> {
    let rows = db.query(
        "SELECT window_index, count FROM hits WHERE key = $1 AND window_index >= $2",
        &[key.into(), (clock.index - 1).into()],
    )?;
    let mut counts = Counts::default();
    for row in &rows.rows {
        let (Some(index), Some(count)) = (row[0].as_i64(), row[1].as_i64()) else {
            continue;
        };
        // A later window (the wall clock went back) counts once its time
        // comes.
        if index == clock.index - 1 {
            counts.previous = count;
        } else if index == clock.index {
            counts.current = count;
        }
    }
    Ok(counts)
}

/// Deletes the windows that ended before the previous one, for a few keys.
fn purge(db: &impl Execute, clock: Clock) -> Result<(), sql::Error> {
    db.execute(
        "DELETE FROM hits WHERE window_index < $1 AND key IN \
         (SELECT key FROM hits WHERE window_index < $1 LIMIT $2)",
        &[(clock.index - 1).into(), PURGE_BATCH.into()],
    )?;
    Ok(())
}

impl Provisioning for Provider {
    fn provision(options: Vec<(String, String)>) -> Result<Vec<(String, String)>, String> {
        let options = Options::new(options);
        options.check_known(&["window", "limit"])?;
        let settings = Settings::from_options(&options)?;
        Ok(vec![
            ("WINDOW_SECONDS".into(), settings.window_seconds.to_string()),
            ("LIMIT".into(), settings.limit.to_string()),
        ])
    }
}

impl Store for Provider {
    type Bucket = Limiter;

    fn open(_add_on: String) -> Result<Bucket, Error> {
        Ok(Bucket::new(Limiter))
    }
}

impl GuestBucket for Limiter {
    /// The estimate, as decimal text; none when the key had no hits in the
    /// last two windows.
    fn get(&self, key: String) -> Result<Option<Vec<u8>>, Error> {
        let clock = Clock::now()?;
        let counts = counts(&*db()?, &key, clock)?;
        Ok(counts
            .any()
            .then(|| keyvalue::counter_bytes(clock.estimate(counts))))
    }

    fn set(&self, _key: String, _value: Vec<u8>) -> Result<(), Error> {
        Err(Error::other(REFUSED_SET))
    }

    /// Resets the key: its hits are forgotten.
    fn delete(&self, key: String) -> Result<(), Error> {
        db()?.execute("DELETE FROM hits WHERE key = $1", &[key.into()])?;
        Ok(())
    }

    fn exists(&self, key: String) -> Result<bool, Error> {
        Ok(counts(&*db()?, &key, Clock::now()?)?.any())
    }

    /// Keys with hits in the last two windows, in order, a page at a time;
    /// the cursor is the last key of the page before.
    fn list_keys(&self, cursor: Option<String>) -> Result<KeyResponse, Error> {
        let since = Clock::now()?.index - 1;
        let limit = (keyvalue::PAGE + 1) as i64;
        let db = db()?;
        let rows = match cursor {
            None => db.query(
                "SELECT DISTINCT key FROM hits WHERE window_index >= $1 AND count > 0 \
                 ORDER BY key LIMIT $2",
                &[since.into(), limit.into()],
            )?,
            Some(after) => db.query(
                "SELECT DISTINCT key FROM hits WHERE key > $1 AND window_index >= $2 \
                 AND count > 0 ORDER BY key LIMIT $3",
                &[after.into(), since.into(), limit.into()],
            )?,
        };
        Ok(keyvalue::key_page(rows.strings(0), keyvalue::PAGE))
    }
}

impl Atomics for Provider {
    type Cas = NoCas;

    /// Records `delta` hits for `key` now (0 only asks) and answers the
    /// estimate of its hits in the sliding window, in one transaction.
    fn increment(_bucket: BucketBorrow<'_>, key: String, delta: i64) -> Result<i64, Error> {
        if delta < 0 {
            return Err(Error::other(format!(
                "{key}: hits only add up; increment by 0 (to ask) or more, not {delta}"
            )));
        }
        let clock = Clock::now()?;
        let db = db()?;
        purge(&*db, clock)?;
        db.transaction(|tx| {
            let mut counts = counts(tx, &key, clock)?;
            if delta > 0 {
                counts.current = counts.current.saturating_add(delta);
                tx.execute(
                    "INSERT INTO hits (key, window_index, count) VALUES ($1, $2, $3) \
                     ON CONFLICT (key, window_index) DO UPDATE SET count = excluded.count",
                    &[
                        key.as_str().into(),
                        clock.index.into(),
                        counts.current.into(),
                    ],
                )?;
            }
            Ok(clock.estimate(counts))
        })
    }

    fn swap(_cas: Cas, _value: Vec<u8>) -> Result<(), CasError> {
        Err(CasError::StoreError(Error::other(REFUSED_CAS)))
    }
}

impl GuestCas for NoCas {
    fn new(_bucket: BucketBorrow<'_>, _key: String) -> Result<Cas, Error> {
        Err(Error::other(REFUSED_CAS))
    }

    fn current(&self) -> Result<Option<Vec<u8>>, Error> {
        match *self {}
    }
}

impl Batch for Provider {
    fn get_many(bucket: BucketBorrow<'_>, keys: Vec<String>) -> Result<Vec<Found>, Error> {
        keyvalue::get_each(bucket.get::<Limiter>(), keys)
    }

    fn set_many(_bucket: BucketBorrow<'_>, _pairs: Vec<(String, Vec<u8>)>) -> Result<(), Error> {
        Err(Error::other(REFUSED_SET))
    }

    fn delete_many(bucket: BucketBorrow<'_>, keys: Vec<String>) -> Result<(), Error> {
        keyvalue::delete_each(bucket.get::<Limiter>(), keys)
    }
}

renga_provider_sdk::export!(Provider);
