//! The shell scripts: `scripts/gen-certs.sh`, which a new user runs first, the checks
//! `scripts/bench-hold.sh` makes before it builds anything, `scripts/serve.sh` and
//! `scripts/cluster.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;

use tlschat_tests::{binary, run, text};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn gen_certs(args: &[&str]) -> String {
    let bin_dir = binary("tlschat-certgen").parent().unwrap().to_owned();
    let out = run(
        Command::new("bash")
            .arg(repo_root().join("scripts/gen-certs.sh"))
            .args(args)
            .env("TLSCHAT_BIN_DIR", bin_dir),
        b"",
    );
    assert!(
        out.status.success(),
        "gen-certs.sh {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn gen_certs_makes_the_demo_set_once_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap();
    let first = gen_certs(&["--out", out_dir]);
    for file in ["ca", "server", "alice", "bob", "admin"] {
        assert!(
            dir.path().join(format!("{file}.pem")).is_file(),
            "{file}.pem\n{first}"
        );
        assert!(
            dir.path().join(format!("{file}-key.pem")).is_file(),
            "{file}-key.pem"
        );
    }
    assert_eq!(first.matches("created").count(), 5, "{first}");
    assert!(!first.contains("PRIVATE KEY"), "keys are never printed");

    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let second = gen_certs(&["--out", out_dir]);
    assert_eq!(second.matches("kept").count(), 5, "idempotent:\n{second}");
    assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca);

    let third = gen_certs(&["--out", out_dir, "--client", "carol", "--ip", "192.0.2.7"]);
    assert!(
        third.contains("created") && third.contains("carol.pem"),
        "{third}"
    );
    assert!(
        third
            .lines()
            .any(|l| l.starts_with("reissued") && l.contains("server.pem")),
        "{third}"
    );

    let forced = gen_certs(&["--out", out_dir, "--force"]);
    assert_eq!(
        forced.matches("reissued").count(),
        6,
        "carol too:\n{forced}"
    );
    assert_ne!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca);
}

/// The hold benchmark needs an open file per connection on each side; below that it stops at
/// once (before building anything) and says which limit and how to raise it or run fewer.
#[test]
fn bench_hold_stops_with_the_fix_named_when_the_file_limit_is_too_low() {
    let script = repo_root().join("scripts/bench-hold.sh");
    let under_limit = |connections: &str| {
        run(
            Command::new("sh")
                .args(["-c", "ulimit -n 4000 && exec bash \"$0\""])
                .arg(&script)
                .env("CONNECTIONS", connections),
            b"",
        )
    };
    let out = under_limit("50000");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let message = text(&out.stderr);
    assert!(message.contains("51000 open files"), "{message}");
    assert!(message.contains("hard limit is 4000"), "{message}");
    assert!(message.contains("CONNECTIONS=3000"), "{message}");
    assert!(out.stdout.is_empty());

    let out = under_limit("many");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("CONNECTIONS must be a positive number"));
}

#[test]
fn certgen_exits_quietly_when_its_reader_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    // Like `tlschat-certgen … | true`: the pipe's reader is gone before the report is printed.
    let mut child = Command::new(binary("tlschat-certgen"))
        .args(["--client", "a", "--client", "b", "--out"])
        .arg(dir.path().join("certs"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        text(&out.stderr)
    );
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        dir.path().join("certs/b-key.pem").is_file(),
        "the files are written all the same"
    );
}

#[test]
fn serve_sh_stops_the_server_when_its_terminal_hangs_up() {
    let pki = tlschat_tests::Pki::standard();
    let bin_dir = binary("tlschat-server").parent().unwrap().to_owned();
    let mut serve = Command::new("bash")
        .arg(repo_root().join("scripts/serve.sh"))
        .args(pki.server_args())
        .args(["--listen", "127.0.0.1:0", "--store"])
        .arg(pki.path("store.redb"))
        .env("TLSCHAT_BIN_DIR", &bin_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(serve.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert!(ready.starts_with("tlschat-server listening on"), "{ready}");
    // The terminal goes away: the shell running serve.sh gets SIGHUP.
    let hup = Command::new("kill")
        .args(["-HUP", &serve.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let status = tlschat_tests::wait_timeout(&mut serve, tlschat_tests::STEP_TIMEOUT)
        .expect("serve.sh and its server stop on hangup");
    assert_eq!(status.code(), Some(0));
    let mut log = String::new();
    std::io::Read::read_to_string(&mut serve.stderr.take().unwrap(), &mut log).unwrap();
    assert!(log.contains("connect with: "), "{log}");
    assert!(
        log.contains("stopped"),
        "the server drained and stopped: {log}"
    );
}

#[tokio::test]
async fn cluster_sh_starts_nodes_that_share_a_room_and_stops_them_all() {
    use std::io::BufRead;
    let test = "cluster_sh_starts_nodes_that_share_a_room_and_stops_them_all";
    if Command::new("nats-server")
        .arg("--version")
        .output()
        .is_err()
    {
        tlschat_tests::skip(test, "nats-server is not installed");
        return;
    }
    let pki = tlschat_tests::Pki::standard();
    let bin_dir = binary("tlschat-server").parent().unwrap().to_owned();
    let data = tempfile::tempdir().unwrap();
    let mut script = Command::new("bash")
        .arg(repo_root().join("scripts/cluster.sh"))
        .env("TLSCHAT_BIN_DIR", &bin_dir)
        .env("NODES", "2")
        .env("BASE_PORT", "0")
        .env("NATS_PORT", "-1")
        .env("CLUSTER_DIR", data.path())
        .env("CERTS", pki.dir())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It says where the nodes are once they all listen.
    let stderr = script.stderr.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    let mut log = Vec::new();
    let servers = loop {
        let line = seen
            .recv_timeout(tlschat_tests::STEP_TIMEOUT)
            .unwrap_or_else(|_| panic!("cluster.sh said: {log:?}"));
        if let Some(rest) = line.split("--server ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
        log.push(line);
    };
    let addrs: Vec<std::net::SocketAddr> = servers.split(',').map(|a| a.parse().unwrap()).collect();
    assert_eq!(addrs.len(), 2, "{servers}");
    let connect = |addr, user| {
        let config = pki.client_config(addr, Some(user));
        async move { tlschat_client::Client::connect(&config).await.unwrap() }
    };
    let mut alice = connect(addrs[0], "alice").await;
    let mut bob = connect(addrs[1], "bob").await;
    for client in [&mut alice, &mut bob] {
        tlschat_tests::ok(client, tlschat_proto::Request::Join("#demo".into())).await;
    }
    let hello = tlschat_proto::Request::Msg {
        target: tlschat_proto::Target::parse("#demo").unwrap(),
        text: "hello across nodes".into(),
    };
    tlschat_tests::ok(&mut alice, hello).await;
    loop {
        let event = tokio::time::timeout(tlschat_tests::STEP_TIMEOUT, bob.next_event())
            .await
            .expect("bob hears alice in time")
            .unwrap();
        if let tlschat_proto::Event::Message { text, .. } = event {
            assert_eq!(text, "hello across nodes");
            break;
        }
    }
    // Ctrl-C stops every part, and the script ends cleanly.
    let int = Command::new("kill")
        .args(["-INT", &script.id().to_string()])
        .status()
        .unwrap();
    assert!(int.success());
    let status = tlschat_tests::wait_timeout(&mut script, tlschat_tests::STEP_TIMEOUT)
        .expect("cluster.sh stops");
    assert_eq!(status.code(), Some(0));
    let left = tokio::time::timeout(tlschat_tests::STEP_TIMEOUT, bob.next_event()).await;
    assert!(
        !matches!(left, Ok(Ok(tlschat_proto::Event::Message { .. }))),
        "the nodes stopped: {left:?}"
    );
}
