//! Writing files that hold secrets or trust decisions (private keys, the CA key, remembered E2E
//! fingerprints, replay counters) so that nobody else can read, swap or redirect them.
//!
//! - [`write_atomic`] writes to a temporary file with a random name, created exclusively
//!   (`O_EXCL`: a planted file or symbolic link is never opened) with the final mode from the
//!   start, syncs it, then renames it over the target. A crash leaves the old file or the new
//!   one, never half of one.
//! - [`check_dir`] refuses, as ssh does for its key folder, a folder that other users can write
//!   to (they could plant or swap files in it) or that belongs to someone else. Every write
//!   checks it first.
//! - [`lock_dir_of`] serialises read-modify-write cycles of files between processes.
//!
//! This crate does no parsing and knows nothing of certificates.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Mode of private files (keys, trust files): read and write for the owner only.
pub const PRIVATE_MODE: u32 = 0o600;

/// Mode of public files (certificates): readable by everyone, they hold nothing secret.
pub const PUBLIC_MODE: u32 = 0o644;

/// Why a file could not be written safely.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// An I/O operation failed.
    #[error("cannot {action} {}", .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The folder is not safe to keep secrets in.
    #[error("refusing to write into {}: {reason}", .path.display())]
    UnsafeDir {
        /// The folder.
        path: PathBuf,
        /// What is wrong with it, and how to fix it.
        reason: String,
    },
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FileError + 'a {
    move |source| FileError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The folder `path` is in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Refuses a folder that users other than its owner can write to, or that is owned by someone
/// other than the user running this (or root). A symbolic link to a folder is judged by the
/// folder it points to.
///
/// # Errors
///
/// [`FileError::UnsafeDir`] saying what is wrong and the command that fixes it;
/// [`FileError::Io`] when the folder cannot be examined.
pub fn check_dir(dir: &Path) -> Result<(), FileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = fs::metadata(dir).map_err(io_error("examine", dir))?;
        let mode = meta.permissions().mode();
        if mode & 0o022 != 0 {
            return Err(FileError::UnsafeDir {
                path: dir.to_owned(),
                reason: format!(
                    "other users can write to it (mode {:04o}) and could plant or swap files; \
                     run chmod go-w {}",
                    mode & 0o7777,
                    dir.display()
                ),
            });
        }
        let me = own_uid(dir)?;
        if meta.uid() != me && meta.uid() != 0 {
            return Err(FileError::UnsafeDir {
                path: dir.to_owned(),
                reason: format!(
                    "it belongs to user id {}, not to you (user id {me}); use a folder of your own",
                    meta.uid()
                ),
            });
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The user id files created in `dir` get: ours. Learned once per process from a temporary
/// file (std has no `geteuid`, and this crate has no unsafe code), which is removed at once.
#[cfg(unix)]
fn own_uid(dir: &Path) -> Result<u32, FileError> {
    use std::os::unix::fs::MetadataExt;
    static OWN_UID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    if let Some(uid) = OWN_UID.get() {
        return Ok(*uid);
    }
    let probe = tempfile::Builder::new()
        .prefix(".tlschat-probe-")
        .tempfile_in(dir)
        .map_err(io_error("create a file in", dir))?;
    let uid = probe
        .as_file()
        .metadata()
        .map_err(io_error("examine", probe.path()))?
        .uid();
    Ok(*OWN_UID.get_or_init(|| uid))
}

/// Writes `contents` to `path` atomically with exactly `mode`, after [`check_dir`] on its
/// folder. The temporary file has a random name, is created exclusively with `mode` from the
/// start (a key is never readable by others, not even briefly), is synced, then renamed.
///
/// # Errors
///
/// [`FileError`] naming the file or folder at fault; nothing is left behind.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), FileError> {
    let dir = parent_dir(path);
    check_dir(dir)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tlschat-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut tmp = builder
        .tempfile_in(dir)
        .map_err(io_error("create a temporary file in", dir))?;
    #[cfg(unix)]
    {
        // The mode given at creation is filtered by the umask; set it exactly.
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_error("set the mode of", path))?;
    }
    tmp.write_all(contents).map_err(io_error("write", path))?;
    tmp.as_file().sync_all().map_err(io_error("write", path))?;
    tmp.persist(path)
        .map_err(|err| io_error("replace", path)(err.error))?;
    Ok(())
}

/// Holds an exclusive lock on a folder; released when dropped.
#[derive(Debug)]
pub struct DirLock {
    _dir: File,
}

/// Takes an exclusive lock on the folder of `path`, for read-modify-write cycles of the files
/// in it, waiting for other processes that hold it. The folder itself is locked (no lock file
/// is made, so none can be planted).
///
/// # Errors
///
/// [`FileError`] when the folder is unsafe or cannot be opened or locked.
pub fn lock_dir_of(path: &Path) -> Result<DirLock, FileError> {
    let dir = parent_dir(path);
    check_dir(dir)?;
    let handle = File::open(dir).map_err(io_error("open", dir))?;
    handle.lock().map_err(io_error("lock", dir))?;
    Ok(DirLock { _dir: handle })
}

#[cfg(test)]
mod tests;
