//! The rustls server configuration: the shared policy of `tlschat-tls` plus the server's
//! certificate and its client certificate verifier (none, optional or required).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tlschat_tls::PemError;

use crate::config::ClientAuth;
use crate::settings::Config;

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
    /// rustls refused the client verifier or protocol versions.
    #[error("invalid TLS settings")]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier could not be built.
    #[error("cannot build the client certificate verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Session tickets sent after each TLS 1.3 handshake (rustls sends 2 by default).
pub const TLS13_TICKETS: usize = 1;

/// Builds the rustls configuration from the certificate, key and CA files in `config`.
pub fn server_config(config: &Config) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let chain = tlschat_tls::load_certs(&config.cert, "certificate")?;
    let key = tlschat_tls::load_key(&config.key)?;
    let provider = tlschat_tls::provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(tlschat_tls::versions(config.tls12))?;
    let builder = match config.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        mode => {
            let roots = Arc::new(tlschat_tls::load_roots(&config.ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let verifier = match mode {
                ClientAuth::Optional => verifier.allow_unauthenticated().build()?,
                _ => verifier.build()?,
            };
            builder.with_client_cert_verifier(verifier)
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
