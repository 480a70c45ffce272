//! Group commit: one thread owns every write to the store.
//!
//! Connections [`submit`](Committer::submit) their messages and wait for the answer; the
//! thread takes everything that is waiting, appends it in one commit (one sync to disk for all
//! of it), hands the committed messages and their ids to the [`OnCommit`] callback in order
//! (which delivers them and says what each sender is told), and only then answers. So `OK
//! <id>` means the message is on disk, and the cost of a sync is shared by everything that
//! arrived while the previous one ran: under load, groups grow by themselves; when idle, a
//! message is committed at once, with no timer to wait for.
//!
//! Delivery happens on this thread, in commit order, so every recipient sees a conversation's
//! messages in id order, whichever connections sent them.
//!
//! The queue is bounded ([`Committer::new`]'s `capacity`): a connection has at most one
//! submission waiting, so it is sized from the connection limit, and a full queue is refused
//! at once ([`Busy`]) rather than waited on.

use std::sync::Arc;

use tlschat_proto::Reply;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::{Record, Store, StoreError};

/// Most messages one commit takes: a bound on the time one commit holds the thread.
pub const MAX_GROUP: usize = 4096;

/// What a waiting request gets: event lines to send first (encoded), then its replies.
#[derive(Debug, Default)]
pub struct Answer {
    /// Encoded lines (`EVENT …\r\n`) to send before the replies.
    pub lines: Vec<u8>,
    /// One reply per request, in order.
    pub replies: Vec<Reply>,
}

/// Told what each committed message leads to.
pub trait OnCommit<P>: Send + 'static {
    /// `records` were committed with `ids` (or the commit failed with the error): deliver them
    /// and return one reply per record, in order.
    fn committed(
        &mut self,
        records: &[Record],
        payloads: &[P],
        ids: Result<&[u64], &StoreError>,
    ) -> Vec<Reply>;

    /// The commit (the store's append, with its sync) took `took`.
    fn timed(&mut self, _took: std::time::Duration) {}
}

/// The commit queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// Work for the commit thread other than appending: it runs in queue order, after everything
/// submitted before it is committed and delivered.
pub type Work = Box<dyn FnOnce(&dyn Store) -> Answer + Send>;

enum Job<P> {
    Append {
        records: Vec<Record>,
        payloads: Vec<P>,
        done: oneshot::Sender<Answer>,
    },
    /// Runs after everything queued before it.
    Apply {
        work: Work,
        done: oneshot::Sender<Answer>,
    },
}

/// The handle to the commit thread; the thread ends when every handle is dropped.
pub struct Committer<P> {
    jobs: mpsc::Sender<Job<P>>,
}

impl<P> Clone for Committer<P> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
        }
    }
}

impl<P: Send + 'static> Committer<P> {
    /// Starts the commit thread over `store`, with at most `capacity` submissions waiting.
    pub fn new(
        store: Arc<dyn Store>,
        capacity: usize,
        on_commit: impl OnCommit<P>,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel(capacity.max(1));
        std::thread::Builder::new()
            .name("store-commit".into())
            .spawn(move || run(store.as_ref(), queue, on_commit))?;
        Ok(Self { jobs })
    }

    /// Queues messages for the next commit. The answer comes once they are committed and
    /// delivered, or once the commit failed (then nobody received them).
    pub fn submit(
        &self,
        records: Vec<Record>,
        payloads: Vec<P>,
    ) -> Result<oneshot::Receiver<Answer>, Busy> {
        debug_assert_eq!(records.len(), payloads.len());
        let (done, answer) = oneshot::channel();
        self.jobs
            .try_send(Job::Append {
                records,
                payloads,
                done,
            })
            .map_err(|_| Busy)?;
        Ok(answer)
    }

    /// Queues `work` to run on the commit thread after everything queued before it; refused
    /// at once when the queue is full.
    pub fn apply(&self, work: Work) -> Result<oneshot::Receiver<Answer>, Busy> {
        let (done, answer) = oneshot::channel();
        self.jobs
            .try_send(Job::Apply { work, done })
            .map_err(|_| Busy)?;
        Ok(answer)
    }

    /// Queues `work` like [`apply`](Self::apply), waiting for room in the queue.
    pub async fn apply_waiting(&self, work: Work) -> oneshot::Receiver<Answer> {
        let (done, answer) = oneshot::channel();
        // Only fails once the thread is gone; the answer then never comes.
        let _ = self.jobs.send(Job::Apply { work, done }).await;
        answer
    }

    /// Returns once everything submitted before is committed and delivered.
    pub async fn flush(&self) {
        let _ = self
            .apply_waiting(Box::new(|_| Answer::default()))
            .await
            .await;
    }
}

/// The commit thread's loop.
fn run<P>(store: &dyn Store, mut queue: mpsc::Receiver<Job<P>>, mut on_commit: impl OnCommit<P>) {
    let mut held: Option<Job<P>> = None;
    // Kept from group to group (emptied each time), so a group does not grow them anew.
    let (mut records, mut payloads, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        let Some(first) = held.take().or_else(|| queue.blocking_recv()) else {
            return;
        };
        records.clear();
        payloads.clear();
        let mut after: Option<(Work, oneshot::Sender<Answer>)> = None;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Append {
                    records: r,
                    payloads: p,
                    done,
                } => {
                    if !records.is_empty() && records.len() + r.len() > MAX_GROUP {
                        held = Some(Job::Append {
                            records: r,
                            payloads: p,
                            done,
                        });
                        break;
                    }
                    waiting.push((done, r.len()));
                    records.extend(r);
                    payloads.extend(p);
                }
                // Everything before it is in this group; it runs after the group.
                Job::Apply { work, done } => {
                    after = Some((work, done));
                    break;
                }
            }
            next = queue.try_recv().ok();
        }
        if !records.is_empty() {
            let started = std::time::Instant::now();
            let result = store.append(&records);
            on_commit.timed(started.elapsed());
            if let Err(err) = &result {
                warn!(error = %err, messages = records.len(), "commit failed; messages refused");
            }
            let replies = on_commit.committed(&records, &payloads, result.as_deref());
            let mut replies = replies.into_iter();
            for (done, count) in waiting.drain(..) {
                let _ = done.send(Answer {
                    lines: Vec::new(),
                    replies: replies.by_ref().take(count).collect(),
                });
            }
        }
        if let Some((work, done)) = after {
            let _ = done.send(work(store));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tlschat_proto::{ErrorCode, Trust};

    use super::*;
    use crate::store::{Kind, Page, StoreStats};

    /// A store that records the size of each commit, fails on demand, and waits while `hold`
    /// is held.
    #[derive(Default)]
    struct Counting {
        groups: Mutex<Vec<usize>>,
        fail: std::sync::atomic::AtomicBool,
        hold: Mutex<()>,
    }

    impl Store for Counting {
        fn append(&self, records: &[Record]) -> Result<Vec<u64>, StoreError> {
            drop(self.hold.lock().unwrap());
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::Full);
            }
            let mut groups = self.groups.lock().unwrap();
            let base: usize = groups.iter().sum();
            groups.push(records.len());
            Ok((1..=records.len()).map(|n| (base + n) as u64).collect())
        }
        fn read(
            &self,
            _: &str,
            _: Option<tlschat_proto::Anchor>,
            _: usize,
        ) -> Result<Page, StoreError> {
            Ok(Page::default())
        }
        fn stats(&self) -> Result<StoreStats, StoreError> {
            Ok(StoreStats::default())
        }
        fn join(&self, _: &str, _: &str) -> Result<u64, StoreError> {
            Ok(0)
        }
        fn leave(&self, _: &str, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
        fn resume_points(&self, _: &str) -> Result<Vec<(String, u64)>, StoreError> {
            Ok(Vec::new())
        }
        fn set_resume_points(&self, _: &str, _: &[(String, u64)]) -> Result<(), StoreError> {
            Ok(())
        }
        fn reserve(&self, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
        fn reserved(&self) -> Result<Vec<String>, StoreError> {
            Ok(Vec::new())
        }
        fn put_key(&self, _: &str, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
        fn keys(&self) -> Result<Vec<(String, String)>, StoreError> {
            Ok(Vec::new())
        }
        fn remove_key(&self, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
        fn prune(&self, _: i64, _: u64, _: usize) -> Result<u64, StoreError> {
            Ok(0)
        }
        fn unread_direct(&self, _: &str) -> Result<u64, StoreError> {
            Ok(0)
        }
        fn partners(&self, _: &str) -> Result<Vec<String>, StoreError> {
            Ok(Vec::new())
        }
        fn settings(&self) -> Result<Vec<(String, String)>, StoreError> {
            Ok(Vec::new())
        }
        fn put_setting(&self, _: &str, _: Option<&str>) -> Result<(), StoreError> {
            Ok(())
        }
    }

    struct Replies;

    impl OnCommit<()> for Replies {
        fn committed(
            &mut self,
            _: &[Record],
            _: &[()],
            ids: Result<&[u64], &StoreError>,
        ) -> Vec<Reply> {
            match ids {
                Ok(ids) => ids.iter().map(|id| Reply::ok(id.to_string())).collect(),
                Err(err) => vec![Reply::err(ErrorCode::StoreFailed, err); MAX_GROUP],
            }
        }
    }

    fn record(text: &str) -> Record {
        Record {
            kind: Kind::Room,
            from: "a".into(),
            to: "#r".into(),
            trust: Trust::Verified,
            time_ms: 0,
            text: text.into(),
            keep_for_recipient: false,
        }
    }

    #[tokio::test]
    async fn answers_come_in_order_with_their_ids_and_failures_are_refusals() {
        let store = Arc::new(Counting::default());
        let committer = Committer::new(store.clone(), 16, Replies).unwrap();
        let first = committer
            .submit(vec![record("1"), record("2")], vec![(), ()])
            .unwrap();
        let second = committer.submit(vec![record("3")], vec![()]).unwrap();
        committer.flush().await;
        assert_eq!(
            first.await.unwrap().replies,
            [Reply::ok("1"), Reply::ok("2")]
        );
        assert_eq!(second.await.unwrap().replies, [Reply::ok("3")]);
        store.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        let failed = committer.submit(vec![record("4")], vec![()]).unwrap();
        let replies = failed.await.unwrap().replies;
        assert!(matches!(&replies[..], [Reply::Err(e)] if e.code == ErrorCode::StoreFailed));
        let total: usize = store.groups.lock().unwrap().iter().sum();
        assert_eq!(total, 3, "the failed message was not counted");
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let store = Arc::new(Counting::default());
        let committer = Committer::new(store.clone(), 1, Replies).unwrap();
        let held = store.hold.lock().unwrap();
        // One in the commit thread (stuck), one in the queue: the third has no room.
        let results: Vec<_> = (0..3)
            .map(|n| committer.submit(vec![record(&n.to_string())], vec![()]))
            .collect();
        assert!(
            results.iter().any(|r| matches!(r, Err(Busy))),
            "nothing refused"
        );
        drop(held);
        for answer in results.into_iter().flatten() {
            assert_eq!(answer.await.unwrap().replies.len(), 1);
        }
    }
}
