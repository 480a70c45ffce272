//! The chat state every connection shares: who is online under which nickname, and the rooms.
//!
//! # Locking
//!
//! Two maps, each behind its own mutex: `users` (nickname → sessions) and `rooms` (room name →
//! room). Each room has its own mutex over its member list and message counter, so traffic in
//! one room never waits for another. Locks are taken in one order only: `rooms` map, then one
//! room, then a peer's own state (its room set, its outbox). `users` is never held while any
//! other lock is taken. Every critical section is short and never awaits.
//!
//! # Ordering
//!
//! A room message gets its number and is queued to every member under the room's lock, so all
//! members receive a room's messages in the order the server accepted them.
//!
//! # Several sessions per person
//!
//! A verified person may be connected several times at once (up to `max_sessions`). Each
//! session is a member of the person's rooms, so a room message reaches all of them (those
//! the sender did not send it from see it as their own); membership is the person's: a `JOIN`
//! or `PART` from one session applies to all, and the room hears of a person's arrival and
//! departure once. A direct message reaches every session of the recipient, and a copy goes
//! to the sender's other sessions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use tlschat_proto::cert::summarize_der;
use tlschat_proto::codec::encode_line;
use tlschat_proto::e2e::KeyBundle;
use tlschat_proto::names::name_key;
use tlschat_proto::{Anchor, DisconnectCode, ErrorCode, Event, Reply, Target, Trust};

use super::journal::{CommitTimer, Delivery, Journal, JournalLimits, Sent};
use super::keys::{KeyDirectory, Published};
use super::peer::{encode, Peer};
use super::room::Room;
use super::rules::{decode_server_bans, RoomRules, ServerBan};
use super::users::Users;
use crate::config::PRUNE_BUDGET;
use crate::revoked::Revoked;
use crate::store::commit::Answer;
use crate::store::record::direct_key;
use crate::store::{Kind, Record, Store, StoreError, StoreStats, Stored};
use crate::sync::lock;

/// Limits on rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomLimits {
    /// Rooms one user may be in at once.
    pub per_user: usize,
    /// Members one room may have.
    pub members: usize,
}

impl Default for RoomLimits {
    fn default() -> Self {
        Self {
            per_user: crate::config::DEFAULT_MAX_ROOMS_PER_USER,
            members: crate::config::DEFAULT_MAX_ROOM_MEMBERS,
        }
    }
}

/// The shared chat state.
pub struct Hub {
    users: Mutex<Users>,
    /// Sessions one verified person may have at once.
    max_sessions: usize,
    rooms: Mutex<HashMap<String, Arc<Room<Peer>>>>,
    next_peer_id: AtomicU64,
    limits: RoomLimits,
    keys: KeyDirectory,
    /// Largest direct message payload, bytes.
    max_dm_bytes: usize,
    /// Names that belong to a certificate: seen verified, or with a published key. Nobody
    /// else may take them with `NICK`, even while their owner is away.
    reserved: Mutex<HashSet<String>>,
    /// The store, when messages are kept.
    journal: Option<Journal>,
    /// Direct message ids without a store.
    direct_ids: AtomicU64,
    /// Room rules (topic, modes, operators, bans, invitations), by room key: rooms that have
    /// any. Kept in the store.
    rules: Mutex<HashMap<String, RoomRules>>,
    /// Server-wide bans, by name key. Kept in the store.
    server_bans: Mutex<BTreeMap<String, ServerBan>>,
    /// In a cluster: the other nodes' people, and this node's part in it.
    cluster: Option<super::presence::ClusterLink>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            users: Mutex::default(),
            max_sessions: crate::config::DEFAULT_MAX_SESSIONS_PER_USER,
            rooms: Mutex::default(),
            next_peer_id: AtomicU64::default(),
            limits: RoomLimits::default(),
            keys: KeyDirectory::default(),
            max_dm_bytes: crate::config::DEFAULT_MAX_DM_BYTES,
            reserved: Mutex::default(),
            journal: None,
            direct_ids: AtomicU64::default(),
            rules: Mutex::default(),
            server_bans: Mutex::default(),
            cluster: None,
        }
    }
}

impl Hub {
    /// An empty hub with the default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty hub with these room limits, keeping at most `max_keys` published E2E keys.
    pub fn with_limits(limits: RoomLimits, max_keys: usize) -> Self {
        Self {
            limits,
            keys: KeyDirectory::new(max_keys, crate::config::DEFAULT_MAX_DEVICES_PER_USER),
            ..Self::default()
        }
    }

    /// The same hub with at most `sessions` connections per verified person and E2E keys for
    /// at most `devices` devices per person.
    pub fn with_user_limits(mut self, sessions: usize, devices: usize) -> Self {
        self.max_sessions = sessions.max(1);
        self.keys = KeyDirectory::new(self.keys.limit(), devices);
        self
    }

    /// The same hub with direct messages limited to `bytes`.
    pub fn with_max_dm_bytes(mut self, bytes: usize) -> Self {
        self.max_dm_bytes = bytes;
        self
    }

    /// The same hub, keeping messages in `store`, within `limits`.
    ///
    /// # Errors
    ///
    /// The store could not be read, or the commit thread could not be started.
    pub fn with_store(
        mut self,
        store: Arc<dyn Store>,
        limits: JournalLimits,
        commit_timer: CommitTimer,
    ) -> Result<Self, StoreError> {
        // Names seen with a certificate stay reserved across restarts.
        lock(&self.reserved).extend(store.reserved()?.iter().map(|n| name_key(n)));
        // And published keys, so stored E2E messages can be verified after a restart.
        for (name, bundles) in store.keys()? {
            for hex in bundles.split(' ') {
                match device_of(hex) {
                    Some(device) => {
                        self.keys.publish(&name, &device, hex);
                    }
                    None => tracing::warn!(
                        %name,
                        "a stored E2E key of an older layout was dropped; its device publishes \
                         it again when it connects"
                    ),
                }
            }
        }
        // Room rules and server bans, as operators and admins left them.
        for (key, value) in store.settings()? {
            let damaged = |e: crate::chat::rules::Malformed| StoreError::Failed(e.to_string());
            if key == moderation::SERVER_BANS {
                *lock(&self.server_bans) = decode_server_bans(&value).map_err(damaged)?;
            } else {
                lock(&self.rules).insert(key, RoomRules::decode(&value).map_err(damaged)?);
            }
        }
        // In a cluster, other nodes write the same conversations: deliver in id order.
        let order = self.cluster.as_ref().map(|link| link.sequencer());
        self.journal = Some(
            Journal::start(store, limits, commit_timer, order)
                .map_err(|e| StoreError::Failed(format!("cannot start the commit thread: {e}")))?,
        );
        Ok(self)
    }

    /// A fresh peer id.
    pub fn next_peer_id(&self) -> u64 {
        self.next_peer_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Puts a verified peer under its certificate name, beside the person's other sessions,
    /// and into the rooms they are in. Disconnected: an unverified client that had claimed
    /// the name with `NICK` (`NICK_RECLAIMED`), and the person's oldest sessions past the
    /// session limit (`REPLACED`, returned: they should be let go before the new one resumes).
    pub fn register_verified(&self, peer: &Arc<Peer>) -> Vec<Arc<Peer>> {
        let Some(nick) = peer.nick() else {
            return Vec::new();
        };
        let key = name_key(&nick);
        if lock(&self.reserved).insert(key.clone()) {
            let name = nick.to_string();
            self.in_store("reserve a verified name", move |store| store.reserve(&name));
        }
        let (squatters, replaced, others) = {
            let mut users = lock(&self.users);
            let squatters = users.take_out(&key, |_, p| p.trust() != Trust::Verified);
            let excess = (users.sessions(&key).len() + 1).saturating_sub(self.max_sessions);
            let replaced = users.take_out(&key, |index, _| index < excess);
            let others = users.sessions_of(&key);
            users.add(key, peer.clone());
            (squatters, replaced, others)
        };
        self.touched(&nick);
        for old in squatters {
            old.disconnect(
                DisconnectCode::NickReclaimed,
                format!("the nickname {nick} belongs to a verified user who just connected"),
            );
        }
        for old in &replaced {
            old.disconnect(
                DisconnectCode::Replaced,
                format!(
                    "you have {} connections with your certificate, the most allowed; this one, \
                     the oldest, was closed for a new one",
                    self.max_sessions
                ),
            );
        }
        // In the person's rooms, as their other sessions are.
        let live = others.iter().find(|o| o.disconnect_reason().is_none());
        if let Some(other) = live {
            for room in other.rooms() {
                let _ = self.enter(peer, &nick, &room, Entry::Resume);
                self.greet_member(peer, &room);
            }
        }
        replaced
    }

    /// `NICK name`.
    pub fn set_nick(&self, peer: &Arc<Peer>, name: &str) -> Reply {
        let old = peer.nick();
        if peer.trust() == Trust::Verified {
            return match old {
                Some(current) if current.eq_ignore_ascii_case(name) => Reply::ok(&*current),
                _ => Reply::err(
                    ErrorCode::NickLocked,
                    "your nickname is the name in your client certificate",
                ),
            };
        }
        let key = name_key(name);
        if lock(&self.reserved).contains(&key) {
            return Reply::err(
                ErrorCode::NickTaken,
                format!("{name} belongs to a verified user (a certificate); choose another name"),
            );
        }
        if let Err(reply) = self.claim_elsewhere(peer, name, &key) {
            return reply;
        }
        {
            let mut users = lock(&self.users);
            if let Some(holder) = users.sessions(&key).iter().find(|h| h.id() != peer.id()) {
                let whose = match holder.trust() {
                    Trust::Verified => "a verified user who is connected now",
                    Trust::Unverified => "someone connected now",
                };
                return Reply::err(ErrorCode::NickTaken, format!("{name} is used by {whose}"));
            }
            if let Some(old) = &old {
                users.remove(&name_key(old), peer.id());
            }
            users.remove(&key, peer.id());
            users.add(key.clone(), peer.clone());
            peer.set_nick(name);
        }
        self.touched(&key);
        if let Some(old) = old.as_deref().filter(|old| name_key(old) != key) {
            self.touched(old);
            self.release_claim(old);
        }
        if let Some(old) = old.filter(|old| **old != *name) {
            for room in self.rooms_of(peer) {
                let event = Event::Nick {
                    room: room.name.clone(),
                    old: old.to_string(),
                    new: name.to_owned(),
                };
                lock(&room.state).broadcast(&encode(&event), peer, 0);
            }
        }
        Reply::ok(format!("{name} (unverified)"))
    }

    /// `JOIN #room`.
    pub fn join(&self, peer: &Arc<Peer>, room: &str) -> Reply {
        let nick = match require_nick(peer) {
            Ok(nick) => nick,
            Err(reply) => return reply,
        };
        let key = name_key(room);
        // Joining a room one is in changes nothing: a verified member is put back in its rooms
        // when it connects, and its client may well ask again.
        if peer.room(&key).is_some() {
            return Reply::ok(key);
        }
        if peer.room_count() >= self.limits.per_user {
            tracing::info!(nick = %nick, limit = self.limits.per_user, "room limit per user reached");
            return Reply::err(
                ErrorCode::TooManyRooms,
                format!(
                    "you are in {} rooms, the most allowed; PART one first",
                    self.limits.per_user
                ),
            );
        }
        if let Err(reply) = self.admit_to_room(peer, &nick, &key) {
            return reply;
        }
        if let Err(reply) = self.enter(peer, &nick, &key, Entry::Join) {
            // Put back in it meanwhile (a verified member's rooms are re-entered on the commit
            // thread as it connects, racing its own JOIN): joined all the same.
            if matches!(&reply, Reply::Err(e) if e.code == ErrorCode::AlreadyInRoom) {
                return Reply::ok(key);
            }
            return reply;
        }
        self.greet_member(peer, &key);
        // The person's other sessions are in the room too, and told so.
        for other in self.other_sessions(peer, &nick) {
            if self.enter(&other, &nick, &key, Entry::Resume).is_ok() {
                self.greet_member(&other, &key);
            }
        }
        if peer.trust() == Trust::Verified {
            // A member until PART, across disconnects and restarts.
            let (user, room) = (nick.to_string(), key.clone());
            self.in_store("record a membership", move |store| {
                store.join(&user, &room).map(drop)
            });
        }
        Reply::ok(key)
    }

    /// Puts `peer` (called `nick`) in room `key`, creating it. The members hear of it when the
    /// person was not in the room through another session; see [`Entry`] for the rest.
    fn enter(&self, peer: &Arc<Peer>, nick: &str, key: &str, how: Entry) -> Result<(), Reply> {
        // People in the room on other nodes (a cluster) count toward its limit.
        let elsewhere: HashSet<String> = match how {
            Entry::Join => self
                .members_elsewhere(key)
                .iter()
                .map(|(n, _)| name_key(n))
                .collect(),
            Entry::Resume => HashSet::new(),
        };
        let mut rooms = lock(&self.rooms);
        let room = rooms
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(Room::new(key.to_owned())));
        let mut state = lock(&room.state);
        if state.position(peer).is_some() {
            return Err(Reply::err(
                ErrorCode::AlreadyInRoom,
                format!("you are already in {key}"),
            ));
        }
        let event = Event::Join {
            room: key.to_owned(),
            nick: nick.to_owned(),
            trust: peer.trust(),
        };
        let present =
            state.members.iter().any(|m| same_person(m, nick)) || self.in_room_elsewhere(nick, key);
        if !present {
            if how == Entry::Join && people_with(&state.members, elsewhere) >= self.limits.members {
                tracing::info!(room = %key, limit = self.limits.members, "room member limit reached");
                return Err(Reply::err(
                    ErrorCode::RoomFull,
                    format!(
                        "{key} has {} members, the most allowed",
                        self.limits.members
                    ),
                ));
            }
            state.broadcast(&encode(&event), peer, 0);
        }
        state.members.push(peer.clone());
        peer.add_room(key, room.clone());
        if how == Entry::Resume {
            let _ = peer.outbox().push(encode(&event));
        }
        drop(state);
        drop(rooms);
        self.touched(nick);
        Ok(())
    }

    /// The other live sessions of `peer`'s person (called `nick`): none for a name claimed
    /// with `NICK`.
    fn other_sessions(&self, peer: &Peer, nick: &str) -> Vec<Arc<Peer>> {
        if peer.trust() != Trust::Verified {
            return Vec::new();
        }
        lock(&self.users)
            .sessions(nick)
            .iter()
            .filter(|p| p.id() != peer.id())
            .cloned()
            .collect()
    }

    /// Runs `work` on the store's commit thread, in order with the messages, without waiting
    /// for it; a failure is logged (`what` says what was being done).
    fn in_store(
        &self,
        what: &'static str,
        work: impl FnOnce(&dyn Store) -> Result<(), StoreError> + Send + 'static,
    ) {
        let Some(journal) = &self.journal else {
            return;
        };
        let queued = journal.apply(Box::new(move |store| {
            if let Err(err) = work(store) {
                tracing::warn!(error = %err, "cannot {what}");
            }
            Answer::default()
        }));
        if queued.is_err() {
            tracing::warn!("cannot {what}: the store's queue is full");
        }
    }

    /// `PART #room`.
    pub fn part(&self, peer: &Arc<Peer>, room: &str) -> Reply {
        let key = name_key(room);
        let nick = peer.nick().map(|n| n.to_string()).unwrap_or_default();
        let event = Event::Part {
            room: key.clone(),
            nick,
            trust: peer.trust(),
        };
        if self.remove_person(&key, &event_nick(&event), &event, Some(peer.id())) {
            if peer.trust() == Trust::Verified {
                let (user, room) = (event_nick(&event), key.clone());
                self.in_store("record leaving a room", move |store| {
                    store.leave(&user, &room)
                });
            }
            Reply::ok(key)
        } else {
            Reply::err(ErrorCode::NotInRoom, format!("you are not in {key}"))
        }
    }

    /// Removes `peer` (one session) from a room; the others are told with `event` when it was
    /// the person's last session there. Drops the room when empty. Returns false when the peer
    /// was not a member.
    fn remove_member(&self, peer: &Peer, key: &str, event: &Event) -> bool {
        let mut rooms = lock(&self.rooms);
        let Some(room) = rooms.get(key) else {
            return false;
        };
        let mut state = lock(&room.state);
        let Some(index) = state.position(peer) else {
            return false;
        };
        state.members.swap_remove(index);
        let nick = peer.nick().map(|n| n.to_string()).unwrap_or_default();
        if !state.members.iter().any(|m| same_person(m, &nick))
            && !self.in_room_elsewhere(&nick, key)
        {
            state.broadcast(&encode(event), peer, 0);
        }
        let empty = state.members.is_empty();
        drop(state);
        if empty {
            rooms.remove(key);
        }
        drop(rooms);
        peer.remove_room(key);
        self.touched(&nick);
        true
    }

    /// Takes every session of the person called `nick` out of a room, telling every member
    /// (their own sessions included, but the one with id `except`) with `event`. Drops the
    /// room when empty. Returns false when they were not a member.
    fn remove_person(&self, key: &str, nick: &str, event: &Event, except: Option<u64>) -> bool {
        let mut rooms = lock(&self.rooms);
        let Some(room) = rooms.get(key) else {
            return false;
        };
        let mut state = lock(&room.state);
        let line = encode(event);
        let mut leaving = Vec::new();
        if !state.members.iter().any(|m| same_person(m, nick)) {
            return false;
        }
        // The room heard of them once: not again while they are in it on another node.
        let told = self.in_room_elsewhere(nick, key);
        for member in state.members.iter().filter(|m| Some(m.id()) != except) {
            if !told || same_person(member, nick) {
                member.deliver(&line, 0);
            }
        }
        state.members.retain(|m| {
            let leaves = same_person(m, nick);
            if leaves {
                leaving.push(m.clone());
            }
            !leaves
        });
        let empty = state.members.is_empty();
        drop(state);
        if empty {
            rooms.remove(key);
        }
        drop(rooms);
        for member in leaving {
            member.remove_room(key);
        }
        self.touched(nick);
        true
    }

    /// `ROOMS`: `OK #a=3 #b=1`, sorted by name; secret rooms only for their members. The
    /// listed rooms' topics come first, as `EVENT TOPIC` lines.
    pub fn list_rooms_with_topics(&self, peer: &Peer) -> Sent {
        let reply = self.list_rooms(peer);
        let mut lines = Vec::new();
        if let Reply::Ok(list) = &reply {
            let rules = lock(&self.rules);
            for room in list
                .split(' ')
                .filter_map(|entry| entry.split_once('='))
                .map(|(r, _)| r)
            {
                if let Some((by, text)) = rules.get(room).and_then(|r| r.topic.as_ref()) {
                    let event = Event::Topic {
                        room: room.to_owned(),
                        by: by.clone(),
                        text: text.clone(),
                    };
                    encode_line(&event.to_string(), &mut lines);
                }
            }
        }
        if lines.is_empty() {
            return Sent::Now(vec![reply]);
        }
        // Events before the reply go the way stored answers go.
        let (done, answer) = tokio::sync::oneshot::channel();
        let _ = done.send(Answer {
            lines,
            replies: vec![reply],
        });
        Sent::Later(answer)
    }

    /// `ROOMS` without the topics: `OK #a=3 #b=1`, sorted by name; secret rooms only for their
    /// members.
    pub fn list_rooms(&self, peer: &Peer) -> Reply {
        // Each room's people: those here, and those on other nodes (a cluster).
        let mut people = self.rooms_elsewhere();
        let rooms = lock(&self.rooms);
        for room in rooms.values() {
            let here: Vec<String> = name_keys(&lock(&room.state).members).collect();
            people.entry(room.name.clone()).or_default().extend(here);
        }
        drop(rooms);
        let mut list: Vec<(String, usize)> = people
            .into_iter()
            .map(|(room, p)| (room, p.len()))
            .collect();
        list.retain(|(name, _)| self.visible_to(peer, name));
        list.sort();
        let parts: Vec<String> = list.iter().map(|(n, c)| format!("{n}={c}")).collect();
        Reply::ok(parts.join(" "))
    }

    /// `WHO #room`: `OK alice=verified bob=unverified`, sorted by nickname.
    pub fn who(&self, room: &str) -> Reply {
        let key = name_key(room);
        let room = lock(&self.rooms).get(&key).cloned();
        let mut members = self.members_elsewhere(&key);
        if room.is_none() && members.is_empty() {
            return Reply::err(ErrorCode::NoSuchRoom, format!("there is no room {key}"));
        }
        if let Some(room) = room {
            members.extend(lock(&room.state).members.iter().map(|m| {
                (
                    m.nick().map(|n| n.to_string()).unwrap_or_default(),
                    m.trust(),
                )
            }));
        }
        members.sort_by_key(|(nick, _)| name_key(nick));
        members.dedup_by(|a, b| a.0.eq_ignore_ascii_case(&b.0));
        let parts: Vec<String> = members.iter().map(|(n, t)| format!("{n}={t}")).collect();
        Reply::ok(parts.join(" "))
    }

    /// `MSG #room text`, one or several in a row from one sender: numbered and queued to every
    /// member in order, as one shared buffer encoded once. One reply per text, in order (`OK
    /// <message id>`). This is the only way a room message travels.
    ///
    /// With a store, the messages are committed first and delivered by the commit thread
    /// ([`Sent::Later`]); without one, under the room's lock now.
    pub fn message_room_batch(
        &self,
        peer: &Arc<Peer>,
        room: &str,
        texts: &[String],
        now: DateTime<Utc>,
    ) -> Sent {
        let refuse = |reply: Reply| Sent::Now(vec![reply; texts.len()]);
        let nick = match require_nick(peer) {
            Ok(nick) => nick,
            Err(reply) => return refuse(reply),
        };
        let key = name_key(room);
        // The peer's own handle to the room: no global lookup on the hot path. It is added
        // and removed together with the membership, by the peer's own connection.
        let Some(room) = peer.room(&key) else {
            return refuse(Reply::err(
                ErrorCode::NotInRoom,
                format!("you are not in {key}"),
            ));
        };
        if let Some(journal) = &self.journal {
            let records = texts
                .iter()
                .map(|text| Record {
                    kind: Kind::Room,
                    from: nick.to_string(),
                    to: key.clone(),
                    trust: peer.trust(),
                    time_ms: now.timestamp_millis(),
                    text: text.clone(),
                    keep_for_recipient: false,
                })
                .collect();
            let deliveries = texts
                .iter()
                .map(|_| Delivery::Room {
                    room: room.clone(),
                    sender: Some(peer.clone()),
                })
                .collect();
            return journal.submit(records, deliveries);
        }
        let time = protocol_time(now);
        let mut lines = Vec::new();
        let mut replies = Vec::with_capacity(texts.len());
        let mut state = lock(&room.state);
        for text in texts {
            let id = state.next_id;
            state.next_id += 1;
            let event = Event::Message {
                room: key.clone(),
                id,
                from: nick.to_string(),
                trust: peer.trust(),
                time: time.clone(),
                text: text.clone(),
            };
            encode_line(&event.to_string(), &mut lines);
            replies.push(Reply::ok(id.to_string()));
        }
        state.broadcast(&Bytes::from(lines), peer, replies.len() as u64);
        Sent::Now(replies)
    }

    /// `MSG nick text`: a direct message. Replies `OK <id> verified` or `OK <id> unverified`:
    /// what the recipient's name rests on, so a sender learns when a name is only claimed.
    pub fn message_user(&self, peer: &Arc<Peer>, to: &str, text: &str, now: DateTime<Utc>) -> Sent {
        self.direct(peer, to, text.len(), Kind::Direct, text, now)
    }

    /// `E2E nick sealed`: relays an end-to-end encrypted message, which the server cannot read,
    /// from a verified user (the recipient checks the sender's signature against their
    /// certificate, so the sender must have one).
    pub fn message_e2e(
        &self,
        peer: &Arc<Peer>,
        to: &str,
        sealed: &str,
        now: DateTime<Utc>,
    ) -> Sent {
        if let Err(reply) = require_verified(peer, "E2E messages") {
            return Sent::Now(vec![reply]);
        }
        // Counted in bytes of the sealed message, not of its hex form.
        self.direct(peer, to, sealed.len() / 2, Kind::E2e, sealed, now)
    }

    /// Sends a direct message (`kind`, a payload of `len` bytes) to the user called `to`.
    /// Without a store, the sender pays for a recipient who is not keeping up: refused with
    /// `TARGET_BUSY`, while the recipient stays connected. With one, the message is stored and
    /// such a recipient is told of a gap to fetch.
    fn direct(
        &self,
        peer: &Arc<Peer>,
        to: &str,
        len: usize,
        kind: Kind,
        text: &str,
        now: DateTime<Utc>,
    ) -> Sent {
        let refuse = |reply| Sent::Now(vec![reply]);
        let nick = match require_nick(peer) {
            Ok(nick) => nick,
            Err(reply) => return refuse(reply),
        };
        if len > self.max_dm_bytes {
            return refuse(Reply::err(
                ErrorCode::TooLong,
                format!(
                    "a direct message may be {} bytes at most; this one is {len}; not sent",
                    self.max_dm_bytes
                ),
            ));
        }
        // Every session of the recipient, and a copy for the sender's other sessions.
        let (targets, copies) = {
            let users = lock(&self.users);
            let targets = users.sessions_of(to);
            let copies = match same_person_name(&nick, to) || peer.trust() != Trust::Verified {
                true => Vec::new(),
                false => users
                    .sessions(&nick)
                    .iter()
                    .filter(|p| p.id() != peer.id())
                    .cloned()
                    .collect(),
            };
            (targets, copies)
        };
        let target = targets.first().cloned();
        // In a cluster, the recipient may be connected to another node.
        let elsewhere = match target {
            Some(_) => None,
            None => self.elsewhere(to),
        };
        // With a store, a verified user who is away gets it when they connect again.
        let away = target.is_none()
            && elsewhere.is_none()
            && self.journal.is_some()
            && lock(&self.reserved).contains(&name_key(to));
        if target.is_none() && elsewhere.is_none() && !away {
            let why = match self.journal {
                Some(_) => "is not connected, and has no certificate (nothing is kept for them)",
                None => "is not connected",
            };
            return refuse(Reply::err(ErrorCode::NoSuchUser, format!("{to} {why}")));
        }
        if away {
            if let Some(Err(reply)) = self.journal.as_ref().map(|j| j.check_offline_quota(to)) {
                return refuse(reply);
            }
        }
        let (to_name, to_trust) = match (&target, elsewhere) {
            (Some(target), _) => (
                target
                    .nick()
                    .map_or_else(|| to.to_owned(), |n| n.to_string()),
                target.trust(),
            ),
            (None, Some(there)) => there,
            (None, None) => (to.to_owned(), Trust::Verified),
        };
        let record = Record {
            kind,
            from: nick.to_string(),
            to: to_name,
            trust: peer.trust(),
            time_ms: now.timestamp_millis(),
            text: text.to_owned(),
            keep_for_recipient: to_trust == Trust::Verified && self.journal.is_some(),
        };
        if let Some(journal) = &self.journal {
            let delivery = Delivery::Direct {
                from: Some(peer.clone()),
                to: targets,
                copies,
                trust: to_trust,
            };
            return journal.submit(vec![record], vec![delivery]);
        }
        // Without a store, ids come from one counter: they increase, with holes.
        let id = self.direct_ids.fetch_add(1, Ordering::Relaxed) + 1;
        let line = encode(&record.event(id));
        // Taken when one session of the recipient had room for it (one not keeping up misses
        // it: without a store there is nothing to fetch it from later).
        let taken = targets
            .iter()
            .filter(|t| t.deliver_direct(&line).is_ok())
            .count();
        if taken == 0 {
            tracing::debug!(from = %nick, to, "direct message refused: recipient's queue is full");
            return refuse(Reply::err(
                ErrorCode::TargetBusy,
                format!("{to} is not reading fast enough to take more now; not sent, try later"),
            ));
        }
        for copy in &copies {
            let _ = copy.deliver_direct(&line);
        }
        Sent::Now(vec![Reply::ok(format!("{id} {to_trust}"))])
    }

    /// `HISTORY target [BEFORE id | AFTER id] [LIMIT n]`: a page of a room the caller is in,
    /// or of the caller's conversation with one user.
    pub fn history(
        &self,
        peer: &Peer,
        target: &Target,
        anchor: Option<Anchor>,
        limit: Option<u32>,
    ) -> Sent {
        let refuse = |reply| Sent::Now(vec![reply]);
        let Some(journal) = &self.journal else {
            return refuse(Reply::err(
                ErrorCode::NoHistory,
                "this server keeps no history (it runs without a store)",
            ));
        };
        let nick = match require_nick(peer) {
            Ok(nick) => nick,
            Err(reply) => return refuse(reply),
        };
        let conversation = match target {
            Target::Room(room) => {
                let key = name_key(room);
                if self.banned_from(&nick, &key) {
                    return refuse(Reply::err(
                        ErrorCode::Banned,
                        format!("you are banned from {key}"),
                    ));
                }
                if peer.room(&key).is_none() {
                    return refuse(Reply::err(
                        ErrorCode::NotInRoom,
                        format!("only members read the history of {key}; JOIN it first"),
                    ));
                }
                key
            }
            Target::User(other) => direct_key(&nick, other),
        };
        journal.history(conversation, anchor, limit)
    }

    /// The store's counts, when there is a store.
    pub fn store_stats(&self) -> Option<Result<StoreStats, StoreError>> {
        self.journal.as_ref().map(|j| j.store().stats())
    }

    /// One round of deleting what the store no longer keeps: messages older than `retention`,
    /// and all but the newest `keep` of every conversation (at most [`PRUNE_BUDGET`] a round).
    pub fn prune(&self, retention: std::time::Duration, keep: usize) {
        let retention = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let before = Utc::now().timestamp_millis().saturating_sub(retention);
        self.in_store("delete old messages", move |store| {
            let deleted = store.prune(before, keep as u64, PRUNE_BUDGET)?;
            if deleted > 0 {
                tracing::info!(
                    deleted,
                    "old messages deleted (retention, max-history-per-room)"
                );
            }
            Ok(())
        });
    }

    /// Whether the store fails to write now (its last commit failed).
    pub fn store_failing(&self) -> bool {
        self.journal.as_ref().is_some_and(Journal::failing)
    }

    /// Whether messages are stored.
    pub fn has_store(&self) -> bool {
        self.journal.is_some()
    }

    /// At a clean stop: once everything queued is committed, makes it durable in the store's
    /// own files (so the next start has nothing to recover).
    pub async fn close_store(&self) {
        if let Some(journal) = &self.journal {
            journal.checkpoint().await;
        }
    }

    /// Returns once every message submitted so far is committed and delivered.
    pub async fn flush(&self) {
        if let Some(journal) = &self.journal {
            journal.flush().await;
        }
    }

    /// `KEY SET bundle`: files the E2E key of one of the caller's devices (`hex` is the
    /// bundle as sent). Only a verified user may publish, and only a bundle holding their own
    /// certificate. A new device is announced to the person's contacts and other sessions.
    pub fn publish_key(&self, peer: &Peer, bundle: &KeyBundle, hex: &str) -> Reply {
        let nick = match require_verified(peer, "publishing an E2E key") {
            Ok(nick) => nick,
            Err(reply) => return reply,
        };
        let owner = summarize_der(&bundle.cert)
            .ok()
            .and_then(|summary| summary.common_name)
            .unwrap_or_default();
        if name_key(&owner) != name_key(&nick) {
            return Reply::err(
                ErrorCode::BadArgs,
                format!("the bundle holds the certificate of {owner:?}, not yours ({nick})"),
            );
        }
        lock(&self.reserved).insert(name_key(&nick));
        let had = self.keys.devices(&nick).len();
        match self.keys.publish(&nick, &bundle.device, hex) {
            Published::TooManyDevices => {
                return Reply::err(
                    ErrorCode::TooManyDevices,
                    format!(
                        "you have published keys for {} devices, the most allowed; withdraw one \
                         first (tlschat devices remove NAME, or KEY DEL NAME)",
                        self.keys.max_devices()
                    ),
                )
            }
            Published::Same => return Reply::ok("published"),
            Published::Changed => {}
            Published::NewDevice => {
                if had > 0 {
                    self.announce_device(Some(peer.id()), &nick, &bundle.device, true);
                }
            }
        }
        self.keep_keys(&nick);
        Reply::ok("published")
    }

    /// `KEY DEL device`: withdraws the key of one of the caller's devices, and tells their
    /// contacts and other sessions.
    pub fn withdraw_key(&self, peer: &Peer, device: &str) -> Reply {
        let nick = match require_verified(peer, "withdrawing an E2E key") {
            Ok(nick) => nick,
            Err(reply) => return reply,
        };
        if !self.keys.remove(&nick, device) {
            return Reply::err(
                ErrorCode::NoKey,
                format!("you have no device called {device} with a published key"),
            );
        }
        self.keep_keys(&nick);
        self.announce_device(Some(peer.id()), &nick, device, false);
        Reply::ok(format!("withdrawn {device}"))
    }

    /// Stores `name`'s published keys as they are now.
    fn keep_keys(&self, name: &str) {
        let bundles: Vec<String> = self.keys.get(name).iter().map(|b| b.to_string()).collect();
        let name = name.to_owned();
        self.in_store("keep published keys", move |store| {
            if bundles.is_empty() {
                return store.remove_key(&name);
            }
            store.reserve(&name)?;
            store.put_key(&name, &bundles.join(" "))
        });
    }

    /// `KEY GET nick`: a user's published keys, one per device, as they sent them.
    pub fn key_of(&self, nick: &str) -> Reply {
        let bundles = self.keys.get(nick);
        if bundles.is_empty() {
            return Reply::err(ErrorCode::NoKey, format!("{nick} has published no E2E key"));
        }
        let texts: Vec<&str> = bundles.iter().map(|b| &**b).collect();
        Reply::ok(texts.join(" "))
    }

    /// Cuts off what a revocation list revokes: every live session of a revoked certificate
    /// (`EVENT DISCONNECT REVOKED`) and every published E2E key that holds one (`KEY GET` then
    /// no longer offers it). Returns the sessions cut.
    pub fn revoke(&self, revoked: &Revoked) -> usize {
        if revoked.is_empty() {
            return 0;
        }
        let peers: Vec<Arc<Peer>> = lock(&self.users)
            .all()
            .filter(|p| p.serial().is_some_and(|s| revoked.contains(s)))
            .cloned()
            .collect();
        let mut names: Vec<String> = Vec::new();
        for peer in &peers {
            let nick = peer.nick();
            names.extend(nick.as_deref().map(name_key));
            tracing::warn!(
                nick = nick.as_deref().unwrap_or("-"),
                "revoked certificate: session closed"
            );
            peer.disconnect(
                DisconnectCode::Revoked,
                "your certificate was revoked; ask the CA's keeper for a new one".into(),
            );
        }
        for name in self.keys.withdraw(|bundle| revoked.covers_bundle(bundle)) {
            tracing::info!(%name, "published E2E key withdrawn: its certificate is revoked");
            names.push(name_key(&name));
            self.keep_keys(&name);
        }
        names.sort();
        names.dedup();
        self.announce_revoked(&names);
        peers.len()
    }

    /// Tells everyone connected who had a direct conversation with one of `names` (whose
    /// certificates were just revoked) with `EVENT REVOKED`.
    fn announce_revoked(&self, names: &[String]) {
        for name in names {
            let event = encode(&Event::Revoked {
                nick: name.clone(),
                reason: format!(
                    "the certificate of {name} was revoked: the name is no longer vouched for and \
                     their E2E key was withdrawn; do not trust new messages claiming to be them"
                ),
            });
            self.tell_partners(name, &event, |partner| !names.contains(partner));
        }
    }

    /// Tells `nick`'s contacts (those with a direct conversation with them) and `nick`'s own
    /// other sessions that `nick` added or removed `device`.
    /// `except`: the session that made the change (it knows), none when another node did.
    fn announce_device(&self, except: Option<u64>, nick: &str, device: &str, added: bool) {
        tracing::info!(%nick, %device, added, "E2E device key published or withdrawn");
        let event = encode(&Event::Device {
            nick: nick.to_owned(),
            device: device.to_owned(),
            added,
        });
        let own = lock(&self.users).sessions_of(nick);
        for other in own.iter().filter(|p| Some(p.id()) != except) {
            let _ = other.outbox().push(event.clone());
        }
        let me = name_key(nick);
        self.tell_partners(&me, &event, |partner| *partner != me);
    }

    /// Pushes `event` to every connected session of those who had a direct conversation with
    /// `name` and whom `include` names. Needs the store (which knows the conversations); a
    /// read, on a path that is rare (a reload, a new device).
    fn tell_partners(&self, name: &str, event: &Bytes, include: impl Fn(&String) -> bool) {
        let Some(journal) = &self.journal else {
            return;
        };
        let partners = match journal.partners(name) {
            Ok(partners) => partners,
            Err(err) => {
                tracing::warn!(error = %err, "cannot tell {name}'s contacts");
                return;
            }
        };
        let users = lock(&self.users);
        for partner in partners.iter().filter(|p| include(p)) {
            for session in users.sessions(partner) {
                let _ = session.outbox().push(event.clone());
            }
        }
    }

    /// Published E2E keys held now.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// `KICK nick [reason]`: admins only.
    pub fn kick(&self, peer: &Arc<Peer>, nick: &str, reason: Option<&str>) -> Reply {
        if !peer.is_admin() {
            return Reply::err(
                ErrorCode::Forbidden,
                "KICK needs a client certificate with the admin role",
            );
        }
        let targets = lock(&self.users).sessions_of(nick);
        if targets.is_empty() {
            return Reply::err(ErrorCode::NoSuchUser, format!("{nick} is not connected"));
        }
        let by = peer.nick().map(|n| n.to_string()).unwrap_or_default();
        let why = match reason {
            Some(reason) => format!("kicked by {by}: {reason}"),
            None => format!("kicked by {by}"),
        };
        for target in targets {
            target.disconnect(DisconnectCode::Kicked, why.clone());
        }
        Reply::ok(format!("kicked {nick}"))
    }

    /// Takes a disconnected peer out of every room (members get `EVENT QUIT` with `reason`)
    /// and frees its nickname. A verified peer stays a member in the store, which records how
    /// far it received (`unwritten`: output it never got), to resume there.
    pub fn leave_all(&self, peer: &Peer, reason: &str, unwritten: &[u8]) {
        let nick = peer.nick().map(|n| n.to_string()).unwrap_or_default();
        if peer.trust() == Trust::Verified && self.journal.is_some() {
            let points: Vec<(String, u64)> = peer
                .outbox()
                .resume_points(unwritten)
                .into_iter()
                .map(|(target, id)| match target.starts_with('#') {
                    true => (target, id),
                    false => (direct_key(&nick, &target), id),
                })
                .collect();
            let user = nick.clone();
            self.in_store("record where a user resumes", move |store| {
                store.set_resume_points(&user, &points)
            });
        }
        for key in peer.rooms() {
            let event = Event::Quit {
                room: key.clone(),
                nick: nick.clone(),
                trust: peer.trust(),
                reason: reason.to_owned(),
            };
            self.remove_member(peer, &key, &event);
        }
        lock(&self.users).remove(&name_key(&nick), peer.id());
        self.touched(&nick);
        if peer.trust() != Trust::Verified && !nick.is_empty() {
            self.release_claim(&nick);
        }
        peer.mark_left();
    }

    /// A verified peer connected: on the store's commit thread (so nothing committed meanwhile
    /// is missed or sent twice), it rejoins its rooms and gets what it missed in each of them
    /// and in its direct conversations, at most the catch-up cap per conversation (older ones
    /// as `EVENT GAP`), then `EVENT CAUGHTUP` (when there was anything).
    pub async fn resume(self: &Arc<Self>, peer: &Arc<Peer>) {
        let (Some(journal), Some(nick)) = (&self.journal, peer.nick()) else {
            return;
        };
        if peer.trust() != Trust::Verified {
            return;
        }
        let (hub, peer) = (self.clone(), peer.clone());
        let cap = journal.catch_up();
        // The answer is not awaited: the connection serves meanwhile.
        let answer = journal
            .apply_waiting(Box::new(move |store| {
                if peer.disconnect_reason().is_none() {
                    hub.catch_up(store, &peer, &nick, cap);
                }
                Answer::default()
            }))
            .await;
        drop(answer);
    }

    /// See [`resume`](Self::resume); runs on the commit thread.
    fn catch_up(&self, store: &dyn Store, peer: &Arc<Peer>, nick: &str, cap: usize) {
        let points = match store.resume_points(nick) {
            Ok(points) => points,
            Err(err) => {
                tracing::warn!(error = %err, nick, "cannot read where a user resumes");
                return;
            }
        };
        let mut count = 0;
        for (conversation, seen) in points {
            let target = if conversation.starts_with('#') {
                // Back in the room; already there after a quick reconnect is fine.
                let _ = self.enter(peer, nick, &conversation, Entry::Resume);
                conversation.clone()
            } else {
                let me = name_key(nick);
                match conversation.split_once(' ') {
                    Some((a, b)) => if a == me { b } else { a }.to_owned(),
                    None => continue,
                }
            };
            let page = match store.read(&conversation, None, cap) {
                Ok(page) => page,
                Err(err) => {
                    tracing::warn!(error = %err, nick, %conversation, "cannot read what a user missed");
                    continue;
                }
            };
            // In a cluster, what is not delivered here yet comes live, in order.
            let below = self
                .journal
                .as_ref()
                .and_then(|j| j.undelivered(&conversation))
                .unwrap_or(u64::MAX);
            let missed: Vec<&Stored> = page
                .messages
                .iter()
                .filter(|m| m.id > seen && m.id < below)
                .collect();
            let (Some(first), Some(last)) = (missed.first(), missed.last()) else {
                continue;
            };
            if first.id > seen + 1 {
                // More than the cap: the older ones are a gap to page back through.
                let gap = Event::Gap {
                    target: target.clone(),
                    first: seen + 1,
                    last: first.id - 1,
                };
                let _ = peer.outbox().push(encode(&gap));
            }
            let mut lines = Vec::new();
            for message in &missed {
                encode_line(&message.record.event(message.id).to_string(), &mut lines);
            }
            count += missed.len() as u64;
            peer.deliver_messages(&target, first.id, last.id, &Bytes::from(lines));
        }
        // Only news: a client with nothing missed hears nothing.
        if count > 0 {
            let _ = peer.outbox().push(encode(&Event::CaughtUp { count }));
        }
    }

    /// Number of rooms that exist now.
    pub fn room_count(&self) -> usize {
        lock(&self.rooms).len()
    }

    /// Number of people with a nickname now (each counted once, whatever their sessions).
    pub fn user_count(&self) -> usize {
        lock(&self.users).len()
    }

    fn rooms_of(&self, peer: &Peer) -> Vec<Arc<Room<Peer>>> {
        peer.room_handles()
    }
}

/// How a session comes into a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// It asked (`JOIN`): the member limit applies, and its reply tells it.
    Join,
    /// It is put back (a verified person's room, when they connect again or from another
    /// device): no limit (the person is a member already), and it is told with `EVENT JOIN`.
    Resume,
}

/// Whether `member` is the person called `nick`.
fn same_person(member: &Peer, nick: &str) -> bool {
    member.nick().is_some_and(|n| n.eq_ignore_ascii_case(nick))
}

/// Whether two names are the same person's.
fn same_person_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// People among `members` and `others` (name keys): each counted once, whatever their
/// sessions and nodes.
fn people_with(members: &[Arc<Peer>], mut others: HashSet<String>) -> usize {
    others.extend(name_keys(members));
    others.len()
}

/// The name keys of `members` that have a name (a person with several sessions repeats).
fn name_keys(members: &[Arc<Peer>]) -> impl Iterator<Item = String> + '_ {
    members
        .iter()
        .filter_map(|m| m.nick().map(|n| name_key(&n)))
}

/// The device a published bundle (hex) names, when it is one this server reads.
fn device_of(hex: &str) -> Option<String> {
    let bytes = tlschat_proto::hex::decode(hex).ok()?;
    KeyBundle::decode(&bytes).ok().map(|bundle| bundle.device)
}

/// The peer's name, if it is verified by a certificate; else `ERR NOT_VERIFIED` about `what`.
fn require_verified(peer: &Peer, what: &str) -> Result<Arc<str>, Reply> {
    match peer.nick() {
        Some(nick) if peer.trust() == Trust::Verified => Ok(nick),
        _ => Err(Reply::err(
            ErrorCode::NotVerified,
            format!("{what} needs a client certificate (an identity others can check)"),
        )),
    }
}

fn require_nick(peer: &Peer) -> Result<Arc<str>, Reply> {
    peer.nick().ok_or_else(|| {
        Reply::err(
            ErrorCode::NoNick,
            "set a nickname with NICK first, or connect with a client certificate",
        )
    })
}

/// The nickname an event names.
fn event_nick(event: &Event) -> String {
    match event {
        Event::Part { nick, .. } | Event::Join { nick, .. } | Event::Quit { nick, .. } => {
            nick.clone()
        }
        _ => String::new(),
    }
}

/// A time as the protocol writes it: RFC 3339, UTC, milliseconds.
pub fn protocol_time(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(SecondsFormat::Millis, true)
}

mod cluster;
mod moderation;

#[cfg(test)]
mod tests;
