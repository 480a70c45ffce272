//! End-to-end chat tests: rooms, DMs, identities, ordering, slow consumers and many clients,
//! against the real `tlschat-server` binary.

use std::collections::HashMap;
use std::time::Duration;

use tlschat_client::Client;
use tlschat_proto::{ErrorCode, Event, Reply, Request, Trust};
use tlschat_tests::{connect, msg, Pki, RawTls, ServerProcess, NO_RATE_LIMIT, STEP_TIMEOUT};

async fn call(client: &mut Client, request: Request) -> Reply {
    tokio::time::timeout(STEP_TIMEOUT, client.request(&request))
        .await
        .expect("reply in time")
        .expect("reply")
}

async fn ok(client: &mut Client, request: Request) -> String {
    match call(client, request.clone()).await {
        Reply::Ok(payload) => payload,
        Reply::Err(err) => panic!("{request} failed: {err}"),
    }
}

async fn err(client: &mut Client, request: Request) -> ErrorCode {
    match call(client, request.clone()).await {
        Reply::Err(err) => err.code,
        Reply::Ok(payload) => panic!("{request} should fail, got OK {payload}"),
    }
}

/// The next event the client receives, within the step timeout.
async fn event(client: &mut Client) -> Event {
    tokio::time::timeout(STEP_TIMEOUT, client.next_event())
        .await
        .expect("an event in time")
        .expect("event")
}

/// The next room or direct message, skipping joins, parts and the like.
async fn message(client: &mut Client) -> Event {
    loop {
        let event = event(client).await;
        if matches!(event, Event::Message { .. } | Event::Direct { .. }) {
            return event;
        }
    }
}

#[tokio::test]
async fn three_users_chat_in_a_room_and_by_direct_message() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &["--client-auth", "required"]);
    let mut alice = connect(&pki, server.addr(), Some("alice")).await;
    let mut bob = connect(&pki, server.addr(), Some("bob")).await;
    let mut carol = connect(&pki, server.addr(), Some("carol")).await;
    assert_eq!(ok(&mut alice, Request::Join("#Team".into())).await, "#team");
    assert_eq!(ok(&mut bob, Request::Join("#team".into())).await, "#team");
    assert_eq!(
        event(&mut alice).await,
        Event::Join {
            room: "#team".into(),
            nick: "bob".into(),
            trust: Trust::Verified
        }
    );
    ok(&mut carol, Request::Join("#team".into())).await;

    assert_eq!(ok(&mut alice, msg("#team", "hello, team")).await, "1");
    for reader in [&mut bob, &mut carol] {
        match message(reader).await {
            Event::Message {
                room,
                id,
                from,
                trust,
                text,
                time,
            } => {
                assert_eq!(
                    (room.as_str(), id, from.as_str(), trust, text.as_str()),
                    ("#team", 1, "alice", Trust::Verified, "hello, team")
                );
                assert!(time.ends_with('Z') && time.contains('T'), "{time}");
            }
            other => panic!("{other:?}"),
        }
    }

    ok(&mut bob, msg("carol", "just between us")).await;
    match message(&mut carol).await {
        Event::Direct {
            from, trust, text, ..
        } => {
            assert_eq!(
                (from.as_str(), trust, text.as_str()),
                ("bob", Trust::Verified, "just between us")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ok(&mut alice, Request::Who("#team".into())).await,
        "alice=verified bob=verified carol=verified"
    );
    assert_eq!(ok(&mut alice, Request::Rooms).await, "#team=3");

    assert_eq!(
        err(&mut alice, msg("dave", "hi")).await,
        ErrorCode::NoSuchUser
    );
    assert_eq!(
        err(&mut alice, msg("#elsewhere", "hi")).await,
        ErrorCode::NotInRoom
    );
    assert_eq!(
        ok(&mut alice, Request::Join("#team".into())).await,
        "#team",
        "joining a room one is in changes nothing"
    );
    assert_eq!(
        err(&mut alice, Request::Who("#nope".into())).await,
        ErrorCode::NoSuchRoom
    );
    let mut raw = RawTls::connect(&pki.client_config(server.addr(), Some("carol")))
        .await
        .unwrap();
    raw.read_line().await.unwrap();
    raw.write(b"MSG #team   \nJOIN team\n").await.unwrap();
    // Carol's new connection is back in #team: room events may come first.
    let mut replies = Vec::new();
    while replies.len() < 2 {
        let line = raw.read_line().await.unwrap();
        if !line.starts_with("EVENT ") {
            replies.push(line);
        }
    }
    assert!(replies[0].starts_with("ERR EMPTY_TEXT"), "{replies:?}");
    assert!(replies[1].starts_with("ERR BAD_NAME"), "{replies:?}");
}

#[tokio::test]
async fn certificate_identities_cannot_be_spoofed_and_unverified_users_are_marked() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &[]);
    let mut alice = connect(&pki, server.addr(), Some("alice")).await;
    assert_eq!(
        err(&mut alice, Request::Nick("mallory".into())).await,
        ErrorCode::NickLocked
    );

    let mut guest = connect(&pki, server.addr(), None).await;
    assert_eq!(
        err(&mut guest, Request::Join("#lobby".into())).await,
        ErrorCode::NoNick
    );
    assert_eq!(
        err(&mut guest, Request::Nick("alice".into())).await,
        ErrorCode::NickTaken
    );
    assert_eq!(
        err(&mut guest, Request::Nick("ALICE".into())).await,
        ErrorCode::NickTaken
    );
    assert_eq!(
        ok(&mut guest, Request::Nick("mallory".into())).await,
        "mallory (unverified)"
    );

    ok(&mut alice, Request::Join("#lobby".into())).await;
    ok(&mut guest, Request::Join("#lobby".into())).await;
    assert_eq!(
        event(&mut alice).await,
        Event::Join {
            room: "#lobby".into(),
            nick: "mallory".into(),
            trust: Trust::Unverified
        }
    );
    ok(&mut guest, msg("#lobby", "trust me")).await;
    assert!(matches!(message(&mut alice).await,
        Event::Message { from, trust: Trust::Unverified, .. } if from == "mallory"));
    assert_eq!(
        ok(&mut alice, Request::Who("#lobby".into())).await,
        "alice=verified mallory=unverified"
    );

    // A certless squatter on bob's name loses it the moment bob connects with his certificate.
    let mut squatter = connect(&pki, server.addr(), None).await;
    ok(&mut squatter, Request::Nick("bob".into())).await;
    let mut bob = connect(&pki, server.addr(), Some("bob")).await;
    match event(&mut squatter).await {
        Event::Disconnect { code, .. } => {
            assert_eq!(code, tlschat_proto::DisconnectCode::NickReclaimed)
        }
        other => panic!("{other:?}"),
    }
    ok(&mut alice, msg("bob", "is it you?")).await;
    assert!(
        matches!(message(&mut bob).await, Event::Direct { from, trust: Trust::Verified, .. } if from == "alice")
    );
}

#[tokio::test]
async fn disconnecting_leaves_every_room() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &[]);
    let mut alice = connect(&pki, server.addr(), Some("alice")).await;
    ok(&mut alice, Request::Join("#a".into())).await;
    ok(&mut alice, Request::Join("#b".into())).await;
    let mut bob = connect(&pki, server.addr(), Some("bob")).await;
    ok(&mut bob, Request::Join("#a".into())).await;
    ok(&mut bob, Request::Join("#b".into())).await;
    ok(&mut bob, Request::Join("#bob-only".into())).await;
    drop(bob); // no QUIT: the connection just goes away
    let mut quits = Vec::new();
    while quits.len() < 2 {
        match event(&mut alice).await {
            Event::Quit { room, nick, .. } => {
                assert_eq!(nick, "bob");
                quits.push(room);
            }
            Event::Join { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    quits.sort();
    assert_eq!(quits, ["#a", "#b"]);
    assert_eq!(
        ok(&mut alice, Request::Rooms).await,
        "#a=1 #b=1",
        "#bob-only is gone"
    );
    // Bob has a certificate: a DM to him waits for his return (history.rs). A name nobody
    // with a certificate has is refused.
    assert_eq!(ok(&mut alice, msg("bob", "hello?")).await, "1 verified");
    assert_eq!(
        err(&mut alice, msg("nobody", "hello?")).await,
        ErrorCode::NoSuchUser
    );
}

#[tokio::test]
async fn room_order_holds_with_concurrent_senders() {
    const SENDERS: usize = 4;
    const PER_SENDER: usize = 200;
    let pki = Pki::standard();
    // Senders go as fast as round trips allow: lift the rate limit.
    let server = ServerProcess::start(&pki, NO_RATE_LIMIT);
    let addr = server.addr();
    let mut readers = Vec::new();
    for name in ["alice", "bob"] {
        let mut reader = connect(&pki, addr, Some(name)).await;
        ok(&mut reader, Request::Join("#race".into())).await;
        readers.push(reader);
    }
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let mut sender = connect(&pki, addr, None).await;
        ok(&mut sender, Request::Nick(format!("sender{s}"))).await;
        ok(&mut sender, Request::Join("#race".into())).await;
        senders.push(sender);
    }
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(s, mut sender)| {
            tokio::spawn(async move {
                for i in 0..PER_SENDER {
                    let reply = sender
                        .request(&msg("#race", &format!("{s}:{i}")))
                        .await
                        .unwrap();
                    assert!(matches!(reply, Reply::Ok(_)), "{reply}");
                }
                sender
            })
        })
        .collect();
    let mut seen: Vec<Vec<(u64, String)>> = Vec::new();
    for reader in &mut readers {
        let mut got = Vec::new();
        while got.len() < SENDERS * PER_SENDER {
            if let Event::Message { id, text, .. } = message(reader).await {
                got.push((id, text));
            }
        }
        seen.push(got);
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(seen[0], seen[1], "every member sees the same order");
    let ids: Vec<u64> = seen[0].iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        (1..=(SENDERS * PER_SENDER) as u64).collect::<Vec<_>>(),
        "ids count up by one"
    );
    let mut next = HashMap::new();
    for (_, text) in &seen[0] {
        let (s, i) = text.split_once(':').unwrap();
        let expected = next.entry(s.to_owned()).or_insert(0usize);
        assert_eq!(
            i.parse::<usize>().unwrap(),
            *expected,
            "sender {s} out of order"
        );
        *expected += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_cut_off_and_the_room_keeps_flowing() {
    // 10 MB through the room: more than the stuck reader's socket buffers plus its 512 KiB queue
    // can hold, in batches of 100 KB so the live reader never lags by more than its queue.
    const MESSAGES: usize = 10_000;
    const BATCH: usize = 100;
    let pki = Pki::standard();
    // The sender floods on purpose: lift its rate limit.
    let server = ServerProcess::start(
        &pki,
        &[
            NO_RATE_LIMIT,
            // Without a store: with one, the reader is told of a gap instead (history.rs).
            &[
                "--max-pending-bytes",
                "524288",
                "--write-timeout",
                "60s",
                "--store",
                "none",
            ],
        ]
        .concat(),
    );
    let addr = server.addr();

    // The stuck reader: joins, then never reads again.
    let mut stuck = RawTls::connect(&pki.client_config(addr, Some("carol")))
        .await
        .unwrap();
    stuck.write(b"JOIN #flood\n").await.unwrap();
    let mut bob = connect(&pki, addr, Some("bob")).await;
    ok(&mut bob, Request::Join("#flood".into())).await;
    let mut alice = RawTls::connect(&pki.client_config(addr, Some("alice")))
        .await
        .unwrap();
    assert!(alice.read_line().await.unwrap().starts_with("HELLO"));
    alice.write(b"JOIN #flood\n").await.unwrap();
    assert_eq!(alice.read_line().await.unwrap(), "OK #flood");

    let reader = tokio::spawn(async move {
        let mut ids = Vec::new();
        let mut quit_reason = None;
        while ids.len() < MESSAGES {
            match message_or_quit(&mut bob).await {
                Event::Message { id, .. } => ids.push(id),
                Event::Quit { nick, reason, .. } if nick == "carol" => quit_reason = Some(reason),
                _ => {}
            }
        }
        (ids, quit_reason, bob)
    });
    let body = "x".repeat(1000);
    for batch in 0..(MESSAGES / BATCH) {
        let lines: String = (0..BATCH)
            .map(|i| format!("MSG #flood {batch}-{i} {body}\n"))
            .collect();
        alice.write(lines.as_bytes()).await.unwrap();
        let mut acknowledged = 0;
        while acknowledged < BATCH {
            let line = alice.read_line().await.unwrap();
            if line.starts_with("OK ") {
                acknowledged += 1;
            } else {
                assert!(line.starts_with("EVENT "), "unexpected {line}");
            }
        }
    }
    let (ids, quit_reason, mut bob) = reader.await.unwrap();
    assert_eq!(
        ids,
        (1..=MESSAGES as u64).collect::<Vec<_>>(),
        "bob got every message in order"
    );
    let reason = match quit_reason {
        Some(reason) => reason,
        None => loop {
            if let Event::Quit { nick, reason, .. } = event(&mut bob).await {
                if nick == "carol" {
                    break reason;
                }
            }
        },
    };
    assert_eq!(reason, "not reading", "others see a neutral reason");
    server.wait_for_log("slow consumer disconnected");
    drop(stuck);
}

async fn message_or_quit(client: &mut Client) -> Event {
    loop {
        let event = event(client).await;
        if matches!(event, Event::Message { .. } | Event::Quit { .. }) {
            return event;
        }
    }
}

#[tokio::test]
async fn admins_kick_users_and_rooms_are_told() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &[]);
    let mut root = connect(&pki, server.addr(), Some("root")).await;
    let mut bob = connect(&pki, server.addr(), Some("bob")).await;
    let mut carol = connect(&pki, server.addr(), Some("carol")).await;
    ok(&mut bob, Request::Join("#x".into())).await;
    ok(&mut carol, Request::Join("#x".into())).await;
    assert_eq!(
        err(
            &mut bob,
            Request::Kick {
                room: None,
                nick: "carol".into(),
                reason: None
            }
        )
        .await,
        ErrorCode::Forbidden
    );
    ok(
        &mut root,
        Request::Kick {
            room: None,
            nick: "carol".into(),
            reason: Some("be nice".into()),
        },
    )
    .await;
    match event(&mut carol).await {
        Event::Disconnect { code, reason } => {
            assert_eq!(
                (code.as_str(), reason.as_str()),
                ("KICKED", "kicked by root: be nice")
            );
        }
        other => panic!("{other:?}"),
    }
    loop {
        if let Event::Quit { nick, reason, .. } = event(&mut bob).await {
            assert_eq!(
                (nick.as_str(), reason.as_str()),
                ("carol", "kicked by root: be nice")
            );
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_each_receive_a_broadcast() {
    const CLIENTS: usize = 1000;
    let pki = Pki::standard();
    // All clients come from 127.0.0.1: lift the per-address limit.
    let server = ServerProcess::start(
        &pki,
        &[
            "--max-connections-per-ip",
            "2000",
            "--max-handshakes-per-ip",
            "2000",
        ],
    );
    let config = pki.client_config(server.addr(), None);
    let mut joins = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        let config = config.clone();
        joins.spawn(async move {
            let mut client = Client::connect(&config).await.expect("connect");
            for request in [
                Request::Nick(format!("user{i}")),
                Request::Join("#all".into()),
            ] {
                let reply = client.request(&request).await.expect("reply");
                assert!(matches!(reply, Reply::Ok(_)), "{reply}");
            }
            client
        });
    }
    let mut clients = Vec::with_capacity(CLIENTS);
    while let Some(client) = joins.join_next().await {
        clients.push(client.unwrap());
    }
    let mut announcer = connect(&pki, server.addr(), Some("root")).await;
    ok(&mut announcer, Request::Join("#all".into())).await;
    assert_eq!(
        ok(&mut announcer, Request::Who("#all".into()))
            .await
            .split(' ')
            .count(),
        CLIENTS + 1
    );
    ok(&mut announcer, msg("#all", "hello, everyone")).await;
    let mut receives = tokio::task::JoinSet::new();
    for mut client in clients {
        receives.spawn(async move {
            loop {
                let event = tokio::time::timeout(Duration::from_secs(60), client.next_event())
                    .await
                    .expect("broadcast in time")
                    .expect("event");
                if let Event::Message { from, text, .. } = event {
                    assert_eq!((from.as_str(), text.as_str()), ("root", "hello, everyone"));
                    return;
                }
            }
        });
    }
    let mut received = 0;
    while let Some(done) = receives.join_next().await {
        done.unwrap();
        received += 1;
    }
    assert_eq!(received, CLIENTS);
}

#[tokio::test]
async fn a_pipelined_burst_keeps_every_reply_and_delivery_in_order() {
    // Bound: 601 requests in one write: 300 room messages in a row (more than the server sends
    // as one batch, 256), a direct message, then 300 more. Replies and deliveries must keep
    // that order exactly, batches or not.
    const RUN: usize = 300;
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, NO_RATE_LIMIT);
    let mut bob = connect(&pki, server.addr(), Some("bob")).await;
    ok(&mut bob, Request::Join("#b".into())).await;
    let mut alice = RawTls::connect(&pki.client_config(server.addr(), Some("alice")))
        .await
        .unwrap();
    assert!(alice.read_line().await.unwrap().starts_with("HELLO"));
    alice.write(b"JOIN #b\n").await.unwrap();
    assert_eq!(alice.read_line().await.unwrap(), "OK #b");

    let mut burst = String::new();
    (0..RUN).for_each(|i| burst.push_str(&format!("MSG #b r{i}\n")));
    burst.push_str("MSG bob between\n");
    (0..RUN).for_each(|i| burst.push_str(&format!("MSG #b s{i}\n")));
    alice.write(burst.as_bytes()).await.unwrap();

    let mut replies = Vec::new();
    for _ in 0..=2 * RUN {
        replies.push(alice.read_line().await.expect("a reply"));
    }
    let expected: Vec<String> = (1..=RUN)
        .map(|id| format!("OK {id}"))
        .chain(["OK 1 verified".to_owned()])
        .chain((RUN + 1..=2 * RUN).map(|id| format!("OK {id}")))
        .collect();
    assert_eq!(replies, expected);

    let mut seen = Vec::new();
    for _ in 0..=2 * RUN {
        seen.push(match message(&mut bob).await {
            Event::Message { id, text, .. } => format!("{id} {text}"),
            Event::Direct { text, .. } => format!("DM {text}"),
            other => panic!("{other:?}"),
        });
    }
    let expected: Vec<String> = (0..RUN)
        .map(|i| format!("{} r{i}", i + 1))
        .chain(["DM between".to_owned()])
        .chain((0..RUN).map(|i| format!("{} s{i}", RUN + i + 1)))
        .collect();
    assert_eq!(seen, expected);
}
