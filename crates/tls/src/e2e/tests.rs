use super::*;
use crate::test_pki::pki;

struct User {
    name: &'static str,
    cert: CertKey,
    key: E2eKey,
}

fn user(path: &impl Fn(&str) -> std::path::PathBuf, name: &'static str) -> User {
    User {
        name,
        cert: CertKey::load(
            &path(&format!("{name}.pem")),
            &path(&format!("{name}-key.pem")),
        )
        .unwrap(),
        key: E2eKey::generate().unwrap(),
    }
}

fn published(user: &User, ca: &ClientCheck) -> TrustedKey {
    let bundle = user.key.bundle(&user.cert, user.name).unwrap();
    TrustedKey::verify(&bundle, user.name, ca).unwrap()
}

#[test]
fn a_sealed_message_opens_for_its_recipient_only() {
    let (_dir, path) = pki(&["alice", "bob", "carol"]);
    let ca = ClientCheck::new(&path("ca.pem")).unwrap();
    let (alice, bob, carol) = (
        user(&path, "alice"),
        user(&path, "bob"),
        user(&path, "carol"),
    );
    let to_bob = published(&bob, &ca);
    let from_alice = published(&alice, &ca);
    let sealed = to_bob
        .seal(&alice.cert, "alice", 1, 2, "meet at noon")
        .unwrap();
    assert!(!sealed
        .ciphertext
        .windows(4)
        .any(|w| w == b"meet" || w == b"noon"));
    assert_eq!(
        bob.key.open("bob", &from_alice, &sealed).unwrap(),
        "meet at noon"
    );
    // The name binding is case-insensitive, as nicknames are.
    assert_eq!(
        bob.key.open("Bob", &from_alice, &sealed).unwrap(),
        "meet at noon"
    );

    // Carol has another key: refused before any decryption.
    let err = carol.key.open("carol", &from_alice, &sealed).unwrap_err();
    assert!(matches!(err, E2eError::NotForThisKey(_)), "{err}");
    // Claimed to come from carol: alice's signature does not verify as hers.
    let err = bob
        .key
        .open("bob", &published(&carol, &ca), &sealed)
        .unwrap_err();
    assert!(matches!(err, E2eError::BadSignature(_)), "{err}");
}

#[test]
fn any_change_on_the_way_is_detected() {
    let (_dir, path) = pki(&["alice", "bob"]);
    let ca = ClientCheck::new(&path("ca.pem")).unwrap();
    let (alice, bob) = (user(&path, "alice"), user(&path, "bob"));
    let (to_bob, from_alice) = (published(&bob, &ca), published(&alice, &ca));
    let sealed = to_bob.seal(&alice.cert, "alice", 41, 2, "hello").unwrap();
    let bytes = sealed.encode().unwrap();
    for i in 0..bytes.len() {
        let mut changed = bytes.clone();
        changed[i] ^= 0x01;
        // A layout change may stop decoding; anything that decodes must fail to open.
        if let Ok(changed) = Sealed::decode(&changed) {
            assert!(
                bob.key.open("bob", &from_alice, &changed).is_err(),
                "a flipped bit at byte {i} went unnoticed"
            );
        }
    }
    // A valid signature over a ciphertext that does not decrypt (a sender bug or a broken
    // client) is still refused, by HPKE.
    let mut broken = sealed.clone();
    broken.ciphertext[0] ^= 1;
    broken.signature = alice
        .cert
        .sign(&broken.signing_input("alice", "bob").unwrap());
    assert!(matches!(
        bob.key.open("bob", &from_alice, &broken),
        Err(E2eError::Decrypt)
    ));
}

#[test]
fn a_published_key_is_checked_against_the_ca_the_name_and_the_signature() {
    let (_dir, path) = pki(&["alice", "bob"]);
    let (_other, elsewhere) = pki(&["bob"]);
    let ca = ClientCheck::new(&path("ca.pem")).unwrap();
    let (alice, bob) = (user(&path, "alice"), user(&path, "bob"));
    let bundle = bob.key.bundle(&bob.cert, "bob").unwrap();
    assert!(TrustedKey::verify(&bundle, "BOB", &ca).is_ok());

    // Someone else's key under bob's certificate and signature: the signature fails.
    let mut swapped = bundle.clone();
    swapped.public_key = E2eKey::generate().unwrap().public_key().to_vec();
    assert!(matches!(
        TrustedKey::verify(&swapped, "bob", &ca),
        Err(E2eError::BadKeySignature)
    ));
    // Alice's genuine bundle offered as bob's.
    let alices = alice.key.bundle(&alice.cert, "alice").unwrap();
    assert!(matches!(
        TrustedKey::verify(&alices, "bob", &ca),
        Err(E2eError::WrongName { .. })
    ));
    // A "bob" from another CA.
    let stranger = CertKey::load(&elsewhere("bob.pem"), &elsewhere("bob-key.pem")).unwrap();
    let forged = bob.key.bundle(&stranger, "bob").unwrap();
    assert!(matches!(
        TrustedKey::verify(&forged, "bob", &ca),
        Err(E2eError::Untrusted(_))
    ));
}

#[test]
fn a_stored_key_reloads_and_fingerprints_tell_keys_apart() {
    let (_dir, path) = pki(&["bob"]);
    let ca = ClientCheck::new(&path("ca.pem")).unwrap();
    let bob = user(&path, "bob");
    let reloaded = E2eKey::from_private(bob.key.private_bytes()).unwrap();
    assert_eq!(reloaded.public_key(), bob.key.public_key());
    assert_eq!(reloaded.key_id(), bob.key.key_id());
    assert!(E2eKey::from_private(&[1, 2, 3]).is_err());

    let first = published(&bob, &ca).fingerprint();
    assert_eq!(first, published(&bob, &ca).fingerprint());
    let renewed = User {
        key: E2eKey::generate().unwrap(),
        ..bob
    };
    assert_ne!(first, published(&renewed, &ca).fingerprint());
    let text = fingerprint_text(&first);
    assert_eq!(text.len(), 16 * 4 + 15);
    assert_eq!(text.split(' ').count(), 16);
}

#[test]
fn text_longer_than_the_limit_is_refused() {
    let (_dir, path) = pki(&["alice", "bob"]);
    let ca = ClientCheck::new(&path("ca.pem")).unwrap();
    let (alice, bob) = (user(&path, "alice"), user(&path, "bob"));
    let long = "x".repeat(MAX_TEXT_LEN + 1);
    assert!(matches!(
        published(&bob, &ca).seal(&alice.cert, "alice", 1, 1, &long),
        Err(E2eError::TooLong)
    ));
}
