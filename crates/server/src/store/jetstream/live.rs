//! What is live between the nodes of a cluster, beside the stored history: following the
//! messages the other nodes store, watching the shared names, keys, settings and presence,
//! and keeping this node's own presence and name claims.
//!
//! # Presence
//!
//! Each node puts one entry per person connected to it in the bucket `tlschat_presence`, key
//! `<node>.<name>` (both as tokens), value as the hub writes it, and puts them all again every
//! [`PRESENCE_TTL`](super::PRESENCE_TTL) / 3. The bucket keeps an entry [`PRESENCE_TTL`](super::PRESENCE_TTL) after its last put, so
//! the people of a node that died are gone within that time (readers also drop what they
//! have not seen refreshed for that long: an expiry sends no notice). Certless names claimed
//! with `NICK` are entries of `tlschat_claims` (key: the name), made by an atomic create (one
//! node wins) and refreshed the same way.

use std::time::Duration;

use async_nats::jetstream::consumer::{push, DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{all_keys, entry, ids_of, nats, token, untoken, Inner, JetStreamStore, NODE_HEADER};
use super::{OP_TIMEOUT, SUBJECTS};
use crate::store::{Record, StoreError, Stored};

/// Pause before a feed or a watch that ended (NATS went away) starts again.
const RESTART_PAUSE: Duration = Duration::from_millis(500);

/// Conversations whose last ids are read at once when following begins.
const READ_AHEAD: usize = 64;

/// The other nodes' messages, from now on.
#[derive(Debug)]
pub struct Follow {
    /// Each conversation's last id when following began: what came before is not followed.
    pub last: Vec<(String, u64)>,
    /// Messages other nodes store, in the stream's order (not always id order: see the
    /// sequencer), each once.
    pub messages: mpsc::Receiver<Stored>,
}

/// A bucket of shared state to watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// Names that belong to a certificate.
    Names,
    /// Published E2E keys.
    Keys,
    /// Room rules and server bans.
    Settings,
    /// Who is connected to which node.
    Presence,
    /// Each node's revocation list (key: the node).
    Revocations,
}

/// An entry of a watched bucket, as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The key (a name, a room or a setting's key).
    pub key: String,
    /// For presence: the node the entry is of.
    pub node: Option<String>,
    /// The value, or none when the key was deleted.
    pub value: Option<String>,
    /// How long ago it was put (as far as the clocks agree).
    pub age: Duration,
}

impl Inner {
    fn bucket(&self, which: Watched) -> &kv::Store {
        match which {
            Watched::Names => &self.names,
            Watched::Keys => &self.keys,
            Watched::Settings => &self.settings,
            Watched::Presence => &self.presence,
            Watched::Revocations => &self.revoked,
        }
    }
}

impl JetStreamStore {
    /// This node's name.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Begins to follow what the other nodes store (up to `capacity` messages wait to be
    /// taken). The feed survives NATS outages: it goes on where it stopped.
    ///
    /// # Errors
    ///
    /// NATS cannot be reached now.
    pub fn follow(&self, capacity: usize) -> Result<Follow, StoreError> {
        let (last, start) = self.run("beginning to follow the cluster", |inner| async move {
            let info = inner
                .stream
                .get_info()
                .await
                .map_err(|e| nats("beginning to follow the cluster", e))?;
            let conversations: Vec<String> = all_keys(&inner.ids)
                .await?
                .iter()
                .filter_map(|k| untoken(k))
                .collect();
            let last: Vec<(String, u64)> = futures_util::stream::iter(conversations)
                .map(|c| {
                    let inner = inner.clone();
                    async move { ids_of(&inner, &c).await.map(|ids| (c, ids.last)) }
                })
                .buffered(READ_AHEAD)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<_, _>>()?;
            Ok((last, info.state.last_sequence + 1))
        })?;
        let (send, messages) = mpsc::channel(capacity.max(1));
        self.tasks
            .spawn(follow_from(self.inner.clone(), start, send));
        Ok(Follow { last, messages })
    }

    /// Watches a bucket: every entry as it is now, then every change (up to `capacity` wait
    /// to be taken). After an outage every entry comes again.
    pub fn watch(&self, which: Watched, capacity: usize) -> mpsc::Receiver<Change> {
        let (send, changes) = mpsc::channel(capacity.max(1));
        self.tasks.spawn(watch(self.inner.clone(), which, send));
        changes
    }

    /// Puts this node's presence entries (name key → value; none deletes it).
    ///
    /// # Errors
    ///
    /// NATS cannot be reached.
    pub fn put_presence(&self, entries: Vec<(String, Option<String>)>) -> Result<(), StoreError> {
        self.connected()?;
        self.run("telling who is connected here", |inner| async move {
            let results: Vec<Result<(), StoreError>> = futures_util::stream::iter(entries)
                .map(|(name, value)| {
                    let inner = inner.clone();
                    async move {
                        let key = format!("{}.{}", token(&inner.node), token(&name));
                        match value {
                            Some(value) => inner
                                .presence
                                .put(key, Bytes::from(value))
                                .await
                                .map(drop)
                                .map_err(|e| nats("putting presence", e)),
                            None => inner
                                .presence
                                .delete(key)
                                .await
                                .map_err(|e| nats("deleting presence", e)),
                        }
                    }
                })
                .buffer_unordered(READ_AHEAD)
                .collect()
                .await;
            results.into_iter().collect()
        })
    }

    /// Shares this node's revocation list (`pem`, as its file holds it).
    ///
    /// # Errors
    ///
    /// NATS cannot be reached.
    pub fn put_revocations(&self, pem: String) -> Result<(), StoreError> {
        self.connected()?;
        self.run("sharing the revocation list", |inner| async move {
            inner
                .revoked
                .put(token(&inner.node), Bytes::from(pem))
                .await
                .map(drop)
                .map_err(|e| nats("sharing the revocation list", e))
        })
    }

    /// Claims `name` (a name key) for a certless user of this node: true when this node has
    /// it now (nobody had it, or this node did).
    ///
    /// # Errors
    ///
    /// NATS cannot be reached: nobody can tell whether the name is free.
    pub fn claim(&self, name: &str) -> Result<bool, StoreError> {
        self.connected()?;
        let name = name.to_owned();
        self.run("claiming a name", |inner| async move {
            let node = Bytes::from(inner.node.clone());
            match inner.claims.create(token(&name), node.clone()).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    let (value, _) = entry(&inner.claims, &token(&name)).await?;
                    Ok(value.is_some_and(|v| v == node))
                }
                Err(e) => Err(nats("claiming a name", e)),
            }
        })
    }

    /// Gives up claims of this node (name keys); failures are only logged (the claims run out
    /// by themselves).
    pub fn release(&self, names: Vec<String>) {
        let inner = self.inner.clone();
        self.tasks.spawn(async move {
            for name in names {
                if let Err(err) = give_up(&inner, &name).await {
                    tracing::debug!(error = %err, %name, "cannot release a name claim");
                }
            }
        });
    }

    /// Puts this node's claims again, so they do not run out (those of others are left).
    ///
    /// # Errors
    ///
    /// NATS cannot be reached.
    pub fn refresh_claims(&self, names: Vec<String>) -> Result<(), StoreError> {
        self.connected()?;
        self.run("keeping name claims", |inner| async move {
            let node = Bytes::from(inner.node.clone());
            for name in names {
                let key = token(&name);
                match entry(&inner.claims, &key).await? {
                    (Some(value), Some(revision)) if value == node => {
                        let _ = inner.claims.update(&key, node.clone(), revision).await;
                    }
                    // Ran out meanwhile: claim it again, when nobody else did.
                    (None, _) => {
                        let _ = inner.claims.create(&key, node.clone()).await;
                    }
                    _ => {}
                }
            }
            Ok(())
        })
    }
}

/// Deletes this node's claim of `name`, when it is this node's.
async fn give_up(inner: &Inner, name: &str) -> Result<(), StoreError> {
    let key = token(name);
    if let (Some(value), Some(_)) = entry(&inner.claims, &key).await? {
        if value == inner.node.as_bytes() {
            inner
                .claims
                .delete(&key)
                .await
                .map_err(|e| nats("releasing a name", e))?;
        }
    }
    Ok(())
}

/// Feeds the other nodes' messages from stream sequence `start` into `out`, again after
/// every failure, until `out` is closed.
async fn follow_from(inner: std::sync::Arc<Inner>, mut start: u64, out: mpsc::Sender<Stored>) {
    let mut streak = Streak::default();
    loop {
        let began = std::time::Instant::now();
        match feed(&inner, &mut start, &out).await {
            Ok(()) => return,
            Err(err) => {
                if streak.first_failure(began) {
                    tracing::warn!(error = %err, "following the cluster's messages: starting again (until it works)");
                } else {
                    tracing::debug!(error = %err, "following the cluster's messages: starting again");
                }
                tokio::time::sleep(RESTART_PAUSE).await;
            }
        }
        if out.is_closed() {
            return;
        }
    }
}

/// Failures in a row of a feed or a watch, so an outage is logged once, not twice a second.
#[derive(Debug, Default)]
struct Streak {
    failing: bool,
}

impl Streak {
    /// A run that began at `began` failed: whether it starts a streak (the run before worked
    /// for a while, or this is the first).
    fn first_failure(&mut self, began: std::time::Instant) -> bool {
        let worked = began.elapsed() >= Duration::from_secs(10);
        let first = !self.failing || worked;
        self.failing = true;
        first
    }
}

/// One run of [`follow_from`]: `Ok` once `out` is closed.
async fn feed(
    inner: &Inner,
    start: &mut u64,
    out: &mpsc::Sender<Stored>,
) -> Result<(), StoreError> {
    let consumer = inner
        .stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: inner.client.new_inbox(),
            description: Some(format!("tlschat node {} follows the others", inner.node)),
            filter_subject: format!("{SUBJECTS}.>"),
            replay_policy: ReplayPolicy::Instant,
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: *start,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| nats("following the cluster's messages", e))?;
    let mut messages = tokio::time::timeout(OP_TIMEOUT, consumer.messages())
        .await
        .map_err(|_| StoreError::Failed("NATS JetStream: following: no answer".into()))?
        .map_err(|e| nats("following the cluster's messages", e))?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| nats("following the cluster's messages", e))?;
        if let Ok(info) = message.info() {
            *start = info.stream_sequence + 1;
        }
        let own = message
            .headers
            .as_ref()
            .and_then(|h| h.get(NODE_HEADER))
            .is_some_and(|v| v.as_str() == inner.node);
        if own {
            continue;
        }
        let id = message
            .subject
            .rsplit('.')
            .next()
            .and_then(|id| id.parse::<u64>().ok());
        let (Some(id), Ok(record)) = (id, Record::decode(&message.payload)) else {
            tracing::warn!(subject = %message.subject, "a stored message this node cannot read was skipped");
            continue;
        };
        if out.send(Stored { id, record }).await.is_err() {
            return Ok(());
        }
    }
    Err(StoreError::Failed(
        "NATS JetStream: the feed of messages ended".into(),
    ))
}

/// Feeds every entry of a bucket, then its changes, into `out`, again after every failure,
/// until `out` is closed.
async fn watch(inner: std::sync::Arc<Inner>, which: Watched, out: mpsc::Sender<Change>) {
    let mut streak = Streak::default();
    loop {
        let began = std::time::Instant::now();
        match watch_once(&inner, which, &out).await {
            Ok(()) => return,
            Err(err) => {
                if streak.first_failure(began) {
                    tracing::warn!(error = %err, ?which, "watching the cluster's shared state: starting again (until it works)");
                } else {
                    tracing::debug!(error = %err, ?which, "watching the cluster's shared state: starting again");
                }
                tokio::time::sleep(RESTART_PAUSE).await;
            }
        }
        if out.is_closed() {
            return;
        }
    }
}

async fn watch_once(
    inner: &Inner,
    which: Watched,
    out: &mpsc::Sender<Change>,
) -> Result<(), StoreError> {
    let mut entries = inner
        .bucket(which)
        .watch_with_history(">")
        .await
        .map_err(|e| nats("watching shared state", e))?;
    while let Some(entry) = entries.next().await {
        let entry = entry.map_err(|e| nats("watching shared state", e))?;
        let (node, key) = match which {
            Watched::Presence => match entry.key.split_once('.') {
                Some((node, name)) => (untoken(node), untoken(name)),
                None => (None, None),
            },
            _ => (None, untoken(&entry.key)),
        };
        let Some(key) = key else {
            continue;
        };
        let value = (entry.operation == kv::Operation::Put)
            .then(|| String::from_utf8_lossy(&entry.value).into_owned());
        let age = (chrono::Utc::now() - entry.created)
            .to_std()
            .unwrap_or_default();
        let change = Change {
            key,
            node,
            value,
            age,
        };
        if out.send(change).await.is_err() {
            return Ok(());
        }
    }
    Err(StoreError::Failed("NATS JetStream: the watch ended".into()))
}
