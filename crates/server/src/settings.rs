//! Settings from flags and from a TOML file, merged: a flag given on the command line wins over
//! the file, the file wins over the defaults.
//!
//! One struct serves both: every field is optional, so "not given" is visible, and the file's
//! keys are the flags' long names (`handshake-timeout = "10s"`). Unknown keys and bad values
//! are errors that name the key. Every value is range-checked in one place,
//! [`Settings::apply`], whichever source it came from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Deserializer};
use tlschat_proto::duration::{format_duration, HumanDuration};

use crate::config::{self, ClientAuth, Config};
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
        key: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        allowed: String,
    },
}

fn help(text: &str, default: impl std::fmt::Display) -> String {
    format!("{text} [default: {default}]")
}

/// Every setting; each may come from a flag or from the file.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Address to listen on. Use 0.0.0.0:6254 to accept connections from the network.
    #[arg(long, value_name = "ADDR", help = help("Address to listen on (0.0.0.0:6254 for the network)", config::DEFAULT_LISTEN))]
    pub listen: Option<SocketAddr>,
    /// Server certificate chain (PEM).
    #[arg(long, value_name = "FILE", help = help("Server certificate chain (PEM)", "certs/server.pem"))]
    pub cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, value_name = "FILE", help = help("Server private key (PEM)", "certs/server-key.pem"))]
    pub key: Option<PathBuf>,
    /// CA that client certificates must chain to (PEM).
    #[arg(long, value_name = "FILE", help = help("CA that client certificates must chain to (PEM)", "certs/ca.pem"))]
    pub ca: Option<PathBuf>,
    /// Client certificates: none, optional (verified when sent), required (mutual TLS).
    #[arg(long, value_enum, value_name = "MODE", help = help("Client certificates: none, optional (verified when sent), required (mutual TLS)", "optional"))]
    pub client_auth: Option<ClientAuth>,
    /// Also accept TLS 1.2.
    #[arg(long, help = "Also accept TLS 1.2 (only TLS 1.3 by default)")]
    #[serde(default)]
    pub tls12: bool,
    /// Name announced in the greeting.
    #[arg(long, value_name = "NAME", help = help("Name announced in the greeting", config::DEFAULT_SERVER_NAME))]
    pub server_name: Option<String>,
    /// Longest request line, bytes.
    #[arg(long, value_name = "BYTES", help = help("Longest request line in bytes; longer ones get ERR LINE_TOO_LONG", tlschat_proto::limits::DEFAULT_MAX_LINE_LEN))]
    pub max_line_len: Option<u64>,
    /// TLS handshake time.
    #[arg(long, value_name = "DURATION", help = help("Time a client has to finish the TLS handshake", HumanDuration(config::DEFAULT_HANDSHAKE_TIMEOUT)))]
    #[serde(default, deserialize_with = "duration")]
    pub handshake_timeout: Option<HumanDuration>,
    /// Time for one write.
    #[arg(long, value_name = "DURATION", help = help("Time one write may take before a non-reading client is cut off", HumanDuration(config::DEFAULT_WRITE_TIMEOUT)))]
    #[serde(default, deserialize_with = "duration")]
    pub write_timeout: Option<HumanDuration>,
    /// Graceful shutdown wait.
    #[arg(long, value_name = "DURATION", help = help("Time shutdown waits for clients to receive what is queued", HumanDuration(config::DEFAULT_DRAIN_TIMEOUT)))]
    #[serde(default, deserialize_with = "duration")]
    pub drain_timeout: Option<HumanDuration>,
    /// Idle timeout.
    #[arg(long, value_name = "DURATION", help = help("No input for this long closes a connection; EVENT PING goes out halfway", HumanDuration(config::DEFAULT_IDLE_TIMEOUT)))]
    #[serde(default, deserialize_with = "duration")]
    pub idle_timeout: Option<HumanDuration>,
    /// Connections at most.
    #[arg(long, value_name = "N", help = help("Concurrent connections; more wait in the listen backlog", config::DEFAULT_MAX_CONNECTIONS))]
    pub max_connections: Option<u64>,
    /// Connections per source address at most.
    #[arg(long, value_name = "N", help = help("Concurrent connections from one address; more get EVENT DISCONNECT TOO_MANY_CONNECTIONS", config::DEFAULT_MAX_CONNECTIONS_PER_IP))]
    pub max_connections_per_ip: Option<u64>,
    /// TLS handshakes in progress per source address at most.
    #[arg(long, value_name = "N", help = help("TLS handshakes in progress from one address; more are closed at once", config::DEFAULT_MAX_HANDSHAKES_PER_IP))]
    pub max_handshakes_per_ip: Option<u64>,
    /// Outbound queue per client, bytes.
    #[arg(long, value_name = "BYTES", help = help("Bytes queued for one client before it is cut off as a slow consumer", config::DEFAULT_MAX_PENDING_BYTES))]
    pub max_pending_bytes: Option<u64>,
    /// Sustained requests per second per connection.
    #[arg(long, value_name = "N", help = help("Requests a second per connection, sustained; more get ERR RATE_LIMITED", config::DEFAULT_RATE_PER_SECOND))]
    pub rate: Option<u64>,
    /// Burst of requests per connection.
    #[arg(long, value_name = "N", help = help("Requests per connection allowed at once after a quiet spell", config::DEFAULT_RATE_BURST))]
    pub rate_burst: Option<u64>,
    /// Sustained bytes per second per connection.
    #[arg(long, value_name = "BYTES", help = help("Request bytes a second per connection, sustained; more get ERR RATE_LIMITED", config::DEFAULT_RATE_BYTES))]
    pub rate_bytes: Option<u64>,
    /// Burst of bytes per connection.
    #[arg(long, value_name = "BYTES", help = help("Request bytes per connection allowed at once after a quiet spell (at least max-line-len)", config::DEFAULT_RATE_BYTES_BURST))]
    pub rate_bytes_burst: Option<u64>,
    /// Largest direct message.
    #[arg(long, value_name = "BYTES", help = help("Largest direct message (its text, or its sealed E2E message in bytes); longer get ERR TOO_LONG", config::DEFAULT_MAX_DM_BYTES))]
    pub max_dm_bytes: Option<u64>,
    /// Refusals before a flooding client is disconnected.
    #[arg(long, value_name = "N", help = help("Rate-limited requests (net of accepted ones) before EVENT DISCONNECT FLOOD", config::DEFAULT_MAX_STRIKES))]
    pub max_strikes: Option<u64>,
    /// Rooms per user at most.
    #[arg(long, value_name = "N", help = help("Rooms one user may be in; more get ERR TOO_MANY_ROOMS", config::DEFAULT_MAX_ROOMS_PER_USER))]
    pub max_rooms_per_user: Option<u64>,
    /// Members per room at most.
    #[arg(long, value_name = "N", help = help("Members one room may have; more get ERR ROOM_FULL", config::DEFAULT_MAX_ROOM_MEMBERS))]
    pub max_room_members: Option<u64>,
    /// Published E2E keys kept.
    #[arg(long, value_name = "N", help = help("Published E2E keys kept; past this the least recently published is dropped", config::DEFAULT_MAX_PUBLISHED_KEYS))]
    pub max_published_keys: Option<u64>,
    /// Signed UDP address.
    #[arg(
        long,
        value_name = "ADDR",
        help = "Answer the stateless verbs over signed UDP on this address [default: off]"
    )]
    pub udp: Option<SocketAddr>,
    /// UDP timestamp skew.
    #[arg(long, value_name = "DURATION", help = help("UDP: largest difference between a datagram's timestamp and our clock", HumanDuration(udp::DEFAULT_MAX_SKEW)))]
    #[serde(default, deserialize_with = "duration")]
    pub udp_max_skew: Option<HumanDuration>,
    /// UDP timestamp lead.
    #[arg(long, value_name = "DURATION", help = help("UDP: largest lead of a datagram's timestamp over our clock (the server waits this long before answering)", HumanDuration(udp::DEFAULT_MAX_AHEAD)))]
    #[serde(default, deserialize_with = "duration")]
    pub udp_max_ahead: Option<HumanDuration>,
    /// UDP senders remembered.
    #[arg(long, value_name = "N", help = help("UDP: senders remembered; the least recent is evicted", udp::DEFAULT_MAX_SENDERS))]
    pub udp_max_senders: Option<u64>,
    /// UDP datagram size.
    #[arg(long, value_name = "BYTES", help = help("UDP: largest datagram accepted", tlschat_proto::datagram::DEFAULT_MAX_DATAGRAM))]
    pub udp_max_datagram: Option<u64>,
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<HumanDuration>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

macro_rules! overlay {
    ($high:expr, $low:expr, $($field:ident),*) => {
        Settings {
            tls12: $high.tls12 || $low.tls12,
            $($field: $high.$field.or($low.$field),)*
        }
    };
}

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

    /// These settings, with `lower`'s filling whatever these leave unset.
    pub fn over(self, lower: Self) -> Self {
        overlay!(
            self,
            lower,
            listen,
            cert,
            key,
            ca,
            client_auth,
            server_name,
            max_line_len,
            handshake_timeout,
            write_timeout,
            drain_timeout,
            idle_timeout,
            max_connections,
            max_connections_per_ip,
            max_handshakes_per_ip,
            max_pending_bytes,
            rate,
            rate_burst,
            rate_bytes,
            rate_bytes_burst,
            max_dm_bytes,
            max_strikes,
            max_rooms_per_user,
            max_room_members,
            max_published_keys,
            udp,
            udp_max_skew,
            udp_max_ahead,
            udp_max_senders,
            udp_max_datagram
        )
    }

    /// The server configuration: defaults, overridden by whatever is set here, range-checked.
    pub fn apply(self) -> Result<Config, SettingsError> {
        let mut c = Config::new(
            self.cert.unwrap_or_else(|| "certs/server.pem".into()),
            self.key.unwrap_or_else(|| "certs/server-key.pem".into()),
            self.ca.unwrap_or_else(|| "certs/ca.pem".into()),
        );
        set(&mut c.listen, self.listen);
        set(&mut c.client_auth, self.client_auth);
        c.allow_tls12 = self.tls12;
        set(&mut c.server_name, self.server_name);
        set(
            &mut c.max_line_len,
            ranged("max-line-len", self.max_line_len, 64, 16 << 20)?,
        );
        set(
            &mut c.handshake_timeout,
            timeout("handshake-timeout", self.handshake_timeout)?,
        );
        set(
            &mut c.write_timeout,
            timeout("write-timeout", self.write_timeout)?,
        );
        set(
            &mut c.drain_timeout,
            timeout("drain-timeout", self.drain_timeout)?,
        );
        set(
            &mut c.idle_timeout,
            timeout("idle-timeout", self.idle_timeout)?,
        );
        set(
            &mut c.max_connections,
            ranged("max-connections", self.max_connections, 1, 1_000_000)?,
        );
        set(
            &mut c.max_connections_per_ip,
            ranged(
                "max-connections-per-ip",
                self.max_connections_per_ip,
                1,
                1_000_000,
            )?,
        );
        set(
            &mut c.max_handshakes_per_ip,
            ranged(
                "max-handshakes-per-ip",
                self.max_handshakes_per_ip,
                1,
                1_000_000,
            )?,
        );
        set(
            &mut c.max_pending_bytes,
            ranged("max-pending-bytes", self.max_pending_bytes, 1024, 1 << 30)?,
        );
        set(
            &mut c.rate.per_second,
            ranged("rate", self.rate, 1, 10_000_000)?,
        );
        set(
            &mut c.rate.burst,
            ranged("rate-burst", self.rate_burst, 1, 10_000_000)?,
        );
        set(
            &mut c.rate.bytes_per_second,
            ranged("rate-bytes", self.rate_bytes, 1024, 1 << 40)?,
        );
        set(
            &mut c.rate.bytes_burst,
            ranged("rate-bytes-burst", self.rate_bytes_burst, 1024, 1 << 40)?,
        );
        // A line the server accepts must be able to pass the byte budget.
        if c.rate.bytes_burst < c.max_line_len as u64 {
            return Err(SettingsError::Range {
                key: "rate-bytes-burst",
                value: c.rate.bytes_burst.to_string(),
                allowed: format!("at least max-line-len ({})", c.max_line_len),
            });
        }
        set(
            &mut c.max_dm_bytes,
            ranged("max-dm-bytes", self.max_dm_bytes, 64, 16 << 20)?,
        );
        set(
            &mut c.rate.max_strikes,
            ranged("max-strikes", self.max_strikes, 1, 10_000_000)?,
        );
        set(
            &mut c.rooms.per_user,
            ranged("max-rooms-per-user", self.max_rooms_per_user, 1, 100_000)?,
        );
        set(
            &mut c.rooms.members,
            ranged("max-room-members", self.max_room_members, 1, 10_000_000)?,
        );
        set(
            &mut c.max_published_keys,
            ranged("max-published-keys", self.max_published_keys, 1, 10_000_000)?,
        );
        if let Some(addr) = self.udp {
            let mut u = UdpConfig::new(addr);
            set(&mut u.max_skew, timeout("udp-max-skew", self.udp_max_skew)?);
            set(
                &mut u.max_ahead,
                timeout("udp-max-ahead", self.udp_max_ahead)?,
            );
            set(
                &mut u.max_senders,
                ranged("udp-max-senders", self.udp_max_senders, 1, 1_000_000)?,
            );
            set(
                &mut u.max_datagram,
                ranged("udp-max-datagram", self.udp_max_datagram, 512, 65_507)?,
            );
            c.udp = Some(u);
        }
        Ok(c)
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

fn ranged<T: TryFrom<u64>>(
    key: &'static str,
    value: Option<u64>,
    min: u64,
    max: u64,
) -> Result<Option<T>, SettingsError> {
    let Some(value) = value else { return Ok(None) };
    let out_of_range = || SettingsError::Range {
        key,
        value: value.to_string(),
        allowed: format!("{min} to {max}"),
    };
    if !(min..=max).contains(&value) {
        return Err(out_of_range());
    }
    T::try_from(value).map(Some).map_err(|_| out_of_range())
}

fn timeout(
    key: &'static str,
    value: Option<HumanDuration>,
) -> Result<Option<Duration>, SettingsError> {
    const MAX: Duration = Duration::from_secs(24 * 3600);
    match value {
        Some(HumanDuration(d)) if d.is_zero() || d > MAX => Err(SettingsError::Range {
            key,
            value: format_duration(d),
            allowed: "1ms to 24h".to_owned(),
        }),
        other => Ok(other.map(Duration::from)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(config.rate.per_second, 9, "the flag wins");
        assert_eq!(config.client_auth, ClientAuth::Required);
        assert_eq!(config.udp.unwrap().max_skew, udp::DEFAULT_MAX_SKEW);
        assert_eq!(
            config.write_timeout,
            config::DEFAULT_WRITE_TIMEOUT,
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
    fn an_empty_file_gives_the_defaults() {
        let config = file("").unwrap().apply().unwrap();
        assert_eq!(config.listen, config::DEFAULT_LISTEN.parse().unwrap());
        assert!(config.udp.is_none());
        assert!(!config.allow_tls12);
    }
}
