//! The stateless verbs: each answer depends only on the request, the caller's name, the time
//! and a random number. Every transport (TLS now, signed UDP later) answers them through here.

use chrono::{DateTime, SecondsFormat, Utc};
use tlschat_proto::limits::{LUCKY_MAX, LUCKY_MIN};
use tlschat_proto::{ErrorCode, Reply, Request, Verb};

use crate::random::Dice;

/// Lowest term of a `QUIZ` problem.
pub const QUIZ_MIN: u32 = 1;

/// Highest term of a `QUIZ` problem.
pub const QUIZ_MAX: u32 = 50;

/// What a verb may look at besides the request. Time and randomness come in from outside so
/// answers are testable.
pub struct VerbContext<'a> {
    /// The server's name, as in the greeting.
    pub server_name: &'a str,
    /// The time now.
    pub now: DateTime<Utc>,
    /// Randomness.
    pub dice: &'a mut dyn Dice,
    /// The verbs this transport offers, as `HELP` lists them.
    pub available: &'a [Verb],
}

/// Answers a stateless request from `caller` (a name, or `anonymous`), or returns `None` when
/// the verb needs session state.
pub fn answer(request: &Request, caller: &str, cx: &mut VerbContext<'_>) -> Option<Reply> {
    Some(match request {
        Request::Help(topic) => help(*topic, cx.available),
        Request::Time => Reply::ok(cx.now.to_rfc3339_opts(SecondsFormat::Millis, true)),
        Request::Echo(text) => Reply::ok(text.clone()),
        Request::Sum(terms) => sum(terms),
        Request::Lucky => Reply::ok(cx.dice.roll(LUCKY_MIN, LUCKY_MAX).to_string()),
        Request::Greet(name) => Reply::ok(format!("Hello, {}!", name.as_deref().unwrap_or(caller))),
        Request::Number(n) => {
            let mine = i64::from(cx.dice.roll(1, 100));
            Reply::ok(format!(
                "client={} number={n} server={} server_number={mine} sum={}",
                caller,
                cx.server_name,
                n + mine
            ))
        }
        Request::Ping => Reply::ok("PONG"),
        _ => return None,
    })
}

fn help(topic: Option<Verb>, available: &[Verb]) -> Reply {
    match topic {
        Some(verb) if available.contains(&verb) => {
            Reply::ok(format!("{}: {}", verb.usage(), verb.summary()))
        }
        Some(verb) => Reply::err(
            ErrorCode::UnknownVerb,
            format!("{verb} is not offered here"),
        ),
        None => {
            let names: Vec<&str> = available.iter().map(|v| v.name()).collect();
            Reply::ok(format!(
                "verbs: {} (HELP <verb> for usage)",
                names.join(" ")
            ))
        }
    }
}

fn sum(terms: &[i64]) -> Reply {
    match terms.iter().try_fold(0i64, |acc, n| acc.checked_add(*n)) {
        Some(total) => Reply::ok(total.to_string()),
        None => Reply::err(
            ErrorCode::Overflow,
            "the sum does not fit in a signed 64-bit integer",
        ),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    /// Dice that always roll the same number (clamped into range).
    pub(crate) struct Loaded(pub(crate) u32);

    impl Dice for Loaded {
        fn roll(&mut self, low: u32, high: u32) -> u32 {
            self.0.clamp(low, high)
        }
    }

    fn reply(request: Request) -> Option<String> {
        let mut dice = Loaded(17);
        let mut cx = VerbContext {
            server_name: "srv",
            now: Utc.with_ymd_and_hms(2026, 11, 21, 9, 30, 0).unwrap(),
            dice: &mut dice,
            available: Verb::ALL,
        };
        answer(&request, "alice", &mut cx).map(|r| r.to_string())
    }

    #[test]
    fn answers_the_tutorial_verbs() {
        assert_eq!(reply(Request::Time).unwrap(), "OK 2026-11-21T09:30:00.000Z");
        assert_eq!(
            reply(Request::Echo("hi there".into())).unwrap(),
            "OK hi there"
        );
        assert_eq!(reply(Request::Sum(vec![1, 2, 3])).unwrap(), "OK 6");
        assert_eq!(reply(Request::Lucky).unwrap(), "OK 17");
        assert_eq!(reply(Request::Greet(None)).unwrap(), "OK Hello, alice!");
        assert_eq!(
            reply(Request::Greet(Some("Bob".into()))).unwrap(),
            "OK Hello, Bob!"
        );
        assert_eq!(
            reply(Request::Number(42)).unwrap(),
            "OK client=alice number=42 server=srv server_number=17 sum=59"
        );
        assert_eq!(reply(Request::Ping).unwrap(), "OK PONG");
    }

    #[test]
    fn sum_overflow_is_an_error_not_a_wrap() {
        assert_eq!(
            reply(Request::Sum(vec![i64::MAX, 1])).unwrap(),
            "ERR OVERFLOW the sum does not fit in a signed 64-bit integer"
        );
        assert_eq!(
            reply(Request::Sum(vec![i64::MIN, -1])).unwrap()[..12],
            *"ERR OVERFLOW"
        );
        assert_eq!(
            reply(Request::Sum(vec![i64::MAX, 1, -1])).unwrap()[..12],
            *"ERR OVERFLOW"
        );
    }

    #[test]
    fn help_lists_the_offered_verbs_and_usage() {
        let all = reply(Request::Help(None)).unwrap();
        for verb in Verb::ALL {
            assert!(all.contains(verb.name()), "{verb} missing from {all}");
        }
        assert_eq!(
            reply(Request::Help(Some(Verb::Sum))).unwrap(),
            "OK SUM n1 [n2 ...]: Adds up 64-bit integers; overflow is an error."
        );
    }

    #[test]
    fn stateful_verbs_are_left_to_the_session() {
        for request in [
            Request::Quiz,
            Request::Answer(1),
            Request::Quit,
            Request::Shutdown,
        ] {
            assert_eq!(reply(request), None);
        }
    }
}
