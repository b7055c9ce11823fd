//! The `renga` command line: parsing only, then one `run` per command.
//!
//! Each command is a struct with `async fn run(self)`; `main` prints the
//! error chain and sets the exit code. Nothing here does work itself.

mod dev;

pub use dev::DevCommand;

/// renga: a Heroku-style platform for WebAssembly apps.
///
/// Push source, get a running app: renga builds it into a WASI component,
/// runs it on wasmtime with a fresh instance per request, and routes HTTP to it.
#[derive(clap::Parser, Debug)]
#[command(name = "renga", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Commands,
}

#[derive(clap::Subcommand, Debug)]
pub enum Commands {
    Dev(DevCommand),
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Commands::Dev(command) => command.run().await,
        }
    }
}
