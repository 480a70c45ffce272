//! End-to-end encrypted direct messages: the byte layouts of a published device key (a
//! [`KeyBundle`]) and of a sealed message ([`Sealed`]), and exactly which bytes are signed and
//! which are authenticated. No cryptography happens here; `tlschat-tls` seals, opens, signs and
//! verifies.
//!
//! A person may use several devices; each has its own HPKE key and publishes its own bundle,
//! named by a device name. A message is sealed once, to every device of the recipient and to
//! the sender's other devices: the text is encrypted under a fresh message key, and that key is
//! sealed with HPKE to each device (one *slot* per device).
//!
//! Both travel in request and event lines as lower-case hex ([`crate::hex`]).
//!
//! # Key bundle (version 2)
//!
//! All integers unsigned, big-endian.
//!
//! | size | field |
//! |---|---|
//! | 1 | version: 2 |
//! | 2 | HPKE KEM id: `0x0020` (DHKEM(X25519, HKDF-SHA256)) |
//! | 2 | HPKE KDF id: `0x0001` (HKDF-SHA256) |
//! | 2 | HPKE AEAD id: `0x0003` (ChaCha20Poly1305) |
//! | 1 | public key length P (32) |
//! | P | the device's HPKE public key |
//! | 1 | device name length D |
//! | D | the device name, lower case (the nickname rules, [`crate::names::validate_device`]) |
//! | 2 | certificate length C |
//! | C | the user's certificate, DER (CN = their nickname) |
//! | 1 | signature length S |
//! | S | signature by the certificate's key over [`KEY_CONTEXT`], the name (one length byte, then the lower-case nickname) and every byte before the certificate length |
//!
//! A key's fingerprint (what people compare) covers the suite and the public key as version 1
//! laid them out ([`KeyBundle::fingerprint_part`]), not the device name: fingerprints did not
//! change when devices got names.
//!
//! # Sealed message (version 2)
//!
//! | size | field |
//! |---|---|
//! | 1 | version: 2 |
//! | 8 | counter: strictly increasing per sending device |
//! | 8 | timestamp: milliseconds since 1970-01-01 UTC, sender's clock |
//! | 8 | sender key id: the key id of the sending device's HPKE key |
//! | 1 | slot count N, 1 to [`MAX_SLOTS`] |
//! | N x | a slot: 8 bytes key id of the device it is for, 1 + E bytes HPKE encapsulated key (`enc`), 1 + W bytes the HPKE ciphertext of the 32-byte message key |
//! | 2 | ciphertext length C |
//! | C | the UTF-8 text, ChaCha20-Poly1305 under the message key, nonce zero (the key is used once), associated data below |
//! | 1 | signature length S |
//! | S | signature by the sender's certificate key over [`MESSAGE_CONTEXT`], sender name, recipient name (each a length byte then the lower-case nickname) and every byte before the signature length |
//!
//! A key id is the first 8 bytes of SHA-256 over the HPKE public key. The associated data of
//! the text and of every slot (HPKE base mode, info [`HPKE_INFO`]) is [`MESSAGE_CONTEXT`],
//! sender name, recipient name and the first 25 bytes (version, counter, timestamp, sender key
//! id), so nothing can be moved to another pair of users, another counter or another sending
//! device. The recipient name is the conversation's other party: the copy a sender's other
//! devices read names the person it was sent to. Signatures are ECDSA P-256 SHA-256, ASN.1 DER.

use crate::names::name_key;
use crate::wire::{put_short, put_sized, Reader, TooLong, Truncated};

/// The version this module reads and writes.
pub const VERSION: u8 = 2;

/// Domain separation for key bundle signatures.
pub const KEY_CONTEXT: &[u8] = b"tlschat e2e key v2\0";

/// Domain separation for message signatures and associated data.
pub const MESSAGE_CONTEXT: &[u8] = b"tlschat e2e message v2\0";

/// The HPKE `info` parameter.
pub const HPKE_INFO: &[u8] = b"tlschat e2e v2";

/// Longest text one E2E message may carry, in bytes of UTF-8: 16 KiB. The sealed payload is
/// hex in a line, so it stays well inside the default 64 KiB line limit.
pub const MAX_TEXT_LEN: usize = 16 * 1024;

/// Most devices one person may publish keys for: the server refuses more (its own limit may be
/// lower), and a sealed message has room for the recipient's and the sender's.
pub const MAX_DEVICES: usize = 16;

/// Most slots in one sealed message: every device of the recipient and of the sender.
pub const MAX_SLOTS: usize = 2 * MAX_DEVICES;

/// Bytes of a message key.
pub const MESSAGE_KEY_LEN: usize = 32;

/// Bytes of the fixed part of a sealed message, before the slot count.
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

/// The one suite used: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305.
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
    /// A device name that breaks the naming rules.
    #[error("bad device name")]
    BadDevice,
    /// No slot, or more than [`MAX_SLOTS`].
    #[error("a sealed message is for 1 to {MAX_SLOTS} devices")]
    BadSlots,
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

/// One device's published E2E key: what `KEY SET` carries and `KEY GET` returns (one per
/// device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBundle {
    /// The HPKE public key.
    pub public_key: Vec<u8>,
    /// The device's name, lower case.
    pub device: String,
    /// The owner's certificate, DER.
    pub cert: Vec<u8>,
    /// The certificate key's signature (see [`KeyBundle::signing_input`]).
    pub signature: Vec<u8>,
}

impl KeyBundle {
    /// The bytes before the certificate: version, suite, public key and device name. The
    /// signature covers them.
    pub fn key_part(public_key: &[u8], device: &str) -> Result<Vec<u8>, LayoutError> {
        crate::names::validate_device(device).map_err(|_| LayoutError::BadDevice)?;
        let mut out = Vec::with_capacity(9 + public_key.len() + device.len());
        out.push(VERSION);
        put_suite(&mut out);
        put_short(&mut out, public_key)?;
        put_short(&mut out, name_key(device).as_bytes())?;
        Ok(out)
    }

    /// What a fingerprint covers of the key: the suite and the public key, laid out as version
    /// 1 did (a version byte 1, the suite, a length byte, the key).
    pub fn fingerprint_part(public_key: &[u8]) -> Result<Vec<u8>, LayoutError> {
        let mut out = Vec::with_capacity(8 + public_key.len());
        out.push(1);
        put_suite(&mut out);
        put_short(&mut out, public_key)?;
        Ok(out)
    }

    /// What the owner signs: [`KEY_CONTEXT`], their name, and [`KeyBundle::key_part`].
    pub fn signing_input(
        name: &str,
        public_key: &[u8],
        device: &str,
    ) -> Result<Vec<u8>, LayoutError> {
        let mut out = KEY_CONTEXT.to_vec();
        put_short(&mut out, name_key(name).as_bytes())?;
        out.extend_from_slice(&Self::key_part(public_key, device)?);
        Ok(out)
    }

    /// The bundle's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, LayoutError> {
        let mut out = Self::key_part(&self.public_key, &self.device)?;
        put_sized(&mut out, &self.cert)?;
        put_short(&mut out, &self.signature)?;
        Ok(out)
    }

    /// Reads a bundle. Does not verify anything but the layout (and the device name's rules).
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
        let device = std::str::from_utf8(reader.short()?).map_err(|_| LayoutError::BadDevice)?;
        if crate::names::validate_device(device).is_err() || name_key(device) != device {
            return Err(LayoutError::BadDevice);
        }
        let device = device.to_owned();
        let cert = reader.sized()?.to_vec();
        let signature = reader.short()?.to_vec();
        finish(&reader, &signature)?;
        Ok(Self {
            public_key,
            device,
            cert,
            signature,
        })
    }
}

fn put_suite(out: &mut Vec<u8>) {
    for id in [SUITE.kem, SUITE.kdf, SUITE.aead] {
        out.extend_from_slice(&id.to_be_bytes());
    }
}

/// The message key sealed to one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The key id of the device's HPKE key.
    pub key_id: [u8; 8],
    /// HPKE encapsulated key.
    pub enc: Vec<u8>,
    /// HPKE ciphertext of the message key.
    pub wrapped: Vec<u8>,
}

/// An E2E direct message as it travels: encrypted once, its key sealed to each device that
/// may read it, signed by the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Strictly increasing per sending device: a recipient refuses a number it has seen.
    pub counter: u64,
    /// Milliseconds since the Unix epoch on the sender's clock.
    pub timestamp_ms: u64,
    /// The key id of the sending device.
    pub sender_key_id: [u8; 8],
    /// The message key, sealed to each device (1 to [`MAX_SLOTS`]).
    pub slots: Vec<Slot>,
    /// The text, encrypted under the message key.
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
        out.extend_from_slice(&self.sender_key_id);
        out
    }

    /// The associated data of the text and of every slot: [`MESSAGE_CONTEXT`], both names and
    /// the header.
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

    /// The slot for the device whose key id is `key_id`.
    pub fn slot_for(&self, key_id: &[u8; 8]) -> Option<&Slot> {
        self.slots.iter().find(|slot| &slot.key_id == key_id)
    }

    fn unsigned_bytes(&self) -> Result<Vec<u8>, LayoutError> {
        if self.ciphertext.len() > MAX_TEXT_LEN + 64 {
            return Err(LayoutError::TooLong);
        }
        if self.slots.is_empty() || self.slots.len() > MAX_SLOTS {
            return Err(LayoutError::BadSlots);
        }
        let mut out = self.header();
        out.push(self.slots.len() as u8);
        for slot in &self.slots {
            out.extend_from_slice(&slot.key_id);
            put_short(&mut out, &slot.enc)?;
            put_short(&mut out, &slot.wrapped)?;
        }
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
        let sender_key_id = reader.array()?;
        let count = usize::from(reader.u8()?);
        if count == 0 || count > MAX_SLOTS {
            return Err(LayoutError::BadSlots);
        }
        let mut slots = Vec::with_capacity(count);
        for _ in 0..count {
            slots.push(Slot {
                key_id: reader.array()?,
                enc: reader.short()?.to_vec(),
                wrapped: reader.short()?.to_vec(),
            });
        }
        let ciphertext = reader.sized()?.to_vec();
        if ciphertext.len() > MAX_TEXT_LEN + 64 {
            return Err(LayoutError::TooLong);
        }
        let signature = reader.short()?.to_vec();
        finish(&reader, &signature)?;
        Ok(Self {
            counter,
            timestamp_ms,
            sender_key_id,
            slots,
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
        let mut over = bytes[..bytes.len() - 1 - 70 - 2 - (MAX_TEXT_LEN + 64)].to_vec();
        put_sized(&mut over, &message.ciphertext).unwrap();
        put_short(&mut over, &message.signature).unwrap();
        assert_eq!(Sealed::decode(&over), Err(LayoutError::TooLong));
    }

    fn slot(n: u8) -> Slot {
        Slot {
            key_id: [n; 8],
            enc: vec![1; 32],
            wrapped: vec![3; 48],
        }
    }

    fn sealed() -> Sealed {
        Sealed {
            counter: 7,
            timestamp_ms: 1_800_000_000_000,
            sender_key_id: [4; 8],
            slots: vec![slot(9), slot(8)],
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
        assert_eq!(&bytes[17..25], &[4; 8]);
        assert_eq!(bytes[25], 2, "two slots");
        assert_eq!(&bytes[26..34], &[9; 8]);
        assert_eq!(bytes[34], 32);
        let slot_len = 8 + 1 + 32 + 1 + 48;
        assert_eq!(bytes.len(), 25 + 1 + 2 * slot_len + 2 + 18 + 1 + 70);
        assert_eq!(Sealed::decode(&bytes).unwrap(), message);
        assert_eq!(message.slot_for(&[8; 8]), Some(&slot(8)));
        assert_eq!(message.slot_for(&[7; 8]), None);
        // Every truncation and any trailing byte is refused.
        for cut in 0..bytes.len() {
            assert!(Sealed::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Sealed::decode(&longer), Err(LayoutError::Trailing));
    }

    #[test]
    fn a_sealed_message_is_for_one_to_max_slots_devices() {
        let mut message = sealed();
        message.slots = (0..MAX_SLOTS as u8).map(slot).collect();
        let bytes = message.encode().unwrap();
        assert_eq!(Sealed::decode(&bytes).unwrap(), message);
        message.slots.push(slot(99));
        assert_eq!(message.encode(), Err(LayoutError::BadSlots));
        message.slots.clear();
        assert_eq!(message.encode(), Err(LayoutError::BadSlots));
        // Counts of 0 and MAX_SLOTS + 1 written by hand are refused on the way in.
        for count in [0, MAX_SLOTS as u8 + 1] {
            let mut forged = bytes.clone();
            forged[25] = count;
            assert_eq!(Sealed::decode(&forged), Err(LayoutError::BadSlots));
        }
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
    fn a_key_bundle_round_trips_names_its_device_and_refuses_other_suites() {
        let bundle = KeyBundle {
            public_key: vec![5; 32],
            device: "laptop".into(),
            cert: vec![6; 500],
            signature: vec![7; 71],
        };
        let bytes = bundle.encode().unwrap();
        assert_eq!(&bytes[..7], &[2, 0, 0x20, 0, 1, 0, 3]);
        assert_eq!(&bytes[40..47], b"\x06laptop");
        assert_eq!(KeyBundle::decode(&bytes).unwrap(), bundle);
        let mut other = bytes.clone();
        other[6] = 1; // AES-128-GCM
        assert_eq!(KeyBundle::decode(&other), Err(LayoutError::UnknownSuite));
        let signed = KeyBundle::signing_input("Bob", &bundle.public_key, "Laptop").unwrap();
        assert!(signed.starts_with(KEY_CONTEXT));
        assert!(signed.ends_with(&bytes[..8 + 32 + 7]));
        assert_eq!(
            signed,
            KeyBundle::signing_input("bob", &bundle.public_key, "laptop").unwrap()
        );
        // The fingerprint part is version 1's key part, whatever the device.
        let part = KeyBundle::fingerprint_part(&bundle.public_key).unwrap();
        assert_eq!(&part[..7], &[1, 0, 0x20, 0, 1, 0, 3]);
        assert_eq!(&part[7..], &bytes[7..8 + 32]);
        // A device name must follow the rules and be lower case on the wire.
        let mut upper = bytes.clone();
        upper[41] = b'L';
        assert_eq!(KeyBundle::decode(&upper), Err(LayoutError::BadDevice));
        let mut bad = bytes.clone();
        bad[41] = b'-';
        assert_eq!(KeyBundle::decode(&bad), Err(LayoutError::BadDevice));
        let unnamed = KeyBundle {
            device: String::new(),
            ..bundle
        };
        assert_eq!(unnamed.encode(), Err(LayoutError::BadDevice));
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
