//! Several tlschat servers as one cluster, with the real binaries and a real nats-server with
//! JetStream on loopback: rooms, `WHO`, direct and E2E messages across nodes; one order for
//! everyone; certless names unique across nodes; a NATS outage refused and recovered from;
//! a node killed while its users send. Skipped where nats-server is not installed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tlschat_client::Client;
use tlschat_proto::{ErrorCode, Event, Reply, Request};
use tlschat_tests::nats::Nats;
use tlschat_tests::tmux::Tmux;
use tlschat_tests::{
    call, connect, msg, ok, text, tlschat, tlschat_command, tlschat_shell, Background, Pki,
    ServerProcess, NO_RATE_LIMIT, STEP_TIMEOUT,
};

/// Starts a node of the cluster on `nats`, called `name`.
fn node(pki: &Pki, nats: &Nats, name: &str, extra: &[&str]) -> ServerProcess {
    let url = nats.url();
    let mut args = vec!["--cluster", &url, "--node-name", name];
    args.extend_from_slice(NO_RATE_LIMIT);
    args.extend_from_slice(extra);
    ServerProcess::start(pki, &args)
}

/// The next event the client receives, within the step timeout.
async fn event(client: &mut Client) -> Event {
    tokio::time::timeout(STEP_TIMEOUT, client.next_event())
        .await
        .expect("an event in time")
        .expect("event")
}

/// Waits (within the step timeout) for an event `wanted` accepts; what comes before is
/// skipped.
async fn wait_event(client: &mut Client, what: &str, wanted: impl Fn(&Event) -> bool) -> Event {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, client.next_event()).await {
            Ok(Ok(event)) if wanted(&event) => return event,
            Ok(Ok(_)) => {}
            other => panic!("waiting for {what}: {other:?}"),
        }
    }
}

/// Asks `request` until `done` accepts the reply (another node's news arrives within
/// milliseconds; the step timeout bounds it).
async fn until(client: &mut Client, request: Request, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let reply = ok(client, request.clone()).await;
        if done(&reply) {
            return reply;
        }
        assert!(Instant::now() < deadline, "{request}: still {reply:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The room messages of `events` as (id, from, text).
fn room_messages(events: &[Event]) -> Vec<(u64, String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message { id, from, text, .. } => Some((*id, from.clone(), text.clone())),
            _ => None,
        })
        .collect()
}

/// Every message of `room` from its history, oldest first, paging forward.
async fn history(client: &mut Client, room: &str) -> Vec<(u64, String, String)> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let line = format!("HISTORY {room} AFTER {after} LIMIT 500");
        let reply = tokio::time::timeout(STEP_TIMEOUT, client.request_line(&line))
            .await
            .expect("history in time")
            .expect("history");
        let Reply::Ok(summary) = reply else {
            panic!("{line}: {reply:?}");
        };
        let page = room_messages(&client.drain_events());
        after = page.last().map_or(after, |m| m.0);
        all.extend(page);
        if summary.ends_with("end") {
            return all;
        }
    }
}

#[tokio::test]
async fn alice_and_bob_on_two_nodes_share_a_room_who_and_direct_messages() {
    let test = "alice_and_bob_on_two_nodes_share_a_room_who_and_direct_messages";
    let Some(nats) = Nats::start_temp(test) else {
        return;
    };
    let pki = Pki::standard();
    let one = node(&pki, &nats, "one", &[]);
    let two = node(&pki, &nats, "two", &["--metrics", "127.0.0.1:0"]);
    let mut alice = connect(&pki, one.addr(), Some("alice")).await;
    let mut bob = connect(&pki, two.addr(), Some("bob")).await;
    ok(&mut alice, Request::Join("#ops".into())).await;
    ok(&mut bob, Request::Join("#ops".into())).await;
    // Alice, on node one, hears bob join on node two.
    wait_event(
        &mut alice,
        "bob's join",
        |e| matches!(e, Event::Join { nick, .. } if nick == "bob"),
    )
    .await;
    // WHO and ROOMS are the cluster's, from either node.
    for client in [&mut alice, &mut bob] {
        until(client, Request::Who("#ops".into()), |who| {
            who == "alice=verified bob=verified"
        })
        .await;
        until(client, Request::Rooms, |rooms| rooms.contains("#ops=2")).await;
    }
    // Node two's monitoring counts alice, on node one.
    let (status, metrics) = tlschat_tests::http_get(two.metrics_addr(), "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("tlschat_cluster_people_elsewhere 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tlschat_cluster_held_messages 0"),
        "{metrics}"
    );
    // Messages both ways, in one order both agree on.
    for round in 0..3 {
        ok(&mut alice, msg("#ops", &format!("alice {round}"))).await;
        ok(&mut bob, msg("#ops", &format!("bob {round}"))).await;
    }
    let mut seen_by_bob = Vec::new();
    while seen_by_bob.len() < 3 {
        seen_by_bob.extend(room_messages(&[event(&mut bob).await]));
    }
    let mut seen_by_alice = Vec::new();
    while seen_by_alice.len() < 3 {
        seen_by_alice.extend(room_messages(&[event(&mut alice).await]));
    }
    let everything = history(&mut bob, "#ops").await;
    assert_eq!(everything.len(), 6, "{everything:?}");
    assert_eq!(everything, history(&mut alice, "#ops").await);
    let ids: Vec<u64> = everything.iter().map(|m| m.0).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
    let from = |who: &str| -> Vec<(u64, String, String)> {
        everything.iter().filter(|m| m.1 == who).cloned().collect()
    };
    assert_eq!(seen_by_bob, from("alice"));
    assert_eq!(seen_by_alice, from("bob"));
    // A direct message from node one reaches bob on node two.
    let reply = ok(&mut alice, msg("bob", "psst")).await;
    assert!(reply.ends_with(" verified"), "{reply}");
    let dm = wait_event(&mut bob, "alice's DM", |e| {
        matches!(e, Event::Direct { .. })
    })
    .await;
    assert!(matches!(&dm, Event::Direct { from, text, .. } if from == "alice" && text == "psst"));

    // End to end encrypted, with the client binary: keys published on one node are offered
    // by the other, and the sealed message opens on carol's side.
    let listener = Background::start(
        tlschat_command(&pki, two.addr(), Some("carol"))
            .args(e2e_files(&pki, "carol"))
            .args(["listen", "--json", "--count", "1"]),
    );
    listener.wait_for_stderr("listening");
    let args = e2e_args(&pki, "alice", &["send", "carol", "sealed across nodes"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sent = tlschat(&pki, one.addr(), Some("alice"), &args);
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    let (status, out) = listener.finish();
    assert!(status.success(), "{out}");
    assert!(out.contains(r#""e2e":true"#), "{out}");
    assert!(out.contains("sealed across nodes"), "{out}");

    // A device alice adds on node one is announced to carol, her contact, on node two.
    let listener = Background::start(
        tlschat_command(&pki, two.addr(), Some("carol"))
            .args(e2e_files(&pki, "carol"))
            .args(["listen", "--count", "100"]),
    );
    listener.wait_for_stderr("listening");
    let phone_key = pki.path("alice-phone-e2e-key").display().to_string();
    let phone = ["--e2e-key", &phone_key, "--device", "phone", "devices"];
    let out = tlschat(&pki, one.addr(), Some("alice"), &phone);
    assert!(out.status.success(), "{}", text(&out.stderr));
    listener.wait_for_stderr("alice added a device, phone");
}

/// The E2E key and remembered-keys files of `user`, as flags.
fn e2e_files(pki: &Pki, user: &str) -> Vec<String> {
    vec![
        "--e2e-key".into(),
        pki.path(&format!("{user}-e2e-key")).display().to_string(),
        "--known-keys".into(),
        pki.path(&format!("{user}-known-keys"))
            .display()
            .to_string(),
    ]
}

fn e2e_args(pki: &Pki, user: &str, args: &[&str]) -> Vec<String> {
    let mut all = e2e_files(pki, user);
    all.extend(args.iter().map(|a| (*a).to_owned()));
    all
}

#[tokio::test]
async fn three_senders_on_three_nodes_are_received_in_one_order_everywhere() {
    const EACH: usize = 1000;
    let test = "three_senders_on_three_nodes_are_received_in_one_order_everywhere";
    let Some(nats) = Nats::start_temp(test) else {
        return;
    };
    let pki = Pki::with_args(&[
        "--client", "s1", "--client", "s2", "--client", "s3", "--client", "r1", "--client", "r2",
        "--client", "r3",
    ]);
    let nodes: Vec<ServerProcess> = ["n1", "n2", "n3"]
        .iter()
        .map(|name| node(&pki, &nats, name, &[]))
        .collect();
    // A reader on every node, in the room before anyone writes.
    let mut readers = Vec::new();
    for (n, server) in nodes.iter().enumerate() {
        let mut reader = connect(&pki, server.addr(), Some(&format!("r{}", n + 1))).await;
        ok(&mut reader, Request::Join("#load".into())).await;
        readers.push(reader);
    }
    let mut senders = Vec::new();
    for (n, server) in nodes.iter().enumerate() {
        let mut sender = connect(&pki, server.addr(), Some(&format!("s{}", n + 1))).await;
        ok(&mut sender, Request::Join("#load".into())).await;
        senders.push(sender);
    }
    // All three at once, each waiting for its OK.
    let writers: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(n, mut sender)| {
            tokio::spawn(async move {
                for i in 0..EACH {
                    ok(&mut sender, msg("#load", &format!("s{} #{i}", n + 1))).await;
                }
                sender
            })
        })
        .collect();
    let readings: Vec<_> = readers
        .into_iter()
        .map(|mut reader| {
            tokio::spawn(async move {
                let mut got = Vec::new();
                while got.len() < 3 * EACH {
                    got.extend(room_messages(&[event(&mut reader).await]));
                }
                (got, reader)
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("sender");
    }
    let mut orders = Vec::new();
    let mut last_reader = None;
    for reading in readings {
        let (got, reader) = reading.await.expect("reader");
        orders.push(got);
        last_reader = Some(reader);
    }
    let first = &orders[0];
    let ids: Vec<u64> = first.iter().map(|m| m.0).collect();
    assert_eq!(ids, (1..=3 * EACH as u64).collect::<Vec<_>>());
    for other in &orders[1..] {
        assert!(other == first, "the nodes delivered in different orders");
    }
    // Each sender's messages in the order it sent them.
    let mut per_sender: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, from, text) in first {
        per_sender
            .entry(from.clone())
            .or_default()
            .push(text.clone());
    }
    for (from, texts) in &per_sender {
        let expected: Vec<String> = (0..EACH).map(|i| format!("{from} #{i}")).collect();
        assert_eq!(texts, &expected);
    }
    let mut reader = last_reader.expect("a reader");
    assert_eq!(&history(&mut reader, "#load").await, first);
}

#[tokio::test]
async fn two_certless_clients_on_two_nodes_claim_one_nick_and_exactly_one_wins() {
    let test = "two_certless_clients_on_two_nodes_claim_one_nick_and_exactly_one_wins";
    let Some(nats) = Nats::start_temp(test) else {
        return;
    };
    let pki = Pki::standard();
    let (one, two) = (node(&pki, &nats, "one", &[]), node(&pki, &nats, "two", &[]));
    for round in 0..5 {
        let name = format!("sam{round}");
        let mut a = connect(&pki, one.addr(), None).await;
        let mut b = connect(&pki, two.addr(), None).await;
        let claim = Request::Nick(name.clone());
        let (ra, rb) = tokio::join!(call(&mut a, &claim), call(&mut b, &claim));
        let wins = [&ra, &rb]
            .iter()
            .filter(|r| matches!(r, Reply::Ok(_)))
            .count();
        assert_eq!(wins, 1, "{ra:?} {rb:?}");
        let loser = if matches!(ra, Reply::Ok(_)) { &rb } else { &ra };
        assert!(
            matches!(loser, Reply::Err(e) if e.code == ErrorCode::NickTaken),
            "{loser:?}"
        );
        // Once the winner leaves, the name is free on the other node.
        let (mut winner, mut other) = if matches!(ra, Reply::Ok(_)) {
            (a, b)
        } else {
            (b, a)
        };
        ok(&mut winner, Request::Quit).await;
        let deadline = Instant::now() + STEP_TIMEOUT;
        while !matches!(
            call(&mut other, &Request::Nick(name.clone())).await,
            Reply::Ok(_)
        ) {
            assert!(Instant::now() < deadline, "{name} was not released");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn a_nats_outage_refuses_messages_clearly_and_sending_works_again_after_it() {
    let test = "a_nats_outage_refuses_messages_clearly_and_sending_works_again_after_it";
    let Some(mut nats) = Nats::start_temp(test) else {
        return;
    };
    let pki = Pki::standard();
    let one = node(&pki, &nats, "one", &[]);
    let two = node(&pki, &nats, "two", &[]);
    let mut alice = connect(&pki, one.addr(), Some("alice")).await;
    ok(&mut alice, Request::Join("#ops".into())).await;
    ok(&mut alice, msg("#ops", "before")).await;
    let mut bob = connect(&pki, two.addr(), Some("bob")).await;
    // Stopped as for an upgrade (cleanly); the kill of a node is another test.
    nats.stop();
    let mut acknowledged = vec!["before".to_owned()];
    match call(&mut alice, &msg("#ops", "during")).await {
        Reply::Err(err) => {
            assert_eq!(err.code, ErrorCode::StoreFailed, "{err}");
            assert!(err.message.contains("not stored"), "{err}");
        }
        Reply::Ok(id) => panic!("acknowledged while NATS is down: {id}"),
    }
    // Reads keep working meanwhile.
    assert_eq!(
        ok(&mut alice, Request::Who("#ops".into())).await,
        "alice=verified"
    );
    nats.restart();
    // Back by itself, without a restart of the node.
    let deadline = Instant::now() + STEP_TIMEOUT;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let text = format!("after {attempt}");
        match call(&mut alice, &msg("#ops", &text)).await {
            Reply::Ok(_) => {
                acknowledged.push(text);
                break;
            }
            Reply::Err(err) => {
                assert_eq!(err.code, ErrorCode::StoreFailed, "{err}");
                assert!(Instant::now() < deadline, "still refused: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let kept: Vec<String> = history(&mut alice, "#ops")
        .await
        .into_iter()
        .map(|m| m.2)
        .collect();
    assert_eq!(kept, acknowledged);
    // Presence is back too: node two sees alice in her room again.
    until(&mut bob, Request::Who("#ops".into()), |who| {
        who == "alice=verified"
    })
    .await;
}

#[tokio::test]
async fn a_killed_node_loses_no_acknowledged_message_and_its_people_leave_within_the_ttl() {
    let test = "a_killed_node_loses_no_acknowledged_message_and_its_people_leave_within_the_ttl";
    let Some(nats) = Nats::start_temp(test) else {
        return;
    };
    let pki = Pki::standard();
    let one = node(&pki, &nats, "one", &[]);
    let two = node(&pki, &nats, "two", &[]);
    let mut bob = connect(&pki, two.addr(), Some("bob")).await;
    ok(&mut bob, Request::Join("#ops".into())).await;
    let mut carol = connect(&pki, one.addr(), Some("carol")).await;
    ok(&mut carol, Request::Join("#ops".into())).await;
    let mut alice = connect(&pki, one.addr(), Some("alice")).await;
    ok(&mut alice, Request::Join("#ops".into())).await;
    until(&mut bob, Request::Who("#ops".into()), |who| {
        who.contains("carol")
    })
    .await;
    // Alice sends until her node is killed under her.
    let mut acknowledged = Vec::new();
    for i in 0..50 {
        if i == 25 {
            one.signal("KILL");
        }
        match tokio::time::timeout(STEP_TIMEOUT, alice.request(&msg("#ops", &format!("m{i}"))))
            .await
            .expect("an answer or an error in time")
        {
            Ok(Reply::Ok(_)) => acknowledged.push(format!("m{i}")),
            Ok(Reply::Err(err)) => panic!("refused: {err}"),
            Err(_) => break,
        }
    }
    assert!(acknowledged.len() >= 25, "{acknowledged:?}");
    // She comes back on node two: the history there has every acknowledged message once.
    let mut alice = connect(&pki, two.addr(), Some("alice")).await;
    ok(&mut alice, Request::Join("#ops".into())).await;
    let kept: Vec<String> = history(&mut alice, "#ops")
        .await
        .into_iter()
        .map(|m| m.2)
        .collect();
    let mut once = kept.clone();
    once.dedup();
    assert_eq!(once, kept, "a message was stored twice");
    for text in &acknowledged {
        assert!(
            kept.contains(text),
            "{text} was acknowledged and lost: {kept:?}"
        );
    }
    // Carol was only on node one: gone from node two within the presence's time to live.
    let quit = tokio::time::timeout(Duration::from_secs(30), wait_for_quit(&mut bob, "carol"))
        .await
        .expect("carol's quit within the time to live");
    assert!(matches!(quit, Event::Quit { reason, .. } if reason.contains("stopped answering")));
    assert_eq!(
        ok(&mut bob, Request::Who("#ops".into())).await,
        "alice=verified bob=verified"
    );
}

/// Waits, however long, for `nick`'s quit (the caller bounds it).
async fn wait_for_quit(client: &mut Client, nick: &str) -> Event {
    loop {
        let event = client.next_event().await.expect("event");
        if matches!(&event, Event::Quit { nick: n, .. } if n == nick) {
            return event;
        }
    }
}

#[test]
fn the_chat_client_fails_over_to_another_node_and_catches_up_once() {
    let test = "the_chat_client_fails_over_to_another_node_and_catches_up_once";
    let Some(nats) = Nats::start_temp(test) else {
        return;
    };
    let pki = Pki::standard();
    let one = node(&pki, &nats, "one", &[]);
    let two = node(&pki, &nats, "two", &[]);
    let servers = format!("{},{}", one.addr(), two.addr());
    let Some(tmux) = Tmux::start(&tlschat_shell(&pki, &servers, Some("carol")), 100, 30) else {
        tlschat_tests::skip(test, "tmux is not installed");
        return;
    };
    tmux.wait_for("w0", &format!("connected to {}", one.addr()));
    tmux.line("w0", "/join #ops");
    tmux.wait_for("w0", "joined #ops");
    let send = |what: &str| {
        let out = tlschat(&pki, two.addr(), Some("bob"), &["send", "#ops", what]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    send("before the crash");
    tmux.wait_for("w0", "#ops <bob> before the crash");
    // Node one dies under carol; bob goes on talking on node two meanwhile.
    one.signal("KILL");
    send("while carol was away");
    tmux.wait_for("w0", "reconnected; rejoining #ops");
    tmux.wait_for("w0", "#ops <bob> while carol was away");
    send("after");
    // Everything once: what she missed, and nothing she had seen again (node one died before
    // it could record where she was: the catch-up repeats, and the client drops repeats).
    let screen = tmux.wait_for("w0", "#ops <bob> after");
    assert_eq!(
        screen.matches("<bob> while carol was away").count(),
        1,
        "{screen}"
    );
    assert_eq!(
        screen.matches("<bob> before the crash").count(),
        1,
        "{screen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_loaded_on_one_node_cuts_and_refuses_the_user_on_the_others() {
    let test = "a_revocation_loaded_on_one_node_cuts_and_refuses_the_user_on_the_others";
    let Some(nats) = Nats::start_temp(test) else {
        return;
    };
    let pki = Pki::standard();
    let certgen = |args: &[&str]| {
        let out = tlschat_tests::run(
            std::process::Command::new(tlschat_tests::binary("tlschat-certgen"))
                .arg("--out")
                .arg(pki.dir())
                .args(args),
            b"",
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    certgen(&["revoke", "--refresh"]);
    let crl = pki.path("crl.pem").display().to_string();
    // Only node one reads the list; node two has none of its own.
    let one = node(&pki, &nats, "one", &["--crl", &crl]);
    let two = node(&pki, &nats, "two", &["--crl", "none"]);
    let mut carol = connect(&pki, two.addr(), Some("carol")).await;
    ok(&mut carol, Request::Join("#ops".into())).await;

    certgen(&["revoke", "carol"]);
    one.signal("HUP");
    // Node two hears of it from node one: carol is cut off there…
    let event = wait_event(&mut carol, "the revocation", |e| {
        matches!(e, Event::Disconnect { .. })
    })
    .await;
    assert!(
        matches!(&event, Event::Disconnect { code, .. } if *code == tlschat_proto::DisconnectCode::Revoked),
        "{event:?}"
    );
    // …and refused at the handshake from then on; bob is untouched.
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let again = Client::connect(&pki.client_config(two.addr(), Some("carol"))).await;
        let refused = match again {
            Err(_) => true,
            Ok(mut client) => client.request(&Request::Ping).await.is_err(),
        };
        if refused {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "carol is still let in on node two"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut bob = connect(&pki, two.addr(), Some("bob")).await;
    ok(&mut bob, Request::Ping).await;
    two.wait_for_log("revocation list shared by another node applied");
}
