//! Messages through the store: what the commit thread does with a committed message (deliver
//! it, in commit order, and tell the sender its id) and `HISTORY` reads.
//!
//! Room messages and direct messages are only delivered once committed, so nobody ever sees a
//! message that a crash could take back, and `OK <id>` means it is on disk.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tlschat_proto::codec::encode_line;
use tlschat_proto::{Anchor, ErrorCode, Reply, Trust};
use tokio::sync::oneshot;

use super::peer::Peer;
use super::room::Room;
use crate::store::commit::{Answer, Busy, Committer, OnCommit, Work};
use crate::store::{Record, Store, StoreError};
use crate::sync::lock;

/// What a chat request leads to: replies now, or once the store has answered.
#[derive(Debug)]
pub enum Sent {
    /// The replies, one per message, in order.
    Now(Vec<Reply>),
    /// The answer comes when the messages are committed (or the history is read).
    Later(oneshot::Receiver<Answer>),
}

/// Where a committed message goes.
pub(crate) enum Delivery {
    /// To every member of the room but the sender.
    Room {
        room: Arc<Room<Peer>>,
        sender: Arc<Peer>,
    },
    /// To the recipient's sessions connected when it was sent, and a copy to the sender's
    /// other sessions; `trust` is what the recipient's name rests on, told to the sender in
    /// the reply.
    Direct {
        from: Arc<Peer>,
        to: Vec<Arc<Peer>>,
        copies: Vec<Arc<Peer>>,
        trust: Trust,
    },
}

/// The bounds of the store's use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalLimits {
    /// Submissions waiting for a commit at most (a connection has at most one).
    pub queue: usize,
    /// Most messages one `HISTORY` returns.
    pub page_cap: usize,
    /// Most missed messages sent per conversation when a user comes back.
    pub catch_up: usize,
    /// Most direct messages kept for a user who is away.
    pub offline: usize,
}

/// Told how long each group commit took (for the metrics).
pub type CommitTimer = Arc<dyn Fn(std::time::Duration) + Send + Sync>;

/// The store, its commit thread, and the caps on what is read.
pub(crate) struct Journal {
    committer: Committer<Delivery>,
    store: Arc<dyn Store>,
    limits: JournalLimits,
    /// Set while commits fail (a full disk), cleared by the next that works.
    failing: Arc<AtomicBool>,
}

impl Journal {
    /// Starts the commit thread over `store`.
    pub(crate) fn start(
        store: Arc<dyn Store>,
        limits: JournalLimits,
        timer: CommitTimer,
    ) -> std::io::Result<Self> {
        let failing = Arc::new(AtomicBool::new(false));
        let deliver = Deliver {
            failing: failing.clone(),
            timer,
        };
        Ok(Self {
            committer: Committer::new(store.clone(), limits.queue, deliver)?,
            store,
            limits,
            failing,
        })
    }

    /// Whether the last commit failed (the store cannot write now).
    pub(crate) fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Most missed messages sent per conversation when a user comes back.
    pub(crate) fn catch_up(&self) -> usize {
        self.limits.catch_up
    }

    /// Refuses one more direct message for `user`, who is away, when as many wait as are
    /// kept for them.
    pub(crate) fn check_offline_quota(&self, user: &str) -> Result<(), Reply> {
        match self.store.unread_direct(user) {
            Ok(waiting) if waiting >= self.limits.offline as u64 => Err(Reply::err(
                ErrorCode::InboxFull,
                format!(
                    "{user} is away and has {waiting} direct messages waiting, the most kept; \
                     not sent, try when they are back"
                ),
            )),
            Ok(_) => Ok(()),
            Err(err) => Err(Reply::err(
                ErrorCode::StoreFailed,
                format!("cannot count what waits for {user}: {err}; not sent"),
            )),
        }
    }

    /// Runs `work` on the commit thread after everything queued before it.
    pub(crate) fn apply(&self, work: Work) -> Result<oneshot::Receiver<Answer>, Busy> {
        self.committer.apply(work)
    }

    /// Like [`apply`](Self::apply), waiting for room in the queue.
    pub(crate) async fn apply_waiting(&self, work: Work) -> oneshot::Receiver<Answer> {
        self.committer.apply_waiting(work).await
    }

    /// Queues messages for the next commit.
    pub(crate) fn submit(&self, records: Vec<Record>, deliveries: Vec<Delivery>) -> Sent {
        let count = records.len();
        match self.committer.submit(records, deliveries) {
            Ok(answer) => Sent::Later(answer),
            Err(Busy) => Sent::Now(vec![
                Reply::err(
                    ErrorCode::Busy,
                    "the server is saving more messages than it takes; not sent, try again"
                );
                count
            ]),
        }
    }

    /// Returns once everything submitted so far is committed and delivered.
    pub(crate) async fn flush(&self) {
        self.committer.flush().await;
    }

    /// Runs the store's checkpoint on the commit thread, after everything queued before it.
    pub(crate) async fn checkpoint(&self) {
        let work: Work = Box::new(|store| {
            if let Err(err) = store.checkpoint() {
                tracing::warn!(error = %err, "cannot fold the store's journal in at the stop; the next start will");
            }
            Answer::default()
        });
        let _ = self.committer.apply_waiting(work).await.await;
    }

    /// The store, for counts.
    pub(crate) fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// Reads a page of `conversation` on a blocking thread: its messages as events (as live
    /// ones), then `OK <count> more|end`. `shown` is the target as the caller named it.
    pub(crate) fn history(
        &self,
        conversation: String,
        anchor: Option<Anchor>,
        limit: Option<u32>,
    ) -> Sent {
        let limit = limit
            .map_or(DEFAULT_PAGE, |n| n as usize)
            .min(self.limits.page_cap);
        let store = self.store.clone();
        let (done, answer) = oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let result = store.read(&conversation, anchor, limit);
            let _ = done.send(page_answer(result));
        });
        Sent::Later(answer)
    }
}

impl Journal {
    /// The other parties of `user`'s direct conversations (a read, on the caller's thread).
    pub(crate) fn partners(&self, user: &str) -> Result<Vec<String>, StoreError> {
        self.store.partners(user)
    }
}

/// Messages `HISTORY` returns when no `LIMIT` is given.
pub const DEFAULT_PAGE: usize = 50;

fn page_answer(result: Result<crate::store::Page, StoreError>) -> Answer {
    match result {
        Ok(page) => {
            let mut lines = Vec::new();
            for message in &page.messages {
                encode_line(&message.record.event(message.id).to_string(), &mut lines);
            }
            let more = if page.more { "more" } else { "end" };
            Answer {
                lines,
                replies: vec![Reply::ok(format!("{} {more}", page.messages.len()))],
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "history read failed");
            Answer {
                lines: Vec::new(),
                replies: vec![Reply::err(
                    ErrorCode::StoreFailed,
                    format!("cannot read the history now: {err}"),
                )],
            }
        }
    }
}

/// Delivers committed messages on the commit thread.
struct Deliver {
    failing: Arc<AtomicBool>,
    timer: CommitTimer,
}

impl OnCommit<Delivery> for Deliver {
    fn timed(&mut self, took: std::time::Duration) {
        (self.timer)(took);
    }

    fn committed(
        &mut self,
        records: &[Record],
        deliveries: &[Delivery],
        ids: Result<&[u64], &StoreError>,
    ) -> Vec<Reply> {
        self.failing.store(ids.is_err(), Ordering::Relaxed);
        let ids = match ids {
            Ok(ids) => ids,
            Err(err) => return vec![refusal(err); records.len()],
        };
        let mut replies = Vec::with_capacity(records.len());
        let mut time = TimeText::default();
        let mut at = 0;
        while at < records.len() {
            match &deliveries[at] {
                Delivery::Room { room, sender } => {
                    // A run of messages from one sender to one room: one buffer for everyone.
                    let mut end = at;
                    let mut lines = Vec::new();
                    while end < records.len()
                        && matches!(&deliveries[end], Delivery::Room { room: r, sender: s }
                                    if Arc::ptr_eq(r, room) && Arc::ptr_eq(s, sender))
                    {
                        let record = &records[end];
                        record.write_line(ids[end], time.of(record), &mut lines);
                        replies.push(Reply::ok(ids[end].to_string()));
                        end += 1;
                    }
                    lock(&room.state).broadcast_messages(
                        &room.name,
                        ids[at],
                        ids[end - 1],
                        &Bytes::from(lines),
                        sender.id(),
                    );
                    sender.mark_own(&room.name, ids[end - 1]);
                    at = end;
                }
                Delivery::Direct {
                    from,
                    to,
                    copies,
                    trust,
                } => {
                    let record = &records[at];
                    let mut line = Vec::new();
                    record.write_line(ids[at], time.of(record), &mut line);
                    let line = Bytes::from(line);
                    for session in to {
                        session.deliver_stored_direct(&record.from, ids[at], &line);
                    }
                    // The sender's other sessions: their side of the conversation is `to`.
                    for session in copies {
                        session.deliver_stored_direct(&record.to, ids[at], &line);
                    }
                    from.mark_own(&record.to, ids[at]);
                    replies.push(Reply::ok(format!("{} {trust}", ids[at])));
                    at += 1;
                }
            }
        }
        replies
    }
}

/// A record's time as the protocol writes it, formatted once while records share it (the
/// messages of a batch do).
#[derive(Default)]
struct TimeText {
    ms: Option<i64>,
    text: String,
}

impl TimeText {
    fn of(&mut self, record: &Record) -> &str {
        if self.ms != Some(record.time_ms) {
            self.ms = Some(record.time_ms);
            self.text = record.time_text();
        }
        &self.text
    }
}

/// What a sender is told when the commit of its message failed.
fn refusal(err: &StoreError) -> Reply {
    match err {
        StoreError::Full => Reply::err(
            ErrorCode::StoreFailed,
            "the server's disk is full: your message was not stored and not sent",
        ),
        err => Reply::err(
            ErrorCode::StoreFailed,
            format!("{err}: your message was not stored and not sent"),
        ),
    }
}
