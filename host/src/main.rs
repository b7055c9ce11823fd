use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = renga::cli::Cli::parse();
    if cli.is_client() {
        // A client's output may go to a pipe that closes early
        // (`renga apps:info | head`): end quietly, as other Unix tools do,
        // instead of failing on the write.
        // SAFETY: restoring a signal's default action has no preconditions.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // The host's own diagnostics go to stderr; app, router and build lines
    // are product output and go through logplex to stdout.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("RENGA_LOG")
                .unwrap_or_else(|_| EnvFilter::new("warn,renga=info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("renga: error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
