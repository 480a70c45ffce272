//! The tlschat server: a TLS 1.3 listener speaking the tlschat line protocol.
//!
//! Modules:
//! - [`config`]: every setting, its default and its unit.
//! - [`settings`]: settings from flags and a TOML file, merged and range-checked.
//! - [`tls`]: loading certificates and keys, building the rustls configuration.
//! - [`limits`]: request rate, connections per address, idle keepalive.
//! - [`metrics`]: the counters, in the Prometheus text format; [`http`]: the endpoint serving
//!   them (`--metrics`), with health and readiness.
//! - [`identity`]: who a connection is, from its verified client certificate.
//! - [`verbs`]: the stateless verbs (`TIME`, `SUM`, …), shared by every transport.
//! - [`session`]: per-connection protocol state (the pending quiz, quitting, shutdown).
//! - [`chat`]: nicknames, rooms and messages shared between connections, with bounded queues.
//! - [`cluster`]: one node of several (`--cluster`): the tasks that keep it in step with the
//!   others through NATS JetStream.
//! - [`connection`]: one client's I/O: handshake, bounded reads, one coalescing writer.
//! - [`server`]: the accept loop, the connection limits, reload on SIGHUP.
//! - [`store`]: message history behind one trait; the embedded redb store; group commit.
//! - `shared`: state all connections share, and the phases of graceful shutdown.
//! - [`udp`]: signed UDP mode: the stateless verbs over signed, replay-checked datagrams.
//! - [`random`]: random numbers from the TLS crypto provider.
//! - [`revoked`]: serial numbers a revocation list revokes.
//! - [`sync`]: locking shared state (recovering from poisoning).
//!
//! Only this crate owns listeners, tasks and signals; the protocol itself lives in
//! `tlschat-proto`. This crate does not daemonize or rotate logs; it keeps messages in [`store`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chat;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod http;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod notify;
pub mod open_files;
pub mod random;
pub mod revoked;
pub mod server;
pub mod session;
pub mod settings;
mod shared;
pub mod store;
pub mod sync;
pub mod tls;
pub mod udp;
pub mod verbs;

pub use config::ClientAuth;
pub use server::{Server, ServerError};
pub use settings::Config;
