//! End-to-end tests of the core: every verb, pipelining, error paths, TLS policy, mutual TLS,
//! startup errors and graceful shutdown, against the real `tlschat-server` binary.

use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tlschat_client::{Client, ClientError};
use tlschat_proto::{ErrorCode, Event, Reply, Request, ServerLine};
use tlschat_tests::{run, skip, text, tlschat, tlschat_with_input, Pki, RawTls, ServerProcess};

fn ok(reply: Reply) -> String {
    match reply {
        Reply::Ok(payload) => payload,
        Reply::Err(err) => panic!("expected OK, got {err}"),
    }
}

fn err_code(reply: Reply) -> ErrorCode {
    match reply {
        Reply::Err(err) => err.code,
        Reply::Ok(payload) => panic!("expected ERR, got OK {payload}"),
    }
}

#[test]
fn exec_answers_every_stateless_verb() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &[]);
    let exec = |args: &[&str]| {
        let out = tlschat(
            &pki,
            server.addr(),
            Some("alice"),
            &[&["exec"], args].concat(),
        );
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout).trim_end().to_owned()
    };

    let time = exec(&["TIME"]);
    assert!(
        time.len() == 24 && time.as_bytes()[10] == b'T' && time.ends_with('Z'),
        "not RFC 3339 UTC with milliseconds: {time}"
    );
    assert_eq!(exec(&["ECHO", "hello  there"]), "hello  there");
    assert_eq!(exec(&["ECHO hello  there"]), "hello  there");
    assert_eq!(exec(&["SUM", "1", "2", "3"]), "6");
    assert_eq!(exec(&["sum -10 4"]), "-6");
    let lucky: u32 = exec(&["LUCKY"]).parse().expect("LUCKY answers a number");
    assert!((1..=100).contains(&lucky));
    assert_eq!(exec(&["GREET"]), "Hello, alice!");
    assert_eq!(exec(&["GREET", "Ada"]), "Hello, Ada!");
    let number = exec(&["NUMBER", "42"]);
    assert!(
        number.starts_with("client=alice number=42 server=tlschat server_number="),
        "{number}"
    );
    let fields: Vec<i64> = number
        .split(' ')
        .filter_map(|f| f.split_once('=')?.1.parse().ok())
        .collect();
    assert_eq!(
        fields[0] + fields[1],
        fields[2],
        "sum of both numbers: {number}"
    );
    assert_eq!(exec(&["PING"]), "PONG");
    let help = exec(&["HELP"]);
    for verb in tlschat_proto::Verb::ALL {
        assert!(help.contains(verb.name()), "HELP lacks {verb}: {help}");
    }
    assert_eq!(
        exec(&["HELP", "sum"]),
        "SUM n1 [n2 ...]: Adds up 64-bit integers; overflow is an error."
    );
    assert_eq!(exec(&["QUIT"]), "BYE");
}

#[test]
fn exec_exit_codes_say_what_went_wrong() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &[]);

    let out = tlschat(&pki, server.addr(), None, &["exec", "NUMBER", "500"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("ERR OUT_OF_RANGE"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());

    let out = tlschat(&pki, server.addr(), None, &["exec", "FROBNICATE"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("ERR UNKNOWN_VERB"),
        "{}",
        text(&out.stderr)
    );

    // Nothing listens there: a port released by a listener could be taken again meanwhile,
    // so a fixed loopback address of ours with a port no test uses.
    let closed: std::net::SocketAddr = "127.0.0.2:9".parse().unwrap();
    let out = tlschat(&pki, closed, None, &["exec", "TIME"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot connect"),
        "{}",
        text(&out.stderr)
    );

    let other = Pki::standard();
    let out = tlschat(&other, server.addr(), None, &["exec", "TIME"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a server from another CA must not be trusted"
    );
    assert!(
        text(&out.stderr).contains("TLS handshake"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn quiz_checks_the_answer_within_one_session() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &[]);
    let mut client = Client::connect(&pki.client_config(server.addr(), None))
        .await
        .unwrap();
    assert_eq!(
        err_code(client.request(&Request::Answer(3)).await.unwrap()),
        ErrorCode::NoQuiz
    );

    let problem = ok(client.request(&Request::Quiz).await.unwrap());
    let terms: Vec<i64> = problem
        .trim_start_matches("What is ")
        .split(['+', '?'])
        .filter_map(|t| t.trim().parse().ok())
        .collect();
    assert_eq!(terms.len(), 2, "{problem}");
    let right = terms[0] + terms[1];
    let verdict = ok(client.request(&Request::Answer(right)).await.unwrap());
    assert!(verdict.starts_with("correct"), "{verdict}");

    client.request(&Request::Quiz).await.unwrap();
    let verdict = ok(client.request(&Request::Answer(-1)).await.unwrap());
    assert!(verdict.starts_with("wrong"), "{verdict}");
    client.quit().await.unwrap();
}

#[tokio::test]
async fn pipelined_requests_get_one_reply_each_in_order() {
    let pki = Pki::standard();
    // A thousand at once is over the default burst: lift it (rate limits have their own test).
    let server = ServerProcess::start(
        &pki,
        &[
            "--rate-burst",
            "2000",
            "--rate-bytes",
            "1000000000",
            "--rate-bytes-burst",
            "1000000000",
        ],
    );
    let mut raw = RawTls::connect(&pki.client_config(server.addr(), None))
        .await
        .unwrap();
    assert!(raw
        .read_line()
        .await
        .unwrap()
        .starts_with("HELLO tlschat/1 tlschat "));

    raw.write(b"PING\r\nSUM 1 2\nBOGUS\n\nECHO a\nNUMBER 0\nsum 5\r\n")
        .await
        .unwrap();
    let expected_starts = [
        "OK PONG",
        "OK 3",
        "ERR UNKNOWN_VERB",
        "OK a",
        "ERR OUT_OF_RANGE",
        "OK 5",
    ];
    for expected in expected_starts {
        let line = raw.read_line().await.unwrap();
        assert!(
            line.starts_with(expected),
            "expected {expected:?}, got {line:?}"
        );
    }

    // A thousand requests in one write: a thousand replies, in order.
    let burst: String = (0..1000).map(|i| format!("ECHO {i}\n")).collect();
    raw.write(burst.as_bytes()).await.unwrap();
    for i in 0..1000 {
        assert_eq!(raw.read_line().await.unwrap(), format!("OK {i}"));
    }
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_the_connection_goes_on() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &["--max-line-len", "1024"]);
    let mut raw = RawTls::connect(&pki.client_config(server.addr(), None))
        .await
        .unwrap();
    raw.read_line().await.unwrap();

    let cases: [(&[u8], &str); 7] = [
        (b"SUM\n", "ERR BAD_ARGS usage: SUM"),
        (b"SUM 1 two\n", "ERR BAD_ARGS \"two\" is not an integer"),
        (b"SUM 9223372036854775807 1\n", "ERR OVERFLOW"),
        (b"NUMBER 101\n", "ERR OUT_OF_RANGE"),
        (b"ECHO \xff\xfe\n", "ERR BAD_UTF8"),
        (b"ECHO a\0b\n", "ERR BAD_CHARS"),
        (b"TIME now\n", "ERR BAD_ARGS usage: TIME"),
    ];
    for (input, expected) in cases {
        raw.write(input).await.unwrap();
        let line = raw.read_line().await.unwrap();
        assert!(
            line.starts_with(expected),
            "{input:?}: expected {expected:?}, got {line:?}"
        );
        raw.write(b"PING\n").await.unwrap();
        assert_eq!(
            raw.read_line().await.unwrap(),
            "OK PONG",
            "served after {input:?}"
        );
    }

    // One byte over the limit, then a line far over it sent in pieces: one error each, and the
    // overlong bytes never reach the next request.
    raw.write(&[&[b'E'; 1025][..], b"\n"].concat())
        .await
        .unwrap();
    assert!(raw
        .read_line()
        .await
        .unwrap()
        .starts_with("ERR LINE_TOO_LONG"));
    for _ in 0..64 {
        raw.write(&[b'x'; 4096]).await.unwrap();
    }
    assert!(raw
        .read_line()
        .await
        .unwrap()
        .starts_with("ERR LINE_TOO_LONG"));
    raw.write(b"tail of the long line\nPING\n").await.unwrap();
    assert_eq!(raw.read_line().await.unwrap(), "OK PONG");

    // A line exactly at the limit is fine.
    let at_limit = format!("ECHO {}\n", "y".repeat(1024 - 5));
    raw.write(at_limit.as_bytes()).await.unwrap();
    assert_eq!(
        raw.read_line().await.unwrap(),
        format!("OK {}", "y".repeat(1019))
    );
}

#[tokio::test]
async fn tls12_only_clients_are_refused_unless_allowed() {
    let pki = Pki::standard();
    let config = pki.client_config("127.0.0.1:1".parse().unwrap(), None);
    let roots = tlschat_tls::load_roots(&pki.ca()).unwrap();
    let tls12_only = Arc::new(
        rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );

    let strict = ServerProcess::start(&pki, &[]);
    let mut config_strict = config.clone();
    config_strict.server = strict.addr().to_string();
    let refused = RawTls::connect_with(&config_strict, tls12_only.clone()).await;
    assert!(refused.is_err(), "TLS 1.2 must be refused by default");

    let lenient = ServerProcess::start(&pki, &["--tls12"]);
    let mut config_lenient = config;
    config_lenient.server = lenient.addr().to_string();
    let mut raw = RawTls::connect_with(&config_lenient, tls12_only)
        .await
        .unwrap();
    assert!(raw.read_line().await.unwrap().starts_with("HELLO"));
}

#[tokio::test]
async fn the_client_negotiates_tls13_with_post_quantum_key_exchange() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &[]);
    let client = Client::connect(&pki.client_config(server.addr(), None))
        .await
        .unwrap();
    let info = client.tls_info();
    assert_eq!(info.version, Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(info.key_exchange, Some(rustls::NamedGroup::X25519MLKEM768));
    assert_eq!(client.greeting().version, "tlschat/1");
}

#[tokio::test]
async fn required_client_auth_accepts_only_certificates_from_the_ca() {
    let pki = Pki::standard();
    let stranger = Pki::standard();
    let server = ServerProcess::start(&pki, &["--client-auth", "required"]);

    let mut alice = Client::connect(&pki.client_config(server.addr(), Some("alice")))
        .await
        .unwrap();
    assert!(
        alice.greeting().text.contains("alice (verified)"),
        "{:?}",
        alice.greeting()
    );
    assert_eq!(
        ok(alice.request(&Request::Greet(None)).await.unwrap()),
        "Hello, alice!"
    );

    // TLS 1.3 client auth fails after the client's side of the handshake: the refusal shows as
    // a handshake error or as the connection closing before the greeting.
    let anonymous = Client::connect(&pki.client_config(server.addr(), None)).await;
    assert!(anonymous.is_err(), "no certificate must be refused");

    let mut foreign = pki.client_config(server.addr(), None);
    let (cert, key) = stranger.identity("alice");
    foreign = foreign.with_identity(cert, key);
    assert!(
        Client::connect(&foreign).await.is_err(),
        "another CA's certificate must be refused"
    );

    server.wait_for_log("TLS handshake failed");
    alice.quit().await.unwrap();
}

#[tokio::test]
async fn optional_and_none_client_auth_modes() {
    let pki = Pki::standard();
    let optional = ServerProcess::start(&pki, &[]);
    let bob = Client::connect(&pki.client_config(optional.addr(), Some("bob")))
        .await
        .unwrap();
    assert!(bob.greeting().text.contains("bob (verified)"));
    let anon = Client::connect(&pki.client_config(optional.addr(), None))
        .await
        .unwrap();
    assert!(anon.greeting().text.contains("anonymous"));

    let none = ServerProcess::start(&pki, &["--client-auth", "none"]);
    let bob = Client::connect(&pki.client_config(none.addr(), Some("bob")))
        .await
        .unwrap();
    assert!(
        bob.greeting().text.contains("anonymous"),
        "certificates are not asked for"
    );
}

#[tokio::test]
async fn sigterm_drains_clients_and_exits_zero() {
    let pki = Pki::standard();
    let mut server = ServerProcess::start(&pki, &[]);
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut client = Client::connect(&pki.client_config(server.addr(), None))
            .await
            .unwrap();
        assert_eq!(ok(client.request(&Request::Ping).await.unwrap()), "PONG");
        clients.push(client);
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = server.terminate();
        (status, server)
    });
    for client in &mut clients {
        let event = client.next_event().await.unwrap();
        assert!(matches!(event, Event::Shutdown { .. }), "{event:?}");
        assert!(matches!(
            client.next_line().await,
            Err(ClientError::Closed { .. })
        ));
    }
    let (status, server) = status.await.unwrap();
    assert!(status.success(), "exit status {status:?}\n{}", server.log());
}

#[tokio::test]
async fn admin_shutdown_is_refused_to_users_and_drains_for_admins() {
    let pki = Pki::standard();
    let mut server = ServerProcess::start(&pki, &[]);
    let mut bob = Client::connect(&pki.client_config(server.addr(), Some("bob")))
        .await
        .unwrap();
    assert_eq!(
        err_code(bob.request(&Request::Shutdown).await.unwrap()),
        ErrorCode::Forbidden
    );

    let mut root = Client::connect(&pki.client_config(server.addr(), Some("root")))
        .await
        .unwrap();
    assert_eq!(
        ok(root.request(&Request::Shutdown).await.unwrap()),
        "shutting down"
    );
    let Event::Shutdown { reason } = bob.next_event().await.unwrap() else {
        panic!("bob must be told");
    };
    assert_eq!(reason, "shutdown requested by root");
    let status = tokio::task::spawn_blocking(move || server.wait_exit())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let out = tlschat(
        &pki,
        "127.0.0.1:1".parse().unwrap(),
        None,
        &["exec", "PING"],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn a_silent_connection_is_dropped_at_the_handshake_timeout() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &["--handshake-timeout", "300ms"]);
    let mut tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut tcp, &mut buf),
    )
    .await
    .expect("the server must close the silent connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    // And it keeps serving.
    let out = tlschat(&pki, server.addr(), None, &["exec", "PING"]);
    assert!(out.status.success());
}

#[test]
fn startup_errors_name_the_file_or_address() {
    let pki = Pki::standard();
    let other = Pki::standard();
    let mut args = pki.server_args();
    args.extend(["--listen".into(), "127.0.0.1:0".into()]);

    let mut missing_key = args.clone();
    missing_key[3] = pki.path("nope-key.pem").display().to_string();
    let failure = ServerProcess::start_with(&missing_key)
        .err()
        .expect("must not start");
    assert!(!failure.status.expect("exited").success());
    assert!(
        failure.stderr.contains("nope-key.pem"),
        "{}",
        failure.stderr
    );

    let mut mismatch = args.clone();
    mismatch[3] = other.path("server-key.pem").display().to_string();
    let failure = ServerProcess::start_with(&mismatch)
        .err()
        .expect("must not start");
    assert!(
        failure.stderr.contains("does not fit the certificate"),
        "{}",
        failure.stderr
    );

    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let mut in_use = pki.server_args();
    in_use.extend(["--listen".into(), addr.clone()]);
    let failure = ServerProcess::start_with(&in_use)
        .err()
        .expect("must not start");
    assert!(
        failure.stderr.contains(&format!("cannot listen on {addr}")),
        "{}",
        failure.stderr
    );
}

#[test]
fn the_chat_client_answers_piped_commands_in_order() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &[]);
    let input = b"/ping\n/greet\n/sum 2 2\n/quote ECHO raw\n/quote NUMBER 500\n";
    let out = tlschat_with_input(&pki, server.addr(), Some("carol"), &[], input);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let replies: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("-- ") || l.starts_with("!! "))
        .collect();
    assert!(replies[0].starts_with("-- connected to"), "{stdout}");
    let intro = replies
        .iter()
        .position(|l| l.contains("/help for commands"))
        .expect("the introduction ends with the help hint");
    assert_eq!(
        &replies[intro + 1..],
        [
            "-- PONG",
            "-- Hello, carol!",
            "-- 4",
            "-- OK raw",
            "!! OUT_OF_RANGE 500 is out of range: NUMBER takes 1 to 100",
        ],
        "{stdout}"
    );
}

#[test]
fn openssl_s_client_can_speak_the_protocol_by_hand() {
    if Command::new("openssl").arg("version").output().is_err() {
        skip(
            "openssl_s_client_can_speak_the_protocol_by_hand",
            "openssl is not installed",
        );
        return;
    }
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &[]);
    let out = run(
        Command::new("openssl")
            .args(["s_client", "-quiet", "-connect"])
            .arg(server.addr().to_string())
            .arg("-CAfile")
            .arg(pki.ca()),
        b"SUM 1 2 3\nQUIT\n",
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("HELLO tlschat/1 tlschat"),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("OK 6\nOK BYE\n"), "{stdout}");

    let out = run(
        Command::new("openssl")
            .args(["s_client", "-tls1_2", "-connect"])
            .arg(server.addr().to_string())
            .arg("-CAfile")
            .arg(pki.ca()),
        b"PING\n",
    );
    assert!(
        !text(&out.stdout).contains("OK PONG"),
        "TLS 1.2 must be refused by default"
    );
    // Refused for the version, not for any other reason openssl could have failed.
    assert!(
        text(&out.stderr).contains("alert protocol version"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn server_lines_parse_as_protocol() {
    // The greeting the binary sends is what the protocol crate documents.
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &["--server-name", "chat.example"]);
    let mut raw_config = pki.client_config(server.addr(), None);
    raw_config.server_name = None;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let first = runtime.block_on(async {
        let mut raw = RawTls::connect(&raw_config).await.unwrap();
        raw.read_line().await.unwrap()
    });
    match ServerLine::parse(&first) {
        Ok(ServerLine::Hello(greeting)) => assert_eq!(greeting.server, "chat.example"),
        other => panic!("not a greeting: {other:?}"),
    }
}
