//! The certificate lifecycle with the real binaries: enrolment (`tlschat enroll` on the user's
//! side, `tlschat-certgen sign` on the CA's: the key never travels) and revocation
//! (`tlschat-certgen revoke` writes the CA-signed list, the server enforces it at the handshake
//! and, on SIGHUP, closes the sessions it revokes and withdraws their published keys; a bad
//! list is refused and the old one stays).

use std::time::{Duration, Instant};

use tlschat_client::{Client, ClientError};
use tlschat_proto::{DisconnectCode, ErrorCode, Event, Reply, Request, Target};
use tlschat_tests::{
    binary, run, skip, text, tlschat_command, udp_exec, Background, Pki, ServerProcess,
    STEP_TIMEOUT,
};

fn certgen(pki: &Pki, args: &[&str]) {
    let out = run(
        std::process::Command::new(binary("tlschat-certgen"))
            .arg("--out")
            .arg(pki.dir())
            .args(args),
        b"",
    );
    assert!(
        out.status.success(),
        "certgen {args:?}: {}",
        text(&out.stderr)
    );
}

async fn connect(pki: &Pki, server: &ServerProcess, user: &str) -> Result<Client, ClientError> {
    Client::connect(&pki.client_config(server.addr(), Some(user))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_user_is_cut_off_on_reload_refused_after_and_their_key_withdrawn() {
    let pki = Pki::standard();
    certgen(&pki, &["revoke", "--refresh"]);
    let crl = pki.path("crl.pem").display().to_string();
    let server = ServerProcess::start(&pki, &["--crl", &crl, "--udp", "127.0.0.1:0"]);
    // Signed UDP requests as alice: answered until she is revoked.
    let udp_time = || udp_exec(&pki, server.udp_addr(), Some("alice"), &["TIME"]);
    let out = udp_time();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Alice publishes her E2E key (tlschat listen does), and stays connected beside her
    // other session (it gets bob's message too, and waits for a second that never comes).
    let listener = Background::start(
        tlschat_command(&pki, server.addr(), Some("alice")).args(["listen", "--count", "2"]),
    );
    listener.wait_for_stderr("listening");
    let mut alice = connect(&pki, &server, "alice")
        .await
        .expect("alice connects");
    let mut bob = connect(&pki, &server, "bob").await.expect("bob connects");
    assert!(matches!(
        bob.request(&Request::KeyGet("alice".into())).await.unwrap(),
        Reply::Ok(_)
    ));
    // Bob and alice have a conversation; carol has none with her.
    assert!(matches!(
        bob.request(&Request::Msg {
            target: Target::User("alice".into()),
            text: "lunch?".into(),
        })
        .await
        .unwrap(),
        Reply::Ok(_)
    ));
    let mut carol = connect(&pki, &server, "carol")
        .await
        .expect("carol connects");

    certgen(&pki, &["revoke", "alice", "--reason", "key-compromise"]);
    let sent = Instant::now();
    server.signal("HUP");
    // Bob's message to her comes first, then the end.
    let event = loop {
        let event = tokio::time::timeout(STEP_TIMEOUT, alice.next_event())
            .await
            .expect("told in time")
            .expect("an event");
        if !matches!(event, Event::Direct { .. }) {
            break event;
        }
    };
    assert!(
        matches!(
            &event,
            Event::Disconnect {
                code: DisconnectCode::Revoked,
                ..
            }
        ),
        "{event:?}"
    );
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "cut off {:?} after the hangup",
        sent.elapsed()
    );
    let (status, _) = listener.finish();
    assert!(!status.success(), "alice's other session was cut off too");
    // Bob, who had a conversation with her, is told; carol is not.
    let told = loop {
        let event = tokio::time::timeout(STEP_TIMEOUT, bob.next_event())
            .await
            .expect("bob is told in time")
            .expect("an event");
        if let Event::Revoked { nick, reason } = event {
            break (nick, reason);
        }
    };
    assert_eq!(told.0, "alice");
    assert!(told.1.contains("revoked"), "{}", told.1);
    assert_eq!(
        carol.request(&Request::Ping).await.unwrap(),
        Reply::ok("PONG")
    );
    assert!(
        !carol
            .drain_events()
            .iter()
            .any(|e| matches!(e, Event::Revoked { .. })),
        "carol had no conversation with alice"
    );
    // Her signed UDP requests get no reply.
    let out = udp_time();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // Nor does openssl with her certificate get past the handshake.
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok()
    {
        let (cert, key) = pki.identity("alice");
        let out = run(
            std::process::Command::new("openssl")
                .args(["s_client", "-quiet", "-connect"])
                .arg(server.addr().to_string())
                .arg("-CAfile")
                .arg(pki.ca())
                .arg("-cert")
                .arg(cert)
                .arg("-key")
                .arg(key),
            b"PING\n",
        );
        assert!(!text(&out.stdout).contains("OK PONG"));
        assert!(
            text(&out.stderr).contains("certificate revoked"),
            "{}",
            text(&out.stderr)
        );
    } else {
        skip(
            "openssl part of the revocation test",
            "openssl is not installed",
        );
    }
    // Her certificate no longer passes the handshake; bob is untouched.
    assert!(connect(&pki, &server, "alice").await.is_err());
    assert_eq!(
        bob.request(&Request::Ping).await.unwrap(),
        Reply::ok("PONG")
    );
    match bob.request(&Request::KeyGet("alice".into())).await.unwrap() {
        Reply::Err(err) => assert_eq!(err.code, ErrorCode::NoKey),
        other => panic!("alice's key is still offered: {other:?}"),
    }
    server.wait_for_log("revoked certificate: session closed");

    // A damaged list is refused on reload; the one in force stays.
    std::fs::write(
        pki.path("crl.pem"),
        "-----BEGIN X509 CRL-----\nbroken\n-----END X509 CRL-----\n",
    )
    .unwrap();
    server.signal("HUP");
    server.wait_for_log("certificate reload failed");
    assert!(
        connect(&pki, &server, "alice").await.is_err(),
        "still revoked"
    );
    let again = connect(&pki, &server, "carol")
        .await
        .expect("carol is not revoked");
    drop((again, carol));
}

#[test]
fn a_server_given_a_crl_it_cannot_use_does_not_start() {
    let pki = Pki::standard();
    let other = Pki::standard();
    certgen(&other, &["revoke", "--refresh"]);
    for (crl, expected) in [
        (pki.path("missing.pem"), "missing.pem"),
        (other.path("crl.pem"), "not issued by the CA"),
    ] {
        let mut args = pki.server_args();
        args.extend([
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--crl".to_owned(),
        ]);
        args.push(crl.display().to_string());
        let failure = ServerProcess::start_with(&args).err().expect("refused");
        assert!(failure.stderr.contains(expected), "{}", failure.stderr);
        assert_eq!(failure.status.and_then(|s| s.code()), Some(1));
    }
}

#[test]
fn enrol_sign_and_connect_without_the_key_leaving_the_users_folder() {
    let pki = Pki::standard();
    let user = tempfile::tempdir().unwrap();
    let out = run(
        std::process::Command::new(binary("tlschat"))
            .env("TLSCHAT_CONFIG", tlschat_tests::NO_USER_CONFIG)
            .args(["enroll", "dora", "--out"])
            .arg(user.path()),
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("tlschat-certgen sign"),
        "says what comes next"
    );
    // The CA's keeper signs the request (all it ever reads from the user).
    certgen(
        &pki,
        &["sign", &user.path().join("dora.csr").display().to_string()],
    );
    assert!(
        !pki.path("dora-key.pem").exists(),
        "no key on the CA's side"
    );
    std::fs::copy(pki.path("dora.pem"), user.path().join("dora.pem")).unwrap();
    let server = ServerProcess::start(&pki, &[]);
    let out = run(
        std::process::Command::new(binary("tlschat"))
            .arg("--server")
            .arg(server.addr().to_string())
            .arg("--ca")
            .arg(pki.ca())
            .arg("--cert")
            .arg(user.path().join("dora.pem"))
            .arg("--key")
            .arg(user.path().join("dora-key.pem"))
            .env("TLSCHAT_CONFIG", tlschat_tests::NO_USER_CONFIG)
            .args(["exec", "GREET"]),
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Hello, dora!"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn certificates_about_to_run_out_are_warned_of_and_an_expired_server_certificate_stops_startup() {
    // Certificates for three days: within the 14 days of --expiry-warning.
    let pki = Pki::with_args(&["--client", "alice", "--days", "3"]);
    let server = ServerProcess::start(&pki, &[]);
    server.wait_for_log("the server certificate");
    let log = server.log();
    assert!(
        log.contains("runs out on") && log.contains(" day(s)"),
        "{log}"
    );
    // The user is told too, when their own certificate runs out soon.
    let out = run(
        tlschat_command(&pki, server.addr(), Some("alice")).args(["send", "#room", "hi"]),
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("your certificate runs out on")
            && text(&out.stderr).contains("tlschat-certgen renew alice"),
        "{}",
        text(&out.stderr)
    );
    drop(server);

    // A server certificate that ran out yesterday, signed by the same CA.
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(pki.ca()).unwrap(),
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(pki.path("ca-key.pem")).unwrap())
            .unwrap(),
    )
    .unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let now = std::time::SystemTime::now();
    params.not_before = (now - Duration::from_secs(10 * 86_400)).into();
    params.not_after = (now - Duration::from_secs(86_400)).into();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(pki.path("old.pem"), cert.pem()).unwrap();
    std::fs::write(pki.path("old-key.pem"), key.serialize_pem()).unwrap();
    let args: Vec<String> = [
        "--cert",
        &pki.path("old.pem").display().to_string(),
        "--key",
        &pki.path("old-key.pem").display().to_string(),
        "--ca",
        &pki.ca().display().to_string(),
        "--listen",
        "127.0.0.1:0",
    ]
    .map(str::to_owned)
    .to_vec();
    let failure = ServerProcess::start_with(&args).err().expect("refused");
    assert_eq!(failure.status.and_then(|s| s.code()), Some(1));
    assert!(
        failure.stderr.contains("old.pem expired on") && failure.stderr.contains("renew"),
        "{}",
        failure.stderr
    );
}

#[test]
fn a_renewed_certificate_connects_and_the_old_one_still_works() {
    let pki = Pki::standard();
    std::fs::copy(pki.path("alice.pem"), pki.path("alice-old.pem")).unwrap();
    certgen(&pki, &["--days", "30", "renew", "alice"]);
    let server = ServerProcess::start(&pki, &[]);
    for cert in ["alice.pem", "alice-old.pem"] {
        let out = run(
            std::process::Command::new(binary("tlschat"))
                .env("TLSCHAT_CONFIG", tlschat_tests::NO_USER_CONFIG)
                .arg("--server")
                .arg(server.addr().to_string())
                .arg("--ca")
                .arg(pki.ca())
                .arg("--cert")
                .arg(pki.path(cert))
                .arg("--key")
                .arg(pki.path("alice-key.pem"))
                .args(["exec", "GREET"]),
            b"",
        );
        assert!(out.status.success(), "{cert}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("Hello, alice!"), "{cert}");
    }
}

#[test]
fn whoami_tells_the_name_the_certificates_end_and_the_e2e_key() {
    let pki = Pki::standard();
    let server = ServerProcess::start(&pki, &[]);
    let out =
        tlschat_tests::tlschat_with_input(&pki, server.addr(), Some("carol"), &[], b"/whoami\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("-- you are carol, verified by your client certificate (valid to "),
        "{stdout}"
    );
    let device = pki.device("carol");
    assert!(
        stdout.contains(&format!("-- your E2E key on this device ({device}): ")),
        "{stdout}"
    );
    // And the devices with a published key: this one.
    assert!(stdout.contains("-- your devices:"), "{stdout}");
    assert!(stdout.contains("(this device)"), "{stdout}");
    // Carol's first session made her E2E key, and said so; the next one uses it.
    assert!(stdout.contains("-- created your E2E key"), "{stdout}");
    let again =
        tlschat_tests::tlschat_with_input(&pki, server.addr(), Some("carol"), &[], b"/whoami\n");
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(!text(&again.stdout).contains("created your E2E key"));
}

/// Standard base64, for re-encoding a PEM block in a test.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn a_revocation_list_whose_signature_does_not_verify_is_refused() {
    use rustls_pki_types::pem::PemObject;
    let pki = Pki::standard();
    certgen(&pki, &["revoke", "alice"]);
    // Change one byte of alice's serial in the signed part: the list still parses, names the
    // right issuer, and no longer revokes alice, but its signature fails.
    let der = rustls_pki_types::CertificateRevocationListDer::from_pem_file(pki.path("crl.pem"))
        .unwrap()
        .to_vec();
    let serial = tlschat_proto::cert::summarize_crl_der(&der)
        .unwrap()
        .serials[0]
        .clone();
    let at = der
        .windows(serial.len())
        .position(|w| w == serial.as_slice())
        .expect("the serial is in the list");
    let mut forged = der.clone();
    forged[at + serial.len() - 1] ^= 0x01;
    assert!(
        tlschat_proto::cert::summarize_crl_der(&forged).is_ok(),
        "still a list"
    );
    let pem = format!(
        "-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n",
        base64(&forged)
    );
    std::fs::write(pki.path("crl.pem"), pem).unwrap();
    let mut args = pki.server_args();
    args.extend([
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--crl".to_owned(),
    ]);
    args.push(pki.path("crl.pem").display().to_string());
    let failure = ServerProcess::start_with(&args).err().expect("refused");
    assert!(
        failure.stderr.contains("signature does not verify"),
        "{}",
        failure.stderr
    );
}

#[test]
fn a_pkcs12_export_opens_with_its_password_and_only_with_it() {
    let pki = Pki::standard();
    let password_file = pki.path("p12-password");
    std::fs::write(&password_file, "correct horse battery\n").unwrap();
    let export = |password: &std::path::Path| {
        run(
            std::process::Command::new(binary("tlschat-certgen"))
                .arg("--out")
                .arg(pki.dir())
                .args(["export", "alice", "--p12", "--password-file"])
                .arg(password),
            b"",
        )
    };
    let out = export(&password_file);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bundle = pki.path("alice.p12");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&bundle).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Too short a password, or none and no terminal to ask on: refused, in words.
    let short = pki.path("short-password");
    std::fs::write(&short, "1234\n").unwrap();
    let out = export(&short);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("at least 8"),
        "{}",
        text(&out.stderr)
    );
    let out = run(
        std::process::Command::new(binary("tlschat-certgen"))
            .arg("--out")
            .arg(pki.dir())
            .args(["export", "alice", "--p12"])
            .stdin(std::process::Stdio::null()),
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--password-file"),
        "{}",
        text(&out.stderr)
    );

    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        skip(
            "a_pkcs12_export_opens_with_its_password_and_only_with_it",
            "openssl is not installed",
        );
        return;
    }
    let pkcs12 = |password: &std::path::Path| {
        run(
            std::process::Command::new("openssl")
                .args(["pkcs12", "-nodes", "-in"])
                .arg(&bundle)
                .arg("-passin")
                .arg(format!("file:{}", password.display())),
            b"",
        )
    };
    let out = pkcs12(&password_file);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let opened = text(&out.stdout);
    assert!(opened.contains("BEGIN PRIVATE KEY"), "{opened}");
    assert!(opened.contains("friendlyName: alice"), "{opened}");
    assert_eq!(
        opened.matches("BEGIN CERTIFICATE").count(),
        2,
        "alice's and the CA's"
    );
    // The key inside is alice's: its public half is her certificate's.
    let public_of = |args: &[&str], input: &[u8]| {
        text(&run(std::process::Command::new("openssl").args(args), input).stdout)
    };
    let from_bundle = public_of(&["pkey", "-pubout"], opened.as_bytes());
    let (cert, _) = pki.identity("alice");
    let from_cert = public_of(
        &[
            "x509",
            "-pubkey",
            "-noout",
            "-in",
            &cert.display().to_string(),
        ],
        b"",
    );
    assert!(from_bundle.contains("BEGIN PUBLIC KEY"), "{from_bundle}");
    assert_eq!(from_bundle, from_cert);

    // Another password fails the integrity check.
    std::fs::write(&short, "not the password\n").unwrap();
    let out = pkcs12(&short);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).to_lowercase().contains("mac verify"),
        "{}",
        text(&out.stderr)
    );
}
