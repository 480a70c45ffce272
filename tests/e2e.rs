//! End-to-end encrypted direct messages, with the real binaries: what the server logs and
//! relays holds no plaintext; a server that swaps or withholds a key is caught; replayed,
//! reordered and tampered messages are flagged by the recipient.
//!
//! The "compromised server" is [`Relay`]: a man-in-the-middle holding the server's own
//! certificate, which rewrites what the server sends.

use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tlschat_proto::hex;
use tlschat_tests::relay::Relay;
use tlschat_tests::tmux::Tmux;
use tlschat_tests::{
    binary, run, skip, text, tlschat, tlschat_command, tlschat_shell, Background, Pki,
    ServerProcess,
};
use tlschat_tls::e2e::E2eKey;
use tlschat_tls::signing::CertKey;

/// `tlschat listen --json --count N` as `user` through `addr`, once it listens.
fn listen(pki: &Pki, addr: std::net::SocketAddr, user: &str, count: u32) -> Background {
    let listener = Background::start(tlschat_command(pki, addr, Some(user)).args([
        "listen",
        "--json",
        "--count",
        &count.to_string(),
    ]));
    listener.wait_for_stderr("listening");
    listener
}

fn send(pki: &Pki, addr: std::net::SocketAddr, user: &str, args: &[&str]) -> Output {
    let mut all = vec!["send"];
    all.extend_from_slice(args);
    tlschat(pki, addr, Some(user), &all)
}

fn finish(listener: Background) -> Vec<String> {
    let (status, stdout) = listener.finish();
    assert!(status.success(), "{status:?}: {stdout}");
    stdout.lines().map(str::to_owned).collect()
}

#[test]
fn alice_and_bob_exchange_e2e_messages_the_server_cannot_read() {
    let pki = Pki::standard();
    let server = ServerProcess::start_traced(&pki, &[]);
    // Bob's connection passes through a recorder: everything the server relays to him.
    let recorder = Relay::start(&pki, server.addr(), "bob", |_, line| vec![line.to_owned()]);
    let bob = listen(&pki, recorder.addr(), "bob", 2);
    let out = send(
        &pki,
        server.addr(),
        "alice",
        &["bob", "the eagle lands at noon"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("first E2E key seen for bob"),
        "{}",
        text(&out.stderr)
    );
    let out = send(
        &pki,
        server.addr(),
        "alice",
        &["--plain", "bob", "lunch plans"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let to_bob = finish(bob);
    assert_eq!(to_bob.len(), 2, "{to_bob:?}");
    assert!(
        to_bob[0].contains(r#""from":"alice","verified":true"#),
        "{}",
        to_bob[0]
    );
    assert!(
        to_bob[0].contains(r#""e2e":true,"text":"the eagle lands at noon""#),
        "{}",
        to_bob[0]
    );
    assert!(
        to_bob[1].contains(r#""e2e":false,"text":"lunch plans""#),
        "--plain goes in clear: {}",
        to_bob[1]
    );

    // (One connection per user: each starts after the same user's previous one ended.)
    let alice = listen(&pki, server.addr(), "alice", 1);
    let out = send(&pki, server.addr(), "bob", &["alice", "copy that, eagle"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let to_alice = finish(alice);
    assert!(
        to_alice[0].contains(r#""e2e":true,"text":"copy that, eagle""#),
        "{to_alice:?}"
    );

    // The server logged every request at trace level and relayed the sealed messages, yet
    // neither its log nor what it sent holds the secret words, in clear or in hex.
    let log = server.log();
    let relayed = recorder.recorded();
    assert!(
        log.contains("E2E bob "),
        "trace logging saw the E2E request"
    );
    assert!(
        relayed.contains("EVENT E2E 1 alice bob verified "),
        "{relayed}"
    );
    assert!(
        log.contains("lunch plans"),
        "a --plain message is visible, as it should be"
    );
    for secret in ["eagle", "noon", "copy that"] {
        for haystack in [&log, &relayed] {
            assert!(!haystack.contains(secret), "{secret:?} leaked");
            assert!(!haystack.contains(&hex::encode(secret.as_bytes())));
        }
    }
}

/// Bob's certificate as a rogue CA operator would make it: same CA, new key.
fn forged_bob(pki: &Pki) -> (tempfile::TempDir, CertKey) {
    let dir = tempfile::tempdir().unwrap();
    for file in ["ca.pem", "ca-key.pem"] {
        std::fs::copy(pki.path(file), dir.path().join(file)).unwrap();
    }
    let out = run(
        std::process::Command::new(binary("tlschat-certgen"))
            .arg("--out")
            .arg(dir.path())
            .args(["--client", "bob"]),
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cert = CertKey::load(&dir.path().join("bob.pem"), &dir.path().join("bob-key.pem")).unwrap();
    (dir, cert)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Swap {
    /// A key bundle for a new key under a forged (but CA-issued) bob certificate.
    Forged,
    /// Bob's genuine bundle with the key replaced (the signature no longer fits).
    Replaced,
    /// Pretend bob has no key.
    Withheld,
    /// Answer the key request with an error other than "no key".
    Failed,
}

#[test]
fn a_server_that_swaps_or_withholds_a_key_is_caught_and_nothing_is_sent() {
    let pki = Pki::standard();
    let server = ServerProcess::start_traced(&pki, &[]);
    let bob = listen(&pki, server.addr(), "bob", 1);
    let out = send(&pki, server.addr(), "alice", &["bob", "hello bob"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(finish(bob).len(), 1);

    let (_forged_dir, forged) = forged_bob(&pki);
    // Under the name of bob's device: a changed key, not a new device.
    let forged_bundle = E2eKey::generate()
        .unwrap()
        .bundle(&forged, "bob", &pki.device("bob"))
        .unwrap();
    let forged_hex = hex::encode(&forged_bundle.encode().unwrap());
    let mode = Arc::new(Mutex::new(Swap::Forged));
    let current = mode.clone();
    let relay = Relay::start(&pki, server.addr(), "alice", move |request, line| {
        if !request.starts_with("KEY GET bob") || !line.starts_with("OK ") {
            return vec![line.to_owned()];
        }
        vec![match *current.lock().unwrap() {
            Swap::Forged => format!("OK {forged_hex}"),
            Swap::Replaced => {
                let mut bytes = hex::decode(&line[3..]).unwrap();
                bytes[8] ^= 0xff; // the first byte of the public key
                format!("OK {}", hex::encode(&bytes))
            }
            Swap::Withheld => "ERR NO_KEY bob has published no E2E key".to_owned(),
            Swap::Failed => "ERR RATE_LIMITED slow down".to_owned(),
        }]
    });

    let cases = [
        (Swap::Forged, "CHANGED"),
        (Swap::Replaced, "not valid"),
        (Swap::Withheld, "not sending in clear"),
        // Not "no key": the error itself, and nothing sent.
        (Swap::Failed, "RATE_LIMITED"),
    ];
    for (swap, expected) in cases {
        *mode.lock().unwrap() = swap;
        let out = send(&pki, relay.addr(), "alice", &["bob", "for bob only"]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
    // The user can look at the keys and, after checking with bob, accept the new one.
    *mode.lock().unwrap() = Swap::Forged;
    let fingerprint = |user: &str, args: &[&str]| {
        let mut all = vec!["fingerprint"];
        all.extend_from_slice(args);
        tlschat(&pki, relay.addr(), Some(user), &all)
    };
    let own = fingerprint("alice", &[]);
    assert!(own.status.success());
    assert_eq!(
        text(&own.stdout).trim().split(' ').count(),
        16,
        "16 groups of 4"
    );
    let out = fingerprint("alice", &["bob"]);
    assert!(
        text(&out.stdout).contains("has CHANGED"),
        "{}",
        text(&out.stdout)
    );
    let out = tlschat(&pki, relay.addr(), Some("alice"), &["trust", "bob"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("now trusting bob's E2E keys"));
    let out = fingerprint("alice", &["bob"]);
    assert!(
        text(&out.stdout).contains("matches the one remembered"),
        "{}",
        text(&out.stdout)
    );

    // Without a certificate, a DM to someone with a key needs --plain.
    let out = tlschat(
        &pki,
        server.addr(),
        None,
        &["send", "--nick", "eve", "bob", "hi"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--plain"),
        "{}",
        text(&out.stderr)
    );

    let log = server.log();
    assert_eq!(
        log.matches("E2E bob ").count(),
        1,
        "only the first, honest message was ever sent"
    );
    assert!(!log.contains("for bob only"));
}

#[test]
fn replayed_reordered_and_tampered_messages_are_flagged_by_the_recipient() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &[]);
    let seen = Arc::new(AtomicUsize::new(0));
    let held = Arc::new(Mutex::new(None::<String>));
    let relay = Relay::start(&pki, server.addr(), "bob", move |_, line| {
        if !line.starts_with("EVENT E2E ") {
            return vec![line.to_owned()];
        }
        match seen.fetch_add(1, Ordering::SeqCst) {
            // "one": delivered again as it was (a repeat, as after a reconnect: dropped
            // silently), then again under a new id (a replay meant to pass as a new message:
            // caught by its counter).
            0 => {
                let rest = line.strip_prefix("EVENT E2E ").unwrap();
                let (_, rest) = rest.split_once(' ').unwrap();
                let replay = format!("EVENT E2E 999 {rest}");
                vec![line.to_owned(), line.to_owned(), replay]
            }
            // "two": held back until "three" has passed.
            1 => {
                *held.lock().unwrap() = Some(line.to_owned());
                vec![]
            }
            2 => vec![line.to_owned(), held.lock().unwrap().take().unwrap()],
            // "four": one hex digit of the ciphertext changed.
            _ => {
                let cut = line.len() - 200;
                let flipped = if &line[cut..=cut] == "0" { "1" } else { "0" };
                vec![format!("{}{flipped}{}", &line[..cut], &line[cut + 1..])]
            }
        }
    });
    let bob = listen(&pki, relay.addr(), "bob", 5);
    for word in ["one", "two", "three", "four"] {
        let out = send(&pki, server.addr(), "alice", &["bob", word]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let lines = finish(bob);
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(lines[0].contains(r#""text":"one""#), "{}", lines[0]);
    assert!(
        lines[1].contains(r#""error":"replayed"#) && !lines[1].contains(r#""text""#),
        "{}",
        lines[1]
    );
    assert!(lines[2].contains(r#""text":"three""#), "{}", lines[2]);
    assert!(
        lines[3].contains(r#""text":"two""#) && lines[3].contains(r#""reordered":true"#),
        "{}",
        lines[3]
    );
    assert!(
        lines[4].contains(r#""error":"#) && !lines[4].contains("four"),
        "{}",
        lines[4]
    );
}

#[test]
fn the_tui_makes_a_changed_key_a_warning_to_acknowledge_and_sends_nothing() {
    let pki = Pki::standard();
    let server = ServerProcess::start_traced(&pki, &[]);
    // Alice meets bob's genuine key first.
    let bob = listen(&pki, server.addr(), "bob", 1);
    let out = send(&pki, server.addr(), "alice", &["bob", "hello bob"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    finish(bob);
    // Then a server that answers KEY GET bob with a key of its own making.
    let (_forged_dir, forged) = forged_bob(&pki);
    let forged_hex = hex::encode(
        &E2eKey::generate()
            .unwrap()
            .bundle(&forged, "bob", &pki.device("bob"))
            .unwrap()
            .encode()
            .unwrap(),
    );
    let relay = Relay::start(&pki, server.addr(), "alice", move |request, line| {
        if request.starts_with("KEY GET bob") && line.starts_with("OK ") {
            vec![format!("OK {forged_hex}")]
        } else {
            vec![line.to_owned()]
        }
    });
    let command = format!("{} tui", tlschat_shell(&pki, relay.addr(), Some("alice")));
    let Some(tmux) = Tmux::start(&command, 120, 30) else {
        skip(
            "the_tui_makes_a_changed_key_a_warning_to_acknowledge_and_sends_nothing",
            "tmux is not installed",
        );
        return;
    };
    tmux.wait_for("w0", "? help");
    tmux.line("w0", "/msg bob for your eyes only");
    let screen = tmux.wait_for("w0", "Press Enter to acknowledge");
    assert!(screen.contains("WARNING"), "{screen}");
    assert!(screen.contains("CHANGED"), "{screen}");
    // Other keys do not dismiss it.
    tmux.type_text("w0", "x");
    assert!(tmux.screen("w0").contains("Press Enter to acknowledge"));
    tmux.keys("w0", &["Enter"]);
    tmux.wait_until("w0", "the warning gone", |s| {
        !s.contains("Press Enter to acknowledge")
    });
    let screen = tmux.wait_for_wrapped("w0", "/trust bob in chat");
    assert!(!screen.contains("<alice> for your eyes only"), "{screen}");
    // Acknowledged once is gone for good: the next reply brings no new warning.
    tmux.line("w0", "/echo still here");
    let screen = tmux.wait_for("w0", "still here");
    assert!(!screen.contains("Press Enter to acknowledge"), "{screen}");
    assert_eq!(
        server.log().matches("E2E bob ").count(),
        1,
        "only the first message"
    );
    assert!(!server.log().contains("for your eyes only"));
}

#[test]
fn a_message_played_back_after_the_recipient_restarts_is_still_refused() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &[]);
    let captured = Arc::new(Mutex::new(None::<String>));
    let memory = captured.clone();
    // Remembers the E2E message it relays to bob; plays it back to bob's next client right
    // after that client publishes its key.
    let relay = Relay::start(&pki, server.addr(), "bob", move |request, line| {
        if line.starts_with("EVENT E2E ") {
            *memory.lock().unwrap() = Some(line.to_owned());
        }
        let old = memory.lock().unwrap().clone();
        match old {
            Some(old) if request.starts_with("KEY SET") && line.starts_with("OK") => {
                vec![line.to_owned(), old]
            }
            _ => vec![line.to_owned()],
        }
    });
    let bob = listen(&pki, relay.addr(), "bob", 1);
    let out = send(&pki, server.addr(), "alice", &["bob", "once only"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let first = finish(bob);
    assert!(first[0].contains(r#""text":"once only""#), "{first:?}");
    assert!(captured.lock().unwrap().is_some());

    let again = finish(listen(&pki, relay.addr(), "bob", 1));
    assert!(
        again[0].contains(r#""error":"replayed"#) && !again[0].contains("once only"),
        "{again:?}"
    );
}

#[test]
fn a_name_squatter_never_gets_a_message_in_clear_unasked() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &[]);
    let addr = server.addr();
    // Alice was here with her certificate and left: her name stays hers.
    let out = send(&pki, addr, "alice", &["#lobby", "back soon"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = tlschat(
        &pki,
        addr,
        None,
        &["send", "--nick", "alice", "#lobby", "it is me"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("belongs to a verified user"),
        "{}",
        text(&out.stderr)
    );

    // A name the server has never seen with a certificate can be claimed (after a restart,
    // alice's could be too). Bob, who has a certificate, does not send in clear to it unasked.
    let squatter = Background::start(
        tlschat_command(&pki, addr, None)
            .args(["listen", "--nick", "dave", "--json", "--count", "1"]),
    );
    squatter.wait_for_stderr("listening");
    let out = send(&pki, addr, "bob", &["dave", "the secret plan"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("would go in clear"),
        "{}",
        text(&out.stderr)
    );
    let out = send(&pki, addr, "bob", &["--plain", "dave", "lunch?"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = finish(squatter);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains(r#""text":"lunch?""#), "{}", got[0]);
}

#[test]
fn one_shot_replies_cannot_reach_the_terminal_with_escape_sequences() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &[]);
    // A compromised server answers with a screen clear and a title change.
    let relay = Relay::start(&pki, server.addr(), "alice", |_, line| {
        vec![line.replace("OK hello", "OK \u{1b}[2J\u{1b}]0;owned\u{7}hello")]
    });
    let out = tlschat(
        &pki,
        relay.addr(),
        Some("alice"),
        &["exec", "ECHO", "hello"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );
    assert!(shown.ends_with("hello\n"), "{shown:?}");
}
