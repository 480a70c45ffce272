use std::sync::Arc;

use tlschat_proto::{DisconnectCode, ErrorCode, Event, Reply, ServerLine, Trust};

use chrono::{DateTime, Utc};

use super::Hub;
use crate::chat::Peer;
use crate::chat::Sent;
use crate::sync::lock;

const TIME: &str = "2026-11-21T09:30:00.000Z";

/// [`TIME`] as a time.
fn at(time: &str) -> DateTime<Utc> {
    time.parse().unwrap()
}

/// The replies of a hub without a store: given at once.
fn all(sent: Sent) -> Vec<Reply> {
    match sent {
        Sent::Now(replies) => replies,
        Sent::Later(_) => panic!("a hub without a store answers at once"),
    }
}

/// The one reply of a request to a hub without a store.
fn one(sent: Sent) -> Reply {
    let mut replies = all(sent);
    assert_eq!(replies.len(), 1);
    replies.remove(0)
}

/// One room message, through the one route room messages take.
fn say(hub: &Hub, peer: &Arc<Peer>, room: &str, text: &str, time: &str) -> Reply {
    one(hub.message_room_batch(peer, room, &[text.to_owned()], at(time)))
}

fn verified(hub: &Hub, nick: &str) -> Arc<Peer> {
    registered(hub, nick, false)
}

/// A verified peer, an admin when `admin`, registered with the hub.
fn registered(hub: &Hub, nick: &str, admin: bool) -> Arc<Peer> {
    let peer = Peer::new(
        hub.next_peer_id(),
        Some(nick.into()),
        Trust::Verified,
        admin,
        1 << 20,
    );
    hub.register_verified(&peer);
    peer
}

fn unverified(hub: &Hub) -> Arc<Peer> {
    Peer::new(hub.next_peer_id(), None, Trust::Unverified, false, 1 << 20)
}

/// Everything queued for a peer, parsed.
fn events(peer: &Peer) -> Vec<Event> {
    let mut out = Vec::new();
    peer.outbox().drain_into(&mut out);
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|line| match ServerLine::parse(line).unwrap() {
            ServerLine::Event(event) => event,
            other => panic!("not an event: {other:?}"),
        })
        .collect()
}

fn code(reply: Reply) -> ErrorCode {
    match reply {
        Reply::Err(err) => err.code,
        Reply::Ok(payload) => panic!("expected an error, got OK {payload}"),
    }
}

#[test]
fn room_messages_reach_every_member_but_the_sender_in_order() {
    let hub = Hub::new();
    let (alice, bob, carol) = (
        verified(&hub, "alice"),
        verified(&hub, "bob"),
        verified(&hub, "carol"),
    );
    for peer in [&alice, &bob, &carol] {
        assert_eq!(hub.join(peer, "#General"), Reply::ok("#general"));
    }
    events(&alice);
    events(&bob);
    assert_eq!(say(&hub, &alice, "#general", "one", TIME), Reply::ok("1"));
    assert_eq!(say(&hub, &bob, "#GENERAL", "two", TIME), Reply::ok("2"));
    let carol_sees: Vec<(u64, String, String)> = events(&carol)
        .into_iter()
        .filter_map(|e| match e {
            Event::Message { id, from, text, .. } => Some((id, from, text)),
            _ => None,
        })
        .collect();
    assert_eq!(
        carol_sees,
        vec![
            (1, "alice".into(), "one".into()),
            (2, "bob".into(), "two".into())
        ]
    );
    assert!(events(&alice)
        .iter()
        .all(|e| !matches!(e, Event::Message { from, .. } if from == "alice")));
}

#[test]
fn members_see_joins_parts_and_quits() {
    let hub = Hub::new();
    let (alice, bob) = (verified(&hub, "alice"), verified(&hub, "bob"));
    hub.join(&alice, "#r");
    hub.join(&bob, "#r");
    assert_eq!(hub.part(&bob, "#r"), Reply::ok("#r"));
    hub.join(&bob, "#r");
    hub.leave_all(&bob, "connection lost", b"");
    let seen = events(&alice);
    assert!(matches!(&seen[0], Event::Join { nick, trust: Trust::Verified, .. } if nick == "bob"));
    assert!(matches!(&seen[1], Event::Part { nick, .. } if nick == "bob"));
    assert!(
        matches!(&seen[3], Event::Quit { nick, reason, .. } if nick == "bob" && reason == "connection lost")
    );
    assert_eq!(hub.who("#r"), Reply::ok("alice=verified"));
    assert_eq!(
        code(one(hub.message_user(&alice, "bob", "gone?", at(TIME)))),
        ErrorCode::NoSuchUser
    );
}

#[test]
fn empty_rooms_disappear() {
    let hub = Hub::new();
    let alice = verified(&hub, "alice");
    hub.join(&alice, "#a");
    hub.join(&alice, "#b");
    assert_eq!(hub.list_rooms(&alice), Reply::ok("#a=1 #b=1"));
    hub.part(&alice, "#a");
    assert_eq!(hub.room_count(), 1);
    hub.leave_all(&alice, "bye", b"");
    assert_eq!(hub.room_count(), 0);
    assert_eq!(hub.user_count(), 0);
    assert_eq!(code(hub.who("#a")), ErrorCode::NoSuchRoom);
}

#[test]
fn chat_errors_are_specific() {
    let hub = Hub::new();
    let alice = verified(&hub, "alice");
    let anon = unverified(&hub);
    assert_eq!(code(hub.join(&anon, "#r")), ErrorCode::NoNick);
    assert_eq!(
        code(say(&hub, &alice, "#nowhere", "hi", TIME)),
        ErrorCode::NotInRoom
    );
    hub.join(&alice, "#r");
    assert_eq!(
        hub.join(&alice, "#R"),
        Reply::ok("#r"),
        "joining again is a no-op"
    );
    assert_eq!(code(hub.part(&alice, "#other")), ErrorCode::NotInRoom);
    let bob = verified(&hub, "bob");
    assert_eq!(
        code(say(&hub, &bob, "#r", "not a member", TIME)),
        ErrorCode::NotInRoom
    );
    assert_eq!(code(hub.kick(&bob, "alice", None)), ErrorCode::Forbidden);
}

#[test]
fn certificate_names_cannot_be_changed_or_claimed() {
    let hub = Hub::new();
    let alice = verified(&hub, "alice");
    assert_eq!(code(hub.set_nick(&alice, "mallory")), ErrorCode::NickLocked);
    assert_eq!(hub.set_nick(&alice, "Alice"), Reply::ok("alice"));
    let anon = unverified(&hub);
    assert_eq!(code(hub.set_nick(&anon, "ALICE")), ErrorCode::NickTaken);
    assert_eq!(
        hub.set_nick(&anon, "guest"),
        Reply::ok("guest (unverified)")
    );
    let other = unverified(&hub);
    assert_eq!(code(hub.set_nick(&other, "Guest")), ErrorCode::NickTaken);
}

#[test]
fn a_verified_owner_reclaims_a_nickname_and_past_the_session_limit_the_oldest_goes() {
    let hub = Hub::new().with_user_limits(2, 8);
    let squatter = unverified(&hub);
    hub.set_nick(&squatter, "bob");
    let bob = verified(&hub, "bob");
    assert_eq!(
        squatter.disconnect_reason().unwrap().code,
        DisconnectCode::NickReclaimed
    );
    // A second session is fine; a third, past the limit of 2, replaces the oldest.
    let bob_phone = verified(&hub, "bob");
    assert!(bob.disconnect_reason().is_none());
    let bob_third = verified(&hub, "bob");
    let replaced = bob.disconnect_reason().unwrap();
    assert_eq!(replaced.code, DisconnectCode::Replaced);
    assert!(
        replaced.reason.contains("2 connections"),
        "{}",
        replaced.reason
    );
    assert!(bob_phone.disconnect_reason().is_none());
    assert!(bob_third.disconnect_reason().is_none());
    // The old connections' cleanup must not unregister the new ones.
    hub.leave_all(&squatter, "reclaimed", b"");
    hub.leave_all(&bob, "replaced", b"");
    let alice = verified(&hub, "alice");
    assert_eq!(
        one(hub.message_user(&alice, "bob", "still there?", at(TIME))),
        Reply::ok("1 verified")
    );
    for session in [&bob_phone, &bob_third] {
        assert!(
            matches!(&events(session)[..], [Event::Direct { text, .. }] if text == "still there?")
        );
    }
    assert_eq!(hub.user_count(), 2, "bob counts once");
}

#[test]
fn every_session_of_a_person_is_in_their_rooms_and_the_room_sees_the_person_once() {
    let hub = Hub::new();
    let (alice, bob) = (verified(&hub, "alice"), verified(&hub, "bob"));
    hub.join(&alice, "#r");
    hub.join(&bob, "#r");
    events(&alice);
    events(&bob);
    // Alice's phone connects: it is in #r at once, told so; bob hears nothing.
    let phone = verified(&hub, "alice");
    assert!(
        matches!(&events(&phone)[..], [Event::Join { room, nick, .. }] if room == "#r" && nick == "alice")
    );
    assert!(events(&bob).is_empty(), "the person was already there");
    assert_eq!(hub.who("#r"), Reply::ok("alice=verified bob=verified"));
    assert_eq!(hub.list_rooms(&bob), Reply::ok("#r=2"));

    // A room message reaches both of alice's sessions; what one sends shows on the other.
    assert_eq!(say(&hub, &bob, "#r", "hi", TIME), Reply::ok("1"));
    assert_eq!(say(&hub, &alice, "#r", "hello", TIME), Reply::ok("2"));
    let texts = |peer: &Peer| -> Vec<(String, String)> {
        events(peer)
            .into_iter()
            .filter_map(|e| match e {
                Event::Message { from, text, .. } | Event::Direct { from, text, .. } => {
                    Some((from, text))
                }
                _ => None,
            })
            .collect()
    };
    assert_eq!(texts(&alice), [("bob".into(), "hi".into())]);
    assert_eq!(
        texts(&phone),
        [
            ("bob".to_owned(), "hi".to_owned()),
            ("alice".into(), "hello".into())
        ]
    );
    assert_eq!(texts(&bob), [("alice".into(), "hello".into())]);

    // Direct messages: to every session of the recipient, and a copy to the sender's others.
    one(hub.message_user(&bob, "alice", "dm", at(TIME)));
    assert_eq!(texts(&alice), [("bob".into(), "dm".into())]);
    assert_eq!(texts(&phone), [("bob".into(), "dm".into())]);
    one(hub.message_user(&alice, "bob", "back", at(TIME)));
    assert_eq!(texts(&bob), [("alice".into(), "back".into())]);
    let copy = events(&phone);
    assert!(
        matches!(&copy[..], [Event::Direct { from, to, text, .. }] if from == "alice" && to == "bob" && text == "back"),
        "{copy:?}"
    );

    // One session leaving is not the person leaving.
    hub.leave_all(&phone, "phone off", b"");
    assert!(events(&bob).is_empty(), "no QUIT while alice is still here");
    let phone = verified(&hub, "alice");
    events(&phone);
    // PART from one session: the person leaves, every session is told and out.
    assert_eq!(hub.part(&alice, "#r"), Reply::ok("#r"));
    assert!(matches!(&events(&bob)[..], [Event::Part { nick, .. }] if nick == "alice"));
    assert!(matches!(&events(&phone)[..], [Event::Part { nick, .. }] if nick == "alice"));
    assert!(phone.room("#r").is_none() && alice.room("#r").is_none());
    assert_eq!(hub.who("#r"), Reply::ok("bob=verified"));
    // JOIN from one session puts the others in too, and tells them.
    assert_eq!(hub.join(&phone, "#r"), Reply::ok("#r"));
    assert!(alice.room("#r").is_some());
    assert!(
        matches!(&events(&alice)[..], [Event::Join { nick, .. }] if nick == "alice"),
        "told it is in the room"
    );
    assert_eq!(events(&bob).len(), 1, "one JOIN for the person");
}

#[test]
fn a_server_ban_and_an_admin_kick_reach_every_session() {
    let hub = Hub::new();
    let root = registered(&hub, "root", true);
    let (laptop, phone) = (verified(&hub, "mallory"), verified(&hub, "mallory"));
    assert_eq!(
        hub.kick(&root, "mallory", None),
        Reply::ok("kicked mallory")
    );
    for session in [&laptop, &phone] {
        assert_eq!(
            session.disconnect_reason().unwrap().code,
            DisconnectCode::Kicked
        );
        hub.leave_all(session, "kicked", b"");
    }
    let (laptop, phone) = (verified(&hub, "mallory"), verified(&hub, "mallory"));
    let scope = tlschat_proto::moderation::Scope::Server;
    assert_eq!(
        hub.ban(&root, &scope, "mallory", None, Some("spam")),
        Reply::ok("mallory")
    );
    for session in [&laptop, &phone] {
        assert_eq!(
            session.disconnect_reason().unwrap().code,
            DisconnectCode::Banned
        );
    }
}

#[test]
fn unverified_renames_are_announced_to_rooms() {
    let hub = Hub::new();
    let alice = verified(&hub, "alice");
    let guest = unverified(&hub);
    hub.set_nick(&guest, "guest");
    hub.join(&alice, "#r");
    hub.join(&guest, "#r");
    events(&alice);
    hub.set_nick(&guest, "erin");
    assert_eq!(
        events(&alice),
        vec![Event::Nick {
            room: "#r".into(),
            old: "guest".into(),
            new: "erin".into()
        }]
    );
    assert_eq!(hub.who("#r"), Reply::ok("alice=verified erin=unverified"));
    say(&hub, &guest, "#r", "hi", TIME);
    assert!(
        matches!(&events(&alice)[0], Event::Message { from, trust: Trust::Unverified, .. } if from == "erin")
    );
}

#[test]
fn admins_kick_with_a_reason() {
    let hub = Hub::new();
    let root = Peer::new(
        hub.next_peer_id(),
        Some("root".into()),
        Trust::Verified,
        true,
        1 << 20,
    );
    hub.register_verified(&root);
    let eve = verified(&hub, "eve");
    assert_eq!(
        hub.kick(&root, "eve", Some("spam")),
        Reply::ok("kicked eve")
    );
    let reason = eve.disconnect_reason().unwrap();
    assert_eq!(
        (reason.code, reason.reason.as_str()),
        (DisconnectCode::Kicked, "kicked by root: spam")
    );
    assert_eq!(code(hub.kick(&root, "nobody", None)), ErrorCode::NoSuchUser);
}

#[test]
fn a_slow_member_is_cut_off_without_holding_up_the_room() {
    let hub = Hub::new();
    let alice = verified(&hub, "alice");
    let slow = Peer::new(
        hub.next_peer_id(),
        Some("slow".into()),
        Trust::Verified,
        false,
        300,
    );
    hub.register_verified(&slow);
    let bob = verified(&hub, "bob");
    for peer in [&alice, &slow, &bob] {
        hub.join(peer, "#r");
    }
    events(&bob);
    for i in 0..20 {
        assert_eq!(
            say(&hub, &alice, "#r", &format!("message {i}"), TIME),
            Reply::ok((i + 1).to_string())
        );
    }
    assert_eq!(
        slow.disconnect_reason().unwrap().code,
        DisconnectCode::SlowConsumer
    );
    assert_eq!(events(&bob).len(), 20, "the others get every message");
}

#[test]
fn room_limits_are_enforced_with_clear_errors() {
    let hub = Hub::with_limits(
        super::RoomLimits {
            per_user: 2,
            members: 2,
        },
        10,
    );
    let alice = verified(&hub, "alice");
    assert_eq!(hub.join(&alice, "#a"), Reply::ok("#a"));
    assert_eq!(hub.join(&alice, "#b"), Reply::ok("#b"));
    assert_eq!(code(hub.join(&alice, "#c")), ErrorCode::TooManyRooms);
    assert_eq!(
        hub.join(&alice, "#a"),
        Reply::ok("#a"),
        "a room one is in: not TOO_MANY_ROOMS"
    );
    let bob = verified(&hub, "bob");
    let carol = verified(&hub, "carol");
    assert_eq!(hub.join(&bob, "#a"), Reply::ok("#a"));
    assert_eq!(code(hub.join(&carol, "#a")), ErrorCode::RoomFull);
    hub.part(&bob, "#a");
    assert_eq!(hub.join(&carol, "#a"), Reply::ok("#a"));
}

/// Certificates for `names` from a fresh CA, DER.
fn certificates(names: &[&str]) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let mut options = tlschat_certgen::Options::new(dir.path());
    options.clients = names.iter().map(|n| n.to_string()).collect();
    tlschat_certgen::generate(&options).unwrap();
    names
        .iter()
        .map(|n| {
            let path = dir.path().join(format!("{n}.pem"));
            tlschat_tls::load_certs(&path, "certificate").unwrap()[0].to_vec()
        })
        .collect()
}

#[test]
fn e2e_keys_are_filed_under_their_verified_owner_only() {
    let hub = Hub::new();
    let (alice, bob, anon) = (
        verified(&hub, "alice"),
        verified(&hub, "bob"),
        unverified(&hub),
    );
    let certs = certificates(&["alice", "bob"]);
    let bundle = |cert: &[u8]| tlschat_proto::e2e::KeyBundle {
        public_key: vec![1; 32],
        device: "laptop".into(),
        cert: cert.to_vec(),
        signature: vec![2; 70],
    };
    assert_eq!(code(hub.key_of("alice")), ErrorCode::NoKey);
    assert_eq!(
        hub.publish_key(&alice, &bundle(&certs[0]), "01aa"),
        Reply::ok("published")
    );
    assert_eq!(hub.key_of("ALICE"), Reply::ok("01aa"));
    // A second device: both offered, by device name; then one withdrawn.
    let phone = tlschat_proto::e2e::KeyBundle {
        device: "phone".into(),
        ..bundle(&certs[0])
    };
    assert_eq!(
        hub.publish_key(&alice, &phone, "01ab"),
        Reply::ok("published")
    );
    assert_eq!(hub.key_of("alice"), Reply::ok("01aa 01ab"));
    assert_eq!(
        code(hub.withdraw_key(&alice, "tablet")),
        ErrorCode::NoKey,
        "no such device"
    );
    assert_eq!(
        hub.withdraw_key(&alice, "phone"),
        Reply::ok("withdrawn phone")
    );
    // At most --max-devices-per-user devices: a new one past it is refused, a known one is not.
    let few = Hub::new().with_user_limits(8, 1);
    let carol = verified(&few, "alice");
    assert_eq!(
        few.publish_key(&carol, &bundle(&certs[0]), "01aa"),
        Reply::ok("published")
    );
    assert_eq!(
        code(few.publish_key(&carol, &phone, "01ab")),
        ErrorCode::TooManyDevices
    );
    assert_eq!(
        few.publish_key(&carol, &bundle(&certs[0]), "01a2"),
        Reply::ok("published")
    );
    assert_eq!(hub.key_of("alice"), Reply::ok("01aa"));
    assert_eq!(
        code(hub.withdraw_key(&anon, "phone")),
        ErrorCode::NotVerified
    );
    // Bob cannot file a bundle holding alice's certificate; nobody unverified can publish.
    assert_eq!(
        code(hub.publish_key(&bob, &bundle(&certs[0]), "01bb")),
        ErrorCode::BadArgs
    );
    assert_eq!(
        code(hub.publish_key(&anon, &bundle(&certs[1]), "01bb")),
        ErrorCode::NotVerified
    );
    // The key outlives the connection.
    hub.leave_all(&alice, "bye", b"");
    assert_eq!(hub.key_of("alice"), Reply::ok("01aa"));
    assert_eq!(hub.key_count(), 1);
}

#[test]
fn e2e_messages_are_relayed_as_sent_from_verified_senders_only() {
    let hub = Hub::new();
    let (alice, bob, anon) = (
        verified(&hub, "alice"),
        verified(&hub, "bob"),
        unverified(&hub),
    );
    assert_eq!(
        one(hub.message_e2e(&alice, "Bob", "01ff", at(TIME))),
        Reply::ok("1 verified")
    );
    assert_eq!(
        events(&bob),
        [Event::E2e {
            id: 1,
            from: "alice".into(),
            to: "bob".into(),
            trust: Trust::Verified,
            time: TIME.into(),
            sealed: "01ff".into(),
        }]
    );
    assert_eq!(
        hub.set_nick(&anon, "mallory"),
        Reply::ok("mallory (unverified)")
    );
    assert_eq!(
        code(one(hub.message_e2e(&anon, "bob", "01ff", at(TIME)))),
        ErrorCode::NotVerified
    );
    assert_eq!(
        code(one(hub.message_e2e(&alice, "nobody", "01ff", at(TIME)))),
        ErrorCode::NoSuchUser
    );
    assert!(events(&bob).is_empty());
}

#[test]
fn a_batch_of_room_messages_is_numbered_in_order_and_queued_once_per_member() {
    let hub = Hub::new();
    let (alice, bob, carol) = (
        verified(&hub, "alice"),
        verified(&hub, "bob"),
        verified(&hub, "carol"),
    );
    for peer in [&alice, &bob] {
        hub.join(peer, "#r");
    }
    events(&alice);
    assert_eq!(say(&hub, &alice, "#r", "first", TIME), Reply::ok("1"));
    let texts: Vec<String> = ["two", "three", "four"].map(String::from).to_vec();
    assert_eq!(
        all(hub.message_room_batch(&alice, "#R", &texts, at(TIME))),
        [Reply::ok("2"), Reply::ok("3"), Reply::ok("4")]
    );
    let got: Vec<(u64, String)> = events(&bob)
        .into_iter()
        .filter_map(|e| match e {
            Event::Message { id, text, .. } => Some((id, text)),
            _ => None,
        })
        .collect();
    assert_eq!(
        got,
        [(1, "first"), (2, "two"), (3, "three"), (4, "four")].map(|(i, t)| (i, t.to_owned()))
    );
    assert!(events(&alice).is_empty(), "not to the sender");
    // Someone outside the room gets one refusal per message, and nothing is numbered.
    let refused = all(hub.message_room_batch(&carol, "#r", &texts, at(TIME)));
    assert_eq!(refused.len(), 3);
    assert!(refused
        .iter()
        .all(|r| code(r.clone()) == ErrorCode::NotInRoom));
    assert_eq!(say(&hub, &alice, "#r", "five", TIME), Reply::ok("5"));
}

#[test]
fn a_name_seen_with_a_certificate_stays_reserved_while_its_owner_is_away() {
    let hub = Hub::new();
    let alice = verified(&hub, "alice");
    hub.leave_all(&alice, "bye", b"");
    let squatter = unverified(&hub);
    let refused = hub.set_nick(&squatter, "ALICE");
    assert_eq!(code(refused.clone()), ErrorCode::NickTaken);
    assert!(
        refused.to_string().contains("belongs to a verified user"),
        "{refused}"
    );
    assert_eq!(
        code(one(hub.message_user(
            &verified(&hub, "bob"),
            "alice",
            "the plan",
            at(TIME)
        ))),
        ErrorCode::NoSuchUser,
        "nobody receives alice's messages while she is away"
    );
}

#[test]
fn a_dm_reply_says_whether_the_recipient_is_verified() {
    let hub = Hub::new();
    let alice = verified(&hub, "alice");
    let guest = unverified(&hub);
    hub.set_nick(&guest, "guest");
    assert_eq!(
        one(hub.message_user(&alice, "guest", "hi", at(TIME))),
        Reply::ok("1 unverified")
    );
    assert_eq!(
        one(hub.message_user(&guest, "alice", "hi", at(TIME))),
        Reply::ok("2 verified")
    );
}

#[test]
fn a_flood_of_dms_is_refused_to_the_sender_and_never_cuts_the_recipient_off() {
    let hub = Hub::new().with_max_dm_bytes(1000);
    let bob = verified(&hub, "bob");
    let mallory = unverified(&hub);
    hub.set_nick(&mallory, "mallory");
    let long = "x".repeat(1001);
    assert_eq!(
        code(one(hub.message_user(&mallory, "bob", &long, at(TIME)))),
        ErrorCode::TooLong
    );
    let text = "y".repeat(1000);
    let busy = (0..2000)
        .map(|_| one(hub.message_user(&mallory, "bob", &text, at(TIME))))
        .filter(|reply| matches!(reply, Reply::Err(e) if e.code == ErrorCode::TargetBusy))
        .count();
    assert!(busy > 0, "the queue filled up");
    assert!(bob.disconnect_reason().is_none(), "bob stays connected");
}

#[test]
fn the_largest_e2e_message_fits_the_direct_message_limit() {
    let hub = Hub::new();
    let (alice, _bob) = (verified(&hub, "alice"), verified(&hub, "bob"));
    // 16 KiB of text sealed: header, encapsulated key, tag and signature on top, in hex.
    let sealed = "ab".repeat(tlschat_proto::e2e::MAX_TEXT_LEN + 300);
    assert_eq!(
        one(hub.message_e2e(&alice, "bob", &sealed, at(TIME))),
        Reply::ok("1 verified")
    );
}

fn admin(hub: &Hub, nick: &str) -> Arc<Peer> {
    registered(hub, nick, true)
}

#[test]
fn a_rooms_creator_runs_it_and_others_are_refused_each_power() {
    use tlschat_proto::{ModeChange, Scope};
    let hub = Hub::new();
    let (alice, bob, carol) = (
        verified(&hub, "alice"),
        verified(&hub, "bob"),
        verified(&hub, "carol"),
    );
    assert_eq!(hub.join(&alice, "#ops"), Reply::ok("#ops"));
    hub.join(&bob, "#ops");
    // Bob is no operator: every power is refused with NOT_OPERATOR.
    for reply in [
        hub.topic(&bob, "#ops", Some("mine now")),
        hub.op(&bob, "#ops", "bob", true),
        hub.kick_from_room(&bob, "#ops", "alice", None),
        hub.ban(&bob, &Scope::Room("#ops".into()), "alice", None, None),
        hub.unban_from_room(&bob, "#ops", "alice"),
        hub.mode(&bob, "#ops", Some(ModeChange::InviteOnly(true))),
        hub.invite(&bob, "#ops", "carol"),
    ] {
        assert_eq!(code(reply), ErrorCode::NotOperator);
    }
    assert_eq!(
        code(hub.ban(&alice, &Scope::Server, "bob", None, None)),
        ErrorCode::Forbidden,
        "server bans are for admins"
    );
    events(&bob);
    // Alice, the creator, sets the topic: everyone in the room is told; newcomers see it.
    assert_eq!(
        hub.topic(&alice, "#ops", Some("deploys: not on Fridays")),
        Reply::ok("#ops")
    );
    assert!(events(&bob).contains(&Event::Topic {
        room: "#ops".into(),
        by: "alice".into(),
        text: "deploys: not on Fridays".into()
    }));
    assert_eq!(
        hub.topic(&carol, "#ops", None),
        Reply::ok("deploys: not on Fridays")
    );
    hub.join(&carol, "#ops");
    assert!(events(&carol)
        .iter()
        .any(|e| matches!(e, Event::Topic { text, .. } if text == "deploys: not on Fridays")));
    // Bob made operator can act; the change is announced.
    assert_eq!(hub.op(&alice, "#ops", "bob", true), Reply::ok("#ops"));
    assert!(events(&carol).contains(&Event::Mode {
        room: "#ops".into(),
        by: "alice".into(),
        change: "+o bob".into()
    }));
    assert_eq!(
        hub.kick_from_room(&bob, "#ops", "carol", Some("test")),
        Reply::ok("#ops")
    );
    assert!(carol.room("#ops").is_none(), "out of the room");
    assert!(events(&carol)
        .iter()
        .any(|e| matches!(e, Event::Kick { nick, .. } if nick == "carol")));
    assert_eq!(
        hub.join(&carol, "#ops"),
        Reply::ok("#ops"),
        "a kick is no ban"
    );
    assert_eq!(
        code(hub.kick_from_room(&bob, "#ops", "nobody", None)),
        ErrorCode::NotInRoom
    );
}

#[test]
fn bans_and_invitations_decide_who_joins_and_secret_rooms_hide() {
    use tlschat_proto::{ModeChange, Scope};
    let hub = Hub::new();
    let (alice, bob, carol) = (
        verified(&hub, "alice"),
        verified(&hub, "bob"),
        verified(&hub, "carol"),
    );
    hub.join(&alice, "#ops");
    hub.join(&bob, "#ops");
    assert_eq!(
        hub.ban(
            &alice,
            &Scope::Room("#ops".into()),
            "bob",
            None,
            Some("spam")
        ),
        Reply::ok("#ops")
    );
    assert!(bob.room("#ops").is_none(), "a ban puts them out");
    assert_eq!(code(hub.join(&bob, "#ops")), ErrorCode::Banned);
    assert_eq!(
        hub.unban_from_room(&alice, "#ops", "bob"),
        Reply::ok("#ops")
    );
    assert_eq!(hub.join(&bob, "#ops"), Reply::ok("#ops"));
    assert_eq!(
        code(hub.unban_from_room(&alice, "#ops", "bob")),
        ErrorCode::NoSuchUser
    );

    assert_eq!(
        hub.mode(&alice, "#ops", Some(ModeChange::InviteOnly(true))),
        Reply::ok("+i")
    );
    assert_eq!(code(hub.join(&carol, "#ops")), ErrorCode::InviteOnly);
    events(&carol);
    assert_eq!(hub.invite(&alice, "#ops", "carol"), Reply::ok("#ops"));
    assert!(events(&carol).contains(&Event::Invite {
        room: "#ops".into(),
        by: "alice".into()
    }));
    assert_eq!(hub.join(&carol, "#ops"), Reply::ok("#ops"));
    hub.part(&carol, "#ops");
    assert_eq!(
        code(hub.join(&carol, "#ops")),
        ErrorCode::InviteOnly,
        "an invitation lets in once"
    );

    assert_eq!(
        hub.mode(&alice, "#ops", Some(ModeChange::Secret(true))),
        Reply::ok("+is")
    );
    assert_eq!(hub.mode(&bob, "#ops", None), Reply::ok("+is ops=alice"));
    assert_eq!(hub.list_rooms(&alice), Reply::ok("#ops=2"));
    assert_eq!(
        hub.list_rooms(&carol),
        Reply::ok(""),
        "secret to non-members"
    );
    assert_eq!(code(hub.topic(&carol, "#ops", None)), ErrorCode::NoSuchRoom);
}

#[test]
fn a_server_ban_disconnects_every_session_and_refuses_login_until_it_ends() {
    use tlschat_proto::Scope;
    let hub = Hub::new();
    let root = admin(&hub, "root");
    let bob = verified(&hub, "bob");
    let now = at(TIME);
    let until = now + chrono::Duration::hours(1);
    assert_eq!(
        hub.ban(&root, &Scope::Server, "bob", Some(until), Some("spam")),
        Reply::ok("bob")
    );
    let told = bob.disconnect_reason().expect("bob is cut off");
    assert_eq!(told.code, DisconnectCode::Banned);
    assert!(told.reason.contains("spam"), "{}", told.reason);
    let again = Peer::new(
        hub.next_peer_id(),
        Some("bob".into()),
        Trust::Verified,
        false,
        1 << 20,
    );
    assert!(hub.server_ban_of(&again, now).is_some());
    assert!(hub.server_ban_of(&again, until).is_none(), "it ends");
    assert_eq!(hub.unban_from_server(&root, "bob"), Reply::ok("bob"));
    assert!(hub.server_ban_of(&again, now).is_none());
}

/// Name claims across a cluster, as a set (the real ones are a JetStream bucket, tested end
/// to end in tests/cluster.rs).
#[derive(Default)]
struct Claims(std::sync::Mutex<std::collections::HashSet<String>>);

impl crate::chat::presence::NameClaims for Claims {
    fn claim(&self, name: &str) -> Result<bool, crate::store::StoreError> {
        Ok(self.0.lock().unwrap().insert(name.to_owned()))
    }

    fn release(&self, names: Vec<String>) {
        let mut held = self.0.lock().unwrap();
        for name in names {
            held.remove(&name);
        }
    }
}

/// A hub that is node `me` of a cluster, with `claims`.
fn clustered(claims: Arc<Claims>) -> Hub {
    clustered_waiting(claims, crate::config::CLUSTER_HOLE_WAIT)
}

/// [`clustered`], waiting at most `hole_wait` for an id another node took.
fn clustered_waiting(claims: Arc<Claims>, hole_wait: std::time::Duration) -> Hub {
    let link = crate::chat::presence::ClusterLink::new(
        "me".into(),
        Vec::new(),
        claims,
        std::time::Duration::from_secs(15),
        hole_wait,
    );
    Hub::new().in_cluster(link)
}

#[test]
fn people_on_other_nodes_count_in_who_and_rooms_and_are_told_once() {
    let hub = clustered(Arc::default());
    let alice = verified(&hub, "alice");
    assert!(matches!(hub.join(&alice, "#ops"), Reply::Ok(_)));
    events(&alice);
    let zero = std::time::Duration::ZERO;
    // Bob is in #ops on node two, and (a second device) on node three.
    hub.apply_presence("two", "bob", Some("verified bob #ops"), zero);
    hub.apply_presence("three", "bob", Some("verified bob #ops #dev"), zero);
    assert_eq!(
        events(&alice),
        [Event::Join {
            room: "#ops".into(),
            nick: "bob".into(),
            trust: Trust::Verified
        }]
    );
    assert_eq!(hub.who("#ops"), Reply::ok("alice=verified bob=verified"));
    assert_eq!(hub.who("#dev"), Reply::ok("bob=verified"));
    assert_eq!(hub.list_rooms(&alice), Reply::ok("#dev=1 #ops=2"));
    // This node's own entries, coming back from the cluster, change nothing.
    hub.apply_presence("me", "alice", None, zero);
    assert_eq!(hub.who("#ops"), Reply::ok("alice=verified bob=verified"));
    // Gone from one node: still there. Gone from the last: a quit, once.
    hub.apply_presence("two", "bob", None, zero);
    assert!(events(&alice).is_empty());
    hub.apply_presence("three", "bob", None, zero);
    assert!(matches!(
        &events(&alice)[..],
        [Event::Quit { nick, reason, .. }] if nick == "bob" && reason == "disconnected"
    ));
    assert_eq!(hub.who("#ops"), Reply::ok("alice=verified"));
    // What this node's people did is marked for the cluster, with their rooms.
    let marked = hub.take_presence(false);
    assert!(
        marked.contains(&("alice".to_owned(), Some("verified alice #ops".to_owned()))),
        "{marked:?}"
    );
    assert!(hub.take_presence(false).is_empty(), "taken once");
    // A connection that never had a name leaves nothing to tell (an empty key is no key).
    let anonymous = unverified(&hub);
    hub.leave_all(&anonymous, "quit", &[]);
    assert!(hub.take_presence(false).is_empty());
}

#[test]
fn a_nick_is_one_persons_across_the_cluster() {
    let claims = Arc::new(Claims::default());
    let hub = clustered(claims.clone());
    // Held on another node (seen in its presence), or claimed by another node first.
    hub.apply_presence(
        "two",
        "sam",
        Some("unverified sam"),
        std::time::Duration::ZERO,
    );
    let first = unverified(&hub);
    assert_eq!(code(hub.set_nick(&first, "sam")), ErrorCode::NickTaken);
    claims.0.lock().unwrap().insert("kim".into());
    assert_eq!(code(hub.set_nick(&first, "Kim")), ErrorCode::NickTaken);
    // Free: claimed here; a change of name gives the old one up.
    assert!(matches!(hub.set_nick(&first, "lee"), Reply::Ok(_)));
    assert!(claims.0.lock().unwrap().contains("lee"));
    assert!(matches!(hub.set_nick(&first, "max"), Reply::Ok(_)));
    assert!(!claims.0.lock().unwrap().contains("lee"));
    // A name seen with a certificate on another node is reserved here, and whoever holds it
    // here with NICK is let go.
    hub.apply_name("max");
    assert!(first.disconnect_reason().is_some());
    let second = unverified(&hub);
    assert_eq!(code(hub.set_nick(&second, "max")), ErrorCode::NickTaken);
}

#[tokio::test]
async fn another_nodes_messages_come_in_id_order_and_a_hole_is_skipped_as_a_gap() {
    use crate::store::embedded::{EmbeddedStore, Fsync};
    use crate::store::{Kind, Record, Stored};
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.redb"), Fsync::Never).unwrap();
    // No wait for a missing id: the test says when it is given up.
    let hub = clustered_waiting(Arc::default(), std::time::Duration::ZERO)
        .with_store(
            Arc::new(store),
            crate::chat::journal::JournalLimits {
                queue: 64,
                page_cap: 100,
                catch_up: 100,
                offline: 100,
            },
            Arc::new(|_| {}),
        )
        .unwrap();
    let hub = Arc::new(hub);
    let alice = verified(&hub, "alice");
    assert!(matches!(hub.join(&alice, "#ops"), Reply::Ok(_)));
    hub.flush().await;
    events(&alice);
    let from_bob = |id: u64| Stored {
        id,
        record: Record {
            kind: Kind::Room,
            from: "bob".into(),
            to: "#ops".into(),
            trust: Trust::Verified,
            time_ms: 0,
            text: format!("m{id}"),
            keep_for_recipient: false,
        },
    };
    let ids = |events: Vec<Event>| -> Vec<String> {
        events
            .into_iter()
            .map(|e| match e {
                Event::Message { id, .. } => format!("msg {id}"),
                Event::Gap { first, last, .. } => format!("gap {first}-{last}"),
                other => format!("{other:?}"),
            })
            .collect()
    };
    // 3 before 2: held until 2 comes, then both in order.
    hub.take_remote(vec![from_bob(1), from_bob(3)]).await;
    assert_eq!(ids(events(&alice)), ["msg 1"]);
    hub.take_remote(vec![from_bob(2)]).await;
    assert_eq!(ids(events(&alice)), ["msg 2", "msg 3"]);
    // 5 without 4: once given up, 4 is told as a gap, then 5; a late 4 is dropped.
    hub.take_remote(vec![from_bob(5)]).await;
    assert!(events(&alice).is_empty());
    hub.expire_holes().await;
    assert_eq!(ids(events(&alice)), ["gap 4-4", "msg 5"]);
    hub.take_remote(vec![from_bob(4), from_bob(6)]).await;
    assert_eq!(ids(events(&alice)), ["msg 6"]);
}

#[test]
fn a_join_racing_the_resume_that_puts_the_member_back_is_answered_ok() {
    let hub = Hub::new();
    let alice = verified(&hub, "alice");
    // The moment inside a resume's re-entry: alice is on the room's list, and her own
    // record of it not written yet (both happen under the room's lock, which JOIN then waits on).
    {
        let mut rooms = lock(&hub.rooms);
        let room = rooms
            .entry("#ops".to_owned())
            .or_insert_with(|| Arc::new(super::Room::new("#ops".to_owned())));
        lock(&room.state).members.push(alice.clone());
    }
    assert_eq!(hub.join(&alice, "#ops"), Reply::ok("#ops"));
}
