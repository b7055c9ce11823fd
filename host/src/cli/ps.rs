//! `ps`, `ps:scale`, `ps:type`, `ps:restart`, `ps:stop`, `ps:idle`.

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
                last_type = kind.clone();
            }
            let on = dyno["host"]
                .as_str()
                .map(|host| format!(" on {host}"))
                .unwrap_or_default();
            println!(
                "{}: {} {} (v{}){on}",
                field(dyno, &["name"]),
                field(dyno, &["state"]),
                field(dyno, &["updated_at"]),
                field(dyno, &["release", "version"])
            );
            if kind == "run" {
                // One-offs run their own command line.
                println!("    {}", field(dyno, &["command"]));
            }
        }
        Ok(())
    }
}

/// Scale process types: how many dynos, and optionally their size.
///
/// Example:
///   renga ps:scale web=2 worker=1 -a hello
///   renga ps:scale web=3:standard-2x -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ScaleCommand {
    /// TYPE=QUANTITY or TYPE=QUANTITY:SIZE pairs.
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
            let (kind, value) = change.split_once('=').with_context(|| {
                format!("{change:?} is not TYPE=QUANTITY (for example web=2 or web=2:standard-2x)")
            })?;
            let (quantity, size) = match value.split_once(':') {
                Some((quantity, size)) => (quantity, Some(size)),
                None => (value, None),
            };
            let quantity: u32 = quantity
                .parse()
                .with_context(|| format!("{quantity:?} is not a number of dynos"))?;
            let mut update = json!({ "type": kind, "quantity": quantity });
            if let Some(size) = size {
                update["size"] = json!(size);
            }
            updates.push(update);
        }
        let formation = Api::connect()?.patch(
            &format!("/apps/{name}/formation"),
            &json!({ "updates": updates }),
        )?;
        println!("Scaled {name} to {}", summary(&formation));
        Ok(())
    }
}

/// Change the size of process types, and whether their instances are reused.
///
/// Sizes: eco, basic, standard-1x, standard-2x, performance-m, performance-l
/// (see the README for what each gives). By default every request gets a
/// fresh instance; `--reuse N` keeps an instance for up to N requests, which
/// pays off for components that carry an interpreter (Python, JavaScript).
/// A WASI 0.3 component's kept instances serve several requests at once.
/// `--reuse 0` goes back to a fresh instance per request.
///
/// Example:
///   renga ps:type web=performance-m -a hello
///   renga ps:type web=standard-1x --reuse 100 -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct TypeCommand {
    /// TYPE=SIZE pairs.
    #[arg(required = true)]
    changes: Vec<String>,
    /// Requests one instance may serve before it is replaced (0: a fresh
    /// instance for each request).
    #[arg(long)]
    reuse: Option<u32>,
    #[command(flatten)]
    app: AppArg,
}

impl TypeCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let mut updates = Vec::new();
        for change in &self.changes {
            let (kind, size) = change.split_once('=').with_context(|| {
                format!("{change:?} is not TYPE=SIZE (for example web=standard-2x)")
            })?;
            let mut update = json!({ "type": kind, "size": size });
            if let Some(reuse) = self.reuse {
                update["reuse"] = json!(reuse);
            }
            updates.push(update);
        }
        let formation = Api::connect()?.patch(
            &format!("/apps/{name}/formation"),
            &json!({ "updates": updates }),
        )?;
        println!("Changed {name} to {}", summary(&formation));
        Ok(())
    }
}

/// `web=2:standard-1x, worker=1:eco (reuse 100)`.
fn summary(formation: &Value) -> String {
    formation
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|f| {
            let reuse = match f["reuse"].as_u64() {
                Some(n) if n > 0 => format!(" (instances reused for up to {n} requests)"),
                _ => String::new(),
            };
            format!(
                "{}={}:{}{reuse}",
                field(f, &["type"]),
                field(f, &["quantity"]),
                field(f, &["size"])
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Show or set how long an app may go without a request before its web
/// dynos are unloaded (scale to zero). The next request wakes them from
/// precompiled code, in milliseconds.
///
/// Example:
///   renga ps:idle -a hello            (show)
///   renga ps:idle 10m -a hello        (unload after 10 minutes idle)
///   renga ps:idle never -a hello      (keep it loaded)
///   renga ps:idle default -a hello    (follow the server's --idle-after)
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct IdleCommand {
    /// A duration (at least 1s), `never` or `default`.
    period: Option<String>,
    #[command(flatten)]
    app: AppArg,
}

impl IdleCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let api = Api::connect()?;
        let app = match self.period.as_deref() {
            None => api.get(&format!("/apps/{name}"))?,
            Some(period) => {
                let value = match period {
                    "never" => json!(0),
                    "default" => json!("default"),
                    other => {
                        let seconds = super::server::parse_idle_after(other)
                            .map_err(anyhow::Error::msg)?
                            .0
                            .map_or(0, |d| d.as_secs());
                        json!(seconds)
                    }
                };
                api.patch(&format!("/apps/{name}"), &json!({ "idle_after": value }))?
            }
        };
        match app["idle_after"].as_u64() {
            Some(seconds) => println!(
                "{name} unloads its web dynos after {} without a request",
                crate::units::HumanDuration(std::time::Duration::from_secs(seconds))
            ),
            None => println!("{name} keeps its web dynos loaded (it never idles)"),
        }
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

/// Stop a dyno: a one-off dyno (`run.3`) ends at once; a dyno of the
/// formation (`web.1`, `worker.2`) starts again, because the formation says
/// it runs (scale it to stop it for good).
///
/// Examples:
///   renga ps:stop run.3 -a hello
///   renga ps:stop run -a hello        (every one-off dyno)
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct StopCommand {
    /// A dyno (`run.3`), or `run` for every one-off dyno.
    dyno: String,
    #[command(flatten)]
    app: AppArg,
}

impl StopCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let _: Value = Api::connect()?.post(
            &format!("/apps/{name}/dynos/{}/actions/stop", self.dyno),
            &json!({}),
        )?;
        println!("Stopped {} on {name}", self.dyno);
        Ok(())
    }
}
