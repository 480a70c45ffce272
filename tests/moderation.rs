//! Running rooms with the real server: operator powers, bans and modes kept in the store across
//! a restart, and a server-wide ban refusing a user at login.

use std::path::Path;

use tlschat_client::Client;
use tlschat_proto::{DisconnectCode, ErrorCode, Event, ModeChange, Request, Scope};
use tlschat_tests::{ok, refused, Pki, ServerProcess, NO_RATE_LIMIT, STEP_TIMEOUT};

fn start(pki: &Pki, store: &Path) -> ServerProcess {
    let mut args = pki.server_args();
    args.extend(["--listen", "127.0.0.1:0", "--store"].map(String::from));
    args.push(store.display().to_string());
    args.extend(NO_RATE_LIMIT.iter().map(|s| s.to_string()));
    ServerProcess::start_with(&args).expect("starts")
}

async fn connect(pki: &Pki, server: &ServerProcess, user: &str) -> Client {
    Client::connect(&pki.client_config(server.addr(), Some(user)))
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_modes_and_topics_survive_a_restart_and_a_server_ban_refuses_login() {
    let pki = Pki::standard();
    let data = tempfile::tempdir().unwrap();
    let store = data.path().join("store.redb");
    let mut server = start(&pki, &store);
    let mut alice = connect(&pki, &server, "alice").await;
    let mut bob = connect(&pki, &server, "bob").await;
    let mut root = connect(&pki, &server, "root").await;
    ok(&mut alice, Request::Join("#ops".into())).await;
    ok(&mut bob, Request::Join("#ops".into())).await;
    // Bob is no operator.
    assert_eq!(
        refused(
            &mut bob,
            Request::Topic {
                room: "#ops".into(),
                text: Some("bob was here".into())
            }
        )
        .await,
        ErrorCode::NotOperator
    );
    ok(
        &mut alice,
        Request::Topic {
            room: "#ops".into(),
            text: Some("deploys: not on Fridays".into()),
        },
    )
    .await;
    // ROOMS shows the topic too (as EVENT TOPIC before the list).
    assert_eq!(ok(&mut root, Request::Rooms).await, "#ops=2");
    assert!(
        root.drain_events().iter().any(
            |e| matches!(e, Event::Topic { room, text, .. } if room == "#ops" && text == "deploys: not on Fridays")
        ),
        "ROOMS tells the topic"
    );
    ok(
        &mut alice,
        Request::Ban {
            scope: Scope::Room("#ops".into()),
            name: "bob".into(),
            duration: None,
            reason: Some("spam".into()),
        },
    )
    .await;
    // Bob is told, and is out.
    let kicked = loop {
        let event = tokio::time::timeout(STEP_TIMEOUT, bob.next_event())
            .await
            .expect("bob is told in time")
            .expect("an event");
        if let Event::Kick { nick, reason, .. } = event {
            break (nick, reason);
        }
    };
    assert_eq!(kicked.0, "bob");
    assert!(kicked.1.contains("spam"), "{}", kicked.1);
    ok(
        &mut alice,
        Request::Mode {
            room: "#ops".into(),
            change: Some(ModeChange::InviteOnly(true)),
        },
    )
    .await;
    ok(
        &mut root,
        Request::Ban {
            scope: Scope::Server,
            name: "carol".into(),
            duration: Some(std::time::Duration::from_secs(3600)),
            reason: Some("cooling off".into()),
        },
    )
    .await;
    drop((alice, bob, root));

    // A restart on the same store: everything holds.
    server.terminate();
    let server = start(&pki, &store);
    let mut bob = connect(&pki, &server, "bob").await;
    assert_eq!(
        refused(&mut bob, Request::Join("#ops".into())).await,
        ErrorCode::Banned
    );
    assert_eq!(
        refused(
            &mut bob,
            Request::History {
                target: tlschat_proto::Target::Room("#ops".into()),
                anchor: None,
                limit: None
            }
        )
        .await,
        ErrorCode::Banned,
        "a banned person cannot read the room's history"
    );
    let mut carol = Client::connect(&pki.client_config(server.addr(), Some("carol")))
        .await
        .expect("the handshake passes; the ban comes next");
    let event = tokio::time::timeout(STEP_TIMEOUT, carol.next_event())
        .await
        .expect("told in time")
        .expect("an event");
    assert!(
        matches!(&event, Event::Disconnect { code: DisconnectCode::Banned, reason } if reason.contains("cooling off")),
        "{event:?}"
    );
    let mut root = connect(&pki, &server, "root").await;
    assert_eq!(
        ok(
            &mut root,
            Request::Topic {
                room: "#ops".into(),
                text: None
            }
        )
        .await,
        "deploys: not on Fridays"
    );
    assert_eq!(
        ok(
            &mut root,
            Request::Mode {
                room: "#ops".into(),
                change: None
            }
        )
        .await,
        "+i ops=alice"
    );
    // Admins may enter an invite-only room; alice, its operator, still runs it.
    ok(&mut root, Request::Join("#ops".into())).await;
    let mut alice = connect(&pki, &server, "alice").await;
    ok(
        &mut alice,
        Request::Invite {
            room: "#ops".into(),
            nick: "carol".into(),
        },
    )
    .await;
    ok(
        &mut root,
        Request::Unban {
            scope: Scope::Server,
            name: "carol".into(),
        },
    )
    .await;
    let mut carol = connect(&pki, &server, "carol").await;
    ok(&mut carol, Request::Join("#ops".into())).await;
}
