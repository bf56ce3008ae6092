//! The wire contract of `kms_proto::seal`, checked from outside the crate:
//! the request digest's exact bytes, HPKE sealing that opens only with the
//! right key, label, app and request, and a response signature that binds
//! every part of the answer to the pinned KMS key.
#![allow(clippy::unwrap_used, missing_docs)]

use attest_core::binding::{APP_KEY_LABEL, ROOT_KEYS_LABEL};
use attest_core::{AppId, Evidence, PlatformId};
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, Serializable};
use kms_proto::seal::{self, SealError};
use p256::pkcs8::EncodePublicKey;
use sha2::{Digest, Sha256};

fn evidence() -> Evidence {
    Evidence {
        platform: PlatformId::TDX,
        quote: b"quote bytes".to_vec(),
        certificates: b"certs".to_vec(),
        event_log: b"log".to_vec(),
        app_config: b"{}".to_vec(),
    }
}

fn app(byte: u8) -> AppId {
    AppId::from([byte; 20])
}

/// The digest written out from its definition, one frame at a time.
fn expected_aad(label: &[u8], e: &Evidence, client_key: &[u8]) -> [u8; 32] {
    let mut m = label.to_vec();
    for part in [
        e.platform.as_str().as_bytes(),
        &e.quote[..],
        &e.certificates[..],
        &e.event_log[..],
        &e.app_config[..],
        client_key,
    ] {
        m.extend_from_slice(&(part.len() as u64).to_be_bytes());
        m.extend_from_slice(part);
    }
    Sha256::digest(&m).into()
}

#[test]
fn request_digests_are_the_framed_hash_under_their_own_labels() {
    let e = evidence();
    let key = [7u8; 32];
    assert_eq!(
        seal::request_aad(&e, &key),
        expected_aad(b"kms-app-key/v1/aad", &e, &key)
    );
    assert_eq!(
        seal::root_keys_request_aad(&e, &key),
        expected_aad(b"kms-root-keys/v1/aad", &e, &key)
    );
    assert_ne!(
        seal::request_aad(&e, &key),
        seal::root_keys_request_aad(&e, &key)
    );
    // Known answers computed outside Rust (Python hashlib), so that the
    // definition above cannot drift together with the code.
    assert_eq!(
        hex::encode(seal::request_aad(&e, &key)),
        "22a5bbe3216e0c978f5d091109bae50bf73b79a6a9bf68689b479cdf474a9022"
    );
    assert_eq!(
        hex::encode(seal::root_keys_request_aad(&e, &key)),
        "4c68bef826dd1ab2bfcc547ac08b77ac7394ca88e7e45df1c6c74a988993e72f"
    );
}

#[test]
fn every_field_and_every_boundary_is_in_the_request_digest() {
    let e = evidence();
    let key = [7u8; 32];
    let base = seal::request_aad(&e, &key);
    let variants: Vec<(&str, Evidence, Vec<u8>)> = vec![
        (
            "platform",
            Evidence {
                platform: PlatformId::SEV_SNP,
                ..evidence()
            },
            key.to_vec(),
        ),
        (
            "quote",
            Evidence {
                quote: b"quote byteS".to_vec(),
                ..evidence()
            },
            key.to_vec(),
        ),
        (
            "certificates",
            Evidence {
                certificates: b"cert".to_vec(),
                ..evidence()
            },
            key.to_vec(),
        ),
        (
            "event log",
            Evidence {
                event_log: b"logs".to_vec(),
                ..evidence()
            },
            key.to_vec(),
        ),
        (
            "app config",
            Evidence {
                app_config: b"{ }".to_vec(),
                ..evidence()
            },
            key.to_vec(),
        ),
        ("client key", evidence(), [8u8; 32].to_vec()),
        // One byte moved across a boundary: only the framing tells them apart.
        (
            "quote/certificates boundary",
            Evidence {
                quote: b"quote bytesc".to_vec(),
                certificates: b"erts".to_vec(),
                ..evidence()
            },
            key.to_vec(),
        ),
        (
            "app config/client key boundary",
            Evidence {
                app_config: [b"{}".as_slice(), &[7u8]].concat(),
                ..evidence()
            },
            [7u8; 31].to_vec(),
        ),
    ];
    for (what, e, k) in variants {
        assert_ne!(seal::request_aad(&e, &k), base, "{what} is not bound");
        assert_ne!(
            seal::root_keys_request_aad(&e, &k),
            seal::root_keys_request_aad(&evidence(), &key),
            "{what} is not bound in the root-keys digest"
        );
    }
}

/// Opens with the standard HPKE suite and an `info` written out here.
fn open_standard(secret: &[u8; 32], info: &[u8], aad: &[u8], enc: &[u8], ct: &[u8]) -> Vec<u8> {
    let sk = <X25519HkdfSha256 as Kem>::PrivateKey::from_bytes(secret).unwrap();
    let enc = <X25519HkdfSha256 as Kem>::EncappedKey::from_bytes(enc).unwrap();
    hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        &sk,
        &enc,
        info,
        ct,
        aad,
    )
    .unwrap()
}

#[test]
fn client_key_pairs_are_fresh_and_consistent() {
    let (s1, p1) = seal::client_keypair();
    let (s2, p2) = seal::client_keypair();
    assert_ne!(s1, s2);
    assert_ne!(p1, p2);
    assert_ne!(s1, [0u8; 32]);
    let sk = <X25519HkdfSha256 as Kem>::PrivateKey::from_bytes(&s1).unwrap();
    assert_eq!(
        X25519HkdfSha256::sk_to_pk(&sk).to_bytes().as_slice(),
        &p1[..]
    );
}

#[test]
fn app_keys_open_for_their_app_request_and_key_only() {
    let (secret, public) = seal::client_keypair();
    let aad = seal::request_aad(&evidence(), &public);
    let (enc, ct) = seal::seal(&public, &app(1), &aad, b"app keys").unwrap();
    assert_eq!(enc.len(), 32);
    assert_eq!(ct.len(), b"app keys".len() + 16);
    assert_eq!(
        seal::open(&secret, &app(1), &aad, &enc, &ct).unwrap(),
        b"app keys"
    );
    // The info is "kms-app-key/v1" ‖ app_id, as a standard HPKE receiver sees it.
    let info = [APP_KEY_LABEL, &[1u8; 20]].concat();
    assert_eq!(open_standard(&secret, &info, &aad, &enc, &ct), b"app keys");

    let (other_secret, _) = seal::client_keypair();
    let other_aad = seal::request_aad(&evidence(), &[0u8; 32]);
    let mut flipped_ct = ct.clone();
    flipped_ct[0] ^= 1;
    let mut flipped_enc = enc.clone();
    flipped_enc[0] ^= 1;
    for (what, r) in [
        ("another app", seal::open(&secret, &app(2), &aad, &enc, &ct)),
        (
            "another request",
            seal::open(&secret, &app(1), &other_aad, &enc, &ct),
        ),
        (
            "another key",
            seal::open(&other_secret, &app(1), &aad, &enc, &ct),
        ),
        (
            "flipped ciphertext",
            seal::open(&secret, &app(1), &aad, &enc, &flipped_ct),
        ),
        (
            "flipped encapsulated key",
            seal::open(&secret, &app(1), &aad, &flipped_enc, &ct),
        ),
        (
            "as root keys",
            seal::open_root_keys(&secret, &aad, &enc, &ct),
        ),
    ] {
        let err = r.expect_err(what);
        assert!(err.0.starts_with("HPKE open"), "{what}: {err}");
    }
    let err = seal::open(&secret, &app(1), &aad, &enc[..31], &ct).unwrap_err();
    assert!(err.0.starts_with("encapsulated key"), "{err}");
}

#[test]
fn root_keys_open_only_as_root_keys() {
    let (secret, public) = seal::client_keypair();
    let aad = seal::root_keys_request_aad(&evidence(), &public);
    let (enc, ct) =
        seal::seal_root_keys::<X25519HkdfSha256>(&public, &aad, b"root key set").unwrap();
    assert_eq!(
        seal::open_root_keys(&secret, &aad, &enc, &ct).unwrap(),
        b"root key set"
    );
    assert_eq!(
        open_standard(&secret, ROOT_KEYS_LABEL, &aad, &enc, &ct),
        b"root key set"
    );
    // No app id turns it into an app-key answer.
    for b in [0u8, 1, 0xff] {
        assert!(seal::open(&secret, &app(b), &aad, &enc, &ct).is_err());
    }
    let other = seal::request_aad(&evidence(), &public);
    assert!(seal::open_root_keys(&secret, &other, &enc, &ct).is_err());
}

#[test]
fn sealing_to_a_malformed_key_is_an_error() {
    let aad = [0u8; 32];
    for key in [&[][..], &[1u8; 31][..], &[1u8; 33][..]] {
        let err = seal::seal(key, &app(1), &aad, b"x").unwrap_err();
        assert!(err.0.starts_with("client public key"), "{err}");
        let err = seal::seal_root_keys::<X25519HkdfSha256>(key, &aad, b"x").unwrap_err();
        assert!(err.0.starts_with("client public key"), "{err}");
    }
}

fn signing_key(byte: u8) -> (p256::SecretKey, String) {
    let key = p256::SecretKey::from_slice(&[byte; 32]).unwrap();
    let id = hex::encode(key.public_key().to_public_key_der().unwrap().as_bytes());
    (key, id)
}

#[test]
fn the_response_message_is_aad_then_encapsulated_key_then_ciphertext() {
    let aad = [1u8; 32];
    assert_eq!(
        seal::response_message(&aad, b"enc", b"sealed"),
        [&aad[..], b"enc", b"sealed"].concat()
    );
}

#[test]
fn response_signatures_bind_every_part_to_the_pinned_key() {
    let (key, id) = signing_key(3);
    let (_, other_id) = signing_key(4);
    let aad = [1u8; 32];
    let sig = seal::sign_response(&key, &aad, b"enc", b"sealed");
    // ECDSA P-256 over SHA-256 of the message, DER: any P-256 verifier agrees.
    {
        use p256::ecdsa::signature::Verifier;
        let vk = p256::ecdsa::VerifyingKey::from(key.public_key());
        let der = p256::ecdsa::Signature::from_der(&sig).unwrap();
        vk.verify(&seal::response_message(&aad, b"enc", b"sealed"), &der)
            .unwrap();
    }
    seal::verify_response(&id, &aad, b"enc", b"sealed", &sig).unwrap();

    let mut bad_sig = sig.clone();
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 1;
    let not_signed = |r: Result<(), SealError>, what: &str| {
        let err = r.expect_err(what);
        assert_eq!(
            err.0, "the response is not signed by the pinned KMS",
            "{what}"
        );
    };
    not_signed(
        seal::verify_response(&other_id, &aad, b"enc", b"sealed", &sig),
        "another KMS",
    );
    not_signed(
        seal::verify_response(&id, &[2u8; 32], b"enc", b"sealed", &sig),
        "another request",
    );
    not_signed(
        seal::verify_response(&id, &aad, b"enC", b"sealed", &sig),
        "another encapsulated key",
    );
    not_signed(
        seal::verify_response(&id, &aad, b"enc", b"sealeD", &sig),
        "another ciphertext",
    );
    // Moving bytes between the parts is the same message: the signature
    // covers their concatenation, whose first part has a fixed length.
    seal::verify_response(&id, &aad, b"en", b"csealed", &sig).unwrap();
    let err = seal::verify_response(&id, &aad, b"enc", b"sealed", &bad_sig).unwrap_err();
    assert!(
        err.0 == "the response is not signed by the pinned KMS" || err.0.starts_with("signature"),
        "{err}"
    );
    let err = seal::verify_response(&id, &aad, b"enc", b"sealed", b"junk").unwrap_err();
    assert!(err.0.starts_with("signature"), "{err}");
    let err = seal::verify_response("zz", &aad, b"enc", b"sealed", &sig).unwrap_err();
    assert_eq!(err.0, "key provider id is not hex");
    let err = seal::verify_response("3000", &aad, b"enc", b"sealed", &sig).unwrap_err();
    assert!(
        err.0
            .starts_with("key provider id is not a P-256 SubjectPublicKeyInfo"),
        "{err}"
    );
}

#[test]
fn the_wire_evidence_carries_every_part() {
    let e = evidence();
    let wire = kms_proto::proto::Evidence::from(&e);
    assert_eq!(wire.platform, "tdx");
    assert_eq!(wire.quote, e.quote);
    assert_eq!(wire.certificates, e.certificates);
    assert_eq!(wire.event_log, e.event_log);
    assert_eq!(wire.app_config, e.app_config);
}
