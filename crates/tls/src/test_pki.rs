//! Certificates for unit tests, made in a temporary directory.

use std::path::PathBuf;

use tlschat_certgen::{generate, Options};

/// A CA, a server certificate and one client certificate per name; the closure gives a
/// file's path (`ca.pem`, `alice.pem`, `alice-key.pem`…).
pub(crate) fn pki(clients: &[&str]) -> (tempfile::TempDir, impl Fn(&str) -> PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new(dir.path());
    options.clients = clients.iter().map(|c| c.to_string()).collect();
    generate(&options).unwrap();
    let root = dir.path().to_owned();
    (dir, move |file: &str| root.join(file))
}
