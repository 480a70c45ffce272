//! What a room's operators decide, and whom the admins bar from the server: plain data with the
//! text form the store keeps (one setting per room, `#room`, and one for the server, `*`). The
//! hub applies them (`hub::moderation`).
//!
//! The stored form is one line per item, fields separated by tabs, free text last (so it may
//! hold tabs): `topic by text`, `mode i`, `mode s`, `op name`, `ban name by reason`, `invite
//! name`; for the server, `ban name by until-ms|- reason`. Names are name keys.

use std::collections::{BTreeMap, BTreeSet};

/// A setting that cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a stored room setting is malformed: {0:?}")]
pub struct Malformed(pub String);

/// A room's rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomRules {
    /// The topic and who set it.
    pub topic: Option<(String, String)>,
    /// `+i`: only the invited (and operators) may join.
    pub invite_only: bool,
    /// `+s`: hidden from `ROOMS` for non-members.
    pub secret: bool,
    /// Operators, by name key.
    pub operators: BTreeSet<String>,
    /// Barred names (name keys), with who barred them and why.
    pub bans: BTreeMap<String, (String, String)>,
    /// Names invited and not yet joined.
    pub invited: BTreeSet<String>,
}

impl RoomRules {
    /// The modes as `MODE` shows them: `+is`, `+i`, `+s`, or `+` for none.
    pub fn modes(&self) -> String {
        let mut out = String::from("+");
        if self.invite_only {
            out.push('i');
        }
        if self.secret {
            out.push('s');
        }
        out
    }

    /// The stored form.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Some((by, text)) = &self.topic {
            out.push_str(&format!("topic\t{by}\t{text}\n"));
        }
        if self.invite_only {
            out.push_str("mode\ti\n");
        }
        if self.secret {
            out.push_str("mode\ts\n");
        }
        for name in &self.operators {
            out.push_str(&format!("op\t{name}\n"));
        }
        for (name, (by, reason)) in &self.bans {
            out.push_str(&format!("ban\t{name}\t{by}\t{reason}\n"));
        }
        for name in &self.invited {
            out.push_str(&format!("invite\t{name}\n"));
        }
        out
    }

    /// Reads the stored form back.
    pub fn decode(text: &str) -> Result<Self, Malformed> {
        let mut rules = Self::default();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let bad = || Malformed(line.to_owned());
            let (kind, rest) = line.split_once('\t').ok_or_else(bad)?;
            match kind {
                "topic" => {
                    let (by, text) = rest.split_once('\t').ok_or_else(bad)?;
                    rules.topic = Some((by.to_owned(), text.to_owned()));
                }
                "mode" if rest == "i" => rules.invite_only = true,
                "mode" if rest == "s" => rules.secret = true,
                "op" => {
                    rules.operators.insert(rest.to_owned());
                }
                "ban" => {
                    let mut parts = rest.splitn(3, '\t');
                    let (Some(name), Some(by), Some(reason)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        return Err(bad());
                    };
                    rules
                        .bans
                        .insert(name.to_owned(), (by.to_owned(), reason.to_owned()));
                }
                "invite" => {
                    rules.invited.insert(rest.to_owned());
                }
                _ => return Err(bad()),
            }
        }
        Ok(rules)
    }
}

/// One server-wide ban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerBan {
    /// The admin who set it.
    pub by: String,
    /// When it ends (ms since 1970); `None`: until lifted.
    pub until_ms: Option<i64>,
    /// Why.
    pub reason: String,
}

impl ServerBan {
    /// Whether it is still in force at `now_ms`.
    pub fn active(&self, now_ms: i64) -> bool {
        self.until_ms.is_none_or(|until| now_ms < until)
    }
}

/// The stored form of the server's bans (name key → ban).
pub fn encode_server_bans(bans: &BTreeMap<String, ServerBan>) -> String {
    bans.iter()
        .map(|(name, ban)| {
            let until = ban
                .until_ms
                .map_or_else(|| "-".to_owned(), |ms| ms.to_string());
            format!("ban\t{name}\t{}\t{until}\t{}\n", ban.by, ban.reason)
        })
        .collect()
}

/// Reads the server's bans back.
pub fn decode_server_bans(text: &str) -> Result<BTreeMap<String, ServerBan>, Malformed> {
    let mut bans = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let bad = || Malformed(line.to_owned());
        let mut parts = line.splitn(5, '\t');
        let (Some("ban"), Some(name), Some(by), Some(until), Some(reason)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad());
        };
        let until_ms = match until {
            "-" => None,
            ms => Some(ms.parse().map_err(|_| bad())?),
        };
        bans.insert(
            name.to_owned(),
            ServerBan {
                by: by.to_owned(),
                until_ms,
                reason: reason.to_owned(),
            },
        );
    }
    Ok(bans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_and_bans_survive_their_stored_form() {
        let mut rules = RoomRules {
            topic: Some(("alice".into(), "release\tfriday, not before".into())),
            invite_only: true,
            secret: true,
            ..RoomRules::default()
        };
        rules.operators.insert("alice".into());
        rules.bans.insert(
            "mallory".into(),
            ("alice".into(), "spam\twith a tab".into()),
        );
        rules.invited.insert("carol".into());
        assert_eq!(RoomRules::decode(&rules.encode()).unwrap(), rules);
        assert_eq!(rules.modes(), "+is");
        assert_eq!(RoomRules::default().modes(), "+");
        assert_eq!(RoomRules::decode("").unwrap(), RoomRules::default());
        assert!(RoomRules::decode("bogus\tx").is_err());

        let mut bans = BTreeMap::new();
        bans.insert(
            "eve".into(),
            ServerBan {
                by: "root".into(),
                until_ms: Some(1_800_000_000_000),
                reason: "spam".into(),
            },
        );
        bans.insert(
            "mallory".into(),
            ServerBan {
                by: "root".into(),
                until_ms: None,
                reason: String::new(),
            },
        );
        assert_eq!(
            decode_server_bans(&encode_server_bans(&bans)).unwrap(),
            bans
        );
        assert!(bans["eve"].active(1_799_999_999_999));
        assert!(!bans["eve"].active(1_800_000_000_000));
        assert!(bans["mallory"].active(i64::MAX));
    }
}
