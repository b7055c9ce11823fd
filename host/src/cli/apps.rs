//! `apps`, `apps:create`, `apps:info`, `apps:destroy`, `maintenance:on|off`.

use anyhow::bail;
use serde_json::json;

use super::client::{Api, AppArg, field, print_json, print_table};

/// List your apps.
///
/// Example:
///   renga apps
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct AppsCommand {
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
}

impl AppsCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let apps = Api::connect()?.get("/apps")?;
        if self.json {
            print_json(&apps);
            return Ok(());
        }
        let list = apps.as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            println!("You have no apps. Create one with `renga apps:create NAME`.");
            return Ok(());
        }
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|a| {
                vec![
                    field(a, &["name"]),
                    field(a, &["web_url"]),
                    field(a, &["released_at"]),
                ]
            })
            .collect();
        print_table(&["name", "web url", "released"], &rows);
        Ok(())
    }
}

/// Create an app (with a random readable name if NAME is omitted).
///
/// Example:
///   renga apps:create hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct CreateCommand {
    /// 3 to 30 lowercase letters, digits and dashes, starting with a letter.
    name: Option<String>,
    #[arg(long)]
    json: bool,
}

impl CreateCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let body = match &self.name {
            Some(name) => json!({ "name": name }),
            None => json!({}),
        };
        let app = Api::connect()?.post("/apps", &body)?;
        if self.json {
            print_json(&app);
        } else {
            println!("Created {}", field(&app, &["name"]));
            println!(
                "{} | {}",
                field(&app, &["web_url"]),
                field(&app, &["git_url"])
            );
        }
        Ok(())
    }
}

/// Show an app's details.
///
/// Example:
///   renga apps:info -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct InfoCommand {
    #[command(flatten)]
    app: AppArg,
    #[arg(long)]
    json: bool,
}

impl InfoCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let api = Api::connect()?;
        let name = self.app.resolve()?;
        let app = api.get(&format!("/apps/{name}"))?;
        if self.json {
            print_json(&app);
            return Ok(());
        }
        let release = api.get(&format!("/apps/{name}/releases"))?;
        let current = release
            .as_array()
            .and_then(|r| r.last())
            .map(|r| format!("v{}", field(r, &["version"])))
            .unwrap_or_default();
        println!("=== {}", field(&app, &["name"]));
        for (label, value) in [
            ("Owner", field(&app, &["owner", "email"])),
            ("Web URL", field(&app, &["web_url"])),
            ("Git URL", field(&app, &["git_url"])),
            ("Release", current),
            ("Released", field(&app, &["released_at"])),
            ("Maintenance", field(&app, &["maintenance"])),
            ("Stack", field(&app, &["stack", "name"])),
        ] {
            println!("{:<12} {value}", format!("{label}:"));
        }
        Ok(())
    }
}

/// Destroy an app and its whole history, for good.
///
/// Example:
///   renga apps:destroy -a hello --confirm hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct DestroyCommand {
    #[command(flatten)]
    app: AppArg,
    /// The app's name again, to confirm.
    #[arg(long)]
    confirm: Option<String>,
}

impl DestroyCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        if self.confirm.as_deref() != Some(name.as_str()) {
            bail!("this destroys {name} and all of its releases: run again with --confirm {name}");
        }
        Api::connect()?.delete(&format!("/apps/{name}"))?;
        println!("Destroyed {name}");
        Ok(())
    }
}

/// Put an app in maintenance mode (every request gets 503, H80) or take it out.
///
/// Example:
///   renga maintenance:on -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct MaintenanceCommand {
    #[command(flatten)]
    app: AppArg,
}

impl MaintenanceCommand {
    pub fn run(self, on: bool) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        Api::connect()?.patch(&format!("/apps/{name}"), &json!({ "maintenance": on }))?;
        println!(
            "Maintenance mode {} for {name}",
            if on { "enabled" } else { "disabled" }
        );
        Ok(())
    }
}
