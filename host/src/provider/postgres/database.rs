//! One add-on's database as Wasm dynos reach it: a pool of connections
//! that log in as the add-on's role, statements within their time, and
//! transactions that hold one connection.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Statement};

use super::values::{Column, Param, value_bytes};
use super::{MAX_CONNECTIONS, POOL_WAIT, STATEMENT_TIME, message};
use crate::provider::AddonRef;
use crate::provider::sql::{
    MAX_RESULT_BYTES, Outcome, Rows, SqlBackend, SqlError, SqlTransaction, Value,
};

/// One add-on's database, as Wasm dynos reach it.
pub struct PgDatabase {
    addon: AddonRef,
    /// Its pool, or why it has none (a URL that does not parse).
    pool: Result<Pool, String>,
}

impl PgDatabase {
    /// A pool that logs in with the add-on's own URL.
    pub fn new(addon: AddonRef) -> PgDatabase {
        PgDatabase {
            pool: Self::pool(&addon),
            addon,
        }
    }

    fn pool(addon: &AddonRef) -> Result<Pool, String> {
        let url = addon
            .url
            .clone()
            .ok_or_else(|| format!("{} has no URL: provision it again", addon.name))?;
        let mut config = tokio_postgres::Config::from_str(&url)
            .map_err(|e| format!("{}: its URL is not valid: {e}", addon.name))?;
        config
            .connect_timeout(POOL_WAIT)
            .application_name("renga")
            .options(format!(
                "-c statement_timeout={} -c idle_in_transaction_session_timeout=60000",
                STATEMENT_TIME.as_millis()
            ));
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(MAX_CONNECTIONS)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .recycle_timeout(Some(POOL_WAIT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| format!("{}: {e}", addon.name))
    }

    async fn connection(&self) -> Result<deadpool_postgres::Object, SqlError> {
        let pool = self.pool.as_ref().map_err(|e| SqlError::Other(e.clone()))?;
        pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Timeout(_) => SqlError::Busy(format!(
                "{}: all {MAX_CONNECTIONS} of its connections stayed in use for {}",
                self.addon.name,
                crate::units::HumanDuration(POOL_WAIT)
            )),
            deadpool_postgres::PoolError::Backend(e) => {
                SqlError::Other(format!("{}: {}", self.addon.name, message(&e)))
            }
            other => SqlError::Other(format!("{}: {other}", self.addon.name)),
        })
    }

    /// Connections open in its pool, and of those idle.
    pub fn pool_status(&self) -> (usize, usize) {
        match &self.pool {
            Ok(pool) => {
                let status = pool.status();
                (status.size, status.available)
            }
            Err(_) => (0, 0),
        }
    }
}

impl crate::provider::Backend for PgDatabase {
    fn set_quota(&self, _bytes: u64) {}
}

/// A transaction-control statement, which only `begin` may issue.
fn controls_transactions(statement: &str) -> bool {
    let first = statement
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    matches!(
        first.as_str(),
        "BEGIN"
            | "START"
            | "COMMIT"
            | "END"
            | "ROLLBACK"
            | "ABORT"
            | "PREPARE"
            | "SAVEPOINT"
            | "RELEASE"
    )
}

/// A database error in renga:sql's kinds.
fn classify(addon: &str, e: &tokio_postgres::Error) -> SqlError {
    let text = format!("{addon}: {}", message(e));
    let Some(code) = e.code() else {
        return SqlError::Other(text);
    };
    let class = &code.code()[..2];
    if *code == SqlState::QUERY_CANCELED {
        SqlError::Timeout(text)
    } else if *code == SqlState::DISK_FULL
        || *code == SqlState::PROGRAM_LIMIT_EXCEEDED
        || *code == SqlState::OUT_OF_MEMORY
    {
        SqlError::Full(text)
    } else if *code == SqlState::INSUFFICIENT_PRIVILEGE
        || *code == SqlState::READ_ONLY_SQL_TRANSACTION
    {
        SqlError::Denied(text)
    } else if class == "23" {
        SqlError::Constraint(text)
    } else if class == "42" || class == "22" || class == "07" {
        SqlError::Syntax(text)
    } else if class == "40" || class == "55" || class == "53" {
        SqlError::Busy(text)
    } else {
        SqlError::Other(text)
    }
}

/// Prepares a guest's statement on its connection (cached there), after
/// checking that it is one `execute` or `query` may run with `params`.
async fn prepare(
    conn: &Object,
    addon: &str,
    statement: &str,
    params: &[Value],
) -> Result<Statement, SqlError> {
    if controls_transactions(statement) {
        return Err(SqlError::Denied(format!(
            "{addon}: a transaction is begun with `begin` and ended with `commit` or `rollback`, not with SQL"
        )));
    }
    let prepared = conn
        .prepare_cached(statement)
        .await
        .map_err(|e| classify(addon, &e))?;
    if prepared.params().len() != params.len() {
        return Err(SqlError::Syntax(format!(
            "{addon}: the statement takes {} parameters and {} were given",
            prepared.params().len(),
            params.len()
        )));
    }
    Ok(prepared)
}

/// Runs `work` within the time a statement may take. The server stops a
/// statement at its `statement_timeout`; this is renga's own bound should
/// the server or the network not answer, and it cancels on the server.
async fn within_time<T>(
    conn: &Object,
    addon: &str,
    work: impl Future<Output = Result<T, SqlError>>,
) -> Result<T, SqlError> {
    match tokio::time::timeout(STATEMENT_TIME + Duration::from_secs(2), work).await {
        Ok(result) => result,
        Err(_) => {
            let _ = conn.cancel_token().cancel_query(NoTls).await;
            Err(SqlError::Timeout(format!(
                "{addon}: the statement ran longer than the {} one statement may",
                crate::units::HumanDuration(STATEMENT_TIME)
            )))
        }
    }
}

/// Runs one statement and reads its rows, within [`MAX_RESULT_BYTES`].
async fn run_query(
    conn: &Object,
    addon: &str,
    statement: &str,
    params: &[Value],
) -> Result<Rows, SqlError> {
    within_time(conn, addon, async {
        let prepared = prepare(conn, addon, statement, params).await?;
        let bound: Vec<Param<'_>> = params.iter().map(Param).collect();
        let refs: Vec<&(dyn ToSql + Sync)> =
            bound.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = conn
            .query(&prepared, &refs)
            .await
            .map_err(|e| classify(addon, &e))?;
        let mut out = Rows {
            columns: prepared
                .columns()
                .iter()
                .map(|c| c.name().to_string())
                .collect(),
            rows: Vec::with_capacity(rows.len()),
        };
        let mut total = 0usize;
        for row in rows {
            let mut values = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                let Column(value) = row
                    .try_get(i)
                    .map_err(|e| SqlError::Other(format!("{addon}: {}", message(&e))))?;
                total += value_bytes(&value);
                values.push(value);
            }
            if total > MAX_RESULT_BYTES {
                return Err(SqlError::Full(format!(
                    "{addon}: the result is larger than the {} one query may return; ask for fewer rows",
                    crate::units::ByteSize(MAX_RESULT_BYTES as u64)
                )));
            }
            out.rows.push(values);
        }
        Ok(out)
    })
    .await
}

/// Runs one statement: the rows it changed.
async fn run_execute(
    conn: &Object,
    addon: &str,
    statement: &str,
    params: &[Value],
) -> Result<Outcome, SqlError> {
    within_time(conn, addon, async {
        let prepared = prepare(conn, addon, statement, params).await?;
        let bound: Vec<Param<'_>> = params.iter().map(Param).collect();
        let refs: Vec<&(dyn ToSql + Sync)> =
            bound.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let changes = conn
            .execute(&prepared, &refs)
            .await
            .map_err(|e| classify(addon, &e))?;
        Ok(Outcome {
            changes,
            last_insert_rowid: 0,
        })
    })
    .await
}

/// Cancels the running statement of a call the guest abandoned.
struct CancelOnDrop(Option<tokio_postgres::CancelToken>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(token) = self.0.take() {
            tokio::spawn(async move {
                let _ = token.cancel_query(NoTls).await;
            });
        }
    }
}

#[async_trait::async_trait]
impl SqlBackend for PgDatabase {
    fn addon(&self) -> &AddonRef {
        &self.addon
    }

    async fn execute(&self, statement: String, params: Vec<Value>) -> Result<Outcome, SqlError> {
        let conn = self.connection().await?;
        let mut guard = CancelOnDrop(Some(conn.cancel_token()));
        let result = run_execute(&conn, &self.addon.name, &statement, &params).await;
        guard.0 = None;
        result
    }

    async fn query(&self, statement: String, params: Vec<Value>) -> Result<Rows, SqlError> {
        let conn = self.connection().await?;
        let mut guard = CancelOnDrop(Some(conn.cancel_token()));
        let result = run_query(&conn, &self.addon.name, &statement, &params).await;
        guard.0 = None;
        result
    }

    async fn execute_batch(&self, statements: String) -> Result<(), SqlError> {
        let name = &self.addon.name;
        // One simple query runs as one implicit transaction: all or none.
        // Transaction control inside it would end that early.
        if statements.split(';').any(controls_transactions) {
            return Err(SqlError::Denied(format!(
                "{name}: a batch runs as one transaction; it may not begin or end one itself"
            )));
        }
        let conn = self.connection().await?;
        let mut guard = CancelOnDrop(Some(conn.cancel_token()));
        let result = within_time(&conn, name, async {
            conn.batch_execute(&statements)
                .await
                .map_err(|e| classify(name, &e))
        })
        .await;
        guard.0 = None;
        result
    }

    async fn begin(&self) -> Result<Box<dyn SqlTransaction>, SqlError> {
        let conn = self.connection().await?;
        conn.batch_execute("BEGIN")
            .await
            .map_err(|e| classify(&self.addon.name, &e))?;
        Ok(Box::new(PgTransaction {
            addon: self.addon.name.clone(),
            conn: tokio::sync::Mutex::new(Some(conn)),
        }))
    }
}

/// A transaction holding one pooled connection. Dropped unfinished, its
/// connection is closed rather than returned, and the server rolls back.
pub struct PgTransaction {
    addon: String,
    conn: tokio::sync::Mutex<Option<deadpool_postgres::Object>>,
}

impl Drop for PgTransaction {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.get_mut().take() {
            drop(deadpool_postgres::Object::take(conn));
        }
    }
}

impl PgTransaction {
    fn over(&self) -> SqlError {
        SqlError::Other(format!("{}: the transaction is over", self.addon))
    }
}

#[async_trait::async_trait]
impl SqlTransaction for PgTransaction {
    async fn execute(&self, statement: String, params: Vec<Value>) -> Result<Outcome, SqlError> {
        let guard = self.conn.lock().await;
        let conn = guard.as_ref().ok_or_else(|| self.over())?;
        run_execute(conn, &self.addon, &statement, &params).await
    }

    async fn query(&self, statement: String, params: Vec<Value>) -> Result<Rows, SqlError> {
        let guard = self.conn.lock().await;
        let conn = guard.as_ref().ok_or_else(|| self.over())?;
        run_query(conn, &self.addon, &statement, &params).await
    }

    async fn finish(&self, commit: bool) -> Result<(), SqlError> {
        let conn = self.conn.lock().await.take().ok_or_else(|| self.over())?;
        let ending = if commit { "COMMIT" } else { "ROLLBACK" };
        match conn.batch_execute(ending).await {
            Ok(()) => Ok(()),
            Err(e) => {
                drop(deadpool_postgres::Object::take(conn));
                Err(classify(&self.addon, &e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_control_is_recognised() {
        for s in [
            "BEGIN",
            " begin;",
            "COMMIT",
            "rollback",
            "START TRANSACTION",
            "end",
        ] {
            assert!(controls_transactions(s), "{s}");
        }
        for s in ["SELECT 1", "INSERT INTO begin_t VALUES (1)", "beginning"] {
            assert!(!controls_transactions(s), "{s}");
        }
    }
}
