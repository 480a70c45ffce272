//! Who a connection is: the name and role in its verified client certificate, if it sent one.

use std::fmt;

use rustls::pki_types::CertificateDer;
use tlschat_proto::cert::summarize_der;
use tlschat_proto::names::{validate_nick, ADMIN_ROLE};

/// The identity of one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The user's name: the certificate's common name when verified.
    pub name: Option<String>,
    /// True when the name comes from a client certificate the CA signed.
    pub verified: bool,
    /// True when the certificate carries the admin role.
    pub admin: bool,
    /// The certificate's serial number, when verified: what a revocation names.
    pub serial: Option<Vec<u8>>,
}

impl Identity {
    /// An unverified connection with no name yet.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// The identity proven by a client certificate chain that rustls has already verified
    /// against the CA. A certificate whose common name breaks the nickname rules gives an
    /// anonymous identity (and a warning), never a half-trusted one.
    pub fn from_peer_certificates(chain: Option<&[CertificateDer<'_>]>) -> Self {
        let Some(leaf) = chain.and_then(|c| c.first()) else {
            return Self::anonymous();
        };
        let summary = match summarize_der(leaf) {
            Ok(summary) => summary,
            Err(err) => {
                tracing::warn!(error = %err, "verified client certificate could not be parsed");
                return Self::anonymous();
            }
        };
        let Some(name) = summary.common_name.filter(|n| validate_nick(n).is_ok()) else {
            tracing::warn!("client certificate has no usable common name; treated as anonymous");
            return Self::anonymous();
        };
        Self {
            name: Some(name),
            verified: true,
            admin: summary.role.as_deref() == Some(ADMIN_ROLE),
            serial: Some(summary.serial),
        }
    }

    /// The name to address this user by in replies.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or("anonymous")
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.name, self.verified, self.admin) {
            (None, _, _) => f.write_str("anonymous"),
            (Some(name), true, true) => write!(f, "{name} (verified, admin)"),
            (Some(name), true, false) => write!(f, "{name} (verified)"),
            (Some(name), false, _) => write!(f, "{name} (unverified)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_certificate_is_anonymous() {
        assert_eq!(
            Identity::from_peer_certificates(None),
            Identity::anonymous()
        );
        assert_eq!(
            Identity::from_peer_certificates(Some(&[])),
            Identity::anonymous()
        );
        assert_eq!(Identity::anonymous().display_name(), "anonymous");
    }

    #[test]
    fn an_unparsable_certificate_is_anonymous() {
        let junk = [CertificateDer::from(vec![1, 2, 3])];
        assert_eq!(
            Identity::from_peer_certificates(Some(&junk)),
            Identity::anonymous()
        );
    }
}
