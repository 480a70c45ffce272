//! Chat: nicknames, rooms, room messages and direct messages between connected clients.
//!
//! - [`peer`]: one connected client as others see it, with its bounded outbound queue.
//! - [`hub`]: the shared state (who is online, the rooms) and every chat verb.
//! - [`keys`]: the published E2E keys.
//! - `room`: one room's members and message counter, below the peer.
//!
//! Nothing here does I/O: the hub queues encoded lines into peers' outboxes, and each peer's
//! connection task writes its own.

pub mod hub;
pub mod keys;
pub mod peer;
mod room;

pub use hub::Hub;
pub use peer::{Disconnect, Outbox, Peer};
