//! End-to-end tests of signed UDP mode against the real server: valid requests are answered
//! and verified; every kind of bad datagram is dropped without a reply, counted (read through
//! the admin `STATS` verb over TLS), and the server keeps answering.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime};

use tlschat_client::Client;
use tlschat_proto::datagram::{self, Datagram, Header, Kind, RequestBinding};
use tlschat_proto::{Reply, Request};
use tlschat_tests::{text, tlschat, udp_exec, Pki, ServerProcess, STEP_TIMEOUT};
use tlschat_tls::signing::{sha256, CertKey, PeerKey};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn key(pki: &Pki, name: &str) -> CertKey {
    let (cert, key) = pki.identity(name);
    CertKey::load(&cert, &key).unwrap()
}

fn request(key: &CertKey, body: &str, seq: u64, timestamp_ms: u64) -> Vec<u8> {
    let header = Header {
        kind: Kind::Request,
        want_cert: true,
        key_id: key.key_id(),
        seq,
        timestamp_ms,
    };
    datagram::encode(&header, body, Some(key.cert_der()), |i| key.sign(i)).unwrap()
}

/// A UDP socket towards the server with a short read timeout.
fn socket(server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(server).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    socket
}

/// Receives the reply to `request`, checks the echoed sequence number and the server's
/// signature over the reply bound to that exact request.
fn verified_reply(socket: &UdpSocket, pki: &Pki, request: &[u8]) -> String {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + STEP_TIMEOUT;
    let len = loop {
        match socket.recv(&mut buf) {
            Ok(len) => break len,
            Err(_) if Instant::now() < deadline => continue,
            Err(err) => panic!("no reply: {err}"),
        }
    };
    let reply = Datagram::parse(&buf[..len], 4096).unwrap();
    let asked = Datagram::parse(request, 4096).unwrap();
    assert_eq!(
        (reply.header.kind, reply.header.seq),
        (Kind::Reply, asked.header.seq)
    );
    let server = PeerKey::from_cert(key(pki, "server").cert_der()).unwrap();
    let answers = RequestBinding {
        key_id: asked.header.key_id,
        digest: sha256(request),
    };
    assert!(server.verify(&reply.reply_signing_input(&answers), reply.signature));
    reply.body.to_owned()
}

fn no_reply(socket: &UdpSocket) {
    let mut buf = [0u8; 4096];
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    assert!(
        socket.recv(&mut buf).is_err(),
        "a dropped datagram must get no reply"
    );
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
}

/// The server's counters, read as admin over TLS.
struct Stats {
    client: Client,
    rt: tokio::runtime::Runtime,
}

impl Stats {
    fn connect(pki: &Pki, server: &ServerProcess) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt
            .block_on(Client::connect(
                &pki.client_config(server.addr(), Some("root")),
            ))
            .unwrap();
        Self { client, rt }
    }

    fn read(&mut self) -> HashMap<String, u64> {
        let reply = self
            .rt
            .block_on(self.client.request(&Request::Stats))
            .unwrap();
        let Reply::Ok(line) = reply else {
            panic!("STATS refused: {reply}")
        };
        line.split(' ')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
            .collect()
    }

    /// Waits (bounded) until counter `name` reaches `at_least`.
    fn wait_for(&mut self, name: &str, at_least: u64) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let stats = self.read();
            if stats.get(name).copied().unwrap_or(0) >= at_least {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never reached {at_least}: {stats:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn udp_exec_gets_verified_replies() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &["--udp", "127.0.0.1:0"]);
    let udp = server.udp_addr();
    let out = tlschat(
        &pki,
        udp,
        Some("alice"),
        &["udp", "exec", "SUM", "1", "2", "3"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "6\n");
    let out = tlschat(&pki, udp, Some("alice"), &["udp", "exec", "GREET"]);
    assert_eq!(text(&out.stdout), "Hello, alice!\n");
    let out = tlschat(&pki, udp, Some("alice"), &["udp", "exec", "NUMBER", "500"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("ERR OUT_OF_RANGE"));
    let out = tlschat(&pki, udp, None, &["udp", "exec", "TIME"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("need your certificate"),
        "{}",
        text(&out.stderr)
    );

    // A server whose certificate is not from our CA gets no trust: its replies are ignored.
    let other = Pki::standard();
    let foreign = ServerProcess::start(&other, &["--udp", "127.0.0.1:0"]);
    let out = udp_exec(&pki, foreign.udp_addr(), Some("alice"), &["TIME"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "alice's certificate is foreign to it anyway"
    );
}

#[test]
fn a_reply_the_server_signed_for_someone_elses_request_is_refused() {
    // Bound: two attempts of alice's, each answered by one forged round trip.
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &["--udp", "127.0.0.1:0"]);
    let mallory = key(&pki, "bob");
    // Someone on the path (with a valid certificate of their own) sits between alice and the
    // server: each of alice's requests is dropped and replaced by mallory's own, under alice's
    // sequence number, and the server's genuine signed reply is handed to alice.
    let path = UdpSocket::bind("127.0.0.1:0").unwrap();
    path.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    let path_addr = path.local_addr().unwrap();
    let upstream = socket(server.udp_addr());
    let attack = std::thread::spawn(move || {
        let mut handed = 0;
        let mut buf = [0u8; 4096];
        for _ in 0..2 {
            let Ok((len, alice)) = path.recv_from(&mut buf) else {
                break;
            };
            let seq = Datagram::parse(&buf[..len], 4096).unwrap().header.seq;
            upstream
                .send(&request(&mallory, "SUM 500 500", seq, now_ms()))
                .unwrap();
            let mut reply = [0u8; 4096];
            if let Ok(n) = upstream.recv(&mut reply) {
                path.send_to(&reply[..n], alice).unwrap();
                handed += 1;
            }
        }
        handed
    });
    let out = tlschat(
        &pki,
        path_addr,
        Some("alice"),
        &[
            "udp",
            "exec",
            "--timeout",
            "500ms",
            "--retries",
            "1",
            "SUM",
            "1",
            "2",
        ],
    );
    let handed = attack.join().unwrap();
    assert!(handed >= 1, "the server answered mallory, and alice got it");
    assert!(!text(&out.stdout).contains("1000"), "{}", text(&out.stdout));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no valid reply"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn every_bad_datagram_is_dropped_counted_and_the_server_keeps_answering() {
    let pki = Pki::standard();
    let other = Pki::standard();
    let server = ServerProcess::start(&pki, &["--udp", "127.0.0.1:0"]);
    let udp = socket(server.udp_addr());
    let mut stats = Stats::connect(&pki, &server);
    let alice = key(&pki, "alice");
    let bob = key(&pki, "bob");
    let mut seq = 1000;
    let mut next = || {
        seq += 1;
        seq
    };

    let s = next();
    let valid = request(&alice, "ECHO hello", s, now_ms());
    udp.send(&valid).unwrap();
    assert_eq!(verified_reply(&udp, &pki, &valid), "OK hello");

    // The same datagram again.
    udp.send(&valid).unwrap();
    stats.wait_for("udp.replayed", 1);
    no_reply(&udp);

    // A flipped byte in the header, the body, the certificate and the signature.
    let fresh = request(&alice, "ECHO tampered", next(), now_ms());
    for at in [12, 35, 60, fresh.len() - 5] {
        let mut bad = fresh.clone();
        bad[at] ^= 0x20;
        udp.send(&bad).unwrap();
    }
    stats.wait_for("udp.bad_signature", 4);
    no_reply(&udp);

    // Bob's certificate under an unknown key id (carol's); bob's certificate signed by alice.
    let carol = key(&pki, "carol");
    let header = Header {
        kind: Kind::Request,
        want_cert: true,
        key_id: carol.key_id(),
        seq: next(),
        timestamp_ms: now_ms(),
    };
    udp.send(&datagram::encode(&header, "PING", Some(bob.cert_der()), |i| bob.sign(i)).unwrap())
        .unwrap();
    stats.wait_for("udp.key_mismatch", 1);
    let bob_header = Header {
        key_id: bob.key_id(),
        ..header
    };
    udp.send(
        &datagram::encode(&bob_header, "PING", Some(bob.cert_der()), |i| alice.sign(i)).unwrap(),
    )
    .unwrap();
    stats.wait_for("udp.bad_signature", 5);
    // An unknown key without a certificate.
    let bare = datagram::encode(
        &Header {
            want_cert: false,
            ..header
        },
        "PING",
        None,
        |i| carol.sign(i),
    )
    .unwrap();
    udp.send(&bare).unwrap();
    stats.wait_for("udp.unknown_key", 1);
    no_reply(&udp);

    // A certificate from another CA.
    let stranger = key(&other, "alice");
    udp.send(&request(&stranger, "PING", next(), now_ms()))
        .unwrap();
    stats.wait_for("udp.untrusted_cert", 1);

    // Stale, truncated, oversized.
    udp.send(&request(&alice, "PING", next(), now_ms() - 60_000))
        .unwrap();
    stats.wait_for("udp.stale", 1);
    let whole = request(&alice, "PING", next(), now_ms());
    udp.send(&whole[..whole.len() - 10]).unwrap();
    stats.wait_for("udp.truncated", 1);
    udp.send(&vec![1u8; 3000]).unwrap();
    stats.wait_for("udp.oversized", 1);
    no_reply(&udp);

    let counters = stats.read();
    assert_eq!(
        counters["udp.answered"], 1,
        "only the one valid datagram was answered: {counters:?}"
    );

    let ping = request(&alice, "PING", next(), now_ms());
    udp.send(&ping).unwrap();
    assert_eq!(
        verified_reply(&udp, &pki, &ping),
        "OK PONG",
        "still serving"
    );
    server.wait_for_log("datagram dropped");
}

#[test]
fn a_datagram_from_before_a_restart_is_refused_after_it() {
    let pki = Pki::standard();
    let alice = key(&pki, "alice");
    let first = ServerProcess::start(&pki, &["--udp", "127.0.0.1:0"]);
    let captured = request(&alice, "ECHO once", 1, now_ms());
    let udp = socket(first.udp_addr());
    udp.send(&captured).unwrap();
    assert_eq!(verified_reply(&udp, &pki, &captured), "OK once");
    drop(first);

    // A new server process (as after a restart) has no replay window for alice, but the
    // captured datagram is older than the server itself.
    let second = ServerProcess::start(&pki, &["--udp", "127.0.0.1:0"]);
    let udp = socket(second.udp_addr());
    udp.send(&captured).unwrap();
    let mut stats = Stats::connect(&pki, &second);
    stats.wait_for("udp.stale", 1);
    no_reply(&udp);
}

#[test]
fn the_benchmark_tool_runs_its_modes_without_failures() {
    let pki = Pki::standard();
    let server = ServerProcess::start(
        &pki,
        &[
            "--udp",
            "127.0.0.1:0",
            "--rate",
            "100000",
            "--rate-burst",
            "100000",
            "--rate-bytes",
            "1000000000",
            "--rate-bytes-burst",
            "1000000000",
        ],
    );
    let (cert, key) = pki.identity("alice");
    let runs: [(SocketAddr, &[&str], &[&str]); 5] = [
        (
            server.addr(),
            &["echo", "--connections", "2", "--requests", "200"],
            &[r#""ops":200,"errors":0"#],
        ),
        (
            server.udp_addr(),
            &["udp", "--sockets", "2", "--requests", "200"],
            &[r#""ops":200,"errors":0"#],
        ),
        (
            server.addr(),
            &["fanout", "--subscribers", "5", "--messages", "500"],
            &[r#""ops":2500,"errors":0,"lost":0,"duplicated":0,"reordered":0"#],
        ),
        (
            server.addr(),
            &["connect", "--count", "20", "--concurrency", "2"],
            &[r#""ops":20,"errors":0"#],
        ),
        (
            server.addr(),
            &[
                "hold",
                "--connections",
                "30",
                "--fanout",
                "3",
                "--fanout-messages",
                "100",
            ],
            &[
                r#""op":"connections","ops":30,"errors":0"#,
                r#""mode":"fanout while 30 held","target":"tlschat","op":"deliveries","ops":300,"errors":0,"lost":0,"duplicated":0,"reordered":0"#,
            ],
        ),
    ];
    for (addr, mode, expected) in runs {
        let out = tlschat_tests::run(
            std::process::Command::new(tlschat_tests::binary("tlschat-bench"))
                .args(["--server", &addr.to_string(), "--ca"])
                .arg(pki.ca())
                .arg("--cert")
                .arg(&cert)
                .arg("--key")
                .arg(&key)
                .args(["--server-pid", &server.pid().to_string(), "--json"])
                .args(mode),
            b"",
        );
        assert!(out.status.success(), "{mode:?}: {}", text(&out.stderr));
        let report = text(&out.stdout);
        for expected in expected {
            assert!(report.contains(expected), "{mode:?}: {report}");
        }
        assert!(report.contains(r#""server_cpu_us_per_op":"#), "{report}");
    }
}

/// A signed-UDP client of `user`'s towards `server` (waiting `timeout_ms` per attempt, with
/// `retries`), with the runtime that drives it.
fn udp_client(
    pki: &Pki,
    server: SocketAddr,
    user: &str,
    timeout_ms: u64,
    retries: u32,
) -> (tokio::runtime::Runtime, tlschat_client::udp::UdpClient) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let options = tlschat_client::udp::UdpOptions {
        timeout: Duration::from_millis(timeout_ms),
        retries,
    };
    let client = rt
        .block_on(tlschat_client::udp::UdpClient::connect(
            &pki.client_config(server, Some(user)),
            options,
        ))
        .unwrap();
    (rt, client)
}

#[test]
fn after_a_reload_one_attempt_is_lost_and_the_retry_carries_the_certificate_again() {
    // A client the server knows sends without its certificate; a reload makes the server
    // forget it, so that attempt is dropped (unknown key) and the retry, with the certificate
    // again, is answered: a reload costs exactly one retry.
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &["--udp", "127.0.0.1:0"]);
    let mut stats = Stats::connect(&pki, &server);
    let (rt, mut client) = udp_client(&pki, server.udp_addr(), "alice", 300, 3);
    let time = rt.block_on(client.request("TIME")).expect("answered");
    assert!(matches!(time, Reply::Ok(_)), "{time:?}");
    assert_eq!(
        stats.read().get("udp.unknown_key"),
        None,
        "known from the start"
    );
    server.signal("HUP");
    server.wait_for_log("certificates reloaded");
    let again = rt
        .block_on(client.request("TIME"))
        .expect("answered after a retry");
    assert!(matches!(again, Reply::Ok(_)), "{again:?}");
    let counters = stats.read();
    assert_eq!(
        counters.get("udp.unknown_key"),
        Some(&1),
        "exactly the first attempt after the reload was dropped: {counters:?}"
    );
    assert_eq!(counters["udp.answered"], 2);
}

#[test]
fn a_request_too_large_for_one_datagram_is_refused_before_it_is_sent() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &["--udp", "127.0.0.1:0"]);
    let mut stats = Stats::connect(&pki, &server);
    let (rt, mut client) = udp_client(&pki, server.udp_addr(), "alice", 1_000, 3);
    // With the certificate (about 500 bytes) and the signature, 1,800 bytes of text no longer
    // fit in the 2,048-byte datagram.
    let line = format!("ECHO {}", "x".repeat(1_800));
    let refused = rt.block_on(client.request(&line));
    assert!(
        matches!(refused, Err(tlschat_client::udp::UdpError::TooLarge)),
        "{refused:?}"
    );
    // Nothing went out: the server saw no datagram at all.
    let counters = stats.read();
    assert!(
        counters.keys().all(|k| !k.starts_with("udp.")),
        "a datagram reached the server: {counters:?}"
    );
    // A request that fits still works from the same client.
    let echo = rt.block_on(client.request("ECHO fits")).expect("answered");
    assert_eq!(echo, Reply::ok("fits"));
}

#[test]
fn a_client_follows_the_server_to_a_new_key_after_a_reload() {
    // The server's certificate is reissued with a new key (another host name) and reloaded: a
    // long-lived client that knew the old key asks for the certificate again on its retry, checks
    // it against the CA, and goes on with the new key.
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &["--udp", "127.0.0.1:0"]);
    let (rt, mut client) = udp_client(&pki, server.udp_addr(), "alice", 300, 3);
    assert!(matches!(
        rt.block_on(client.request("TIME")),
        Ok(Reply::Ok(_))
    ));
    let old_key = std::fs::read(pki.path("server-key.pem")).unwrap();
    let out = std::process::Command::new(tlschat_tests::binary("tlschat-certgen"))
        .arg("--out")
        .arg(pki.dir())
        .args(["--host", "rotated.example"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_ne!(
        std::fs::read(pki.path("server-key.pem")).unwrap(),
        old_key,
        "a new key"
    );
    server.signal("HUP");
    server.wait_for_log("certificates reloaded");
    let reply = rt.block_on(client.request("TIME"));
    assert!(matches!(reply, Ok(Reply::Ok(_))), "{reply:?}");
    // And the one after needs no retry: the new key is known.
    assert!(matches!(
        rt.block_on(client.request("LUCKY")),
        Ok(Reply::Ok(_))
    ));
}

#[test]
fn a_port_nobody_listens_on_is_waited_out_not_an_error() {
    // The "port unreachable" a closed port sends back is not a reply and not a failure of ours:
    // the client keeps waiting and says no reply came.
    let pki = Pki::standard();
    let closed: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let (rt, mut client) = udp_client(&pki, closed, "alice", 200, 1);
    let result = rt.block_on(client.request("TIME"));
    assert!(
        matches!(
            result,
            Err(tlschat_client::udp::UdpError::NoReply { attempts: 2, .. })
        ),
        "{result:?}"
    );
}

#[test]
fn a_reply_with_a_stale_timestamp_is_refused_even_when_properly_signed() {
    // A stand-in server holding the real server's certificate and key answers alice's request
    // correctly, bound to it, but with a timestamp ten minutes old: refused. The same answer
    // with the current time is taken (so the stand-in is right in every other way).
    let pki = Pki::standard();
    for (age_ms, accepted) in [(600_000u64, false), (0, true)] {
        let fake = UdpSocket::bind("127.0.0.1:0").unwrap();
        fake.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
        let addr = fake.local_addr().unwrap();
        let key = CertKey::load(&pki.path("server.pem"), &pki.path("server-key.pem")).unwrap();
        let answer = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let (len, alice) = fake.recv_from(&mut buf).unwrap();
            let request = Datagram::parse(&buf[..len], 4096).unwrap();
            let binding = RequestBinding {
                key_id: request.header.key_id,
                digest: sha256(&buf[..len]),
            };
            let header = Header {
                kind: Kind::Reply,
                want_cert: false,
                key_id: key.key_id(),
                seq: request.header.seq,
                timestamp_ms: now_ms() - age_ms,
            };
            let reply =
                datagram::encode_reply(&header, "OK 3", Some(key.cert_der()), &binding, |i| {
                    key.sign(i)
                })
                .unwrap();
            fake.send_to(&reply, alice).unwrap();
        });
        let out = tlschat(
            &pki,
            addr,
            Some("alice"),
            &[
                "udp",
                "exec",
                "--timeout",
                "500ms",
                "--retries",
                "0",
                "SUM",
                "1",
                "2",
            ],
        );
        answer.join().unwrap();
        if accepted {
            assert!(out.status.success(), "{}", text(&out.stderr));
            assert_eq!(text(&out.stdout), "3\n");
        } else {
            assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
        }
    }
}
