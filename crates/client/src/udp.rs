//! [`UdpClient`]: requests over signed UDP, with retries, and replies checked as strictly as a
//! TLS handshake checks a server: the reply must carry our request's sequence number, a fresh
//! timestamp and a valid signature by a key whose certificate verifies against the CA for the
//! server's name, over the reply *and* our request (our key id and the hash of the exact
//! datagram we sent), so a reply the server signed for someone else's request never passes.
//!
//! UDP mode authenticates but does not encrypt: anyone on the path can read requests and
//! replies. Use it for the tutorial verbs, not for anything secret.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tracing::debug;

use tlschat_proto::datagram::{self, Datagram, Header, Kind, RequestBinding};
use tlschat_proto::{Reply, ServerLine};
use tlschat_tls::signing::{sha256, CertKey, PeerKey, ServerCheck, SigningError};

use crate::clock::{now_micros, now_ms};
use crate::config::ClientConfig;

/// Default time to wait for a reply to one attempt: 1 s.
pub const DEFAULT_UDP_TIMEOUT: Duration = Duration::from_secs(1);

/// Default number of retries after the first attempt: 3.
pub const DEFAULT_UDP_RETRIES: u32 = 3;

/// Largest difference between a reply's timestamp and our clock.
pub const MAX_REPLY_SKEW: Duration = Duration::from_secs(30);

/// Why a UDP request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UdpError {
    /// No client certificate: every request must be signed.
    #[error("signed UDP requests need your certificate and key: give --cert and --key")]
    NoIdentity,
    /// The key, certificate or CA could not be used.
    #[error(transparent)]
    Keys(#[from] SigningError),
    /// The server name is not a valid name or address.
    #[error(transparent)]
    Client(#[from] crate::error::ClientError),
    /// The address did not resolve.
    #[error("cannot resolve {0}")]
    Resolve(String),
    /// A socket operation failed.
    #[error("UDP socket error")]
    Io(#[from] io::Error),
    /// The request does not fit in a datagram.
    #[error("the request is too long for one datagram")]
    TooLarge,
    /// No valid reply came.
    #[error("no valid reply from {server} after {attempts} attempt(s) of {timeout:?} each")]
    NoReply {
        /// The server address.
        server: SocketAddr,
        /// Datagrams sent.
        attempts: u32,
        /// Wait per attempt.
        timeout: Duration,
    },
}

/// Retry settings.
#[derive(Debug, Clone, Copy)]
pub struct UdpOptions {
    /// Wait per attempt.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
}

impl Default for UdpOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_UDP_TIMEOUT,
            retries: DEFAULT_UDP_RETRIES,
        }
    }
}

/// A client of the server's signed UDP mode.
pub struct UdpClient {
    socket: UdpSocket,
    server: SocketAddr,
    key: CertKey,
    check: ServerCheck,
    /// The server's key, once a reply has proven it.
    server_key: Option<PeerKey>,
    next_seq: u64,
    /// How far apart this client's sequence numbers are (see [`UdpClient::share_key`]).
    stride: u64,
    options: UdpOptions,
}

impl UdpClient {
    /// Loads the client's key and the CA, and opens a socket towards `config.server`.
    pub async fn connect(config: &ClientConfig, options: UdpOptions) -> Result<Self, UdpError> {
        let (Some(cert), Some(key)) = (&config.cert, &config.key) else {
            return Err(UdpError::NoIdentity);
        };
        let key = CertKey::load(cert, key)?;
        let check = ServerCheck::new(&config.ca, config.verify_name()?)?;
        let server = tokio::net::lookup_host(&config.server)
            .await
            .map_err(|_| UdpError::Resolve(config.server.clone()))?
            .next()
            .ok_or_else(|| UdpError::Resolve(config.server.clone()))?;
        let local: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse().expect("valid literal address")
        } else {
            "[::]:0".parse().expect("valid literal address")
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(server).await?;
        Ok(Self {
            socket,
            server,
            key,
            check,
            server_key: None,
            // Microseconds since the epoch: separate runs with the same key never reuse a
            // sequence number the server may still remember.
            next_seq: now_micros(),
            stride: 1,
            options,
        })
    }

    /// Lets `count` clients send with one key at once: the server keeps one sequence space
    /// per key, so client `index` uses `start + index`, `start + index + count`, … and the
    /// numbers of all of them stay close together (inside the replay window) without ever
    /// colliding. Give every sharing client the same `start`.
    pub fn share_key(&mut self, start: u64, index: u64, count: u64) {
        self.next_seq = start.saturating_add(index);
        self.stride = count.max(1);
    }

    /// Sends a request line and returns the server's verified reply, retrying on silence.
    pub async fn request(&mut self, line: &str) -> Result<Reply, UdpError> {
        let mut sent = HashMap::new();
        let attempts = self.options.retries + 1;
        for attempt in 0..attempts {
            let seq = self.next_seq;
            self.next_seq = self.next_seq.saturating_add(self.stride);
            // A silent server may have forgotten our key (a reload, an eviction): from the
            // second attempt on, the certificate goes along again.
            let datagram = self.encode(line, seq, attempt > 0)?;
            self.socket.send(&datagram).await?;
            sent.insert(seq, sha256(&datagram));
            let deadline = tokio::time::Instant::now() + self.options.timeout;
            if let Some(reply) = self.await_reply(&sent, deadline).await? {
                return Ok(reply);
            }
        }
        Err(UdpError::NoReply {
            server: self.server,
            attempts,
            timeout: self.options.timeout,
        })
    }

    fn encode(&self, line: &str, seq: u64, retry: bool) -> Result<Vec<u8>, UdpError> {
        let knows_server = self.server_key.is_some();
        let header = Header {
            kind: Kind::Request,
            // A retry also asks for the server's certificate: a silent server may have a new
            // key (a renewed certificate), and a reply under a key we do not know is useless.
            want_cert: !knows_server || retry,
            key_id: self.key.key_id(),
            seq,
            timestamp_ms: now_ms(),
        };
        // Until a reply proves the server knows our key, send the certificate along.
        let cert = (!knows_server || retry).then(|| self.key.cert_der());
        let bytes = datagram::encode(&header, line, cert, |input| self.key.sign(input))
            .map_err(|_| UdpError::TooLarge)?;
        if bytes.len() > datagram::DEFAULT_MAX_DATAGRAM {
            return Err(UdpError::TooLarge);
        }
        Ok(bytes)
    }

    /// Reads datagrams until a valid reply to one of `sent` arrives or the deadline passes.
    /// Anything invalid is ignored: a forger must not be able to end the wait.
    async fn await_reply(
        &mut self,
        sent: &HashMap<u64, [u8; 32]>,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Reply>, UdpError> {
        let mut buf = vec![0u8; 65_536];
        loop {
            let received = tokio::time::timeout_at(deadline, self.socket.recv(&mut buf)).await;
            let len = match received {
                Err(_elapsed) => return Ok(None),
                Ok(Ok(len)) => len,
                // An ICMP "port unreachable" from an earlier send: keep waiting for a reply.
                Ok(Err(err)) if err.kind() == io::ErrorKind::ConnectionRefused => continue,
                Ok(Err(err)) => return Err(err.into()),
            };
            match self.open(&buf[..len], sent) {
                Ok(reply) => return Ok(Some(reply)),
                Err(reason) => debug!(reason, "ignored an invalid UDP reply"),
            }
        }
    }

    /// Checks a received datagram; returns the reply, or why it is not a valid one.
    fn open(&mut self, bytes: &[u8], sent: &HashMap<u64, [u8; 32]>) -> Result<Reply, &'static str> {
        let reply = Datagram::parse(bytes, usize::MAX).map_err(|e| e.name())?;
        if reply.header.kind != Kind::Reply {
            return Err("not a reply");
        }
        let Some(digest) = sent.get(&reply.header.seq) else {
            return Err("not the sequence number of our request");
        };
        let answers = RequestBinding {
            key_id: self.key.key_id(),
            digest: *digest,
        };
        let skew = u64::try_from(MAX_REPLY_SKEW.as_millis()).unwrap_or(u64::MAX);
        if now_ms().abs_diff(reply.header.timestamp_ms) > skew {
            return Err("stale timestamp");
        }
        let key = match (&self.server_key, reply.cert) {
            (Some(key), _) if key.key_id() == reply.header.key_id => key.clone(),
            (_, Some(cert)) => {
                let key = PeerKey::from_cert(cert).map_err(|_| "unreadable certificate")?;
                if key.key_id() != reply.header.key_id {
                    return Err("certificate does not match the key id");
                }
                self.check
                    .verify(cert)
                    .map_err(|_| "certificate not trusted for this server")?;
                key
            }
            _ => return Err("unknown server key"),
        };
        if !key.verify(&reply.reply_signing_input(&answers), reply.signature) {
            return Err("bad signature, or signed for another request");
        }
        self.server_key = Some(key);
        match ServerLine::parse(reply.body) {
            Ok(ServerLine::Reply(reply)) => Ok(reply),
            _ => Err("body is not a reply line"),
        }
    }
}
