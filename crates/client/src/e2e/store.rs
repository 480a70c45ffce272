//! The files E2E keeps next to the user's certificate: the private key (created on first use,
//! mode 0600, refused when others can read it, like ssh does) and the remembered fingerprints
//! of other users' keys (trust on first use, like ssh's `known_hosts`).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tlschat_proto::hex;
use tlschat_proto::names::name_key;
use tlschat_tls::e2e::{E2eKey, Fingerprint};

/// Why an E2E file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading or writing failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file could not be written safely (including a folder others can write to).
    #[error(transparent)]
    File(#[from] tlschat_files::FileError),
    /// The file's content is not what it should be.
    #[error("{}: {reason}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

const KEY_HEADER: &str = "# tlschat E2E private key (X25519, for HPKE). Keep it secret.";
const KNOWN_HEADER: &str =
    "# tlschat: E2E key fingerprints seen for each user. Delete a line to forget a key.";

/// Loads the private key in `path`, or creates one there (mode 0600) when the file does not
/// exist. Returns the key and whether it was just created.
pub fn load_or_create_key(path: &Path) -> Result<(E2eKey, bool), StoreError> {
    let io_err = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    let invalid = |reason: &str| StoreError::Invalid {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    match fs::read_to_string(path) {
        Ok(text) => {
            check_private(path)?;
            let line = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .ok_or_else(|| invalid("no key in the file"))?;
            let bytes = hex::decode(line).map_err(|e| invalid(&e.to_string()))?;
            let key = E2eKey::from_private(&bytes).map_err(|e| invalid(&e.to_string()))?;
            Ok((key, false))
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let key = E2eKey::generate().map_err(|e| invalid(&e.to_string()))?;
            let text = format!("{KEY_HEADER}\n{}\n", hex::encode(key.private_bytes()));
            tlschat_files::write_atomic(path, text.as_bytes(), tlschat_files::PRIVATE_MODE)?;
            Ok((key, true))
        }
        Err(err) => Err(io_err(err)),
    }
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(|source| StoreError::Io {
            path: path.to_owned(),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(StoreError::Invalid {
            path: path.to_owned(),
            reason: format!(
                "permissions {:04o} are too open: others could read your private key; run chmod 600 {}",
                mode & 0o7777,
                path.display()
            ),
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), StoreError> {
    Ok(())
}

/// What the remembered fingerprints say about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// No key remembered for this user.
    New,
    /// The same key as remembered.
    Same,
    /// A different key was remembered.
    Changed(Fingerprint),
}

/// The remembered key fingerprints, one `name hex` line per user.
#[derive(Debug)]
pub struct KnownKeys {
    path: PathBuf,
}

impl KnownKeys {
    /// The fingerprints kept in `path` (a missing file means none yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fingerprint remembered for `name`.
    pub fn get(&self, name: &str) -> Result<Option<Fingerprint>, StoreError> {
        Ok(self.read()?.remove(&name_key(name)))
    }

    /// How `fingerprint` compares with what is remembered for `name`.
    pub fn check(&self, name: &str, fingerprint: &Fingerprint) -> Result<Known, StoreError> {
        Ok(match self.get(name)? {
            None => Known::New,
            Some(known) if &known == fingerprint => Known::Same,
            Some(known) => Known::Changed(known),
        })
    }

    /// Remembers `fingerprint` for `name`, replacing what was there. The file is read again
    /// first, so other clients' additions are kept.
    pub fn remember(&self, name: &str, fingerprint: &Fingerprint) -> Result<(), StoreError> {
        let _lock = tlschat_files::lock_dir_of(&self.path)?;
        let mut all = self.read()?;
        all.insert(name_key(name), *fingerprint);
        write_table(&self.path, KNOWN_HEADER, &all, |fp| hex::encode(fp))
    }

    fn read(&self) -> Result<BTreeMap<String, Fingerprint>, StoreError> {
        read_table(&self.path, "name fingerprint", |fp| {
            Fingerprint::try_from(hex::decode(fp).ok()?.as_slice()).ok()
        })
    }
}

/// The highest E2E message counter accepted from each sender, kept on disk so that a message
/// captured and played back after the client restarts is still refused. Read when opened;
/// written when a sender's highest counter rises, under a lock and merged with what is on disk
/// then, so two clients of the same user never lower each other's counters.
#[derive(Debug)]
pub struct SeenCounters {
    path: PathBuf,
    highest: BTreeMap<String, u64>,
}

impl SeenCounters {
    /// The counters kept in `path` (a missing file means none yet).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let path = path.into();
        let highest = read_table(&path, "name counter", |n| n.parse().ok())?;
        Ok(Self { path, highest })
    }

    /// The highest counter accepted from `name`.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.highest.get(&name_key(name)).copied()
    }

    /// Records `counter` from `name`; writes the file when it is the highest yet.
    pub fn record(&mut self, name: &str, counter: u64) -> Result<(), StoreError> {
        let highest = self.highest.entry(name_key(name)).or_insert(0);
        if counter <= *highest {
            return Ok(());
        }
        *highest = counter;
        let _lock = tlschat_files::lock_dir_of(&self.path)?;
        for (name, theirs) in read_table(&self.path, "name counter", |n| n.parse::<u64>().ok())? {
            let ours = self.highest.entry(name).or_insert(0);
            *ours = (*ours).max(theirs);
        }
        write_table(&self.path, SEEN_HEADER, &self.highest, u64::to_string)
    }
}

const SEEN_HEADER: &str =
    "# tlschat: the highest E2E message counter accepted from each user (replay protection).";

/// Reads `name value` lines (a missing file is empty; `#` starts a comment).
fn read_table<V>(
    path: &Path,
    shape: &str,
    parse: impl Fn(&str) -> Option<V>,
) -> Result<BTreeMap<String, V>, StoreError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(StoreError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let mut all = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line
            .split_once(' ')
            .and_then(|(name, value)| Some((name_key(name), parse(value.trim())?)));
        let (name, value) = parsed.ok_or_else(|| StoreError::Invalid {
            path: path.to_owned(),
            reason: format!("line {} is not `{shape}`", number + 1),
        })?;
        all.insert(name, value);
    }
    Ok(all)
}

/// Writes `name value` lines under `header`, atomically.
fn write_table<V>(
    path: &Path,
    header: &str,
    all: &BTreeMap<String, V>,
    show: impl Fn(&V) -> String,
) -> Result<(), StoreError> {
    let mut text = format!("{header}\n");
    for (name, value) in all {
        text.push_str(&format!("{name} {}\n", show(value)));
    }
    Ok(tlschat_files::write_atomic(
        path,
        text.as_bytes(),
        tlschat_files::PRIVATE_MODE,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice-e2e-key");
        let (key, created) = load_or_create_key(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, created) = load_or_create_key(&path).unwrap();
        assert!(!created);
        assert_eq!(again.public_key(), key.public_key());
    }

    #[cfg(unix)]
    #[test]
    fn a_key_others_can_read_or_a_damaged_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        load_or_create_key(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_key(&path).err().unwrap().to_string();
        assert!(
            err.contains("too open") && err.contains("chmod 600"),
            "{err}"
        );
        fs::write(&path, "# header\nnot hex\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_or_create_key(&path).err().unwrap().to_string();
        assert!(err.contains("hex"), "{err}");
    }

    #[test]
    fn seen_counters_keep_the_highest_per_user() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = SeenCounters::open(dir.path().join("seen")).unwrap();
        assert_eq!(seen.get("bob"), None);
        seen.record("Bob", 500).unwrap();
        seen.record("bob", 300).unwrap();
        seen.record("carol", 7).unwrap();
        assert_eq!(seen.get("BOB"), Some(500));
        let reopened = SeenCounters::open(dir.path().join("seen")).unwrap();
        assert_eq!(
            (reopened.get("bob"), reopened.get("carol")),
            (Some(500), Some(7))
        );
        fs::write(dir.path().join("seen"), "bob many\n").unwrap();
        let err = SeenCounters::open(dir.path().join("seen")).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn two_clients_of_one_user_never_lower_each_others_replay_floors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seen");
        let mut laptop = SeenCounters::open(&path).unwrap();
        let mut phone = SeenCounters::open(&path).unwrap();
        laptop.record("bob", 900).unwrap();
        phone.record("carol", 5).unwrap();
        let reopened = SeenCounters::open(&path).unwrap();
        assert_eq!(
            reopened.get("bob"),
            Some(900),
            "the phone's write kept the laptop's"
        );
        assert_eq!(reopened.get("carol"), Some(5));
    }

    #[cfg(unix)]
    #[test]
    fn e2e_files_are_not_written_into_a_folder_others_can_write_to() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let err = load_or_create_key(&dir.path().join("alice-e2e-key"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("other users can write"), "{err}");
        let known = KnownKeys::new(dir.path().join("known"));
        assert!(known.remember("bob", &[1; 32]).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn fingerprints_are_remembered_per_user_and_changes_reported() {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownKeys::new(dir.path().join("known"));
        let (one, two) = ([1; 32], [2; 32]);
        assert_eq!(known.check("bob", &one).unwrap(), Known::New);
        known.remember("Bob", &one).unwrap();
        known.remember("carol", &two).unwrap();
        assert_eq!(known.check("BOB", &one).unwrap(), Known::Same);
        assert_eq!(known.check("bob", &two).unwrap(), Known::Changed(one));
        known.remember("bob", &two).unwrap();
        assert_eq!(known.check("bob", &two).unwrap(), Known::Same);
        assert_eq!(known.get("carol").unwrap(), Some(two));
        fs::write(known.path(), "bob 0102\n").unwrap();
        let err = known.get("bob").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
