//! Chat: nicknames, rooms, room messages and direct messages between connected clients.
//!
//! - [`peer`]: one connected client as others see it, with its bounded outbound queue.
//! - [`hub`]: the shared state (who is online, the rooms) and every chat verb.
//! - [`journal`]: messages through the store: delivery after commit, `HISTORY`.
//! - [`keys`]: the published E2E keys, per person and device.
//! - `users`: who is online, each person with their sessions.
//! - `room`: one room's members and message counter, below the peer.
//! - [`presence`]: who is connected to the other nodes of a cluster.
//! - `sequencer`: in a cluster, messages delivered in id order, whichever node stored them.
//! - [`rules`]: what operators decide for a room (topic, modes, operators, bans, invitations)
//!   and the server's bans, with their stored form; `hub::moderation` applies them.
//!
//! Nothing here does network I/O: the hub queues encoded lines into peers' outboxes, and each
//! peer's connection task writes its own. With a store, messages go through its commit thread
//! first (see [`journal`]).

pub mod hub;
pub mod journal;
pub mod keys;
pub mod peer;
pub mod presence;
mod room;
pub mod rules;
pub(crate) mod sequencer;
mod users;

pub use hub::Hub;
pub use journal::Sent;
pub use peer::{Disconnect, Outbox, Peer};
