//! Codes carried by `EVENT DISCONNECT <CODE> <reason>`: why the server is closing a connection.
//!
//! The code is a stable word for programs (a client decides from it whether to reconnect); the
//! reason is for people and may change.

use std::fmt;
use std::str::FromStr;

/// Why the server closes a connection on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectCode {
    /// The client's outbound queue overflowed: it was not reading fast enough.
    SlowConsumer,
    /// An admin removed the client.
    Kicked,
    /// The same user connected again elsewhere; this older connection is closed.
    Replaced,
    /// The verified owner of the nickname this client had claimed connected.
    NickReclaimed,
    /// No input for the idle timeout.
    Idle,
    /// The client kept sending past the rate limit.
    Flood,
    /// The client's certificate was revoked: it cannot connect again with it.
    Revoked,
    /// An admin banned the user from the server (`BAN *`): refused at login until it ends.
    Banned,
    /// A code this version does not know (only produced when parsing a newer server's event;
    /// the original code is kept at the start of the reason).
    Unknown,
}

impl DisconnectCode {
    /// Every code, in the order docs/PROTOCOL.md lists them.
    pub const ALL: &'static [Self] = &[
        Self::SlowConsumer,
        Self::Kicked,
        Self::Replaced,
        Self::NickReclaimed,
        Self::Idle,
        Self::Flood,
        Self::Revoked,
        Self::Banned,
        Self::Unknown,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SlowConsumer => "SLOW_CONSUMER",
            Self::Kicked => "KICKED",
            Self::Replaced => "REPLACED",
            Self::NickReclaimed => "NICK_RECLAIMED",
            Self::Idle => "IDLE",
            Self::Flood => "FLOOD",
            Self::Revoked => "REVOKED",
            Self::Banned => "BANNED",
            Self::Unknown => "UNKNOWN",
        }
    }

    /// Whether reconnecting after this would be wrong: the server or an admin meant it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Kicked | Self::Replaced | Self::NickReclaimed | Self::Revoked | Self::Banned
        )
    }
}

impl fmt::Display for DisconnectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word in the code position of `EVENT DISCONNECT` that this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown disconnect code {0:?}")]
pub struct UnknownDisconnectCode(pub String);

impl FromStr for DisconnectCode {
    type Err = UnknownDisconnectCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|code| *code != Self::Unknown && code.as_str() == s)
            .ok_or_else(|| UnknownDisconnectCode(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_wire_form() {
        for code in DisconnectCode::ALL
            .iter()
            .filter(|c| **c != DisconnectCode::Unknown)
        {
            assert_eq!(code.as_str().parse::<DisconnectCode>(), Ok(*code));
        }
        assert!("UNKNOWN".parse::<DisconnectCode>().is_err());
        assert!("NOPE".parse::<DisconnectCode>().is_err());
        let finals: Vec<_> = DisconnectCode::ALL
            .iter()
            .filter(|c| c.is_final())
            .collect();
        assert_eq!(
            finals,
            [
                &DisconnectCode::Kicked,
                &DisconnectCode::Replaced,
                &DisconnectCode::NickReclaimed,
                &DisconnectCode::Revoked,
                &DisconnectCode::Banned
            ]
        );
    }
}
