//! Running the server: a configuration file, certificate reload without restart, a graceful
//! drain under load, and running out of open files.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tlschat_client::{Client, ClientError};
use tlschat_proto::{ErrorCode, Event, Reply, Request};
use tlschat_tests::{binary, run, text, Pki, RawTls, ServerProcess, NO_RATE_LIMIT, STEP_TIMEOUT};

#[tokio::test]
async fn a_config_file_sets_everything_and_flags_win() {
    let pki = Pki::standard();
    let file = pki.path("tlschat.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\nserver-name = \"from-file\"\nclient-auth = \"required\"\n",
            pki.path("server.pem").display(),
            pki.path("server-key.pem").display(),
            pki.ca().display()
        ),
    )
    .unwrap();
    let config_arg = file.display().to_string();
    let server = ServerProcess::start_with(&["--config".into(), config_arg.clone()]).unwrap();
    let client = Client::connect(&pki.client_config(server.addr(), Some("alice")))
        .await
        .unwrap();
    assert_eq!(client.greeting().server, "from-file");
    assert!(
        Client::connect(&pki.client_config(server.addr(), None))
            .await
            .is_err(),
        "client-auth = required from the file"
    );

    let flagged = ServerProcess::start_with(&[
        "--config".into(),
        config_arg,
        "--server-name".into(),
        "from-flag".into(),
    ])
    .unwrap();
    let client = Client::connect(&pki.client_config(flagged.addr(), Some("alice")))
        .await
        .unwrap();
    assert_eq!(client.greeting().server, "from-flag", "the flag wins");
}

#[test]
fn a_bad_config_file_stops_startup_with_the_key_named() {
    let pki = Pki::standard();
    for (content, expected) in [
        ("listn = \"127.0.0.1:0\"\n", "listn"),
        ("idle-timeout = \"forever\"\n", "idle-timeout"),
        ("max-line-len = 1\n", "invalid value for max-line-len: 1"),
        ("rate = -5\n", "rate"),
    ] {
        let file = pki.path("bad.toml");
        std::fs::write(&file, content).unwrap();
        let out = run(
            std::process::Command::new(binary("tlschat-server"))
                .arg("--config")
                .arg(&file),
            b"",
        );
        assert_eq!(out.status.code(), Some(1), "{content}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(expected), "{content}: {stderr}");
        assert!(out.stdout.is_empty(), "never reports listening");
    }
}

#[tokio::test]
async fn certificates_reload_on_sighup_and_a_bad_file_keeps_the_old_one() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &[]);
    let mut alice = Client::connect(&pki.client_config(server.addr(), Some("alice")))
        .await
        .unwrap();
    let mut renamed = pki.client_config(server.addr(), None);
    renamed.server_name = Some("reloaded.example".into());
    assert!(
        Client::connect(&renamed).await.is_err(),
        "the old certificate lacks the name"
    );

    // Reissue the server certificate (same CA) with one more name, then SIGHUP.
    let out = run(
        std::process::Command::new(binary("tlschat-certgen"))
            .arg("--out")
            .arg(pki.dir())
            .args(["--host", "reloaded.example"]),
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Client::connect(&renamed).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "new connections get the new certificate"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.wait_for_log("certificates reloaded");
    assert_eq!(
        alice.request(&Request::Ping).await.unwrap(),
        Reply::ok("PONG"),
        "existing connections go on"
    );

    // A broken file: the admin verb reports it and the certificate in use stays.
    std::fs::write(pki.path("server.pem"), "not a certificate").unwrap();
    let mut root = Client::connect(&pki.client_config(server.addr(), Some("root")))
        .await
        .unwrap();
    let Reply::Err(err) = root.request(&Request::Reload).await.unwrap() else {
        panic!("a broken certificate must not reload");
    };
    assert_eq!(err.code, ErrorCode::ReloadFailed);
    assert!(err.message.contains("server.pem"), "{}", err.message);
    server.wait_for_log("certificate reload failed; keeping the current certificate");
    Client::connect(&renamed)
        .await
        .expect("still serving with the last good certificate");
    // The same through SIGHUP: logged (twice now), refused, and still serving.
    server.signal("HUP");
    let deadline = Instant::now() + STEP_TIMEOUT;
    while server
        .log()
        .matches("certificate reload failed; keeping the current certificate")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "SIGHUP with a broken file was not refused: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Client::connect(&renamed)
        .await
        .expect("still serving after a refused SIGHUP reload");
    let Reply::Err(err) = alice.request(&Request::Reload).await.unwrap() else {
        panic!("RELOAD is for admins");
    };
    assert_eq!(err.code, ErrorCode::Forbidden);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_delivers_every_acknowledged_message_before_exit() {
    const RECIPIENTS: usize = 100;
    let pki = Pki::standard();
    let mut server = ServerProcess::start(
        &pki,
        &[
            NO_RATE_LIMIT,
            &[
                "--max-connections-per-ip",
                "500",
                "--max-handshakes-per-ip",
                "500",
                "--drain-timeout",
                "10s",
            ],
        ]
        .concat(),
    );
    let config = pki.client_config(server.addr(), None);
    let mut recipients = tokio::task::JoinSet::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(RECIPIENTS);
    for i in 0..RECIPIENTS {
        let config = config.clone();
        let ready = ready_tx.clone();
        recipients.spawn(async move {
            let mut client = Client::connect(&config).await.unwrap();
            for request in [
                Request::Nick(format!("r{i}")),
                Request::Join("#drain".into()),
            ] {
                assert!(matches!(
                    client.request(&request).await.unwrap(),
                    Reply::Ok(_)
                ));
            }
            ready.send(()).await.unwrap();
            let mut ids = BTreeSet::new();
            let mut told = false;
            loop {
                match client.next_event().await {
                    Ok(Event::Message { id, .. }) => {
                        ids.insert(id);
                    }
                    Ok(Event::Shutdown { .. }) => told = true,
                    Ok(_) => {}
                    Err(ClientError::Closed { .. }) => return (ids, told),
                    Err(err) => panic!("recipient {i}: {err}"),
                }
            }
        });
    }
    drop(ready_tx);
    for _ in 0..RECIPIENTS {
        tokio::time::timeout(STEP_TIMEOUT, ready_rx.recv())
            .await
            .expect("every recipient joins in time")
            .expect("a recipient failed before joining");
    }

    // The sender pipelines batches and records every id the server acknowledged.
    let mut sender = RawTls::connect(&pki.client_config(server.addr(), Some("alice")))
        .await
        .unwrap();
    assert!(sender.read_line().await.unwrap().starts_with("HELLO"));
    sender.write(b"JOIN #drain\n").await.unwrap();
    assert_eq!(sender.read_line().await.unwrap(), "OK #drain");
    // 4,000 messages written back to back without waiting, so requests are in flight when
    // the signal lands; then every reply is read. The signal goes once 100 acknowledgements
    // have been read (no guessing at timing).
    let (hundred_tx, hundred_rx) = tokio::sync::oneshot::channel();
    let sending = tokio::spawn(async move {
        let mut hundred = Some(hundred_tx);
        let batch: String = (0..100)
            .map(|i| format!("MSG #drain in flight {i}\n"))
            .collect();
        for _ in 0..40 {
            if sender.write(batch.as_bytes()).await.is_err() {
                break;
            }
        }
        let (mut acked, mut refused) = (BTreeSet::new(), 0);
        while let Some(line) = sender.read_line().await {
            if let Some(id) = line.strip_prefix("OK ") {
                acked.insert(id.parse::<u64>().unwrap());
                if acked.len() == 100 {
                    if let Some(hundred) = hundred.take() {
                        let _ = hundred.send(());
                    }
                }
            } else if line.starts_with("ERR SHUTTING_DOWN") {
                refused += 1;
            } else {
                assert!(line.starts_with("EVENT "), "unexpected {line}");
            }
        }
        (acked, refused)
    });
    tokio::time::timeout(STEP_TIMEOUT, hundred_rx)
        .await
        .expect("100 acknowledgements in time")
        .expect("the sender read them");
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = server.terminate();
        (status, server)
    });
    let (status, server) = status.await.unwrap();
    assert!(status.success(), "exit status {status:?}\n{}", server.log());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "within the drain timeout"
    );
    let (acked, refused) = sending.await.unwrap();
    // How many were taken before the signal landed varies (all of them, on a fast run); the
    // rest were refused or never read, and their sender was never told OK. What matters is
    // below: everything acknowledged reached everyone.
    assert!(acked.len() >= 100, "acknowledged: {}", acked.len());
    assert!(acked.len() + refused <= 4000);
    eprintln!(
        "acknowledged before the shutdown: {} of 4000, {refused} refused",
        acked.len()
    );
    let mut checked = 0;
    while let Some(result) = tokio::time::timeout(STEP_TIMEOUT, recipients.join_next())
        .await
        .expect("every recipient sees the end in time")
    {
        let (received, told) = result.unwrap();
        assert!(told, "every recipient is told about the shutdown");
        let missing: Vec<_> = acked.difference(&received).take(5).collect();
        assert!(
            missing.is_empty(),
            "acknowledged but not delivered: {missing:?}…"
        );
        checked += 1;
    }
    assert_eq!(checked, RECIPIENTS);
}

/// Run under an open-file limit smaller than `max-connections`, the server says so at startup;
/// when the files run out it keeps running, and the clients that arrived meanwhile wait in the
/// listen backlog and are served as soon as others close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_open_files_the_server_warns_waits_and_serves_the_waiting_clients() {
    const FILES: usize = 64;
    const CLIENTS: usize = 80;
    let pki = Pki::standard();
    let mut args = pki.server_args();
    args.extend(
        [
            "--listen",
            "127.0.0.1:0",
            "--max-connections",
            "1000",
            "--max-connections-per-ip",
            "1000",
            "--max-handshakes-per-ip",
            "1000",
        ]
        .map(String::from),
    );
    let wrapper = ["sh", "-c", "ulimit -n 64 && exec \"$0\" \"$@\""];
    let server = ServerProcess::start_wrapped(&wrapper, &args).expect("server starts");
    server.wait_for_log("max-connections is above what the open-file limit allows");
    assert!(server.log().contains(&format!("open_file_limit={FILES}")));

    // More clients than the server has files for, all at once.
    let config = pki.client_config(server.addr(), None);
    let (done, mut arrived) = tokio::sync::mpsc::channel(CLIENTS);
    for _ in 0..CLIENTS {
        let (config, done) = (config.clone(), done.clone());
        tokio::spawn(async move {
            let result = async {
                let mut conn = RawTls::connect(&config).await?;
                let hello = conn.read_line().await.unwrap_or_default();
                Ok::<_, std::io::Error>((conn, hello))
            }
            .await;
            let _ = done.send(result).await;
        });
    }
    drop(done);
    tokio::task::block_in_place(|| server.wait_for_log("accept failed"));

    // Every client is served in the end: each one done closes, which frees a file for the next.
    for served in 0..CLIENTS {
        let (conn, hello) = tokio::time::timeout(STEP_TIMEOUT, arrived.recv())
            .await
            .unwrap_or_else(|_| panic!("client {served} got no answer in time"))
            .expect("a result per client (a client task panicked)")
            .unwrap_or_else(|err| panic!("client {served} was not served: {err}"));
        assert!(hello.starts_with("HELLO"), "{hello}");
        drop(conn);
    }
    let mut fresh = RawTls::connect(&config)
        .await
        .expect("served after the rush");
    assert!(fresh.read_line().await.unwrap().starts_with("HELLO"));
}

#[test]
fn a_stop_signal_right_after_the_readiness_line_drains_instead_of_killing() {
    // Bound: 5 starts, each stopped at once. The signals are watched before the server says it
    // listens, so a supervisor's immediate SIGTERM (or a terminal's SIGHUP) is never fatal.
    let pki = Pki::standard();
    for signal in ["TERM", "HUP", "TERM", "INT", "TERM"] {
        let mut server = ServerProcess::start(&pki, &[]);
        server.signal(signal);
        if signal == "HUP" {
            // A hangup reloads; the server is still there to stop.
            server.wait_for_log("SIGHUP: reloading certificates");
            assert_eq!(server.terminate().code(), Some(0));
        } else {
            assert_eq!(server.wait_exit().code(), Some(0), "after SIG{signal}");
        }
    }
}

#[tokio::test]
async fn json_logs_are_one_object_a_line_with_the_connection_number_on_its_lines() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &["--log-format", "json"]);
    let client = Client::connect(&pki.client_config(server.addr(), Some("alice")))
        .await
        .unwrap();
    client.quit().await.unwrap();
    server.wait_for_log("disconnected");
    let lines: Vec<serde_json::Value> = server
        .log()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let connection = |message: &str| {
        lines
            .iter()
            .find(|l| l["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line"))["span"]["id"]
            .clone()
    };
    let id = connection("connected");
    assert!(
        id.is_number(),
        "the connection's number is on its lines: {id}"
    );
    assert_eq!(connection("disconnected"), id, "the same connection");
    // Connections are numbered 1, 2, … in the order they came.
    assert_eq!(id, 1);
    let client = Client::connect(&pki.client_config(server.addr(), Some("bob")))
        .await
        .unwrap();
    client.quit().await.unwrap();
    server.wait_for_log("\"id\":2");
}

#[tokio::test]
async fn the_metrics_count_exactly_what_happened() {
    use tokio::io::AsyncWriteExt;
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &["--metrics", "127.0.0.1:0", "--udp", "127.0.0.1:0"]);
    let metrics = server.metrics_addr();
    // A datagram that is not one of ours.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"not a signed request", server.udp_addr())
        .unwrap();
    let http_get = tlschat_tests::http_get;
    assert_eq!(http_get(metrics, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(http_get(metrics, "/readyz"), (200, "ready\n".to_owned()));
    assert_eq!(http_get(metrics, "/nope").0, 404);

    // Something that is not TLS: a failed handshake.
    let mut junk = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    junk.write_all(b"hello, this is not TLS\r\n\r\n")
        .await
        .unwrap();
    drop(junk);
    server.wait_for_log("TLS handshake failed");
    // Three users in a room, one message, one refusal.
    let mut clients = Vec::new();
    for user in ["alice", "bob", "carol"] {
        let mut client = Client::connect(&pki.client_config(server.addr(), Some(user)))
            .await
            .unwrap();
        client.request(&Request::Join("#ops".into())).await.unwrap();
        clients.push(client);
    }
    let msg = |target: &str| Request::Msg {
        target: tlschat_proto::Target::parse(target).unwrap(),
        text: "hi".into(),
    };
    clients[0].request(&msg("#ops")).await.unwrap();
    clients[0].request(&msg("#elsewhere")).await.unwrap();
    for client in clients {
        client.quit().await.unwrap();
    }
    let deadline = Instant::now() + STEP_TIMEOUT;
    let text = loop {
        let (status, text) = http_get(metrics, "/metrics");
        assert_eq!(status, 200);
        if text.contains("tlschat_disconnects_total{code=\"quit\"} 3") || Instant::now() > deadline
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for line in [
        "tlschat_connections_total{result=\"accepted\"} 4",
        "tlschat_connections_total{result=\"handshake_failed\"} 1",
        "tlschat_handshake_failures_total{reason=\"protocol\"} 1",
        "tlschat_requests_total{verb=\"JOIN\"} 3",
        "tlschat_requests_total{verb=\"MSG\"} 2",
        "tlschat_errors_total{code=\"NOT_IN_ROOM\"} 1",
        "tlschat_messages_received_total{kind=\"room\"} 2",
        "tlschat_tls_sessions_total{version=\"TLSv1_3\",group=\"X25519MLKEM768\"} 3",
        "tlschat_handshake_duration_seconds_count 3",
        "tlschat_disconnects_total{code=\"quit\"} 3",
        "tlschat_connections_open 0",
        // The room message reached bob and carol (its sender is not sent it back), in one
        // write each; it was the one commit of a message.
        "tlschat_messages_delivered_total 2",
        "tlschat_delivery_latency_seconds_count 2",
        "tlschat_store_commit_duration_seconds_count 1",
        "tlschat_outbox_bytes_count ",
        "tlschat_rate_limited_total 0",
        "tlschat_udp_datagrams_total{result=\"malformed\"} 1",
        "tlschat_udp_datagrams_total{result=\"answered\"} 0",
        "tlschat_certificate_expiry_timestamp_seconds{cert=\"server\"}",
        "tlschat_store_bytes ",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    // The dashboard and the alerting rules use only metrics the server serves.
    let monitoring = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/monitoring");
    for file in ["grafana-dashboard.json", "alerts.yml"] {
        let used = std::fs::read_to_string(monitoring.join(file)).unwrap();
        let names: BTreeSet<&str> = used
            .match_indices("tlschat_")
            .map(|(at, _)| {
                let rest = &used[at..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .collect();
        assert!(names.len() > 5, "{file} names few metrics: {names:?}");
        for name in names {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "{file} uses {name}, which the server does not serve"
            );
        }
    }
    if let Ok(out) = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(monitoring.join("alerts.yml"))
        .output()
    {
        assert!(out.status.success(), "{}", tlschat_tests::text(&out.stdout));
    }
    // Prometheus' own checker accepts it (CI installs it; elsewhere it may be missing).
    match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut promtool) => {
            use std::io::Write;
            promtool
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = promtool.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics: {}{}",
                tlschat_tests::text(&out.stdout),
                tlschat_tests::text(&out.stderr)
            );
        }
        Err(_) => tlschat_tests::skip(
            "the_metrics_count_exactly_what_happened (promtool part)",
            "promtool is not installed",
        ),
    }
}

#[test]
fn a_service_manager_is_told_ready_once_listening_and_stopping_when_draining() {
    use std::os::unix::net::UnixDatagram;
    let pki = Pki::standard();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("notify");
    let manager = UnixDatagram::bind(&socket).unwrap();
    manager.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    let mut args = pki.server_args();
    args.extend(["--listen", "127.0.0.1:0"].map(String::from));
    let notify = format!("NOTIFY_SOCKET={}", socket.display());
    let mut server = ServerProcess::start_wrapped(&["env", &notify], &args).expect("starts");
    let mut buf = [0u8; 256];
    let n = manager.recv(&mut buf).expect("READY=1 in time");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means listening: a connection is taken at once.
    std::net::TcpStream::connect(server.addr()).expect("the listener is bound");
    assert!(server.terminate().success());
    let n = manager.recv(&mut buf).expect("STOPPING=1 in time");
    assert_eq!(&buf[..n], b"STOPPING=1");
}
