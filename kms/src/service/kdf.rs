//! App key derivation. Two profiles, chosen in the configuration:
//!
//! - `dstack`: byte-compatible with dstack's KMS, so a fleet can migrate
//!   without its apps' keys changing (HKDF-SHA256 with salt `RATLS` and the
//!   context parts concatenated unframed; P-256 intermediate keys; see
//!   `../shared/reference/dstack-kms.md` §2).
//! - `v2`: HKDF-SHA256 over the 32-byte root secret with a versioned,
//!   length-framed context: `info = "kms-kdf/v2" ‖ frame(purpose) ‖
//!   frame(app_id) ‖ frame(instance_id)`, `frame(x) = u32be(len(x)) ‖ x`,
//!   salt `"kms-kdf/v2"`. The disk key takes the instance id; the env and
//!   k256 keys take an empty one, so every instance of an app shares them.
//!   Test vectors: `kms/tests/kdf_vectors.rs`.
//!
//! Both profiles sign the k256 app key the way dstack does: a recoverable
//! secp256k1 signature by the root k256 key over
//! `Keccak256("dstack-kms-issued" ‖ ":" ‖ app_id ‖ compressed_pubkey)`.
//! App and instance ids are exactly 20 bytes on every platform (the types
//! enforce it), which also keeps the unframed dstack context injective.

use hkdf::Hkdf;
use k256::ecdsa::SigningKey as K256SigningKey;
use p256::pkcs8::EncodePrivateKey;
use sha2::{Digest, Sha256};
use sha3::Keccak256;
use zeroize::Zeroizing;

use attest_core::{AppId, InstanceId};

use super::keys::RootKeys;

/// Which derivation to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KdfProfile {
    /// dstack-compatible.
    Dstack,
    /// Framed, versioned HKDF over the root secret.
    #[default]
    V2,
}

impl KdfProfile {
    /// The profile's name.
    pub fn as_str(self) -> &'static str {
        match self {
            KdfProfile::Dstack => "dstack",
            KdfProfile::V2 => "v2",
        }
    }
}

/// The keys released to one app instance. Zeroized on drop.
pub struct AppKeyMaterial {
    /// Disk encryption key (per instance).
    pub disk_crypt_key: Zeroizing<[u8; 32]>,
    /// Env decryption key (X25519 secret, raw, per app).
    pub env_crypt_key: Zeroizing<[u8; 32]>,
    /// secp256k1 app key (per app).
    pub k256_key: Zeroizing<[u8; 32]>,
    /// The root k256 key's recoverable signature over the app key (65 bytes).
    pub k256_signature: Vec<u8>,
}

impl std::fmt::Debug for AppKeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppKeyMaterial(<redacted>)")
    }
}

/// A derivation failure (a derived scalar out of range: probability ~2^-128).
#[derive(Debug, thiserror::Error)]
#[error("key derivation failed: {0}")]
pub struct KdfError(String);

/// dstack's `derive_key`: HKDF-SHA256, salt `RATLS`, info = concatenated parts.
pub fn dstack_derive_key(ikm: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(b"RATLS"), ikm);
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = hk.expand_multi_info(parts, out.as_mut());
    out
}

/// dstack's `derive_dh_secret`: SHA-256 of the PKCS#8 DER of the P-256 key
/// derived from `root`'s scalar.
pub fn dstack_derive_dh_secret(
    root: &p256::SecretKey,
    parts: &[&[u8]],
) -> Result<Zeroizing<[u8; 32]>, KdfError> {
    let scalar = Zeroizing::new(root.to_bytes());
    let derived = dstack_derive_key(&scalar[..], parts);
    let key = p256::SecretKey::from_slice(&derived[..])
        .map_err(|_| KdfError("derived P-256 scalar out of range".into()))?;
    let der = key.to_pkcs8_der().map_err(|e| KdfError(e.to_string()))?;
    Ok(Zeroizing::new(Sha256::digest(der.as_bytes()).into()))
}

fn frame(h: &mut Vec<u8>, x: &[u8]) {
    h.extend_from_slice(&(x.len() as u32).to_be_bytes());
    h.extend_from_slice(x);
}

/// The `v2` derivation of one 32-byte key.
pub fn v2_derive(
    root_secret: &[u8; 32],
    purpose: &str,
    app_id: &AppId,
    instance_id: Option<&InstanceId>,
) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(b"kms-kdf/v2"), root_secret);
    let mut info = b"kms-kdf/v2".to_vec();
    frame(&mut info, purpose.as_bytes());
    frame(&mut info, app_id.as_bytes());
    frame(&mut info, instance_id.map(|i| &i.0[..]).unwrap_or(&[]));
    let mut out = Zeroizing::new([0u8; 32]);
    let _ = hk.expand(&info, out.as_mut());
    out
}

/// Recoverable secp256k1 signature `r ‖ s ‖ v` (v = recovery id 0 or 1)
/// over a Keccak-256 prehash.
pub fn sign_recoverable(key: &k256::SecretKey, message: &[u8]) -> Result<Vec<u8>, KdfError> {
    let digest = Keccak256::digest(message);
    let sk = K256SigningKey::from(key);
    let (sig, recid) = sk
        .sign_prehash_recoverable(&digest)
        .map_err(|e| KdfError(format!("k256 signing: {e}")))?;
    let mut out = sig.to_bytes().to_vec();
    out.push(recid.to_byte());
    Ok(out)
}

/// Derives the keys of `app_id` (and `instance_id` for the disk key).
pub fn derive_app_keys(
    profile: KdfProfile,
    root: &RootKeys,
    app_id: &AppId,
    instance_id: Option<&InstanceId>,
) -> Result<AppKeyMaterial, KdfError> {
    let instance: &[u8] = instance_id.map(|i| &i.0[..]).unwrap_or(&[]);
    let (disk, env, k256_bytes) = match profile {
        KdfProfile::Dstack => (
            dstack_derive_dh_secret(root.ca_key(), &[&app_id.0, instance, b"app-disk-crypt-key"])?,
            dstack_derive_dh_secret(root.ca_key(), &[&app_id.0, b"env-encrypt-key"])?,
            dstack_derive_key(
                &Zeroizing::new(root.k256().to_bytes())[..],
                &[&app_id.0, b"app-key"],
            ),
        ),
        KdfProfile::V2 => (
            v2_derive(root.root_secret(), "disk-crypt-key", app_id, instance_id),
            v2_derive(root.root_secret(), "env-crypt-key", app_id, None),
            v2_derive(root.root_secret(), "k256-key", app_id, None),
        ),
    };
    let app_key = k256::SecretKey::from_slice(&k256_bytes[..])
        .map_err(|_| KdfError("derived secp256k1 scalar out of range".into()))?;
    let compressed =
        k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&app_key.public_key(), true);
    let mut msg = b"dstack-kms-issued:".to_vec();
    msg.extend_from_slice(&app_id.0);
    msg.extend_from_slice(compressed.as_bytes());
    Ok(AppKeyMaterial {
        k256_signature: sign_recoverable(root.k256(), &msg)?,
        disk_crypt_key: disk,
        env_crypt_key: env,
        k256_key: k256_bytes,
    })
}

/// The env decryption key of `app_id` alone (what `GetAppEnvEncryptPubKey`
/// needs), the same value [`derive_app_keys`] gives.
pub fn derive_env_key(
    profile: KdfProfile,
    root: &RootKeys,
    app_id: &AppId,
) -> Result<Zeroizing<[u8; 32]>, KdfError> {
    Ok(match profile {
        KdfProfile::Dstack => {
            dstack_derive_dh_secret(root.ca_key(), &[&app_id.0, b"env-encrypt-key"])?
        }
        KdfProfile::V2 => v2_derive(root.root_secret(), "env-crypt-key", app_id, None),
    })
}

/// The X25519 public key of an env secret (clamped at use, as dstack does).
pub fn x25519_public(secret: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*secret)).to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_and_redacted_keys() {
        // The names GetMeta publishes and kms.toml's `kdf` takes.
        assert_eq!(KdfProfile::Dstack.as_str(), "dstack");
        assert_eq!(KdfProfile::V2.as_str(), "v2");
        let k = AppKeyMaterial {
            disk_crypt_key: Zeroizing::new([0xd1; 32]),
            env_crypt_key: Zeroizing::new([0xe1; 32]),
            k256_key: Zeroizing::new([0x4b; 32]),
            k256_signature: vec![0x51; 65],
        };
        assert_eq!(format!("{k:?}"), "AppKeyMaterial(<redacted>)");
    }
}
