//! Development certificates for tlschat: a CA, a server certificate and client certificates.
//!
//! [`generate`] writes, into one folder:
//!
//! | file | what it is |
//! |---|---|
//! | `ca.pem` | the CA certificate: give it to every server and client, it is what they trust |
//! | `ca-key.pem` | the CA private key: keep it to issue more certificates, share it with nobody |
//! | `server.pem`, `server-key.pem` | the server's certificate (for `localhost`, `127.0.0.1`, `::1` and any `--host`/`--ip`) and key |
//! | `NAME.pem`, `NAME-key.pem` | a client certificate for user NAME and its key |
//!
//! A client certificate names its user in the subject common name (CN) and carries a role in
//! the organizational unit (OU): `admin` or `user`. The server trusts both because only the CA
//! can issue them. Keys are ECDSA P-256, written with mode 0600 and never printed.
//!
//! Generation is idempotent: a certificate whose files exist and already say what was asked
//! (names, role) is kept; `force` replaces everything. A new CA reissues every certificate in the
//! folder, users not named this time included, since the old ones would not verify against it.
//!
//! Modules: [`files`] writes files atomically with the right modes; [`inspect`] reads what an
//! existing certificate says. This crate does not do revocation or renewal reminders.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod export;
pub mod files;
pub mod inspect;
pub mod issued;
pub mod p12;
pub mod renew;
pub mod revoke;
pub mod sign;

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::DnsName;
use tlschat_proto::names::{self, NameError, ADMIN_ROLE, USER_ROLE};

use crate::files::{write_private, write_public};
use crate::inspect::CertSummary;

/// Default lifetime of server and client certificates, in days.
pub const DEFAULT_VALIDITY_DAYS: u32 = 365;

/// Lifetime of the CA certificate, in days.
pub const CA_VALIDITY_DAYS: u32 = 3650;

/// Names every server certificate carries, so a local server works out of the box.
pub const DEFAULT_SERVER_HOSTS: &[&str] = &["localhost"];

/// Addresses every server certificate carries.
pub const DEFAULT_SERVER_IPS: &[IpAddr] = &[
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    /// Folder the files go to (created if missing).
    pub out_dir: PathBuf,
    /// Replace existing files instead of keeping them.
    pub force: bool,
    /// Extra DNS names for the server certificate.
    pub hosts: Vec<String>,
    /// Extra IP addresses for the server certificate.
    pub ips: Vec<IpAddr>,
    /// Users who get a client certificate with the `user` role.
    pub clients: Vec<String>,
    /// Users who get a client certificate with the `admin` role.
    pub admins: Vec<String>,
    /// Lifetime of server and client certificates, in days.
    pub validity_days: u32,
}

impl Options {
    /// Options writing to `out_dir` with defaults for everything else.
    pub fn new(out_dir: impl Into<PathBuf>) -> Self {
        Self {
            out_dir: out_dir.into(),
            force: false,
            hosts: Vec::new(),
            ips: Vec::new(),
            clients: Vec::new(),
            admins: Vec::new(),
            validity_days: DEFAULT_VALIDITY_DAYS,
        }
    }
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertgenError {
    /// Reading or writing a file failed.
    #[error("cannot {action} {}", .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A user name breaks the nickname rules.
    #[error("invalid user name {name:?}")]
    BadUserName {
        /// The name given.
        name: String,
        /// The rule it broke.
        #[source]
        source: NameError,
    },
    /// A host name is not a valid DNS name.
    #[error("invalid host name {0:?}")]
    BadHostName(String),
    /// One file of a certificate/key pair exists without the other.
    #[error("{} exists but {} does not; remove it or pass --force", .existing.display(), .missing.display())]
    HalfPair {
        /// The file that exists.
        existing: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// An existing file could not be understood.
    #[error("{} is not a usable PEM certificate or key: {reason}; remove it or pass --force", .path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The certificate library failed.
    #[error("certificate generation failed")]
    Rcgen(#[from] rcgen::Error),
    /// A certificate signing request cannot be signed.
    #[error("cannot sign {}: {reason}", .path.display())]
    BadRequest {
        /// The request file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A PKCS#12 bundle cannot be made.
    #[error("cannot make the bundle: {0}")]
    Bundle(#[from] p12::P12Error),
    /// A revocation cannot be made as asked.
    #[error("{0}")]
    BadRevocation(String),
    /// A key or certificate file could not be written safely (including a folder that others
    /// can write to).
    #[error(transparent)]
    File(#[from] tlschat_files::FileError),
}

/// What happened to one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did not exist and was made.
    Created,
    /// It existed, said what was asked, and was kept.
    Kept,
    /// It existed but was made again (forced, new CA, or different names or role).
    Reissued,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Created => "created",
            Self::Kept => "kept",
            Self::Reissued => "reissued",
        })
    }
}

/// One certificate in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The certificate file.
    pub cert: PathBuf,
    /// Its private key file.
    pub key: PathBuf,
    /// What happened.
    pub outcome: Outcome,
    /// One line on what it is for.
    pub description: String,
}

/// Everything [`generate`] did, in order: CA, server, clients.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One entry per certificate.
    pub entries: Vec<Entry>,
}

/// The role a client certificate grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// A user.
    User,
    /// An admin (`KICK`, `SHUTDOWN`, `RELOAD`, `STATS`).
    Admin,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Self::User => USER_ROLE,
            Self::Admin => ADMIN_ROLE,
        }
    }
}

/// Makes or keeps the CA, the server certificate and the requested client certificates.
///
/// # Errors
///
/// Fails on an invalid user or host name before writing anything, on a half-present pair, on an
/// unreadable existing file, and on I/O errors (each names the file).
pub fn generate(options: &Options) -> Result<Report, CertgenError> {
    let mut users = users(options)?;
    let server_names = server_names(options)?;
    create_dir(&options.out_dir)?;

    let mut report = Report::default();
    let ca = Ca::load_or_create(options, &mut report)?;
    let fresh_ca = report.entries[0].outcome != Outcome::Kept;
    if fresh_ca {
        // Certificates signed by the old CA would no longer verify: reissue them all.
        for (name, role) in existing_users(&options.out_dir) {
            if !users.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
                users.push((name, role));
            }
        }
    }

    let wants = |summary: &CertSummary| server_names.iter().all(|n| summary.sans.contains(n));
    let server = Leaf {
        stem: "server",
        description: format!("server certificate for {}", display_list(&server_names)),
        params: server_params(&server_names, options.validity_days)?,
    };
    server.issue(
        &ca,
        options.force || fresh_ca,
        wants,
        &options.out_dir,
        &mut report,
    )?;

    for (name, role) in users {
        let leaf = Leaf {
            stem: &name,
            description: format!(
                "client certificate for user {name} (role {})",
                role.as_str()
            ),
            params: client_params(&name, role, options.validity_days),
        };
        let wants = |s: &CertSummary| {
            s.common_name.as_deref() == Some(name.as_str())
                && s.role.as_deref() == Some(role.as_str())
        };
        leaf.issue(
            &ca,
            options.force || fresh_ca,
            wants,
            &options.out_dir,
            &mut report,
        )?;
    }
    Ok(report)
}

/// The requested users, admins last so `--client x --admin x` makes x an admin.
fn users(options: &Options) -> Result<Vec<(String, Role)>, CertgenError> {
    let mut users: Vec<(String, Role)> = Vec::new();
    let all = options
        .clients
        .iter()
        .map(|n| (n, Role::User))
        .chain(options.admins.iter().map(|n| (n, Role::Admin)));
    for (name, role) in all {
        names::validate_nick(name).map_err(|source| CertgenError::BadUserName {
            name: name.clone(),
            source,
        })?;
        match users.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some(existing) if role == Role::Admin => existing.1 = Role::Admin,
            Some(_) => {}
            None => users.push((name.clone(), role)),
        }
    }
    Ok(users)
}

/// The client certificates already in `dir`: every `NAME.pem` with a `NAME-key.pem` whose
/// certificate names user NAME. Files that do not fit are left alone.
fn existing_users(dir: &Path) -> Vec<(String, Role)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(String, Role)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let file = entry.file_name().into_string().ok()?;
            let stem = file.strip_suffix(".pem")?;
            if stem.ends_with("-key") || names::validate_nick(stem).is_err() {
                return None;
            }
            let (cert, key) = pair_paths(dir, stem);
            let summary = inspect::summarize_file(&cert)
                .ok()
                .filter(|_| key.is_file())?;
            let role = match summary.role.as_deref() {
                Some(ADMIN_ROLE) => Role::Admin,
                _ => Role::User,
            };
            (summary.common_name.as_deref() == Some(stem)).then(|| (stem.to_owned(), role))
        })
        .collect();
    found.sort();
    found
}

/// Subject alternative names for the server certificate, as strings rcgen understands.
fn server_names(options: &Options) -> Result<BTreeSet<String>, CertgenError> {
    let mut names: BTreeSet<String> = DEFAULT_SERVER_HOSTS.iter().map(|h| h.to_string()).collect();
    for host in &options.hosts {
        if host.parse::<IpAddr>().is_ok() || DnsName::try_from(host.as_str()).is_err() {
            return Err(CertgenError::BadHostName(host.clone()));
        }
        names.insert(host.to_ascii_lowercase());
    }
    names.extend(
        DEFAULT_SERVER_IPS
            .iter()
            .chain(&options.ips)
            .map(IpAddr::to_string),
    );
    Ok(names)
}

fn display_list(names: &BTreeSet<String>) -> String {
    names
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The CA in `dir` (`ca.pem`, `ca-key.pem`), to issue with.
pub(crate) fn load_ca(dir: &Path) -> Result<Issuer<'static, KeyPair>, CertgenError> {
    let (cert, key) = pair_paths(dir, "ca");
    load_issuer(&cert, &key)
}

/// An issuer from a CA certificate file and its key file.
fn load_issuer(cert: &Path, key: &Path) -> Result<Issuer<'static, KeyPair>, CertgenError> {
    Issuer::from_ca_cert_pem(&files::read_text(cert)?, load_key(key)?).map_err(|e| {
        CertgenError::Unreadable {
            path: cert.to_owned(),
            reason: e.to_string(),
        }
    })
}

/// The CA: its certificate and key, loaded from disk or freshly made.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn load_or_create(options: &Options, report: &mut Report) -> Result<Self, CertgenError> {
        let (cert_path, key_path) = pair_paths(&options.out_dir, "ca");
        let description = "CA certificate: what servers and clients trust".to_owned();
        let existing = present_pair(&cert_path, &key_path)?;
        if existing && !options.force {
            let issuer = load_issuer(&cert_path, &key_path)?;
            report.push(cert_path, key_path, Outcome::Kept, description);
            return Ok(Self { issuer });
        }
        let key = KeyPair::generate()?;
        // A suffix from the CA's own (random) key tells two dev CAs apart in messages and in
        // `openssl x509 -subject`.
        let suffix: String = key.public_key_raw()[1..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("tlschat development CA {suffix}"),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, "tlschat");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params, CA_VALIDITY_DAYS);
        let cert = params.self_signed(&key)?;
        write_private(&key_path, &key.serialize_pem())?;
        write_public(&cert_path, &cert.pem())?;
        let outcome = if existing {
            Outcome::Reissued
        } else {
            Outcome::Created
        };
        report.push(cert_path, key_path, outcome, description);
        Ok(Self {
            issuer: Issuer::new(params, key),
        })
    }
}

/// A server or client certificate to keep or issue.
struct Leaf<'a> {
    stem: &'a str,
    description: String,
    params: CertificateParams,
}

impl Leaf<'_> {
    fn issue(
        self,
        ca: &Ca,
        replace: bool,
        wants: impl Fn(&CertSummary) -> bool,
        dir: &Path,
        report: &mut Report,
    ) -> Result<(), CertgenError> {
        let (cert_path, key_path) = pair_paths(dir, self.stem);
        let existing = present_pair(&cert_path, &key_path)?;
        if existing && !replace {
            let summary = inspect::summarize_file(&cert_path)?;
            if wants(&summary) {
                // Say what the kept file holds, which may be more than was asked this time.
                let description = match self.stem {
                    "server" => format!(
                        "server certificate for {}",
                        display_list(&summary.sans.into_iter().collect())
                    ),
                    _ => self.description,
                };
                report.push(cert_path, key_path, Outcome::Kept, description);
                return Ok(());
            }
        }
        let key = KeyPair::generate()?;
        let cert = self.params.signed_by(&key, &ca.issuer)?;
        write_private(&key_path, &key.serialize_pem())?;
        issued::write(dir, self.stem, &cert_path, &cert)?;
        let outcome = if existing {
            Outcome::Reissued
        } else {
            Outcome::Created
        };
        report.push(cert_path, key_path, outcome, self.description);
        Ok(())
    }
}

impl Report {
    fn push(&mut self, cert: PathBuf, key: PathBuf, outcome: Outcome, description: String) {
        self.entries.push(Entry {
            cert,
            key,
            outcome,
            description,
        });
    }
}

pub(crate) fn server_params(
    names: &BTreeSet<String>,
    days: u32,
) -> Result<CertificateParams, CertgenError> {
    let mut params = CertificateParams::new(names.iter().cloned().collect::<Vec<_>>())?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "tlschat server");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "tlschat");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, days);
    Ok(params)
}

pub(crate) fn client_params(name: &str, role: Role, days: u32) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "tlschat");
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, role.as_str());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, days);
    params
}

fn set_validity(params: &mut CertificateParams, days: u32) {
    const DAY: Duration = Duration::from_secs(24 * 60 * 60);
    let now = SystemTime::now();
    // Backdate by an hour so a peer whose clock is slightly behind still accepts it.
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + DAY * days).into();
}

/// The certificate and key paths for a file stem: `stem.pem` and `stem-key.pem`.
pub fn pair_paths(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}-key.pem")),
    )
}

/// True when both files exist, false when neither does, an error when only one does.
fn present_pair(cert: &Path, key: &Path) -> Result<bool, CertgenError> {
    match (cert.exists(), key.exists()) {
        (true, true) => Ok(true),
        (false, false) => Ok(false),
        (true, false) => Err(CertgenError::HalfPair {
            existing: cert.to_owned(),
            missing: key.to_owned(),
        }),
        (false, true) => Err(CertgenError::HalfPair {
            existing: key.to_owned(),
            missing: cert.to_owned(),
        }),
    }
}

pub(crate) fn load_key(path: &Path) -> Result<KeyPair, CertgenError> {
    let pem = files::read_text(path)?;
    KeyPair::from_pem(&pem).map_err(|e| CertgenError::Unreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Creates the output folder if missing (writable by its owner only), then refuses it if others
/// can write to it or it is not ours: they could plant files or swap the CA key.
fn create_dir(dir: &Path) -> Result<(), CertgenError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o755);
    builder.create(dir).map_err(|source| CertgenError::Io {
        action: "create folder",
        path: dir.to_owned(),
        source,
    })?;
    Ok(tlschat_files::check_dir(dir)?)
}

#[cfg(test)]
mod tests;
