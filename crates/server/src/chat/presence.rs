//! Who is connected to the other nodes of a cluster, and in which rooms: what `WHO` and
//! `ROOMS` add to this node's own users, and where remote joins, parts and quits come from.
//!
//! Each node publishes one entry per person connected to it ([`Entry`], text form
//! `<trust> <nick> [#room …]`) and refreshes it; an entry not refreshed for the time to live
//! is gone (its node died). `Remote` keeps the other nodes' entries and says what each change
//! means for the rooms (`EVENT JOIN`, `PART` and `QUIT` lines); it does no I/O and takes the time as an argument.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tlschat_proto::names::name_key;
use tlschat_proto::{Event, Trust};

use super::sequencer::Sequencer;
use crate::store::StoreError;
use crate::sync::lock;

/// One person on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name as shown.
    pub nick: String,
    /// Whether it is a certificate's.
    pub trust: Trust,
    /// The rooms they are in (canonical names).
    pub rooms: BTreeSet<String>,
}

impl Entry {
    /// The entry's text: `<trust> <nick> [#room …]`.
    pub fn encode(&self) -> String {
        let mut text = format!("{} {}", self.trust, self.nick);
        for room in &self.rooms {
            text.push(' ');
            text.push_str(room);
        }
        text
    }

    /// Reads [`encode`](Self::encode)'s text.
    pub fn decode(text: &str) -> Option<Self> {
        let mut words = text.split(' ');
        let trust = match words.next()? {
            "verified" => Trust::Verified,
            "unverified" => Trust::Unverified,
            _ => return None,
        };
        let nick = words.next().filter(|n| !n.is_empty())?.to_owned();
        Some(Self {
            nick,
            trust,
            rooms: words
                .filter(|r| r.starts_with('#'))
                .map(str::to_owned)
                .collect(),
        })
    }
}

/// The reason a person on another node is told as gone when their node took them off.
pub const QUIT_DISCONNECTED: &str = "disconnected";

/// The reason when their node stopped refreshing them (it probably died).
pub const QUIT_NODE_LOST: &str = "their server stopped answering";

/// Claims of certless names across the cluster (implemented on the shared store).
pub trait NameClaims: Send + Sync {
    /// Claims `name` (a name key) for a user of this node; true when this node has it.
    ///
    /// # Errors
    ///
    /// The cluster cannot be asked now.
    fn claim(&self, name: &str) -> Result<bool, StoreError>;

    /// Gives up this node's claims of `names`.
    fn release(&self, names: Vec<String>);
}

#[derive(Debug, Clone)]
struct Seen {
    entry: Entry,
    at: Instant,
}

/// The other nodes' people: name key → node → entry.
#[derive(Debug)]
pub(crate) struct Remote {
    people: HashMap<String, BTreeMap<String, Seen>>,
    ttl: Duration,
}

impl Remote {
    /// Empty; entries not refreshed for `ttl` are dropped.
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            people: HashMap::new(),
            ttl,
        }
    }

    /// `node`'s entry for `name` is `entry` now (none: the person left that node), put `age`
    /// ago. Returns what that changes in the rooms.
    pub(crate) fn update(
        &mut self,
        node: &str,
        name: &str,
        entry: Option<Entry>,
        age: Duration,
        now: Instant,
    ) -> Vec<Event> {
        let key = name_key(name);
        let before = self.rooms_of(&key);
        let at = now.checked_sub(age.min(self.ttl)).unwrap_or(now);
        let nodes = self.people.entry(key.clone()).or_default();
        match entry {
            Some(entry) if age < self.ttl => {
                nodes.insert(node.to_owned(), Seen { entry, at });
            }
            _ => {
                nodes.remove(node);
            }
        }
        if nodes.is_empty() {
            self.people.remove(&key);
        }
        self.changes(&key, before, false)
    }

    /// Drops the entries not refreshed for the time to live. Returns what that changes.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Event> {
        let stale: Vec<String> = self
            .people
            .iter()
            .filter(|(_, nodes)| {
                nodes
                    .values()
                    .any(|seen| now.saturating_duration_since(seen.at) >= self.ttl)
            })
            .map(|(key, _)| key.clone())
            .collect();
        let mut changes = Vec::new();
        for key in stale {
            let before = self.rooms_of(&key);
            if let Some(nodes) = self.people.get_mut(&key) {
                nodes.retain(|_, seen| now.saturating_duration_since(seen.at) < self.ttl);
                if nodes.is_empty() {
                    self.people.remove(&key);
                }
            }
            changes.extend(self.changes(&key, before, true));
        }
        changes
    }

    /// People on other nodes.
    pub(crate) fn people(&self) -> usize {
        self.people.len()
    }

    /// The person called `name` as another node has them: their name as shown and trust.
    pub(crate) fn person(&self, name: &str) -> Option<(String, Trust)> {
        let nodes = self.people.get(&name_key(name))?;
        let seen = nodes.values().next()?;
        Some((seen.entry.nick.clone(), seen.entry.trust))
    }

    /// Whether the person called `name` is in `room` on another node.
    pub(crate) fn in_room(&self, name: &str, room: &str) -> bool {
        self.people
            .get(&name_key(name))
            .is_some_and(|nodes| nodes.values().any(|s| s.entry.rooms.contains(room)))
    }

    /// The people in `room` on other nodes (each once).
    pub(crate) fn members(&self, room: &str) -> Vec<(String, Trust)> {
        self.people
            .values()
            .filter_map(|nodes| {
                let seen = nodes.values().find(|s| s.entry.rooms.contains(room))?;
                Some((seen.entry.nick.clone(), seen.entry.trust))
            })
            .collect()
    }

    /// Every room with people on other nodes, with those people's name keys.
    pub(crate) fn rooms(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut rooms: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (key, nodes) in &self.people {
            for seen in nodes.values() {
                for room in &seen.entry.rooms {
                    rooms.entry(room.clone()).or_default().insert(key.clone());
                }
            }
        }
        rooms
    }

    /// The rooms of the person `key` on any other node, and their name and trust.
    fn rooms_of(&self, key: &str) -> Option<(Entry, BTreeSet<String>)> {
        let nodes = self.people.get(key)?;
        let first = nodes.values().next()?.entry.clone();
        let rooms = nodes
            .values()
            .flat_map(|s| s.entry.rooms.iter().cloned())
            .collect();
        Some((first, rooms))
    }

    fn changes(
        &self,
        key: &str,
        before: Option<(Entry, BTreeSet<String>)>,
        lost: bool,
    ) -> Vec<Event> {
        let after = self.rooms_of(key);
        let Some(who) = after
            .as_ref()
            .map(|(e, _)| e.clone())
            .or_else(|| before.as_ref().map(|(e, _)| e.clone()))
        else {
            return Vec::new();
        };
        let (nick, trust) = (who.nick, who.trust);
        let empty = BTreeSet::new();
        let was = before.as_ref().map_or(&empty, |(_, r)| r);
        let is = after.as_ref().map_or(&empty, |(_, r)| r);
        let mut changes: Vec<Event> = is
            .difference(was)
            .map(|room| Event::Join {
                room: room.clone(),
                nick: nick.clone(),
                trust,
            })
            .collect();
        for room in was.difference(is) {
            let (room, nick) = (room.clone(), nick.clone());
            changes.push(match after {
                Some(_) => Event::Part { room, nick, trust },
                None => Event::Quit {
                    room,
                    nick,
                    trust,
                    reason: (if lost {
                        QUIT_NODE_LOST
                    } else {
                        QUIT_DISCONNECTED
                    })
                    .to_owned(),
                },
            });
        }
        changes
    }
}

/// A hub's part in a cluster.
pub struct ClusterLink {
    pub(crate) node: String,
    remote: Mutex<Remote>,
    claims: Arc<dyn NameClaims>,
    /// Each conversation's last id when this node began to follow the others (taken once,
    /// by the sequencer).
    last: Mutex<Vec<(String, u64)>>,
    /// Longest wait for an id another node took and has not stored.
    hole_wait: Duration,
    /// People whose presence changed since it was last taken (name keys).
    pub(crate) touched: Mutex<HashSet<String>>,
    pub(crate) changed: tokio::sync::Notify,
}

impl ClusterLink {
    /// This node (called `node`) in a cluster whose conversations had the `last` ids when it
    /// began to follow them; names are claimed through `claims`; people of other nodes are
    /// forgotten `ttl` after their last refresh; an id another node took is waited for at
    /// most `hole_wait` (`crate::config::CLUSTER_HOLE_WAIT`).
    pub fn new(
        node: String,
        last: Vec<(String, u64)>,
        claims: Arc<dyn NameClaims>,
        ttl: Duration,
        hole_wait: Duration,
    ) -> Self {
        Self {
            node,
            remote: Mutex::new(Remote::new(ttl)),
            claims,
            last: Mutex::new(last),
            hole_wait,
            touched: Mutex::default(),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// The sequencer this node delivers through, starting where following began (once: the
    /// start is handed over).
    pub(crate) fn sequencer<T>(&self) -> Sequencer<T> {
        Sequencer::new(std::mem::take(&mut *lock(&self.last)), self.hole_wait)
    }

    pub(crate) fn remote(&self) -> std::sync::MutexGuard<'_, Remote> {
        lock(&self.remote)
    }

    pub(crate) fn claims(&self) -> &dyn NameClaims {
        self.claims.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(nick: &str, rooms: &[&str]) -> Option<Entry> {
        Some(Entry {
            nick: nick.to_owned(),
            trust: Trust::Verified,
            rooms: rooms.iter().map(|r| (*r).to_owned()).collect(),
        })
    }

    #[test]
    fn an_entry_reads_back_as_written() {
        let e = entry("Bob", &["#a", "#ops"]).unwrap();
        assert_eq!(e.encode(), "verified Bob #a #ops");
        assert_eq!(Entry::decode(&e.encode()), Some(e));
        assert_eq!(
            Entry::decode("unverified carol").map(|e| e.trust),
            Some(Trust::Unverified)
        );
        assert_eq!(Entry::decode("maybe x"), None);
        assert_eq!(Entry::decode("verified"), None);
    }

    #[test]
    fn joins_parts_and_quits_are_told_once_per_person_whatever_their_nodes() {
        let now = Instant::now();
        let ttl = Duration::from_secs(15);
        let mut remote = Remote::new(ttl);
        let zero = Duration::ZERO;
        let joined = remote.update("n2", "bob", entry("Bob", &["#ops"]), zero, now);
        assert_eq!(
            joined,
            [Event::Join {
                room: "#ops".into(),
                nick: "Bob".into(),
                trust: Trust::Verified
            }]
        );
        // The same person in the same room from a second node: nothing new.
        assert!(remote
            .update("n3", "bob", entry("Bob", &["#ops"]), zero, now)
            .is_empty());
        assert_eq!(
            remote.members("#ops"),
            [("Bob".to_owned(), Trust::Verified)]
        );
        assert!(remote.in_room("BOB", "#ops"));
        // Gone from one node, still on the other.
        assert!(remote.update("n2", "bob", None, zero, now).is_empty());
        // Parts the room on the last node: a part, still connected.
        let parted = remote.update("n3", "bob", entry("Bob", &[]), zero, now);
        assert!(matches!(&parted[..], [Event::Part { room, .. }] if room == "#ops"));
        assert_eq!(
            remote.person("bob"),
            Some(("Bob".to_owned(), Trust::Verified))
        );
        remote.update("n3", "bob", entry("Bob", &["#ops"]), zero, now);
        let quit = remote.update("n3", "bob", None, zero, now);
        assert!(matches!(&quit[..], [Event::Quit { reason, .. }] if reason == QUIT_DISCONNECTED));
        assert_eq!(remote.person("bob"), None);
        assert!(remote.rooms().is_empty());
    }

    #[test]
    fn a_node_that_stops_refreshing_loses_its_people_after_the_time_to_live() {
        let start = Instant::now();
        let ttl = Duration::from_secs(15);
        let mut remote = Remote::new(ttl);
        remote.update("n2", "bob", entry("Bob", &["#ops"]), Duration::ZERO, start);
        // Put 10 s before it was read: 5 s left.
        remote.update(
            "n3",
            "carol",
            entry("Carol", &["#ops"]),
            Duration::from_secs(10),
            start,
        );
        assert_eq!(remote.rooms()["#ops"].len(), 2);
        let quits = remote.expire(start + Duration::from_secs(5));
        assert!(matches!(&quits[..],
            [Event::Quit { nick, reason, .. }] if nick == "Carol" && reason == QUIT_NODE_LOST));
        assert!(remote.expire(start + Duration::from_secs(14)).is_empty());
        assert_eq!(remote.expire(start + ttl).len(), 1);
        assert!(remote.person("bob").is_none());
        // An entry older than the time to live is not taken at all.
        assert!(remote
            .update("n2", "dan", entry("Dan", &["#x"]), ttl, start)
            .is_empty());
        assert!(remote.person("dan").is_none());
    }
}
