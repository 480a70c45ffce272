//! Signed UDP mode: the stateless verbs over datagrams that are signed instead of encrypted.
//!
//! Each request is checked in this order, cheapest first, and dropped at the first failure,
//! without a reply (a reply to an unauthenticated datagram could be aimed at a spoofed victim):
//!
//! 1. size, then layout ([`Datagram::parse`]);
//! 2. it is a request;
//! 3. its timestamp is at most the allowed skew behind our clock, and at most the small
//!    `max_ahead` margin ahead of it;
//! 4. its key: a known sender's (whose certificate has not expired since), or else the datagram
//!    must carry a certificate whose key id matches, which verifies against the CA as a TLS
//!    client certificate would, and whose timestamp is newer than the *floor*, so nothing sent
//!    before we forgot a sender can be replayed;
//! 5. its sequence number is new for that sender ([`ReplayWindow`]);
//! 6. its signature.
//!
//! Only then is the sender remembered (the table holds at most `max_senders`; the least
//! recently active is evicted) and the request answered, signed with the server's key over the
//! reply *and* the request it answers (see `tlschat_proto::datagram`). A reply carries the
//! server certificate only when the request asks for it (`WANT_CERT`), and is never more than
//! [`AMPLIFICATION_FACTOR`] times the request's size.
//!
//! # The floor
//!
//! Timestamps are the sender's clock, at most `max_ahead` ahead of ours. So everything an
//! earlier run of the server answered is stamped at most its last moment plus `max_ahead`: the
//! floor starts at our start plus `max_ahead` (the server waits that long before it listens).
//! Forgetting a sender (eviction, or a reload, which forgets everyone so the new CA and any
//! expiry apply at once) raises the floor to the newest timestamp accepted from it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;
use tlschat_proto::datagram::{self, Datagram, DatagramError, Header, Kind, RequestBinding};
use tlschat_proto::replay::{ReplayError, ReplayWindow};
use tlschat_proto::{Reply, Request, Verb};
use tlschat_tls::signing::{sha256, CertKey, ClientCheck, KeyId, PeerKey};

use crate::random::ProviderRandom;
use crate::sync::lock;
use crate::verbs::{self, VerbContext};

/// The verbs UDP mode answers: the stateless ones. Chat stays on TLS.
pub const UDP_VERBS: &[Verb] = &[
    Verb::Help,
    Verb::Time,
    Verb::Echo,
    Verb::Sum,
    Verb::Lucky,
    Verb::Greet,
    Verb::Number,
    Verb::Ping,
];

/// Default largest age of a datagram's timestamp, on the server's clock: 30 s.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(30);

/// Default largest lead of a datagram's timestamp over the server's clock: 1 s. Clocks of a
/// network kept in time by NTP differ by milliseconds. The server waits this long after start
/// before it answers (see the module's floor).
pub const DEFAULT_MAX_AHEAD: Duration = Duration::from_secs(1);

/// Default number of senders remembered (key, name, replay window): 4,096, about 1 MiB.
pub const DEFAULT_MAX_SENDERS: usize = 4096;

/// A reply is never more than this many times the size of its request.
pub const AMPLIFICATION_FACTOR: usize = 3;

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Malformed: too short, too long, unknown version…
    Malformed(DatagramError),
    /// A reply, where only requests are expected.
    NotARequest,
    /// The timestamp is too old or too far ahead of our clock, or not above the floor for new
    /// senders.
    Stale,
    /// The sender's certificate has expired since it was checked.
    Expired,
    /// No certificate, and the key id is not one we know.
    UnknownKey,
    /// The certificate's key is not the one the key id names.
    KeyMismatch,
    /// The certificate does not verify against the CA.
    UntrustedCert,
    /// The sequence number was seen, or is below the window.
    Replayed(ReplayError),
    /// The signature does not verify.
    BadSignature,
    /// The reply would have been too large compared with the request.
    Amplification,
    /// The certificate is revoked.
    Revoked,
}

impl Dropped {
    /// The counter name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Malformed(err) => err.name(),
            Self::NotARequest => "not_a_request",
            Self::Stale => "stale",
            Self::Revoked => "revoked",
            Self::Expired => "expired_cert",
            Self::UnknownKey => "unknown_key",
            Self::KeyMismatch => "key_mismatch",
            Self::UntrustedCert => "untrusted_cert",
            Self::Replayed(ReplayError::Duplicate) => "replayed",
            Self::Replayed(ReplayError::TooOld) => "too_old",
            Self::BadSignature => "bad_signature",
            Self::Amplification => "amplification",
        }
    }
}

/// Counters of answered and dropped datagrams, shared with `STATS`.
#[derive(Debug, Default)]
pub struct UdpStats {
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

impl UdpStats {
    fn count(&self, name: &'static str) {
        *lock(&self.counts).entry(name).or_default() += 1;
    }

    /// Every counter so far, `answered` and one per drop reason seen, sorted by name.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        lock(&self.counts).iter().map(|(k, v)| (*k, *v)).collect()
    }
}

/// UDP settings.
#[derive(Debug, Clone)]
pub struct UdpConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Largest datagram read, in bytes.
    pub max_datagram: usize,
    /// Largest timestamp age accepted.
    pub max_skew: Duration,
    /// Largest timestamp lead over our clock accepted.
    pub max_ahead: Duration,
    /// Senders remembered at most.
    pub max_senders: usize,
}

impl UdpConfig {
    /// Defaults, listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            max_datagram: datagram::DEFAULT_MAX_DATAGRAM,
            max_skew: DEFAULT_MAX_SKEW,
            max_ahead: DEFAULT_MAX_AHEAD,
            max_senders: DEFAULT_MAX_SENDERS,
        }
    }
}

/// The keys UDP mode works with; replaced as a whole on reload.
#[derive(Clone)]
pub struct UdpKeys {
    /// The server's certificate and key, for signing replies.
    pub signer: Arc<CertKey>,
    /// The CA check for client certificates.
    pub clients: ClientCheck,
    /// Revoked client certificates: their requests get no reply.
    pub revoked: Arc<crate::revoked::Revoked>,
}

impl UdpKeys {
    /// The signer and the CA check from what was read for TLS: the leaf certificate and its
    /// key (from `cert_path` and `key_path`, which errors name) and the CA roots.
    pub fn new(
        leaf: CertificateDer<'static>,
        key: &PrivateKeyDer<'_>,
        roots: Arc<RootCertStore>,
        revoked: Arc<crate::revoked::Revoked>,
        (cert_path, key_path): (&std::path::Path, &std::path::Path),
    ) -> Result<Self, tlschat_tls::signing::SigningError> {
        Ok(Self {
            signer: Arc::new(CertKey::from_der(leaf, key, cert_path, key_path)?),
            clients: ClientCheck::with_roots(roots)?,
            revoked,
        })
    }
}

struct Sender {
    key: PeerKey,
    window: ReplayWindow,
    /// When we last answered it, on our clock: for eviction.
    last_seen_ms: u64,
    /// The newest timestamp accepted from it, on its clock: the floor once it is forgotten.
    newest_ms: u64,
}

/// The UDP protocol state: no socket, so tests can feed it datagrams and a clock.
pub struct UdpService {
    config: UdpConfig,
    server_name: String,
    keys: UdpKeys,
    senders: HashMap<KeyId, Sender>,
    /// New senders' timestamps must be above this (milliseconds since the epoch).
    floor_ms: u64,
    dice: ProviderRandom,
    stats: Arc<UdpStats>,
}

impl UdpService {
    /// A service signing and checking with `keys`, started at `now`.
    pub fn new(config: UdpConfig, server_name: String, keys: UdpKeys, now: DateTime<Utc>) -> Self {
        Self {
            server_name,
            keys,
            senders: HashMap::new(),
            floor_ms: millis(now).saturating_add(duration_ms(config.max_ahead)),
            config,
            dice: ProviderRandom::new(),
            stats: Arc::new(UdpStats::default()),
        }
    }

    /// Uses new keys from now on (after a reload) and forgets every sender, so each one's
    /// certificate is checked again against the CA now in force. The floor rises to the newest
    /// timestamp accepted from any of them, so nothing they sent can be replayed.
    pub fn set_keys(&mut self, keys: UdpKeys) {
        self.keys = keys;
        let newest = self.senders.values().map(|s| s.newest_ms).max();
        self.floor_ms = self.floor_ms.max(newest.unwrap_or(0));
        self.senders.clear();
    }

    /// When the service may start answering: the initial floor, on the server's clock. Anything
    /// sent before then is refused as possibly from an earlier run.
    pub fn ready_at_ms(&self) -> u64 {
        self.floor_ms
    }

    /// The counters.
    pub fn stats(&self) -> Arc<UdpStats> {
        self.stats.clone()
    }

    /// Senders remembered now.
    pub fn sender_count(&self) -> usize {
        self.senders.len()
    }

    /// Checks one received datagram and returns the signed reply to send, or why it was
    /// dropped. Counts either way.
    pub fn handle(&mut self, bytes: &[u8], now: DateTime<Utc>) -> Result<Vec<u8>, Dropped> {
        let result = self.check_and_answer(bytes, now);
        self.stats.count(match &result {
            Ok(_) => "answered",
            Err(reason) => reason.name(),
        });
        result
    }

    fn check_and_answer(&mut self, bytes: &[u8], now: DateTime<Utc>) -> Result<Vec<u8>, Dropped> {
        let request =
            Datagram::parse(bytes, self.config.max_datagram).map_err(Dropped::Malformed)?;
        let header = request.header;
        if header.kind != Kind::Request {
            return Err(Dropped::NotARequest);
        }
        let now_ms = millis(now);
        let ts = header.timestamp_ms;
        if ts > now_ms.saturating_add(duration_ms(self.config.max_ahead))
            || now_ms.saturating_sub(ts) > duration_ms(self.config.max_skew)
        {
            return Err(Dropped::Stale);
        }
        let new_sender = match self.senders.get(&header.key_id) {
            Some(sender) if sender.key.not_after() < now.timestamp() => {
                self.forget(header.key_id);
                return Err(Dropped::Expired);
            }
            Some(sender) => {
                sender.window.check(header.seq).map_err(Dropped::Replayed)?;
                None
            }
            None => Some(self.new_sender(&request)?),
        };
        let signing_input = request.signing_input();
        let key = match &new_sender {
            Some(key) => key,
            None => {
                &self
                    .senders
                    .get(&header.key_id)
                    .ok_or(Dropped::UnknownKey)?
                    .key
            }
        };
        if !key.verify(&signing_input, request.signature) {
            return Err(Dropped::BadSignature);
        }
        let caller = key.name().unwrap_or("anonymous").to_owned();
        self.remember(header.key_id, new_sender, header.seq, ts, now_ms)?;
        let reply = self.answer(request.body, &caller, now);
        let signer = &self.keys.signer;
        let cert = header.want_cert.then(|| signer.cert_der());
        let answers = RequestBinding {
            key_id: header.key_id,
            digest: sha256(bytes),
        };
        let reply_header = Header {
            kind: Kind::Reply,
            want_cert: false,
            key_id: signer.key_id(),
            seq: header.seq,
            timestamp_ms: now_ms,
        };
        let encoded =
            datagram::encode_reply(&reply_header, &reply.to_string(), cert, &answers, |input| {
                signer.sign(input)
            })
            .map_err(|_| Dropped::Amplification)?;
        if encoded.len() > AMPLIFICATION_FACTOR * bytes.len() {
            return Err(Dropped::Amplification);
        }
        Ok(encoded)
    }

    /// Checks an unknown sender's certificate; returns its key, not yet remembered.
    fn new_sender(&self, request: &Datagram<'_>) -> Result<PeerKey, Dropped> {
        let cert = request.cert.ok_or(Dropped::UnknownKey)?;
        if request.header.timestamp_ms <= self.floor_ms {
            return Err(Dropped::Stale);
        }
        let key = PeerKey::from_cert(cert).map_err(|_| Dropped::UntrustedCert)?;
        if key.key_id() != request.header.key_id {
            return Err(Dropped::KeyMismatch);
        }
        self.keys
            .clients
            .verify(cert)
            .map_err(|_| Dropped::UntrustedCert)?;
        if self.keys.revoked.covers(cert) {
            return Err(Dropped::Revoked);
        }
        Ok(key)
    }

    /// Records an accepted sequence number, adding a new sender (evicting if full).
    fn remember(
        &mut self,
        key_id: KeyId,
        new_key: Option<PeerKey>,
        seq: u64,
        timestamp_ms: u64,
        now_ms: u64,
    ) -> Result<(), Dropped> {
        if let Some(key) = new_key {
            if self.senders.len() >= self.config.max_senders {
                self.evict_oldest();
            }
            self.senders.insert(
                key_id,
                Sender {
                    key,
                    window: ReplayWindow::new(),
                    last_seen_ms: now_ms,
                    newest_ms: timestamp_ms,
                },
            );
        }
        let sender = self.senders.get_mut(&key_id).ok_or(Dropped::UnknownKey)?;
        sender.window.accept(seq).map_err(Dropped::Replayed)?;
        sender.last_seen_ms = now_ms;
        sender.newest_ms = sender.newest_ms.max(timestamp_ms);
        Ok(())
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .senders
            .iter()
            .min_by_key(|(_, s)| s.last_seen_ms)
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.forget(id);
        }
    }

    /// Forgets a sender. Anything it sent could be replayed once it is forgotten; raising the
    /// floor to the newest timestamp accepted from it refuses all of that.
    fn forget(&mut self, id: KeyId) {
        if let Some(sender) = self.senders.remove(&id) {
            self.floor_ms = self.floor_ms.max(sender.newest_ms);
        }
    }

    fn answer(&mut self, body: &str, caller: &str, now: DateTime<Utc>) -> Reply {
        let mut cx = VerbContext {
            server_name: &self.server_name,
            now,
            dice: &mut self.dice,
            available: UDP_VERBS,
        };
        match Request::parse(body) {
            Ok(Some(request)) if UDP_VERBS.contains(&request.verb()) => {
                verbs::answer(&request, caller, &mut cx)
                    .unwrap_or_else(|| not_offered(request.verb()))
            }
            Ok(Some(request)) => not_offered(request.verb()),
            Ok(None) => Reply::err(tlschat_proto::ErrorCode::BadArgs, "empty request"),
            Err(err) => Reply::err(err.code(), err),
        }
    }
}

fn not_offered(verb: Verb) -> Reply {
    Reply::err(
        tlschat_proto::ErrorCode::UnknownVerb,
        format!("{verb} is not offered over UDP (chat needs TLS); HELP lists what is"),
    )
}

fn millis(time: DateTime<Utc>) -> u64 {
    u64::try_from(time.timestamp_millis()).unwrap_or(0)
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Receives, checks and answers datagrams until `shutdown`, taking new keys from `keys`.
pub async fn serve(
    socket: UdpSocket,
    mut service: UdpService,
    mut keys: watch::Receiver<UdpKeys>,
    shutdown: CancellationToken,
) {
    // One byte more than the limit, to tell an oversized datagram from one exactly at it.
    let mut buf = vec![0u8; service.config.max_datagram + 1];
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            changed = keys.changed() => {
                if changed.is_ok() {
                    service.set_keys(keys.borrow_and_update().clone());
                }
                continue;
            }
            received = socket.recv_from(&mut buf) => received,
        };
        let (len, from) = match received {
            Ok(received) => received,
            Err(err) => {
                // ICMP errors from earlier sends surface here on some systems; keep serving.
                debug!(error = %err, "UDP receive failed");
                continue;
            }
        };
        match service.handle(&buf[..len], Utc::now()) {
            Ok(reply) => {
                if let Err(err) = socket.send_to(&reply, from).await {
                    warn!(peer = %from, error = %err, "UDP reply failed");
                }
            }
            Err(reason) => debug!(peer = %from, reason = reason.name(), len, "datagram dropped"),
        }
    }
}

#[cfg(test)]
mod tests;
