//! End-to-end encrypted direct messages, client side: this device's E2E key, the remembered
//! device keys of others, and the rules for when a direct message is sealed, sent in clear or
//! refused.
//!
//! - A user with a certificate has an E2E key on each device ([`store::load_or_create_key`],
//!   with the device's name) and publishes it with `KEY SET` on every connection
//!   ([`E2e::publish`]).
//! - Before a direct message, the sender fetches the recipient's device keys (`KEY GET`) and
//!   checks each: the certificate chains to the CA and names the recipient, its key signed the
//!   E2E key and the device name, and the fingerprint matches the one remembered for that
//!   device ([`store::KnownKeys`], trust on first use). A changed, forged or withheld key stops
//!   the message ([`Outgoing::Refused`]), and so does a device of a known person that was not
//!   accepted yet (a new device is announced, never trusted silently), and so does a recipient
//!   without a key: a user with a certificate sends in clear only when asked to (`--plain`).
//! - The message is sealed once, to every accepted device of the recipient and of the sender
//!   (this one included, so every device of both can read it from the history).
//! - A received `EVENT E2E` is verified against the sending device's key and opened
//!   ([`E2e::receive`]); a replayed, forged or undecryptable message, or one from a device not
//!   accepted, comes back as [`Received::Refused`] with the reason, to be shown, never dropped.

pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;

use tlschat_proto::e2e::{KeyBundle, Payload, Sealed};
use tlschat_proto::names::name_key;
use tlschat_proto::replay::{CounterMemory, ReplayError, DEFAULT_COUNTER_MEMORY};
use tlschat_proto::{hex, ErrorCode, Reply, Request, Target, Trust};
use tlschat_tls::e2e::{fingerprint_text, seal, Author, E2eError, E2eKey, Fingerprint, TrustedKey};
use tlschat_tls::signing::{CertKey, ClientCheck};

use self::store::{DeviceKey, Known, KnownKeys, SeenCounters, StoreError};
use crate::client::Client;
use crate::clock::{now_micros, now_ms};
use crate::config::ClientConfig;
pub use crate::config::E2ePaths;
use crate::error::ClientError;

/// Why E2E could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum E2eSetupError {
    /// The certificate or its key cannot sign.
    #[error("cannot use the client certificate for E2E: {0}")]
    Certificate(#[from] tlschat_tls::signing::SigningError),
    /// A key file is unusable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The certificate has no common name to publish a key under.
    #[error("the client certificate has no common name")]
    NoName,
    /// Our own published key does not verify (certificate not from the CA given with --ca).
    #[error("your own E2E key does not verify: {0}")]
    OwnKey(#[source] E2eError),
}

/// What to send for a direct message, or why not.
#[derive(Debug)]
pub enum Outgoing {
    /// Send this request. `e2e` says whether it is sealed; `notice` is something to tell the
    /// user first (a key seen for the first time).
    Send {
        /// `E2E …` or `MSG …`.
        request: Request,
        /// Sealed end to end.
        e2e: bool,
        /// To show the user.
        notice: Option<String>,
    },
    /// Nothing was sent, for this reason.
    Refused(String),
}

/// A received E2E message, opened or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Verified and decrypted.
    Message {
        /// The text.
        text: String,
        /// It came after a later message from the same sending device.
        reordered: bool,
        /// When the sender sealed it, RFC 3339 UTC, by the sender's clock: signed, so the
        /// server can neither change it nor pass an old message off as new. Stored messages
        /// arrive hours later; this is the time to show.
        sent: String,
    },
    /// Not shown as a message, for this reason.
    Refused(String),
}

/// One device key of a person, checked, with what the remembered fingerprints say of it.
#[derive(Debug, Clone)]
struct Device {
    key: TrustedKey,
    known: Known,
}

impl Device {
    /// Whether messages may be sealed to it, and its messages believed: remembered, or seen
    /// now for a person seen for the first time (and remembered now).
    fn trusted(&self) -> bool {
        matches!(self.known, Known::Same | Known::New)
    }
}

/// What a key lookup found.
#[derive(Debug)]
enum Lookup {
    /// The user published no key, and none is remembered.
    NoKey,
    /// Valid device keys (at least one), each with its standing.
    Found(Vec<Device>),
    /// The server offers no key, but one is remembered.
    Withheld,
    /// A published key does not verify, or the remembered keys cannot be read.
    Invalid(String),
}

/// A user's E2E state on this device, for one or more connections.
pub struct E2e {
    me: String,
    device: String,
    cert: CertKey,
    key: E2eKey,
    bundle: KeyBundle,
    own: TrustedKey,
    ca: ClientCheck,
    known: KnownKeys,
    /// The highest counter accepted from each sending device, on disk (survives restarts).
    seen: SeenCounters,
    /// Checked device keys of those who sent us messages, by name.
    senders: HashMap<String, Vec<TrustedKey>>,
    /// Replay windows, per sending device.
    windows: HashMap<String, CounterMemory>,
    last_counter: u64,
    created: bool,
    /// The latest key change seen and not yet taken by [`E2e::take_alert`].
    alert: Option<String>,
}

impl E2e {
    /// The E2E state of the configured user on this device: `None` without a client
    /// certificate (E2E needs an identity others can check). Creates the private key (and
    /// names the device) on first use.
    pub fn open(config: &ClientConfig) -> Result<Option<Self>, E2eSetupError> {
        let (Some(cert_path), Some(key_path)) = (&config.cert, &config.key) else {
            return Ok(None);
        };
        let paths = config
            .e2e_paths()
            .unwrap_or_else(|| E2ePaths::beside(cert_path));
        let cert = CertKey::load(cert_path, key_path)?;
        let me = config.certificate_name().ok_or(E2eSetupError::NoName)?;
        let DeviceKey {
            key,
            device,
            created,
        } = store::load_or_create_key(&paths.key, config.device.as_deref())?;
        let ca = ClientCheck::new(&config.ca)?;
        let bundle = key
            .bundle(&cert, &me, &device)
            .map_err(E2eSetupError::OwnKey)?;
        let own = TrustedKey::verify(&bundle, &me, &ca).map_err(E2eSetupError::OwnKey)?;
        Ok(Some(Self {
            me: name_key(&me),
            device,
            cert,
            key,
            bundle,
            own,
            ca,
            seen: SeenCounters::open(seen_path(&paths.key))?,
            known: KnownKeys::new(paths.known_keys),
            senders: HashMap::new(),
            windows: HashMap::new(),
            last_counter: 0,
            created,
            alert: None,
        }))
    }

    /// This device's name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Our own key's fingerprint, as people compare it.
    pub fn own_fingerprint(&self) -> String {
        fingerprint_text(&self.own.fingerprint())
    }

    /// The latest warning about a changed key or a new device met since the last call (one
    /// is kept, so a client that never asks does not collect them): an interface that can ask
    /// the user to acknowledge it shows it so.
    pub fn take_alert(&mut self) -> Option<String> {
        self.alert.take()
    }

    /// Whether the private key was created when this state was opened.
    pub fn key_was_created(&self) -> bool {
        self.created
    }

    /// Publishes this device's key (`KEY SET`). `Ok(Err(text))` when the server refused it.
    pub async fn publish(&self, client: &mut Client) -> Result<Result<(), String>, ClientError> {
        let bundle = match Payload::new(self.bundle.clone()) {
            Ok(bundle) => bundle,
            Err(err) => return Ok(Err(format!("cannot encode your E2E key: {err}"))),
        };
        match client.request(&Request::KeySet(bundle)).await? {
            Reply::Ok(_) => Ok(Ok(())),
            Reply::Err(err) => Ok(Err(err.to_string())),
        }
    }

    /// Lines about `nick`'s device keys: fingerprints and whether each is the one remembered.
    pub async fn describe(
        &mut self,
        client: &mut Client,
        nick: &str,
    ) -> Result<String, ClientError> {
        Ok(match self.lookup(client, nick).await? {
            Lookup::NoKey => format!("{nick} has published no E2E key"),
            Lookup::Found(devices) => devices
                .iter()
                .map(|d| {
                    let (device, now) = (d.key.device(), fingerprint_text(&d.key.fingerprint()));
                    match d.known {
                        Known::Same => format!(
                            "{nick}'s E2E key (device {device}): {now} (matches the one remembered)"
                        ),
                        Known::New => format!(
                            "{nick}'s E2E key (device {device}): {now} (seen for the first time; remembered)"
                        ),
                        Known::Changed(old) => format!(
                            "{nick}'s E2E key (device {device}) has CHANGED: now {now}, remembered {}; check with {nick}, then /trust {nick}",
                            fingerprint_text(&old)
                        ),
                        Known::NewDevice => format!(
                            "{nick}'s E2E key (device {device}): {now} (a NEW device, not accepted yet; check with {nick}, then /trust {nick})"
                        ),
                    }
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Lookup::Withheld => withheld(nick),
            Lookup::Invalid(err) => format!("{nick}'s published E2E key is not valid: {err}"),
        })
    }

    /// Our own devices with a published key, this one marked, with fingerprints.
    pub async fn devices(&mut self, client: &mut Client) -> Result<String, ClientError> {
        let me = self.me.clone();
        Ok(match self.lookup(client, &me).await? {
            Lookup::Found(devices) => devices
                .iter()
                .map(|d| {
                    let this = if d.key.key_id() == self.own.key_id() {
                        " (this device)"
                    } else if !d.trusted() {
                        " (not accepted yet on this device: /trust to accept)"
                    } else {
                        ""
                    };
                    format!(
                        "{}: {}{this}",
                        d.key.device(),
                        fingerprint_text(&d.key.fingerprint())
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Lookup::NoKey | Lookup::Withheld => "no device of yours has a published key".into(),
            Lookup::Invalid(err) => format!("one of your published keys is not valid: {err}"),
        })
    }

    /// Withdraws the key of our device `name` (`KEY DEL`): `Ok(what was done)` or `Err(why
    /// not)`.
    pub async fn remove_device(
        &mut self,
        client: &mut Client,
        name: &str,
    ) -> Result<Result<String, String>, ClientError> {
        let Ok(Some(request)) = Request::parse(&format!("KEY DEL {name}")) else {
            return Ok(Err(format!("{name:?} is not a device name")));
        };
        Ok(match client.request(&request).await? {
            Reply::Ok(_) if name_key(name) == self.device => Ok(format!(
                "withdrew this device's key ({name}); it publishes it again when it connects next"
            )),
            Reply::Ok(_) => Ok(format!(
                "withdrew the key of your device {name}: messages are no longer sealed to it"
            )),
            Reply::Err(err) => Err(err.to_string()),
        })
    }

    /// Accepts `nick`'s current device keys after a change or a new device (the user compared
    /// fingerprints): `Ok(what was done)` or `Err(why not)`.
    pub async fn trust(
        &mut self,
        client: &mut Client,
        nick: &str,
    ) -> Result<Result<String, String>, ClientError> {
        Ok(match self.lookup(client, nick).await? {
            Lookup::Found(devices) => {
                let accepted: Vec<(String, Fingerprint)> = devices
                    .iter()
                    .map(|d| (d.key.device().to_owned(), d.key.fingerprint()))
                    .collect();
                match self.known.accept(nick, &accepted) {
                    Ok(()) => {
                        let text: Vec<String> = devices
                            .iter()
                            .map(|d| {
                                format!(
                                    "{} {}",
                                    d.key.device(),
                                    fingerprint_text(&d.key.fingerprint())
                                )
                            })
                            .collect();
                        self.senders
                            .insert(name_key(nick), devices.into_iter().map(|d| d.key).collect());
                        Ok(format!(
                            "now trusting {nick}'s E2E keys: {}",
                            text.join(", ")
                        ))
                    }
                    Err(err) => Err(format!("cannot remember the keys: {err}")),
                }
            }
            Lookup::NoKey | Lookup::Withheld => Err(format!("{nick} has published no E2E key")),
            Lookup::Invalid(err) => Err(format!("{nick}'s published E2E key is not valid: {err}")),
        })
    }

    /// Seals `text` to `nick`'s devices (and ours) when they have trusted keys; refused
    /// otherwise (see the module's rules).
    pub async fn outgoing(
        &mut self,
        client: &mut Client,
        nick: &str,
        text: &str,
    ) -> Result<Outgoing, ClientError> {
        let devices = match self.lookup(client, nick).await? {
            Lookup::NoKey => return Ok(Outgoing::Refused(no_key(nick))),
            Lookup::Found(devices) => devices,
            Lookup::Withheld => return Ok(Outgoing::Refused(withheld(nick))),
            Lookup::Invalid(err) => {
                return Ok(Outgoing::Refused(format!(
                    "{nick}'s published E2E key is not valid ({err}); not sending. Someone may be impersonating {nick}."
                )))
            }
        };
        if let Some(why) = untrusted(nick, &devices) {
            return Ok(Outgoing::Refused(why));
        }
        let mut notices: Vec<String> = devices
            .iter()
            .filter(|d| d.known == Known::New)
            .map(|d| first_seen(nick, &d.key))
            .collect();
        let mut keys: Vec<TrustedKey> = devices.into_iter().map(|d| d.key).collect();
        // Our own devices: this one always, the others once accepted.
        if name_key(nick) != self.me {
            let me = self.me.clone();
            if let Lookup::Found(own) = self.lookup(client, &me).await? {
                for device in own {
                    if device.key.key_id() == self.own.key_id() {
                        continue;
                    }
                    if device.trusted() {
                        keys.push(device.key);
                    } else {
                        notices.push(format!(
                            "your device {} is not accepted on this device yet, so it cannot read \
                             this message (/devices, then /trust {me})",
                            device.key.device()
                        ));
                    }
                }
            }
        }
        if !keys.iter().any(|k| k.key_id() == self.own.key_id()) {
            keys.push(self.own.clone());
        }
        let counter = self.next_counter();
        let author = Author {
            cert: &self.cert,
            name: &self.me,
            key: &self.key,
        };
        let refs: Vec<&TrustedKey> = keys.iter().collect();
        Ok(
            match seal(&author, nick, &refs, counter, now_ms(), text)
                .map_err(|e| e.to_string())
                .and_then(|sealed| Payload::new(sealed).map_err(|e| e.to_string()))
            {
                Ok(sealed) => Outgoing::Send {
                    request: Request::E2e {
                        to: nick.to_owned(),
                        sealed,
                    },
                    e2e: true,
                    notice: (!notices.is_empty()).then(|| notices.join("\n")),
                },
                Err(err) => Outgoing::Refused(format!("cannot encrypt: {err}")),
            },
        )
    }

    /// Verifies and opens an `EVENT E2E` from `from` to `to` (one of them is us: a copy of
    /// what we sent from another device has `from` us).
    pub async fn receive(
        &mut self,
        client: &mut Client,
        from: &str,
        to: &str,
        trust: Trust,
        sealed: &str,
    ) -> Result<Received, ClientError> {
        let refuse = |why: String| Ok(Received::Refused(why));
        if trust != Trust::Verified {
            return refuse("the server marks the sender unverified".into());
        }
        let sealed = match hex::decode(sealed)
            .map_err(|e| e.to_string())
            .and_then(|bytes| Sealed::decode(&bytes).map_err(|e| e.to_string()))
        {
            Ok(sealed) => sealed,
            Err(err) => return refuse(format!("unreadable ({err})")),
        };
        let sender = name_key(from);
        // No freshness bound: a stored message may arrive hours later. Replays are caught by
        // the counters of each sending device (remembered in this run, and the highest kept
        // on disk across runs), and the signed send time is what the user sees.
        let window_key = format!("{sender}/{}", hex::encode(&sealed.sender_key_id));
        let floor = self.seen.get(&window_key);
        let window = self
            .windows
            .entry(window_key.clone())
            .or_insert_with(|| CounterMemory::with_floor(DEFAULT_COUNTER_MEMORY, floor));
        if let Err(err) = window.check(sealed.counter) {
            return refuse(replayed(err));
        }
        let key = match self.sending_device(&sender, &sealed) {
            Some(key) => key,
            None => match self.fetch_sending_device(client, from, &sealed).await? {
                Ok(key) => key,
                Err(why) => return refuse(why),
            },
        };
        let text = match self.key.open(&key, to, &sealed) {
            Ok(text) => text,
            Err(err) => return refuse(err.to_string()),
        };
        let window = self.windows.entry(window_key.clone()).or_default();
        let reordered = window.top().is_some_and(|top| sealed.counter < top);
        if let Err(err) = window.accept(sealed.counter) {
            return refuse(replayed(err));
        }
        if let Err(err) = self.seen.record(&window_key, sealed.counter) {
            tracing::warn!(error = %err, "cannot record the E2E counter; a replay after a restart would not be caught");
        }
        let sent = i64::try_from(sealed.timestamp_ms)
            .ok()
            .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        Ok(Received::Message {
            text,
            reordered,
            sent,
        })
    }

    /// The sending device's key, when known from before (or it is this device).
    fn sending_device(&self, sender: &str, sealed: &Sealed) -> Option<TrustedKey> {
        if sender == self.me && sealed.sender_key_id == self.own.key_id() {
            return Some(self.own.clone());
        }
        self.senders
            .get(sender)?
            .iter()
            .find(|k| k.key_id() == sealed.sender_key_id)
            .cloned()
    }

    /// Fetches `from`'s device keys and picks the one that sent `sealed`, when it is trusted;
    /// else why not.
    async fn fetch_sending_device(
        &mut self,
        client: &mut Client,
        from: &str,
        sealed: &Sealed,
    ) -> Result<Result<TrustedKey, String>, ClientError> {
        let devices = match self.lookup(client, from).await? {
            Lookup::Found(devices) => devices,
            Lookup::NoKey | Lookup::Withheld => {
                return Ok(Err(format!(
                    "{from} has no published E2E key to verify it with"
                )))
            }
            Lookup::Invalid(err) => {
                return Ok(Err(format!(
                    "{from}'s published E2E key is not valid ({err})"
                )))
            }
        };
        let Some(device) = devices
            .iter()
            .find(|d| d.key.key_id() == sealed.sender_key_id)
        else {
            return Ok(Err(format!(
                "sent from a device of {from} that has no published key now (removed?); it \
                 cannot be verified"
            )));
        };
        let verdict = match device.known {
            Known::Changed(remembered) => Err(changed(from, &device.key, &remembered)),
            Known::NewDevice => Err(new_device(from, &device.key)),
            Known::Same | Known::New => Ok(device.key.clone()),
        };
        let trusted: Vec<TrustedKey> = devices
            .into_iter()
            .filter(Device::trusted)
            .map(|d| d.key)
            .collect();
        self.senders.insert(name_key(from), trusted);
        Ok(verdict)
    }

    /// Fetches and checks `nick`'s device keys, remembering them on first use.
    async fn lookup(&mut self, client: &mut Client, nick: &str) -> Result<Lookup, ClientError> {
        let remembered = match self.known.person(nick) {
            Ok(known) => known,
            Err(err) => return Ok(Lookup::Invalid(err.to_string())),
        };
        let reply = client.request(&Request::KeyGet(nick.to_owned())).await?;
        let bundles = match reply {
            Reply::Err(err) if err.code == ErrorCode::NoKey => {
                return Ok(match remembered.is_empty() {
                    false => Lookup::Withheld,
                    true => Lookup::NoKey,
                })
            }
            Reply::Err(err) => return Ok(Lookup::Invalid(err.to_string())),
            Reply::Ok(text) => text,
        };
        let mut devices = Vec::new();
        for hex_bundle in bundles.split_whitespace() {
            let bundle = match hex::decode(hex_bundle)
                .map_err(|e| e.to_string())
                .and_then(|bytes| KeyBundle::decode(&bytes).map_err(|e| e.to_string()))
            {
                Ok(bundle) => bundle,
                Err(err) => return Ok(Lookup::Invalid(format!("malformed: {err}"))),
            };
            let key = match TrustedKey::verify(&bundle, nick, &self.ca) {
                Ok(key) => key,
                Err(err) => return Ok(Lookup::Invalid(err.to_string())),
            };
            // The remembered keys were read once, above.
            let known = KnownKeys::judge(&remembered, key.device(), &key.fingerprint());
            devices.push(Device { key, known });
        }
        if devices.is_empty() {
            return Ok(Lookup::Invalid("an empty list of keys".into()));
        }
        if devices.iter().all(|d| d.known == Known::New) {
            // First use: every device seen now is remembered.
            let first: Vec<(String, Fingerprint)> = devices
                .iter()
                .map(|d| (d.key.device().to_owned(), d.key.fingerprint()))
                .collect();
            if let Err(err) = self.known.accept(nick, &first) {
                return Ok(Lookup::Invalid(err.to_string()));
            }
        } else if let Some(why) = untrusted(nick, &devices) {
            self.alert = Some(why);
        }
        Ok(Lookup::Found(devices))
    }

    /// Strictly increasing, and above anything sent before a restart: microseconds since the
    /// epoch, or one more than the last.
    fn next_counter(&mut self) -> u64 {
        self.last_counter = counter_after(self.last_counter, now_micros());
        self.last_counter
    }
}

/// The counter after `last` at `now` (microseconds): `now`, or one more than `last` when the
/// clock has not moved past it (two messages in one microsecond, or a clock set back).
fn counter_after(last: u64, now: u64) -> u64 {
    now.max(last + 1)
}

/// Why `nick`'s devices may not be sealed to now: a changed key, or a device not accepted.
fn untrusted(nick: &str, devices: &[Device]) -> Option<String> {
    devices.iter().find_map(|d| match d.known {
        Known::Changed(remembered) => Some(changed(nick, &d.key, &remembered)),
        Known::NewDevice => Some(new_device(nick, &d.key)),
        Known::Same | Known::New => None,
    })
}

/// What to send for a direct message `text` to `nick`, by the rules above: in clear when asked
/// (`plain`), sealed when we have a key and `nick` has a trusted one, in clear when `nick` has
/// none; refused otherwise.
pub async fn outgoing(
    client: &mut Client,
    e2e: Option<&mut E2e>,
    nick: &str,
    text: &str,
    plain: bool,
) -> Result<Outgoing, ClientError> {
    match (plain, e2e) {
        (true, _) => Ok(self::plain(nick, text)),
        (false, Some(e2e)) => e2e.outgoing(client, nick, text).await,
        (false, None) => outgoing_without_key(client, nick, text).await,
    }
}

/// `/fingerprint [nick]` for any interface: our key's fingerprint, or a line about `nick`'s key;
/// `Err` with the reason when there is no E2E key to speak of.
pub async fn fingerprint_report(
    e2e: Option<&mut E2e>,
    client: &mut Client,
    nick: Option<&str>,
) -> Result<Result<String, String>, ClientError> {
    Ok(match (e2e, nick) {
        (None, _) => Err(NO_CERTIFICATE.to_owned()),
        (Some(e2e), None) => Ok(format!("your E2E key: {}", e2e.own_fingerprint())),
        (Some(e2e), Some(nick)) => Ok(e2e.describe(client, nick).await?),
    })
}

/// `/trust nick` for any interface: what was done, or why not.
pub async fn trust_report(
    e2e: Option<&mut E2e>,
    client: &mut Client,
    nick: &str,
) -> Result<Result<String, String>, ClientError> {
    match e2e {
        None => Ok(Err(NO_CERTIFICATE.to_owned())),
        Some(e2e) => e2e.trust(client, nick).await,
    }
}

/// `/devices [remove NAME]` for any interface: our devices with their fingerprints, or what
/// removing one did; `Err` with the reason when it cannot be done.
pub async fn devices_report(
    e2e: Option<&mut E2e>,
    client: &mut Client,
    remove: Option<&str>,
) -> Result<Result<String, String>, ClientError> {
    match (e2e, remove) {
        (None, _) => Ok(Err(NO_CERTIFICATE.to_owned())),
        (Some(e2e), None) => Ok(Ok(e2e.devices(client).await?)),
        (Some(e2e), Some(name)) => e2e.remove_device(client, name).await,
    }
}

/// Why a user without a certificate has no E2E key.
pub const NO_CERTIFICATE: &str = "E2E keys need a client certificate (--cert, --key)";

/// Where the seen counters of the key in `key` are kept: next to it, `KEY-seen`.
fn seen_path(key: &std::path::Path) -> PathBuf {
    let mut path = key.as_os_str().to_owned();
    path.push("-seen");
    PathBuf::from(path)
}

/// For a user without a certificate: a direct message in clear, unless the recipient has a
/// published key (then the user must ask for clear text explicitly).
async fn outgoing_without_key(
    client: &mut Client,
    nick: &str,
    text: &str,
) -> Result<Outgoing, ClientError> {
    Ok(match client.request(&Request::KeyGet(nick.to_owned())).await? {
        Reply::Ok(_) => Outgoing::Refused(format!(
            "{nick} has an E2E key, but you have no client certificate to encrypt and sign with; not sending in clear unless you ask (--plain)"
        )),
        Reply::Err(_) => plain(nick, text),
    })
}

/// A direct message in clear.
pub fn plain(nick: &str, text: &str) -> Outgoing {
    Outgoing::Send {
        request: Request::Msg {
            target: Target::User(nick.to_owned()),
            text: text.to_owned(),
        },
        e2e: false,
        notice: None,
    }
}

fn first_seen(nick: &str, key: &TrustedKey) -> String {
    format!(
        "first E2E key seen for {nick}'s device {}: {} (remembered; compare it with {nick} to be sure)",
        key.device(),
        fingerprint_text(&key.fingerprint())
    )
}

fn changed(nick: &str, key: &TrustedKey, remembered: &Fingerprint) -> String {
    format!(
        "WARNING: the E2E key of {nick}'s device {} has CHANGED (now {}, remembered {}). Someone may be intercepting your messages, or {nick} has a new key. Not sending or showing anything E2E for {nick} until you check with {nick} and accept it (/trust {nick} in chat, or `tlschat trust {nick}`).",
        key.device(),
        fingerprint_text(&key.fingerprint()),
        fingerprint_text(remembered)
    )
}

fn new_device(nick: &str, key: &TrustedKey) -> String {
    format!(
        "{nick} has a NEW device, {} (key {}), that you have not accepted. Not sending to or showing anything E2E from it until you check with {nick} that it is theirs and accept it (/trust {nick} in chat, or `tlschat trust {nick}`).",
        key.device(),
        fingerprint_text(&key.fingerprint())
    )
}

/// A sender with a certificate never sends in clear without asking: the name may be held by
/// someone else while its owner is away, or the server may be hiding the key.
fn no_key(nick: &str) -> String {
    format!(
        "{nick} has published no E2E key, so this message would go in clear: the server, and whoever holds the name {nick} now, could read it. Not sent. To send it in clear anyway: /msg --plain {nick} … (chat, TUI) or `tlschat send --plain`."
    )
}

fn withheld(nick: &str) -> String {
    format!(
        "{nick} had an E2E key before, but the server now offers none; not sending in clear unless you ask (--plain)"
    )
}

fn replayed(err: ReplayError) -> String {
    match err {
        ReplayError::Duplicate => "replayed: this message was already received".to_owned(),
        ReplayError::TooOld => {
            "replayed or far out of order: older than the replay window".to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::counter_after;

    #[test]
    fn counters_strictly_increase_whatever_the_clock_does() {
        assert_eq!(counter_after(5, 9), 9);
        assert_eq!(counter_after(5, 5), 6, "the same microsecond");
        assert_eq!(counter_after(5, 3), 6, "a clock set back");
        assert_eq!(counter_after(0, 0), 1);
    }
}
