//! One connected client as the rest of the server sees it: its name, its rooms, its bounded
//! outbound queue and a way to disconnect it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use tlschat_proto::{DisconnectCode, Trust};

use super::room::{Member, Room};
use crate::sync::lock;

/// A bounded queue of encoded lines for one connection, filled by other connections (room
/// messages, DMs) and drained by the connection's own writer.
///
/// When full, [`push`](Self::push) fails at once instead of waiting: a slow reader never slows
/// the sender or the room. The caller then disconnects the slow reader.
pub struct Outbox {
    state: Mutex<OutboxState>,
    ready: Notify,
    limit_bytes: usize,
}

#[derive(Default)]
struct OutboxState {
    queue: Vec<Bytes>,
    bytes: usize,
}

/// The outbound queue is full: its owner is not reading fast enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl Outbox {
    /// A queue holding at most `limit_bytes` of encoded lines.
    pub fn new(limit_bytes: usize) -> Self {
        Self {
            state: Mutex::new(OutboxState::default()),
            ready: Notify::new(),
            limit_bytes,
        }
    }

    /// Queues a line (shared, not copied). Fails when it would pass the byte limit.
    pub fn push(&self, line: Bytes) -> Result<(), Full> {
        self.push_up_to(line, self.limit_bytes)
    }

    /// Queues a line unless the queue would then hold more than `fill` bytes (or its limit).
    pub fn push_up_to(&self, line: Bytes, fill: usize) -> Result<(), Full> {
        let mut state = lock(&self.state);
        if state.bytes + line.len() > fill.min(self.limit_bytes) {
            return Err(Full);
        }
        state.bytes += line.len();
        let was_empty = state.queue.is_empty();
        state.queue.push(line);
        drop(state);
        // The writer drains everything at once, so only the first line after a drain needs
        // to wake it: one wake-up per batch instead of one per line.
        if was_empty {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Appends everything queued to `out`, in order, and empties the queue.
    pub fn drain_into(&self, out: &mut Vec<u8>) {
        let queue = {
            let mut state = lock(&self.state);
            state.bytes = 0;
            std::mem::take(&mut state.queue)
        };
        out.reserve(queue.iter().map(Bytes::len).sum());
        for line in &queue {
            out.extend_from_slice(line);
        }
    }

    /// Bytes queued now.
    pub fn queued_bytes(&self) -> usize {
        lock(&self.state).bytes
    }

    /// Waits until something may have been queued since the last wait.
    ///
    /// Cancel-safe: a notification that arrives while nobody waits is kept for the next call.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }
}

/// Direct messages may fill at most 1/`DIRECT_SHARE` of a peer's outbound queue.
pub const DIRECT_SHARE: usize = 2;

/// Why the server is closing a connection on its own: sent as `EVENT DISCONNECT <code> <reason>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// Why, for programs.
    pub code: DisconnectCode,
    /// For people.
    pub reason: String,
}

/// A connected client.
pub struct Peer {
    id: u64,
    nick: Mutex<Option<Arc<str>>>,
    trust: Trust,
    admin: bool,
    /// The rooms the peer is in, by key, with a handle each: sending to a room needs no
    /// global lookup.
    rooms: Mutex<BTreeMap<String, Arc<Room<Self>>>>,
    outbox: Outbox,
    closing: CancellationToken,
    disconnect: OnceLock<Disconnect>,
}

impl Peer {
    /// A peer with a unique `id`, its nickname if known (from a certificate), its trust and role.
    pub fn new(
        id: u64,
        nick: Option<String>,
        trust: Trust,
        admin: bool,
        limit_bytes: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            id,
            nick: Mutex::new(nick.map(Arc::from)),
            trust,
            admin,
            rooms: Mutex::new(BTreeMap::new()),
            outbox: Outbox::new(limit_bytes),
            closing: CancellationToken::new(),
            disconnect: OnceLock::new(),
        })
    }

    /// The peer's unique number for this server run.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The nickname, if one is set.
    pub fn nick(&self) -> Option<Arc<str>> {
        lock(&self.nick).clone()
    }

    pub(crate) fn set_nick(&self, nick: &str) {
        *lock(&self.nick) = Some(Arc::from(nick));
    }

    /// Whether the nickname comes from a verified certificate.
    pub fn trust(&self) -> Trust {
        self.trust
    }

    /// Whether the certificate carries the admin role.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// The keys of the rooms the peer is in.
    pub fn rooms(&self) -> Vec<String> {
        lock(&self.rooms).keys().cloned().collect()
    }

    pub(crate) fn room(&self, key: &str) -> Option<Arc<Room<Self>>> {
        lock(&self.rooms).get(key).cloned()
    }

    pub(crate) fn room_handles(&self) -> Vec<Arc<Room<Self>>> {
        lock(&self.rooms).values().cloned().collect()
    }

    pub(crate) fn room_count(&self) -> usize {
        lock(&self.rooms).len()
    }

    pub(crate) fn add_room(&self, key: &str, room: Arc<Room<Self>>) {
        lock(&self.rooms).insert(key.to_owned(), room);
    }

    pub(crate) fn remove_room(&self, key: &str) {
        lock(&self.rooms).remove(key);
    }

    /// The peer's outbound queue.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Queues a line for the peer; a full queue disconnects it as a slow consumer.
    pub fn deliver(&self, line: &Bytes) {
        if self.outbox.push(line.clone()).is_err() {
            self.disconnect(
                DisconnectCode::SlowConsumer,
                format!(
                    "outbound queue full ({} bytes): you are not reading fast enough",
                    self.outbox.limit_bytes
                ),
            );
        }
    }

    /// Queues a direct message, which may fill at most [`DIRECT_SHARE`] of the queue: the
    /// sender is refused (`TARGET_BUSY`) rather than the recipient cut off, and room traffic
    /// always keeps the rest of the queue.
    pub fn deliver_direct(&self, line: &Bytes) -> Result<(), Full> {
        self.outbox
            .push_up_to(line.clone(), self.outbox.limit_bytes / DIRECT_SHARE)
    }

    /// Asks the peer's connection to close with this reason. The first reason given wins.
    pub fn disconnect(&self, code: DisconnectCode, reason: String) {
        let _ = self.disconnect.set(Disconnect { code, reason });
        self.closing.cancel();
    }

    /// Why the peer is being disconnected, once [`disconnect`](Self::disconnect) was called.
    pub fn disconnect_reason(&self) -> Option<&Disconnect> {
        self.disconnect.get()
    }

    /// Completes when the server asks this peer's connection to close.
    pub async fn closing(&self) {
        self.closing.cancelled().await;
    }
}

impl Member for Peer {
    fn id(&self) -> u64 {
        self.id
    }

    fn deliver(&self, line: &Bytes) {
        Self::deliver(self, line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outbox_refuses_past_its_byte_limit_and_drains_in_order() {
        let outbox = Outbox::new(10);
        assert_eq!(outbox.push(Bytes::from_static(b"12345\n")), Ok(()));
        assert_eq!(outbox.push(Bytes::from_static(b"abcd\n")), Err(Full));
        assert_eq!(outbox.push(Bytes::from_static(b"abc\n")), Ok(()));
        assert_eq!(outbox.queued_bytes(), 10);
        let mut out = b"head\n".to_vec();
        outbox.drain_into(&mut out);
        assert_eq!(out, b"head\n12345\nabc\n");
        assert_eq!(outbox.queued_bytes(), 0);
        assert_eq!(outbox.push(Bytes::from_static(b"again\n")), Ok(()));
    }

    #[test]
    fn a_full_outbox_disconnects_the_peer_as_a_slow_consumer() {
        let peer = Peer::new(1, Some("slow".into()), Trust::Verified, false, 8);
        peer.deliver(&Bytes::from_static(b"1234567\n"));
        assert!(peer.disconnect_reason().is_none());
        peer.deliver(&Bytes::from_static(b"x\n"));
        assert_eq!(
            peer.disconnect_reason().unwrap().code,
            DisconnectCode::SlowConsumer
        );
        peer.disconnect(
            DisconnectCode::Kicked,
            "later reasons do not replace the first".into(),
        );
        assert_eq!(
            peer.disconnect_reason().unwrap().code,
            DisconnectCode::SlowConsumer
        );
    }

    #[test]
    fn direct_messages_fill_half_the_queue_and_never_cut_the_recipient_off() {
        let peer = Peer::new(1, Some("bob".into()), Trust::Verified, false, 20);
        let dm = Bytes::from_static(b"12345\n");
        assert_eq!(peer.deliver_direct(&dm), Ok(()));
        assert_eq!(
            peer.deliver_direct(&dm),
            Err(Full),
            "12 bytes would pass half of 20"
        );
        assert!(peer.disconnect_reason().is_none());
        peer.deliver(&Bytes::from_static(b"room message\n"));
        assert!(
            peer.disconnect_reason().is_none(),
            "room traffic keeps the rest"
        );
    }

    #[tokio::test]
    async fn a_push_wakes_a_waiting_writer_even_if_it_came_first() {
        let outbox = Outbox::new(100);
        outbox.push(Bytes::from_static(b"x\n")).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), outbox.ready())
            .await
            .expect("the stored notification wakes the writer");
    }
}
