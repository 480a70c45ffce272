//! End-to-end encrypted direct messages: the byte layouts of a published key (a [`KeyBundle`])
//! and of a sealed message ([`Sealed`]), and exactly which bytes are signed and which are
//! authenticated. No cryptography happens here; `tlschat-tls` seals, opens, signs and verifies.
//!
//! Both travel in request and event lines as lower-case hex ([`crate::hex`]).
//!
//! # Key bundle
//!
//! All integers unsigned, big-endian.
//!
//! | size | field |
//! |---|---|
//! | 1 | version: 1 |
//! | 2 | HPKE KEM id: `0x0020` (DHKEM(X25519, HKDF-SHA256)) |
//! | 2 | HPKE KDF id: `0x0001` (HKDF-SHA256) |
//! | 2 | HPKE AEAD id: `0x0003` (ChaCha20Poly1305) |
//! | 1 | public key length P (32) |
//! | P | the user's HPKE public key |
//! | 2 | certificate length C |
//! | C | the user's certificate, DER (CN = their nickname) |
//! | 1 | signature length S |
//! | S | signature by the certificate's key over [`KEY_CONTEXT`], the name (one length byte, then the lower-case nickname) and every byte before the certificate length |
//!
//! # Sealed message
//!
//! | size | field |
//! |---|---|
//! | 1 | version: 1 |
//! | 8 | counter: strictly increasing per sender |
//! | 8 | timestamp: milliseconds since 1970-01-01 UTC, sender's clock |
//! | 8 | recipient key id: the first 8 bytes of SHA-256 over the recipient's HPKE public key |
//! | 1 | encapsulated key length E (32) |
//! | E | HPKE encapsulated key (`enc`) |
//! | 2 | ciphertext length C |
//! | C | HPKE ciphertext of the UTF-8 text (base mode, info [`HPKE_INFO`], associated data below) |
//! | 1 | signature length S |
//! | S | signature by the sender's certificate key over [`MESSAGE_CONTEXT`], sender name, recipient name (each a length byte then the lower-case nickname) and every byte before the signature length |
//!
//! The associated data is [`MESSAGE_CONTEXT`], sender name, recipient name and the first 25
//! bytes (version, counter, timestamp, recipient key id), so a ciphertext cannot be moved to
//! another pair of users or another counter. Signatures are ECDSA P-256 SHA-256, ASN.1 DER.

use crate::names::name_key;
use crate::wire::{put_short, put_sized, Reader, TooLong, Truncated};

/// The version this module reads and writes.
pub const VERSION: u8 = 1;

/// Domain separation for key bundle signatures.
pub const KEY_CONTEXT: &[u8] = b"tlschat e2e key v1\0";

/// Domain separation for message signatures and associated data.
pub const MESSAGE_CONTEXT: &[u8] = b"tlschat e2e message v1\0";

/// The HPKE `info` parameter.
pub const HPKE_INFO: &[u8] = b"tlschat e2e v1";

/// Longest text one E2E message may carry, in bytes of UTF-8: 16 KiB. The sealed payload is
/// hex in a line, so it stays well inside the default 64 KiB line limit.
pub const MAX_TEXT_LEN: usize = 16 * 1024;

/// Bytes of the fixed part of a sealed message, before `enc`'s length.
pub const SEALED_HEADER_LEN: usize = 25;

/// The HPKE suite: KEM, KDF and AEAD ids from RFC 9180.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suite {
    /// KEM id.
    pub kem: u16,
    /// KDF id.
    pub kdf: u16,
    /// AEAD id.
    pub aead: u16,
}

/// The one suite version 1 uses: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305.
pub const SUITE: Suite = Suite {
    kem: 0x0020,
    kdf: 0x0001,
    aead: 0x0003,
};

/// Why bytes are not a key bundle or a sealed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// Shorter than its fields say.
    #[error("truncated")]
    Truncated,
    /// A field too long for its length prefix, or text over [`MAX_TEXT_LEN`].
    #[error("a field is too long")]
    TooLong,
    /// A version this code does not speak.
    #[error("unknown version {0}")]
    UnknownVersion(u8),
    /// An HPKE suite other than [`SUITE`].
    #[error("unsupported HPKE suite")]
    UnknownSuite,
    /// Bytes after the signature.
    #[error("bytes after the signature")]
    Trailing,
    /// No signature.
    #[error("empty signature")]
    NoSignature,
}

impl From<Truncated> for LayoutError {
    fn from(_: Truncated) -> Self {
        Self::Truncated
    }
}

impl From<TooLong> for LayoutError {
    fn from(_: TooLong) -> Self {
        Self::TooLong
    }
}

/// A user's published E2E key: what `KEY SET` carries and `KEY GET` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBundle {
    /// The HPKE public key.
    pub public_key: Vec<u8>,
    /// The owner's certificate, DER.
    pub cert: Vec<u8>,
    /// The certificate key's signature (see [`KeyBundle::signing_input`]).
    pub signature: Vec<u8>,
}

impl KeyBundle {
    /// The bytes before the certificate: version, suite and public key. The fingerprint and
    /// the signature cover them.
    pub fn key_part(public_key: &[u8]) -> Result<Vec<u8>, LayoutError> {
        let mut out = Vec::with_capacity(8 + public_key.len());
        out.push(VERSION);
        for id in [SUITE.kem, SUITE.kdf, SUITE.aead] {
            out.extend_from_slice(&id.to_be_bytes());
        }
        put_short(&mut out, public_key)?;
        Ok(out)
    }

    /// What the owner signs: [`KEY_CONTEXT`], their name, and [`KeyBundle::key_part`].
    pub fn signing_input(name: &str, public_key: &[u8]) -> Result<Vec<u8>, LayoutError> {
        let mut out = KEY_CONTEXT.to_vec();
        put_short(&mut out, name_key(name).as_bytes())?;
        out.extend_from_slice(&Self::key_part(public_key)?);
        Ok(out)
    }

    /// The bundle's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, LayoutError> {
        let mut out = Self::key_part(&self.public_key)?;
        put_sized(&mut out, &self.cert)?;
        put_short(&mut out, &self.signature)?;
        Ok(out)
    }

    /// Reads a bundle. Does not verify anything but the layout.
    pub fn decode(bytes: &[u8]) -> Result<Self, LayoutError> {
        let mut reader = versioned(bytes)?;
        let suite = Suite {
            kem: reader.u16()?,
            kdf: reader.u16()?,
            aead: reader.u16()?,
        };
        if suite != SUITE {
            return Err(LayoutError::UnknownSuite);
        }
        let public_key = reader.short()?.to_vec();
        let cert = reader.sized()?.to_vec();
        let signature = reader.short()?.to_vec();
        finish(&reader, &signature)?;
        Ok(Self {
            public_key,
            cert,
            signature,
        })
    }
}

/// An E2E direct message as it travels: sealed to the recipient, signed by the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Strictly increasing per sender: the recipient refuses a number it has seen.
    pub counter: u64,
    /// Milliseconds since the Unix epoch on the sender's clock.
    pub timestamp_ms: u64,
    /// Which of the recipient's keys it is sealed to.
    pub recipient_key_id: [u8; 8],
    /// HPKE encapsulated key.
    pub enc: Vec<u8>,
    /// HPKE ciphertext.
    pub ciphertext: Vec<u8>,
    /// The sender's signature (see [`Sealed::signing_input`]).
    pub signature: Vec<u8>,
}

impl Sealed {
    /// The first [`SEALED_HEADER_LEN`] bytes.
    fn header(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SEALED_HEADER_LEN);
        out.push(VERSION);
        out.extend_from_slice(&self.counter.to_be_bytes());
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        out.extend_from_slice(&self.recipient_key_id);
        out
    }

    /// The HPKE associated data: [`MESSAGE_CONTEXT`], both names and the header.
    pub fn associated_data(&self, sender: &str, recipient: &str) -> Result<Vec<u8>, LayoutError> {
        let mut out = names_prefix(sender, recipient)?;
        out.extend_from_slice(&self.header());
        Ok(out)
    }

    /// The bytes the signature covers: [`MESSAGE_CONTEXT`], both names, and every byte of the
    /// encoding before the signature length.
    pub fn signing_input(&self, sender: &str, recipient: &str) -> Result<Vec<u8>, LayoutError> {
        let mut out = names_prefix(sender, recipient)?;
        out.extend_from_slice(&self.unsigned_bytes()?);
        Ok(out)
    }

    fn unsigned_bytes(&self) -> Result<Vec<u8>, LayoutError> {
        if self.ciphertext.len() > MAX_TEXT_LEN + 64 {
            return Err(LayoutError::TooLong);
        }
        let mut out = self.header();
        put_short(&mut out, &self.enc)?;
        put_sized(&mut out, &self.ciphertext)?;
        Ok(out)
    }

    /// The message's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, LayoutError> {
        let mut out = self.unsigned_bytes()?;
        put_short(&mut out, &self.signature)?;
        Ok(out)
    }

    /// Reads a sealed message. Does not verify anything but the layout.
    pub fn decode(bytes: &[u8]) -> Result<Self, LayoutError> {
        let mut reader = versioned(bytes)?;
        let counter = reader.u64()?;
        let timestamp_ms = reader.u64()?;
        let recipient_key_id = reader.array()?;
        let enc = reader.short()?.to_vec();
        let ciphertext = reader.sized()?.to_vec();
        if ciphertext.len() > MAX_TEXT_LEN + 64 {
            return Err(LayoutError::TooLong);
        }
        let signature = reader.short()?.to_vec();
        finish(&reader, &signature)?;
        Ok(Self {
            counter,
            timestamp_ms,
            recipient_key_id,
            enc,
            ciphertext,
            signature,
        })
    }
}

/// A reader past the version byte, which must be [`VERSION`].
fn versioned(bytes: &[u8]) -> Result<Reader<'_>, LayoutError> {
    let mut reader = Reader::new(bytes);
    match reader.u8()? {
        VERSION => Ok(reader),
        other => Err(LayoutError::UnknownVersion(other)),
    }
}

fn names_prefix(sender: &str, recipient: &str) -> Result<Vec<u8>, LayoutError> {
    let mut out = MESSAGE_CONTEXT.to_vec();
    put_short(&mut out, name_key(sender).as_bytes())?;
    put_short(&mut out, name_key(recipient).as_bytes())?;
    Ok(out)
}

fn finish(reader: &Reader<'_>, signature: &[u8]) -> Result<(), LayoutError> {
    if signature.is_empty() {
        return Err(LayoutError::NoSignature);
    }
    if !reader.is_done() {
        return Err(LayoutError::Trailing);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_ciphertext_passes_and_one_byte_more_is_refused_both_ways() {
        assert_eq!(MAX_TEXT_LEN, 16 * 1024, "documented in PROTOCOL.md");
        let mut message = sealed();
        message.ciphertext = vec![1; MAX_TEXT_LEN + 64];
        let bytes = message.encode().unwrap();
        assert_eq!(Sealed::decode(&bytes).unwrap(), message);
        message.ciphertext.push(1);
        assert_eq!(message.encode(), Err(LayoutError::TooLong));
        // A peer's message one byte over, built by hand, is refused on the way in too.
        let mut over = message.header();
        put_short(&mut over, &message.enc).unwrap();
        put_sized(&mut over, &message.ciphertext).unwrap();
        put_short(&mut over, &message.signature).unwrap();
        assert_eq!(Sealed::decode(&over), Err(LayoutError::TooLong));
    }

    fn sealed() -> Sealed {
        Sealed {
            counter: 7,
            timestamp_ms: 1_800_000_000_000,
            recipient_key_id: [9; 8],
            enc: vec![1; 32],
            ciphertext: b"ciphertext and tag".to_vec(),
            signature: vec![2; 70],
        }
    }

    #[test]
    fn a_sealed_message_round_trips_with_the_documented_layout() {
        let message = sealed();
        let bytes = message.encode().unwrap();
        assert_eq!(bytes[0], VERSION);
        assert_eq!(&bytes[1..9], &7u64.to_be_bytes());
        assert_eq!(&bytes[17..25], &[9; 8]);
        assert_eq!(bytes[25], 32);
        assert_eq!(bytes.len(), 25 + 1 + 32 + 2 + 18 + 1 + 70);
        assert_eq!(Sealed::decode(&bytes).unwrap(), message);
        // Every truncation and any trailing byte is refused.
        for cut in 0..bytes.len() {
            assert!(Sealed::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Sealed::decode(&longer), Err(LayoutError::Trailing));
    }

    #[test]
    fn signed_and_authenticated_bytes_bind_both_names_case_insensitively() {
        let message = sealed();
        let ad = message.associated_data("Alice", "bob").unwrap();
        assert_eq!(ad, message.associated_data("alice", "BOB").unwrap());
        assert_ne!(ad, message.associated_data("bob", "alice").unwrap());
        assert!(ad.starts_with(MESSAGE_CONTEXT));
        assert!(ad.ends_with(&message.encode().unwrap()[..SEALED_HEADER_LEN]));
        let signed = message.signing_input("alice", "bob").unwrap();
        let bytes = message.encode().unwrap();
        assert!(signed.ends_with(&bytes[..bytes.len() - 71]));
        // Names are length-prefixed: "ab"+"c" and "a"+"bc" differ.
        assert_ne!(
            message.signing_input("ab", "c").unwrap(),
            message.signing_input("a", "bc").unwrap()
        );
    }

    #[test]
    fn a_key_bundle_round_trips_and_refuses_other_suites() {
        let bundle = KeyBundle {
            public_key: vec![5; 32],
            cert: vec![6; 500],
            signature: vec![7; 71],
        };
        let bytes = bundle.encode().unwrap();
        assert_eq!(&bytes[..7], &[1, 0, 0x20, 0, 1, 0, 3]);
        assert_eq!(KeyBundle::decode(&bytes).unwrap(), bundle);
        let mut other = bytes.clone();
        other[6] = 1; // AES-128-GCM
        assert_eq!(KeyBundle::decode(&other), Err(LayoutError::UnknownSuite));
        let signed = KeyBundle::signing_input("Bob", &bundle.public_key).unwrap();
        assert!(signed.starts_with(KEY_CONTEXT));
        assert!(signed.ends_with(&bytes[..8 + 32]));
        assert_eq!(
            signed,
            KeyBundle::signing_input("bob", &bundle.public_key).unwrap()
        );
    }
}

/// A binary layout that travels in a line as hex: [`KeyBundle`] and [`Sealed`].
pub trait Layout: Sized {
    /// The layout's bytes.
    fn encode(&self) -> Result<Vec<u8>, LayoutError>;
    /// Reads the layout from its bytes.
    fn decode(bytes: &[u8]) -> Result<Self, LayoutError>;
}

impl Layout for KeyBundle {
    fn encode(&self) -> Result<Vec<u8>, LayoutError> {
        Self::encode(self)
    }
    fn decode(bytes: &[u8]) -> Result<Self, LayoutError> {
        Self::decode(bytes)
    }
}

impl Layout for Sealed {
    fn encode(&self) -> Result<Vec<u8>, LayoutError> {
        Self::encode(self)
    }
    fn decode(bytes: &[u8]) -> Result<Self, LayoutError> {
        Self::decode(bytes)
    }
}

/// A payload as it travels in a line (hex digits), together with the layout it decodes to:
/// checked once where it is read, then passed on exactly as received (the server relays the
/// digits it got, never a re-encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload<T> {
    hex: String,
    value: T,
}

impl<T: Layout> Payload<T> {
    /// The payload of `value`, encoded once.
    pub fn new(value: T) -> Result<Self, LayoutError> {
        let hex = crate::hex::encode(&value.encode()?);
        Ok(Self { hex, value })
    }

    /// Reads hex digits received in a line; the error says what is wrong.
    pub fn parse(hex: &str) -> Result<Self, String> {
        let bytes = crate::hex::decode(hex).map_err(|e| e.to_string())?;
        let value = T::decode(&bytes).map_err(|e| e.to_string())?;
        Ok(Self {
            hex: hex.to_owned(),
            value,
        })
    }

    /// What the payload holds.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The hex digits, as received (or as first encoded).
    pub fn hex(&self) -> &str {
        &self.hex
    }
}
