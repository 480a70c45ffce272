//! The accept loop, the connection limits, reload on SIGHUP and graceful shutdown.
//!
//! [`Server::bind`] builds the TLS configuration and binds the listeners, so every startup
//! error (a missing key, a key that does not fit the certificate, a port in use) surfaces
//! before the server reports that it is listening. [`Server::run`] then accepts until the
//! shutdown future completes or an admin sends `SHUTDOWN`, and drains (see the `shared` module).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn, Instrument};

use crate::cluster::Cluster;
use crate::config::{MetricsListen, StoreSetting};
use crate::connection;
use crate::http;
use crate::open_files;
use crate::settings::Config;
use crate::shared::Shared;
use crate::store::embedded::EmbeddedStore;
use crate::store::{Store, StoreError};
use crate::tls::{self, TlsSetupError};
use crate::udp::{self, UdpConfig, UdpKeys, UdpService};

/// Warns of certificates and revocation lists running out: at start, then daily.
async fn warn_expiring_daily(shared: Arc<Shared>) {
    let mut days = tokio::time::interval(crate::config::EXPIRY_CHECK_INTERVAL);
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => return,
            _ = days.tick() => shared.warn_expiring(),
        }
    }
}

/// Deletes what the store no longer keeps, every `--prune-interval` (first at startup), until
/// the server stops.
async fn prune_until_stopped(shared: Arc<Shared>) {
    let mut rounds = tokio::time::interval(shared.config.prune_interval);
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => return,
            _ = rounds.tick() => shared
                .hub
                .prune(shared.config.retention, shared.config.max_history_per_room),
        }
    }
}

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
        /// The address, as given.
        addr: tlschat_proto::addr::HostPort,
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
    /// The message store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The monitoring address could not be bound.
    #[error("cannot listen for metrics on {addr}")]
    MetricsBind {
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

/// A bound server, ready to [`run`](Self::run).
pub struct Server {
    shared: Arc<Shared>,
    listener: TcpListener,
    local_addr: SocketAddr,
    udp: Option<(UdpSocket, UdpService, watch::Receiver<UdpKeys>)>,
    /// The monitoring endpoint's listener, with `--metrics`.
    metrics: Option<TcpListener>,
    /// SIGHUP, watched from `bind` on: a hangup right after the server says it is listening
    /// reloads instead of killing it (the default action).
    hangups: Option<Hangups>,
    /// A cluster's node: its link to the others, started with the server.
    cluster: Option<Cluster>,
}

#[cfg(unix)]
type Hangups = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangups = ();

/// Starts watching SIGHUP, if the platform has it.
fn watch_hangups() -> Option<Hangups> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(hangups) => Some(hangups),
            Err(err) => {
                warn!(error = %err, "cannot watch SIGHUP; use the RELOAD verb to reload");
                None
            }
        }
    }
    #[cfg(not(unix))]
    None
}

impl Server {
    /// Loads the certificates and binds the listening addresses.
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
        let credentials = tls::Credentials::load(&config)?;
        let tls = tls::server_config(&config, &credentials)?;
        let bind_err = |source| ServerError::Bind {
            addr: config.listen.clone(),
            source,
        };
        // A host name is looked up; the listener takes the first address that binds.
        let listen = (config.listen.host.as_str(), config.listen.port);
        let listener = TcpListener::bind(listen).await.map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        // A cluster's node keeps its history in NATS JetStream; a lone server in its file.
        let connect = {
            let config = config.clone();
            let port = local_addr.port();
            tokio::task::spawn_blocking(move || Cluster::connect(&config, port))
                .await
                .map_err(|e| StoreError::Failed(format!("cannot join the cluster: {e}")))?
        };
        let (cluster, link) = match connect? {
            Some((cluster, link)) => (Some(cluster), Some(link)),
            None => (None, None),
        };
        let store: Option<Arc<dyn Store>> = match (&cluster, &config.store) {
            (Some(cluster), _) => Some(cluster.store()),
            (None, StoreSetting::None) => None,
            (None, StoreSetting::File(path)) => {
                let store = EmbeddedStore::open(path, config.fsync)?;
                info!(store = %path.display(), fsync = config.fsync.as_str(), "message store open");
                Some(Arc::new(store))
            }
        };
        let (udp, udp_keys) = match &config.udp_config() {
            Some(udp_config) => {
                let keys = credentials.udp_keys(&config)?;
                let (socket, service) = bind_udp(&config, udp_config, keys.clone()).await?;
                let (sender, receiver) = watch::channel(keys);
                (Some((socket, service, receiver)), Some(sender))
            }
            None => (None, None),
        };
        let metrics = match config.metrics {
            MetricsListen::Off => None,
            MetricsListen::On(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::MetricsBind { addr, source })?,
            ),
        };
        let udp_stats = udp.as_ref().map(|(_, service, _)| service.stats());
        let shared = Shared::new(
            config,
            TlsAcceptor::from(tls),
            store,
            link,
            udp_stats,
            udp_keys,
        )?;
        // Keys kept from before whose certificates are revoked now are not offered.
        shared.hub.revoke(&credentials.revoked);
        shared.set_expiries(credentials.expiries.clone());
        Ok(Self {
            shared: Arc::new(shared),
            listener,
            local_addr,
            udp,
            metrics,
            hangups: watch_hangups(),
            cluster,
        })
    }

    /// The monitoring address actually bound, when `--metrics` is on.
    pub fn local_metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The UDP address actually bound, when UDP mode is on.
    pub fn local_udp_addr(&self) -> Option<SocketAddr> {
        self.udp
            .as_ref()
            .and_then(|(socket, _, _)| socket.local_addr().ok())
    }

    /// Serves until `shutdown` completes or an admin sends `SHUTDOWN`, then drains: every client
    /// gets what is queued for it, `EVENT SHUTDOWN` and a TLS close, within the drain timeout.
    /// SIGHUP reloads the certificates.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Self {
            shared,
            listener,
            udp,
            metrics,
            hangups,
            cluster,
            ..
        } = self;
        if let Some(metrics) = metrics {
            // Not tracked: it answers (with /readyz at 503) until the process ends.
            tokio::spawn(http::serve(metrics, shared.clone(), std::future::pending()));
        }
        warn_if_files_run_short(&shared.config);
        let tracker = TaskTracker::new();
        if let Some((socket, service, keys)) = udp {
            tracker.spawn(udp::serve(socket, service, keys, shared.shutdown.clone()));
        }
        tracker.spawn(reload_on_sighup(shared.clone(), hangups));
        let stop = async {
            tokio::select! {
                () = shutdown => shared.request_stop("server is shutting down".to_owned()),
                () = shared.stop.cancelled() => {}
            }
        };
        if shared.hub.has_store() {
            tracker.spawn(prune_until_stopped(shared.clone()));
        }
        // Stopped only after the connections drained, so their leaving is shared.
        let cluster_stop = CancellationToken::new();
        let cluster_tasks = TaskTracker::new();
        if let Some(cluster) = cluster {
            cluster.start(&shared, &cluster_tasks, &cluster_stop);
        }
        cluster_tasks.close();
        tracker.spawn(warn_expiring_daily(shared.clone()));
        accept_until(&shared, &listener, &tracker, stop).await;
        drop(listener);
        crate::notify::notify("STOPPING=1");
        shared.quiesce().await;
        tracker.close();
        // Connections only: the tracker also holds the reload and UDP tasks.
        let open = || {
            shared
                .connections
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        info!(connections = open(), "draining");
        if tokio::time::timeout(shared.config.drain_timeout, tracker.wait())
            .await
            .is_err()
        {
            warn!(
                connections = open(),
                "drain timeout passed; closing the remaining connections"
            );
        }
        cluster_stop.cancel();
        cluster_tasks.wait().await;
        shared.hub.close_store().await;
        info!("stopped");
    }
}

/// Says at startup when `max-connections` cannot be reached under the open-file limit.
fn warn_if_files_run_short(config: &Config) {
    let Some(files) = open_files::soft_limit() else {
        return;
    };
    if let Some(room) = open_files::shortfall(config.max_connections, files) {
        warn!(
            max_connections = config.max_connections,
            open_file_limit = files,
            "max-connections is above what the open-file limit allows: past about {room} \
             connections, new ones wait until others close; raise the limit (ulimit -n, \
             systemd LimitNOFILE=) or lower max-connections"
        );
    }
}

/// Accepts connections until `stop` completes.
async fn accept_until(
    shared: &Arc<Shared>,
    listener: &TcpListener,
    tracker: &TaskTracker,
    stop: impl Future<Output = ()>,
) {
    let limit = Arc::new(Semaphore::new(shared.config.max_connections));
    let mut backoff = Duration::ZERO;
    let mut accepted_count: u64 = 0;
    tokio::pin!(stop);
    loop {
        // Take a connection slot before accepting: at the limit, new clients wait in the
        // kernel's backlog instead of costing us memory.
        let permit = match limit.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                warn!(
                    max = shared.config.max_connections,
                    "connection limit reached; new connections wait in the backlog"
                );
                tokio::select! {
                    biased;
                    () = &mut stop => return,
                    permit = limit.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_closed) => return,
                    },
                }
            }
        };

        let accepted = tokio::select! {
            biased;
            () = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                backoff = Duration::ZERO;
                // The address is judged before anything is spent on it: a connection past its
                // address's limits is closed at once, so it holds no slot through a handshake.
                if let Some(slots) = admit_address(shared, peer) {
                    shared.metrics.connection("accepted");
                    // Every log line of one connection carries its number.
                    accepted_count += 1;
                    let span = tracing::info_span!("conn", id = accepted_count);
                    tracker.spawn(
                        connection::serve(shared.clone(), tcp, peer, permit, slots)
                            .instrument(span),
                    );
                }
            }
            Err(err) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                warn!(error = %err, retry_in = %tlschat_proto::duration::format_duration(backoff), "accept failed");
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

/// Takes the per-address slots of a new connection: one of `max-connections-per-ip` for its
/// life, and one of `max-handshakes-per-ip` for its handshake. `None` (logged) when the address
/// has used either up; the caller then drops the socket.
fn admit_address(shared: &Shared, peer: SocketAddr) -> Option<connection::AddressSlots> {
    let config = &shared.config;
    let Some(connection) = shared
        .addresses
        .try_acquire(peer.ip(), config.max_connections_per_ip)
    else {
        info!(%peer, max = config.max_connections_per_ip,
              "refused: too many connections from this address");
        shared.metrics.connection("refused_limit");
        return None;
    };
    let Some(handshake) = shared
        .handshakes
        .try_acquire(peer.ip(), config.max_handshakes_per_ip)
    else {
        info!(%peer, max = config.max_handshakes_per_ip,
              "refused: too many TLS handshakes in progress from this address");
        shared.metrics.connection("refused_limit");
        return None;
    };
    Some(connection::AddressSlots {
        connection,
        handshake,
    })
}

/// Reloads the certificates on every SIGHUP until shutdown.
async fn reload_on_sighup(shared: Arc<Shared>, hangups: Option<Hangups>) {
    #[cfg(unix)]
    if let Some(mut hangups) = hangups {
        loop {
            tokio::select! {
                () = shared.stop.cancelled() => return,
                received = hangups.recv() => {
                    if received.is_none() {
                        return;
                    }
                    info!("SIGHUP: reloading certificates");
                    let _ = shared.reload();
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = hangups;
    shared.stop.cancelled().await;
}

/// Binds the UDP socket and sets up the service with `keys`.
async fn bind_udp(
    config: &Config,
    udp: &UdpConfig,
    keys: UdpKeys,
) -> Result<(UdpSocket, UdpService), ServerError> {
    let socket = UdpSocket::bind(udp.listen)
        .await
        .map_err(|source| ServerError::UdpBind {
            addr: udp.listen,
            source,
        })?;
    let service = UdpService::new(
        udp.clone(),
        config.server_name.clone(),
        keys,
        chrono::Utc::now(),
    );
    // Datagrams stamped before the floor may be replays of ones an earlier run answered:
    // start listening only once honest clients' timestamps are past it.
    let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    let wait = service.ready_at_ms().saturating_sub(now_ms) + 1;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    Ok((socket, service))
}
