//! Running as one node of a cluster (`--cluster`): the history, ids, names, keys and settings
//! live in NATS JetStream (the store in `store::jetstream`), and the tasks here keep this
//! node's hub in step with the other nodes:
//!
//! - **feed**: the messages other nodes store go to the hub, which delivers them here in id
//!   order with this node's own; ids another node took and never stored are skipped after
//!   [`CLUSTER_HOLE_WAIT`].
//! - **watches**: reserved names, published keys, room rules and bans, and the other nodes'
//!   presence, as they change.
//! - **presence**: this node's people (name, trust, rooms) are put as they change and all
//!   again every [`PRESENCE_REFRESH`], with this node's `NICK` claims; the other nodes'
//!   people not refreshed within [`PRESENCE_TTL`] are forgotten (their node died).
//!
//! Every call into the store blocks (on the store's own thread), so the tasks make them on
//! blocking threads.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::chat::presence::ClusterLink;
use crate::chat::presence::NameClaims;
use crate::chat::Hub;
use crate::config::{ClusterSetting, CrlSetting, NodeName, CLUSTER_HOLE_WAIT, PRESENCE_REFRESH};
use crate::settings::Config;
use crate::shared::Shared;
use crate::store::jetstream::live::{Change, Follow, Watched};
use crate::store::jetstream::{ClusterTls, JetStreamStore, PRESENCE_TTL};
use crate::store::{Store, StoreError, Stored};

/// Messages and changes waiting to be taken from the store, at most, per feed.
const FEED_CAPACITY: usize = 4096;

/// Most messages of other nodes handed to the hub at once.
const FEED_BATCH: usize = 512;

/// This node's connection to the cluster.
pub struct Cluster {
    store: Arc<JetStreamStore>,
    /// What the other nodes store, from when this node began to follow.
    messages: mpsc::Receiver<Stored>,
}

impl NameClaims for JetStreamStore {
    fn claim(&self, name: &str) -> Result<bool, StoreError> {
        Self::claim(self, name)
    }

    fn release(&self, names: Vec<String>) {
        Self::release(self, names);
    }
}

impl Cluster {
    /// Connects to the cluster's NATS servers as the node `config` names (`port`: where this
    /// node listens, for an automatic name) and begins to follow the other nodes. `None`
    /// when `config` has no cluster.
    ///
    /// # Errors
    ///
    /// NATS cannot be reached, refuses this node, or has no JetStream.
    pub fn connect(config: &Config, port: u16) -> Result<Option<(Self, ClusterLink)>, StoreError> {
        let ClusterSetting::On(urls) = &config.cluster else {
            return Ok(None);
        };
        let node = match &config.node_name {
            NodeName::Named(name) => name.clone(),
            NodeName::Auto => format!("{}-{port}", host_name()),
        };
        let tls = config.cluster_ca.as_ref().map(|ca| ClusterTls {
            ca: ca.clone(),
            identity: config.cluster_cert.clone().zip(config.cluster_key.clone()),
        });
        let servers = urls.join(",");
        let store = Arc::new(JetStreamStore::open_replicated(
            &servers,
            tls.as_ref(),
            &node,
            config.cluster_replicas,
        )?);
        let Follow { last, messages } = store.follow(FEED_CAPACITY)?;
        info!(node = %node, nats = %servers, conversations = last.len(), "joined the cluster");
        let link = ClusterLink::new(
            node,
            last,
            store.clone() as Arc<dyn NameClaims>,
            PRESENCE_TTL,
            CLUSTER_HOLE_WAIT,
        );
        Ok(Some((Self { store, messages }, link)))
    }

    /// The cluster's store, for the hub.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Starts the tasks that keep this node in step with the other nodes, until `stop`.
    pub(crate) fn start(
        self,
        shared: &Arc<Shared>,
        tracker: &TaskTracker,
        stop: &CancellationToken,
    ) {
        let Self { store, messages } = self;
        let hub = &shared.hub;
        tracker.spawn(feed(hub.clone(), messages, stop.clone()));
        tracker.spawn(skip_holes(hub.clone(), stop.clone()));
        for which in [
            Watched::Names,
            Watched::Keys,
            Watched::Settings,
            Watched::Presence,
            Watched::Revocations,
        ] {
            let changes = store.watch(which, FEED_CAPACITY);
            tracker.spawn(apply(shared.clone(), which, changes, stop.clone()));
        }
        // This node's revocation list, now and after every reload.
        let (sharer, crl) = (store.clone(), shared.config.crl.clone());
        shared.share_revocations_with(Box::new(move || share_revocations(&sharer, &crl)));
        tracker.spawn(publish_presence(hub.clone(), store, stop.clone()));
    }
}

/// The host's name, for an automatic node name.
fn host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(crate::config::MAX_NODE_NAME - 6)
        .collect();
    if name.is_empty() {
        "tlschat".to_owned()
    } else {
        name
    }
}

/// Hands the other nodes' messages to the hub, in batches.
async fn feed(hub: Arc<Hub>, mut messages: mpsc::Receiver<Stored>, stop: CancellationToken) {
    loop {
        let first = tokio::select! {
            message = messages.recv() => message,
            () = stop.cancelled() => None,
        };
        let Some(first) = first else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < FEED_BATCH {
            match messages.try_recv() {
                Ok(message) => batch.push(message),
                Err(_) => break,
            }
        }
        hub.take_remote(batch).await;
    }
}

/// Skips ids the other nodes took but did not store in time.
async fn skip_holes(hub: Arc<Hub>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(CLUSTER_HOLE_WAIT / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => { hub.expire_holes().await; }
            () = stop.cancelled() => return,
        }
    }
}

/// Shares the revocation list in `crl` (when there is one) with the other nodes, in the
/// background.
fn share_revocations(store: &Arc<JetStreamStore>, crl: &CrlSetting) {
    let path = match crl {
        CrlSetting::None => return,
        CrlSetting::WhenPresent(path) | CrlSetting::File(path) => path.clone(),
    };
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let pem = match std::fs::read_to_string(&path) {
            Ok(pem) => pem,
            // Missing is fine for `WhenPresent`; the reload itself reports a bad file.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
            Err(err) => {
                warn!(crl = %path.display(), error = %err, "cannot read the revocation list to share it with the cluster");
                return;
            }
        };
        if let Err(err) = store.put_revocations(pem) {
            warn!(error = %err, "cannot share the revocation list with the cluster; the next reload tries again");
        }
    });
}

/// Applies a watched bucket's changes to the hub.
async fn apply(
    shared: Arc<Shared>,
    which: Watched,
    mut changes: mpsc::Receiver<Change>,
    stop: CancellationToken,
) {
    let hub = &shared.hub;
    loop {
        let change = tokio::select! {
            change = changes.recv() => change,
            () = stop.cancelled() => None,
        };
        let Some(change) = change else {
            return;
        };
        let value = change.value.as_deref();
        match which {
            Watched::Names => {
                if value.is_some() {
                    hub.apply_name(&change.key);
                }
            }
            Watched::Keys => hub.apply_keys(&change.key, value),
            Watched::Settings => hub.apply_setting(&change.key, value),
            Watched::Presence => {
                if let Some(node) = &change.node {
                    hub.apply_presence(node, &change.key, value, change.age);
                }
            }
            Watched::Revocations => {
                let Some(pem) = value else {
                    continue;
                };
                match crate::tls::revoked_from_pem(pem.as_bytes(), &shared.config.ca) {
                    Ok(revoked) => {
                        let shared = shared.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            shared.revoke_from_cluster(&revoked);
                        })
                        .await;
                    }
                    Err(reason) => warn!(
                        node = %change.key,
                        %reason,
                        "a revocation list shared in the cluster was ignored"
                    ),
                }
            }
        }
    }
}

/// Puts this node's presence as it changes, and all of it (with the name claims) every
/// [`PRESENCE_REFRESH`]; forgets the other nodes' people that were not refreshed.
async fn publish_presence(hub: Arc<Hub>, store: Arc<JetStreamStore>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(PRESENCE_REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        let all = tokio::select! {
            () = hub.presence_changed() => false,
            _ = tick.tick() => true,
            () = stop.cancelled() => {
                // The last changes (people leaving as the node stops).
                put_presence(&store, hub.take_presence(false), &mut failing).await;
                return;
            }
        };
        if all {
            hub.expire_presence();
            let claims = hub.claimed_names();
            let store = store.clone();
            let _ = tokio::task::spawn_blocking(move || store.refresh_claims(claims)).await;
        }
        put_presence(&store, hub.take_presence(all), &mut failing).await;
    }
}

/// Puts presence entries; a failure is logged once until it works again (the next full
/// refresh puts everything).
async fn put_presence(
    store: &Arc<JetStreamStore>,
    entries: Vec<(String, Option<String>)>,
    failing: &mut bool,
) {
    if entries.is_empty() {
        return;
    }
    let store = store.clone();
    let result = tokio::task::spawn_blocking(move || store.put_presence(entries)).await;
    match result {
        Ok(Ok(())) => {
            if std::mem::take(failing) {
                info!("presence is shared with the cluster again");
            }
        }
        Ok(Err(err)) => {
            if !std::mem::replace(failing, true) {
                warn!(error = %err, "cannot share who is connected here with the cluster; retrying");
            }
        }
        Err(err) => warn!(error = %err, "presence task failed"),
    }
}
