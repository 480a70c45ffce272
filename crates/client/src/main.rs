//! `tlschat`: parses flags, sets up logging and runs the client.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tlschat_client::app::{self, Cli};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version go to stdout with status 0; usage errors to stderr with 64.
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(app::EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let default = match cli.verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tlschat: error: cannot start the async runtime: {err}");
            return ExitCode::from(app::EXIT_CONNECTION);
        }
    };
    runtime.block_on(app::run(cli))
}
