//! `tlschat-certgen export NAME --p12`: a user's certificate and key (and the CA certificate,
//! when it is in the folder) as one PKCS#12 file, `NAME.p12`, mode 0600, for browsers and other
//! tools. Run it where the key is: the CA's folder for certificates made there, the user's own
//! for an enrolled one.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tlschat_files::{write_atomic, PRIVATE_MODE};

use crate::p12::{self, Contents};
use crate::{pair_paths, CertgenError};

/// Writes `dir/NAME.p12` from `dir/NAME.pem`, `dir/NAME-key.pem` and, if present,
/// `dir/ca.pem`, protected by `password`; returns the file written.
pub fn export_p12(dir: &Path, name: &str, password: &str) -> Result<PathBuf, CertgenError> {
    let (cert_path, key_path) = pair_paths(dir, name);
    let unreadable = |path: &Path, reason: String| CertgenError::Unreadable {
        path: path.to_owned(),
        reason,
    };
    let cert = CertificateDer::from_pem_file(&cert_path)
        .map_err(|e| unreadable(&cert_path, e.to_string()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| unreadable(&key_path, e.to_string()))?;
    let PrivateKeyDer::Pkcs8(key) = key else {
        return Err(unreadable(&key_path, p12::P12Error::KeyForm.to_string()));
    };
    let (ca_path, _) = pair_paths(dir, "ca");
    let ca = if ca_path.exists() {
        Some(
            CertificateDer::from_pem_file(&ca_path)
                .map_err(|e| unreadable(&ca_path, e.to_string()))?,
        )
    } else {
        None
    };
    let bundle = p12::bundle(
        &Contents {
            friendly_name: name,
            cert: &cert,
            pkcs8_key: key.secret_pkcs8_der(),
            ca: ca.as_deref(),
        },
        password,
    )?;
    let out = dir.join(format!("{name}.p12"));
    write_atomic(&out, &bundle, PRIVATE_MODE)?;
    Ok(out)
}
