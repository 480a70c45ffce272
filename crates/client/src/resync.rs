//! Keeping up with a server that stores messages, without I/O: which message events are new
//! (a reconnect may bring some again), which `HISTORY` requests fill an `EVENT GAP`, and which
//! page back for `/history`. The chat client, the TUI and `tlschat listen` share it.

use std::collections::{BTreeSet, HashMap};

use tlschat_proto::names::name_key;
use tlschat_proto::{Anchor, Event, Request, Target};

/// Largest page asked for at once (the server's default cap is 500).
pub const PAGE: u64 = 500;

/// Ids remembered per conversation to recognise repeats.
const REMEMBERED: usize = 4096;

/// What has been shown, per conversation.
#[derive(Debug, Default)]
pub struct Resync {
    seen: HashMap<String, Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// The most recent ids shown.
    ids: BTreeSet<u64>,
    /// The oldest id shown, to page back from.
    oldest: Option<u64>,
}

impl Resync {
    /// A message event arrived for `me`: true when it is new (show it), false for a repeat.
    /// Events that are not messages are always new.
    pub fn admit(&mut self, event: &Event, me: Option<&str>) -> bool {
        let Some((target, id)) = message_key(event, me) else {
            return true;
        };
        let seen = self.seen.entry(target).or_default();
        if !seen.ids.insert(id) {
            return false;
        }
        if seen.ids.len() > REMEMBERED {
            seen.ids.pop_first();
        }
        seen.oldest = Some(seen.oldest.map_or(id, |o| o.min(id)));
        true
    }

    /// The requests that fetch messages `first..=last` of `target` (an `EVENT GAP`), a page
    /// at a time.
    pub fn fill(target: &str, first: u64, last: u64) -> Vec<Request> {
        let Ok(target) = Target::parse(target) else {
            return Vec::new();
        };
        let mut requests = Vec::new();
        let mut after = first.saturating_sub(1);
        while after < last {
            let limit = (last - after).min(PAGE);
            requests.push(Request::History {
                target: target.clone(),
                anchor: Some(Anchor::After(after)),
                limit: Some(limit as u32),
            });
            after += limit;
        }
        requests
    }

    /// The request for the `count` messages of `target` before the oldest shown (the newest,
    /// when none was shown).
    pub fn older(&self, target: &str, count: u64) -> Option<Request> {
        let oldest = self
            .seen
            .get(&conversation(target))
            .and_then(|seen| seen.oldest);
        Some(Request::History {
            target: Target::parse(target).ok()?,
            anchor: oldest.map(Anchor::Before),
            limit: Some(count.clamp(1, PAGE) as u32),
        })
    }
}

/// The conversation and id of a message event, as `me` names the conversation: the room, or
/// the other user.
pub fn message_key(event: &Event, me: Option<&str>) -> Option<(String, u64)> {
    match event {
        Event::Message { room, id, .. } => Some((conversation(room), *id)),
        Event::Direct { id, from, to, .. } | Event::E2e { id, from, to, .. } => {
            let mine = me.is_some_and(|me| name_key(me) == name_key(from));
            Some((conversation(if mine { to } else { from }), *id))
        }
        _ => None,
    }
}

fn conversation(target: &str) -> String {
    name_key(target)
}

#[cfg(test)]
mod tests {
    use tlschat_proto::Trust;

    use super::*;

    fn msg(room: &str, id: u64) -> Event {
        Event::Message {
            room: room.into(),
            id,
            from: "bob".into(),
            trust: Trust::Verified,
            time: "t".into(),
            text: "x".into(),
        }
    }

    fn dm(id: u64, from: &str, to: &str) -> Event {
        Event::Direct {
            id,
            from: from.into(),
            to: to.into(),
            trust: Trust::Verified,
            time: "t".into(),
            text: "x".into(),
        }
    }

    #[test]
    fn repeats_are_recognised_per_conversation_and_other_events_pass() {
        let mut resync = Resync::default();
        assert!(resync.admit(&msg("#a", 5), None));
        assert!(!resync.admit(&msg("#A", 5), None), "a repeat");
        assert!(resync.admit(&msg("#b", 5), None), "another room");
        assert!(resync.admit(&msg("#a", 3), None), "an older one, filled in");
        // Both directions of a conversation are one conversation.
        assert!(resync.admit(&dm(1, "bob", "alice"), Some("alice")));
        assert!(!resync.admit(&dm(1, "alice", "bob"), Some("alice")));
        assert!(resync.admit(&Event::CaughtUp { count: 1 }, None));
        assert_eq!(
            resync.older("#a", 20),
            Some(Request::History {
                target: Target::Room("#a".into()),
                anchor: Some(Anchor::Before(3)),
                limit: Some(20),
            })
        );
        assert_eq!(
            resync.older("#new", 2000),
            Some(Request::History {
                target: Target::Room("#new".into()),
                anchor: None,
                limit: Some(PAGE as u32),
            })
        );
    }

    #[test]
    fn a_gap_is_filled_a_page_at_a_time() {
        let requests = Resync::fill("#a", 11, 1200);
        let anchors: Vec<String> = requests.iter().map(ToString::to_string).collect();
        assert_eq!(
            anchors,
            [
                "HISTORY #a AFTER 10 LIMIT 500",
                "HISTORY #a AFTER 510 LIMIT 500",
                "HISTORY #a AFTER 1010 LIMIT 190",
            ]
        );
        assert_eq!(
            Resync::fill("bob", 4, 4)[0].to_string(),
            "HISTORY bob AFTER 3 LIMIT 1"
        );
        assert!(Resync::fill("not a target!", 1, 2).is_empty());
    }
}
