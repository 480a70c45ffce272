//! `tlschat listen`: print messages as they arrive, like `mosquitto_sub` or `nats sub`.
//!
//! With a client certificate, the user's E2E key is published first and end-to-end encrypted
//! direct messages are verified and decrypted; they print with an `e2e` mark, and one that
//! fails prints as failed with the reason.
//!
//! With a server that stores messages, nothing is lost: messages held back while the listener
//! fell behind (`EVENT GAP`) are fetched and printed in turn, what a verified user missed while
//! away comes first, repeats after a reconnect are dropped, and `--since ID` starts from an id.

use std::collections::VecDeque;
use std::io::Write;

use serde::Serialize;
use tlschat_proto::{Anchor, Event, Request, Target, Trust};

use super::{connect_with_e2e, connection_failed, expect_ok, EXIT_CONNECTION, EXIT_OK};
use crate::client::Client;
use crate::config::ClientConfig;
use crate::e2e::Received;
use crate::resync::{Resync, PAGE};
use crate::text::sanitize;

/// Listen options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListenOptions {
    /// Exit after this many messages.
    pub(crate) count: Option<u64>,
    /// JSON lines instead of text.
    pub(crate) json: bool,
    /// Print the rooms' stored messages after this id first.
    pub(crate) since: Option<u64>,
}

/// One message as printed: a JSON line, or text.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct Printed<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    from: &'a str,
    verified: bool,
    time: &'a str,
    /// Sealed end to end (an `EVENT E2E`).
    e2e: bool,
    /// The text; absent when the message could not be opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    /// Why an E2E message could not be opened (then it is not a message).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    /// An E2E message that came after a later one from the same sender.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    reordered: bool,
    /// The recipient of a direct message (us, or whom we sent it to from another device).
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
    /// Sent by us (from another device, or earlier).
    #[serde(skip)]
    mine: bool,
}

impl Printed<'_> {
    fn line(&self, json: bool) -> String {
        if json {
            return serde_json::to_string(self).unwrap_or_default();
        }
        let mark = if self.verified { "" } else { "?" };
        let mut place = match (self.room, self.e2e) {
            (Some(room), _) => sanitize(room),
            (None, false) => "DM".to_owned(),
            (None, true) if self.reordered => "DM[e2e,out-of-order]".to_owned(),
            (None, true) => "DM[e2e]".to_owned(),
        };
        // Ours, sent from another device (or from the history): to whom.
        if let Some(to) = self.to.filter(|to| !to.eq_ignore_ascii_case(self.from)) {
            if self.mine {
                place.push_str(&format!("->{}", sanitize(to)));
            }
        }
        let body = match (self.text, self.error) {
            (_, Some(error)) => format!("!! E2E message NOT shown: {}", sanitize(error)),
            (Some(text), None) => sanitize(text),
            (None, None) => String::new(),
        };
        format!(
            "{} {place} {mark}{}: {body}",
            sanitize(self.time),
            sanitize(self.from)
        )
    }
}

pub(super) async fn run(
    config: &ClientConfig,
    nick: Option<&str>,
    rooms: &[String],
    options: ListenOptions,
) -> u8 {
    let (mut client, mut e2e) = match connect_with_e2e(config, nick).await {
        Ok(connected) => connected,
        Err(code) => return code,
    };
    for room in rooms {
        let Ok(Some(request)) = Request::parse(&format!("JOIN {room}")) else {
            eprintln!("tlschat: error: invalid room name {room:?}");
            return super::EXIT_ERR_REPLY;
        };
        if let Err(code) = expect_ok(&mut client, &request).await {
            return code;
        }
    }
    // Events to print before reading more: stored ones (--since, gaps filled), in order.
    let mut queue: VecDeque<Event> = VecDeque::new();
    if let Some(since) = options.since {
        for room in rooms {
            if let Err(code) = stored_after(&mut client, room, since, &mut queue).await {
                return code;
            }
        }
    }
    eprintln!("listening");
    // Our own name: what we sent from another device is printed as ours.
    let me = nick
        .map(str::to_owned)
        .or_else(|| config.certificate_name());
    let mut resync = Resync::default();
    let mut printed = 0u64;
    let mut stdout = std::io::stdout();
    while options.count.is_none_or(|n| printed < n) {
        let event = match queue.pop_front() {
            Some(event) => event,
            None => match client.next_event().await {
                Ok(event) => event,
                Err(err) => return connection_failed(err),
            },
        };
        match &event {
            // Messages not sent to us (we fell behind, or were away past the catch-up cap):
            // fetch them, print them in turn.
            Event::Gap {
                target,
                first,
                last,
            } => {
                eprintln!(
                    "tlschat: fetching {} missed message(s) of {} from history",
                    last - first + 1,
                    sanitize(target)
                );
                for request in Resync::fill(target, *first, *last) {
                    if let Err(err) = client.request(&request).await {
                        return connection_failed(err);
                    }
                    queue.extend(client.drain_events());
                }
                continue;
            }
            Event::CaughtUp { count } => {
                eprintln!("tlschat: caught up: {count} message(s) sent while you were away");
                continue;
            }
            Event::Revoked { reason, .. } => {
                eprintln!("tlschat: {}", sanitize(reason));
                continue;
            }
            Event::Device { .. } => {
                let text = super::chat::render::device_text(&event);
                eprintln!("tlschat: {}", sanitize(&text));
                continue;
            }
            // A reconnect may bring a message again.
            event if !resync.admit(event, None) => continue,
            _ => {}
        }
        let opened;
        let line = match &event {
            Event::Disconnect { .. } | Event::Shutdown { .. } => {
                eprintln!("tlschat: {}", sanitize(&event.to_string()));
                return EXIT_CONNECTION;
            }
            Event::E2e {
                id,
                from,
                to,
                trust,
                time,
                sealed,
            } => {
                opened = match e2e.as_mut() {
                    Some(e2e) => match e2e.receive(&mut client, from, to, *trust, sealed).await {
                        Ok(received) => received,
                        Err(err) => return connection_failed(err),
                    },
                    None => Received::Refused(
                        "you have no client certificate, so no E2E key to open it with".into(),
                    ),
                };
                let mut printed = e2e_message(*id, from, to, *trust, time, &opened);
                printed.mine = me
                    .as_deref()
                    .is_some_and(|me| me.eq_ignore_ascii_case(from));
                printed.line(options.json)
            }
            event => match message(event) {
                Some(mut printed) => {
                    printed.mine = me
                        .as_deref()
                        .is_some_and(|me| me.eq_ignore_ascii_case(from_of(event)));
                    printed.line(options.json)
                }
                None => continue,
            },
        };
        if writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // The reader went away (a closed pipe): nothing left to do.
            return EXIT_OK;
        }
        printed += 1;
    }
    let _ = client.quit().await;
    EXIT_OK
}

/// Queues every stored message of `room` after `since`, a page at a time.
async fn stored_after(
    client: &mut Client,
    room: &str,
    since: u64,
    queue: &mut VecDeque<Event>,
) -> Result<(), u8> {
    let Ok(target) = Target::parse(room) else {
        return Ok(());
    };
    let mut after = since;
    loop {
        let request = Request::History {
            target: target.clone(),
            anchor: Some(Anchor::After(after)),
            limit: Some(PAGE as u32),
        };
        let reply = expect_ok(client, &request).await?;
        let page = client.drain_events();
        for event in &page {
            if let Event::Message { id, .. } = event {
                after = after.max(*id);
            }
        }
        queue.extend(page);
        if !reply.ends_with(" more") {
            return Ok(());
        }
    }
}

/// Who sent a message event.
fn from_of(event: &Event) -> &str {
    match event {
        Event::Message { from, .. } | Event::Direct { from, .. } | Event::E2e { from, .. } => from,
        _ => "",
    }
}

/// A room or direct message in clear; `None` for other events.
fn message(event: &Event) -> Option<Printed<'_>> {
    let (kind, room, id, from, trust, time, text) = match event {
        Event::Message {
            room,
            id,
            from,
            trust,
            time,
            text,
        } => (
            "msg",
            Some(room.as_str()),
            Some(*id),
            from,
            *trust,
            time,
            text,
        ),
        Event::Direct {
            id,
            from,
            trust,
            time,
            text,
            ..
        } => ("dm", None, Some(*id), from, *trust, time, text),
        _ => return None,
    };
    let to = match event {
        Event::Direct { to, .. } => Some(to.as_str()),
        _ => None,
    };
    Some(Printed {
        kind,
        room,
        id,
        from,
        to,
        mine: false,
        verified: trust == Trust::Verified,
        time,
        e2e: false,
        text: Some(text),
        error: None,
        reordered: false,
    })
}

/// An E2E direct message, opened or not.
fn e2e_message<'a>(
    id: u64,
    from: &'a str,
    to: &'a str,
    trust: Trust,
    time: &'a str,
    opened: &'a Received,
) -> Printed<'a> {
    // An opened message shows its signed send time; a refused one, the server's.
    let (text, error, reordered, time) = match opened {
        Received::Message {
            text,
            reordered,
            sent,
        } => (Some(text.as_str()), None, *reordered, sent.as_str()),
        Received::Refused(why) => (None, Some(why.as_str()), false, time),
    };
    Printed {
        kind: "dm",
        room: None,
        id: Some(id),
        from,
        to: Some(to),
        mine: false,
        verified: trust == Trust::Verified,
        time,
        e2e: true,
        text,
        error,
        reordered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_print_as_text_or_json() {
        let event = Event::Message {
            room: "#ops".into(),
            id: 7,
            from: "mallory".into(),
            trust: Trust::Unverified,
            time: "2026-11-21T09:30:00.000Z".into(),
            text: "say \"hi\"".into(),
        };
        let printed = message(&event).unwrap();
        assert_eq!(
            printed.line(false),
            "2026-11-21T09:30:00.000Z #ops ?mallory: say \"hi\""
        );
        let json: serde_json::Value = serde_json::from_str(&printed.line(true)).unwrap();
        assert_eq!(json["type"], "msg");
        assert_eq!(json["id"], 7);
        assert_eq!(json["verified"], false);
        assert_eq!(json["e2e"], false);
        assert_eq!(json["text"], "say \"hi\"");
        let dm = Event::Direct {
            id: 3,
            from: "bob".into(),
            to: "me".into(),
            trust: Trust::Verified,
            time: "t".into(),
            text: "x".into(),
        };
        let json: serde_json::Value =
            serde_json::from_str(&message(&dm).unwrap().line(true)).unwrap();
        assert_eq!(json["type"], "dm");
        assert!(json.get("room").is_none());
        assert!(message(&Event::Shutdown { reason: "x".into() }).is_none());
    }

    #[test]
    fn e2e_messages_are_marked_and_failures_are_shown_as_failures() {
        let opened = Received::Message {
            text: "secret\u{1b}[2J".into(),
            reordered: false,
            sent: "t".into(),
        };
        let printed = e2e_message(4, "alice", "bob", Trust::Verified, "t", &opened);
        assert_eq!(printed.line(false), "t DM[e2e] alice: secret\u{fffd}[2J");
        let json: serde_json::Value = serde_json::from_str(&printed.line(true)).unwrap();
        assert_eq!(json["e2e"], true);
        assert_eq!(json["text"], "secret\u{1b}[2J");
        assert!(json.get("error").is_none());

        let failed = Received::Refused("decryption failed".into());
        let printed = e2e_message(5, "alice", "bob", Trust::Verified, "t", &failed);
        assert_eq!(
            printed.line(false),
            "t DM[e2e] alice: !! E2E message NOT shown: decryption failed"
        );
        let json: serde_json::Value = serde_json::from_str(&printed.line(true)).unwrap();
        assert_eq!(json["error"], "decryption failed");
        assert!(json.get("text").is_none());
    }
}
