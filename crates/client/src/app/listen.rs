//! `tlschat listen`: print messages as they arrive, like `mosquitto_sub` or `nats sub`.

use std::io::Write;

use serde::Serialize;
use tlschat_proto::{Event, Request, Trust};

use super::{connect_as, connection_failed, expect_ok, EXIT_CONNECTION, EXIT_OK};
use crate::config::ClientConfig;
use crate::text::sanitize;

/// Listen options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListenOptions {
    /// Exit after this many messages.
    pub(crate) count: Option<u64>,
    /// JSON lines instead of text.
    pub(crate) json: bool,
}

/// One message as a JSON line.
#[derive(Debug, Serialize)]
struct JsonMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    from: &'a str,
    verified: bool,
    time: &'a str,
    text: &'a str,
}

pub(super) async fn run(
    config: &ClientConfig,
    nick: Option<&str>,
    rooms: &[String],
    options: ListenOptions,
) -> u8 {
    let mut client = match connect_as(config, nick).await {
        Ok(client) => client,
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
    eprintln!("listening");
    let mut printed = 0u64;
    let mut stdout = std::io::stdout();
    while options.count.is_none_or(|n| printed < n) {
        let event = match client.next_event().await {
            Ok(event) => event,
            Err(err) => return connection_failed(err),
        };
        let line = match &event {
            Event::Disconnect { .. } | Event::Shutdown { .. } => {
                eprintln!("tlschat: {}", sanitize(&event.to_string()));
                return EXIT_CONNECTION;
            }
            event => match format(event, options.json) {
                Some(line) => line,
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

/// A message event as one output line; `None` for other events.
fn format(event: &Event, json: bool) -> Option<String> {
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
            from,
            trust,
            time,
            text,
        } => ("dm", None, None, from, *trust, time, text),
        _ => return None,
    };
    if json {
        let message = JsonMessage {
            kind,
            room,
            id,
            from,
            verified: trust == Trust::Verified,
            time,
            text,
        };
        return serde_json::to_string(&message).ok();
    }
    let mark = if trust == Trust::Verified { "" } else { "?" };
    Some(format!(
        "{} {} {mark}{}: {}",
        sanitize(time),
        room.map_or("DM".to_owned(), sanitize),
        sanitize(from),
        sanitize(text)
    ))
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
        assert_eq!(
            format(&event, false).unwrap(),
            "2026-11-21T09:30:00.000Z #ops ?mallory: say \"hi\""
        );
        let json: serde_json::Value = serde_json::from_str(&format(&event, true).unwrap()).unwrap();
        assert_eq!(json["type"], "msg");
        assert_eq!(json["id"], 7);
        assert_eq!(json["verified"], false);
        assert_eq!(json["text"], "say \"hi\"");
        let dm = Event::Direct {
            from: "bob".into(),
            trust: Trust::Verified,
            time: "t".into(),
            text: "x".into(),
        };
        let json: serde_json::Value = serde_json::from_str(&format(&dm, true).unwrap()).unwrap();
        assert_eq!(json["type"], "dm");
        assert!(json.get("room").is_none());
        assert!(format(&Event::Shutdown { reason: "x".into() }, false).is_none());
    }
}
