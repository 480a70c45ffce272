//! The parts of room moderation requests and events: where a ban applies ([`Scope`]) and a
//! room mode change ([`ModeChange`]).

use std::fmt;
use std::str::FromStr;

/// Where a ban applies: one room, or the whole server (`*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A room, `#name`.
    Room(String),
    /// The whole server, written `*`.
    Server,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Room(room) => f.write_str(room),
            Self::Server => f.write_str("*"),
        }
    }
}

/// A change of a room's modes: `+i`/`-i` (invite-only), `+s`/`-s` (secret: hidden from
/// `ROOMS` for non-members).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModeChange {
    /// `+i` (true) or `-i`.
    InviteOnly(bool),
    /// `+s` (true) or `-s`.
    Secret(bool),
}

impl fmt::Display for ModeChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (on, letter) = match *self {
            Self::InviteOnly(on) => (on, 'i'),
            Self::Secret(on) => (on, 's'),
        };
        write!(f, "{}{letter}", if on { '+' } else { '-' })
    }
}

impl FromStr for ModeChange {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        let on = match text.as_bytes().first() {
            Some(b'+') => true,
            Some(b'-') => false,
            _ => return Err(()),
        };
        match &text[1..] {
            "i" => Ok(Self::InviteOnly(on)),
            "s" => Ok(Self::Secret(on)),
            _ => Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_changes_read_and_write_the_same() {
        for text in ["+i", "-i", "+s", "-s"] {
            assert_eq!(text.parse::<ModeChange>().unwrap().to_string(), text);
        }
        for bad in ["", "+", "i", "+x", "+is", "++i"] {
            assert!(bad.parse::<ModeChange>().is_err(), "{bad}");
        }
        assert_eq!(Scope::Server.to_string(), "*");
    }
}
