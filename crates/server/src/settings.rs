//! Every server setting, declared once in the `settings!` table: name, type, default, allowed
//! range (named bounds), value name and help. From that one table come the command-line flag,
//! the TOML key (the flag's long name: `handshake-timeout = "10s"`), validation, `--help`, the
//! resolved [`Config`], and the settings tables of README.md and docs/PROTOCOL.md (a test
//! compares them). Adding a setting is one table entry plus its use.
//!
//! A flag given on the command line wins over the file, the file over the defaults. Unknown
//! keys and bad values are errors that name the key; every value is range-checked in one
//! place, [`Settings::apply`], whichever source it came from.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::ValueRange;
use serde::{Deserialize, Deserializer};
use tlschat_proto::addr::HostPort;
use tlschat_proto::duration::{format_duration, parse_duration};

use crate::chat::hub::RoomLimits;
use crate::config::*;
use crate::limits::RateLimit;
use crate::store::embedded::Fsync;
use crate::udp::{self, UdpConfig};

/// Why settings could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read the configuration file {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or bad values.
    #[error("invalid configuration file {}: {message}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the key and the line.
        message: String,
    },
    /// A value is out of its range.
    #[error("invalid value for {key}: {value} (allowed: {allowed})")]
    Range {
        /// The setting's name (flag and file key).
        key: String,
        /// The value given.
        value: String,
        /// What is allowed.
        allowed: String,
    },
}

/// A type a setting can have: how it is read from a flag or a file, and how it is written.
pub trait SettingValue: Clone + PartialOrd + Send + Sync + 'static {
    /// Reads the value from its text (a flag's argument, or a string in the file).
    fn parse(text: &str) -> Result<Self, String>;
    /// Reads the value from a whole number in the file.
    fn from_int(n: u64) -> Result<Self, String> {
        Self::parse(&n.to_string())
    }
    /// Reads the value from `true` or `false` in the file.
    fn from_bool(b: bool) -> Result<Self, String> {
        Err(format!("expected a value, not {b}"))
    }
    /// How the value is written in flags, files, help and docs.
    fn show(&self) -> String;
    /// How the value is written in a TOML settings file (a quoted string unless it is a
    /// number or a switch).
    fn toml(&self) -> String {
        format!("{:?}", self.show())
    }
    /// Arguments the flag takes: one, or none for a switch.
    fn num_args() -> ValueRange {
        ValueRange::SINGLE
    }
    /// The value a switch given without an argument means.
    const MISSING: Option<&'static str> = None;
}

macro_rules! from_str_setting {
    ($($ty:ty),*) => {$(
        impl SettingValue for $ty {
            fn parse(text: &str) -> Result<Self, String> {
                text.parse().map_err(|e| format!("{e}"))
            }
            fn show(&self) -> String {
                self.to_string()
            }
            fn toml(&self) -> String {
                let text = self.to_string();
                if text.parse::<u64>().is_ok() {
                    text
                } else {
                    format!("{text:?}")
                }
            }
        }
    )*};
}

from_str_setting!(SocketAddr, HostPort, String, usize, u32, u64);

impl SettingValue for PathBuf {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.into())
    }
    fn show(&self) -> String {
        self.display().to_string()
    }
}

impl SettingValue for Duration {
    fn parse(text: &str) -> Result<Self, String> {
        parse_duration(text).map_err(|e| e.to_string())
    }
    fn from_int(n: u64) -> Result<Self, String> {
        Err(format!(
            "invalid duration {n}: write a whole number with a unit, such as 250ms, 10s, 5m, 1h or 90d"
        ))
    }
    fn show(&self) -> String {
        format_duration(*self)
    }
}

impl SettingValue for bool {
    fn parse(text: &str) -> Result<Self, String> {
        text.parse()
            .map_err(|_| format!("expected true or false, not {text:?}"))
    }
    fn from_bool(b: bool) -> Result<Self, String> {
        Ok(b)
    }
    fn show(&self) -> String {
        if *self { "on" } else { "off" }.to_owned()
    }
    fn toml(&self) -> String {
        self.to_string()
    }
    fn num_args() -> ValueRange {
        ValueRange::new(0..=1)
    }
    const MISSING: Option<&'static str> = Some("true");
}

impl SettingValue for ClientAuth {
    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "none" => Ok(Self::None),
            "optional" => Ok(Self::Optional),
            "required" => Ok(Self::Required),
            _ => Err(format!("expected none, optional or required, not {text:?}")),
        }
    }
    fn show(&self) -> String {
        match self {
            Self::None => "none",
            Self::Optional => "optional",
            Self::Required => "required",
        }
        .to_owned()
    }
}

/// `none`, or a file: the value of the settings that name a file or turn it off.
fn file_or_none(text: &str) -> Result<Option<PathBuf>, String> {
    match text {
        "none" => Ok(None),
        "" => Err("expected a file, or none".to_owned()),
        path => Ok(Some(path.into())),
    }
}

impl SettingValue for StoreSetting {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(file_or_none(text)?.map_or(Self::None, Self::File))
    }
    fn show(&self) -> String {
        match self {
            Self::None => "none".to_owned(),
            Self::File(path) => path.display().to_string(),
        }
    }
}

impl SettingValue for CrlSetting {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(file_or_none(text)?.map_or(Self::None, Self::File))
    }
    fn show(&self) -> String {
        match self {
            Self::None => "none".to_owned(),
            Self::WhenPresent(path) => format!("{} (when present)", path.display()),
            Self::File(path) => path.display().to_string(),
        }
    }
    fn toml(&self) -> String {
        match self {
            Self::None => "\"none\"".to_owned(),
            Self::WhenPresent(path) | Self::File(path) => {
                format!("{:?}", path.display().to_string())
            }
        }
    }
}

impl SettingValue for Fsync {
    fn parse(text: &str) -> Result<Self, String> {
        text.parse()
    }
    fn show(&self) -> String {
        self.as_str().to_owned()
    }
}

impl SettingValue for MetricsListen {
    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "off" => Ok(Self::Off),
            addr => addr.parse().map(Self::On).map_err(|e| format!("{e}")),
        }
    }
    fn show(&self) -> String {
        match self {
            Self::Off => "off".to_owned(),
            Self::On(addr) => addr.to_string(),
        }
    }
}

impl SettingValue for ClusterSetting {
    fn parse(text: &str) -> Result<Self, String> {
        if text == "off" {
            return Ok(Self::Off);
        }
        let urls: Vec<String> = text.split(',').map(|u| u.trim().to_owned()).collect();
        for url in &urls {
            let rest = url
                .strip_prefix("nats://")
                .or_else(|| url.strip_prefix("tls://"))
                .ok_or_else(|| {
                    format!("expected nats://HOST:PORT or tls://HOST:PORT, not {url:?}")
                })?;
            rest.parse::<HostPort>()
                .map_err(|e| format!("{url:?}: {e}"))?;
        }
        Ok(Self::On(urls))
    }
    fn show(&self) -> String {
        match self {
            Self::Off => "off".to_owned(),
            Self::On(urls) => urls.join(","),
        }
    }
}

impl SettingValue for NodeName {
    fn parse(text: &str) -> Result<Self, String> {
        if text == "auto" {
            return Ok(Self::Auto);
        }
        let fits = !text.is_empty()
            && text.len() <= MAX_NODE_NAME
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        match fits {
            true => Ok(Self::Named(text.to_owned())),
            false => Err(format!(
                "a node name is 1 to {MAX_NODE_NAME} letters, digits, '.', '_' or '-', not {text:?}"
            )),
        }
    }
    fn show(&self) -> String {
        match self {
            Self::Auto => "auto".to_owned(),
            Self::Named(name) => name.clone(),
        }
    }
}

impl SettingValue for Option<PathBuf> {
    fn parse(text: &str) -> Result<Self, String> {
        file_or_none(text)
    }
    fn show(&self) -> String {
        self.as_ref()
            .map_or_else(|| "none".to_owned(), |p| p.display().to_string())
    }
}

impl SettingValue for UdpListen {
    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "off" => Ok(Self::Off),
            addr => addr.parse().map(Self::On).map_err(|e| format!("{e}")),
        }
    }
    fn show(&self) -> String {
        match self {
            Self::Off => "off".to_owned(),
            Self::On(addr) => addr.to_string(),
        }
    }
}

/// What a setting may be: anything its type reads, or a closed range.
#[derive(Debug, Clone, Copy)]
pub enum Bounds<T> {
    /// Any value of the type.
    Any,
    /// From the first to the second, both included.
    Between(T, T),
}

impl<T: SettingValue> Bounds<T> {
    /// `allowed` as shown in errors and docs.
    fn show(&self) -> String {
        match self {
            Self::Any => "any".to_owned(),
            Self::Between(min, max) => format!("{} to {}", min.show(), max.show()),
        }
    }

    fn check(&self, key: &str, value: &T) -> Result<(), SettingsError> {
        match self {
            Self::Between(min, max) if value < min || value > max => Err(SettingsError::Range {
                key: key.to_owned(),
                value: value.show(),
                allowed: self.show(),
            }),
            _ => Ok(()),
        }
    }
}

/// One row of the settings table, as documented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingDoc {
    /// The flag's long name, which is also the file key.
    pub key: String,
    /// What the flag's argument is (`BYTES`, `DURATION`…).
    pub value_name: &'static str,
    /// The default, as written in flags.
    pub default: String,
    /// The default, as written in a TOML settings file.
    pub toml_default: String,
    /// What is allowed.
    pub allowed: String,
    /// What the setting does.
    pub help: &'static str,
}

/// A setting's flag and key from its field name.
fn key_of(field: &str) -> String {
    field.replace('_', "-")
}

fn help_line<T: SettingValue>(help: &str, default: &T) -> String {
    format!("{help} [default: {}]", default.show())
}

/// Reads a setting from a file: a string, a whole number or a boolean, as its type takes.
fn deserialize_setting<'de, D: Deserializer<'de>, T: SettingValue>(
    d: D,
) -> Result<Option<T>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        Int(u64),
        Text(String),
    }
    let value = match Raw::deserialize(d)? {
        Raw::Bool(b) => T::from_bool(b),
        Raw::Int(n) => T::from_int(n),
        Raw::Text(text) => T::parse(&text),
    };
    value.map(Some).map_err(serde::de::Error::custom)
}

/// Declares every setting (see the module documentation). Each entry:
/// `field: Type = default, "VALUE_NAME", bounds, "help";`
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident: $ty:ty = $default:expr, $value_name:literal, $bounds:expr, $help:literal;
    )*) => {
        /// Every setting; each may come from a flag or from the file (unset when `None`).
        #[derive(Debug, Clone, Default, clap::Args, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        pub struct Settings {
            $(
                #[arg(
                    long,
                    value_name = $value_name,
                    help = help_line::<$ty>($help, &$default),
                    value_parser = <$ty as SettingValue>::parse,
                    num_args = <$ty as SettingValue>::num_args(),
                    default_missing_value = <$ty as SettingValue>::MISSING,
                )]
                #[serde(default, deserialize_with = "deserialize_setting")]
                #[doc = $help]
                pub $field: Option<$ty>,
            )*
        }

        /// Everything the server needs to run: every setting, resolved and range-checked.
        #[derive(Debug, Clone)]
        pub struct Config {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Config {
            /// Every setting at its default.
            pub fn defaults() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        /// The settings table, as README.md and docs/PROTOCOL.md show it.
        pub fn table() -> Vec<SettingDoc> {
            vec![$(
                SettingDoc {
                    key: key_of(stringify!($field)),
                    value_name: $value_name,
                    default: <$ty as SettingValue>::show(&$default),
                    toml_default: <$ty as SettingValue>::toml(&$default),
                    allowed: Bounds::<$ty>::show(&$bounds),
                    help: $help,
                },
            )*]
        }

        impl Settings {
            /// These settings, with `lower`'s filling whatever these leave unset.
            pub fn over(self, lower: Self) -> Self {
                Self { $( $field: self.$field.or(lower.$field), )* }
            }

            /// The server configuration: defaults, overridden by whatever is set here,
            /// range-checked.
            pub fn apply(self) -> Result<Config, SettingsError> {
                let mut config = Config::defaults();
                $(
                    if let Some(value) = self.$field {
                        Bounds::<$ty>::check(&$bounds, &key_of(stringify!($field)), &value)?;
                        config.$field = value;
                    }
                )*
                config.check()?;
                Ok(config)
            }
        }
    };
}

/// Durations: at least a millisecond, at most a day.
const TIMEOUTS: Bounds<Duration> = Bounds::Between(MIN_TIMEOUT, MAX_TIMEOUT);

/// Counts of things (connections, rooms, keys…).
const COUNTS: Bounds<usize> = Bounds::Between(1, MAX_COUNT);

settings! {
    /// Address to listen on.
    listen: HostPort = HostPort::from(DEFAULT_LISTEN), "ADDR", Bounds::Any,
        "Address to listen on: host or IP, port 6254 unless given (0.0.0.0 for the network)";
    /// Server certificate chain (PEM), leaf first.
    cert: PathBuf = PathBuf::from(DEFAULT_CERT), "FILE", Bounds::Any,
        "Server certificate chain (PEM)";
    /// Server private key (PEM).
    key: PathBuf = PathBuf::from(DEFAULT_KEY), "FILE", Bounds::Any,
        "Server private key (PEM)";
    /// CA certificate(s) (PEM) that client certificates must chain to.
    ca: PathBuf = PathBuf::from(DEFAULT_CA), "FILE", Bounds::Any,
        "CA that client certificates must chain to (PEM)";
    /// Certificate revocation list.
    crl: CrlSetting = CrlSetting::WhenPresent(DEFAULT_CRL.into()), "FILE|none", Bounds::Any,
        "Revocation list (PEM, from tlschat-certgen revoke): revoked certificates are refused, and cut off on reload";
    /// Warn this long before a certificate or the revocation list runs out.
    expiry_warning: Duration = DEFAULT_EXPIRY_WARNING, "DURATION",
        Bounds::Between(MIN_TIMEOUT, MAX_RETENTION),
        "Log a warning (at start, then daily) when the server or CA certificate or the revocation list runs out within this";
    /// Client certificate policy.
    client_auth: ClientAuth = ClientAuth::Optional, "MODE", Bounds::Any,
        "Client certificates: none, optional (verified when sent), required (mutual TLS)";
    /// Also accept TLS 1.2 (TLS 1.3 only when false).
    tls12: bool = false, "BOOL", Bounds::Any,
        "Also accept TLS 1.2 (only TLS 1.3 otherwise)";
    /// Name sent in the greeting.
    server_name: String = DEFAULT_SERVER_NAME.to_owned(), "NAME", Bounds::Any,
        "Name this server gives itself in the greeting (certificates, not this, decide host names)";
    /// Longest request line, in bytes.
    max_line_len: usize = DEFAULT_MAX_LINE_LEN, "BYTES",
        Bounds::Between(MIN_LINE_LEN, MAX_LINE_LEN),
        "Longest request line; longer ones get ERR LINE_TOO_LONG";
    /// Time allowed for the TLS handshake.
    handshake_timeout: Duration = DEFAULT_HANDSHAKE_TIMEOUT, "DURATION", TIMEOUTS,
        "Time a client has to finish the TLS handshake";
    /// Time allowed for one write to a client.
    write_timeout: Duration = DEFAULT_WRITE_TIMEOUT, "DURATION", TIMEOUTS,
        "Time one write may take before a non-reading client is cut off";
    /// Time graceful shutdown waits for connections to close.
    drain_timeout: Duration = DEFAULT_DRAIN_TIMEOUT, "DURATION", TIMEOUTS,
        "Time shutdown waits for clients to receive what is queued";
    /// No input for this long closes a connection (a keepalive ping goes out halfway).
    idle_timeout: Duration = DEFAULT_IDLE_TIMEOUT, "DURATION", TIMEOUTS,
        "No input for this long closes a connection; EVENT PING goes out halfway";
    /// Maximum concurrent connections.
    max_connections: usize = DEFAULT_MAX_CONNECTIONS, "N", COUNTS,
        "Concurrent connections; more wait in the listen backlog";
    /// Concurrent connections from one source address at most.
    max_connections_per_ip: usize = DEFAULT_MAX_CONNECTIONS_PER_IP, "N", COUNTS,
        "Concurrent connections from one address; more are closed at once, before TLS";
    /// TLS handshakes in progress from one source address at most.
    max_handshakes_per_ip: usize = DEFAULT_MAX_HANDSHAKES_PER_IP, "N", COUNTS,
        "TLS handshakes in progress from one address; more are closed at once";
    /// Bytes that may wait in one client's outbound queue before it is cut off.
    max_pending_bytes: usize = DEFAULT_MAX_PENDING_BYTES, "BYTES",
        Bounds::Between(MIN_PENDING_BYTES, MAX_PENDING_BYTES),
        "Bytes queued for one client before it is cut off as a slow consumer";
    /// Sustained requests per second per connection.
    rate: u32 = DEFAULT_RATE_PER_SECOND, "N", Bounds::Between(1, MAX_RATE),
        "Requests a second per connection, sustained; more get ERR RATE_LIMITED";
    /// Requests per connection allowed at once after a quiet spell.
    rate_burst: u32 = DEFAULT_RATE_BURST, "N", Bounds::Between(1, MAX_RATE),
        "Requests per connection allowed at once after a quiet spell";
    /// Sustained request bytes per second per connection.
    rate_bytes: u64 = DEFAULT_RATE_BYTES, "BYTES",
        Bounds::Between(MIN_RATE_BYTES, MAX_RATE_BYTES),
        "Request bytes a second per connection, sustained; more get ERR RATE_LIMITED";
    /// Request bytes per connection allowed at once (at least `max_line_len`).
    rate_bytes_burst: u64 = DEFAULT_RATE_BYTES_BURST, "BYTES",
        Bounds::Between(MIN_RATE_BYTES, MAX_RATE_BYTES),
        "Request bytes per connection allowed at once (at least max-line-len)";
    /// Largest direct message payload, in bytes.
    max_dm_bytes: usize = DEFAULT_MAX_DM_BYTES, "BYTES",
        Bounds::Between(MIN_DM_BYTES, MAX_LINE_LEN),
        "Largest direct message (its text, or its sealed E2E message); longer get ERR TOO_LONG";
    /// Refused requests (net of accepted ones) before a flooding client is disconnected.
    max_strikes: u32 = DEFAULT_MAX_STRIKES, "N", Bounds::Between(1, MAX_RATE),
        "Rate-limited requests (net of accepted ones) before EVENT DISCONNECT FLOOD";
    /// Rooms one user may be in.
    max_rooms_per_user: usize = DEFAULT_MAX_ROOMS_PER_USER, "N", COUNTS,
        "Rooms one user may be in; more get ERR TOO_MANY_ROOMS";
    /// Members one room may have.
    max_room_members: usize = DEFAULT_MAX_ROOM_MEMBERS, "N", COUNTS,
        "Members one room may have; more get ERR ROOM_FULL";
    /// Connections one verified user may have at once.
    max_sessions_per_user: usize = DEFAULT_MAX_SESSIONS_PER_USER, "N", Bounds::Between(1, 1000),
        "Connections one verified user may have at once (devices, windows); past it the oldest is closed with REPLACED";
    /// Devices one user may publish an E2E key for.
    max_devices_per_user: usize = DEFAULT_MAX_DEVICES_PER_USER, "N",
        Bounds::Between(1, tlschat_proto::e2e::MAX_DEVICES),
        "Devices one user may publish an E2E key for; more get ERR TOO_MANY_DEVICES";
    /// Published E2E keys kept at most.
    max_published_keys: usize = DEFAULT_MAX_PUBLISHED_KEYS, "N", COUNTS,
        "Published E2E keys kept; past this the least recently published is dropped";
    /// Where messages are kept: a redb file, or none.
    store: StoreSetting = StoreSetting::default_file(), "FILE|none", Bounds::Any,
        "Message store file (history, ids that survive restarts); none keeps no history";
    /// When a commit counts as done.
    fsync: Fsync = Fsync::Always, "WHEN", Bounds::Any,
        "always: OK means on disk; never: OK survives a server crash, not a power loss";
    /// Largest HISTORY page.
    max_history_page: usize = DEFAULT_MAX_HISTORY_PAGE, "N", Bounds::Between(1, MAX_HISTORY_PAGE),
        "Most messages one HISTORY returns (its LIMIT is capped to this; 50 when not given)";
    /// Messages older than this are deleted.
    retention: Duration = DEFAULT_RETENTION, "DURATION",
        Bounds::Between(MIN_RETENTION, MAX_RETENTION),
        "Stored messages older than this are deleted (in the background)";
    /// Messages kept per room or conversation.
    max_history_per_room: usize = DEFAULT_MAX_HISTORY_PER_ROOM, "N", COUNTS,
        "Stored messages kept per room or conversation; older ones are deleted (in the background)";
    /// How often old messages are deleted.
    prune_interval: Duration = DEFAULT_PRUNE_INTERVAL, "DURATION", TIMEOUTS,
        "How often the store deletes what retention and max-history-per-room no longer keep";
    /// Direct messages waiting at most for a user who is away.
    max_offline_per_user: usize = DEFAULT_MAX_OFFLINE_PER_USER, "N", COUNTS,
        "Direct messages kept for a user who is away; more get ERR INBOX_FULL";
    /// Missed messages sent per conversation to a returning user.
    max_catch_up: usize = DEFAULT_MAX_CATCH_UP, "N", COUNTS,
        "Missed messages sent per room or conversation when a verified user connects; older ones come as EVENT GAP";
    /// NATS servers of a cluster, or off.
    cluster: ClusterSetting = ClusterSetting::Off, "URLS|off", Bounds::Any,
        "Run as one node of a cluster: NATS servers with JetStream (nats://HOST:PORT, comma-separated) hold the history and carry messages between nodes; --store is then not used";
    /// This node's name in the cluster.
    node_name: NodeName = NodeName::Auto, "NAME|auto", Bounds::Any,
        "This node's name in the cluster, unique among its nodes (auto: host name and listening port)";
    /// Copies JetStream keeps of the cluster's data.
    cluster_replicas: usize = 1, "N", Bounds::Between(1, 5),
        "Copies of the history JetStream keeps, one per NATS server (3 for a three-server NATS cluster); used when the stream and buckets are first made";
    /// CA of the NATS servers' certificates.
    cluster_ca: Option<PathBuf> = None, "FILE|none", Bounds::Any,
        "TLS to NATS: the CA its certificates chain to (PEM); TLS is required when given";
    /// This node's certificate towards NATS.
    cluster_cert: Option<PathBuf> = None, "FILE|none", Bounds::Any,
        "TLS to NATS: this node's client certificate (PEM), with cluster-key";
    /// Its key.
    cluster_key: Option<PathBuf> = None, "FILE|none", Bounds::Any,
        "TLS to NATS: the key of cluster-cert (PEM)";
    /// The monitoring endpoint's address, or off.
    metrics: MetricsListen = MetricsListen::Off, "ADDR",  Bounds::Any,
        "Serve /metrics (Prometheus), /healthz and /readyz over plain HTTP here (loopback or a monitoring network)";
    /// Signed UDP mode's address, or off.
    udp: UdpListen = UdpListen::Off, "ADDR", Bounds::Any,
        "Answer the stateless verbs over signed UDP on this address";
    /// Largest age of a datagram's timestamp.
    udp_max_skew: Duration = udp::DEFAULT_MAX_SKEW, "DURATION", TIMEOUTS,
        "UDP: largest age of a datagram's timestamp";
    /// Largest lead of a datagram's timestamp over our clock.
    udp_max_ahead: Duration = udp::DEFAULT_MAX_AHEAD, "DURATION",
        Bounds::Between(MIN_TIMEOUT, MAX_UDP_AHEAD),
        "UDP: largest lead of a timestamp over our clock (the server waits this long before answering)";
    /// Senders remembered at most.
    udp_max_senders: usize = udp::DEFAULT_MAX_SENDERS, "N", COUNTS,
        "UDP: senders remembered; the least recent is evicted";
    /// Largest datagram read, in bytes.
    udp_max_datagram: usize = tlschat_proto::datagram::DEFAULT_MAX_DATAGRAM, "BYTES",
        Bounds::Between(MIN_DATAGRAM, MAX_DATAGRAM),
        "UDP: largest datagram accepted";
}

impl Config {
    /// Every default, with the given certificate files.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>, ca: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            ca: ca.into(),
            ..Self::defaults()
        }
    }

    /// Checks that span settings.
    fn check(&self) -> Result<(), SettingsError> {
        // A client certificate towards NATS needs its key and the CA, and TLS needs a cluster.
        let pair = (&self.cluster_cert, &self.cluster_key);
        let tls = self.cluster_ca.is_some() || pair.0.is_some() || pair.1.is_some();
        let problem = if pair.0.is_some() != pair.1.is_some() {
            Some(("cluster-key", "given together with cluster-cert"))
        } else if pair.0.is_some() && self.cluster_ca.is_none() {
            Some(("cluster-ca", "given when cluster-cert is"))
        } else if tls && self.cluster == ClusterSetting::Off {
            Some(("cluster", "set when the cluster's TLS settings are"))
        } else {
            None
        };
        if let Some((key, allowed)) = problem {
            return Err(SettingsError::Range {
                key: key.to_owned(),
                value: "(missing or unused)".to_owned(),
                allowed: allowed.to_owned(),
            });
        }
        // A line the server accepts must be able to pass the byte budget.
        if self.rate_bytes_burst < self.max_line_len as u64 {
            return Err(SettingsError::Range {
                key: "rate-bytes-burst".to_owned(),
                value: self.rate_bytes_burst.to_string(),
                allowed: format!("at least max-line-len ({})", self.max_line_len),
            });
        }
        Ok(())
    }

    /// The request rate limit per connection.
    pub fn rate_limit(&self) -> RateLimit {
        RateLimit {
            per_second: self.rate,
            burst: self.rate_burst,
            bytes_per_second: self.rate_bytes,
            bytes_burst: self.rate_bytes_burst,
            max_strikes: self.max_strikes,
        }
    }

    /// The limits on rooms.
    pub fn room_limits(&self) -> RoomLimits {
        RoomLimits {
            per_user: self.max_rooms_per_user,
            members: self.max_room_members,
        }
    }

    /// Signed UDP mode's settings, when it is on.
    pub fn udp_config(&self) -> Option<UdpConfig> {
        let UdpListen::On(listen) = self.udp else {
            return None;
        };
        Some(UdpConfig {
            listen,
            max_datagram: self.udp_max_datagram,
            max_skew: self.udp_max_skew,
            max_ahead: self.udp_max_ahead,
            max_senders: self.udp_max_senders,
        })
    }
}

impl fmt::Display for SettingDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--{} {}", self.key, self.value_name)
    }
}

/// The settings table in Markdown, as README.md and docs/PROTOCOL.md carry it between
/// [`TABLE_BEGIN`] and [`TABLE_END`].
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| flag and file key | default | allowed | what it does |\n|---|---|---|---|\n",
    );
    for row in table() {
        out.push_str(&format!(
            "| `{row}` | `{}` | {} | {} |\n",
            row.default, row.allowed, row.help
        ));
    }
    out
}

/// A settings file with every setting at its default, each commented out under its help:
/// what `tlschat-server default-config` prints and packages install.
pub fn default_file() -> String {
    let mut out = String::from(
        "# tlschat-server settings. Every key is a long flag name; a flag on the command line\n\
         # wins over this file. Each setting is shown at its default, commented out.\n",
    );
    for row in table() {
        out.push_str(&format!(
            "\n# {} (allowed: {})\n# {} = {}\n",
            row.help, row.allowed, row.key, row.toml_default
        ));
    }
    out
}

/// The line before the generated table in the docs.
pub const TABLE_BEGIN: &str =
    "<!-- settings table: generated from crates/server/src/settings.rs; TLSCHAT_BLESS=1 cargo test -p tlschat-server settings rewrites it -->";

/// The line after the generated table in the docs.
pub const TABLE_END: &str = "<!-- end of settings table -->";

impl Settings {
    /// Reads settings from a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|err| SettingsError::Parse {
            path: path.to_owned(),
            message: err.to_string().trim_end().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_reads_back_as_the_defaults() {
        let text = default_file();
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# ").filter(|l| l.contains(" = ")))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            uncommented.lines().count(),
            table().len(),
            "one per setting"
        );
        let settings: Settings = toml::from_str(&uncommented).expect("valid TOML");
        let config = settings.apply().expect("every default passes its bounds");
        assert_eq!(config.listen, Config::defaults().listen);
    }

    /// README.md and docs/PROTOCOL.md carry the table exactly as [`markdown_table`] makes it.
    /// With `TLSCHAT_BLESS=1` the test writes it there instead of failing.
    #[test]
    fn the_docs_carry_the_settings_table_as_declared() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let table = markdown_table();
        for doc in ["README.md", "docs/PROTOCOL.md"] {
            let path = root.join(doc);
            let text = std::fs::read_to_string(&path).unwrap();
            let (Some(begin), Some(end)) = (text.find(TABLE_BEGIN), text.find(TABLE_END)) else {
                panic!("{doc} has no generated settings table (markers missing)");
            };
            let shown = &text[begin + TABLE_BEGIN.len()..end];
            let expected = format!("\n{table}");
            if shown == expected {
                continue;
            }
            if std::env::var_os("TLSCHAT_BLESS").is_some() {
                let blessed = format!(
                    "{}{expected}{}",
                    &text[..begin + TABLE_BEGIN.len()],
                    &text[end..]
                );
                std::fs::write(&path, blessed).unwrap();
                continue;
            }
            panic!(
                "{doc}'s settings table differs from the declared settings; \
                 run TLSCHAT_BLESS=1 cargo test -p tlschat-server settings"
            );
        }
    }

    fn file(text: &str) -> Result<Settings, SettingsError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tlschat.toml");
        std::fs::write(&path, text).unwrap();
        Settings::from_file(&path)
    }

    #[test]
    fn a_file_sets_values_and_flags_win() {
        let from_file = file(
            "listen = \"0.0.0.0:7000\"\nhandshake-timeout = \"3s\"\nrate = 5\nclient-auth = \"required\"\nudp = \"127.0.0.1:7001\"\n",
        )
        .unwrap();
        let from_flags = Settings {
            rate: Some(9),
            ..Settings::default()
        };
        let config = from_flags.over(from_file).apply().unwrap();
        assert_eq!(config.listen, "0.0.0.0:7000".parse().unwrap());
        assert_eq!(config.handshake_timeout, Duration::from_secs(3));
        assert_eq!(config.rate, 9, "the flag wins");
        assert_eq!(config.client_auth, ClientAuth::Required);
        assert_eq!(config.udp_config().unwrap().max_skew, udp::DEFAULT_MAX_SKEW);
        assert_eq!(
            config.write_timeout, DEFAULT_WRITE_TIMEOUT,
            "defaults fill the rest"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = file("listn = \"0.0.0.0:1\"\n").unwrap_err().to_string();
        assert!(err.contains("listn"), "{err}");
        let err = file("handshake-timeout = \"10\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("handshake-timeout") && err.contains("invalid duration"),
            "{err}"
        );
        let err = file("max-connections = \"lots\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max-connections"), "{err}");
        let err = file("max-line-len = 10\n")
            .unwrap()
            .apply()
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid value for max-line-len: 10 (allowed: 64 to 16777216)"
        );
        let err = file("idle-timeout = \"0s\"\n")
            .unwrap()
            .apply()
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid value for idle-timeout: 0s"),
            "{err}"
        );
        let err = file("client-auth = \"maybe\"\n").unwrap_err().to_string();
        assert!(err.contains("client-auth"), "{err}");
    }

    #[test]
    fn a_byte_burst_below_the_line_limit_is_refused() {
        // A line the server accepts could never pass the byte budget.
        let err = file("max-line-len = 8192\nrate-bytes-burst = 4096\n")
            .unwrap()
            .apply()
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid value for rate-bytes-burst: 4096 (allowed: at least max-line-len (8192))"
        );
        let fits = file("max-line-len = 4096\nrate-bytes-burst = 4096\n").unwrap();
        assert_eq!(fits.apply().unwrap().rate_limit().bytes_burst, 4096);
    }

    #[test]
    fn cluster_settings_are_checked_where_they_are_read() {
        let config = file(
            "cluster = \"nats://127.0.0.1:4222, tls://nats2:4222\"\nnode-name = \"node-1.a_b\"\n",
        )
        .unwrap()
        .apply()
        .unwrap();
        assert_eq!(
            config.cluster,
            ClusterSetting::On(vec![
                "nats://127.0.0.1:4222".into(),
                "tls://nats2:4222".into()
            ])
        );
        assert_eq!(config.node_name, NodeName::Named("node-1.a_b".into()));
        // A name at the limit, and one past it; a character a NATS key cannot carry.
        let longest = "n".repeat(MAX_NODE_NAME);
        assert!(NodeName::parse(&longest).is_ok());
        assert!(NodeName::parse(&format!("{longest}n")).is_err());
        assert!(NodeName::parse("node one").is_err());
        let err = file("cluster = \"http://127.0.0.1:4222\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cluster") && err.contains("nats://HOST:PORT"),
            "{err}"
        );
        // TLS to NATS: a certificate needs its key and the CA, and a cluster to be used for.
        let refused = |text: &str| file(text).unwrap().apply().unwrap_err().to_string();
        let on = "cluster = \"nats://127.0.0.1:4222\"\n";
        assert!(refused(&format!("{on}cluster-cert = \"c.pem\"\n")).contains("cluster-key"));
        assert!(refused(&format!(
            "{on}cluster-cert = \"c.pem\"\ncluster-key = \"k.pem\"\n"
        ))
        .contains("cluster-ca"));
        assert!(refused("cluster-ca = \"ca.pem\"\n").contains("invalid value for cluster:"));
        assert!(file(&format!(
            "{on}cluster-ca = \"ca.pem\"\ncluster-cert = \"c.pem\"\ncluster-key = \"k.pem\"\n"
        ))
        .unwrap()
        .apply()
        .is_ok());
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let config = file("").unwrap().apply().unwrap();
        assert_eq!(config.listen, HostPort::from(DEFAULT_LISTEN));
        assert!(config.udp_config().is_none());
        assert!(!config.tls12);
    }
}
