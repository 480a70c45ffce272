//! The state every connection task shares: configuration, the TLS acceptor (swapped on
//! reload), the chat hub, counters, and the two phases of shutdown.
//!
//! # Shutdown
//!
//! 1. *Stop requested* ([`Shared::request_stop`]: a signal, or an admin's `SHUTDOWN`): the
//!    accept loop stops accepting.
//! 2. *Quiesce* ([`Shared::quiesce`]): requests are refused with `ERR SHUTTING_DOWN`. Every
//!    request is handled holding an [`Admission`] from the [`Gate`]; closing the gate waits for
//!    the requests in flight, and after it no request can queue anything more for anyone.
//! 3. *Drain* (`shutdown` cancelled): each connection writes what is queued for it, then
//!    `EVENT SHUTDOWN`, then closes. So every message the server acknowledged reaches every
//!    recipient still connected.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard};

use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::chat::journal::JournalLimits;
use crate::chat::presence::ClusterLink;
use crate::chat::Hub;
use crate::limits::AddressCounter;
use crate::metrics::Metrics;
use crate::revoked::Revoked;
use crate::settings::Config;
use crate::store::{Store, StoreError};
use crate::sync::lock;
use crate::tls;
use crate::udp::{UdpKeys, UdpStats};

/// State every connection task shares.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) hub: Arc<Hub>,
    acceptor: RwLock<TlsAcceptor>,
    /// Cancelled when a stop is requested (phase 1).
    pub(crate) stop: CancellationToken,
    /// Cancelled when connections must drain and close (phase 3).
    pub(crate) shutdown: CancellationToken,
    shutdown_reason: OnceLock<String>,
    gate: Gate,
    /// Connections past the TLS handshake, now.
    pub(crate) connections: AtomicUsize,
    pub(crate) addresses: Arc<AddressCounter>,
    /// TLS handshakes in progress per source address.
    pub(crate) handshakes: Arc<AddressCounter>,
    pub(crate) udp_stats: Option<Arc<UdpStats>>,
    pub(crate) udp_keys: Option<watch::Sender<UdpKeys>>,
    /// When the certificates and the revocation list in use run out.
    expiries: RwLock<Vec<tls::Expiry>>,
    /// The counters `--metrics` serves.
    pub(crate) metrics: Arc<Metrics>,
    /// In a cluster: what the other nodes' revocation lists revoke, enforced here too.
    cluster_revoked: Mutex<Revoked>,
    /// In a cluster: shares this node's revocation list after it was (re)loaded.
    share_revocations: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

/// Admits requests until closed; closing waits for the requests admitted before.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    closed: AtomicBool,
    lock: RwLock<()>,
}

/// Permission to handle one request: held while it runs.
// The guard is never read: holding it is the point (closing waits for it to drop).
#[allow(dead_code)]
pub(crate) struct Admission<'a>(RwLockReadGuard<'a, ()>);

impl Gate {
    /// Admits one request, or `None` once closed.
    pub(crate) fn admit(&self) -> Option<Admission<'_>> {
        let guard = self
            .lock
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.closed.load(Ordering::SeqCst) {
            return None;
        }
        Some(Admission(guard))
    }

    /// Refuses further requests and returns once every admitted one has finished.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        drop(
            self.lock
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
    }
}

impl Shared {
    /// The shared state; with a store, its commit thread is started.
    pub(crate) fn new(
        config: Config,
        acceptor: TlsAcceptor,
        store: Option<Arc<dyn Store>>,
        cluster: Option<ClusterLink>,
        udp_stats: Option<Arc<UdpStats>>,
        udp_keys: Option<watch::Sender<UdpKeys>>,
    ) -> Result<Self, StoreError> {
        let metrics = Arc::new(Metrics::new(
            !matches!(config.metrics, crate::config::MetricsListen::Off),
            udp_stats.clone(),
        ));
        let mut hub = Hub::with_limits(config.room_limits(), config.max_published_keys)
            .with_max_dm_bytes(config.max_dm_bytes)
            .with_user_limits(config.max_sessions_per_user, config.max_devices_per_user);
        if let Some(link) = cluster {
            hub = hub.in_cluster(link);
        }
        if let Some(store) = store {
            // A connection has at most MAX_IN_FLIGHT submissions waiting.
            hub = hub.with_store(
                store,
                JournalLimits {
                    queue: config
                        .max_connections
                        .saturating_mul(crate::config::MAX_IN_FLIGHT),
                    page_cap: config.max_history_page,
                    catch_up: config.max_catch_up,
                    offline: config.max_offline_per_user,
                },
                {
                    let metrics = metrics.clone();
                    Arc::new(move |took| metrics.committed(took))
                },
            )?;
        }
        Ok(Self {
            hub: Arc::new(hub),
            config,
            acceptor: RwLock::new(acceptor),
            stop: CancellationToken::new(),
            shutdown: CancellationToken::new(),
            shutdown_reason: OnceLock::new(),
            gate: Gate::default(),
            connections: AtomicUsize::new(0),
            addresses: Arc::new(AddressCounter::default()),
            handshakes: Arc::new(AddressCounter::default()),
            udp_stats,
            udp_keys,
            expiries: RwLock::default(),
            metrics,
            cluster_revoked: Mutex::default(),
            share_revocations: OnceLock::new(),
        })
    }

    /// Records when the certificates and the revocation list in use run out.
    pub(crate) fn set_expiries(&self, expiries: Vec<tls::Expiry>) {
        for expiry in &expiries {
            let what = match expiry.what {
                "server certificate" => "server",
                "CA certificate" => "ca",
                _ => "crl",
            };
            self.metrics.set_expiry(what, expiry.at);
        }
        *self
            .expiries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = expiries;
    }

    /// The metrics, as `/metrics` serves them (the store's size read now).
    pub(crate) fn metrics_text(&self) -> String {
        if let Some(Ok(stats)) = self.hub.store_stats() {
            self.metrics.set_store_bytes(stats.bytes);
        }
        if let Some((people, held)) = self.hub.cluster_counts() {
            self.metrics.set_cluster(people, held);
        }
        self.metrics.encode_prometheus()
    }

    /// Why the server is not ready for new work, if it is not: shutting down, or a store that
    /// cannot write.
    pub(crate) fn not_ready(&self) -> Option<&'static str> {
        if self.stop.is_cancelled() {
            Some("shutting down")
        } else if self.hub.store_failing() {
            Some("the message store cannot write")
        } else {
            None
        }
    }

    /// Logs a warning for each that runs out within `--expiry-warning` (or has).
    pub(crate) fn warn_expiring(&self) {
        let now = chrono::Utc::now().timestamp();
        let expiries = self
            .expiries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for expiry in expiries.iter() {
            if let Some(warning) = expiry.warning(now, self.config.expiry_warning) {
                warn!("{warning}");
            }
        }
    }

    /// The acceptor for a new connection (the newest certificate after a reload).
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.acceptor
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Phase 1: asks the server to stop; the first reason given is the one clients see.
    pub(crate) fn request_stop(&self, reason: String) {
        if self.shutdown_reason.set(reason).is_ok() {
            info!(reason = self.shutdown_reason(), "shutting down");
        }
        self.stop.cancel();
    }

    /// Phases 2 and 3: refuses new requests, waits for those in flight and for every message
    /// they sent to be committed and delivered, then tells every connection to drain.
    pub(crate) async fn quiesce(&self) {
        self.gate.close();
        self.hub.flush().await;
        self.shutdown.cancel();
    }

    /// Admits one request, or `None` when the server is shutting down.
    pub(crate) fn admit(&self) -> Option<Admission<'_>> {
        self.gate.admit()
    }

    pub(crate) fn shutdown_reason(&self) -> &str {
        self.shutdown_reason
            .get()
            .map_or("server is shutting down", String::as_str)
    }

    /// Reloads the certificate, key, CA and revocation list from their files. New connections
    /// (and UDP datagrams) use them; existing connections keep theirs, but those of revoked
    /// certificates are closed (`REVOKED`) and their published keys withdrawn. On any error
    /// the old ones stay.
    pub(crate) fn reload(&self) -> Result<(), String> {
        let result = tls::Credentials::load(&self.config)
            .and_then(|mut credentials| {
                // What the other nodes of a cluster revoked stays revoked here.
                let cluster = lock(&self.cluster_revoked).clone();
                if !cluster.is_empty() {
                    credentials.revoked = Arc::new(credentials.revoked.with(&cluster));
                }
                let tls = tls::server_config(&self.config, &credentials)?;
                Ok((credentials, tls))
            })
            .map_err(|e| format!("{:#}", anyhow::Error::new(e)))
            .and_then(|(credentials, tls)| {
                let keys = match &self.udp_keys {
                    Some(_) => Some(
                        credentials
                            .udp_keys(&self.config)
                            .map_err(|e| format!("{:#}", anyhow::Error::new(e)))?,
                    ),
                    None => None,
                };
                Ok((tls, keys, credentials.revoked, credentials.expiries))
            });
        match result {
            Ok((tls, keys, revoked, expiries)) => {
                self.set_expiries(expiries);
                *self
                    .acceptor
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = TlsAcceptor::from(tls);
                if let (Some(sender), Some(keys)) = (&self.udp_keys, keys) {
                    sender.send_replace(keys);
                }
                let cut = self.hub.revoke(&revoked);
                if cut > 0 {
                    info!(sessions = cut, "sessions of revoked certificates closed");
                }
                info!(cert = %self.config.cert.display(), "certificates reloaded");
                if let Some(share) = self.share_revocations.get() {
                    share();
                }
                Ok(())
            }
            Err(reason) => {
                warn!(%reason, "certificate reload failed; keeping the current certificate");
                Err(reason)
            }
        }
    }

    /// In a cluster, `share` is called after every reload, to share this node's revocation
    /// list with the others (and once now).
    pub(crate) fn share_revocations_with(&self, share: Box<dyn Fn() + Send + Sync>) {
        share();
        let _ = self.share_revocations.set(share);
    }

    /// Another node of the cluster revoked `revoked` (its list, verified against the CA):
    /// those sessions are cut here now, and once the credentials are reloaded with it, their
    /// handshakes are refused too.
    pub(crate) fn revoke_from_cluster(&self, revoked: &Revoked) {
        let changed = {
            let mut all = lock(&self.cluster_revoked);
            let merged = all.with(revoked);
            let changed = merged.len() != all.len();
            *all = merged;
            changed
        };
        if !changed {
            return;
        }
        let cut = self.hub.revoke(revoked);
        info!(
            revoked = revoked.len(),
            sessions = cut,
            "revocation list shared by another node applied"
        );
        if let Err(reason) = self.reload() {
            warn!(%reason, "the shared revocations cut sessions, but new handshakes are not refused until a reload works");
        }
    }

    /// The `STATS` reply payload: `connections=… users=… rooms=… udp.answered=… udp.<drop>=…`.
    pub(crate) fn stats_line(&self) -> String {
        let mut line = format!(
            "connections={} users={} rooms={} keys={}",
            self.connections.load(Ordering::Relaxed),
            self.hub.user_count(),
            self.hub.room_count(),
            self.hub.key_count()
        );
        match self.hub.store_stats() {
            Some(Ok(store)) => line.push_str(&format!(
                " store.messages={} store.conversations={} store.bytes={}",
                store.messages, store.conversations, store.bytes
            )),
            Some(Err(err)) => warn!(error = %err, "cannot count the store"),
            None => {}
        }
        for (name, count) in self.udp_stats.iter().flat_map(|s| s.snapshot()) {
            line.push_str(&format!(" udp.{name}={count}"));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn closing_the_gate_waits_for_admitted_requests_and_refuses_new_ones() {
        let gate = Arc::new(Gate::default());
        let (admitted_tx, admitted_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let holder = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                let admission = gate.admit().expect("open");
                admitted_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                drop(admission);
            })
        };
        admitted_rx.recv().unwrap();
        let (closed_tx, closed_rx) = mpsc::channel();
        let closer = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                gate.close();
                closed_tx.send(()).unwrap();
            })
        };
        assert!(
            closed_rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "close must wait for the request in flight"
        );
        release_tx.send(()).unwrap();
        closed_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("close returns once it is done");
        assert!(gate.admit().is_none(), "no request after closing");
        holder.join().unwrap();
        closer.join().unwrap();
    }
}
