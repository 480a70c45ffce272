//! What the server sends: one greeting, then replies and events.
//!
//! # Format
//!
//! - Greeting, once, first: `HELLO tlschat/1 <server-name> <free text>`.
//! - Reply, exactly one per request and in request order: `OK [payload]` or
//!   `ERR <CODE> <message>`.
//! - Event, whenever the server has news: `EVENT <KIND> [fields]`. A client that does not know a
//!   kind ignores it ([`Event::Other`]).
//!
//! A client tells them apart by the first word alone.

use std::fmt;

use crate::disconnect::DisconnectCode;
use crate::error::ErrorCode;
use crate::PROTOCOL_VERSION;

/// The first line the server sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// The protocol version, such as `tlschat/1`.
    pub version: String,
    /// The server's name.
    pub server: String,
    /// Free text for people (for example how the server sees the client).
    pub text: String,
}

impl Greeting {
    /// A greeting for this protocol version.
    pub fn new(server: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            version: PROTOCOL_VERSION.to_owned(),
            server: server.into(),
            text: text.into(),
        }
    }
}

impl fmt::Display for Greeting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HELLO {} {}", self.version, self.server)?;
        if !self.text.is_empty() {
            write!(f, " {}", self.text)?;
        }
        Ok(())
    }
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `OK [payload]`: the request succeeded.
    Ok(String),
    /// `ERR <CODE> <message>`: the request failed and had no effect.
    Err(ErrorReply),
}

/// The body of an `ERR` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// The machine-readable code.
    pub code: ErrorCode,
    /// The message for people.
    pub message: String,
}

impl Reply {
    /// An `OK` reply.
    pub fn ok(payload: impl Into<String>) -> Self {
        Self::Ok(payload.into())
    }

    /// An `ERR` reply.
    pub fn err(code: ErrorCode, message: impl fmt::Display) -> Self {
        Self::Err(ErrorReply {
            code,
            message: message.to_string(),
        })
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok(payload) if payload.is_empty() => f.write_str("OK"),
            Self::Ok(payload) => write!(f, "OK {payload}"),
            Self::Err(err) => write!(f, "{err}"),
        }
    }
}

impl fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ERR {} {}", self.code, self.message)
    }
}

/// Whether a sender's name is backed by a client certificate from the CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trust {
    /// The name is the common name of a verified client certificate.
    Verified,
    /// The name was claimed with `NICK`; anyone could have taken it.
    Unverified,
}

impl Trust {
    /// The word used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Unverified => "unverified",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        match word {
            "verified" => Some(Self::Verified),
            "unverified" => Some(Self::Unverified),
            _ => None,
        }
    }
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A line the server pushes on its own.
///
/// Fields are separated by single spaces; free text (a message, a reason) is always last and is
/// everything to the end of the line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// `EVENT MSG <#room> <id> <nick> <trust> <time> <text>`: a message to a room.
    Message {
        /// The room.
        room: String,
        /// The room's message number: increases by one per message the room accepts.
        id: u64,
        /// The sender.
        from: String,
        /// Whether the sender's name is verified.
        trust: Trust,
        /// When the server accepted it, RFC 3339 UTC.
        time: String,
        /// The text.
        text: String,
    },
    /// `EVENT DM <id> <from> <to> <trust> <time> <text>`: a direct message, to this client or
    /// (replayed by `HISTORY`) from it.
    Direct {
        /// The conversation's message number: increases by one per message between these two.
        id: u64,
        /// The sender.
        from: String,
        /// The recipient.
        to: String,
        /// Whether the sender's name is verified.
        trust: Trust,
        /// When the server accepted it, RFC 3339 UTC.
        time: String,
        /// The text.
        text: String,
    },
    /// `EVENT E2E <id> <from> <to> <trust> <time> <sealed>`: an end-to-end encrypted direct
    /// message. The payload is kept as sent (hex of [`crate::e2e::Sealed`]): the client decodes
    /// it, so a malformed one is shown as unreadable rather than breaking the connection. Its id
    /// is in the same sequence as the conversation's `EVENT DM`s.
    E2e {
        /// The conversation's message number.
        id: u64,
        /// The sender.
        from: String,
        /// The recipient.
        to: String,
        /// Whether the sender's name is verified.
        trust: Trust,
        /// When the server relayed it, RFC 3339 UTC.
        time: String,
        /// The sealed message, hex.
        sealed: String,
    },
    /// `EVENT GAP <#room|nick> <first> <last>`: messages `first..=last` of a room (or of the
    /// conversation with `nick`) were not sent to this client because it was not reading fast
    /// enough; fetch them with `HISTORY <target> AFTER <first - 1>`.
    Gap {
        /// The room, or the other party of the conversation.
        target: String,
        /// The first id skipped.
        first: u64,
        /// The last id skipped.
        last: u64,
    },
    /// `EVENT CAUGHTUP <count>`: the server has sent what this (verified) client missed while
    /// away, `count` messages (at least one; nothing is sent when nothing was missed); what
    /// follows is live.
    CaughtUp {
        /// Messages sent as missed.
        count: u64,
    },
    /// `EVENT JOIN <#room> <nick> <trust>`: someone joined a room this client is in.
    Join {
        /// The room.
        room: String,
        /// Who.
        nick: String,
        /// Whether their name is verified.
        trust: Trust,
    },
    /// `EVENT PART <#room> <nick> <trust>`: someone left a room this client is in.
    Part {
        /// The room.
        room: String,
        /// Who.
        nick: String,
        /// Whether their name is verified.
        trust: Trust,
    },
    /// `EVENT QUIT <#room> <nick> <trust> <reason>`: someone in the room disconnected.
    Quit {
        /// The room.
        room: String,
        /// Who.
        nick: String,
        /// Whether their name was verified.
        trust: Trust,
        /// Why, for people.
        reason: String,
    },
    /// `EVENT NICK <#room> <old> <new>`: an unverified member changed nickname.
    Nick {
        /// The room.
        room: String,
        /// The old nickname.
        old: String,
        /// The new nickname.
        new: String,
    },
    /// `EVENT TOPIC <#room> <nick> <text>`: the room's topic, set by `nick` (sent when it
    /// changes, and after `JOIN` when the room has one).
    Topic {
        /// The room.
        room: String,
        /// Who set it.
        by: String,
        /// The topic.
        text: String,
    },
    /// `EVENT MODE <#room> <nick> <change>`: `nick` changed the room: `+i`/`-i` (invite-only),
    /// `+s`/`-s` (secret), `+o name`/`-o name` (operator role given or taken).
    Mode {
        /// The room.
        room: String,
        /// Who changed it.
        by: String,
        /// The change, as written.
        change: String,
    },
    /// `EVENT KICK <#room> <nick> <by> <reason>`: `nick` was put out of the room by `by`.
    Kick {
        /// The room.
        room: String,
        /// Who was put out.
        nick: String,
        /// By whom.
        by: String,
        /// Why.
        reason: String,
    },
    /// `EVENT BAN <#room> <name> <by> <reason>`: `name` may no longer join or read the room.
    Ban {
        /// The room.
        room: String,
        /// Who is barred.
        name: String,
        /// By whom.
        by: String,
        /// Why.
        reason: String,
    },
    /// `EVENT UNBAN <#room> <name> <by>`: the ban on `name` was lifted.
    Unban {
        /// The room.
        room: String,
        /// Who may come back.
        name: String,
        /// By whom.
        by: String,
    },
    /// `EVENT INVITE <#room> <by>`: this client may join the invite-only room.
    Invite {
        /// The room.
        room: String,
        /// Who invited.
        by: String,
    },
    /// `EVENT REVOKED <nick> <reason>`: the certificate of someone this client had a direct
    /// conversation with was revoked: their name is no longer vouched for, and their published
    /// E2E key was withdrawn.
    Revoked {
        /// Whose certificate.
        nick: String,
        /// What it means, for people.
        reason: String,
    },
    /// `EVENT DEVICE <nick> <device> <added|removed>`: someone this client has a direct
    /// conversation with (or this client's own person) published a key for a new device, or
    /// withdrew one. A new device is not to be trusted silently: clients ask their user first.
    Device {
        /// Whose device.
        nick: String,
        /// The device's name.
        device: String,
        /// Added (true) or removed.
        added: bool,
    },
    /// `EVENT DISCONNECT <CODE> <reason>`: the server is closing this connection.
    Disconnect {
        /// Why, for programs.
        code: DisconnectCode,
        /// Why, for people.
        reason: String,
    },
    /// `EVENT SHUTDOWN <reason>`: the server is draining; the connection closes next.
    Shutdown {
        /// Why, for people.
        reason: String,
    },
    /// `EVENT PING <token>`: keepalive; answer `PONG <token>` (any input will do) or be
    /// disconnected at the idle timeout.
    Ping {
        /// Echo it back in `PONG`.
        token: String,
    },
    /// `EVENT <KIND> <rest>` of a kind this version does not know, or malformed fields.
    Other {
        /// The kind word.
        kind: String,
        /// Everything after it.
        rest: String,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Message {
                room,
                id,
                from,
                trust,
                time,
                text,
            } => write!(f, "EVENT MSG {room} {id} {from} {trust} {time} {text}"),
            Self::Direct {
                id,
                from,
                to,
                trust,
                time,
                text,
            } => write!(f, "EVENT DM {id} {from} {to} {trust} {time} {text}"),
            Self::E2e {
                id,
                from,
                to,
                trust,
                time,
                sealed,
            } => write!(f, "EVENT E2E {id} {from} {to} {trust} {time} {sealed}"),
            Self::Gap {
                target,
                first,
                last,
            } => write!(f, "EVENT GAP {target} {first} {last}"),
            Self::CaughtUp { count } => write!(f, "EVENT CAUGHTUP {count}"),
            Self::Join { room, nick, trust } => write!(f, "EVENT JOIN {room} {nick} {trust}"),
            Self::Part { room, nick, trust } => write!(f, "EVENT PART {room} {nick} {trust}"),
            Self::Quit {
                room,
                nick,
                trust,
                reason,
            } => write!(f, "EVENT QUIT {room} {nick} {trust} {reason}"),
            Self::Nick { room, old, new } => write!(f, "EVENT NICK {room} {old} {new}"),
            Self::Revoked { nick, reason } => write!(f, "EVENT REVOKED {nick} {reason}"),
            Self::Device {
                nick,
                device,
                added,
            } => {
                let change = if *added { "added" } else { "removed" };
                write!(f, "EVENT DEVICE {nick} {device} {change}")
            }
            Self::Topic { room, by, text } => write!(f, "EVENT TOPIC {room} {by} {text}"),
            Self::Mode { room, by, change } => write!(f, "EVENT MODE {room} {by} {change}"),
            Self::Kick {
                room,
                nick,
                by,
                reason,
            } => write!(f, "EVENT KICK {room} {nick} {by} {reason}"),
            Self::Ban {
                room,
                name,
                by,
                reason,
            } => write!(f, "EVENT BAN {room} {name} {by} {reason}"),
            Self::Unban { room, name, by } => write!(f, "EVENT UNBAN {room} {name} {by}"),
            Self::Invite { room, by } => write!(f, "EVENT INVITE {room} {by}"),
            Self::Disconnect { code, reason } => write!(f, "EVENT DISCONNECT {code} {reason}"),
            Self::Shutdown { reason } => write!(f, "EVENT SHUTDOWN {reason}"),
            Self::Ping { token } => write!(f, "EVENT PING {token}"),
            Self::Other { kind, rest } if rest.is_empty() => write!(f, "EVENT {kind}"),
            Self::Other { kind, rest } => write!(f, "EVENT {kind} {rest}"),
        }
    }
}

impl Event {
    fn parse(line: &str) -> Self {
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        Self::parse_fields(kind, rest).unwrap_or_else(|| Self::Other {
            kind: kind.to_owned(),
            rest: rest.to_owned(),
        })
    }

    fn parse_fields(kind: &str, rest: &str) -> Option<Self> {
        let owned = |s: &str| s.to_owned();
        Some(match kind {
            "MSG" => {
                let [room, id, from, trust, time, text] = fields(rest)?;
                Self::Message {
                    room: owned(room),
                    id: id.parse().ok()?,
                    from: owned(from),
                    trust: Trust::parse(trust)?,
                    time: owned(time),
                    text: owned(text),
                }
            }
            "DM" => {
                let [id, from, to, trust, time, text] = fields(rest)?;
                Self::Direct {
                    id: id.parse().ok()?,
                    from: owned(from),
                    to: owned(to),
                    trust: Trust::parse(trust)?,
                    time: owned(time),
                    text: owned(text),
                }
            }
            "E2E" => {
                let [id, from, to, trust, time, sealed] = fields(rest)?;
                Self::E2e {
                    id: id.parse().ok()?,
                    from: owned(from),
                    to: owned(to),
                    trust: Trust::parse(trust)?,
                    time: owned(time),
                    sealed: owned(sealed),
                }
            }
            "GAP" => {
                let [target, first, last] = fields(rest)?;
                let (first, last) = (first.parse().ok()?, last.parse().ok()?);
                if first > last {
                    return None;
                }
                Self::Gap {
                    target: owned(target),
                    first,
                    last,
                }
            }
            "CAUGHTUP" => Self::CaughtUp {
                count: rest.parse().ok()?,
            },
            "JOIN" | "PART" => {
                let [room, nick, trust] = fields(rest)?;
                let (room, nick, trust) = (owned(room), owned(nick), Trust::parse(trust)?);
                if kind == "JOIN" {
                    Self::Join { room, nick, trust }
                } else {
                    Self::Part { room, nick, trust }
                }
            }
            "QUIT" => {
                let [room, nick, trust, reason] = fields(rest)?;
                Self::Quit {
                    room: owned(room),
                    nick: owned(nick),
                    trust: Trust::parse(trust)?,
                    reason: owned(reason),
                }
            }
            "NICK" => {
                let [room, old, new] = fields(rest)?;
                Self::Nick {
                    room: owned(room),
                    old: owned(old),
                    new: owned(new),
                }
            }
            "TOPIC" | "MODE" => {
                let [room, by, rest] = fields(rest)?;
                let (room, by, rest) = (owned(room), owned(by), owned(rest));
                if kind == "TOPIC" {
                    Self::Topic {
                        room,
                        by,
                        text: rest,
                    }
                } else {
                    Self::Mode {
                        room,
                        by,
                        change: rest,
                    }
                }
            }
            "KICK" | "BAN" => {
                let [room, name, by, reason] = fields(rest)?;
                let (room, name, by, reason) = (owned(room), owned(name), owned(by), owned(reason));
                if kind == "KICK" {
                    Self::Kick {
                        room,
                        nick: name,
                        by,
                        reason,
                    }
                } else {
                    Self::Ban {
                        room,
                        name,
                        by,
                        reason,
                    }
                }
            }
            "UNBAN" => {
                let [room, name, by] = fields(rest)?;
                Self::Unban {
                    room: owned(room),
                    name: owned(name),
                    by: owned(by),
                }
            }
            "INVITE" => {
                let [room, by] = fields(rest)?;
                Self::Invite {
                    room: owned(room),
                    by: owned(by),
                }
            }
            "REVOKED" => {
                let [nick, reason] = fields(rest)?;
                Self::Revoked {
                    nick: owned(nick),
                    reason: owned(reason),
                }
            }
            "DEVICE" => {
                let [nick, device, change] = fields(rest)?;
                let added = match change {
                    "added" => true,
                    "removed" => false,
                    _ => return None,
                };
                Self::Device {
                    nick: owned(nick),
                    device: owned(device),
                    added,
                }
            }
            "DISCONNECT" => {
                let [code, reason] = fields(rest)?;
                match code.parse() {
                    Ok(code) => Self::Disconnect {
                        code,
                        reason: owned(reason),
                    },
                    // A newer server's code: kept at the start of the reason.
                    Err(_) => Self::Disconnect {
                        code: DisconnectCode::Unknown,
                        reason: format!("{code} {reason}"),
                    },
                }
            }
            "SHUTDOWN" => Self::Shutdown {
                reason: owned(rest),
            },
            "PING" => Self::Ping { token: owned(rest) },
            _ => return None,
        })
    }
}

/// Splits `rest` into exactly N space-separated fields, the last taking the rest of the line.
fn fields<const N: usize>(rest: &str) -> Option<[&str; N]> {
    let mut parts = rest.splitn(N, ' ');
    let mut out = [""; N];
    for slot in &mut out {
        *slot = parts.next()?;
    }
    Some(out)
}

/// Any line the server sends, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerLine {
    /// The greeting.
    Hello(Greeting),
    /// A reply to the oldest unanswered request.
    Reply(Reply),
    /// An event.
    Event(Event),
}

/// A server line that fits none of the forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected line from server: {line:?}")]
pub struct MalformedLine {
    /// The line, as received (clipped to 200 bytes).
    pub line: String,
}

impl ServerLine {
    /// Parses one line (without its line ending).
    pub fn parse(line: &str) -> Result<Self, MalformedLine> {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "OK" => Ok(Self::Reply(Reply::Ok(rest.to_owned()))),
            "ERR" => Ok(Self::Reply(Reply::Err(parse_error(rest)))),
            "EVENT" if !rest.is_empty() => Ok(Self::Event(Event::parse(rest))),
            "HELLO" => parse_greeting(rest).ok_or_else(|| malformed(line)),
            _ => Err(malformed(line)),
        }
    }
}

fn parse_error(rest: &str) -> ErrorReply {
    let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
    match code.parse() {
        Ok(code) => ErrorReply {
            code,
            message: message.to_owned(),
        },
        Err(_) => ErrorReply {
            code: ErrorCode::Unknown,
            message: rest.to_owned(),
        },
    }
}

fn parse_greeting(rest: &str) -> Option<ServerLine> {
    let mut parts = rest.splitn(3, ' ');
    let version = parts.next().filter(|v| !v.is_empty())?;
    let server = parts.next().filter(|s| !s.is_empty())?;
    Some(ServerLine::Hello(Greeting {
        version: version.to_owned(),
        server: server.to_owned(),
        text: parts.next().unwrap_or("").to_owned(),
    }))
}

fn malformed(line: &str) -> MalformedLine {
    let cut = line
        .char_indices()
        .map(|(i, _)| i)
        .take_while(|&i| i <= 200)
        .last()
        .unwrap_or(0);
    let line = if line.len() > 200 { &line[..cut] } else { line };
    MalformedLine {
        line: line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_encode_as_documented() {
        assert_eq!(Reply::ok("6").to_string(), "OK 6");
        assert_eq!(Reply::ok("").to_string(), "OK");
        assert_eq!(
            Reply::err(ErrorCode::BadArgs, "usage: SUM n1 [n2 ...]").to_string(),
            "ERR BAD_ARGS usage: SUM n1 [n2 ...]"
        );
    }

    #[test]
    fn every_server_line_round_trips() {
        let lines = [
            ServerLine::Hello(Greeting::new("chat.example", "ready; send HELP")),
            ServerLine::Hello(Greeting::new("srv", "")),
            ServerLine::Reply(Reply::ok("PONG")),
            ServerLine::Reply(Reply::ok("")),
            ServerLine::Reply(Reply::err(ErrorCode::NoQuiz, "no quiz pending")),
            ServerLine::Event(Event::Shutdown {
                reason: "admin alice asked".into(),
            }),
            ServerLine::Event(Event::Other {
                kind: "FUTURE".into(),
                rest: "a b c".into(),
            }),
            ServerLine::Event(Event::Message {
                room: "#general".into(),
                id: 42,
                from: "alice".into(),
                trust: Trust::Verified,
                time: "2026-11-21T09:30:00.000Z".into(),
                text: " spaced  out ".into(),
            }),
            ServerLine::Event(Event::Direct {
                id: 7,
                from: "bob".into(),
                to: "alice".into(),
                trust: Trust::Unverified,
                time: "2026-11-21T09:30:00.000Z".into(),
                text: "psst".into(),
            }),
            ServerLine::Event(Event::E2e {
                id: 8,
                from: "alice".into(),
                to: "bob".into(),
                trust: Trust::Verified,
                time: "2026-11-21T09:30:00.000Z".into(),
                sealed: "01abcdef".into(),
            }),
            ServerLine::Event(Event::Join {
                room: "#a".into(),
                nick: "carol".into(),
                trust: Trust::Verified,
            }),
            ServerLine::Event(Event::Part {
                room: "#a".into(),
                nick: "carol".into(),
                trust: Trust::Unverified,
            }),
            ServerLine::Event(Event::Quit {
                room: "#a".into(),
                nick: "dave".into(),
                trust: Trust::Verified,
                reason: "connection lost".into(),
            }),
            ServerLine::Event(Event::Nick {
                room: "#a".into(),
                old: "guest".into(),
                new: "erin".into(),
            }),
            ServerLine::Event(Event::Disconnect {
                code: DisconnectCode::SlowConsumer,
                reason: "outbound queue full".into(),
            }),
            ServerLine::Event(Event::Ping { token: "7".into() }),
            ServerLine::Event(Event::CaughtUp { count: 12 }),
            ServerLine::Event(Event::Topic {
                room: "#ops".into(),
                by: "alice".into(),
                text: "deploys on Fridays: no".into(),
            }),
            ServerLine::Event(Event::Mode {
                room: "#ops".into(),
                by: "alice".into(),
                change: "+o bob".into(),
            }),
            ServerLine::Event(Event::Kick {
                room: "#ops".into(),
                nick: "mallory".into(),
                by: "alice".into(),
                reason: "spam".into(),
            }),
            ServerLine::Event(Event::Ban {
                room: "#ops".into(),
                name: "mallory".into(),
                by: "alice".into(),
                reason: "spam again".into(),
            }),
            ServerLine::Event(Event::Unban {
                room: "#ops".into(),
                name: "mallory".into(),
                by: "alice".into(),
            }),
            ServerLine::Event(Event::Invite {
                room: "#ops".into(),
                by: "alice".into(),
            }),
            ServerLine::Event(Event::Revoked {
                nick: "mallory".into(),
                reason: "her certificate was revoked".into(),
            }),
            ServerLine::Event(Event::Gap {
                target: "#ops".into(),
                first: 10,
                last: 25,
            }),
            ServerLine::Event(Event::Device {
                nick: "alice".into(),
                device: "phone".into(),
                added: true,
            }),
            ServerLine::Event(Event::Device {
                nick: "alice".into(),
                device: "laptop".into(),
                added: false,
            }),
        ];
        for line in lines {
            let text = match &line {
                ServerLine::Hello(g) => g.to_string(),
                ServerLine::Reply(r) => r.to_string(),
                ServerLine::Event(e) => e.to_string(),
            };
            assert_eq!(ServerLine::parse(&text), Ok(line), "{text}");
        }
    }

    #[test]
    fn malformed_known_events_fall_back_to_other() {
        let parsed = ServerLine::parse("EVENT MSG #a notanumber bob verified t hi").unwrap();
        assert!(
            matches!(parsed, ServerLine::Event(Event::Other { .. })),
            "{parsed:?}"
        );
        let parsed = ServerLine::parse("EVENT JOIN #a bob maybe").unwrap();
        assert!(
            matches!(parsed, ServerLine::Event(Event::Other { .. })),
            "{parsed:?}"
        );
    }

    #[test]
    fn unknown_error_codes_are_kept_in_the_message() {
        let parsed = ServerLine::parse("ERR NEW_CODE something").unwrap();
        let ServerLine::Reply(Reply::Err(err)) = parsed else {
            panic!("not an error reply: {parsed:?}");
        };
        assert_eq!(err.code, ErrorCode::Unknown);
        assert_eq!(err.message, "NEW_CODE something");
    }

    #[test]
    fn garbage_is_malformed_and_clipped() {
        assert!(ServerLine::parse("what").is_err());
        assert!(ServerLine::parse("HELLO").is_err());
        assert!(ServerLine::parse("EVENT").is_err());
        let long = "é".repeat(500);
        let err = ServerLine::parse(&long).unwrap_err();
        assert!(err.line.len() <= 202);
    }
}
