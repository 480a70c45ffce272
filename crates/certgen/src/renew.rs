//! `tlschat-certgen renew NAME`: reissues a certificate for the key it already has, so nothing
//! secret has to travel again: a user's (`NAME.pem`, the same name and role) or the server's
//! (`renew server`, the same host names). The new certificate gets a new serial number, so
//! revoking the old one does not touch it; the old one stays valid until it expires or is
//! revoked.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rcgen::{SerialNumber, SubjectPublicKeyInfo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tlschat_proto::cert::summarize_der;
use tlschat_proto::names::ADMIN_ROLE;

use crate::issued;
use crate::{client_params, load_ca, pair_paths, server_params, CertgenError, Role};

/// Reissues `NAME.pem` (or `server.pem` for `server`) in `dir` for `days` days; returns the
/// certificate written.
pub fn renew(dir: &Path, name: &str, days: u32) -> Result<PathBuf, CertgenError> {
    let (cert_path, _) = pair_paths(dir, name);
    let unreadable = |reason: String| CertgenError::Unreadable {
        path: cert_path.clone(),
        reason,
    };
    let der = CertificateDer::from_pem_file(&cert_path).map_err(|e| unreadable(e.to_string()))?;
    let summary = summarize_der(&der).map_err(|e| unreadable(e.to_string()))?;
    let public_key = SubjectPublicKeyInfo::from_der(&summary.spki)?;
    let mut params = if name == "server" {
        server_params(&summary.sans.iter().cloned().collect::<BTreeSet<_>>(), days)?
    } else {
        let user = summary
            .common_name
            .clone()
            .ok_or_else(|| unreadable("it names no user".into()))?;
        let role = if summary.role.as_deref() == Some(ADMIN_ROLE) {
            Role::Admin
        } else {
            Role::User
        };
        client_params(&user, role, days)
    };
    params.serial_number = Some(fresh_serial()?);
    let issuer = load_ca(dir)?;
    let cert = params.signed_by(&public_key, &issuer)?;
    issued::write(dir, name, &cert_path, &cert)?;
    Ok(cert_path)
}

/// 16 random bytes, positive as DER integers want.
fn fresh_serial() -> Result<SerialNumber, CertgenError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| {
        CertgenError::BadRevocation("the system's random number generator failed".into())
    })?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from(bytes.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::summarize_file;
    use crate::{generate, Options};

    #[test]
    fn renewing_keeps_the_key_name_role_and_hosts_with_a_new_serial() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = Options::new(dir.path());
        options.admins = vec!["root".into()];
        options.hosts = vec!["chat.lan".into()];
        options.validity_days = 2;
        generate(&options).unwrap();
        for name in ["root", "server"] {
            let before = summarize_file(&dir.path().join(format!("{name}.pem"))).unwrap();
            let key = std::fs::read(dir.path().join(format!("{name}-key.pem"))).unwrap();
            renew(dir.path(), name, 90).unwrap();
            let after = summarize_file(&dir.path().join(format!("{name}.pem"))).unwrap();
            assert_eq!(after.spki, before.spki, "{name}: the same key");
            assert_eq!(after.common_name, before.common_name);
            assert_eq!(after.role, before.role);
            assert_eq!(after.sans, before.sans);
            assert_ne!(after.serial, before.serial, "{name}: a new serial");
            assert!(after.not_after > before.not_after + 80 * 86_400);
            let key_after = std::fs::read(dir.path().join(format!("{name}-key.pem"))).unwrap();
            assert_eq!(key_after, key, "the key file is untouched");
        }
        assert!(renew(dir.path(), "nobody", 90).is_err());
    }
}
