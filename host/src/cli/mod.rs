//! The `renga` command line: parsing only, then one `run` per command.
//!
//! Commands keep Heroku's `topic:command` names. Each is a struct with a
//! `run` method; `main` prints the error chain and sets the exit code.
//! Nothing here does work itself.

mod account;
mod addons;
mod apps;
mod builds;
pub mod client;
mod config;
mod dev;
mod hosts;
mod labs;
mod logs;
mod pg;
mod ps;
mod releases;
mod run;
mod server;
mod sharing;

pub use dev::DevCommand;

use std::future::Future;

use anyhow::Context as _;

use crate::router::RouterConfig;
use crate::runtime::RuntimeConfig;
use crate::units::{ByteSize, HumanDuration};

/// How apps are run and served; shared by `renga dev` and `renga server`.
#[derive(clap::Args, Debug)]
pub struct ServingArgs {
    /// Time a request may take before it fails with H12 [default: 30s on
    /// `renga dev`; on `renga server`, each dyno size's own].
    #[arg(long)]
    timeout: Option<HumanDuration>,

    /// Linear memory each instance may use, for example 64MiB or 1G
    /// [default: 512MiB on `renga dev`; on `renga server`, each dyno size's
    /// own, and this caps every size].
    #[arg(long)]
    memory: Option<ByteSize>,

    /// Largest request body accepted (413 past it).
    #[arg(long, default_value = "100MiB")]
    max_body: ByteSize,

    /// Time a client has to send a whole request head.
    #[arg(long, default_value = "10s")]
    header_timeout: HumanDuration,

    /// Instance allocator: `pooling` (reserved once, fastest; falls back to
    /// on-demand when the machine refuses the reservation) or `on-demand`.
    #[arg(long, default_value = "pooling", value_parser = ["pooling", "on-demand"])]
    instance_allocator: String,
}

impl ServingArgs {
    /// The runtime, sized so that no instance can exceed `max_memory`.
    pub fn runtime(&self, artefact_dir: std::path::PathBuf, max_memory: u64) -> RuntimeConfig {
        let mut config = RuntimeConfig::new(artefact_dir);
        config.max_memory = max_memory;
        config.pooling = self.instance_allocator == "pooling";
        config
    }

    pub fn router(&self) -> RouterConfig {
        RouterConfig {
            max_body_bytes: self.max_body.0,
            header_timeout: self.header_timeout.0,
            ..RouterConfig::default()
        }
    }

    pub fn timeout(&self) -> Option<std::time::Duration> {
        self.timeout.map(|t| t.0)
    }

    pub fn memory(&self) -> Option<u64> {
        self.memory.map(|m| m.0)
    }
}
pub use server::{ServerCommand, parse_idle_after};

/// renga: a Heroku-style platform for WebAssembly apps.
///
/// Push source, get a running app: renga builds it into a WASI component,
/// runs it on wasmtime with a fresh instance per request, and routes HTTP to it.
///
/// The client commands talk to `renga server` at $RENGA_API_URL (default
/// http://127.0.0.1:7070) with the token from `renga login` or $RENGA_API_KEY.
#[derive(clap::Parser, Debug)]
#[command(name = "renga", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Commands,
}

#[derive(clap::Subcommand, Debug)]
pub enum Commands {
    Dev(DevCommand),
    Server(Box<ServerCommand>),

    Apps(apps::AppsCommand),
    #[command(name = "apps:create", alias = "create")]
    AppsCreate(apps::CreateCommand),
    #[command(name = "apps:info", alias = "info")]
    AppsInfo(apps::InfoCommand),
    #[command(name = "apps:destroy", alias = "destroy")]
    AppsDestroy(apps::DestroyCommand),
    #[command(name = "apps:rename", alias = "rename")]
    AppsRename(sharing::RenameCommand),
    Domains(sharing::DomainsCommand),
    #[command(name = "domains:add")]
    DomainsAdd(sharing::DomainsAddCommand),
    #[command(name = "domains:remove")]
    DomainsRemove(sharing::DomainsRemoveCommand),
    Access(sharing::AccessCommand),
    #[command(name = "access:add")]
    AccessAdd(sharing::AccessAddCommand),
    #[command(name = "access:remove")]
    AccessRemove(sharing::AccessRemoveCommand),
    Deploy(releases::DeployCommand),
    Builds(builds::BuildsCommand),
    #[command(name = "builds:info")]
    BuildsInfo(builds::BuildsInfoCommand),
    Buildpacks(builds::BuildpacksCommand),
    #[command(name = "buildpacks:set")]
    BuildpacksSet(builds::BuildpacksSetCommand),
    #[command(name = "buildpacks:clear")]
    BuildpacksClear(builds::BuildpacksClearCommand),
    #[command(name = "git:remote")]
    GitRemote(builds::GitRemoteCommand),
    #[command(name = "git:credential", hide = true)]
    GitCredential(builds::GitCredentialCommand),
    #[command(name = "git:pre-receive", hide = true)]
    GitPreReceive(builds::PreReceiveCommand),

    Addons(addons::AddonsCommand),
    #[command(name = "addons:create")]
    AddonsCreate(addons::CreateCommand),
    #[command(name = "addons:info")]
    AddonsInfo(addons::InfoCommand),
    #[command(name = "addons:attach")]
    AddonsAttach(addons::AttachCommand),
    #[command(name = "addons:detach")]
    AddonsDetach(addons::DetachCommand),
    #[command(name = "addons:upgrade", alias = "addons:downgrade")]
    AddonsUpgrade(addons::UpgradeCommand),
    #[command(name = "addons:destroy", alias = "addons:remove")]
    AddonsDestroy(addons::DestroyCommand),
    #[command(name = "addons:services")]
    AddonsServices(addons::ServicesCommand),
    #[command(name = "addons:services:add")]
    AddonsServicesAdd(addons::ServicesAddCommand),
    #[command(name = "addons:services:remove")]
    AddonsServicesRemove(addons::ServicesRemoveCommand),
    #[command(name = "addons:plans")]
    AddonsPlans(addons::PlansCommand),

    #[command(name = "pg:info", alias = "pg")]
    PgInfo(pg::InfoCommand),
    #[command(name = "pg:psql")]
    PgPsql(pg::PsqlCommand),

    Config(config::ConfigCommand),
    #[command(name = "config:get")]
    ConfigGet(config::GetCommand),
    #[command(name = "config:set")]
    ConfigSet(config::SetCommand),
    #[command(name = "config:unset")]
    ConfigUnset(config::UnsetCommand),

    Releases(releases::ReleasesCommand),
    #[command(name = "releases:info")]
    ReleasesInfo(releases::InfoCommand),
    #[command(name = "releases:rollback", alias = "rollback")]
    ReleasesRollback(releases::RollbackCommand),

    Ps(ps::PsCommand),
    #[command(name = "ps:scale", alias = "scale")]
    PsScale(ps::ScaleCommand),
    #[command(name = "ps:type", alias = "ps:resize")]
    PsType(ps::TypeCommand),
    #[command(name = "ps:restart", alias = "restart")]
    PsRestart(ps::RestartCommand),
    #[command(name = "ps:stop", alias = "stop")]
    PsStop(ps::StopCommand),
    #[command(name = "ps:idle")]
    PsIdle(ps::IdleCommand),
    Run(run::RunCommand),
    #[command(name = "run:detached")]
    RunDetached(run::RunDetachedCommand),

    Hosts(hosts::HostsCommand),
    #[command(name = "hosts:drain")]
    HostsDrain(hosts::DrainCommand),
    Logs(logs::LogsCommand),
    Drains(logs::DrainsCommand),
    Labs(labs::LabsCommand),
    #[command(name = "labs:enable")]
    LabsEnable(labs::LabsEnableCommand),
    #[command(name = "labs:disable")]
    LabsDisable(labs::LabsDisableCommand),
    #[command(name = "drains:add")]
    DrainsAdd(logs::DrainsAddCommand),
    #[command(name = "drains:remove")]
    DrainsRemove(logs::DrainsRemoveCommand),
    #[command(
        name = "maintenance:on",
        about = "Turn maintenance mode on: every request gets 503 (H80)"
    )]
    MaintenanceOn(apps::MaintenanceCommand),
    #[command(name = "maintenance:off", about = "Turn maintenance mode off")]
    MaintenanceOff(apps::MaintenanceCommand),

    Login(account::LoginCommand),
    #[command(name = "auth:token")]
    AuthToken(account::TokenCommand),
    #[command(name = "auth:tokens", alias = "authorizations")]
    AuthTokens(account::TokensCommand),
    #[command(name = "auth:tokens:create", alias = "authorizations:create")]
    AuthTokensCreate(account::TokensCreateCommand),
    #[command(name = "auth:revoke", alias = "authorizations:revoke")]
    AuthRevoke(account::RevokeCommand),
    #[command(name = "users:create")]
    UsersCreate(account::UsersCreateCommand),
}

impl Cli {
    /// Whether this is one of the long-running commands (`server`, `dev`)
    /// rather than an API client that prints and exits.
    pub fn is_client(&self) -> bool {
        !matches!(self.command, Commands::Dev(_) | Commands::Server(_))
    }

    /// Runs the command. An API client makes blocking calls and starts no
    /// async runtime (about 1 ms of every command); `renga dev` and `renga
    /// server` run on a multi-threaded one.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Commands::Dev(command) => on_async_runtime(command.run()),
            Commands::Server(command) => on_async_runtime((*command).run()),
            client => client.run_client(),
        }
    }
}

fn on_async_runtime(work: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(work)
}

impl Commands {
    /// The API clients: blocking calls, one request after another.
    fn run_client(self) -> anyhow::Result<()> {
        match self {
            Commands::Dev(_) | Commands::Server(_) => unreachable!("run on the async runtime"),
            Commands::Apps(c) => c.run(),
            Commands::AppsCreate(c) => c.run(),
            Commands::AppsInfo(c) => c.run(),
            Commands::AppsDestroy(c) => c.run(),
            Commands::Deploy(c) => c.run(),
            Commands::Builds(c) => c.run(),
            Commands::BuildsInfo(c) => c.run(),
            Commands::Buildpacks(c) => c.run(),
            Commands::BuildpacksSet(c) => c.run(),
            Commands::BuildpacksClear(c) => c.run(),
            Commands::GitRemote(c) => c.run(),
            Commands::GitCredential(c) => c.run(),
            Commands::GitPreReceive(c) => c.run(),
            Commands::Addons(c) => c.run(),
            Commands::AddonsCreate(c) => c.run(),
            Commands::AddonsInfo(c) => c.run(),
            Commands::AddonsAttach(c) => c.run(),
            Commands::AddonsDetach(c) => c.run(),
            Commands::AddonsUpgrade(c) => c.run(),
            Commands::AddonsDestroy(c) => c.run(),
            Commands::AddonsServices(c) => c.run(),
            Commands::AddonsServicesAdd(c) => c.run(),
            Commands::AddonsServicesRemove(c) => c.run(),
            Commands::AddonsPlans(c) => c.run(),
            Commands::PgInfo(c) => c.run(),
            Commands::PgPsql(c) => c.run(),
            Commands::Config(c) => c.run(),
            Commands::ConfigGet(c) => c.run(),
            Commands::ConfigSet(c) => c.run(),
            Commands::ConfigUnset(c) => c.run(),
            Commands::Releases(c) => c.run(),
            Commands::ReleasesInfo(c) => c.run(),
            Commands::ReleasesRollback(c) => c.run(),
            Commands::Ps(c) => c.run(),
            Commands::PsScale(c) => c.run(),
            Commands::PsType(c) => c.run(),
            Commands::PsRestart(c) => c.run(),
            Commands::PsStop(c) => c.run(),
            Commands::PsIdle(c) => c.run(),
            Commands::Run(c) => c.run(),
            Commands::RunDetached(c) => c.run(),
            Commands::Hosts(c) => c.run(),
            Commands::HostsDrain(c) => c.run(),
            Commands::Logs(c) => c.run(),
            Commands::Drains(c) => c.run(),
            Commands::Labs(c) => c.run(),
            Commands::LabsEnable(c) => c.run(),
            Commands::LabsDisable(c) => c.run(),
            Commands::DrainsAdd(c) => c.run(),
            Commands::DrainsRemove(c) => c.run(),
            Commands::AppsRename(c) => c.run(),
            Commands::Domains(c) => c.run(),
            Commands::DomainsAdd(c) => c.run(),
            Commands::DomainsRemove(c) => c.run(),
            Commands::Access(c) => c.run(),
            Commands::AccessAdd(c) => c.run(),
            Commands::AccessRemove(c) => c.run(),
            Commands::MaintenanceOn(c) => c.run(true),
            Commands::MaintenanceOff(c) => c.run(false),
            Commands::Login(c) => c.run(),
            Commands::AuthToken(c) => c.run(),
            Commands::AuthTokens(c) => c.run(),
            Commands::AuthTokensCreate(c) => c.run(),
            Commands::AuthRevoke(c) => c.run(),
            Commands::UsersCreate(c) => c.run(),
        }
    }
}
