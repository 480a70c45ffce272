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

/// Parses and verifies a reply with the server's key; returns the reply line.
fn open_reply(pki: &Pki, bytes: &[u8], seq: u64) -> String {
    let reply = Datagram::parse(bytes, datagram::DEFAULT_MAX_DATAGRAM).unwrap();
    assert_eq!(reply.header.kind, Kind::Reply);
    assert_eq!(
        reply.header.seq, seq,
        "the request's sequence number is echoed"
    );
    let server = PeerKey::from_cert(pki.key("server").cert_der()).unwrap();
    assert_eq!(reply.header.key_id, server.key_id());
    assert!(
        server.verify(&reply.signing_input(), reply.signature),
        "signed by the server"
    );
    reply.body.to_owned()
}

#[test]
fn a_valid_request_gets_a_signed_reply() {
    let pki = Pki::new();
    let mut udp = pki.service(config(), t0());
    let alice = pki.key("alice");
    let now = t0() + ChronoDuration::seconds(1);
    let reply = udp
        .handle(&request(&alice, "SUM 1 2 3", 7, now, true), now)
        .unwrap();
    assert_eq!(open_reply(&pki, &reply, 7), "OK 6");
    let parsed = Datagram::parse(&reply, 4096).unwrap();
    assert!(
        parsed.cert.is_some(),
        "the server's certificate comes back when asked with one"
    );

    // Known now: no certificate needed, and the caller's name is the certificate's.
    let reply = udp
        .handle(&request(&alice, "GREET", 8, now, false), now)
        .unwrap();
    assert_eq!(open_reply(&pki, &reply, 8), "OK Hello, alice!");
    assert!(Datagram::parse(&reply, 4096).unwrap().cert.is_none());
    let reply = udp
        .handle(&request(&alice, "JOIN #x", 9, now, false), now)
        .unwrap();
    assert!(
        open_reply(&pki, &reply, 9).starts_with("ERR UNKNOWN_VERB JOIN is not offered over UDP")
    );
    let reply = udp
        .handle(&request(&alice, "NUMBER 500", 10, now, false), now)
        .unwrap();
    assert!(open_reply(&pki, &reply, 10).starts_with("ERR OUT_OF_RANGE"));
    assert!(ServerLine::parse(&open_reply(
        &pki,
        &udp.handle(&request(&alice, "HELP", 11, now, false), now)
            .unwrap(),
        11
    ))
    .is_ok());
}

#[test]
fn a_replayed_datagram_is_dropped_and_reordering_is_not() {
    let pki = Pki::new();
    let mut udp = pki.service(config(), t0());
    let alice = pki.key("alice");
    let now = t0() + ChronoDuration::seconds(1);
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
    let now = t0() + ChronoDuration::seconds(1);
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
    let now = t0() + ChronoDuration::seconds(1);
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
    let now = t0() + ChronoDuration::seconds(1);
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
    let t1 = t0() + ChronoDuration::seconds(1);
    let alice_first = request(&alice, "PING", 1, t1, true);
    assert!(udp.handle(&alice_first, t1).is_ok());
    let t2 = t0() + ChronoDuration::seconds(2);
    assert!(udp.handle(&request(&bob, "PING", 1, t2, true), t2).is_ok());
    assert_eq!(udp.sender_count(), 1, "alice was evicted for bob");
    let t3 = t0() + ChronoDuration::seconds(3);
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
