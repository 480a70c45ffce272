//! Line framing: a byte stream in, bounded UTF-8 lines out.
//!
//! The decoder works in two phases, like every decoder in this project: a cheap scan for the end
//! of a line in what is buffered, then the conversion of that one line. "Need more bytes" is an
//! outcome ([`LineDecoder::decode`] returns `None`), not an error.
//!
//! A line longer than the limit is never buffered whole: as soon as the buffer holds more than
//! the limit without a line end, the decoder reports [`Frame::TooLong`] once, drops what it holds
//! and then drops everything up to and including the next `\n`. Memory per connection is thus
//! bounded by the limit plus one read.

use bytes::{Buf, BytesMut};

/// One outcome of decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, without its `\n` or `\r\n` ending.
    Line(String),
    /// A line went past the length limit. The rest of it, up to the next `\n`, is discarded.
    TooLong,
    /// A complete line that is not valid UTF-8. It has been discarded.
    InvalidUtf8,
}

/// Splits a byte stream into lines of at most `max_len` bytes.
///
/// Calling order: append what was read to a [`BytesMut`], then call [`decode`](Self::decode)
/// until it returns `None`, then read again. The buffer belongs to the caller, which keeps
/// reading cancel-safe: nothing is lost if a read is abandoned.
#[derive(Debug, Clone)]
pub struct LineDecoder {
    max_len: usize,
    /// How many bytes at the front of the buffer are known to hold no `\n`.
    scanned: usize,
    /// True while the rest of an overlong line is being thrown away.
    discarding: bool,
}

impl LineDecoder {
    /// A decoder accepting lines of at most `max_len` bytes (line ending not counted).
    pub fn new(max_len: usize) -> Self {
        Self {
            max_len,
            scanned: 0,
            discarding: false,
        }
    }

    /// The length limit this decoder enforces, in bytes.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Takes the next frame out of `buf`, or returns `None` when more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        loop {
            let Some(offset) = memchr_newline(&buf[self.scanned..]) else {
                return self.no_line_end(buf);
            };
            let end = self.scanned + offset;
            self.scanned = 0;
            if self.discarding {
                buf.advance(end + 1);
                self.discarding = false;
                continue;
            }
            let mut line = buf.split_to(end + 1);
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.truncate(end - 1);
            }
            if line.len() > self.max_len {
                return Some(Frame::TooLong);
            }
            return Some(match String::from_utf8(line.to_vec()) {
                Ok(text) => Frame::Line(text),
                Err(_) => Frame::InvalidUtf8,
            });
        }
    }

    /// Handles a buffer that holds no line end: wait, or start discarding an overlong line.
    fn no_line_end(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        if self.discarding {
            buf.clear();
            self.scanned = 0;
            return None;
        }
        // One byte of slack for a `\r` whose `\n` has not arrived yet.
        if buf.len() > self.max_len + 1 {
            buf.clear();
            self.scanned = 0;
            self.discarding = true;
            return Some(Frame::TooLong);
        }
        self.scanned = buf.len();
        None
    }

    /// True when the decoder holds part of a line (or is discarding one): the peer stopped
    /// mid-line if the stream ends now.
    pub fn is_mid_line(&self, buf: &BytesMut) -> bool {
        self.discarding || !buf.is_empty()
    }
}

fn memchr_newline(haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == b'\n')
}

/// Appends `line` and a `\n` to `out`.
///
/// The caller guarantees that `line` holds no `\n`; every encoder in this crate builds its lines
/// from validated parts, so this is checked only in debug builds.
pub fn encode_line(line: &str, out: &mut Vec<u8>) {
    debug_assert!(
        !line.contains('\n'),
        "a protocol line may not contain a newline"
    );
    out.reserve(line.len() + 1);
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(decoder: &mut LineDecoder, buf: &mut BytesMut) -> Vec<Frame> {
        std::iter::from_fn(|| decoder.decode(buf)).collect()
    }

    fn line(text: &str) -> Frame {
        Frame::Line(text.to_owned())
    }

    #[test]
    fn splits_lf_and_crlf_lines() {
        let mut decoder = LineDecoder::new(100);
        let mut buf = BytesMut::from(&b"TIME\r\nECHO a b\n\nPING"[..]);
        let frames = decode_all(&mut decoder, &mut buf);
        assert_eq!(frames, vec![line("TIME"), line("ECHO a b"), line("")]);
        assert_eq!(&buf[..], b"PING");
        buf.extend_from_slice(b"\n");
        assert_eq!(decoder.decode(&mut buf), Some(line("PING")));
        assert!(buf.is_empty());
    }

    #[test]
    fn waits_for_more_bytes_when_a_line_is_incomplete() {
        let mut decoder = LineDecoder::new(100);
        let mut buf = BytesMut::new();
        for byte in b"SUM 1 2" {
            buf.extend_from_slice(&[*byte]);
            assert_eq!(decoder.decode(&mut buf), None);
        }
        buf.extend_from_slice(b"\r");
        assert_eq!(decoder.decode(&mut buf), None);
        buf.extend_from_slice(b"\n");
        assert_eq!(decoder.decode(&mut buf), Some(line("SUM 1 2")));
    }

    #[test]
    fn accepts_a_line_exactly_at_the_limit_with_either_ending() {
        let mut decoder = LineDecoder::new(8);
        let mut buf = BytesMut::from(&b"12345678\n12345678\r\n"[..]);
        let frames = decode_all(&mut decoder, &mut buf);
        assert_eq!(frames, vec![line("12345678"), line("12345678")]);
    }

    #[test]
    fn rejects_a_complete_line_one_byte_over_the_limit() {
        let mut decoder = LineDecoder::new(8);
        let mut buf = BytesMut::from(&b"123456789\nPING\n"[..]);
        let frames = decode_all(&mut decoder, &mut buf);
        assert_eq!(frames, vec![Frame::TooLong, line("PING")]);
    }

    #[test]
    fn discards_an_overlong_line_without_buffering_it() {
        let mut decoder = LineDecoder::new(8);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"0123456789");
        assert_eq!(decoder.decode(&mut buf), Some(Frame::TooLong));
        assert!(buf.is_empty(), "the overlong prefix is dropped at once");
        for _ in 0..100 {
            buf.extend_from_slice(b"xxxxxxxxxxxxxxxx");
            assert_eq!(decoder.decode(&mut buf), None);
            assert!(buf.is_empty(), "discarded bytes are never kept");
        }
        buf.extend_from_slice(b"tail\nPING\n");
        let frames = decode_all(&mut decoder, &mut buf);
        assert_eq!(frames, vec![line("PING")], "one TooLong per overlong line");
    }

    #[test]
    fn reports_invalid_utf8_and_keeps_going() {
        let mut decoder = LineDecoder::new(100);
        let mut buf = BytesMut::from(&b"ECHO \xff\xfe\nPING\n"[..]);
        let frames = decode_all(&mut decoder, &mut buf);
        assert_eq!(frames, vec![Frame::InvalidUtf8, line("PING")]);
    }

    #[test]
    fn keeps_multibyte_characters_split_across_reads() {
        let mut decoder = LineDecoder::new(100);
        let text = "ECHO héllo ✓\n".as_bytes();
        let mut buf = BytesMut::new();
        for chunk in text.chunks(1) {
            buf.extend_from_slice(chunk);
            if let Some(frame) = decoder.decode(&mut buf) {
                assert_eq!(frame, line("ECHO héllo ✓"));
                return;
            }
        }
        panic!("no line decoded");
    }

    #[test]
    fn reports_a_partial_line_as_mid_line() {
        let mut decoder = LineDecoder::new(100);
        let mut buf = BytesMut::from(&b"PI"[..]);
        assert_eq!(decoder.decode(&mut buf), None);
        assert!(decoder.is_mid_line(&buf));
        buf.extend_from_slice(b"NG\n");
        assert!(decoder.decode(&mut buf).is_some());
        assert!(!decoder.is_mid_line(&buf));
    }

    #[test]
    fn encodes_a_line_with_a_newline() {
        let mut out = Vec::new();
        encode_line("OK 6", &mut out);
        encode_line("OK", &mut out);
        assert_eq!(out, b"OK 6\nOK\n");
    }
}
