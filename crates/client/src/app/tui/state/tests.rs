use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tlschat_proto::{ErrorCode, Event, Reply, Request, Trust};

use super::*;

const TIME: &str = "2026-11-21T09:30:00.000Z";

pub(crate) fn state() -> TuiState {
    TuiState::new(Some("alice".into()), true, Security::default())
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ctrl(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
}

fn type_line(state: &mut TuiState, text: &str) -> Option<Input> {
    for c in text.chars() {
        state.on_key(key(KeyCode::Char(c)));
    }
    state.on_key(key(KeyCode::Enter))
}

/// Joins `room` as the server would answer.
pub(crate) fn joined(state: &mut TuiState, room: &str, members: &str) {
    let Some(Input::Send(request)) = type_line(state, &format!("/join {room}")) else {
        panic!("join");
    };
    state.sent(&request);
    let follow_up = state.on_reply(&Reply::ok(room));
    assert!(
        matches!(
            &follow_up[..],
            [
                Request::Who(_),
                Request::Mode { change: None, .. },
                Request::History { anchor: None, .. }
            ]
        ),
        "the members, the modes and operators, then the last messages: {follow_up:?}"
    );
    for request in &follow_up {
        state.sent(request);
    }
    assert!(state.on_reply(&Reply::ok(members)).is_empty());
    assert!(state.on_reply(&Reply::ok("+ ops=")).is_empty());
    assert!(state.on_reply(&Reply::ok("0 end")).is_empty());
}

pub(crate) fn message(room: &str, from: &str, trust: Trust, text: &str) -> Event {
    Event::Message {
        room: room.into(),
        id: 1,
        from: from.into(),
        trust,
        time: TIME.into(),
        text: text.into(),
    }
}

#[test]
fn joining_opens_a_buffer_with_its_members() {
    let mut state = state();
    joined(
        &mut state,
        "#lab",
        "alice=verified bob=verified mallory=unverified",
    );
    assert_eq!(state.current().id, BufferId::Room("#lab".into()));
    let members: Vec<_> = state.current().members.values().cloned().collect();
    assert_eq!(
        members,
        [
            ("alice".to_owned(), Trust::Verified),
            ("bob".to_owned(), Trust::Verified),
            ("mallory".to_owned(), Trust::Unverified)
        ]
    );
    state.on_event(&Event::Part {
        room: "#lab".into(),
        nick: "bob".into(),
        trust: Trust::Verified,
    });
    assert_eq!(state.current().members.len(), 2);
    assert!(state
        .current()
        .lines
        .back()
        .unwrap()
        .text
        .contains("bob left"));
}

#[test]
fn unread_counts_and_mentions_mark_other_buffers() {
    let mut state = state();
    joined(&mut state, "#a", "alice=verified");
    joined(&mut state, "#b", "alice=verified");
    state.on_event(&message("#a", "bob", Trust::Verified, "hello all"));
    state.on_event(&message(
        "#a",
        "bob",
        Trust::Verified,
        "alice: are you there?",
    ));
    state.on_event(&message("#b", "bob", Trust::Verified, "here"));
    let a = &state.buffers[1];
    assert_eq!((a.unread, a.mention), (2, true));
    assert_eq!(
        state.current().unread,
        0,
        "the buffer shown has nothing unread"
    );
    state.on_key(ctrl('p'));
    assert_eq!(state.current().id, BufferId::Room("#a".into()));
    assert_eq!(
        (state.current().unread, state.current().mention),
        (0, false)
    );
    // Direct messages always count as mentions.
    state.on_event(&Event::Direct {
        id: 3,
        from: "Bob".into(),
        to: "me".into(),
        trust: Trust::Verified,
        time: TIME.into(),
        text: "psst".into(),
    });
    let dm = state.buffers.last().unwrap();
    assert_eq!(dm.id, BufferId::Direct("bob".into()));
    assert!(dm.mention);
}

#[test]
fn hostile_text_is_sanitized_before_it_is_stored() {
    let mut state = state();
    joined(&mut state, "#a", "alice=verified");
    state.on_event(&message(
        "#a",
        "mallory",
        Trust::Unverified,
        "\u{1b}[2J\u{202e}evil\u{7}",
    ));
    let line = state.current().lines.back().unwrap().clone();
    assert_eq!(line.text, "\u{fffd}[2Jevil\u{fffd}");
    assert_eq!(line.trust, Trust::Unverified);
}

#[test]
fn a_quiz_takes_its_answer_from_the_input_line() {
    let mut state = state();
    let Some(Input::Send(request)) = type_line(&mut state, "/quiz") else {
        panic!()
    };
    state.sent(&request);
    state.on_reply(&Reply::ok("What is 2 + 3? Reply with ANSWER n"));
    assert!(state.quiz);
    assert_eq!(state.prompt(), "answer> ");
    assert_eq!(
        type_line(&mut state, "5"),
        Some(Input::Send(Request::Answer(5)))
    );
    assert!(!state.quiz);
}

#[test]
fn replies_and_errors_land_in_the_current_buffer() {
    let mut state = state();
    state.sent(&Request::Time);
    state.sent(&Request::Number(7));
    state.on_reply(&Reply::ok("2026-11-21T09:30:00Z"));
    state.on_reply(&Reply::err(ErrorCode::OutOfRange, "too big"));
    let lines: Vec<_> = state
        .current()
        .lines
        .iter()
        .map(|l| (l.kind, l.text.clone()))
        .collect();
    assert_eq!(
        lines,
        [
            (Kind::Reply, "2026-11-21T09:30:00Z".to_owned()),
            (Kind::Error, "OUT_OF_RANGE too big".to_owned())
        ]
    );
}

#[test]
fn direct_messages_open_a_conversation_and_e2e_is_marked() {
    let mut state = state();
    let input = type_line(&mut state, "/msg bob hi there");
    assert_eq!(
        input,
        Some(Input::Direct {
            nick: "bob".into(),
            text: "hi there".into(),
            plain: false
        })
    );
    assert_eq!(state.current().id, BufferId::Direct("bob".into()));
    // Plain text in a conversation goes to its user.
    assert!(matches!(
        type_line(&mut state, "more"),
        Some(Input::Direct { nick, .. }) if nick == "bob"
    ));
    state.sent_sealed("bob", "hi there");
    state.on_reply(&Reply::ok(""));
    let own = state.current().lines.back().unwrap().clone();
    assert!(own.e2e && own.kind == Kind::Own && own.text == "hi there");
    state.on_sealed(
        "bob",
        "alice",
        &Received::Refused("the signature does not verify".into()),
    );
    let failed = state.current().lines.back().unwrap().clone();
    assert_eq!(failed.kind, Kind::Error);
    assert!(failed.text.contains("NOT shown"));
}

#[test]
fn tab_completes_commands_rooms_and_nicknames() {
    let mut state = state();
    joined(
        &mut state,
        "#lab",
        "alice=verified bob=verified bobby=unverified",
    );
    for c in "/jo".chars() {
        state.on_key(key(KeyCode::Char(c)));
    }
    state.on_key(key(KeyCode::Tab));
    assert_eq!(state.editor.text(), "/join ");
    state.on_key(key(KeyCode::Char('#')));
    state.on_key(key(KeyCode::Tab));
    assert_eq!(state.editor.text(), "/join #lab ");
    state.on_key(ctrl('u'));
    state.on_key(key(KeyCode::Char('b')));
    state.on_key(key(KeyCode::Tab));
    assert_eq!(state.editor.text(), "bob: ");
    state.on_key(key(KeyCode::Tab));
    assert_eq!(state.editor.text(), "bobby: ", "again: the next match");
}

#[test]
fn keys_scroll_switch_help_and_quit() {
    let mut state = state();
    joined(&mut state, "#a", "alice=verified");
    for i in 0..30 {
        state.on_event(&message("#a", "bob", Trust::Verified, &format!("line {i}")));
    }
    state.on_key(key(KeyCode::PageUp));
    assert_eq!(state.scroll, 10);
    state.on_key(key(KeyCode::PageDown));
    assert_eq!(state.scroll, 0);
    state.on_key(key(KeyCode::Char('?')));
    assert!(state.help);
    state.on_key(key(KeyCode::Char('x')));
    assert!(!state.help, "any key closes the help");
    assert_eq!(state.editor.text(), "", "and does nothing else");
    state.warning = Some("bob's key changed".into());
    state.on_key(key(KeyCode::Char('x')));
    assert!(state.warning.is_some(), "a warning needs Enter");
    state.on_key(key(KeyCode::Enter));
    assert!(state.warning.is_none());
    state.on_paste("two\nlines");
    assert_eq!(state.editor.text(), "two lines");
    assert_eq!(state.on_key(ctrl('c')), Some(Input::Quit));
}

#[test]
fn a_buffer_keeps_the_last_max_lines() {
    let mut state = state();
    joined(&mut state, "#a", "alice=verified");
    for i in 0..MAX_LINES + 5 {
        state.on_event(&message("#a", "bob", Trust::Verified, &format!("line {i}")));
    }
    let lines = &state.current().lines;
    assert_eq!(lines.len(), MAX_LINES);
    // The join notice and the first five messages scrolled away for good.
    assert_eq!(lines.front().unwrap().text, "line 5");
    assert_eq!(
        lines.back().unwrap().text,
        format!("line {}", MAX_LINES + 4)
    );
}

#[test]
fn the_room_header_follows_its_topic_modes_and_our_role_and_a_kick_closes_it() {
    let mut state = state();
    joined(&mut state, "#ops", "alice=verified bob=verified");
    let ops = state.find(&BufferId::Room("#ops".into())).unwrap();
    state.on_event(&Event::Topic {
        room: "#ops".into(),
        by: "bob".into(),
        text: "deploys: not on Fridays".into(),
    });
    state.on_event(&Event::Mode {
        room: "#ops".into(),
        by: "bob".into(),
        change: "+o alice".into(),
    });
    state.on_event(&Event::Mode {
        room: "#ops".into(),
        by: "bob".into(),
        change: "+s".into(),
    });
    state.on_event(&Event::Mode {
        room: "#ops".into(),
        by: "bob".into(),
        change: "+i".into(),
    });
    let buffer = &state.buffers[ops];
    assert_eq!(buffer.topic.as_deref(), Some("deploys: not on Fridays"));
    assert!(buffer.operator);
    assert_eq!(buffer.modes, "+is");
    state.on_event(&Event::Mode {
        room: "#ops".into(),
        by: "bob".into(),
        change: "-i".into(),
    });
    assert_eq!(state.buffers[ops].modes, "+s");
    state.on_event(&Event::Kick {
        room: "#ops".into(),
        nick: "alice".into(),
        by: "bob".into(),
        reason: "enough".into(),
    });
    assert!(
        state.find(&BufferId::Room("#ops".into())).is_none(),
        "put out: the room is closed"
    );
}

#[test]
fn what_we_do_on_another_device_shows_here_as_ours() {
    let mut state = state();
    // Joined on the phone: the room opens here too.
    state.on_event(&Event::Join {
        room: "#ops".into(),
        nick: "Alice".into(),
        trust: Trust::Verified,
    });
    let index = state
        .buffers
        .iter()
        .position(|b| b.id == BufferId::Room("#ops".into()))
        .expect("the room's buffer");
    // Our message from the phone is ours, not news.
    state.on_event(&message("#ops", "alice", Trust::Verified, "from the phone"));
    let line = state.buffers[index].lines.back().unwrap().clone();
    assert_eq!(
        (line.kind, line.text.as_str()),
        (Kind::Own, "from the phone")
    );
    assert_eq!(state.buffers[index].unread, 0);
    // A DM we sent to bob from the phone lands in the conversation with bob.
    state.on_event(&Event::Direct {
        id: 3,
        from: "alice".into(),
        to: "bob".into(),
        trust: Trust::Verified,
        time: TIME.into(),
        text: "see you".into(),
    });
    assert!(state
        .buffers
        .iter()
        .any(|b| b.id == BufferId::Direct("bob".into())
            && b.lines.back().is_some_and(|l| l.kind == Kind::Own)));
    state.on_sealed(
        "alice",
        "bob",
        &Received::Message {
            text: "sealed too".into(),
            reordered: false,
            sent: TIME.into(),
        },
    );
    let bob = state
        .buffers
        .iter()
        .find(|b| b.id == BufferId::Direct("bob".into()))
        .unwrap();
    assert_eq!(bob.lines.back().unwrap().text, "sealed too");
    // Left on the phone: the room closes here.
    state.on_event(&Event::Part {
        room: "#ops".into(),
        nick: "alice".into(),
        trust: Trust::Verified,
    });
    assert!(!state
        .buffers
        .iter()
        .any(|b| b.id == BufferId::Room("#ops".into())));
}
