//! SQL (`renga:sql/sql`, renga's own WIT in `wit/deps/sql`) on the app's
//! `renga-sql` add-ons.
//!
//! `database.open("")` and `open("default")` give the app's default SQL
//! add-on (attached as `RENGA_SQL`, else the oldest); `open(NAME)` the one
//! attached under NAME (or named NAME); anything else is
//! `no-such-database`. Under `renga dev` every name is a local database in
//! the app's `.renga/` folder. Errors (syntax, constraint, busy, full,
//! timeout, denied) are values with SQLite's message, never traps.

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use super::{
    Attached, Capability, DynoInputs, ImportName, InstanceInputs, ReleaseInputs, add_on_hint,
};
use crate::addon::BackendKind;
use crate::provider::postgres::PgDatabase;
use crate::provider::sql::{SqlBackend, SqlDatabase, SqlError, SqlTransaction};
use crate::provider::{AddonRef, Open, Servers};
use crate::runtime::DynoState;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/deps/sql",
        world: "imports",
        imports: { default: async | trappable },
        with: {
            "renga:sql/sql.database": super::Database,
            "renga:sql/sql.transaction": super::OpenTransaction,
        },
    });
}

use bindings::renga::sql::sql::{Error, Host, HostDatabase, HostTransaction, Outcome, Rows, Value};

/// The services whose add-ons back this capability.
pub const SERVICES: &[&str] = &["renga-sql", "renga-postgres"];
/// The service named in hints.
pub const SERVICE: &str = "renga-sql";
/// The attachment names a default add-on has, in order of preference.
pub const DEFAULT_ATTACHMENTS: &[&str] = &["RENGA_SQL", "DATABASE"];
/// Databases and transactions one instance may hold open at once.
const MAX_OPEN: usize = 64;

/// Where SQL add-ons live: embedded SQLite files, the operator's
/// PostgreSQL. Shared by every capability that serves SQL interfaces.
pub struct SqlBackends {
    databases: Arc<Open<SqlDatabase>>,
    /// Pools of `renga-postgres` add-ons, by add-on, shared by releases.
    postgres: Arc<Open<PgDatabase>>,
    servers: Servers,
    local: bool,
}

impl SqlBackends {
    pub fn new(databases: Arc<Open<SqlDatabase>>, servers: &Servers, local: bool) -> SqlBackends {
        SqlBackends {
            postgres: Arc::new(Open::new(databases.root().to_path_buf())),
            databases,
            servers: servers.clone(),
            local,
        }
    }

    /// The embedded database of an add-on (opened on first use).
    pub fn database(&self, addon: &AddonRef) -> Arc<SqlDatabase> {
        self.databases
            .get(addon, |dir| SqlDatabase::new(addon.clone(), dir))
    }

    /// The backend of an add-on, or why this server cannot reach it.
    pub fn backend(&self, addon: &AddonRef) -> Result<Arc<dyn SqlBackend>, String> {
        match addon.backend {
            BackendKind::Postgres => match self.servers.missing(BackendKind::Postgres) {
                Some(why) => Err(format!("{}: {why}", addon.name)),
                None => Ok(self.postgres.get(addon, |_| PgDatabase::new(addon.clone()))),
            },
            _ => Ok(Arc::new(self.database(addon))),
        }
    }

    /// The databases one release reaches.
    pub fn release(&self, release: &ReleaseInputs<'_>) -> Arc<SqlRelease> {
        Arc::new(SqlRelease {
            attached: Attached::new(release.addons, SERVICES, DEFAULT_ATTACHMENTS, |addon| {
                self.backend(addon)
            }),
            local: self.local.then(|| self.databases.clone()),
        })
    }
}

pub struct Sql {
    backends: Arc<SqlBackends>,
}

impl Sql {
    pub fn new(backends: Arc<SqlBackends>) -> Sql {
        Sql { backends }
    }
}

/// The databases one release reaches.
pub struct SqlRelease {
    attached: Attached<dyn SqlBackend>,
    local: Option<Arc<Open<SqlDatabase>>>,
}

impl SqlRelease {
    /// The database a guest's `open(name)` gives.
    pub fn resolve(&self, name: &str) -> Result<Arc<dyn SqlBackend>, SqlError> {
        if let Some(reached) = self.attached.find(name) {
            return reached.map_err(SqlError::Other);
        }
        let name = if name.is_empty() { "default" } else { name };
        match &self.local {
            Some(local)
                if name.len() <= 64
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
            {
                let addon = AddonRef::local(
                    format!("sql-{name}"),
                    format!("the local database `{name}`"),
                    1 << 30,
                );
                Ok(Arc::new(
                    local.get(&addon, |dir| SqlDatabase::new(addon.clone(), dir)),
                ))
            }
            _ => Err(SqlError::NoSuchDatabase(format!(
                "no database `{name}` is attached to this app"
            ))),
        }
    }

    /// Whether the release reaches no database at all.
    pub fn is_empty(&self) -> bool {
        self.attached.is_empty() && self.local.is_none()
    }
}

/// One instance's SQL state.
pub struct SqlInstance {
    release: Arc<SqlRelease>,
    open: usize,
}

/// An open database, as a guest holds it.
pub struct Database(Arc<dyn SqlBackend>);

/// A transaction, as a guest holds it.
pub struct OpenTransaction(Box<dyn SqlTransaction>);

impl Capability for Sql {
    type Release = Arc<SqlRelease>;
    type Dyno = Arc<SqlRelease>;
    type Instance = SqlInstance;

    fn link(&self, linker: &mut Linker<DynoState>) -> anyhow::Result<()> {
        fn view(state: &mut DynoState) -> SqlView<'_> {
            state.meter().addon_call();
            SqlView {
                table: &mut state.table,
                sql: &mut state.caps.sql,
            }
        }
        bindings::Imports::add_to_linker::<DynoState, HasSql>(linker, view)?;
        Ok(())
    }

    fn claims(&self, import: &ImportName) -> bool {
        import.is("renga", "sql", &["0.1.0"])
    }

    fn configure(&self, release: &ReleaseInputs<'_>) -> anyhow::Result<Arc<SqlRelease>> {
        Ok(self.backends.release(release))
    }

    fn check(&self, release: &Arc<SqlRelease>, _import: &ImportName, app: &str) -> Option<String> {
        release.is_empty().then(|| add_on_hint("SQL", SERVICE, app))
    }

    fn dyno(&self, release: &Arc<SqlRelease>, _dyno: &DynoInputs<'_>) -> Arc<SqlRelease> {
        release.clone()
    }

    fn instance(
        &self,
        _release: &Arc<SqlRelease>,
        dyno: &Arc<SqlRelease>,
        _inputs: &mut InstanceInputs<'_>,
    ) -> SqlInstance {
        SqlInstance {
            release: dyno.clone(),
            open: 0,
        }
    }
}

/// What a store's state lends the generated bindings.
pub struct SqlView<'a> {
    table: &'a mut ResourceTable,
    sql: &'a mut SqlInstance,
}

struct HasSql;

impl HasData for HasSql {
    type Data<'a> = SqlView<'a>;
}

impl SqlView<'_> {
    fn room(&self) -> Result<(), Error> {
        if self.sql.open >= MAX_OPEN {
            return Err(Error::Other(format!(
                "an instance may hold {MAX_OPEN} databases and transactions open at once; drop one first"
            )));
        }
        Ok(())
    }
}

fn value_in(value: Value) -> crate::provider::sql::Value {
    use crate::provider::sql::Value as V;
    match value {
        Value::Null => V::Null,
        Value::Integer(i) => V::Integer(i),
        Value::Real(r) => V::Real(r),
        Value::Text(t) => V::Text(t),
        Value::Blob(b) => V::Blob(b),
    }
}

fn value_out(value: crate::provider::sql::Value) -> Value {
    use crate::provider::sql::Value as V;
    match value {
        V::Null => Value::Null,
        V::Integer(i) => Value::Integer(i),
        V::Real(r) => Value::Real(r),
        V::Text(t) => Value::Text(t),
        V::Blob(b) => Value::Blob(b),
    }
}

fn params(values: Vec<Value>) -> Vec<crate::provider::sql::Value> {
    values.into_iter().map(value_in).collect()
}

fn rows_out(rows: crate::provider::sql::Rows) -> Rows {
    Rows {
        columns: rows.columns,
        rows: rows
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(value_out).collect())
            .collect(),
    }
}

fn outcome_out(outcome: crate::provider::sql::Outcome) -> Outcome {
    Outcome {
        changes: outcome.changes,
        last_insert_rowid: outcome.last_insert_rowid,
    }
}

fn error_out(error: SqlError) -> Error {
    match error {
        SqlError::NoSuchDatabase(m) => Error::NoSuchDatabase(m),
        SqlError::Syntax(m) => Error::Syntax(m),
        SqlError::Constraint(m) => Error::Constraint(m),
        SqlError::Busy(m) => Error::Busy(m),
        SqlError::Full(m) => Error::Full(m),
        SqlError::Timeout(m) => Error::Timeout(m),
        SqlError::Denied(m) => Error::Denied(m),
        SqlError::Other(m) => Error::Other(m),
    }
}

impl Host for SqlView<'_> {}

impl HostDatabase for SqlView<'_> {
    async fn open(&mut self, name: String) -> wasmtime::Result<Result<Resource<Database>, Error>> {
        if let Err(e) = self.room() {
            return Ok(Err(e));
        }
        let db = match self.sql.release.resolve(&name) {
            Ok(db) => db,
            Err(e) => return Ok(Err(error_out(e))),
        };
        let handle = self.table.push(Database(db))?;
        self.sql.open += 1;
        Ok(Ok(handle))
    }

    async fn execute(
        &mut self,
        db: Resource<Database>,
        statement: String,
        values: Vec<Value>,
    ) -> wasmtime::Result<Result<Outcome, Error>> {
        let db = self.table.get(&db)?.0.clone();
        Ok(db
            .execute(statement, params(values))
            .await
            .map(outcome_out)
            .map_err(error_out))
    }

    async fn query(
        &mut self,
        db: Resource<Database>,
        statement: String,
        values: Vec<Value>,
    ) -> wasmtime::Result<Result<Rows, Error>> {
        let db = self.table.get(&db)?.0.clone();
        Ok(db
            .query(statement, params(values))
            .await
            .map(rows_out)
            .map_err(error_out))
    }

    async fn execute_batch(
        &mut self,
        db: Resource<Database>,
        statements: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let db = self.table.get(&db)?.0.clone();
        Ok(db.execute_batch(statements).await.map_err(error_out))
    }

    async fn begin(
        &mut self,
        db: Resource<Database>,
    ) -> wasmtime::Result<Result<Resource<OpenTransaction>, Error>> {
        if let Err(e) = self.room() {
            return Ok(Err(e));
        }
        let db = self.table.get(&db)?.0.clone();
        match db.begin().await {
            Ok(tx) => {
                let handle = self.table.push(OpenTransaction(tx))?;
                self.sql.open += 1;
                Ok(Ok(handle))
            }
            Err(e) => Ok(Err(error_out(e))),
        }
    }

    async fn drop(&mut self, db: Resource<Database>) -> wasmtime::Result<()> {
        self.table.delete(db)?;
        self.sql.open = self.sql.open.saturating_sub(1);
        Ok(())
    }
}

impl HostTransaction for SqlView<'_> {
    async fn execute(
        &mut self,
        tx: Resource<OpenTransaction>,
        statement: String,
        values: Vec<Value>,
    ) -> wasmtime::Result<Result<Outcome, Error>> {
        let tx = self.table.get(&tx)?;
        Ok(tx
            .0
            .execute(statement, params(values))
            .await
            .map(outcome_out)
            .map_err(error_out))
    }

    async fn query(
        &mut self,
        tx: Resource<OpenTransaction>,
        statement: String,
        values: Vec<Value>,
    ) -> wasmtime::Result<Result<Rows, Error>> {
        let tx = self.table.get(&tx)?;
        Ok(tx
            .0
            .query(statement, params(values))
            .await
            .map(rows_out)
            .map_err(error_out))
    }

    async fn commit(
        &mut self,
        tx: Resource<OpenTransaction>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let tx = self.table.get(&tx)?;
        Ok(tx.0.finish(true).await.map_err(error_out))
    }

    async fn rollback(
        &mut self,
        tx: Resource<OpenTransaction>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let tx = self.table.get(&tx)?;
        Ok(tx.0.finish(false).await.map_err(error_out))
    }

    async fn drop(&mut self, tx: Resource<OpenTransaction>) -> wasmtime::Result<()> {
        self.table.delete(tx)?;
        self.sql.open = self.sql.open.saturating_sub(1);
        Ok(())
    }
}
