//! Error codes carried by `ERR` replies.
//!
//! An `ERR` reply is `ERR <CODE> <human message>`. The code is a stable, machine-readable word;
//! the message is for people and may change between versions.

use std::fmt;
use std::str::FromStr;

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $text:literal,)*) => {
        /// A stable, machine-readable error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every error code, in the order docs/PROTOCOL.md lists them.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)*];

            /// The code as it appears on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }
        }

        impl FromStr for ErrorCode {
            type Err = UnknownErrorCode;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)*
                    _ => Err(UnknownErrorCode(s.to_owned())),
                }
            }
        }
    };
}

error_codes! {
    /// The verb is not one the server knows.
    UnknownVerb => "UNKNOWN_VERB",
    /// The verb is known but its arguments are missing, extra or malformed.
    BadArgs => "BAD_ARGS",
    /// An integer argument or result does not fit in a signed 64-bit integer.
    Overflow => "OVERFLOW",
    /// A number is outside the range the verb accepts.
    OutOfRange => "OUT_OF_RANGE",
    /// `ANSWER` was sent with no quiz pending.
    NoQuiz => "NO_QUIZ",
    /// The line was longer than the server's maximum line length; it was discarded.
    LineTooLong => "LINE_TOO_LONG",
    /// The line was not valid UTF-8; it was discarded.
    BadUtf8 => "BAD_UTF8",
    /// The line holds a control character (C0 but TAB, DEL, or C1).
    BadChars => "BAD_CHARS",
    /// The verb needs a role (for example admin) the connection does not have.
    Forbidden => "FORBIDDEN",
    /// Only the room's operators (and admins) may do that.
    NotOperator => "NOT_OPERATOR",
    /// The user is banned from that room (or from the server).
    Banned => "BANNED",
    /// The room is invite-only and the user was not invited.
    InviteOnly => "INVITE_ONLY",
    /// A nickname or room name breaks the naming rules.
    BadName => "BAD_NAME",
    /// Chat needs a nickname: send `NICK name` first (or connect with a certificate).
    NoNick => "NO_NICK",
    /// The nickname is in use by someone connected now.
    NickTaken => "NICK_TAKEN",
    /// The nickname comes from the client certificate and cannot change.
    NickLocked => "NICK_LOCKED",
    /// The client is not a member of that room.
    NotInRoom => "NOT_IN_ROOM",
    /// The client is already a member of that room.
    AlreadyInRoom => "ALREADY_IN_ROOM",
    /// No user by that nickname is connected.
    NoSuchUser => "NO_SUCH_USER",
    /// No room by that name exists.
    NoSuchRoom => "NO_SUCH_ROOM",
    /// A message with no text.
    EmptyText => "EMPTY_TEXT",
    /// The user has published no E2E key.
    NoKey => "NO_KEY",
    /// The verb needs a verified identity (a client certificate).
    NotVerified => "NOT_VERIFIED",
    /// Too many requests too fast; the request was not processed.
    RateLimited => "RATE_LIMITED",
    /// The user is in as many rooms as allowed.
    TooManyRooms => "TOO_MANY_ROOMS",
    /// The room has as many members as allowed.
    RoomFull => "ROOM_FULL",
    /// The user has published keys for as many devices as allowed (`KEY SET` of a new device).
    TooManyDevices => "TOO_MANY_DEVICES",
    /// The server is shutting down and takes no new work.
    ShuttingDown => "SHUTTING_DOWN",
    /// A certificate reload failed; the old certificate stays in use.
    ReloadFailed => "RELOAD_FAILED",
    /// A direct message longer than the server's direct-message limit; it was not sent.
    TooLong => "TOO_LONG",
    /// The recipient's queue has no room for more direct messages now (they are not reading
    /// fast enough); it was not sent. Try again later.
    TargetBusy => "TARGET_BUSY",
    /// The message could not be stored (the disk is full, or the store failed); it was not
    /// sent to anyone. Reading, history and everything else keep working.
    StoreFailed => "STORE_FAILED",
    /// This server keeps no history (it runs with `--store none`).
    NoHistory => "NO_HISTORY",
    /// The server has more work queued than it takes; try again shortly.
    Busy => "BUSY",
    /// The recipient is away and has as many direct messages waiting as the server keeps for
    /// them; not sent.
    InboxFull => "INBOX_FULL",
    /// A code this version does not know (only produced when parsing a newer server's reply;
    /// the original code is kept at the start of the message).
    Unknown => "UNKNOWN",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word in the code position of an `ERR` reply that this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code {0:?}")]
pub struct UnknownErrorCode(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_wire_form() {
        for code in ErrorCode::ALL {
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(*code));
            assert!(code
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'));
        }
        assert!("NOPE".parse::<ErrorCode>().is_err());
    }
}
