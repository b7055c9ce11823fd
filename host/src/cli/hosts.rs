//! `hosts`: the renga servers sharing the platform.

use super::client::{Api, field, print_json, print_table};

/// The dynos a host runs, as its heartbeat lists them.
fn dynos_of(host: &serde_json::Value) -> Vec<String> {
    host["dynos"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().map(str::to_string))
        .collect()
}

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
                    h["dynos"].as_array().map_or(0, Vec::len).to_string(),
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
                "dynos",
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

/// Drain a host: its dynos are placed on the other hosts (workers stop
/// there first, then start elsewhere; web dynos start elsewhere and its
/// router forwards), so that it can be stopped without a request lost.
/// Waits until the host runs no dyno. The admin's to run.
///
/// Example:
///   renga hosts:drain host-b
///   renga hosts:drain host-b --undo    (back into service)
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct DrainCommand {
    /// The host, as `renga hosts` names it.
    name: String,
    /// Take the host back into service instead.
    #[arg(long)]
    undo: bool,
    /// How long to wait for its dynos to move, in seconds.
    #[arg(long, default_value_t = 60)]
    wait: u64,
}

impl DrainCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let api = Api::connect()?;
        let path = format!("/hosts/{}/actions/drain", self.name);
        if self.undo {
            api.delete(&path)?;
            println!(
                "{} is back in service: dynos are placed on it again",
                self.name
            );
            return Ok(());
        }
        let before = api.get("/hosts")?;
        let moving = before
            .as_array()
            .into_iter()
            .flatten()
            .find(|h| h["name"] == self.name.as_str())
            .map(dynos_of)
            .unwrap_or_default();
        api.post(&path, &serde_json::json!({}))?;
        println!("Draining {} ({} dynos)...", self.name, moving.len());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(self.wait);
        loop {
            let hosts = api.get("/hosts")?;
            let hosts = hosts.as_array().cloned().unwrap_or_default();
            let host = hosts
                .iter()
                .find(|h| h["name"] == self.name.as_str())
                .cloned()
                .unwrap_or_default();
            let state = field(&host, &["state"]);
            let left = dynos_of(&host);
            // Each dyno it ran, now run by a host that is up.
            let elsewhere: Vec<String> = hosts
                .iter()
                .filter(|h| h["name"] != self.name.as_str() && h["state"] == "up")
                .flat_map(dynos_of)
                .collect();
            let unplaced: Vec<&String> = moving.iter().filter(|d| !elsewhere.contains(d)).collect();
            if state == "lost" {
                println!(
                    "{} stopped beating; its dynos are placed on the others",
                    self.name
                );
                return Ok(());
            }
            if state == "draining" && left.is_empty() && unplaced.is_empty() {
                println!(
                    "{} runs no dyno and its {} dynos run elsewhere: it can be stopped",
                    self.name,
                    moving.len()
                );
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                anyhow::bail!(
                    "after {}s, {} still runs [{}] and [{}] run nowhere else",
                    self.wait,
                    self.name,
                    left.join(", "),
                    unplaced
                        .iter()
                        .map(|d| d.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}
