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

/// A line the server pushes on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// `EVENT SHUTDOWN <reason>`: the server is draining; the connection closes next.
    Shutdown {
        /// Why, for people.
        reason: String,
    },
    /// `EVENT <KIND> <rest>` of a kind this version does not know.
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
            Self::Shutdown { reason } => write!(f, "EVENT SHUTDOWN {reason}"),
            Self::Other { kind, rest } if rest.is_empty() => write!(f, "EVENT {kind}"),
            Self::Other { kind, rest } => write!(f, "EVENT {kind} {rest}"),
        }
    }
}

impl Event {
    fn parse(rest: &str) -> Self {
        let (kind, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        match kind {
            "SHUTDOWN" => Self::Shutdown {
                reason: rest.to_owned(),
            },
            _ => Self::Other {
                kind: kind.to_owned(),
                rest: rest.to_owned(),
            },
        }
    }
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
