//! `tlschat-certgen`: makes development certificates for tlschat.

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use tlschat_certgen::export::export_p12;
use tlschat_certgen::renew::renew;
use tlschat_certgen::revoke::{revoke, Target};
use tlschat_certgen::sign::sign;
use tlschat_certgen::Role;
use tlschat_certgen::{generate, Options, DEFAULT_VALIDITY_DAYS};

/// Makes a development CA, a server certificate and client certificates for tlschat.
///
/// Files written into --out (existing ones are kept unless --force, or unless they no longer say
/// what was asked, such as a new --host):
///
///   ca.pem             the CA certificate: every server and client trusts it (--ca)
///   ca-key.pem         the CA private key: issues certificates; give it to nobody
///   server.pem         the server certificate: localhost, 127.0.0.1, ::1, plus --host/--ip
///   server-key.pem     the server private key
///   NAME.pem           a client certificate: CN=NAME is the user's nickname, OU its role
///   NAME-key.pem       that client's private key
///
/// Private keys are written with mode 0600 and never printed.
#[derive(Debug, Parser)]
#[command(version, about, long_about, verbatim_doc_comment)]
struct Cli {
    /// Folder to write into (created if missing).
    #[arg(long, value_name = "DIR", default_value = "certs")]
    out: PathBuf,
    /// Replace every file, making a new CA: certificates issued before stop verifying.
    #[arg(long)]
    force: bool,
    /// Extra DNS name for the server certificate (repeatable), to reach it across a network.
    #[arg(long = "host", value_name = "NAME")]
    hosts: Vec<String>,
    /// Extra IP address for the server certificate (repeatable).
    #[arg(long = "ip", value_name = "ADDR")]
    ips: Vec<IpAddr>,
    /// Make a client certificate for user NAME with the `user` role (repeatable).
    #[arg(long = "client", value_name = "NAME")]
    clients: Vec<String>,
    /// Make a client certificate for user NAME with the `admin` role (repeatable).
    #[arg(long = "admin", value_name = "NAME")]
    admins: Vec<String>,
    /// Lifetime of server and client certificates, in days (the CA lives 10 years).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_VALIDITY_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
    /// Something other than making certificates.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Reissue NAME.pem (or server.pem: `renew server`) for the key it already has, valid
    /// --days: nothing secret travels again. The old certificate stays valid until it expires
    /// or is revoked.
    Renew {
        /// The user, or `server`.
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Sign a certificate signing request made by `tlschat enroll` on the user's machine: writes
    /// --out/NAME.pem (NAME from the request) for the user; their private key never comes here.
    Sign {
        /// The request file (NAME.csr).
        #[arg(value_name = "REQUEST")]
        request: PathBuf,
        /// Give the certificate the admin role.
        #[arg(long)]
        admin: bool,
    },
    /// Write NAME's certificate, private key and the CA certificate as one password-protected
    /// PKCS#12 file, --out/NAME.p12 (mode 0600), for browsers and other tools. Run it where
    /// NAME-key.pem is. The password is asked for twice on the terminal, or read from the first
    /// line of --password-file; never from the command line.
    Export {
        /// The user (--out/NAME.pem and --out/NAME-key.pem).
        #[arg(value_name = "NAME")]
        name: String,
        /// Write PKCS#12 (required: the format is named so that others can be added).
        #[arg(long, required = true)]
        p12: bool,
        /// Read the password from the first line of FILE instead of asking for it.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), as packages install it.
    #[command(hide = true)]
    Manpage,
    /// List the certificates this CA issued (--out/issued.txt): name, role, serial, end of
    /// validity and state (valid, expired, revoked).
    List,
    /// Revoke a user's certificates: every one issued to NAME is added to --out/revoked.txt and to the CA-signed
    /// revocation list --out/crl.pem, which the server enforces from its next SIGHUP (or RELOAD):
    /// the user's sessions are closed and their handshakes refused.
    Revoke {
        /// The user whose certificates (in --out/issued.txt, and --out/NAME.pem) are revoked.
        #[arg(value_name = "NAME", required_unless_present_any = ["serial", "refresh"])]
        name: Option<String>,
        /// Revoke by serial number (hex, as `openssl x509 -serial` prints it) instead.
        #[arg(long, value_name = "HEX", conflicts_with_all = ["name", "refresh"])]
        serial: Option<String>,
        /// Revoke nothing new: issue a fresh list (its next update 30 days on).
        #[arg(long, conflicts_with = "name")]
        refresh: bool,
        /// Why: unspecified, key-compromise, superseded, cessation, affiliation-changed.
        #[arg(long, value_name = "REASON", default_value = "unspecified")]
        reason: String,
    },
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
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tlschat-certgen: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The bundle's password: the first line of `file`, or asked for twice on the terminal.
fn export_password(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the password from {}", file.display()))?;
        return Ok(text.lines().next().unwrap_or_default().to_owned());
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt).context(
            "cannot ask for the password (no terminal?): give --password-file FILE instead",
        )
    };
    let first = ask("Password for the bundle: ")?;
    if ask("The same password again: ")? != first {
        anyhow::bail!("the two passwords differ; nothing was written");
    }
    Ok(first)
}

/// Prints the issued certificates, one line each.
fn list(dir: &std::path::Path) -> anyhow::Result<()> {
    let issued = tlschat_certgen::issued::read(dir)?;
    let revoked = tlschat_certgen::revoke::revoked_serials(dir)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut out = std::io::stdout().lock();
    let mut lines = vec![format!(
        "{:<16} {:<7} {:<40} {:<12} state",
        "name", "role", "serial", "valid until"
    )];
    for cert in &issued {
        let state = if revoked.contains(&cert.serial) {
            "revoked"
        } else if cert.not_after < now {
            "expired"
        } else {
            "valid"
        };
        lines.push(format!(
            "{:<16} {:<7} {:<40} {:<12} {state}",
            cert.name,
            cert.role,
            cert.serial,
            tlschat_proto::cert::date(cert.not_after)
        ));
    }
    if issued.is_empty() {
        lines.push(format!(
            "(none recorded in {}: certificates made before it existed are not listed)",
            dir.join(tlschat_certgen::issued::ISSUED_FILE).display()
        ));
    }
    for line in lines {
        match writeln!(out, "{line}") {
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other.context("writing the list")?,
        }
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Some(Command::Completions { shell }) => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "tlschat-certgen",
                &mut std::io::stdout(),
            );
            return Ok(());
        }
        Some(Command::Manpage) => {
            return match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(anyhow::Error::new(err).context("writing the manual page"))
                }
                _ => Ok(()),
            };
        }
        _ => {}
    }
    if let Some(Command::Renew { name }) = &cli.command {
        let cert = renew(&cli.out, name, cli.days)
            .with_context(|| format!("renewing {name} in {}", cli.out.display()))?;
        let _ = writeln!(
            std::io::stdout(),
            "renewed {} for {} days, same key. Next: give it to {name} (for the server: \
             SIGHUP, or an admin's RELOAD, picks it up)",
            cert.display(),
            cli.days
        );
        return Ok(());
    }
    if let Some(Command::Sign { request, admin }) = &cli.command {
        let role = if *admin { Role::Admin } else { Role::User };
        let signed = sign(request, &cli.out, role, cli.days)
            .with_context(|| format!("signing with the CA in {}", cli.out.display()))?;
        let _ = writeln!(
            std::io::stdout(),
            "{} {} for {} ({}, {} days). Next: send it to {}; it goes beside their key \
             ({}-key.pem), and they connect with --cert {}.pem --key {}-key.pem",
            if signed.replaced {
                "replaced"
            } else {
                "signed"
            },
            signed.cert.display(),
            signed.name,
            if *admin { "admin" } else { "user" },
            cli.days,
            signed.name,
            signed.name,
            signed.name,
            signed.name
        );
        return Ok(());
    }
    if let Some(Command::Export {
        name,
        password_file,
        ..
    }) = &cli.command
    {
        let password = export_password(password_file.as_deref())?;
        let written = export_p12(&cli.out, name, &password)
            .with_context(|| format!("exporting {name} from {}", cli.out.display()))?;
        let _ = writeln!(
            std::io::stdout(),
            "wrote {} ({name}'s certificate and private key{}, PKCS#12, mode 0600). Next: \
             import it where it is needed with its password; it holds the private key, so \
             keep it like NAME-key.pem and delete copies you no longer need",
            written.display(),
            if cli.out.join("ca.pem").exists() {
                ", and the CA certificate"
            } else {
                ""
            }
        );
        return Ok(());
    }
    if let Some(Command::List) = &cli.command {
        return list(&cli.out).with_context(|| format!("listing {}", cli.out.display()));
    }
    if let Some(Command::Revoke {
        name,
        serial,
        refresh,
        reason,
    }) = &cli.command
    {
        let target = match (name, serial, refresh) {
            (Some(name), _, _) => Target::Name(name.clone()),
            (_, Some(serial), _) => Target::Serial(serial.clone()),
            _ => Target::Refresh,
        };
        let done = revoke(&cli.out, &target, reason)
            .with_context(|| format!("revoking in {}", cli.out.display()))?;
        let serials = done.serials.join(", ");
        let what = match (done.serials.len(), &target) {
            (0, Target::Refresh) => "issued a fresh revocation list".to_owned(),
            (0, _) => "already revoked; issued a fresh revocation list".to_owned(),
            (1, Target::Name(name)) => format!("revoked {name} (serial {serials})"),
            (_, Target::Name(name)) => format!("revoked {name} (serials {serials})"),
            _ => format!("revoked serial {serials}"),
        };
        let _ = writeln!(
            std::io::stdout(),
            "{what}: {} lists {} certificate(s). Next: copy it to the server (--crl) and send it \
             SIGHUP (or an admin's RELOAD): revoked users are disconnected at once.",
            done.crl.display(),
            done.total
        );
        return Ok(());
    }
    let options = Options {
        out_dir: cli.out,
        force: cli.force,
        hosts: cli.hosts,
        ips: cli.ips,
        clients: cli.clients,
        admins: cli.admins,
        validity_days: cli.days,
    };
    let report = generate(&options)
        .with_context(|| format!("generating certificates in {}", options.out_dir.display()))?;
    // A reader that went away (`| head`) is not an error: the files are written either way.
    let mut out = std::io::stdout().lock();
    for entry in &report.entries {
        let written = writeln!(
            out,
            "{:<8} {} + {}: {}",
            entry.outcome,
            entry.cert.display(),
            entry.key.display(),
            entry.description
        );
        match written {
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other.context("writing the report")?,
        }
    }
    Ok(())
}
