//! Where to connect and with which certificates, and the rustls client configuration.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tlschat_tls::PemError;

use crate::error::ClientError;

/// Default server address (the port defaults to 6254 when not given).
pub const DEFAULT_SERVER: &str = "127.0.0.1:6254";

/// Default CA file.
pub const DEFAULT_CA: &str = "certs/ca.pem";

/// Default time allowed to connect and finish the TLS handshake: 10 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How far ahead clients warn that their own certificate runs out: 14 days.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);

/// How to reach and verify a server, and who to be.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of the server.
    pub server: String,
    /// More servers (`host:port`), tried in order when `server` cannot be reached: the nodes
    /// of a cluster, or a standby.
    pub alternates: Vec<String>,
    /// Name to verify the server certificate against; the host part of `server` when `None`.
    pub server_name: Option<String>,
    /// CA certificate the server's certificate must chain to.
    pub ca: PathBuf,
    /// Client certificate, for mutual TLS (with `key`).
    pub cert: Option<PathBuf>,
    /// Client private key (with `cert`).
    pub key: Option<PathBuf>,
    /// Time allowed to connect and finish the handshake.
    pub connect_timeout: Duration,
    /// Also offer TLS 1.2.
    pub allow_tls12: bool,
    /// Longest line accepted from the server, in bytes.
    pub max_line_len: usize,
    /// The E2E private key file; next to `cert` when `None`.
    pub e2e_key: Option<PathBuf>,
    /// The remembered E2E key fingerprints; next to `cert` when `None`.
    pub known_keys: Option<PathBuf>,
    /// This device's name for its E2E key, when the key is made (after this host when
    /// `None`).
    pub device: Option<String>,
}

impl ClientConfig {
    /// A configuration for `server` trusting `ca`, with no client certificate.
    pub fn new(server: impl Into<String>, ca: impl Into<PathBuf>) -> Self {
        Self {
            server: server.into(),
            alternates: Vec::new(),
            server_name: None,
            ca: ca.into(),
            cert: None,
            key: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            allow_tls12: false,
            // Replies echo requests, so accept a little more than a request may hold.
            max_line_len: tlschat_proto::limits::DEFAULT_MAX_LINE_LEN * 2,
            e2e_key: None,
            known_keys: None,
            device: None,
        }
    }

    /// Uses a client certificate and key (mutual TLS).
    pub fn with_identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.cert = Some(cert.into());
        self.key = Some(key.into());
        self
    }

    /// The user name in the client certificate (its common name), if one is configured and
    /// readable. Only for display: the server decides identity from the verified certificate.
    pub fn certificate_name(&self) -> Option<String> {
        let cert = self.cert.as_ref()?;
        let chain = tlschat_tls::load_certs(cert, "client certificate").ok()?;
        tlschat_proto::cert::summarize_der(chain.first()?)
            .ok()?
            .common_name
    }

    /// When the client certificate runs out, seconds since the Unix epoch (`None` without one).
    pub fn certificate_expiry(&self) -> Option<i64> {
        let cert = self.cert.as_ref()?;
        let chain = tlschat_tls::load_certs(cert, "client certificate").ok()?;
        Some(
            tlschat_proto::cert::summarize_der(chain.first()?)
                .ok()?
                .not_after,
        )
    }

    /// A warning when the client certificate runs out within [`EXPIRY_WARNING`] of `now`.
    pub fn certificate_expiry_warning(&self, now: i64) -> Option<String> {
        let at = self.certificate_expiry()?;
        let left = at - now;
        if left > EXPIRY_WARNING.as_secs() as i64 {
            return None;
        }
        let when = chrono::DateTime::<chrono::Utc>::from_timestamp(at, 0)
            .map_or_else(|| at.to_string(), |t| t.format("%Y-%m-%d").to_string());
        let name = self.certificate_name().unwrap_or_else(|| "NAME".to_owned());
        Some(format!(
            "your certificate runs out on {when} (in {} day(s)): ask whoever keeps the CA for a \
             renewal (tlschat-certgen renew {name})",
            left.max(0) / 86_400
        ))
    }

    /// Where the E2E files are: as set, or next to the client certificate. `None` without a
    /// certificate.
    pub fn e2e_paths(&self) -> Option<E2ePaths> {
        let mut paths = E2ePaths::beside(self.cert.as_ref()?);
        if let Some(key) = &self.e2e_key {
            paths.key = key.clone();
        }
        if let Some(known) = &self.known_keys {
            paths.known_keys = known.clone();
        }
        Some(paths)
    }

    /// The subject common name of the (first) CA certificate, to tell CAs apart in messages.
    pub fn ca_subject(&self) -> Option<String> {
        let certs = tlschat_tls::load_certs(&self.ca, "CA certificate").ok()?;
        tlschat_proto::cert::summarize_der(certs.first()?)
            .ok()?
            .common_name
    }

    /// Every server to try, in order: `server`, then the alternates.
    pub fn servers(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.server.as_str()).chain(self.alternates.iter().map(String::as_str))
    }

    /// The name the server certificate must carry.
    pub fn verify_name(&self) -> Result<ServerName<'static>, ClientError> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => self
                .server
                .parse::<tlschat_proto::addr::HostPort>()
                .map_or_else(|_| self.server.clone(), |addr| addr.host),
        };
        ServerName::try_from(name.clone()).map_err(|_| ClientError::ServerName(name))
    }

    /// Builds the rustls configuration: the shared TLS policy, the CA, and the client
    /// certificate if one is set.
    pub fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, ClientError> {
        if self.cert.is_some() != self.key.is_some() {
            return Err(ClientError::ClientCert(
                "--cert and --key go together".to_owned(),
            ));
        }
        let roots = tlschat_tls::load_roots(&self.ca).map_err(pem_error)?;
        let builder = rustls::ClientConfig::builder_with_provider(tlschat_tls::provider())
            .with_protocol_versions(tlschat_tls::versions(self.allow_tls12))
            .map_err(|e| ClientError::ClientCert(e.to_string()))?
            .with_root_certificates(roots);
        let mut tls = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain =
                    tlschat_tls::load_certs(cert, "client certificate").map_err(pem_error)?;
                let key_der = tlschat_tls::load_key(key).map_err(pem_error)?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    ClientError::ClientCert(format!(
                        "the key in {} does not fit the certificate in {}: {e}",
                        key.display(),
                        cert.display()
                    ))
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        tls.alpn_protocols = vec![tlschat_tls::ALPN.to_vec()];
        Ok(Arc::new(tls))
    }
}

fn pem_error(err: PemError) -> ClientError {
    match err {
        PemError::Load { what, path, reason } => ClientError::Pem { what, path, reason },
        PemError::BadCa { path, source } => ClientError::BadCa { path, source },
        other => ClientError::ClientCert(other.to_string()),
    }
}

/// The E2E files of a user.
#[derive(Debug, Clone)]
pub struct E2ePaths {
    /// The private key.
    pub key: PathBuf,
    /// The remembered fingerprints.
    pub known_keys: PathBuf,
}

impl E2ePaths {
    /// Next to the certificate `dir/name.pem`: `dir/name-e2e-key` and `dir/name-known-keys`.
    pub fn beside(cert: &std::path::Path) -> Self {
        let stem = cert
            .file_stem()
            .map_or_else(|| "tlschat".into(), |s| s.to_string_lossy().into_owned());
        let dir = cert.parent().unwrap_or_else(|| std::path::Path::new("."));
        Self {
            key: dir.join(format!("{stem}-e2e-key")),
            known_keys: dir.join(format!("{stem}-known-keys")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verify_name_comes_from_the_address() {
        let config = ClientConfig::new("[::1]:1", "ca.pem");
        assert!(matches!(config.verify_name(), Ok(ServerName::IpAddress(_))));
        let mut config = ClientConfig::new("10.0.0.1:1", "ca.pem");
        config.server_name = Some("chat.lan".into());
        assert!(matches!(config.verify_name(), Ok(ServerName::DnsName(_))));
    }

    #[test]
    fn a_missing_ca_or_a_certificate_without_a_key_is_refused() {
        let mut config = ClientConfig::new("127.0.0.1:1", "/nonexistent/ca.pem");
        let err = config.tls_config().unwrap_err();
        assert!(matches!(err, ClientError::Pem { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        config.cert = Some("alice.pem".into());
        let err = config.tls_config().unwrap_err();
        assert!(matches!(err, ClientError::ClientCert(_)), "{err}");
    }
}
