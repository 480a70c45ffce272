//! The TLS policy tlschat's server and client share, in one place.
//!
//! - One crypto provider: aws-lc-rs ([`provider`]), whose default key exchange offers the
//!   post-quantum hybrid X25519MLKEM768 first.
//! - TLS 1.3 only, unless TLS 1.2 is asked for explicitly ([`versions`]).
//! - ALPN `tlschat/1`.
//! - PEM files read through rustls-pki-types' `PemObject` ([`load_certs`], [`load_key`],
//!   [`load_roots`]), with errors that name the file.
//!
//! - [`signing`]: datagram signatures with certificate keys, and certificate checks against
//!   the CA outside a handshake (for signed UDP).
//! - [`e2e`]: end-to-end encrypted direct messages (HPKE), with keys published under the
//!   certificate's signature.
//!
//! What this crate does not do: build a server or client configuration (each side does, with
//! its own verifier), or touch sockets.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod e2e;
pub mod signing;
#[cfg(test)]
mod test_pki;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{RootCertStore, SupportedProtocolVersion};

/// The ALPN identifier both sides offer.
pub const ALPN: &[u8] = tlschat_proto::ALPN;

/// Why a PEM file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    /// The file could not be read or holds nothing of the expected kind.
    #[error("cannot load {what} from {}: {reason}", .path.display())]
    Load {
        /// What was expected ("certificate", "private key", "CA certificate").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The CA file holds a certificate rustls will not use as a trust anchor.
    #[error("cannot use the CA certificate in {}", .path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
}

/// SHA-256 of a certificate (DER): its fingerprint, as `openssl x509 -fingerprint -sha256`
/// shows it.
pub fn certificate_fingerprint(der: &[u8]) -> [u8; 32] {
    signing::sha256(der)
}

/// The one crypto provider of the workspace.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// The protocol versions to offer: TLS 1.3 alone, or with TLS 1.2 when `allow_tls12`.
pub fn versions(allow_tls12: bool) -> &'static [&'static SupportedProtocolVersion] {
    static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
    static TLS13_AND_12: &[&SupportedProtocolVersion] =
        &[&rustls::version::TLS13, &rustls::version::TLS12];
    if allow_tls12 {
        TLS13_AND_12
    } else {
        TLS13_ONLY
    }
}

/// Loads every certificate in a PEM file; a file with none is an error.
pub fn load_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|err| pem_error(what, path, err))?;
    if certs.is_empty() {
        return Err(pem_error(what, path, pem::Error::NoItemsFound));
    }
    Ok(certs)
}

/// Loads the first private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_file(path).map_err(|err| pem_error("private key", path, err))
}

/// Loads the CA certificates a peer must chain to.
pub fn load_roots(path: &Path) -> Result<RootCertStore, PemError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path, "CA certificate")? {
        roots.add(cert).map_err(|source| PemError::BadCa {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

fn pem_error(what: &'static str, path: &Path, err: pem::Error) -> PemError {
    let reason = match err {
        pem::Error::Io(io) => io.to_string(),
        pem::Error::NoItemsFound => format!("the file holds no PEM {what}"),
        other => other.to_string(),
    };
    PemError::Load {
        what,
        path: path.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = load_key(&missing).unwrap_err().to_string();
        assert!(
            err.contains("missing.pem") && err.contains("private key"),
            "{err}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        let err = load_certs(&empty, "certificate").unwrap_err().to_string();
        assert!(
            err.contains("empty.pem") && err.contains("holds no PEM"),
            "{err}"
        );
        assert!(load_roots(&empty).is_err());
    }

    #[test]
    fn tls12_is_only_offered_on_request() {
        assert_eq!(versions(false).len(), 1);
        assert_eq!(versions(false)[0].version, rustls::ProtocolVersion::TLSv1_3);
        assert_eq!(versions(true).len(), 2);
    }

    #[test]
    fn the_provider_prefers_post_quantum_hybrid_key_exchange() {
        let provider = provider();
        assert_eq!(
            provider.kx_groups[0].name(),
            rustls::NamedGroup::X25519MLKEM768
        );
    }
}
