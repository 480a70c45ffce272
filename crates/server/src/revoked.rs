//! The serial numbers a revocation list revokes, as every part of the server checks them: TLS
//! sessions, signed UDP senders and published E2E keys.

use std::collections::HashSet;

use tlschat_proto::e2e::KeyBundle;

/// Serial numbers of revoked certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revoked(HashSet<Vec<u8>>);

impl Revoked {
    /// These serial numbers.
    pub fn new(serials: HashSet<Vec<u8>>) -> Self {
        Self(serials)
    }
}

impl Revoked {
    /// Whether the certificate with this serial number is revoked.
    pub fn contains(&self, serial: &[u8]) -> bool {
        self.0.contains(serial)
    }

    /// Whether this certificate (DER) is revoked; one that cannot be read is not.
    pub fn covers(&self, cert: &[u8]) -> bool {
        !self.0.is_empty()
            && tlschat_proto::cert::summarize_der(cert).is_ok_and(|c| self.contains(&c.serial))
    }

    /// Revoked serials.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What this list and `other` revoke (a certificate revoked anywhere stays revoked).
    pub fn with(&self, other: &Self) -> Self {
        Self(self.0.union(&other.0).cloned().collect())
    }
}

impl Revoked {
    /// Whether a published E2E key bundle (hex, as published) holds a revoked certificate.
    pub fn covers_bundle(&self, hex: &str) -> bool {
        !self.0.is_empty()
            && tlschat_proto::hex::decode(hex)
                .ok()
                .and_then(|bytes| KeyBundle::decode(&bytes).ok())
                .is_some_and(|bundle| self.covers(&bundle.cert))
    }
}
