//! Rules for names: nicknames (also the common name of a client certificate) and server names.
//!
//! A nickname is 1 to [`NICK_MAX_LEN`] ASCII characters: letters, digits, `-` and `_`, starting
//! with a letter. Nicknames compare case-insensitively (`Alice` and `alice` are the same user),
//! so a lookalike cannot be registered beside an existing user.

/// The certificate attribute (X.509 OrganizationalUnitName, OU) that carries a user's role.
///
/// Certificates are issued by our own CA, so the role is as trustworthy as the CA key.
pub const ROLE_ATTRIBUTE: &str = "OU";

/// The role value that grants admin verbs (`SHUTDOWN`, `KICK`).
pub const ADMIN_ROLE: &str = "admin";

/// The role value of an ordinary user.
pub const USER_ROLE: &str = "user";

/// Longest nickname, in characters.
pub const NICK_MAX_LEN: usize = 32;

/// Longest room name, in characters, the leading `#` not counted.
pub const ROOM_MAX_LEN: usize = 32;

/// Longest server name, in characters.
pub const SERVER_NAME_MAX_LEN: usize = 64;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("the name is empty")]
    Empty,
    /// The name is longer than allowed.
    #[error("the name is longer than {max} characters")]
    TooLong {
        /// The maximum length.
        max: usize,
    },
    /// The name does not start with an ASCII letter.
    #[error("the name must start with a letter (a-z, A-Z)")]
    BadStart,
    /// The name holds a character outside the allowed set.
    #[error("the name may hold only letters, digits, '-' and '_', not {0:?}")]
    BadChar(char),
    /// A room name does not start with `#`.
    #[error("room names start with '#'")]
    NoHash,
    /// The name is one of [`RESERVED_NICKS`].
    #[error("the name is reserved")]
    Reserved,
}

/// Nicknames no user may have: they name certificate files (`ca.pem`, `server.pem`) and would
/// let a user pass for the server in a chat.
pub const RESERVED_NICKS: &[&str] = &["ca", "server"];

/// Checks `name` against the nickname rules.
pub fn validate_nick(name: &str) -> Result<(), NameError> {
    validate(name, NICK_MAX_LEN)?;
    if RESERVED_NICKS.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(NameError::Reserved);
    }
    Ok(())
}

/// Checks a device name (what a person calls one of their devices, for E2E keys): the
/// nickname rules, without the reserved names.
pub fn validate_device(name: &str) -> Result<(), NameError> {
    validate(name, NICK_MAX_LEN)
}

/// Checks a room name: `#` followed by 1 to [`ROOM_MAX_LEN`] letters, digits, `-` or `_`.
/// Room names compare case-insensitively; [`name_key`] gives the canonical form.
pub fn validate_room(name: &str) -> Result<(), NameError> {
    let bare = name.strip_prefix('#').ok_or(NameError::NoHash)?;
    if bare.is_empty() {
        return Err(NameError::Empty);
    }
    if bare.chars().count() > ROOM_MAX_LEN {
        return Err(NameError::TooLong { max: ROOM_MAX_LEN });
    }
    match bare
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        Some(c) => Err(NameError::BadChar(c)),
        None => Ok(()),
    }
}

/// The canonical (lower-case) form of a room name or nickname, for lookups.
pub fn name_key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// Checks `name` against the server-name rules (the nickname rules with a longer limit, plus `.`).
pub fn validate_server_name(name: &str) -> Result<(), NameError> {
    validate_with(name, SERVER_NAME_MAX_LEN, |c| c == '.')
}

fn validate(name: &str, max: usize) -> Result<(), NameError> {
    validate_with(name, max, |_| false)
}

fn validate_with(name: &str, max: usize, extra: impl Fn(char) -> bool) -> Result<(), NameError> {
    let first = name.chars().next().ok_or(NameError::Empty)?;
    if name.chars().count() > max {
        return Err(NameError::TooLong { max });
    }
    if !first.is_ascii_alphabetic() {
        return Err(NameError::BadStart);
    }
    match name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || extra(c)))
    {
        Some(c) => Err(NameError::BadChar(c)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_nicknames() {
        for name in ["alice", "Bob", "carol-2", "d_e", "x"] {
            assert_eq!(validate_nick(name), Ok(()), "{name}");
        }
        assert_eq!(validate_nick(&"a".repeat(NICK_MAX_LEN)), Ok(()));
    }

    #[test]
    fn refuses_bad_nicknames_with_a_reason() {
        assert_eq!(validate_nick(""), Err(NameError::Empty));
        assert_eq!(validate_nick("1abc"), Err(NameError::BadStart));
        assert_eq!(validate_nick("al ice"), Err(NameError::BadChar(' ')));
        assert_eq!(validate_nick("alicé"), Err(NameError::BadChar('é')));
        assert_eq!(validate_nick("a.b"), Err(NameError::BadChar('.')));
        assert_eq!(validate_nick("Server"), Err(NameError::Reserved));
        assert_eq!(
            validate_nick(&"a".repeat(NICK_MAX_LEN + 1)),
            Err(NameError::TooLong { max: NICK_MAX_LEN })
        );
    }

    #[test]
    fn room_names_need_a_hash_and_plain_characters() {
        assert_eq!(validate_room("#general"), Ok(()));
        assert_eq!(validate_room("#2024-q1_plans"), Ok(()));
        assert_eq!(validate_room("general"), Err(NameError::NoHash));
        assert_eq!(validate_room("#"), Err(NameError::Empty));
        assert_eq!(validate_room("#a b"), Err(NameError::BadChar(' ')));
        assert_eq!(validate_room("##x"), Err(NameError::BadChar('#')));
        let long = format!("#{}", "r".repeat(ROOM_MAX_LEN + 1));
        assert_eq!(
            validate_room(&long),
            Err(NameError::TooLong { max: ROOM_MAX_LEN })
        );
        assert_eq!(name_key("#General"), "#general");
    }

    #[test]
    fn server_names_may_hold_dots() {
        assert_eq!(validate_server_name("chat.example.org"), Ok(()));
        assert_eq!(validate_server_name("a b"), Err(NameError::BadChar(' ')));
    }
}
