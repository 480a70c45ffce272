//! End-to-end tests of the message store: acknowledged messages survive `kill -9`, ids continue
//! across restarts, `HISTORY` is for members and pages both ways, and a member that stops
//! reading is told of a gap (not cut off) and fills it from history. Real binaries, real store
//! files in temporary folders.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tlschat_client::Client;
use tlschat_proto::{Anchor, ErrorCode, Event, Reply, Request, ServerLine, Target};
use tlschat_tests::{
    call, connect, msg, ok, refused, text, tlschat, tlschat_command, Background, Pki, RawTls,
    ServerProcess, NO_RATE_LIMIT, STEP_TIMEOUT,
};

fn history(target: &str, anchor: Option<Anchor>, limit: Option<u32>) -> Request {
    Request::History {
        target: Target::parse(target).unwrap(),
        anchor,
        limit,
    }
}

/// One `HISTORY` page: its messages as (id, text), and whether more remain.
async fn page(
    client: &mut Client,
    target: &str,
    anchor: Option<Anchor>,
    limit: Option<u32>,
) -> (Vec<(u64, String)>, bool) {
    // Live events that came before are not part of the page.
    client.drain_events();
    let reply = ok(client, history(target, anchor, limit)).await;
    let messages: Vec<(u64, String)> = client
        .drain_events()
        .into_iter()
        .filter_map(|event| match event {
            Event::Message { id, text, .. } | Event::Direct { id, text, .. } => Some((id, text)),
            _ => None,
        })
        .collect();
    let (count, more) = reply.split_once(' ').expect("OK <count> more|end");
    assert_eq!(count.parse::<usize>().unwrap(), messages.len(), "{reply}");
    (messages, more == "more")
}

/// Every message of a conversation, oldest first, paging forward from the start.
async fn everything(client: &mut Client, target: &str) -> Vec<(u64, String)> {
    let mut all: Vec<(u64, String)> = Vec::new();
    loop {
        let after = all.last().map_or(0, |(id, _)| *id);
        let (messages, more) = page(client, target, Some(Anchor::After(after)), Some(500)).await;
        all.extend(messages);
        if !more {
            return all;
        }
    }
}

/// Sends `count` messages `NNNNN padding` to `room`, pipelined in bursts of 100, and waits for
/// every one to be acknowledged.
async fn send_in_bursts(client: &mut Client, room: &str, count: usize, padding: &str) {
    for burst in 0..count.div_ceil(100) {
        let in_burst = (count - burst * 100).min(100);
        for k in 0..in_burst {
            let text = format!("{:05} {padding}", burst * 100 + k);
            client.send(&msg(room, &text).to_string()).await.unwrap();
        }
        let mut acknowledged = 0;
        while acknowledged < in_burst {
            match tokio::time::timeout(STEP_TIMEOUT, client.next_line()).await {
                Ok(Ok(ServerLine::Reply(Reply::Ok(_)))) => acknowledged += 1,
                Ok(Ok(ServerLine::Event(_))) => {}
                other => panic!("message not acknowledged: {other:?}"),
            }
        }
    }
}

/// A server with a store of its own: its PKI, the store file and the folder holding it.
struct Started {
    pki: Pki,
    data: tempfile::TempDir,
    store: std::path::PathBuf,
    server: ServerProcess,
}

/// Starts a server with the standard PKI and a store in a new temporary folder.
fn start(extra: &[&str]) -> Started {
    let pki = Pki::standard();
    let data = tempfile::tempdir().unwrap();
    let store = data.path().join("store.redb");
    let server = ServerProcess::start_with(&store_args(&pki, &store, extra)).expect("starts");
    Started {
        pki,
        data,
        store,
        server,
    }
}

fn store_args<'a>(pki: &'a Pki, store: &'a Path, extra: &[&'a str]) -> Vec<String> {
    let mut args = pki.server_args();
    args.extend(["--listen", "127.0.0.1:0", "--store"].map(String::from));
    args.push(store.display().to_string());
    args.extend(NO_RATE_LIMIT.iter().chain(extra).map(|s| s.to_string()));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_message_survives_kill_9_in_order_and_ids_continue() {
    const SENDERS: usize = 10;
    const ACKED_BEFORE_KILL: usize = 600;
    let Started {
        pki,
        store,
        server,
        data: _data,
    } = start(&[]);
    let addr = server.addr();

    let acked = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for n in 0..SENDERS {
        let mut client = connect(&pki, addr, None).await;
        ok(&mut client, Request::Nick(format!("s{n}"))).await;
        ok(&mut client, Request::Join("#load".into())).await;
        let acked = acked.clone();
        senders.push(tokio::spawn(async move {
            // Each sender waits for each OK; what got one is acknowledged.
            let mut mine = Vec::new();
            for k in 0.. {
                let text = format!("s{n}-{k}");
                match client.request(&msg("#load", &text)).await {
                    Ok(Reply::Ok(id)) => {
                        mine.push((id.parse::<u64>().expect("OK <id>"), text));
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Reply::Err(err)) => panic!("refused before the kill: {err}"),
                    Err(_) => return mine,
                }
            }
            mine
        }));
    }
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    while acked.load(Ordering::SeqCst) < ACKED_BEFORE_KILL {
        assert!(tokio::time::Instant::now() < deadline, "senders too slow");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.signal("KILL");
    let mut acknowledged = Vec::new();
    for sender in senders {
        acknowledged.extend(
            tokio::time::timeout(STEP_TIMEOUT, sender)
                .await
                .expect("senders stop when the server dies")
                .unwrap(),
        );
    }
    assert!(acknowledged.len() >= ACKED_BEFORE_KILL);
    drop(server);

    let server = ServerProcess::start_with(&store_args(&pki, &store, &[])).expect("restarts");
    let mut reader = connect(&pki, server.addr(), Some("alice")).await;
    ok(&mut reader, Request::Join("#load".into())).await;
    let stored = everything(&mut reader, "#load").await;
    let ids: Vec<u64> = stored.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        (1..=stored.len() as u64).collect::<Vec<_>>(),
        "ids run from 1 with no hole and no repeat"
    );
    let texts: HashSet<&str> = stored.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts.len(), stored.len(), "no message stored twice");
    for (id, text) in &acknowledged {
        assert_eq!(
            stored.get((*id - 1) as usize).map(|(_, t)| t.as_str()),
            Some(text.as_str()),
            "acknowledged message {id} ({text}) is in the history under its id"
        );
    }
    // Each sender's messages are in the order it sent them.
    for n in 0..SENDERS {
        let prefix = format!("s{n}-");
        let order: Vec<u64> = stored
            .iter()
            .filter_map(|(_, t)| t.strip_prefix(&prefix)?.parse().ok())
            .collect();
        assert!(
            order.windows(2).all(|w| w[1] == w[0] + 1),
            "s{n}: {order:?}"
        );
    }
    let next = ok(&mut reader, msg("#load", "after the restart")).await;
    assert_eq!(
        next,
        (stored.len() + 1).to_string(),
        "ids continue, never reused"
    );
}

#[tokio::test]
async fn history_is_for_members_and_pages_back_and_forth() {
    let Started {
        pki,
        store: _,
        server,
        data: _data,
    } = start(&["--max-history-page", "60"]);
    let addr = server.addr();
    let mut alice = connect(&pki, addr, Some("alice")).await;
    let mut bob = connect(&pki, addr, Some("bob")).await;
    let mut carol = connect(&pki, addr, Some("carol")).await;
    ok(&mut alice, Request::Join("#r".into())).await;
    for n in 1..=120 {
        assert_eq!(
            ok(&mut alice, msg("#r", &format!("m{n}"))).await,
            n.to_string()
        );
    }
    assert_eq!(
        refused(&mut bob, history("#r", None, None)).await,
        ErrorCode::NotInRoom,
        "only members read a room's history"
    );
    ok(&mut bob, Request::Join("#r".into())).await;
    let (newest, more) = page(&mut bob, "#r", None, None).await;
    assert_eq!(newest.first().unwrap().0, 71, "the 50 newest by default");
    assert_eq!(newest.last().unwrap(), &(120, "m120".to_owned()));
    assert!(more);
    let (back, more) = page(&mut bob, "#r", Some(Anchor::Before(71)), Some(1000)).await;
    assert_eq!(back.len(), 60, "LIMIT is capped to --max-history-page");
    assert_eq!((back[0].0, back[59].0), (11, 70));
    assert!(more);
    let (first, more) = page(&mut bob, "#r", Some(Anchor::Before(11)), Some(20)).await;
    assert_eq!(first.len(), 10);
    assert!(!more);
    let (tail, more) = page(&mut bob, "#r", Some(Anchor::After(118)), None).await;
    assert_eq!(tail, [(119, "m119".to_owned()), (120, "m120".to_owned())]);
    assert!(!more);

    // Direct messages: the two parties read their conversation, from either side.
    assert_eq!(ok(&mut alice, msg("bob", "psst")).await, "1 verified");
    assert_eq!(ok(&mut bob, msg("alice", "what?")).await, "2 verified");
    // Alice receives it live first, with its id and both parties.
    let live = loop {
        match tokio::time::timeout(STEP_TIMEOUT, alice.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            event @ Event::Direct { .. } => break event,
            _ => continue,
        }
    };
    assert!(
        matches!(&live, Event::Direct { id: 2, from, to, .. } if from == "bob" && to == "alice"),
        "{live:?}"
    );
    let (conversation, _) = page(&mut alice, "bob", None, None).await;
    assert_eq!(
        conversation,
        [(1, "psst".to_owned()), (2, "what?".to_owned())]
    );
    let (as_bob, _) = page(&mut bob, "alice", None, None).await;
    assert_eq!(as_bob, conversation);
    let (as_carol, _) = page(&mut carol, "alice", None, None).await;
    assert!(
        as_carol.is_empty(),
        "carol reads only her own conversations"
    );

    let mut admin = connect(&pki, addr, Some("root")).await;
    let stats = ok(&mut admin, Request::Stats).await;
    assert!(stats.contains("store.messages=122"), "{stats}");
    assert!(stats.contains("store.conversations=2"), "{stats}");

    let memory = ServerProcess::start(&pki, &["--store", "none"]);
    let mut dave = connect(&pki, memory.addr(), Some("alice")).await;
    ok(&mut dave, Request::Join("#r".into())).await;
    assert_eq!(
        refused(&mut dave, history("#r", None, None)).await,
        ErrorCode::NoHistory
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_that_stops_reading_gets_a_gap_and_fills_it_from_history() {
    const MESSAGES: usize = 5_000;
    let Started {
        pki,
        store: _,
        server,
        data: _data,
    } = start(&[
        "--max-pending-bytes",
        "262144",
        "--write-timeout",
        "1h",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let addr = server.addr();
    let mut sender = connect(&pki, addr, Some("alice")).await;
    let mut reader = connect(&pki, addr, Some("bob")).await;
    ok(&mut sender, Request::Join("#big".into())).await;
    ok(&mut reader, Request::Join("#big".into())).await;
    // The stalled member: joins, then reads nothing until every message is acknowledged.
    let mut stalled = RawTls::connect(&pki.client_config(addr, Some("carol")))
        .await
        .unwrap();
    stalled.write(b"JOIN #big\n").await.unwrap();
    loop {
        let line = stalled.read_line().await.expect("a line");
        if line.starts_with("OK") {
            break;
        }
    }

    let padding = "x".repeat(880);
    let reading = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < MESSAGES {
            match tokio::time::timeout(STEP_TIMEOUT, reader.next_event())
                .await
                .expect("the reading member keeps receiving")
                .expect("event")
            {
                Event::Message { id, .. } => got.push(id),
                Event::Gap { .. } => panic!("a member that reads gets no gap"),
                _ => {}
            }
        }
        got
    });
    send_in_bursts(&mut sender, "#big", MESSAGES, &padding).await;
    let read = reading.await.unwrap();
    assert_eq!(
        read,
        (1..=MESSAGES as u64).collect::<Vec<_>>(),
        "the member that reads gets every message in order"
    );

    // Now the stalled member reads: some messages, then a gap, then (maybe) more.
    let mut live: Vec<u64> = Vec::new();
    let mut gaps: Vec<(u64, u64)> = Vec::new();
    while live.len()
        + gaps
            .iter()
            .map(|(a, b)| (b - a + 1) as usize)
            .sum::<usize>()
        < MESSAGES
    {
        let line = stalled.read_line().await.expect("still connected");
        match ServerLine::parse(&line) {
            Ok(ServerLine::Event(Event::Message { id, .. })) => live.push(id),
            Ok(ServerLine::Event(Event::Gap {
                target,
                first,
                last,
            })) => {
                assert_eq!(target, "#big");
                gaps.push((first, last));
            }
            Ok(ServerLine::Event(Event::Disconnect { .. })) => panic!("cut off: {line}"),
            _ => {}
        }
    }
    assert!(
        !gaps.is_empty(),
        "a member that stops reading is told of a gap"
    );
    let (_, metrics) = tlschat_tests::http_get(server.metrics_addr(), "/metrics");
    assert!(
        metrics.contains(&format!("tlschat_gaps_total {}", gaps.len())),
        "the gaps are counted: {metrics}"
    );
    // Fill each gap from history, as a client does.
    let mut fills: Vec<u64> = Vec::new();
    for (first, last) in &gaps {
        let mut after = first - 1;
        while after < *last {
            let request = format!("HISTORY #big AFTER {after} LIMIT 500\n");
            stalled.write(request.as_bytes()).await.unwrap();
            loop {
                let line = stalled.read_line().await.expect("history");
                match ServerLine::parse(&line) {
                    Ok(ServerLine::Event(Event::Message { id, .. })) => {
                        if id <= *last {
                            fills.push(id);
                        }
                        after = id;
                    }
                    Ok(ServerLine::Reply(Reply::Ok(_))) => break,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }
    let mut all: Vec<u64> = live.iter().chain(&fills).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=MESSAGES as u64).collect::<Vec<_>>(),
        "live messages and filled gaps: every message exactly once"
    );
    assert!(live.windows(2).all(|w| w[0] < w[1]), "live ones in order");
}

/// `tlschat listen --json --count N` as `user`, once it listens.
fn listen(pki: &Pki, addr: SocketAddr, user: &str, rooms: &[&str], count: u32) -> Background {
    let mut command = tlschat_command(pki, addr, Some(user));
    command.args(["listen", "--json", "--count", &count.to_string()]);
    for room in rooms {
        command.args(["--room", room]);
    }
    let listener = Background::start(&mut command);
    listener.wait_for_stderr("listening");
    listener
}

fn send(pki: &Pki, addr: SocketAddr, user: &str, args: &[&str]) {
    let mut all = vec!["send"];
    all.extend_from_slice(args);
    let out = tlschat(pki, addr, Some(user), &all);
    assert!(out.status.success(), "send {args:?}: {}", text(&out.stderr));
}

fn lines(listener: Background) -> Vec<serde_json::Value> {
    let (status, stdout) = listener.finish();
    assert!(status.success(), "{status:?}: {stdout}");
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

#[test]
fn a_verified_user_gets_what_they_missed_in_order_also_after_a_restart() {
    let Started {
        pki,
        store,
        mut server,
        data: _data,
    } = start(&[]);
    let addr = server.addr();
    // Bob joins #team (publishing his E2E key), reads one message and goes away.
    let bob = listen(&pki, addr, "bob", &["#team"], 1);
    send(&pki, addr, "alice", &["#team", "before"]);
    assert_eq!(lines(bob)[0]["text"], "before");

    // While he is away: two room messages, a plain DM and a sealed one.
    send(&pki, addr, "alice", &["#team", "away one"]);
    send(&pki, addr, "alice", &["#team", "away two"]);
    send(&pki, addr, "alice", &["--plain", "bob", "plain while away"]);
    send(&pki, addr, "alice", &["bob", "sealed while away"]);
    // A user without a certificate has nothing kept: still refused.
    let out = tlschat(&pki, addr, None, &["send", "--nick", "eve", "carol2", "hi"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("NO_SUCH_USER"),
        "{}",
        text(&out.stderr)
    );
    server.terminate();
    drop(server);

    let server = ServerProcess::start_with(&store_args(&pki, &store, &[])).expect("restarts");
    // Bob comes back without asking for any room: he is still a member of #team.
    let bob = listen(&pki, server.addr(), "bob", &[], 4);
    let got = lines(bob);
    let summary: Vec<(String, bool, String)> = got
        .iter()
        .map(|m| {
            (
                m["type"].as_str().unwrap().to_owned(),
                m["e2e"].as_bool().unwrap(),
                m["text"].as_str().unwrap_or("(not opened)").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("msg".to_owned(), false, "away one".to_owned()),
            ("msg".to_owned(), false, "away two".to_owned()),
            ("dm".to_owned(), false, "plain while away".to_owned()),
            ("dm".to_owned(), true, "sealed while away".to_owned()),
        ],
        "{got:?}"
    );
    assert_eq!(
        (got[0]["id"].as_u64(), got[1]["id"].as_u64()),
        (Some(2), Some(3))
    );
    // Caught up: connecting again brings nothing old.
    let bob = listen(&pki, server.addr(), "bob", &[], 1);
    send(&pki, server.addr(), "alice", &["#team", "live again"]);
    let got = lines(bob);
    assert_eq!(got[0]["text"], "live again", "{got:?}");
}

#[test]
fn listen_resumes_from_an_id() {
    let Started {
        pki,
        store: _,
        server,
        data: _data,
    } = start(&[]);
    for n in 1..=5 {
        send(
            &pki,
            server.addr(),
            "alice",
            &["#log", &format!("line {n}")],
        );
    }
    let listener = Background::start(tlschat_command(&pki, server.addr(), Some("carol")).args([
        "listen", "--json", "--room", "#log", "--since", "2", "--count", "3",
    ]));
    let texts: Vec<String> = lines(listener)
        .iter()
        .map(|m| format!("{} {}", m["id"], m["text"].as_str().unwrap()))
        .collect();
    assert_eq!(texts, ["3 line 3", "4 line 4", "5 line 5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listen_that_falls_behind_fills_the_gap_and_prints_every_message_once() {
    use std::io::{BufRead, Read};
    const MESSAGES: usize = 6_000;
    let Started {
        pki,
        store: _,
        server,
        data: _data,
    } = start(&["--max-pending-bytes", "65536", "--write-timeout", "1h"]);
    let addr = server.addr();
    // Nobody reads the listener's output until the end: it blocks on its pipe, stops reading
    // the socket, and the server skips what does not fit.
    let mut listener = tlschat_command(&pki, addr, Some("bob"))
        .args([
            "listen",
            "--json",
            "--room",
            "#flood",
            "--count",
            &MESSAGES.to_string(),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = listener.stderr.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let errors = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("listening") {
                let _ = ready_tx.send(());
            }
            seen.push(line);
        }
        seen
    });
    ready_rx
        .recv_timeout(STEP_TIMEOUT)
        .expect("the listener is ready");

    let mut alice = connect(&pki, addr, Some("alice")).await;
    ok(&mut alice, Request::Join("#flood".into())).await;
    send_in_bursts(&mut alice, "#flood", MESSAGES, &"y".repeat(900)).await;
    let mut stdout = listener.stdout.take().unwrap();
    let reading = std::thread::spawn(move || {
        let mut all = String::new();
        stdout.read_to_string(&mut all).unwrap();
        all
    });
    let Some(status) = tlschat_tests::wait_timeout(&mut listener, STEP_TIMEOUT * 3) else {
        let _ = listener.kill();
        let printed = reading.join().unwrap();
        panic!(
            "the listener did not print them all and exit: {} lines; {:?}; server: {}",
            printed.lines().count(),
            errors.join().unwrap(),
            server
                .log()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        );
    };
    let printed = reading.join().unwrap();
    let notes = errors.join().unwrap();
    assert!(status.success(), "{status:?} {notes:?}");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("missed message(s) of #flood from history")),
        "the listener fell behind and was told of a gap: {notes:?}"
    );
    let mut ids: Vec<u64> = printed
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids.len(), MESSAGES, "{notes:?}");
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1..=MESSAGES as u64).collect::<Vec<_>>(),
        "each exactly once"
    );
}

/// A small tmpfs of our own, unmounted on drop (needs root; `None` otherwise).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_refuses_messages_keeps_history_and_recovers_without_a_restart() {
    let Some(disk) = SmallDisk::mount("1m") else {
        tlschat_tests::skip(
            "a_full_disk_refuses_messages_keeps_history_and_recovers_without_a_restart",
            "cannot mount a tmpfs here (needs root)",
        );
        return;
    };
    // Room for the store to start, and a filler to free later.
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; 300_000]).unwrap();
    let pki = Pki::standard();
    let store = disk.path().join("store.redb");
    let server = ServerProcess::start_with(&store_args(&pki, &store, &[])).expect("starts");
    let mut alice = connect(&pki, server.addr(), Some("alice")).await;
    ok(&mut alice, Request::Join("#full".into())).await;
    let text = "z".repeat(1000);
    let mut acknowledged = Vec::new();
    let refusal = loop {
        assert!(acknowledged.len() < 2_000, "1 MiB cannot hold 2,000 KiB");
        match call(&mut alice, &msg("#full", &text)).await {
            Reply::Ok(id) => acknowledged.push(id.parse::<u64>().unwrap()),
            Reply::Err(err) => break err,
        }
    };
    assert_eq!(refusal.code, ErrorCode::StoreFailed, "{refusal}");
    assert!(refusal.message.contains("disk is full"), "{refusal}");
    // Still full: another message like it is refused too, never acknowledged. Everything
    // else works.
    assert_eq!(
        refused(&mut alice, msg("#full", &text)).await,
        ErrorCode::StoreFailed
    );
    assert_eq!(ok(&mut alice, Request::Ping).await, "PONG");
    let stored = everything(&mut alice, "#full").await;
    let ids: Vec<u64> = stored.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids, acknowledged,
        "every acknowledged message, and only those"
    );

    // Room again: it recovers by itself, and ids continue.
    std::fs::remove_file(&filler).unwrap();
    let next = ok(&mut alice, msg("#full", "room again")).await;
    assert_eq!(next, (acknowledged.len() + 1).to_string());
    drop(server);
}

#[test]
fn a_damaged_store_stops_startup_with_one_sentence_naming_it() {
    let pki = Pki::standard();
    let data = tempfile::tempdir().unwrap();
    let store = data.path().join("store.redb");
    std::fs::write(&store, "not a store at all\n".repeat(500)).unwrap();
    let Err(failure) = ServerProcess::start_with(&store_args(&pki, &store, &[])) else {
        panic!("started on a damaged store");
    };
    assert_eq!(
        failure.status.and_then(|s| s.code()),
        Some(1),
        "{failure:?}"
    );
    let last = failure.stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.contains(&store.display().to_string()) && last.contains("damaged"),
        "{}",
        failure.stderr
    );
    assert_eq!(
        std::fs::read(&store).unwrap(),
        "not a store at all\n".repeat(500).into_bytes(),
        "the file is left as it was"
    );
}

#[tokio::test]
async fn the_store_keeps_at_most_max_history_per_room_and_ids_go_on() {
    let Started {
        pki,
        store: _,
        server,
        data: _data,
    } = start(&["--max-history-per-room", "3", "--prune-interval", "50ms"]);
    let mut alice = connect(&pki, server.addr(), Some("alice")).await;
    ok(&mut alice, Request::Join("#short".into())).await;
    for n in 1..=10 {
        ok(&mut alice, msg("#short", &format!("m{n}"))).await;
    }
    // The next pruning round (every 50 ms here) leaves the newest three.
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    let kept = loop {
        let (kept, _) = page(&mut alice, "#short", None, None).await;
        if kept.len() == 3 || tokio::time::Instant::now() > deadline {
            break kept;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let ids: Vec<u64> = kept.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [8, 9, 10]);
    assert_eq!(
        ok(&mut alice, msg("#short", "m11")).await,
        "11",
        "ids go on"
    );
    server.wait_for_log("old messages deleted");
}

#[tokio::test]
async fn a_user_who_is_away_is_kept_a_bounded_number_of_direct_messages() {
    let Started {
        pki,
        store: _,
        server,
        data: _data,
    } = start(&["--max-offline-per-user", "2"]);
    let addr = server.addr();
    // Bob is known (he connected once with his certificate), then away.
    let mut admin = connect(&pki, addr, Some("root")).await;
    let mut alice = connect(&pki, addr, Some("alice")).await;
    let mut carol = connect(&pki, addr, Some("carol")).await;
    let bob = connect(&pki, addr, Some("bob")).await;
    bob.quit().await.unwrap();
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    while !ok(&mut admin, Request::Stats).await.contains("users=3 ") {
        assert!(tokio::time::Instant::now() < deadline, "bob never left");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(ok(&mut alice, msg("bob", "one")).await, "1 verified");
    assert_eq!(ok(&mut carol, msg("bob", "two")).await, "1 verified");
    let refused = call(&mut alice, &msg("bob", "three")).await;
    let Reply::Err(err) = refused else {
        panic!("a third message for an away user was kept: {refused:?}");
    };
    assert_eq!(err.code, ErrorCode::InboxFull);
    assert!(err.message.contains("bob is away"), "{err}");
    // Once bob has read them, there is room again.
    let bob = listen(&pki, addr, "bob", &[], 2);
    assert_eq!(lines(bob).len(), 2);
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        match call(&mut alice, &msg("bob", "three")).await {
            Reply::Ok(_) => break,
            // Bob's listener may not have recorded its resume point yet.
            Reply::Err(err) if err.code == ErrorCode::InboxFull => {
                assert!(tokio::time::Instant::now() < deadline, "still full");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn past_the_catch_up_cap_a_returning_user_gets_the_newest_and_a_gap_they_fill() {
    let Started {
        pki,
        store: _,
        server,
        data: _data,
    } = start(&["--max-catch-up", "3"]);
    let addr = server.addr();
    let bob = listen(&pki, addr, "bob", &["#cap"], 1);
    send(&pki, addr, "alice", &["#cap", "seen"]);
    assert_eq!(lines(bob).len(), 1);
    for n in 1..=10 {
        send(&pki, addr, "alice", &["#cap", &format!("missed {n}")]);
    }
    // Bob comes back: the 3 newest come at once, the 7 before them as a gap he fills.
    let mut command = tlschat_command(&pki, addr, Some("bob"));
    command.args(["listen", "--json", "--count", "10"]);
    let listener = Background::start(&mut command);
    listener.wait_for_stderr("missed message(s) of #cap from history");
    let mut texts: Vec<String> = lines(listener)
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    texts.sort_by_key(|t| t.trim_start_matches("missed ").parse::<u32>().unwrap());
    let expected: Vec<String> = (1..=10).map(|n| format!("missed {n}")).collect();
    assert_eq!(texts, expected, "all ten once");
}
