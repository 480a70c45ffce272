//! `tlschat-certgen sign NAME.csr`: the CA's side of enrolment. It reads a certificate signing
//! request made by `tlschat enroll` on the user's machine, checks it (a valid signature, a
//! usable user name, an ECDSA P-256 key) and writes the user's certificate. The CA side never
//! holds the user's private key.

use std::path::{Path, PathBuf};

use rcgen::{CertificateSigningRequestParams, DnType, DnValue};
use tlschat_proto::names::validate_nick;

use crate::files;
use crate::issued;
use crate::{client_params, load_ca, pair_paths, CertgenError, Role};

/// What `sign` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The user's name (the request's common name).
    pub name: String,
    /// The certificate written.
    pub cert: PathBuf,
    /// Whether it replaced an earlier certificate of that name.
    pub replaced: bool,
}

/// Signs the request in `request` with the CA in `ca_dir`, for `role`, valid `days` days.
pub fn sign(request: &Path, ca_dir: &Path, role: Role, days: u32) -> Result<Signed, CertgenError> {
    let refuse = |reason: String| CertgenError::BadRequest {
        path: request.to_owned(),
        reason,
    };
    let text = files::read_text(request)?;
    let csr = CertificateSigningRequestParams::from_pem(&text)
        .map_err(|e| refuse(format!("not a valid certificate signing request ({e})")))?;
    if csr.public_key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
        return Err(refuse(
            "its key is not ECDSA P-256 (make requests with tlschat enroll)".into(),
        ));
    }
    let name = match csr.params.distinguished_name.get(&DnType::CommonName) {
        Some(DnValue::Utf8String(name)) => name.clone(),
        Some(DnValue::PrintableString(name)) => name.as_str().to_owned(),
        _ => return Err(refuse("it names no user (no common name)".into())),
    };
    validate_nick(&name)
        .map_err(|e| refuse(format!("its user name {name:?} is not usable: {e}")))?;
    let issuer = load_ca(ca_dir)?;
    let signed = CertificateSigningRequestParams {
        params: client_params(&name, role, days),
        public_key: csr.public_key,
    }
    .signed_by(&issuer)?;
    let (cert, _) = pair_paths(ca_dir, &name);
    let replaced = cert.exists();
    issued::write(ca_dir, &name, &cert, &signed)?;
    Ok(Signed {
        name,
        cert,
        replaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{generate, Options};

    fn request(name: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        let path = dir.path().join("req.csr");
        std::fs::write(
            &path,
            params.serialize_request(&key).unwrap().pem().unwrap(),
        )
        .unwrap();
        (dir, path)
    }

    #[test]
    fn a_request_becomes_a_certificate_for_its_name_and_role() {
        let ca = tempfile::tempdir().unwrap();
        generate(&Options::new(ca.path())).unwrap();
        let (_user, csr) = request("dora");
        let signed = sign(&csr, ca.path(), Role::Admin, 30).unwrap();
        assert_eq!(signed.name, "dora");
        assert!(!signed.replaced);
        let summary = crate::inspect::summarize_file(&signed.cert).unwrap();
        assert_eq!(summary.common_name.as_deref(), Some("dora"));
        assert_eq!(summary.role.as_deref(), Some("admin"));
        assert!(sign(&csr, ca.path(), Role::User, 30).unwrap().replaced);
    }

    #[test]
    fn a_bad_name_a_forged_request_or_garbage_is_refused() {
        let ca = tempfile::tempdir().unwrap();
        generate(&Options::new(ca.path())).unwrap();
        let (_user, csr) = request("not a name");
        let err = sign(&csr, ca.path(), Role::User, 30).unwrap_err();
        assert!(err.to_string().contains("not usable"), "{err}");
        let (_other, csr) = request("erin");
        let mut pem = std::fs::read_to_string(&csr).unwrap();
        // Change a byte inside the request: its signature no longer verifies.
        let at = pem.len() / 2;
        let flipped = if &pem[at..=at] == "A" { "B" } else { "A" };
        pem.replace_range(at..=at, flipped);
        std::fs::write(&csr, pem).unwrap();
        assert!(sign(&csr, ca.path(), Role::User, 30).is_err());
        std::fs::write(&csr, "hello").unwrap();
        let err = sign(&csr, ca.path(), Role::User, 30).unwrap_err();
        assert!(err.to_string().contains("not a valid"), "{err}");
    }
}
