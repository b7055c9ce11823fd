//! `pg:info` and `pg:psql`: Heroku's commands for `renga-postgres` add-ons.

use anyhow::{Context, bail};
use serde_json::Value;

use super::client::{Api, AppArg, field, print_json};
use crate::units::ByteSize;

/// The app's `renga-postgres` attachments, the one attached as DATABASE
/// first: `(attachment name, add-on)`.
fn databases(api: &Api, app: &str) -> anyhow::Result<Vec<(String, Value)>> {
    let attachments = api.get(&format!("/apps/{app}/addon-attachments"))?;
    let mut found = Vec::new();
    for attachment in attachments.as_array().cloned().unwrap_or_default() {
        let name = field(&attachment, &["name"]);
        let addon_name = field(&attachment, &["addon", "name"]);
        let addon = api.get(&format!("/apps/{app}/addons/{addon_name}"))?;
        if field(&addon, &["addon_service", "name"]) == "renga-postgres" {
            found.push((name, addon));
        }
    }
    found.sort_by_key(|(name, _)| name != "DATABASE");
    Ok(found)
}

/// The database `which` names (an attachment, its `_URL` var, or the
/// add-on's name), or the app's first.
fn pick(
    app: &str,
    list: Vec<(String, Value)>,
    which: Option<&str>,
) -> anyhow::Result<(String, Value)> {
    if list.is_empty() {
        bail!(
            "{app} has no PostgreSQL database; create one with `renga addons:create renga-postgres -a {app}`"
        );
    }
    match which {
        None => Ok(list.into_iter().next().expect("not empty")),
        Some(which) => {
            let wanted = which.strip_suffix("_URL").unwrap_or(which);
            let known: Vec<String> = list.iter().map(|(name, _)| name.clone()).collect();
            list.into_iter()
                .find(|(name, addon)| name == wanted || field(addon, &["name"]) == which)
                .with_context(|| {
                    format!("{app} has no database {which}: it has {}", known.join(", "))
                })
        }
    }
}

/// Show a PostgreSQL add-on's plan, size, tables and connections.
///
/// Example:
///   renga pg:info -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct InfoCommand {
    /// The database: an attachment name (DATABASE), its config var
    /// (DATABASE_URL) or the add-on's name [default: every one].
    database: Option<String>,
    #[command(flatten)]
    app: AppArg,
    #[arg(long)]
    json: bool,
}

impl InfoCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let app = self.app.resolve()?;
        let api = Api::connect()?;
        let list = databases(&api, &app)?;
        let chosen = match &self.database {
            Some(which) => vec![pick(&app, list, Some(which))?],
            None if list.is_empty() => vec![pick(&app, list, None)?],
            None => list,
        };
        let mut shown = Vec::new();
        for (attachment, addon) in chosen {
            let name = field(&addon, &["name"]);
            let info = api.get(&format!("/apps/{app}/addons/{name}/database"))?;
            shown.push((attachment, info));
        }
        if self.json {
            print_json(&Value::Array(shown.into_iter().map(|(_, i)| i).collect()));
            return Ok(());
        }
        for (attachment, info) in shown {
            let db = &info["database"];
            let size = db["data_size"].as_u64().unwrap_or(0);
            let quota = info["quota"].as_u64().unwrap_or(0);
            let used = if quota > 0 {
                format!(
                    "{} / {} ({:.2}%)",
                    ByteSize(size),
                    ByteSize(quota),
                    size as f64 * 100.0 / quota as f64
                )
            } else {
                ByteSize(size).to_string()
            };
            let limit = db["connection_limit"].as_i64().unwrap_or(-1);
            let connections = match limit {
                n if n >= 0 => format!("{}/{n}", db["connections"].as_i64().unwrap_or(0)),
                _ => db["connections"].as_i64().unwrap_or(0).to_string(),
            };
            println!("=== {attachment}_URL");
            for (label, value) in [
                ("Plan", field(&info, &["plan", "name"])),
                ("Status", "Available".to_string()),
                ("Connections", connections),
                ("PG Version", field(db, &["server_version"])),
                ("Created", field(&info, &["created_at"])),
                ("Data Size", used),
                ("Tables", db["tables"].as_i64().unwrap_or(0).to_string()),
                ("Add-on", field(&info, &["name"])),
            ] {
                println!("{:<12} {value}", format!("{label}:"));
            }
            println!();
        }
        Ok(())
    }
}

/// Open `psql` on a PostgreSQL add-on's database (or run one command).
///
/// Example:
///   renga pg:psql -a hello
///   renga pg:psql -a hello -c "SELECT count(*) FROM todos"
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct PsqlCommand {
    /// The database: an attachment name (DATABASE), its config var
    /// (DATABASE_URL) or the add-on's name [default: the app's DATABASE].
    database: Option<String>,
    #[command(flatten)]
    app: AppArg,
    /// Run this SQL and exit.
    #[arg(short = 'c', long)]
    command: Option<String>,
    /// Run the SQL in this file and exit.
    #[arg(short = 'f', long)]
    file: Option<std::path::PathBuf>,
}

impl PsqlCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let app = self.app.resolve()?;
        let api = Api::connect()?;
        let (attachment, _) = pick(&app, databases(&api, &app)?, self.database.as_deref())?;
        let vars = api.get(&format!("/apps/{app}/config-vars"))?;
        let var = format!("{attachment}_URL");
        let Some(url) = vars[&var].as_str() else {
            bail!("{app} has no config var {var}: attach the database again");
        };
        let mut psql = std::process::Command::new("psql");
        psql.arg(url).env("PGAPPNAME", "renga pg:psql");
        if let Some(command) = &self.command {
            psql.args(["--command", command]);
        }
        if let Some(file) = &self.file {
            psql.arg("--file").arg(file);
        }
        eprintln!("--> Connecting to {attachment}");
        let status = match psql.status() {
            Ok(status) => status,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "psql is not installed: install PostgreSQL's client (Debian: `apt-get install postgresql-client`) and try again"
            ),
            Err(e) => return Err(e).context("could not start psql"),
        };
        if !status.success() {
            std::process::exit(status.code().unwrap_or(1));
        }
        Ok(())
    }
}
