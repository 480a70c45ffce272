//! One connection's protocol state, without I/O: the line decoder, the rate limiter and its
//! strikes, the held room-message batch, the idle keepalive, the output buffer and why the
//! connection ends. Time is passed in; nothing here reads a clock, spawns a task or touches a
//! socket (the loop in the parent module does, quinn-proto style).
//!
//! # Calling order
//!
//! 1. [`ConnState::new`] puts the greeting in the output.
//! 2. Whenever bytes were read into [`read_buffer`](ConnState::read_buffer):
//!    [`handle_input`](ConnState::handle_input); at end of stream, [`handle_eof`](ConnState::handle_eof).
//! 3. [`process`](ConnState::process) decodes and answers what is buffered (returns true when it
//!    stopped early with requests left, because the output is full or the connection closes).
//! 4. [`poll_transmit`](ConnState::poll_transmit) gives the bytes to write, within
//!    [`write_timeout`](ConnState::write_timeout); then [`handle_written`](ConnState::handle_written),
//!    or [`handle_write_failed`](ConnState::handle_write_failed) /
//!    [`handle_write_timeout`](ConnState::handle_write_timeout), which say why it ends.
//! 5. [`poll_close`](ConnState::poll_close): once it gives a reason, the connection ends.
//! 6. Otherwise wait for: news in the outbox ([`handle_outbox`](ConnState::handle_outbox)), the
//!    peer being cut off ([`handle_disconnect`](ConnState::handle_disconnect)), shutdown
//!    ([`handle_shutdown`](ConnState::handle_shutdown)), more bytes, or
//!    [`poll_timeout`](ConnState::poll_timeout) passing ([`handle_timeout`](ConnState::handle_timeout)).

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use chrono::{DateTime, Utc};
use tokio::sync::oneshot;
use tracing::{debug, trace, warn};

use tlschat_proto::codec::encode_line;
use tlschat_proto::names::name_key;
use tlschat_proto::{
    DisconnectCode, ErrorCode, Event, Frame, Greeting, LineDecoder, Reply, Request, Target, Verb,
};

use crate::chat::{Disconnect, Peer, Sent};
use crate::config::MAX_IN_FLIGHT;
use crate::identity::Identity;
use crate::limits::{Idle, RateLimiter, Verdict};
use crate::random::ProviderRandom;
use crate::session::{Outcome, Pending, Session};
use crate::shared::Shared;
use crate::store::commit::Answer;
use crate::verbs::VerbContext;

/// Most room messages sent as one batch.
pub(crate) const MAX_BATCH: usize = 256;

/// Output size at which the connection stops decoding buffered requests and writes first, so a
/// burst of pipelined requests cannot build an unbounded reply buffer.
pub(crate) const OUT_HIGH_WATER: usize = 64 * 1024;

/// Longest wait for the last words (`EVENT DISCONNECT`) to a client the server is cutting off.
pub(crate) const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a connection ended, as logged.
#[derive(Debug)]
pub enum CloseReason {
    /// The client sent `QUIT`.
    Quit,
    /// The client closed the connection between lines.
    PeerClosed,
    /// The client closed the connection in the middle of a line.
    PeerClosedMidLine,
    /// The server is shutting down.
    Shutdown,
    /// The server cut the client off (slow consumer, kicked, replaced…).
    Disconnected(Disconnect),
    /// Reading failed (including TLS errors).
    ReadFailed(io::Error),
    /// Writing failed.
    WriteFailed(io::Error),
    /// A write took longer than the write timeout: the client is not reading.
    WriteTimedOut,
}

impl CloseReason {
    /// The reason other members of the client's rooms see in `EVENT QUIT`: neutral words, never
    /// the text meant for the client itself (an admin's kick reason is public on purpose).
    pub(crate) fn public(&self) -> String {
        match self {
            Self::Quit => "quit".to_owned(),
            Self::Shutdown => "server shutdown".to_owned(),
            Self::Disconnected(d) => match d.code {
                DisconnectCode::Kicked => d.reason.clone(),
                DisconnectCode::Replaced => "reconnected".to_owned(),
                DisconnectCode::NickReclaimed => "name reclaimed by its owner".to_owned(),
                DisconnectCode::SlowConsumer => "not reading".to_owned(),
                DisconnectCode::Idle => "idle".to_owned(),
                DisconnectCode::Flood => "flooding".to_owned(),
                _ => "disconnected".to_owned(),
            },
            Self::WriteTimedOut => "not reading".to_owned(),
            _ => "connection closed".to_owned(),
        }
    }
}

impl CloseReason {
    /// Why, as a metric label: a small fixed set.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Quit => "quit",
            Self::PeerClosed | Self::PeerClosedMidLine => "peer_closed",
            Self::Shutdown => "shutdown",
            Self::Disconnected(d) => match d.code {
                DisconnectCode::SlowConsumer => "slow_consumer",
                DisconnectCode::Kicked => "kicked",
                DisconnectCode::Replaced => "replaced",
                DisconnectCode::NickReclaimed => "nick_reclaimed",
                DisconnectCode::Idle => "idle",
                DisconnectCode::Flood => "flood",
                DisconnectCode::Revoked => "revoked",
                _ => "other",
            },
            Self::ReadFailed(_) => "read_failed",
            Self::WriteFailed(_) => "write_failed",
            Self::WriteTimedOut => "write_timeout",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Quit => f.write_str("client quit"),
            Self::PeerClosed => f.write_str("client closed the connection"),
            Self::PeerClosedMidLine => f.write_str("client closed the connection mid-line"),
            Self::Shutdown => f.write_str("server shutdown"),
            Self::Disconnected(d) => write!(f, "{}: {}", d.code, d.reason),
            Self::ReadFailed(err) => write!(f, "read failed: {err}"),
            Self::WriteFailed(err) => write!(f, "write failed: {err}"),
            Self::WriteTimedOut => f.write_str("write timed out: client is not reading"),
        }
    }
}

/// A place in the reply order while answers are awaited.
enum Slot {
    /// An answer to come, owing this many replies.
    Waiting(usize),
    /// Replies known already, sent once the answers before them have come.
    Ready(Vec<Reply>),
}

/// What a decoded line that is not a room message leads to, once the held batch is sent.
enum Next {
    /// A request to carry out.
    Handle(Request),
    /// A reply already known (a refusal or a malformed line).
    Reply(Reply),
    /// Over the flood limit: the connection ends.
    Flooding,
}

/// One connection's state. See the module documentation for the calling order.
pub(crate) struct ConnState {
    shared: Arc<Shared>,
    session: Session,
    peer: Arc<Peer>,
    decoder: LineDecoder,
    /// Bytes read but not yet decoded. Owned here so reads are cancel-safe.
    inbuf: BytesMut,
    /// Replies and events waiting to be written, in order.
    out: Vec<u8>,
    dice: ProviderRandom,
    rate: RateLimiter,
    idle: Idle,
    /// When the last bytes arrived, for the idle timeout.
    last_input: Instant,
    /// Whether a keepalive ping went out since the last input.
    pinged: bool,
    /// Set once the connection must end after the pending output is written.
    closing: Option<CloseReason>,
    /// Room messages held back to go out together: the room and the texts, in order.
    batch: Option<(String, Vec<String>)>,
    /// Replies owed in request order while answers are awaited (messages being committed,
    /// history being read): each slot an answer to come, or replies already known that must
    /// wait for the ones before them.
    pending: VecDeque<Slot>,
    /// Awaited answers the loop has not taken yet to wait on (oldest first).
    answers: Vec<oneshot::Receiver<Answer>>,
    /// A line decoded while answers are awaited that is not a room message: handled once every
    /// answer has come, so its reply keeps its place.
    deferred: Option<Next>,
    /// Messages in `out` (for the delivery metrics), and when the oldest was queued.
    delivering: u64,
    delivering_since: Option<Instant>,
}

impl ConnState {
    /// The state of a connection from `identity`, opened at `now`, with the greeting queued.
    pub(crate) fn new(
        shared: Arc<Shared>,
        peer: Arc<Peer>,
        identity: &Identity,
        now: Instant,
    ) -> Self {
        let hint = if identity.verified {
            ""
        } else {
            "; send NICK name to chat"
        };
        let greeting = Greeting::new(
            shared.config.server_name.clone(),
            format!("you are {identity}{hint}; send HELP for commands"),
        );
        let mut out = Vec::new();
        encode_line(&greeting.to_string(), &mut out);
        Self {
            decoder: LineDecoder::new(shared.config.max_line_len),
            rate: RateLimiter::new(shared.config.rate_limit(), now),
            idle: Idle {
                timeout: shared.config.idle_timeout,
            },
            last_input: now,
            pinged: false,
            session: Session::new(peer.clone(), shared.hub.clone()),
            shared,
            peer,
            inbuf: BytesMut::new(),
            out,
            dice: ProviderRandom::new(),
            closing: None,
            batch: None,
            pending: VecDeque::new(),
            answers: Vec::new(),
            deferred: None,
            delivering: 0,
            delivering_since: None,
        }
    }

    /// Where the loop reads bytes to. An idle connection keeps none: it is allocated when
    /// bytes arrive (see the parent module's `read_some`).
    pub(crate) fn read_buffer(&mut self) -> &mut BytesMut {
        &mut self.inbuf
    }

    /// Lets go of an empty read buffer, so an idle connection holds no memory for it.
    pub(crate) fn release_read_buffer(&mut self) {
        if self.inbuf.is_empty() {
            self.inbuf = BytesMut::new();
        }
    }

    /// Bytes were read into the read buffer at `now`.
    pub(crate) fn handle_input(&mut self, now: Instant) {
        self.last_input = now;
        self.pinged = false;
    }

    /// The client closed its side: why the connection ends.
    pub(crate) fn handle_eof(&self) -> CloseReason {
        if self.decoder.is_mid_line(&self.inbuf) {
            CloseReason::PeerClosedMidLine
        } else {
            CloseReason::PeerClosed
        }
    }

    /// Everything others queued for this client goes to the output.
    pub(crate) fn handle_outbox(&mut self) {
        self.drain_outbox();
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due: the keepalive ping at half
    /// the idle timeout, the disconnect at the whole of it.
    pub(crate) fn poll_timeout(&self) -> Instant {
        self.idle.deadline(self.last_input, self.pinged)
    }

    /// The idle timer fired at `now` (early firings, for a deadline that moved, do nothing).
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if now < self.poll_timeout() {
            return;
        }
        if !self.pinged {
            self.pinged = true;
            let event = Event::Ping {
                token: now.duration_since(self.last_input).as_secs().to_string(),
            };
            encode_line(&event.to_string(), &mut self.out);
            return;
        }
        let timeout = tlschat_proto::duration::format_duration(self.idle.timeout);
        self.peer
            .disconnect(DisconnectCode::Idle, format!("no input for {timeout}"));
    }

    /// New answers to wait for, oldest first, if [`process`](Self::process) made some: the
    /// loop waits on them in order, calling [`handle_answer`](Self::handle_answer) for each.
    pub(crate) fn poll_answers(&mut self) -> std::vec::Drain<'_, oneshot::Receiver<Answer>> {
        self.answers.drain(..)
    }

    /// Whether the loop should read more input: not while a request waits for earlier answers,
    /// nor with as many batches in flight as allowed (the read buffer stays bounded).
    pub(crate) fn wants_input(&self) -> bool {
        self.deferred.is_none() && self.waiting() < MAX_IN_FLIGHT
    }

    /// Answers awaited now.
    fn waiting(&self) -> usize {
        self.pending
            .iter()
            .filter(|slot| matches!(slot, Slot::Waiting(_)))
            .count()
    }

    /// The oldest awaited answer came: its lines and replies go to the output, then the replies
    /// that were waiting behind it. An answer that can never come (the store's thread is gone)
    /// is a refusal.
    pub(crate) fn handle_answer(&mut self, answer: Result<Answer, oneshot::error::RecvError>) {
        let Some(Slot::Waiting(owed)) = self.pending.pop_front() else {
            return;
        };
        match answer {
            Ok(answer) => {
                self.out.extend_from_slice(&answer.lines);
                for reply in &answer.replies {
                    self.reply(reply);
                }
            }
            Err(_) => {
                let refusal = Reply::err(
                    ErrorCode::StoreFailed,
                    "the message store stopped; not stored and not sent",
                );
                for _ in 0..owed {
                    self.reply(&refusal);
                }
            }
        }
        while let Some(Slot::Ready(replies)) = self.pending.front() {
            let replies = replies.clone();
            self.pending.pop_front();
            for reply in &replies {
                self.reply(reply);
            }
        }
    }

    /// Shutdown: first everything already queued for this client, then the notice. (An awaited
    /// answer that has come is handed over first: shutdown waits for every commit.)
    pub(crate) fn handle_shutdown(&mut self) {
        self.drain_outbox();
        let event = Event::Shutdown {
            reason: self.shared.shutdown_reason().to_owned(),
        };
        encode_line(&event.to_string(), &mut self.out);
        self.closing = Some(CloseReason::Shutdown);
    }

    /// The server cuts this client off. A slow consumer's backlog is dropped (it is what the
    /// client could not take); otherwise what was queued goes out before the notice.
    pub(crate) fn handle_disconnect(&mut self) {
        let Some(disconnect) = self.peer.disconnect_reason().cloned() else {
            return;
        };
        if disconnect.code == DisconnectCode::SlowConsumer {
            self.out.clear();
        } else {
            self.drain_outbox();
        }
        let event = Event::Disconnect {
            code: disconnect.code,
            reason: disconnect.reason.clone(),
        };
        encode_line(&event.to_string(), &mut self.out);
        self.closing = Some(CloseReason::Disconnected(disconnect));
    }

    /// Decodes and answers buffered requests until none is left, the connection is closing, or
    /// the output is full. `wall` is the time stamped on messages. Returns true when requests
    /// may remain buffered.
    pub(crate) fn process(&mut self, now: Instant, wall: DateTime<Utc>) -> bool {
        // What others queued before these requests goes out before their replies.
        self.drain_outbox();
        if self.deferred.is_some() {
            if !self.pending.is_empty() {
                return false;
            }
            if let Some(next) = self.deferred.take() {
                self.run(next, wall);
            }
        }
        let more = self.process_frames(now, wall);
        self.flush_batch(wall);
        more && self.wants_input()
    }

    /// The bytes to write now, if any.
    pub(crate) fn poll_transmit(&self) -> Option<&[u8]> {
        (!self.out.is_empty()).then_some(self.out.as_slice())
    }

    /// Whether the server is cutting this client off (its last words are being written).
    pub(crate) fn is_cutting_off(&self) -> bool {
        matches!(self.closing, Some(CloseReason::Disconnected(_)))
    }

    /// How long the pending write may take: the goodbye timeout when the server is cutting
    /// the client off, else the write timeout.
    pub(crate) fn write_timeout(&self) -> Duration {
        if self.is_cutting_off() {
            GOODBYE_TIMEOUT.min(self.shared.config.write_timeout)
        } else {
            self.shared.config.write_timeout
        }
    }

    /// The pending output was written.
    pub(crate) fn handle_written(&mut self) {
        self.out.clear();
    }

    /// Writing failed: why the connection ends. A client being cut off may well fail to take
    /// its last words; the reason it is being cut off is what counts.
    pub(crate) fn handle_write_failed(&mut self, err: io::Error) -> CloseReason {
        self.closing.take().unwrap_or(CloseReason::WriteFailed(err))
    }

    /// The write took longer than [`write_timeout`](Self::write_timeout).
    pub(crate) fn handle_write_timeout(&mut self) -> CloseReason {
        self.closing.take().unwrap_or(CloseReason::WriteTimedOut)
    }

    /// The peer was cut off while a write to it was blocked: why the connection ends.
    pub(crate) fn handle_cut_off_while_writing(&self) -> CloseReason {
        let reason = self.peer.disconnect_reason().cloned();
        reason.map_or(CloseReason::WriteTimedOut, CloseReason::Disconnected)
    }

    /// Output produced but not (yet) written: at the end, what the client never got.
    pub(crate) fn unwritten(&self) -> &[u8] {
        &self.out
    }

    /// Why the connection ends, once the pending output is written.
    pub(crate) fn poll_close(&mut self) -> Option<CloseReason> {
        self.closing.take()
    }

    /// The loop of [`process`](Self::process). Consecutive room messages to the same room are
    /// gathered and sent as one batch (see [`Self::batch`]); anything else first sends the
    /// batch, so replies and deliveries keep the order of the requests.
    fn process_frames(&mut self, now: Instant, wall: DateTime<Utc>) -> bool {
        while self.closing.is_none() && self.wants_input() {
            if self.out.len() >= OUT_HIGH_WATER {
                return true;
            }
            let Some(frame) = self.decoder.decode(&mut self.inbuf) else {
                return false;
            };
            let next = match frame {
                Frame::Line(line) => {
                    trace!(nick = %self.nick_text(), %line, "request");
                    match Request::parse(&line) {
                        // Keepalive answers and blank lines get no reply.
                        Ok(None | Some(Request::Pong(_))) => continue,
                        Ok(Some(request)) => match self.count(&request).rate.check(now, line.len())
                        {
                            Verdict::Allow => match request {
                                Request::Msg {
                                    target: Target::Room(room),
                                    text,
                                } => {
                                    self.batch(room, text, wall);
                                    continue;
                                }
                                request => Next::Handle(request),
                            },
                            Verdict::Refuse => Next::Reply(self.rate_limited()),
                            Verdict::Disconnect => Next::Flooding,
                        },
                        Err(err) => Next::Reply(Reply::err(err.code(), err)),
                    }
                }
                Frame::TooLong => {
                    debug!(nick = %self.nick_text(), "line too long, discarded");
                    Next::Reply(Reply::err(
                        ErrorCode::LineTooLong,
                        format!(
                            "line longer than {} bytes; discarded",
                            self.decoder.max_len()
                        ),
                    ))
                }
                Frame::InvalidUtf8 => {
                    debug!(nick = %self.nick_text(), "line is not UTF-8, discarded");
                    Next::Reply(Reply::err(ErrorCode::BadUtf8, "line is not valid UTF-8"))
                }
            };
            // Anything but a room message sends the held batch first, and waits for every
            // awaited answer, so its reply keeps its place.
            self.flush_batch(wall);
            if !self.pending.is_empty() {
                self.deferred = Some(next);
                return false;
            }
            self.run(next, wall);
        }
        false
    }

    /// Carries out one decoded line.
    fn run(&mut self, next: Next, wall: DateTime<Utc>) {
        match next {
            Next::Handle(request) => {
                if let Some(reply) = self.handle(request, wall) {
                    self.reply(&reply);
                }
            }
            Next::Reply(reply) => self.reply(&reply),
            Next::Flooding => self.flooding(),
        }
    }

    /// The nickname for log lines: `-` before one is set.
    fn nick_text(&self) -> String {
        self.peer.nick().as_deref().unwrap_or("-").to_owned()
    }

    /// Everything others queued for this client goes to the output (gaps counted).
    fn drain_outbox(&mut self) {
        let drained = self.peer.outbox().drain_into(&mut self.out);
        if drained.gaps > 0 {
            self.shared.metrics.gaps(drained.gaps);
        }
        if drained.bytes > 0 {
            self.shared.metrics.outbox(drained.bytes);
        }
        self.delivering += drained.messages;
        if self.delivering_since.is_none() {
            self.delivering_since = drained.since;
        }
    }

    /// The messages in the output just written, and when the oldest of them was queued: taken
    /// once, after a write completes (see [`handle_written`](Self::handle_written)).
    pub(crate) fn take_delivered(&mut self) -> Option<(u64, Instant)> {
        let since = self.delivering_since.take()?;
        Some((std::mem::take(&mut self.delivering), since))
    }

    /// Counts a request read (for `--metrics`); returns `self` to go on with.
    fn count(&mut self, request: &Request) -> &mut Self {
        self.shared.metrics.request(request);
        self
    }

    fn reply(&mut self, reply: &Reply) {
        if let Reply::Err(err) = reply {
            self.shared.metrics.error(err.code);
        }
        let reply = reply.to_string();
        trace!(nick = %self.nick_text(), %reply, "reply");
        encode_line(&reply, &mut self.out);
    }

    /// Holds a room message back to send it together with the ones that follow it to the same
    /// room in this read: one queue push per member for the whole batch instead of one per
    /// message. Each message still gets its own number and reply, in order.
    fn batch(&mut self, room: String, text: String, wall: DateTime<Utc>) {
        match &mut self.batch {
            Some((held, texts)) if name_key(held) == name_key(&room) && texts.len() < MAX_BATCH => {
                texts.push(text);
            }
            _ => {
                self.flush_batch(wall);
                self.batch = Some((room, vec![text]));
            }
        }
    }

    /// Sends the held room messages, if any, and writes their replies (or queues them behind
    /// the answers awaited). With as many batches in flight as allowed, the batch stays held.
    fn flush_batch(&mut self, wall: DateTime<Utc>) {
        if self.waiting() >= MAX_IN_FLIGHT {
            return;
        }
        let Some((room, texts)) = self.batch.take() else {
            return;
        };
        let sent = match self.shared.admit() {
            Some(_admission) => self.session.message_room_batch(&room, &texts, wall),
            None => Sent::Now(vec![shutting_down(); texts.len()]),
        };
        match sent {
            Sent::Now(replies) if self.pending.is_empty() => {
                for reply in &replies {
                    self.reply(reply);
                }
            }
            Sent::Now(replies) => self.pending.push_back(Slot::Ready(replies)),
            Sent::Later(answer) => self.wait_for(answer, texts.len()),
        }
    }

    fn wait_for(&mut self, answer: oneshot::Receiver<Answer>, owed: usize) {
        self.pending.push_back(Slot::Waiting(owed));
        self.answers.push(answer);
    }

    fn rate_limited(&self) -> Reply {
        let rate = self.shared.config.rate_limit();
        debug!(nick = %self.nick_text(), "request refused by the rate limit");
        Reply::err(
            ErrorCode::RateLimited,
            format!(
                "slow down: {} requests and {} bytes a second, bursts of {} and {} bytes",
                rate.per_second, rate.bytes_per_second, rate.burst, rate.bytes_burst
            ),
        )
    }

    fn flooding(&mut self) {
        let rate = self.shared.config.rate_limit();
        warn!(nick = %self.nick_text(), "flooding client disconnected");
        self.peer.disconnect(
            DisconnectCode::Flood,
            format!(
                "too many requests refused in a row (limit {} a second)",
                rate.per_second
            ),
        );
        self.handle_disconnect();
    }

    /// Handles one request: its reply now, or `None` when it is pending.
    fn handle(&mut self, request: Request, wall: DateTime<Utc>) -> Option<Reply> {
        let Some(_admission) = self.shared.admit() else {
            return Some(shutting_down());
        };
        let mut cx = VerbContext {
            server_name: &self.shared.config.server_name,
            now: wall,
            dice: &mut self.dice,
            available: Verb::ALL,
        };
        Some(match self.session.handle(request, &mut cx) {
            Outcome::Reply(reply) => reply,
            Outcome::Close(reply) => {
                self.closing = Some(CloseReason::Quit);
                reply
            }
            Outcome::Stats => Reply::ok(self.shared.stats_line()),
            Outcome::Reload => match self.shared.reload() {
                Ok(()) => Reply::ok("reloaded"),
                Err(reason) => Reply::err(ErrorCode::ReloadFailed, reason),
            },
            Outcome::Shutdown(reply) => {
                let who = self.peer.nick();
                let who = who.as_deref().unwrap_or("an admin");
                self.shared
                    .request_stop(format!("shutdown requested by {who}"));
                reply
            }
            Outcome::Later(Pending(answer)) => {
                self.pending.push_back(Slot::Waiting(1));
                self.answers.push(answer);
                return None;
            }
        })
    }
}

/// The reply to a request that arrives once the server has begun to shut down.
fn shutting_down() -> Reply {
    Reply::err(ErrorCode::ShuttingDown, "the server is shutting down")
}

#[cfg(test)]
mod tests;
