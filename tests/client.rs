//! End-to-end tests of the `tlschat` command: scriptable `send` and `listen`, and the
//! interactive chat client driven through a real terminal (tmux).

use tlschat_tests::tmux::Tmux;
use tlschat_tests::{
    skip, text, tlschat, tlschat_command, tlschat_shell, Background, Pki, ServerProcess,
};

#[test]
fn send_and_listen_work_like_pub_and_sub() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &[]);
    let addr = server.addr();
    let listener = Background::start(
        tlschat_command(&pki, addr, Some("alice"))
            .args(["listen", "--room", "#ops", "--count", "3", "--json"]),
    );
    listener.wait_for_stderr("listening");

    let out = tlschat(&pki, addr, Some("bob"), &["send", "#ops", "deploy", "done"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let out = tlschat(
        &pki,
        addr,
        None,
        &["send", "--nick", "ci-bot", "#ops", "build 42 green"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = tlschat(&pki, addr, Some("bob"), &["send", "alice", "psst"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let (status, stdout) = listener.finish();
    assert!(status.success(), "{status:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with(
            r##"{"type":"msg","room":"#ops","id":1,"from":"bob","verified":true,"time":""##
        ),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].ends_with(r#","text":"deploy done"}"#),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(r#""from":"ci-bot","verified":false"#),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with(r#"{"type":"dm","id":1,"from":"bob","verified":true"#),
        "{}",
        lines[2]
    );
}

#[test]
fn send_and_listen_exit_codes() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &[]);
    let addr = server.addr();
    let out = tlschat(&pki, addr, Some("bob"), &["send", "nobody", "hello?"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("nobody has published no E2E key"),
        "a certificate holder never sends in clear unasked: {}",
        text(&out.stderr)
    );
    let out = tlschat(
        &pki,
        addr,
        Some("bob"),
        &["send", "--plain", "nobody", "hello?"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("ERR NO_SUCH_USER"),
        "{}",
        text(&out.stderr)
    );
    let out = tlschat(&pki, addr, None, &["send", "#room", "no nickname"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("ERR NO_NICK"),
        "{}",
        text(&out.stderr)
    );
    let out = tlschat(
        &pki,
        addr,
        None,
        &["send", "--nick", "alice", "#room", "spoof"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "alice is not connected, so the name is free for an unverified user"
    );
    let out = tlschat(&pki, addr, None, &["send", "bad name!", "x"]);
    assert_eq!(out.status.code(), Some(1));

    let listener = Background::start(
        tlschat_command(&pki, addr, Some("carol")).args(["listen", "--room", "#r"]),
    );
    listener.wait_for_stderr("listening");
    let out = tlschat(&pki, addr, Some("root"), &["exec", "SHUTDOWN"]);
    assert!(out.status.success());
    let (status, _) = listener.finish();
    assert_eq!(
        status.code(),
        Some(2),
        "a listener whose server goes away exits 2"
    );
}

#[test]
fn listen_prints_plain_lines_with_unverified_marks() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &[]);
    let addr = server.addr();
    let listener = Background::start(
        tlschat_command(&pki, addr, Some("alice"))
            .args(["listen", "--room", "#a", "--room", "#b", "--count", "2"]),
    );
    listener.wait_for_stderr("listening");
    assert!(tlschat(
        &pki,
        addr,
        None,
        &["send", "--nick", "guest", "#a", "hi from a"]
    )
    .status
    .success());
    assert!(
        tlschat(&pki, addr, Some("bob"), &["send", "#b", "hi from b"])
            .status
            .success()
    );
    let (status, stdout) = listener.finish();
    assert!(status.success());
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].ends_with(" #a ?guest: hi from a"), "{stdout}");
    assert!(lines[1].ends_with(" #b bob: hi from b"), "{stdout}");
}

#[test]
fn two_people_chat_through_real_terminals() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &[]);
    let addr = server.addr();
    let Some(tmux) = Tmux::start(&tlschat_shell(&pki, addr, Some("alice")), 100, 30) else {
        skip(
            "two_people_chat_through_real_terminals",
            "tmux is not installed",
        );
        return;
    };
    tmux.window("bob", &tlschat_shell(&pki, addr, Some("bob")));
    tmux.window("guest", &tlschat_shell(&pki, addr, None));
    for window in ["w0", "bob", "guest"] {
        let screen = tmux.wait_for(window, "/help for commands");
        assert!(
            screen.contains("X25519MLKEM768"),
            "the key exchange is shown:\n{screen}"
        );
    }

    tmux.line("w0", "/join #lab");
    tmux.wait_for("w0", "joined #lab");
    tmux.line("bob", "/join #lab");
    tmux.wait_for("w0", "#lab -> bob joined");
    tmux.line("w0", "hello from alice");
    tmux.wait_for("bob", "#lab <alice> hello from alice");

    // A line being typed survives incoming messages.
    tmux.type_text("bob", "half a thought");
    tmux.line("w0", "second message");
    let screen = tmux.wait_for("bob", "<alice> second message");
    assert!(
        screen.contains("#lab> half a thought"),
        "the typed line is intact:\n{screen}"
    );
    tmux.keys("bob", &["C-u"]);

    // Direct messages between users with certificates are end-to-end encrypted.
    tmux.line("bob", "/msg alice psst");
    tmux.wait_for("w0", "[E2E DM] <bob> psst");
    tmux.wait_for("bob", "first E2E key seen for alice");
    tmux.wait_for("bob", "[E2E DM to alice] <bob> psst");
    tmux.line("w0", "/fingerprint bob");
    tmux.wait_for("w0", "bob's E2E key (device ");
    tmux.line("bob", "/fingerprint alice");
    tmux.wait_for("bob", "(matches the one remembered)");

    tmux.line("guest", "/nick visitor");
    tmux.wait_for("guest", "you are visitor (unverified)");
    tmux.line("guest", "/join #lab");
    tmux.wait_for("guest", "joined #lab");
    tmux.line("guest", "i am definitely alice");
    tmux.wait_for("w0", "#lab <?visitor> i am definitely alice");
    tmux.line("w0", "/who");
    tmux.wait_for("w0", "-- #lab: alice, bob, ?visitor");
    // Without a certificate there is no E2E: clear text to alice only when asked for.
    tmux.line("guest", "/msg alice hello?");
    tmux.wait_for("guest", "you have no client certificate to encrypt");
    tmux.line("guest", "/msg --plain alice hello!");
    tmux.wait_for("w0", "[DM] <?visitor> hello!");

    tmux.line("bob", "/quit");
    tmux.wait_for("w0", "#lab <- bob quit (quit)");
}

#[test]
fn the_chat_client_reconnects_and_rejoins_after_the_server_restarts() {
    let pki = Pki::standard();
    let mut server = ServerProcess::start(&pki, &[]);
    let addr = server.addr();
    let Some(tmux) = Tmux::start(&tlschat_shell(&pki, addr, Some("alice")), 100, 30) else {
        skip(
            "the_chat_client_reconnects_and_rejoins_after_the_server_restarts",
            "tmux is not installed",
        );
        return;
    };
    tmux.wait_for("w0", "/help for commands");
    tmux.line("w0", "/join #ops");
    tmux.wait_for("w0", "joined #ops");
    assert!(server.terminate().success());
    tmux.wait_for("w0", "!! connection lost");
    tmux.wait_for("w0", "reconnecting in");

    let mut args = pki.server_args();
    args.extend(["--listen".to_owned(), addr.to_string()]);
    let _restarted = ServerProcess::start_with(&args).expect("restart on the same port");
    tmux.wait_for("w0", "reconnected; rejoining #ops");
    let out = tlschat(&pki, addr, Some("bob"), &["send", "#ops", "welcome back"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    tmux.wait_for("w0", "#ops <bob> welcome back");
}

#[test]
fn a_client_given_several_servers_uses_the_first_that_answers_and_fails_over() {
    let pki = Pki::standard();
    let mut first = ServerProcess::start(&pki, &[]);
    let second = ServerProcess::start(&pki, &[]);
    // Nothing listens on port 1: the next server answers.
    let out = tlschat_command(&pki, format!("127.0.0.1:1,{}", second.addr()), None)
        .args(["exec", "PING"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "PONG\n");

    let servers = format!("{},{}", first.addr(), second.addr());
    let Some(tmux) = Tmux::start(&tlschat_shell(&pki, &servers, Some("alice")), 100, 30) else {
        skip(
            "a_client_given_several_servers_uses_the_first_that_answers_and_fails_over",
            "tmux is not installed",
        );
        return;
    };
    tmux.wait_for("w0", &format!("connected to {}", first.addr()));
    tmux.line("w0", "/join #ops");
    tmux.wait_for("w0", "joined #ops");
    // The first dies: the client goes on with the second, back in its rooms.
    assert!(first.terminate().success());
    tmux.wait_for("w0", "reconnected; rejoining #ops");
    let out = tlschat(
        &pki,
        second.addr(),
        Some("bob"),
        &["send", "#ops", "on the standby"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    tmux.wait_for("w0", "#ops <bob> on the standby");
}

#[test]
fn without_reconnect_a_lost_connection_ends_the_chat_with_status_2() {
    let pki = Pki::standard();
    let mut server = ServerProcess::start(&pki, &[]);
    let command = format!(
        "sh -c \"{} --no-reconnect; echo EXIT=\\$?; stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e echo | tr '\\n' ' '; echo; sleep 60\"",
        tlschat_shell(&pki, server.addr(), Some("alice")).replace('"', "\\\"")
    );
    let Some(tmux) = Tmux::start(&command, 100, 30) else {
        skip(
            "without_reconnect_a_lost_connection_ends_the_chat_with_status_2",
            "tmux is not installed",
        );
        return;
    };
    tmux.wait_for("w0", "/help for commands");
    assert!(server.terminate().success());
    let screen = tmux.wait_for("w0", "EXIT=");
    assert!(screen.contains("!! connection lost"), "{screen}");
    assert!(screen.contains("EXIT=2"), "{screen}");
    assert!(!screen.contains("reconnecting"), "{screen}");
    let screen = tmux.wait_for("w0", "icanon");
    assert!(
        screen.contains("icanon echo"),
        "the terminal is back in cooked mode:\n{screen}"
    );
}

#[test]
fn two_tuis_chat_redraw_after_a_resize_and_show_the_reconnect_banner() {
    let pki = Pki::standard();
    let mut server = ServerProcess::start(&pki, &[]);
    let addr = server.addr();
    let tui = |user: &str| format!("{} tui", tlschat_shell(&pki, addr, Some(user)));
    let Some(tmux) = Tmux::start(&tui("alice"), 120, 30) else {
        skip(
            "two_tuis_chat_redraw_after_a_resize_and_show_the_reconnect_banner",
            "tmux is not installed",
        );
        return;
    };
    tmux.window("bob", &tui("bob"));
    for (window, me) in [("w0", "alice"), ("bob", "bob")] {
        let screen = tmux.wait_for(window, "? help");
        let status = screen.lines().next().unwrap_or_default();
        assert!(status.contains(&format!("{me} ✓verified")), "{status}");
        assert!(
            status.contains("TLSv1_3") && status.contains("X25519MLKEM768"),
            "{status}"
        );
    }

    tmux.line("w0", "/join #lab");
    tmux.wait_for("w0", "joined #lab");
    tmux.line("bob", "/join #lab");
    tmux.wait_for("w0", "bob joined");
    tmux.wait_for("w0", "✓bob");
    tmux.line("w0", "hello from the tui");
    tmux.wait_for("bob", "<alice> hello from the tui");

    // An E2E direct message lands in its own conversation, counted and marked unread.
    tmux.line("bob", "/msg alice sealed words");
    tmux.wait_for("w0", "@bob (1) !");
    tmux.keys("w0", &["C-n"]);
    tmux.wait_for("w0", "[E2E] <bob> sealed words");

    // After a resize the whole screen is drawn again at the new size: the input box's
    // bottom border spans exactly the new width.
    tmux.resize("bob", 80, 24);
    tmux.wait_until("bob", "an 80-column redraw", |screen| {
        screen
            .lines()
            .any(|l| l.starts_with('└') && l.ends_with('┘') && l.chars().count() == 80)
    });
    let screen = tmux.screen("bob");
    assert!(screen.contains("[E2E] <bob> sealed words"), "{screen}");
    assert!(screen.lines().all(|l| l.chars().count() <= 80), "{screen}");

    // Ctrl-C leaves with status 0 and the terminal back in its normal (canonical) mode.
    tmux.window(
        "quitter",
        &format!(
            "sh -c '{} --cert {} --key {} tui; echo EXITED $?; stty -a | tr \" ;\" \"\\n\\n\" | grep -x -e icanon -e -icanon; sleep 60'",
            tlschat_shell(&pki, addr, None).replace('\'', ""),
            pki.identity("carol").0.display(),
            pki.identity("carol").1.display(),
        ),
    );
    tmux.wait_for("quitter", "? help");
    tmux.keys("quitter", &["C-c"]);
    let screen = tmux.wait_until("quitter", "the terminal mode", |s| {
        s.lines().any(|l| l.trim().ends_with("icanon"))
    });
    assert!(screen.contains("EXITED 0"), "{screen}");
    assert!(
        screen.lines().any(|l| l.trim() == "icanon"),
        "raw mode is off: {screen}"
    );

    assert!(server.terminate().success());
    tmux.wait_for("w0", "connection lost");
    tmux.wait_for("w0", "reconnecting (attempt");
    let mut args = pki.server_args();
    args.extend(["--listen".to_owned(), addr.to_string()]);
    let _restarted = ServerProcess::start_with(&args).expect("restart on the same port");
    // Back: the banner goes, and the room is joined again (its reply makes it current).
    tmux.wait_until("w0", "#lab rejoined", |s| {
        s.matches("-- joined #lab").count() == 2 && !s.contains("connection lost")
    });
}
