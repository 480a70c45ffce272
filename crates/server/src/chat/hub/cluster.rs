//! The hub as one node of a cluster: what the other nodes store and share comes in here, and
//! what this node's people do goes out as presence.
//!
//! - Other nodes' messages ([`Hub::take_remote`]) are delivered to this node's members and
//!   sessions, in id order with this node's own (the journal's sequencer).
//! - Shared state the store's watches report: reserved names ([`Hub::apply_name`]), published
//!   keys ([`Hub::apply_keys`]), room rules and bans ([`Hub::apply_setting`]), and the other
//!   nodes' presence ([`Hub::apply_presence`]), which `WHO`, `ROOMS`, `JOIN`/`PART`/`QUIT`
//!   events and direct messages to people on other nodes use.
//! - This node's presence: every change marks a person ([`Hub::touched`]); the cluster task
//!   takes the marked ones ([`Hub::take_presence`]) and refreshes them all from time to time.
//!
//! Nothing here does I/O: the cluster task (`crate::cluster`) moves things between the store
//! and these methods.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tlschat_proto::names::name_key;
use tlschat_proto::{DisconnectCode, ErrorCode, Event, Reply, Trust};

use super::{encode, moderation, Hub};
use crate::chat::journal::Delivery;
use crate::chat::peer::Peer;
use crate::chat::presence::{ClusterLink, Entry};
use crate::chat::rules::{decode_server_bans, RoomRules};
use crate::store::commit::Answer;
use crate::store::{Kind, Stored};
use crate::sync::lock;

impl Hub {
    /// The same hub as one node of a cluster. Call before [`with_store`](Self::with_store).
    pub fn in_cluster(mut self, link: ClusterLink) -> Self {
        self.cluster = Some(link);
        self
    }

    /// In a cluster: people on the other nodes, and messages held for an earlier id.
    pub fn cluster_counts(&self) -> Option<(usize, usize)> {
        let link = self.cluster.as_ref()?;
        let people = link.remote().people();
        let held = self.journal.as_ref().map_or(0, |j| j.held());
        Some((people, held))
    }

    /// Delivers messages other nodes stored to the members and sessions here, in id order
    /// with this node's own (on the commit thread); returns once they are.
    pub async fn take_remote(self: &Arc<Self>, messages: Vec<Stored>) {
        let Some(journal) = &self.journal else {
            return;
        };
        let hub = self.clone();
        let work = Box::new(move |_: &dyn crate::store::Store| {
            let items = messages
                .into_iter()
                .map(|stored| {
                    let delivery = hub.remote_delivery(&stored);
                    (stored, delivery)
                })
                .collect();
            if let Some(journal) = &hub.journal {
                journal.deliver_remote(items);
            }
            Answer::default()
        });
        // Waited for: the feed takes the next batch once this one is delivered.
        let _ = journal.apply_waiting(work).await.await;
    }

    /// Where another node's message goes here.
    fn remote_delivery(&self, stored: &Stored) -> Delivery {
        let record = &stored.record;
        match record.kind {
            Kind::Room => match lock(&self.rooms).get(&record.to) {
                Some(room) => Delivery::Room {
                    room: room.clone(),
                    sender: None,
                },
                None => Delivery::Nowhere,
            },
            Kind::Direct | Kind::E2e => {
                let users = lock(&self.users);
                let to = users.sessions_of(&record.to);
                let copies = match super::same_person_name(&record.from, &record.to) {
                    true => Vec::new(),
                    false => users.sessions_of(&record.from),
                };
                if to.is_empty() && copies.is_empty() {
                    Delivery::Nowhere
                } else {
                    Delivery::Direct {
                        from: None,
                        to,
                        copies,
                        // Told only to a sender in its reply; another node's sender has it.
                        trust: Trust::Unverified,
                    }
                }
            }
        }
    }

    /// Skips ids other nodes took but never stored in time, telling members of the gap (on
    /// the commit thread, when anything is held).
    pub async fn expire_holes(self: &Arc<Self>) {
        let Some(journal) = self.journal.as_ref().filter(|j| j.holding()) else {
            return;
        };
        let hub = self.clone();
        let work = Box::new(move |_: &dyn crate::store::Store| {
            if let Some(journal) = &hub.journal {
                journal.expire_holes();
            }
            Answer::default()
        });
        // Waited for: the next tick comes only after this one ran.
        let _ = journal.apply_waiting(work).await.await;
    }

    /// `name` belongs to a certificate (another node saw it verified): reserved here too, and
    /// whoever holds it here with `NICK` is let go.
    pub fn apply_name(&self, name: &str) {
        let key = name_key(name);
        if !lock(&self.reserved).insert(key.clone()) {
            return;
        }
        let squatters = lock(&self.users).take_out(&key, |_, p| p.trust() != Trust::Verified);
        for old in squatters {
            old.disconnect(
                DisconnectCode::NickReclaimed,
                format!("the nickname {name} belongs to a verified user who just connected"),
            );
        }
    }

    /// `name`'s published keys are `bundles` now (space-separated hex; none: withdrawn), as
    /// some node filed them. Devices added or withdrawn on another node are announced here as
    /// they are where it happened (`EVENT DEVICE`); this node's own changes come back the same
    /// as they are here, and announce nothing twice.
    pub fn apply_keys(&self, name: &str, bundles: Option<&str>) {
        let bundles: Vec<(String, String)> = bundles
            .unwrap_or_default()
            .split(' ')
            .filter_map(|hex| Some((super::device_of(hex)?, hex.to_owned())))
            .collect();
        let before: BTreeSet<String> = self.keys.devices(name).into_iter().collect();
        self.keys.replace(name, &bundles);
        let after: BTreeSet<String> = bundles.iter().map(|(d, _)| d.clone()).collect();
        if !bundles.is_empty() {
            lock(&self.reserved).insert(name_key(name));
        }
        // A first device is no news (nobody had a key to trust); others are.
        if !before.is_empty() {
            for device in after.difference(&before) {
                self.announce_device(None, name, device, true);
            }
        }
        for device in before.difference(&after) {
            self.announce_device(None, name, device, false);
        }
    }

    /// A setting (room rules under `#room`, the server's bans under `*`) is `value` now.
    pub fn apply_setting(&self, key: &str, value: Option<&str>) {
        if key == moderation::SERVER_BANS {
            let bans = value.map(decode_server_bans).transpose();
            match bans {
                Ok(bans) => *lock(&self.server_bans) = bans.unwrap_or_default(),
                Err(err) => tracing::warn!(error = %err, "the cluster's server bans are malformed"),
            }
            return;
        }
        match value.map(RoomRules::decode).transpose() {
            Ok(Some(rules)) => {
                lock(&self.rules).insert(key.to_owned(), rules);
            }
            Ok(None) => {
                lock(&self.rules).remove(key);
            }
            Err(err) => tracing::warn!(error = %err, room = key, "a room's rules are malformed"),
        }
    }

    /// `node`'s entry for `name` is `value` now (none: they left it), put `age` ago: the rooms
    /// here hear who came and went.
    pub fn apply_presence(&self, node: &str, name: &str, value: Option<&str>, age: Duration) {
        let Some(link) = &self.cluster else {
            return;
        };
        if node == link.node {
            return;
        }
        let entry = value.and_then(Entry::decode);
        let changes = link.remote().update(node, name, entry, age, Instant::now());
        self.announce_remote(changes);
    }

    /// Forgets the people of nodes that stopped refreshing them (a node died).
    pub fn expire_presence(&self) {
        let Some(link) = &self.cluster else {
            return;
        };
        let changes = link.remote().expire(Instant::now());
        self.announce_remote(changes);
    }

    /// Tells the rooms here of people who came and went on other nodes, when they are not
    /// also in the room here (the room hears of a person once).
    fn announce_remote(&self, events: Vec<Event>) {
        for event in events {
            let (Event::Join { room, nick, .. }
            | Event::Part { room, nick, .. }
            | Event::Quit { room, nick, .. }) = &event
            else {
                continue;
            };
            let Some(room) = lock(&self.rooms).get(room).cloned() else {
                continue;
            };
            let state = lock(&room.state);
            if state.members.iter().any(|m| super::same_person(m, nick)) {
                continue;
            }
            let line = encode(&event);
            for member in &state.members {
                member.deliver(&line, 0);
            }
        }
    }

    /// Marks `name`'s presence as changed (in a cluster).
    pub(super) fn touched(&self, name: &str) {
        if name.is_empty() {
            // A connection that never had a name: nobody to tell of.
            return;
        }
        if let Some(link) = &self.cluster {
            lock(&link.touched).insert(name_key(name));
            link.changed.notify_one();
        }
    }

    /// Completes when someone's presence changed since it was last taken.
    pub async fn presence_changed(&self) {
        match &self.cluster {
            Some(link) => link.changed.notified().await,
            None => std::future::pending().await,
        }
    }

    /// This node's presence entries to put: those marked since the last call, or (`all`)
    /// everyone's. Each is a name key and its entry's text (none: nobody of that name here).
    pub fn take_presence(&self, all: bool) -> Vec<(String, Option<String>)> {
        let Some(link) = &self.cluster else {
            return Vec::new();
        };
        let names: Vec<String> = {
            let mut touched = lock(&link.touched);
            match all {
                true => {
                    touched.clear();
                    lock(&self.users).names()
                }
                false => touched.drain().collect(),
            }
        };
        names
            .into_iter()
            .map(|name| {
                let entry = self.local_entry(&name).map(|e| e.encode());
                (name, entry)
            })
            .collect()
    }

    /// The names claimed with `NICK` here (name keys): their claims are kept alive.
    pub fn claimed_names(&self) -> Vec<String> {
        lock(&self.users)
            .all()
            .filter(|p| p.trust() != Trust::Verified)
            .filter_map(|p| p.nick().map(|n| name_key(&n)))
            .collect()
    }

    /// The person `name` as connected here: their name, trust and rooms.
    fn local_entry(&self, name: &str) -> Option<Entry> {
        let sessions = lock(&self.users).sessions_of(name);
        let first = sessions.iter().find(|p| p.disconnect_reason().is_none())?;
        let nick = first.nick()?.to_string();
        Some(Entry {
            nick,
            trust: first.trust(),
            rooms: sessions.iter().flat_map(|p| p.rooms()).collect(),
        })
    }

    /// Whether the person called `nick` is in `room` on another node.
    pub(super) fn in_room_elsewhere(&self, nick: &str, room: &str) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|link| link.remote().in_room(nick, room))
    }

    /// The person called `name` on another node: their name as shown and trust.
    pub(super) fn elsewhere(&self, name: &str) -> Option<(String, Trust)> {
        self.cluster.as_ref()?.remote().person(name)
    }

    /// The people in `room` on other nodes (none without a cluster).
    pub(super) fn members_elsewhere(&self, room: &str) -> Vec<(String, Trust)> {
        self.cluster
            .as_ref()
            .map(|link| link.remote().members(room))
            .unwrap_or_default()
    }

    /// The rooms with people on other nodes, with those people (name keys).
    pub(super) fn rooms_elsewhere(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.cluster
            .as_ref()
            .map(|link| link.remote().rooms())
            .unwrap_or_default()
    }

    /// In a cluster, claims `name` (name key `key`) for `peer`'s `NICK` across the nodes:
    /// refused when someone on another node has it, or another node claimed it first.
    pub(super) fn claim_elsewhere(&self, peer: &Peer, name: &str, key: &str) -> Result<(), Reply> {
        let Some(link) = &self.cluster else {
            return Ok(());
        };
        if peer.nick().is_some_and(|n| name_key(&n) == key) {
            return Ok(());
        }
        let taken = || {
            Reply::err(
                ErrorCode::NickTaken,
                format!("{name} is used by someone on another server of this cluster"),
            )
        };
        if link.remote().person(key).is_some() {
            return Err(taken());
        }
        match link.claims().claim(key) {
            Ok(true) => Ok(()),
            Ok(false) => Err(taken()),
            Err(err) => Err(Reply::err(
                ErrorCode::StoreFailed,
                format!("cannot check with the cluster whether {name} is free ({err}); try again"),
            )),
        }
    }

    /// Gives up this node's cluster-wide claim of `name` (a `NICK` changed or left).
    pub(super) fn release_claim(&self, name: &str) {
        if let Some(link) = &self.cluster {
            link.claims().release(vec![name_key(name)]);
        }
    }
}
