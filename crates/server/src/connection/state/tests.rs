//! The connection state driven directly: bytes and times in, bytes and decisions out. No
//! socket, no sleeping: every deadline is reached by passing a later `now`.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use tlschat_certgen::{generate, Options};
use tlschat_proto::Trust;
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::settings::Config;

fn wall() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap()
}

/// Server state with test certificates; `tune` adjusts the configuration first.
fn shared(dir: &Path, tune: impl FnOnce(&mut Config)) -> Arc<Shared> {
    shared_with_store(dir, tune, None)
}

/// As [`shared`], keeping messages in `store`.
fn shared_with_store(
    dir: &Path,
    tune: impl FnOnce(&mut Config),
    store: Option<Arc<dyn crate::store::Store>>,
) -> Arc<Shared> {
    let mut options = Options::new(dir);
    options.clients = vec!["alice".into()];
    generate(&options).unwrap();
    let mut config = Config::new(
        dir.join("server.pem"),
        dir.join("server-key.pem"),
        dir.join("ca.pem"),
    );
    tune(&mut config);
    let credentials = crate::tls::Credentials::load(&config).unwrap();
    let tls = crate::tls::server_config(&config, &credentials).unwrap();
    Arc::new(Shared::new(config, TlsAcceptor::from(tls), store, None, None, None).unwrap())
}

fn connect(shared: &Arc<Shared>, nick: &str, now: Instant) -> (ConnState, Arc<Peer>) {
    let peer = Peer::new(
        shared.hub.next_peer_id(),
        Some(nick.to_owned()),
        Trust::Verified,
        false,
        shared.config.max_pending_bytes,
    );
    shared.hub.register_verified(&peer);
    let identity = Identity {
        name: Some(nick.to_owned()),
        verified: true,
        admin: false,
        serial: None,
    };
    let mut state = ConnState::new(shared.clone(), peer.clone(), &identity, now);
    assert!(take_lines(&mut state)[0].starts_with("HELLO"));
    (state, peer)
}

/// Feeds `input` as received at `now` and processes it.
fn feed(state: &mut ConnState, input: &str, now: Instant) -> bool {
    state.read_buffer().extend_from_slice(input.as_bytes());
    state.handle_input(now);
    state.process(now, wall())
}

/// What the state has to write, as lines; then written.
fn take_lines(state: &mut ConnState) -> Vec<String> {
    let lines = state
        .poll_transmit()
        .map(|out| String::from_utf8(out.to_vec()).unwrap())
        .unwrap_or_default();
    state.handle_written();
    lines.lines().map(str::to_owned).collect()
}

#[test]
fn an_idle_connection_is_pinged_at_half_the_timeout_and_closed_at_the_whole() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path(), |c| c.idle_timeout = Duration::from_secs(60));
    let t0 = Instant::now();
    let (mut state, peer) = connect(&shared, "alice", t0);
    assert_eq!(state.poll_timeout(), t0 + Duration::from_secs(30));
    state.handle_timeout(t0 + Duration::from_secs(29));
    assert!(take_lines(&mut state).is_empty(), "early: nothing");
    state.handle_timeout(t0 + Duration::from_secs(30));
    assert_eq!(take_lines(&mut state), ["EVENT PING 30"]);
    assert_eq!(state.poll_timeout(), t0 + Duration::from_secs(60));

    // Input moves both deadlines.
    let t1 = t0 + Duration::from_secs(45);
    feed(&mut state, "PONG 30\n", t1);
    assert!(take_lines(&mut state).is_empty(), "PONG gets no reply");
    assert_eq!(state.poll_timeout(), t1 + Duration::from_secs(30));
    state.handle_timeout(t1 + Duration::from_secs(30));
    assert_eq!(take_lines(&mut state), ["EVENT PING 30"]);
    state.handle_timeout(t1 + Duration::from_secs(60));
    assert_eq!(peer.disconnect_reason().unwrap().code, DisconnectCode::Idle);
    state.handle_disconnect();
    assert_eq!(
        take_lines(&mut state),
        ["EVENT DISCONNECT IDLE no input for 1m"]
    );
    assert!(matches!(
        state.poll_close(),
        Some(CloseReason::Disconnected(_))
    ));
}

#[test]
fn a_write_gets_the_write_timeout_and_a_goodbye_only_the_goodbye_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path(), |c| c.write_timeout = Duration::from_secs(7));
    let (mut state, peer) = connect(&shared, "alice", Instant::now());
    assert_eq!(state.write_timeout(), Duration::from_secs(7));
    feed(&mut state, "PING\n", Instant::now());
    assert!(state.poll_transmit().is_some());
    assert!(matches!(
        state.handle_write_timeout(),
        CloseReason::WriteTimedOut
    ));

    peer.disconnect(DisconnectCode::Kicked, "kicked by root".into());
    state.handle_disconnect();
    assert!(state.is_cutting_off());
    assert_eq!(state.write_timeout(), GOODBYE_TIMEOUT);
    // A failed goodbye still ends for the reason the client was cut off.
    let reason = state.handle_write_failed(io::Error::other("broken pipe"));
    assert!(
        matches!(&reason, CloseReason::Disconnected(d) if d.code == DisconnectCode::Kicked),
        "{reason}"
    );
}

#[test]
fn a_client_past_the_rate_is_refused_and_one_that_keeps_pushing_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path(), |c| {
        c.rate = 10;
        c.rate_burst = 3;
        c.max_strikes = 4;
    });
    let t0 = Instant::now();
    let (mut state, peer) = connect(&shared, "alice", t0);
    feed(&mut state, &"PING\n".repeat(5), t0);
    let lines = take_lines(&mut state);
    assert_eq!(lines[..3], ["OK PONG", "OK PONG", "OK PONG"]);
    assert!(lines[3].starts_with("ERR RATE_LIMITED slow down: 10 requests"));
    assert_eq!(lines.len(), 5);
    // A tenth of a second later one more token is there, and a success takes a strike away.
    feed(&mut state, "PING\n", t0 + Duration::from_millis(100));
    assert_eq!(take_lines(&mut state), ["OK PONG"]);
    // Pushing on at the same instant: strikes 2 and 3 are refusals, the fourth disconnects.
    let t1 = t0 + Duration::from_millis(100);
    feed(&mut state, &"PING\n".repeat(10), t1);
    let lines = take_lines(&mut state);
    assert!(
        lines[..2].iter().all(|l| l.starts_with("ERR RATE_LIMITED")),
        "{lines:?}"
    );
    assert!(lines[2].starts_with("EVENT DISCONNECT FLOOD"), "{lines:?}");
    assert_eq!(lines.len(), 3, "nothing after the goodbye: {lines:?}");
    assert_eq!(
        peer.disconnect_reason().unwrap().code,
        DisconnectCode::Flood
    );
    assert!(matches!(
        state.poll_close(),
        Some(CloseReason::Disconnected(_))
    ));
}

#[test]
fn a_held_room_batch_goes_out_before_any_other_reply_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path(), |_| {});
    let now = Instant::now();
    let (mut alice, _) = connect(&shared, "alice", now);
    let (mut bob, _) = connect(&shared, "bob", now);
    feed(&mut bob, "JOIN #r\n", now);
    feed(&mut alice, "JOIN #r\n", now);
    take_lines(&mut alice);
    bob.handle_outbox();
    take_lines(&mut bob);

    let burst = "MSG #r one\nMSG #r two\nMSG bob psst\nMSG #r three\nPING\n";
    feed(&mut alice, burst, now);
    assert_eq!(
        take_lines(&mut alice),
        ["OK 1", "OK 2", "OK 1 verified", "OK 3", "OK PONG"]
    );
    bob.handle_outbox();
    let got: Vec<String> = take_lines(&mut bob)
        .iter()
        .map(|l| {
            l.split(' ')
                .skip(1)
                .take(1)
                .chain(l.rsplit(' ').take(1))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert_eq!(got, ["MSG one", "MSG two", "DM psst", "MSG three"]);
}

#[test]
fn a_pipelined_burst_stops_at_the_high_water_mark_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path(), |c| {
        c.rate_burst = 10_000;
        c.rate_bytes_burst = 1 << 30;
    });
    let now = Instant::now();
    let (mut state, _) = connect(&shared, "alice", now);
    let echo = format!("ECHO {}\n", "x".repeat(1000));
    let mut more = feed(&mut state, &echo.repeat(200), now);
    let mut rounds = Vec::new();
    loop {
        assert!(state.poll_transmit().unwrap().len() < OUT_HIGH_WATER + echo.len());
        rounds.push(take_lines(&mut state).len());
        if !more {
            break;
        }
        more = state.process(now, wall());
    }
    assert!(rounds.len() >= 3, "written in several rounds: {rounds:?}");
    assert_eq!(rounds.iter().sum::<usize>(), 200, "{rounds:?}");
}

#[test]
fn shutdown_sends_what_is_queued_then_the_notice_and_a_slow_consumer_loses_its_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path(), |c| c.max_pending_bytes = 1024);
    let now = Instant::now();
    let (mut alice, _) = connect(&shared, "alice", now);
    let (mut bob, bob_peer) = connect(&shared, "bob", now);
    feed(&mut alice, "MSG bob first\n", now);
    shared.request_stop("maintenance".into());
    bob.handle_shutdown();
    let lines = take_lines(&mut bob);
    assert!(lines[0].starts_with("EVENT DM 1 alice bob"), "{lines:?}");
    assert_eq!(lines[1], "EVENT SHUTDOWN maintenance");
    assert!(matches!(bob.poll_close(), Some(CloseReason::Shutdown)));

    let (mut carol, carol_peer) = connect(&shared, "carol", now);
    feed(&mut carol, "JOIN #r\n", now);
    feed(&mut alice, "JOIN #r\n", now);
    take_lines(&mut carol);
    feed(&mut alice, &format!("MSG #r {}\n", "y".repeat(600)), now);
    carol.handle_outbox();
    feed(&mut alice, &format!("MSG #r {}\n", "z".repeat(600)), now);
    feed(&mut alice, &format!("MSG #r {}\n", "w".repeat(600)), now);
    assert_eq!(
        carol_peer.disconnect_reason().unwrap().code,
        DisconnectCode::SlowConsumer
    );
    carol.handle_disconnect();
    let lines = take_lines(&mut carol);
    assert_eq!(lines.len(), 1, "the backlog is dropped: {lines:?}");
    assert!(lines[0].starts_with("EVENT DISCONNECT SLOW_CONSUMER"));
    drop(bob_peer);
}

#[test]
fn an_end_of_stream_mid_line_is_told_apart_from_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path(), |_| {});
    let now = Instant::now();
    let (mut state, _) = connect(&shared, "alice", now);
    feed(&mut state, "PING\n", now);
    assert!(matches!(state.handle_eof(), CloseReason::PeerClosed));
    feed(&mut state, "PIN", now);
    assert!(matches!(state.handle_eof(), CloseReason::PeerClosedMidLine));
}

#[test]
fn others_see_a_neutral_reason_when_a_session_is_replaced() {
    let replaced = CloseReason::Disconnected(Disconnect {
        code: DisconnectCode::Replaced,
        reason: "another connection with your certificate replaced this one".into(),
    });
    assert_eq!(replaced.public(), "reconnected");
    let kicked = CloseReason::Disconnected(Disconnect {
        code: DisconnectCode::Kicked,
        reason: "kicked by root: spam".into(),
    });
    assert_eq!(kicked.public(), "kicked by root: spam");
}

/// `GET path` on the endpoint at `addr`: the whole response.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn readyz_turns_503_at_a_stop_request_and_healthz_stays_200() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path(), |_| {});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(crate::http::serve(
        listener,
        shared.clone(),
        std::future::pending(),
    ));
    assert!(http_get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
    shared.request_stop("maintenance".into());
    let readyz = http_get(addr, "/readyz").await;
    assert!(readyz.starts_with("HTTP/1.1 503"), "{readyz}");
    assert!(readyz.ends_with("shutting down\n"), "{readyz}");
    assert!(http_get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
}

#[tokio::test(start_paused = true)]
async fn a_monitoring_client_that_sends_nothing_is_let_go_after_the_request_timeout() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path(), |_| {});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(crate::http::serve(listener, shared, std::future::pending()));
    let started = tokio::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut response = Vec::new();
    silent.read_to_end(&mut response).await.unwrap();
    assert!(response.is_empty(), "no request, no answer");
    assert!(started.elapsed() >= crate::http::REQUEST_TIMEOUT);
}

#[tokio::test]
async fn at_most_max_in_flight_batches_wait_for_the_store_and_replies_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::embedded::EmbeddedStore::open(
        &dir.path().join("store.redb"),
        crate::store::embedded::Fsync::Never,
    )
    .unwrap();
    let shared = shared_with_store(dir.path(), |_| {}, Some(Arc::new(store)));
    let now = Instant::now();
    let (mut state, _) = connect(&shared, "alice", now);
    feed(&mut state, "JOIN #a\nJOIN #b\n", now);
    assert_eq!(take_lines(&mut state), ["OK #a", "OK #b"]);
    // Twelve messages alternating between two rooms: twelve batches of one.
    let input: String = (0..12)
        .map(|n| format!("MSG #{} m{n}\n", ["a", "b"][n % 2]))
        .collect();
    feed(&mut state, &input, now);
    assert!(
        !state.wants_input(),
        "no more input with the batches in flight"
    );
    let mut waiting: VecDeque<_> = state.poll_answers().collect();
    assert_eq!(
        waiting.len(),
        MAX_IN_FLIGHT,
        "at most this many wait for the store"
    );
    let mut replies = Vec::new();
    while let Some(answer) = waiting.pop_front() {
        let answer = tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .expect("committed in time");
        state.handle_answer(answer);
        state.process(now, wall());
        waiting.extend(state.poll_answers());
        assert!(waiting.len() <= MAX_IN_FLIGHT);
        replies.extend(take_lines(&mut state));
    }
    let expected: Vec<String> = (0..12).map(|n| format!("OK {}", n / 2 + 1)).collect();
    assert_eq!(replies, expected, "every reply, in request order");
}
