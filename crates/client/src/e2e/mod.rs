//! End-to-end encrypted direct messages, client side: the user's E2E key, the remembered keys
//! of others, and the rules for when a direct message is sealed, sent in clear or refused.
//!
//! - A user with a certificate has an E2E key ([`store::load_or_create_key`]) and publishes it
//!   with `KEY SET` on every connection ([`E2e::publish`]).
//! - Before a direct message, the sender fetches the recipient's key (`KEY GET`) and checks
//!   it: the certificate chains to the CA and names the recipient, its key signed the E2E key,
//!   and the fingerprint matches the one remembered ([`store::KnownKeys`], trust on first use).
//!   A changed, forged or withheld key stops the message ([`Outgoing::Refused`]), and so does
//!   a recipient without a key: a user with a certificate sends in clear only when asked to
//!   (`--plain`), so neither a name squatter nor a server hiding keys gets a message in clear.
//! - A received `EVENT E2E` is verified and opened ([`E2e::receive`]); a replayed, stale,
//!   forged or undecryptable message comes back as [`Received::Refused`] with the reason, to be
//!   shown, never dropped.

pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;

use tlschat_proto::e2e::{KeyBundle, Payload, Sealed};
use tlschat_proto::names::name_key;
use tlschat_proto::replay::{CounterMemory, ReplayError, DEFAULT_COUNTER_MEMORY};
use tlschat_proto::{hex, ErrorCode, Reply, Request, Target, Trust};
use tlschat_tls::e2e::{fingerprint_text, E2eError, E2eKey, Fingerprint, TrustedKey};
use tlschat_tls::signing::{CertKey, ClientCheck};

use self::store::{Known, KnownKeys, SeenCounters, StoreError};
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
        /// It came after a later message from the same sender.
        reordered: bool,
        /// When the sender sealed it, RFC 3339 UTC, by the sender's clock: signed, so the
        /// server can neither change it nor pass an old message off as new. Stored messages
        /// arrive hours later; this is the time to show.
        sent: String,
    },
    /// Not shown as a message, for this reason.
    Refused(String),
}

/// What a key lookup found.
#[derive(Debug)]
enum Lookup {
    /// The user published no key, and none is remembered.
    NoKey,
    /// A valid key that matches the remembered one (or is remembered now: `first`).
    Trusted { key: TrustedKey, first: bool },
    /// A valid key, but not the one remembered.
    Changed {
        key: TrustedKey,
        remembered: Fingerprint,
    },
    /// The server offers no key, but one is remembered.
    Withheld,
    /// The published key does not verify, or the remembered keys cannot be read.
    Invalid(String),
}

/// A user's E2E state for one or more connections.
pub struct E2e {
    me: String,
    cert: CertKey,
    key: E2eKey,
    bundle: KeyBundle,
    fingerprint: Fingerprint,
    ca: ClientCheck,
    known: KnownKeys,
    /// The highest counter accepted from each sender, on disk (survives restarts).
    seen: SeenCounters,
    /// Verified keys of those who sent us messages.
    senders: HashMap<String, TrustedKey>,
    windows: HashMap<String, CounterMemory>,
    last_counter: u64,
    created: bool,
    /// The latest key change seen and not yet taken by [`E2e::take_alert`].
    alert: Option<String>,
}

impl E2e {
    /// The E2E state of the configured user: `None` without a client certificate (E2E needs
    /// an identity others can check). Creates the private key on first use.
    pub fn open(config: &ClientConfig) -> Result<Option<Self>, E2eSetupError> {
        let (Some(cert_path), Some(key_path)) = (&config.cert, &config.key) else {
            return Ok(None);
        };
        let paths = config
            .e2e_paths()
            .unwrap_or_else(|| E2ePaths::beside(cert_path));
        let cert = CertKey::load(cert_path, key_path)?;
        let me = config.certificate_name().ok_or(E2eSetupError::NoName)?;
        let (key, created) = store::load_or_create_key(&paths.key)?;
        let ca = ClientCheck::new(&config.ca)?;
        let bundle = key.bundle(&cert, &me).map_err(E2eSetupError::OwnKey)?;
        let fingerprint = TrustedKey::verify(&bundle, &me, &ca)
            .map_err(E2eSetupError::OwnKey)?
            .fingerprint();
        Ok(Some(Self {
            me: name_key(&me),
            cert,
            key,
            bundle,
            fingerprint,
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

    /// Our name.
    pub fn name(&self) -> &str {
        &self.me
    }

    /// Our own key's fingerprint, as people compare it.
    pub fn own_fingerprint(&self) -> String {
        fingerprint_text(&self.fingerprint)
    }

    /// The latest warning about a changed key met since the last call (one is kept, so a
    /// client that never asks does not collect them): an interface that can ask the user to
    /// acknowledge it shows it so.
    pub fn take_alert(&mut self) -> Option<String> {
        self.alert.take()
    }

    /// Whether the private key was created when this state was opened.
    pub fn key_was_created(&self) -> bool {
        self.created
    }

    /// Publishes our key (`KEY SET`). `Ok(Err(text))` when the server refused it.
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

    /// A line about `nick`'s key: its fingerprint and whether it is the remembered one.
    pub async fn describe(
        &mut self,
        client: &mut Client,
        nick: &str,
    ) -> Result<String, ClientError> {
        Ok(match self.lookup(client, nick).await? {
            Lookup::NoKey => format!("{nick} has published no E2E key"),
            Lookup::Trusted { key, first } => format!(
                "{nick}'s E2E key: {}{}",
                fingerprint_text(&key.fingerprint()),
                if first {
                    " (seen for the first time; remembered)"
                } else {
                    " (matches the one remembered)"
                }
            ),
            Lookup::Changed { key, remembered } => format!(
                "{nick}'s E2E key has CHANGED: now {}, remembered {}",
                fingerprint_text(&key.fingerprint()),
                fingerprint_text(&remembered)
            ),
            Lookup::Withheld => withheld(nick),
            Lookup::Invalid(err) => format!("{nick}'s published E2E key is not valid: {err}"),
        })
    }

    /// Accepts `nick`'s current key after a change (the user compared fingerprints):
    /// `Ok(what was done)` or `Err(why not)`.
    pub async fn trust(
        &mut self,
        client: &mut Client,
        nick: &str,
    ) -> Result<Result<String, String>, ClientError> {
        Ok(match self.lookup(client, nick).await? {
            Lookup::Changed { key, .. } | Lookup::Trusted { key, .. } => {
                match self.known.remember(nick, &key.fingerprint()) {
                    Ok(()) => {
                        let text = fingerprint_text(&key.fingerprint());
                        self.senders.insert(name_key(nick), key);
                        Ok(format!("now trusting {nick}'s E2E key {text}"))
                    }
                    Err(err) => Err(format!("cannot remember the key: {err}")),
                }
            }
            Lookup::NoKey | Lookup::Withheld => Err(format!("{nick} has published no E2E key")),
            Lookup::Invalid(err) => Err(format!("{nick}'s published E2E key is not valid: {err}")),
        })
    }

    /// Seals `text` to `nick` when they have a trusted key; a direct message in clear when
    /// they have none.
    pub async fn outgoing(
        &mut self,
        client: &mut Client,
        nick: &str,
        text: &str,
    ) -> Result<Outgoing, ClientError> {
        let (key, notice) = match self.lookup(client, nick).await? {
            Lookup::NoKey => return Ok(Outgoing::Refused(no_key(nick))),
            Lookup::Trusted { key, first } => {
                let notice = first.then(|| first_seen(nick, &key));
                (key, notice)
            }
            Lookup::Changed { key, remembered } => {
                return Ok(Outgoing::Refused(changed(nick, &key, &remembered)))
            }
            Lookup::Withheld => return Ok(Outgoing::Refused(withheld(nick))),
            Lookup::Invalid(err) => {
                return Ok(Outgoing::Refused(format!(
                    "{nick}'s published E2E key is not valid ({err}); not sending. Someone may be impersonating {nick}."
                )))
            }
        };
        let counter = self.next_counter();
        Ok(
            match key
                .seal(&self.cert, &self.me, counter, now_ms(), text)
                .map_err(|e| e.to_string())
                .and_then(|sealed| Payload::new(sealed).map_err(|e| e.to_string()))
            {
                Ok(sealed) => Outgoing::Send {
                    request: Request::E2e {
                        to: nick.to_owned(),
                        sealed,
                    },
                    e2e: true,
                    notice,
                },
                Err(err) => Outgoing::Refused(format!("cannot encrypt: {err}")),
            },
        )
    }

    /// Verifies and opens an `EVENT E2E` from `from`.
    pub async fn receive(
        &mut self,
        client: &mut Client,
        from: &str,
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
        // No freshness bound: a stored message may arrive hours later. Replays are caught by
        // the counters (remembered in this run, and the highest kept on disk across runs), and
        // the signed send time is what the user sees.
        let sender = name_key(from);
        // What an earlier run of this client accepted is refused too.
        let floor = self.seen.get(&sender);
        let window = self
            .windows
            .entry(sender.clone())
            .or_insert_with(|| CounterMemory::with_floor(DEFAULT_COUNTER_MEMORY, floor));
        if let Err(err) = window.check(sealed.counter) {
            return refuse(replayed(err));
        }
        let cached = self
            .senders
            .get(&sender)
            .and_then(|key| self.key.open(&self.me, key, &sealed).ok());
        let text = match cached {
            Some(text) => text,
            None => {
                // No key cached, or the sender's key changed since: fetch it.
                let key = match self.lookup(client, from).await? {
                    Lookup::Trusted { key, .. } => key,
                    Lookup::Changed { key, remembered } => {
                        return refuse(changed(from, &key, &remembered))
                    }
                    Lookup::NoKey | Lookup::Withheld => {
                        return refuse(format!("{from} has no published E2E key to verify it with"))
                    }
                    Lookup::Invalid(err) => {
                        return refuse(format!("{from}'s published E2E key is not valid ({err})"))
                    }
                };
                let text = match self.key.open(&self.me, &key, &sealed) {
                    Ok(text) => text,
                    Err(err) => return refuse(err.to_string()),
                };
                self.senders.insert(sender.clone(), key);
                text
            }
        };
        let window = self.windows.entry(sender.clone()).or_default();
        let reordered = window.top().is_some_and(|top| sealed.counter < top);
        if let Err(err) = window.accept(sealed.counter) {
            return refuse(replayed(err));
        }
        if let Err(err) = self.seen.record(&sender, sealed.counter) {
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

    /// Fetches and checks `nick`'s key, remembering it on first use.
    async fn lookup(&mut self, client: &mut Client, nick: &str) -> Result<Lookup, ClientError> {
        let remembered = match self.known.get(nick) {
            Ok(fp) => fp,
            Err(err) => return Ok(Lookup::Invalid(err.to_string())),
        };
        let reply = client.request(&Request::KeyGet(nick.to_owned())).await?;
        let bundle = match reply {
            Reply::Err(err) if err.code == ErrorCode::NoKey => {
                return Ok(match remembered {
                    Some(_) => Lookup::Withheld,
                    None => Lookup::NoKey,
                })
            }
            Reply::Err(err) => return Ok(Lookup::Invalid(err.to_string())),
            Reply::Ok(text) => match hex::decode(text.trim())
                .map_err(|e| e.to_string())
                .and_then(|bytes| KeyBundle::decode(&bytes).map_err(|e| e.to_string()))
            {
                Ok(bundle) => bundle,
                Err(err) => return Ok(Lookup::Invalid(format!("malformed: {err}"))),
            },
        };
        let key = match TrustedKey::verify(&bundle, nick, &self.ca) {
            Ok(key) => key,
            Err(err) => return Ok(Lookup::Invalid(err.to_string())),
        };
        Ok(match self.known.check(nick, &key.fingerprint()) {
            Ok(Known::Same) => Lookup::Trusted { key, first: false },
            Ok(Known::Changed(remembered)) => {
                self.alert = Some(changed(nick, &key, &remembered));
                Lookup::Changed { key, remembered }
            }
            Ok(Known::New) => match self.known.remember(nick, &key.fingerprint()) {
                Ok(()) => Lookup::Trusted { key, first: true },
                Err(err) => Lookup::Invalid(err.to_string()),
            },
            Err(err) => Lookup::Invalid(err.to_string()),
        })
    }

    /// Strictly increasing, and above anything sent before a restart: microseconds since the
    /// epoch, or one more than the last.
    fn next_counter(&mut self) -> u64 {
        self.last_counter = now_micros().max(self.last_counter + 1);
        self.last_counter
    }
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
        "first E2E key seen for {nick}: {} (remembered; compare it with {nick} to be sure)",
        fingerprint_text(&key.fingerprint())
    )
}

fn changed(nick: &str, key: &TrustedKey, remembered: &Fingerprint) -> String {
    format!(
        "WARNING: {nick}'s E2E key has CHANGED (now {}, remembered {}). Someone may be intercepting your messages, or {nick} has a new key. Not sending or showing anything E2E for {nick} until you check with {nick} and accept it (/trust {nick} in chat, or `tlschat trust {nick}`).",
        fingerprint_text(&key.fingerprint()),
        fingerprint_text(remembered)
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
