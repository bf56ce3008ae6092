//! Response sealing and signing.
//!
//! The app keys are sealed with HPKE base mode (RFC 9180,
//! X25519-HKDF-SHA256 / HKDF-SHA256 / ChaCha20-Poly1305) to the client's
//! X25519 key, with `info = "kms-app-key/v1" ‖ app_id` and `aad` the digest
//! of the whole request ([`request_aad`]). The KMS signs
//! `SHA-256(aad ‖ encapsulated_key ‖ sealed)` with its root CA key (ECDSA
//! P-256, DER), so a client that pinned the key provider id knows which KMS
//! answered, and that the answer is for its own request.

use attest_core::binding::{APP_KEY_LABEL, ROOT_KEYS_LABEL};
use attest_core::{AppId, Evidence};
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::pkcs8::DecodePublicKey;
use rand_core::OsRng;
use sha2::{Digest, Sha256};

/// A sealing or opening failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SealError(pub String);

/// `SHA-256("kms-app-key/v1/aad" ‖ frame(platform) ‖ frame(quote) ‖ frame(certificates) ‖ frame(event_log) ‖ frame(app_config) ‖ frame(client_public_key))`,
/// `frame(x) = u64be(len) ‖ x`.
pub fn request_aad(evidence: &Evidence, client_public_key: &[u8]) -> [u8; 32] {
    aad_with(b"kms-app-key/v1/aad", evidence, client_public_key)
}

/// The same digest for a `GetRootKeys` request, labelled
/// `"kms-root-keys/v1/aad"`: a root-key answer's signature never verifies
/// as an app-key answer's, nor the reverse.
pub fn root_keys_request_aad(evidence: &Evidence, client_public_key: &[u8]) -> [u8; 32] {
    aad_with(b"kms-root-keys/v1/aad", evidence, client_public_key)
}

fn aad_with(label: &[u8], evidence: &Evidence, client_public_key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label);
    for part in [
        evidence.platform.as_str().as_bytes(),
        &evidence.quote,
        &evidence.certificates,
        &evidence.event_log,
        &evidence.app_config,
        client_public_key,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

fn info(app_id: &AppId) -> Vec<u8> {
    [APP_KEY_LABEL, &app_id.0].concat()
}

/// Seals `plaintext` to `client_public_key`; returns (encapsulated key, ciphertext).
pub fn seal(
    client_public_key: &[u8],
    app_id: &AppId,
    aad: &[u8; 32],
    plaintext: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), SealError> {
    seal_with::<X25519HkdfSha256>(client_public_key, app_id, aad, plaintext)
}

/// [`seal`] with another implementation of KEM 0x0020 (DHKEM(X25519,
/// HKDF-SHA256)); the KMS passes one with a faster X25519. Any KEM given
/// here must produce what [`open`] accepts.
pub fn seal_with<K: Kem>(
    client_public_key: &[u8],
    app_id: &AppId,
    aad: &[u8; 32],
    plaintext: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), SealError> {
    seal_info::<K>(client_public_key, &info(app_id), aad, plaintext)
}

/// Seals a `RootKeySet` to a replica's key (`info = "kms-root-keys/v1"`,
/// `aad` from [`root_keys_request_aad`]).
pub fn seal_root_keys<K: Kem>(
    client_public_key: &[u8],
    aad: &[u8; 32],
    plaintext: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), SealError> {
    seal_info::<K>(client_public_key, ROOT_KEYS_LABEL, aad, plaintext)
}

fn seal_info<K: Kem>(
    client_public_key: &[u8],
    info: &[u8],
    aad: &[u8; 32],
    plaintext: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), SealError> {
    let pk = K::PublicKey::from_bytes(client_public_key)
        .map_err(|e| SealError(format!("client public key: {e}")))?;
    let (enc, ct) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, K, _>(
        &OpModeS::Base,
        &pk,
        info,
        plaintext,
        aad,
        &mut OsRng,
    )
    .map_err(|e| SealError(format!("HPKE seal: {e}")))?;
    Ok((enc.to_bytes().to_vec(), ct))
}

/// Opens a sealed response with the client's X25519 secret.
pub fn open(
    client_secret: &[u8; 32],
    app_id: &AppId,
    aad: &[u8; 32],
    encapsulated_key: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, SealError> {
    open_info(client_secret, &info(app_id), aad, encapsulated_key, sealed)
}

/// Opens a sealed `RootKeySet` with the replica's X25519 secret.
pub fn open_root_keys(
    client_secret: &[u8; 32],
    aad: &[u8; 32],
    encapsulated_key: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, SealError> {
    open_info(
        client_secret,
        ROOT_KEYS_LABEL,
        aad,
        encapsulated_key,
        sealed,
    )
}

fn open_info(
    client_secret: &[u8; 32],
    info: &[u8],
    aad: &[u8; 32],
    encapsulated_key: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, SealError> {
    let sk = <X25519HkdfSha256 as Kem>::PrivateKey::from_bytes(client_secret)
        .map_err(|e| SealError(format!("client secret: {e}")))?;
    let enc = <X25519HkdfSha256 as Kem>::EncappedKey::from_bytes(encapsulated_key)
        .map_err(|e| SealError(format!("encapsulated key: {e}")))?;
    hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        &sk,
        &enc,
        info,
        sealed,
        aad,
    )
    .map_err(|e| SealError(format!("HPKE open: {e}")))
}

/// A fresh X25519 key pair for a client: (secret, public).
pub fn client_keypair() -> ([u8; 32], [u8; 32]) {
    let (sk, pk) = X25519HkdfSha256::gen_keypair(&mut OsRng);
    let mut s = [0u8; 32];
    s.copy_from_slice(&sk.to_bytes());
    let mut p = [0u8; 32];
    p.copy_from_slice(&pk.to_bytes());
    (s, p)
}

fn response_digest(aad: &[u8; 32], encapsulated_key: &[u8], sealed: &[u8]) -> Vec<u8> {
    [&aad[..], encapsulated_key, sealed].concat()
}

/// The message a response signature covers: `aad ‖ encapsulated_key ‖
/// sealed`, signed as ECDSA P-256 over its SHA-256 (DER).
pub fn response_message(aad: &[u8; 32], encapsulated_key: &[u8], sealed: &[u8]) -> Vec<u8> {
    response_digest(aad, encapsulated_key, sealed)
}

/// Signs a response with a P-256 key (ECDSA over SHA-256, DER).
pub fn sign_response(
    key: &p256::SecretKey,
    aad: &[u8; 32],
    encapsulated_key: &[u8],
    sealed: &[u8],
) -> Vec<u8> {
    let sk = p256::ecdsa::SigningKey::from(key);
    let sig: p256::ecdsa::Signature = sk.sign(&response_digest(aad, encapsulated_key, sealed));
    sig.to_der().as_bytes().to_vec()
}

/// Checks a response signature against a pinned key provider id (hex SPKI DER).
pub fn verify_response(
    key_provider_id: &str,
    aad: &[u8; 32],
    encapsulated_key: &[u8],
    sealed: &[u8],
    signature: &[u8],
) -> Result<(), SealError> {
    let spki =
        hex::decode(key_provider_id).map_err(|_| SealError("key provider id is not hex".into()))?;
    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&spki).map_err(|e| {
        SealError(format!(
            "key provider id is not a P-256 SubjectPublicKeyInfo: {e}"
        ))
    })?;
    let sig = p256::ecdsa::Signature::from_der(signature)
        .map_err(|e| SealError(format!("signature: {e}")))?;
    vk.verify(&response_digest(aad, encapsulated_key, sealed), &sig)
        .map_err(|_| SealError("the response is not signed by the pinned KMS".into()))
}
