//! One client's connection: the TLS handshake, then a thin loop that feeds the protocol state
//! (`state::ConnState`, no I/O) from the TLS stream, the peer's outbox and the clock, and
//! writes what it produces.
//!
//! Each connection is one task that owns its TLS stream. It reads into a buffer the state keeps
//! (so a read abandoned by `select!` loses nothing), lets the state decode and answer every
//! complete line, and writes the state's output (replies, plus everything other clients queued
//! for it) in one go: many lines cost one TLS write and few syscalls. A write that takes longer
//! than the write timeout ends the connection, so a client that stops reading cannot hold
//! server memory; one that falls behind by more than its outbound queue is cut off by whoever
//! tries to queue for it (see [`Peer::deliver`]).

mod state;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use chrono::Utc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tracing::{debug, info, warn};

use tlschat_proto::{DisconnectCode, Trust};

pub use self::state::CloseReason;
use self::state::{ConnState, GOODBYE_TIMEOUT};
use crate::chat::Peer;
use crate::identity::Identity;
use crate::limits::AddressSlot;
use crate::shared::Shared;
use crate::store::commit::Answer;

/// Longest wait for a replaced connection to leave before its successor catches up (it is
/// cut off at once; this bounds a write to it that is blocked).
const REPLACED_LEAVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// How much to read at a time, in bytes.
const READ_CHUNK: usize = 16 * 1024;

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
    let accepted_at = std::time::Instant::now();
    let handshake_done = tokio::time::timeout(
        shared.config.handshake_timeout,
        shared.acceptor().accept(tcp),
    );
    let stream = tokio::select! {
        result = handshake_done => match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                info!(peer = %peer_addr, error = %err, "TLS handshake failed");
                shared.metrics.handshake_failed(handshake_failure(&err));
                return;
            }
            Err(_) => {
                shared.metrics.handshake_failed("timeout");
                let timeout = tlschat_proto::duration::format_duration(shared.config.handshake_timeout);
                info!(peer = %peer_addr, %timeout,
                      "TLS handshake timed out");
                return;
            }
        },
        () = shared.shutdown.cancelled() => return,
    };
    drop(handshake);
    let (_, tls) = stream.get_ref();
    shared.metrics.handshake_done(
        accepted_at.elapsed().as_secs_f64(),
        &tls.protocol_version()
            .map_or_else(String::new, |v| tls_text(&v)),
        &tls.negotiated_key_exchange_group()
            .map_or_else(String::new, |g| tls_text(&g.name())),
    );
    let identity = Identity::from_peer_certificates(tls.peer_certificates());
    info!(
        peer = %peer_addr,
        %identity,
        version = tls.protocol_version().map_or_else(|| "-".to_owned(), |v| tls_text(&v)),
        kx = tls
            .negotiated_key_exchange_group()
            .map_or_else(|| "-".to_owned(), |g| tls_text(&g.name())),
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
    if let Some(serial) = identity.serial.clone().filter(|_| identity.verified) {
        peer.set_serial(serial);
    }
    // Someone banned from the server is told why and let go, before taking any place.
    let banned = shared.hub.server_ban_of(&peer, Utc::now());
    let replaced = match &banned {
        Some(why) => {
            info!(peer = %peer_addr, nick = peer.nick().as_deref().unwrap_or("-"), "banned user refused");
            peer.disconnect(DisconnectCode::Banned, why.clone());
            Vec::new()
        }
        None => shared.hub.register_verified(&peer),
    };
    shared.connections.fetch_add(1, Ordering::Relaxed);
    shared.metrics.connection_open(true);
    // A verified user rejoins their rooms and gets what they missed (with a store): after the
    // connection it replaces has recorded how far it got, so nothing is sent twice.
    for old in replaced {
        let _ = tokio::time::timeout(REPLACED_LEAVE_TIMEOUT, old.left()).await;
    }
    if banned.is_none() {
        shared.hub.resume(&peer).await;
    }
    let mut connection = Connection::new(shared.clone(), stream, peer.clone(), &identity);
    let reason = connection.run().await;
    shared.connections.fetch_sub(1, Ordering::Relaxed);
    shared.metrics.connection_open(false);
    shared.metrics.disconnect(reason.label());
    shared
        .hub
        .leave_all(&peer, &reason.public(), connection.state.unwritten());
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
    peer: Arc<Peer>,
    state: ConnState,
    /// The answers the state waits for (commits, history reads), oldest first.
    answers: VecDeque<oneshot::Receiver<Answer>>,
}

impl Connection {
    fn new(
        shared: Arc<Shared>,
        stream: TlsStream<TcpStream>,
        peer: Arc<Peer>,
        identity: &Identity,
    ) -> Self {
        let state = ConnState::new(
            shared.clone(),
            peer.clone(),
            identity,
            Instant::now().into_std(),
        );
        Self {
            shared,
            stream,
            peer,
            state,
            answers: VecDeque::new(),
        }
    }

    async fn run(&mut self) -> CloseReason {
        let reason = self.serve_lines().await;
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, self.stream.shutdown()).await;
        reason
    }

    /// The main loop: let the state answer what is buffered, write what it produced, then wait
    /// for input, news for this client, a disconnect order, shutdown or the idle deadline.
    async fn serve_lines(&mut self) -> CloseReason {
        let idle_timer = tokio::time::sleep_until(Instant::from_std(self.state.poll_timeout()));
        tokio::pin!(idle_timer);
        loop {
            let more_buffered = self.state.process(Instant::now().into_std(), Utc::now());
            if let Err(reason) = self.flush().await {
                return reason;
            }
            if let Some(reason) = self.state.poll_close() {
                return reason;
            }
            if more_buffered {
                continue;
            }
            self.state.release_read_buffer();
            self.answers.extend(self.state.poll_answers());
            let reading = self.state.wants_input();
            tokio::select! {
                biased;
                () = self.shared.shutdown.cancelled() => {
                    // Shutdown waited for every commit: the awaited answers are there.
                    while let Some(answer) = self.answers.front_mut().and_then(|a| a.try_recv().ok()) {
                        self.answers.pop_front();
                        self.state.handle_answer(Ok(answer));
                    }
                    self.state.handle_shutdown();
                }
                answer = wait_answer(self.answers.front_mut()) => {
                    self.answers.pop_front();
                    self.state.handle_answer(answer);
                }
                () = self.peer.closing() => self.state.handle_disconnect(),
                () = self.peer.outbox().ready() => self.state.handle_outbox(),
                () = idle_timer.as_mut() => {
                    // The timer is not moved on every read (that would cost a timer-wheel
                    // update per request); when it fires early, it is moved to the real
                    // deadline instead.
                    self.state.handle_timeout(Instant::now().into_std());
                    idle_timer.as_mut().reset(Instant::from_std(self.state.poll_timeout()));
                }
                // Not while a request waits for earlier answers, nor with as many batches in
                // flight as allowed: the read buffer stays bounded.
                read = read_some(&mut self.stream, self.state.read_buffer()), if reading => match read {
                    Ok(0) => return self.state.handle_eof(),
                    Ok(n) => {
                        self.shared.metrics.received(n);
                        self.state.handle_input(Instant::now().into_std());
                    }
                    // A close without TLS close_notify is still the client going away.
                    Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                        return self.state.handle_eof();
                    }
                    Err(err) => return CloseReason::ReadFailed(err),
                },
            }
        }
    }

    /// Writes all pending output in one TLS write, within the state's write timeout.
    ///
    /// A write blocked by a client that does not read is abandoned as soon as the client is
    /// cut off (its outbound queue overflowed, or it was kicked), not only at the timeout.
    async fn flush(&mut self) -> Result<(), CloseReason> {
        let Some(out) = self.state.poll_transmit() else {
            return Ok(());
        };
        let cutting_off = self.state.is_cutting_off();
        let timeout = self.state.write_timeout();
        let write = async {
            self.stream.write_all(out).await?;
            self.stream.flush().await
        };
        let result = tokio::select! {
            biased;
            result = tokio::time::timeout(timeout, write) => result,
            () = self.peer.closing(), if !cutting_off => {
                return Err(self.state.handle_cut_off_while_writing());
            }
        };
        match result {
            Ok(Ok(())) => {
                self.shared.metrics.sent(self.state.unwritten().len());
                if let Some((messages, since)) = self.state.take_delivered() {
                    self.shared.metrics.delivered(messages, since.elapsed());
                }
                self.state.handle_written();
                Ok(())
            }
            Ok(Err(err)) => Err(self.state.handle_write_failed(err)),
            Err(_) => Err(self.state.handle_write_timeout()),
        }
    }
}

/// The awaited answer, or never when none is awaited.
async fn wait_answer(
    answer: Option<&mut oneshot::Receiver<Answer>>,
) -> Result<Answer, oneshot::error::RecvError> {
    match answer {
        Some(answer) => answer.await,
        None => std::future::pending().await,
    }
}

/// Why a TLS handshake failed, as a metric label.
fn handshake_failure(err: &io::Error) -> &'static str {
    use rustls::{CertificateError, Error};
    match err.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
        Some(Error::NoCertificatesPresented) => "no_certificate",
        Some(Error::InvalidCertificate(CertificateError::Revoked)) => "revoked",
        Some(Error::InvalidCertificate(_)) => "bad_certificate",
        _ => "protocol",
    }
}

/// A rustls enum as a log value: `TLSv1_3`, `X25519MLKEM768` (its name, not `Some(…)`).
fn tls_text(value: &impl std::fmt::Debug) -> String {
    format!("{value:?}")
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
