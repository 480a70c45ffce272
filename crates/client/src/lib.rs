//! The tlschat client: an async library and the `tlschat` command.
//!
//! Modules:
//! - [`config`]: where to connect and with which certificates; the rustls client setup.
//! - [`client`]: [`Client`], a connection that sends requests, matches replies and queues events.
//! - [`error`]: [`ClientError`], every way a connection can fail, with the reason.
//! - [`e2e`]: end-to-end encrypted direct messages: keys, trust on first use, seal and open.
//! - [`resync`]: keeping up with a storing server: repeats, gaps to fill, paging back.
//! - [`udp`]: [`udp::UdpClient`], requests over signed UDP with verified replies.
//! - [`text`]: making text from the network safe to show on a terminal.
//! - [`user_defaults`]: the user's defaults file (`~/.config/tlschat/config.toml`).
//! - [`clock`]: the wall clock in the units the protocol stamps (ms, µs since the epoch).
//! - [`app`]: the `tlschat` command's subcommands (`exec`, `send`, `listen`, the chat client).
//!
//! The library verifies the server against the CA it is given and never offers a way around
//! that. It does not reconnect by itself; the interactive command does.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod client;
pub mod clock;
pub mod config;
pub mod e2e;
pub mod error;
pub mod resync;
pub mod text;
pub mod udp;
pub mod user_defaults;

pub use client::Client;
pub use config::ClientConfig;
pub use error::ClientError;
