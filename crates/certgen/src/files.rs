//! Writing certificate and key files: atomically, keys readable by their owner only, into a
//! folder nobody else can write to (see `tlschat_files`).

use std::fs;
use std::path::Path;

use tlschat_files::{write_atomic, PRIVATE_MODE, PUBLIC_MODE};

use crate::CertgenError;

/// Writes a private key with mode 0600.
pub fn write_private(path: &Path, contents: &str) -> Result<(), CertgenError> {
    Ok(write_atomic(path, contents.as_bytes(), PRIVATE_MODE)?)
}

/// Writes a certificate with mode 0644.
pub fn write_public(path: &Path, contents: &str) -> Result<(), CertgenError> {
    Ok(write_atomic(path, contents.as_bytes(), PUBLIC_MODE)?)
}

/// Reads a whole text file, naming it in the error.
pub fn read_text(path: &Path) -> Result<String, CertgenError> {
    fs::read_to_string(path).map_err(|source| CertgenError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })
}
