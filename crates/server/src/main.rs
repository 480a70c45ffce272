//! `tlschat-server`: parses flags, sets up logging and runs the server.

#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use tlschat_server::settings::Settings;
use tlschat_server::{Config, Server};
use tracing_subscriber::EnvFilter;

/// The tlschat server: a TLS 1.3 chat and command server.
///
/// Prints `tlschat-server listening on ADDR` on standard output once it accepts connections
/// (after `tlschat-server udp listening on ADDR` when UDP mode is on); logs go to standard
/// error. SIGINT or SIGTERM drain and stop it (exit 0); SIGHUP reloads the certificates.
///
/// Every setting can also be given in a TOML file (--config), with the flag's long name as the
/// key: `handshake-timeout = "10s"`. A flag given on the command line wins over the file.
#[derive(Debug, Parser)]
#[command(version, long_about)]
struct Cli {
    /// TOML file with settings (keys are the long flag names).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The settings.
    #[command(flatten)]
    settings: Settings,
    /// More log detail: -v debug, -vv trace. RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Log lines as text, or as one JSON object each (with the connection's number on every
    /// line of a connection).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Check the settings and the certificate, key, CA and revocation list they name, say what
    /// would be served, and exit (0 when all is well) without serving.
    #[arg(long)]
    check_config: bool,
    /// Something other than serving.
    #[command(subcommand)]
    command: Option<Command>,
}

/// What else the binary does.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), as packages install it.
    #[command(hide = true)]
    Manpage,
    /// Print a settings file with every setting at its default, commented out (as packages
    /// install /etc/tlschat/server.toml).
    #[command(hide = true)]
    DefaultConfig,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// For people.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Exit status for a command line that does not parse (sysexits' `EX_USAGE`).
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version go to stdout with status 0; usage errors to stderr with 64.
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match &cli.command {
        Some(Command::Completions { shell }) => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "tlschat-server",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Some(Command::Manpage) => {
            return match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(err) => fail(&anyhow::Error::new(err).context("writing the manual page")),
            };
        }
        Some(Command::DefaultConfig) => {
            let _ = write!(
                std::io::stdout(),
                "{}",
                tlschat_server::settings::default_file()
            );
            return ExitCode::SUCCESS;
        }
        None => {}
    }
    init_tracing(cli.verbose, cli.log_format);
    let config = match load(cli.config.as_deref(), cli.settings) {
        Ok(config) => config,
        Err(err) => return fail(&err),
    };
    if cli.check_config {
        return match check(&config) {
            Ok(summary) => {
                let _ = writeln!(std::io::stdout(), "{summary}");
                ExitCode::SUCCESS
            }
            Err(err) => fail(&err),
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            return fail(&anyhow::Error::new(err).context("cannot start the async runtime"))
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

/// Says why the server stops (if standard error is still there to say it) and exits 1.
fn fail(err: &anyhow::Error) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "tlschat-server: error: {err:#}");
    ExitCode::FAILURE
}

/// `--check-config`: the certificate, key, CA and revocation list load and agree; says what
/// would be served.
fn check(config: &Config) -> anyhow::Result<String> {
    tlschat_server::tls::Credentials::load(config)?;
    let store = match &config.store {
        tlschat_server::config::StoreSetting::File(path) => path.display().to_string(),
        tlschat_server::config::StoreSetting::None => "none".to_owned(),
    };
    Ok(format!(
        "configuration OK: would listen on {} (TLS, certificate {}), store {store}",
        config.listen,
        config.cert.display()
    ))
}

/// Flags over the file over the defaults.
fn load(file: Option<&std::path::Path>, flags: Settings) -> anyhow::Result<Config> {
    let from_file = match file {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    Ok(flags.over(from_file).apply()?)
}

async fn run(config: Config) -> anyhow::Result<()> {
    let server = Server::bind(config).await?;
    // Watch the stop signals before saying we listen: a supervisor may send SIGTERM at once,
    // and it must drain the server, not kill it.
    let shutdown = shutdown_signal();
    let mut stdout = std::io::stdout();
    if let Some(metrics) = server.local_metrics_addr() {
        writeln!(stdout, "tlschat-server metrics on {metrics}")
            .context("writing the readiness line to standard output")?;
    }
    if let Some(udp) = server.local_udp_addr() {
        writeln!(stdout, "tlschat-server udp listening on {udp}")
            .context("writing the readiness line to standard output")?;
    }
    writeln!(
        stdout,
        "tlschat-server listening on {}",
        server.local_addr()
    )
    .and_then(|()| stdout.flush())
    .context("writing the readiness line to standard output")?;
    tlschat_server::notify::notify("READY=1");
    server.run(shutdown).await;
    Ok(())
}

/// Starts watching SIGINT and SIGTERM now; the future completes on either.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (interrupt, terminate) => {
                    let err = interrupt.err().or(terminate.err()).map(|e| e.to_string());
                    tracing::warn!(
                        error = %err.unwrap_or_default(),
                        "cannot watch SIGINT or SIGTERM; stopping on Ctrl-C only"
                    );
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn init_tracing(verbose: u8, format: LogFormat) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // A log line that cannot be written (standard error closed, say the `tee` reading it died)
    // is dropped: logging never stops the server, and its own complaint about the failed write
    // would go to the same closed stream, so it is off.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        // The connection's span (`conn`, with its `id`) is on each of its lines.
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
