//! Per-connection protocol state: who the client is and what it has pending.
//!
//! A plain struct with no I/O: the connection feeds it one [`Request`] at a time through
//! [`Session::handle`] and acts on the returned [`Outcome`] (send the reply, then maybe close or
//! start a shutdown).

use tlschat_proto::{ErrorCode, Reply, Request};

use crate::identity::Identity;
use crate::verbs::{self, VerbContext, QUIZ_MAX, QUIZ_MIN};

/// What the connection must do after a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send the reply and carry on.
    Reply(Reply),
    /// Send the reply, then close the connection.
    Close(Reply),
    /// Send the reply, then shut the whole server down.
    Shutdown(Reply),
}

/// The state of one client's conversation.
#[derive(Debug, Clone)]
pub struct Session {
    identity: Identity,
    /// The pending `QUIZ` problem: its two terms.
    quiz: Option<(u32, u32)>,
}

impl Session {
    /// A session for a connection with this identity.
    pub fn new(identity: Identity) -> Self {
        Self {
            identity,
            quiz: None,
        }
    }

    /// Who the client is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Handles one request.
    pub fn handle(&mut self, request: Request, cx: &mut VerbContext<'_>) -> Outcome {
        if let Some(reply) = verbs::answer(&request, self.identity.display_name(), cx) {
            return Outcome::Reply(reply);
        }
        match request {
            Request::Quiz => {
                let (a, b) = (
                    cx.dice.roll(QUIZ_MIN, QUIZ_MAX),
                    cx.dice.roll(QUIZ_MIN, QUIZ_MAX),
                );
                self.quiz = Some((a, b));
                Outcome::Reply(Reply::ok(format!("What is {a} + {b}? Reply with ANSWER n")))
            }
            Request::Answer(given) => Outcome::Reply(self.answer(given)),
            Request::Quit => Outcome::Close(Reply::ok("BYE")),
            Request::Shutdown if self.identity.admin => {
                Outcome::Shutdown(Reply::ok("shutting down"))
            }
            Request::Shutdown => Outcome::Reply(Reply::err(
                ErrorCode::Forbidden,
                "SHUTDOWN needs a client certificate with the admin role",
            )),
            other => Outcome::Reply(Reply::err(
                ErrorCode::UnknownVerb,
                format!("{} is not offered here", other.verb()),
            )),
        }
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
    use tlschat_proto::Verb;

    use super::*;
    use crate::random::Dice;

    struct Sequence(Vec<u32>);

    impl Dice for Sequence {
        fn roll(&mut self, _low: u32, _high: u32) -> u32 {
            self.0.remove(0)
        }
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

    #[test]
    fn quiz_then_answer_checks_and_clears_the_problem() {
        let mut session = Session::new(Identity::anonymous());
        assert_eq!(
            handle(&mut session, Request::Quiz, vec![17, 25]),
            ok("What is 17 + 25? Reply with ANSWER n")
        );
        assert_eq!(
            handle(&mut session, Request::Answer(42), vec![]),
            ok("correct: 17 + 25 = 42")
        );
        let Outcome::Reply(Reply::Err(err)) = handle(&mut session, Request::Answer(42), vec![])
        else {
            panic!("a second answer must fail");
        };
        assert_eq!(err.code, ErrorCode::NoQuiz);
        handle(&mut session, Request::Quiz, vec![1, 2]);
        assert_eq!(
            handle(&mut session, Request::Answer(4), vec![]),
            ok("wrong: 1 + 2 = 3, not 4")
        );
    }

    #[test]
    fn only_admins_may_shut_down() {
        let mut user = Session::new(Identity {
            name: Some("bob".into()),
            verified: true,
            admin: false,
        });
        let Outcome::Reply(Reply::Err(err)) = handle(&mut user, Request::Shutdown, vec![]) else {
            panic!("a user must not shut down the server");
        };
        assert_eq!(err.code, ErrorCode::Forbidden);
        let mut admin = Session::new(Identity {
            name: Some("root".into()),
            verified: true,
            admin: true,
        });
        assert!(matches!(
            handle(&mut admin, Request::Shutdown, vec![]),
            Outcome::Shutdown(_)
        ));
    }

    #[test]
    fn quit_closes_and_greet_uses_the_certificate_name() {
        let mut session = Session::new(Identity {
            name: Some("carol".into()),
            verified: true,
            admin: false,
        });
        assert_eq!(
            handle(&mut session, Request::Greet(None), vec![]),
            ok("Hello, carol!")
        );
        assert_eq!(
            handle(&mut session, Request::Quit, vec![]),
            Outcome::Close(Reply::ok("BYE"))
        );
    }
}
