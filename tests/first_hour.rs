//! What a new user trips over in the first hour, each fixed and held by a test: a server that
//! must not die with its log reader, refuse the wrong certificate, and accept host names; a
//! client that says in words what is wrong with a certificate, finds its settings without flags,
//! and exits with the documented codes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use tlschat_tests::{
    binary, text, tlschat_command, wait_timeout, Background, Pki, ServerProcess, STEP_TIMEOUT,
};

#[test]
fn the_server_drains_and_exits_0_when_its_standard_error_is_gone() {
    let pki = Pki::standard();
    let mut args = pki.server_args();
    args.extend(["--listen".to_owned(), "127.0.0.1:0".to_owned()]);
    let mut server = Command::new(binary("tlschat-server"))
        .args(&args)
        // Its default store (data/tlschat.redb) goes in the temporary folder.
        .current_dir(pki.dir())
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    let addr: std::net::SocketAddr = ready
        .trim()
        .strip_prefix("tlschat-server listening on ")
        .unwrap()
        .parse()
        .unwrap();
    // Like `serve.sh | tee log` when tee dies first: nobody reads standard error any more.
    drop(server.stderr.take());
    let listener = Background::start(tlschat_command(&pki, addr, Some("bob")).arg("listen"));
    listener.wait_for_stderr("listening");
    let kill = Command::new("kill")
        .args(["-INT", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = wait_timeout(&mut server, STEP_TIMEOUT).expect("the server exits by itself");
    assert_eq!(status.code(), Some(0), "drained, no panic");
    let (_, out) = listener.finish();
    assert!(out.is_empty() || !out.contains("panicked"), "{out}");
}

#[test]
fn a_client_certificate_is_refused_as_the_server_certificate() {
    let pki = Pki::standard();
    let failure = ServerProcess::start_with(&[
        "--cert".into(),
        pki.path("alice.pem").display().to_string(),
        "--key".into(),
        pki.path("alice-key.pem").display().to_string(),
        "--ca".into(),
        pki.ca().display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ])
    .err()
    .expect("the server must not start");
    assert_eq!(failure.status.and_then(|s| s.code()), Some(1));
    assert!(
        failure
            .stderr
            .contains("alice.pem is not a server certificate"),
        "{}",
        failure.stderr
    );
}

#[test]
fn certificates_from_another_ca_are_explained_in_words() {
    let pki = Pki::standard();
    let other = Pki::standard();
    let server = ServerProcess::start(&pki, &[]);
    // The client trusts another CA than the one that made the server's certificate.
    let server_addr = server.addr().to_string();
    let out = tlschat_at(&server_addr, &other.ca(), None, &["exec", "PING"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the server's certificate is not signed by the CA in")
            && err.contains("tlschat development CA ")
            && err.contains("another gen-certs run"),
        "{err}"
    );
    // The client's certificate comes from another CA than the server trusts.
    let out = tlschat_at(
        &server_addr,
        &pki.ca(),
        Some(other.identity("alice")),
        &["exec", "PING"],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the server rejected your certificate: it is not from the server's CA"),
        "{err}"
    );
}

#[test]
fn the_client_takes_its_settings_from_the_user_file_and_says_which_flag_is_missing() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &[]);
    let elsewhere = tempfile::tempdir().unwrap();
    // Run from a folder without certs/: the default CA is not there, and the message says so.
    let out = Command::new(binary("tlschat"))
        .current_dir(elsewhere.path())
        .env("TLSCHAT_CONFIG", elsewhere.path().join("none.toml"))
        .args(["--server", &server.addr().to_string(), "exec", "PING"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("certs/ca.pem") && err.contains("pass --ca FILE") && err.contains("none.toml"),
        "{err}"
    );
    // Set once in the user's file, nothing on the command line.
    let (cert, key) = pki.identity("alice");
    let file = elsewhere.path().join("config.toml");
    std::fs::write(
        &file,
        format!(
            "server = \"{}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            server.addr(),
            pki.ca().display(),
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let out = Command::new(binary("tlschat"))
        .current_dir(elsewhere.path())
        .env("TLSCHAT_CONFIG", &file)
        .args(["exec", "GREET"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Hello, alice!\n");
    std::fs::write(&file, "servr = \"x\"\n").unwrap();
    let out = Command::new(binary("tlschat"))
        .env("TLSCHAT_CONFIG", &file)
        .args(["exec", "GREET"])
        .output()
        .unwrap();
    assert!(text(&out.stderr).contains("servr"), "{}", text(&out.stderr));
}

#[test]
fn a_command_line_that_does_not_parse_exits_64_in_every_binary() {
    for program in ["tlschat", "tlschat-server", "tlschat-certgen"] {
        let out = Command::new(binary(program))
            .arg("--no-such-flag")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(64),
            "{program}: {}",
            text(&out.stderr)
        );
        let help = Command::new(binary(program))
            .arg("--help")
            .output()
            .unwrap();
        assert_eq!(help.status.code(), Some(0), "{program} --help");
    }
}

#[test]
fn host_names_are_accepted_and_the_port_defaults_to_6254() {
    let pki = Pki::standard();
    let mut args = pki.server_args();
    args.extend(["--listen".to_owned(), "localhost:0".to_owned()]);
    let server = ServerProcess::start_with(&args).expect("a host name to listen on");
    let port = server.addr().port();
    let out = tlschat_at(
        &format!("localhost:{port}"),
        &pki.ca(),
        None,
        &["exec", "PING"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "PONG\n");
    // Without a port, 6254: nothing listens on this loopback address, and the error names it.
    let out = tlschat_at("127.0.0.2", &pki.ca(), None, &["exec", "PING"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("127.0.0.2:6254"),
        "{}",
        text(&out.stderr)
    );
}

/// `tlschat` against `server` (as written on the command line) trusting `ca`, as the given
/// identity or anonymous; the machine's own defaults file is not read.
fn tlschat_at(
    server: &str,
    ca: &std::path::Path,
    identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
    args: &[&str],
) -> std::process::Output {
    let mut command = Command::new(binary("tlschat"));
    command
        .env("TLSCHAT_CONFIG", tlschat_tests::NO_USER_CONFIG)
        .args(["--server", server, "--ca"])
        .arg(ca)
        .args(["--connect-timeout", "5s"]);
    if let Some((cert, key)) = identity {
        command.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    command.args(args).output().unwrap()
}
