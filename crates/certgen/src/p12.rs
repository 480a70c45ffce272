//! PKCS#12 bundles (RFC 7292): a user's certificate, its private key and the CA certificate in
//! one password-protected file, the form browsers, mail clients and operating-system key stores
//! import (`tlschat-certgen export NAME --p12`).
//!
//! Built as OpenSSL 3 builds them, from the one crypto provider (aws-lc-rs):
//!
//! - the private key: a PKCS#8 shrouded key bag, encrypted with PBES2 (PBKDF2-HMAC-SHA256,
//!   [`KEY_ITERATIONS`], a random 16-byte salt; AES-256-CBC with a random IV) over the password
//!   as UTF-8;
//! - the certificates: certificate bags (public data, not encrypted), the user's marked with the
//!   key's local key id and friendly name;
//! - the integrity MAC: HMAC-SHA256 under a key from the PKCS#12 key derivation (RFC 7292
//!   appendix B.2, SHA-256, [`MAC_ITERATIONS`], the password as a BMPString). aws-lc-rs has no
//!   call for that derivation, so [`pkcs12_kdf`] composes it from SHA-256; its output is checked
//!   against OpenSSL's `PKCS12KDF` in the tests, and whole bundles against `openssl pkcs12`.

use std::num::NonZeroU32;

use aws_lc_rs::cipher::{PaddedBlockEncryptingKey, UnboundCipherKey, AES_256};
use aws_lc_rs::{digest, hmac, pbkdf2, rand};

/// PBKDF2 iterations for the key's encryption (OWASP's figure for PBKDF2-HMAC-SHA256).
pub const KEY_ITERATIONS: u32 = 600_000;

/// Iterations of the PKCS#12 derivation for the MAC key: as many as the key's, since checking
/// a password guess against the MAC must cost as much as against the key.
pub const MAC_ITERATIONS: u32 = 600_000;

/// The shortest password accepted for a bundle.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Why a bundle could not be made.
#[derive(Debug, thiserror::Error)]
pub enum P12Error {
    /// The password is too short.
    #[error("the password must have at least {MIN_PASSWORD_LEN} characters")]
    ShortPassword,
    /// The private key is not PKCS#8 (the form certgen and `tlschat enroll` write).
    #[error("the private key is not in PKCS#8 form (BEGIN PRIVATE KEY)")]
    KeyForm,
    /// The crypto provider failed (no randomness, say).
    #[error("the crypto provider failed")]
    Crypto,
}

impl From<aws_lc_rs::error::Unspecified> for P12Error {
    fn from(_: aws_lc_rs::error::Unspecified) -> Self {
        Self::Crypto
    }
}

/// What goes into a bundle.
#[derive(Debug, Clone)]
pub struct Contents<'a> {
    /// The name shown on import (the user's name).
    pub friendly_name: &'a str,
    /// The user's certificate, DER.
    pub cert: &'a [u8],
    /// Its private key, PKCS#8 DER.
    pub pkcs8_key: &'a [u8],
    /// The CA certificate, DER, if it should travel along.
    pub ca: Option<&'a [u8]>,
}

/// Makes the bundle (DER) protected by `password`.
pub fn bundle(contents: &Contents<'_>, password: &str) -> Result<Vec<u8>, P12Error> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(P12Error::ShortPassword);
    }
    let cert_digest = digest::digest(&digest::SHA256, contents.cert);
    let key_id = &cert_digest.as_ref()[..20];
    let user_attrs = set_of(&[
        attribute(oid::FRIENDLY_NAME, &bmp_string(contents.friendly_name)),
        attribute(oid::LOCAL_KEY_ID, &octets(key_id)),
    ]);

    let mut cert_bags = vec![cert_bag(contents.cert, Some(&user_attrs))];
    if let Some(ca) = contents.ca {
        cert_bags.push(cert_bag(ca, None));
    }
    let key_bag = sequence(&[
        object_id(oid::SHROUDED_KEY_BAG),
        explicit0(&shroud(contents.pkcs8_key, password)?),
        user_attrs,
    ]);
    let auth_safe = sequence(&[
        data_content(&sequence(&cert_bags)),
        data_content(&sequence(&[key_bag])),
    ]);

    let mut mac_salt = [0u8; 16];
    rand::fill(&mut mac_salt)?;
    let mac_key = pkcs12_kdf(
        3,
        &bmp_password(password),
        &mac_salt,
        MAC_ITERATIONS,
        digest::SHA256_OUTPUT_LEN,
    );
    let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &mac_key), &auth_safe);
    let mac_data = sequence(&[
        sequence(&[
            sequence(&[object_id(oid::SHA256), NULL.to_vec()]),
            octets(mac.as_ref()),
        ]),
        octets(&mac_salt),
        integer(MAC_ITERATIONS),
    ]);
    Ok(sequence(&[integer(3), data_content(&auth_safe), mac_data]))
}

/// The PKCS#8 key encrypted with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC): an
/// `EncryptedPrivateKeyInfo`.
fn shroud(pkcs8_key: &[u8], password: &str) -> Result<Vec<u8>, P12Error> {
    // A PKCS#8 PrivateKeyInfo is a SEQUENCE starting with version 0.
    if !pkcs8_key.starts_with(&[0x30]) {
        return Err(P12Error::KeyForm);
    }
    let mut salt = [0u8; 16];
    rand::fill(&mut salt)?;
    let mut key = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(KEY_ITERATIONS).ok_or(P12Error::Crypto)?,
        &salt,
        password.as_bytes(),
        &mut key,
    );
    let cipher = PaddedBlockEncryptingKey::cbc_pkcs7(UnboundCipherKey::new(&AES_256, &key)?)?;
    let mut sealed = pkcs8_key.to_vec();
    let context = cipher.encrypt(&mut sealed)?;
    let iv: &[u8] = (&context).try_into()?;
    let params = sequence(&[
        sequence(&[
            object_id(oid::PBKDF2),
            sequence(&[
                octets(&salt),
                integer(KEY_ITERATIONS),
                sequence(&[object_id(oid::HMAC_SHA256), NULL.to_vec()]),
            ]),
        ]),
        sequence(&[object_id(oid::AES_256_CBC), octets(iv)]),
    ]);
    Ok(sequence(&[
        sequence(&[object_id(oid::PBES2), params]),
        octets(&sealed),
    ]))
}

/// The PKCS#12 key derivation (RFC 7292, appendix B.2) with SHA-256 (u = 32, v = 64 bytes):
/// `n` bytes of key material for purpose `id` (1: encryption key, 2: IV, 3: MAC key) from the
/// password (already encoded: [`bmp_password`]) and salt.
pub fn pkcs12_kdf(id: u8, password: &[u8], salt: &[u8], iterations: u32, n: usize) -> Vec<u8> {
    const U: usize = digest::SHA256_OUTPUT_LEN;
    const V: usize = 64;
    let fill = |source: &[u8]| -> Vec<u8> {
        let len = source.len().div_ceil(V) * V;
        source.iter().copied().cycle().take(len).collect()
    };
    let diversifier = [id; V];
    let mut input = fill(salt);
    input.extend(fill(password));
    let mut out = Vec::with_capacity(n.div_ceil(U) * U);
    while out.len() < n {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&diversifier);
        ctx.update(&input);
        let mut a = ctx.finish();
        for _ in 1..iterations.max(1) {
            a = digest::digest(&digest::SHA256, a.as_ref());
        }
        out.extend_from_slice(a.as_ref());
        if out.len() >= n {
            break;
        }
        // I_j = (I_j + B + 1) mod 2^(8v) for every v-byte block I_j of I, B = A repeated.
        let b: Vec<u8> = a.as_ref().iter().copied().cycle().take(V).collect();
        for block in input.chunks_mut(V) {
            let mut carry = 1u16;
            for (x, y) in block.iter_mut().rev().zip(b.iter().rev()) {
                let sum = u16::from(*x) + u16::from(*y) + carry;
                *x = sum as u8;
                carry = sum >> 8;
            }
        }
    }
    out.truncate(n);
    out
}

/// A password as PKCS#12's derivation takes it: UTF-16 big-endian with two zero bytes at the
/// end (a BMPString).
pub fn bmp_password(password: &str) -> Vec<u8> {
    let mut out: Vec<u8> = password.encode_utf16().flat_map(u16::to_be_bytes).collect();
    out.extend([0, 0]);
    out
}

/// A `ContentInfo` of type data holding `content`.
fn data_content(content: &[u8]) -> Vec<u8> {
    sequence(&[object_id(oid::DATA), explicit0(&octets(content))])
}

/// A certificate bag, with its attributes (a SET) if given.
fn cert_bag(der: &[u8], attributes: Option<&[u8]>) -> Vec<u8> {
    let value = sequence(&[object_id(oid::X509_CERTIFICATE), explicit0(&octets(der))]);
    let mut parts = vec![object_id(oid::CERT_BAG), explicit0(&value)];
    parts.extend(attributes.map(<[u8]>::to_vec));
    sequence(&parts)
}

/// An attribute: its type and a set of one value.
fn attribute(kind: &[u64], value: &[u8]) -> Vec<u8> {
    sequence(&[object_id(kind), set_of(&[value.to_vec()])])
}

// DER, the few forms a bundle needs.

const NULL: [u8; 2] = [0x05, 0x00];

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn sequence(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// A SET OF, its elements sorted as DER requires.
fn set_of(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut sorted = parts.to_vec();
    sorted.sort();
    tlv(0x31, &sorted.concat())
}

fn octets(bytes: &[u8]) -> Vec<u8> {
    tlv(0x04, bytes)
}

fn explicit0(inner: &[u8]) -> Vec<u8> {
    tlv(0xa0, inner)
}

fn bmp_string(text: &str) -> Vec<u8> {
    let bytes: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
    tlv(0x1e, &bytes)
}

fn integer(value: u32) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(3);
    let mut content = bytes[skip..].to_vec();
    if content[0] & 0x80 != 0 {
        content.insert(0, 0);
    }
    tlv(0x02, &content)
}

fn object_id(arcs: &[u64]) -> Vec<u8> {
    let mut content = Vec::new();
    let mut base128 = |mut value: u64| {
        let mut digits = vec![(value & 0x7f) as u8];
        value >>= 7;
        while value > 0 {
            digits.push(0x80 | (value & 0x7f) as u8);
            value >>= 7;
        }
        content.extend(digits.iter().rev());
    };
    base128(arcs[0] * 40 + arcs[1]);
    for &arc in &arcs[2..] {
        base128(arc);
    }
    tlv(0x06, &content)
}

/// The object identifiers a bundle names.
mod oid {
    pub(super) const DATA: &[u64] = &[1, 2, 840, 113_549, 1, 7, 1];
    pub(super) const SHROUDED_KEY_BAG: &[u64] = &[1, 2, 840, 113_549, 1, 12, 10, 1, 2];
    pub(super) const CERT_BAG: &[u64] = &[1, 2, 840, 113_549, 1, 12, 10, 1, 3];
    pub(super) const X509_CERTIFICATE: &[u64] = &[1, 2, 840, 113_549, 1, 9, 22, 1];
    pub(super) const FRIENDLY_NAME: &[u64] = &[1, 2, 840, 113_549, 1, 9, 20];
    pub(super) const LOCAL_KEY_ID: &[u64] = &[1, 2, 840, 113_549, 1, 9, 21];
    pub(super) const PBES2: &[u64] = &[1, 2, 840, 113_549, 1, 5, 13];
    pub(super) const PBKDF2: &[u64] = &[1, 2, 840, 113_549, 1, 5, 12];
    pub(super) const HMAC_SHA256: &[u64] = &[1, 2, 840, 113_549, 2, 9];
    pub(super) const AES_256_CBC: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 1, 42];
    pub(super) const SHA256: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 1];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(text: &str) -> Vec<u8> {
        tlschat_proto::hex::decode(&text.replace(':', "").to_ascii_lowercase()).unwrap()
    }

    /// Known answers from OpenSSL 3.0's PKCS12KDF (which takes the password bytes as given):
    /// `openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt pass:secret
    ///  -kdfopt hexsalt:0102030405060708 -kdfopt iter:3 -kdfopt id:3 PKCS12KDF`, and a second
    /// one with a password longer than a block, two iterations and 40 bytes (two rounds).
    #[test]
    fn the_derivation_matches_openssl() {
        assert_eq!(
            pkcs12_kdf(3, b"secret", &unhex("0102030405060708"), 3, 32),
            unhex(
                "75:88:32:64:10:5E:50:A8:98:B5:91:3A:FC:85:69:F0:29:BE:73:87:5D:0D:ED:A4:22:2E:D6:12:B3:DA:AA:81"
            )
        );
        assert_eq!(
            pkcs12_kdf(
                1,
                "pässwörd-long-enough-to-span-more-than-one-block-of-64-bytes!!".as_bytes(),
                &unhex("00112233445566778899aabbccddeeff"),
                2,
                40
            ),
            unhex(
                "27:2D:A7:E3:61:D4:9E:B2:DA:47:8E:96:95:25:34:19:16:F4:F3:C7:5F:B5:0A:2C:23:45:41:8F:E0:EF:D9:0D:34:16:F9:D3:33:9F:9F:60"
            )
        );
    }

    #[test]
    fn passwords_become_bmp_strings_and_der_forms_are_minimal() {
        assert_eq!(bmp_password("aé"), [0, b'a', 0, 0xe9, 0, 0]);
        assert_eq!(integer(3), [2, 1, 3]);
        assert_eq!(integer(128), [2, 2, 0, 128]);
        assert_eq!(integer(600_000), [2, 3, 0x09, 0x27, 0xc0]);
        assert_eq!(
            object_id(oid::SHA256),
            [6, 9, 0x60, 0x86, 0x48, 1, 0x65, 3, 4, 2, 1]
        );
        assert_eq!(tlv(4, &[0; 200])[..3], [4, 0x81, 200]);
        assert_eq!(tlv(4, &[0; 300])[..4], [4, 0x82, 1, 44]);
    }

    #[test]
    fn a_short_password_is_refused() {
        let contents = Contents {
            friendly_name: "alice",
            cert: &[0x30, 0],
            pkcs8_key: &[0x30, 0],
            ca: None,
        };
        assert!(matches!(
            bundle(&contents, "short"),
            Err(P12Error::ShortPassword)
        ));
    }
}
