//! The CA's record of what it issued: `issued.txt` in the CA's folder, one line per certificate
//! (serial, name, role, end of validity, when issued), added whenever certgen writes a
//! certificate (`tlschat-certgen`, `sign`, `renew`). A name maps to every serial it was ever
//! given, so `revoke NAME` revokes all of them (also a certificate whose file was since
//! replaced), and `list` shows them with their state.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::Certificate;
use tlschat_proto::cert::summarize_der;

use crate::files::{self, write_public};
use crate::CertgenError;

/// The list of issued certificates, in the CA's folder.
pub const ISSUED_FILE: &str = "issued.txt";

const HEADER: &str = "# tlschat: certificates this CA issued (serial hex, name, role, valid until (unix seconds), issued at (unix seconds)).\n";

/// One certificate the CA issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The serial number, lower-case hex without separators.
    pub serial: String,
    /// The user's name, or `server`.
    pub name: String,
    /// `user`, `admin` or `server`.
    pub role: String,
    /// The end of its validity, seconds since the Unix epoch.
    pub not_after: i64,
    /// When it was issued, seconds since the Unix epoch.
    pub issued_at: u64,
}

/// Writes `cert` (just issued by the CA in `dir`) to `path`, mode 0644, and records it.
pub fn write(dir: &Path, name: &str, path: &Path, cert: &Certificate) -> Result<(), CertgenError> {
    let summary = summarize_der(cert.der()).map_err(|e| CertgenError::Unreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let mut entries = read(dir)?;
    entries.push(Issued {
        serial: serial_hex(&summary.serial),
        name: name.to_owned(),
        role: if name == "server" {
            "server".to_owned()
        } else {
            summary.role.unwrap_or_else(|| "user".to_owned())
        },
        not_after: summary.not_after,
        issued_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    });
    // The certificate first: a failure to record it is reported, and the next issue or
    // `revoke --serial` still has the serial from the file.
    write_public(path, &cert.pem())?;
    write_public(&dir.join(ISSUED_FILE), &render(&entries))
}

/// Every certificate recorded in `dir`, oldest first (none when the file is missing: a CA
/// folder made before the list existed).
pub fn read(dir: &Path) -> Result<Vec<Issued>, CertgenError> {
    let path = dir.join(ISSUED_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = files::read_text(&path)?;
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || CertgenError::Unreadable {
            path: path.clone(),
            reason: format!(
                "line {} is not `serial name role valid-until issued-at`",
                number + 1
            ),
        };
        let [serial, name, role, not_after, issued_at] =
            line.split_whitespace().collect::<Vec<_>>()[..]
        else {
            return Err(bad());
        };
        entries.push(Issued {
            serial: serial.to_owned(),
            name: name.to_owned(),
            role: role.to_owned(),
            not_after: not_after.parse().map_err(|_| bad())?,
            issued_at: issued_at.parse().map_err(|_| bad())?,
        });
    }
    Ok(entries)
}

fn render(entries: &[Issued]) -> String {
    let mut out = HEADER.to_owned();
    for e in entries {
        out.push_str(&format!(
            "{} {} {} {} {}\n",
            e.serial, e.name, e.role, e.not_after, e.issued_at
        ));
    }
    out
}

/// A serial number as lower-case hex, the form `issued.txt` and `revoked.txt` use.
pub fn serial_hex(bytes: &[u8]) -> String {
    tlschat_proto::hex::encode(bytes)
}
