//! Requests: what a client sends, one per line.
//!
//! # Format
//!
//! `VERB [args]`: the verb is case-insensitive and separated from its arguments by spaces. Each
//! request gets exactly one reply line, `OK …` or `ERR <CODE> …`, in the order the requests were
//! sent, so clients may pipeline. A blank line is ignored and gets no reply. A line holding a
//! control character (C0 other than TAB, DEL, or C1: see [`is_forbidden_control`]) is refused
//! with `BAD_CHARS`.

use std::fmt;

use crate::e2e::{KeyBundle, Layout, Payload, Sealed};
use crate::error::ErrorCode;
use crate::limits::{NUMBER_MAX, NUMBER_MIN, SUM_MAX_TERMS};
use crate::moderation::{ModeChange, Scope};
use crate::names::{validate_nick, validate_room, NameError};

/// Longest name `GREET` accepts, in characters.
pub const GREET_MAX_LEN: usize = 64;

macro_rules! verbs {
    ($($variant:ident => $name:literal, $usage:literal, $summary:literal;)*) => {
        /// A request verb.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Verb {
            $(#[doc = $summary] $variant,)*
        }

        impl Verb {
            /// Every verb, in the order `HELP` lists them.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)*];

            /// The verb's canonical (upper-case) spelling.
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => $name,)* }
            }

            /// The verb's argument synopsis, as shown in `ERR BAD_ARGS` replies.
            pub fn usage(self) -> &'static str {
                match self { $(Self::$variant => $usage,)* }
            }

            /// One sentence on what the verb does.
            pub fn summary(self) -> &'static str {
                match self { $(Self::$variant => $summary,)* }
            }

            /// Looks a verb up, ignoring ASCII case.
            pub fn lookup(word: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.name().eq_ignore_ascii_case(word))
            }
        }
    };
}

verbs! {
    Help => "HELP", "HELP [verb]", "Lists the verbs, or shows one verb's usage.";
    Time => "TIME", "TIME", "Answers with the server's time (RFC 3339, UTC).";
    Echo => "ECHO", "ECHO text", "Answers with the text.";
    Sum => "SUM", "SUM n1 [n2 ...]", "Adds up 64-bit integers; overflow is an error.";
    Lucky => "LUCKY", "LUCKY", "Answers with a random number from 1 to 100.";
    Greet => "GREET", "GREET [name]", "Greets you, by certificate name if you give none.";
    Quiz => "QUIZ", "QUIZ", "Poses an addition problem; reply with ANSWER.";
    Answer => "ANSWER", "ANSWER n", "Answers the pending QUIZ problem.";
    Number => "NUMBER", "NUMBER n", "Trades numbers (1-100): the server adds its own.";
    Ping => "PING", "PING", "Answers PONG.";
    Pong => "PONG", "PONG [token]", "Answers the server's EVENT PING keepalive; gets no reply.";
    Quit => "QUIT", "QUIT", "Says goodbye and closes the connection.";
    Nick => "NICK", "NICK name", "Claims a nickname (only without a client certificate).";
    Join => "JOIN", "JOIN #room", "Joins a room, creating it if needed.";
    Part => "PART", "PART #room", "Leaves a room.";
    Rooms => "ROOMS", "ROOMS", "Lists the rooms and their member counts.";
    Who => "WHO", "WHO #room", "Lists a room's members, verified or not.";
    Msg => "MSG", "MSG #room|nick text", "Sends text to a room you are in, or to one user.";
    Key => "KEY", "KEY SET bundle | KEY GET nick | KEY DEL device", "Publishes your device's E2E key (hex bundle), fetches every device key of a user, or withdraws one of your devices.";
    E2e => "E2E", "E2E nick sealed", "Relays an end-to-end encrypted message (hex) to one user.";
    History => "HISTORY", "HISTORY #room|nick [BEFORE id | AFTER id] [LIMIT n]", "Replays stored messages of a room you are in, or of your conversation with one user.";
    Kick => "KICK", "KICK [#room] nick [reason]", "Removes a user from a room (its operators), or from the server (admins).";
    Topic => "TOPIC", "TOPIC #room [text]", "Shows a room's topic, or sets it (its operators).";
    Op => "OP", "OP #room nick", "Makes a member an operator of the room (its operators).";
    Deop => "DEOP", "DEOP #room nick", "Takes a room's operator role away (its operators).";
    Ban => "BAN", "BAN #room name [reason] | BAN * name [duration|forever] [reason]", "Bars a verified user from a room (its operators), or from the server (admins).";
    Unban => "UNBAN", "UNBAN #room|* name", "Lifts a ban.";
    Mode => "MODE", "MODE #room [+i|-i|+s|-s]", "Shows a room's modes, or sets invite-only (i) or secret (s) (its operators).";
    Invite => "INVITE", "INVITE #room nick", "Lets a user into an invite-only room and tells them (its operators).";
    Stats => "STATS", "STATS", "Admin only: server counters (connections, rooms, UDP drops).";
    Reload => "RELOAD", "RELOAD", "Admin only: reloads the certificate, key and CA files.";
    Shutdown => "SHUTDOWN", "SHUTDOWN", "Admin only: drains and stops the server.";
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// `HELP [verb]`
    Help(Option<Verb>),
    /// `TIME`
    Time,
    /// `ECHO text`: the text is everything after the first space, kept as sent.
    Echo(String),
    /// `SUM n1 n2 …`: at least one and at most [`SUM_MAX_TERMS`] integers.
    Sum(Vec<i64>),
    /// `LUCKY`
    Lucky,
    /// `GREET [name]`
    Greet(Option<String>),
    /// `QUIZ`
    Quiz,
    /// `ANSWER n`
    Answer(i64),
    /// `NUMBER n`, with `n` in [`NUMBER_MIN`]..=[`NUMBER_MAX`].
    Number(i64),
    /// `PING`
    Ping,
    /// `PONG [token]`: the answer to a keepalive; the one request that gets no reply.
    Pong(Option<String>),
    /// `QUIT`
    Quit,
    /// `NICK name`
    Nick(String),
    /// `JOIN #room`
    Join(String),
    /// `PART #room`
    Part(String),
    /// `ROOMS`
    Rooms,
    /// `WHO #room`
    Who(String),
    /// `MSG target text`: the text is everything after the target, kept as sent.
    Msg {
        /// A room (`#name`) or a nickname.
        target: Target,
        /// The message, never empty or blank.
        text: String,
    },
    /// `KEY SET bundle`: publishes the caller's E2E key.
    KeySet(Payload<KeyBundle>),
    /// `KEY GET nick`: asks for a user's published E2E keys, one per device.
    KeyGet(String),
    /// `KEY DEL device`: withdraws the key of one of the caller's devices.
    KeyDel(String),
    /// `E2E nick sealed`: an end-to-end encrypted direct message.
    E2e {
        /// The recipient.
        to: String,
        /// The sealed message, as sent.
        sealed: Payload<Sealed>,
    },
    /// `HISTORY #room|nick [BEFORE id | AFTER id] [LIMIT n]`
    History {
        /// The room, or the other party of a conversation.
        target: Target,
        /// Where to read from: the newest messages when `None`.
        anchor: Option<Anchor>,
        /// How many messages at most (the server caps it).
        limit: Option<u32>,
    },
    /// `KICK [#room] nick [reason]`: out of a room, or (no room) off the server.
    Kick {
        /// The room, for a room kick.
        room: Option<String>,
        /// Who to remove.
        nick: String,
        /// Why, shown to everyone concerned.
        reason: Option<String>,
    },
    /// `TOPIC #room [text]`
    Topic {
        /// The room.
        room: String,
        /// The new topic; `None` asks for the current one.
        text: Option<String>,
    },
    /// `OP #room nick` (`grant`) or `DEOP #room nick`.
    Op {
        /// The room.
        room: String,
        /// Who.
        nick: String,
        /// Whether the role is given (`OP`) or taken (`DEOP`).
        grant: bool,
    },
    /// `BAN #room name [reason]` or `BAN * name [duration] [reason]`.
    Ban {
        /// A room, or the whole server.
        scope: Scope,
        /// The verified name barred.
        name: String,
        /// How long (server bans only); `None` is until lifted.
        duration: Option<std::time::Duration>,
        /// Why, shown to whoever it concerns.
        reason: Option<String>,
    },
    /// `UNBAN #room|* name`
    Unban {
        /// A room, or the whole server.
        scope: Scope,
        /// The name.
        name: String,
    },
    /// `MODE #room [+i|-i|+s|-s]`
    Mode {
        /// The room.
        room: String,
        /// The change; `None` asks for the current modes.
        change: Option<ModeChange>,
    },
    /// `INVITE #room nick`
    Invite {
        /// The room.
        room: String,
        /// Who is let in.
        nick: String,
    },
    /// `STATS`
    Stats,
    /// `RELOAD`
    Reload,
    /// `SHUTDOWN`
    Shutdown,
}

/// Where `HISTORY` reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// The newest messages with smaller ids than this one (paging back).
    Before(u64),
    /// The oldest messages with larger ids than this one (catching up).
    After(u64),
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A room, `#name`.
    Room(String),
    /// One user, by nickname.
    User(String),
}

impl Target {
    /// Reads a target: `#name` is a room, anything else a nickname. Both are validated.
    pub fn parse(word: &str) -> Result<Self, RequestError> {
        if word.starts_with('#') {
            checked_room(word).map(Self::Room)
        } else {
            checked_nick(word).map(Self::User)
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Room(name) | Self::User(name) => f.write_str(name),
        }
    }
}

/// Why a line is not a valid request. Each maps to one [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The first word is not a verb.
    #[error("unknown verb {verb:?}; send HELP for the list")]
    UnknownVerb {
        /// The word, truncated to 32 characters.
        verb: String,
    },
    /// Arguments missing, extra or malformed.
    #[error("usage: {}", .verb.usage())]
    Usage {
        /// The verb whose usage was broken.
        verb: Verb,
    },
    /// An argument that should be an integer is not one.
    #[error("{text:?} is not an integer; usage: {}", .verb.usage())]
    NotInteger {
        /// The verb.
        verb: Verb,
        /// The argument, truncated to 32 characters.
        text: String,
    },
    /// An integer argument does not fit in 64 bits.
    #[error("{text} does not fit in a signed 64-bit integer")]
    TooBig {
        /// The argument, truncated to 32 characters.
        text: String,
    },
    /// A number outside the range a verb accepts.
    #[error("{value} is out of range: {} takes {min} to {max}", .verb.name())]
    OutOfRange {
        /// The verb.
        verb: Verb,
        /// The number sent.
        value: i64,
        /// Lowest accepted.
        min: i64,
        /// Highest accepted.
        max: i64,
    },
    /// The line holds a control character.
    #[error("control characters are not allowed (found U+{0:04X})")]
    ControlChar(u32),
    /// A nickname or room name breaks the rules.
    #[error("invalid {what} {name:?}: {source}")]
    BadName {
        /// "nickname" or "room name".
        what: &'static str,
        /// The name, truncated to 32 characters.
        name: String,
        /// The rule broken.
        source: NameError,
    },
    /// A message without text.
    #[error("the message is empty")]
    EmptyText,
    /// A hex payload that is not hex, or not the documented layout.
    #[error("bad {what}: {reason}")]
    BadPayload {
        /// "key bundle" or "sealed message".
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl RequestError {
    /// The code the server sends for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownVerb { .. } => ErrorCode::UnknownVerb,
            Self::Usage { .. } | Self::NotInteger { .. } | Self::BadPayload { .. } => {
                ErrorCode::BadArgs
            }
            Self::TooBig { .. } => ErrorCode::Overflow,
            Self::OutOfRange { .. } => ErrorCode::OutOfRange,
            Self::ControlChar(_) => ErrorCode::BadChars,
            Self::BadName { .. } => ErrorCode::BadName,
            Self::EmptyText => ErrorCode::EmptyText,
        }
    }
}

impl Request {
    /// Parses one line (without its line ending).
    ///
    /// Returns `Ok(None)` for a blank line, which gets no reply.
    pub fn parse(line: &str) -> Result<Option<Self>, RequestError> {
        if let Some(c) = line.chars().find(|&c| is_forbidden_control(c)) {
            return Err(RequestError::ControlChar(c.into()));
        }
        let line = line.trim_start_matches([' ', '\t']);
        if line.trim_end().is_empty() {
            return Ok(None);
        }
        let (word, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
        let verb =
            Verb::lookup(word).ok_or_else(|| RequestError::UnknownVerb { verb: clip(word) })?;
        Self::parse_args(verb, rest).map(Some)
    }

    fn parse_args(verb: Verb, rest: &str) -> Result<Self, RequestError> {
        let mut args = rest.split_whitespace();
        let request = match verb {
            // ECHO keeps its text exactly, spaces included: only the separator is removed.
            Verb::Echo => return Ok(Self::Echo(rest.to_owned())),
            Verb::Greet => return parse_greet(rest),
            Verb::Sum => return parse_sum(args),
            Verb::Answer => Self::Answer(one_integer(verb, &mut args)?),
            Verb::Number => {
                let value = one_integer(verb, &mut args)?;
                if !(NUMBER_MIN..=NUMBER_MAX).contains(&value) {
                    return Err(RequestError::OutOfRange {
                        verb,
                        value,
                        min: NUMBER_MIN,
                        max: NUMBER_MAX,
                    });
                }
                Self::Number(value)
            }
            Verb::Msg => return parse_msg(rest),
            Verb::Kick => return parse_kick(rest),
            Verb::Topic
            | Verb::Op
            | Verb::Deop
            | Verb::Ban
            | Verb::Unban
            | Verb::Mode
            | Verb::Invite => return parse_moderation(verb, rest),
            Verb::History => return parse_history(args),
            Verb::Key => match (args.next(), args.next()) {
                (Some(sub), Some(arg)) if sub.eq_ignore_ascii_case("SET") => {
                    Self::KeySet(payload(arg, "key bundle")?)
                }
                (Some(sub), Some(nick)) if sub.eq_ignore_ascii_case("GET") => {
                    Self::KeyGet(checked_nick(nick)?)
                }
                (Some(sub), Some(device)) if sub.eq_ignore_ascii_case("DEL") => {
                    crate::names::validate_device(device).map_err(|source| {
                        RequestError::BadName {
                            what: "device name",
                            name: clip(device),
                            source,
                        }
                    })?;
                    Self::KeyDel(crate::names::name_key(device))
                }
                _ => return Err(RequestError::Usage { verb }),
            },
            Verb::E2e => match (args.next(), args.next()) {
                (Some(nick), Some(arg)) => Self::E2e {
                    to: checked_nick(nick)?,
                    sealed: payload(arg, "sealed message")?,
                },
                _ => return Err(RequestError::Usage { verb }),
            },
            Verb::Nick => Self::Nick(checked_nick(
                args.next().ok_or(RequestError::Usage { verb })?,
            )?),
            Verb::Join => Self::Join(checked_room(
                args.next().ok_or(RequestError::Usage { verb })?,
            )?),
            Verb::Part => Self::Part(checked_room(
                args.next().ok_or(RequestError::Usage { verb })?,
            )?),
            Verb::Who => Self::Who(checked_room(
                args.next().ok_or(RequestError::Usage { verb })?,
            )?),
            Verb::Rooms => Self::Rooms,
            Verb::Stats => Self::Stats,
            Verb::Reload => Self::Reload,
            Verb::Pong => {
                let token = rest.trim();
                return Ok(Self::Pong((!token.is_empty()).then(|| clip(token))));
            }
            Verb::Help => match args.next() {
                None => Self::Help(None),
                Some(word) => Self::Help(Some(
                    Verb::lookup(word)
                        .ok_or_else(|| RequestError::UnknownVerb { verb: clip(word) })?,
                )),
            },
            Verb::Time => Self::Time,
            Verb::Lucky => Self::Lucky,
            Verb::Quiz => Self::Quiz,
            Verb::Ping => Self::Ping,
            Verb::Quit => Self::Quit,
            Verb::Shutdown => Self::Shutdown,
        };
        match args.next() {
            Some(_) => Err(RequestError::Usage { verb }),
            None => Ok(request),
        }
    }

    /// The verb of this request.
    pub fn verb(&self) -> Verb {
        match self {
            Self::Help(_) => Verb::Help,
            Self::Time => Verb::Time,
            Self::Echo(_) => Verb::Echo,
            Self::Sum(_) => Verb::Sum,
            Self::Lucky => Verb::Lucky,
            Self::Greet(_) => Verb::Greet,
            Self::Quiz => Verb::Quiz,
            Self::Answer(_) => Verb::Answer,
            Self::Number(_) => Verb::Number,
            Self::Ping => Verb::Ping,
            Self::Quit => Verb::Quit,
            Self::Nick(_) => Verb::Nick,
            Self::Join(_) => Verb::Join,
            Self::Part(_) => Verb::Part,
            Self::Rooms => Verb::Rooms,
            Self::Who(_) => Verb::Who,
            Self::Msg { .. } => Verb::Msg,
            Self::Kick { .. } => Verb::Kick,
            Self::Topic { .. } => Verb::Topic,
            Self::Op { grant: true, .. } => Verb::Op,
            Self::Op { grant: false, .. } => Verb::Deop,
            Self::Ban { .. } => Verb::Ban,
            Self::Unban { .. } => Verb::Unban,
            Self::Mode { .. } => Verb::Mode,
            Self::Invite { .. } => Verb::Invite,
            Self::History { .. } => Verb::History,
            Self::KeySet(_) | Self::KeyGet(_) | Self::KeyDel(_) => Verb::Key,
            Self::E2e { .. } => Verb::E2e,
            Self::Stats => Verb::Stats,
            Self::Reload => Verb::Reload,
            Self::Pong(_) => Verb::Pong,
            Self::Shutdown => Verb::Shutdown,
        }
    }
}

/// Writes the request as a protocol line (without the line ending). [`Request::parse`] of the
/// result gives the same request back.
impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = self.verb().name();
        match self {
            Self::Echo(text) => write!(f, "{verb} {text}"),
            Self::Sum(terms) => {
                f.write_str(verb)?;
                terms.iter().try_for_each(|n| write!(f, " {n}"))
            }
            Self::Greet(Some(name)) => write!(f, "{verb} {name}"),
            Self::Answer(n) | Self::Number(n) => write!(f, "{verb} {n}"),
            Self::Help(Some(topic)) => write!(f, "{verb} {topic}"),
            Self::Pong(Some(token)) => write!(f, "{verb} {token}"),
            Self::Nick(name) | Self::Join(name) | Self::Part(name) | Self::Who(name) => {
                write!(f, "{verb} {name}")
            }
            Self::Msg { target, text } => write!(f, "{verb} {target} {text}"),
            Self::KeySet(bundle) => write!(f, "{verb} SET {}", bundle.hex()),
            Self::KeyGet(nick) => write!(f, "{verb} GET {nick}"),
            Self::KeyDel(device) => write!(f, "{verb} DEL {device}"),
            Self::E2e { to, sealed } => write!(f, "{verb} {to} {}", sealed.hex()),
            Self::Kick { room, nick, reason } => {
                f.write_str(verb)?;
                if let Some(room) = room {
                    write!(f, " {room}")?;
                }
                write!(f, " {nick}")?;
                reason.iter().try_for_each(|r| write!(f, " {r}"))
            }
            Self::Topic { room, text } => {
                write!(f, "{verb} {room}")?;
                text.iter().try_for_each(|t| write!(f, " {t}"))
            }
            Self::Op { room, nick, .. } | Self::Invite { room, nick } => {
                write!(f, "{verb} {room} {nick}")
            }
            Self::Ban {
                scope,
                name,
                duration,
                reason,
            } => {
                write!(f, "{verb} {scope} {name}")?;
                match (duration, scope, reason) {
                    (Some(duration), _, _) => {
                        write!(f, " {}", crate::duration::format_duration(*duration))?;
                    }
                    // Without it, a reason starting with a duration would be read as one.
                    (None, Scope::Server, Some(_)) => f.write_str(" forever")?,
                    _ => {}
                }
                reason.iter().try_for_each(|r| write!(f, " {r}"))
            }
            Self::Unban { scope, name } => write!(f, "{verb} {scope} {name}"),
            Self::Mode { room, change } => {
                write!(f, "{verb} {room}")?;
                change.iter().try_for_each(|c| write!(f, " {c}"))
            }
            Self::History {
                target,
                anchor,
                limit,
            } => {
                write!(f, "{verb} {target}")?;
                match anchor {
                    Some(Anchor::Before(id)) => write!(f, " BEFORE {id}")?,
                    Some(Anchor::After(id)) => write!(f, " AFTER {id}")?,
                    None => {}
                }
                match limit {
                    Some(n) => write!(f, " LIMIT {n}"),
                    None => Ok(()),
                }
            }
            _ => f.write_str(verb),
        }
    }
}

/// True for the characters no request line may hold: C0 controls other than TAB (U+0000 to
/// U+001F), DEL (U+007F) and C1 controls (U+0080 to U+009F). They could drive a terminal.
pub fn is_forbidden_control(c: char) -> bool {
    (c.is_ascii_control() && c != '\t') || ('\u{80}'..='\u{9f}').contains(&c)
}

fn parse_msg(rest: &str) -> Result<Request, RequestError> {
    let rest = rest.trim_start_matches([' ', '\t']);
    let (word, text) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    if word.is_empty() {
        return Err(RequestError::Usage { verb: Verb::Msg });
    }
    let target = Target::parse(word)?;
    if text.trim().is_empty() {
        return Err(RequestError::EmptyText);
    }
    Ok(Request::Msg {
        target,
        text: text.to_owned(),
    })
}

/// Decodes a hex argument with `decode`, naming `what` in the error.
fn payload<T: Layout>(arg: &str, what: &'static str) -> Result<Payload<T>, RequestError> {
    Payload::parse(arg).map_err(|reason| RequestError::BadPayload { what, reason })
}

fn parse_kick(rest: &str) -> Result<Request, RequestError> {
    let usage = || RequestError::Usage { verb: Verb::Kick };
    let (first, rest) = split_word(rest);
    if first.is_empty() {
        return Err(usage());
    }
    let (room, word, reason) = if first.starts_with('#') {
        let (word, reason) = split_word(rest);
        (Some(checked_room(first)?), word, reason)
    } else {
        (None, first, rest)
    };
    if word.is_empty() {
        return Err(usage());
    }
    Ok(Request::Kick {
        room,
        nick: checked_nick(word)?,
        reason: free_text(reason),
    })
}

/// The first word of `text` and the rest after it (both trimmed of blanks).
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_matches([' ', '\t']);
    let (word, rest) = text.split_once([' ', '\t']).unwrap_or((text, ""));
    (word, rest.trim_matches([' ', '\t']))
}

/// Free text to the end of the line, if there is any.
fn free_text(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The moderation verbs: `TOPIC`, `OP`, `DEOP`, `BAN`, `UNBAN`, `MODE`, `INVITE`.
fn parse_moderation(verb: Verb, rest: &str) -> Result<Request, RequestError> {
    let usage = || RequestError::Usage { verb };
    let (first, rest) = split_word(rest);
    if first.is_empty() {
        return Err(usage());
    }
    let scope = || -> Result<Scope, RequestError> {
        if first == "*" {
            Ok(Scope::Server)
        } else {
            Ok(Scope::Room(checked_room(first)?))
        }
    };
    let (second, tail) = split_word(rest);
    Ok(match verb {
        Verb::Topic => Request::Topic {
            room: checked_room(first)?,
            text: free_text(rest),
        },
        Verb::Op | Verb::Deop | Verb::Invite => {
            if second.is_empty() || !tail.is_empty() {
                return Err(usage());
            }
            let (room, nick) = (checked_room(first)?, checked_nick(second)?);
            match verb {
                Verb::Invite => Request::Invite { room, nick },
                _ => Request::Op {
                    room,
                    nick,
                    grant: verb == Verb::Op,
                },
            }
        }
        Verb::Unban => {
            if second.is_empty() || !tail.is_empty() {
                return Err(usage());
            }
            Request::Unban {
                scope: scope()?,
                name: checked_nick(second)?,
            }
        }
        Verb::Ban => {
            if second.is_empty() {
                return Err(usage());
            }
            let scope = scope()?;
            let (mut duration, mut reason) = (None, tail);
            if scope == Scope::Server {
                let (word, after) = split_word(tail);
                if word.eq_ignore_ascii_case("forever") {
                    reason = after;
                } else if let Ok(d) = crate::duration::parse_duration(word) {
                    duration = Some(d);
                    reason = after;
                }
            }
            Request::Ban {
                scope,
                name: checked_nick(second)?,
                duration,
                reason: free_text(reason),
            }
        }
        Verb::Mode => {
            if !tail.is_empty() {
                return Err(usage());
            }
            Request::Mode {
                room: checked_room(first)?,
                change: match second {
                    "" => None,
                    word => Some(word.parse().map_err(|()| usage())?),
                },
            }
        }
        _ => return Err(usage()),
    })
}

fn parse_history<'a>(mut args: impl Iterator<Item = &'a str>) -> Result<Request, RequestError> {
    let verb = Verb::History;
    let usage = || RequestError::Usage { verb };
    let target = Target::parse(args.next().ok_or_else(usage)?)?;
    let (mut anchor, mut limit) = (None, None);
    while let Some(word) = args.next() {
        let value = args.next().ok_or_else(usage)?;
        let number = |value: &str| value.parse::<u64>().map_err(|_| usage());
        if word.eq_ignore_ascii_case("BEFORE") && anchor.is_none() {
            anchor = Some(Anchor::Before(number(value)?));
        } else if word.eq_ignore_ascii_case("AFTER") && anchor.is_none() {
            anchor = Some(Anchor::After(number(value)?));
        } else if word.eq_ignore_ascii_case("LIMIT") && limit.is_none() {
            limit = Some(value.parse::<u32>().map_err(|_| usage())?);
        } else {
            return Err(usage());
        }
    }
    Ok(Request::History {
        target,
        anchor,
        limit,
    })
}

fn checked_nick(name: &str) -> Result<String, RequestError> {
    validate_nick(name).map_err(|source| RequestError::BadName {
        what: "nickname",
        name: clip(name),
        source,
    })?;
    Ok(name.to_owned())
}

fn checked_room(name: &str) -> Result<String, RequestError> {
    validate_room(name).map_err(|source| RequestError::BadName {
        what: "room name",
        name: clip(name),
        source,
    })?;
    Ok(name.to_owned())
}

fn parse_greet(rest: &str) -> Result<Request, RequestError> {
    let name = rest.trim();
    if name.is_empty() {
        return Ok(Request::Greet(None));
    }
    if name.chars().count() > GREET_MAX_LEN {
        return Err(RequestError::Usage { verb: Verb::Greet });
    }
    Ok(Request::Greet(Some(name.to_owned())))
}

fn parse_sum<'a>(args: impl Iterator<Item = &'a str>) -> Result<Request, RequestError> {
    let mut terms = Vec::new();
    for arg in args {
        if terms.len() == SUM_MAX_TERMS {
            return Err(RequestError::Usage { verb: Verb::Sum });
        }
        terms.push(parse_integer(Verb::Sum, arg)?);
    }
    if terms.is_empty() {
        return Err(RequestError::Usage { verb: Verb::Sum });
    }
    Ok(Request::Sum(terms))
}

fn one_integer<'a>(
    verb: Verb,
    args: &mut impl Iterator<Item = &'a str>,
) -> Result<i64, RequestError> {
    let arg = args.next().ok_or(RequestError::Usage { verb })?;
    parse_integer(verb, arg)
}

fn parse_integer(verb: Verb, text: &str) -> Result<i64, RequestError> {
    match text.parse::<i64>() {
        Ok(n) => Ok(n),
        // Only digits with an optional sign can overflow; anything else is not a number at all.
        Err(_) if looks_numeric(text) => Err(RequestError::TooBig { text: clip(text) }),
        Err(_) => Err(RequestError::NotInteger {
            verb,
            text: clip(text),
        }),
    }
}

fn looks_numeric(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Shortens text quoted back in an error so a reply stays small whatever was sent.
fn clip(text: &str) -> String {
    const MAX: usize = 32;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Request {
        Request::parse(line).unwrap().unwrap()
    }

    fn error(line: &str) -> RequestError {
        Request::parse(line).unwrap_err()
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(parse("time"), Request::Time);
        assert_eq!(parse("TiMe"), Request::Time);
        assert_eq!(parse("  PING  "), Request::Ping);
    }

    #[test]
    fn blank_lines_are_not_requests() {
        assert_eq!(Request::parse(""), Ok(None));
        assert_eq!(Request::parse("   \t "), Ok(None));
    }

    #[test]
    fn echo_keeps_its_text_verbatim() {
        assert_eq!(
            parse("ECHO  two  spaces "),
            Request::Echo(" two  spaces ".into())
        );
        assert_eq!(parse("echo"), Request::Echo(String::new()));
        assert_eq!(parse("ECHO héllo ✓"), Request::Echo("héllo ✓".into()));
    }

    #[test]
    fn sum_parses_signed_integers() {
        assert_eq!(parse("SUM 1 2 3"), Request::Sum(vec![1, 2, 3]));
        assert_eq!(parse("sum -5 +7"), Request::Sum(vec![-5, 7]));
        let max = i64::MAX.to_string();
        assert_eq!(parse(&format!("SUM {max}")), Request::Sum(vec![i64::MAX]));
    }

    #[test]
    fn sum_errors_name_the_problem() {
        assert_eq!(error("SUM").code(), ErrorCode::BadArgs);
        assert_eq!(error("SUM 1 x").code(), ErrorCode::BadArgs);
        assert_eq!(error("SUM 1.5").code(), ErrorCode::BadArgs);
        assert_eq!(
            error("SUM 99999999999999999999").code(),
            ErrorCode::Overflow
        );
        let many = vec!["1"; SUM_MAX_TERMS + 1].join(" ");
        assert_eq!(error(&format!("SUM {many}")).code(), ErrorCode::BadArgs);
    }

    #[test]
    fn number_is_checked_against_its_range() {
        assert_eq!(parse("NUMBER 1"), Request::Number(1));
        assert_eq!(parse("NUMBER 100"), Request::Number(100));
        assert_eq!(error("NUMBER 0").code(), ErrorCode::OutOfRange);
        assert_eq!(error("NUMBER 101").code(), ErrorCode::OutOfRange);
        assert_eq!(error("NUMBER").code(), ErrorCode::BadArgs);
        assert_eq!(error("NUMBER 5 6").code(), ErrorCode::BadArgs);
    }

    #[test]
    fn verbs_without_arguments_refuse_extra_ones() {
        assert_eq!(error("TIME now").code(), ErrorCode::BadArgs);
        assert_eq!(
            error("PING x").to_string(),
            "usage: PING",
            "the message shows the usage"
        );
    }

    #[test]
    fn unknown_verbs_and_control_characters_are_refused() {
        assert_eq!(error("FROB").code(), ErrorCode::UnknownVerb);
        assert_eq!(error("HELP FROB").code(), ErrorCode::UnknownVerb);
        assert_eq!(parse("help sum"), Request::Help(Some(Verb::Sum)));
        assert_eq!(error("ECHO a\0b").code(), ErrorCode::BadChars);
        assert_eq!(error("ECHO \x1b[31m").code(), ErrorCode::BadChars);
        assert_eq!(parse("ECHO a\tb"), Request::Echo("a\tb".into()));
    }

    #[test]
    fn chat_verbs_validate_names_and_text() {
        assert_eq!(parse("join #General"), Request::Join("#General".into()));
        assert_eq!(error("JOIN general").code(), ErrorCode::BadName);
        assert_eq!(error("JOIN").code(), ErrorCode::BadArgs);
        assert_eq!(error("JOIN #a #b").code(), ErrorCode::BadArgs);
        assert_eq!(error("NICK 9lives").code(), ErrorCode::BadName);
        assert_eq!(error("NICK server").code(), ErrorCode::BadName);
        assert_eq!(error("MSG #room").code(), ErrorCode::EmptyText);
        assert_eq!(error("MSG #room    ").code(), ErrorCode::EmptyText);
        assert_eq!(error("MSG").code(), ErrorCode::BadArgs);
        assert_eq!(error("MSG bad.nick hi").code(), ErrorCode::BadName);
        assert_eq!(
            parse("MSG bob  two spaces"),
            Request::Msg {
                target: Target::User("bob".into()),
                text: " two spaces".into()
            }
        );
        assert_eq!(
            parse("KICK eve  flooding the room "),
            Request::Kick {
                room: None,
                nick: "eve".into(),
                reason: Some("flooding the room".into())
            }
        );
        assert_eq!(
            parse("KICK #ops eve  flooding "),
            Request::Kick {
                room: Some("#ops".into()),
                nick: "eve".into(),
                reason: Some("flooding".into())
            }
        );
        assert_eq!(
            parse("BAN * eve 7d   spam"),
            Request::Ban {
                scope: Scope::Server,
                name: "eve".into(),
                duration: Some(std::time::Duration::from_secs(7 * 86_400)),
                reason: Some("spam".into())
            }
        );
        assert_eq!(
            parse("BAN #ops eve 7d spam"),
            Request::Ban {
                scope: Scope::Room("#ops".into()),
                name: "eve".into(),
                duration: None,
                reason: Some("7d spam".into())
            },
            "room bans take no duration: it is part of the reason"
        );
        assert_eq!(
            parse("TOPIC #ops"),
            Request::Topic {
                room: "#ops".into(),
                text: None
            }
        );
        for bad in [
            "TOPIC",
            "OP #ops",
            "OP #ops a b",
            "DEOP ops bob",
            "MODE #ops +x",
            "MODE #ops +i x",
            "INVITE #ops",
            "UNBAN #ops",
            "BAN",
            "BAN #ops",
            "KICK #ops",
            "BAN @ eve",
        ] {
            assert!(Request::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn quoted_input_in_errors_is_clipped() {
        let long = "x".repeat(1000);
        let message = error(&long).to_string();
        assert!(message.len() < 100, "{message}");
    }

    #[test]
    fn e2e_verbs_check_their_payloads() {
        let usage = |line: &str| matches!(Request::parse(line), Err(RequestError::Usage { .. }));
        assert!(usage("KEY"));
        assert!(usage("KEY GET"));
        assert!(usage("KEY PUT bob"));
        assert!(usage("KEY GET bob extra"));
        assert!(usage("E2E bob"));
        let bad = |line: &str| match Request::parse(line) {
            Err(err @ RequestError::BadPayload { .. }) => {
                assert_eq!(err.code(), ErrorCode::BadArgs);
                err.to_string()
            }
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(
            bad("KEY SET xyz"),
            "bad key bundle: odd number of hex digits"
        );
        assert_eq!(bad("KEY SET 0200"), "bad key bundle: truncated");
        assert_eq!(bad("KEY SET 0100"), "bad key bundle: unknown version 1");
        assert_eq!(bad("E2E bob 01"), "bad sealed message: unknown version 1");
        assert!(usage("KEY DEL"));
        assert!(matches!(
            Request::parse("KEY DEL -phone"),
            Err(RequestError::BadName { .. })
        ));
        assert_eq!(
            Request::parse("KEY DEL Phone").unwrap(),
            Some(Request::KeyDel("phone".into()))
        );
        assert!(matches!(
            Request::parse("E2E #room 01"),
            Err(RequestError::BadName { .. })
        ));
    }

    #[test]
    fn display_round_trips_through_parse() {
        let requests = [
            Request::Help(None),
            Request::Help(Some(Verb::Sum)),
            Request::Time,
            Request::Echo(" spaced  text".into()),
            Request::Echo(String::new()),
            Request::Sum(vec![i64::MIN, 0, i64::MAX]),
            Request::Lucky,
            Request::Greet(None),
            Request::Greet(Some("Ada Lovelace".into())),
            Request::Quiz,
            Request::Answer(-3),
            Request::Number(42),
            Request::Ping,
            Request::Quit,
            Request::Shutdown,
            Request::Stats,
            Request::Reload,
            Request::Pong(None),
            Request::Pong(Some("42".into())),
            Request::Nick("alice".into()),
            Request::Join("#general".into()),
            Request::Part("#general".into()),
            Request::Rooms,
            Request::Who("#x".into()),
            Request::History {
                target: Target::Room("#ops".into()),
                anchor: None,
                limit: None,
            },
            Request::History {
                target: Target::User("bob".into()),
                anchor: Some(Anchor::Before(40)),
                limit: Some(20),
            },
            Request::History {
                target: Target::Room("#ops".into()),
                anchor: Some(Anchor::After(0)),
                limit: None,
            },
            Request::Msg {
                target: Target::Room("#general".into()),
                text: " hello,  world ".into(),
            },
            Request::Msg {
                target: Target::User("bob".into()),
                text: "psst".into(),
            },
            Request::KeySet(
                Payload::new(KeyBundle {
                    public_key: vec![1; 32],
                    device: "laptop".into(),
                    cert: vec![2; 300],
                    signature: vec![3; 71],
                })
                .unwrap(),
            ),
            Request::KeyGet("bob".into()),
            Request::KeyDel("phone".into()),
            Request::E2e {
                to: "bob".into(),
                sealed: Payload::new(Sealed {
                    counter: 1,
                    timestamp_ms: 2,
                    sender_key_id: [3; 8],
                    slots: vec![crate::e2e::Slot {
                        key_id: [7; 8],
                        enc: vec![4; 32],
                        wrapped: vec![8; 48],
                    }],
                    ciphertext: vec![5; 40],
                    signature: vec![6; 72],
                })
                .unwrap(),
            },
            Request::Kick {
                room: None,
                nick: "mallory".into(),
                reason: Some("spam, again".into()),
            },
            Request::Kick {
                room: Some("#ops".into()),
                nick: "mallory".into(),
                reason: None,
            },
            Request::Topic {
                room: "#ops".into(),
                text: Some("deploys: not on Fridays".into()),
            },
            Request::Op {
                room: "#ops".into(),
                nick: "bob".into(),
                grant: true,
            },
            Request::Op {
                room: "#ops".into(),
                nick: "bob".into(),
                grant: false,
            },
            Request::Ban {
                scope: Scope::Server,
                name: "mallory".into(),
                duration: Some(std::time::Duration::from_secs(3600)),
                reason: Some("spam".into()),
            },
            Request::Ban {
                scope: Scope::Room("#ops".into()),
                name: "mallory".into(),
                duration: None,
                reason: None,
            },
            Request::Unban {
                scope: Scope::Server,
                name: "mallory".into(),
            },
            Request::Mode {
                room: "#ops".into(),
                change: Some(ModeChange::Secret(true)),
            },
            Request::Mode {
                room: "#ops".into(),
                change: None,
            },
            Request::Invite {
                room: "#ops".into(),
                nick: "carol".into(),
            },
        ];
        for request in requests {
            assert_eq!(parse(&request.to_string()), request);
        }
    }

    #[test]
    fn payloads_are_checked_once_and_passed_on_exactly_as_received() {
        let sealed = Payload::new(Sealed {
            counter: 1,
            timestamp_ms: 2,
            sender_key_id: [0xab; 8],
            slots: vec![crate::e2e::Slot {
                key_id: [0x12; 8],
                enc: vec![0xcd; 32],
                wrapped: vec![0x34; 48],
            }],
            ciphertext: vec![0xef; 40],
            signature: vec![6; 72],
        })
        .unwrap();
        let line = format!("E2E bob {}", sealed.hex().to_uppercase());
        let request = parse(&line);
        let Request::E2e {
            sealed: received, ..
        } = &request
        else {
            panic!("{request:?}")
        };
        assert_eq!(received.value(), sealed.value(), "decoded once");
        assert_eq!(
            request.to_string(),
            line,
            "relayed as received, not re-encoded"
        );
        assert!(
            Request::parse("E2E bob 00ff").is_err(),
            "checked on the way in"
        );
    }

    #[test]
    fn every_verb_has_usage_starting_with_its_name() {
        for verb in Verb::ALL {
            assert!(verb.usage().starts_with(verb.name()));
            assert_eq!(Verb::lookup(&verb.name().to_lowercase()), Some(*verb));
        }
    }
}
