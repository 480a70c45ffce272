//! End-to-end encryption of direct messages: HPKE (RFC 9180) from rustls's aws-lc-rs provider,
//! base mode, and ECDSA signatures made with the user's certificate key, which the CA vouches
//! for. No cryptography is written here: this module only chooses and combines. The byte
//! layouts live in [`tlschat_proto::e2e`].
//!
//! - [`E2eKey`]: one device's own HPKE key pair; publishes itself as a signed
//!   [`KeyBundle`] and opens messages sealed to it.
//! - [`TrustedKey`]: a device key someone published, once checked against the CA, their name
//!   and their signature; messages to them are sealed to it, and messages from that device
//!   verified with the certificate in it.
//! - [`seal`]: a text encrypted once under a fresh message key (ChaCha20-Poly1305), that key
//!   sealed with HPKE to each device that may read it.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use aws_lc_rs::agreement::{PrivateKey, X25519};
use aws_lc_rs::digest::{digest, Context, SHA256};
use rustls::crypto::aws_lc_rs::hpke::DH_KEM_X25519_HKDF_SHA256_CHACHA20_POLY1305 as HPKE;
use rustls::crypto::hpke::{EncapsulatedSecret, Hpke, HpkePrivateKey, HpkePublicKey};
use tlschat_proto::cert::summarize_der;
use tlschat_proto::e2e::{
    KeyBundle, LayoutError, Sealed, Slot, HPKE_INFO, MAX_SLOTS, MAX_TEXT_LEN, MESSAGE_KEY_LEN,
};
use tlschat_proto::names::name_key;

use crate::signing::{CertKey, ClientCheck, PeerKey, SigningError};

/// A key fingerprint: SHA-256 over the published key and the certificate key behind it.
pub type Fingerprint = [u8; 32];

/// Domain separation for fingerprints.
const FINGERPRINT_CONTEXT: &[u8] = b"tlschat e2e fingerprint v1\0";

/// Length of an X25519 key.
const KEY_LEN: usize = 32;

/// Why an E2E operation failed. Every variant is something to show the user.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum E2eError {
    /// The bytes do not follow the documented layout.
    #[error("malformed: {0}")]
    Layout(#[from] LayoutError),
    /// A stored private key is not an X25519 key.
    #[error("not an X25519 private key")]
    BadPrivateKey,
    /// The published key's certificate does not chain to the CA (or has expired).
    #[error("the key's certificate is not trusted: {0}")]
    Untrusted(#[source] SigningError),
    /// The published key's certificate belongs to someone else.
    #[error("the key's certificate is for {found:?}, not {expected:?}")]
    WrongName {
        /// Whose key was asked for.
        expected: String,
        /// Whose certificate it holds.
        found: String,
    },
    /// The published key's signature does not verify with its certificate.
    #[error("the key's signature does not verify: it was not published by its owner")]
    BadKeySignature,
    /// The message's signature does not verify with the sender's certificate.
    #[error("the signature does not verify: not sent by {0}, or changed on the way")]
    BadSignature(String),
    /// The message was not sealed to this device's key (sent before this device's key was
    /// published or accepted, or after it was removed).
    #[error("not sealed to this device (its key id {0} is not among the recipients)")]
    NotForThisKey(String),
    /// The message names another sending device than the key it is checked with.
    #[error("sent from another device of {0} than the one checked")]
    WrongDevice(String),
    /// No device, or more than a message can hold.
    #[error("a message is sealed to 1 to {MAX_SLOTS} devices, not {0}")]
    Devices(usize),
    /// HPKE refused the ciphertext.
    #[error("decryption failed")]
    Decrypt,
    /// The decrypted bytes are not UTF-8 text.
    #[error("the decrypted message is not text")]
    NotText,
    /// The text is too long to seal.
    #[error("the message is longer than {MAX_TEXT_LEN} bytes")]
    TooLong,
    /// HPKE or the signer failed internally.
    #[error("{0} failed")]
    Internal(&'static str),
}

/// A user's own E2E key pair. It has no `Debug`: it holds key material.
pub struct E2eKey {
    public: Vec<u8>,
    private: HpkePrivateKey,
}

impl E2eKey {
    /// A fresh key pair.
    pub fn generate() -> Result<Self, E2eError> {
        let (public, private) = HPKE
            .generate_key_pair()
            .map_err(|_| E2eError::Internal("key generation"))?;
        Ok(Self {
            public: public.0,
            private,
        })
    }

    /// The key pair whose private half is `private` (32 bytes, as [`E2eKey::private_bytes`]
    /// gives them).
    pub fn from_private(private: &[u8]) -> Result<Self, E2eError> {
        let key =
            PrivateKey::from_private_key(&X25519, private).map_err(|_| E2eError::BadPrivateKey)?;
        let public = key
            .compute_public_key()
            .map_err(|_| E2eError::BadPrivateKey)?;
        Ok(Self {
            public: public.as_ref().to_vec(),
            private: HpkePrivateKey::from(private.to_vec()),
        })
    }

    /// The private key, to store (file mode 0600).
    pub fn private_bytes(&self) -> &[u8] {
        self.private.secret_bytes()
    }

    /// The public key.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// The id senders put in messages sealed to this key.
    pub fn key_id(&self) -> [u8; 8] {
        key_id(&self.public)
    }

    /// The bundle to publish: this public key, the `device` name, `owner`'s certificate and
    /// its signature over the key, the device name and `name`.
    pub fn bundle(&self, owner: &CertKey, name: &str, device: &str) -> Result<KeyBundle, E2eError> {
        let signature = owner.sign(&KeyBundle::signing_input(name, &self.public, device)?);
        if signature.is_empty() {
            return Err(E2eError::Internal("signing"));
        }
        Ok(KeyBundle {
            public_key: self.public.clone(),
            device: name_key(device),
            cert: owner.cert_der().to_vec(),
            signature,
        })
    }

    /// Opens a message sent from the device `sender` (that device's checked key) in the
    /// conversation with `recipient` (this device's person, or, for a copy of what this
    /// person sent from another device, whom it was sent to): checks it names that sending
    /// device and has a slot for this one, verifies the signature, then decrypts. Replay checks
    /// are the caller's (they need state).
    pub fn open(
        &self,
        sender: &TrustedKey,
        recipient: &str,
        sealed: &Sealed,
    ) -> Result<String, E2eError> {
        if sealed.sender_key_id != sender.key_id() {
            return Err(E2eError::WrongDevice(sender.name.clone()));
        }
        let Some(slot) = sealed.slot_for(&self.key_id()) else {
            return Err(E2eError::NotForThisKey(tlschat_proto::hex::encode(
                &self.key_id(),
            )));
        };
        let signed = sealed.signing_input(&sender.name, recipient)?;
        if !sender.signer.verify(&signed, &sealed.signature) {
            return Err(E2eError::BadSignature(sender.name.clone()));
        }
        let aad = sealed.associated_data(&sender.name, recipient)?;
        let message_key = HPKE
            .open(
                &EncapsulatedSecret(slot.enc.clone()),
                HPKE_INFO,
                &aad,
                &slot.wrapped,
                &self.private,
            )
            .map_err(|_| E2eError::Decrypt)?;
        let mut plain = sealed.ciphertext.clone();
        let opened = message_cipher(&message_key)?
            .open_in_place(
                Nonce::assume_unique_for_key([0; NONCE_LEN]),
                Aad::from(&aad),
                &mut plain,
            )
            .map_err(|_| E2eError::Decrypt)?;
        String::from_utf8(opened.to_vec()).map_err(|_| E2eError::NotText)
    }
}

/// Who seals a message: the person's certificate (it signs), their name, and the sending
/// device's own key (its key id goes in the message).
pub struct Author<'a> {
    /// The certificate and its key.
    pub cert: &'a CertKey,
    /// The sender's name.
    pub name: &'a str,
    /// The sending device's key.
    pub key: &'a E2eKey,
}

/// Seals `text` from `author` in the conversation with `recipient`, readable by each of
/// `devices` (the recipient's devices and the author's own, this one included, so that every
/// device of both can read it later from the history).
pub fn seal(
    author: &Author<'_>,
    recipient: &str,
    devices: &[&TrustedKey],
    counter: u64,
    timestamp_ms: u64,
    text: &str,
) -> Result<Sealed, E2eError> {
    if text.len() > MAX_TEXT_LEN {
        return Err(E2eError::TooLong);
    }
    if devices.is_empty() || devices.len() > MAX_SLOTS {
        return Err(E2eError::Devices(devices.len()));
    }
    let mut sealed = Sealed {
        counter,
        timestamp_ms,
        sender_key_id: author.key.key_id(),
        slots: Vec::with_capacity(devices.len()),
        ciphertext: Vec::new(),
        signature: Vec::new(),
    };
    let aad = sealed.associated_data(author.name, recipient)?;
    let mut message_key = [0; MESSAGE_KEY_LEN];
    aws_lc_rs::rand::fill(&mut message_key).map_err(|_| E2eError::Internal("random"))?;
    for device in devices {
        let (enc, wrapped) = HPKE
            .seal(
                HPKE_INFO,
                &aad,
                &message_key,
                &HpkePublicKey(device.public.clone()),
            )
            .map_err(|_| E2eError::Internal("sealing"))?;
        sealed.slots.push(Slot {
            key_id: device.key_id(),
            enc: enc.0,
            wrapped,
        });
    }
    let mut ciphertext = text.as_bytes().to_vec();
    message_cipher(&message_key)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key([0; NONCE_LEN]),
            Aad::from(&aad),
            &mut ciphertext,
        )
        .map_err(|_| E2eError::Internal("encryption"))?;
    sealed.ciphertext = ciphertext;
    sealed.signature = author
        .cert
        .sign(&sealed.signing_input(author.name, recipient)?);
    if sealed.signature.is_empty() {
        return Err(E2eError::Internal("signing"));
    }
    Ok(sealed)
}

/// ChaCha20-Poly1305 under a message key. Each key encrypts one text only (it is fresh per
/// message), so the nonce is zero.
fn message_cipher(key: &[u8]) -> Result<LessSafeKey, E2eError> {
    UnboundKey::new(&CHACHA20_POLY1305, key)
        .map(LessSafeKey::new)
        .map_err(|_| E2eError::Decrypt)
}

/// Someone's published key, checked: the certificate chains to the CA and names them, and the
/// certificate's key signed the E2E key.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    name: String,
    device: String,
    public: Vec<u8>,
    signer: PeerKey,
    fingerprint: Fingerprint,
}

impl TrustedKey {
    /// Checks `bundle` as `name`'s published key.
    pub fn verify(bundle: &KeyBundle, name: &str, ca: &ClientCheck) -> Result<Self, E2eError> {
        ca.verify(&bundle.cert).map_err(E2eError::Untrusted)?;
        let signer = PeerKey::from_cert(&bundle.cert).map_err(E2eError::Untrusted)?;
        let found = signer.name().unwrap_or_default();
        if name_key(found) != name_key(name) {
            return Err(E2eError::WrongName {
                expected: name.to_owned(),
                found: found.to_owned(),
            });
        }
        if bundle.public_key.len() != KEY_LEN {
            return Err(E2eError::Layout(LayoutError::Truncated));
        }
        let signed = KeyBundle::signing_input(name, &bundle.public_key, &bundle.device)?;
        if !signer.verify(&signed, &bundle.signature) {
            return Err(E2eError::BadKeySignature);
        }
        let spki = summarize_der(&bundle.cert)
            .map_err(|e| E2eError::Untrusted(SigningError::Certificate(e.to_string())))?
            .spki;
        let mut hash = Context::new(&SHA256);
        hash.update(FINGERPRINT_CONTEXT);
        hash.update(&KeyBundle::fingerprint_part(&bundle.public_key)?);
        hash.update(&spki);
        let mut fingerprint = [0; 32];
        fingerprint.copy_from_slice(hash.finish().as_ref());
        Ok(Self {
            name: name_key(name),
            device: bundle.device.clone(),
            public: bundle.public_key.clone(),
            signer,
            fingerprint,
        })
    }

    /// The owner's name (lower case).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fingerprint to compare out of band and to remember.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The device's name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The id messages sealed to this device carry (and messages from it name).
    pub fn key_id(&self) -> [u8; 8] {
        key_id(&self.public)
    }
}

/// A fingerprint as people compare it: 16 groups of four hex digits.
pub fn fingerprint_text(fingerprint: &Fingerprint) -> String {
    let hex = tlschat_proto::hex::encode(fingerprint);
    let groups: Vec<&str> = (0..hex.len()).step_by(4).map(|i| &hex[i..i + 4]).collect();
    groups.join(" ")
}

fn key_id(public: &[u8]) -> [u8; 8] {
    let mut id = [0; 8];
    id.copy_from_slice(&digest(&SHA256, public).as_ref()[..8]);
    id
}

#[cfg(test)]
mod tests;
