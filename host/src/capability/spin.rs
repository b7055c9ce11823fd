//! Spin's own interfaces (`fermyon:spin/*` and `spin:*`) on the app's
//! add-ons and config vars, so that components built for Spin run
//! unchanged.
//!
//! Linked, each at the one version named:
//!
//! - `fermyon:spin/key-value@2.0.0`, `fermyon:spin/variables@2.0.0` and
//!   `fermyon:spin/sqlite@2.0.0`: what spin-sdk 2.x to 5.x import for
//!   `spin_sdk::key_value`, `spin_sdk::variables` and `spin_sdk::sqlite`
//!   (Spin 2 and later serve them);
//! - `spin:sqlite/sqlite@3.0.0`: `spin_sdk::sqlite3` in spin-sdk 5.x
//!   (Spin 3.2 and later), with `changes` and `last-insert-rowid`.
//!
//! Not linked: `spin:key-value@3.0.0`, `spin:variables@3.0.0` and
//! `spin:sqlite@3.1.0`, which spin-sdk 6 and later import. Their functions
//! are `async func`s with streams and futures (Spin 4, WASIp3); a
//! component importing them needs wasmtime's component-model-async, which
//! the engine does not enable, so such a component is refused as an import
//! renga does not provide.
//!
//! Stores and databases are found as `wasi:keyvalue` and `renga:sql` find
//! them: the label `default` is the app's default key-value (SQL) add-on,
//! any other the add-on attached under that name, or named so, and one the
//! app does not have is `no-such-store` (`no-such-database`); under `renga
//! dev`, every name is a local one. A Spin variable `api_key` is the
//! config var `API_KEY`, or a config var named exactly `api_key`. Every
//! failure is an error value for the guest, never a trap, except a handle
//! the guest does not hold. Owns no data: the backends belong to the
//! key-value and SQL capabilities' add-ons.

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use super::config::Vars;
use super::keyvalue::{self, KvBackends, KvError, KvRelease};
use super::sql::{self, SqlBackends, SqlRelease};
use super::{Capability, DynoInputs, ImportName, InstanceInputs, ReleaseInputs, add_on_hint};
use crate::provider::kv::Kv;
use crate::provider::sql::{SqlBackend, SqlError};
use crate::runtime::DynoState;

mod v2 {
    wasmtime::component::bindgen!({
        path: "wit/fermyon-spin-2.0.0",
        world: "imports",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/key-value.store": super::OpenStore,
            "fermyon:spin/sqlite.connection": super::OpenConnection,
        },
    });
}

mod v3 {
    wasmtime::component::bindgen!({
        path: "wit/spin-sqlite-3.0.0",
        world: "imports",
        imports: { default: async | trappable },
        with: {
            "spin:sqlite/sqlite.connection": super::OpenConnection,
        },
    });
}

use v2::fermyon::spin::key_value as kv2;
use v2::fermyon::spin::sqlite as sqlite2;
use v2::fermyon::spin::variables as variables2;
use v3::spin::sqlite::sqlite as sqlite3;

/// Stores one instance may hold open at once, and connections likewise.
const MAX_OPEN: usize = 64;
/// The most key bytes one `get-keys` gathers (the answer is one list).
const MAX_KEYS_BYTES: usize = 16 << 20;

pub struct Spin {
    kv: Arc<KvBackends>,
    sql: Arc<SqlBackends>,
}

impl Spin {
    pub fn new(kv: Arc<KvBackends>, sql: Arc<SqlBackends>) -> Spin {
        Spin { kv, sql }
    }
}

/// What one release gives Spin's interfaces.
pub struct SpinRelease {
    kv: Arc<KvRelease>,
    sql: Arc<SqlRelease>,
    vars: Vars,
}

/// One instance's state: the release, and how much it holds open.
pub struct SpinInstance {
    release: Arc<SpinRelease>,
    stores: usize,
    connections: usize,
}

/// An open key-value store, as a guest holds it.
pub struct OpenStore(Arc<dyn Kv>);

/// An open SQLite connection, as a guest holds it.
pub struct OpenConnection {
    db: Arc<dyn SqlBackend>,
    /// What `changes` and `last-insert-rowid` answer. Spin's are the
    /// connection's; renga's statements run on a pool of connections, so
    /// the handle keeps what its own statements did.
    changes: u64,
    last_insert_rowid: i64,
}

/// Which of Spin's interfaces an import is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Interface {
    KeyValue,
    Variables,
    Sqlite,
}

/// Which of Spin's interfaces `import` is, at a version renga links.
fn interface(import: &ImportName) -> Option<Interface> {
    let which = match import.interface.as_deref()? {
        "key-value" => Interface::KeyValue,
        "variables" => Interface::Variables,
        "sqlite" => Interface::Sqlite,
        _ => return None,
    };
    let linked = import.is("fermyon", "spin", &["2.0.0"])
        || (which == Interface::Sqlite && import.is("spin", "sqlite", &["3.0.0"]));
    linked.then_some(which)
}

impl Capability for Spin {
    type Release = Arc<SpinRelease>;
    type Dyno = Arc<SpinRelease>;
    type Instance = SpinInstance;

    fn link(&self, linker: &mut Linker<DynoState>) -> anyhow::Result<()> {
        fn view(state: &mut DynoState) -> SpinView<'_> {
            state.meter().addon_call();
            SpinView {
                table: &mut state.table,
                spin: &mut state.caps.spin,
            }
        }
        v2::Imports::add_to_linker::<DynoState, HasSpin>(linker, view)?;
        v3::Imports::add_to_linker::<DynoState, HasSpin>(linker, view)?;
        Ok(())
    }

    fn claims(&self, import: &ImportName) -> bool {
        interface(import).is_some()
    }

    fn configure(&self, release: &ReleaseInputs<'_>) -> anyhow::Result<Arc<SpinRelease>> {
        Ok(Arc::new(SpinRelease {
            kv: self.kv.release(release),
            sql: self.sql.release(release),
            vars: Arc::new(
                release
                    .config
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.to_string()))
                    .collect(),
            ),
        }))
    }

    fn check(&self, release: &Arc<SpinRelease>, import: &ImportName, app: &str) -> Option<String> {
        match interface(import)? {
            Interface::KeyValue => release
                .kv
                .is_empty()
                .then(|| add_on_hint("key-value", keyvalue::SERVICE, app)),
            Interface::Sqlite => release
                .sql
                .is_empty()
                .then(|| add_on_hint("SQL", sql::SERVICE, app)),
            Interface::Variables => None,
        }
    }

    fn dyno(&self, release: &Arc<SpinRelease>, _dyno: &DynoInputs<'_>) -> Arc<SpinRelease> {
        release.clone()
    }

    fn instance(
        &self,
        _release: &Arc<SpinRelease>,
        dyno: &Arc<SpinRelease>,
        _inputs: &mut InstanceInputs<'_>,
    ) -> SpinInstance {
        SpinInstance {
            release: dyno.clone(),
            stores: 0,
            connections: 0,
        }
    }
}

/// What a store's state lends the generated bindings.
pub struct SpinView<'a> {
    table: &'a mut ResourceTable,
    spin: &'a mut SpinInstance,
}

struct HasSpin;

impl HasData for HasSpin {
    type Data<'a> = SpinView<'a>;
}

impl SpinView<'_> {
    fn store(&self, store: &Resource<OpenStore>) -> wasmtime::Result<Arc<dyn Kv>> {
        Ok(self.table.get(store)?.0.clone())
    }

    /// Opens a database for a new connection; a failure is the guest's.
    fn connect(
        &mut self,
        database: &str,
    ) -> wasmtime::Result<Result<Resource<OpenConnection>, SqlError>> {
        if self.spin.connections >= MAX_OPEN {
            return Ok(Err(SqlError::Other(format!(
                "an instance may hold {MAX_OPEN} connections open at once; drop one first"
            ))));
        }
        let db = match self.spin.release.sql.resolve(database) {
            Ok(db) => db,
            Err(e) => return Ok(Err(e)),
        };
        let handle = self.table.push(OpenConnection {
            db,
            changes: 0,
            last_insert_rowid: 0,
        })?;
        self.spin.connections += 1;
        Ok(Ok(handle))
    }

    fn database(&self, conn: &Resource<OpenConnection>) -> wasmtime::Result<Arc<dyn SqlBackend>> {
        Ok(self.table.get(conn)?.db.clone())
    }

    fn disconnect(&mut self, conn: Resource<OpenConnection>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        self.spin.connections = self.spin.connections.saturating_sub(1);
        Ok(())
    }
}

impl kv2::Host for SpinView<'_> {}

impl kv2::HostStore for SpinView<'_> {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, kv2::Error>> {
        if self.spin.stores >= MAX_OPEN {
            return Ok(Err(kv2::Error::StoreTableFull));
        }
        let store = match self.spin.release.kv.resolve(&label) {
            Ok(store) => store,
            Err(KvError::NoSuchStore) => return Ok(Err(kv2::Error::NoSuchStore)),
            Err(KvError::Other(message)) => return Ok(Err(kv2::Error::Other(message))),
            Err(KvError::Trap(e)) => return Err(e),
        };
        let handle = self.table.push(OpenStore(store))?;
        self.spin.stores += 1;
        Ok(Ok(handle))
    }

    async fn get(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, kv2::Error>> {
        let store = self.store(&store)?;
        Ok(store.get(key).await.map_err(kv2::Error::Other))
    }

    async fn set(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), kv2::Error>> {
        let store = self.store(&store)?;
        Ok(store.set(key, value).await.map_err(kv2::Error::Other))
    }

    async fn delete(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), kv2::Error>> {
        let store = self.store(&store)?;
        Ok(store.delete(key).await.map_err(kv2::Error::Other))
    }

    async fn exists(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, kv2::Error>> {
        let store = self.store(&store)?;
        Ok(store.exists(key).await.map_err(kv2::Error::Other))
    }

    async fn get_keys(
        &mut self,
        store: Resource<OpenStore>,
    ) -> wasmtime::Result<Result<Vec<String>, kv2::Error>> {
        let store = self.store(&store)?;
        Ok(all_keys(&*store).await.map_err(kv2::Error::Other))
    }

    async fn drop(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        self.spin.stores = self.spin.stores.saturating_sub(1);
        Ok(())
    }
}

/// Every key of a store, page by page, up to [`MAX_KEYS_BYTES`].
async fn all_keys(store: &dyn Kv) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    let mut bytes = 0;
    let mut cursor = None;
    loop {
        let page = store.list_after(cursor).await?;
        for key in page.keys {
            bytes += key.len();
            if bytes > MAX_KEYS_BYTES {
                return Err(format!(
                    "the store's keys are more than the {} one get-keys may return",
                    crate::units::ByteSize(MAX_KEYS_BYTES as u64)
                ));
            }
            keys.push(key);
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(keys),
        }
    }
}

impl variables2::Host for SpinView<'_> {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables2::Error>> {
        let value = variable(&self.spin.release.vars, &name);
        Ok(value.map_err(|unset| match unset {
            Unset::InvalidName(message) => variables2::Error::InvalidName(message),
            Unset::Undefined(message) => variables2::Error::Undefined(message),
        }))
    }
}

/// Why a variable has no value.
#[derive(Debug, PartialEq, Eq)]
enum Unset {
    InvalidName(String),
    Undefined(String),
}

/// A Spin variable's value: the config var named exactly so, else (for a
/// name Spin allows) the one named in capitals, as Spin's environment
/// provider reads `api_key` from `SPIN_VARIABLE_API_KEY`.
fn variable(vars: &Vars, name: &str) -> Result<String, Unset> {
    if let Some(value) = vars.get(name) {
        return Ok(value.clone());
    }
    spin_name(name).map_err(|why| Unset::InvalidName(format!("{name:?}: {why}")))?;
    let config_var = name.to_ascii_uppercase();
    vars.get(&config_var).cloned().ok_or_else(|| {
        Unset::Undefined(format!(
            "no config var {config_var} is set for the variable {name:?}"
        ))
    })
}

/// Why `name` is not a Spin variable name, by Spin's own rule.
fn spin_name(name: &str) -> Result<(), &'static str> {
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return Err("must not be empty");
    };
    if !bytes
        .iter()
        .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Err("may contain only lowercase letters, digits and underscores")
    } else if !first.is_ascii_lowercase() {
        Err("must start with a lowercase letter")
    } else if !last.is_ascii_alphanumeric() {
        Err("must end with a lowercase letter or a digit")
    } else if name.contains("__") {
        Err("must not contain two underscores in a row")
    } else {
        Ok(())
    }
}

/// Conversions between one version's generated SQLite types and the
/// backend's, which are the same at both versions.
macro_rules! sqlite_conversions {
    ($conversions:ident, $wit:ident) => {
        mod $conversions {
            use super::$wit::{Error, QueryResult, RowResult, Value};
            use crate::provider::sql::{self, SqlError};

            pub(super) fn params(values: Vec<Value>) -> Vec<sql::Value> {
                values
                    .into_iter()
                    .map(|value| match value {
                        Value::Integer(i) => sql::Value::Integer(i),
                        Value::Real(r) => sql::Value::Real(r),
                        Value::Text(t) => sql::Value::Text(t),
                        Value::Blob(b) => sql::Value::Blob(b),
                        Value::Null => sql::Value::Null,
                    })
                    .collect()
            }

            fn value(value: sql::Value) -> Value {
                match value {
                    sql::Value::Integer(i) => Value::Integer(i),
                    sql::Value::Real(r) => Value::Real(r),
                    sql::Value::Text(t) => Value::Text(t),
                    sql::Value::Blob(b) => Value::Blob(b),
                    sql::Value::Null => Value::Null,
                }
            }

            pub(super) fn result(rows: sql::Rows) -> QueryResult {
                QueryResult {
                    columns: rows.columns,
                    rows: rows
                        .rows
                        .into_iter()
                        .map(|row| RowResult {
                            values: row.into_iter().map(value).collect(),
                        })
                        .collect(),
                }
            }

            /// `io` keeps renga's message (a full quota and a result too
            /// large are both `Full`, so `database-full` would mislead).
            pub(super) fn error(error: SqlError) -> Error {
                match error {
                    SqlError::NoSuchDatabase(_) => Error::NoSuchDatabase,
                    other => Error::Io(other.to_string()),
                }
            }
        }
    };
}

sqlite_conversions!(convert2, sqlite2);
sqlite_conversions!(convert3, sqlite3);

impl sqlite2::Host for SpinView<'_> {}

impl sqlite2::HostConnection for SpinView<'_> {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<OpenConnection>, sqlite2::Error>> {
        Ok(self.connect(&database)?.map_err(convert2::error))
    }

    async fn execute(
        &mut self,
        conn: Resource<OpenConnection>,
        statement: String,
        parameters: Vec<sqlite2::Value>,
    ) -> wasmtime::Result<Result<sqlite2::QueryResult, sqlite2::Error>> {
        let db = self.database(&conn)?;
        Ok(db
            .query(statement, convert2::params(parameters))
            .await
            .map(convert2::result)
            .map_err(convert2::error))
    }

    async fn drop(&mut self, conn: Resource<OpenConnection>) -> wasmtime::Result<()> {
        self.disconnect(conn)
    }
}

impl sqlite3::Host for SpinView<'_> {}

impl sqlite3::HostConnection for SpinView<'_> {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<OpenConnection>, sqlite3::Error>> {
        Ok(self.connect(&database)?.map_err(convert3::error))
    }

    async fn execute(
        &mut self,
        conn: Resource<OpenConnection>,
        statement: String,
        parameters: Vec<sqlite3::Value>,
    ) -> wasmtime::Result<Result<sqlite3::QueryResult, sqlite3::Error>> {
        let db = self.database(&conn)?;
        let params = convert3::params(parameters);
        let kind = effect(&statement);
        if let Effect::Inserts | Effect::Changes = kind {
            // Run for its outcome; it has no rows to give.
            let outcome = match db.execute(statement, params).await {
                Ok(outcome) => outcome,
                Err(e) => return Ok(Err(convert3::error(e))),
            };
            let handle = self.table.get_mut(&conn)?;
            handle.changes = outcome.changes;
            // A pooled connection's rowid may be another statement's
            // unless this one inserted.
            if kind == Effect::Inserts && outcome.changes > 0 {
                handle.last_insert_rowid = outcome.last_insert_rowid;
            }
            return Ok(Ok(sqlite3::QueryResult {
                columns: Vec::new(),
                rows: Vec::new(),
            }));
        }
        let rows = match db.query(statement, params).await {
            Ok(rows) => rows,
            Err(e) => return Ok(Err(convert3::error(e))),
        };
        if kind == Effect::Returning {
            // RETURNING gives one row per row changed.
            self.table.get_mut(&conn)?.changes = rows.rows.len() as u64;
        }
        Ok(Ok(convert3::result(rows)))
    }

    async fn last_insert_rowid(&mut self, conn: Resource<OpenConnection>) -> wasmtime::Result<i64> {
        Ok(self.table.get(&conn)?.last_insert_rowid)
    }

    async fn changes(&mut self, conn: Resource<OpenConnection>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&conn)?.changes)
    }

    async fn drop(&mut self, conn: Resource<OpenConnection>) -> wasmtime::Result<()> {
        self.disconnect(conn)
    }
}

/// What a statement does to `changes` and `last-insert-rowid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    /// `INSERT` or `REPLACE`, without `RETURNING`.
    Inserts,
    /// `UPDATE` or `DELETE`, without `RETURNING`.
    Changes,
    /// One of those four with `RETURNING`: its rows are the rows changed.
    Returning,
    /// Anything else, which SQLite does not count (a `WITH` in front of an
    /// `INSERT` is taken for this too).
    Other,
}

/// What `statement` does, from its first word and whether `RETURNING`
/// is among its words.
fn effect(statement: &str) -> Effect {
    let mut words = words(statement);
    let inserts = match words.next() {
        Some(w) if w.eq_ignore_ascii_case("insert") || w.eq_ignore_ascii_case("replace") => true,
        Some(w) if w.eq_ignore_ascii_case("update") || w.eq_ignore_ascii_case("delete") => false,
        _ => return Effect::Other,
    };
    if words.any(|w| w.eq_ignore_ascii_case("returning")) {
        Effect::Returning
    } else if inserts {
        Effect::Inserts
    } else {
        Effect::Changes
    }
}

/// The bare words of a statement, in order: none inside a comment, a
/// string or a quoted name.
fn words(statement: &str) -> impl Iterator<Item = &str> {
    let bytes = statement.as_bytes();
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < bytes.len() {
            let rest = &bytes[at..];
            let close = match rest[0] {
                b'\'' => Some(b'\''),
                b'"' => Some(b'"'),
                b'`' => Some(b'`'),
                b'[' => Some(b']'),
                _ => None,
            };
            if rest.starts_with(b"--") {
                at += rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            } else if rest.starts_with(b"/*") {
                at += rest[2..]
                    .windows(2)
                    .position(|w| w == b"*/")
                    .map_or(rest.len(), |end| end + 4);
            } else if let Some(close) = close {
                // A doubled quote inside reads as two quoted runs in a row.
                at += rest[1..]
                    .iter()
                    .position(|&b| b == close)
                    .map_or(rest.len(), |end| end + 2);
            } else if rest[0].is_ascii_alphanumeric() || rest[0] == b'_' {
                let len = rest
                    .iter()
                    .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_'))
                    .unwrap_or(rest.len());
                at += len;
                return Some(&statement[at - len..at]);
            } else {
                at += 1;
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_linked_interfaces_and_versions_are_claimed() {
        let of = |raw: &str| interface(&ImportName::parse(raw));
        assert_eq!(
            of("fermyon:spin/key-value@2.0.0"),
            Some(Interface::KeyValue)
        );
        assert_eq!(
            of("fermyon:spin/variables@2.0.0"),
            Some(Interface::Variables)
        );
        assert_eq!(of("fermyon:spin/sqlite@2.0.0"), Some(Interface::Sqlite));
        assert_eq!(of("spin:sqlite/sqlite@3.0.0"), Some(Interface::Sqlite));
        // Spin 4's async interfaces, and the ones renga has no add-on for.
        assert_eq!(of("spin:sqlite/sqlite@3.1.0"), None);
        assert_eq!(of("spin:key-value/key-value@3.0.0"), None);
        assert_eq!(of("spin:variables/variables@3.0.0"), None);
        assert_eq!(of("fermyon:spin/llm@2.0.0"), None);
        assert_eq!(of("fermyon:spin/redis@2.0.0"), None);
        assert_eq!(of("fermyon:spin/key-value"), None);
        assert_eq!(of("spin:sqlite/variables@3.0.0"), None);
    }

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        Arc::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn a_variable_is_the_config_var_in_capitals_or_named_exactly() {
        let vars = vars(&[
            ("API_KEY", "upper"),
            ("greeting", "exact"),
            ("GREETING", "no"),
        ]);
        assert_eq!(variable(&vars, "api_key"), Ok("upper".to_string()));
        assert_eq!(variable(&vars, "greeting"), Ok("exact".to_string()));
        assert_eq!(variable(&vars, "API_KEY"), Ok("upper".to_string()));
        assert!(
            matches!(variable(&vars, "missing"), Err(Unset::Undefined(m)) if m.contains("MISSING"))
        );
    }

    #[test]
    fn a_name_spin_refuses_is_invalid_unless_a_config_var_has_it() {
        let vars = vars(&[("Mixed_Case", "set")]);
        assert_eq!(variable(&vars, "Mixed_Case"), Ok("set".to_string()));
        for name in [
            "",
            "Upper",
            "1st",
            "trailing_",
            "two__underscores",
            "dash-ed",
            "sp ace",
        ] {
            assert!(
                matches!(variable(&vars, name), Err(Unset::InvalidName(_))),
                "{name:?} should be invalid"
            );
        }
        assert_eq!(spin_name("api_key2"), Ok(()));
        assert_eq!(spin_name("a"), Ok(()));
    }

    #[test]
    fn statements_are_told_apart_by_their_first_word_and_returning() {
        assert_eq!(effect("INSERT INTO t (a) VALUES (?)"), Effect::Inserts);
        assert_eq!(effect("  replace into t values (1)"), Effect::Inserts);
        assert_eq!(
            effect("insert or ignore into t values (1)"),
            Effect::Inserts
        );
        assert_eq!(effect("UPDATE t SET a = 1"), Effect::Changes);
        assert_eq!(effect("delete from t"), Effect::Changes);
        assert_eq!(effect("DELETE FROM t RETURNING id"), Effect::Returning);
        assert_eq!(
            effect("insert into t values (1) on conflict do nothing returning *"),
            Effect::Returning
        );
        assert_eq!(effect("SELECT * FROM t"), Effect::Other);
        assert_eq!(effect("CREATE TABLE IF NOT EXISTS t (a)"), Effect::Other);
        assert_eq!(
            effect("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x"),
            Effect::Other
        );
        assert_eq!(effect("EXPLAIN INSERT INTO t VALUES (1)"), Effect::Other);
        assert_eq!(effect(""), Effect::Other);
    }

    #[test]
    fn comments_strings_and_quoted_names_are_not_words() {
        assert_eq!(
            effect("-- returning\n/* SELECT */ INSERT INTO t VALUES ('returning')"),
            Effect::Inserts
        );
        assert_eq!(
            effect("update \"returning\" set [returning] = `returning`"),
            Effect::Changes
        );
        assert_eq!(
            effect("insert into t values ('it''s') returning id"),
            Effect::Returning
        );
        assert_eq!(
            words("a /* b */ c -- d\ne 'f' \"g\" h_1 é").collect::<Vec<_>>(),
            ["a", "c", "e", "h_1"]
        );
        // Unclosed comments and quotes end the words.
        assert_eq!(words("a /* b").collect::<Vec<_>>(), ["a"]);
        assert_eq!(words("a 'b").collect::<Vec<_>>(), ["a"]);
        assert_eq!(words("a --").collect::<Vec<_>>(), ["a"]);
    }
}
