//! `ps`, `ps:scale`, `ps:restart`.

use anyhow::Context as _;
use serde_json::{Value, json};

use super::client::{Api, AppArg, field, print_json};

/// List an app's dynos.
///
/// Example:
///   renga ps -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct PsCommand {
    #[command(flatten)]
    app: AppArg,
    #[arg(long)]
    json: bool,
}

impl PsCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let dynos = Api::connect()?.get(&format!("/apps/{name}/dynos"))?;
        if self.json {
            print_json(&dynos);
            return Ok(());
        }
        let list = dynos.as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            println!("No dynos on {name}");
            return Ok(());
        }
        let mut last_type = String::new();
        for dyno in &list {
            let kind = field(dyno, &["type"]);
            if kind != last_type {
                let count = list.iter().filter(|d| field(d, &["type"]) == kind).count();
                println!(
                    "=== {kind} ({}): {} ({count})",
                    field(dyno, &["size"]),
                    field(dyno, &["command"])
                );
                last_type = kind;
            }
            println!(
                "{}: {} {} (v{})",
                field(dyno, &["name"]),
                field(dyno, &["state"]),
                field(dyno, &["updated_at"]),
                field(dyno, &["release", "version"])
            );
        }
        Ok(())
    }
}

/// Scale process types: `web=2`.
///
/// Example:
///   renga ps:scale web=2 -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ScaleCommand {
    /// TYPE=QUANTITY pairs.
    #[arg(required = true)]
    changes: Vec<String>,
    #[command(flatten)]
    app: AppArg,
}

impl ScaleCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let mut updates = Vec::new();
        for change in &self.changes {
            let (kind, quantity) = change
                .split_once('=')
                .with_context(|| format!("{change:?} is not TYPE=QUANTITY (for example web=2)"))?;
            let quantity: u32 = quantity
                .parse()
                .with_context(|| format!("{quantity:?} is not a number of dynos"))?;
            updates.push(json!({ "type": kind, "quantity": quantity }));
        }
        let formation = Api::connect()?.patch(
            &format!("/apps/{name}/formation"),
            &json!({ "updates": updates }),
        )?;
        let summary: Vec<String> = formation
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|f| {
                format!(
                    "{}={}:{}",
                    field(f, &["type"]),
                    field(f, &["quantity"]),
                    field(f, &["size"])
                )
            })
            .collect();
        println!("Scaled {name} to {}", summary.join(", "));
        Ok(())
    }
}

/// Restart all dynos, those of one type, or one dyno.
///
/// Example:
///   renga ps:restart web -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct RestartCommand {
    /// A process type (`web`) or a dyno (`web.1`); all dynos when omitted.
    which: Option<String>,
    #[command(flatten)]
    app: AppArg,
}

impl RestartCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let path = match &self.which {
            Some(which) => format!("/apps/{name}/dynos/{which}"),
            None => format!("/apps/{name}/dynos"),
        };
        let _: Value = Api::connect()?.delete(&path)?;
        println!(
            "Restarted {} on {name}",
            self.which.as_deref().unwrap_or("all dynos")
        );
        Ok(())
    }
}
