//! What a typed line means: a message to the current room, a `/command`, or nothing.

use tlschat_proto::{Request, RequestError, Target, Verb};

/// The chat commands, as `/help` lists them.
pub(crate) const HELP: &[(&str, &str)] = &[
    (
        "text",
        "send text to the current room (//text sends a line starting with /)",
    ),
    ("/join #room", "join a room and make it current"),
    ("/part [#room]", "leave a room (default: the current one)"),
    ("/switch #room", "make a joined room current"),
    (
        "/msg nick text",
        "send a direct message (end-to-end encrypted when nick has a key)",
    ),
    (
        "/msg --plain nick text",
        "send a direct message in clear on purpose",
    ),
    (
        "/fingerprint [nick]",
        "show your E2E key fingerprint, or nick's",
    ),
    (
        "/trust nick",
        "accept nick's new E2E key or new device after checking it with them",
    ),
    (
        "/devices [remove name]",
        "list your devices' E2E keys, or withdraw one (a lost phone)",
    ),
    ("/who [#room]", "list a room's members (?nick: unverified)"),
    (
        "/history [n] [#room|nick]",
        "show the n (20) messages before the oldest shown, here or there",
    ),
    ("/rooms", "list the rooms"),
    (
        "/nick name",
        "choose a nickname (only without a client certificate)",
    ),
    (
        "/time, /lucky, /ping",
        "the server's time, a random number, a ping",
    ),
    ("/sum n1 n2 …", "add integers"),
    ("/quiz, /answer n", "get an addition problem, answer it"),
    ("/number n", "trade numbers (1-100) with the server"),
    ("/echo text, /greet [name]", "echo text, be greeted"),
    (
        "/topic [text]",
        "show the current room's topic, or set it (operators; - clears it)",
    ),
    (
        "/op nick, /deop nick",
        "give or take the operator role here (operators)",
    ),
    (
        "/kick #room nick [reason]",
        "put someone out of a room (its operators)",
    ),
    (
        "/ban nick [reason], /unban nick",
        "bar a name from this room, or lift it (operators)",
    ),
    (
        "/invite nick",
        "let someone into this invite-only room (operators)",
    ),
    (
        "/mode [+i|-i|+s|-s]",
        "show or set invite-only (i) and secret (s) here (operators)",
    ),
    ("/kick nick [reason]", "admins: disconnect a user"),
    (
        "/ban * nick [duration] [reason], /unban * nick",
        "admins: bar a user from the server, or lift it",
    ),
    ("/quote LINE", "send a raw protocol line"),
    (
        "/whoami",
        "your name, your certificate's end date, your E2E key",
    ),
    ("/help", "this list"),
    ("/quit", "leave (Ctrl-D too)"),
];

/// What to do with a typed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Input {
    /// Send this request.
    Send(Request),
    /// Send this raw line (`/quote`).
    Raw(String),
    /// A direct message: sealed end to end when the recipient has a key, unless `plain`.
    Direct {
        /// The recipient.
        nick: String,
        /// The message.
        text: String,
        /// Send in clear even when the recipient has a key.
        plain: bool,
    },
    /// Show our E2E fingerprint, or someone's.
    Fingerprint(Option<String>),
    /// Accept someone's changed E2E key, or new device.
    Trust(String),
    /// List our devices, or withdraw one (`Some(name)`).
    Devices(Option<String>),
    /// Page back through stored messages.
    History {
        /// A room or a nickname; the current place when `None`.
        target: Option<String>,
        /// How many messages.
        count: u64,
    },
    /// Make this joined room current.
    Switch(String),
    /// Show the command list.
    Help,
    /// Show who we are: name, certificate, E2E key.
    Whoami,
    /// Leave.
    Quit,
    /// Nothing to do (an empty line).
    Nothing,
    /// The line cannot be used; the message says why.
    Invalid(String),
}

/// Reads a typed line. `current` is the current room, for plain text, `/part` and `/who`.
pub(crate) fn parse(line: &str, current: Option<&str>) -> Input {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Input::Nothing;
    }
    if let Some(text) = line.strip_prefix("//") {
        return to_room(&format!("/{text}"), current);
    }
    let Some(command) = line.strip_prefix('/') else {
        return to_room(line, current);
    };
    let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
    let rest = rest.trim();
    match name.to_ascii_lowercase().as_str() {
        "help" => Input::Help,
        "whoami" => Input::Whoami,
        "quit" | "exit" => Input::Quit,
        "quote" if rest.is_empty() => Input::Invalid("usage: /quote LINE".into()),
        "quote" => Input::Raw(rest.to_owned()),
        "switch" => match room_arg(rest, current) {
            Some(room) => Input::Switch(room),
            None => Input::Invalid("usage: /switch #room".into()),
        },
        "part" | "who" => match room_arg(rest, current) {
            Some(room) => request(&format!("{name} {room}")),
            None => Input::Invalid(format!("usage: /{name} #room (no current room)")),
        },
        "msg" => direct(rest),
        "history" => history(rest),
        "fingerprint" => match rest.split_whitespace().next() {
            None => Input::Fingerprint(None),
            Some(nick) => nick_then(nick, |nick| Input::Fingerprint(Some(nick))),
        },
        "trust" => match rest.split_whitespace().next() {
            None => Input::Invalid("usage: /trust nick".into()),
            Some(nick) => nick_then(nick, Input::Trust),
        },
        "devices" => match rest.split_whitespace().collect::<Vec<_>>()[..] {
            [] => Input::Devices(None),
            ["remove", name] => Input::Devices(Some(name.to_owned())),
            _ => Input::Invalid("usage: /devices, or /devices remove NAME".into()),
        },
        "join" | "nick" | "time" | "sum" | "quiz" | "answer" | "number" | "lucky" | "echo"
        | "greet" | "ping" | "rooms" | "kick" => request(&format!("{name} {rest}")),
        "topic" | "op" | "deop" | "ban" | "unban" | "invite" | "mode" => {
            in_room(name, rest, current)
        }
        _ => Input::Invalid(format!("unknown command /{name}; /help lists them")),
    }
}

/// `/msg [--plain] target text`: a room message goes as it is, a direct message by the E2E
/// rules.
fn direct(rest: &str) -> Input {
    let (plain, rest) = match rest.strip_prefix("--plain") {
        Some(after) if after.is_empty() || after.starts_with(' ') => (true, after.trim_start()),
        _ => (false, rest),
    };
    match request(&format!("msg {rest}")) {
        Input::Send(Request::Msg {
            target: Target::User(nick),
            text,
        }) => Input::Direct { nick, text, plain },
        Input::Invalid(message) => Input::Invalid(message.replace("/msg", "/msg [--plain]")),
        other => other,
    }
}

/// Messages `/history` shows when no number is given.
pub(crate) const HISTORY_PAGE: u64 = 20;

/// `/history [n] [#room|nick]`, in either order.
fn history(rest: &str) -> Input {
    let (mut count, mut target) = (None, None);
    for word in rest.split_whitespace() {
        match word.parse::<u64>() {
            Ok(n) if count.is_none() && n > 0 => count = Some(n),
            _ if target.is_none() && Target::parse(word).is_ok() => target = Some(word.to_owned()),
            _ => return Input::Invalid("usage: /history [n] [#room|nick]".into()),
        }
    }
    Input::History {
        target,
        count: count.unwrap_or(HISTORY_PAGE),
    }
}

/// A room command: `/verb #room …` or `/verb * …` as given, `/verb …` for the current room.
fn in_room(name: &str, rest: &str, current: Option<&str>) -> Input {
    if rest.starts_with('#') || rest.starts_with("* ") {
        return request(&format!("{name} {rest}"));
    }
    match current {
        Some(room) => request(&format!("{name} {room} {rest}")),
        None => Input::Invalid(format!(
            "/{name} works on the current room, and there is none: give #room first"
        )),
    }
}

/// `make(nick)` for a valid nickname.
fn nick_then(nick: &str, make: impl FnOnce(String) -> Input) -> Input {
    match Target::parse(nick) {
        Ok(Target::User(nick)) => make(nick),
        Ok(Target::Room(_)) => Input::Invalid("rooms have no E2E keys; give a nickname".into()),
        Err(err) => Input::Invalid(err.to_string()),
    }
}

/// `#room` as given, or the current room when none is given.
fn room_arg(rest: &str, current: Option<&str>) -> Option<String> {
    match rest.split_whitespace().next() {
        Some(room) => Some(room.to_owned()),
        None => current.map(str::to_owned),
    }
}

fn to_room(text: &str, current: Option<&str>) -> Input {
    match current {
        Some(room) => Input::Send(Request::Msg {
            target: Target::Room(room.to_owned()),
            text: text.to_owned(),
        }),
        None => Input::Invalid("you are in no room: /join #room first, or /msg nick text".into()),
    }
}

fn request(line: &str) -> Input {
    match Request::parse(line) {
        Ok(Some(request)) => Input::Send(request),
        Ok(None) => Input::Nothing,
        Err(RequestError::Usage { verb }) => Input::Invalid(format!("usage: /{}", usage(verb))),
        Err(err) => Input::Invalid(err.to_string()),
    }
}

fn usage(verb: Verb) -> String {
    let usage = verb.usage();
    let (name, args) = usage.split_once(' ').unwrap_or((usage, ""));
    format!("{} {args}", name.to_ascii_lowercase())
        .trim_end()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_takes_a_count_and_a_place_in_either_order() {
        assert_eq!(
            parse("/history", None),
            Input::History {
                target: None,
                count: HISTORY_PAGE
            }
        );
        assert_eq!(
            parse("/history #ops 50", None),
            Input::History {
                target: Some("#ops".into()),
                count: 50
            }
        );
        assert_eq!(
            parse("/history 5 bob", None),
            Input::History {
                target: Some("bob".into()),
                count: 5
            }
        );
        assert!(matches!(parse("/history 0", None), Input::Invalid(_)));
        assert!(matches!(parse("/history #a #b", None), Input::Invalid(_)));
    }

    #[test]
    fn room_commands_work_on_the_current_room_or_the_one_given() {
        use tlschat_proto::{ModeChange, Scope};
        assert_eq!(
            parse("/topic release on Monday", Some("#ops")),
            Input::Send(Request::Topic {
                room: "#ops".into(),
                text: Some("release on Monday".into())
            })
        );
        assert_eq!(
            parse("/topic #dev", Some("#ops")),
            Input::Send(Request::Topic {
                room: "#dev".into(),
                text: None
            })
        );
        assert_eq!(
            parse("/op bob", Some("#ops")),
            Input::Send(Request::Op {
                room: "#ops".into(),
                nick: "bob".into(),
                grant: true
            })
        );
        assert_eq!(
            parse("/ban mallory spam", Some("#ops")),
            Input::Send(Request::Ban {
                scope: Scope::Room("#ops".into()),
                name: "mallory".into(),
                duration: None,
                reason: Some("spam".into())
            })
        );
        assert_eq!(
            parse("/ban * mallory 1d spam", Some("#ops")),
            Input::Send(Request::Ban {
                scope: Scope::Server,
                name: "mallory".into(),
                duration: Some(std::time::Duration::from_secs(86_400)),
                reason: Some("spam".into())
            })
        );
        assert_eq!(
            parse("/mode +s", Some("#ops")),
            Input::Send(Request::Mode {
                room: "#ops".into(),
                change: Some(ModeChange::Secret(true))
            })
        );
        assert!(
            matches!(parse("/invite carol", None), Input::Invalid(m) if m.contains("current room"))
        );
        assert!(matches!(parse("/mode +x", Some("#ops")), Input::Invalid(_)));
    }

    #[test]
    fn plain_text_goes_to_the_current_room() {
        assert_eq!(
            parse("hello there", Some("#general")),
            Input::Send(Request::Msg {
                target: Target::Room("#general".into()),
                text: "hello there".into()
            })
        );
        assert!(matches!(parse("hello", None), Input::Invalid(_)));
        assert_eq!(
            parse("//not a command", Some("#r")),
            Input::Send(Request::Msg {
                target: Target::Room("#r".into()),
                text: "/not a command".into()
            })
        );
        assert_eq!(parse("   ", Some("#r")), Input::Nothing);
    }

    #[test]
    fn commands_become_requests() {
        assert_eq!(
            parse("/join #dev", None),
            Input::Send(Request::Join("#dev".into()))
        );
        assert_eq!(
            parse("/part", Some("#dev")),
            Input::Send(Request::Part("#dev".into()))
        );
        assert_eq!(
            parse("/who", Some("#dev")),
            Input::Send(Request::Who("#dev".into()))
        );
        assert_eq!(
            parse("/msg bob see you", None),
            Input::Direct {
                nick: "bob".into(),
                text: "see you".into(),
                plain: false
            }
        );
        assert_eq!(
            parse("/msg --plain bob  hi", None),
            Input::Direct {
                nick: "bob".into(),
                text: " hi".into(),
                plain: true
            }
        );
        assert_eq!(
            parse("/msg #dev hello", None),
            Input::Send(Request::Msg {
                target: Target::Room("#dev".into()),
                text: "hello".into()
            })
        );
        assert_eq!(parse("/fingerprint", None), Input::Fingerprint(None));
        assert_eq!(
            parse("/fingerprint bob", None),
            Input::Fingerprint(Some("bob".into()))
        );
        assert_eq!(parse("/trust bob", None), Input::Trust("bob".into()));
        assert_eq!(parse("/devices", None), Input::Devices(None));
        assert_eq!(
            parse("/devices remove phone", None),
            Input::Devices(Some("phone".into()))
        );
        assert!(matches!(parse("/devices phone", None), Input::Invalid(_)));
        assert!(matches!(parse("/trust", None), Input::Invalid(_)));
        assert!(matches!(parse("/trust #room", None), Input::Invalid(_)));
        assert_eq!(
            parse("/SUM 1 2 3", None),
            Input::Send(Request::Sum(vec![1, 2, 3]))
        );
        assert_eq!(parse("/answer 42", None), Input::Send(Request::Answer(42)));
        assert_eq!(parse("/number 7", None), Input::Send(Request::Number(7)));
        assert_eq!(parse("/quote PING", None), Input::Raw("PING".into()));
        assert_eq!(parse("/switch #b", Some("#a")), Input::Switch("#b".into()));
        assert_eq!(parse("/quit", None), Input::Quit);
        assert_eq!(parse("/help", None), Input::Help);
    }

    #[test]
    fn mistakes_are_explained_locally() {
        assert_eq!(
            parse("/part", None),
            Input::Invalid("usage: /part #room (no current room)".into())
        );
        assert_eq!(
            parse("/sum", None),
            Input::Invalid("usage: /sum n1 [n2 ...]".into())
        );
        assert!(matches!(parse("/frobnicate", None), Input::Invalid(m) if m.contains("/help")));
        assert!(
            matches!(parse("/join nohash", None), Input::Invalid(m) if m.contains("room name"))
        );
        assert!(
            matches!(parse("/number 500", None), Input::Invalid(m) if m.contains("out of range"))
        );
    }

    #[test]
    fn every_help_entry_is_a_command_the_parser_knows() {
        for (usage, _) in HELP {
            let Some(command) = usage.strip_prefix('/') else {
                continue;
            };
            let name = command.split([' ', ',']).next().unwrap();
            let input = parse(&format!("/{name}"), Some("#r"));
            assert!(
                !matches!(&input, Input::Invalid(m) if m.starts_with("unknown command")),
                "{usage}: {input:?}"
            );
        }
    }
}
