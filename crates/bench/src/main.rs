//! `tlschat-bench`: parses flags and runs one load mode.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tlschat_bench::{Load, Report};
use tlschat_client::ClientConfig;
use tlschat_proto::duration::HumanDuration;

/// Load generator for tlschat. Talks only to --server; every run is bounded by --requests and
/// --deadline.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Server address (the TLS port for `echo`, the UDP port for `udp`).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:6254")]
    server: String,
    /// CA certificate.
    #[arg(long, value_name = "FILE", default_value = "certs/ca.pem")]
    ca: PathBuf,
    /// Client certificate (required for `udp`).
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// Client key.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Requests in all.
    #[arg(long, default_value_t = 10_000)]
    requests: u64,
    /// Concurrent connections or sockets, each in a closed loop.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    connections: u64,
    /// Unmeasured requests per connection first.
    #[arg(long, default_value_t = 100)]
    warmup: u64,
    /// Stop after this long even if requests remain.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    deadline: HumanDuration,
    /// The request line to send.
    #[arg(long, default_value = "PING")]
    request: String,
    /// Print JSON instead of a table row.
    #[arg(long)]
    json: bool,
    /// The mode.
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Request/response over TLS.
    Echo,
    /// Request/response over signed UDP.
    Udp,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tlschat-bench: error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(report) => {
            if cli.json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                println!("{}\n{}", Report::table_header(), report.table_row());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("tlschat-bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> anyhow::Result<Report> {
    let mut config = ClientConfig::new(cli.server.clone(), cli.ca.clone());
    config.cert = cli.cert.clone();
    config.key = cli.key.clone();
    let load = Load {
        request: cli.request.clone(),
        requests: cli.requests,
        connections: cli.connections,
        warmup: cli.warmup,
        deadline: Duration::from(cli.deadline),
    };
    match cli.mode {
        Mode::Echo => tlschat_bench::echo(&config, &load).await,
        Mode::Udp => tlschat_bench::udp(&config, &load).await,
    }
}
