//! [`Client`]: one TLS connection to a tlschat server.
//!
//! Requests are answered in order, so [`Client::request`] sends one and reads lines until its
//! reply arrives, keeping any events that arrive meanwhile for [`Client::next_event`]. For
//! event-driven use (an interactive client), [`Client::send`] and [`Client::next_line`] give the
//! raw stream. The two mix: the client counts the replies owed to lines sent with `send`, so a
//! `request` made while some are outstanding skips past them, and `next_line` hands them (and
//! the events read meanwhile) back afterwards, in order.

use std::collections::VecDeque;
use std::io;

use bytes::BytesMut;
use rustls::{CipherSuite, NamedGroup, ProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use tlschat_proto::codec::encode_line;
use tlschat_proto::{Event, Frame, Greeting, LineDecoder, Reply, Request, ServerLine};

use crate::config::ClientConfig;
use crate::error::ClientError;

/// Most events kept while waiting for a reply; older ones are dropped beyond this, so a chatty
/// room cannot grow a client that only sends requests.
pub const MAX_QUEUED_EVENTS: usize = 10_000;

/// What the TLS handshake settled on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// The protocol version.
    pub version: Option<ProtocolVersion>,
    /// The cipher suite.
    pub cipher_suite: Option<CipherSuite>,
    /// The key exchange group (X25519MLKEM768 when the post-quantum hybrid was used).
    pub key_exchange: Option<NamedGroup>,
    /// The server's certificate (DER), as verified in the handshake.
    pub server_cert: Option<Vec<u8>>,
}

/// Turns a failed handshake into what the user can act on: which side refused which
/// certificate, and why, in words.
fn handshake_error(config: &ClientConfig, source: io::Error) -> ClientError {
    let addr = config.server.clone();
    if matches!(
        source.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
    ) {
        return ClientError::HandshakeClosed { addr };
    }
    match explain_tls(config, &source) {
        Some(explanation) => ClientError::TlsRefused { addr, explanation },
        None => ClientError::Handshake { addr, source },
    }
}

/// A TLS failure said in words, when it is one a person can act on. With TLS 1.3 the server's
/// verdict on the client's certificate arrives after the client's handshake is done, so this
/// also reads the first read's error.
fn explain_tls(config: &ClientConfig, err: &io::Error) -> Option<String> {
    use rustls::{AlertDescription, CertificateError, Error as Tls};
    let ca = || {
        let subject = config
            .ca_subject()
            .map(|name| format!(" ({name})"))
            .unwrap_or_default();
        format!("{}{subject}", config.ca.display())
    };
    Some(match err.get_ref()?.downcast_ref::<Tls>()? {
        Tls::InvalidCertificate(
            CertificateError::BadSignature | CertificateError::UnknownIssuer,
        ) => {
            format!(
                "the server's certificate is not signed by the CA in {} (was it made with \
                 another gen-certs run? use the ca.pem made together with the server's \
                 certificate)",
                ca()
            )
        }
        Tls::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "the server's certificate is not valid for the name you connected to; pass \
             --server-name with a name it carries, or make it with tlschat-certgen --host/--ip \
             ({err})"
        ),
        Tls::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the server's certificate has expired".to_owned(),
        Tls::AlertReceived(
            AlertDescription::DecryptError
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown,
        ) => "the server rejected your certificate: it is not from the server's CA (or has \
              expired)"
            .to_owned(),
        Tls::AlertReceived(AlertDescription::CertificateRequired) => {
            "the server requires a client certificate: pass --cert and --key".to_owned()
        }
        _ => return None,
    })
}

/// A connection to a tlschat server.
pub struct Client {
    /// The server connected to.
    server: String,
    stream: TlsStream<TcpStream>,
    decoder: LineDecoder,
    inbuf: BytesMut,
    greeting: Greeting,
    /// Lines read while waiting for a reply that belong to someone else: events, and replies
    /// to lines sent earlier with [`Client::send`]. Oldest first.
    held: VecDeque<ServerLine>,
    /// Replies owed to lines sent and not yet read.
    unanswered: usize,
    last_event: Option<String>,
}

impl Client {
    /// Connects, completes the TLS handshake and reads the greeting, all within the connect
    /// timeout.
    ///
    /// # Errors
    ///
    /// [`ClientError`] saying which step failed and why.
    pub async fn connect(config: &ClientConfig) -> Result<Self, ClientError> {
        // With alternates, each server in turn; the error is the last one's when none answers.
        let mut last = None;
        for server in config.servers() {
            let one = ClientConfig {
                server: server.to_owned(),
                alternates: Vec::new(),
                ..config.clone()
            };
            match Self::connect_one(&one).await {
                Ok(client) => return Ok(client),
                Err(err) if !config.alternates.is_empty() => {
                    tracing::debug!(%server, error = %err, "server unreachable; trying the next");
                    last = Some(err);
                }
                Err(err) => return Err(err),
            }
        }
        Err(last.unwrap_or(ClientError::NoServer))
    }

    /// The server this client is connected to (`host:port`, as configured).
    pub fn server(&self) -> &str {
        &self.server
    }

    async fn connect_one(config: &ClientConfig) -> Result<Self, ClientError> {
        let tls = config.tls_config()?;
        let name = config.verify_name()?;
        let addr = config.server.clone();
        let connect = async {
            let tcp = TcpStream::connect(&addr)
                .await
                .map_err(|source| ClientError::Connect {
                    addr: addr.clone(),
                    source,
                })?;
            tcp.set_nodelay(true)?;
            let stream = TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|source| handshake_error(config, source))?;
            let mut client = Self {
                server: addr.clone(),
                stream,
                decoder: LineDecoder::new(config.max_line_len),
                inbuf: BytesMut::with_capacity(4096),
                greeting: Greeting::new("", ""),
                held: VecDeque::new(),
                unanswered: 0,
                last_event: None,
            };
            client.greeting = client.read_greeting().await.map_err(|err| match err {
                ClientError::Io(io) => match explain_tls(config, &io) {
                    Some(explanation) => ClientError::TlsRefused {
                        addr: addr.clone(),
                        explanation,
                    },
                    None => ClientError::Io(io),
                },
                other => other,
            })?;
            Ok(client)
        };
        tokio::time::timeout(config.connect_timeout, connect)
            .await
            .map_err(|_| ClientError::ConnectTimeout {
                addr: config.server.clone(),
                after: config.connect_timeout,
            })?
    }

    async fn read_greeting(&mut self) -> Result<Greeting, ClientError> {
        let line = self.read_line().await?;
        match ServerLine::parse(&line) {
            Ok(ServerLine::Hello(greeting)) => Ok(greeting),
            _ => Err(ClientError::NoGreeting(line)),
        }
    }

    /// The server's greeting.
    pub fn greeting(&self) -> &Greeting {
        &self.greeting
    }

    /// What the TLS handshake negotiated.
    pub fn tls_info(&self) -> TlsInfo {
        let (_, conn) = self.stream.get_ref();
        TlsInfo {
            version: conn.protocol_version(),
            cipher_suite: conn.negotiated_cipher_suite().map(|s| s.suite()),
            key_exchange: conn.negotiated_key_exchange_group().map(|g| g.name()),
            server_cert: conn
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|cert| cert.to_vec()),
        }
    }

    /// Sends a request and waits for its reply. Events arriving first are queued.
    pub async fn request(&mut self, request: &Request) -> Result<Reply, ClientError> {
        self.request_line(&request.to_string()).await
    }

    /// Sends a raw request line and waits for its reply. Events arriving first are queued, and
    /// so are replies owed to lines sent earlier with [`Client::send`].
    pub async fn request_line(&mut self, line: &str) -> Result<Reply, ClientError> {
        self.send(line).await?;
        loop {
            match self.read_server_line().await? {
                ServerLine::Reply(reply) => {
                    self.unanswered = self.unanswered.saturating_sub(1);
                    if self.unanswered == 0 {
                        return Ok(reply);
                    }
                    self.hold(ServerLine::Reply(reply));
                }
                ServerLine::Event(event) => self.hold(ServerLine::Event(event)),
                ServerLine::Hello(_) => {}
            }
        }
    }

    /// Sends one line (a newline is added) without waiting for anything. Its reply, if the
    /// line gets one, comes from [`Client::next_line`].
    pub async fn send(&mut self, line: &str) -> Result<(), ClientError> {
        let mut buf = Vec::with_capacity(line.len() + 1);
        encode_line(line, &mut buf);
        self.stream.write_all(&buf).await?;
        self.stream.flush().await?;
        if gets_reply(line) {
            self.unanswered += 1;
        }
        Ok(())
    }

    /// The next event: a queued one, or the next one read. Replies read meanwhile are dropped,
    /// so use this only when no request is outstanding.
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        loop {
            if let ServerLine::Event(event) = self.next_line().await? {
                return Ok(event);
            }
        }
    }

    /// Takes the events queued while waiting for replies (replies held for lines sent with
    /// [`Client::send`] stay for [`Client::next_line`]).
    pub fn drain_events(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        self.held.retain(|line| match line {
            ServerLine::Event(event) => {
                events.push(event.clone());
                false
            }
            _ => true,
        });
        events
    }

    /// The next line from the server, whatever it is: one held while a request waited, or
    /// the next one read. Keepalive pings are answered here (`PONG`) and not returned.
    ///
    /// Cancel-safe as long as no keepalive is being answered: bytes read are kept in the
    /// client, so dropping this future (for example in `select!`) loses nothing.
    pub async fn next_line(&mut self) -> Result<ServerLine, ClientError> {
        if let Some(line) = self.held.pop_front() {
            return Ok(line);
        }
        let line = self.read_server_line().await?;
        if matches!(line, ServerLine::Reply(_)) {
            self.unanswered = self.unanswered.saturating_sub(1);
        }
        Ok(line)
    }

    /// Reads the next line, answering keepalive pings.
    async fn read_server_line(&mut self) -> Result<ServerLine, ClientError> {
        loop {
            let line = self.read_line().await?;
            let parsed = ServerLine::parse(&line)?;
            match &parsed {
                ServerLine::Event(Event::Ping { token }) => {
                    self.send(&Request::Pong(Some(token.clone())).to_string())
                        .await?;
                }
                ServerLine::Event(event) => {
                    self.last_event = Some(event.to_string());
                    return Ok(parsed);
                }
                _ => return Ok(parsed),
            }
        }
    }

    /// Sends `QUIT`, waits for the reply and closes the TLS session cleanly.
    pub async fn quit(mut self) -> Result<(), ClientError> {
        self.request(&Request::Quit).await?;
        self.close().await
    }

    /// Closes the TLS session cleanly (close_notify) without a `QUIT`.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.stream.shutdown().await?;
        Ok(())
    }

    /// Keeps a line for later. Past [`MAX_QUEUED_EVENTS`] the oldest event goes; replies are
    /// never dropped (each stands for a request someone is waiting on).
    fn hold(&mut self, line: ServerLine) {
        if self.held.len() >= MAX_QUEUED_EVENTS {
            if let Some(i) = self
                .held
                .iter()
                .position(|l| matches!(l, ServerLine::Event(_)))
            {
                self.held.remove(i);
            }
        }
        self.held.push_back(line);
    }

    async fn read_line(&mut self) -> Result<String, ClientError> {
        loop {
            match self.decoder.decode(&mut self.inbuf) {
                Some(Frame::Line(line)) => return Ok(line),
                Some(Frame::TooLong) => return Err(ClientError::BadLine("line too long")),
                Some(Frame::InvalidUtf8) => return Err(ClientError::BadLine("not UTF-8")),
                None => {}
            }
            self.inbuf.reserve(4096);
            match self.stream.read_buf(&mut self.inbuf).await {
                Ok(0) => return Err(self.closed()),
                Ok(_) => {}
                // A peer that closes without close_notify after sending its last words (as a
                // server that drains does when the client is slow) is still a close.
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Err(self.closed()),
                Err(err) => return Err(err.into()),
            }
        }
    }

    fn closed(&self) -> ClientError {
        ClientError::Closed {
            last_event: self.last_event.clone(),
        }
    }
}

/// Whether the server answers `line`: every line but a blank one and `PONG` gets one reply
/// (a malformed line gets an `ERR`).
fn gets_reply(line: &str) -> bool {
    !matches!(Request::parse(line), Ok(None) | Ok(Some(Request::Pong(_))))
}
