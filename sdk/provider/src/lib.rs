//! renga's SDK for add-on providers: components, written by anyone, that
//! serve an interface to the apps that attach their add-ons.
//!
//! A key-value provider targets `renga:app/key-value-provider@0.1.0`
//! (`wit/provider.wit`). It exports `wasi:keyvalue` (store, atomics and
//! batch) and `renga:app/provisioning`; it imports its own SQL database
//! (one per add-on) and the options its add-on was provisioned with. renga
//! opens one bucket named after the add-on and calls the provider's exports
//! for every call an app makes.
//!
//! A provider keeps its state in its database and nowhere else: renga pools
//! its instances and throws one away after a trap, a timeout, or whenever
//! it likes, so anything in memory may be gone on the next call.
//!
//! - [`keyvalue`]: the traits a key-value provider implements, and helpers
//!   for pages of keys, counters and batches.
//! - [`provisioning`]: the trait that answers `renga addons:create`.
//! - [`sql`]: the provider's own database, through `renga:sql` (SQLite).
//! - [`options`]: the add-on's options, through `wasi:config/store`.
//! - [`now_ms`]: the wall clock.
//!
//! One type implements every trait, and [`export!`] makes it the
//! component's exports. The crate is a `cdylib` built for `wasm32-wasip2`
//! (renga's Rust buildpack does that, and supplies this crate: it is not on
//! crates.io).
//!
//! ```no_run
//! use renga_provider_sdk::keyvalue::{
//!     self, Atomics, Batch, Bucket, BucketBorrow, Cas, CasError, Error, Found, GuestBucket,
//!     GuestCas, KeyResponse, Store,
//! };
//! use renga_provider_sdk::provisioning::Provisioning;
//! use renga_provider_sdk::sql::{self, Database};
//! use std::rc::Rc;
//!
//! const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)";
//!
//! fn db() -> Result<Rc<Database>, Error> {
//!     Ok(sql::database(SCHEMA)?)
//! }
//!
//! struct Provider;
//! struct Plain;
//!
//! impl Provisioning for Provider {
//!     fn provision(_options: Vec<(String, String)>) -> Result<Vec<(String, String)>, String> {
//!         Ok(vec![("FLAVOUR".into(), "plain".into())])
//!     }
//! }
//!
//! impl Store for Provider {
//!     type Bucket = Plain;
//!     fn open(_add_on: String) -> Result<Bucket, Error> {
//!         Ok(Bucket::new(Plain))
//!     }
//! }
//!
//! impl GuestBucket for Plain {
//!     fn get(&self, key: String) -> Result<Option<Vec<u8>>, Error> {
//!         let rows = db()?.query("SELECT value FROM kv WHERE key = $1", &[key.into()])?;
//!         Ok(rows.first().and_then(|row| row[0].clone().into_bytes()))
//!     }
//!     fn set(&self, key: String, value: Vec<u8>) -> Result<(), Error> {
//!         db()?.execute(
//!             "INSERT INTO kv (key, value) VALUES ($1, $2) \
//!              ON CONFLICT (key) DO UPDATE SET value = excluded.value",
//!             &[key.into(), value.into()],
//!         )?;
//!         Ok(())
//!     }
//!     fn delete(&self, key: String) -> Result<(), Error> {
//!         db()?.execute("DELETE FROM kv WHERE key = $1", &[key.into()])?;
//!         Ok(())
//!     }
//!     fn exists(&self, key: String) -> Result<bool, Error> {
//!         Ok(self.get(key)?.is_some())
//!     }
//!     fn list_keys(&self, cursor: Option<String>) -> Result<KeyResponse, Error> {
//!         let rows = db()?.query(
//!             "SELECT key FROM kv WHERE key > $1 ORDER BY key LIMIT $2",
//!             &[cursor.unwrap_or_default().into(), (keyvalue::PAGE as i64 + 1).into()],
//!         )?;
//!         Ok(keyvalue::key_page(rows.strings(0), keyvalue::PAGE))
//!     }
//! }
//!
//! impl Atomics for Provider {
//!     type Cas = Plain;
//!     fn increment(_: BucketBorrow<'_>, _: String, _: i64) -> Result<i64, Error> {
//!         Err(Error::other("this store does not count"))
//!     }
//!     fn swap(_: Cas, _: Vec<u8>) -> Result<(), CasError> {
//!         Err(CasError::StoreError(Error::other("this store has no compare-and-swap")))
//!     }
//! }
//!
//! impl GuestCas for Plain {
//!     fn new(_: BucketBorrow<'_>, _: String) -> Result<Cas, Error> {
//!         Err(Error::other("this store has no compare-and-swap"))
//!     }
//!     fn current(&self) -> Result<Option<Vec<u8>>, Error> {
//!         Ok(None)
//!     }
//! }
//!
//! impl Batch for Provider {
//!     fn get_many(bucket: BucketBorrow<'_>, keys: Vec<String>) -> Result<Vec<Found>, Error> {
//!         keyvalue::get_each(bucket.get::<Plain>(), keys)
//!     }
//!     fn set_many(bucket: BucketBorrow<'_>, pairs: Vec<(String, Vec<u8>)>) -> Result<(), Error> {
//!         keyvalue::set_each(bucket.get::<Plain>(), pairs)
//!     }
//!     fn delete_many(bucket: BucketBorrow<'_>, keys: Vec<String>) -> Result<(), Error> {
//!         keyvalue::delete_each(bucket.get::<Plain>(), keys)
//!     }
//! }
//!
//! renga_provider_sdk::export!(Provider);
//! ```
//!
//! Register the built component and make an add-on of it:
//! `renga addons:services:add plain.wasm --name plain`, then
//! `renga addons:create plain -a APP`. `examples/provider-kv-ttl` and
//! `examples/provider-rate-limit` are complete providers.

pub mod keyvalue;
pub mod options;
pub mod provisioning;
pub mod sql;

/// The bindings `wit-bindgen` generates for the provider world. Use the
/// modules above; [`export!`] reaches these by this path.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "renga:app/key-value-provider@0.1.0",
        pub_export_macro: true,
        default_bindings_module: "renga_provider_sdk::bindings",
        generate_all,
    });
}

/// Makes a type the component's exports:
/// `renga_provider_sdk::export!(Provider);` at the top level of the crate,
/// where `Provider` (a type name, not a path) implements
/// [`keyvalue::Store`], [`keyvalue::Atomics`], [`keyvalue::Batch`] and
/// [`provisioning::Provisioning`].
pub use bindings::export;

/// Milliseconds since the Unix epoch, by the host's wall clock (0 before
/// 1970). Providers keep times as these integers: they sort and compare in
/// SQL.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
