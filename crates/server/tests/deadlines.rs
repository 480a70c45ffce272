//! The server's deadlines, in process with paused time: a real server on 127.0.0.1:0 with real
//! TLS, in a runtime whose clock only moves when every task waits, so the handshake, idle and
//! write timeouts pass at once in real time and their length is measured on the paused clock.
//! Nothing sleeps.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tlschat_certgen::{generate, Options};
use tlschat_server::{Config, Server};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Certificates in `dir` and a server configured by `tune`, running until the test ends.
async fn start(dir: &Path, tune: impl FnOnce(&mut Config)) -> SocketAddr {
    let mut options = Options::new(dir);
    options.clients = vec!["alice".into()];
    generate(&options).unwrap();
    let mut config = Config::new(
        dir.join("server.pem"),
        dir.join("server-key.pem"),
        dir.join("ca.pem"),
    );
    config.listen = "127.0.0.1:0".parse().unwrap();
    // No store: a commit runs on a real thread, and with the clock paused tokio would move
    // time on while a connection waits for it (the deadlines here are the connection's own).
    config.store = tlschat_server::config::StoreSetting::None;
    tune(&mut config);
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.run(std::future::pending()));
    addr
}

/// A TLS connection as alice.
async fn connect(dir: &Path, addr: SocketAddr) -> BufReader<TlsStream<TcpStream>> {
    connect_as(dir, addr, "alice", None).await
}

/// A TLS connection as `user`, with a receive buffer of `receive_buffer` bytes when given.
async fn connect_as(
    dir: &Path,
    addr: SocketAddr,
    user: &str,
    receive_buffer: Option<u32>,
) -> BufReader<TlsStream<TcpStream>> {
    let roots = tlschat_tls::load_roots(&dir.join("ca.pem")).unwrap();
    let chain = tlschat_tls::load_certs(&dir.join(format!("{user}.pem")), "certificate").unwrap();
    let key = tlschat_tls::load_key(&dir.join(format!("{user}-key.pem"))).unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(tlschat_tls::provider())
        .with_protocol_versions(tlschat_tls::versions(false))
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    tls.alpn_protocols = vec![tlschat_tls::ALPN.to_vec()];
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(bytes) = receive_buffer {
        socket.set_recv_buffer_size(bytes).unwrap();
    }
    let tcp = socket.connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap();
    BufReader::new(stream)
}

async fn line(stream: &mut BufReader<TlsStream<TcpStream>>) -> Option<String> {
    let mut line = String::new();
    match stream.read_line(&mut line).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end().to_owned()),
    }
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_never_starts_tls_is_closed_at_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start(dir.path(), |c| c.handshake_timeout = Duration::from_secs(5)).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let opened = Instant::now();
    let mut byte = [0u8; 1];
    let read = silent.read(&mut byte).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = opened.elapsed();
    assert!(
        (Duration::from_secs(5)..Duration::from_secs(6)).contains(&waited),
        "closed after {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_client_is_pinged_at_half_the_timeout_and_cut_off_at_the_whole() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start(dir.path(), |c| c.idle_timeout = Duration::from_secs(60)).await;
    let mut alice = connect(dir.path(), addr).await;
    assert!(line(&mut alice).await.unwrap().starts_with("HELLO"));
    let opened = Instant::now();
    assert_eq!(line(&mut alice).await.unwrap(), "EVENT PING 30");
    assert_eq!(opened.elapsed().as_secs(), 30);
    assert_eq!(
        line(&mut alice).await.unwrap(),
        "EVENT DISCONNECT IDLE no input for 1m"
    );
    assert_eq!(opened.elapsed().as_secs(), 60);
    assert_eq!(line(&mut alice).await, None, "then closed");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_cut_off_at_the_write_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start(dir.path(), |c| {
        c.write_timeout = Duration::from_secs(10);
        c.rate_burst = 100_000;
        c.rate_bytes_burst = 1 << 30;
    })
    .await;
    let mut alice = connect(dir.path(), addr).await;
    line(&mut alice).await.unwrap();
    // 32 MB of replies asked for, none read: more than any socket buffers hold.
    let request = format!("ECHO {}\n", "x".repeat(60_000));
    let started = Instant::now();
    for _ in 0..540 {
        if alice.get_mut().write_all(request.as_bytes()).await.is_err() {
            break;
        }
    }
    // Reading now gets what was in flight, then the end: the server gave up on the write.
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(n) = alice.read(&mut buf).await {
        if n == 0 {
            break;
        }
        received += n;
    }
    assert!(
        received < 540 * 60_000,
        "the connection ended early: {received} bytes"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "cut off after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_draining_server_accepts_no_new_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new(dir.path());
    options.clients = vec!["alice".into(), "bob".into()];
    generate(&options).unwrap();
    let mut config = Config::new(
        dir.path().join("server.pem"),
        dir.path().join("server-key.pem"),
        dir.path().join("ca.pem"),
    );
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.store = tlschat_server::config::StoreSetting::None;
    // Bob will not read: his connection holds the drain open until the write timeout.
    config.write_timeout = Duration::from_secs(60);
    config.drain_timeout = Duration::from_secs(60);
    config.max_pending_bytes = 64 << 20;
    // 250 requests at once: no request or byte rate may refuse one.
    config.rate = 1_000_000;
    config.rate_burst = 1_000_000;
    config.rate_bytes = 1 << 40;
    config.rate_bytes_burst = 1 << 40;
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let mut alice = connect_as(dir.path(), addr, "alice", None).await;
    let mut bob = connect_as(dir.path(), addr, "bob", Some(4096)).await;
    for peer in [&mut alice, &mut bob] {
        assert!(line(peer).await.unwrap().starts_with("HELLO"));
        peer.get_mut().write_all(b"JOIN #r\n").await.unwrap();
        assert_eq!(line(peer).await.unwrap(), "OK #r");
    }
    // Bob's join.
    line(&mut alice).await;
    // 15 MB: more than the sockets between the server and bob can hold (bob reads nothing
    // more; the kernel's send buffer grows to 4 MiB by default, his receive buffer is 4 KiB).
    let text = "x".repeat(60_000);
    for _ in 0..250 {
        alice
            .get_mut()
            .write_all(format!("MSG #r {text}\n").as_bytes())
            .await
            .unwrap();
        let reply = line(&mut alice).await.unwrap();
        assert!(reply.starts_with("OK "), "{reply}");
    }
    stop.send(()).unwrap();
    // Connections are told to drain after the listener is closed.
    let bound = Duration::from_secs(10);
    let told = tokio::time::timeout(bound, line(&mut alice)).await.unwrap();
    assert!(told.unwrap().starts_with("EVENT SHUTDOWN"));
    // Still draining (bob's output), and nobody new gets in.
    let refused = tokio::time::timeout(bound, TcpStream::connect(addr))
        .await
        .expect("refused at once, not left waiting");
    assert_eq!(
        refused.map(drop).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    assert!(!running.is_finished(), "the server was still draining");
    // Bob goes: the drain ends and the server stops.
    drop(bob);
    tokio::time::timeout(bound, running)
        .await
        .expect("the server stops")
        .unwrap();
}
