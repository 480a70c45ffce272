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
    let roots = tlschat_tls::load_roots(&dir.join("ca.pem")).unwrap();
    let chain = tlschat_tls::load_certs(&dir.join("alice.pem"), "certificate").unwrap();
    let key = tlschat_tls::load_key(&dir.join("alice-key.pem")).unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(tlschat_tls::provider())
        .with_protocol_versions(tlschat_tls::versions(false))
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    tls.alpn_protocols = vec![tlschat_tls::ALPN.to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
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
