use std::fs;
use std::path::Path;

use super::*;

fn options(dir: &Path) -> Options {
    let mut options = Options::new(dir);
    options.clients = vec!["alice".into(), "bob".into()];
    options.admins = vec!["root".into()];
    options
}

fn outcomes(report: &Report) -> Vec<(String, Outcome)> {
    report
        .entries
        .iter()
        .map(|e| {
            (
                e.cert.file_name().unwrap().to_string_lossy().into_owned(),
                e.outcome,
            )
        })
        .collect()
}

fn summary(dir: &Path, stem: &str) -> CertSummary {
    inspect::summarize_file(&dir.join(format!("{stem}.pem"))).unwrap()
}

#[test]
fn writes_every_documented_file() {
    let dir = tempfile::tempdir().unwrap();
    let report = generate(&options(dir.path())).unwrap();
    for name in ["ca", "server", "alice", "bob", "root"] {
        assert!(
            dir.path().join(format!("{name}.pem")).is_file(),
            "{name}.pem"
        );
        assert!(
            dir.path().join(format!("{name}-key.pem")).is_file(),
            "{name}-key.pem"
        );
    }
    assert!(report.entries.iter().all(|e| e.outcome == Outcome::Created));
}

#[cfg(unix)]
#[test]
fn private_keys_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    generate(&options(dir.path())).unwrap();
    for entry in fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let expected = if name.ends_with("-key.pem") {
            0o600
        } else {
            0o644
        };
        assert_eq!(mode, expected, "{name}");
    }
}

#[test]
fn client_certificates_carry_name_and_role() {
    let dir = tempfile::tempdir().unwrap();
    generate(&options(dir.path())).unwrap();
    let alice = summary(dir.path(), "alice");
    assert_eq!(alice.common_name.as_deref(), Some("alice"));
    assert_eq!(alice.role.as_deref(), Some(USER_ROLE));
    assert_eq!(
        summary(dir.path(), "root").role.as_deref(),
        Some(ADMIN_ROLE)
    );
}

#[test]
fn server_certificate_covers_loopback_and_extra_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new(dir.path());
    options.hosts = vec!["Chat.Example.org".into()];
    options.ips = vec!["10.1.2.3".parse().unwrap()];
    generate(&options).unwrap();
    let sans = summary(dir.path(), "server").sans;
    for name in [
        "localhost",
        "127.0.0.1",
        "::1",
        "chat.example.org",
        "10.1.2.3",
    ] {
        assert!(
            sans.iter().any(|s| s == name),
            "{name} missing from {sans:?}"
        );
    }
}

#[test]
fn a_second_run_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    generate(&options(dir.path())).unwrap();
    let before = fs::read(dir.path().join("alice-key.pem")).unwrap();
    let report = generate(&options(dir.path())).unwrap();
    assert!(
        report.entries.iter().all(|e| e.outcome == Outcome::Kept),
        "{:?}",
        outcomes(&report)
    );
    assert_eq!(fs::read(dir.path().join("alice-key.pem")).unwrap(), before);
}

#[test]
fn new_clients_are_signed_by_the_kept_ca() {
    let dir = tempfile::tempdir().unwrap();
    generate(&Options::new(dir.path())).unwrap();
    let mut options = Options::new(dir.path());
    options.clients = vec!["carol".into()];
    let report = generate(&options).unwrap();
    assert_eq!(
        outcomes(&report),
        vec![
            ("ca.pem".into(), Outcome::Kept),
            ("server.pem".into(), Outcome::Kept),
            ("carol.pem".into(), Outcome::Created),
        ]
    );
}

#[test]
fn a_new_host_or_role_reissues_only_that_certificate() {
    let dir = tempfile::tempdir().unwrap();
    generate(&options(dir.path())).unwrap();
    let mut options = options(dir.path());
    options.hosts = vec!["chat.lan".into()];
    options.admins.push("alice".into());
    let report = generate(&options).unwrap();
    let outcomes = outcomes(&report);
    assert!(outcomes.contains(&("ca.pem".into(), Outcome::Kept)));
    assert!(outcomes.contains(&("server.pem".into(), Outcome::Reissued)));
    assert!(outcomes.contains(&("alice.pem".into(), Outcome::Reissued)));
    assert!(outcomes.contains(&("bob.pem".into(), Outcome::Kept)));
    assert_eq!(
        summary(dir.path(), "alice").role.as_deref(),
        Some(ADMIN_ROLE)
    );
}

#[test]
fn force_replaces_everything() {
    let dir = tempfile::tempdir().unwrap();
    generate(&options(dir.path())).unwrap();
    let before = fs::read(dir.path().join("ca.pem")).unwrap();
    let mut options = options(dir.path());
    options.force = true;
    let report = generate(&options).unwrap();
    assert!(report
        .entries
        .iter()
        .all(|e| e.outcome == Outcome::Reissued));
    assert_ne!(fs::read(dir.path().join("ca.pem")).unwrap(), before);
}

#[test]
fn a_lost_ca_reissues_every_certificate() {
    let dir = tempfile::tempdir().unwrap();
    generate(&options(dir.path())).unwrap();
    fs::remove_file(dir.path().join("ca.pem")).unwrap();
    fs::remove_file(dir.path().join("ca-key.pem")).unwrap();
    let report = generate(&options(dir.path())).unwrap();
    let outcomes = outcomes(&report);
    assert_eq!(outcomes[0], ("ca.pem".into(), Outcome::Created));
    assert!(
        outcomes[1..].iter().all(|(_, o)| *o == Outcome::Reissued),
        "{outcomes:?}"
    );
}

#[test]
fn refuses_half_pairs_and_bad_names_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    generate(&Options::new(dir.path())).unwrap();
    fs::remove_file(dir.path().join("server-key.pem")).unwrap();
    let err = generate(&Options::new(dir.path())).unwrap_err();
    assert!(matches!(err, CertgenError::HalfPair { .. }), "{err}");
    assert!(err.to_string().contains("server.pem"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    for bad in ["bad name", "server", "../evil"] {
        let mut options = Options::new(empty.path());
        options.clients = vec![bad.into()];
        let err = generate(&options).unwrap_err();
        assert!(
            matches!(err, CertgenError::BadUserName { .. }),
            "{bad}: {err}"
        );
    }
    let mut options = Options::new(empty.path());
    options.hosts = vec!["bad host!".into()];
    assert!(matches!(
        generate(&options),
        Err(CertgenError::BadHostName(_))
    ));
    assert_eq!(
        fs::read_dir(empty.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn garbage_in_an_existing_file_is_reported_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    generate(&Options::new(dir.path())).unwrap();
    fs::write(dir.path().join("ca.pem"), "not a certificate").unwrap();
    let err = generate(&Options::new(dir.path())).unwrap_err();
    assert!(matches!(err, CertgenError::Unreadable { .. }), "{err}");
    assert_eq!(
        fs::read_to_string(dir.path().join("ca.pem")).unwrap(),
        "not a certificate"
    );
}

#[test]
fn a_new_ca_also_reissues_users_not_named_this_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Options::new(dir.path());
    first.clients = vec!["carol".into()];
    first.admins = vec!["dave".into()];
    generate(&first).unwrap();
    let mut forced = Options::new(dir.path());
    forced.force = true;
    let report = generate(&forced).unwrap();
    let outcomes = outcomes(&report);
    assert!(
        outcomes.contains(&("carol.pem".into(), Outcome::Reissued)),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&("dave.pem".into(), Outcome::Reissued)),
        "{outcomes:?}"
    );
    assert_eq!(
        summary(dir.path(), "dave").role.as_deref(),
        Some(ADMIN_ROLE)
    );
}

#[cfg(unix)]
#[test]
fn a_link_planted_under_the_temporary_name_does_not_receive_the_ca_key() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let attacker = tempfile::tempdir().unwrap();
    let trap = attacker.path().join("trap");
    fs::write(&trap, "").unwrap();
    // The name the temporary file of ca-key.pem used to get: `.NAME.tmp-PID`, this process.
    let planted = dir
        .path()
        .join(format!(".ca-key.pem.tmp-{}", std::process::id()));
    symlink(&trap, &planted).unwrap();
    generate(&options(dir.path())).unwrap();
    assert_eq!(fs::read_to_string(&trap).unwrap(), "", "the CA key leaked");
    assert!(fs::read_to_string(dir.path().join("ca-key.pem"))
        .unwrap()
        .contains("PRIVATE KEY"));
}

#[cfg(unix)]
#[test]
fn an_output_folder_others_can_write_to_is_refused_before_any_key_is_made() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let err = generate(&options(dir.path())).unwrap_err().to_string();
    assert!(err.contains("other users can write"), "{err}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_kept_server_certificate_is_described_by_what_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = options(dir.path());
    first.hosts = vec!["chat.lan".into()];
    generate(&first).unwrap();
    // A rerun without --host keeps the certificate, which still names chat.lan.
    let report = generate(&options(dir.path())).unwrap();
    let server = report
        .entries
        .iter()
        .find(|e| e.cert.ends_with("server.pem"))
        .unwrap();
    assert_eq!(server.outcome, Outcome::Kept);
    assert!(
        server.description.contains("chat.lan"),
        "{}",
        server.description
    );
}
