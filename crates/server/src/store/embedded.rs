//! The default store: one redb file and its journal (pure Rust, crash-safe commits with checksums and a
//! copy-on-write B-tree, a stable file format). Nothing to install or run beside the server.
//!
//! # Tables
//!
//! - `chunks`: `(conversation, first id)` → a run of consecutive messages of the conversation
//!   ([`chunk`]: each record's bytes, [`Record::encode`]). Format 1 kept a row per message in
//!   `messages`; such a file is converted when it is opened.
//! - `last_ids`: conversation → the last id it ever had, so ids are never reused, even after
//!   retention empties a conversation.
//! - `resume`: `(user, conversation)` → the last id the user received there. A row per room a
//!   verified user is a member of (from `JOIN` to `PART`) and per direct conversation kept for
//!   them; what lies after it is sent when they connect again.
//! - `names`: name key → when it was first seen with a certificate (ms): reserved names.
//! - `keys`: name key → the E2E key bundle the user published last (hex).
//! - `settings`: `#room` → the room's rules (topic, modes, operators, bans, invitations), `*`
//!   → the server's bans (text; see `chat::rules`).
//! - `meta`: `format` → the store format ([`FORMAT`]); a newer one stops startup, an older one
//!   is converted.
//!
//! # Durability
//!
//! Messages go through the journal beside the file ([`super::wal`]): a group is appended there
//! (and synced with [`Fsync::Always`]) before it is acknowledged. Direct messages are then
//! committed to redb in memory (a non-durable commit, visible to every reader) at once, since
//! they set resume points; room messages wait in memory, in chunks ([`pending`]), and go into
//! redb in one such commit when anything needs them there (a read of the room, any
//! other write) or at the checkpoint. The checkpoint, every second, folds everything into the
//! file with a durable redb commit and empties the journal. Every other write (membership,
//! resume points, names, keys, pruning) is a durable redb commit of its own. With
//! [`Fsync::Always`] an acknowledged message is on disk; with [`Fsync::Never`] the same writes
//! reach the operating system, which survives a crash of the server process but not of the
//! machine (the backend below redb skips the sync and nothing else changes, so the file is
//! always consistent).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use redb::backends::FileBackend;
use redb::{
    BackendError, Database, DatabaseError, Durability, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, StorageBackend, TableDefinition,
};
use tlschat_proto::names::name_key;
use tlschat_proto::{Anchor, Trust};

use self::chunk::Chunk;
use self::pending::Pending;
use super::wal::{Entry, Frame, ReadError, Wal};
use super::{Kind, Page, Record, Store, StoreError, StoreStats, Stored};
use crate::sync::lock;

/// The store format this build reads and writes (2: messages in chunks; 1 is converted).
pub const FORMAT: u64 = 2;

const CHUNKS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("chunks");
/// Format 1: a row per message. Read once, to convert it.
const MESSAGES_V1: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
const LAST_IDS: TableDefinition<&str, u64> = TableDefinition::new("last_ids");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const RESUME: TableDefinition<(&str, &str), u64> = TableDefinition::new("resume");
const NAMES: TableDefinition<&str, u64> = TableDefinition::new("names");
const KEYS: TableDefinition<&str, &str> = TableDefinition::new("keys");
const SETTINGS: TableDefinition<&str, &str> = TableDefinition::new("settings");

/// When a commit counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd)]
pub enum Fsync {
    /// Once it is on disk: survives a power loss.
    Always,
    /// Once the operating system has it: survives a crash of the server, not of the machine.
    Never,
}

impl Fsync {
    /// The word used in settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Never => "never",
        }
    }
}

impl std::str::FromStr for Fsync {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            _ => Err(format!("expected always or never, not {text:?}")),
        }
    }
}

/// The message store in one redb file.
pub struct EmbeddedStore {
    /// The open database; `None` for a moment while it is reopened after a failed write.
    db: Mutex<Option<Arc<Database>>>,
    /// A write failed: redb wants the database reopened before the next one.
    broken: AtomicBool,
    path: PathBuf,
    fsync: Fsync,
    /// Last id per conversation, as committed: read from `last_ids` on first use.
    last_ids: Mutex<HashMap<String, u64>>,
    /// The journal: every group since the last checkpoint.
    wal: Mutex<Wal>,
    /// Room messages in the journal, not yet in redb. Locked after `wal` when both are, and
    /// never held while waiting for a write transaction.
    pending: Mutex<Pending>,
    /// Held from taking the waiting room messages until their transaction has committed
    /// (never while waiting for a transaction).
    flushing: Mutex<()>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens the store at `path`, making it (and its folder, private to this user) when
    /// missing. A damaged file, a file that is not a store, one of a newer format or one in
    /// use by another server is an error that names the file.
    pub fn open(path: &Path, fsync: Fsync) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let dir = tlschat_files::parent_dir(path);
        if !dir.exists() {
            private_dir(dir).map_err(open_err)?;
        }
        tlschat_files::check_dir(dir).map_err(|e| {
            open_err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                e.to_string(),
            ))
        })?;
        let existed = path.exists();
        let journal = Wal::path_for(path);
        if !existed && std::fs::metadata(&journal).is_ok_and(|m| m.len() > 0) {
            return Err(StoreError::Damaged {
                path: journal,
                detail: format!(
                    "it holds messages of a store file that no longer exists ({}); remove it \
                     too to start with an empty store",
                    path.display()
                ),
            });
        }
        let db = open_database(path, fsync)?;
        prepare(&db, path)?;
        let wal = recover(&db, path, fsync)?;
        Ok(Self {
            db: Mutex::new(Some(Arc::new(db))),
            broken: AtomicBool::new(false),
            path: path.to_owned(),
            fsync,
            last_ids: Mutex::default(),
            wal: Mutex::new(wal),
            pending: Mutex::default(),
            flushing: Mutex::default(),
        })
    }

    /// The open database. After a failed write (a full disk, an I/O error) redb refuses every
    /// write until it is reopened: the first use after one reopens it, so the store recovers
    /// by itself once the disk has room again. Reads keep working meanwhile.
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        let mut slot = lock(&self.db);
        if self.broken.load(Ordering::SeqCst) {
            // Drop ours first: the file is locked while any handle lives (a read in flight
            // keeps it a moment longer; then this fails now and works next time).
            drop(slot.take());
            let db = open_database(&self.path, self.fsync)?;
            // What was committed since the last checkpoint lived in the old handle's memory:
            // the journal has it. Put back in memory only (no write: the disk may still be
            // full, and reads must work); the next checkpoint makes it durable.
            let wal = lock(&self.wal);
            let journal = wal.path().to_owned();
            let entries = wal.entries().map_err(|e| wal_error(&journal, e))?;
            replay(&db, entries, &journal, Durability::None)?;
            lock(&self.pending).clear();
            drop(wal);
            *slot = Some(Arc::new(db));
            self.broken.store(false, Ordering::SeqCst);
            tracing::info!(store = %self.path.display(), "message store reopened after a failed write");
        }
        slot.clone()
            .ok_or_else(|| StoreError::Failed("the store is being reopened".into()))
    }

    /// Notes a failed write, so the next use reopens the database.
    fn write_failed(&self, err: StoreError) -> StoreError {
        if matches!(err, StoreError::Full | StoreError::Failed(_)) {
            self.broken.store(true, Ordering::SeqCst);
        }
        err
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The error for something unreadable in the file.
    fn damaged(&self, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Damaged {
            path: self.path.clone(),
            detail: detail.to_string(),
        }
    }
}

impl Drop for EmbeddedStore {
    /// A clean close folds the journal into redb, so the next start has nothing to replay.
    fn drop(&mut self) {
        if self.broken.load(Ordering::SeqCst) {
            return;
        }
        let Some(db) = lock(&self.db).clone() else {
            return;
        };
        let mut wal = lock(&self.wal);
        if !wal.is_empty() {
            self.fold_journal(&db, &mut wal);
        }
    }
}

impl Store for EmbeddedStore {
    fn append(&self, records: &[Record]) -> Result<Vec<u64>, StoreError> {
        self.append_group(records)
    }

    fn read(
        &self,
        conversation: &str,
        anchor: Option<Anchor>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        if self.waiting(Some(conversation)) {
            self.flush_pending(&*self.db()?)?;
        }
        let txn = self.db()?.begin_read().map_err(failed)?;
        let chunks = txn.open_table(CHUNKS).map_err(failed)?;
        // The ids wanted, inclusive (ids start at 1).
        let (low, high, newest_first) = match anchor {
            None => (1, u64::MAX, true),
            Some(Anchor::Before(id)) => (1, id.saturating_sub(1), true),
            Some(Anchor::After(id)) => (id.saturating_add(1), u64::MAX, false),
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        let mut more = false;
        // Takes one message; false once the page is full (and one more exists).
        let mut take = |id: u64, bytes: &[u8]| -> Result<bool, StoreError> {
            if out.len() == limit {
                more = true;
                return Ok(false);
            }
            let record = Record::decode(bytes).map_err(|e| self.damaged(e))?;
            out.push(Stored { id, record });
            Ok(true)
        };
        if low <= high && newest_first {
            'chunks: for entry in chunks
                .range((conversation, 0)..=(conversation, high))
                .map_err(failed)?
                .rev()
            {
                let (key, value) = entry.map_err(failed)?;
                let inside = chunk::entries(key.value().1, value.value())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| self.damaged(e))?;
                for (id, bytes) in inside.into_iter().rev().filter(|(id, _)| *id <= high) {
                    if !take(id, bytes)? {
                        break 'chunks;
                    }
                }
            }
            out.reverse();
        } else if low <= high {
            // From the chunk that holds `low` (the last one starting at or before it).
            let start = chunks
                .range((conversation, 0)..=(conversation, low))
                .map_err(failed)?
                .next_back()
                .transpose()
                .map_err(failed)?
                .map_or(low, |(key, _)| key.value().1);
            'chunks: for entry in chunks
                .range((conversation, start)..=(conversation, high))
                .map_err(failed)?
            {
                let (key, value) = entry.map_err(failed)?;
                for item in chunk::entries(key.value().1, value.value()) {
                    let (id, bytes) = item.map_err(|e| self.damaged(e))?;
                    if id < low {
                        continue;
                    }
                    if id > high || !take(id, bytes)? {
                        break 'chunks;
                    }
                }
            }
        }
        Ok(Page {
            messages: out,
            more,
        })
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        // Counted where they are, without writing anything (a scrape of /metrics must not
        // wait for a transaction): redb, then the room messages waiting in memory. Messages a
        // flush is moving at that moment may be missed once.
        let txn = self.db()?.begin_read().map_err(failed)?;
        let (waiting, waiting_rooms) = {
            let pending = lock(&self.pending);
            (
                pending.count(),
                pending.rooms().map(str::to_owned).collect::<Vec<_>>(),
            )
        };
        let chunks = txn.open_table(CHUNKS).map_err(failed)?;
        let last_ids = txn.open_table(LAST_IDS).map_err(failed)?;
        // A conversation holds every id from its first chunk's to its last id.
        let mut messages = 0;
        for entry in last_ids.iter().map_err(failed)? {
            let (conversation, last) = entry.map_err(failed)?;
            let conversation = conversation.value();
            let first = chunks
                .range((conversation, 0)..=(conversation, u64::MAX))
                .map_err(failed)?
                .next()
                .transpose()
                .map_err(failed)?;
            if let Some((key, _)) = first {
                messages += (last.value() + 1).saturating_sub(key.value().1);
            }
        }
        messages += waiting;
        let mut conversations = last_ids.len().map_err(failed)?;
        for room in &waiting_rooms {
            if last_ids.get(room.as_str()).map_err(failed)?.is_none() {
                conversations += 1;
            }
        }
        let bytes = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        Ok(StoreStats {
            messages,
            conversations,
            bytes,
        })
    }

    fn join(&self, user: &str, room: &str) -> Result<u64, StoreError> {
        let user = name_key(user);
        self.write(|txn| {
            let last = txn
                .open_table(LAST_IDS)
                .map_err(failed)?
                .get(room)
                .map_err(failed)?
                .map_or(0, |v| v.value());
            txn.open_table(RESUME)
                .map_err(failed)?
                .insert((user.as_str(), room), last)
                .map_err(failed)?;
            Ok(last)
        })
    }

    fn leave(&self, user: &str, room: &str) -> Result<(), StoreError> {
        let user = name_key(user);
        self.write(|txn| {
            txn.open_table(RESUME)
                .map_err(failed)?
                .remove((user.as_str(), room))
                .map_err(failed)?;
            Ok(())
        })
    }

    fn resume_points(&self, user: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let user = name_key(user);
        let txn = self.db()?.begin_read().map_err(failed)?;
        let resume = txn.open_table(RESUME).map_err(failed)?;
        let mut points = Vec::new();
        for entry in resume
            .range::<(&str, &str)>((user.as_str(), "")..)
            .map_err(failed)?
        {
            let (key, value) = entry.map_err(failed)?;
            let (owner, conversation) = key.value();
            if owner != user {
                break;
            }
            points.push((conversation.to_owned(), value.value()));
        }
        Ok(points)
    }

    fn reserve(&self, name: &str) -> Result<(), StoreError> {
        let name = name_key(name);
        self.write(|txn| {
            let mut names = txn.open_table(NAMES).map_err(failed)?;
            if names.get(name.as_str()).map_err(failed)?.is_none() {
                let now = chrono::Utc::now().timestamp_millis().max(0) as u64;
                names.insert(name.as_str(), now).map_err(failed)?;
            }
            Ok(())
        })
    }

    fn reserved(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.db()?.begin_read().map_err(failed)?;
        let names = txn.open_table(NAMES).map_err(failed)?;
        let mut out = Vec::new();
        for entry in names.iter().map_err(failed)? {
            out.push(entry.map_err(failed)?.0.value().to_owned());
        }
        Ok(out)
    }

    fn put_key(&self, name: &str, bundle: &str) -> Result<(), StoreError> {
        let name = name_key(name);
        self.write(|txn| {
            txn.open_table(KEYS)
                .map_err(failed)?
                .insert(name.as_str(), bundle)
                .map_err(failed)?;
            Ok(())
        })
    }

    fn remove_key(&self, name: &str) -> Result<(), StoreError> {
        let name = name_key(name);
        self.write(|txn| {
            txn.open_table(KEYS)
                .map_err(failed)?
                .remove(name.as_str())
                .map_err(failed)?;
            Ok(())
        })
    }

    fn keys(&self) -> Result<Vec<(String, String)>, StoreError> {
        let txn = self.db()?.begin_read().map_err(failed)?;
        let keys = txn.open_table(KEYS).map_err(failed)?;
        let mut out = Vec::new();
        for entry in keys.iter().map_err(failed)? {
            let (name, bundle) = entry.map_err(failed)?;
            out.push((name.value().to_owned(), bundle.value().to_owned()));
        }
        Ok(out)
    }

    fn prune(&self, before_ms: i64, keep: u64, budget: usize) -> Result<u64, StoreError> {
        self.write(|txn| {
            let conversations: Vec<(String, u64)> = {
                let last_ids = txn.open_table(LAST_IDS).map_err(failed)?;
                let mut all = Vec::new();
                for entry in last_ids.iter().map_err(failed)? {
                    let (conversation, last) = entry.map_err(failed)?;
                    all.push((conversation.value().to_owned(), last.value()));
                }
                all
            };
            let mut chunks = txn.open_table(CHUNKS).map_err(failed)?;
            let mut deleted = 0u64;
            for (conversation, last) in conversations {
                let room = budget.saturating_sub(deleted as usize);
                if room == 0 {
                    break;
                }
                // Over the count, or too old: oldest first, so stop at the first one kept.
                let over = last.saturating_sub(keep);
                let doomed = |id: u64, bytes: &[u8]| {
                    id <= over || Record::time_of(bytes).is_some_and(|t| t < before_ms)
                };
                let key = conversation.as_str();
                // Whole chunks that go, and the one cut in two (its old first id, what stays).
                let mut gone = Vec::new();
                let mut cut = None;
                let mut count = 0;
                for entry in chunks.range((key, 0)..=(key, u64::MAX)).map_err(failed)? {
                    let (k, v) = entry.map_err(failed)?;
                    let first = k.value().1;
                    let mut kept: Option<Chunk> = None;
                    for item in chunk::entries(first, v.value()) {
                        let (id, bytes) = item.map_err(|e| self.damaged(e))?;
                        match &mut kept {
                            Some(kept) => kept.push(bytes),
                            None if count < room && doomed(id, bytes) => count += 1,
                            None => {
                                let mut rest = Chunk::starting_at(id);
                                rest.push(bytes);
                                kept = Some(rest);
                            }
                        }
                    }
                    match kept {
                        None => gone.push(first),
                        Some(rest) => {
                            if rest.first() != first {
                                cut = Some((first, rest));
                            }
                            break;
                        }
                    }
                }
                for first in gone {
                    chunks.remove((key, first)).map_err(failed)?;
                }
                if let Some((first, rest)) = cut {
                    chunks.remove((key, first)).map_err(failed)?;
                    chunks
                        .insert((key, rest.first()), rest.value())
                        .map_err(failed)?;
                }
                deleted += count as u64;
            }
            Ok(deleted)
        })
    }

    fn unread_direct(&self, user: &str) -> Result<u64, StoreError> {
        let points = self.resume_points(user)?;
        let txn = self.db()?.begin_read().map_err(failed)?;
        let last_ids = txn.open_table(LAST_IDS).map_err(failed)?;
        let mut waiting = 0;
        for (conversation, seen) in points.iter().filter(|(c, _)| !c.starts_with('#')) {
            let last = last_ids
                .get(conversation.as_str())
                .map_err(failed)?
                .map_or(0, |v| v.value());
            waiting += last.saturating_sub(*seen);
        }
        Ok(waiting)
    }

    fn settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        let txn = self.db()?.begin_read().map_err(failed)?;
        let table = txn.open_table(SETTINGS).map_err(failed)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(failed)? {
            let (key, value) = entry.map_err(failed)?;
            out.push((key.value().to_owned(), value.value().to_owned()));
        }
        Ok(out)
    }

    fn put_setting(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut table = txn.open_table(SETTINGS).map_err(failed)?;
            match value {
                Some(value) => table.insert(key, value).map_err(failed)?,
                None => table.remove(key).map_err(failed)?,
            };
            Ok(())
        })
    }

    fn checkpoint(&self) -> Result<(), StoreError> {
        let db = self.db()?;
        let mut wal = lock(&self.wal);
        if !wal.is_empty() {
            self.durable_commit(&db)?;
            wal.empty().map_err(io_failed)?;
        }
        Ok(())
    }

    fn partners(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let user = name_key(user);
        let txn = self.db()?.begin_read().map_err(failed)?;
        let last_ids = txn.open_table(LAST_IDS).map_err(failed)?;
        let mut partners = Vec::new();
        for entry in last_ids.iter().map_err(failed)? {
            let (conversation, _) = entry.map_err(failed)?;
            // Direct conversations are "a b" (name keys, ordered); rooms start with '#'.
            if let Some((a, b)) = conversation.value().split_once(' ') {
                if a == user {
                    partners.push(b.to_owned());
                } else if b == user {
                    partners.push(a.to_owned());
                }
            }
        }
        Ok(partners)
    }

    fn set_resume_points(&self, user: &str, points: &[(String, u64)]) -> Result<(), StoreError> {
        let user = name_key(user);
        self.write(|txn| {
            let mut resume = txn.open_table(RESUME).map_err(failed)?;
            for (conversation, id) in points {
                let key = (user.as_str(), conversation.as_str());
                // Only forward: a person's sessions leave in any order, and the one that got
                // furthest decides (what another device missed is in the history).
                let known = resume.get(key).map_err(failed)?.map(|v| v.value());
                if known.is_some_and(|known| *id > known) {
                    resume.insert(key, *id).map_err(failed)?;
                }
            }
            Ok(())
        })
    }
}

impl EmbeddedStore {
    /// [`Store::append`]: the group goes to the journal in one write (and sync); then its
    /// direct messages go into redb in one non-durable commit and its room messages wait in
    /// memory ([`Pending`]); a checkpoint folds the journal into redb when due (see
    /// [`super::wal`]). A journal that cannot be written (a full disk) refuses the group and
    /// leaves everything as it was; only a failure inside redb makes it reopen.
    fn append_group(&self, records: &[Record]) -> Result<Vec<u64>, StoreError> {
        let db = self.db()?;
        let mut ids = Vec::with_capacity(records.len());
        let mut known = lock(&self.last_ids);
        let mut wal = lock(&self.wal);
        let mut updated: HashMap<String, u64> = HashMap::new();
        let mut frame = Frame::default();
        // Room messages wait in memory once journaled ([`Pending`]); only a group with direct
        // messages needs a redb transaction now.
        let mut rooms: Vec<(usize, u64, std::ops::Range<usize>)> = Vec::new();
        let mut room_bytes = Vec::new();
        let mut txn = None;
        if records.iter().any(|r| r.kind != Kind::Room) {
            let mut write = db.begin_write().map_err(failed)?;
            write
                .set_durability(Durability::None)
                .map_err(|e| StoreError::Failed(e.to_string()))?;
            txn = Some(write);
        }
        {
            let mut tables = txn.as_ref().map(Tables::open).transpose()?;
            let mut bytes = Vec::new();
            for (at, record) in records.iter().enumerate() {
                let conversation = record.conversation();
                let conversation = conversation.as_ref();
                let last = match updated.get(conversation).or(known.get(conversation)) {
                    Some(&last) => last,
                    None => stored_last_id(&db, tables.as_ref(), conversation)?,
                };
                let id = last + 1;
                bytes.clear();
                record.encode_into(&mut bytes);
                match tables.as_mut().filter(|_| record.kind != Kind::Room) {
                    Some(tables) => tables.insert(record, conversation, id, &bytes)?,
                    None => {
                        let from = room_bytes.len();
                        room_bytes.extend_from_slice(&bytes);
                        rooms.push((at, id, from..room_bytes.len()));
                    }
                }
                frame.push(conversation, id, record.keep_for_recipient, &bytes);
                match updated.get_mut(conversation) {
                    Some(last) => *last = id,
                    None => {
                        updated.insert(conversation.to_owned(), id);
                    }
                }
                ids.push(id);
            }
            // Rooms' last ids go to redb with their messages, when those are flushed.
            if let Some(tables) = tables {
                tables.finish()?;
            }
        }
        // Journaled first: if that fails, the transaction is dropped (nothing committed).
        let before = wal.len();
        wal.append(frame).map_err(io_failed)?;
        if let Some(txn) = txn {
            if let Err(err) = txn.commit() {
                wal.undo_to(before);
                return Err(self.write_failed(failed(err)));
            }
        }
        known.extend(updated);
        {
            let mut pending = lock(&self.pending);
            for (at, id, range) in rooms {
                pending.add(&records[at].to, id, &room_bytes[range]);
            }
        }
        if wal.checkpoint_due() {
            self.fold_journal(&db, &mut wal);
        }
        Ok(ids)
    }

    /// Writes the room messages waiting in memory (if any) into redb, in one transaction that
    /// is not made durable (the journal has them until the next checkpoint).
    fn flush_pending(&self, db: &Database) -> Result<(), StoreError> {
        if !self.waiting(None) {
            return Ok(());
        }
        let mut txn = db.begin_write().map_err(failed)?;
        txn.set_durability(Durability::None)
            .map_err(|e| StoreError::Failed(e.to_string()))?;
        self.commit_with_pending(txn, |_| Ok(()))
    }

    /// Whether room messages wait in memory (of `room`, or of any room): once a flush in
    /// progress has committed, so a reader never looks between the two.
    fn waiting(&self, room: Option<&str>) -> bool {
        let _flushing = lock(&self.flushing);
        let pending = lock(&self.pending);
        room.map_or(!pending.is_empty(), |room| pending.holds(room))
    }

    /// One durable redb commit of everything so far, the room messages waiting included. They
    /// go in first with a commit that does not sync, so readers waiting for them do not wait
    /// for the disk too; the durable commit then takes nothing new (appends hold the journal,
    /// as the callers do).
    fn durable_commit(&self, db: &Database) -> Result<(), StoreError> {
        self.flush_pending(db)?;
        let txn = db.begin_write().map_err(failed)?;
        self.commit_with_pending(txn, |_| Ok(()))
    }

    /// Writes the room messages waiting in memory into `txn` first (whatever `work` reads, it
    /// sees them), then runs `work` and commits. Readers asking for waiting messages wait for
    /// the commit; if it fails, the next use reopens the database and replays the journal,
    /// which holds them.
    fn commit_with_pending<T>(
        &self,
        txn: redb::WriteTransaction,
        work: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let flushing = lock(&self.flushing);
        let waiting = lock(&self.pending).take();
        let took = !waiting.is_empty();
        let flushing = took.then_some(flushing);
        let result = (|| {
            if took {
                Tables::open(&txn)?.put(waiting)?;
            }
            let value = work(&txn)?;
            txn.commit().map_err(failed)?;
            Ok(value)
        })();
        drop(flushing);
        if took && result.is_err() {
            self.broken.store(true, Ordering::SeqCst);
        }
        result.map_err(|e| self.write_failed(e))
    }

    /// Makes everything committed so far durable in redb and empties the journal. A failure
    /// loses nothing (the journal still holds it all): the database is reopened and the
    /// journal replayed at its next use.
    fn fold_journal(&self, db: &Database, wal: &mut Wal) {
        let durable = self.durable_commit(db);
        match durable.and_then(|()| wal.empty().map_err(io_failed)) {
            Ok(()) => {}
            Err(err) => {
                tracing::warn!(store = %self.path.display(), error = %err,
                    "checkpoint failed; the journal keeps every message until the next one");
                self.broken.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Runs `work` in one write transaction and commits it.
    fn write<T>(
        &self,
        work: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let db = self.db()?;
        // The waiting room messages first, without a sync (see `durable_commit`).
        self.flush_pending(&db)?;
        let txn = db.begin_write().map_err(|e| self.write_failed(failed(e)))?;
        self.commit_with_pending(txn, work)
    }
}

/// The tables a message touches, open in one write transaction, and the chunks this
/// transaction fills: call [`finish`](Self::finish) before committing.
struct Tables<'t> {
    chunks: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    last_ids: redb::Table<'t, &'static str, u64>,
    resume: redb::Table<'t, (&'static str, &'static str), u64>,
    /// The messages inserted, in chunks (built as the waiting room messages are).
    filling: Pending,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            chunks: txn.open_table(CHUNKS).map_err(failed)?,
            last_ids: txn.open_table(LAST_IDS).map_err(failed)?,
            resume: txn.open_table(RESUME).map_err(failed)?,
            filling: Pending::default(),
        })
    }

    /// The last id `conversation` ever had, as committed (0 for a new one).
    fn last_id(&self, conversation: &str) -> Result<u64, StoreError> {
        Ok(self
            .last_ids
            .get(conversation)
            .map_err(failed)?
            .map_or(0, |v| v.value()))
    }

    fn set_last_id(&mut self, conversation: &str, id: u64) -> Result<(), StoreError> {
        self.last_ids.insert(conversation, id).map_err(failed)?;
        Ok(())
    }

    /// Stores `record` (encoded as `bytes`) as message `id` of `conversation`, with the resume
    /// points a message kept for its recipient sets.
    fn insert(
        &mut self,
        record: &Record,
        conversation: &str,
        id: u64,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.filling.add(conversation, id, bytes);
        if record.keep_for_recipient {
            // The recipient catches up from here (a new conversation for them starts with this
            // message); a verified sender has seen everything up to it.
            let recipient = name_key(&record.to);
            let key = (recipient.as_str(), conversation);
            if self.resume.get(key).map_err(failed)?.is_none() {
                self.resume.insert(key, id - 1).map_err(failed)?;
            }
            if record.trust == Trust::Verified {
                let sender = name_key(&record.from);
                let key = (sender.as_str(), conversation);
                let seen = self
                    .resume
                    .get(key)
                    .map_err(failed)?
                    .map_or(0, |v| v.value());
                self.resume.insert(key, seen.max(id)).map_err(failed)?;
            }
        }
        Ok(())
    }

    /// Writes the chunks this transaction filled, with each conversation's last id.
    fn finish(mut self) -> Result<(), StoreError> {
        let filled = self.filling.take();
        self.put(filled)
    }

    /// Writes chunks (as [`Pending::take`] gives them) and each conversation's last id.
    fn put(&mut self, taken: Vec<(String, Vec<Chunk>, u64)>) -> Result<(), StoreError> {
        for (conversation, chunks, last) in taken {
            for chunk in &chunks {
                put_chunk(&mut self.chunks, &conversation, chunk)?;
            }
            self.set_last_id(&conversation, last)?;
        }
        Ok(())
    }
}

/// Writes `chunk` of `conversation`.
fn put_chunk(
    chunks: &mut redb::Table<'_, (&'static str, u64), &'static [u8]>,
    conversation: &str,
    chunk: &Chunk,
) -> Result<(), StoreError> {
    chunks
        .insert((conversation, chunk.first()), chunk.value())
        .map_err(failed)?;
    Ok(())
}

/// The last id `conversation` has in redb: in `tables` when a write transaction is open,
/// else read.
fn stored_last_id(
    db: &Database,
    tables: Option<&Tables<'_>>,
    conversation: &str,
) -> Result<u64, StoreError> {
    if let Some(tables) = tables {
        return tables.last_id(conversation);
    }
    let txn = db.begin_read().map_err(failed)?;
    let last_ids = txn.open_table(LAST_IDS).map_err(failed)?;
    Ok(last_ids
        .get(conversation)
        .map_err(failed)?
        .map_or(0, |v| v.value()))
}

/// Format 1 kept a row per message: puts them into chunks and drops the old table, in `txn`.
fn convert_from_v1(txn: &redb::WriteTransaction, path: &Path) -> Result<(), StoreError> {
    let mut moved = 0u64;
    {
        let old = txn.open_table(MESSAGES_V1).map_err(failed)?;
        let mut chunks = txn.open_table(CHUNKS).map_err(failed)?;
        let mut filling: Option<(String, Chunk)> = None;
        for entry in old.iter().map_err(failed)? {
            let (key, value) = entry.map_err(failed)?;
            let (conversation, id) = key.value();
            match &mut filling {
                Some((same, chunk))
                    if same == conversation && chunk.next_id() == id && !chunk.is_full() =>
                {
                    chunk.push(value.value());
                }
                _ => {
                    if let Some((done, chunk)) = filling.take() {
                        put_chunk(&mut chunks, &done, &chunk)?;
                    }
                    let mut chunk = Chunk::starting_at(id);
                    chunk.push(value.value());
                    filling = Some((conversation.to_owned(), chunk));
                }
            }
            moved += 1;
        }
        if let Some((done, chunk)) = filling {
            put_chunk(&mut chunks, &done, &chunk)?;
        }
    }
    txn.delete_table(MESSAGES_V1).map_err(failed)?;
    tracing::info!(store = %path.display(), messages = moved,
        "message store converted from format 1 (a row per message) to {FORMAT} (chunks)");
    Ok(())
}

/// Puts the journal's messages that redb does not hold back into it, in one commit of
/// `durability`; returns how many. `journal` names the file in errors.
fn replay(
    db: &Database,
    entries: Vec<Entry>,
    journal: &Path,
    durability: Durability,
) -> Result<usize, StoreError> {
    if entries.is_empty() {
        return Ok(0);
    }
    let damaged = |detail: String| StoreError::Damaged {
        path: journal.to_owned(),
        detail,
    };
    let mut txn = db.begin_write().map_err(failed)?;
    txn.set_durability(durability)
        .map_err(|e| StoreError::Failed(e.to_string()))?;
    let mut replayed = 0;
    {
        let mut tables = Tables::open(&txn)?;
        for entry in entries {
            let last = tables.last_id(&entry.conversation)?;
            if entry.id <= last {
                continue;
            }
            if entry.id != last + 1 {
                return Err(damaged(format!(
                    "message {} of {} follows {last}: messages are missing",
                    entry.id, entry.conversation
                )));
            }
            let mut record = Record::decode(&entry.record).map_err(|e| {
                damaged(format!(
                    "message {} of {}: {e}",
                    entry.id, entry.conversation
                ))
            })?;
            record.keep_for_recipient = entry.keep_for_recipient;
            tables.insert(&record, &entry.conversation, entry.id, &entry.record)?;
            tables.set_last_id(&entry.conversation, entry.id)?;
            replayed += 1;
        }
        tables.finish()?;
    }
    txn.commit().map_err(failed)?;
    Ok(replayed)
}

/// Opens the journal beside the store at `path` and replays it into `db`.
fn recover(db: &Database, path: &Path, fsync: Fsync) -> Result<Wal, StoreError> {
    let journal = Wal::path_for(path);
    let (mut wal, entries) =
        Wal::open(&journal, fsync == Fsync::Always).map_err(|e| wal_error(&journal, e))?;
    let replayed = replay(db, entries, &journal, Durability::Immediate)?;
    if replayed > 0 {
        tracing::info!(store = %path.display(), messages = replayed,
            "messages recovered from the journal");
    }
    wal.empty().map_err(|source| StoreError::Open {
        path: journal.clone(),
        source,
    })?;
    Ok(wal)
}

/// A store error from failing to read the journal.
fn wal_error(journal: &Path, err: ReadError) -> StoreError {
    match err {
        ReadError::Io(source) => StoreError::Open {
            path: journal.to_owned(),
            source,
        },
        ReadError::Damaged(at) => StoreError::Damaged {
            path: journal.to_owned(),
            detail: format!("a damaged entry at byte {at}, with more after it"),
        },
    }
}

/// A store error from an I/O error: a full disk is told apart.
fn io_failed(err: io::Error) -> StoreError {
    if err.kind() == io::ErrorKind::StorageFull {
        StoreError::Full
    } else {
        StoreError::Failed(err.to_string())
    }
}

/// Makes the tables of the database at `path` and checks its format.
fn prepare(db: &Database, path: &Path) -> Result<(), StoreError> {
    let damaged = |e: redb::Error| StoreError::Damaged {
        path: path.to_owned(),
        detail: e.to_string(),
    };
    let txn = db.begin_write().map_err(|e| damaged(e.into()))?;
    {
        let mut meta = txn.open_table(META).map_err(|e| damaged(e.into()))?;
        let found = meta
            .get("format")
            .map_err(|e| damaged(e.into()))?
            .map(|v| v.value());
        match found {
            Some(found) if found > FORMAT => {
                return Err(StoreError::Newer {
                    path: path.to_owned(),
                    found,
                    supported: FORMAT,
                })
            }
            Some(FORMAT) => {}
            Some(older) => {
                if older == 1 {
                    convert_from_v1(&txn, path)?;
                }
                meta.insert("format", FORMAT)
                    .map_err(|e| damaged(e.into()))?;
            }
            None => {
                meta.insert("format", FORMAT)
                    .map_err(|e| damaged(e.into()))?;
            }
        }
        txn.open_table(CHUNKS).map_err(|e| damaged(e.into()))?;
        txn.open_table(LAST_IDS).map_err(|e| damaged(e.into()))?;
        txn.open_table(RESUME).map_err(|e| damaged(e.into()))?;
        txn.open_table(NAMES).map_err(|e| damaged(e.into()))?;
        txn.open_table(KEYS).map_err(|e| damaged(e.into()))?;
        txn.open_table(SETTINGS).map_err(|e| damaged(e.into()))?;
    }
    txn.commit().map_err(|e| damaged(e.into()))
}

/// Opens (or makes) the redb database in `path`.
fn open_database(path: &Path, fsync: Fsync) -> Result<Database, StoreError> {
    let file = private_file(path).map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    let backend = SyncPolicy {
        inner: FileBackend::new(file).map_err(|e| database_error(path, e))?,
        fsync,
    };
    redb::Builder::new()
        .create_with_backend(backend)
        .map_err(|e| database_error(path, e))
}

/// A store error from a redb error: a full disk is told apart.
fn failed(err: impl Into<redb::Error>) -> StoreError {
    match err.into() {
        redb::Error::Io(e) if e.kind() == io::ErrorKind::StorageFull => StoreError::Full,
        other => StoreError::Failed(other.to_string()),
    }
}

/// A store error from failing to open the database.
fn database_error(path: &Path, err: DatabaseError) -> StoreError {
    let path = path.to_owned();
    match err {
        DatabaseError::DatabaseAlreadyOpen => StoreError::InUse { path },
        // redb reads the header first: a file of something else is "invalid data".
        DatabaseError::Storage(redb::StorageError::Io(source))
            if source.kind() == io::ErrorKind::InvalidData =>
        {
            StoreError::Damaged {
                path,
                detail: source.to_string(),
            }
        }
        DatabaseError::Storage(redb::StorageError::Io(source)) => StoreError::Open { path, source },
        other => StoreError::Damaged {
            path,
            detail: other.to_string(),
        },
    }
}

/// Makes a folder readable only by this user.
fn private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Opens (or makes, readable only by this user) the store file.
fn private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// redb's file backend, with the sync skipped under [`Fsync::Never`].
#[derive(Debug)]
struct SyncPolicy {
    inner: FileBackend,
    fsync: Fsync,
}

impl StorageBackend for SyncPolicy {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        match self.fsync {
            Fsync::Always => self.inner.sync_data(),
            Fsync::Never => Ok(()),
        }
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

pub mod chunk;
pub mod pending;
#[cfg(test)]
mod tests;
