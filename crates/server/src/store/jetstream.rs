//! The cluster's store: the [`Store`] trait on NATS JetStream, so several tlschat nodes share
//! one history, one sequence of ids per conversation and one set of memberships, names, keys
//! and settings. Nothing here is home-made replication: JetStream (a Raft-replicated stream and
//! key-value buckets) carries it all; this module only lays the data out.
//!
//! # Layout
//!
//! - Stream `TLSCHAT` (file storage): message `id` of a conversation is published to
//!   `tlschat.m.<conversation>.<id>` (conversation names in hex, so any name is a subject
//!   token), its payload the record's bytes ([`Record::encode`]), its `Nats-Msg-Id`
//!   `<conversation>.<id>` (a retried publish is stored once). A message is read back by its
//!   exact subject.
//! - KV `tlschat_ids`: conversation → `last first`, the last id it ever had and the first still
//!   kept. Ids are allocated by compare-and-set on this entry (one per conversation per commit
//!   group), so two nodes never give out the same id: the order of a conversation is the one
//!   JetStream's CAS decided.
//! - KV `tlschat_resume`: user → `conversation id` lines, their resume points (memberships and
//!   direct conversations kept for them).
//! - KV `tlschat_names` (reserved names), `tlschat_keys` (published E2E keys),
//!   `tlschat_settings` (room rules, server bans).
//!
//! # Calling convention
//!
//! The trait is synchronous (the commit thread calls it, and a few tasks). The store runs its
//! own single-threaded runtime on a thread of its own; each call is sent there and waited for,
//! at most [`OP_TIMEOUT`]. When NATS cannot be reached, writes fail at once with a clear error
//! (a message is never acknowledged unless JetStream acknowledged it).
//!
//! # Known limits
//!
//! A commit group's messages are published one by one: when NATS fails in the middle, some may
//! be stored although the group is refused (their ids then show in the history), and an id
//! allocated for a message that was never stored is a hole its readers skip.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use futures_util::TryStreamExt;
use tlschat_proto::hex;
use tlschat_proto::names::name_key;
use tlschat_proto::{Anchor, Trust};

use super::{Page, Record, Store, StoreError, StoreStats, Stored};
use crate::sync::lock;

/// How long an entry of presence (or a name claim) lives unless its node puts it again.
pub const PRESENCE_TTL: Duration = Duration::from_secs(15);

/// Longest a store operation may take before it fails.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// The stream's name.
const STREAM: &str = "TLSCHAT";
/// Subjects of stored messages.
const SUBJECTS: &str = "tlschat.m";
/// Header naming the node that stored a message.
const NODE_HEADER: &str = "Tlschat-Node";
/// Compare-and-set attempts before giving up (many nodes writing one conversation at once).
const CAS_ATTEMPTS: usize = 64;
/// Conversations whose ids entry is remembered at most (then the memory starts afresh).
const WRITTEN_CACHE: usize = 100_000;
/// Messages read at once while paging.
const READ_WINDOW: u64 = 64;

/// TLS to NATS: the CA its certificate chains to, and this node's client certificate.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    /// The CA certificate (PEM).
    pub ca: std::path::PathBuf,
    /// This node's certificate and its private key (PEM), when NATS asks for one.
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// The store on JetStream.
pub struct JetStreamStore {
    tasks: tokio::runtime::Handle,
    inner: Arc<Inner>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    servers: String,
}

struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream,
    ids: kv::Store,
    resume: kv::Store,
    names: kv::Store,
    keys: kv::Store,
    settings: kv::Store,
    /// Who is connected to which node (entries live [`PRESENCE_TTL`] unless refreshed).
    presence: kv::Store,
    /// Names claimed with `NICK`, by node (same lifetime).
    claims: kv::Store,
    /// Each node's revocation list (PEM), by node.
    revoked: kv::Store,
    /// This node's name: stored messages carry it, so the node skips its own when following.
    node: String,
    /// The ids entries this node last wrote, with their revisions: the next compare-and-set
    /// starts from them (see [`allocate`]).
    written: std::sync::Mutex<std::collections::HashMap<String, (Bytes, u64)>>,
}

impl JetStreamStore {
    /// Connects to the NATS servers `servers` (`nats://host:port`, comma-separated) and makes
    /// the stream and buckets when they do not exist yet. `name` names this connection in
    /// NATS's monitoring (the node's name).
    ///
    /// # Errors
    ///
    /// NATS cannot be reached in [`OP_TIMEOUT`], refuses this node, or has no JetStream.
    pub fn open(servers: &str, tls: Option<&ClusterTls>, name: &str) -> Result<Self, StoreError> {
        Self::open_replicated(servers, tls, name, 1)
    }

    /// Like [`open`](Self::open), making the stream and buckets (when they do not exist yet)
    /// with `replicas` copies, one per NATS server of a JetStream cluster (1 to 5).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open); also when NATS has fewer servers than `replicas`.
    pub fn open_replicated(
        servers: &str,
        tls: Option<&ClusterTls>,
        name: &str,
        replicas: usize,
    ) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Failed(format!("cannot start the cluster store: {e}")))?;
        let tasks = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tlschat-cluster-store".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })
            .map_err(|e| StoreError::Failed(format!("cannot start the cluster store: {e}")))?;
        let (servers_text, tls, name) = (servers.to_owned(), tls.cloned(), name.to_owned());
        let inner = wait(&tasks, "connecting", async move {
            connect(&servers_text, tls.as_ref(), &name, replicas).await
        })?;
        Ok(Self {
            tasks,
            inner: Arc::new(inner),
            stop: Some(stop),
            thread: Some(thread),
            servers: servers.to_owned(),
        })
    }

    /// Runs `work` on the store's runtime and waits for it, at most [`OP_TIMEOUT`].
    fn run<T, F>(
        &self,
        what: &'static str,
        work: impl FnOnce(Arc<Inner>) -> F,
    ) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        wait(&self.tasks, what, work(self.inner.clone()))
    }

    /// Fails at once when NATS is not connected now, so a message is refused rather than
    /// queued in the client and stored later.
    fn connected(&self) -> Result<(), StoreError> {
        match self.inner.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            state => Err(StoreError::Failed(format!(
                "the cluster's store (NATS at {}) cannot be reached ({state})",
                self.servers
            ))),
        }
    }
}

impl Drop for JetStreamStore {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `work` on `tasks` and waits for its result, at most [`OP_TIMEOUT`].
fn wait<T: Send + 'static>(
    tasks: &tokio::runtime::Handle,
    what: &'static str,
    work: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    let (done, answer) = std::sync::mpsc::sync_channel(1);
    tasks.spawn(async move {
        let result = match tokio::time::timeout(OP_TIMEOUT, work).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Failed(format!(
                "NATS JetStream: {what}: no answer in {} s",
                OP_TIMEOUT.as_secs()
            ))),
        };
        let _ = done.send(result);
    });
    answer
        .recv()
        .map_err(|_| StoreError::Failed("the cluster store has stopped".into()))?
}

async fn connect(
    servers: &str,
    tls: Option<&ClusterTls>,
    name: &str,
    replicas: usize,
) -> Result<Inner, StoreError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(OP_TIMEOUT)
        .request_timeout(Some(OP_TIMEOUT));
    if let Some(tls) = tls {
        options = options
            .require_tls(true)
            .add_root_certificates(tls.ca.clone());
        if let Some((cert, key)) = &tls.identity {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
    }
    let addresses: Vec<&str> = servers.split(',').map(str::trim).collect();
    let client = options
        .connect(addresses.as_slice())
        .await
        .map_err(|e| nats("connecting", e))?;
    let js = jetstream::new(client.clone());
    let stream = js
        .get_or_create_stream(stream::Config {
            name: STREAM.to_owned(),
            subjects: vec![format!("{SUBJECTS}.>")],
            storage: stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| nats("opening the message stream", e))?;
    // Key-value buckets, made as streams of the key-value layout (ADR-8) and opened as
    // buckets: async-nats's own bucket creation asks for account details that nats-server 2.9
    // (Debian's) answers in a shape it does not read.
    let bucket = |name: &'static str, ttl: Option<Duration>| {
        let js = js.clone();
        async move {
            js.get_or_create_stream(stream::Config {
                name: format!("KV_{name}"),
                subjects: vec![format!("$KV.{name}.>")],
                max_messages_per_subject: 1,
                max_age: ttl.unwrap_or_default(),
                // On disk, presence too: a memory stream is gone after a restart of NATS (the
                // bucket with it), and its entries live seconds anyway.
                storage: stream::StorageType::File,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: stream::DiscardPolicy::New,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| nats(&format!("making the key-value bucket {name}"), e))?;
            js.get_key_value(name)
                .await
                .map_err(|e| nats(&format!("opening the key-value bucket {name}"), e))
        }
    };
    Ok(Inner {
        ids: bucket("tlschat_ids", None).await?,
        resume: bucket("tlschat_resume", None).await?,
        names: bucket("tlschat_names", None).await?,
        keys: bucket("tlschat_keys", None).await?,
        settings: bucket("tlschat_settings", None).await?,
        presence: bucket("tlschat_presence", Some(PRESENCE_TTL)).await?,
        claims: bucket("tlschat_claims", Some(PRESENCE_TTL)).await?,
        revoked: bucket("tlschat_revoked", None).await?,
        node: name.to_owned(),
        written: std::sync::Mutex::default(),
        client,
        js,
        stream,
    })
}

/// A store error from NATS, saying what was being done.
fn nats(what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(format!("NATS JetStream: {what}: {err}"))
}

/// A name as a subject token and key: lower-case hex of its bytes.
fn token(name: &str) -> String {
    hex::encode(name.as_bytes())
}

/// The name a [`token`] stands for.
fn untoken(token: &str) -> Option<String> {
    String::from_utf8(hex::decode(token).ok()?).ok()
}

fn subject(conversation: &str, id: u64) -> String {
    format!("{SUBJECTS}.{}.{id}", token(conversation))
}

/// A conversation's ids: the last it ever had and the first still kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Ids {
    last: u64,
    first: u64,
}

impl Ids {
    fn parse(bytes: &[u8]) -> Self {
        let text = std::str::from_utf8(bytes).unwrap_or_default();
        let mut parts = text.split(' ').map(|p| p.parse::<u64>().unwrap_or(0));
        let last = parts.next().unwrap_or(0);
        let first = parts.next().unwrap_or(1).max(1);
        Self { last, first }
    }

    fn bytes(self) -> Bytes {
        Bytes::from(format!("{} {}", self.last, self.first.max(1)))
    }
}

/// A user's resume points: conversation → last id received.
fn parse_points(bytes: &[u8]) -> BTreeMap<String, u64> {
    std::str::from_utf8(bytes)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (conversation, id) = line.split_once(' ')?;
            Some((untoken(conversation)?, id.parse().ok()?))
        })
        .collect()
}

fn points_bytes(points: &BTreeMap<String, u64>) -> Bytes {
    let mut text = String::new();
    for (conversation, id) in points {
        text.push_str(&format!("{} {id}\n", token(conversation)));
    }
    Bytes::from(text)
}

/// The current value of `key` (none when absent or deleted) and the revision to update from.
async fn entry(bucket: &kv::Store, key: &str) -> Result<(Option<Bytes>, Option<u64>), StoreError> {
    let entry = bucket
        .entry(key)
        .await
        .map_err(|e| nats("reading a key", e))?;
    Ok(match entry {
        Some(entry) if entry.operation == kv::Operation::Put => {
            (Some(entry.value), Some(entry.revision))
        }
        Some(entry) => (None, Some(entry.revision)),
        None => (None, None),
    })
}

/// Changes `key` by compare-and-set: `change` gets the current value and returns the new one
/// (or `None` to leave it) and a result; retried when another node changed it meanwhile.
async fn cas<T>(
    bucket: &kv::Store,
    key: &str,
    change: impl FnMut(Option<&[u8]>) -> (Option<Bytes>, T),
) -> Result<T, StoreError> {
    cas_from(bucket, key, None, change)
        .await
        .map(|(result, _)| result)
}

/// [`cas`], trying first from `seen` (the value and revision this node last wrote, when it
/// remembers them: one round trip when nobody wrote since) instead of reading the key. Also
/// returns what it wrote and the new revision.
async fn cas_from<T>(
    bucket: &kv::Store,
    key: &str,
    mut seen: Option<(Bytes, u64)>,
    mut change: impl FnMut(Option<&[u8]>) -> (Option<Bytes>, T),
) -> Result<(T, Option<(Bytes, u64)>), StoreError> {
    for _ in 0..CAS_ATTEMPTS {
        let (current, revision) = match seen.take() {
            Some((value, revision)) => (Some(value), Some(revision)),
            None => entry(bucket, key).await?,
        };
        let (new, result) = change(current.as_deref());
        let Some(new) = new else {
            return Ok((result, None));
        };
        let written = match revision {
            Some(revision) => bucket
                .update(key, new.clone(), revision)
                .await
                .map_err(|e| match e.kind() {
                    kv::UpdateErrorKind::WrongLastRevision => None,
                    _ => Some(nats("updating a key", e)),
                }),
            None => bucket
                .create(key, new.clone())
                .await
                .map_err(|e| match e.kind() {
                    kv::CreateErrorKind::AlreadyExists => None,
                    _ => Some(nats("creating a key", e)),
                }),
        };
        match written {
            Ok(revision) => return Ok((result, Some((new, revision)))),
            Err(None) => continue,
            Err(Some(err)) => return Err(err),
        }
    }
    Err(StoreError::Failed(format!(
        "NATS JetStream: {key}: changed by others {CAS_ATTEMPTS} times in a row"
    )))
}

/// Every key of `bucket`.
async fn all_keys(bucket: &kv::Store) -> Result<Vec<String>, StoreError> {
    match bucket.keys().await {
        Ok(keys) => keys
            .try_collect()
            .await
            .map_err(|e| nats("listing keys", e)),
        Err(e) => Err(nats("listing keys", e)),
    }
}

/// A conversation's ids (zero when it has none).
async fn ids_of(inner: &Inner, conversation: &str) -> Result<Ids, StoreError> {
    Ok(entry(&inner.ids, &token(conversation))
        .await?
        .0
        .map_or_else(Ids::default, |bytes| Ids::parse(&bytes)))
}

/// Message `id` of `conversation` and its stream sequence, if it is kept.
async fn message(
    inner: &Inner,
    conversation: &str,
    id: u64,
) -> Result<Option<(u64, Bytes)>, StoreError> {
    match inner
        .stream
        .get_last_raw_message_by_subject(&subject(conversation, id))
        .await
    {
        Ok(message) => Ok(Some((message.sequence, message.payload))),
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(nats("reading a message", e)),
    }
}

/// Takes `count` new ids of `conversation` by compare-and-set; returns the first. Starts
/// from the entry as this node last wrote it (see [`cas_from`]).
async fn allocate(inner: &Inner, conversation: &str, count: u64) -> Result<u64, StoreError> {
    let key = token(conversation);
    let seen = lock(&inner.written).get(&key).cloned();
    let (first_new, written) = cas_from(&inner.ids, &key, seen, |current| {
        let mut ids = current.map_or_else(Ids::default, Ids::parse);
        let first_new = ids.last + 1;
        ids.last += count;
        (Some(ids.bytes()), first_new)
    })
    .await?;
    if let Some(written) = written {
        let mut cache = lock(&inner.written);
        if cache.len() >= WRITTEN_CACHE {
            cache.clear();
        }
        cache.insert(key, written);
    }
    Ok(first_new)
}

async fn append(inner: Arc<Inner>, records: Vec<Record>) -> Result<Vec<u64>, StoreError> {
    // Ids: one compare-and-set per conversation of the group.
    let mut wanted: BTreeMap<String, u64> = BTreeMap::new();
    for record in &records {
        *wanted
            .entry(record.conversation().into_owned())
            .or_default() += 1;
    }
    let mut next: BTreeMap<String, u64> = BTreeMap::new();
    for (conversation, count) in &wanted {
        next.insert(
            conversation.clone(),
            allocate(&inner, conversation, *count).await?,
        );
    }
    // The messages, each acknowledged by JetStream before the group is.
    let mut ids = Vec::with_capacity(records.len());
    let mut acks = Vec::with_capacity(records.len());
    for record in &records {
        let conversation = record.conversation();
        let slot = next.get_mut(conversation.as_ref()).expect("counted above");
        let id = *slot;
        *slot += 1;
        ids.push(id);
        let publish = jetstream::message::PublishMessage::build()
            .payload(Bytes::from(record.encode()))
            .header(NODE_HEADER, inner.node.as_str())
            .message_id(format!("{}.{id}", token(&conversation)));
        acks.push(
            inner
                .js
                .send_publish(subject(&conversation, id), publish)
                .await
                .map_err(|e| nats("storing a message", e))?,
        );
    }
    for ack in acks {
        ack.await.map_err(|e| nats("storing a message", e))?;
    }
    // Direct messages kept for their recipient: resume points, as the embedded store sets them.
    let mut changes: BTreeMap<String, Vec<(String, u64, bool)>> = BTreeMap::new();
    for (record, id) in records.iter().zip(&ids) {
        if !record.keep_for_recipient {
            continue;
        }
        let conversation = record.conversation().into_owned();
        changes.entry(name_key(&record.to)).or_default().push((
            conversation.clone(),
            id - 1,
            false,
        ));
        if record.trust == Trust::Verified {
            changes
                .entry(name_key(&record.from))
                .or_default()
                .push((conversation, *id, true));
        }
    }
    for (user, points) in changes {
        cas(&inner.resume, &token(&user), |current| {
            let mut all = current.map(parse_points).unwrap_or_default();
            for (conversation, id, seen) in &points {
                let point = all.entry(conversation.clone()).or_insert(*id);
                if *seen {
                    *point = (*point).max(*id);
                }
            }
            (Some(points_bytes(&all)), ())
        })
        .await?;
    }
    Ok(ids)
}

async fn read(
    inner: Arc<Inner>,
    conversation: String,
    anchor: Option<Anchor>,
    limit: usize,
) -> Result<Page, StoreError> {
    let Ids { last, first } = ids_of(&inner, &conversation).await?;
    let limit = limit as u64;
    let mut out: Vec<Stored> = Vec::new();
    let decode = |id: u64, bytes: &[u8]| -> Result<Stored, StoreError> {
        let record = Record::decode(bytes).map_err(|e| {
            StoreError::Failed(format!(
                "NATS JetStream: message {id} of {conversation}: {e}"
            ))
        })?;
        Ok(Stored { id, record })
    };
    let (mut low, mut high, newest_first) = match anchor {
        None => (first, last, true),
        Some(Anchor::Before(id)) => (first, last.min(id.saturating_sub(1)), true),
        Some(Anchor::After(id)) => (first.max(id + 1), last, false),
    };
    // Windows of ids read at once, from the anchor outwards, until the page is full.
    while low <= high && high > 0 && (out.len() as u64) < limit {
        let span = (limit - out.len() as u64).min(READ_WINDOW);
        let window: Vec<u64> = if newest_first {
            (high.saturating_sub(span - 1).max(low)..=high)
                .rev()
                .collect()
        } else {
            (low..=high.min(low + span - 1)).collect()
        };
        let found = futures_util::future::try_join_all(
            window.iter().map(|&id| message(&inner, &conversation, id)),
        )
        .await?;
        for (&id, message) in window.iter().zip(found) {
            if let Some((_, bytes)) = message {
                out.push(decode(id, &bytes)?);
            }
        }
        match window.last() {
            Some(&edge) if newest_first => high = edge.saturating_sub(1),
            Some(&edge) => low = edge + 1,
            None => break,
        }
    }
    let more = low <= high && high > 0;
    if newest_first {
        out.reverse();
    }
    Ok(Page {
        messages: out,
        more,
    })
}

async fn prune(
    inner: Arc<Inner>,
    before_ms: i64,
    keep: u64,
    budget: usize,
) -> Result<u64, StoreError> {
    let mut deleted = 0u64;
    for key in all_keys(&inner.ids).await? {
        let Some(conversation) = untoken(&key) else {
            continue;
        };
        let Ids { last, first } = ids_of(&inner, &conversation).await?;
        let over = last.saturating_sub(keep);
        let mut id = first;
        while id <= last && (deleted as usize) < budget {
            match message(&inner, &conversation, id).await? {
                Some((sequence, bytes)) => {
                    let old = Record::time_of(&bytes).is_some_and(|t| t < before_ms);
                    if !(id <= over || old) {
                        break;
                    }
                    inner
                        .stream
                        .delete_message(sequence)
                        .await
                        .map_err(|e| nats("deleting an old message", e))?;
                    deleted += 1;
                }
                // A hole, or deleted already.
                None if id <= over => {}
                None => break,
            }
            id += 1;
        }
        if id > first {
            cas(&inner.ids, &key, |current| {
                let mut ids = current.map_or_else(Ids::default, Ids::parse);
                ids.first = ids.first.max(id);
                (Some(ids.bytes()), ())
            })
            .await?;
        }
        if deleted as usize >= budget {
            break;
        }
    }
    Ok(deleted)
}

impl Store for JetStreamStore {
    fn append(&self, records: &[Record]) -> Result<Vec<u64>, StoreError> {
        self.connected()?;
        let records = records.to_vec();
        self.run("storing messages", |inner| append(inner, records))
    }

    fn read(
        &self,
        conversation: &str,
        anchor: Option<Anchor>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let conversation = conversation.to_owned();
        self.run("reading messages", move |inner| {
            read(inner, conversation, anchor, limit)
        })
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        self.run("counting", |inner| async move {
            let info = inner
                .stream
                .get_info()
                .await
                .map_err(|e| nats("counting messages", e))?;
            let conversations = all_keys(&inner.ids).await?.len() as u64;
            Ok(StoreStats {
                messages: info.state.messages,
                conversations,
                bytes: info.state.bytes,
            })
        })
    }

    fn join(&self, user: &str, room: &str) -> Result<u64, StoreError> {
        self.connected()?;
        let (user, room) = (name_key(user), room.to_owned());
        self.run("recording a membership", |inner| async move {
            let last = ids_of(&inner, &room).await?.last;
            cas(&inner.resume, &token(&user), |current| {
                let mut all = current.map(parse_points).unwrap_or_default();
                all.insert(room.clone(), last);
                (Some(points_bytes(&all)), ())
            })
            .await?;
            Ok(last)
        })
    }

    fn leave(&self, user: &str, room: &str) -> Result<(), StoreError> {
        self.connected()?;
        let (user, room) = (name_key(user), room.to_owned());
        self.run("ending a membership", |inner| async move {
            cas(&inner.resume, &token(&user), |current| {
                let mut all = current.map(parse_points).unwrap_or_default();
                match all.remove(&room) {
                    Some(_) => (Some(points_bytes(&all)), ()),
                    None => (None, ()),
                }
            })
            .await
        })
    }

    fn resume_points(&self, user: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let user = name_key(user);
        self.run("reading resume points", |inner| async move {
            let (value, _) = entry(&inner.resume, &token(&user)).await?;
            Ok(value
                .map(|bytes| parse_points(&bytes).into_iter().collect())
                .unwrap_or_default())
        })
    }

    fn reserve(&self, name: &str) -> Result<(), StoreError> {
        self.connected()?;
        let name = name_key(name);
        self.run("reserving a name", |inner| async move {
            let now = chrono::Utc::now().timestamp_millis().max(0);
            match inner
                .names
                .create(token(&name), Bytes::from(now.to_string()))
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(nats("reserving a name", e)),
            }
        })
    }

    fn reserved(&self) -> Result<Vec<String>, StoreError> {
        self.run("reading reserved names", |inner| async move {
            Ok(all_keys(&inner.names)
                .await?
                .iter()
                .filter_map(|key| untoken(key))
                .collect())
        })
    }

    fn put_key(&self, name: &str, bundle: &str) -> Result<(), StoreError> {
        self.connected()?;
        let (name, bundle) = (name_key(name), bundle.to_owned());
        self.run("keeping a published key", |inner| async move {
            inner
                .keys
                .put(token(&name), Bytes::from(bundle))
                .await
                .map(drop)
                .map_err(|e| nats("keeping a published key", e))
        })
    }

    fn remove_key(&self, name: &str) -> Result<(), StoreError> {
        self.connected()?;
        let name = name_key(name);
        self.run("withdrawing a published key", |inner| async move {
            inner
                .keys
                .delete(token(&name))
                .await
                .map_err(|e| nats("withdrawing a published key", e))
        })
    }

    fn keys(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.run("reading published keys", |inner| async move {
            values(&inner.keys).await
        })
    }

    fn prune(&self, before_ms: i64, keep: u64, budget: usize) -> Result<u64, StoreError> {
        self.connected()?;
        self.run("deleting old messages", move |inner| {
            prune(inner, before_ms, keep, budget)
        })
    }

    fn unread_direct(&self, user: &str) -> Result<u64, StoreError> {
        let points = self.resume_points(user)?;
        self.run("counting waiting messages", |inner| async move {
            let mut waiting = 0;
            for (conversation, seen) in points.iter().filter(|(c, _)| !c.starts_with('#')) {
                waiting += ids_of(&inner, conversation)
                    .await?
                    .last
                    .saturating_sub(*seen);
            }
            Ok(waiting)
        })
    }

    fn partners(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let user = name_key(user);
        self.run("reading conversations", |inner| async move {
            let mut partners = Vec::new();
            for conversation in all_keys(&inner.ids)
                .await?
                .iter()
                .filter_map(|k| untoken(k))
            {
                // Direct conversations are "a b" (name keys, ordered); rooms start with '#'.
                if let Some((a, b)) = conversation.split_once(' ') {
                    if a == user {
                        partners.push(b.to_owned());
                    } else if b == user {
                        partners.push(a.to_owned());
                    }
                }
            }
            Ok(partners)
        })
    }

    fn settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.run("reading settings", |inner| async move {
            values(&inner.settings).await
        })
    }

    fn put_setting(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        self.connected()?;
        let (key, value) = (key.to_owned(), value.map(str::to_owned));
        self.run("keeping a setting", |inner| async move {
            match value {
                Some(value) => inner
                    .settings
                    .put(token(&key), Bytes::from(value))
                    .await
                    .map(drop)
                    .map_err(|e| nats("keeping a setting", e)),
                None => inner
                    .settings
                    .delete(token(&key))
                    .await
                    .map_err(|e| nats("forgetting a setting", e)),
            }
        })
    }

    fn set_resume_points(&self, user: &str, points: &[(String, u64)]) -> Result<(), StoreError> {
        self.connected()?;
        let (user, points) = (name_key(user), points.to_vec());
        self.run("recording resume points", |inner| async move {
            cas(&inner.resume, &token(&user), |current| {
                let mut all = current.map(parse_points).unwrap_or_default();
                let mut changed = false;
                // Only forward, and only for conversations kept for the user.
                for (conversation, id) in &points {
                    if let Some(point) = all.get_mut(conversation) {
                        if id > point {
                            *point = *id;
                            changed = true;
                        }
                    }
                }
                (changed.then(|| points_bytes(&all)), ())
            })
            .await
        })
    }
}

/// Every `name → value` of a bucket of text values keyed by [`token`].
async fn values(bucket: &kv::Store) -> Result<Vec<(String, String)>, StoreError> {
    let mut out = Vec::new();
    for key in all_keys(bucket).await? {
        let (Some(name), (Some(value), _)) = (untoken(&key), entry(bucket, &key).await?) else {
            continue;
        };
        out.push((name, String::from_utf8_lossy(&value).into_owned()));
    }
    Ok(out)
}

pub mod live;

#[cfg(test)]
mod tests;
