//! The `tlschat` command: flags shared by every subcommand, and the subcommands.
//!
//! Exit codes, for every subcommand: 0 success, 1 the server answered `ERR` (or the client
//! refused to send, with the reason), 2 no usable connection (refused, TLS failure, lost, or
//! unusable certificates or configuration) with the reason on standard error, 64 a command
//! line that does not parse (sysexits' `EX_USAGE`, as every tlschat binary).

mod chat;
pub mod enroll;
mod exec;
mod hints;
mod keys;
mod listen;
mod reconnect;
mod send;
mod tui;
mod udp;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tlschat_proto::addr::HostPort;
use tlschat_proto::duration::HumanDuration;
use tlschat_proto::{ErrorCode, Reply, Request};

use crate::client::Client;
use crate::config::{ClientConfig, DEFAULT_CA, DEFAULT_CONNECT_TIMEOUT, DEFAULT_SERVER};
use crate::e2e::E2e;
use crate::error::ClientError;
use crate::user_defaults::UserDefaults;

/// Exit code: the request succeeded.
pub const EXIT_OK: u8 = 0;
/// Exit code: the server answered `ERR`.
pub const EXIT_ERR_REPLY: u8 = 1;
/// Exit code: no usable connection (refused, TLS failure, lost).
pub const EXIT_CONNECTION: u8 = 2;
/// Exit code: the command line does not parse (sysexits' `EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;

/// The tlschat client: chat and talk to a tlschat server over TLS 1.3.
///
/// With no subcommand, starts the interactive chat client.
#[derive(Debug, Parser)]
#[command(name = "tlschat", version)]
pub struct Cli {
    /// How to reach the server.
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Interactive chat (the default): do not reconnect after a lost connection (exit 2
    /// instead).
    #[arg(long)]
    pub no_reconnect: bool,
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
    /// Server address: HOST or HOST:PORT (port 6254 unless given); several, comma-separated,
    /// are tried in order (the nodes of a cluster, a standby), also on every reconnect
    /// [default: 127.0.0.1:6254, or `server` in your config file].
    #[arg(
        long,
        value_name = "HOST[:PORT][,...]",
        value_delimiter = ',',
        global = true
    )]
    pub server: Vec<HostPort>,
    /// CA certificate the server's certificate must chain to [default: certs/ca.pem, or `ca`
    /// in your config file].
    #[arg(long, value_name = "FILE", global = true)]
    pub ca: Option<PathBuf>,
    /// Your client certificate (mutual TLS: your verified identity).
    #[arg(long, value_name = "FILE", requires = "key", global = true)]
    pub cert: Option<PathBuf>,
    /// Your private key, for --cert.
    #[arg(long, value_name = "FILE", requires = "cert", global = true)]
    pub key: Option<PathBuf>,
    /// Host name (or address) to verify the server's certificate against, when it differs
    /// from HOST in --server (the server's own --server-name is only its greeting).
    #[arg(long, value_name = "NAME", global = true)]
    pub server_name: Option<String>,
    /// Time allowed to connect and finish the TLS handshake (e.g. 10s).
    #[arg(long, value_name = "DURATION", default_value_t = HumanDuration(DEFAULT_CONNECT_TIMEOUT), global = true)]
    pub connect_timeout: HumanDuration,
    /// Also offer TLS 1.2 (only TLS 1.3 by default).
    #[arg(long, global = true)]
    pub tls12: bool,
    /// Your E2E private key, created on first use [default: NAME-e2e-key next to --cert].
    #[arg(long, value_name = "FILE", global = true)]
    pub e2e_key: Option<PathBuf>,
    /// Where the E2E key fingerprints of others are remembered [default: NAME-known-keys
    /// next to --cert].
    #[arg(long, value_name = "FILE", global = true)]
    pub known_keys: Option<PathBuf>,
    /// This device's name for its E2E key, chosen when the key is made (first use); a device
    /// keeps its name [default: this host's name and 4 hex digits of the key].
    #[arg(long, value_name = "NAME", global = true)]
    pub device: Option<String>,
}

impl ConnectionArgs {
    /// The library configuration these flags describe, with the user's defaults file (see
    /// [`UserDefaults`]) filling what they leave out. The error names the file at fault.
    pub fn to_config(&self) -> Result<ClientConfig, String> {
        let defaults = UserDefaults::load()?;
        let servers: Vec<HostPort> = match (self.server.is_empty(), &defaults.server) {
            (false, _) => self.server.clone(),
            (true, Some(text)) => text
                .split(',')
                .map(|one| one.trim().parse())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: server: {e}", UserDefaults::path_hint()))?,
            (true, None) => vec![DEFAULT_SERVER.parse().map_err(|e| format!("{e}"))?],
        };
        let (server, alternates) = servers
            .split_first()
            .ok_or_else(|| "--server names no server".to_owned())?;
        let ca = self
            .ca
            .clone()
            .or(defaults.ca)
            .unwrap_or_else(|| DEFAULT_CA.into());
        let mut config = ClientConfig::new(server.to_string(), ca);
        config.alternates = alternates.iter().map(ToString::to_string).collect();
        config.server_name = self.server_name.clone();
        // A certificate and its key come together, from the flags or from the file.
        (config.cert, config.key) = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => (Some(cert.clone()), Some(key.clone())),
            _ => (defaults.cert, defaults.key),
        };
        config.connect_timeout = self.connect_timeout.into();
        config.allow_tls12 = self.tls12;
        config.e2e_key = self.e2e_key.clone();
        config.known_keys = self.known_keys.clone();
        config.device = self.device.clone();
        Ok(config)
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
    /// The interactive chat client (the default): type to talk, /help for commands.
    Chat {
        /// Do not reconnect after a lost connection (exit 2 instead).
        #[arg(long)]
        no_reconnect: bool,
    },
    /// The full-screen terminal client: rooms and conversations, members, scrollback, and
    /// the connection's security in a status bar. `?` lists the keys.
    Tui {
        /// Do not reconnect after a lost connection (exit 2 instead).
        #[arg(long)]
        no_reconnect: bool,
    },
    /// Send one message to a room (joining it if needed) or to a user; exit 0 once the server
    /// accepted it.
    ///
    /// A message to a user who has published an E2E key is encrypted end to end (your client
    /// certificate signs it); one whose key changed since you last saw it is not sent (exit 1),
    /// and neither is one to a user without a key when you have a certificate, unless --plain.
    Send {
        /// Nickname to use when you have no client certificate.
        #[arg(long, value_name = "NAME")]
        nick: Option<String>,
        /// Send a direct message in clear (the recipient has no E2E key, or you have none).
        #[arg(long)]
        plain: bool,
        /// `#room` or a nickname.
        #[arg(value_name = "TARGET")]
        target: String,
        /// The message, as one or several words.
        #[arg(required = true, value_name = "TEXT")]
        text: Vec<String>,
    },
    /// Print messages as they arrive, one per line (or one JSON object per line).
    ///
    /// Prints `listening` on standard error once every room is joined.
    Listen {
        /// Room to join and listen to (repeatable). Direct messages are always printed.
        #[arg(long = "room", value_name = "#ROOM")]
        rooms: Vec<String>,
        /// Exit after this many messages (default: never).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// First print every stored message of the rooms after this id (resume where an
        /// earlier listener stopped: the last id it printed).
        #[arg(long, value_name = "ID", requires = "rooms")]
        since: Option<u64>,
        /// One JSON object per message: type, room, id, from, verified, time, text.
        #[arg(long)]
        json: bool,
        /// Nickname to use when you have no client certificate.
        #[arg(long, value_name = "NAME")]
        nick: Option<String>,
    },
    /// Make your key and a certificate signing request, here, for the CA's keeper to sign
    /// (`tlschat-certgen sign NAME.csr`): your private key never leaves this machine.
    Enroll {
        /// Your user name (the certificate's common name).
        #[arg(value_name = "NAME")]
        name: String,
        /// Folder for NAME-key.pem and NAME.csr (made if missing).
        #[arg(long, value_name = "DIR", default_value = "certs")]
        out: PathBuf,
    },
    /// Show the fingerprint of your E2E key, or of NICK's as the server offers it (and whether
    /// it is the one remembered). Compare fingerprints with the other person out of band.
    Fingerprint {
        /// Whose key; yours when left out.
        #[arg(value_name = "NICK")]
        nick: Option<String>,
    },
    /// Accept NICK's current E2E keys after one changed or a device was added (check the
    /// fingerprints with them first).
    Trust {
        /// Whose keys.
        #[arg(value_name = "NICK")]
        nick: String,
    },
    /// List your devices with a published E2E key and their fingerprints, or withdraw one
    /// (`tlschat devices remove NAME`): messages are then no longer sealed to it.
    Devices {
        /// What to do; list them when left out.
        #[command(subcommand)]
        action: Option<DevicesCommand>,
    },
    /// Signed UDP mode (integrity and authenticity, no encryption): the stateless verbs.
    Udp {
        /// What to do over UDP.
        #[command(subcommand)]
        command: UdpCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), as packages install it.
    #[command(hide = true)]
    Manpage,
}

/// `tlschat devices …`.
#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Withdraw the E2E key of one of your devices (a lost phone, an old laptop).
    Remove {
        /// The device's name, as `tlschat devices` lists it.
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// `tlschat udp …`: signed UDP mode.
#[derive(Debug, Subcommand)]
pub enum UdpCommand {
    /// Send one signed request over UDP and print the verified reply: `tlschat --server
    /// HOST:UDPPORT --cert me.pem --key me-key.pem udp exec TIME`. Exit codes as for `exec`;
    /// 2 when no valid reply comes after the retries.
    ///
    /// Of the shared flags, UDP uses --server (the address the server was given with --udp:
    /// its port is not the TLS port), --ca, --server-name, --cert and --key; --tls12,
    /// --connect-timeout and the E2E files do not apply.
    Exec {
        /// Time to wait for a reply to each attempt.
        #[arg(long, value_name = "DURATION", default_value_t = HumanDuration(crate::udp::DEFAULT_UDP_TIMEOUT))]
        timeout: HumanDuration,
        /// Retries after the first attempt.
        #[arg(long, value_name = "N", default_value_t = crate::udp::DEFAULT_UDP_RETRIES)]
        retries: u32,
        /// The request: a verb and its arguments.
        #[arg(required = true, value_name = "REQUEST")]
        request: Vec<String>,
    },
}

/// Runs the command line and returns the exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match &cli.command {
        Some(Command::Enroll { name, out }) => return ExitCode::from(enroll::run(name, out)),
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory;
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "tlschat",
                &mut std::io::stdout(),
            );
            return ExitCode::from(EXIT_OK);
        }
        Some(Command::Manpage) => {
            use clap::CommandFactory;
            return match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::from(EXIT_OK),
                Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(EXIT_OK),
                Err(err) => {
                    eprintln!("tlschat: error: writing the manual page: {err}");
                    ExitCode::from(EXIT_ERR_REPLY)
                }
            };
        }
        _ => {}
    }
    let config = match cli.connection.to_config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("tlschat: error: {err}");
            return ExitCode::from(EXIT_CONNECTION);
        }
    };
    let command = cli.command.unwrap_or(Command::Chat {
        no_reconnect: cli.no_reconnect,
    });
    let code = match command {
        Command::Exec { request } => exec::run(&config, &request.join(" ")).await,
        Command::Chat { no_reconnect } => {
            let options = chat::ChatOptions {
                reconnect: !(no_reconnect || cli.no_reconnect),
            };
            chat::run(&config, options).await
        }
        Command::Tui { no_reconnect } => {
            let options = tui::TuiOptions {
                reconnect: !(no_reconnect || cli.no_reconnect),
            };
            tui::run(&config, options).await
        }
        Command::Send {
            nick,
            plain,
            target,
            text,
        } => send::run(&config, nick.as_deref(), plain, &target, &text.join(" ")).await,
        Command::Listen {
            rooms,
            count,
            since,
            json,
            nick,
        } => {
            let options = listen::ListenOptions { count, json, since };
            listen::run(&config, nick.as_deref(), &rooms, options).await
        }
        Command::Fingerprint { nick } => keys::fingerprint(&config, nick.as_deref()).await,
        Command::Enroll { .. } | Command::Completions { .. } | Command::Manpage => EXIT_OK,
        Command::Trust { nick } => keys::trust(&config, &nick).await,
        Command::Devices { action } => {
            let remove = action.map(|DevicesCommand::Remove { name }| name);
            keys::devices(&config, remove.as_deref()).await
        }
        Command::Udp {
            command:
                UdpCommand::Exec {
                    timeout,
                    retries,
                    request,
                },
        } => {
            let options = crate::udp::UdpOptions {
                timeout: timeout.into(),
                retries,
            };
            udp::exec(&config, options, &request.join(" ")).await
        }
    };
    ExitCode::from(code)
}

/// An error with its causes, `outer: inner: innermost`.
fn error_text(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Prints a connection-level error with its causes and returns [`EXIT_CONNECTION`].
fn connection_failed(err: ClientError) -> u8 {
    eprintln!("tlschat: error: {}", error_text(&err));
    EXIT_CONNECTION
}

/// Connects and, without a certificate, claims `nick`. Returns the exit code on failure.
async fn connect_as(config: &ClientConfig, nick: Option<&str>) -> Result<Client, u8> {
    let mut client = Client::connect(config).await.map_err(connection_failed)?;
    if let Some(nick) = nick {
        let request = Request::parse(&format!("NICK {nick}"));
        match request {
            Ok(Some(request)) => expect_ok(&mut client, &request).await?,
            _ => {
                eprintln!("tlschat: error: invalid nickname {nick:?}");
                return Err(EXIT_ERR_REPLY);
            }
        };
    }
    Ok(client)
}

/// The user's E2E state (`None` without a certificate); the exit code when it is unusable.
fn open_e2e(config: &ClientConfig) -> Result<Option<E2e>, u8> {
    E2e::open(config).map_err(|err| {
        eprintln!("tlschat: error: {}", error_text(&err));
        EXIT_ERR_REPLY
    })
}

/// Connects as `nick` (without a certificate) and publishes the user's E2E key when they have
/// one (a refusal is a warning: the user can still chat, only not receive E2E messages).
/// Returns the connection and the E2E state, or the exit code.
async fn connect_with_e2e(
    config: &ClientConfig,
    nick: Option<&str>,
) -> Result<(Client, Option<E2e>), u8> {
    let e2e = open_e2e(config)?;
    if let Some(warning) = config.certificate_expiry_warning(chrono::Utc::now().timestamp()) {
        eprintln!("tlschat: warning: {warning}");
    }
    let mut client = connect_as(config, nick).await?;
    if let Some(e2e) = &e2e {
        match e2e.publish(&mut client).await {
            Ok(Ok(())) => {}
            Ok(Err(refusal)) => {
                eprintln!("tlschat: warning: your E2E key was not published: {refusal}");
            }
            Err(err) => return Err(connection_failed(err)),
        }
    }
    Ok((client, e2e))
}

/// What `/whoami` says: the name and what it rests on, the certificate's end, the E2E key.
pub(crate) fn whoami(config: &ClientConfig, e2e: Option<&E2e>) -> Vec<String> {
    let mut lines = Vec::new();
    match (config.certificate_name(), config.certificate_expiry()) {
        (Some(name), Some(until)) => {
            let until = chrono::DateTime::<chrono::Utc>::from_timestamp(until, 0)
                .map_or_else(|| until.to_string(), |t| t.format("%Y-%m-%d").to_string());
            lines.push(format!(
                "you are {name}, verified by your client certificate (valid to {until})"
            ));
        }
        _ => lines.push(
            "no client certificate: you chat under a claimed nickname, marked unverified".into(),
        ),
    }
    if let Some(e2e) = e2e {
        lines.push(format!(
            "your E2E key on this device ({}): {}",
            e2e.device(),
            e2e.own_fingerprint()
        ));
    }
    lines.push(format!("server: {}", config.server));
    lines
}

/// Sends a request and returns its OK payload, or the exit code for an ERR or a failure.
async fn expect_ok(client: &mut Client, request: &Request) -> Result<String, u8> {
    match client.request(request).await {
        Ok(Reply::Ok(payload)) => Ok(payload),
        Ok(Reply::Err(err)) => {
            let hint = match err.code {
                ErrorCode::NoNick => " (pass --nick NAME, or --cert and --key)",
                _ => "",
            };
            eprintln!("{}{hint}", crate::text::sanitize_whole(&err.to_string()));
            Err(EXIT_ERR_REPLY)
        }
        Err(err) => Err(connection_failed(err)),
    }
}
