//! Properties over valid values: generate a real request, line stream, datagram, key bundle or
//! sealed message, encode it, and check it decodes to exactly what went in; then change bytes
//! and check the result is refused or is exactly what the changed bytes say (never a silent
//! mix). Arbitrary input alone rarely reaches these paths (`never_panics.rs` covers that).
//!
//! CI runs 256 cases per property; `PROPTEST_CASES=20000 cargo test -p tlschat-proto --test
//! round_trips` (or `scripts/fuzz.sh`) runs more.

use bytes::BytesMut;
use proptest::prelude::*;
use std::time::Duration;
use tlschat_proto::datagram::{self, Datagram, Header, Kind};
use tlschat_proto::e2e::{KeyBundle, Payload, Sealed, Slot, MAX_SLOTS};
use tlschat_proto::names::{validate_nick, validate_room, NICK_MAX_LEN};

use tlschat_proto::{hex, Anchor, Frame, LineDecoder, ModeChange, Request, Scope, Target, Verb};

fn nick() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9_-]{0,31}".prop_filter("not reserved", |n| validate_nick(n).is_ok())
}

fn room() -> impl Strategy<Value = String> {
    "#[a-z0-9_-]{1,32}"
}

/// Message text: printable, no leading or trailing blanks (the parser trims them).
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9.,!?'()é€😀][a-zA-Z0-9 .,!?'()é€😀]{0,60}[a-zA-Z0-9.!?]"
}

fn bundle() -> impl Strategy<Value = KeyBundle> {
    (
        prop::collection::vec(any::<u8>(), 32),
        "[a-z][a-z0-9_-]{0,31}",
        prop::collection::vec(any::<u8>(), 1..400),
        prop::collection::vec(any::<u8>(), 1..80),
    )
        .prop_map(|(public_key, device, cert, signature)| KeyBundle {
            public_key,
            device,
            cert,
            signature,
        })
}

fn slot() -> impl Strategy<Value = Slot> {
    (
        any::<[u8; 8]>(),
        prop::collection::vec(any::<u8>(), 32),
        prop::collection::vec(any::<u8>(), 48),
    )
        .prop_map(|(key_id, enc, wrapped)| Slot {
            key_id,
            enc,
            wrapped,
        })
}

fn sealed() -> impl Strategy<Value = Sealed> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<[u8; 8]>(),
        prop::collection::vec(slot(), 1..=MAX_SLOTS),
        prop::collection::vec(any::<u8>(), 16..300),
        prop::collection::vec(any::<u8>(), 1..80),
    )
        .prop_map(
            |(counter, timestamp_ms, sender_key_id, slots, ciphertext, signature)| Sealed {
                counter,
                timestamp_ms,
                sender_key_id,
                slots,
                ciphertext,
                signature,
            },
        )
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Time),
        Just(Request::Lucky),
        Just(Request::Quiz),
        Just(Request::Ping),
        Just(Request::Quit),
        Just(Request::Rooms),
        Just(Request::Stats),
        Just(Request::Reload),
        Just(Request::Shutdown),
        prop::sample::select(Verb::ALL.to_vec()).prop_map(|v| Request::Help(Some(v))),
        text().prop_map(Request::Echo),
        prop::collection::vec(any::<i32>().prop_map(i64::from), 1..20).prop_map(Request::Sum),
        any::<i32>().prop_map(|n| Request::Answer(n.into())),
        (1i64..=100).prop_map(Request::Number),
        nick().prop_map(|n| Request::Greet(Some(n))),
        nick().prop_map(Request::Nick),
        room().prop_map(Request::Join),
        room().prop_map(Request::Part),
        room().prop_map(Request::Who),
        nick().prop_map(Request::KeyGet),
        "[a-z][a-z0-9_-]{0,31}".prop_map(Request::KeyDel),
        (room(), text()).prop_map(|(room, text)| Request::Msg {
            target: Target::Room(room),
            text,
        }),
        (nick(), text()).prop_map(|(nick, text)| Request::Msg {
            target: Target::User(nick),
            text,
        }),
        (prop::option::of(room()), nick(), prop::option::of(text()))
            .prop_map(|(room, nick, reason)| Request::Kick { room, nick, reason }),
        (room(), prop::option::of(text())).prop_map(|(room, text)| Request::Topic { room, text }),
        (room(), nick(), any::<bool>()).prop_map(|(room, nick, grant)| Request::Op {
            room,
            nick,
            grant
        }),
        (room(), nick()).prop_map(|(room, nick)| Request::Invite { room, nick }),
        (
            prop_oneof![room().prop_map(Scope::Room), Just(Scope::Server)],
            nick(),
            prop::option::of((1u64..10_000).prop_map(|h| Duration::from_secs(h * 3600))),
            prop::option::of(text()),
        )
            .prop_map(|(scope, name, duration, reason)| Request::Ban {
                duration: duration.filter(|_| scope == Scope::Server),
                scope,
                name,
                reason,
            }),
        (
            prop_oneof![room().prop_map(Scope::Room), Just(Scope::Server)],
            nick()
        )
            .prop_map(|(scope, name)| Request::Unban { scope, name }),
        (
            room(),
            prop::option::of(prop_oneof![
                any::<bool>().prop_map(ModeChange::InviteOnly),
                any::<bool>().prop_map(ModeChange::Secret)
            ])
        )
            .prop_map(|(room, change)| Request::Mode { room, change }),
        bundle().prop_map(|b| Request::KeySet(Payload::new(b).unwrap())),
        (nick(), sealed()).prop_map(|(to, s)| Request::E2e {
            to,
            sealed: Payload::new(s).unwrap(),
        }),
        (
            prop_oneof![room().prop_map(Target::Room), nick().prop_map(Target::User)],
            prop::option::of(prop_oneof![
                any::<u64>().prop_map(Anchor::Before),
                any::<u64>().prop_map(Anchor::After)
            ]),
            prop::option::of(any::<u32>()),
        )
            .prop_map(|(target, anchor, limit)| Request::History {
                target,
                anchor,
                limit
            }),
    ]
}

proptest! {
    /// Lines written and cut anywhere come out exactly once each, in order, whole.
    #[test]
    fn every_complete_line_comes_out_once_and_whole(
        lines in prop::collection::vec("[^\r\n]{0,80}", 0..40),
        cuts in prop::collection::vec(1usize..64, 1..16),
        crlf in any::<bool>(),
    ) {
        let end = if crlf { "\r\n" } else { "\n" };
        let stream: String = lines.iter().map(|l| format!("{l}{end}")).collect();
        let mut decoder = LineDecoder::new(1024);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut rest = stream.as_bytes();
        let mut cut = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*cut.next().unwrap()).min(rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while let Some(frame) = decoder.decode(&mut buf) {
                match frame {
                    Frame::Line(line) => out.push(line),
                    other => prop_assert!(false, "unexpected {other:?}"),
                }
            }
        }
        prop_assert_eq!(out, lines);
        prop_assert!(buf.is_empty() && !decoder.is_mid_line(&buf));
    }

    /// Any bytes under the line limit: exactly one frame (a line, or invalid UTF-8) per line
    /// end, none lost, none invented.
    #[test]
    fn one_frame_per_line_end(
        bytes in prop::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..2048),
    ) {
        let mut decoder = LineDecoder::new(4096);
        let mut buf = BytesMut::from(&bytes[..]);
        let mut frames = 0usize;
        while let Some(frame) = decoder.decode(&mut buf) {
            prop_assert!(!matches!(frame, Frame::TooLong));
            frames += 1;
        }
        let ends = bytes.iter().filter(|&&b| b == b'\n').count();
        prop_assert_eq!(frames, ends);
        let after_last_end = bytes.iter().rev().take_while(|&&b| b != b'\n').count();
        prop_assert_eq!(buf.len(), after_last_end, "what follows the last line end waits");
    }

    /// A valid request prints to a line that parses back to the same request; a changed
    /// byte gives a refusal or a request that is exactly what the changed line says.
    #[test]
    fn requests_round_trip_and_changed_lines_are_refused_or_read_exactly(
        request in request(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let line = request.to_string();
        prop_assert_eq!(Request::parse(&line), Ok(Some(request.clone())), "{}", line);
        let mut changed = line.clone().into_bytes();
        let i = at.index(changed.len());
        changed[i] = byte;
        if let Ok(changed) = String::from_utf8(changed) {
            if let Ok(Some(parsed)) = Request::parse(&changed) {
                let again = parsed.to_string();
                prop_assert_eq!(Request::parse(&again), Ok(Some(parsed)), "{}", again);
            }
        }
    }

    /// A valid datagram decodes to its fields; a changed byte is refused or decodes to a
    /// datagram whose own encoding is exactly the changed bytes.
    #[test]
    fn datagrams_round_trip_and_changed_bytes_are_refused_or_read_exactly(
        kind in prop_oneof![Just(Kind::Request), Just(Kind::Reply)],
        want_cert in any::<bool>(),
        key_id in any::<[u8; 8]>(),
        seq in any::<u64>(),
        timestamp_ms in any::<u64>(),
        body in "[ -~]{0,200}",
        cert in prop::option::of(prop::collection::vec(any::<u8>(), 1..800)),
        signature in prop::collection::vec(any::<u8>(), 1..80),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let header = Header { kind, want_cert, key_id, seq, timestamp_ms };
        let bytes = datagram::encode(&header, &body, cert.as_deref(), |_| signature.clone()).unwrap();
        let parsed = Datagram::parse(&bytes, usize::MAX).unwrap();
        prop_assert_eq!(parsed.header, header);
        prop_assert_eq!(parsed.body, body.as_str());
        prop_assert_eq!(parsed.cert, cert.as_deref());
        prop_assert_eq!(parsed.signature, &signature[..]);
        let mut changed = bytes.clone();
        let i = at.index(changed.len());
        changed[i] ^= byte | 1;
        if let Ok(read) = Datagram::parse(&changed, usize::MAX) {
            let sig = read.signature.to_vec();
            let again = datagram::encode(&read.header, read.body, read.cert, |_| sig).unwrap();
            prop_assert_eq!(again, changed);
        }
    }

    /// Key bundles and sealed messages: encode, decode, equal; a changed byte is refused or
    /// decodes to what re-encodes to the changed bytes.
    #[test]
    fn e2e_layouts_round_trip_and_changed_bytes_are_refused_or_read_exactly(
        bundle in bundle(),
        sealed in sealed(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let bytes = bundle.encode().unwrap();
        prop_assert_eq!(&KeyBundle::decode(&bytes).unwrap(), &bundle);
        let mut changed = bytes.clone();
        let i = at.index(changed.len());
        changed[i] ^= byte | 1;
        if let Ok(read) = KeyBundle::decode(&changed) {
            prop_assert_eq!(read.encode().unwrap(), changed);
        }
        let bytes = sealed.encode().unwrap();
        prop_assert_eq!(&Sealed::decode(&bytes).unwrap(), &sealed);
        let mut changed = bytes.clone();
        let i = at.index(changed.len());
        changed[i] ^= byte | 1;
        if let Ok(read) = Sealed::decode(&changed) {
            prop_assert_eq!(read.encode().unwrap(), changed);
        }
    }

    /// Hex: bytes survive the round trip; upper case reads the same; a non-hex digit or an
    /// odd length is refused.
    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        bad in "[g-zG-Z ]",
    ) {
        let text = hex::encode(&bytes);
        prop_assert_eq!(hex::decode(&text).unwrap(), bytes.clone());
        prop_assert_eq!(hex::decode(&text.to_uppercase()).unwrap(), bytes.clone());
        let odd = format!("{text}0");
        let not_hex = format!("{text}{bad}{bad}");
        prop_assert!(hex::decode(&odd).is_err());
        prop_assert!(hex::decode(&not_hex).is_err());
    }

    /// Names: every name made of the allowed characters within the limits is accepted; any
    /// other character anywhere, or a start that is not a letter, is refused.
    #[test]
    fn the_name_rules_accept_exactly_the_allowed_names(
        name in nick(),
        at in any::<prop::sample::Index>(),
        bad in "[^a-zA-Z0-9_-]",
    ) {
        prop_assert!(validate_nick(&name).is_ok());
        let room = format!("#{name}");
        prop_assert!(validate_room(&room).is_ok());
        let mut chars: Vec<char> = name.chars().collect();
        let i = at.index(chars.len());
        chars[i] = bad.chars().next().unwrap();
        let broken: String = chars.into_iter().collect();
        prop_assert!(validate_nick(&broken).is_err(), "{broken:?}");
        let digit_first = format!("9{name}");
        prop_assert!(validate_nick(&digit_first).is_err());
        let long = "a".repeat(NICK_MAX_LEN + 1);
        prop_assert!(validate_nick(&long).is_err());
    }
}
