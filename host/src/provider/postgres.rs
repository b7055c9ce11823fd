//! `renga-postgres`: SQL add-ons on the operator's PostgreSQL, named with
//! `renga server --postgres URL`.
//!
//! Each add-on is a database and a login role of its own, with a random
//! password: the role owns its database, nobody else may connect to it
//! (`CONNECT` is revoked from `PUBLIC`), and the role may create no roles
//! or databases. Its URL is the app's `DATABASE_URL`, for native dynos and
//! `pg:psql`. Wasm dynos reach it through `renga:sql`, with a pool of
//! [`MAX_CONNECTIONS`] per add-on in the host that logs in as the add-on's
//! own role, so that even the host's path cannot reach another add-on's
//! tables. Each statement may run for [`STATEMENT_TIME`] (the server's
//! `statement_timeout`, and a cancel from the host past it); a pool that
//! stays busy answers `busy` after [`POOL_WAIT`].
//!
//! Values travel as renga:sql's five kinds: integers, reals, text and blobs
//! are bound to the type the server infers for each parameter (a text to a
//! `uuid`, `json`, `date` or `timestamptz` column is converted), and
//! columns come back as the closest kind (booleans as 0 and 1; numerics,
//! dates, times, UUIDs and JSON as text; other types as their binary form).

use std::error::Error as _;
use std::str::FromStr;
use std::time::Duration;

use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Statement};

use super::AddonRef;
use super::sql::{MAX_RESULT_BYTES, Outcome, Rows, SqlBackend, SqlError, SqlTransaction, Value};

/// Connections one add-on's pool keeps at most.
pub const MAX_CONNECTIONS: usize = 4;
/// The longest one statement may run.
pub const STATEMENT_TIME: Duration = Duration::from_secs(10);
/// How long a call waits for a free connection, and for a new one.
pub const POOL_WAIT: Duration = Duration::from_secs(5);

/// The operator's PostgreSQL server, as renga administers it.
pub struct PgServer {
    admin: tokio_postgres::Config,
    /// The URL without its password, for messages.
    shown: String,
}

/// What `pg:info` shows.
#[derive(Debug, serde::Serialize)]
pub struct PgInfo {
    pub database: String,
    pub server_version: String,
    pub data_size: u64,
    pub tables: i64,
    pub connections: i64,
    pub connection_limit: i64,
}

fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("…"));
            }
            parsed.to_string()
        }
        Err(_) => "the PostgreSQL server".to_string(),
    }
}

/// A database error in one line: the server's message, else the client's.
fn message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => match e.source() {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

/// Quotes an identifier renga made (letters, digits and `_` only).
fn ident(name: &str) -> String {
    debug_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    format!("\"{name}\"")
}

impl PgServer {
    pub fn new(url: &str) -> anyhow::Result<PgServer> {
        let admin = tokio_postgres::Config::from_str(url)
            .map_err(|e| anyhow::anyhow!("--postgres {}: {e}", shown(url)))?;
        Ok(PgServer {
            admin,
            shown: shown(url),
        })
    }

    /// The name of an add-on's database and role.
    pub fn name_of(id: &str) -> String {
        let clean: String = id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        format!("renga_{clean}")
    }

    async fn admin(&self) -> Result<Client, String> {
        let mut config = self.admin.clone();
        config.connect_timeout(POOL_WAIT);
        let (client, connection) = config.connect(NoTls).await.map_err(|e| {
            format!(
                "could not reach PostgreSQL at {}: {}",
                self.shown,
                message(&e)
            )
        })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Its URL without the password, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Waits for the server to answer (a starting server checks it).
    pub async fn ping(&self) -> Result<(), String> {
        let client = self.admin().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(|e| message(&e))
    }

    /// Makes an add-on's role and database, and returns its URL.
    pub async fn provision(&self, id: &str, connection_limit: u32) -> Result<String, String> {
        let client = self.admin().await?;
        let name = Self::name_of(id);
        let password = crate::auth::random_hex(24);
        let role = ident(&name);
        let refused = |e: tokio_postgres::Error| {
            format!(
                "PostgreSQL at {} refused to make the add-on's database (renga's account there needs CREATEROLE and CREATEDB): {}",
                self.shown,
                message(&e)
            )
        };
        client
            .batch_execute(&format!(
                "CREATE ROLE {role} LOGIN PASSWORD '{password}' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION CONNECTION LIMIT {connection_limit}"
            ))
            .await
            .map_err(refused)?;
        // CREATE DATABASE cannot run in a transaction block: one at a time.
        // The admin must be a member of the role to give it a database.
        let made = async {
            client
                .batch_execute(&format!("GRANT {role} TO CURRENT_USER"))
                .await?;
            client
                .batch_execute(&format!("CREATE DATABASE {role} OWNER {role}"))
                .await?;
            client
                .batch_execute(&format!(
                    "REVOKE ALL ON DATABASE {role} FROM PUBLIC; GRANT CONNECT, TEMPORARY ON DATABASE {role} TO {role}; REVOKE {role} FROM CURRENT_USER"
                ))
                .await
        }
        .await;
        if let Err(e) = made {
            let _ = self.deprovision(id).await;
            return Err(refused(e));
        }
        Ok(self.url_for(&name, &password))
    }

    fn url_for(&self, name: &str, password: &str) -> String {
        let mut url = url::Url::parse("postgres://localhost").expect("a valid URL");
        let _ = url.set_username(name);
        let _ = url.set_password(Some(password));
        url.set_path(&format!("/{name}"));
        let host = self.admin.get_hosts().first().cloned();
        let port = self.admin.get_ports().first().copied().unwrap_or(5432);
        match host {
            Some(tokio_postgres::config::Host::Tcp(host)) => {
                let _ = url.set_host(Some(&host));
                let _ = url.set_port(Some(port));
            }
            Some(tokio_postgres::config::Host::Unix(dir)) => {
                let _ = url.set_host(None);
                url.query_pairs_mut()
                    .append_pair("host", &dir.to_string_lossy())
                    .append_pair("port", &port.to_string());
            }
            None => {}
        }
        url.to_string()
    }

    /// Drops an add-on's database (ending its sessions) and its role.
    pub async fn deprovision(&self, id: &str) -> Result<(), String> {
        let client = self.admin().await?;
        let role = ident(&Self::name_of(id));
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {role} WITH (FORCE)"))
            .await
            .map_err(|e| message(&e))?;
        client
            .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
            .await
            .map_err(|e| message(&e))
    }

    /// Size, connections and version of an add-on's database.
    pub async fn info(&self, id: &str) -> Result<PgInfo, String> {
        let client = self.admin().await?;
        let name = Self::name_of(id);
        let row = client
            .query_one(
                "SELECT current_setting('server_version'), pg_database_size($1::text::name), \
                 (SELECT count(*) FROM pg_stat_activity WHERE datname = $1::text::name), \
                 (SELECT rolconnlimit::int8 FROM pg_roles WHERE rolname = $1::text::name)",
                &[&name],
            )
            .await
            .map_err(|e| message(&e))?;
        let mut info = PgInfo {
            database: name.clone(),
            server_version: row.get(0),
            data_size: row.get::<_, i64>(1).max(0) as u64,
            connections: row.get(2),
            connection_limit: row.get::<_, Option<i64>>(3).unwrap_or(-1),
            tables: 0,
        };
        // Tables are counted inside the database, as the add-on sees it.
        let mut config = self.admin.clone();
        config.dbname(&name).connect_timeout(POOL_WAIT);
        if let Ok((inside, connection)) = config.connect(NoTls).await {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            if let Ok(row) = inside
                .query_one(
                    "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
                    &[],
                )
                .await
            {
                info.tables = row.get(0);
            }
        }
        Ok(info)
    }
}

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

impl super::Backend for PgDatabase {
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

/// A renga:sql value bound to the type the server inferred.
#[derive(Debug)]
struct Param<'a>(&'a Value);

fn wrong(value: &Value, ty: &Type) -> Box<dyn std::error::Error + Sync + Send> {
    let kind = match value {
        Value::Null => "null",
        Value::Integer(_) => "an integer",
        Value::Real(_) => "a real",
        Value::Text(_) => "a text",
        Value::Blob(_) => "a blob",
    };
    format!("{kind} cannot be bound to a parameter of type {ty}; cast it in the statement").into()
}

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match (self.0, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Integer(i), &Type::INT8) => i.to_sql(ty, out),
            (Value::Integer(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::INT2) => i16::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::OID) => u32::try_from(*i)?.to_sql(ty, out),
            (Value::Integer(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
            (Value::Integer(i), &Type::FLOAT4) => (*i as f32).to_sql(ty, out),
            (Value::Integer(i), &Type::BOOL) => (*i != 0).to_sql(ty, out),
            (Value::Integer(i), &Type::NUMERIC) => numeric_to_sql(&i.to_string(), out),
            (Value::Real(r), &Type::FLOAT8) => r.to_sql(ty, out),
            (Value::Real(r), &Type::FLOAT4) => (*r as f32).to_sql(ty, out),
            (Value::Real(r), &Type::NUMERIC) => numeric_to_sql(&r.to_string(), out),
            (Value::Blob(b), &Type::BYTEA) => b.to_sql(ty, out),
            (Value::Text(t), &Type::JSONB) => {
                out.extend_from_slice(&[1]);
                out.extend_from_slice(t.as_bytes());
                Ok(IsNull::No)
            }
            (Value::Text(t), &Type::JSON) => {
                out.extend_from_slice(t.as_bytes());
                Ok(IsNull::No)
            }
            (Value::Text(t), &Type::UUID) => {
                let hex: String = t.chars().filter(|c| *c != '-').collect();
                let bytes = hex::decode(&hex)?;
                if bytes.len() != 16 {
                    return Err(format!("{t:?} is not a UUID").into());
                }
                out.extend_from_slice(&bytes);
                Ok(IsNull::No)
            }
            (Value::Text(t), &Type::INT8 | &Type::INT4 | &Type::INT2) => {
                Param(&Value::Integer(t.trim().parse()?)).to_sql(ty, out)
            }
            (Value::Text(t), &Type::FLOAT8 | &Type::FLOAT4) => {
                Param(&Value::Real(t.trim().parse()?)).to_sql(ty, out)
            }
            (Value::Text(t), &Type::NUMERIC) => numeric_to_sql(t.trim(), out),
            (Value::Text(t), &Type::BOOL) => {
                let value = match t.trim().to_ascii_lowercase().as_str() {
                    "t" | "true" | "1" | "yes" | "on" => true,
                    "f" | "false" | "0" | "no" | "off" => false,
                    _ => return Err(format!("{t:?} is not a boolean").into()),
                };
                value.to_sql(ty, out)
            }
            (Value::Text(t), &Type::DATE) => {
                let date = time::Date::parse(
                    t.trim(),
                    time::macros::format_description!("[year]-[month]-[day]"),
                )?;
                let days = (date - EPOCH.date()).whole_days();
                i32::try_from(days)?.to_sql(&Type::INT4, out)
            }
            (Value::Text(t), &Type::TIMESTAMPTZ | &Type::TIMESTAMP) => {
                let at = time::OffsetDateTime::parse(
                    t.trim(),
                    &time::format_description::well_known::Rfc3339,
                )?;
                let micros = (at - EPOCH).whole_microseconds();
                i64::try_from(micros)?.to_sql(&Type::INT8, out)
            }
            (Value::Text(t), _) if <&str as ToSql>::accepts(ty) => t.as_str().to_sql(ty, out),
            (value, ty) => Err(wrong(value, ty)),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// PostgreSQL's epoch for dates and times.
const EPOCH: time::OffsetDateTime = time::macros::datetime!(2000-01-01 0:00 UTC);

/// A decimal in PostgreSQL's binary numeric form.
fn numeric_to_sql(
    text: &str,
    out: &mut BytesMut,
) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(format!("{text:?} is not a decimal number").into());
    }
    let whole = whole.trim_start_matches('0');
    // Groups of four digits, aligned on the decimal point.
    let pad_left = (4 - whole.len() % 4) % 4;
    let whole_padded = format!("{}{whole}", "0".repeat(pad_left));
    let pad_right = (4 - fraction.len() % 4) % 4;
    let fraction_padded = format!("{fraction}{}", "0".repeat(pad_right));
    let mut groups: Vec<i16> = Vec::new();
    for chunk in whole_padded.as_bytes().chunks(4) {
        groups.push(std::str::from_utf8(chunk)?.parse()?);
    }
    let whole_groups = groups.len() as i16;
    for chunk in fraction_padded.as_bytes().chunks(4) {
        groups.push(std::str::from_utf8(chunk)?.parse()?);
    }
    let mut weight = whole_groups - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    let sign: u16 = if negative && !groups.is_empty() {
        0x4000
    } else {
        0
    };
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&(fraction.len() as u16).to_be_bytes());
    for group in groups {
        out.extend_from_slice(&group.to_be_bytes());
    }
    Ok(IsNull::No)
}

/// PostgreSQL's binary numeric as decimal text.
fn numeric_text(raw: &[u8]) -> Option<String> {
    let word =
        |i: usize| -> Option<i16> { Some(i16::from_be_bytes(raw.get(i..i + 2)?.try_into().ok()?)) };
    let count = word(0)? as usize;
    let weight = word(2)? as i32;
    let sign = word(4)? as u16;
    let scale = word(6)? as usize;
    if sign == 0xC000 {
        return Some("NaN".to_string());
    }
    let groups: Vec<i16> = (0..count).map(|i| word(8 + 2 * i)).collect::<Option<_>>()?;
    let mut whole = String::new();
    for i in 0..=weight.max(-1) {
        let group = groups.get(i as usize).copied().unwrap_or(0);
        if whole.is_empty() {
            if group != 0 {
                whole = group.to_string();
            }
        } else {
            whole.push_str(&format!("{group:04}"));
        }
    }
    if whole.is_empty() {
        whole.push('0');
    }
    let mut fraction = String::new();
    let mut index = weight + 1;
    while fraction.len() < scale {
        let group = if index < 0 {
            0
        } else {
            groups.get(index as usize).copied().unwrap_or(0)
        };
        fraction.push_str(&format!("{group:04}"));
        index += 1;
    }
    fraction.truncate(scale);
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    text.push_str(&whole);
    if scale > 0 {
        text.push('.');
        text.push_str(&fraction);
    }
    Some(text)
}

/// A column in renga:sql's kinds.
struct Column(Value);

impl<'a> FromSql<'a> for Column {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let value = match *ty {
            Type::BOOL => Value::Integer(i64::from(bool::from_sql(ty, raw)?)),
            Type::INT2 => Value::Integer(i64::from(i16::from_sql(ty, raw)?)),
            Type::INT4 => Value::Integer(i64::from(i32::from_sql(ty, raw)?)),
            Type::INT8 => Value::Integer(i64::from_sql(ty, raw)?),
            Type::OID => Value::Integer(i64::from(u32::from_sql(ty, raw)?)),
            Type::FLOAT4 => Value::Real(f64::from(f32::from_sql(ty, raw)?)),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::BYTEA => Value::Blob(raw.to_vec()),
            Type::JSONB => Value::Text(String::from_utf8_lossy(raw.get(1..).unwrap_or(&[])).into()),
            Type::JSON => Value::Text(String::from_utf8_lossy(raw).into()),
            Type::UUID if raw.len() == 16 => {
                let h = hex::encode(raw);
                Value::Text(format!(
                    "{}-{}-{}-{}-{}",
                    &h[0..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..32]
                ))
            }
            Type::NUMERIC => Value::Text(numeric_text(raw).ok_or("a malformed numeric")?),
            Type::DATE => {
                let days = i32::from_sql(&Type::INT4, raw)?;
                let date = EPOCH.date() + time::Duration::days(i64::from(days));
                Value::Text(date.to_string())
            }
            Type::TIMESTAMP | Type::TIMESTAMPTZ => {
                let micros = i64::from_sql(&Type::INT8, raw)?;
                let at = EPOCH + time::Duration::microseconds(micros);
                Value::Text(at.format(&time::format_description::well_known::Rfc3339)?)
            }
            _ if <String as FromSql>::accepts(ty) => Value::Text(String::from_sql(ty, raw)?),
            _ => Value::Blob(raw.to_vec()),
        };
        Ok(Column(value))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Column(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

fn value_bytes(value: &Value) -> usize {
    match value {
        Value::Text(t) => t.len(),
        Value::Blob(b) => b.len(),
        _ => 8,
    }
}

/// Runs one statement on a client, within the time a statement may take.
async fn run_query(
    client: &Client,
    addon: &str,
    statement: &str,
    params: &[Value],
    statement_cache: Option<&deadpool_postgres::Object>,
) -> Result<Rows, SqlError> {
    if controls_transactions(statement) {
        return Err(SqlError::Denied(format!(
            "{addon}: a transaction is begun with `begin` and ended with `commit` or `rollback`, not with SQL"
        )));
    }
    let work = async {
        let prepared: Statement = match statement_cache {
            Some(object) => object.prepare_cached(statement).await,
            None => client.prepare(statement).await,
        }
        .map_err(|e| classify(addon, &e))?;
        if prepared.params().len() != params.len() {
            return Err(SqlError::Syntax(format!(
                "{addon}: the statement takes {} parameters and {} were given",
                prepared.params().len(),
                params.len()
            )));
        }
        let bound: Vec<Param<'_>> = params.iter().map(Param).collect();
        let refs: Vec<&(dyn ToSql + Sync)> =
            bound.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = client
            .query(&prepared, &refs)
            .await
            .map_err(|e| classify(addon, &e))?;
        let columns: Vec<String> = prepared
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        let mut out = Rows {
            columns,
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
    };
    // The server stops a statement at its `statement_timeout`; this is the
    // host's own bound should the server or the network not answer.
    match tokio::time::timeout(STATEMENT_TIME + Duration::from_secs(2), work).await {
        Ok(result) => result,
        Err(_) => {
            let _ = client.cancel_token().cancel_query(NoTls).await;
            Err(SqlError::Timeout(format!(
                "{addon}: the statement ran longer than the {} one statement may",
                crate::units::HumanDuration(STATEMENT_TIME)
            )))
        }
    }
}

/// Runs one statement, its rows counted as its changes.
async fn run_execute(
    client: &Client,
    addon: &str,
    statement: &str,
    params: &[Value],
    cache: Option<&deadpool_postgres::Object>,
) -> Result<Outcome, SqlError> {
    if controls_transactions(statement) {
        return Err(SqlError::Denied(format!(
            "{addon}: a transaction is begun with `begin` and ended with `commit` or `rollback`, not with SQL"
        )));
    }
    let prepared = match cache {
        Some(object) => object.prepare_cached(statement).await,
        None => client.prepare(statement).await,
    }
    .map_err(|e| classify(addon, &e))?;
    if prepared.params().len() != params.len() {
        return Err(SqlError::Syntax(format!(
            "{addon}: the statement takes {} parameters and {} were given",
            prepared.params().len(),
            params.len()
        )));
    }
    let bound: Vec<Param<'_>> = params.iter().map(Param).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    match tokio::time::timeout(
        STATEMENT_TIME + Duration::from_secs(2),
        client.execute(&prepared, &refs),
    )
    .await
    {
        Ok(Ok(changes)) => Ok(Outcome {
            changes,
            last_insert_rowid: 0,
        }),
        Ok(Err(e)) => Err(classify(addon, &e)),
        Err(_) => {
            let _ = client.cancel_token().cancel_query(NoTls).await;
            Err(SqlError::Timeout(format!(
                "{addon}: the statement ran longer than the {} one statement may",
                crate::units::HumanDuration(STATEMENT_TIME)
            )))
        }
    }
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
        let result = run_execute(&conn, &self.addon.name, &statement, &params, Some(&conn)).await;
        guard.0 = None;
        result
    }

    async fn query(&self, statement: String, params: Vec<Value>) -> Result<Rows, SqlError> {
        let conn = self.connection().await?;
        let mut guard = CancelOnDrop(Some(conn.cancel_token()));
        let result = run_query(&conn, &self.addon.name, &statement, &params, Some(&conn)).await;
        guard.0 = None;
        result
    }

    async fn execute_batch(&self, statements: String) -> Result<(), SqlError> {
        let conn = self.connection().await?;
        let mut guard = CancelOnDrop(Some(conn.cancel_token()));
        // One simple query runs as one implicit transaction: all or none.
        // Transaction control inside it would end that early.
        let controls = statements.split(';').any(controls_transactions);
        if controls {
            return Err(SqlError::Denied(format!(
                "{}: a batch runs as one transaction; it may not begin or end one itself",
                self.addon.name
            )));
        }
        let result = match tokio::time::timeout(
            STATEMENT_TIME + Duration::from_secs(2),
            conn.batch_execute(&statements),
        )
        .await
        {
            Ok(result) => result.map_err(|e| classify(&self.addon.name, &e)),
            Err(_) => Err(SqlError::Timeout(format!(
                "{}: the batch ran longer than the {} one statement may",
                self.addon.name,
                crate::units::HumanDuration(STATEMENT_TIME)
            ))),
        };
        if !matches!(result, Err(SqlError::Timeout(_))) {
            guard.0 = None;
        }
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
        run_execute(conn, &self.addon, &statement, &params, Some(conn)).await
    }

    async fn query(&self, statement: String, params: Vec<Value>) -> Result<Rows, SqlError> {
        let guard = self.conn.lock().await;
        let conn = guard.as_ref().ok_or_else(|| self.over())?;
        run_query(conn, &self.addon, &statement, &params, Some(conn)).await
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
    fn numerics_round_trip_through_the_binary_form() {
        for text in [
            "0",
            "1",
            "-1",
            "12345.678",
            "0.0001",
            "10000",
            "-99999999.5",
            "3.14159",
        ] {
            let mut out = BytesMut::new();
            numeric_to_sql(text, &mut out).unwrap();
            let back = numeric_text(&out).unwrap();
            let want: f64 = text.parse().unwrap();
            assert_eq!(back.parse::<f64>().unwrap(), want, "{text} → {back}");
        }
        assert!(numeric_to_sql("1e5", &mut BytesMut::new()).is_err());
    }

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
        assert_eq!(PgServer::name_of("A1-b2"), "renga_a1b2");
    }
}
