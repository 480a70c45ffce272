//! Message history behind one small trait, [`Store`]: append a group of messages in one commit
//! (each gets its id there), read a page of one conversation, report counts. The chat hub only
//! ever talks to the trait; [`embedded`] implements it on one redb file, and a cluster can
//! implement it on a replicated log without the hub changing.
//!
//! - [`record`]: what is stored of a message, its conversation key and its bytes on disk.
//! - [`embedded`]: the default store, one crash-safe file (redb).
//! - [`commit`]: the group-commit thread: everything that arrives while a commit runs goes into
//!   the next one, and replies (`OK <id>`) go out only once their message is committed.
//!
//! # Calling convention
//!
//! Every method may block (on disk or, for a networked store, on the network): call them from
//! the commit thread or a blocking task, never from a connection's task.

pub mod commit;
#[cfg(test)]
pub(crate) mod conformance;
pub mod embedded;
pub mod jetstream;
pub mod record;
pub mod wal;

use std::path::PathBuf;

use tlschat_proto::Anchor;

pub use self::record::{Kind, Record, Stored};

/// Why the store could not do something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file could not be opened or created.
    #[error("cannot open the message store {}: {source}", .path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another process has the file open.
    #[error(
        "the message store {} is in use by another tlschat server (one file, one server)",
        .path.display()
    )]
    InUse {
        /// The file.
        path: PathBuf,
    },
    /// The file is damaged or is not a tlschat store.
    #[error(
        "the message store {} is damaged or is not a tlschat store ({detail}); move it away \
         (a new one is made) or restore it from a backup",
        .path.display()
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong, as the storage engine says it.
        detail: String,
    },
    /// The file was written by a newer tlschat.
    #[error(
        "the message store {} was written by a newer tlschat (store format {found}; this one \
         reads format {supported}); run the newer version",
        .path.display()
    )]
    Newer {
        /// The file.
        path: PathBuf,
        /// Its format.
        found: u64,
        /// The format this build reads and writes.
        supported: u64,
    },
    /// The disk is full: nothing was written.
    #[error("the disk holding the message store is full")]
    Full,
    /// Reading or writing failed.
    #[error("the message store failed: {0}")]
    Failed(String),
}

/// One page of a conversation, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// The messages.
    pub messages: Vec<Stored>,
    /// Whether more messages lie beyond the page in the direction read.
    pub more: bool,
}

/// What a store holds, for `STATS`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Messages held.
    pub messages: u64,
    /// Conversations (rooms and pairs of users) with at least one message.
    pub conversations: u64,
    /// Size of the store on disk, bytes.
    pub bytes: u64,
}

/// Durable message history. See the module documentation for the calling convention.
pub trait Store: Send + Sync + 'static {
    /// Appends `records` in order in one atomic commit and returns their ids: per
    /// conversation, one more than the last id that conversation ever had (never reused, also
    /// across restarts). Nothing is written when it fails.
    fn append(&self, records: &[Record]) -> Result<Vec<u64>, StoreError>;

    /// Up to `limit` messages of `conversation` (see [`Record::conversation`]), oldest first:
    /// the newest ones with no anchor, those before or after an id with one.
    fn read(
        &self,
        conversation: &str,
        anchor: Option<Anchor>,
        limit: usize,
    ) -> Result<Page, StoreError>;

    /// Counts for `STATS`.
    fn stats(&self) -> Result<StoreStats, StoreError>;

    /// `user` (a verified name) joined `room`: a member until [`leave`](Self::leave), across
    /// disconnects and restarts, who has received everything up to now. Returns the room's
    /// last id, where the user's catching up starts.
    fn join(&self, user: &str, room: &str) -> Result<u64, StoreError>;

    /// `user` left `room` (`PART`).
    fn leave(&self, user: &str, room: &str) -> Result<(), StoreError>;

    /// Where `user` resumes: every room they are a member of and every conversation kept for
    /// them (see [`Record::keep_for_recipient`]), each with the last id they received.
    fn resume_points(&self, user: &str) -> Result<Vec<(String, u64)>, StoreError>;

    /// Keeps `name` (seen with a certificate) reserved: nobody else may claim it with `NICK`,
    /// also after a restart.
    fn reserve(&self, name: &str) -> Result<(), StoreError>;

    /// Every reserved name (name keys).
    fn reserved(&self) -> Result<Vec<String>, StoreError>;

    /// Keeps `name`'s published E2E key bundle (hex), replacing an earlier one, so a message
    /// stored before a restart can still be verified after it.
    fn put_key(&self, name: &str, bundle: &str) -> Result<(), StoreError>;

    /// Forgets `name`'s key bundle (its certificate was revoked).
    fn remove_key(&self, name: &str) -> Result<(), StoreError>;

    /// Every kept E2E key bundle, by name key.
    fn keys(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// Deletes, oldest first, messages sent before `before_ms` and, in every conversation, all
    /// but the newest `keep`; at most `budget` in one call. Returns how many it deleted. Ids
    /// are never reused after it.
    fn prune(&self, before_ms: i64, keep: u64, budget: usize) -> Result<u64, StoreError>;

    /// Direct messages waiting for `user`: what lies after their resume point in each of
    /// their direct conversations.
    fn unread_direct(&self, user: &str) -> Result<u64, StoreError>;

    /// The other party of every direct conversation `user` has had (name keys): whom to tell
    /// when `user`'s certificate is revoked.
    fn partners(&self, user: &str) -> Result<Vec<String>, StoreError>;

    /// Every kept setting: room rules (key `#room`) and the server's bans (key `*`), as text.
    fn settings(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// Keeps `value` under `key` (replacing what was there), or forgets the key (`None`).
    fn put_setting(&self, key: &str, value: Option<&str>) -> Result<(), StoreError>;

    /// Makes everything committed so far durable in the store's own files, for a clean stop
    /// (the embedded store folds its journal in; see `wal`). Nothing to do for most stores.
    fn checkpoint(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Records how far `user` has received in each conversation (rooms they are a member of
    /// and their direct conversations; others are ignored). A point only moves forward: the
    /// person's sessions (devices) leave in any order, and the furthest decides.
    fn set_resume_points(&self, user: &str, points: &[(String, u64)]) -> Result<(), StoreError>;
}
