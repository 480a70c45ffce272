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
    let bundle = user.key.bundle(&user.cert, user.name, "laptop").unwrap();
    TrustedKey::verify(&bundle, user.name, ca).unwrap()
}

fn author(user: &User) -> Author<'_> {
    Author {
        cert: &user.cert,
        name: user.name,
        key: &user.key,
    }
}

#[test]
fn a_sealed_message_opens_for_its_devices_only() {
    let (_dir, path) = pki(&["alice", "bob", "carol"]);
    let ca = ClientCheck::new(&path("ca.pem")).unwrap();
    let (alice, bob, carol) = (
        user(&path, "alice"),
        user(&path, "bob"),
        user(&path, "carol"),
    );
    // Bob's second device, and alice's own.
    let bob_phone = User {
        key: E2eKey::generate().unwrap(),
        ..user(&path, "bob")
    };
    let (to_bob, to_phone, from_alice) = (
        published(&bob, &ca),
        published(&bob_phone, &ca),
        published(&alice, &ca),
    );
    let sealed = seal(
        &author(&alice),
        "bob",
        &[&to_bob, &to_phone, &from_alice],
        1,
        2,
        "meet at noon",
    )
    .unwrap();
    assert_eq!(sealed.slots.len(), 3);
    assert!(!sealed
        .ciphertext
        .windows(4)
        .any(|w| w == b"meet" || w == b"noon"));
    for device in [&bob.key, &bob_phone.key] {
        assert_eq!(
            device.open(&from_alice, "bob", &sealed).unwrap(),
            "meet at noon"
        );
    }
    // The name binding is case-insensitive, as nicknames are.
    assert_eq!(
        bob.key.open(&from_alice, "Bob", &sealed).unwrap(),
        "meet at noon"
    );
    // The sender's own device reads what it sent, in the conversation with bob.
    assert_eq!(
        alice.key.open(&from_alice, "bob", &sealed).unwrap(),
        "meet at noon"
    );

    // Carol has no slot: refused before any decryption.
    let err = carol.key.open(&from_alice, "carol", &sealed).unwrap_err();
    assert!(matches!(err, E2eError::NotForThisKey(_)), "{err}");
    // Moved to another conversation: the signature covers both names.
    let err = alice.key.open(&from_alice, "carol", &sealed).unwrap_err();
    assert!(matches!(err, E2eError::BadSignature(_)), "{err}");
    // Claimed to come from carol's device: it names alice's device.
    let err = bob
        .key
        .open(&published(&carol, &ca), "bob", &sealed)
        .unwrap_err();
    assert!(matches!(err, E2eError::WrongDevice(_)), "{err}");
    // Carol's device with alice's key id: carol's certificate does not verify alice's
    // signature.
    let mut forged = sealed.clone();
    forged.sender_key_id = published(&carol, &ca).key_id();
    let err = bob
        .key
        .open(&published(&carol, &ca), "bob", &forged)
        .unwrap_err();
    assert!(matches!(err, E2eError::BadSignature(_)), "{err}");
    // No device, or too many.
    assert!(matches!(
        seal(&author(&alice), "bob", &[], 1, 2, "x"),
        Err(E2eError::Devices(0))
    ));
    let many = vec![&to_bob; MAX_SLOTS + 1];
    assert!(matches!(
        seal(&author(&alice), "bob", &many, 1, 2, "x"),
        Err(E2eError::Devices(_))
    ));
    // Exactly the most: sealed, and it opens.
    let most = seal(&author(&alice), "bob", &many[..MAX_SLOTS], 1, 2, "x").unwrap();
    assert_eq!(most.slots.len(), MAX_SLOTS);
    assert_eq!(bob.key.open(&from_alice, "bob", &most).unwrap(), "x");
}

#[test]
fn any_change_on_the_way_is_detected() {
    let (_dir, path) = pki(&["alice", "bob"]);
    let ca = ClientCheck::new(&path("ca.pem")).unwrap();
    let (alice, bob) = (user(&path, "alice"), user(&path, "bob"));
    let (to_bob, from_alice) = (published(&bob, &ca), published(&alice, &ca));
    let sealed = seal(
        &author(&alice),
        "bob",
        &[&to_bob, &from_alice],
        41,
        2,
        "hello",
    )
    .unwrap();
    let bytes = sealed.encode().unwrap();
    for i in 0..bytes.len() {
        let mut changed = bytes.clone();
        changed[i] ^= 0x01;
        // A layout change may stop decoding; anything that decodes must fail to open.
        if let Ok(changed) = Sealed::decode(&changed) {
            assert!(
                bob.key.open(&from_alice, "bob", &changed).is_err(),
                "a flipped bit at byte {i} went unnoticed"
            );
        }
    }
    // A valid signature over a ciphertext that does not decrypt (a sender bug or a broken
    // client) is still refused, by the AEAD; and so is a broken slot, by HPKE.
    for broken in [0, 1] {
        let mut broken_message = sealed.clone();
        match broken {
            0 => broken_message.ciphertext[0] ^= 1,
            _ => broken_message.slots[0].wrapped[0] ^= 1,
        }
        broken_message.signature = alice
            .cert
            .sign(&broken_message.signing_input("alice", "bob").unwrap());
        assert!(matches!(
            bob.key.open(&from_alice, "bob", &broken_message),
            Err(E2eError::Decrypt)
        ));
    }
}

#[test]
fn a_published_key_is_checked_against_the_ca_the_name_and_the_signature() {
    let (_dir, path) = pki(&["alice", "bob"]);
    let (_other, elsewhere) = pki(&["bob"]);
    let ca = ClientCheck::new(&path("ca.pem")).unwrap();
    let (alice, bob) = (user(&path, "alice"), user(&path, "bob"));
    let bundle = bob.key.bundle(&bob.cert, "bob", "Phone").unwrap();
    let key = TrustedKey::verify(&bundle, "BOB", &ca).unwrap();
    assert_eq!((key.name(), key.device()), ("bob", "phone"));
    assert_eq!(key.key_id(), bob.key.key_id());

    // The device name is signed: renamed on the way, the signature fails.
    let mut renamed = bundle.clone();
    renamed.device = "laptop".into();
    assert!(matches!(
        TrustedKey::verify(&renamed, "bob", &ca),
        Err(E2eError::BadKeySignature)
    ));

    // Someone else's key under bob's certificate and signature: the signature fails.
    let mut swapped = bundle.clone();
    swapped.public_key = E2eKey::generate().unwrap().public_key().to_vec();
    assert!(matches!(
        TrustedKey::verify(&swapped, "bob", &ca),
        Err(E2eError::BadKeySignature)
    ));
    // Alice's genuine bundle offered as bob's.
    let alices = alice.key.bundle(&alice.cert, "alice", "laptop").unwrap();
    assert!(matches!(
        TrustedKey::verify(&alices, "bob", &ca),
        Err(E2eError::WrongName { .. })
    ));
    // A "bob" from another CA.
    let stranger = CertKey::load(&elsewhere("bob.pem"), &elsewhere("bob-key.pem")).unwrap();
    let forged = bob.key.bundle(&stranger, "bob", "laptop").unwrap();
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
    // The device name is not part of the fingerprint.
    let named = bob.key.bundle(&bob.cert, "bob", "phone").unwrap();
    assert_eq!(
        first,
        TrustedKey::verify(&named, "bob", &ca)
            .unwrap()
            .fingerprint()
    );
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
    let longest = "x".repeat(MAX_TEXT_LEN);
    let sealed = seal(
        &author(&alice),
        "bob",
        &[&published(&bob, &ca)],
        1,
        1,
        &longest,
    )
    .unwrap();
    assert_eq!(
        bob.key
            .open(&published(&alice, &ca), "bob", &sealed)
            .unwrap()
            .len(),
        MAX_TEXT_LEN
    );
    let long = "x".repeat(MAX_TEXT_LEN + 1);
    assert!(matches!(
        seal(
            &author(&alice),
            "bob",
            &[&published(&bob, &ca)],
            1,
            1,
            &long
        ),
        Err(E2eError::TooLong)
    ));
}
