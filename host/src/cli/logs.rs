//! `logs`: an app's log, or a live tail of it.

use serde_json::json;

use super::client::{Api, AppArg, field};

/// Show an app's recent log lines, or follow them live with --tail.
///
/// Example:
///   renga logs --tail -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct LogsCommand {
    #[command(flatten)]
    app: AppArg,
    /// How many recent lines to show (at most 1500).
    #[arg(short = 'n', long, default_value_t = 100)]
    num: usize,
    /// Keep printing new lines as they come.
    #[arg(short = 't', long)]
    tail: bool,
}

impl LogsCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let api = Api::connect()?;
        let session = api.post(
            &format!("/apps/{name}/log-sessions"),
            &json!({ "lines": self.num, "tail": self.tail }),
        )?;
        let url = field(&session, &["logplex_url"]);
        api.stream_lines(&url, |line| println!("{line}"))
    }
}
