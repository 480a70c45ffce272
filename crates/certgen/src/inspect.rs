//! Reading what an existing certificate file says, to decide whether it can be kept.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
pub use tlschat_proto::cert::CertSummary;

use crate::{files, CertgenError};

/// Reads and summarizes the first certificate of a PEM file.
pub fn summarize_file(path: &Path) -> Result<CertSummary, CertgenError> {
    let text = files::read_text(path)?;
    let unreadable = |reason: String| CertgenError::Unreadable {
        path: path.to_owned(),
        reason,
    };
    let der =
        CertificateDer::from_pem_slice(text.as_bytes()).map_err(|e| unreadable(e.to_string()))?;
    tlschat_proto::cert::summarize_der(&der).map_err(|e| unreadable(e.to_string()))
}
