//! `labs`, `labs:enable`, `labs:disable`: an app's features
//! (`log-runtime-metrics`).

use serde_json::json;

use super::client::{Api, AppArg, field, print_json, print_table};

/// List an app's features and whether each is on.
///
/// Example:
///   renga labs -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct LabsCommand {
    #[command(flatten)]
    app: AppArg,
    #[arg(long)]
    json: bool,
}

impl LabsCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let features = Api::connect()?.get(&format!("/apps/{name}/features"))?;
        if self.json {
            print_json(&features);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = features
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                let on = if f["enabled"] == true { "[+]" } else { "[ ]" };
                vec![
                    format!("{on} {}", field(f, &["name"])),
                    field(f, &["description"]),
                ]
            })
            .collect();
        print_table(&["feature", "description"], &rows);
        Ok(())
    }
}

/// Turn an app feature on: `log-runtime-metrics` writes each dyno's memory
/// and CPU load to the app's log every 20 s.
///
/// Example:
///   renga labs:enable log-runtime-metrics -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct LabsEnableCommand {
    feature: String,
    #[command(flatten)]
    app: AppArg,
}

impl LabsEnableCommand {
    pub fn run(self) -> anyhow::Result<()> {
        set(&self.app, &self.feature, true)
    }
}

/// Turn an app feature off.
///
/// Example:
///   renga labs:disable log-runtime-metrics -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct LabsDisableCommand {
    feature: String,
    #[command(flatten)]
    app: AppArg,
}

impl LabsDisableCommand {
    pub fn run(self) -> anyhow::Result<()> {
        set(&self.app, &self.feature, false)
    }
}

fn set(app: &AppArg, feature: &str, on: bool) -> anyhow::Result<()> {
    let name = app.resolve()?;
    Api::connect()?.patch(
        &format!("/apps/{name}/features/{feature}"),
        &json!({ "enabled": on }),
    )?;
    let state = if on { "Enabled" } else { "Disabled" };
    println!("{state} {feature} for {name}");
    Ok(())
}
