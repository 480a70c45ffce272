//! Signing and verifying datagrams with certificate keys, on the same aws-lc-rs library rustls
//! uses (no second crypto stack), and checking certificates against the CA outside a handshake.
//!
//! Keys are ECDSA P-256 (what `tlschat-certgen` issues); signatures are ASN.1 DER.

use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1,
    ECDSA_P256_SHA256_ASN1_SIGNING,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tlschat_proto::cert::summarize_der;

use crate::{load_certs, load_key, load_roots, provider, PemError};

/// A key id: the first 8 bytes of SHA-256 over a SubjectPublicKeyInfo (DER).
pub type KeyId = [u8; 8];

/// Why a signing key or a peer certificate cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// A PEM file could not be loaded.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// The key is not an ECDSA P-256 key, or does not belong to the certificate.
    #[error("{0}")]
    Key(String),
    /// The certificate could not be parsed.
    #[error("unreadable certificate: {0}")]
    Certificate(String),
    /// The certificate does not verify against the CA (or for the expected name).
    #[error("certificate not trusted: {0}")]
    Untrusted(#[from] rustls::Error),
    /// The verifier could not be built.
    #[error("cannot build the certificate verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The key id of a SubjectPublicKeyInfo.
pub fn key_id(spki_der: &[u8]) -> KeyId {
    let mut id = [0; 8];
    id.copy_from_slice(&sha256(spki_der)[..8]);
    id
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// A certificate and its private key, for signing. It has no `Debug`: it holds key material.
pub struct CertKey {
    cert: CertificateDer<'static>,
    key_id: KeyId,
    key_pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl CertKey {
    /// Loads a certificate (the first in the file) and its private key, and checks they match.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, SigningError> {
        let cert = load_certs(cert_path, "certificate")?.remove(0);
        let key = load_key(key_path)?;
        Self::from_der(cert, &key, cert_path, key_path)
    }

    /// A certificate and its private key already read (from `cert_path` and `key_path`, which
    /// errors name), checked to match.
    pub fn from_der(
        cert: CertificateDer<'static>,
        key: &PrivateKeyDer<'_>,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Self, SigningError> {
        let key_pair =
            EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, key.secret_der())
                .map_err(|_| {
                SigningError::Key(format!(
                    "{} is not an ECDSA P-256 private key (signed datagrams need one)",
                    key_path.display()
                ))
            })?;
        let summary = summarize_der(&cert).map_err(|e| SigningError::Certificate(e.to_string()))?;
        if summary.public_key != key_pair.public_key().as_ref() {
            return Err(SigningError::Key(format!(
                "the key in {} does not belong to the certificate in {}",
                key_path.display(),
                cert_path.display()
            )));
        }
        Ok(Self {
            key_id: key_id(&summary.spki),
            cert,
            key_pair,
            rng: SystemRandom::new(),
        })
    }

    /// The key id others know this key by.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert
    }

    /// Signs `message`. An empty result means the signer failed (which aws-lc-rs reports only
    /// for internal errors); a receiver refuses an empty signature.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key_pair
            .sign(&self.rng, message)
            .map(|sig| sig.as_ref().to_vec())
            .unwrap_or_default()
    }
}

/// A peer's public key, from a certificate that has been checked against the CA.
#[derive(Debug, Clone)]
pub struct PeerKey {
    key_id: KeyId,
    public_key: Vec<u8>,
    name: Option<String>,
    not_after: i64,
}

impl PeerKey {
    /// The key of a certificate. Check the certificate first ([`ClientCheck`], [`ServerCheck`]).
    pub fn from_cert(der: &[u8]) -> Result<Self, SigningError> {
        let summary = summarize_der(der).map_err(|e| SigningError::Certificate(e.to_string()))?;
        Ok(Self {
            key_id: key_id(&summary.spki),
            public_key: summary.public_key,
            name: summary.common_name,
            not_after: summary.not_after,
        })
    }

    /// When the certificate expires, in seconds since the Unix epoch.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The key id.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The certificate's common name.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether `signature` is this key's ECDSA P-256 SHA-256 signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.public_key)
            .verify(message, signature)
            .is_ok()
    }
}

/// Checks client certificates against the CA, as the TLS handshake does (chain, validity,
/// client-auth usage).
#[derive(Debug, Clone)]
pub struct ClientCheck {
    verifier: Arc<dyn ClientCertVerifier>,
}

impl ClientCheck {
    /// A check against the CA certificates in `ca`.
    pub fn new(ca: &Path) -> Result<Self, SigningError> {
        Self::with_roots(Arc::new(load_roots(ca)?))
    }

    /// A check against CA certificates already read.
    pub fn with_roots(roots: Arc<RootCertStore>) -> Result<Self, SigningError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider()).build()?;
        Ok(Self { verifier })
    }

    /// Verifies a client certificate (DER) now.
    pub fn verify(&self, der: &[u8]) -> Result<(), SigningError> {
        let cert = CertificateDer::from(der.to_vec());
        self.verifier
            .verify_client_cert(&cert, &[], UnixTime::now())
            .map(|_| ())
            .map_err(SigningError::Untrusted)
    }
}

/// Checks server certificates against the CA and the expected name, as the TLS handshake does.
#[derive(Debug, Clone)]
pub struct ServerCheck {
    verifier: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCheck {
    /// A check against the CA certificates in `ca`, for a server called `name`.
    pub fn new(ca: &Path, name: ServerName<'static>) -> Result<Self, SigningError> {
        let roots = Arc::new(load_roots(ca)?);
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| SigningError::Key(e.to_string()))?;
        Ok(Self { verifier, name })
    }

    /// Verifies a server certificate (DER) now.
    pub fn verify(&self, der: &[u8]) -> Result<(), SigningError> {
        let cert = CertificateDer::from(der.to_vec());
        self.verifier
            .verify_server_cert(&cert, &[], &self.name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(SigningError::Untrusted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_pki::pki;

    #[test]
    fn a_signature_verifies_with_the_certificate_key_only() {
        let (_dir, path) = pki(&["alice", "bob"]);
        let alice = CertKey::load(&path("alice.pem"), &path("alice-key.pem")).unwrap();
        let bob = CertKey::load(&path("bob.pem"), &path("bob-key.pem")).unwrap();
        let alice_public = PeerKey::from_cert(alice.cert_der()).unwrap();
        assert_eq!(alice_public.key_id(), alice.key_id());
        assert_eq!(alice_public.name(), Some("alice"));
        // Its end of validity, for the UDP service's "expired sender" check: in the future,
        // within the few years a development certificate lasts.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let left = alice_public.not_after() - now;
        assert!(left > 86_400 && left < 20 * 365 * 86_400, "{left} s left");
        let signature = alice.sign(b"message");
        assert!(alice_public.verify(b"message", &signature));
        assert!(!alice_public.verify(b"messagE", &signature));
        assert!(!alice_public.verify(b"message", &bob.sign(b"message")));
        assert_ne!(alice.key_id(), bob.key_id());
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let (_dir, path) = pki(&["alice", "bob"]);
        let err = CertKey::load(&path("alice.pem"), &path("bob-key.pem"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn certificates_are_checked_against_the_right_ca_and_name() {
        let (_dir, path) = pki(&["alice"]);
        let (_other_dir, other) = pki(&["alice"]);
        let clients = ClientCheck::new(&path("ca.pem")).unwrap();
        let alice = CertKey::load(&path("alice.pem"), &path("alice-key.pem")).unwrap();
        let stranger = CertKey::load(&other("alice.pem"), &other("alice-key.pem")).unwrap();
        assert!(clients.verify(alice.cert_der()).is_ok());
        assert!(clients.verify(stranger.cert_der()).is_err());

        let server = CertKey::load(&path("server.pem"), &path("server-key.pem")).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        assert!(ServerCheck::new(&path("ca.pem"), name)
            .unwrap()
            .verify(server.cert_der())
            .is_ok());
        let wrong = ServerName::try_from("elsewhere.example").unwrap();
        assert!(ServerCheck::new(&path("ca.pem"), wrong)
            .unwrap()
            .verify(server.cert_der())
            .is_err());
        let ip = ServerName::try_from("127.0.0.1").unwrap();
        assert!(ServerCheck::new(&other("ca.pem"), ip)
            .unwrap()
            .verify(server.cert_der())
            .is_err());
    }
}
