//! The request binding: how a key request is tied to the evidence.
//!
//! The CVM puts this value in its report data (TDX REPORTDATA, SNP
//! REPORT_DATA), so the evidence proves that the TEE itself asked for keys
//! sealed to `client_public_key`, fresh for `challenge`. Every length is
//! framed, so no two (key, challenge) pairs share a preimage.
//!
//! `report_data = SHA-512("kms-app-key/v1" ‖ u32be(len) ‖ client_public_key ‖ u32be(len) ‖ challenge)`

use sha2::{Digest, Sha512};

use crate::{AttestError, ReportData};

/// The domain-separation label, also the HPKE `info` prefix of responses.
pub const APP_KEY_LABEL: &[u8] = b"kms-app-key/v1";

/// The label of `GetRootKeys` (a replica KMS): evidence made for app keys
/// never serves to obtain the root keys, nor the reverse.
pub const ROOT_KEYS_LABEL: &[u8] = b"kms-root-keys/v1";

/// The label of `Attest` (an attestation result, no keys): evidence made
/// for a relying party's result never releases keys, even though it is
/// bound to a key the relying party holds.
pub const ATTEST_LABEL: &[u8] = b"kms-attest/v1";

/// Computes the report data an `Attest` request must be bound to:
/// `SHA-512("kms-attest/v1" ‖ u32be(len) ‖ public_key ‖ u32be(len) ‖ challenge)`.
pub fn attest_report_data(public_key: &[u8], challenge: &[u8]) -> Result<ReportData, AttestError> {
    report_data(ATTEST_LABEL, public_key, challenge)
}

/// Computes the report data a `GetAppKey` request must be bound to.
pub fn app_key_report_data(
    client_public_key: &[u8],
    challenge: &[u8],
) -> Result<ReportData, AttestError> {
    report_data(APP_KEY_LABEL, client_public_key, challenge)
}

/// Computes the report data a `GetRootKeys` request must be bound to:
/// `SHA-512("kms-root-keys/v1" ‖ u32be(len) ‖ client_public_key ‖ u32be(len) ‖ challenge)`.
pub fn root_keys_report_data(
    client_public_key: &[u8],
    challenge: &[u8],
) -> Result<ReportData, AttestError> {
    report_data(ROOT_KEYS_LABEL, client_public_key, challenge)
}

fn report_data(
    label: &[u8],
    client_public_key: &[u8],
    challenge: &[u8],
) -> Result<ReportData, AttestError> {
    let mut h = Sha512::new();
    h.update(label);
    for (what, part) in [
        ("client public key", client_public_key),
        ("challenge", challenge),
    ] {
        let len = u32::try_from(part.len()).map_err(|_| crate::Malformed::TooLarge {
            what: what.into(),
            size: part.len(),
            max: u32::MAX as usize,
        })?;
        h.update(len.to_be_bytes());
        h.update(part);
    }
    Ok(ReportData(h.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_keys_and_app_keys_never_share_report_data() {
        let (k, c) = ([0x11u8; 32], [0x22u8; 16]);
        let root = root_keys_report_data(&k, &c).unwrap();
        let app = app_key_report_data(&k, &c).unwrap();
        let attest = attest_report_data(&k, &c).unwrap();
        assert_ne!(root, app);
        assert_ne!(attest, app);
        assert_ne!(attest, root);
        let mut pre = b"kms-root-keys/v1".to_vec();
        pre.extend_from_slice(&32u32.to_be_bytes());
        pre.extend_from_slice(&k);
        pre.extend_from_slice(&16u32.to_be_bytes());
        pre.extend_from_slice(&c);
        assert_eq!(root.0[..], Sha512::digest(&pre)[..]);
    }

    #[test]
    fn matches_the_written_definition() {
        let key = [0x11u8; 32];
        let challenge = b"challenge-bytes";
        let mut pre = b"kms-app-key/v1".to_vec();
        pre.extend_from_slice(&[0, 0, 0, 32]);
        pre.extend_from_slice(&key);
        pre.extend_from_slice(&[0, 0, 0, 15]);
        pre.extend_from_slice(challenge);
        let want: [u8; 64] = Sha512::digest(&pre).into();
        assert_eq!(app_key_report_data(&key, challenge).unwrap().0, want);
    }

    #[test]
    fn known_answer() {
        // Pinned so that a change of the binding (which would break every
        // deployed client) cannot go unnoticed.
        let rd = app_key_report_data(&[0u8; 32], &[1u8; 32]).unwrap();
        assert_eq!(rd.to_hex(), KNOWN);
    }

    const KNOWN: &str = "8ab9ddd27e9effd438a77c33792bfd90342399f26ef82f9499f2f0375680bac4c8facc66c4797f8e77f75953686ea209f7c0137ad0dd17259576b9420c72a249";

    #[test]
    fn framing_separates_key_and_challenge() {
        let a = app_key_report_data(b"ab", b"c").unwrap();
        let b = app_key_report_data(b"a", b"bc").unwrap();
        assert_ne!(a, b);
    }
}
