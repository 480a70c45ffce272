//! Signed datagrams: the byte layout of tlschat's UDP mode.
//!
//! UDP mode has no encryption (rustls has no DTLS): every datagram is *signed* with the key of
//! the sender's certificate, so the receiver knows who sent it and that nobody changed it, and
//! carries a sequence number and a timestamp so a copy cannot be played back later.
//!
//! # Layout
//!
//! All integers are unsigned, big-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | version: 2 |
//! | 1 | 1 | kind: 1 request, 2 reply |
//! | 2 | 1 | flags: bit 0 `CERT` (a certificate follows the body), bit 1 `WANT_CERT` (request only: put your certificate in the reply); other bits 0 |
//! | 3 | 8 | key id: the first 8 bytes of SHA-256 over the sender certificate's SubjectPublicKeyInfo |
//! | 11 | 8 | sequence number: the sender's for a request; a reply repeats its request's |
//! | 19 | 8 | timestamp: milliseconds since 1970-01-01 UTC on the sender's clock |
//! | 27 | 2 | body length B |
//! | 29 | B | body: one request or reply line, UTF-8, no line ending |
//! | | 2 | certificate length C (only with `CERT`) |
//! | | C | the sender's certificate, DER (only with `CERT`) |
//! | | 2 | signature length S |
//! | | S | signature (below) |
//!
//! A request's signature is over [`CONTEXT`] followed by every byte before the signature length.
//! A reply's is over [`CONTEXT`], then the request it answers ([`RequestBinding`]: the
//! requester's 8-byte key id and the SHA-256 of the whole request datagram as received), then
//! every byte before the signature length. The binding is not sent (the requester knows what it
//! sent): a reply signed for someone else's request, even one that reused our sequence number,
//! does not verify.
//!
//! The signature is ECDSA P-256 with SHA-256, ASN.1 DER encoded (the key type our CA issues).
//! The context string keeps a datagram signature from ever being valid as any other signature
//! made with the same key (a TLS handshake, say). Nothing may follow the signature.
//!
//! Version 1 signed replies over the reply's bytes alone; version 2 added the binding.

use std::fmt;

use crate::wire::{put_sized, Reader, TooLong, Truncated};

/// The version this module reads and writes.
pub const VERSION: u8 = 2;

/// Domain separation: signed before the datagram bytes.
pub const CONTEXT: &[u8] = b"tlschat signed datagram v2\0";

/// What a reply's signature binds it to: the request it answers. Signed, never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestBinding {
    /// The key id of the requester (the request's header key id).
    pub key_id: [u8; 8],
    /// SHA-256 of the whole request datagram, signature included, as received.
    pub digest: [u8; 32],
}

impl RequestBinding {
    /// The 40 bytes signed between [`CONTEXT`] and the reply.
    pub fn bytes(&self) -> [u8; 40] {
        let mut out = [0; 40];
        out[..8].copy_from_slice(&self.key_id);
        out[8..].copy_from_slice(&self.digest);
        out
    }
}

/// Bytes before the body.
pub const HEADER_LEN: usize = 29;

/// Default largest datagram accepted or sent, in bytes. Fits a certificate (about 700 bytes), a
/// signature (at most 72) and a 1 KiB body, and stays under the common 1,500-byte Ethernet MTU
/// only when no certificate is carried; larger datagrams are dropped unread.
pub const DEFAULT_MAX_DATAGRAM: usize = 2048;

/// Flag: a certificate follows the body.
pub const FLAG_CERT: u8 = 0b01;

/// Flag: the sender of a request asks for the replier's certificate.
pub const FLAG_WANT_CERT: u8 = 0b10;

/// Request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A client's request.
    Request = 1,
    /// The server's reply.
    Reply = 2,
}

/// The fixed fields of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Request or reply.
    pub kind: Kind,
    /// Ask the replier to include its certificate.
    pub want_cert: bool,
    /// The sender's key id.
    pub key_id: [u8; 8],
    /// The sequence number.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

/// A parsed (not yet verified) datagram, borrowing from the received bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// The fixed fields.
    pub header: Header,
    /// The request or reply line.
    pub body: &'a str,
    /// The sender's certificate (DER), when carried.
    pub cert: Option<&'a [u8]>,
    /// The bytes the signature covers (after [`CONTEXT`]).
    pub signed: &'a [u8],
    /// The signature.
    pub signature: &'a [u8],
}

/// Why bytes are not a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DatagramError {
    /// Shorter than its fields say.
    #[error("truncated")]
    Truncated,
    /// Longer than the limit.
    #[error("oversized")]
    Oversized,
    /// A version this code does not speak.
    #[error("unknown version {0}")]
    UnknownVersion(u8),
    /// Neither request nor reply.
    #[error("unknown kind {0}")]
    UnknownKind(u8),
    /// Flag bits that are not defined.
    #[error("unknown flags {0:#04x}")]
    UnknownFlags(u8),
    /// The body is not UTF-8 or holds a line ending.
    #[error("body is not a single UTF-8 line")]
    BadBody,
    /// Bytes after the signature.
    #[error("bytes after the signature")]
    Trailing,
    /// No signature.
    #[error("empty signature")]
    NoSignature,
}

impl DatagramError {
    /// A short, stable name, for counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::Oversized => "oversized",
            Self::UnknownVersion(_) => "unknown_version",
            Self::UnknownKind(_) => "unknown_kind",
            Self::UnknownFlags(_) => "unknown_flags",
            Self::BadBody => "bad_body",
            Self::Trailing => "trailing_bytes",
            Self::NoSignature => "no_signature",
        }
    }
}

impl<'a> Datagram<'a> {
    /// Parses `bytes`, refusing anything longer than `max_len`. Does not verify the signature.
    pub fn parse(bytes: &'a [u8], max_len: usize) -> Result<Self, DatagramError> {
        if bytes.len() > max_len {
            return Err(DatagramError::Oversized);
        }
        let mut reader = Reader::new(bytes);
        let version = reader.u8()?;
        if version != VERSION {
            return Err(DatagramError::UnknownVersion(version));
        }
        let kind = match reader.u8()? {
            1 => Kind::Request,
            2 => Kind::Reply,
            other => return Err(DatagramError::UnknownKind(other)),
        };
        let flags = reader.u8()?;
        if flags & !(FLAG_CERT | FLAG_WANT_CERT) != 0 {
            return Err(DatagramError::UnknownFlags(flags));
        }
        let key_id = reader.array::<8>()?;
        let seq = reader.u64()?;
        let timestamp_ms = reader.u64()?;
        let body = reader.sized()?;
        let body = std::str::from_utf8(body).map_err(|_| DatagramError::BadBody)?;
        if body.contains(['\n', '\r']) {
            return Err(DatagramError::BadBody);
        }
        let cert = if flags & FLAG_CERT != 0 {
            Some(reader.sized()?)
        } else {
            None
        };
        let signed = &bytes[..reader.position()];
        let signature = reader.sized()?;
        if signature.is_empty() {
            return Err(DatagramError::NoSignature);
        }
        if !reader.is_done() {
            return Err(DatagramError::Trailing);
        }
        Ok(Self {
            header: Header {
                kind,
                want_cert: flags & FLAG_WANT_CERT != 0,
                key_id,
                seq,
                timestamp_ms,
            },
            body,
            cert,
            signed,
            signature,
        })
    }

    /// The exact bytes a request's signature is over: [`CONTEXT`] then
    /// [`signed`](Self::signed).
    pub fn signing_input(&self) -> Vec<u8> {
        [CONTEXT, self.signed].concat()
    }

    /// The exact bytes a reply's signature is over: [`CONTEXT`], the request it must answer,
    /// then [`signed`](Self::signed).
    pub fn reply_signing_input(&self, request: &RequestBinding) -> Vec<u8> {
        [CONTEXT, &request.bytes(), self.signed].concat()
    }
}

/// Builds a request: the fields, then a signature over [`CONTEXT`] and them, made by `sign`.
///
/// Fails with [`DatagramError::Oversized`] when a field does not fit its 16-bit length.
pub fn encode(
    header: &Header,
    body: &str,
    cert: Option<&[u8]>,
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Result<Vec<u8>, DatagramError> {
    encode_signed(header, body, cert, &[], sign)
}

/// Builds a reply to the request `answers`: its signature also covers the binding.
///
/// Fails with [`DatagramError::Oversized`] when a field does not fit its 16-bit length.
pub fn encode_reply(
    header: &Header,
    body: &str,
    cert: Option<&[u8]>,
    answers: &RequestBinding,
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Result<Vec<u8>, DatagramError> {
    encode_signed(header, body, cert, &answers.bytes(), sign)
}

fn encode_signed(
    header: &Header,
    body: &str,
    cert: Option<&[u8]>,
    binding: &[u8],
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Result<Vec<u8>, DatagramError> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + cert.map_or(0, <[u8]>::len) + 80);
    out.push(VERSION);
    out.push(header.kind as u8);
    let mut flags = 0;
    if cert.is_some() {
        flags |= FLAG_CERT;
    }
    if header.want_cert {
        flags |= FLAG_WANT_CERT;
    }
    out.push(flags);
    out.extend_from_slice(&header.key_id);
    out.extend_from_slice(&header.seq.to_be_bytes());
    out.extend_from_slice(&header.timestamp_ms.to_be_bytes());
    put_sized(&mut out, body.as_bytes())?;
    if let Some(cert) = cert {
        put_sized(&mut out, cert)?;
    }
    let signature = sign(&[CONTEXT, binding, &out].concat());
    put_sized(&mut out, &signature)?;
    Ok(out)
}

impl From<Truncated> for DatagramError {
    fn from(_: Truncated) -> Self {
        Self::Truncated
    }
}

impl From<TooLong> for DatagramError {
    fn from(_: TooLong) -> Self {
        Self::Oversized
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Request => "request",
            Self::Reply => "reply",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            kind: Kind::Request,
            want_cert: true,
            key_id: [1, 2, 3, 4, 5, 6, 7, 8],
            seq: 42,
            timestamp_ms: 1_700_000_000_000,
        }
    }

    /// A stand-in signature: the length of the input, so tests see what was signed.
    fn fake_sign(input: &[u8]) -> Vec<u8> {
        (input.len() as u32).to_be_bytes().to_vec()
    }

    #[test]
    fn round_trips_with_and_without_a_certificate() {
        for cert in [None, Some(&b"certificate bytes"[..])] {
            let bytes = encode(&header(), "ECHO hi", cert, fake_sign).unwrap();
            let parsed = Datagram::parse(&bytes, DEFAULT_MAX_DATAGRAM).unwrap();
            assert_eq!(parsed.header, header());
            assert_eq!(parsed.body, "ECHO hi");
            assert_eq!(parsed.cert, cert);
            assert_eq!(parsed.signature, fake_sign(&parsed.signing_input()));
            assert!(parsed.signing_input().starts_with(CONTEXT));
        }
    }

    #[test]
    fn a_reply_signature_covers_the_request_it_answers() {
        let binding = RequestBinding {
            key_id: [9; 8],
            digest: [7; 32],
        };
        let reply_header = Header {
            kind: Kind::Reply,
            want_cert: false,
            ..header()
        };
        let bytes = encode_reply(&reply_header, "OK 3", None, &binding, |i| i.to_vec()).unwrap();
        let parsed = Datagram::parse(&bytes, usize::MAX).unwrap();
        let input = parsed.reply_signing_input(&binding);
        assert_eq!(parsed.signature, input);
        assert_eq!(&input[CONTEXT.len()..CONTEXT.len() + 8], &[9; 8]);
        assert_eq!(&input[CONTEXT.len() + 8..CONTEXT.len() + 40], &[7; 32]);
        let other = RequestBinding {
            digest: [8; 32],
            ..binding
        };
        assert_ne!(parsed.reply_signing_input(&other), input);
        assert_ne!(parsed.signing_input(), input);
    }

    #[test]
    fn the_layout_is_as_documented() {
        let bytes = encode(&header(), "PING", None, |_| vec![0xAA]).unwrap();
        assert_eq!(bytes[0], VERSION);
        assert_eq!(bytes[1], 1);
        assert_eq!(bytes[2], FLAG_WANT_CERT);
        assert_eq!(&bytes[3..11], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&bytes[11..19], &42u64.to_be_bytes());
        assert_eq!(&bytes[27..29], &4u16.to_be_bytes());
        assert_eq!(&bytes[29..33], b"PING");
        assert_eq!(&bytes[33..], &[0, 1, 0xAA]);
    }

    #[test]
    fn every_malformation_has_its_error() {
        let good = encode(&header(), "PING", None, |_| vec![0xAA; 8]).unwrap();
        let parse = |b: &[u8]| Datagram::parse(b, DEFAULT_MAX_DATAGRAM).map(|_| ());
        for cut in 0..good.len() {
            assert_eq!(
                parse(&good[..cut]),
                Err(DatagramError::Truncated),
                "cut at {cut}"
            );
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(parse(&trailing), Err(DatagramError::Trailing));
        let mut version = good.clone();
        version[0] = 9;
        assert_eq!(parse(&version), Err(DatagramError::UnknownVersion(9)));
        let mut kind = good.clone();
        kind[1] = 7;
        assert_eq!(parse(&kind), Err(DatagramError::UnknownKind(7)));
        let mut flags = good.clone();
        flags[2] = 0x80;
        assert_eq!(parse(&flags), Err(DatagramError::UnknownFlags(0x80)));
        assert_eq!(
            Datagram::parse(&good, good.len() - 1).map(|_| ()),
            Err(DatagramError::Oversized)
        );
        let newline = encode(&header(), "A\nB", None, fake_sign).unwrap();
        assert_eq!(parse(&newline), Err(DatagramError::BadBody));
        let unsigned = encode(&header(), "PING", None, |_| Vec::new()).unwrap();
        assert_eq!(parse(&unsigned), Err(DatagramError::NoSignature));
    }
}
