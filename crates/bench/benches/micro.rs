//! Micro-benchmarks of the hot paths, in process: the line codec, request parsing, a room
//! broadcast and datagram signatures.
//!
//!     cargo bench -p tlschat-bench --bench micro
//!
//! divan reports the median and spread per operation; compare runs on the same machine.

use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use divan::{black_box, Bencher};
use tlschat_proto::datagram::{self, Datagram, Header, Kind};
use tlschat_proto::{LineDecoder, Request, Trust};
use tlschat_server::chat::{Hub, Peer};
use tlschat_tls::signing::{CertKey, PeerKey};

fn main() {
    divan::main();
}

/// 1,000 pipelined requests decoded from one buffer.
#[divan::bench]
fn decode_1000_lines(bencher: Bencher) {
    let input: Vec<u8> = (0..1000)
        .flat_map(|i| format!("MSG #general hello number {i}\n").into_bytes())
        .collect();
    bencher.bench(|| {
        let mut decoder = LineDecoder::new(64 * 1024);
        let mut buf = BytesMut::from(&input[..]);
        let mut count = 0;
        while let Some(frame) = decoder.decode(&mut buf) {
            black_box(frame);
            count += 1;
        }
        count
    });
}

#[divan::bench(args = ["PING", "SUM 1 2 3 4 5 6 7 8", "MSG #general hello, how is everyone today?"])]
fn parse_request(line: &str) -> Request {
    Request::parse(black_box(line)).unwrap().unwrap()
}

/// One message to a room of `members` (each delivery is a shared buffer pushed to a queue).
#[divan::bench(args = [10, 50, 1000])]
fn broadcast(bencher: Bencher, members: usize) {
    let hub = Hub::new();
    let peers: Vec<Arc<Peer>> = (0..=members)
        .map(|i| {
            let peer = Peer::new(
                hub.next_peer_id(),
                Some(format!("u{i}")),
                Trust::Verified,
                false,
                1 << 30,
            );
            hub.register_verified(&peer);
            hub.join(&peer, "#bench");
            peer
        })
        .collect();
    let sender = &peers[0];
    let mut out = Vec::new();
    let text = ["a message of about sixty-four bytes, give or take".to_owned()];
    let now = chrono::Utc::now();
    bencher.bench_local(|| {
        hub.message_room_batch(sender, "#bench", &text, now);
        // Drain, as each recipient's writer would, so queues stay small.
        for peer in &peers[1..] {
            out.clear();
            peer.outbox().drain_into(&mut out);
        }
    });
}

fn keys() -> &'static (CertKey, PeerKey, tempfile::TempDir) {
    static KEYS: OnceLock<(CertKey, PeerKey, tempfile::TempDir)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut options = tlschat_certgen::Options::new(dir.path());
        options.clients = vec!["bench".into()];
        tlschat_certgen::generate(&options).unwrap();
        let key = CertKey::load(
            &dir.path().join("bench.pem"),
            &dir.path().join("bench-key.pem"),
        )
        .unwrap();
        let public = PeerKey::from_cert(key.cert_der()).unwrap();
        (key, public, dir)
    })
}

fn header(key: &CertKey) -> Header {
    Header {
        kind: Kind::Request,
        want_cert: false,
        key_id: key.key_id(),
        seq: 1,
        timestamp_ms: 1,
    }
}

#[divan::bench]
fn datagram_sign() -> Vec<u8> {
    let (key, _, _) = keys();
    datagram::encode(&header(key), "ECHO hello", None, |input| key.sign(input)).unwrap()
}

#[divan::bench]
fn datagram_verify(bencher: Bencher) {
    let (key, public, _) = keys();
    let bytes =
        datagram::encode(&header(key), "ECHO hello", None, |input| key.sign(input)).unwrap();
    bencher.bench(|| {
        let parsed = Datagram::parse(black_box(&bytes), 4096).unwrap();
        assert!(public.verify(&parsed.signing_input(), parsed.signature));
    });
}
