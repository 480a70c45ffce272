//! The accept loop, the connection limit and graceful shutdown.
//!
//! [`Server::bind`] builds the TLS configuration and binds the listener, so every startup error
//! (a missing key, a key that does not fit the certificate, a port in use) surfaces before the
//! server reports that it is listening. [`Server::run`] then accepts until the shutdown future
//! completes or an admin sends `SHUTDOWN`, tells every client, waits for them to flush (at most
//! the drain timeout) and returns.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::chat::Hub;
use crate::config::Config;
use crate::connection;
use crate::tls::{self, TlsSetupError};
use crate::udp::{self, UdpConfig, UdpService, UdpStats};
use tlschat_tls::signing::{CertKey, ClientCheck};

/// Longest pause after a failed `accept` (for example when out of file descriptors).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The UDP mode's signing key or CA could not be used.
    #[error("cannot set up signed UDP mode")]
    UdpKeys(#[from] tlschat_tls::signing::SigningError),
    /// The UDP address could not be bound.
    #[error("cannot listen for UDP on {addr}")]
    UdpBind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server name breaks the naming rules.
    #[error("invalid server name {name:?}")]
    BadServerName {
        /// The name.
        name: String,
        /// The rule it broke.
        #[source]
        source: tlschat_proto::names::NameError,
    },
}

/// State every connection task shares.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) hub: Arc<Hub>,
    pub(crate) acceptor: TlsAcceptor,
    /// Cancelled once, when shutdown begins.
    pub(crate) shutdown: CancellationToken,
    shutdown_reason: OnceLock<String>,
    /// Connections past the TLS handshake, now.
    pub(crate) connections: AtomicUsize,
    pub(crate) udp_stats: Option<Arc<UdpStats>>,
}

impl Shared {
    /// Starts a graceful shutdown; the first reason given is the one clients see.
    pub(crate) fn begin_shutdown(&self, reason: String) {
        if self.shutdown_reason.set(reason).is_ok() {
            info!(reason = self.shutdown_reason(), "shutting down");
        }
        self.shutdown.cancel();
    }

    /// The `STATS` reply payload: `connections=… users=… rooms=… udp.answered=… udp.<drop>=…`.
    pub(crate) fn stats_line(&self) -> String {
        let mut line = format!(
            "connections={} users={} rooms={}",
            self.connections.load(Ordering::Relaxed),
            self.hub.user_count(),
            self.hub.room_count()
        );
        for (name, count) in self.udp_stats.iter().flat_map(|s| s.snapshot()) {
            line.push_str(&format!(" udp.{name}={count}"));
        }
        line
    }

    pub(crate) fn shutdown_reason(&self) -> &str {
        self.shutdown_reason
            .get()
            .map_or("server is shutting down", String::as_str)
    }
}

/// Loads the server's signing key and the CA, and binds the UDP socket.
async fn bind_udp(
    config: &Config,
    udp: &UdpConfig,
) -> Result<(UdpSocket, UdpService), ServerError> {
    let signer = CertKey::load(&config.cert, &config.key)?;
    let clients = ClientCheck::new(&config.ca)?;
    let socket = UdpSocket::bind(udp.listen)
        .await
        .map_err(|source| ServerError::UdpBind {
            addr: udp.listen,
            source,
        })?;
    let service = UdpService::new(
        udp.clone(),
        config.server_name.clone(),
        signer,
        clients,
        chrono::Utc::now(),
    );
    Ok((socket, service))
}

/// A bound server, ready to [`run`](Self::run).
pub struct Server {
    shared: Arc<Shared>,
    listener: TcpListener,
    local_addr: SocketAddr,
    udp: Option<(UdpSocket, UdpService)>,
}

impl Server {
    /// Loads the certificates and binds the listening address.
    ///
    /// # Errors
    ///
    /// [`ServerError`] naming the file or address at fault.
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        tlschat_proto::names::validate_server_name(&config.server_name).map_err(|source| {
            ServerError::BadServerName {
                name: config.server_name.clone(),
                source,
            }
        })?;
        let tls = tls::server_config(&config)?;
        let bind_err = |source| ServerError::Bind {
            addr: config.listen,
            source,
        };
        let listener = TcpListener::bind(config.listen).await.map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let udp = match &config.udp {
            Some(udp) => Some(bind_udp(&config, udp).await?),
            None => None,
        };
        let shared = Arc::new(Shared {
            acceptor: TlsAcceptor::from(tls),
            config,
            hub: Arc::new(Hub::new()),
            shutdown: CancellationToken::new(),
            shutdown_reason: OnceLock::new(),
            connections: AtomicUsize::new(0),
            udp_stats: udp.as_ref().map(|(_, service)| service.stats()),
        });
        Ok(Self {
            shared,
            listener,
            local_addr,
            udp,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The UDP address actually bound, when UDP mode is on.
    pub fn local_udp_addr(&self) -> Option<SocketAddr> {
        self.udp
            .as_ref()
            .and_then(|(socket, _)| socket.local_addr().ok())
    }

    /// Serves until `shutdown` completes or an admin sends `SHUTDOWN`, then drains: every client
    /// gets `EVENT SHUTDOWN`, its queued output and a TLS close, within the drain timeout.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Self {
            shared,
            listener,
            udp,
            ..
        } = self;
        let limit = Arc::new(Semaphore::new(shared.config.max_connections));
        let tracker = TaskTracker::new();
        if let Some((socket, service)) = udp {
            tracker.spawn(udp::serve(socket, service, shared.shutdown.clone()));
        }
        let mut backoff = Duration::ZERO;
        // Completes when shutdown begins, from outside (a signal) or inside (admin SHUTDOWN).
        let stop = async {
            tokio::select! {
                () = shutdown => shared.begin_shutdown("server is shutting down".to_owned()),
                () = shared.shutdown.cancelled() => {}
            }
        };
        tokio::pin!(stop);
        loop {
            // Take a connection slot before accepting: at the limit, new clients wait in the
            // kernel's backlog instead of costing us memory.
            let permit = tokio::select! {
                biased;
                () = &mut stop => break,
                permit = limit.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_closed) => break,
                },
            };
            let accepted = tokio::select! {
                biased;
                () = &mut stop => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((tcp, peer)) => {
                    backoff = Duration::ZERO;
                    tracker.spawn(connection::serve(shared.clone(), tcp, peer, permit));
                }
                Err(err) => {
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                    warn!(error = %err, retry_in = ?backoff, "accept failed");
                    tokio::time::sleep(backoff).await;
                }
            }
        }
        drop(listener);
        tracker.close();
        let open = tracker.len();
        info!(connections = open, "draining");
        if tokio::time::timeout(shared.config.drain_timeout, tracker.wait())
            .await
            .is_err()
        {
            warn!(
                connections = tracker.len(),
                "drain timeout passed; closing the remaining connections"
            );
        }
        info!("stopped");
    }
}
