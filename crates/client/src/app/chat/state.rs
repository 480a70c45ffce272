//! What the chat client remembers: its rooms, the current room, and the requests still waiting
//! for replies (the server answers in order, so a queue matches them up).

use std::collections::{BTreeSet, VecDeque};

use tlschat_proto::{ErrorCode, Event, Reply, Request, Target};

use super::render;
use crate::resync::Resync;
use crate::text::sanitize;

/// Client-side chat state. No I/O: the chat loop feeds it and prints what it returns.
#[derive(Debug, Default)]
pub(crate) struct ChatState {
    /// Our own nickname, when known (certificate name, or an accepted `/nick`).
    pub(crate) me: Option<String>,
    /// Where plain text goes.
    pub(crate) current: Option<String>,
    /// Rooms joined, by canonical name.
    pub(crate) joined: BTreeSet<String>,
    /// Sent and not yet answered, oldest first.
    pending: VecDeque<Sent>,
    /// Messages shown, per conversation: repeats after a reconnect are dropped.
    pub(crate) resync: Resync,
    /// What `/whoami` shows.
    pub(crate) whoami: Vec<String>,
}

/// A line sent and waiting for its reply.
#[derive(Debug)]
enum Sent {
    /// A raw `/quote` line.
    Raw,
    /// A request.
    Request(Request),
    /// An E2E direct message: the request carries only ciphertext, so the text is kept here
    /// to show once the server accepts it.
    Sealed {
        /// The recipient.
        to: String,
        /// The text.
        text: String,
    },
}

impl ChatState {
    /// State for a user known as `me` (their certificate name), if known.
    pub(crate) fn new(me: Option<String>) -> Self {
        Self {
            me,
            ..Self::default()
        }
    }

    /// Remembers a sent request until its reply comes. (`/join` is not sent this way: the chat
    /// waits for its reply, so the prompt shows the room only once it is joined.)
    pub(crate) fn sent(&mut self, request: Option<Request>) {
        self.pending
            .push_back(request.map_or(Sent::Raw, Sent::Request));
    }

    /// Takes the reply to a request that was answered at once (not queued), and returns the
    /// line to show.
    pub(crate) fn on_answered(&mut self, request: Request, reply: &Reply) -> Option<String> {
        self.pending.push_front(Sent::Request(request));
        self.on_reply(reply)
    }

    /// Remembers a sent E2E message (`text` to `to`) until its reply comes.
    pub(crate) fn sent_sealed(&mut self, to: &str, text: &str) {
        self.pending.push_back(Sent::Sealed {
            to: to.to_owned(),
            text: text.to_owned(),
        });
    }

    /// Requests still waiting for a reply.
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Forgets unanswered requests (the connection was lost); returns how many there were.
    pub(crate) fn forget_pending(&mut self) -> usize {
        std::mem::take(&mut self.pending).len()
    }

    /// Makes a joined room current.
    pub(crate) fn switch(&mut self, room: &str) -> Result<String, String> {
        let key = room.to_ascii_lowercase();
        if self.joined.contains(&key) {
            self.current = Some(key.clone());
            Ok(format!("-- now talking in {key}"))
        } else {
            Err(format!(
                "!! you are not in {}; /join it first",
                sanitize(room)
            ))
        }
    }

    /// What to send after reconnecting: the nickname (if chosen with `/nick`) and the rooms.
    pub(crate) fn restore_requests(&self, verified: bool) -> Vec<Request> {
        let nick = self.me.clone().filter(|_| !verified).map(Request::Nick);
        nick.into_iter()
            .chain(self.joined.iter().cloned().map(Request::Join))
            .collect()
    }

    /// Takes a reply and returns the line to show, if any.
    pub(crate) fn on_reply(&mut self, reply: &Reply) -> Option<String> {
        let (request, sealed) = match self.pending.pop_front() {
            Some(Sent::Request(request)) => (Some(request), None),
            Some(Sent::Sealed { to, text }) => (None, Some((to, text))),
            Some(Sent::Raw) | None => (None, None),
        };
        let payload = match reply {
            // A server without history: nothing to show, and nothing wrong.
            Reply::Err(err)
                if err.code == ErrorCode::NoHistory
                    && matches!(request, Some(Request::History { .. })) =>
            {
                return None
            }
            Reply::Err(err) => {
                return Some(format!("!! {}", crate::app::hints::interactive_error(err)))
            }
            Reply::Ok(payload) => payload,
        };
        if let Some((to, text)) = sealed {
            return Some(self.echo(&Target::User(to), &text, true));
        }
        let Some(request) = request else {
            return Some(format!("-- OK {}", sanitize(payload)));
        };
        match request {
            Request::Join(_) => {
                self.joined.insert(payload.clone());
                self.current = Some(payload.clone());
                Some(format!("-- joined {} (now current)", sanitize(payload)))
            }
            Request::Part(_) => {
                self.joined.remove(payload);
                if self.current.as_deref() == Some(payload.as_str()) {
                    self.current = self.joined.iter().next().cloned();
                }
                let now = match &self.current {
                    Some(room) => format!("; now talking in {room}"),
                    None => String::new(),
                };
                Some(format!("-- left {}{now}", sanitize(payload)))
            }
            Request::Nick(nick) => {
                self.me = Some(nick);
                Some(format!("-- you are {}", sanitize(payload)))
            }
            Request::Msg { target, text } => Some(self.echo(&target, &text, false)),
            Request::Who(room) => Some(format!("-- {}: {}", sanitize(&room), who(payload))),
            // The messages came just before, as events.
            Request::History { target, .. } => history(&target.to_string(), payload),
            Request::Rooms if payload.is_empty() => Some("-- no rooms yet".into()),
            Request::Rooms => Some(format!("-- rooms: {}", sanitize(payload))),
            Request::Quiz => Some(format!(
                "-- {}",
                crate::app::hints::quiz_question(payload, "answer with /answer n")
            )),
            Request::Quit => None,
            _ => Some(format!("-- {}", sanitize(payload))),
        }
    }

    /// Our own message, as others see it; `e2e` when it was sealed end to end.
    fn echo(&self, target: &Target, text: &str, e2e: bool) -> String {
        let me = self.me.as_deref().unwrap_or("me");
        match target {
            Target::Room(room) => format!(
                "{} {} <{}> {}",
                render::now(),
                sanitize(&room.to_ascii_lowercase()),
                sanitize(me),
                sanitize(text)
            ),
            Target::User(to) => format!(
                "{} [{}DM to {}] <{}> {}",
                render::now(),
                if e2e { "E2E " } else { "" },
                sanitize(to),
                sanitize(me),
                sanitize(text)
            ),
        }
    }

    /// Whether `nick` is us.
    pub(crate) fn is_me(&self, nick: &str) -> bool {
        self.me
            .as_deref()
            .is_some_and(|me| me.eq_ignore_ascii_case(nick))
    }

    /// Takes an event and returns the line to show.
    pub(crate) fn on_event(&mut self, event: &Event) -> String {
        // What our own person did on another device; or, after connecting, the rooms the
        // server put this session back in.
        match event {
            Event::Join { room, nick, .. } if self.is_me(nick) => {
                self.joined.insert(room.clone());
                if self.current.is_none() {
                    self.current = Some(room.clone());
                }
                return format!("-- you are in {}", sanitize(room));
            }
            Event::Part { room, nick, .. } if self.is_me(nick) => {
                self.joined.remove(room);
                if self.current.as_deref() == Some(room.as_str()) {
                    self.current = self.joined.iter().next().cloned();
                }
                return format!("-- you left {} (on another device)", sanitize(room));
            }
            Event::Direct {
                from,
                to,
                time,
                text,
                ..
            } if self.is_me(from) => {
                return format!(
                    "{} [DM to {}] <{}> {}",
                    render::local_time(time),
                    sanitize(to),
                    sanitize(from),
                    sanitize(text)
                );
            }
            _ => {}
        }
        // Put out of a room: not rejoined after a reconnect.
        if let Event::Kick { room, nick, .. } = event {
            if self.is_me(nick) {
                self.joined.remove(room);
                if self.current.as_deref() == Some(room.as_str()) {
                    self.current = self.joined.iter().next().cloned();
                }
            }
        }
        render::event(event)
    }
}

/// The end of a history page: `12 more` as `-- 12 earlier messages of #ops above; /history for more`.
/// Nothing when the page was empty.
fn history(target: &str, payload: &str) -> Option<String> {
    let (count, more) = payload.split_once(' ').unwrap_or((payload, "end"));
    if count == "0" {
        return None;
    }
    let more = if more == "more" {
        "; /history for more"
    } else {
        ""
    };
    Some(format!(
        "-- {} stored message(s) of {} above{more}",
        sanitize(count),
        sanitize(target)
    ))
}

/// `alice=verified bob=unverified` as `alice, ?bob`.
fn who(payload: &str) -> String {
    payload
        .split(' ')
        .filter_map(|entry| entry.split_once('='))
        .map(|(nick, trust)| match trust {
            "verified" => sanitize(nick),
            _ => format!("?{}", sanitize(nick)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use tlschat_proto::ErrorCode;

    use super::*;

    #[test]
    fn replies_are_matched_to_requests_in_order() {
        let mut state = ChatState::new(Some("alice".into()));
        state.sent(Some(Request::Join("#A".into())));
        state.sent(Some(Request::Join("#b".into())));
        state.sent(Some(Request::Msg {
            target: Target::Room("#b".into()),
            text: "hi".into(),
        }));
        assert_eq!(
            state.on_reply(&Reply::ok("#a")).unwrap(),
            "-- joined #a (now current)"
        );
        assert_eq!(
            state.on_reply(&Reply::ok("#b")).unwrap(),
            "-- joined #b (now current)"
        );
        assert!(state
            .on_reply(&Reply::ok("1"))
            .unwrap()
            .ends_with(" #b <alice> hi"));
        assert_eq!(state.current.as_deref(), Some("#b"));
        state.sent(Some(Request::Part("#b".into())));
        assert_eq!(
            state.on_reply(&Reply::ok("#b")).unwrap(),
            "-- left #b; now talking in #a"
        );
        assert_eq!(state.pending(), 0);
    }

    #[test]
    fn errors_and_raw_lines_are_shown_as_they_come() {
        let mut state = ChatState::default();
        let line = state
            .on_answered(
                Request::Join("#x".into()),
                &Reply::err(ErrorCode::NoNick, "set a nickname"),
            )
            .unwrap();
        assert_eq!(
            line,
            "!! NO_NICK set a nickname (set one with /nick NAME, or connect with --cert and --key)"
        );
        assert!(state.joined.is_empty());
        assert_eq!(
            state.current, None,
            "a refused /join leaves no room in the prompt"
        );
        state.sent(None);
        assert_eq!(state.on_reply(&Reply::ok("PONG")).unwrap(), "-- OK PONG");
    }

    #[test]
    fn a_sealed_message_is_echoed_with_its_text_and_mark() {
        let mut state = ChatState::new(Some("alice".into()));
        state.sent_sealed("bob", "psst");
        state.sent(Some(Request::Ping));
        let line = state.on_reply(&Reply::ok("")).unwrap();
        assert!(line.ends_with(" [E2E DM to bob] <alice> psst"), "{line}");
        assert_eq!(state.on_reply(&Reply::ok("PONG")).unwrap(), "-- PONG");
        state.sent_sealed("bob", "gone");
        let line = state
            .on_reply(&Reply::err(ErrorCode::NoSuchUser, "bob is not connected"))
            .unwrap();
        assert_eq!(line, "!! NO_SUCH_USER bob is not connected");
    }

    #[test]
    fn who_lists_mark_unverified_members() {
        let mut state = ChatState::default();
        state.sent(Some(Request::Who("#x".into())));
        let line = state
            .on_reply(&Reply::ok("alice=verified mallory=unverified"))
            .unwrap();
        assert_eq!(line, "-- #x: alice, ?mallory");
    }

    #[test]
    fn what_we_do_on_another_device_shows_here_as_ours() {
        let mut state = ChatState::new(Some("alice".into()));
        let joined = state.on_event(&Event::Join {
            room: "#ops".into(),
            nick: "Alice".into(),
            trust: tlschat_proto::Trust::Verified,
        });
        assert_eq!(joined, "-- you are in #ops");
        assert!(state.joined.contains("#ops"));
        assert_eq!(state.current.as_deref(), Some("#ops"));
        let copy = state.on_event(&Event::Direct {
            id: 4,
            from: "alice".into(),
            to: "bob".into(),
            trust: tlschat_proto::Trust::Verified,
            time: "2026-12-02T09:30:00.000Z".into(),
            text: "sent from my phone".into(),
        });
        assert!(
            copy.ends_with(" [DM to bob] <alice> sent from my phone"),
            "{copy}"
        );
        let left = state.on_event(&Event::Part {
            room: "#ops".into(),
            nick: "alice".into(),
            trust: tlschat_proto::Trust::Verified,
        });
        assert_eq!(left, "-- you left #ops (on another device)");
        assert!(state.joined.is_empty() && state.current.is_none());
        // Someone else joining is just news.
        let other = state.on_event(&Event::Join {
            room: "#ops".into(),
            nick: "bob".into(),
            trust: tlschat_proto::Trust::Verified,
        });
        assert!(other.ends_with("#ops -> bob joined"), "{other}");
        assert!(state.joined.is_empty());
    }

    #[test]
    fn reconnecting_restores_the_nickname_and_rooms() {
        let mut state = ChatState::new(Some("guest".into()));
        state.joined.extend(["#a".to_string(), "#b".to_string()]);
        state.sent(Some(Request::Ping));
        assert_eq!(state.forget_pending(), 1);
        assert_eq!(
            state.restore_requests(false),
            vec![
                Request::Nick("guest".into()),
                Request::Join("#a".into()),
                Request::Join("#b".into())
            ]
        );
        assert_eq!(
            state.restore_requests(true).len(),
            2,
            "a certificate name needs no NICK"
        );
        assert!(state.switch("#c").is_err());
        assert!(state.switch("#B").is_ok());
    }
}
