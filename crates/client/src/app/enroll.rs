//! `tlschat enroll NAME`: the first step of getting an identity without any private key
//! travelling. The user's key is made here, on the user's machine (`NAME-key.pem`, mode 0600,
//! never printed), with a certificate signing request (`NAME.csr`) that goes to whoever keeps
//! the CA (`tlschat-certgen sign NAME.csr`), who sends back `NAME.pem`.

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use tlschat_files::{check_dir, write_atomic};
use tlschat_proto::names::validate_nick;

/// Why enrolment failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The name breaks the nickname rules (it will be the certificate's common name).
    #[error("invalid user name {name:?}: {source}")]
    BadName {
        /// The name.
        name: String,
        /// The rule it broke.
        source: tlschat_proto::names::NameError,
    },
    /// A key is already there: it is never replaced (it may be the only copy).
    #[error("{} already exists: a key is never overwritten; enrol into another --out folder, or remove it if it is really unused", .0.display())]
    KeyExists(PathBuf),
    /// The folder or a file could not be used.
    #[error(transparent)]
    Files(#[from] tlschat_files::FileError),
    /// The folder could not be made.
    #[error("cannot make the folder {}: {source}", .path.display())]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The key or request could not be made.
    #[error("cannot make the key or the request: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// The files enrolment wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    /// The private key (mode 0600).
    pub key: PathBuf,
    /// The signing request to send to the CA's keeper.
    pub request: PathBuf,
}

/// Makes `name`'s key and signing request in `dir` (made, private to this user, if missing).
pub fn enroll(name: &str, dir: &Path) -> Result<Enrolled, EnrollError> {
    validate_nick(name).map_err(|source| EnrollError::BadName {
        name: name.to_owned(),
        source,
    })?;
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(|source| EnrollError::Folder {
            path: dir.to_owned(),
            source,
        })?;
    }
    check_dir(dir)?;
    let key_path = dir.join(format!("{name}-key.pem"));
    if key_path.exists() {
        return Err(EnrollError::KeyExists(key_path));
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "tlschat");
    let request = params.serialize_request(&key)?.pem()?;
    let request_path = dir.join(format!("{name}.csr"));
    write_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&request_path, request.as_bytes(), 0o644)?;
    Ok(Enrolled {
        key: key_path,
        request: request_path,
    })
}

/// `tlschat enroll`: makes the files and says what comes next.
pub(super) fn run(name: &str, dir: &Path) -> u8 {
    match enroll(name, dir) {
        Ok(done) => {
            println!(
                "made your key {} (keep it here; it never leaves this machine) and the request {}.\n\
                 Next: send {} to whoever keeps the CA; they run\n  \
                 tlschat-certgen sign {}\n\
                 and send back {name}.pem. Put it beside your key, then connect with\n  \
                 tlschat --cert {} --key {}",
                done.key.display(),
                done.request.display(),
                done.request.display(),
                done.request.file_name().map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
                dir.join(format!("{name}.pem")).display(),
                done.key.display(),
            );
            super::EXIT_OK
        }
        Err(err) => {
            eprintln!("tlschat: error: {err}");
            super::EXIT_ERR_REPLY
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrolment_makes_a_private_key_and_a_request_and_never_replaces_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("me");
        let done = enroll("alice", &out).unwrap();
        let request = std::fs::read_to_string(&done.request).unwrap();
        assert!(request.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&done.key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let key = std::fs::read(&done.key).unwrap();
        assert!(matches!(
            enroll("alice", &out),
            Err(EnrollError::KeyExists(_))
        ));
        assert_eq!(
            std::fs::read(&done.key).unwrap(),
            key,
            "the key is untouched"
        );
        assert!(matches!(
            enroll("not a name", &out),
            Err(EnrollError::BadName { .. })
        ));
    }
}
