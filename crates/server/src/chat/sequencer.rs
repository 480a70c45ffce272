//! Delivery in id order when several nodes write one conversation (a cluster).
//!
//! Each node takes ids from the shared store (a compare-and-set per conversation) and then
//! stores its messages; another node may take id 7 after this one took 6 and yet store it
//! first. So a node cannot deliver messages in the order it hears of them: the
//! [`Sequencer`] holds each conversation's messages until every earlier id has come (from this
//! node's commits or from the others'), and lets them out in id order. An id that never comes
//! (a node failed between taking it and storing its message) is waited for at most
//! [`Sequencer::new`]'s `wait`; then it is skipped, and the message after it carries the range
//! skipped, to be told as a gap (the clients fetch it with `HISTORY`, in case it came late).
//!
//! No I/O and no clock: time is passed in.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// A message let out, in its conversation's order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Ready<T> {
    /// Its id.
    pub(crate) id: u64,
    /// What was offered with it.
    pub(crate) item: T,
    /// Ids skipped just before it (first, last): waited for too long.
    pub(crate) skipped: Option<(u64, u64)>,
}

/// Holds messages until their turn; see the module documentation.
#[derive(Debug)]
pub(crate) struct Sequencer<T> {
    /// Conversation → the next id to let out (1 for a conversation never seen).
    next: HashMap<String, u64>,
    /// Conversations with messages waiting for an earlier id.
    held: HashMap<String, Held<T>>,
    wait: Duration,
    /// Messages that came after their turn had passed (skipped as missing, or duplicates).
    late: u64,
}

#[derive(Debug)]
struct Held<T> {
    items: BTreeMap<u64, T>,
    /// Since when the earliest missing id has been waited for.
    since: Instant,
}

impl<T> Sequencer<T> {
    /// A sequencer where each conversation of `last` has had its ids up to the one given let
    /// out already (what was stored before this node began to follow the others), and every
    /// other conversation starts at 1. A missing id is waited for at most `wait`.
    pub(crate) fn new(last: impl IntoIterator<Item = (String, u64)>, wait: Duration) -> Self {
        Self {
            next: last.into_iter().map(|(c, id)| (c, id + 1)).collect(),
            held: HashMap::new(),
            wait,
            late: 0,
        }
    }

    /// The next id of `conversation` to be let out: everything before it was.
    pub(crate) fn next(&self, conversation: &str) -> u64 {
        self.next.get(conversation).copied().unwrap_or(1)
    }

    /// Messages waiting for an earlier id.
    pub(crate) fn held(&self) -> usize {
        self.held.values().map(|h| h.items.len()).sum()
    }

    /// Whether any message waits for an earlier id.
    pub(crate) fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Messages that came after their turn (dropped).
    #[cfg(test)]
    pub(crate) fn late(&self) -> u64 {
        self.late
    }

    /// Message `id` of `conversation` came: appends to `out` what may now be let out, in
    /// order (this one, when its turn has come, and those held behind it).
    pub(crate) fn offer(
        &mut self,
        conversation: &str,
        id: u64,
        item: T,
        now: Instant,
        out: &mut Vec<Ready<T>>,
    ) {
        let next = self.next(conversation);
        if id < next {
            self.late += 1;
            return;
        }
        if id > next {
            let held = self
                .held
                .entry(conversation.to_owned())
                .or_insert_with(|| Held {
                    items: BTreeMap::new(),
                    since: now,
                });
            held.items.insert(id, item);
            return;
        }
        out.push(Ready {
            id,
            item,
            skipped: None,
        });
        self.set_next(conversation, id + 1);
        self.release(conversation, now, out);
    }

    /// Skips every missing id waited for longer than the wait: appends what that lets out.
    pub(crate) fn expire(&mut self, now: Instant, out: &mut Vec<Ready<T>>) {
        let due: Vec<String> = self
            .held
            .iter()
            .filter(|(_, held)| now.saturating_duration_since(held.since) >= self.wait)
            .map(|(conversation, _)| conversation.clone())
            .collect();
        for conversation in due {
            let next = self.next(&conversation);
            let Some(held) = self.held.get_mut(&conversation) else {
                continue;
            };
            let Some((id, item)) = held.items.pop_first() else {
                self.held.remove(&conversation);
                continue;
            };
            out.push(Ready {
                id,
                item,
                skipped: Some((next, id - 1)),
            });
            self.set_next(&conversation, id + 1);
            self.release(&conversation, now, out);
        }
    }

    fn set_next(&mut self, conversation: &str, next: u64) {
        match self.next.get_mut(conversation) {
            Some(slot) => *slot = next,
            None => {
                self.next.insert(conversation.to_owned(), next);
            }
        }
    }

    /// Lets out the held messages of `conversation` that are now in turn; the wait for the
    /// next missing one starts now.
    fn release(&mut self, conversation: &str, now: Instant, out: &mut Vec<Ready<T>>) {
        let Some(held) = self.held.get_mut(conversation) else {
            return;
        };
        let mut next = self.next.get(conversation).copied().unwrap_or(1);
        // Duplicates of what was let out are late.
        while held
            .items
            .first_key_value()
            .is_some_and(|(&id, _)| id < next)
        {
            held.items.pop_first();
            self.late += 1;
        }
        while let Some(item) = held.items.remove(&next) {
            out.push(Ready {
                id: next,
                item,
                skipped: None,
            });
            next += 1;
        }
        held.since = now;
        let empty = held.items.is_empty();
        if empty {
            self.held.remove(conversation);
        }
        self.set_next(conversation, next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(1);

    fn ids<T>(out: &[Ready<T>]) -> Vec<u64> {
        out.iter().map(|r| r.id).collect()
    }

    #[test]
    fn messages_are_let_out_in_id_order_whatever_order_they_come_in() {
        let now = Instant::now();
        let mut seq = Sequencer::new([("#a".to_owned(), 4)], WAIT);
        let mut out = Vec::new();
        seq.offer("#a", 6, "six", now, &mut out);
        seq.offer("#a", 7, "seven", now, &mut out);
        assert!(out.is_empty());
        assert!(seq.holding());
        seq.offer("#a", 5, "five", now, &mut out);
        assert_eq!(ids(&out), [5, 6, 7]);
        assert_eq!(out[1].item, "six");
        assert!(!seq.holding());
        assert_eq!(seq.next("#a"), 8);
        // A conversation never seen starts at 1.
        out.clear();
        seq.offer("a b", 1, "x", now, &mut out);
        assert_eq!(ids(&out), [1]);
    }

    #[test]
    fn what_comes_after_its_turn_is_dropped_and_counted() {
        let now = Instant::now();
        let mut seq = Sequencer::new([("#a".to_owned(), 4)], WAIT);
        let mut out = Vec::new();
        seq.offer("#a", 3, "old", now, &mut out);
        seq.offer("#a", 5, "five", now, &mut out);
        seq.offer("#a", 5, "again", now, &mut out);
        assert_eq!(ids(&out), [5]);
        assert_eq!(seq.late(), 2);
    }

    #[test]
    fn a_missing_id_is_skipped_after_the_wait_and_told_with_the_next_message() {
        let start = Instant::now();
        let wait = Duration::from_secs(1);
        let mut seq = Sequencer::new([("#a".to_owned(), 1)], wait);
        let mut out = Vec::new();
        seq.offer("#a", 4, "four", start, &mut out);
        seq.offer("#a", 5, "five", start, &mut out);
        seq.expire(start + wait / 2, &mut out);
        assert!(out.is_empty(), "not yet");
        seq.expire(start + wait, &mut out);
        assert_eq!(ids(&out), [4, 5]);
        assert_eq!(out[0].skipped, Some((2, 3)));
        assert_eq!(out[1].skipped, None);
        assert!(!seq.holding());
        // One of the skipped ids comes late: dropped.
        out.clear();
        seq.offer("#a", 3, "three", start + wait * 2, &mut out);
        assert!(out.is_empty());
        assert_eq!(seq.late(), 1);
    }

    #[test]
    fn the_wait_for_the_next_hole_starts_when_the_previous_one_closed() {
        let start = Instant::now();
        let wait = Duration::from_secs(1);
        let mut seq = Sequencer::new(Vec::new(), wait);
        let mut out = Vec::new();
        seq.offer("#a", 2, "two", start, &mut out);
        seq.offer("#a", 4, "four", start, &mut out);
        let later = start + wait / 2;
        seq.offer("#a", 1, "one", later, &mut out);
        assert_eq!(ids(&out), [1, 2]);
        // 3 is now missing since `later`, not since `start`.
        out.clear();
        seq.expire(start + wait, &mut out);
        assert!(out.is_empty());
        seq.expire(later + wait, &mut out);
        assert_eq!(ids(&out), [4]);
        assert_eq!(out[0].skipped, Some((3, 3)));
    }
}
