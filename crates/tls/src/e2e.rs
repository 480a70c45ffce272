//! End-to-end encryption of direct messages: HPKE (RFC 9180) from rustls's aws-lc-rs provider,
//! base mode, and ECDSA signatures made with the user's certificate key, which the CA vouches
//! for. No cryptography is written here: this module only chooses and combines. The byte
//! layouts live in [`tlschat_proto::e2e`].
//!
//! - [`E2eKey`]: a user's own HPKE key pair; publishes itself as a signed
//!   [`KeyBundle`] and opens messages sealed to it.
//! - [`TrustedKey`]: someone's published key, once checked against the CA, their name and
//!   their signature; messages to them are sealed with it, and their messages verified.

use aws_lc_rs::agreement::{PrivateKey, X25519};
use aws_lc_rs::digest::{digest, Context, SHA256};
use rustls::crypto::aws_lc_rs::hpke::DH_KEM_X25519_HKDF_SHA256_CHACHA20_POLY1305 as HPKE;
use rustls::crypto::hpke::{EncapsulatedSecret, Hpke, HpkePrivateKey, HpkePublicKey};
use tlschat_proto::cert::summarize_der;
use tlschat_proto::e2e::{KeyBundle, LayoutError, Sealed, HPKE_INFO, MAX_TEXT_LEN};
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
    /// The message was sealed to a key of the recipient's that is not the current one.
    #[error("sealed to a key you no longer have (key id {0})")]
    NotForThisKey(String),
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

    /// The bundle to publish: this public key, `owner`'s certificate and its signature over
    /// the key and `name`.
    pub fn bundle(&self, owner: &CertKey, name: &str) -> Result<KeyBundle, E2eError> {
        let signature = owner.sign(&KeyBundle::signing_input(name, &self.public)?);
        if signature.is_empty() {
            return Err(E2eError::Internal("signing"));
        }
        Ok(KeyBundle {
            public_key: self.public.clone(),
            cert: owner.cert_der().to_vec(),
            signature,
        })
    }

    /// Opens a message `sender` sealed to `me`: checks it is for this key, verifies the
    /// sender's signature, then decrypts. Replay checks are the caller's (they need state).
    pub fn open(&self, me: &str, sender: &TrustedKey, sealed: &Sealed) -> Result<String, E2eError> {
        if sealed.recipient_key_id != self.key_id() {
            return Err(E2eError::NotForThisKey(tlschat_proto::hex::encode(
                &sealed.recipient_key_id,
            )));
        }
        let signed = sealed.signing_input(&sender.name, me)?;
        if !sender.signer.verify(&signed, &sealed.signature) {
            return Err(E2eError::BadSignature(sender.name.clone()));
        }
        let aad = sealed.associated_data(&sender.name, me)?;
        let plain = HPKE
            .open(
                &EncapsulatedSecret(sealed.enc.clone()),
                HPKE_INFO,
                &aad,
                &sealed.ciphertext,
                &self.private,
            )
            .map_err(|_| E2eError::Decrypt)?;
        String::from_utf8(plain).map_err(|_| E2eError::NotText)
    }
}

/// Someone's published key, checked: the certificate chains to the CA and names them, and the
/// certificate's key signed the E2E key.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    name: String,
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
        let signed = KeyBundle::signing_input(name, &bundle.public_key)?;
        if !signer.verify(&signed, &bundle.signature) {
            return Err(E2eError::BadKeySignature);
        }
        let spki = summarize_der(&bundle.cert)
            .map_err(|e| E2eError::Untrusted(SigningError::Certificate(e.to_string())))?
            .spki;
        let mut hash = Context::new(&SHA256);
        hash.update(FINGERPRINT_CONTEXT);
        hash.update(&KeyBundle::key_part(&bundle.public_key)?);
        hash.update(&spki);
        let mut fingerprint = [0; 32];
        fingerprint.copy_from_slice(hash.finish().as_ref());
        Ok(Self {
            name: name_key(name),
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

    /// Seals `text` from `sender` (whose name is `sender_name`) to this key's owner.
    pub fn seal(
        &self,
        sender: &CertKey,
        sender_name: &str,
        counter: u64,
        timestamp_ms: u64,
        text: &str,
    ) -> Result<Sealed, E2eError> {
        if text.len() > MAX_TEXT_LEN {
            return Err(E2eError::TooLong);
        }
        let mut sealed = Sealed {
            counter,
            timestamp_ms,
            recipient_key_id: key_id(&self.public),
            enc: Vec::new(),
            ciphertext: Vec::new(),
            signature: Vec::new(),
        };
        let aad = sealed.associated_data(sender_name, &self.name)?;
        let (enc, ciphertext) = HPKE
            .seal(
                HPKE_INFO,
                &aad,
                text.as_bytes(),
                &HpkePublicKey(self.public.clone()),
            )
            .map_err(|_| E2eError::Internal("sealing"))?;
        sealed.enc = enc.0;
        sealed.ciphertext = ciphertext;
        sealed.signature = sender.sign(&sealed.signing_input(sender_name, &self.name)?);
        if sealed.signature.is_empty() {
            return Err(E2eError::Internal("signing"));
        }
        Ok(sealed)
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
