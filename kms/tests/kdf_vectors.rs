//! Key derivation: the dstack profile against `../shared/vectors/kdf/dstack-legacy.json`,
//! and the published `v2` vectors.
#![allow(clippy::unwrap_used, missing_docs)]

use attest_core::{AppId, InstanceId};
use kms::service::kdf::{self, KdfProfile};
use kms::service::keys::RootKeys;

fn vectors() -> serde_json::Value {
    serde_json::from_str(&attest_testkit::vectors::read_string(
        "kdf/dstack-legacy.json",
    ))
    .unwrap()
}

fn h(v: &serde_json::Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

#[test]
fn dstack_primitive_regression_vector() {
    let v = &vectors()["primitive"];
    use p256::pkcs8::DecodePrivateKey;
    let root = p256::SecretKey::from_pkcs8_der(&h(&v["root_ca_pkcs8_der_hex"])).unwrap();
    let parts: Vec<String> = v["context"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    let refs: Vec<&[u8]> = parts.iter().map(|s| s.as_bytes()).collect();
    let got = kdf::dstack_derive_dh_secret(&root, &refs).unwrap();
    assert_eq!(
        hex::encode(*got),
        v["derive_dh_secret_hex"].as_str().unwrap()
    );
}

#[test]
fn dstack_app_keys_vector() {
    let v = &vectors()["app_keys"];
    let root = RootKeys::from_secrets(
        &h(&v["root_ca_pkcs8_der_hex"]),
        &h(&v["root_k256_secret_hex"]),
        [0; 32],
    )
    .unwrap();
    let app = AppId::from_slice(&h(&v["app_id_hex"])).unwrap();
    let inst = InstanceId::from_slice(&h(&v["instance_id_hex"])).unwrap();
    let keys = kdf::derive_app_keys(KdfProfile::Dstack, &root, &app, Some(&inst)).unwrap();
    assert_eq!(
        hex::encode(*keys.disk_crypt_key),
        v["disk_crypt_key_hex"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(*keys.env_crypt_key),
        v["env_crypt_key_hex"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(kdf::x25519_public(&keys.env_crypt_key)),
        v["env_crypt_public_key_hex"].as_str().unwrap()
    );
    // GetAppEnvEncryptPubKey's derivation of the env key alone agrees.
    assert_eq!(
        hex::encode(*kdf::derive_env_key(KdfProfile::Dstack, &root, &app).unwrap()),
        v["env_crypt_key_hex"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(*keys.k256_key),
        v["k256_app_secret_hex"].as_str().unwrap()
    );

    // The signature recovers to the root k256 public key over dstack's message.
    use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
    use sha3::{Digest, Keccak256};
    let sig = &keys.k256_signature;
    assert_eq!(sig.len(), 65);
    let app_pub = k256::SecretKey::from_slice(&keys.k256_key[..])
        .unwrap()
        .public_key();
    let mut msg = b"dstack-kms-issued:".to_vec();
    msg.extend_from_slice(&app.0);
    msg.extend_from_slice(
        k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&app_pub, true).as_bytes(),
    );
    let recovered = VerifyingKey::recover_from_prehash(
        &Keccak256::digest(&msg),
        &Signature::from_slice(&sig[..64]).unwrap(),
        RecoveryId::from_byte(sig[64]).unwrap(),
    )
    .unwrap();
    assert_eq!(
        recovered,
        VerifyingKey::from(&k256::ecdsa::SigningKey::from(root.k256()))
    );
}

/// Published vectors of the `v2` profile (computed independently with
/// Python's hmac/hashlib from the definition in `kms/src/kdf.rs`) (root secret 0x00..0x1f, app id
/// 0x11 x 20, instance id 0x22 x 20). Changing these breaks every deployed
/// app's keys.
#[test]
fn v2_published_vectors() {
    let secret: [u8; 32] = std::array::from_fn(|i| i as u8);
    let app = AppId([0x11; 20]);
    let inst = InstanceId([0x22; 20]);
    let disk = kdf::v2_derive(&secret, "disk-crypt-key", &app, Some(&inst));
    let env = kdf::v2_derive(&secret, "env-crypt-key", &app, None);
    let k = kdf::v2_derive(&secret, "k256-key", &app, None);
    assert_eq!(hex::encode(*disk), V2_DISK);
    assert_eq!(hex::encode(*env), V2_ENV);
    // The env key alone (GetAppEnvEncryptPubKey) is the same value.
    let root = RootKeys::from_secrets(
        &h(&vectors()["app_keys"]["root_ca_pkcs8_der_hex"]),
        &h(&vectors()["app_keys"]["root_k256_secret_hex"]),
        secret,
    )
    .unwrap();
    assert_eq!(
        hex::encode(*kdf::derive_env_key(KdfProfile::V2, &root, &app).unwrap()),
        V2_ENV
    );
    assert_eq!(hex::encode(*k), V2_K256);
    // Framing: moving bytes between fields changes the key.
    assert_ne!(
        *kdf::v2_derive(&secret, "disk-crypt-key", &app, None),
        *disk
    );
}

const V2_DISK: &str = "82ca4771eb74f940f33dbc085ab80989cbb8742dc4b91e298dff26af41336cf5";
const V2_ENV: &str = "bd0d84463269e47114717710c1d9e68eae0b7bb21b8e25c0dc0436286a155885";
const V2_K256: &str = "9f5883f5faba2eaca17a482b77818f75d9a53bee1b0b730435c9e76ab9c6168f";
