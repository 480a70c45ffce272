//! A man-in-the-middle relay standing in for a compromised server: it terminates the client's
//! TLS with the server's own certificate, connects to the real server as the client (with
//! the client's certificate), and passes lines both ways, letting a test rewrite what the
//! server sends. Everything the server sends through it is recorded.
//!
//! It runs on its own thread and runtime, handles any number of connections, and stops when
//! dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::Pki;

/// Rewrites one line from the server: given the last request line the client sent, returns
/// the lines to pass on instead (none to drop it).
pub type Rewrite = dyn Fn(&str, &str) -> Vec<String> + Send + Sync;

/// A running relay.
pub struct Relay {
    addr: SocketAddr,
    recorded: Arc<Mutex<String>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Relay {
    /// Relays to `upstream` as `user`, rewriting server lines with `rewrite`.
    pub fn start(
        pki: &Pki,
        upstream: SocketAddr,
        user: &str,
        rewrite: impl Fn(&str, &str) -> Vec<String> + Send + Sync + 'static,
    ) -> Self {
        let client = pki.client_config(upstream, Some(user));
        let connector = TlsConnector::from(client.tls_config().expect("client TLS"));
        let name = client.verify_name().expect("server name");
        let acceptor = TlsAcceptor::from(server_tls(pki));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind relay");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("relay address");
        let recorded = Arc::new(Mutex::new(String::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let rewrite: Arc<Rewrite> = Arc::new(rewrite);
        let record = recorded.clone();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("relay runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("relay listener");
                let serve = async {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let (acceptor, connector, name) =
                            (acceptor.clone(), connector.clone(), name.clone());
                        let (rewrite, record) = (rewrite.clone(), record.clone());
                        tokio::spawn(async move {
                            let Ok(down) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let Ok(tcp) = TcpStream::connect(upstream).await else {
                                return;
                            };
                            let Ok(up) = connector.connect(name, tcp).await else {
                                return;
                            };
                            relay(down, up, rewrite, record).await;
                        });
                    }
                };
                tokio::select! {
                    () = serve => {}
                    _ = stopped => {}
                }
            });
        });
        Self {
            addr,
            recorded,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every line the server sent through the relay, before rewriting.
    pub fn recorded(&self) -> String {
        self.recorded.lock().expect("record").clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The server side of the relay: the real server's certificate, so clients cannot tell.
fn server_tls(pki: &Pki) -> Arc<rustls::ServerConfig> {
    let certs = tlschat_tls::load_certs(&pki.path("server.pem"), "certificate").expect("cert");
    let key = tlschat_tls::load_key(&pki.path("server-key.pem")).expect("key");
    let mut config = rustls::ServerConfig::builder_with_provider(tlschat_tls::provider())
        .with_protocol_versions(tlschat_tls::versions(false))
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server TLS");
    config.alpn_protocols = vec![tlschat_tls::ALPN.to_vec()];
    Arc::new(config)
}

async fn relay<D, U>(down: D, up: U, rewrite: Arc<Rewrite>, record: Arc<Mutex<String>>)
where
    D: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (down_read, mut down_write) = tokio::io::split(down);
    let (up_read, mut up_write) = tokio::io::split(up);
    let last_request = Arc::new(Mutex::new(String::new()));
    let last = last_request.clone();
    let to_server = async move {
        let mut lines = BufReader::new(down_read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            *last.lock().expect("last request") = line.clone();
            if up_write
                .write_all(format!("{line}\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = up_write.shutdown().await;
    };
    let to_client = async move {
        let mut lines = BufReader::new(up_read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            record
                .lock()
                .expect("record")
                .push_str(&format!("{line}\n"));
            let request = last_request.lock().expect("last request").clone();
            for out in rewrite(&request, &line) {
                if down_write
                    .write_all(format!("{out}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        let _ = down_write.shutdown().await;
    };
    tokio::join!(to_server, to_client);
}
