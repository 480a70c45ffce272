//! Property-based fuzzing of every parser in the protocol crate: arbitrary bytes in, never a
//! panic out, and the invariants each parser promises.
//!
//! A short run (256 cases per property) is part of `cargo test`; `scripts/fuzz.sh` runs the
//! same properties for much longer (`PROPTEST_CASES`).

use bytes::BytesMut;
use proptest::prelude::*;
use tlschat_proto::datagram::{self, Datagram, Header, Kind};
use tlschat_proto::e2e::{KeyBundle, Sealed};
use tlschat_proto::{Frame, LineDecoder, Request, ServerLine};

fn config() -> ProptestConfig {
    // 256 cases unless PROPTEST_CASES in the environment says otherwise (long runs).
    ProptestConfig::default()
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes, split anywhere: lines never exceed the limit, the buffer stays bounded, and
    /// every complete line comes out once.
    #[test]
    fn the_line_decoder_is_bounded_whatever_arrives(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        cuts in prop::collection::vec(1usize..512, 1..32),
        max_len in 1usize..256,
    ) {
        let mut decoder = LineDecoder::new(max_len);
        let mut buf = BytesMut::new();
        let mut rest = &bytes[..];
        let mut cut = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*cut.next().unwrap()).min(rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while let Some(frame) = decoder.decode(&mut buf) {
                if let Frame::Line(line) = frame {
                    prop_assert!(line.len() <= max_len);
                    prop_assert!(!line.contains('\n'));
                }
            }
            prop_assert!(buf.len() <= max_len + 1, "buffered {} with limit {}", buf.len(), max_len);
        }
    }

    /// Any text: parsing never panics, and what parses prints back to itself.
    #[test]
    fn requests_parse_without_panicking_and_round_trip(line in "\\PC{0,200}") {
        if let Ok(Some(request)) = Request::parse(&line) {
            let printed = request.to_string();
            prop_assert_eq!(Request::parse(&printed), Ok(Some(request)), "{}", printed);
        }
    }

    /// Any text shaped like a request: a real verb, then anything.
    #[test]
    fn known_verbs_with_arbitrary_arguments_never_panic(
        verb in prop::sample::select(tlschat_proto::Verb::ALL.to_vec()),
        rest in "[ \\t]{0,2}\\PC{0,120}",
    ) {
        let _ = Request::parse(&format!("{verb}{rest}"));
    }

    /// Any bytes as a server line (lossily decoded): the client's parser never panics.
    #[test]
    fn server_lines_parse_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let line = String::from_utf8_lossy(&bytes);
        let _ = ServerLine::parse(&line);
        for prefix in ["OK ", "ERR ", "EVENT ", "HELLO ", "EVENT MSG ", "EVENT DM ", "EVENT QUIT "] {
            let _ = ServerLine::parse(&format!("{prefix}{line}"));
        }
    }

    /// Any bytes as a datagram: the parser never panics and never reads past the end.
    #[test]
    fn datagrams_parse_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..3000)) {
        let _ = Datagram::parse(&bytes, datagram::DEFAULT_MAX_DATAGRAM);
    }

    /// A valid datagram with bytes changed, cut or added: parsing never panics, and whatever
    /// still parses has the original length accounting.
    #[test]
    fn mutated_datagrams_parse_without_panicking(
        body in "\\PC{0,64}",
        cert in prop::option::of(prop::collection::vec(any::<u8>(), 0..200)),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        extra in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let header = Header { kind: Kind::Request, want_cert: true, key_id: [7; 8], seq: 1, timestamp_ms: 2 };
        let Ok(mut bytes) = datagram::encode(&header, &body, cert.as_deref(), |_| vec![1; 70]) else {
            return Ok(());
        };
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= value;
        }
        let _ = Datagram::parse(&bytes, usize::MAX);
        let cut_at = cut.index(bytes.len() + 1);
        let _ = Datagram::parse(&bytes[..cut_at], usize::MAX);
        bytes.extend_from_slice(&extra);
        if let Ok(parsed) = Datagram::parse(&bytes, usize::MAX) {
            prop_assert!(parsed.signed.len() < bytes.len());
        }
    }

    #[test]
    fn e2e_payloads_decode_without_panicking_and_round_trip(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        if let Ok(sealed) = Sealed::decode(&bytes) {
            prop_assert_eq!(sealed.encode().unwrap(), bytes.clone());
        }
        if let Ok(bundle) = KeyBundle::decode(&bytes) {
            prop_assert_eq!(bundle.encode().unwrap(), bytes);
        }
    }
}
