//! `apps:rename`, `domains`, `domains:add`, `domains:remove`, `access`,
//! `access:add`, `access:remove`: what an app shares with the world and with
//! other users.

use serde_json::json;

use super::client::{Api, AppArg, field, print_json, print_table};

/// Rename an app: its URL, git remote and route move at once (update other
/// checkouts' `renga` remotes with `renga git:remote`).
///
/// Example:
///   renga apps:rename hola -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct RenameCommand {
    /// The new name.
    name: String,
    #[command(flatten)]
    app: AppArg,
}

impl RenameCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let old = self.app.resolve()?;
        let app = Api::connect()?.patch(&format!("/apps/{old}"), &json!({ "name": self.name }))?;
        println!("Renamed {old} to {}", field(&app, &["name"]));
        println!(
            "{} | {}",
            field(&app, &["web_url"]),
            field(&app, &["git_url"])
        );
        Ok(())
    }
}

/// List the hostnames an app answers for.
///
/// Example:
///   renga domains -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct DomainsCommand {
    #[command(flatten)]
    app: AppArg,
    #[arg(long)]
    json: bool,
}

impl DomainsCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let domains = Api::connect()?.get(&format!("/apps/{name}/domains"))?;
        if self.json {
            print_json(&domains);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = domains
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| vec![field(d, &["hostname"]), field(d, &["kind"])])
            .collect();
        print_table(&["hostname", "kind"], &rows);
        Ok(())
    }
}

/// Make the router send requests for a hostname to an app (point the
/// hostname's DNS at this server).
///
/// Example:
///   renga domains:add www.example.com -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct DomainsAddCommand {
    hostname: String,
    #[command(flatten)]
    app: AppArg,
}

impl DomainsAddCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let domain = Api::connect()?.post(
            &format!("/apps/{name}/domains"),
            &json!({ "hostname": self.hostname }),
        )?;
        println!("Added {} to {name}", field(&domain, &["hostname"]));
        Ok(())
    }
}

/// Stop answering for a hostname.
///
/// Example:
///   renga domains:remove www.example.com -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct DomainsRemoveCommand {
    hostname: String,
    #[command(flatten)]
    app: AppArg,
}

impl DomainsRemoveCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        Api::connect()?.delete(&format!("/apps/{name}/domains/{}", self.hostname))?;
        println!("Removed {} from {name}", self.hostname);
        Ok(())
    }
}

/// List who may work on an app: its owner and collaborators.
///
/// Example:
///   renga access -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct AccessCommand {
    #[command(flatten)]
    app: AppArg,
    #[arg(long)]
    json: bool,
}

impl AccessCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let people = Api::connect()?.get(&format!("/apps/{name}/collaborators"))?;
        if self.json {
            print_json(&people);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = people
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| vec![field(c, &["user", "email"]), field(c, &["role"])])
            .collect();
        print_table(&["user", "role"], &rows);
        Ok(())
    }
}

/// Give another user access to an app (owner only): they may do
/// everything with it except rename it, destroy it or share it.
///
/// Example:
///   renga access:add ann@example.com -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct AccessAddCommand {
    /// The user's name, as `renga users:create` made it.
    user: String,
    #[command(flatten)]
    app: AppArg,
}

impl AccessAddCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        Api::connect()?.post(
            &format!("/apps/{name}/collaborators"),
            &json!({ "user": self.user }),
        )?;
        println!("{} may now work on {name}", self.user);
        Ok(())
    }
}

/// Take a collaborator's access to an app away (owner only).
///
/// Example:
///   renga access:remove ann@example.com -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct AccessRemoveCommand {
    user: String,
    #[command(flatten)]
    app: AppArg,
}

impl AccessRemoveCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        Api::connect()?.delete(&format!("/apps/{name}/collaborators/{}", self.user))?;
        println!("{} no longer has access to {name}", self.user);
        Ok(())
    }
}
