//! `logs`: an app's log, or a live tail of it; `drains`, `drains:add`,
//! `drains:remove`: where else it goes.

use serde_json::json;

use super::client::{Api, AppArg, field, print_json, print_table};

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

/// List where an app's log is sent besides renga.
///
/// Example:
///   renga drains -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct DrainsCommand {
    #[command(flatten)]
    app: AppArg,
    #[arg(long)]
    json: bool,
}

impl DrainsCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let drains = Api::connect()?.get(&format!("/apps/{name}/log-drains"))?;
        if self.json {
            print_json(&drains);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = drains
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| vec![field(d, &["url"]), field(d, &["token"])])
            .collect();
        print_table(&["url", "token"], &rows);
        Ok(())
    }
}

/// Send an app's log to a receiver as well: `https://` or `http://` (Heroku's
/// logplex batches, as Papertrail, Logtail and Vector take them),
/// `syslog+tls://HOST:PORT` or `syslog://HOST:PORT` (RFC 5424 over TCP).
/// Each message's hostname is the drain's token.
///
/// Example:
///   renga drains:add syslog+tls://logs.example.com:6514 -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct DrainsAddCommand {
    url: String,
    #[command(flatten)]
    app: AppArg,
}

impl DrainsAddCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let drain = Api::connect()?.post(
            &format!("/apps/{name}/log-drains"),
            &json!({ "url": self.url }),
        )?;
        println!(
            "Added drain {} ({}) to {name}",
            field(&drain, &["url"]),
            field(&drain, &["token"])
        );
        Ok(())
    }
}

/// Stop sending an app's log to a drain, named by its URL or token.
///
/// Example:
///   renga drains:remove syslog+tls://logs.example.com:6514 -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct DrainsRemoveCommand {
    /// The drain's URL or token.
    drain: String,
    #[command(flatten)]
    app: AppArg,
}

impl DrainsRemoveCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let which: String = url::form_urlencoded::byte_serialize(self.drain.as_bytes()).collect();
        let drain = Api::connect()?.delete(&format!("/apps/{name}/log-drains/{which}"))?;
        println!("Removed drain {} from {name}", field(&drain, &["url"]));
        Ok(())
    }
}
