//! `config`, `config:get`, `config:set`, `config:unset`.

use anyhow::{Context as _, bail};
use serde_json::{Map, Value};

use super::client::{Api, AppArg, print_json};

/// Show an app's config vars.
///
/// Example:
///   renga config -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ConfigCommand {
    #[command(flatten)]
    app: AppArg,
    #[arg(long)]
    json: bool,
    /// Print KEY='VALUE' lines that a shell can read.
    #[arg(long)]
    shell: bool,
}

impl ConfigCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let vars = Api::connect()?.get(&format!("/apps/{name}/config-vars"))?;
        if self.json {
            print_json(&vars);
            return Ok(());
        }
        let map = vars.as_object().cloned().unwrap_or_default();
        if !self.shell {
            println!("=== {name} Config Vars");
        }
        let width = map.keys().map(String::len).max().unwrap_or(0) + 1;
        for (key, value) in map {
            let value = value.as_str().unwrap_or_default().to_string();
            if self.shell {
                println!("{key}='{}'", value.replace('\'', "'\\''"));
            } else {
                println!("{:<width$} {value}", format!("{key}:"));
            }
        }
        Ok(())
    }
}

/// Print one config var's value.
///
/// Example:
///   renga config:get GREETING -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct GetCommand {
    key: String,
    #[command(flatten)]
    app: AppArg,
}

impl GetCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let vars = Api::connect()?.get(&format!("/apps/{name}/config-vars"))?;
        match vars.get(&self.key).and_then(Value::as_str) {
            Some(value) => {
                println!("{value}");
                Ok(())
            }
            None => bail!("{name} has no config var {}", self.key),
        }
    }
}

/// Set config vars; the app gets a new release with them.
///
/// Example:
///   renga config:set GREETING=Howdy COLOR=blue -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct SetCommand {
    /// KEY=VALUE pairs.
    #[arg(required = true)]
    pairs: Vec<String>,
    #[command(flatten)]
    app: AppArg,
}

impl SetCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let mut changes = Map::new();
        for pair in &self.pairs {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("{pair:?} is not KEY=VALUE"))?;
            changes.insert(key.to_string(), Value::String(value.to_string()));
        }
        let keys: Vec<String> = changes.keys().cloned().collect();
        let api = Api::connect()?;
        api.patch(
            &format!("/apps/{name}/config-vars"),
            &Value::Object(changes),
        )?;
        let version = current_version(&api, &name)?;
        println!("Set {} on {name}; now serving {version}", keys.join(", "));
        Ok(())
    }
}

/// Remove config vars; the app gets a new release without them.
///
/// Example:
///   renga config:unset GREETING -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct UnsetCommand {
    #[arg(required = true)]
    keys: Vec<String>,
    #[command(flatten)]
    app: AppArg,
}

impl UnsetCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let changes: Map<String, Value> =
            self.keys.iter().map(|k| (k.clone(), Value::Null)).collect();
        let api = Api::connect()?;
        api.patch(
            &format!("/apps/{name}/config-vars"),
            &Value::Object(changes),
        )?;
        let version = current_version(&api, &name)?;
        println!(
            "Removed {} from {name}; now serving {version}",
            self.keys.join(", ")
        );
        Ok(())
    }
}

pub fn current_version(api: &Api, app: &str) -> anyhow::Result<String> {
    let releases = api.get(&format!("/apps/{app}/releases"))?;
    Ok(releases
        .as_array()
        .and_then(|r| r.last())
        .and_then(|r| r["version"].as_u64())
        .map(|v| format!("v{v}"))
        .unwrap_or_default())
}
