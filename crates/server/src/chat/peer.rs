//! One connected client as the rest of the server sees it: its name, its rooms, its bounded
//! outbound queue and a way to disconnect it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use tlschat_proto::codec::encode_line;
use tlschat_proto::{DisconnectCode, Event, Trust};

use super::room::{Member, Room};
use crate::sync::lock;

/// A bounded queue of encoded lines for one connection, filled by other connections (room
/// messages, DMs) and drained by the connection's own writer.
///
/// When full, [`push`](Self::push) fails at once instead of waiting: a slow reader never slows
/// the sender or the room. The caller then disconnects the slow reader. Stored messages go
/// through [`push_messages`](Self::push_messages) instead: what does not fit is remembered
/// as a gap per conversation, and the next drain ends with `EVENT GAP` for each, so the
/// reader fetches what it missed from history and nobody is cut off.
pub struct Outbox {
    state: Mutex<OutboxState>,
    ready: Notify,
    limit_bytes: usize,
}

#[derive(Default)]
struct OutboxState {
    queue: Vec<Bytes>,
    bytes: usize,
    /// Messages skipped per conversation, told at the next drain.
    gaps: Vec<Gap>,
    /// The last stored message id queued (or sent by the owner itself) per conversation:
    /// where the owner resumes after a disconnect, once what was never written is taken off.
    marks: Vec<(String, u64)>,
    /// Messages queued since the last drain, and when the first of them was (for the
    /// delivery metrics).
    messages: u64,
    since: Option<Instant>,
}

impl OutboxState {
    /// Counts `messages` more queued now.
    fn count(&mut self, messages: u64) {
        if messages > 0 {
            self.messages += messages;
            self.since.get_or_insert_with(Instant::now);
        }
    }

    fn mark(&mut self, target: &str, id: u64) {
        match self.marks.iter_mut().find(|(t, _)| t == target) {
            Some((_, mark)) => *mark = (*mark).max(id),
            None => self.marks.push((target.to_owned(), id)),
        }
    }
}

/// Messages `first..=last` of a conversation that did not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Gap {
    target: String,
    first: u64,
    last: u64,
}

/// What [`Outbox::drain_into`] took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Gaps told.
    pub gaps: usize,
    /// Messages taken.
    pub messages: u64,
    /// When the oldest of them was queued.
    pub since: Option<Instant>,
    /// Bytes taken from the queue.
    pub bytes: usize,
}

/// What became of stored messages offered to an outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// Skipped: the reader will be told with `EVENT GAP`.
    Gapped,
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
        self.push_up_to(line, self.limit_bytes, 0)
    }

    /// Queues a line holding `messages` messages (0 for other events) unless the queue would
    /// then hold more than `fill` bytes (or its limit).
    pub fn push_up_to(&self, line: Bytes, fill: usize, messages: u64) -> Result<(), Full> {
        let mut state = lock(&self.state);
        if state.bytes + line.len() > fill.min(self.limit_bytes) {
            return Err(Full);
        }
        state.count(messages);
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

    /// Queues messages `first..=last` of `target` (a room, or the other party of a
    /// conversation), encoded as one buffer, unless the queue would then hold more than
    /// `fill` bytes or `target` already has a gap waiting: then they join its gap.
    pub fn push_messages(
        &self,
        target: &str,
        first: u64,
        last: u64,
        line: Bytes,
        fill: usize,
    ) -> Pushed {
        let mut state = lock(&self.state);
        if let Some(gap) = state.gaps.iter_mut().find(|g| g.target == target) {
            gap.last = gap.last.max(last);
            return Pushed::Gapped;
        }
        if state.bytes + line.len() > fill.min(self.limit_bytes) {
            state.gaps.push(Gap {
                target: target.to_owned(),
                first,
                last,
            });
            // The next drain tells of the gap: wake the writer if nothing else will.
            let idle = state.queue.is_empty();
            drop(state);
            if idle {
                self.ready.notify_one();
            }
            return Pushed::Gapped;
        }
        state.count(last - first + 1);
        state.bytes += line.len();
        let was_empty = state.queue.is_empty();
        state.queue.push(line);
        state.mark(target, last);
        drop(state);
        if was_empty {
            self.ready.notify_one();
        }
        Pushed::Queued
    }

    /// The owner sent message `id` of `target` itself (so it need not get it back): it counts
    /// as received, unless messages before it are still owed (a gap).
    pub fn mark_own(&self, target: &str, id: u64) {
        let mut state = lock(&self.state);
        if !state.gaps.iter().any(|g| g.target == target) {
            state.mark(target, id);
        }
    }

    /// Where the owner resumes, per conversation: the last message id it received, after a
    /// disconnect. What is still queued, what was skipped (a gap) and `unwritten` (output taken
    /// from the queue but never written) do not count as received.
    pub fn resume_points(&self, unwritten: &[u8]) -> Vec<(String, u64)> {
        let state = lock(&self.state);
        let mut points = state.marks.clone();
        let mut lower = |target: &str, first: u64| {
            let floor = first.saturating_sub(1);
            match points.iter_mut().find(|(t, _)| t == target) {
                Some((_, mark)) => *mark = (*mark).min(floor),
                None => points.push((target.to_owned(), floor)),
            }
        };
        for gap in &state.gaps {
            lower(&gap.target, gap.first);
        }
        let queued = state.queue.iter().map(|b| &b[..]);
        for bytes in queued.chain([unwritten]) {
            for line in bytes.split(|&b| b == b'\n') {
                if let Some((target, id)) = message_of(line) {
                    lower(&target, id);
                }
            }
        }
        points
    }

    /// Appends everything queued to `out`, in order, then an `EVENT GAP` for each conversation
    /// that had messages skipped, and empties the queue. Returns how many gaps it told.
    pub fn drain_into(&self, out: &mut Vec<u8>) -> Drained {
        let (queue, gaps, messages, since) = {
            let mut state = lock(&self.state);
            state.bytes = 0;
            (
                std::mem::take(&mut state.queue),
                std::mem::take(&mut state.gaps),
                std::mem::take(&mut state.messages),
                state.since.take(),
            )
        };
        let bytes = queue.iter().map(Bytes::len).sum();
        out.reserve(bytes);
        for line in &queue {
            out.extend_from_slice(line);
        }
        let told = gaps.len();
        for gap in gaps {
            let event = Event::Gap {
                target: gap.target,
                first: gap.first,
                last: gap.last,
            };
            encode_line(&event.to_string(), out);
        }
        Drained {
            gaps: told,
            messages,
            since,
            bytes,
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

/// The conversation and id of a stored message's event line (`EVENT MSG`, `EVENT DM`, `EVENT
/// E2E`), as its recipient names the conversation: the room, or the sender.
fn message_of(line: &[u8]) -> Option<(String, u64)> {
    use tlschat_proto::{Event, ServerLine};
    let line = std::str::from_utf8(line).ok()?;
    if !line.starts_with("EVENT ") {
        return None;
    }
    match ServerLine::parse(line).ok()? {
        ServerLine::Event(Event::Message { room, id, .. }) => Some((room, id)),
        ServerLine::Event(Event::Direct { from, id, .. } | Event::E2e { from, id, .. }) => {
            Some((from, id))
        }
        _ => None,
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
    /// Cancelled once the peer has left everything (after its connection ended).
    left: CancellationToken,
    /// The serial number of its verified certificate, for revocation.
    serial: OnceLock<Vec<u8>>,
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
            left: CancellationToken::new(),
            serial: OnceLock::new(),
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
    pub fn deliver(&self, line: &Bytes, messages: u64) {
        if self
            .outbox
            .push_up_to(line.clone(), self.outbox.limit_bytes, messages)
            .is_err()
        {
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
            .push_up_to(line.clone(), self.outbox.limit_bytes / DIRECT_SHARE, 1)
    }

    /// Queues stored room messages `first..=last` of `room` (one buffer); what does not fit
    /// becomes a gap the peer is told about (see [`Outbox::push_messages`]).
    pub fn deliver_messages(&self, room: &str, first: u64, last: u64, line: &Bytes) -> Pushed {
        self.outbox
            .push_messages(room, first, last, line.clone(), self.outbox.limit_bytes)
    }

    /// Queues a stored direct message from `from` with id `id`, within [`DIRECT_SHARE`] of the
    /// queue; past it, the peer is told of a gap in its conversation with `from`.
    pub fn deliver_stored_direct(&self, from: &str, id: u64, line: &Bytes) -> Pushed {
        self.outbox.push_messages(
            from,
            id,
            id,
            line.clone(),
            self.outbox.limit_bytes / DIRECT_SHARE,
        )
    }

    /// The peer sent stored message `id` of `target` itself: see [`Outbox::mark_own`].
    pub fn mark_own(&self, target: &str, id: u64) {
        self.outbox.mark_own(target, id);
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

    /// Records the serial number of the peer's verified certificate (once).
    pub fn set_serial(&self, serial: Vec<u8>) {
        let _ = self.serial.set(serial);
    }

    /// The serial number of the peer's verified certificate, if it has one.
    pub fn serial(&self) -> Option<&[u8]> {
        self.serial.get().map(Vec::as_slice)
    }

    /// The peer has left its rooms and the store knows where it resumes.
    pub(crate) fn mark_left(&self) {
        self.left.cancel();
    }

    /// Completes once the peer has left everything (after its connection ended).
    pub async fn left(&self) {
        self.left.cancelled().await;
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

    fn deliver(&self, line: &Bytes, messages: u64) {
        Self::deliver(self, line, messages);
    }

    fn deliver_messages(&self, room: &str, first: u64, last: u64, line: &Bytes) {
        Self::deliver_messages(self, room, first, last, line);
    }
}

/// Encodes an event once, as a line to be shared by every recipient's outbox.
pub(crate) fn encode(event: &Event) -> Bytes {
    let mut line = Vec::new();
    encode_line(&event.to_string(), &mut line);
    Bytes::from(line)
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
    fn a_drain_counts_the_messages_queued_since_the_last_and_when_the_first_came() {
        let outbox = Outbox::new(1000);
        let mut out = Vec::new();
        outbox
            .push_up_to(Bytes::from_static(b"JOIN\n"), 1000, 0)
            .unwrap();
        let drained = outbox.drain_into(&mut out);
        assert_eq!(
            (drained.messages, drained.since),
            (0, None),
            "an event is no message"
        );
        outbox
            .push_up_to(Bytes::from_static(b"a\nb\nc\n"), 1000, 3)
            .unwrap();
        outbox
            .push_up_to(Bytes::from_static(b"d\n"), 1000, 1)
            .unwrap();
        let drained = outbox.drain_into(&mut out);
        assert_eq!(drained.messages, 4);
        assert!(drained.since.is_some());
        let drained = outbox.drain_into(&mut out);
        assert_eq!((drained.messages, drained.since), (0, None), "counted once");
        // Stored messages 5 to 7 of a room, in one buffer: three.
        let pushed = outbox.push_messages("#r", 5, 7, Bytes::from_static(b"x\ny\nz\n"), 1000);
        assert_eq!(pushed, Pushed::Queued);
        assert_eq!(outbox.drain_into(&mut out).messages, 3);
    }

    #[test]
    fn a_full_outbox_disconnects_the_peer_as_a_slow_consumer() {
        let peer = Peer::new(1, Some("slow".into()), Trust::Verified, false, 8);
        peer.deliver(&Bytes::from_static(b"1234567\n"), 0);
        assert!(peer.disconnect_reason().is_none());
        peer.deliver(&Bytes::from_static(b"x\n"), 0);
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
        peer.deliver(&Bytes::from_static(b"room message\n"), 1);
        assert!(
            peer.disconnect_reason().is_none(),
            "room traffic keeps the rest"
        );
    }

    #[test]
    fn stored_messages_that_do_not_fit_become_one_gap_told_after_the_queue() {
        let outbox = Outbox::new(20);
        let line = |text: &'static str| Bytes::from_static(text.as_bytes());
        assert_eq!(
            outbox.push_messages("#a", 1, 1, line("one....\n"), 20),
            Pushed::Queued
        );
        assert_eq!(
            outbox.push_messages("#a", 2, 3, line("two+three..\n"), 20),
            Pushed::Queued
        );
        assert_eq!(
            outbox.push_messages("#a", 4, 4, line("four\n"), 20),
            Pushed::Gapped
        );
        assert_eq!(
            outbox.push_messages("#b", 9, 9, line("b\n"), 20),
            Pushed::Gapped
        );
        let mut out = Vec::new();
        outbox.drain_into(&mut out);
        // Once a conversation has a gap, later messages join it, even with room again.
        assert_eq!(
            outbox.push_messages("#a", 5, 6, line("five\n"), 20),
            Pushed::Queued
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "one....\ntwo+three..\nEVENT GAP #a 4 4\nEVENT GAP #b 9 9\n"
        );
        let gapped = Outbox::new(4);
        gapped.push_messages("#a", 1, 1, line("12345\n"), 4);
        // Nothing is queued, yet the writer is woken to tell of the gap.
        let woken = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(5), gapped.ready()).await
            });
        assert!(woken.is_ok(), "a gap wakes the writer");
        gapped.push_messages("#a", 2, 7, line("x\n"), 4);
        let mut out = Vec::new();
        gapped.drain_into(&mut out);
        assert_eq!(out, b"EVENT GAP #a 1 7\n");
    }

    #[test]
    fn resume_points_leave_out_what_was_never_written() {
        let outbox = Outbox::new(1000);
        let event = |room: &str, id: u64| {
            Bytes::from(format!(
                "EVENT MSG {room} {id} bob verified 2026-01-01T00:00:00.000Z hi\n"
            ))
        };
        for id in 1..=3 {
            outbox.push_messages("#a", id, id, event("#a", id), 1000);
        }
        let mut out = Vec::new();
        outbox.drain_into(&mut out);
        outbox.push_messages("#a", 4, 4, event("#a", 4), 1000);
        outbox.mark_own("#b", 7);
        let dm = "EVENT DM 5 alice bob verified 2026-01-01T00:00:00.000Z x\n";
        outbox.push_messages("alice", 5, 5, Bytes::from(dm), 1000);
        // 1-3 were written, 4 is still queued, the DM is queued: it resumes after 3 and 4.
        let mut points = outbox.resume_points(b"");
        points.sort();
        assert_eq!(
            points,
            [("#a".into(), 3), ("#b".into(), 7), ("alice".into(), 4)]
        );
        // The last write failed: 3 was never written either.
        let unwritten = event("#a", 3);
        let mut points = outbox.resume_points(&unwritten);
        points.sort();
        assert_eq!(points[0], ("#a".into(), 2));
        // A gap holds the mark back, for own messages too.
        let full = Outbox::new(10);
        full.push_messages("#c", 9, 9, event("#c", 9), 10);
        full.mark_own("#c", 12);
        assert_eq!(full.resume_points(b""), [("#c".to_owned(), 8)]);
        // Only that conversation's gap: another one's own message counts.
        full.mark_own("#d", 5);
        let mut points = full.resume_points(b"");
        points.sort();
        assert_eq!(points, [("#c".to_owned(), 8), ("#d".to_owned(), 5)]);
    }

    #[test]
    fn a_room_broadcast_of_stored_messages_reaches_every_member_but_the_sender() {
        let room = Room::<Peer>::new("#r".into());
        let alice = Peer::new(1, Some("alice".into()), Trust::Verified, false, 1000);
        let bob = Peer::new(2, Some("bob".into()), Trust::Verified, false, 1000);
        lock(&room.state)
            .members
            .extend([alice.clone(), bob.clone()]);
        let line = Bytes::from_static(b"m4\nm5\n");
        lock(&room.state).broadcast_messages("#r", 4, 5, &line, alice.id());
        let mut out = Vec::new();
        assert_eq!(bob.outbox().drain_into(&mut out).messages, 2);
        assert_eq!(out, b"m4\nm5\n");
        assert_eq!(bob.outbox().resume_points(b""), [("#r".to_owned(), 5)]);
        assert_eq!(alice.outbox().queued_bytes(), 0, "not to the sender");
    }

    #[test]
    fn stored_direct_messages_fill_half_the_queue_then_become_a_gap() {
        let peer = Peer::new(1, Some("bob".into()), Trust::Verified, false, 20);
        let dm = |id: u64| Bytes::from(format!("DM {id} al\n"));
        assert_eq!(dm(1).len(), 8);
        assert_eq!(peer.deliver_stored_direct("al", 1, &dm(1)), Pushed::Queued);
        // 16 bytes would fit the whole queue's 20, but not half of it: a gap.
        assert_eq!(peer.deliver_stored_direct("al", 2, &dm(2)), Pushed::Gapped);
        assert_eq!(peer.outbox().queued_bytes(), 8);
    }

    #[test]
    fn a_peer_remembers_its_own_messages_and_its_certificate_serial() {
        let peer = Peer::new(1, Some("alice".into()), Trust::Verified, false, 1000);
        peer.mark_own("#r", 5);
        assert_eq!(peer.outbox().resume_points(b""), [("#r".to_owned(), 5)]);
        assert_eq!(peer.serial(), None);
        peer.set_serial(vec![7, 8]);
        peer.set_serial(vec![9]);
        assert_eq!(peer.serial(), Some(&[7, 8][..]), "the first serial stays");
    }

    #[test]
    fn left_completes_only_once_the_peer_has_left() {
        use futures_util::FutureExt;
        let peer = Peer::new(1, Some("alice".into()), Trust::Verified, false, 1000);
        assert!(peer.left().now_or_never().is_none(), "still here");
        peer.mark_left();
        assert!(peer.left().now_or_never().is_some());
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
