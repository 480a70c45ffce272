//! `tlschat-server`: parses flags, sets up logging and runs the server.

#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tlschat_proto::datagram::DEFAULT_MAX_DATAGRAM;
use tlschat_proto::duration::HumanDuration;
use tlschat_proto::limits::DEFAULT_MAX_LINE_LEN;
use tlschat_server::config::{
    DEFAULT_DRAIN_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_PENDING_BYTES, DEFAULT_SERVER_NAME, DEFAULT_WRITE_TIMEOUT,
};
use tlschat_server::udp::{UdpConfig, DEFAULT_MAX_SENDERS, DEFAULT_MAX_SKEW};
use tlschat_server::{ClientAuth, Config, Server};
use tracing_subscriber::EnvFilter;

/// The tlschat server: a TLS 1.3 chat and command server.
///
/// Prints `tlschat-server listening on ADDR` on standard output once it accepts connections
/// (after `tlschat-server udp listening on ADDR` when UDP mode is on);
/// logs go to standard error. SIGINT or SIGTERM drain and stop it (exit 0).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Address to listen on. Use 0.0.0.0:6254 to accept connections from the network.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Server certificate chain (PEM).
    #[arg(long, value_name = "FILE", default_value = "certs/server.pem")]
    cert: PathBuf,
    /// Server private key (PEM).
    #[arg(long, value_name = "FILE", default_value = "certs/server-key.pem")]
    key: PathBuf,
    /// CA certificate that client certificates must chain to (PEM).
    #[arg(long, value_name = "FILE", default_value = "certs/ca.pem")]
    ca: PathBuf,
    /// Client certificates: none (not asked), optional (verified when sent), required (mutual TLS).
    #[arg(long, value_enum, value_name = "MODE", default_value_t = ClientAuth::Optional)]
    client_auth: ClientAuth,
    /// Also accept TLS 1.2 (by default only TLS 1.3 is spoken).
    #[arg(long)]
    tls12: bool,
    /// Name announced in the greeting.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_SERVER_NAME)]
    server_name: String,
    /// Longest request line in bytes; longer lines get ERR LINE_TOO_LONG and are discarded.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_LINE_LEN as u64,
          value_parser = clap::value_parser!(u64).range(64..=16 * 1024 * 1024))]
    max_line_len: u64,
    /// Time a client has to complete the TLS handshake (e.g. 10s, 500ms).
    #[arg(long, value_name = "DURATION", default_value_t = HumanDuration(DEFAULT_HANDSHAKE_TIMEOUT))]
    handshake_timeout: HumanDuration,
    /// Time one write to a client may take before the client is cut off as not reading.
    #[arg(long, value_name = "DURATION", default_value_t = HumanDuration(DEFAULT_WRITE_TIMEOUT))]
    write_timeout: HumanDuration,
    /// Time shutdown waits for clients to receive what is queued for them.
    #[arg(long, value_name = "DURATION", default_value_t = HumanDuration(DEFAULT_DRAIN_TIMEOUT))]
    drain_timeout: HumanDuration,
    /// Most concurrent connections; more wait in the listen backlog.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
    /// Bytes that may wait for one client before it is disconnected as a slow consumer.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_PENDING_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1024..=1024 * 1024 * 1024))]
    max_pending_bytes: u64,
    /// Answer the stateless verbs over signed UDP on this address (off unless given).
    #[arg(long, value_name = "ADDR")]
    udp: Option<SocketAddr>,
    /// UDP: largest difference between a datagram's timestamp and the server clock.
    #[arg(long, value_name = "DURATION", default_value_t = HumanDuration(DEFAULT_MAX_SKEW))]
    udp_max_skew: HumanDuration,
    /// UDP: senders (keys and replay windows) remembered at most; the least recent is evicted.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SENDERS as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    udp_max_senders: u64,
    /// UDP: largest datagram accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_DATAGRAM as u64,
          value_parser = clap::value_parser!(u64).range(512..=65_507))]
    udp_max_datagram: u64,
    /// More log detail: -v debug, -vv trace. RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

impl Cli {
    fn into_config(self) -> Config {
        let mut config = Config::new(self.cert, self.key, self.ca);
        config.listen = self.listen;
        config.client_auth = self.client_auth;
        config.allow_tls12 = self.tls12;
        config.server_name = self.server_name;
        // Both ranges are checked by clap and fit in usize on every supported target.
        config.max_line_len = usize::try_from(self.max_line_len).unwrap_or(usize::MAX);
        config.handshake_timeout = self.handshake_timeout.into();
        config.write_timeout = self.write_timeout.into();
        config.drain_timeout = self.drain_timeout.into();
        config.max_connections = usize::try_from(self.max_connections).unwrap_or(usize::MAX);
        config.max_pending_bytes = usize::try_from(self.max_pending_bytes).unwrap_or(usize::MAX);
        config.udp = self.udp.map(|addr| {
            let mut udp = UdpConfig::new(addr);
            udp.max_skew = self.udp_max_skew.into();
            udp.max_senders = usize::try_from(self.udp_max_senders).unwrap_or(usize::MAX);
            udp.max_datagram = usize::try_from(self.udp_max_datagram).unwrap_or(usize::MAX);
            udp
        });
        config
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tlschat-server: error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.into_config())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tlschat-server: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let server = Server::bind(config).await?;
    let mut stdout = std::io::stdout();
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
    server.run(shutdown_signal()).await;
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot watch SIGTERM; only SIGINT stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
