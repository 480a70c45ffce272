//! What is kept of a message: who sent it to which room or user, when, and its text (or sealed
//! E2E message). Its id is not part of it: the store gives it on commit. Also its bytes on disk.
//!
//! # Encoding (format 1)
//!
//! `kind (1) | trust (1) | time in ms since 1970, i64 LE (8) | from length (2, LE) | from |
//! to length (2, LE) | to | text`. Names are short by the naming rules; the text takes the rest.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};
use tlschat_proto::names::name_key;
use tlschat_proto::{Event, Trust};

/// What kind of message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// To a room (`EVENT MSG`).
    Room,
    /// A direct message (`EVENT DM`).
    Direct,
    /// An end-to-end encrypted direct message (`EVENT E2E`); the text is the sealed hex.
    E2e,
}

/// A message as stored, without its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// What kind of message.
    pub kind: Kind,
    /// The sender's name as shown.
    pub from: String,
    /// The room (canonical name), or the recipient's name.
    pub to: String,
    /// Whether the sender's name was verified.
    pub trust: Trust,
    /// When the server accepted it, milliseconds since 1970 (UTC).
    pub time_ms: i64,
    /// The text, or the sealed message in hex.
    pub text: String,
    /// A direct message to a verified user, kept for them while they are away: the store adds
    /// the conversation to the recipient's resume points (and the sender's, when verified).
    /// Not stored with the message.
    pub keep_for_recipient: bool,
}

/// A stored message and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its number in its conversation.
    pub id: u64,
    /// The message.
    pub record: Record,
}

/// The stored bytes are not a record this version reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a stored message is malformed")]
pub struct Malformed;

impl Record {
    /// The conversation's key: the room's name, or the two users' name keys in order with a
    /// space between (a space is in no name, so keys never collide).
    pub fn conversation(&self) -> Cow<'_, str> {
        match self.kind {
            Kind::Room => Cow::Borrowed(&self.to),
            Kind::Direct | Kind::E2e => Cow::Owned(direct_key(&self.from, &self.to)),
        }
    }

    /// The time as the protocol writes it: RFC 3339, UTC, milliseconds.
    pub fn time_text(&self) -> String {
        DateTime::<Utc>::from_timestamp_millis(self.time_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Appends the event line that carries this message with id `id` (as [`event`](Self::event)
    /// writes it, newline included), with `time` as [`time_text`](Self::time_text) gives it:
    /// no event built, no string copied (delivery encodes every stored message this way).
    pub fn write_line(&self, id: u64, time: &str, out: &mut Vec<u8>) {
        use std::io::Write;
        let kind = match self.kind {
            Kind::Room => "MSG",
            Kind::Direct => "DM",
            Kind::E2e => "E2E",
        };
        // Writing to a Vec cannot fail.
        let _ = match self.kind {
            Kind::Room => write!(
                out,
                "EVENT {kind} {} {id} {} {} {time} ",
                self.to, self.from, self.trust
            ),
            Kind::Direct | Kind::E2e => write!(
                out,
                "EVENT {kind} {id} {} {} {} {time} ",
                self.from, self.to, self.trust
            ),
        };
        out.extend_from_slice(self.text.as_bytes());
        out.push(b'\n');
    }

    /// The event that carries this message with id `id`.
    pub fn event(&self, id: u64) -> Event {
        let (from, trust, time) = (self.from.clone(), self.trust, self.time_text());
        match self.kind {
            Kind::Room => Event::Message {
                room: self.to.clone(),
                id,
                from,
                trust,
                time,
                text: self.text.clone(),
            },
            Kind::Direct => Event::Direct {
                id,
                from,
                to: self.to.clone(),
                trust,
                time,
                text: self.text.clone(),
            },
            Kind::E2e => Event::E2e {
                id,
                from,
                to: self.to.clone(),
                trust,
                time,
                sealed: self.text.clone(),
            },
        }
    }

    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(14 + self.from.len() + self.to.len() + self.text.len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the stored bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(match self.kind {
            Kind::Room => b'R',
            Kind::Direct => b'D',
            Kind::E2e => b'E',
        });
        out.push(match self.trust {
            Trust::Verified => b'v',
            Trust::Unverified => b'u',
        });
        out.extend_from_slice(&self.time_ms.to_le_bytes());
        for name in [&self.from, &self.to] {
            let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&name.as_bytes()[..usize::from(len)]);
        }
        out.extend_from_slice(self.text.as_bytes());
    }

    /// The time (ms since 1970) of stored bytes, without decoding the rest.
    pub fn time_of(bytes: &[u8]) -> Option<i64> {
        Some(i64::from_le_bytes(bytes.get(2..10)?.try_into().ok()?))
    }

    /// Reads stored bytes back.
    pub fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        let kind = match bytes.first() {
            Some(b'R') => Kind::Room,
            Some(b'D') => Kind::Direct,
            Some(b'E') => Kind::E2e,
            _ => return Err(Malformed),
        };
        let trust = match bytes.get(1) {
            Some(b'v') => Trust::Verified,
            Some(b'u') => Trust::Unverified,
            _ => return Err(Malformed),
        };
        let time: [u8; 8] = bytes
            .get(2..10)
            .ok_or(Malformed)?
            .try_into()
            .map_err(|_| Malformed)?;
        let mut rest = &bytes[10..];
        let mut name = || -> Result<String, Malformed> {
            let len: [u8; 2] = rest
                .get(..2)
                .ok_or(Malformed)?
                .try_into()
                .map_err(|_| Malformed)?;
            let len = usize::from(u16::from_le_bytes(len));
            let text = rest.get(2..2 + len).ok_or(Malformed)?;
            let text = std::str::from_utf8(text).map_err(|_| Malformed)?.to_owned();
            rest = &rest[2 + len..];
            Ok(text)
        };
        let from = name()?;
        let to = name()?;
        let text = std::str::from_utf8(rest).map_err(|_| Malformed)?.to_owned();
        Ok(Self {
            kind,
            from,
            to,
            trust,
            time_ms: i64::from_le_bytes(time),
            text,
            keep_for_recipient: false,
        })
    }
}

/// The conversation key of the direct messages between `a` and `b`.
pub fn direct_key(a: &str, b: &str) -> String {
    let (a, b) = (name_key(a), name_key(b));
    if a <= b {
        format!("{a} {b}")
    } else {
        format!("{b} {a}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: Kind) -> Record {
        Record {
            kind,
            from: "Alice".into(),
            to: "bob".into(),
            trust: Trust::Verified,
            time_ms: 1_764_633_600_123,
            text: "hi  there é".into(),
            keep_for_recipient: false,
        }
    }

    #[test]
    fn records_round_trip_through_their_bytes() {
        for kind in [Kind::Room, Kind::Direct, Kind::E2e] {
            let mut record = record(kind);
            record.trust = Trust::Unverified;
            assert_eq!(Record::decode(&record.encode()), Ok(record));
        }
        let bytes = record(Kind::Room).encode();
        for cut in 0..14 {
            assert_eq!(
                Record::decode(&bytes[..cut]),
                Err(Malformed),
                "cut at {cut}"
            );
        }
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(Record::decode(&bad), Err(Malformed));
    }

    #[test]
    fn both_directions_of_a_conversation_share_one_key() {
        let there = record(Kind::Direct);
        let back = Record {
            from: "BOB".into(),
            to: "alice".into(),
            ..there.clone()
        };
        assert_eq!(there.conversation(), "alice bob");
        assert_eq!(back.conversation(), "alice bob");
        let room = Record {
            to: "#ops".into(),
            ..record(Kind::Room)
        };
        assert_eq!(room.conversation(), "#ops");
    }

    #[test]
    fn lines_are_written_exactly_as_the_events_display() {
        for kind in [Kind::Room, Kind::Direct, Kind::E2e] {
            let record = record(kind);
            let mut line = Vec::new();
            record.write_line(12, &record.time_text(), &mut line);
            assert_eq!(
                String::from_utf8(line).unwrap(),
                format!("{}\n", record.event(12)),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn events_carry_the_id_and_the_protocol_time() {
        let event = record(Kind::E2e).event(9).to_string();
        assert_eq!(
            event,
            "EVENT E2E 9 Alice bob verified 2025-12-02T00:00:00.123Z hi  there é"
        );
    }
}
