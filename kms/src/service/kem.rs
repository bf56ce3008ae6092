//! DHKEM(X25519, HKDF-SHA256) (RFC 9180 §4.1, KEM id 0x0020) with the
//! X25519 function from aws-lc, plugged into the `hpke` crate through its
//! public [`hpke::Kem`] trait.
//!
//! Why: the KMS seals every `GetAppKey` answer, and the seal's two X25519
//! operations (ephemeral key and Diffie-Hellman) were its largest fixed cost
//! after verification: 68 µs with x25519-dalek's portable field arithmetic,
//! against about 32 µs for aws-lc's assembly (measured by
//! `cargo bench -p kms --bench response`). Everything else (the HPKE key
//! schedule, ChaCha20-Poly1305, the wire format) stays the `hpke` crate's:
//! this type only replaces the group operation, and the extract-and-expand
//! step reuses `hpke::kdf`. The encapsulated key and shared secret are
//! byte-identical to `hpke::kem::X25519HkdfSha256`; guests open the box with
//! that standard KEM, and the tests check both directions and the RFC 9180
//! test vector.
//!
//! Only the base and PSK modes are supported (the KMS uses base mode);
//! authenticated encapsulation returns an error instead of a wrong secret.

use aws_lc_rs::agreement::{self, X25519};
use hpke::generic_array::GenericArray;
use hpke::generic_array::typenum::U32;
use hpke::kdf::{HkdfSha256, LabeledExpand, extract_and_expand, labeled_extract};
use hpke::kem::SharedSecret;
use hpke::rand_core::{CryptoRng, RngCore};
use hpke::{Deserializable, HpkeError, Kem, Serializable};
use zeroize::{Zeroize, Zeroizing};

/// `"KEM" ‖ I2OSP(0x0020, 2)`.
const SUITE_ID: [u8; 5] = *b"KEM\x00\x20";

/// DHKEM(X25519, HKDF-SHA256) with aws-lc's X25519.
pub struct X25519AwsLc;

/// An X25519 public key (32 bytes, RFC 7748 encoding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

/// An X25519 private key (32 bytes; clamped by X25519 itself). Zeroized on drop,
/// never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey(Zeroizing<[u8; 32]>);

/// The encapsulated key: the ephemeral public key.
#[derive(Clone, Debug)]
pub struct EncappedKey([u8; 32]);

fn from_32(encoded: &[u8]) -> Result<[u8; 32], HpkeError> {
    encoded
        .try_into()
        .map_err(|_| HpkeError::IncorrectInputLength(32, encoded.len()))
}

macro_rules! bytes32 {
    ($t:ty, $field:tt) => {
        impl Serializable for $t {
            type OutputSize = U32;
            fn write_exact(&self, buf: &mut [u8]) {
                // hpke always passes a buffer of OutputSize.
                buf.copy_from_slice(&self.$field[..]);
            }
        }
    };
}
bytes32!(PublicKey, 0);
bytes32!(PrivateKey, 0);
bytes32!(EncappedKey, 0);

impl Deserializable for PublicKey {
    fn from_bytes(encoded: &[u8]) -> Result<Self, HpkeError> {
        from_32(encoded).map(PublicKey)
    }
}

impl Deserializable for PrivateKey {
    fn from_bytes(encoded: &[u8]) -> Result<Self, HpkeError> {
        from_32(encoded).map(|k| PrivateKey(Zeroizing::new(k)))
    }
}

impl Deserializable for EncappedKey {
    fn from_bytes(encoded: &[u8]) -> Result<Self, HpkeError> {
        from_32(encoded).map(EncappedKey)
    }
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

fn aws_key(sk: &[u8; 32]) -> Result<agreement::PrivateKey, HpkeError> {
    agreement::PrivateKey::from_private_key(&X25519, sk).map_err(|_| HpkeError::EncapError)
}

fn public_of(sk: &agreement::PrivateKey) -> Result<[u8; 32], HpkeError> {
    let pk = sk.compute_public_key().map_err(|_| HpkeError::EncapError)?;
    from_32(pk.as_ref())
}

/// `DH(sk, pk)`; aws-lc refuses an all-zero result (a small-order peer key),
/// as RFC 9180 §7.1.4 requires.
fn dh(sk: &agreement::PrivateKey, pk: &[u8; 32], err: HpkeError) -> Result<[u8; 32], HpkeError> {
    let peer = agreement::UnparsedPublicKey::new(&X25519, pk);
    agreement::agree(sk, peer, err, |secret| from_32(secret).map_err(|_| err))
}

/// `ExtractAndExpand(dh, enc ‖ pkRm)`.
fn shared_secret(
    mut dh: [u8; 32],
    enc: &[u8; 32],
    pk_recip: &[u8; 32],
) -> SharedSecret<X25519AwsLc> {
    let mut kem_context = [0u8; 64];
    kem_context[..32].copy_from_slice(enc);
    kem_context[32..].copy_from_slice(pk_recip);
    let mut out = SharedSecret::<X25519AwsLc>(GenericArray::default());
    // 32 bytes is far below HKDF-SHA256's 255 * 32 byte limit.
    let expanded = extract_and_expand::<HkdfSha256>(&dh, &SUITE_ID, &kem_context, &mut out.0);
    dh.zeroize();
    debug_assert!(expanded.is_ok());
    out
}

impl X25519AwsLc {
    /// Encapsulation with a given ephemeral secret (the RFC's `Encap` after
    /// `GenerateKeyPair`); separate so the known-answer test can fix it.
    fn encap_with_eph(
        pk_recip: &PublicKey,
        sk_eph: &[u8; 32],
    ) -> Result<(SharedSecret<Self>, EncappedKey), HpkeError> {
        let eph = aws_key(sk_eph)?;
        let enc = public_of(&eph)?;
        let dh = dh(&eph, &pk_recip.0, HpkeError::EncapError)?;
        Ok((shared_secret(dh, &enc, &pk_recip.0), EncappedKey(enc)))
    }
}

impl Kem for X25519AwsLc {
    type PublicKey = PublicKey;
    type PrivateKey = PrivateKey;
    type EncappedKey = EncappedKey;
    type NSecret = U32;
    const KEM_ID: u16 = 0x0020;

    fn sk_to_pk(sk: &PrivateKey) -> PublicKey {
        // X25519 accepts every 32-byte string as a private key, so aws-lc
        // cannot refuse one; the base-point fallback below is unreachable
        // but keeps this infallible signature free of panics.
        let pk = aws_key(&sk.0).and_then(|k| public_of(&k));
        PublicKey(pk.unwrap_or_else(|_| {
            x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*sk.0)).to_bytes()
        }))
    }

    /// RFC 9180 §7.1.3 `DeriveKeyPair` for X25519.
    fn derive_keypair(ikm: &[u8]) -> (PrivateKey, PublicKey) {
        let (_, prk) = labeled_extract::<HkdfSha256>(&[], &SUITE_ID, b"dkp_prk", ikm);
        let mut sk = Zeroizing::new([0u8; 32]);
        // 32 bytes is within HKDF's output limit.
        let _ = prk.labeled_expand(&SUITE_ID, b"sk", &[], &mut sk[..]);
        let sk = PrivateKey(sk);
        let pk = Self::sk_to_pk(&sk);
        (sk, pk)
    }

    fn decap(
        sk_recip: &PrivateKey,
        pk_sender_id: Option<&PublicKey>,
        encapped_key: &EncappedKey,
    ) -> Result<SharedSecret<Self>, HpkeError> {
        if pk_sender_id.is_some() {
            return Err(HpkeError::DecapError);
        }
        let sk = aws_key(&sk_recip.0).map_err(|_| HpkeError::DecapError)?;
        let pk_recip = public_of(&sk).map_err(|_| HpkeError::DecapError)?;
        let dh = dh(&sk, &encapped_key.0, HpkeError::DecapError)?;
        Ok(shared_secret(dh, &encapped_key.0, &pk_recip))
    }

    fn encap<R: CryptoRng + RngCore>(
        pk_recip: &PublicKey,
        sender_id_keypair: Option<(&PrivateKey, &PublicKey)>,
        csprng: &mut R,
    ) -> Result<(SharedSecret<Self>, EncappedKey), HpkeError> {
        if sender_id_keypair.is_some() {
            return Err(HpkeError::EncapError);
        }
        // GenerateKeyPair: any uniformly random 32 bytes are an X25519 secret.
        let mut sk_eph = Zeroizing::new([0u8; 32]);
        csprng.fill_bytes(&mut sk_eph[..]);
        Self::encap_with_eph(pk_recip, &sk_eph)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpke::aead::ChaCha20Poly1305;
    use hpke::kem::X25519HkdfSha256;
    use hpke::{OpModeR, OpModeS};
    use rand_core::OsRng;

    fn h32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// RFC 9180 Appendix A.2.1 (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
    /// ChaCha20Poly1305, base mode): encapsulation, decapsulation and the
    /// first encryption.
    #[test]
    fn rfc9180_a_2_1() {
        let sk_em = h32("f4ec9b33b792c372c1d2c2063507b684ef925b8c75a42dbcbf57d63ccd381600");
        let sk_rm = h32("8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb");
        let pk_rm = h32("4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a");
        let enc = "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a";
        let ss = "0bbe78490412b4bbea4812666f7916932b828bba79942424abb65244930d69a7";
        let (secret, encapped) = X25519AwsLc::encap_with_eph(&PublicKey(pk_rm), &sk_em).unwrap();
        assert_eq!(hex::encode(encapped.0), enc);
        assert_eq!(hex::encode(secret.0), ss);
        let sk_r = PrivateKey(Zeroizing::new(sk_rm));
        assert_eq!(X25519AwsLc::sk_to_pk(&sk_r).0, pk_rm);
        let opened = X25519AwsLc::decap(&sk_r, None, &encapped).unwrap();
        assert_eq!(hex::encode(opened.0), ss);
        // The whole base-mode open through the hpke crate with this KEM.
        let info = hex::decode("4f6465206f6e2061204772656369616e2055726e").unwrap();
        let ct = hex::decode("1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28").unwrap();
        let pt = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519AwsLc>(
            &OpModeR::Base,
            &sk_r,
            &encapped,
            &info,
            &ct,
            b"Count-0",
        )
        .unwrap();
        assert_eq!(pt, b"Beauty is truth, truth beauty");
    }

    #[test]
    fn interoperates_with_the_hpke_crate_kem_both_ways() {
        let info = b"kms-app-key/v1 test";
        // Sealed here, opened by the standard KEM (what guests run).
        let (sk, pk) = X25519HkdfSha256::gen_keypair(&mut OsRng);
        let pk_here = PublicKey::from_bytes(&pk.to_bytes()).unwrap();
        let (enc, ct) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519AwsLc, _>(
            &OpModeS::Base,
            &pk_here,
            info,
            b"app keys",
            b"aad",
            &mut OsRng,
        )
        .unwrap();
        let enc_std = <X25519HkdfSha256 as Kem>::EncappedKey::from_bytes(&enc.to_bytes()).unwrap();
        let pt = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &sk,
            &enc_std,
            info,
            &ct,
            b"aad",
        )
        .unwrap();
        assert_eq!(pt, b"app keys");
        // Another AAD does not open.
        assert!(
            hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
                &OpModeR::Base,
                &sk,
                &enc_std,
                info,
                &ct,
                b"other",
            )
            .is_err()
        );
        // Sealed by the standard KEM, opened here; same derived key pairs.
        let ikm = [7u8; 32];
        let (sk2, pk2) = X25519AwsLc::derive_keypair(&ikm);
        let (sk2_std, pk2_std) = X25519HkdfSha256::derive_keypair(&ikm);
        assert_eq!(sk2.to_bytes(), sk2_std.to_bytes());
        assert_eq!(pk2.to_bytes(), pk2_std.to_bytes());
        let (enc, ct) =
            hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256, _>(
                &OpModeS::Base,
                &pk2_std,
                info,
                b"back",
                b"",
                &mut OsRng,
            )
            .unwrap();
        let enc_here = EncappedKey::from_bytes(&enc.to_bytes()).unwrap();
        let pt = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519AwsLc>(
            &OpModeR::Base,
            &sk2,
            &enc_here,
            info,
            &ct,
            b"",
        )
        .unwrap();
        assert_eq!(pt, b"back");
    }

    #[test]
    fn small_order_keys_wrong_lengths_and_auth_mode_are_refused() {
        // The all-zero point (and other small-order points) give an all-zero
        // DH output, which must abort the encapsulation.
        for bad in [[0u8; 32], {
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        }] {
            assert!(matches!(
                X25519AwsLc::encap(&PublicKey(bad), None, &mut OsRng),
                Err(HpkeError::EncapError)
            ));
        }
        assert!(PublicKey::from_bytes(&[1; 31]).is_err());
        assert!(EncappedKey::from_bytes(&[1; 33]).is_err());
        assert!(PrivateKey::from_bytes(&[]).is_err());
        let (sk, pk) = X25519AwsLc::derive_keypair(&[1; 32]);
        assert!(X25519AwsLc::encap(&pk, Some((&sk, &pk)), &mut OsRng).is_err());
        let (_, enc) = X25519AwsLc::encap(&pk, None, &mut OsRng).unwrap();
        assert!(X25519AwsLc::decap(&sk, Some(&pk), &enc).is_err());
        assert_eq!(format!("{sk:?}"), "PrivateKey(<redacted>)");
    }
}
