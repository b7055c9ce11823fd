//! The operator's server, as renga administers it: an add-on's role and
//! database made and dropped, and what `pg:info` shows.

use std::str::FromStr;

use tokio_postgres::{Client, NoTls};

use super::{POOL_WAIT, ident, message, shown};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_of_the_id() {
        assert_eq!(PgServer::name_of("A1-b2"), "renga_a1b2");
    }
}
