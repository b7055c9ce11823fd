//! `releases`, `releases:info`, `releases:rollback`, `deploy`.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::client::{Api, AppArg, field, print_json, print_table};
use crate::procfile::{Command, Procfile};

/// List an app's releases, newest first.
///
/// Example:
///   renga releases -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ReleasesCommand {
    #[command(flatten)]
    app: AppArg,
    /// How many to show.
    #[arg(short = 'n', long, default_value_t = 15)]
    num: usize,
    #[arg(long)]
    json: bool,
}

impl ReleasesCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let releases = Api::connect()?.get(&format!("/apps/{name}/releases"))?;
        if self.json {
            print_json(&releases);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = releases
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .rev()
            .take(self.num)
            .map(|r| {
                let current = if r["current"].as_bool() == Some(true) {
                    "*"
                } else {
                    ""
                };
                vec![
                    format!("v{}{current}", field(r, &["version"])),
                    field(r, &["description"]),
                    field(r, &["user", "email"]),
                    field(r, &["created_at"]),
                ]
            })
            .collect();
        println!("=== {name} Releases");
        print_table(&["version", "description", "by", "created"], &rows);
        Ok(())
    }
}

/// Show one release (the current one by default).
///
/// Example:
///   renga releases:info v3 -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct InfoCommand {
    /// vN; the current release when omitted.
    release: Option<String>,
    #[command(flatten)]
    app: AppArg,
    #[arg(long)]
    json: bool,
}

impl InfoCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let api = Api::connect()?;
        let which = match self.release {
            Some(release) => release,
            None => super::config::current_version(&api, &name)?,
        };
        let release = api.get(&format!("/apps/{name}/releases/{which}"))?;
        if self.json {
            print_json(&release);
            return Ok(());
        }
        println!("=== Release v{}", field(&release, &["version"]));
        for (label, value) in [
            ("By", field(&release, &["user", "email"])),
            ("Change", field(&release, &["description"])),
            ("When", field(&release, &["created_at"])),
            ("Slug", field(&release, &["slug", "id"])),
            ("Current", field(&release, &["current"])),
        ] {
            println!("{:<9} {value}", format!("{label}:"));
        }
        Ok(())
    }
}

/// Roll back: a new release with the slug and config of an older one (the
/// one before the current release by default).
///
/// Example:
///   renga releases:rollback v3 -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct RollbackCommand {
    /// vN; the release before the current one when omitted.
    release: Option<String>,
    #[command(flatten)]
    app: AppArg,
}

impl RollbackCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let api = Api::connect()?;
        let target = match self.release {
            Some(release) => release,
            None => {
                let current = super::config::current_version(&api, &name)?;
                let n: u32 = current.trim_start_matches('v').parse().unwrap_or(0);
                if n < 2 {
                    bail!("{name} has no earlier release to roll back to");
                }
                format!("v{}", n - 1)
            }
        };
        let release = api.post(
            &format!("/apps/{name}/releases"),
            &json!({ "release": target }),
        )?;
        println!(
            "Rolled back {name} to {target}: now serving v{}",
            field(&release, &["version"])
        );
        Ok(())
    }
}

/// Deploy an app's source folder (built on the server, as `git push` is), or
/// a prebuilt WebAssembly component.
///
/// With DIR (default: the current folder), the folder is uploaded as a
/// source tarball (what `.gitignore` excludes, `.git/`, `target/`,
/// `node_modules/` and `.env` stay behind) and built by the app's buildpack;
/// the build's output streams here, and a failed build keeps the current
/// release serving.
///
/// With --component, the component and a Procfile (`web: NAME.wasm` unless
/// --procfile names one) become a slug directly; the platform compiles and
/// checks the component before it makes the release.
///
/// Example:
///   renga deploy examples/hello-python -a hello
///   renga deploy --component target/wasm32-wasip2/release/hello.wasm -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct DeployCommand {
    /// The app's source folder.
    #[arg(conflicts_with_all = ["component", "procfile"])]
    dir: Option<PathBuf>,
    /// A prebuilt component to deploy as is.
    #[arg(long)]
    component: Option<PathBuf>,
    /// A Procfile to ship with --component.
    #[arg(long, requires = "component")]
    procfile: Option<PathBuf>,
    #[command(flatten)]
    app: AppArg,
}

impl DeployCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let Some(component) = &self.component else {
            let dir = self.dir.clone().unwrap_or_else(|| PathBuf::from("."));
            return super::builds::deploy_source(&dir, &name);
        };
        let wasm = std::fs::read(component)
            .with_context(|| format!("cannot read {}", component.display()))?;
        let file_name = component
            .file_name()
            .and_then(|n| n.to_str())
            .context("the component's file name is not UTF-8")?
            .to_string();
        let procfile_text = match &self.procfile {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
            None => format!("web: {file_name}\n"),
        };
        let procfile = Procfile::parse(&procfile_text)?;
        let mut process_types = serde_json::Map::new();
        for (kind, command) in procfile.iter() {
            if let Command::Component { path, .. } = command
                && path != &file_name
            {
                bail!(
                    "the Procfile's {kind} process names {path}, but the component is {file_name}"
                );
            }
            process_types.insert(kind.to_string(), Value::String(command.to_string()));
        }
        let archive = crate::slug::pack(&[
            (file_name.as_str(), &wasm),
            ("Procfile", procfile_text.as_bytes()),
        ])?;
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&wasm));

        let api = Api::connect()?;
        println!(
            "-----> Uploading {file_name} ({} KB) to {name}",
            wasm.len().div_ceil(1024)
        );
        let slug = api.post(
            &format!("/apps/{name}/slugs"),
            &json!({ "process_types": process_types, "commit": &digest[..7] }),
        )?;
        let blob_url = field(&slug, &["blob", "url"]);
        api.put_bytes(&blob_url, &archive)?;
        println!("-----> Compiling and releasing");
        let release = api.post(
            &format!("/apps/{name}/releases"),
            &json!({ "slug": field(&slug, &["id"]) }),
        )?;
        let app = api.get(&format!("/apps/{name}"))?;
        println!(
            "-----> Released v{} | {}",
            field(&release, &["version"]),
            field(&app, &["web_url"])
        );
        Ok(())
    }
}
