use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer as Screen;
use ratatui::style::Color;
use ratatui::Terminal;
use tlschat_proto::Trust;

use super::super::state::tests::{joined, message, state};
use super::*;
use crate::e2e::Received;

fn render(state: &TuiState, width: u16, height: u16) -> Screen {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| draw(frame, state, Theme::new(true)))
        .unwrap();
    terminal.backend().buffer().clone()
}

fn rows(screen: &Screen) -> Vec<String> {
    columns(screen, 0, screen.area.width)
}

/// Each row's text between columns `from` and `to`.
fn columns(screen: &Screen, from: u16, to: u16) -> Vec<String> {
    (0..screen.area.height)
        .map(|y| {
            (from..to.min(screen.area.width))
                .map(|x| screen[(x, y)].symbol().to_owned())
                .collect::<String>()
        })
        .collect()
}

fn security() -> Security {
    Security {
        version: "TLSv1_3".into(),
        cipher: "TLS13_AES_256_GCM_SHA384".into(),
        group: "X25519MLKEM768".into(),
        server_fingerprint: "0a1b2c3d…4e5f6a7b".into(),
        server_expiry: "2027-11-21".into(),
        own_expiry: Some("2027-01-31".into()),
    }
}

use super::super::state::Security;

#[test]
fn the_status_bar_shows_the_connections_security_and_identity() {
    let mut state = state();
    state.security = security();
    let screen = rows(&render(&state, 160, 20));
    assert!(
        screen[0].contains("alice ✓verified to 2027-01-31"),
        "our own certificate's end: {}",
        screen[0]
    );
    assert!(screen[0].contains("TLSv1_3 TLS13_AES_256_GCM_SHA384 X25519MLKEM768"));
    assert!(screen[0].contains("server cert 0a1b2c3d…4e5f6a7b exp 2027-11-21"));
    let guest = TuiState::new(Some("guest".into()), false, security());
    assert!(rows(&render(&guest, 160, 20))[0].contains("?guest unverified"));
}

#[test]
fn the_room_list_shows_unread_counts_and_mentions() {
    let mut state = state();
    joined(
        &mut state,
        "#a",
        "alice=verified bob=verified mallory=unverified",
    );
    joined(&mut state, "#b", "alice=verified");
    state.on_event(&message("#a", "bob", Trust::Verified, "hi"));
    state.on_event(&message("#a", "bob", Trust::Verified, "alice, look"));
    let list = columns(&render(&state, 100, 20), 0, 18);
    assert!(list.iter().any(|r| r.contains("#a (2) !")), "{list:?}");
    assert!(list.iter().any(|r| r.contains("#b")), "{list:?}");
    state.on_key(ratatui::crossterm::event::KeyEvent::new(
        ratatui::crossterm::event::KeyCode::Char('p'),
        ratatui::crossterm::event::KeyModifiers::CONTROL,
    ));
    let shown = render(&state, 100, 20);
    let members = columns(&shown, 82, 100).join("\n");
    let screen = rows(&shown);
    assert!(
        members.contains("✓alice") && members.contains("✓bob"),
        "{members}"
    );
    assert!(members.contains("?mallory"), "{members}");
    assert!(screen.iter().any(|r| r.contains("<bob> alice, look")));
    assert!(
        screen
            .iter()
            .any(|r| r.contains("──") && r.contains("2026")),
        "a day separator"
    );
}

#[test]
fn hostile_text_cannot_reach_the_terminal_or_pass_for_someone_else() {
    let mut state = state();
    joined(&mut state, "#a", "alice=verified");
    state.on_event(&message(
        "#a",
        "mallory",
        Trust::Unverified,
        "\u{1b}[31mred\u{202e}txet\r\n<alice> fake",
    ));
    let screen = render(&state, 100, 20);
    for cell in screen.content() {
        assert!(
            !cell
                .symbol()
                .chars()
                .any(|c| c.is_control() || c == '\u{202e}'),
            "{:?}",
            cell.symbol()
        );
    }
    let text = rows(&screen).join("\n");
    assert!(
        text.contains("<?mallory> "),
        "the sender keeps its mark: {text}"
    );
    assert!(
        !text.contains("\n<alice> fake"),
        "no line can start as alice's"
    );
}

#[test]
fn e2e_messages_warnings_and_the_reconnect_banner_are_drawn() {
    let mut state = state();
    state.on_sealed(
        "bob",
        "me",
        &Received::Message {
            text: "sealed hello".into(),
            reordered: false,
            sent: "2026-11-21T09:30:00.000Z".into(),
        },
    );
    state.show(1);
    state.link = Link::Reconnecting {
        reason: "the server closed the connection".into(),
        attempt: 2,
    };
    let text = rows(&render(&state, 120, 20)).join("\n");
    assert!(text.contains("[E2E] <bob> sealed hello"), "{text}");
    assert!(
        text.contains("connection lost: the server closed the connection"),
        "{text}"
    );
    assert!(text.contains("reconnecting (attempt 2)"), "{text}");

    state.warning = Some("WARNING: bob's E2E key has CHANGED".into());
    let text = rows(&render(&state, 120, 20)).join("\n");
    assert!(text.contains("bob's E2E key has CHANGED"), "{text}");
    assert!(text.contains("Press Enter to acknowledge"), "{text}");
}

#[test]
fn a_small_or_resized_terminal_still_draws_without_panicking() {
    let mut state = state();
    joined(&mut state, "#a", "alice=verified");
    for i in 0..50 {
        state.on_event(&message(
            "#a",
            "bob",
            Trust::Verified,
            &"wide 日本語 text ".repeat(i % 5 + 1),
        ));
    }
    for (w, h) in [(20, 6), (40, 10), (200, 60), (1, 1)] {
        render(&state, w, h);
    }
    state.help = true;
    render(&state, 30, 8);
}

#[test]
fn no_color_means_no_colors() {
    let mut state = state();
    joined(&mut state, "#a", "alice=verified mallory=unverified");
    state.on_event(&message("#a", "mallory", Trust::Unverified, "hi"));
    let screen = render(&state, 100, 20);
    for cell in screen.content() {
        assert_eq!(cell.fg, Color::Reset);
        assert_eq!(cell.bg, Color::Reset);
    }
}

#[test]
fn the_readme_lists_every_key() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    for (key, what) in KEYS {
        assert!(
            readme.contains(&format!("| {key} | {what} |")),
            "README.md lacks the key {key}"
        );
    }
}
