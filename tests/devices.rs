//! Several devices per person, with the real binaries: alice on a laptop and a phone (one
//! certificate, an E2E key each) gets everything on both and sees on one what she sends from
//! the other; a new device is announced to her contacts and not sealed to until they accept
//! it; a removed device gets nothing more it can read.

use std::net::SocketAddr;
use std::process::Output;

use tlschat_tests::{text, tlschat, tlschat_command, Background, Pki, ServerProcess};

/// The flags that make `alice`'s phone a device of its own: its own E2E key and remembered
/// keys, named `phone`.
fn phone_args(pki: &Pki) -> Vec<String> {
    vec![
        "--e2e-key".into(),
        pki.path("alice-phone-e2e-key").display().to_string(),
        "--known-keys".into(),
        pki.path("alice-phone-known-keys").display().to_string(),
        "--device".into(),
        "phone".into(),
    ]
}

/// `tlschat listen --json --count N` as `user` (with `extra` flags), once it listens.
fn listen(pki: &Pki, addr: SocketAddr, user: &str, extra: &[String], args: &[&str]) -> Background {
    let listener = Background::start(
        tlschat_command(pki, addr, Some(user))
            .args(extra)
            .args(["listen", "--json"])
            .args(args),
    );
    listener.wait_for_stderr("listening");
    listener
}

/// `tlschat [extra] ARGS` as `user`.
fn run_as(pki: &Pki, addr: SocketAddr, user: &str, extra: &[String], args: &[&str]) -> Output {
    let mut all: Vec<&str> = extra.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    tlschat(pki, addr, Some(user), &all)
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn lines(listener: Background) -> Vec<serde_json::Value> {
    let (status, stdout) = listener.finish();
    assert!(status.success(), "{status:?}: {stdout}");
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `(type, from, to, e2e, text)` of each printed message, for comparing.
fn summary(printed: &[serde_json::Value]) -> Vec<(String, String, String, bool, String)> {
    let field = |v: &serde_json::Value, name: &str| v[name].as_str().unwrap_or("").to_owned();
    printed
        .iter()
        .map(|v| {
            (
                field(v, "type"),
                field(v, "from"),
                field(v, "to"),
                v["e2e"].as_bool().unwrap_or(false),
                match v["text"].as_str() {
                    Some(text) => text.to_owned(),
                    None => format!("ERROR {}", field(v, "error")),
                },
            )
        })
        .collect()
}

#[test]
fn alice_on_two_devices_gets_everything_on_both_and_sees_there_what_she_sends_here() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &[]);
    let addr = server.addr();
    let laptop_args = vec!["--device".to_owned(), "laptop".to_owned()];
    let phone_args = phone_args(&pki);
    let expected = 5;
    let count = expected.to_string();
    let laptop = listen(
        &pki,
        addr,
        "alice",
        &laptop_args,
        &["--room", "#ops", "--count", &count],
    );
    let phone = listen(
        &pki,
        addr,
        "alice",
        &phone_args,
        &["--room", "#ops", "--count", &count],
    );
    // Both devices published a key, each under its name; this one is marked.
    let devices = ok(&run_as(&pki, addr, "alice", &laptop_args, &["devices"]));
    let line = |name: &str| -> String {
        devices
            .lines()
            .find(|l| l.starts_with(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {devices}"))
            .to_owned()
    };
    assert!(line("laptop").ends_with("(this device)"), "{devices}");
    assert!(!line("phone").contains("(this device)"), "{devices}");

    // Bob: a room message, a DM in clear, and an E2E DM (sealed to both of alice's devices).
    ok(&run_as(
        &pki,
        addr,
        "bob",
        &[],
        &["send", "#ops", "morning all"],
    ));
    ok(&run_as(
        &pki,
        addr,
        "bob",
        &[],
        &["send", "--plain", "alice", "in clear"],
    ));
    let out = run_as(
        &pki,
        addr,
        "bob",
        &[],
        &["send", "alice", "sealed for alice"],
    );
    ok(&out);
    let notice = text(&out.stderr);
    assert!(
        notice.contains("device laptop") && notice.contains("device phone"),
        "both devices seen for the first time: {notice}"
    );
    // Alice, from the laptop: to the room, and sealed to bob.
    ok(&run_as(
        &pki,
        addr,
        "alice",
        &laptop_args,
        &["send", "#ops", "on my way"],
    ));
    ok(&run_as(
        &pki,
        addr,
        "alice",
        &laptop_args,
        &["send", "bob", "sealed for bob"],
    ));

    let want = vec![
        (
            "msg".into(),
            "bob".into(),
            String::new(),
            false,
            "morning all".into(),
        ),
        (
            "dm".into(),
            "bob".into(),
            "alice".into(),
            false,
            "in clear".into(),
        ),
        (
            "dm".into(),
            "bob".into(),
            "alice".into(),
            true,
            "sealed for alice".into(),
        ),
        (
            "msg".into(),
            "alice".into(),
            String::new(),
            false,
            "on my way".into(),
        ),
        (
            "dm".into(),
            "alice".into(),
            "bob".into(),
            true,
            "sealed for bob".into(),
        ),
    ];
    let on_laptop = lines(laptop);
    let on_phone = lines(phone);
    assert_eq!(summary(&on_laptop), want, "the laptop's listener");
    assert_eq!(summary(&on_phone), want, "the phone");
}

#[test]
fn a_new_device_is_announced_and_waits_for_acceptance_and_a_removed_one_gets_nothing() {
    let pki = Pki::standard();
    let server = ServerProcess::start_traced(&pki, &[]);
    let addr = server.addr();
    let laptop_args = vec!["--device".to_owned(), "laptop".to_owned()];
    let phone_args = phone_args(&pki);
    // Alice has one device; bob meets its key with a first message (a conversation).
    ok(&run_as(&pki, addr, "alice", &laptop_args, &["devices"]));
    ok(&run_as(
        &pki,
        addr,
        "bob",
        &[],
        &["send", "alice", "hello laptop"],
    ));
    // (It also prints the copies of what bob sends from his other sessions: no count to reach.)
    let bob_listening = listen(&pki, addr, "bob", &[], &["--count", "100"]);

    // Alice's phone connects for the first time: bob is told.
    let devices = ok(&run_as(&pki, addr, "alice", &phone_args, &["devices"]));
    assert!(
        devices.contains("phone: ") && devices.contains("(this device)"),
        "{devices}"
    );
    bob_listening.wait_for_stderr("alice added a device, phone");
    // The laptop has not accepted the phone either: it lists it so, and leaves it out of
    // what it seals (saying so).
    let listed = ok(&run_as(&pki, addr, "alice", &laptop_args, &["devices"]));
    let phone_line = listed.lines().find(|l| l.starts_with("phone: ")).unwrap();
    assert!(phone_line.contains("not accepted yet"), "{listed}");
    let out = run_as(
        &pki,
        addr,
        "alice",
        &laptop_args,
        &["send", "bob", "from the laptop"],
    );
    ok(&out);
    assert!(
        text(&out.stderr).contains("your device phone is not accepted on this device yet"),
        "{}",
        text(&out.stderr)
    );
    ok(&run_as(
        &pki,
        addr,
        "alice",
        &laptop_args,
        &["trust", "alice"],
    ));
    // Bob's client does not seal to it until he accepts it.
    let out = run_as(&pki, addr, "bob", &[], &["send", "alice", "not yet"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("NEW device, phone"),
        "{}",
        text(&out.stderr)
    );
    let shown = ok(&run_as(&pki, addr, "bob", &[], &["fingerprint", "alice"]));
    assert!(
        shown.contains("(device phone)") && shown.contains("a NEW device"),
        "{shown}"
    );
    let trusted = ok(&run_as(&pki, addr, "bob", &[], &["trust", "alice"]));
    assert!(
        trusted.contains("laptop") && trusted.contains("phone"),
        "{trusted}"
    );

    // Accepted: both devices open it.
    let laptop = listen(&pki, addr, "alice", &laptop_args, &["--count", "2"]);
    let phone = listen(&pki, addr, "alice", &phone_args, &["--count", "2"]);
    ok(&run_as(
        &pki,
        addr,
        "bob",
        &[],
        &["send", "alice", "now both"],
    ));
    // The phone is withdrawn (from the laptop): bob is told, and seals to it no more.
    let removed = ok(&run_as(
        &pki,
        addr,
        "alice",
        &laptop_args,
        &["devices", "remove", "phone"],
    ));
    assert!(
        removed.contains("withdrew the key of your device phone"),
        "{removed}"
    );
    bob_listening.wait_for_stderr("alice withdrew their device phone");
    ok(&run_as(
        &pki,
        addr,
        "bob",
        &[],
        &["send", "alice", "laptop only"],
    ));

    let on_laptop = summary(&lines(laptop));
    assert_eq!(
        on_laptop.iter().map(|m| m.4.as_str()).collect::<Vec<_>>(),
        ["now both", "laptop only"]
    );
    let on_phone = summary(&lines(phone));
    assert_eq!(on_phone[0].4, "now both");
    assert!(
        on_phone[1].4.starts_with("ERROR") && on_phone[1].4.contains("not sealed to this device"),
        "{:?}",
        on_phone[1]
    );
    assert_eq!(
        server.log().matches("E2E alice ").count(),
        3,
        "hello laptop, now both, laptop only: nothing was sent before bob accepted the phone"
    );
    // A device can withdraw its own key too (it publishes it again when it connects next).
    let removed = ok(&run_as(
        &pki,
        addr,
        "alice",
        &laptop_args,
        &["devices", "remove", "laptop"],
    ));
    assert!(
        removed.contains("withdrew this device's key (laptop)"),
        "{removed}"
    );
    drop(bob_listening);
}
