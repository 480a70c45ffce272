//! Hostile clients. Each test attacks a real server on loopback, checks that a normal client
//! connected alongside is still answered promptly (a `PING` within [`PROMPT`]), and that the
//! server's resident memory comes back near where it was (within [`MEMORY_SLACK_KIB`]) once
//! the attack is over. Every attack is bounded in count and time.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tlschat_client::{Client, ClientError};
use tlschat_proto::{Event, Reply, Request};
use tlschat_tests::{tcp_from, Pki, RawTls, ServerProcess, NO_RATE_LIMIT, STEP_TIMEOUT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How fast the bystander must be answered during an attack.
const PROMPT: Duration = Duration::from_secs(1);

/// How far above its baseline the server's memory may stay after an attack (allocator caches
/// and the like; a leak of the attack's own size would be far larger).
const MEMORY_SLACK_KIB: u64 = 16 * 1024;

/// Another loopback address, so per-address limits see the attacker apart from the bystander.
fn attacker_ip() -> IpAddr {
    "127.0.0.2".parse().unwrap()
}

/// A normal client, connected before the attack, that sends a `PING` every 100 ms for as
/// long as the test runs and records the slowest answer.
struct Bystander {
    state: Arc<Mutex<Watch>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Watch {
    answered: u64,
    slowest: Duration,
    failure: Option<String>,
}

impl Bystander {
    async fn connect(pki: &Pki, server: &ServerProcess) -> Self {
        let mut client = Client::connect(&pki.client_config(server.addr(), Some("alice")))
            .await
            .expect("bystander connects");
        let state = Arc::new(Mutex::new(Watch::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let started = Instant::now();
                let result = tokio::time::timeout(PROMPT, client.request(&Request::Ping)).await;
                let failed = {
                    let mut watch = shared.lock().unwrap();
                    match result {
                        Ok(Ok(reply)) if reply == Reply::ok("PONG") => {
                            watch.answered += 1;
                            watch.slowest = watch.slowest.max(started.elapsed());
                            false
                        }
                        other => {
                            watch.failure = Some(format!("{other:?}"));
                            true
                        }
                    }
                };
                if failed {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { state, task }
    }

    /// Asserts every PING so far was answered within [`PROMPT`], and that a new one is.
    async fn assert_served(&mut self, during: &str) {
        let before = self.state.lock().unwrap().answered;
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            {
                let watch = self.state.lock().unwrap();
                if let Some(failure) = &watch.failure {
                    panic!("bystander failed during {during}: {failure}");
                }
                assert!(
                    watch.slowest < PROMPT,
                    "bystander waited {:?} during {during}",
                    watch.slowest
                );
                if watch.answered > before {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "bystander stalled during {during}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls the server's memory until it is back within the slack of `baseline` (bounded).
async fn assert_memory_returns(server: &ServerProcess, baseline: u64, after: &str) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let rss = server.rss_kib();
        if rss <= baseline + MEMORY_SLACK_KIB {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {after}: {rss} KiB resident, baseline {baseline} KiB (+{MEMORY_SLACK_KIB} allowed)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads until the peer closes; returns everything read. Bounded by the step timeout.
async fn read_to_close(stream: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = tokio::time::timeout(STEP_TIMEOUT, stream.read_to_end(&mut all)).await;
    all
}

fn start(pki: &Pki, extra: &[&str]) -> ServerProcess {
    ServerProcess::start(pki, extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_start_tls_are_dropped_at_the_handshake_timeout() {
    // Bound: 300 silent TCP connections, closed by the server within the 1 s handshake
    // timeout (checked with a 20 s ceiling).
    let pki = Pki::standard();
    let server = start(&pki, &["--handshake-timeout", "1s"]);
    let mut bystander = Bystander::connect(&pki, &server).await;
    let baseline = server.rss_kib();
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(tcp_from(attacker_ip(), server.addr()).await.unwrap());
    }
    bystander.assert_served("300 silent connections").await;
    let started = Instant::now();
    for stream in &mut silent {
        let bytes = read_to_close(stream).await;
        assert!(
            bytes.is_empty(),
            "nothing is sent to a client that never said hello"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed at the handshake timeout"
    );
    drop(silent);
    bystander.assert_served("after").await;
    assert_memory_returns(&server, baseline, "silent TCP connections").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_after_tls_are_pinged_then_closed_at_the_idle_timeout() {
    // Bound: 100 TLS connections that say nothing, pinged at 1 s and closed at 2 s.
    let pki = Pki::standard();
    let server = start(
        &pki,
        &[
            "--idle-timeout",
            "2s",
            "--max-connections-per-ip",
            "1000",
            "--max-handshakes-per-ip",
            "1000",
        ],
    );
    let mut bystander = Bystander::connect(&pki, &server).await;
    let baseline = server.rss_kib();
    let config = pki.client_config(server.addr(), None);
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(RawTls::connect_from(&config, attacker_ip()).await.unwrap());
    }
    bystander.assert_served("100 silent TLS connections").await;
    for raw in &mut silent {
        assert!(raw.read_line().await.unwrap().starts_with("HELLO"));
        assert!(raw.read_line().await.unwrap().starts_with("EVENT PING "));
        let bye = raw.read_line().await.unwrap();
        assert_eq!(bye, "EVENT DISCONNECT IDLE no input for 2s");
        assert_eq!(raw.read_line().await, None, "closed");
    }
    bystander.assert_served("after the idle timeout").await;
    // A client that sends nothing of its own but answers the keepalive is never closed: it
    // only reads (its library answers EVENT PING with PONG) until well past the idle timeout,
    // then is still answered.
    let mut quiet = Client::connect(&pki.client_config(server.addr(), Some("carol")))
        .await
        .unwrap();
    let idle = tokio::time::timeout(Duration::from_secs(5), quiet.next_line()).await;
    assert!(idle.is_err(), "nothing but pings for 5 s: {idle:?}");
    assert_eq!(
        quiet.request(&Request::Ping).await.unwrap(),
        Reply::ok("PONG")
    );
    drop(silent);
    assert_memory_returns(&server, baseline, "silent TLS connections").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_16_mib_line_without_a_newline_is_refused_without_being_buffered() {
    // Bound: the server buffers at most one line limit (64 KiB) plus one read of it.
    let pki = Pki::standard();
    let server = start(&pki, &[]);
    let mut bystander = Bystander::connect(&pki, &server).await;
    let baseline = server.rss_kib();
    let mut raw = RawTls::connect(&pki.client_config(server.addr(), Some("bob")))
        .await
        .unwrap();
    raw.read_line().await.unwrap();
    let chunk = vec![b'x'; 1 << 20];
    let mut peak = baseline;
    for _ in 0..16 {
        raw.write(&chunk).await.unwrap();
        peak = peak.max(server.rss_kib());
    }
    assert!(raw
        .read_line()
        .await
        .unwrap()
        .starts_with("ERR LINE_TOO_LONG"));
    bystander.assert_served("a 16 MiB line").await;
    raw.write(b"\nPING\n").await.unwrap();
    assert_eq!(
        raw.read_line().await.unwrap(),
        "OK PONG",
        "the connection goes on"
    );
    assert!(
        peak <= baseline + MEMORY_SLACK_KIB,
        "peak {peak} KiB vs baseline {baseline} KiB"
    );
    assert_memory_returns(&server, baseline, "a 16 MiB line").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_and_nul_bytes_get_errors_and_nothing_else() {
    // Bound: 2,000 hostile lines, each answered with one error.
    let pki = Pki::standard();
    let server = start(
        &pki,
        &[
            "--rate-burst",
            "10000",
            "--rate-bytes",
            "1000000000",
            "--rate-bytes-burst",
            "1000000000",
        ],
    );
    let mut bystander = Bystander::connect(&pki, &server).await;
    let mut raw = RawTls::connect(&pki.client_config(server.addr(), Some("bob")))
        .await
        .unwrap();
    raw.read_line().await.unwrap();
    let mut hostile = Vec::new();
    for i in 0..1000u32 {
        hostile.extend_from_slice(&[0xff, 0xfe, (i % 256) as u8, b'\n']);
        hostile.extend_from_slice(b"ECHO a\0b\x1b[2J\n");
    }
    raw.write(&hostile).await.unwrap();
    let mut codes = std::collections::HashMap::new();
    for _ in 0..2000 {
        let line = raw.read_line().await.unwrap();
        let code = line.split(' ').nth(1).unwrap_or_default().to_owned();
        assert!(line.starts_with("ERR "), "{line}");
        *codes.entry(code).or_insert(0) += 1;
    }
    assert_eq!(codes.get("BAD_CHARS"), Some(&1000), "{codes:?}");
    assert_eq!(codes.values().sum::<i32>(), 2000);
    bystander.assert_served("invalid UTF-8 and NUL bytes").await;
    raw.write(b"PING\n").await.unwrap();
    assert_eq!(raw.read_line().await.unwrap(), "OK PONG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_tiny_requests_is_rate_limited_then_disconnected() {
    // Bound: 100,000 PINGs in one go; default limits (100/s, burst 200, 100 strikes).
    let pki = Pki::standard();
    let server = start(&pki, &[]);
    let mut bystander = Bystander::connect(&pki, &server).await;
    let baseline = server.rss_kib();
    let mut raw = RawTls::connect(&pki.client_config(server.addr(), Some("bob")))
        .await
        .unwrap();
    raw.read_line().await.unwrap();
    let flood = b"PING\n".repeat(100_000);
    // The server may close before taking it all: a failed write is expected.
    let _ = raw.write(&flood).await;
    let mut pongs = 0;
    let mut limited = 0;
    let mut bye = None;
    while let Some(line) = raw.read_line().await {
        match line.as_str() {
            "OK PONG" => pongs += 1,
            l if l.starts_with("ERR RATE_LIMITED") => limited += 1,
            l if l.starts_with("EVENT DISCONNECT") => bye = Some(line),
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        (200..=210).contains(&pongs),
        "about the burst was served: {pongs}"
    );
    assert!(limited >= 99, "refusals before the cut: {limited}");
    assert!(bye.unwrap().starts_with("EVENT DISCONNECT FLOOD"));
    bystander.assert_served("a flood").await;
    server.wait_for_log("flooding client disconnected");
    assert_memory_returns(&server, baseline, "a flood").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_vanish_mid_handshake_or_mid_line_leave_nothing_behind() {
    // Bound: 200 half handshakes and 200 half lines.
    let pki = Pki::standard();
    let server = start(
        &pki,
        &[
            "--max-connections-per-ip",
            "1000",
            "--max-handshakes-per-ip",
            "1000",
        ],
    );
    let mut bystander = Bystander::connect(&pki, &server).await;
    let baseline = server.rss_kib();
    for _ in 0..200 {
        let mut tcp = tcp_from(attacker_ip(), server.addr()).await.unwrap();
        // The start of a TLS record carrying a ClientHello, then nothing.
        tcp.write_all(&[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ])
        .await
        .unwrap();
        drop(tcp);
    }
    let config = pki.client_config(server.addr(), None);
    for _ in 0..200 {
        let mut raw = RawTls::connect_from(&config, attacker_ip()).await.unwrap();
        assert!(raw.read_line().await.unwrap().starts_with("HELLO"));
        raw.write(b"ECHO this line never ends").await.unwrap();
        drop(raw);
    }
    bystander.assert_served("vanishing clients").await;
    let deadline = Instant::now() + STEP_TIMEOUT;
    while server
        .log()
        .matches("client closed the connection mid-line")
        .count()
        < 200
    {
        assert!(
            Instant::now() < deadline,
            "mid-line closes are logged: {}",
            server
                .log()
                .lines()
                .filter(|l| l.contains("disconnected"))
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_memory_returns(&server, baseline, "vanishing clients").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_storm_past_the_limits_is_held_off_and_recovers() {
    // Bound: 200 simultaneous connections against --max-connections 100 and
    // --max-connections-per-ip 50 (the bystander comes from another address).
    let pki = Pki::standard();
    let server = start(
        &pki,
        &[
            "--max-connections",
            "100",
            "--max-connections-per-ip",
            "50",
            "--max-handshakes-per-ip",
            "50",
        ],
    );
    let mut bystander = Bystander::connect(&pki, &server).await;
    let baseline = server.rss_kib();
    let config = pki.client_config(server.addr(), None);
    let mut storm = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let config = config.clone();
        storm.spawn(async move {
            let mut raw = RawTls::connect_from(&config, attacker_ip()).await.ok()?;
            let first = raw.read_line().await?;
            Some((first, raw))
        });
    }
    let mut admitted = Vec::new();
    let mut refused = 0;
    while let Some(first) = storm.join_next().await {
        match first.unwrap() {
            // Held open until the end, so "at once" is what is counted.
            Some((line, raw)) if line.starts_with("HELLO") => admitted.push(raw),
            // Past its address's limits a connection is closed before any handshake.
            None => refused += 1,
            other => panic!("unexpected {:?}", other.map(|(line, _)| line)),
        }
    }
    let admitted = admitted.len();
    assert_eq!(admitted + refused, 200);
    assert!(
        admitted <= 50,
        "at most 50 from one address at once: {admitted}"
    );
    assert!(refused >= 150, "{refused}");
    bystander.assert_served("a connection storm").await;
    // Afterwards a new client gets in at once.
    let started = Instant::now();
    Client::connect(&pki.client_config(server.addr(), Some("bob")))
        .await
        .unwrap();
    assert!(started.elapsed() < PROMPT);
    server.wait_for_log("refused: too many");
    assert_memory_returns(&server, baseline, "a connection storm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_never_reads_is_cut_off_at_the_write_timeout() {
    // Bound: 4 MiB of replies requested and never read; 1 s write timeout.
    let pki = Pki::standard();
    let server = start(
        &pki,
        &[
            "--write-timeout",
            "1s",
            "--rate-burst",
            "1000",
            "--rate-bytes",
            "1000000000",
            "--rate-bytes-burst",
            "1000000000",
        ],
    );
    let mut bystander = Bystander::connect(&pki, &server).await;
    let baseline = server.rss_kib();
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    let config = pki.client_config(server.addr(), Some("bob"));
    let tls = config.tls_config().unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(tls)
        .connect(config.verify_name().unwrap(), tcp)
        .await
        .unwrap();
    // 600 replies of 60 KB, far more than socket buffers hold; the writer gives up when the
    // server cuts the connection (or after 20 s).
    let request = format!("ECHO {}\n", "y".repeat(60_000));
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let write_all = async {
            for _ in 0..600 {
                stream.write_all(request.as_bytes()).await?;
                stream.flush().await?;
            }
            Ok::<_, std::io::Error>(())
        };
        let _ = tokio::time::timeout(STEP_TIMEOUT, write_all).await;
        stream
    });
    bystander.assert_served("a reader that never reads").await;
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !server
        .log()
        .contains("write timed out: client is not reading")
    {
        assert!(
            Instant::now() < deadline,
            "the stuck reader is cut off and logged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(writer.await.unwrap());
    assert_memory_returns(&server, baseline, "a reader that never reads").await;
}

#[tokio::test]
async fn room_limits_answer_with_clear_errors() {
    let pki = Pki::standard();
    let server = start(
        &pki,
        &["--max-rooms-per-user", "2", "--max-room-members", "2"],
    );
    let mut alice = Client::connect(&pki.client_config(server.addr(), Some("alice")))
        .await
        .unwrap();
    let mut bob = Client::connect(&pki.client_config(server.addr(), Some("bob")))
        .await
        .unwrap();
    let mut carol = Client::connect(&pki.client_config(server.addr(), Some("carol")))
        .await
        .unwrap();
    for room in ["#a", "#b"] {
        assert!(matches!(
            alice.request(&Request::Join(room.into())).await.unwrap(),
            Reply::Ok(_)
        ));
    }
    let Reply::Err(err) = alice.request(&Request::Join("#c".into())).await.unwrap() else {
        panic!("a third room must be refused");
    };
    assert_eq!(err.code.as_str(), "TOO_MANY_ROOMS");
    assert!(matches!(
        bob.request(&Request::Join("#a".into())).await.unwrap(),
        Reply::Ok(_)
    ));
    let Reply::Err(err) = carol.request(&Request::Join("#a".into())).await.unwrap() else {
        panic!("a third member must be refused");
    };
    assert_eq!(err.code.as_str(), "ROOM_FULL");
    server.wait_for_log("room member limit reached");
}

#[tokio::test]
async fn an_idle_client_that_answers_pings_stays_and_one_that_does_not_is_told_why() {
    let pki = Pki::standard();
    let server = start(&pki, &["--idle-timeout", "1s"]);
    let mut polite = Client::connect(&pki.client_config(server.addr(), Some("alice")))
        .await
        .unwrap();
    let mut mute = Client::connect(&pki.client_config(server.addr(), Some("bob")))
        .await
        .unwrap();
    // The library answers pings only while it reads; the mute client does not read.
    let reader = tokio::spawn(async move {
        let result = tokio::time::timeout(Duration::from_secs(3), polite.next_event()).await;
        assert!(
            result.is_err(),
            "no disconnect while pings are answered: {result:?}"
        );
        polite
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    match mute.next_event().await {
        Ok(Event::Disconnect { code, reason }) => {
            assert_eq!(
                (code.as_str(), reason.as_str()),
                ("IDLE", "no input for 1s")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        mute.next_event().await,
        Err(ClientError::Closed { .. })
    ));
    let mut polite = reader.await.unwrap();
    assert_eq!(
        polite.request(&Request::Ping).await.unwrap(),
        Reply::ok("PONG")
    );
    let _: SocketAddr = server.addr();
}

/// Bob (a certificate) and mallory (a claimed nickname, from the attacker's address), both past
/// the greeting.
async fn bob_and_mallory(pki: &Pki, server: &ServerProcess) -> (RawTls, RawTls) {
    let mut bob = RawTls::connect(&pki.client_config(server.addr(), Some("bob")))
        .await
        .unwrap();
    assert!(bob.read_line().await.unwrap().starts_with("HELLO"));
    let mut mallory = RawTls::connect_from(&pki.client_config(server.addr(), None), attacker_ip())
        .await
        .unwrap();
    assert!(mallory.read_line().await.unwrap().starts_with("HELLO"));
    mallory.write(b"NICK mallory\n").await.unwrap();
    assert!(mallory.read_line().await.unwrap().starts_with("OK"));
    (bob, mallory)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_flood_is_refused_to_the_sender_and_never_cuts_the_recipient_off() {
    // Bound: 1,200 DMs of 16,000 bytes (19 MB) from one client to one that does not read;
    // the byte budget is lifted so only the DM limit and the recipient's queue protect bob.
    // Without a store (with one, DMs past the queue are stored and bob is told of a gap: the
    // next test).
    let pki = Pki::standard();
    let server = start(&pki, &[NO_RATE_LIMIT, &["--store", "none"]].concat());
    let (mut bob, mut mallory) = bob_and_mallory(&pki, &server).await;

    // A DM longer than the limit is refused outright, whatever the budget.
    let long = format!("MSG bob {}\n", "z".repeat(65_000));
    mallory.write(long.as_bytes()).await.unwrap();
    let refused = mallory.read_line().await.unwrap();
    assert!(refused.starts_with("ERR TOO_LONG"), "{refused}");

    let dm = format!("MSG bob {}\n", "y".repeat(16_000));
    let flood = dm.repeat(1200);
    let writer = tokio::spawn(async move {
        mallory.write(flood.as_bytes()).await.unwrap();
        let (mut sent, mut busy) = (0, 0);
        for _ in 0..1200 {
            let line = mallory.read_line().await.unwrap();
            match line.as_str() {
                l if l.ends_with(" verified") && l.starts_with("OK ") => sent += 1,
                l if l.starts_with("ERR TARGET_BUSY") => busy += 1,
                other => panic!("unexpected reply {other}"),
            }
        }
        (sent, busy)
    });
    let (sent, busy) = writer.await.unwrap();
    assert!(busy > 0, "the flood outran bob's queue: {sent} sent");
    // Bob, reading again, gets every DM that was acknowledged, and is still connected.
    bob.write(b"PING\n").await.unwrap();
    let mut received = 0;
    loop {
        let line = bob.read_line().await.expect("bob is still connected");
        assert!(!line.starts_with("EVENT DISCONNECT"), "{line}");
        if line == "OK PONG" {
            break;
        }
        assert!(
            line.starts_with("EVENT DM ") && line.contains(" mallory bob "),
            "{}",
            &line[..40.min(line.len())]
        );
        received += 1;
    }
    assert_eq!(received, sent, "every acknowledged DM arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_from_one_address_cannot_make_another_address_wait() {
    // Bound: 105 TCP connections that never start a handshake, against --max-connections 100.
    let pki = Pki::standard();
    let server = start(&pki, &["--max-connections", "100"]);
    let mut silent = Vec::new();
    for _ in 0..105 {
        if let Ok(tcp) = tcp_from(attacker_ip(), server.addr()).await {
            silent.push(tcp);
        }
    }
    // The server has seen them all (the refusals past the handshake cap are logged).
    server.wait_for_log("refused: too many TLS handshakes in progress from this address");
    let started = Instant::now();
    let mut client = Client::connect(&pki.client_config(server.addr(), Some("bob")))
        .await
        .expect("a client from another address gets in");
    assert_eq!(
        client.request(&Request::Ping).await.unwrap(),
        Reply::ok("PONG")
    );
    assert!(
        started.elapsed() < PROMPT,
        "waited {:?} behind another address's silent sockets",
        started.elapsed()
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_a_new_client_waits_until_a_slot_frees() {
    // Bound: 3 clients from 3 addresses against --max-connections 2.
    let pki = Pki::standard();
    let server = start(&pki, &["--max-connections", "2"]);
    let config = pki.client_config(server.addr(), None);
    let ip = |last: u8| IpAddr::from([127, 0, 0, last]);
    let mut first = RawTls::connect_from(&config, ip(2)).await.unwrap();
    assert!(first.read_line().await.unwrap().starts_with("HELLO"));
    let mut second = RawTls::connect_from(&config, ip(3)).await.unwrap();
    assert!(second.read_line().await.unwrap().starts_with("HELLO"));
    let third_config = config.clone();
    let mut third = tokio::spawn(async move {
        let mut raw = RawTls::connect_from(&third_config, ip(4)).await.unwrap();
        raw.read_line().await
    });
    // Not served while both slots are taken (it waits in the listen backlog)…
    let waited = tokio::time::timeout(Duration::from_millis(700), &mut third).await;
    assert!(
        waited.is_err(),
        "served past the connection limit: {waited:?}"
    );
    server.wait_for_log("connection limit reached");
    // …and served as soon as one closes.
    first.write(b"QUIT\n").await.unwrap();
    drop(first);
    let hello = tokio::time::timeout(STEP_TIMEOUT, third)
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(hello.unwrap().starts_with("HELLO"));
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_flood_with_a_store_never_cuts_the_recipient_off_who_fills_the_gap() {
    // Bound: 400 DMs of 16,000 bytes (6.4 MB) to a recipient that does not read, with the
    // byte budget lifted; the default store keeps them and bob is told of a gap.
    const FLOOD: usize = 400;
    let pki = Pki::standard();
    let server = start(&pki, NO_RATE_LIMIT);
    let (mut bob, mut mallory) = bob_and_mallory(&pki, &server).await;
    let dm = format!("MSG bob {}\n", "y".repeat(16_000));
    mallory.write(dm.repeat(FLOOD).as_bytes()).await.unwrap();
    for _ in 0..FLOOD {
        let line = mallory.read_line().await.unwrap();
        assert!(
            line.ends_with(" verified"),
            "stored and acknowledged: {line}"
        );
    }
    // Bob reads now: some DMs, a gap for the rest, never a disconnect.
    let (mut ids, mut gaps) = (std::collections::BTreeSet::new(), Vec::new());
    while ids.len()
        + gaps
            .iter()
            .map(|(a, b): &(u64, u64)| (b - a + 1) as usize)
            .sum::<usize>()
        < FLOOD
    {
        let line = bob.read_line().await.expect("bob is still connected");
        assert!(!line.starts_with("EVENT DISCONNECT"), "{line}");
        if let Some(rest) = line.strip_prefix("EVENT DM ") {
            ids.insert(rest.split(' ').next().unwrap().parse::<u64>().unwrap());
        } else if let Some(rest) = line.strip_prefix("EVENT GAP mallory ") {
            let (first, last) = rest.split_once(' ').unwrap();
            gaps.push((first.parse().unwrap(), last.parse().unwrap()));
        }
    }
    assert!(!gaps.is_empty(), "the flood outran bob's queue");
    for (first, last) in gaps {
        let mut after = first - 1;
        while after < last {
            bob.write(format!("HISTORY mallory AFTER {after} LIMIT 500\n").as_bytes())
                .await
                .unwrap();
            loop {
                let line = bob.read_line().await.unwrap();
                if let Some(rest) = line.strip_prefix("EVENT DM ") {
                    let id = rest.split(' ').next().unwrap().parse::<u64>().unwrap();
                    ids.insert(id);
                    after = after.max(id);
                } else if line.starts_with("OK ") {
                    break;
                }
            }
        }
    }
    assert_eq!(ids.len(), FLOOD, "every acknowledged DM reached bob once");
}
