//! What a tlschat certificate says: the user's name, role and the names it is valid for.
//!
//! Certificates carry identity the same way everywhere: the subject common name (CN) is the
//! user's nickname and the organizational unit (OU, [`ROLE_ATTRIBUTE`](crate::names::ROLE_ATTRIBUTE))
//! is the role. `tlschat-certgen` writes them; the server reads them from verified peers.
//! This module only parses: it does not verify signatures or validity (rustls does that).

use std::net::IpAddr;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The parts of a certificate tlschat uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertSummary {
    /// The subject common name (CN), if any.
    pub common_name: Option<String>,
    /// The subject organizational unit (OU), which carries the role, if any.
    pub role: Option<String>,
    /// DNS names (lower-cased) and IP addresses from the subject alternative names, as text.
    pub sans: Vec<String>,
    /// The SubjectPublicKeyInfo, DER: what key ids are computed over.
    pub spki: Vec<u8>,
    /// The public key itself (the SubjectPublicKeyInfo's bit string): for an EC key, the point.
    pub public_key: Vec<u8>,
    /// The end of the validity period, seconds since the Unix epoch.
    pub not_after: i64,
    /// Whether the certificate may serve TLS: its extended key usage allows `serverAuth` (or
    /// any usage), or it has no extended key usage at all.
    pub server_auth: bool,
    /// The serial number, as encoded (big-endian bytes): what a revocation list names.
    pub serial: Vec<u8>,
    /// The subject name, DER: compared with a revocation list's issuer.
    pub subject: Vec<u8>,
}

/// What a certificate revocation list (CRL) says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrlSummary {
    /// The issuer name, DER.
    pub issuer: Vec<u8>,
    /// The serial numbers revoked (big-endian bytes, as in certificates).
    pub serials: Vec<Vec<u8>>,
    /// When the next list is due, seconds since the Unix epoch, if it says.
    pub next_update: Option<i64>,
    /// The signed part (`tbsCertList`), DER, and the signature over it: checked against the
    /// CA's key once, when the list is loaded.
    pub signed: Vec<u8>,
    /// The signature.
    pub signature: Vec<u8>,
}

/// Summarizes one DER-encoded CRL (its signature is checked by rustls, not here).
pub fn summarize_crl_der(der: &[u8]) -> Result<CrlSummary, CertParseError> {
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der)
        .map_err(|e| CertParseError(e.to_string()))?;
    Ok(CrlSummary {
        issuer: crl.issuer().as_raw().to_vec(),
        serials: crl
            .iter_revoked_certificates()
            .map(|revoked| revoked.raw_serial().to_vec())
            .collect(),
        next_update: crl.next_update().map(|t| t.timestamp()),
        signed: crl.tbs_cert_list.as_ref().to_vec(),
        signature: crl.signature_value.data.to_vec(),
    })
}

/// A certificate that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a parsable X.509 certificate: {0}")]
pub struct CertParseError(String);

/// Summarizes one DER-encoded certificate.
pub fn summarize_der(der: &[u8]) -> Result<CertSummary, CertParseError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertParseError(e.to_string()))?;
    let subject = cert.subject();
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_owned);
    let role = subject
        .iter_organizational_unit()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_owned);
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(dns) => sans.push(dns.to_ascii_lowercase()),
                GeneralName::IPAddress(bytes) => sans.extend(ip_text(bytes)),
                _ => {}
            }
        }
    }
    let server_auth = match cert.extended_key_usage() {
        Ok(Some(eku)) => eku.value.server_auth || eku.value.any,
        Ok(None) => true,
        Err(_) => false,
    };
    let spki = cert.public_key();
    Ok(CertSummary {
        server_auth,
        common_name,
        role,
        sans,
        spki: spki.raw.to_vec(),
        public_key: spki.subject_public_key.data.to_vec(),
        not_after: cert.validity().not_after.timestamp(),
        serial: cert.raw_serial().to_vec(),
        subject: subject.as_raw().to_vec(),
    })
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    let ip: IpAddr = match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok()?.into(),
        16 => <[u8; 16]>::try_from(bytes).ok()?.into(),
        _ => return None,
    };
    Some(ip.to_string())
}

/// A time (seconds since 1970) as the UTC day it falls on, `YYYY-MM-DD`: how certificate
/// dates are shown.
pub fn date(secs: i64) -> String {
    // Days to a civil date (H. Hinnant's algorithm, proleptic Gregorian calendar).
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(summarize_der(b"").is_err());
        assert!(summarize_der(&[0x30, 0x82, 0xff, 0xff, 0x00]).is_err());
    }

    proptest::proptest! {
        /// What arrives in a datagram as a certificate is read without a panic, whatever it
        /// is: random bytes, or bytes behind a DER SEQUENCE header of any stated length.
        #[test]
        fn any_bytes_are_summarized_or_refused_never_a_panic(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1200),
            len in proptest::prelude::any::<u16>(),
        ) {
            let _ = summarize_der(&body);
            let mut der = vec![0x30, 0x82];
            der.extend_from_slice(&len.to_be_bytes());
            der.extend_from_slice(&body);
            let _ = summarize_der(&der);
        }
    }

    /// A self-signed certificate for `names` with these extended key usages.
    fn certificate(names: &[&str], usages: Vec<rcgen::ExtendedKeyUsagePurpose>) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationalUnitName, "admin");
        params.extended_key_usages = usages;
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_certificate_is_summarized_with_its_names_role_and_usage() {
        use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        let der = certificate(&["Chat.LAN", "192.0.2.7", "::1"], vec![ServerAuth]);
        let summary = summarize_der(&der).unwrap();
        assert_eq!(summary.common_name.as_deref(), Some("alice"));
        assert_eq!(summary.role.as_deref(), Some("admin"));
        assert_eq!(summary.sans, ["chat.lan", "192.0.2.7", "::1"]);
        assert!(summary.server_auth);
        assert!(!summary.spki.is_empty() && !summary.public_key.is_empty());
        assert!(summary.not_after > 0);
        assert!(!summary.serial.is_empty() && !summary.subject.is_empty());
        let client = summarize_der(&certificate(&["x"], vec![ClientAuth])).unwrap();
        assert!(!client.server_auth, "client authentication only");
        let both = summarize_der(&certificate(&["x"], vec![ClientAuth, ServerAuth])).unwrap();
        assert!(both.server_auth);
        let none = summarize_der(&certificate(&["x"], vec![])).unwrap();
        assert!(none.server_auth, "no extended key usage: any usage");
    }

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(1_798_761_599), "2026-12-31");
        assert_eq!(date(-1), "1969-12-31");
    }

    #[test]
    fn a_revocation_list_is_read_for_its_issuer_serials_and_next_update() {
        let mut ca = rcgen::CertificateParams::default();
        ca.distinguished_name.push(rcgen::DnType::CommonName, "ca");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&key).unwrap();
        let issuer = rcgen::Issuer::new(ca, key);
        let now = std::time::SystemTime::now();
        let crl = rcgen::CertificateRevocationListParams {
            this_update: now.into(),
            next_update: (now + std::time::Duration::from_secs(86_400)).into(),
            crl_number: rcgen::SerialNumber::from(7u64),
            issuing_distribution_point: None,
            revoked_certs: vec![rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from(vec![0x12, 0x34]),
                revocation_time: now.into(),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .unwrap();
        let summary = summarize_crl_der(crl.der()).unwrap();
        assert_eq!(summary.serials, [vec![0x12, 0x34]]);
        assert_eq!(
            summary.issuer,
            summarize_der(ca_cert.der()).unwrap().subject,
            "the issuer is the CA's subject"
        );
        assert!(summary.next_update.unwrap() > 0);
        assert!(summarize_crl_der(b"not a crl").is_err());
    }

    #[test]
    fn ip_addresses_of_both_families_are_rendered() {
        assert_eq!(ip_text(&[127, 0, 0, 1]).as_deref(), Some("127.0.0.1"));
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(ip_text(&v6).as_deref(), Some("::1"));
        assert_eq!(ip_text(&[1, 2, 3]), None);
    }
}
