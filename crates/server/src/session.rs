//! Per-connection protocol state: who the client is and what it has pending.
//!
//! A plain struct with no I/O: the connection feeds it one [`Request`] at a time through
//! [`Session::handle`] and acts on the returned [`Outcome`] (send the reply, then maybe close or
//! start a shutdown). Chat verbs go to the shared [`Hub`], which queues what other clients must
//! see into their outboxes.

use std::fmt;
use std::sync::Arc;

use tlschat_proto::{ErrorCode, Reply, Request, Scope, Target};
use tokio::sync::oneshot;

use crate::chat::{Hub, Peer, Sent};
use crate::store::commit::Answer;
use crate::verbs::{self, VerbContext, QUIZ_MAX, QUIZ_MIN};

/// What the connection must do after a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send the reply and carry on.
    Reply(Reply),
    /// Send the reply, then close the connection.
    Close(Reply),
    /// Send the reply, then shut the whole server down.
    Shutdown(Reply),
    /// Reply with the server's counters (the caller is an admin).
    Stats,
    /// Reload the certificates and reply how it went (the caller is an admin).
    Reload,
    /// The answer comes later (once a message is committed, or history is read); requests
    /// after this one wait for it, so replies keep their order.
    Later(Pending),
}

/// An answer still to come. Never equal to another (each is its own request's).
pub struct Pending(pub oneshot::Receiver<Answer>);

impl PartialEq for Pending {
    fn eq(&self, _: &Self) -> bool {
        false
    }
}

impl Eq for Pending {}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pending")
    }
}

impl From<Sent> for Outcome {
    /// A request's one reply now, or its answer later.
    fn from(sent: Sent) -> Self {
        match sent {
            Sent::Now(mut replies) => Self::Reply(replies.pop().unwrap_or_else(|| Reply::ok(""))),
            Sent::Later(answer) => Self::Later(Pending(answer)),
        }
    }
}

/// The state of one client's conversation.
pub struct Session {
    peer: Arc<Peer>,
    hub: Arc<Hub>,
    /// The pending `QUIZ` problem: its two terms.
    quiz: Option<(u32, u32)>,
}

impl Session {
    /// A session for `peer`, chatting through `hub`.
    pub fn new(peer: Arc<Peer>, hub: Arc<Hub>) -> Self {
        Self {
            peer,
            hub,
            quiz: None,
        }
    }

    /// The client as the rest of the server sees it.
    pub fn peer(&self) -> &Arc<Peer> {
        &self.peer
    }

    /// Handles one request.
    pub fn handle(&mut self, request: Request, cx: &mut VerbContext<'_>) -> Outcome {
        let caller = self.peer.nick();
        if let Some(reply) = verbs::answer(&request, caller.as_deref().unwrap_or("anonymous"), cx) {
            return Outcome::Reply(reply);
        }
        let (hub, peer) = (&self.hub, &self.peer);
        let reply = match request {
            Request::Quiz => {
                let (a, b) = (
                    cx.dice.roll(QUIZ_MIN, QUIZ_MAX),
                    cx.dice.roll(QUIZ_MIN, QUIZ_MAX),
                );
                self.quiz = Some((a, b));
                Reply::ok(format!("What is {a} + {b}? Reply with ANSWER n"))
            }
            Request::Answer(given) => self.answer(given),
            Request::Quit => return Outcome::Close(Reply::ok("BYE")),
            Request::Shutdown if peer.is_admin() => {
                return Outcome::Shutdown(Reply::ok("shutting down"))
            }
            Request::Shutdown => Reply::err(
                ErrorCode::Forbidden,
                "SHUTDOWN needs a client certificate with the admin role",
            ),
            Request::Stats if peer.is_admin() => return Outcome::Stats,
            Request::Reload if peer.is_admin() => return Outcome::Reload,
            Request::Reload => Reply::err(
                ErrorCode::Forbidden,
                "RELOAD needs a client certificate with the admin role",
            ),
            Request::Stats => Reply::err(
                ErrorCode::Forbidden,
                "STATS needs a client certificate with the admin role",
            ),
            Request::Nick(name) => hub.set_nick(peer, &name),
            Request::Join(room) => hub.join(peer, &room),
            Request::Part(room) => hub.part(peer, &room),
            // The directory (rooms, members, published keys with their certificates) is for
            // people taking part, and running a room is for named people (operators are
            // verified names): a client with no name yet gets none of it.
            request @ (Request::Rooms
            | Request::Who(_)
            | Request::KeyGet(_)
            | Request::Kick { .. }
            | Request::Topic { .. }
            | Request::Op { .. }
            | Request::Ban { .. }
            | Request::Unban { .. }
            | Request::Mode { .. }
            | Request::Invite { .. })
                if peer.nick().is_none() =>
            {
                Reply::err(
                    ErrorCode::NoNick,
                    format!(
                        "{} needs a name: send NICK name first, or connect with a certificate",
                        request.verb()
                    ),
                )
            }
            Request::Rooms => return hub.list_rooms_with_topics(peer).into(),
            Request::Who(room) => hub.who(&room),
            Request::Msg { target, text } => {
                return match target {
                    Target::Room(room) => hub.message_room_batch(peer, &room, &[text], cx.now),
                    Target::User(nick) => hub.message_user(peer, &nick, &text, cx.now),
                }
                .into()
            }
            Request::History {
                target,
                anchor,
                limit,
            } => return hub.history(peer, &target, anchor, limit).into(),
            Request::KeySet(bundle) => hub.publish_key(peer, bundle.value(), bundle.hex()),
            Request::KeyGet(nick) => hub.key_of(&nick),
            Request::KeyDel(device) => hub.withdraw_key(peer, &device),
            Request::E2e { to, sealed } => {
                return hub.message_e2e(peer, &to, sealed.hex(), cx.now).into()
            }
            Request::Kick {
                room: None,
                nick,
                reason,
            } => hub.kick(peer, &nick, reason.as_deref()),
            Request::Kick {
                room: Some(room),
                nick,
                reason,
            } => hub.kick_from_room(peer, &room, &nick, reason.as_deref()),
            Request::Topic { room, text } => hub.topic(peer, &room, text.as_deref()),
            Request::Op { room, nick, grant } => hub.op(peer, &room, &nick, grant),
            Request::Ban {
                scope,
                name,
                duration,
                reason,
            } => {
                let until = duration
                    .and_then(|d| chrono::Duration::from_std(d).ok())
                    .and_then(|d| cx.now.checked_add_signed(d));
                hub.ban(peer, &scope, &name, until, reason.as_deref())
            }
            Request::Unban { scope, name } => match scope {
                Scope::Server => hub.unban_from_server(peer, &name),
                Scope::Room(room) => hub.unban_from_room(peer, &room, &name),
            },
            Request::Mode { room, change } => hub.mode(peer, &room, change),
            Request::Invite { room, nick } => hub.invite(peer, &room, &nick),
            other => Reply::err(
                ErrorCode::UnknownVerb,
                format!("{} is not offered here", other.verb()),
            ),
        };
        Outcome::Reply(reply)
    }

    /// `MSG #room text` for several texts in a row: one reply each, in order.
    pub fn message_room_batch(
        &self,
        room: &str,
        texts: &[String],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Sent {
        self.hub.message_room_batch(&self.peer, room, texts, now)
    }

    fn answer(&mut self, given: i64) -> Reply {
        let Some((a, b)) = self.quiz.take() else {
            return Reply::err(ErrorCode::NoQuiz, "no quiz pending; send QUIZ first");
        };
        let right = i64::from(a) + i64::from(b);
        if given == right {
            Reply::ok(format!("correct: {a} + {b} = {right}"))
        } else {
            Reply::ok(format!("wrong: {a} + {b} = {right}, not {given}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use tlschat_proto::{Trust, Verb};

    use super::*;
    use crate::random::Dice;

    struct Sequence(Vec<u32>);

    impl Dice for Sequence {
        fn roll(&mut self, _low: u32, _high: u32) -> u32 {
            self.0.remove(0)
        }
    }

    fn session(nick: Option<&str>, admin: bool) -> Session {
        let hub = Arc::new(Hub::new());
        let trust = if nick.is_some() {
            Trust::Verified
        } else {
            Trust::Unverified
        };
        let peer = Peer::new(
            hub.next_peer_id(),
            nick.map(Into::into),
            trust,
            admin,
            1 << 20,
        );
        hub.register_verified(&peer);
        Session::new(peer, hub)
    }

    fn handle(session: &mut Session, request: Request, rolls: Vec<u32>) -> Outcome {
        let mut dice = Sequence(rolls);
        let mut cx = VerbContext {
            server_name: "srv",
            now: Utc::now(),
            dice: &mut dice,
            available: Verb::ALL,
        };
        session.handle(request, &mut cx)
    }

    fn ok(text: &str) -> Outcome {
        Outcome::Reply(Reply::ok(text))
    }

    fn err_code(outcome: Outcome) -> ErrorCode {
        match outcome {
            Outcome::Reply(Reply::Err(err)) => err.code,
            other => panic!("expected an error reply, got {other:?}"),
        }
    }

    #[test]
    fn quiz_then_answer_checks_and_clears_the_problem() {
        let mut session = session(None, false);
        assert_eq!(
            handle(&mut session, Request::Quiz, vec![17, 25]),
            ok("What is 17 + 25? Reply with ANSWER n")
        );
        assert_eq!(
            handle(&mut session, Request::Answer(42), vec![]),
            ok("correct: 17 + 25 = 42")
        );
        assert_eq!(
            err_code(handle(&mut session, Request::Answer(42), vec![])),
            ErrorCode::NoQuiz
        );
        handle(&mut session, Request::Quiz, vec![1, 2]);
        assert_eq!(
            handle(&mut session, Request::Answer(4), vec![]),
            ok("wrong: 1 + 2 = 3, not 4")
        );
    }

    #[test]
    fn only_admins_may_shut_down() {
        let mut user = session(Some("bob"), false);
        assert_eq!(
            err_code(handle(&mut user, Request::Shutdown, vec![])),
            ErrorCode::Forbidden
        );
        let mut admin = session(Some("root"), true);
        assert!(matches!(
            handle(&mut admin, Request::Shutdown, vec![]),
            Outcome::Shutdown(_)
        ));
    }

    #[test]
    fn quit_closes_and_greet_uses_the_nickname() {
        let mut session = session(Some("carol"), false);
        assert_eq!(
            handle(&mut session, Request::Greet(None), vec![]),
            ok("Hello, carol!")
        );
        assert_eq!(
            handle(&mut session, Request::Quit, vec![]),
            Outcome::Close(Reply::ok("BYE"))
        );
        let mut anonymous = self::session(None, false);
        assert_eq!(
            handle(&mut anonymous, Request::Greet(None), vec![]),
            ok("Hello, anonymous!")
        );
    }

    #[test]
    fn a_client_without_a_name_cannot_read_the_directory() {
        let mut anonymous = session(None, false);
        for request in [
            Request::Rooms,
            Request::Who("#lab".into()),
            Request::KeyGet("alice".into()),
        ] {
            let Outcome::Reply(Reply::Err(err)) = handle(&mut anonymous, request, vec![]) else {
                panic!("a nameless client read the directory");
            };
            assert_eq!(err.code, ErrorCode::NoNick);
        }
    }

    #[test]
    fn chat_verbs_reach_the_hub() {
        let mut session = session(Some("dave"), false);
        assert_eq!(
            handle(&mut session, Request::Join("#Lab".into()), vec![]),
            ok("#lab")
        );
        assert_eq!(handle(&mut session, Request::Rooms, vec![]), ok("#lab=1"));
        let msg = Request::Msg {
            target: Target::Room("#lab".into()),
            text: "hi".into(),
        };
        assert_eq!(handle(&mut session, msg, vec![]), ok("1"));
    }
}
