//! `hosts`: the renga servers sharing the platform.

use super::client::{Api, field, print_json, print_table};

/// List the renga servers sharing this platform (one, or a cluster's), with
/// their load, from their heartbeats: a host silent for 6 s is `lost`.
/// The admin's to run.
///
/// Example:
///   renga hosts
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct HostsCommand {
    #[arg(long)]
    json: bool,
}

impl HostsCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let hosts = Api::connect()?.get("/hosts")?;
        if self.json {
            print_json(&hosts);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = hosts
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| {
                let count = |name: &str| h[name].as_u64().unwrap_or(0);
                vec![
                    field(h, &["name"]),
                    field(h, &["state"]),
                    count("apps").to_string(),
                    format!("{}/{}", count("instances"), count("max_instances")),
                    crate::units::ByteSize(count("rss_bytes")).to_string(),
                    format!("{:.1}s ago", count("seen_ms_ago") as f64 / 1000.0),
                    field(h, &["api_url"]),
                ]
            })
            .collect();
        print_table(
            &[
                "name",
                "state",
                "apps",
                "instances",
                "memory",
                "seen",
                "api",
            ],
            &rows,
        );
        Ok(())
    }
}
