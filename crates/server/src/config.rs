//! Server settings. Every limit is a named constant with a safe default, settable by flag.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tlschat_proto::limits::DEFAULT_MAX_LINE_LEN;

use crate::chat::hub::RoomLimits;
use crate::limits::RateLimit;
use crate::udp::UdpConfig;

/// Default listening address: loopback only, so a fresh server is not reachable from the network
/// until the operator says so.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:6254";

/// Default server name, sent in the greeting.
pub const DEFAULT_SERVER_NAME: &str = "tlschat";

/// Default time a client has to finish the TLS handshake: 5 s. A peer that connects and says
/// nothing holds a connection slot for at most this long (and at most
/// [`DEFAULT_MAX_HANDSHAKES_PER_IP`] such slots per address).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Default maximum of TLS handshakes in progress from one source address: 16. A connection
/// past it is closed at once, before it takes a connection slot, so one address that opens
/// sockets and stays silent cannot make others wait.
pub const DEFAULT_MAX_HANDSHAKES_PER_IP: usize = 16;

/// Default time one write to a client may take: 10 s. A client that stops reading is
/// disconnected after this, so it cannot hold server memory.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default time graceful shutdown waits for connections to flush and close: 5 s.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Default maximum of concurrent connections (TLS handshakes included): 10,000. Each idle
/// connection costs some tens of KiB; the process needs a file descriptor limit above this.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Default limit of bytes queued for one client (room messages and DMs it has not read yet):
/// 1 MiB. A client that falls this far behind is disconnected as a slow consumer with
/// `EVENT DISCONNECT SLOW_CONSUMER`, so one stuck reader never holds a room back or grows server
/// memory: the worst case per connection is about twice this (queue plus the write in flight).
pub const DEFAULT_MAX_PENDING_BYTES: usize = 1024 * 1024;

/// Default time without any input after which a connection is closed: 5 min. Halfway, the
/// server sends `EVENT PING` so a live client (which answers `PONG`) is never closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Default maximum of concurrent connections from one source address: 64.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 64;

/// Default sustained request bytes per connection: 256 KiB a second. With the line rate, this
/// makes a sender pay for volume: nobody can push megabytes at another user.
pub const DEFAULT_RATE_BYTES: u64 = 256 * 1024;

/// Default burst of request bytes per connection: 1 MiB (must be at least the line limit).
pub const DEFAULT_RATE_BYTES_BURST: u64 = 1024 * 1024;

/// Default largest direct message: 20 KiB of text for `MSG nick`, or of sealed message for
/// `E2E nick` (counted in bytes, not hex digits; the largest E2E text, 16 KiB, seals to about
/// 16.2 KiB). Well below the line limit, so no sender fills a recipient's queue in a few lines.
pub const DEFAULT_MAX_DM_BYTES: usize = 20 * 1024;

/// Default sustained request rate per connection: 100 requests a second.
pub const DEFAULT_RATE_PER_SECOND: u32 = 100;

/// Default burst of requests per connection: 200 at once after a quiet spell.
pub const DEFAULT_RATE_BURST: u32 = 200;

/// Default refused requests (net of accepted ones) before a flooding client is disconnected.
pub const DEFAULT_MAX_STRIKES: u32 = 100;

/// Default maximum of rooms one user may be in: 50.
pub const DEFAULT_MAX_ROOMS_PER_USER: usize = 50;

/// Default maximum of members in one room: 10,000.
pub const DEFAULT_MAX_ROOM_MEMBERS: usize = 10_000;

/// Default maximum of published E2E keys the server keeps: 10,000 (the least recently
/// published goes first).
pub const DEFAULT_MAX_PUBLISHED_KEYS: usize = 10_000;

/// Whether and how clients prove who they are with a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificates are asked for; everyone is unverified.
    None,
    /// A client certificate from the CA is accepted but not required.
    #[default]
    Optional,
    /// Every client must present a certificate from the CA (mutual TLS).
    Required,
}

/// Everything the server needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Server certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA certificate(s) (PEM) that client certificates must chain to.
    pub ca: PathBuf,
    /// Client certificate policy.
    pub client_auth: ClientAuth,
    /// Also accept TLS 1.2 (TLS 1.3 only when false).
    pub allow_tls12: bool,
    /// Name sent in the greeting.
    pub server_name: String,
    /// Longest request line, in bytes.
    pub max_line_len: usize,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed for one write to a client.
    pub write_timeout: Duration,
    /// Time graceful shutdown waits for connections to close.
    pub drain_timeout: Duration,
    /// Maximum concurrent connections.
    pub max_connections: usize,
    /// Bytes that may wait in one client's outbound queue before it is cut off.
    pub max_pending_bytes: usize,
    /// Signed UDP mode, off when `None`.
    pub udp: Option<UdpConfig>,
    /// No input for this long closes a connection (a keepalive ping goes out halfway).
    pub idle_timeout: Duration,
    /// Concurrent connections from one source address at most.
    pub max_connections_per_ip: usize,
    /// TLS handshakes in progress from one source address at most.
    pub max_handshakes_per_ip: usize,
    /// Largest direct message payload, in bytes.
    pub max_dm_bytes: usize,
    /// Request rate limit per connection.
    pub rate: RateLimit,
    /// Limits on rooms.
    pub rooms: RoomLimits,
    /// Published E2E keys kept at most.
    pub max_published_keys: usize,
}

impl Config {
    /// A configuration with every default and the given certificate files.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>, ca: impl Into<PathBuf>) -> Self {
        Self {
            // The constant is a valid literal address; checked by a unit test.
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            cert: cert.into(),
            key: key.into(),
            ca: ca.into(),
            client_auth: ClientAuth::default(),
            allow_tls12: false,
            server_name: DEFAULT_SERVER_NAME.to_owned(),
            max_line_len: DEFAULT_MAX_LINE_LEN,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
            udp: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_handshakes_per_ip: DEFAULT_MAX_HANDSHAKES_PER_IP,
            max_dm_bytes: DEFAULT_MAX_DM_BYTES,
            rate: RateLimit {
                per_second: DEFAULT_RATE_PER_SECOND,
                burst: DEFAULT_RATE_BURST,
                bytes_per_second: DEFAULT_RATE_BYTES,
                bytes_burst: DEFAULT_RATE_BYTES_BURST,
                max_strikes: DEFAULT_MAX_STRIKES,
            },
            rooms: RoomLimits::default(),
            max_published_keys: DEFAULT_MAX_PUBLISHED_KEYS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_loopback() {
        let config = Config::new("c", "k", "ca");
        assert!(config.listen.ip().is_loopback());
        assert!(tlschat_proto::names::validate_server_name(&config.server_name).is_ok());
    }
}
