//! Speaking to each server under test over TLS: tlschat itself, nats-server and
//! `ncat --chat --ssl`, with the same connection code so every figure is taken the same way.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The room (tlschat) or subject (NATS) fan-out runs in.
pub const ROOM: &str = "bench";

/// The JetStream stream (file storage) and subject durable publishing goes to.
pub const STREAM: &str = "BENCH";

/// The subject of [`STREAM`].
pub const STREAM_SUBJECT: &str = "bench.durable";

/// Which server is on the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// tlschat-server.
    Tlschat,
    /// nats-server with TLS.
    Nats,
    /// `ncat --chat --ssl`: every line goes to every other client.
    Ncat,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tlschat => "tlschat",
            Self::Nats => "nats",
            Self::Ncat => "ncat",
        })
    }
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Endpoint {
    /// The server's kind.
    pub kind: Kind,
    /// The server's address.
    pub addr: SocketAddr,
    /// The client TLS configuration (shared, so session tickets are reused when resuming).
    pub tls: Arc<rustls::ClientConfig>,
    /// The name the server certificate is checked against.
    pub name: ServerName<'static>,
    /// Local addresses to spread connections over (many connections need many source
    /// addresses: one address has about 28,000 ports). Empty: let the OS choose.
    pub sources: Vec<IpAddr>,
    /// tlschat: client identities for the fan-out's subscribers (`--identities`): subscriber
    /// `i` connects as person `i / sessions_per_person`. Empty: without a certificate.
    pub identities: Vec<Arc<rustls::ClientConfig>>,
    /// Connections per person, with `identities`.
    pub sessions_per_person: usize,
    /// Where the fan-out's subscribers connect, in turn (the nodes of a cluster); `addr`
    /// alone when it has one.
    pub spread: Vec<SocketAddr>,
}

type Tls = TlsStream<TcpStream>;

/// Requests the server refused with `ERR RATE_LIMITED` in this run: its protective limits, not
/// its speed, were measured.
pub static RATE_LIMITED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The writing half of a benchmark connection.
pub type Writer = WriteHalf<Tls>;

/// One connection to the server under test.
pub struct Conn {
    kind: Kind,
    reader: BufReader<ReadHalf<Tls>>,
    writer: WriteHalf<Tls>,
    line: String,
}

/// The reading half of a connection, for a task of its own.
pub struct Reader {
    kind: Kind,
    reader: BufReader<ReadHalf<Tls>>,
    line: String,
}

impl Endpoint {
    /// Connects, completes TLS and the protocol's opening (greeting, `CONNECT`…). `index`
    /// picks the source address.
    pub async fn connect(&self, index: usize) -> io::Result<Conn> {
        self.connect_with(index, self.tls.clone()).await
    }

    /// Connects fan-out subscriber `index`: with its person's certificate when there are
    /// identities. Returns the connection and the name it joins under.
    pub async fn connect_subscriber(&self, index: usize) -> io::Result<(Conn, String)> {
        let addr = match self.spread.len() {
            0 => self.addr,
            n => self.spread[index % n],
        };
        if self.identities.is_empty() {
            let conn = self.connect_to(addr, index, self.tls.clone()).await?;
            return Ok((conn, format!("sub{index}")));
        }
        let person = index / self.sessions_per_person.max(1);
        let tls = self.identities.get(person).cloned().ok_or_else(|| {
            io::Error::other(format!(
                "no identity for subscriber {index} (person {person})"
            ))
        })?;
        Ok((
            self.connect_to(addr, index, tls).await?,
            format!("sub{person}"),
        ))
    }

    async fn connect_with(&self, index: usize, tls: Arc<rustls::ClientConfig>) -> io::Result<Conn> {
        self.connect_to(self.addr, index, tls).await
    }

    async fn connect_to(
        &self,
        addr: SocketAddr,
        index: usize,
        tls: Arc<rustls::ClientConfig>,
    ) -> io::Result<Conn> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if !self.sources.is_empty() {
            socket.bind(SocketAddr::new(self.sources[index % self.sources.len()], 0))?;
        }
        let mut tcp = socket.connect(addr).await?;
        tcp.set_nodelay(true)?;
        if self.kind == Kind::Nats {
            // NATS 2.9 says INFO in the clear, then the client starts TLS.
            read_plain_line(&mut tcp).await?;
        }
        let tls = TlsConnector::from(tls)
            .connect(self.name.clone(), tcp)
            .await?;
        let (read, writer) = tokio::io::split(tls);
        let mut conn = Conn {
            kind: self.kind,
            reader: BufReader::with_capacity(64 * 1024, read),
            writer,
            line: String::new(),
        };
        match self.kind {
            Kind::Tlschat => {
                conn.read_line().await?;
            }
            Kind::Nats => {
                conn.write(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"tls_required\":true,\"echo\":false,\"name\":\"tlschat-bench\",\"lang\":\"rust\",\"version\":\"0.1\",\"protocol\":1}\r\n").await?;
                conn.ping().await?;
            }
            Kind::Ncat => {}
        }
        Ok(conn)
    }
}

impl Conn {
    /// Joins the fan-out room (subject) under a name of its own.
    pub async fn join(&mut self, name: &str) -> io::Result<()> {
        match self.kind {
            Kind::Tlschat => self.nick_and_join(name, &format!("#{ROOM}")).await,
            Kind::Nats => {
                self.write(format!("SUB {ROOM} 1\r\n").as_bytes()).await?;
                self.ping().await
            }
            // Everyone connected to ncat's chat gets every line.
            Kind::Ncat => Ok(()),
        }
    }

    /// Prepares connection `index` for acknowledged publishing: tlschat joins a room of its own
    /// (so nothing fans out: only storing is measured); NATS subscribes to an inbox of its
    /// own for JetStream's acknowledgements.
    pub async fn prepare_durable(&mut self, index: usize) -> io::Result<()> {
        match self.kind {
            Kind::Tlschat => {
                self.nick_and_join(&format!("dur{index}"), &format!("#dur{index}"))
                    .await
            }
            Kind::Nats => {
                self.write(format!("SUB _INBOX.bench{index} 1\r\n").as_bytes())
                    .await?;
                self.ping().await
            }
            Kind::Ncat => Err(io::Error::other("ncat stores nothing")),
        }
    }

    /// Makes the JetStream stream (file storage) that durable publishing goes to; NATS only.
    pub async fn create_stream(&mut self) -> io::Result<()> {
        let config = format!(
            "{{\"name\":\"{STREAM}\",\"subjects\":[\"{STREAM_SUBJECT}\"],\"storage\":\"file\"}}"
        );
        let request = format!(
            "SUB _INBOX.setup 99\r\nPUB $JS.API.STREAM.CREATE.{STREAM} _INBOX.setup {}\r\n{config}\r\n",
            config.len()
        );
        self.write(request.as_bytes()).await?;
        let body = self.nats_message().await?;
        if body.contains("\"error\"") && !body.contains("already in use") {
            return Err(io::Error::other(format!(
                "JetStream refused the stream: {body}"
            )));
        }
        Ok(())
    }

    /// Publishes one message and waits until the server acknowledges it as stored: tlschat's
    /// `OK <id>` (sent after the commit), JetStream's `{"stream":…,"seq":…}`.
    pub async fn publish_acked(&mut self, index: usize, payload: &str) -> io::Result<()> {
        match self.kind {
            Kind::Tlschat => {
                self.write(format!("MSG #dur{index} {payload}\n").as_bytes())
                    .await?;
                loop {
                    let line = self.read_line().await?;
                    if line.starts_with("OK") {
                        return Ok(());
                    }
                    if line.starts_with("ERR") {
                        return Err(io::Error::other(line));
                    }
                }
            }
            Kind::Nats => {
                let publish = format!(
                    "PUB {STREAM_SUBJECT} _INBOX.bench{index} {}\r\n{payload}\r\n",
                    payload.len()
                );
                self.write(publish.as_bytes()).await?;
                let body = self.nats_message().await?;
                if body.contains("\"seq\"") {
                    Ok(())
                } else {
                    Err(io::Error::other(format!("not stored: {body}")))
                }
            }
            Kind::Ncat => Err(io::Error::other("ncat stores nothing")),
        }
    }

    /// tlschat: reads one `HISTORY` page of `limit` messages after `after`; returns how many
    /// messages it held.
    pub async fn history_page(&mut self, target: &str, after: u64, limit: u64) -> io::Result<u64> {
        self.write(format!("HISTORY {target} AFTER {after} LIMIT {limit}\n").as_bytes())
            .await?;
        let mut count = 0;
        loop {
            let line = self.read_line().await?;
            if line.starts_with("EVENT MSG ") {
                count += 1;
            } else if line.starts_with("OK ") {
                return Ok(count);
            } else if line.starts_with("ERR") {
                return Err(io::Error::other(line));
            }
        }
    }

    /// tlschat: joins a room (with the certificate's name).
    pub async fn join_only(&mut self, room: &str) -> io::Result<()> {
        self.write(format!("JOIN {room}\n").as_bytes()).await?;
        self.expect_ok().await
    }

    /// tlschat: claims a nickname and joins a room.
    pub async fn nick_and_join(&mut self, nick: &str, room: &str) -> io::Result<()> {
        self.write(format!("NICK {nick}\nJOIN {room}\n").as_bytes())
            .await?;
        self.expect_ok().await?;
        self.expect_ok().await
    }

    /// tlschat: `QUIT`, and waits for the server to close.
    pub async fn quit(mut self) -> io::Result<()> {
        self.write(b"QUIT\n").await?;
        while self.read_line().await.is_ok() {}
        Ok(())
    }

    /// tlschat: sends `count` messages of `size` bytes to `room` in pipelined bursts, every one
    /// acknowledged.
    pub async fn publish_pipelined(
        &mut self,
        room: &str,
        count: u64,
        size: usize,
    ) -> io::Result<()> {
        let payload = "c".repeat(size);
        let mut sent = 0;
        while sent < count {
            let burst = (count - sent).min(100);
            let mut out = Vec::new();
            for _ in 0..burst {
                out.extend_from_slice(format!("MSG {room} {payload}\n").as_bytes());
            }
            self.write(&out).await?;
            for _ in 0..burst {
                self.expect_ok().await?;
            }
            sent += burst;
        }
        Ok(())
    }

    /// tlschat: takes what a returning member missed in `room` (live catch-up, then `HISTORY`
    /// for what the server announces as a gap) until `missed` messages are in; returns how many.
    pub async fn catch_up(&mut self, room: &str, missed: u64) -> io::Result<u64> {
        let mut ids = std::collections::HashSet::new();
        let mut gaps = Vec::new();
        while (ids.len() as u64) < missed {
            let line = self.read_line().await?;
            let mut fields = line.split(' ');
            match (fields.next(), fields.next(), fields.next()) {
                (Some("EVENT"), Some("MSG"), Some(r)) if r == room => {
                    if let Some(id) = fields.next().and_then(|id| id.parse::<u64>().ok()) {
                        ids.insert(id);
                    }
                }
                (Some("EVENT"), Some("GAP"), Some(r)) if r == room => {
                    let first: u64 = fields.next().and_then(|n| n.parse().ok()).unwrap_or(1);
                    let last: u64 = fields.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                    gaps.push((first, last));
                }
                (Some("EVENT"), Some("CAUGHTUP"), _) => {
                    for (first, last) in gaps.drain(..) {
                        let mut after = first - 1;
                        while after < last {
                            let limit = (last - after).min(500);
                            self.write(
                                format!("HISTORY {room} AFTER {after} LIMIT {limit}\n").as_bytes(),
                            )
                            .await?;
                            loop {
                                let line = self.read_line().await?;
                                if let Some(rest) = line.strip_prefix("EVENT MSG ") {
                                    if let Some(id) =
                                        rest.split(' ').nth(1).and_then(|id| id.parse::<u64>().ok())
                                    {
                                        ids.insert(id);
                                    }
                                } else if line.starts_with("OK ") || line.starts_with("ERR") {
                                    break;
                                }
                            }
                            after += limit;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(ids.len() as u64)
    }

    async fn expect_ok(&mut self) -> io::Result<()> {
        loop {
            let line = self.read_line().await?;
            if line.starts_with("OK") {
                return Ok(());
            }
            if line.starts_with("ERR") {
                return Err(io::Error::other(format!("tlschat refused: {line}")));
            }
        }
    }

    /// The body of the next NATS `MSG`, skipping pings and the like.
    async fn nats_message(&mut self) -> io::Result<String> {
        loop {
            let line = self.read_line().await?;
            if line.starts_with("MSG ") {
                return self.read_line().await;
            }
            if line == "PING" {
                self.write(b"PONG\r\n").await?;
            }
            if line.starts_with("-ERR") {
                return Err(io::Error::other(line));
            }
        }
    }

    /// Appends one published message to `out` (for batching).
    pub fn encode_publish(kind: Kind, payload: &str, out: &mut Vec<u8>) {
        match kind {
            Kind::Tlschat => {
                out.extend_from_slice(b"MSG #");
                out.extend_from_slice(ROOM.as_bytes());
                out.push(b' ');
                out.extend_from_slice(payload.as_bytes());
                out.push(b'\n');
            }
            Kind::Nats => {
                out.extend_from_slice(format!("PUB {ROOM} {}\r\n", payload.len()).as_bytes());
                out.extend_from_slice(payload.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Kind::Ncat => {
                out.extend_from_slice(payload.as_bytes());
                out.push(b'\n');
            }
        }
    }

    /// One request/response round trip: tlschat `PING` → `OK PONG`, NATS `PING` → `PONG`.
    pub async fn ping(&mut self) -> io::Result<()> {
        let (request, reply): (&[u8], &str) = match self.kind {
            Kind::Tlschat => (b"PING\n", "OK PONG"),
            Kind::Nats => (b"PING\r\n", "PONG"),
            Kind::Ncat => return Err(io::Error::other("ncat has no request/response")),
        };
        self.write(request).await?;
        loop {
            let line = self.read_line().await?;
            if line == reply {
                return Ok(());
            }
            if line.starts_with("ERR RATE_LIMITED") {
                RATE_LIMITED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if line.starts_with("-ERR") || line.starts_with("ERR") {
                return Err(io::Error::other(line));
            }
        }
    }

    /// Writes bytes as they are.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await
    }

    /// Sends the TLS close and drops the connection.
    pub async fn close(mut self) {
        let _ = self.writer.shutdown().await;
    }

    /// Splits off the reading half (for a reader task); the writing half stays.
    pub fn split(self) -> (Reader, WriteHalf<Tls>) {
        (
            Reader {
                kind: self.kind,
                reader: self.reader,
                line: self.line,
            },
            self.writer,
        )
    }

    async fn read_line(&mut self) -> io::Result<String> {
        read_line(&mut self.reader, &mut self.line).await
    }
}

impl Reader {
    /// The next delivered payload (the text from its `@` on), skipping everything else.
    /// `None` at the end of the stream.
    pub async fn next_payload(&mut self) -> io::Result<Option<String>> {
        loop {
            let line = match read_line(&mut self.reader, &mut self.line).await {
                Ok(line) => line,
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(err) => return Err(err),
            };
            let payload = match self.kind {
                Kind::Tlschat if line.starts_with("EVENT MSG ") => line.split(' ').nth(7),
                Kind::Nats if line.starts_with("MSG ") => {
                    let body = read_line(&mut self.reader, &mut self.line).await?;
                    return Ok(Some(body));
                }
                Kind::Ncat => line.find('@').map(|at| &line[at..]),
                _ => None,
            };
            if let Some(payload) = payload {
                return Ok(Some(payload.to_owned()));
            }
        }
    }

    /// Counts replies to published messages (tlschat `OK <id>`) until the stream ends.
    pub async fn count_replies(&mut self) -> io::Result<u64> {
        let mut count = 0;
        loop {
            match read_line(&mut self.reader, &mut self.line).await {
                Ok(line) if line.starts_with("OK") => count += 1,
                Ok(line) if line.starts_with("ERR") || line.starts_with("-ERR") => {
                    return Err(io::Error::other(line))
                }
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(count),
                Err(err) => return Err(err),
            }
        }
    }
}

/// Reads one line without its `\n` or `\r\n`.
async fn read_line(reader: &mut BufReader<ReadHalf<Tls>>, line: &mut String) -> io::Result<String> {
    line.clear();
    let n = reader.read_line(line).await?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Reads one line from a plain socket a byte at a time (so nothing after it is consumed).
async fn read_plain_line(tcp: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 64 * 1024 {
        tcp.read_exact(&mut byte).await?;
        if byte[0] == b'\n' {
            return Ok(line);
        }
        line.push(byte[0]);
    }
    Err(io::Error::other("no line end"))
}
