//! `tlschat-bench`: parses flags and runs one workload.

#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rustls::client::Resumption;
use tlschat_bench::modes::{self, Fanout, Setup};
use tlschat_bench::probe::Probe;
use tlschat_bench::target::{Endpoint, Kind};
use tlschat_bench::Report;
use tlschat_client::ClientConfig;
use tlschat_proto::duration::HumanDuration;

/// Load generator for tlschat, nats-server and `ncat --chat --ssl`, over TLS. Talks only to
/// --server; every run is bounded by its counts and --deadline.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// The server under test.
    #[arg(long, value_enum, default_value_t = Kind::Tlschat)]
    target: Kind,
    /// Server address (the UDP address for `udp`). Several, comma-separated (the nodes of a
    /// cluster): the fan-out's subscribers are spread over them in turn; everything else
    /// goes to the first.
    #[arg(long, value_name = "HOST:PORT[,...]", default_value = "127.0.0.1:6254")]
    server: String,
    /// CA certificate the server's certificate must chain to.
    #[arg(long, value_name = "FILE", default_value = "certs/ca.pem")]
    ca: PathBuf,
    /// Client certificate (for `connect` with client authentication, and `udp`).
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// Client key.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// The server's process id: reports its CPU time per operation and its memory.
    /// Repeatable: the figures are summed (a cluster's nodes and its nats-server).
    #[arg(long, value_name = "PID")]
    server_pid: Vec<u32>,
    /// Local addresses to spread connections over (repeatable), e.g. 127.0.0.2.
    #[arg(long = "source", value_name = "IP")]
    sources: Vec<IpAddr>,
    /// Stop after this long even if work remains.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    deadline: HumanDuration,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// The workload.
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// N subscribers in one room, S senders, M messages of B bytes.
    Fanout {
        /// Subscribers.
        #[arg(long, default_value_t = 50)]
        subscribers: usize,
        /// Senders.
        #[arg(long, default_value_t = 1)]
        senders: usize,
        /// Messages in all.
        #[arg(long, default_value_t = 20_000)]
        messages: u64,
        /// Payload bytes (at least 32).
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(32..=60_000))]
        size: u64,
        /// Messages a second across senders (default: as fast as the window allows).
        #[arg(long)]
        rate: Option<u64>,
        /// At full speed, most messages in flight towards the slowest subscriber.
        #[arg(long, default_value_t = 1000)]
        window: u64,
        /// tlschat: subscribers connect with client certificates from this folder
        /// (`sub0.pem`, `sub0-key.pem`, … one per person), as verified users.
        #[arg(long, value_name = "DIR")]
        identities: Option<PathBuf>,
        /// With --identities: connections per person (their devices); --subscribers counts
        /// connections.
        #[arg(long, default_value_t = 1, requires = "identities")]
        sessions_per_person: usize,
    },
    /// Request/response round trips (PING) on N connections, closed loop.
    Echo {
        /// Connections.
        #[arg(long, default_value_t = 10)]
        connections: usize,
        /// Requests in all.
        #[arg(long, default_value_t = 50_000)]
        requests: u64,
    },
    /// Acknowledged (stored) messages: N connections, each waiting for the server's
    /// acknowledgement before its next message (tlschat `OK <id>`, NATS JetStream's ack).
    Durable {
        /// Connections.
        #[arg(long, default_value_t = 10)]
        connections: usize,
        /// Messages in all.
        #[arg(long, default_value_t = 20_000)]
        messages: u64,
        /// Payload bytes.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=60_000))]
        size: u64,
    },
    /// `HISTORY`: store M messages, then read them all as one page, P times (tlschat only).
    History {
        /// Messages stored, and read per page (the server's --max-history-page must allow it).
        #[arg(long, default_value_t = 1_000)]
        stored: u64,
        /// Pages read.
        #[arg(long, default_value_t = 200)]
        pages: u64,
    },
    /// Catching up on reconnect: a verified member (--cert) misses M messages, then comes back
    /// and takes them all (tlschat only).
    Catchup {
        /// Messages missed.
        #[arg(long, default_value_t = 10_000)]
        missed: u64,
    },
    /// TLS handshakes: connect, open the protocol, close.
    Connect {
        /// Handshakes in all.
        #[arg(long, default_value_t = 2_000)]
        count: u64,
        /// Handshakes at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Resume sessions (TLS 1.3 tickets) instead of full handshakes.
        #[arg(long)]
        resume: bool,
    },
    /// Hold N idle connections; report server memory per connection, then (with --fanout) run
    /// a fan-out while they stay open.
    Hold {
        /// Connections to hold.
        #[arg(long, default_value_t = 1_000)]
        connections: usize,
        /// Handshakes at once while opening them.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
        concurrency: u64,
        /// Then run a fan-out to this many subscribers (1 sender, 64 B) while holding.
        #[arg(long, value_name = "SUBSCRIBERS")]
        fanout: Option<usize>,
        /// Messages in that fan-out.
        #[arg(long, default_value_t = 10_000, requires = "fanout")]
        fanout_messages: u64,
    },
    /// Signed UDP request/response (tlschat only).
    Udp {
        /// Sockets (sharing the client key).
        #[arg(long, default_value_t = 1)]
        sockets: u64,
        /// Requests in all.
        #[arg(long, default_value_t = 10_000)]
        requests: u64,
    },
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
    let result = runtime.block_on(run(&cli));
    let refused = tlschat_bench::target::RATE_LIMITED.load(std::sync::atomic::Ordering::Relaxed);
    if refused > 0 {
        eprintln!(
            "tlschat-bench: the server refused {refused} requests with ERR RATE_LIMITED: its \
             per-connection limits cut the load. Start it with them lifted, as the benchmark \
             scripts do (scripts/lib/bench-common.sh): --rate 10000000 --rate-burst 10000000 \
             --rate-bytes 1000000000000 --rate-bytes-burst 1000000000000 (and \
             --max-connections-per-ip / --max-handshakes-per-ip for many connections)"
        );
    }
    match result {
        Ok(report) => {
            if cli.json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                println!("{}\n{}", Report::table_header(), report.table_rows());
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
    let servers: Vec<&str> = cli.server.split(',').map(str::trim).collect();
    let mut config = ClientConfig::new(servers[0].to_owned(), cli.ca.clone());
    config.cert = cli.cert.clone();
    config.key = cli.key.clone();
    // The TLS setup is tlschat's client setup (TLS 1.3, the same provider) for every target.
    let resume = matches!(cli.mode, Mode::Connect { resume: true, .. });
    let with_identity = matches!(cli.mode, Mode::Connect { .. } | Mode::Catchup { .. });
    let mut tls_config = config.clone();
    if !with_identity {
        tls_config.cert = None;
        tls_config.key = None;
    }
    let mut tls = (*tls_config.tls_config()?).clone();
    if !resume {
        tls.resumption = Resumption::disabled();
    }
    let mut addrs = Vec::with_capacity(servers.len());
    for server in &servers {
        addrs.push(
            tokio::net::lookup_host(server)
                .await?
                .next()
                .with_context(|| format!("the server address {server} does not resolve"))?,
        );
    }
    let addr = addrs[0];
    let mut setup = Setup {
        endpoint: Endpoint {
            kind: cli.target,
            addr,
            tls: std::sync::Arc::new(tls),
            name: config.verify_name()?,
            sources: cli.sources.clone(),
            identities: Vec::new(),
            sessions_per_person: 1,
            spread: addrs,
        },
        probe: (!cli.server_pid.is_empty()).then(|| Probe::of(cli.server_pid.clone())),
        deadline: Duration::from(cli.deadline),
    };
    match &cli.mode {
        Mode::Fanout {
            subscribers,
            senders,
            messages,
            size,
            rate,
            window,
            identities,
            sessions_per_person,
        } => {
            if let Some(dir) = identities {
                let people = subscribers.div_ceil((*sessions_per_person).max(1));
                for person in 0..people {
                    let mut own = config.clone();
                    own.cert = Some(dir.join(format!("sub{person}.pem")));
                    own.key = Some(dir.join(format!("sub{person}-key.pem")));
                    let mut tls = (*own.tls_config().with_context(|| {
                        format!(
                            "the identity of subscriber person {person} in {}",
                            dir.display()
                        )
                    })?)
                    .clone();
                    tls.resumption = Resumption::disabled();
                    setup.endpoint.identities.push(std::sync::Arc::new(tls));
                }
                setup.endpoint.sessions_per_person = (*sessions_per_person).max(1);
            }
            let load = Fanout {
                subscribers: *subscribers,
                senders: *senders,
                messages: *messages,
                size: *size as usize,
                rate: *rate,
                window: *window,
            };
            modes::fanout(&setup, load).await
        }
        Mode::Echo {
            connections,
            requests,
        } => modes::echo(&setup, *connections, *requests).await,
        Mode::History { stored, pages } => modes::history(&setup, *stored, *pages).await,
        Mode::Catchup { missed } => {
            let mut plain = config.clone();
            plain.cert = None;
            plain.key = None;
            let mut tls = (*plain.tls_config()?).clone();
            tls.resumption = Resumption::disabled();
            let anonymous = Endpoint {
                tls: std::sync::Arc::new(tls),
                ..setup.endpoint.clone()
            };
            modes::catch_up(&setup, &anonymous, *missed).await
        }
        Mode::Durable {
            connections,
            messages,
            size,
        } => modes::durable(&setup, *connections, *messages, *size as usize).await,
        Mode::Connect {
            count, concurrency, ..
        } => modes::connect(&setup, *count, *concurrency).await,
        Mode::Hold {
            connections,
            concurrency,
            fanout,
            fanout_messages,
        } => {
            let load = fanout.map(|subscribers| Fanout {
                subscribers,
                senders: 1,
                messages: *fanout_messages,
                size: 64,
                rate: None,
                window: 1000,
            });
            modes::hold(&setup, *connections, *concurrency as usize, load).await
        }
        Mode::Udp { sockets, requests } => modes::udp(&config, &setup, *sockets, *requests).await,
    }
}
