//! Behaviour that mutation testing (scripts/mutants.sh) found no test pinned down: each test
//! names the mutant it kills.

use std::time::Duration;

use bytes::BytesMut;
use tlschat_proto::datagram::{DatagramError, Kind};
use tlschat_proto::duration::HumanDuration;
use tlschat_proto::replay::{CounterMemory, ReplayError};
use tlschat_proto::request::GREET_MAX_LEN;
use tlschat_proto::{Event, Frame, LineDecoder, Request, ServerLine};

#[test]
fn the_decoder_reports_its_limit_and_waits_for_the_newline_after_a_carriage_return() {
    let mut decoder = LineDecoder::new(4);
    assert_eq!(decoder.max_len(), 4);
    // Four bytes and a `\r` with its `\n` still on the way: one byte of slack, not too long.
    let mut buf = BytesMut::from(&b"abcd\r"[..]);
    assert_eq!(decoder.decode(&mut buf), None);
    buf.extend_from_slice(b"\n");
    assert_eq!(decoder.decode(&mut buf), Some(Frame::Line("abcd".into())));
}

#[test]
fn datagram_errors_have_their_counter_names() {
    assert_eq!(DatagramError::Truncated.name(), "truncated");
    assert_eq!(DatagramError::Oversized.name(), "oversized");
    assert_eq!(DatagramError::Trailing.name(), "trailing_bytes");
    assert_eq!(Kind::Request.to_string(), "request");
    assert_eq!(Kind::Reply.to_string(), "reply");
}

#[test]
fn a_datagram_exactly_at_the_size_limit_is_read() {
    let header = tlschat_proto::datagram::Header {
        kind: Kind::Request,
        want_cert: false,
        key_id: [1; 8],
        seq: 1,
        timestamp_ms: 1,
    };
    let bytes = tlschat_proto::datagram::encode(&header, "PING", None, |_| vec![7; 70]).unwrap();
    let parse = |max| tlschat_proto::datagram::Datagram::parse(&bytes, max).map(|_| ());
    assert_eq!(parse(bytes.len()), Ok(()));
    assert_eq!(parse(bytes.len() - 1), Err(DatagramError::Oversized));
}

#[test]
fn a_human_duration_prints_as_written() {
    assert_eq!(HumanDuration(Duration::from_secs(10)).to_string(), "10s");
    assert_eq!(
        HumanDuration(Duration::from_millis(250)).to_string(),
        "250ms"
    );
}

#[test]
fn a_counter_memory_with_a_floor_refuses_everything_at_or_below_it() {
    let memory = CounterMemory::with_floor(8, Some(500));
    assert_eq!(memory.check(500), Err(ReplayError::TooOld));
    assert_eq!(memory.check(1), Err(ReplayError::TooOld));
    assert_eq!(memory.check(501), Ok(()));
    assert_eq!(memory.top(), Some(500));
}

#[test]
fn an_unknown_event_with_nothing_after_its_kind_prints_without_a_trailing_space() {
    let event = Event::Other {
        kind: "FUTURE".into(),
        rest: String::new(),
    };
    assert_eq!(event.to_string(), "EVENT FUTURE");
}

#[test]
fn a_malformed_server_line_is_kept_whole_up_to_200_bytes_then_clipped() {
    let exactly = "x".repeat(200);
    let Err(err) = ServerLine::parse(&exactly) else {
        panic!("not a protocol line")
    };
    assert_eq!(err.line.len(), 200);
    let long = "y".repeat(300);
    let Err(err) = ServerLine::parse(&long) else {
        panic!("not a protocol line")
    };
    assert!((190..=201).contains(&err.line.len()), "{}", err.line.len());
}

#[test]
fn greet_takes_a_name_of_up_to_its_limit() {
    let longest = "g".repeat(GREET_MAX_LEN);
    assert_eq!(
        Request::parse(&format!("GREET {longest}")),
        Ok(Some(Request::Greet(Some(longest.clone()))))
    );
    assert!(Request::parse(&format!("GREET {longest}g")).is_err());
}
