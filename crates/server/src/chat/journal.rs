//! Messages through the store: what the commit thread does with a committed message (deliver
//! it, in commit order, and tell the sender its id) and `HISTORY` reads.
//!
//! Room messages and direct messages are only delivered once committed, so nobody ever sees a
//! message that a crash could take back, and `OK <id>` means it is on disk.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tlschat_proto::codec::encode_line;
use tlschat_proto::{Anchor, ErrorCode, Reply, Trust};
use tokio::sync::oneshot;

use super::peer::{encode, Peer};
use super::room::Room;
use super::sequencer::{Ready, Sequencer};
use crate::store::commit::{Answer, Busy, Committer, OnCommit, Work};
use crate::store::{Record, Store, StoreError, Stored};
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
#[derive(Clone)]
pub(crate) enum Delivery {
    /// To every member of the room but the sender (none: another node's message).
    Room {
        room: Arc<Room<Peer>>,
        sender: Option<Arc<Peer>>,
    },
    /// To the recipient's sessions connected when it was sent, and a copy to the sender's
    /// other sessions; `trust` is what the recipient's name rests on, told to the sender in
    /// the reply. No sender: another node's message (`copies` are then all of the sender's
    /// sessions here).
    Direct {
        from: Option<Arc<Peer>>,
        to: Vec<Arc<Peer>>,
        copies: Vec<Arc<Peer>>,
        trust: Trust,
    },
    /// Another node's message for nobody here.
    Nowhere,
}

/// Messages held for id order (a cluster), with where each goes.
type Order = Arc<Mutex<Sequencer<(Record, Delivery)>>>;

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
    /// In a cluster: the order messages are delivered in (see the sequencer).
    order: Option<Order>,
}

impl Journal {
    /// Starts the commit thread over `store`. With `order` (a cluster: other nodes write the
    /// same conversations), messages are delivered in id order, held until every earlier id
    /// has come; `order` then holds the sequencer.
    pub(crate) fn start(
        store: Arc<dyn Store>,
        limits: JournalLimits,
        timer: CommitTimer,
        order: Option<Sequencer<(Record, Delivery)>>,
    ) -> std::io::Result<Self> {
        let failing = Arc::new(AtomicBool::new(false));
        let order = order.map(|s| Arc::new(Mutex::new(s)));
        let deliver = Deliver {
            failing: failing.clone(),
            timer,
            order: order.clone(),
        };
        Ok(Self {
            committer: Committer::new(store.clone(), limits.queue, deliver)?,
            store,
            limits,
            failing,
            order,
        })
    }

    /// Other nodes' messages, each with where it goes here: delivered in id order with this
    /// node's own. Call on the commit thread (in [`apply`](Self::apply)'s work), so they keep
    /// their order with what this node commits.
    pub(crate) fn deliver_remote(&self, messages: Vec<(Stored, Delivery)>) {
        let Some(order) = &self.order else {
            return;
        };
        deliver_in_order(
            order,
            messages
                .into_iter()
                .map(|(stored, delivery)| (stored.id, stored.record, delivery)),
        );
    }

    /// Skips the ids waited for too long and delivers what was held behind them. Call on the
    /// commit thread.
    pub(crate) fn expire_holes(&self) {
        let Some(order) = &self.order else {
            return;
        };
        let mut ready = Vec::new();
        lock(order).expire(Instant::now(), &mut ready);
        deliver_ready(ready);
    }

    /// Messages held for an earlier id (a cluster).
    pub(crate) fn held(&self) -> usize {
        self.order.as_ref().map_or(0, |o| lock(o).held())
    }

    /// Whether messages are held for an earlier id (a cluster).
    pub(crate) fn holding(&self) -> bool {
        self.order.as_ref().is_some_and(|o| lock(o).holding())
    }

    /// In a cluster, the first id of `conversation` not delivered yet: a user who catches up
    /// gets what lies before it from the store, and the rest live.
    pub(crate) fn undelivered(&self, conversation: &str) -> Option<u64> {
        self.order.as_ref().map(|o| lock(o).next(conversation))
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
    order: Option<Order>,
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
        let replies = deliveries
            .iter()
            .zip(ids)
            .map(|(delivery, id)| match delivery {
                Delivery::Direct { trust, .. } => Reply::ok(format!("{id} {trust}")),
                Delivery::Room { .. } | Delivery::Nowhere => Reply::ok(id.to_string()),
            })
            .collect();
        match &self.order {
            None => {
                let items: Vec<Out<'_>> = records
                    .iter()
                    .zip(deliveries)
                    .zip(ids)
                    .map(|((record, delivery), &id)| Out {
                        id,
                        record,
                        delivery,
                        skipped: None,
                    })
                    .collect();
                deliver(&items);
            }
            Some(order) => deliver_in_order(
                order,
                records
                    .iter()
                    .zip(deliveries)
                    .zip(ids)
                    .map(|((record, delivery), &id)| (id, record.clone(), delivery.clone())),
            ),
        }
        replies
    }
}

/// A message to deliver, with the ids skipped just before it (told as a gap).
struct Out<'a> {
    id: u64,
    record: &'a Record,
    delivery: &'a Delivery,
    skipped: Option<(u64, u64)>,
}

/// Offers messages (id, record, where it goes) to the sequencer and delivers what it lets out.
fn deliver_in_order(order: &Order, messages: impl IntoIterator<Item = (u64, Record, Delivery)>) {
    let now = Instant::now();
    let mut ready = Vec::new();
    let mut sequencer = lock(order);
    for (id, record, delivery) in messages {
        let conversation = record.conversation().into_owned();
        sequencer.offer(&conversation, id, (record, delivery), now, &mut ready);
    }
    drop(sequencer);
    deliver_ready(ready);
}

/// Delivers what the sequencer let out.
fn deliver_ready(ready: Vec<Ready<(Record, Delivery)>>) {
    if ready.is_empty() {
        return;
    }
    let items: Vec<Out<'_>> = ready
        .iter()
        .map(|r| Out {
            id: r.id,
            record: &r.item.0,
            delivery: &r.item.1,
            skipped: r.skipped,
        })
        .collect();
    deliver(&items);
}

/// Delivers committed messages, in order. A run of messages from one sender to one room goes
/// out as one buffer shared by every member.
fn deliver(items: &[Out<'_>]) {
    let mut time = TimeText::default();
    let mut at = 0;
    while at < items.len() {
        let item = &items[at];
        if let Some((first, last)) = item.skipped {
            tell_skipped(item, first, last);
        }
        match item.delivery {
            Delivery::Room { room, sender } => {
                let mut end = at;
                let mut lines = Vec::new();
                while end < items.len()
                    && (end == at || items[end].skipped.is_none())
                    && matches!(items[end].delivery, Delivery::Room { room: r, sender: s }
                                if Arc::ptr_eq(r, room) && same_sender(s, sender))
                {
                    let record = items[end].record;
                    record.write_line(items[end].id, time.of(record), &mut lines);
                    end += 1;
                }
                let last = items[end - 1].id;
                lock(&room.state).broadcast_messages(
                    &room.name,
                    item.id,
                    last,
                    &Bytes::from(lines),
                    sender.as_ref().map_or(0, |s| s.id()),
                );
                if let Some(sender) = sender {
                    sender.mark_own(&room.name, last);
                }
                at = end;
            }
            Delivery::Direct {
                from, to, copies, ..
            } => {
                let record = item.record;
                let mut line = Vec::new();
                record.write_line(item.id, time.of(record), &mut line);
                let line = Bytes::from(line);
                for session in to {
                    session.deliver_stored_direct(&record.from, item.id, &line);
                }
                // The sender's other sessions: their side of the conversation is `to`.
                for session in copies {
                    session.deliver_stored_direct(&record.to, item.id, &line);
                }
                if let Some(from) = from {
                    from.mark_own(&record.to, item.id);
                }
                at += 1;
            }
            Delivery::Nowhere => at += 1,
        }
    }
}

/// Whether two room deliveries come from the same sender (or both from other nodes).
fn same_sender(a: &Option<Arc<Peer>>, b: &Option<Arc<Peer>>) -> bool {
    a.as_ref().map(Arc::as_ptr) == b.as_ref().map(Arc::as_ptr)
}

/// Tells those `item` goes to that ids `first..=last` before it were skipped (never came in
/// time): they may fetch them with `HISTORY`.
fn tell_skipped(item: &Out<'_>, first: u64, last: u64) {
    let gap = |target: &str| {
        encode(&tlschat_proto::Event::Gap {
            target: target.to_owned(),
            first,
            last,
        })
    };
    match item.delivery {
        Delivery::Room { room, .. } => {
            let line = gap(&room.name);
            for member in &lock(&room.state).members {
                let _ = member.outbox().push(line.clone());
            }
        }
        Delivery::Direct {
            from, to, copies, ..
        } => {
            let (to_them, to_us) = (gap(&item.record.from), gap(&item.record.to));
            for session in to {
                let _ = session.outbox().push(to_them.clone());
            }
            for session in copies.iter().chain(from) {
                let _ = session.outbox().push(to_us.clone());
            }
        }
        Delivery::Nowhere => {}
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
