//! The defaults and named bounds of every server setting, and the types only settings use. The
//! settings themselves, with their help texts, are declared once in the table of the
//! `settings` module, which also makes the resolved `Config`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

pub use tlschat_proto::limits::DEFAULT_MAX_LINE_LEN;

pub use tlschat_proto::addr::DEFAULT_PORT;

/// Default listening address: loopback only, so a fresh server is not reachable from the network
/// until the operator says so.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, DEFAULT_PORT));

/// Default server certificate chain.
pub const DEFAULT_CERT: &str = "certs/server.pem";

/// Default server private key.
pub const DEFAULT_KEY: &str = "certs/server-key.pem";

/// Default CA that client certificates must chain to.
pub const DEFAULT_CA: &str = "certs/ca.pem";

/// Shortest timeout any setting takes.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// Longest timeout any setting takes: a day.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Largest count any count setting takes (connections, rooms, keys, senders…).
pub const MAX_COUNT: usize = 10_000_000;

/// Shortest line limit: room for any verb and a short argument.
pub const MIN_LINE_LEN: usize = 64;

/// Longest line limit: 16 MiB.
pub const MAX_LINE_LEN: usize = 16 << 20;

/// Smallest outbound queue per client: 1 KiB.
pub const MIN_PENDING_BYTES: usize = 1024;

/// Largest outbound queue per client: 1 GiB.
pub const MAX_PENDING_BYTES: usize = 1 << 30;

/// Largest request rate, burst or strike count.
pub const MAX_RATE: u32 = 10_000_000;

/// Smallest byte rate and byte burst: 1 KiB.
pub const MIN_RATE_BYTES: u64 = 1024;

/// Largest byte rate and byte burst: 1 TiB (in effect, no limit).
pub const MAX_RATE_BYTES: u64 = 1 << 40;

/// Smallest direct-message limit.
pub const MIN_DM_BYTES: usize = 64;

/// Largest lead a UDP timestamp may be allowed over the server's clock (the server waits this
/// long at start).
pub const MAX_UDP_AHEAD: Duration = Duration::from_secs(60);

/// Smallest UDP datagram limit: fits a certificate-less request and its signature.
pub const MIN_DATAGRAM: usize = 512;

/// Largest UDP datagram limit: the largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;

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

/// Default maximum of connections one verified user may have at once (their devices and
/// windows): 8. Past it, the oldest is closed with `REPLACED`.
pub const DEFAULT_MAX_SESSIONS_PER_USER: usize = 8;

/// Default maximum of devices one user may publish an E2E key for: 8 (at most
/// [`tlschat_proto::e2e::MAX_DEVICES`], what a sealed message has room for).
pub const DEFAULT_MAX_DEVICES_PER_USER: usize = 8;

/// Default maximum of published E2E keys the server keeps: 10,000 (the least recently
/// published goes first).
pub const DEFAULT_MAX_PUBLISHED_KEYS: usize = 10_000;

/// Whether and how clients prove who they are with a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Default)]
pub enum ClientAuth {
    /// No client certificates are asked for; everyone is unverified.
    None,
    /// A client certificate from the CA is accepted but not required.
    #[default]
    Optional,
    /// Every client must present a certificate from the CA (mutual TLS).
    Required,
}

/// The monitoring endpoint: off, or on at an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Default)]
pub enum MetricsListen {
    /// No endpoint.
    #[default]
    Off,
    /// Serve `/metrics`, `/healthz` and `/readyz` here.
    On(SocketAddr),
}

/// Several servers as one (a cluster on NATS JetStream): off, or the NATS servers to use.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Default)]
pub enum ClusterSetting {
    /// One server on its own (the embedded store, `--store`).
    #[default]
    Off,
    /// The NATS servers (`nats://host:port` or `tls://host:port`), tried in turn.
    On(Vec<String>),
}

/// A node's name in a cluster: unique among the nodes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Default)]
pub enum NodeName {
    /// The host's name and the listening port (`host-8443`).
    #[default]
    Auto,
    /// As given.
    Named(String),
}

/// Longest node name.
pub const MAX_NODE_NAME: usize = 64;

/// Signed UDP mode: off, or on at an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Default)]
pub enum UdpListen {
    /// No UDP.
    #[default]
    Off,
    /// Answer on this address.
    On(SocketAddr),
}

/// The certificate revocation list the server enforces.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd)]
pub enum CrlSetting {
    /// This file when it exists (the default, `certs/crl.pem`); none otherwise.
    WhenPresent(std::path::PathBuf),
    /// This file, which must exist.
    File(std::path::PathBuf),
    /// No revocation list.
    None,
}

/// Default revocation list: `certs/crl.pem`, used when present (`tlschat-certgen revoke`
/// writes it there).
pub const DEFAULT_CRL: &str = "certs/crl.pem";

/// Default warning ahead of a certificate or revocation list running out: 14 days.
pub const DEFAULT_EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);

/// How often the warnings of running out are logged again: daily.
pub const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_secs(86_400);

/// Where messages are kept.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd)]
pub enum StoreSetting {
    /// Nowhere: a live relay with no history (`--store none`).
    None,
    /// In this redb file.
    File(std::path::PathBuf),
}

impl StoreSetting {
    /// The default: `data/tlschat.redb` under the working directory.
    pub fn default_file() -> Self {
        Self::File(DEFAULT_STORE.into())
    }
}

/// Default number of missed messages sent per room (or direct conversation) when a verified
/// user connects again: 1,000; older ones are announced as a gap for the client to page
/// through with `HISTORY`.
pub const DEFAULT_MAX_CATCH_UP: usize = 1000;

/// Default retention: stored messages older than 90 days are deleted.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 86_400);

/// Shortest retention: a minute.
pub const MIN_RETENTION: Duration = Duration::from_secs(60);

/// Longest retention: 100 years (in effect, forever).
pub const MAX_RETENTION: Duration = Duration::from_secs(36_500 * 86_400);

/// Default number of messages kept per room (or direct conversation): 100,000.
pub const DEFAULT_MAX_HISTORY_PER_ROOM: usize = 100_000;

/// Default pause between two rounds of deleting old messages: a minute.
pub const DEFAULT_PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Most messages one round of pruning deletes (one commit); more wait for the next round, so
/// a round never holds the commit thread for long.
pub const PRUNE_BUDGET: usize = 10_000;

/// Default number of direct messages kept for a user who is away: 10,000. Past it the sender
/// gets `ERR INBOX_FULL`, so nobody can fill the disk through one absent user.
pub const DEFAULT_MAX_OFFLINE_PER_USER: usize = 10_000;

/// Most batches of room messages one connection may have waiting for the store at once: a
/// sender that pipelines keeps the store busy (bigger commit groups) without waiting for each
/// commit, and what it may have in flight stays bounded.
pub const MAX_IN_FLIGHT: usize = 8;

/// Largest history page any setting allows.
pub const MAX_HISTORY_PAGE: usize = 10_000;

/// In a cluster, the longest a node holds a conversation's messages waiting for an earlier id
/// that another node took but has not stored yet: past it the id is skipped, and members are
/// told of a gap to fetch (a node that died between taking an id and storing its message
/// leaves such a hole). Stored messages normally arrive within milliseconds.
pub const CLUSTER_HOLE_WAIT: Duration = Duration::from_secs(1);

/// In a cluster, how often a node puts its people's presence again (a third of the time an
/// entry lives), and forgets the people of nodes that stopped doing so.
pub const PRESENCE_REFRESH: Duration = Duration::from_secs(5);

/// Default store file, relative to the working directory.
pub const DEFAULT_STORE: &str = "data/tlschat.redb";

/// Default and largest `LIMIT` of one `HISTORY` page: 500 messages (about 500 KiB at the
/// longest lines of 1 KiB, one write's worth).
pub const DEFAULT_MAX_HISTORY_PAGE: usize = 500;

#[cfg(test)]
mod tests {
    #[test]
    fn defaults_are_valid_and_loopback() {
        let config = crate::settings::Config::new("c", "k", "ca");
        assert!(config.listen.socket_addr().unwrap().ip().is_loopback());
        assert!(tlschat_proto::names::validate_server_name(&config.server_name).is_ok());
    }
}
