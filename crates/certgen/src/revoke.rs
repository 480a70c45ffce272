//! Revocation: `tlschat-certgen revoke NAME` records a user's certificate as revoked in the CA's
//! folder (`revoked.txt`, one line per certificate: serial, when, reason, name) and writes the
//! CA-signed revocation list the server enforces (`crl.pem`), listing every revoked certificate.
//! The server rereads it on SIGHUP or `RELOAD`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};
use tlschat_proto::cert::summarize_der;

use crate::files::{self, write_public};
use crate::issued::{self, serial_hex, ISSUED_FILE};
use crate::{load_ca, pair_paths, CertgenError};

/// How long a revocation list is valid before the next is due: 30 days. A server keeps
/// enforcing one past it (revoked stays revoked) and warns; run `revoke` again (with no
/// new name, `--refresh`) to issue a fresh one.
pub const CRL_VALIDITY: Duration = Duration::from_secs(30 * 86_400);

/// The file listing what was revoked, in the CA's folder.
pub const REVOKED_FILE: &str = "revoked.txt";

/// The revocation list, in the CA's folder.
pub const CRL_FILE: &str = "crl.pem";

/// Which certificate to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every certificate issued to a user: those `issued.txt` lists for the name, and the one
    /// in `NAME.pem` of the CA's folder.
    Name(String),
    /// A serial number, hex (as `openssl x509 -serial` prints it).
    Serial(String),
    /// Nothing new: issue a fresh list (a new next-update time).
    Refresh,
}

/// What `revoke` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// The serials revoked now (hex); empty when they already were, or for a refresh.
    pub serials: Vec<String>,
    /// The list written.
    pub crl: PathBuf,
    /// Certificates on it.
    pub total: usize,
}

/// Revokes `target` with `reason` (`unspecified`, `key-compromise`, `superseded`,
/// `cessation`, `affiliation-changed`) and writes the list, signed by the CA in `dir`.
pub fn revoke(dir: &Path, target: &Target, reason: &str) -> Result<Revoked, CertgenError> {
    if reason_code(reason).is_none() {
        return Err(CertgenError::BadRevocation(format!(
            "unknown reason {reason:?}: give unspecified, key-compromise, superseded, \
             cessation or affiliation-changed"
        )));
    }
    let (ca_cert, ca_key) = pair_paths(dir, "ca");
    if !ca_cert.exists() || !ca_key.exists() {
        return Err(CertgenError::BadRevocation(format!(
            "no CA in {} (ca.pem and ca-key.pem): revoke where the certificates were made",
            dir.display()
        )));
    }
    let issuer = load_ca(dir)?;
    let list_path = dir.join(REVOKED_FILE);
    let mut entries = read_entries(&list_path)?;
    let now = SystemTime::now();
    let fresh: Vec<(String, String)> = match target {
        Target::Refresh => Vec::new(),
        Target::Name(name) => {
            let mut serials: Vec<String> = issued::read(dir)?
                .into_iter()
                .filter(|c| &c.name == name)
                .map(|c| c.serial)
                .collect();
            let (cert, _) = pair_paths(dir, name);
            if cert.exists() {
                let der = read_certificate(&cert)?;
                let summary = summarize_der(&der).map_err(|e| CertgenError::Unreadable {
                    path: cert.clone(),
                    reason: e.to_string(),
                })?;
                serials.push(serial_hex(&summary.serial));
            }
            if serials.is_empty() {
                return Err(CertgenError::BadRevocation(format!(
                    "no certificate was issued to {name:?} here: neither {} nor {} names one \
                     (revoke by --serial instead)",
                    dir.join(ISSUED_FILE).display(),
                    cert.display()
                )));
            }
            serials.into_iter().map(|s| (s, name.clone())).collect()
        }
        Target::Serial(serial) => {
            let serial = serial.trim().trim_start_matches("0x").replace(':', "");
            if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(CertgenError::BadRevocation(format!(
                    "{serial:?} is not a serial number in hex"
                )));
            }
            vec![(serial.to_ascii_lowercase(), "-".to_owned())]
        }
    };
    let mut added = Vec::new();
    for (serial, name) in fresh {
        if !entries.iter().any(|e| e.serial == serial) {
            let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            entries.push(Entry {
                serial: serial.clone(),
                secs,
                reason: reason.to_owned(),
                name,
            });
            added.push(serial);
        }
    }
    let revoked_certs = entries
        .iter()
        .map(|e| RevokedCertParams {
            serial_number: SerialNumber::from(unhex(&e.serial)),
            revocation_time: (UNIX_EPOCH + Duration::from_secs(e.secs)).into(),
            reason_code: reason_code(&e.reason),
            invalidity_date: None,
        })
        .collect();
    let number = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let crl = CertificateRevocationListParams {
        this_update: (now - Duration::from_secs(3600)).into(),
        next_update: (now + CRL_VALIDITY).into(),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)?;
    // The list first, then the record: a failure leaves the old pair consistent.
    let crl_path = dir.join(CRL_FILE);
    write_public(&crl_path, &crl.pem()?)?;
    write_public(&list_path, &render_entries(&entries))?;
    Ok(Revoked {
        serials: added,
        crl: crl_path,
        total: entries.len(),
    })
}

/// The serials (hex) revoked in `dir` so far.
pub fn revoked_serials(dir: &Path) -> Result<Vec<String>, CertgenError> {
    Ok(read_entries(&dir.join(REVOKED_FILE))?
        .into_iter()
        .map(|e| e.serial)
        .collect())
}

/// One line of `revoked.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    serial: String,
    secs: u64,
    reason: String,
    name: String,
}

const HEADER: &str = "# tlschat: revoked certificates (serial hex, revoked at (unix seconds), reason, name). crl.pem is made from this.\n";

fn read_entries(path: &Path) -> Result<Vec<Entry>, CertgenError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = files::read_text(path)?;
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let bad = || CertgenError::Unreadable {
            path: path.to_owned(),
            reason: format!("line {} is not `serial seconds reason name`", number + 1),
        };
        let [serial, secs, reason, name] = fields[..] else {
            return Err(bad());
        };
        entries.push(Entry {
            serial: serial.to_owned(),
            secs: secs.parse().map_err(|_| bad())?,
            reason: reason.to_owned(),
            name: name.to_owned(),
        });
    }
    Ok(entries)
}

fn render_entries(entries: &[Entry]) -> String {
    let mut out = HEADER.to_owned();
    for e in entries {
        out.push_str(&format!(
            "{} {} {} {}\n",
            e.serial, e.secs, e.reason, e.name
        ));
    }
    out
}

fn read_certificate(path: &Path) -> Result<Vec<u8>, CertgenError> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_file(path)
        .map(|c| c.to_vec())
        .map_err(|e| CertgenError::Unreadable {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

fn reason_code(reason: &str) -> Option<RevocationReason> {
    Some(match reason {
        "unspecified" => RevocationReason::Unspecified,
        "key-compromise" => RevocationReason::KeyCompromise,
        "superseded" => RevocationReason::Superseded,
        "cessation" => RevocationReason::CessationOfOperation,
        "affiliation-changed" => RevocationReason::AffiliationChanged,
        _ => return None,
    })
}

fn unhex(text: &str) -> Vec<u8> {
    let text = if text.len() % 2 == 1 {
        format!("0{text}")
    } else {
        text.to_owned()
    };
    (0..text.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{generate, Options};

    #[test]
    fn revoking_lists_the_certificate_in_a_list_signed_by_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = Options::new(dir.path());
        options.clients = vec!["alice".into(), "bob".into()];
        generate(&options).unwrap();
        let first = revoke(dir.path(), &Target::Name("alice".into()), "key-compromise").unwrap();
        assert_eq!(first.serials.len(), 1);
        assert_eq!(first.total, 1);
        let again = revoke(dir.path(), &Target::Name("alice".into()), "unspecified").unwrap();
        assert_eq!((again.serials.len(), again.total), (0, 1), "once is enough");
        let by_serial = revoke(dir.path(), &Target::Serial("0A:0b".into()), "superseded").unwrap();
        assert_eq!(by_serial.serials, ["0a0b"]);

        use rustls_pki_types::pem::PemObject;
        let crl =
            rustls_pki_types::CertificateRevocationListDer::from_pem_file(&first.crl).unwrap();
        let summary = tlschat_proto::cert::summarize_crl_der(&crl).unwrap();
        let alice = read_certificate(&dir.path().join("alice.pem")).unwrap();
        let alice = summarize_der(&alice).unwrap();
        let ca = summarize_der(&read_certificate(&dir.path().join("ca.pem")).unwrap()).unwrap();
        assert!(summary.serials.contains(&alice.serial));
        assert!(summary.serials.contains(&vec![0x0a, 0x0b]));
        assert_eq!(summary.issuer, ca.subject);
        let bob = summarize_der(&read_certificate(&dir.path().join("bob.pem")).unwrap()).unwrap();
        assert!(!summary.serials.contains(&bob.serial));
    }

    #[test]
    fn revoking_a_name_revokes_every_certificate_it_was_issued() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = Options::new(dir.path());
        options.clients = vec!["alice".into()];
        generate(&options).unwrap();
        let serial_now = || {
            let der = read_certificate(&dir.path().join("alice.pem")).unwrap();
            serial_hex(&summarize_der(&der).unwrap().serial)
        };
        let first = serial_now();
        // A renewal replaces alice.pem: the first serial lives on only in issued.txt.
        crate::renew::renew(dir.path(), "alice", 30).unwrap();
        let second = serial_now();
        assert_ne!(first, second);
        let issued = issued::read(dir.path()).unwrap();
        let alice: Vec<_> = issued.iter().filter(|c| c.name == "alice").collect();
        assert_eq!(alice.len(), 2, "{issued:?}");
        assert!(alice.iter().all(|c| c.role == "user"));
        assert!(issued
            .iter()
            .any(|c| c.name == "server" && c.role == "server"));

        let done = revoke(dir.path(), &Target::Name("alice".into()), "cessation").unwrap();
        assert_eq!(done.serials, [first.clone(), second.clone()]);
        assert_eq!(revoked_serials(dir.path()).unwrap(), [first, second]);
    }

    #[test]
    fn revoking_needs_the_ca_a_known_reason_and_a_real_serial() {
        let dir = tempfile::tempdir().unwrap();
        let err = revoke(dir.path(), &Target::Refresh, "unspecified").unwrap_err();
        assert!(err.to_string().contains("no CA"), "{err}");
        generate(&Options::new(dir.path())).unwrap();
        assert!(revoke(dir.path(), &Target::Refresh, "because").is_err());
        assert!(revoke(dir.path(), &Target::Serial("xyz".into()), "unspecified").is_err());
        assert!(revoke(dir.path(), &Target::Name("nobody".into()), "unspecified").is_err());
        assert_eq!(
            revoke(dir.path(), &Target::Refresh, "unspecified")
                .unwrap()
                .total,
            0
        );
    }
}
