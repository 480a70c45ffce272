//! The `tlschat` command: flags shared by every subcommand, and the subcommands.
//!
//! Exit codes, for every subcommand: 0 success, 1 the server answered `ERR`, 2 no usable
//! connection (refused, TLS failure, lost) with the reason on standard error.

mod exec;
mod interactive;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tlschat_proto::duration::HumanDuration;

use crate::config::{ClientConfig, DEFAULT_CA, DEFAULT_CONNECT_TIMEOUT, DEFAULT_SERVER};
use crate::error::ClientError;

/// Exit code: the request succeeded.
pub const EXIT_OK: u8 = 0;
/// Exit code: the server answered `ERR`.
pub const EXIT_ERR_REPLY: u8 = 1;
/// Exit code: no usable connection (refused, TLS failure, lost).
pub const EXIT_CONNECTION: u8 = 2;

/// The tlschat client: talk to a tlschat server over TLS 1.3.
///
/// With no subcommand, starts an interactive session.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
pub struct Cli {
    /// How to reach the server.
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// More log detail on standard error: -v debug, -vv trace.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags every subcommand shares.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Server address, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_SERVER, global = true)]
    pub server: String,
    /// CA certificate the server's certificate must chain to.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CA, global = true)]
    pub ca: PathBuf,
    /// Your client certificate (mutual TLS: your verified identity).
    #[arg(long, value_name = "FILE", requires = "key", global = true)]
    pub cert: Option<PathBuf>,
    /// Your private key, for --cert.
    #[arg(long, value_name = "FILE", requires = "cert", global = true)]
    pub key: Option<PathBuf>,
    /// Name the server certificate must carry, when it differs from HOST.
    #[arg(long, value_name = "NAME", global = true)]
    pub server_name: Option<String>,
    /// Time allowed to connect and finish the TLS handshake (e.g. 10s).
    #[arg(long, value_name = "DURATION", default_value_t = HumanDuration(DEFAULT_CONNECT_TIMEOUT), global = true)]
    pub connect_timeout: HumanDuration,
    /// Also offer TLS 1.2 (only TLS 1.3 by default).
    #[arg(long, global = true)]
    pub tls12: bool,
}

impl ConnectionArgs {
    /// The library configuration these flags describe.
    pub fn to_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(self.server.clone(), self.ca.clone());
        config.server_name = self.server_name.clone();
        config.cert = self.cert.clone();
        config.key = self.key.clone();
        config.connect_timeout = self.connect_timeout.into();
        config.allow_tls12 = self.tls12;
        config
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send one request and print the reply: `tlschat exec SUM 1 2 3`.
    ///
    /// Prints the payload of an OK reply on standard output (exit 0); an ERR reply goes to
    /// standard error (exit 1); a connection or TLS failure exits 2 with the reason.
    Exec {
        /// The request: a verb and its arguments, as one or several words.
        #[arg(required = true, value_name = "REQUEST")]
        request: Vec<String>,
    },
    /// Interactive session: lines you type are sent as requests; replies and events are
    /// printed as they arrive. End with QUIT or Ctrl-D.
    Chat,
}

/// Runs the command line and returns the exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let config = cli.connection.to_config();
    let code = match cli.command.unwrap_or(Command::Chat) {
        Command::Exec { request } => exec::run(&config, &request.join(" ")).await,
        Command::Chat => interactive::run(&config).await,
    };
    ExitCode::from(code)
}

/// Prints a connection-level error with its causes and returns [`EXIT_CONNECTION`].
fn connection_failed(err: ClientError) -> u8 {
    eprintln!("tlschat: error: {:#}", anyhow::Error::from(err));
    EXIT_CONNECTION
}
