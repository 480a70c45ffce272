//! The tlschat line protocol, with no I/O.
//!
//! Bytes go in, frames and typed messages come out; nothing here opens a socket, spawns a task or
//! reads a clock. The server and the client both build on this crate, so the grammar in
//! `docs/PROTOCOL.md` is coded exactly once.
//!
//! Modules:
//! - [`addr`]: server addresses as people write them (`host`, `host:port`), port defaulted.
//! - [`codec`]: splitting a byte stream into bounded UTF-8 lines, and encoding lines.
//! - [`request`]: the verbs a client sends ([`Request`]) and how they are parsed.
//! - [`reply`]: what the server answers: the greeting, `OK`/`ERR` replies and `EVENT` lines.
//! - [`error`]: the error codes carried by `ERR` replies.
//! - [`disconnect`]: the codes carried by `EVENT DISCONNECT`.
//! - [`names`]: rules for nicknames and server names.
//! - [`datagram`]: the byte layout of signed UDP datagrams.
//! - [`e2e`]: the byte layouts of published E2E keys and sealed direct messages.
//! - [`hex`]: hexadecimal, how binary payloads travel in lines.
//! - [`replay`]: the sliding window that refuses replayed datagrams.
//! - [`limits`]: the default protocol limits.
//! - [`duration`]: durations as written in flags (`10s`, `250ms`).
//! - `cert` (feature `x509`): the identity a certificate carries (name, role, SANs).
//!
//! What this crate does not do: TLS, timeouts, rate limiting or deciding what a verb *means*.
//! Those belong to `tlschat-server` and `tlschat-client`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
#[cfg(feature = "x509")]
pub mod cert;
pub mod codec;
pub mod datagram;
pub mod disconnect;
pub mod duration;
pub mod e2e;
pub mod error;
pub mod hex;
pub mod limits;
pub mod moderation;
pub mod names;
pub mod replay;
pub mod reply;
pub mod request;
mod wire;

pub use codec::{Frame, LineDecoder};
pub use disconnect::DisconnectCode;
pub use error::ErrorCode;
pub use moderation::{ModeChange, Scope};
pub use reply::{Event, Greeting, Reply, ServerLine, Trust};
pub use request::{Anchor, Request, RequestError, Target, Verb};

/// The protocol name and version sent in the greeting and used as the TLS ALPN identifier.
pub const PROTOCOL_VERSION: &str = "tlschat/1";

/// The ALPN protocol identifier both sides offer during the TLS handshake.
pub const ALPN: &[u8] = b"tlschat/1";
