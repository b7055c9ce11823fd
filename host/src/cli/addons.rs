//! `addons`, `addons:create`, `addons:info`, `addons:attach`,
//! `addons:detach`, `addons:upgrade`, `addons:destroy`, `addons:services`,
//! `addons:services:add`, `addons:services:remove`, `addons:plans`.

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::client::{Api, AppArg, field, print_json, print_table};
use crate::units::ByteSize;

/// List an app's add-ons (or, without an app, every add-on you can reach).
///
/// Example:
///   renga addons -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct AddonsCommand {
    /// The app (default: every app of yours).
    #[arg(short = 'a', long = "app", env = "RENGA_APP")]
    app: Option<String>,
    #[arg(long)]
    json: bool,
}

impl AddonsCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let api = Api::connect()?;
        let path = match &self.app {
            Some(app) => format!("/apps/{app}/addons"),
            None => "/addons".to_string(),
        };
        let addons = api.get(&path)?;
        if self.json {
            print_json(&addons);
            return Ok(());
        }
        let list = addons.as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            match &self.app {
                Some(app) => println!(
                    "{app} has no add-ons. Create one with `renga addons:create renga-kv -a {app}`."
                ),
                None => println!("You have no add-ons."),
            }
            return Ok(());
        }
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|a| {
                vec![
                    field(a, &["name"]),
                    field(a, &["plan", "name"]),
                    field(a, &["app", "name"]),
                    attachments_of(a),
                    field(a, &["state"]),
                ]
            })
            .collect();
        print_table(&["add-on", "plan", "owner", "attached as", "state"], &rows);
        Ok(())
    }
}

fn attachments_of(addon: &Value) -> String {
    addon["attachments"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|a| format!("{}::{}", field(a, &["app", "name"]), field(a, &["name"])))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// Create an add-on and attach it to the app (a new release sets its config
/// var, `RENGA_KV_NAME`, or `NAME_NAME` with `--as NAME`; add-ons on the
/// server's PostgreSQL or Redis also set `NAME_URL`).
///
/// Services: renga-kv (wasi:keyvalue; `renga-kv:redis` on the server's
/// Redis), renga-sql (renga:sql on SQLite), renga-postgres (renga:sql and
/// DATABASE_URL on the server's PostgreSQL) and renga-blob
/// (wasi:blobstore); plans with `renga addons:plans SERVICE`. Services
/// that provider components serve (`renga addons:services`) take options
/// after `--`, which go to the provider.
///
/// Example:
///   renga addons:create renga-kv -a hello
///   renga addons:create renga-sql:standard --as ORDERS -a hello
///   renga addons:create renga-postgres -a hello
///   renga addons:create kv-ttl -a hello -- --ttl 60
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct CreateCommand {
    /// SERVICE or SERVICE:PLAN.
    plan: String,
    /// The attachment's name (and its config var's prefix).
    #[arg(long = "as")]
    attachment: Option<String>,
    /// The add-on's name (default: a random readable one).
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    app: AppArg,
    #[arg(long)]
    json: bool,
    /// Options for the service's provider: `-- --KEY VALUE` or
    /// `-- --KEY=VALUE` (a bare `--KEY` is `true`).
    #[arg(last = true, value_name = "OPTIONS")]
    options: Vec<String>,
}

/// `--ttl 60 --fast --name=x` as `{ttl: 60, fast: true, name: x}`, as
/// Heroku's CLI reads what follows `--`.
fn parse_options(args: &[String]) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut options = serde_json::Map::new();
    let mut args = args.iter().peekable();
    while let Some(arg) = args.next() {
        let Some(key) = arg.strip_prefix("--") else {
            bail!("options look like --KEY VALUE; {arg:?} is not one");
        };
        let (key, value) = match key.split_once('=') {
            Some((key, value)) => (key.to_string(), value.to_string()),
            None => match args.next_if(|next| !next.starts_with("--")) {
                Some(value) => (key.to_string(), value.clone()),
                None => (key.to_string(), "true".to_string()),
            },
        };
        options.insert(key, Value::String(value));
    }
    Ok(options)
}

impl CreateCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let app = self.app.resolve()?;
        let mut body = json!({ "plan": self.plan });
        let options = parse_options(&self.options)?;
        if !options.is_empty() {
            body["config"] = Value::Object(options);
        }
        if let Some(attachment) = &self.attachment {
            body["attachment"] = json!({ "name": attachment });
        }
        if let Some(name) = &self.name {
            body["name"] = json!(name);
        }
        let api = Api::connect()?;
        let addon = api.post(&format!("/apps/{app}/addons"), &body)?;
        if self.json {
            print_json(&addon);
            return Ok(());
        }
        let version = super::config::current_version(&api, &app)?;
        println!(
            "Created {} ({}) on {app}; attached as {}, now serving {version}",
            field(&addon, &["name"]),
            field(&addon, &["plan", "name"]),
            attachment_vars(&addon),
        );
        Ok(())
    }
}

fn attachment_vars(addon: &Value) -> String {
    addon["config_vars"]
        .as_array()
        .map(|vars| {
            vars.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// Show one add-on: its plan, quota, owner and attachments.
///
/// Example:
///   renga addons:info renga-kv-amber-4821
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct InfoCommand {
    /// The add-on's name (or an attachment name with -a).
    addon: String,
    #[arg(short = 'a', long = "app", env = "RENGA_APP")]
    app: Option<String>,
    #[arg(long)]
    json: bool,
}

impl InfoCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let path = match &self.app {
            Some(app) => format!("/apps/{app}/addons/{}", self.addon),
            None => format!("/addons/{}", self.addon),
        };
        let addon = Api::connect()?.get(&path)?;
        if self.json {
            print_json(&addon);
            return Ok(());
        }
        println!("=== {}", field(&addon, &["name"]));
        let quota = addon["quota"].as_u64().map(|q| ByteSize(q).to_string());
        for (label, value) in [
            ("Plan", field(&addon, &["plan", "name"])),
            ("Quota", quota.unwrap_or_default()),
            ("Owning app", field(&addon, &["app", "name"])),
            ("Attachments", attachments_of(&addon)),
            ("Config vars", attachment_vars(&addon)),
            ("Created", field(&addon, &["created_at"])),
            ("State", field(&addon, &["state"])),
        ] {
            println!("{:<12} {value}", format!("{label}:"));
        }
        Ok(())
    }
}

/// Attach an existing add-on to another of your apps, sharing its data.
///
/// Example:
///   renga addons:attach renga-kv-amber-4821 -a other-app --as SHARED
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct AttachCommand {
    /// The add-on's name.
    addon: String,
    #[arg(long = "as")]
    attachment: Option<String>,
    #[command(flatten)]
    app: AppArg,
    #[arg(long)]
    json: bool,
}

impl AttachCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let app = self.app.resolve()?;
        let mut body = json!({ "addon": self.addon, "app": app });
        if let Some(name) = &self.attachment {
            body["name"] = json!(name);
        }
        let api = Api::connect()?;
        let attachment = api.post("/addon-attachments", &body)?;
        if self.json {
            print_json(&attachment);
            return Ok(());
        }
        let version = super::config::current_version(&api, &app)?;
        println!(
            "Attached {} to {app} as {}; now serving {version}",
            field(&attachment, &["addon", "name"]),
            field(&attachment, &["name"]),
        );
        Ok(())
    }
}

/// Detach an add-on from an app (its config var goes, in a new release).
/// The data stays with the add-on.
///
/// Example:
///   renga addons:detach SHARED -a other-app
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct DetachCommand {
    /// The attachment's name (or the add-on's).
    attachment: String,
    #[command(flatten)]
    app: AppArg,
}

impl DetachCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let app = self.app.resolve()?;
        let api = Api::connect()?;
        let detached = api.delete(&format!(
            "/apps/{app}/addon-attachments/{}",
            self.attachment
        ))?;
        let version = super::config::current_version(&api, &app)?;
        println!(
            "Detached {} ({}) from {app}; now serving {version}",
            field(&detached, &["name"]),
            field(&detached, &["addon", "name"]),
        );
        Ok(())
    }
}

/// Change an add-on's plan (and so its quota).
///
/// Example:
///   renga addons:upgrade renga-kv-amber-4821 standard -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct UpgradeCommand {
    addon: String,
    /// PLAN or SERVICE:PLAN.
    plan: String,
    #[command(flatten)]
    app: AppArg,
}

impl UpgradeCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let app = self.app.resolve()?;
        let addon = Api::connect()?.patch(
            &format!("/apps/{app}/addons/{}", self.addon),
            &json!({ "plan": self.plan }),
        )?;
        println!(
            "Changed {} to {}",
            field(&addon, &["name"]),
            field(&addon, &["plan", "name"])
        );
        Ok(())
    }
}

/// Destroy an add-on: detach it from every app and delete its data, for
/// good.
///
/// Example:
///   renga addons:destroy renga-kv-amber-4821 -a hello --confirm hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct DestroyCommand {
    addon: String,
    #[command(flatten)]
    app: AppArg,
    /// The app's name again, to confirm.
    #[arg(long)]
    confirm: Option<String>,
}

impl DestroyCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let app = self.app.resolve()?;
        if self.confirm.as_deref() != Some(app.as_str()) {
            bail!(
                "this deletes {} and all of its data: run again with --confirm {app}",
                self.addon
            );
        }
        let addon = Api::connect()?.delete(&format!("/apps/{app}/addons/{}", self.addon))?;
        println!("Destroyed {} and its data", field(&addon, &["name"]));
        Ok(())
    }
}

/// Register a provider component as an add-on service (the admin's): a
/// component of the `renga:app/key-value-provider` world (see
/// `sdk/provider`). Apps then create its add-ons with `renga
/// addons:create NAME -a APP` and reach them through wasi:keyvalue. Adding
/// a NAME again replaces its component for every app's next release.
///
/// Example:
///   renga addons:services:add provider_kv_ttl.wasm --name kv-ttl
///   renga addons:services:add limiter.wasm --name rate-limit --outbound api.example.com
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ServicesAddCommand {
    /// The provider's component (.wasm).
    file: std::path::PathBuf,
    /// The service's name, which `addons:create` takes.
    #[arg(long)]
    name: String,
    /// What it provides, for `addons:services`.
    #[arg(long, default_value = "")]
    description: String,
    /// Hosts the provider's outbound HTTP may reach (comma-separated, as
    /// RENGA_ALLOWED_OUTBOUND_HOSTS; none by default).
    #[arg(long, default_value = "")]
    outbound: String,
    #[arg(long)]
    json: bool,
}

impl ServicesAddCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let bytes = std::fs::read(&self.file)
            .with_context(|| format!("reading {}", self.file.display()))?;
        let api = Api::connect()?;
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("description", &self.description)
            .append_pair("outbound", &self.outbound)
            .finish();
        let url = format!("{}/addon-services/{}?{query}", api.base, self.name);
        let service = api.put_bytes(&url, &bytes)?;
        if self.json {
            print_json(&service);
            return Ok(());
        }
        println!(
            "Registered {} ({}, component {}); create its add-ons with `renga addons:create {} -a APP`",
            field(&service, &["name"]),
            field(&service, &["interface"]),
            &field(&service, &["provider", "digest"])
                .chars()
                .take(12)
                .collect::<String>(),
            field(&service, &["name"]),
        );
        Ok(())
    }
}

/// Remove a provider's add-on service (the admin's); refused while any
/// add-on of it exists.
///
/// Example:
///   renga addons:services:remove kv-ttl
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ServicesRemoveCommand {
    name: String,
}

impl ServicesRemoveCommand {
    pub fn run(self) -> anyhow::Result<()> {
        Api::connect()?.delete(&format!("/addon-services/{}", self.name))?;
        println!("Removed {}", self.name);
        Ok(())
    }
}

/// List the add-on services: renga's own, and those provider components
/// serve.
///
/// Example:
///   renga addons:services
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ServicesCommand {
    #[arg(long)]
    json: bool,
}

impl ServicesCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let services = Api::connect()?.get("/addon-services")?;
        if self.json {
            print_json(&services);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = services
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|s| {
                vec![
                    field(s, &["name"]),
                    field(s, &["interface"]),
                    field(s, &["description"]),
                ]
            })
            .collect();
        print_table(&["service", "interface", "description"], &rows);
        Ok(())
    }
}

/// List a service's plans.
///
/// Example:
///   renga addons:plans renga-sql
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct PlansCommand {
    service: String,
    #[arg(long)]
    json: bool,
}

impl PlansCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let plans = Api::connect()?.get(&format!("/addon-services/{}/plans", self.service))?;
        if self.json {
            print_json(&plans);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = plans
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|p| {
                vec![
                    field(p, &["name"]),
                    field(p, &["description"]),
                    if p["default"].as_bool() == Some(true) {
                        "default".into()
                    } else {
                        String::new()
                    },
                ]
            })
            .collect();
        print_table(&["plan", "holds", ""], &rows);
        Ok(())
    }
}
