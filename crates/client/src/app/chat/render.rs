//! How server lines look on screen: local times, room, sender, and a `?` before unverified
//! names. Everything from the network is sanitized first.

use chrono::{DateTime, Local};
use tlschat_proto::{Event, Trust};

use crate::text::sanitize;

/// A sender's name with its trust mark: `alice`, or `?mallory` when not backed by a certificate.
pub(crate) fn name(nick: &str, trust: Trust) -> String {
    match trust {
        Trust::Verified => sanitize(nick),
        Trust::Unverified => format!("?{}", sanitize(nick)),
    }
}

/// `HH:MM` in local time for an RFC 3339 timestamp (shown as sent if it does not parse).
pub(crate) fn local_time(rfc3339: &str) -> String {
    match DateTime::parse_from_rfc3339(rfc3339) {
        Ok(time) => time.with_timezone(&Local).format("%H:%M").to_string(),
        Err(_) => sanitize(rfc3339),
    }
}

/// `HH:MM` now, for lines the client makes itself.
pub(crate) fn now() -> String {
    Local::now().format("%H:%M").to_string()
}

/// The screen line for an E2E direct message, opened or refused; `to` is whom we sent it to,
/// when it is ours (from another device, or from the history).
pub(crate) fn sealed(
    from: &str,
    to: Option<&str>,
    time: &str,
    received: &crate::e2e::Received,
) -> String {
    match received {
        crate::e2e::Received::Message {
            text,
            reordered,
            sent,
        } => format!(
            "{} [E2E DM{}{}] <{}> {}",
            local_time(sent),
            to.map(|to| format!(" to {}", sanitize(to)))
                .unwrap_or_default(),
            if *reordered { ", out of order" } else { "" },
            sanitize(from),
            sanitize(text)
        ),
        crate::e2e::Received::Refused(why) => format!(
            "!! {} E2E message from {} NOT shown: {}",
            local_time(time),
            sanitize(from),
            sanitize(why)
        ),
    }
}

/// What `EVENT DEVICE` means, for people; empty for other events.
pub(crate) fn device_text(event: &Event) -> String {
    match event {
        Event::Device {
            nick,
            device,
            added: true,
        } => format!(
            "{nick} added a device, {device}: E2E messages to and from it wait until you check \
             with {nick} that it is theirs and accept it (/trust {nick})"
        ),
        Event::Device {
            nick,
            device,
            added: false,
        } => format!("{nick} withdrew their device {device}: nothing is sealed to it any more"),
        _ => String::new(),
    }
}

/// The screen line for an event.
pub(crate) fn event(event: &Event) -> String {
    match event {
        Event::Message {
            room,
            from,
            trust,
            time,
            text,
            ..
        } => format!(
            "{} {} <{}> {}",
            local_time(time),
            sanitize(room),
            name(from, *trust),
            sanitize(text)
        ),
        Event::Direct {
            from,
            trust,
            time,
            text,
            ..
        } => format!(
            "{} [DM] <{}> {}",
            local_time(time),
            name(from, *trust),
            sanitize(text)
        ),
        Event::Join { room, nick, trust } => {
            format!(
                "{} {} -> {} joined",
                now(),
                sanitize(room),
                name(nick, *trust)
            )
        }
        Event::Part { room, nick, trust } => {
            format!(
                "{} {} <- {} left",
                now(),
                sanitize(room),
                name(nick, *trust)
            )
        }
        Event::Quit {
            room,
            nick,
            trust,
            reason,
        } => format!(
            "{} {} <- {} quit ({})",
            now(),
            sanitize(room),
            name(nick, *trust),
            sanitize(reason)
        ),
        Event::Nick { room, old, new } => format!(
            "{} {} ?{} is now ?{}",
            now(),
            sanitize(room),
            sanitize(old),
            sanitize(new)
        ),
        Event::Disconnect { code, reason } => format!(
            "!! the server disconnected you ({}): {}",
            code,
            sanitize(reason)
        ),
        Event::Shutdown { reason } => format!("!! server shutting down: {}", sanitize(reason)),
        Event::Revoked { reason, .. } => format!("!! {} {}", now(), sanitize(reason)),
        Event::Topic { room, by, text } if text.is_empty() => {
            format!(
                "{} {} -- {} cleared the topic",
                now(),
                sanitize(room),
                sanitize(by)
            )
        }
        Event::Topic { room, by, text } => format!(
            "{} {} -- topic: {} (set by {})",
            now(),
            sanitize(room),
            sanitize(text),
            sanitize(by)
        ),
        Event::Mode { room, by, change } => format!(
            "{} {} -- {} set mode {}",
            now(),
            sanitize(room),
            sanitize(by),
            sanitize(change)
        ),
        Event::Kick {
            room,
            nick,
            by,
            reason,
        } => format!(
            "{} {} <- {} was put out by {} ({})",
            now(),
            sanitize(room),
            sanitize(nick),
            sanitize(by),
            sanitize(reason)
        ),
        Event::Ban {
            room,
            name,
            by,
            reason,
        } => format!(
            "{} {} -- {} banned {} ({})",
            now(),
            sanitize(room),
            sanitize(by),
            sanitize(name),
            sanitize(reason)
        ),
        Event::Unban { room, name, by } => format!(
            "{} {} -- {} lifted the ban on {}",
            now(),
            sanitize(room),
            sanitize(by),
            sanitize(name)
        ),
        Event::Invite { room, by } => format!(
            "{} -- {} invited you to {} (/join {})",
            now(),
            sanitize(by),
            sanitize(room),
            sanitize(room)
        ),
        Event::Device { .. } => format!("!! {} {}", now(), sanitize(&device_text(event))),
        other => format!("-- {}", sanitize(&other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_show_room_sender_and_trust() {
        let line = event(&Event::Message {
            room: "#dev".into(),
            id: 1,
            from: "mallory".into(),
            trust: Trust::Unverified,
            time: "2026-11-21T09:30:00.000Z".into(),
            text: "hi".into(),
        });
        assert!(line.ends_with(" #dev <?mallory> hi"), "{line}");
        assert_eq!(line.len(), "HH:MM #dev <?mallory> hi".len(), "{line}");
    }

    #[test]
    fn hostile_text_is_sanitized() {
        let line = event(&Event::Direct {
            id: 3,
            from: "bob".into(),
            to: "me".into(),
            trust: Trust::Verified,
            time: "\x1b[2Jnot a time".into(),
            text: "\x1b]0;pwned\x07 \u{202E}evil".into(),
        });
        assert!(
            !line.contains('\x1b') && !line.contains('\u{202E}'),
            "{line:?}"
        );
    }
}
