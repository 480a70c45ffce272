//! The files E2E keeps next to the user's certificate: this device's private key and name
//! (created on first use, mode 0600, refused when others can read it, like ssh does) and the
//! remembered fingerprints of other users' device keys (trust on first use, like ssh's
//! `known_hosts`).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tlschat_proto::hex;
use tlschat_proto::names::{name_key, validate_device};
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
    "# tlschat: E2E key fingerprints seen for each user's devices. Delete a line to forget a key.";

/// This device's E2E key and name, as kept in its key file.
pub struct DeviceKey {
    /// The key pair.
    pub key: E2eKey,
    /// The device's name (lower case).
    pub device: String,
    /// Whether the key was created just now.
    pub created: bool,
}

/// Loads the private key and device name in `path`, or creates them there (mode 0600) when
/// the file does not exist. The device is named `wanted` when given, else after this host
/// (with 4 hex digits of the key, so two hosts of one name stay apart). A key file from before
/// device names gets its name added. A file naming another device than `wanted` is an error:
/// a device keeps its name (a new one would be a new device to everyone).
pub fn load_or_create_key(path: &Path, wanted: Option<&str>) -> Result<DeviceKey, StoreError> {
    let io_err = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    let invalid = |reason: &str| StoreError::Invalid {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if let Some(wanted) = wanted {
        validate_device(wanted).map_err(|e| invalid(&format!("device name {wanted:?}: {e}")))?;
    }
    match fs::read_to_string(path) {
        Ok(text) => {
            check_private(path)?;
            let mut lines = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'));
            let (mut named, mut secret) = (None, None);
            for line in lines.by_ref() {
                match line.strip_prefix("device ") {
                    Some(name) => named = Some(name.trim().to_owned()),
                    None => secret = Some(line),
                }
            }
            let line = secret.ok_or_else(|| invalid("no key in the file"))?;
            let bytes = hex::decode(line).map_err(|e| invalid(&e.to_string()))?;
            let key = E2eKey::from_private(&bytes).map_err(|e| invalid(&e.to_string()))?;
            let device = match (named, wanted) {
                (Some(named), Some(wanted)) if name_key(&named) != name_key(wanted) => {
                    return Err(invalid(&format!(
                        "this device is called {named}, not {wanted}: a device keeps its name \
                         (to start over as another device: `tlschat devices remove {named}`, \
                         then delete this file)"
                    )))
                }
                (Some(named), _) => {
                    validate_device(&named)
                        .map_err(|e| invalid(&format!("device name {named:?}: {e}")))?;
                    name_key(&named)
                }
                // From before device names: named now, once.
                (None, wanted) => {
                    let device = wanted.map_or_else(|| default_device(&key), name_key);
                    write_key(path, &key, &device)?;
                    device
                }
            };
            Ok(DeviceKey {
                key,
                device,
                created: false,
            })
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let key = E2eKey::generate().map_err(|e| invalid(&e.to_string()))?;
            let device = wanted.map_or_else(|| default_device(&key), name_key);
            write_key(path, &key, &device)?;
            Ok(DeviceKey {
                key,
                device,
                created: true,
            })
        }
        Err(err) => Err(io_err(err)),
    }
}

fn write_key(path: &Path, key: &E2eKey, device: &str) -> Result<(), StoreError> {
    let text = format!(
        "{KEY_HEADER}\ndevice {device}\n{}\n",
        hex::encode(key.private_bytes())
    );
    Ok(tlschat_files::write_atomic(
        path,
        text.as_bytes(),
        tlschat_files::PRIVATE_MODE,
    )?)
}

/// A device name for this host: its name, made to fit the rules, and 4 hex digits of `key`.
fn default_device(key: &E2eKey) -> String {
    let host = fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    device_name_for(&host, &key.key_id())
}

/// `host` made to fit the device name rules (lower case; letters, digits, `-`, `_`; a letter
/// first), shortened, then `-` and the first 4 hex digits of `key_id`.
fn device_name_for(host: &str, key_id: &[u8; 8]) -> String {
    let cleaned: String = host
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => c,
            _ => '-',
        })
        .skip_while(|c| !c.is_ascii_lowercase())
        .take(24)
        .collect();
    let base = match cleaned.trim_end_matches(['-', '_']) {
        "" => "device",
        base => base,
    };
    format!("{base}-{}", &hex::encode(key_id)[..4])
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

/// What the remembered fingerprints say about one device's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Nothing remembered for this person: first use.
    New,
    /// The same key as remembered for this device.
    Same,
    /// A different key was remembered for this device.
    Changed(Fingerprint),
    /// The person is known, this device is not: a new device, to be accepted first.
    NewDevice,
}

/// The remembered key fingerprints, one `name/device hex` line per device (a line `name hex`
/// from before device names stands for whichever device has that key).
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

    /// The fingerprints remembered for `name`, by device (`""`: a line from before device
    /// names).
    pub fn person(&self, name: &str) -> Result<BTreeMap<String, Fingerprint>, StoreError> {
        let name = name_key(name);
        Ok(self
            .read()?
            .into_iter()
            .filter_map(|(entry, fp)| {
                let (who, device) = entry.split_once('/').unwrap_or((&entry, ""));
                (who == name).then(|| (device.to_owned(), fp))
            })
            .collect())
    }

    /// How `fingerprint` compares with what is remembered for `name`'s `device`.
    pub fn check(
        &self,
        name: &str,
        device: &str,
        fingerprint: &Fingerprint,
    ) -> Result<Known, StoreError> {
        Ok(Self::judge(&self.person(name)?, device, fingerprint))
    }

    /// How `fingerprint` compares with `person`'s remembered devices (as [`KnownKeys::person`]
    /// read them), without reading the file again.
    pub fn judge(
        person: &BTreeMap<String, Fingerprint>,
        device: &str,
        fingerprint: &Fingerprint,
    ) -> Known {
        match person.get(&name_key(device)) {
            _ if person.is_empty() => Known::New,
            Some(known) if known == fingerprint => Known::Same,
            Some(known) => Known::Changed(*known),
            None if person.get("") == Some(fingerprint) => Known::Same,
            None => Known::NewDevice,
        }
    }

    /// Remembers exactly these `devices` (name and fingerprint) for `name`, forgetting what was
    /// remembered for them before. The file is read again first, so other clients' additions
    /// for other people are kept.
    pub fn accept(&self, name: &str, devices: &[(String, Fingerprint)]) -> Result<(), StoreError> {
        let _lock = tlschat_files::lock_dir_of(&self.path)?;
        let name = name_key(name);
        let mut all = self.read()?;
        all.retain(|entry, _| entry.split_once('/').map_or(entry.as_str(), |(who, _)| who) != name);
        for (device, fingerprint) in devices {
            all.insert(format!("{name}/{}", name_key(device)), *fingerprint);
        }
        write_table(&self.path, KNOWN_HEADER, &all, |fp| hex::encode(fp))
    }

    /// Remembers `fingerprint` for `name`'s `device`, beside the person's other devices.
    pub fn remember(
        &self,
        name: &str,
        device: &str,
        fingerprint: &Fingerprint,
    ) -> Result<(), StoreError> {
        let _lock = tlschat_files::lock_dir_of(&self.path)?;
        let mut all = self.read()?;
        all.insert(
            format!("{}/{}", name_key(name), name_key(device)),
            *fingerprint,
        );
        write_table(&self.path, KNOWN_HEADER, &all, |fp| hex::encode(fp))
    }

    fn read(&self) -> Result<BTreeMap<String, Fingerprint>, StoreError> {
        read_table(&self.path, "name/device fingerprint", |fp| {
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
        let DeviceKey {
            key,
            device,
            created,
        } = load_or_create_key(&path, Some("Laptop")).unwrap();
        assert!(created);
        assert_eq!(device, "laptop");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = load_or_create_key(&path, None).unwrap();
        assert!(!again.created);
        assert_eq!(again.key.public_key(), key.public_key());
        assert_eq!(again.device, "laptop", "a device keeps its name");
        let err = load_or_create_key(&path, Some("phone")).err().unwrap();
        assert!(
            err.to_string().contains("called laptop, not phone"),
            "{err}"
        );
        // Its own name, in any case, is no change.
        let same = load_or_create_key(&path, Some("LAPTOP")).unwrap();
        assert_eq!(same.key.public_key(), key.public_key());
        // Comments and blank lines may follow the key.
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("\n# a note the user added\n\n");
        tlschat_files::write_atomic(&path, text.as_bytes(), tlschat_files::PRIVATE_MODE).unwrap();
        let noted = load_or_create_key(&path, None).unwrap();
        assert_eq!(noted.key.public_key(), key.public_key());
        // A key file that cannot be read is an error to show, never replaced by a new key.
        let folder = dir.path().join("a-folder");
        fs::create_dir(&folder).unwrap();
        let err = load_or_create_key(&folder, None).err().unwrap();
        assert!(matches!(err, StoreError::Io { .. }), "{err}");
        assert!(folder.is_dir());
        // A key file from before device names gets one, once.
        let old = dir.path().join("old-e2e-key");
        let text = format!("# header\n{}\n", hex::encode(key.private_bytes()));
        tlschat_files::write_atomic(&old, text.as_bytes(), tlschat_files::PRIVATE_MODE).unwrap();
        let named = load_or_create_key(&old, None).unwrap();
        assert_eq!(named.key.public_key(), key.public_key());
        assert!(
            named.device.ends_with(&hex::encode(&key.key_id())[..4]),
            "{}",
            named.device
        );
        assert_eq!(load_or_create_key(&old, None).unwrap().device, named.device);
    }

    #[test]
    fn default_device_names_follow_the_rules() {
        let id = [0xab, 0xcd, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            device_name_for("Laptop.example.org\n", &id),
            "laptop-example-org-abcd"
        );
        assert_eq!(device_name_for("42host", &id), "host-abcd");
        assert_eq!(device_name_for("", &id), "device-abcd");
        let long = device_name_for(&"x".repeat(100), &id);
        assert!(validate_device(&long).is_ok() && long.len() <= 32, "{long}");
        for name in ["Laptop.example.org", "42host", "", "--", "été"] {
            assert!(
                validate_device(&device_name_for(name, &id)).is_ok(),
                "{name}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_key_others_can_read_or_a_damaged_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        load_or_create_key(&path, None).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_key(&path, None).err().unwrap().to_string();
        assert!(
            err.contains("too open") && err.contains("chmod 600"),
            "{err}"
        );
        fs::write(&path, "# header\nnot hex\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_or_create_key(&path, None).err().unwrap().to_string();
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
        let err = load_or_create_key(&dir.path().join("alice-e2e-key"), None)
            .err()
            .unwrap();
        assert!(err.to_string().contains("other users can write"), "{err}");
        let known = KnownKeys::new(dir.path().join("known"));
        assert!(known.remember("bob", "laptop", &[1; 32]).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn fingerprints_are_remembered_per_device_and_changes_and_new_devices_reported() {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownKeys::new(dir.path().join("known"));
        let (one, two, three) = ([1; 32], [2; 32], [3; 32]);
        assert_eq!(known.check("bob", "laptop", &one).unwrap(), Known::New);
        known.remember("Bob", "Laptop", &one).unwrap();
        known.remember("carol", "phone", &two).unwrap();
        assert_eq!(known.check("BOB", "laptop", &one).unwrap(), Known::Same);
        assert_eq!(
            known.check("bob", "laptop", &two).unwrap(),
            Known::Changed(one)
        );
        assert_eq!(known.check("bob", "phone", &two).unwrap(), Known::NewDevice);
        known
            .accept("bob", &[("laptop".into(), two), ("phone".into(), three)])
            .unwrap();
        assert_eq!(known.check("bob", "laptop", &two).unwrap(), Known::Same);
        assert_eq!(known.check("bob", "phone", &three).unwrap(), Known::Same);
        assert_eq!(known.person("carol").unwrap().get("phone"), Some(&two));
        assert_eq!(known.person("bob").unwrap().len(), 2);
        fs::write(known.path(), "bob/laptop 0102\n").unwrap();
        let err = known.person("bob").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        // Remembered keys that cannot be read are an error, never "nobody known yet" (which
        // would trust every key as seen for the first time); the same for seen counters.
        let unreadable = dir.path().join("a-folder");
        fs::create_dir(&unreadable).unwrap();
        let err = KnownKeys::new(&unreadable).person("bob").unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }), "{err}");
        assert!(SeenCounters::open(&unreadable).is_err());
    }

    #[test]
    fn a_line_from_before_device_names_vouches_for_the_device_with_that_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known");
        fs::write(&path, format!("bob {}\n", hex::encode(&[1; 32]))).unwrap();
        let known = KnownKeys::new(&path);
        assert_eq!(known.check("bob", "laptop", &[1; 32]).unwrap(), Known::Same);
        assert_eq!(
            known.check("bob", "phone", &[2; 32]).unwrap(),
            Known::NewDevice,
            "bob is known: another key is a new device"
        );
        known.accept("bob", &[("laptop".into(), [1; 32])]).unwrap();
        assert_eq!(
            known.person("bob").unwrap().len(),
            1,
            "the old line is gone"
        );
    }
}
