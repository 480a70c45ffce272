//! The rustls server configuration: the shared policy of `tlschat-tls` plus the server's
//! certificate and its client certificate verifier (none, optional or required).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::UnixTime;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls::{RootCertStore, ServerConfig};
use std::collections::HashSet;
use tlschat_tls::signing::PeerKey;
use tlschat_tls::PemError;

use crate::config::{ClientAuth, CrlSetting};
use crate::revoked::Revoked;
use crate::settings::Config;
use crate::udp::UdpKeys;

/// Why the TLS configuration could not be built. Each names the file at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// A certificate, key or CA file could not be used.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// The key does not belong to the certificate, or rustls refused the combination.
    #[error("the key in {} does not fit the certificate in {}", .key.display(), .cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
    /// The certificate cannot serve TLS: a client certificate, or one valid for no name.
    #[error("{} {reason}", .cert.display())]
    NotAServerCertificate {
        /// The certificate file.
        cert: PathBuf,
        /// What is wrong, and what to give instead.
        reason: &'static str,
    },
    /// rustls refused the client verifier or protocol versions.
    #[error("invalid TLS settings")]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier could not be built.
    #[error("cannot build the client certificate verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The server certificate has expired.
    #[error(
        "the server certificate {} expired on {when}: renew it (tlschat-certgen renew server) \
         and start again",
        .cert.display()
    )]
    Expired {
        /// The certificate file.
        cert: PathBuf,
        /// When it expired (RFC 3339).
        when: String,
    },
    /// The revocation list cannot be used.
    #[error("cannot use the revocation list {}: {reason}", .path.display())]
    Crl {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Session tickets sent after each TLS 1.3 handshake (rustls sends 2 by default).
pub const TLS13_TICKETS: usize = 1;

/// The server's certificate chain, its key and the CA roots, read once (at start and at each
/// reload) for both TLS and the signer of UDP replies.
pub struct Credentials {
    /// The certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key. No `Debug`: it is key material.
    pub key: PrivateKeyDer<'static>,
    /// The CA certificates client certificates must chain to.
    pub roots: Arc<RootCertStore>,
    /// The serial numbers they revoke: live sessions, UDP senders and published keys of these
    /// are cut off on reload.
    pub revoked: Arc<Revoked>,
    /// When the server certificate, the CA and the revocation list run out.
    pub expiries: Vec<Expiry>,
}

/// Something that runs out: a certificate (its end of validity) or a revocation list (its next
/// update).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// What it is, for people: "server certificate", "CA certificate", "revocation list".
    pub what: &'static str,
    /// Its file.
    pub path: PathBuf,
    /// When, seconds since the Unix epoch.
    pub at: i64,
}

impl Expiry {
    /// A warning when it runs out within `window` of `now` (seconds), or has already.
    pub fn warning(&self, now: i64, window: std::time::Duration) -> Option<String> {
        let window = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
        let when = chrono::DateTime::<chrono::Utc>::from_timestamp(self.at, 0).map_or_else(
            || self.at.to_string(),
            |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
        );
        let left = self.at - now;
        if left < 0 {
            Some(format!(
                "the {} {} ran out on {when}",
                self.what,
                self.path.display()
            ))
        } else if left <= window {
            Some(format!(
                "the {} {} runs out on {when}, in {} day(s)",
                self.what,
                self.path.display(),
                left / 86_400
            ))
        } else {
            None
        }
    }
}

impl Credentials {
    /// The signer of UDP replies and the CA check of UDP requests, from these credentials.
    pub fn udp_keys(&self, config: &Config) -> Result<UdpKeys, tlschat_tls::signing::SigningError> {
        UdpKeys::new(
            self.chain[0].clone(),
            &self.key,
            self.roots.clone(),
            self.revoked.clone(),
            (&config.cert, &config.key),
        )
    }

    /// Reads the certificate, key and CA files named in `config`, and refuses a certificate
    /// that cannot serve TLS (clients would all fail against it).
    pub fn load(config: &Config) -> Result<Self, TlsSetupError> {
        let chain = tlschat_tls::load_certs(&config.cert, "certificate")?;
        let server_expiry = check_server_certificate(&config.cert, &chain[0])?;
        let (revoked, crl_expiry) = load_crl(config)?;
        let mut expiries = vec![Expiry {
            what: "server certificate",
            path: config.cert.clone(),
            at: server_expiry,
        }];
        for ca in tlschat_tls::load_certs(&config.ca, "CA certificate")? {
            if let Ok(summary) = tlschat_proto::cert::summarize_der(&ca) {
                expiries.push(Expiry {
                    what: "CA certificate",
                    path: config.ca.clone(),
                    at: summary.not_after,
                });
            }
        }
        expiries.extend(crl_expiry);
        Ok(Self {
            chain,
            key: tlschat_tls::load_key(&config.key)?,
            roots: Arc::new(tlschat_tls::load_roots(&config.ca)?),
            revoked: Arc::new(revoked),
            expiries,
        })
    }
}

/// Reads the revocation list `--crl` names, if any, and checks it was issued by the CA (a list
/// from another CA would make every client's status unknown, and so refuse them all). A list
/// past its next update is still enforced (revoked stays revoked), with a warning.
type LoadedCrl = (Revoked, Option<Expiry>);

fn load_crl(config: &Config) -> Result<LoadedCrl, TlsSetupError> {
    let path = match &config.crl {
        CrlSetting::None => return Ok((Revoked::default(), None)),
        CrlSetting::WhenPresent(path) if !path.exists() => return Ok((Revoked::default(), None)),
        CrlSetting::WhenPresent(path) | CrlSetting::File(path) => path,
    };
    let refuse = |reason: String| TlsSetupError::Crl {
        path: path.clone(),
        reason,
    };
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| refuse(e.to_string()))?;
    let (revoked, next) = check_crls(&crls, &config.ca).map_err(refuse)?;
    tracing::info!(crl = %path.display(), revoked = revoked.len(), "revocation list loaded");
    let expiry = next.map(|at| Expiry {
        what: "revocation list",
        path: path.clone(),
        at,
    });
    Ok((Revoked::new(revoked), expiry))
}

/// The serials of revocation lists another node of a cluster loaded (PEM, as it read its
/// file), once their signatures verify with the CA in `ca`: a list nobody with the CA's key
/// signed changes nothing.
///
/// # Errors
///
/// Why the text is not a list the CA issued.
pub fn revoked_from_pem(pem: &[u8], ca: &std::path::Path) -> Result<Revoked, String> {
    let crls = CertificateRevocationListDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    check_crls(&crls, ca).map(|(revoked, _)| Revoked::new(revoked))
}

/// Checks that each list was issued and signed by a CA certificate in `ca`; returns every
/// revoked serial and the latest next update.
fn check_crls(
    crls: &[CertificateRevocationListDer<'_>],
    ca: &std::path::Path,
) -> Result<(HashSet<Vec<u8>>, Option<i64>), String> {
    if crls.is_empty() {
        return Err("it holds no revocation list (X509 CRL) block".into());
    }
    // Each CA certificate's subject, and its key to check the list's signature with.
    let ca_subjects: Vec<(Vec<u8>, PeerKey)> = tlschat_tls::load_certs(ca, "CA certificate")
        .map_err(|e| e.to_string())?
        .iter()
        .filter_map(|c| {
            let subject = tlschat_proto::cert::summarize_der(c).ok()?.subject;
            Some((subject, PeerKey::from_cert(c).ok()?))
        })
        .collect();
    let mut revoked = HashSet::new();
    let mut next = None;
    for crl in crls {
        let summary = tlschat_proto::cert::summarize_crl_der(crl).map_err(|e| e.to_string())?;
        if !ca_subjects
            .iter()
            .any(|(subject, _)| *subject == summary.issuer)
        {
            return Err(format!("it was not issued by the CA in {}", ca.display()));
        }
        // Its signature is checked here, once: handshakes then only look a serial up.
        let signed_by_ca = ca_subjects.iter().any(|(subject, key)| {
            *subject == summary.issuer && key.verify(&summary.signed, &summary.signature)
        });
        if !signed_by_ca {
            return Err(format!(
                "its signature does not verify with the key of the CA in {}",
                ca.display()
            ));
        }
        revoked.extend(summary.serials);
        next = summary.next_update.or(next);
    }
    Ok((revoked, next))
}

/// Refuses a leaf certificate without server-auth usage, valid for no host name or address, or
/// expired; returns when it expires.
fn check_server_certificate(path: &std::path::Path, leaf: &[u8]) -> Result<i64, TlsSetupError> {
    let refuse = |reason| TlsSetupError::NotAServerCertificate {
        cert: path.to_owned(),
        reason,
    };
    let summary = tlschat_proto::cert::summarize_der(leaf)
        .map_err(|_| refuse("is not a readable X.509 certificate"))?;
    if !summary.server_auth {
        return Err(refuse(
            "is not a server certificate (its usage is client authentication only): give the \
             server's certificate, such as certs/server.pem from scripts/gen-certs.sh",
        ));
    }
    if summary.sans.is_empty() {
        return Err(refuse(
            "names no host or address (no subject alternative names), so no client can verify \
             it: make one with tlschat-certgen --host NAME --ip ADDR",
        ));
    }
    if summary.not_after < chrono::Utc::now().timestamp() {
        return Err(TlsSetupError::Expired {
            cert: path.to_owned(),
            when: chrono::DateTime::<chrono::Utc>::from_timestamp(summary.not_after, 0)
                .map_or_else(|| summary.not_after.to_string(), |t| t.to_rfc3339()),
        });
    }
    Ok(summary.not_after)
}

/// The CA's client verifier, then a look-up of the certificate's serial in the revocation list.
///
/// rustls' own CRL support (`with_crls`) checks the list's signature on every handshake, which
/// means hashing the whole list each time (a 10,000-serial list made handshakes 1.5 times as
/// costly); the list's signature is checked once when it is loaded instead, and a handshake
/// costs a set look-up.
#[derive(Debug)]
struct RevocationChecking {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: Arc<Revoked>,
}

impl ClientCertVerifier for RevocationChecking {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.revoked.covers(end_entity) {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Builds the rustls configuration from `config`'s policy and the credentials read from its
/// files.
pub fn server_config(
    config: &Config,
    credentials: &Credentials,
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let chain = credentials.chain.clone();
    let key = credentials.key.clone_key();
    let provider = tlschat_tls::provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(tlschat_tls::versions(config.tls12))?;
    let builder = match config.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        mode => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(credentials.roots.clone(), provider);
            let verifier = match mode {
                ClientAuth::Optional => verifier.allow_unauthenticated().build()?,
                _ => verifier.build()?,
            };
            if credentials.revoked.is_empty() {
                builder.with_client_cert_verifier(verifier)
            } else {
                builder.with_client_cert_verifier(Arc::new(RevocationChecking {
                    inner: verifier,
                    revoked: credentials.revoked.clone(),
                }))
            }
        }
    };
    let mut tls =
        builder
            .with_single_cert(chain, key)
            .map_err(|source| TlsSetupError::KeyMismatch {
                cert: config.cert.clone(),
                key: config.key.clone(),
                source,
            })?;
    tls.alpn_protocols = vec![tlschat_tls::ALPN.to_vec()];
    // One ticket per handshake is enough: a client uses one per reconnection and gets a fresh
    // one then. (Resumption state stays in rustls's session cache of the last 256 sessions.)
    tls.send_tls13_tickets = TLS13_TICKETS;
    Ok(Arc::new(tls))
}

#[cfg(test)]
mod tests {
    use tlschat_certgen::revoke::{revoke, Target, CRL_FILE};
    use tlschat_certgen::{generate, Options};

    use super::revoked_from_pem;

    /// A CA with the user carol in a temporary folder, carol revoked.
    fn ca_revoking_carol() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut options = Options::new(dir.path());
        options.clients = vec!["carol".into()];
        generate(&options).unwrap();
        revoke(dir.path(), &Target::Name("carol".into()), "key-compromise").unwrap();
        dir
    }

    #[test]
    fn a_list_shared_by_another_node_counts_only_when_our_ca_signed_it() {
        let ours = ca_revoking_carol();
        let ca = ours.path().join("ca.pem");
        let pem = std::fs::read(ours.path().join(CRL_FILE)).unwrap();
        assert_eq!(revoked_from_pem(&pem, &ca).unwrap().len(), 1);
        // The same list from another CA (a node, or NATS, that is not ours): nothing revoked.
        let theirs = ca_revoking_carol();
        let forged = std::fs::read(theirs.path().join(CRL_FILE)).unwrap();
        let err = revoked_from_pem(&forged, &ca).unwrap_err();
        assert!(err.contains("not issued by the CA"), "{err}");
        let err = revoked_from_pem(b"not a list", &ca).unwrap_err();
        assert!(err.contains("no revocation list"), "{err}");
    }
}
