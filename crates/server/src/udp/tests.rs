use std::path::PathBuf;

use chrono::{Duration as ChronoDuration, TimeZone};
use tlschat_certgen::{generate, Options};
use tlschat_proto::datagram::FLAG_CERT;
use tlschat_proto::ServerLine;

use super::*;

struct Pki {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut options = Options::new(dir.path());
        options.clients = vec!["alice".into(), "bob".into()];
        generate(&options).unwrap();
        Self {
            root: dir.path().to_owned(),
            _dir: dir,
        }
    }

    fn key(&self, name: &str) -> CertKey {
        CertKey::load(
            &self.root.join(format!("{name}.pem")),
            &self.root.join(format!("{name}-key.pem")),
        )
        .unwrap()
    }

    fn service(&self, config: UdpConfig, started: DateTime<Utc>) -> UdpService {
        let keys = UdpKeys {
            signer: Arc::new(self.key("server")),
            clients: ClientCheck::new(&self.root.join("ca.pem")).unwrap(),
            revoked: Arc::default(),
        };
        UdpService::new(config, "srv".into(), keys, started)
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 9, 0, 0).unwrap()
}

fn config() -> UdpConfig {
    UdpConfig::new("127.0.0.1:0".parse().unwrap())
}

fn request(key: &CertKey, body: &str, seq: u64, at: DateTime<Utc>, with_cert: bool) -> Vec<u8> {
    let header = Header {
        kind: Kind::Request,
        want_cert: with_cert,
        key_id: key.key_id(),
        seq,
        timestamp_ms: millis(at),
    };
    let cert = with_cert.then(|| key.cert_der());
    datagram::encode(&header, body, cert, |input| key.sign(input)).unwrap()
}

/// A moment after the service's floor (start + max ahead), when it answers.
fn after_start() -> DateTime<Utc> {
    t0() + ChronoDuration::seconds(2)
}

/// What a reply's signature must be bound to: the requester's exact request.
fn binding(request: &[u8]) -> RequestBinding {
    let parsed = Datagram::parse(request, usize::MAX).unwrap();
    RequestBinding {
        key_id: parsed.header.key_id,
        digest: sha256(request),
    }
}

/// Parses and verifies the reply to `request` with the server's key; returns the reply line
/// and whether the server's certificate came along.
fn open_reply(pki: &Pki, request: &[u8], bytes: &[u8]) -> (String, bool) {
    let reply = Datagram::parse(bytes, datagram::DEFAULT_MAX_DATAGRAM).unwrap();
    assert_eq!(reply.header.kind, Kind::Reply);
    let asked = Datagram::parse(request, usize::MAX).unwrap();
    assert_eq!(
        reply.header.seq, asked.header.seq,
        "the request's sequence number is echoed"
    );
    let server = PeerKey::from_cert(pki.key("server").cert_der()).unwrap();
    assert_eq!(reply.header.key_id, server.key_id());
    assert!(
        server.verify(
            &reply.reply_signing_input(&binding(request)),
            reply.signature
        ),
        "signed by the server, for this request"
    );
    (reply.body.to_owned(), reply.cert.is_some())
}

/// Sends `request` at `now`; the verified reply line.
fn ask(udp: &mut UdpService, pki: &Pki, request: &[u8], now: DateTime<Utc>) -> String {
    let reply = udp.handle(request, now).unwrap();
    open_reply(pki, request, &reply).0
}

#[test]
fn a_valid_request_gets_a_signed_reply() {
    let pki = Pki::new();
    let mut udp = pki.service(config(), t0());
    let alice = pki.key("alice");
    let now = after_start();
    let first = request(&alice, "SUM 1 2 3", 7, now, true);
    let (line, cert) = open_reply(&pki, &first, &udp.handle(&first, now).unwrap());
    assert_eq!(line, "OK 6");
    assert!(cert, "the server's certificate comes back when asked for");

    // Known now: no certificate needed, and the caller's name is the certificate's.
    let greet = request(&alice, "GREET", 8, now, false);
    let (line, cert) = open_reply(&pki, &greet, &udp.handle(&greet, now).unwrap());
    assert_eq!(line, "OK Hello, alice!");
    assert!(!cert);
    let join = ask(
        &mut udp,
        &pki,
        &request(&alice, "JOIN #x", 9, now, false),
        now,
    );
    assert!(join.starts_with("ERR UNKNOWN_VERB JOIN is not offered over UDP"));
    let number = ask(
        &mut udp,
        &pki,
        &request(&alice, "NUMBER 500", 10, now, false),
        now,
    );
    assert!(number.starts_with("ERR OUT_OF_RANGE"));
    let help = ask(
        &mut udp,
        &pki,
        &request(&alice, "HELP", 11, now, false),
        now,
    );
    assert!(ServerLine::parse(&help).is_ok());
}

#[test]
fn a_reply_to_someone_elses_request_with_our_sequence_number_does_not_verify() {
    let pki = Pki::new();
    let mut udp = pki.service(config(), t0());
    let (alice, mallory) = (pki.key("alice"), pki.key("bob"));
    let now = after_start();
    // Mallory drops alice's request and sends her own under alice's sequence number.
    let alices = request(&alice, "SUM 1 2", 77, now, true);
    let mallorys = request(&mallory, "SUM 500 500", 77, now, true);
    let reply = udp.handle(&mallorys, now).unwrap();
    let parsed = Datagram::parse(&reply, usize::MAX).unwrap();
    assert_eq!(parsed.header.seq, 77);
    let server = PeerKey::from_cert(pki.key("server").cert_der()).unwrap();
    assert!(
        !server.verify(
            &parsed.reply_signing_input(&binding(&alices)),
            parsed.signature
        ),
        "the reply must not pass as the answer to alice's request"
    );
    // Alice's own key and sequence number but other bytes: bound to the exact request.
    let first = request(&alice, "SUM 1 2", 78, now, true);
    let reply = udp.handle(&first, now).unwrap();
    let parsed = Datagram::parse(&reply, usize::MAX).unwrap();
    let lookalike = request(&alice, "SUM 1 2 ", 78, now, false);
    assert!(!server.verify(
        &parsed.reply_signing_input(&binding(&lookalike)),
        parsed.signature
    ));
    assert!(server.verify(
        &parsed.reply_signing_input(&binding(&first)),
        parsed.signature
    ));
}

#[test]
fn the_certificate_comes_back_only_when_asked_for() {
    let pki = Pki::new();
    let mut udp = pki.service(config(), t0());
    let alice = pki.key("alice");
    let now = after_start();
    let header = Header {
        kind: Kind::Request,
        want_cert: false,
        key_id: alice.key_id(),
        seq: 1,
        timestamp_ms: millis(now),
    };
    // A certificate sent along, but no WANT_CERT: the reply stays small.
    let bytes =
        datagram::encode(&header, "PING", Some(alice.cert_der()), |i| alice.sign(i)).unwrap();
    let reply = udp.handle(&bytes, now).unwrap();
    let (line, cert) = open_reply(&pki, &bytes, &reply);
    assert_eq!((line.as_str(), cert), ("OK PONG", false));
    assert!(reply.len() < 300, "{} bytes", reply.len());
}

#[test]
fn a_reply_larger_than_allowed_is_never_sent() {
    let pki = Pki::new();
    let mut udp = pki.service(config(), t0());
    let alice = pki.key("alice");
    let now = after_start();
    assert!(udp
        .handle(&request(&alice, "PING", 1, now, true), now)
        .is_ok());
    // A known sender without its certificate, asking for the server's: hundreds of bytes back
    // for a request of about a hundred.
    let header = Header {
        kind: Kind::Request,
        want_cert: true,
        key_id: alice.key_id(),
        seq: 2,
        timestamp_ms: millis(now),
    };
    let small = datagram::encode(&header, "PING", None, |i| alice.sign(i)).unwrap();
    assert_eq!(udp.handle(&small, now), Err(Dropped::Amplification));
    let counted = udp.stats().snapshot();
    assert!(counted.contains(&("amplification", 1)), "{counted:?}");
}

#[test]
fn a_replayed_datagram_is_dropped_and_reordering_is_not() {
    let pki = Pki::new();
    let mut udp = pki.service(config(), t0());
    let alice = pki.key("alice");
    let now = after_start();
    let first = request(&alice, "PING", 5000, now, true);
    let earlier = request(&alice, "PING", 4999, now, true);
    assert!(udp.handle(&first, now).is_ok());
    assert_eq!(
        udp.handle(&first, now),
        Err(Dropped::Replayed(ReplayError::Duplicate))
    );
    assert!(
        udp.handle(&earlier, now).is_ok(),
        "out of order but inside the window"
    );
    assert_eq!(
        udp.handle(&earlier, now),
        Err(Dropped::Replayed(ReplayError::Duplicate))
    );
    let ancient = request(&alice, "PING", 5000 - 2000, now, false);
    assert_eq!(
        udp.handle(&ancient, now),
        Err(Dropped::Replayed(ReplayError::TooOld))
    );
}

#[test]
fn a_tampered_byte_anywhere_is_dropped() {
    let pki = Pki::new();
    let mut udp = pki.service(config(), t0());
    let alice = pki.key("alice");
    let now = after_start();
    let good = request(&alice, "ECHO hello", 1, now, true);
    for at in 0..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        assert!(
            udp.handle(&bad, now).is_err(),
            "flipped a bit at byte {at} and got a reply"
        );
    }
    assert!(
        udp.handle(&good, now).is_ok(),
        "the untouched datagram is still fresh"
    );
    let stats = udp.stats().snapshot();
    assert!(
        stats
            .iter()
            .any(|(name, n)| *name == "bad_signature" && *n > 0),
        "{stats:?}"
    );
}

#[test]
fn stale_and_future_timestamps_are_dropped() {
    let pki = Pki::new();
    let mut udp = pki.service(config(), t0());
    let alice = pki.key("alice");
    let now = t0() + ChronoDuration::minutes(10);
    let old = now - ChronoDuration::seconds(31);
    let ahead = now + ChronoDuration::seconds(31);
    assert_eq!(
        udp.handle(&request(&alice, "PING", 1, old, true), now),
        Err(Dropped::Stale)
    );
    assert_eq!(
        udp.handle(&request(&alice, "PING", 2, ahead, true), now),
        Err(Dropped::Stale)
    );
    let edge = now - ChronoDuration::seconds(30);
    assert!(udp
        .handle(&request(&alice, "PING", 3, edge, true), now)
        .is_ok());
}

#[test]
fn a_datagram_from_before_a_restart_is_dropped() {
    let pki = Pki::new();
    let alice = pki.key("alice");
    let sent = t0();
    let captured = request(&alice, "PING", 1, sent, true);
    let restarted_at = sent + ChronoDuration::seconds(2);
    let mut udp = pki.service(config(), restarted_at);
    let now = restarted_at + ChronoDuration::seconds(1);
    assert_eq!(
        udp.handle(&captured, now),
        Err(Dropped::Stale),
        "within the skew, but before the start"
    );
}

#[test]
fn unknown_keys_foreign_certificates_and_wrong_keys_are_dropped() {
    let pki = Pki::new();
    let other = Pki::new();
    let mut udp = pki.service(config(), t0());
    let now = after_start();
    let alice = pki.key("alice");
    let bob = pki.key("bob");
    assert_eq!(
        udp.handle(&request(&alice, "PING", 1, now, false), now),
        Err(Dropped::UnknownKey)
    );
    let stranger = other.key("alice");
    assert_eq!(
        udp.handle(&request(&stranger, "PING", 1, now, true), now),
        Err(Dropped::UntrustedCert)
    );

    // Bob's certificate under alice's key id.
    let header = Header {
        kind: Kind::Request,
        want_cert: true,
        key_id: alice.key_id(),
        seq: 1,
        timestamp_ms: millis(now),
    };
    let bytes = datagram::encode(&header, "PING", Some(bob.cert_der()), |i| bob.sign(i)).unwrap();
    assert_eq!(udp.handle(&bytes, now), Err(Dropped::KeyMismatch));
    // Alice's certificate, signed by bob.
    let bytes = datagram::encode(&header, "PING", Some(alice.cert_der()), |i| bob.sign(i)).unwrap();
    assert_eq!(udp.handle(&bytes, now), Err(Dropped::BadSignature));
    assert_eq!(udp.sender_count(), 0, "nothing unverified is remembered");
}

#[test]
fn truncated_oversized_and_reply_datagrams_are_dropped() {
    let pki = Pki::new();
    let mut config = config();
    config.max_datagram = 1200;
    let mut udp = pki.service(config, t0());
    let now = after_start();
    let alice = pki.key("alice");
    let good = request(&alice, "PING", 1, now, true);
    assert_eq!(
        udp.handle(&good[..good.len() - 1], now),
        Err(Dropped::Malformed(DatagramError::Truncated))
    );
    assert_eq!(
        udp.handle(&[], now),
        Err(Dropped::Malformed(DatagramError::Truncated))
    );
    let big = request(&alice, &format!("ECHO {}", "x".repeat(1200)), 2, now, true);
    assert!(big.len() > 1200);
    assert_eq!(
        udp.handle(&big, now).err(),
        Some(Dropped::Malformed(DatagramError::Oversized))
    );
    let mut reply = good.clone();
    reply[1] = Kind::Reply as u8;
    assert_eq!(udp.handle(&reply, now), Err(Dropped::NotARequest));
    assert_eq!(good[2] & FLAG_CERT, FLAG_CERT);
}

#[test]
fn the_sender_table_is_capped_and_eviction_raises_the_floor() {
    let pki = Pki::new();
    let mut config = config();
    config.max_senders = 1;
    let mut udp = pki.service(config, t0());
    let alice = pki.key("alice");
    let bob = pki.key("bob");
    let t1 = t0() + ChronoDuration::seconds(2);
    // Alice's clock runs half a second ahead of ours: still allowed.
    let alice_first = request(
        &alice,
        "PING",
        1,
        t1 + ChronoDuration::milliseconds(500),
        true,
    );
    assert!(udp.handle(&alice_first, t1).is_ok());
    let t2 = t0() + ChronoDuration::seconds(3);
    assert!(udp.handle(&request(&bob, "PING", 1, t2, true), t2).is_ok());
    assert_eq!(udp.sender_count(), 1, "alice was evicted for bob");
    let t3 = t0() + ChronoDuration::seconds(4);
    assert_eq!(
        udp.handle(&alice_first, t3),
        Err(Dropped::Stale),
        "forgotten, yet not replayable"
    );
    assert!(
        udp.handle(&request(&alice, "PING", 2, t3, true), t3)
            .is_ok(),
        "fresh requests still work"
    );
}

#[test]
fn a_timestamp_ahead_of_our_clock_is_refused_so_it_cannot_outlive_a_restart() {
    let pki = Pki::new();
    let alice = pki.key("alice");
    let sent = after_start();
    let mut udp = pki.service(config(), t0());
    // Stamped 25 s ahead: inside the 30 s skew, but far past the 1 s lead allowed.
    let ahead = request(&alice, "PING", 1, sent + ChronoDuration::seconds(25), true);
    assert_eq!(udp.handle(&ahead, sent), Err(Dropped::Stale));
    // Stamped just inside the lead, answered, then the server restarts at once: the new run's
    // floor (its start plus the lead) is past the stamp, so the copy is refused.
    let lead = request(
        &alice,
        "PING",
        2,
        sent + ChronoDuration::milliseconds(900),
        true,
    );
    assert!(udp.handle(&lead, sent).is_ok());
    let restarted = sent + ChronoDuration::milliseconds(100);
    let mut again = pki.service(config(), restarted);
    assert_eq!(
        again.handle(&lead, restarted + ChronoDuration::seconds(2)),
        Err(Dropped::Stale)
    );
}

#[test]
fn a_reload_forgets_every_sender_so_the_new_ca_applies_at_once() {
    let pki = Pki::new();
    let other = Pki::new();
    let mut udp = pki.service(config(), t0());
    let alice = pki.key("alice");
    let now = after_start();
    let first = request(&alice, "PING", 1, now, true);
    assert!(udp.handle(&first, now).is_ok());
    udp.set_keys(UdpKeys {
        signer: Arc::new(other.key("server")),
        clients: ClientCheck::new(&other.root.join("ca.pem")).unwrap(),
        revoked: Arc::default(),
    });
    assert_eq!(udp.sender_count(), 0);
    let later = now + ChronoDuration::seconds(1);
    assert_eq!(
        udp.handle(&request(&alice, "PING", 2, later, false), later),
        Err(Dropped::UnknownKey),
        "known no more"
    );
    assert_eq!(
        udp.handle(&request(&alice, "PING", 3, later, true), later),
        Err(Dropped::UntrustedCert),
        "checked again, against the new CA"
    );
    assert_eq!(
        udp.handle(&first, later),
        Err(Dropped::Stale),
        "and no replay"
    );
}

#[test]
fn a_known_sender_whose_certificate_expired_is_dropped() {
    let pki = Pki::new();
    let alice = pki.key("alice");
    let not_after = PeerKey::from_cert(alice.cert_der()).unwrap().not_after();
    // Started an hour before alice's certificate expires (the CA check itself uses the real
    // clock, at which the certificate is valid).
    let started = Utc.timestamp_opt(not_after - 3600, 0).unwrap();
    let mut udp = pki.service(config(), started);
    let now = started + ChronoDuration::seconds(2);
    assert!(udp
        .handle(&request(&alice, "PING", 1, now, true), now)
        .is_ok());
    let expired = Utc.timestamp_opt(not_after + 1, 0).unwrap();
    assert_eq!(
        udp.handle(&request(&alice, "PING", 2, expired, false), expired),
        Err(Dropped::Expired)
    );
    assert_eq!(udp.sender_count(), 0, "forgotten");
}

#[test]
fn a_revoked_certificate_gets_no_reply_once_the_list_is_reloaded() {
    let pki = Pki::new();
    let mut udp = pki.service(config(), t0());
    let (alice, bob) = (pki.key("alice"), pki.key("bob"));
    let now = after_start();
    assert!(udp
        .handle(&request(&alice, "PING", 1, now, true), now)
        .is_ok());
    let serial = tlschat_proto::cert::summarize_der(alice.cert_der())
        .unwrap()
        .serial;
    udp.set_keys(UdpKeys {
        signer: Arc::new(pki.key("server")),
        clients: ClientCheck::new(&pki.root.join("ca.pem")).unwrap(),
        revoked: Arc::new(crate::revoked::Revoked::new([serial].into())),
    });
    let later = now + ChronoDuration::seconds(1);
    assert_eq!(
        udp.handle(&request(&alice, "PING", 2, later, true), later),
        Err(Dropped::Revoked)
    );
    assert!(
        udp.handle(&request(&bob, "PING", 1, later, true), later)
            .is_ok(),
        "others are untouched"
    );
}
