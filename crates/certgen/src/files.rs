//! Writing certificate and key files: atomically, and keys readable by their owner only.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::CertgenError;

/// Mode of private key files: read and write for the owner only.
pub const PRIVATE_MODE: u32 = 0o600;

/// Mode of certificate files: readable by everyone, they hold nothing secret.
pub const PUBLIC_MODE: u32 = 0o644;

/// Writes a private key with mode 0600.
pub fn write_private(path: &Path, contents: &str) -> Result<(), CertgenError> {
    write_atomic(path, contents, PRIVATE_MODE)
}

/// Writes a certificate with mode 0644.
pub fn write_public(path: &Path, contents: &str) -> Result<(), CertgenError> {
    write_atomic(path, contents, PUBLIC_MODE)
}

/// Reads a whole text file, naming it in the error.
pub fn read_text(path: &Path) -> Result<String, CertgenError> {
    fs::read_to_string(path).map_err(|source| CertgenError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })
}

/// Writes to a temporary file beside `path`, created with `mode` from the start (a key is never
/// readable by others, not even briefly), then renames it over `path`. A crash leaves either the
/// old file or the new one, never half of one.
fn write_atomic(path: &Path, contents: &str, mode: u32) -> Result<(), CertgenError> {
    let io_err = |action, source| CertgenError::Io {
        action,
        path: path.to_owned(),
        source,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let result = options.open(&tmp).and_then(|mut file| {
        #[cfg(unix)]
        {
            // The mode given at creation is filtered by the umask; set it exactly.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    });
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("write", source));
    }
    fs::rename(&tmp, path).map_err(|source| {
        let _ = fs::remove_file(&tmp);
        io_err("replace", source)
    })
}
