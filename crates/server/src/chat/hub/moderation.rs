//! Running rooms: `TOPIC`, `OP`/`DEOP`, `KICK #room`, `BAN`/`UNBAN`, `MODE`, `INVITE`, and the
//! checks `JOIN`, `ROOMS` and `HISTORY` make. The first verified user to join a room that has
//! no rules yet becomes its operator; operators and admins may act. Every change is kept in
//! the store (when there is one) and announced to the room as an event.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tlschat_proto::names::name_key;
use tlschat_proto::{DisconnectCode, ErrorCode, Event, ModeChange, Reply, Scope, Trust};

use super::{encode, require_nick, Hub};
use crate::chat::peer::Peer;
use crate::chat::rules::{encode_server_bans, RoomRules, ServerBan};
use crate::sync::lock;

/// The key the server's bans are kept under.
pub(super) const SERVER_BANS: &str = "*";

impl Hub {
    /// Whether `peer` may run `room`: an admin, or one of its operators (verified).
    fn may_run(&self, peer: &Peer, room: &str) -> bool {
        if peer.is_admin() {
            return true;
        }
        let Some(nick) = peer.nick().filter(|_| peer.trust() == Trust::Verified) else {
            return false;
        };
        lock(&self.rules)
            .get(room)
            .is_some_and(|r| r.operators.contains(&name_key(&nick)))
    }

    /// The refusal for someone who may not run `room`.
    fn not_operator(room: &str, what: &str) -> Reply {
        Reply::err(
            ErrorCode::NotOperator,
            format!("{what} in {room} is for its operators (and admins)"),
        )
    }

    /// Whether a room by this key exists: someone is in it, or it has rules.
    fn room_exists(&self, key: &str) -> bool {
        // One lock at a time: `admit_to_room` takes the rules, then the rooms.
        let occupied = lock(&self.rooms).contains_key(key);
        occupied || lock(&self.rules).contains_key(key)
    }

    /// Changes `room`'s rules with `change`, keeps them, and returns what `change` returned.
    fn change_rules<T>(&self, room: &str, change: impl FnOnce(&mut RoomRules) -> T) -> T {
        let mut all = lock(&self.rules);
        let rules = all.entry(room.to_owned()).or_default();
        let result = change(rules);
        let stored = rules.encode();
        drop(all);
        let key = room.to_owned();
        self.in_store("keep a room's rules", move |store| {
            store.put_setting(&key, Some(&stored))
        });
        result
    }

    /// Queues `event` for every member of `room`.
    fn announce(&self, room: &str, event: &Event) {
        let Some(room) = lock(&self.rooms).get(room).cloned() else {
            return;
        };
        let line = encode(event);
        for member in &lock(&room.state).members {
            let _ = member.outbox().push(line.clone());
        }
    }

    /// Checks made before `peer` (called `nick`) joins `room`: bans and invitations. A new
    /// room's first verified joiner becomes its operator.
    pub(super) fn admit_to_room(&self, peer: &Peer, nick: &str, room: &str) -> Result<(), Reply> {
        let name = name_key(nick);
        let mut all = lock(&self.rules);
        match all.get_mut(room) {
            Some(rules) => {
                if let Some((_, reason)) = rules.bans.get(&name) {
                    return Err(Reply::err(
                        ErrorCode::Banned,
                        format!("you are banned from {room}: {reason}"),
                    ));
                }
                let operator = peer.trust() == Trust::Verified && rules.operators.contains(&name);
                if rules.invite_only
                    && !operator
                    && !peer.is_admin()
                    && !rules.invited.contains(&name)
                {
                    return Err(Reply::err(
                        ErrorCode::InviteOnly,
                        format!("{room} is invite-only: ask one of its operators for an INVITE"),
                    ));
                }
                if rules.invited.remove(&name) {
                    drop(all);
                    self.change_rules(room, |_| ());
                }
            }
            None if peer.trust() == Trust::Verified && !lock(&self.rooms).contains_key(room) => {
                drop(all);
                self.change_rules(room, |rules| rules.operators.insert(name));
            }
            None => {}
        }
        Ok(())
    }

    /// After `peer` joined `room`: its topic, if it has one.
    pub(super) fn greet_member(&self, peer: &Peer, room: &str) {
        let topic = lock(&self.rules).get(room).and_then(|r| r.topic.clone());
        if let Some((by, text)) = topic {
            let _ = peer.outbox().push(encode(&Event::Topic {
                room: room.to_owned(),
                by,
                text,
            }));
        }
    }

    /// Whether `peer` may see `room` in `ROOMS`: it is not secret, or they are in it.
    pub(super) fn visible_to(&self, peer: &Peer, room: &str) -> bool {
        peer.room(room).is_some() || !lock(&self.rules).get(room).is_some_and(|r| r.secret)
    }

    /// Whether `name` is banned from `room` (for `HISTORY`).
    pub(super) fn banned_from(&self, name: &str, room: &str) -> bool {
        lock(&self.rules)
            .get(room)
            .is_some_and(|r| r.bans.contains_key(&name_key(name)))
    }

    /// `TOPIC #room [text]`: shows the topic (`OK text`, or `OK` when none), or sets it (`-`
    /// clears it).
    pub fn topic(&self, peer: &Arc<Peer>, room: &str, text: Option<&str>) -> Reply {
        let key = name_key(room);
        if !self.room_exists(&key) || !self.visible_to(peer, &key) {
            return Reply::err(ErrorCode::NoSuchRoom, format!("there is no room {key}"));
        }
        let Some(text) = text else {
            let topic = lock(&self.rules).get(&key).and_then(|r| r.topic.clone());
            return Reply::ok(topic.map(|(_, text)| text).unwrap_or_default());
        };
        if !self.may_run(peer, &key) {
            return Self::not_operator(&key, "setting the topic");
        }
        let by = peer.nick().map(|n| n.to_string()).unwrap_or_default();
        let topic = (text != "-").then(|| text.to_owned());
        self.change_rules(&key, |rules| {
            rules.topic = topic.clone().map(|text| (by.clone(), text));
        });
        self.announce(
            &key,
            &Event::Topic {
                room: key.clone(),
                by,
                text: topic.unwrap_or_default(),
            },
        );
        Reply::ok(key)
    }

    /// `OP #room nick` / `DEOP #room nick`: gives or takes the operator role (by verified name).
    pub fn op(&self, peer: &Arc<Peer>, room: &str, nick: &str, grant: bool) -> Reply {
        let key = name_key(room);
        if !self.may_run(peer, &key) {
            return Self::not_operator(&key, if grant { "OP" } else { "DEOP" });
        }
        let name = name_key(nick);
        let changed = self.change_rules(&key, |rules| {
            if grant {
                rules.operators.insert(name.clone())
            } else {
                rules.operators.remove(&name)
            }
        });
        if changed {
            self.announce(
                &key,
                &Event::Mode {
                    room: key.clone(),
                    by: peer.nick().map(|n| n.to_string()).unwrap_or_default(),
                    change: format!("{}o {name}", if grant { '+' } else { '-' }),
                },
            );
        }
        Reply::ok(key)
    }

    /// `KICK #room nick [reason]`: puts a member out of the room (they may join again unless
    /// banned).
    pub fn kick_from_room(
        &self,
        peer: &Arc<Peer>,
        room: &str,
        nick: &str,
        reason: Option<&str>,
    ) -> Reply {
        let key = name_key(room);
        if !self.may_run(peer, &key) {
            return Self::not_operator(&key, "KICK");
        }
        let by = peer.nick().map(|n| n.to_string()).unwrap_or_default();
        match self.put_out(&key, nick, &by, reason.unwrap_or("no reason given")) {
            true => Reply::ok(key),
            false => Reply::err(ErrorCode::NotInRoom, format!("{nick} is not in {key}")),
        }
    }

    /// Takes `nick` out of `room` (connected or not: a verified member's membership ends too),
    /// telling the room and them with `EVENT KICK`. Whether they were a member.
    fn put_out(&self, room: &str, nick: &str, by: &str, reason: &str) -> bool {
        let event = Event::Kick {
            room: room.to_owned(),
            nick: nick.to_owned(),
            by: by.to_owned(),
            reason: reason.to_owned(),
        };
        // Every session of theirs is told, with the room.
        let was_member = self.remove_person(room, nick, &event, None);
        // A verified member who is away stays a member in the store until this.
        let (user, key) = (name_key(nick), room.to_owned());
        self.in_store("end a membership", move |store| store.leave(&user, &key));
        was_member
    }

    /// `BAN #room name [reason]`: bars a name from joining and reading the room, and puts them
    /// out of it.
    pub fn ban_from_room(
        &self,
        peer: &Arc<Peer>,
        room: &str,
        name: &str,
        reason: Option<&str>,
    ) -> Reply {
        let key = name_key(room);
        if !self.may_run(peer, &key) {
            return Self::not_operator(&key, "BAN");
        }
        let by = peer.nick().map(|n| n.to_string()).unwrap_or_default();
        let reason = reason.unwrap_or("no reason given").to_owned();
        let target = name_key(name);
        self.change_rules(&key, |rules| {
            rules.operators.remove(&target);
            rules.invited.remove(&target);
            rules
                .bans
                .insert(target.clone(), (by.clone(), reason.clone()));
        });
        self.put_out(&key, name, &by, &format!("banned: {reason}"));
        self.announce(
            &key,
            &Event::Ban {
                room: key.clone(),
                name: target,
                by,
                reason,
            },
        );
        Reply::ok(key)
    }

    /// `UNBAN #room name`.
    pub fn unban_from_room(&self, peer: &Arc<Peer>, room: &str, name: &str) -> Reply {
        let key = name_key(room);
        if !self.may_run(peer, &key) {
            return Self::not_operator(&key, "UNBAN");
        }
        let target = name_key(name);
        if !self.change_rules(&key, |rules| rules.bans.remove(&target).is_some()) {
            return Reply::err(
                ErrorCode::NoSuchUser,
                format!("{name} is not banned from {key}"),
            );
        }
        self.announce(
            &key,
            &Event::Unban {
                room: key.clone(),
                name: target,
                by: peer.nick().map(|n| n.to_string()).unwrap_or_default(),
            },
        );
        Reply::ok(key)
    }

    /// `MODE #room [change]`: shows the modes and operators (`OK +is ops=alice,bob`), or
    /// changes one (`OK +is`).
    pub fn mode(&self, peer: &Arc<Peer>, room: &str, change: Option<ModeChange>) -> Reply {
        let key = name_key(room);
        if !self.room_exists(&key) || !self.visible_to(peer, &key) {
            return Reply::err(ErrorCode::NoSuchRoom, format!("there is no room {key}"));
        }
        let Some(change) = change else {
            let shown = lock(&self.rules).get(&key).map(|rules| {
                let ops: Vec<&str> = rules.operators.iter().map(String::as_str).collect();
                format!("{} ops={}", rules.modes(), ops.join(","))
            });
            return Reply::ok(shown.unwrap_or_else(|| "+ ops=".to_owned()));
        };
        if !self.may_run(peer, &key) {
            return Self::not_operator(&key, "MODE");
        }
        let modes = self.change_rules(&key, |rules| {
            match change {
                ModeChange::InviteOnly(on) => rules.invite_only = on,
                ModeChange::Secret(on) => rules.secret = on,
            }
            rules.modes()
        });
        self.announce(
            &key,
            &Event::Mode {
                room: key.clone(),
                by: peer.nick().map(|n| n.to_string()).unwrap_or_default(),
                change: change.to_string(),
            },
        );
        Reply::ok(modes)
    }

    /// `INVITE #room nick`: lets `nick` into the (invite-only) room once, and tells them.
    pub fn invite(&self, peer: &Arc<Peer>, room: &str, nick: &str) -> Reply {
        let key = name_key(room);
        if !self.may_run(peer, &key) {
            return Self::not_operator(&key, "INVITE");
        }
        let name = name_key(nick);
        self.change_rules(&key, |rules| {
            rules.bans.remove(&name);
            rules.invited.insert(name.clone());
        });
        let event = encode(&Event::Invite {
            room: key.clone(),
            by: peer.nick().map(|n| n.to_string()).unwrap_or_default(),
        });
        for target in lock(&self.users).sessions(&name) {
            let _ = target.outbox().push(event.clone());
        }
        Reply::ok(key)
    }

    /// `BAN * name [duration] [reason]` (admins): disconnects every session of `name` and
    /// refuses them at login until the ban ends.
    pub fn ban_from_server(
        &self,
        peer: &Arc<Peer>,
        name: &str,
        until: Option<DateTime<Utc>>,
        reason: Option<&str>,
    ) -> Reply {
        if !peer.is_admin() {
            return Reply::err(
                ErrorCode::Forbidden,
                "BAN * needs a client certificate with the admin role",
            );
        }
        let key = name_key(name);
        let ban = ServerBan {
            by: peer.nick().map(|n| n.to_string()).unwrap_or_default(),
            until_ms: until.map(|t| t.timestamp_millis()),
            reason: reason.unwrap_or("no reason given").to_owned(),
        };
        let why = ban_text(&ban);
        self.change_server_bans(|bans| {
            bans.insert(key.clone(), ban);
        });
        for target in lock(&self.users).sessions(&key) {
            target.disconnect(DisconnectCode::Banned, why.clone());
        }
        Reply::ok(key)
    }

    /// `UNBAN * name` (admins).
    pub fn unban_from_server(&self, peer: &Arc<Peer>, name: &str) -> Reply {
        if !peer.is_admin() {
            return Reply::err(
                ErrorCode::Forbidden,
                "UNBAN * needs a client certificate with the admin role",
            );
        }
        let key = name_key(name);
        if !self.change_server_bans(|bans| bans.remove(&key).is_some()) {
            return Reply::err(ErrorCode::NoSuchUser, format!("{name} is not banned"));
        }
        Reply::ok(key)
    }

    /// Why `peer` may not log in now, if they are banned from the server.
    pub fn server_ban_of(&self, peer: &Peer, now: DateTime<Utc>) -> Option<String> {
        let nick = peer.nick().filter(|_| peer.trust() == Trust::Verified)?;
        let bans = lock(&self.server_bans);
        let ban = bans.get(&name_key(&nick))?;
        ban.active(now.timestamp_millis()).then(|| ban_text(ban))
    }

    fn change_server_bans<T>(
        &self,
        change: impl FnOnce(&mut std::collections::BTreeMap<String, ServerBan>) -> T,
    ) -> T {
        let mut bans = lock(&self.server_bans);
        let result = change(&mut bans);
        let stored = encode_server_bans(&bans);
        drop(bans);
        self.in_store("keep the server's bans", move |store| {
            store.put_setting(SERVER_BANS, Some(&stored))
        });
        result
    }

    /// `BAN` and `UNBAN` for either scope.
    pub fn ban(
        &self,
        peer: &Arc<Peer>,
        scope: &Scope,
        name: &str,
        until: Option<DateTime<Utc>>,
        reason: Option<&str>,
    ) -> Reply {
        if let Err(reply) = require_nick(peer) {
            return reply;
        }
        match scope {
            Scope::Server => self.ban_from_server(peer, name, until, reason),
            Scope::Room(room) => self.ban_from_room(peer, room, name, reason),
        }
    }
}

/// What a banned user is told.
fn ban_text(ban: &ServerBan) -> String {
    let until = match ban
        .until_ms
        .and_then(DateTime::<Utc>::from_timestamp_millis)
    {
        Some(until) => format!(" until {}", until.format("%Y-%m-%d %H:%M UTC")),
        None => String::new(),
    };
    format!(
        "you are banned from this server{until} by {}: {}",
        ban.by, ban.reason
    )
}
