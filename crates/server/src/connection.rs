//! One client's connection: the TLS handshake, bounded reads, and one writer that coalesces.
//!
//! Each connection is one task that owns its TLS stream. It reads into a buffer it keeps (so a
//! read abandoned by `select!` loses nothing), decodes every complete line, appends each reply to
//! one output buffer together with everything other clients queued for it (room messages, DMs),
//! and writes that buffer in one go: many lines cost one TLS write and few syscalls. A write that
//! takes longer than the write timeout ends the connection, so a client that stops reading
//! cannot hold server memory; one that falls behind by more than its outbound queue is cut off
//! by whoever tries to queue for it (see [`Peer::deliver`]).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use chrono::Utc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tracing::{debug, info, trace, warn};

use tlschat_proto::codec::encode_line;
use tlschat_proto::names::name_key;
use tlschat_proto::{
    DisconnectCode, ErrorCode, Event, Frame, Greeting, LineDecoder, Reply, Request, Target, Trust,
    Verb,
};

use crate::chat::{Disconnect, Peer};
use crate::identity::Identity;
use crate::limits::{AddressSlot, Idle, RateLimiter, Verdict};
use crate::random::ProviderRandom;
use crate::session::{Outcome, Session};
use crate::shared::Shared;
use crate::verbs::VerbContext;

/// How much to read at a time, in bytes.
const READ_CHUNK: usize = 16 * 1024;

/// Most room messages sent as one batch.
const MAX_BATCH: usize = 256;

/// Output size at which the connection stops decoding buffered requests and writes first, so a
/// burst of pipelined requests cannot build an unbounded reply buffer.
const OUT_HIGH_WATER: usize = 64 * 1024;

/// Longest wait for the last words (`EVENT DISCONNECT`) to a client the server is cutting off.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

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
    /// The reason other members of the client's rooms see in `EVENT QUIT`.
    fn public(&self) -> String {
        match self {
            Self::Quit => "quit".to_owned(),
            Self::Shutdown => "server shutdown".to_owned(),
            Self::Disconnected(d) => d.reason.clone(),
            Self::WriteTimedOut => "not reading".to_owned(),
            _ => "connection closed".to_owned(),
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

/// What a decoded line that is not a room message leads to, once the held batch is sent.
enum Next {
    /// A request to carry out.
    Handle(Request),
    /// A reply already known (a refusal or a malformed line).
    Reply(Reply),
    /// Over the flood limit: the connection ends.
    Flooding,
}

/// The per-address slots a connection holds: one for its life, one for its handshake.
pub(crate) struct AddressSlots {
    /// Counts against `max-connections-per-ip` until the connection ends.
    pub(crate) connection: AddressSlot,
    /// Counts against `max-handshakes-per-ip` until the handshake ends.
    pub(crate) handshake: AddressSlot,
}

/// Serves one accepted TCP connection to the end. The permit is the connection's slot under the
/// connection limit and is released when this returns.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer_addr: SocketAddr,
    _permit: OwnedSemaphorePermit,
    slots: AddressSlots,
) {
    if let Err(err) = tcp.set_nodelay(true) {
        debug!(peer = %peer_addr, error = %err, "cannot set TCP_NODELAY");
    }
    let AddressSlots {
        connection: _address_slot,
        handshake,
    } = slots;
    let handshake_done = tokio::time::timeout(
        shared.config.handshake_timeout,
        shared.acceptor().accept(tcp),
    );
    let stream = tokio::select! {
        result = handshake_done => match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                info!(peer = %peer_addr, error = %err, "TLS handshake failed");
                return;
            }
            Err(_) => {
                info!(peer = %peer_addr, timeout = ?shared.config.handshake_timeout,
                      "TLS handshake timed out");
                return;
            }
        },
        () = shared.shutdown.cancelled() => return,
    };
    drop(handshake);
    let (_, tls) = stream.get_ref();
    let identity = Identity::from_peer_certificates(tls.peer_certificates());
    info!(
        peer = %peer_addr,
        %identity,
        version = ?tls.protocol_version(),
        kx = ?tls.negotiated_key_exchange_group().map(|g| g.name()),
        "connected"
    );
    let trust = if identity.verified {
        Trust::Verified
    } else {
        Trust::Unverified
    };
    let peer = Peer::new(
        shared.hub.next_peer_id(),
        identity.name.clone().filter(|_| identity.verified),
        trust,
        identity.admin,
        shared.config.max_pending_bytes,
    );
    shared.hub.register_verified(&peer);
    shared.connections.fetch_add(1, Ordering::Relaxed);
    let mut connection = Connection::new(shared.clone(), stream, peer.clone());
    let reason = connection.run(&identity).await;
    shared.connections.fetch_sub(1, Ordering::Relaxed);
    shared.hub.leave_all(&peer, &reason.public());
    let nick = peer.nick();
    let nick = nick.as_deref().unwrap_or("-");
    match &reason {
        CloseReason::Disconnected(d) if d.code == DisconnectCode::SlowConsumer => {
            warn!(peer = %peer_addr, nick, %reason, "slow consumer disconnected");
        }
        _ => info!(peer = %peer_addr, nick, %reason, "disconnected"),
    }
}

struct Connection {
    shared: Arc<Shared>,
    stream: TlsStream<TcpStream>,
    session: Session,
    peer: Arc<Peer>,
    decoder: LineDecoder,
    /// Bytes read but not yet decoded. Owned here so reads are cancel-safe.
    inbuf: BytesMut,
    /// Replies and events waiting to be written, in order.
    out: Vec<u8>,
    dice: ProviderRandom,
    rate: RateLimiter,
    /// When the last bytes arrived, for the idle timeout.
    last_input: Instant,
    /// Whether a keepalive ping went out since the last input.
    pinged: bool,
    /// Set once the connection must end after the pending output is written.
    closing: Option<CloseReason>,
    /// Room messages held back to go out together: the room and the texts, in order.
    batch: Option<(String, Vec<String>)>,
}

impl Connection {
    fn new(shared: Arc<Shared>, stream: TlsStream<TcpStream>, peer: Arc<Peer>) -> Self {
        let decoder = LineDecoder::new(shared.config.max_line_len);
        let now = Instant::now();
        Self {
            rate: RateLimiter::new(shared.config.rate, now.into_std()),
            last_input: now,
            pinged: false,
            session: Session::new(peer.clone(), shared.hub.clone()),
            shared,
            stream,
            peer,
            decoder,
            inbuf: BytesMut::new(),
            out: Vec::new(),
            dice: ProviderRandom::new(),
            closing: None,
            batch: None,
        }
    }

    async fn run(&mut self, identity: &Identity) -> CloseReason {
        let hint = if identity.verified {
            ""
        } else {
            "; send NICK name to chat"
        };
        let greeting = Greeting::new(
            self.shared.config.server_name.clone(),
            format!("you are {identity}{hint}; send HELP for commands"),
        );
        encode_line(&greeting.to_string(), &mut self.out);
        let reason = self.serve_lines().await;
        self.close().await;
        reason
    }

    /// The main loop: write what is pending, then wait for input, news for this client, a
    /// disconnect order or shutdown.
    async fn serve_lines(&mut self) -> CloseReason {
        let idle = Idle {
            timeout: self.shared.config.idle_timeout,
        };
        let first = idle.deadline(self.last_input.into_std(), self.pinged);
        let idle_timer = tokio::time::sleep_until(Instant::from_std(first));
        tokio::pin!(idle_timer);
        loop {
            let more_buffered = self.process_buffered();
            if let Err(reason) = self.flush().await {
                return reason;
            }
            if let Some(reason) = self.closing.take() {
                return reason;
            }
            if more_buffered {
                continue;
            }
            // An idle connection keeps no read buffer: it is allocated when bytes arrive.
            if self.inbuf.is_empty() {
                self.inbuf = BytesMut::new();
            }
            tokio::select! {
                biased;
                () = self.shared.shutdown.cancelled() => self.say_goodbye_for_shutdown(),
                () = self.peer.closing() => self.say_goodbye_for_disconnect(),
                () = self.peer.outbox().ready() => self.peer.outbox().drain_into(&mut self.out),
                () = idle_timer.as_mut() => {
                    // The timer is not moved on every read (that would cost a timer-wheel
                    // update per request); when it fires early, it is moved to the real
                    // deadline instead.
                    let due = Instant::from_std(idle.deadline(self.last_input.into_std(), self.pinged));
                    if Instant::now() >= due {
                        self.on_idle();
                    }
                    let next = idle.deadline(self.last_input.into_std(), self.pinged);
                    idle_timer.as_mut().reset(Instant::from_std(next));
                }
                read = read_some(&mut self.stream, &mut self.inbuf) => match read {
                    Ok(0) if self.decoder.is_mid_line(&self.inbuf) => {
                        return CloseReason::PeerClosedMidLine;
                    }
                    Ok(0) => return CloseReason::PeerClosed,
                    Ok(_) => {
                        self.last_input = Instant::now();
                        self.pinged = false;
                    }
                    // A close without TLS close_notify is still the client going away.
                    Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                        return if self.decoder.is_mid_line(&self.inbuf) {
                            CloseReason::PeerClosedMidLine
                        } else {
                            CloseReason::PeerClosed
                        };
                    }
                    Err(err) => return CloseReason::ReadFailed(err),
                },
            }
        }
    }

    /// Nothing came in for a while: a keepalive ping at half the idle timeout, a disconnect at
    /// the whole of it.
    fn on_idle(&mut self) {
        if !self.pinged {
            self.pinged = true;
            let event = Event::Ping {
                token: self.last_input.elapsed().as_secs().to_string(),
            };
            encode_line(&event.to_string(), &mut self.out);
            return;
        }
        let timeout = tlschat_proto::duration::format_duration(self.shared.config.idle_timeout);
        self.peer
            .disconnect(DisconnectCode::Idle, format!("no input for {timeout}"));
    }

    /// Shutdown: first everything already queued for this client, then the notice.
    fn say_goodbye_for_shutdown(&mut self) {
        self.peer.outbox().drain_into(&mut self.out);
        let event = Event::Shutdown {
            reason: self.shared.shutdown_reason().to_owned(),
        };
        encode_line(&event.to_string(), &mut self.out);
        self.closing = Some(CloseReason::Shutdown);
    }

    /// The server cuts this client off. A slow consumer's backlog is dropped (it is what the
    /// client could not take); otherwise what was queued goes out before the notice.
    fn say_goodbye_for_disconnect(&mut self) {
        let Some(disconnect) = self.peer.disconnect_reason().cloned() else {
            return;
        };
        if disconnect.code == DisconnectCode::SlowConsumer {
            self.out.clear();
        } else {
            self.peer.outbox().drain_into(&mut self.out);
        }
        let event = Event::Disconnect {
            code: disconnect.code,
            reason: disconnect.reason.clone(),
        };
        encode_line(&event.to_string(), &mut self.out);
        self.closing = Some(CloseReason::Disconnected(disconnect));
    }

    /// Decodes and answers buffered requests until none is left, the connection is closing, or
    /// the output buffer is full. Returns true when requests may remain buffered.
    fn process_buffered(&mut self) -> bool {
        // What others queued before these requests goes out before their replies.
        self.peer.outbox().drain_into(&mut self.out);
        let more = self.process_frames();
        self.flush_batch();
        more
    }

    /// The loop of [`process_buffered`](Self::process_buffered). Consecutive room messages to
    /// the same room are gathered and sent as one batch (see [`Self::batch`]); anything else
    /// first sends the batch, so replies and deliveries keep the order of the requests.
    fn process_frames(&mut self) -> bool {
        while self.closing.is_none() {
            if self.out.len() >= OUT_HIGH_WATER {
                return true;
            }
            let Some(frame) = self.decoder.decode(&mut self.inbuf) else {
                return false;
            };
            let next = match frame {
                Frame::Line(line) => {
                    trace!(nick = ?self.peer.nick(), %line, "request");
                    match Request::parse(&line) {
                        // Keepalive answers and blank lines get no reply.
                        Ok(None | Some(Request::Pong(_))) => continue,
                        Ok(Some(request)) => {
                            match self.rate.check(std::time::Instant::now(), line.len()) {
                                Verdict::Allow => match request {
                                    Request::Msg {
                                        target: Target::Room(room),
                                        text,
                                    } => {
                                        self.batch(room, text);
                                        continue;
                                    }
                                    request => Next::Handle(request),
                                },
                                Verdict::Refuse => Next::Reply(self.rate_limited()),
                                Verdict::Disconnect => Next::Flooding,
                            }
                        }
                        Err(err) => Next::Reply(Reply::err(err.code(), err)),
                    }
                }
                Frame::TooLong => {
                    debug!(nick = ?self.peer.nick(), "line too long, discarded");
                    Next::Reply(Reply::err(
                        ErrorCode::LineTooLong,
                        format!(
                            "line longer than {} bytes; discarded",
                            self.decoder.max_len()
                        ),
                    ))
                }
                Frame::InvalidUtf8 => {
                    debug!(nick = ?self.peer.nick(), "line is not UTF-8, discarded");
                    Next::Reply(Reply::err(ErrorCode::BadUtf8, "line is not valid UTF-8"))
                }
            };
            // Anything but a room message sends the held batch first.
            self.flush_batch();
            match next {
                Next::Handle(request) => {
                    let reply = self.handle(request);
                    self.reply(&reply);
                }
                Next::Reply(reply) => self.reply(&reply),
                Next::Flooding => self.flooding(),
            }
        }
        false
    }

    fn reply(&mut self, reply: &Reply) {
        let reply = reply.to_string();
        trace!(nick = ?self.peer.nick(), %reply, "reply");
        encode_line(&reply, &mut self.out);
    }

    /// Holds a room message back to send it together with the ones that follow it to the same
    /// room in this read: one queue push per member for the whole batch instead of one per
    /// message. Each message still gets its own number and reply, in order.
    fn batch(&mut self, room: String, text: String) {
        match &mut self.batch {
            Some((held, texts)) if name_key(held) == name_key(&room) && texts.len() < MAX_BATCH => {
                texts.push(text);
            }
            _ => {
                self.flush_batch();
                self.batch = Some((room, vec![text]));
            }
        }
    }

    /// Sends the held room messages, if any, and writes their replies.
    fn flush_batch(&mut self) {
        let Some((room, texts)) = self.batch.take() else {
            return;
        };
        let replies = match self.shared.admit() {
            Some(_admission) => self.session.message_room_batch(&room, &texts, Utc::now()),
            None => vec![shutting_down(); texts.len()],
        };
        for reply in &replies {
            self.reply(reply);
        }
    }

    fn rate_limited(&self) -> Reply {
        let rate = self.shared.config.rate;
        debug!(nick = ?self.peer.nick(), "request refused by the rate limit");
        Reply::err(
            ErrorCode::RateLimited,
            format!(
                "slow down: {} requests and {} bytes a second, bursts of {} and {} bytes",
                rate.per_second, rate.bytes_per_second, rate.burst, rate.bytes_burst
            ),
        )
    }

    fn flooding(&mut self) {
        let rate = self.shared.config.rate;
        warn!(nick = ?self.peer.nick(), "flooding client disconnected");
        self.peer.disconnect(
            DisconnectCode::Flood,
            format!(
                "too many requests refused in a row (limit {} a second)",
                rate.per_second
            ),
        );
        self.say_goodbye_for_disconnect();
    }

    fn handle(&mut self, request: Request) -> Reply {
        let Some(_admission) = self.shared.admit() else {
            return shutting_down();
        };
        let mut cx = VerbContext {
            server_name: &self.shared.config.server_name,
            now: Utc::now(),
            dice: &mut self.dice,
            available: Verb::ALL,
        };
        match self.session.handle(request, &mut cx) {
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
        }
    }

    /// Writes all pending output in one TLS write, within the write timeout (or the shorter
    /// goodbye timeout when the server is cutting the client off).
    ///
    /// A write blocked by a client that does not read is abandoned as soon as the client is
    /// cut off (its outbound queue overflowed, or it was kicked), not only at the timeout.
    async fn flush(&mut self) -> Result<(), CloseReason> {
        if self.out.is_empty() {
            return Ok(());
        }
        let cutting_off = matches!(self.closing, Some(CloseReason::Disconnected(_)));
        let timeout = if cutting_off {
            GOODBYE_TIMEOUT.min(self.shared.config.write_timeout)
        } else {
            self.shared.config.write_timeout
        };
        let write = async {
            self.stream.write_all(&self.out).await?;
            self.stream.flush().await
        };
        let result = tokio::select! {
            biased;
            result = tokio::time::timeout(timeout, write) => result,
            () = self.peer.closing(), if !cutting_off => {
                let reason = self.peer.disconnect_reason().cloned();
                return Err(reason.map_or(CloseReason::WriteTimedOut, CloseReason::Disconnected));
            }
        };
        match result {
            Ok(Ok(())) => {
                self.out.clear();
                Ok(())
            }
            // A client being cut off may well fail to take its last words; the reason it is
            // being cut off is what counts.
            Ok(Err(err)) => Err(self.closing.take().unwrap_or(CloseReason::WriteFailed(err))),
            Err(_) => Err(self.closing.take().unwrap_or(CloseReason::WriteTimedOut)),
        }
    }

    /// Sends the TLS close_notify, within the goodbye timeout.
    async fn close(&mut self) {
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, self.stream.shutdown()).await;
    }
}

/// The reply to a request that arrives once the server has begun to shut down.
fn shutting_down() -> Reply {
    Reply::err(ErrorCode::ShuttingDown, "the server is shutting down")
}

/// Reads what is available into `buf`. With no buffer (an idle connection keeps none), it first
/// waits until there is something to read: plaintext TLS already holds, or bytes on the socket.
/// Cancel-safe: bytes read are in `buf` or still unread.
async fn read_some(stream: &mut TlsStream<TcpStream>, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() == 0 {
        // Records TLS has taken off the socket but not yet handed over make no readiness
        // event: decrypt them now and look. An error is left for the read to report.
        let held = stream
            .get_mut()
            .1
            .process_new_packets()
            .map_or(true, |state| {
                state.plaintext_bytes_to_read() > 0 || state.peer_has_closed()
            });
        if !held {
            stream.get_ref().0.readable().await?;
        }
    }
    buf.reserve(READ_CHUNK);
    stream.read_buf(buf).await
}
