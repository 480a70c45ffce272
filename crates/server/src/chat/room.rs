//! A room: its canonical name, its members and its message counter, behind one lock. It knows
//! its members only as [`Member`]s (an id and a way to queue a line), so it sits below the
//! peer, which holds handles to its rooms.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// What a room needs of a member.
pub(crate) trait Member {
    /// Unique for the server's run.
    fn id(&self) -> u64;
    /// Queues an encoded line holding `messages` messages (0: other events) for the member
    /// (never waits).
    fn deliver(&self, line: &Bytes, messages: u64);
    /// Queues stored messages `first..=last` of `room`, encoded as `line`; what does not fit
    /// is skipped and told as a gap (never waits, never cuts the member off).
    fn deliver_messages(&self, room: &str, first: u64, last: u64, line: &Bytes);
}

/// A room.
pub(crate) struct Room<M> {
    pub(crate) name: String,
    pub(crate) state: Mutex<RoomState<M>>,
}

/// What the room's lock guards.
pub(crate) struct RoomState<M> {
    pub(crate) members: Vec<Arc<M>>,
    /// The number the next message gets.
    pub(crate) next_id: u64,
}

impl<M: Member> Room<M> {
    /// An empty room called `name` (canonical form), numbering from 1.
    pub(crate) fn new(name: String) -> Self {
        Self {
            name,
            state: Mutex::new(RoomState {
                members: Vec::new(),
                next_id: 1,
            }),
        }
    }
}

impl<M: Member> RoomState<M> {
    /// Where `member` is in the member list.
    pub(crate) fn position(&self, member: &M) -> Option<usize> {
        self.members.iter().position(|m| m.id() == member.id())
    }

    /// Queues stored messages `first..=last` of this room for every member but `except`.
    pub(crate) fn broadcast_messages(
        &self,
        room: &str,
        first: u64,
        last: u64,
        line: &Bytes,
        except: u64,
    ) {
        for member in self.members.iter().filter(|m| m.id() != except) {
            member.deliver_messages(room, first, last, line);
        }
    }

    /// Queues `line`, holding `messages` messages (0: other events), for every member but
    /// `except`.
    pub(crate) fn broadcast(&self, line: &Bytes, except: &M, messages: u64) {
        for member in self.members.iter().filter(|m| m.id() != except.id()) {
            member.deliver(line, messages);
        }
    }
}
