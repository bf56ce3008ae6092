//! The vTPM quote: a strict `TPMS_ATTEST` (type `TPM_ST_ATTEST_QUOTE`)
//! parser, the AK's RSASSA-PKCS1-v1_5/SHA-256 signature over it, the PCR
//! digest and the nonce (`extraData`).
//!
//! The only profile accepted is the one Azure's attester produces
//! (`TPM2_Quote` over `sha256:0..23`): one selection, SHA-256, three select
//! bytes, bitmap `ff ff ff`. Any other selection is refused, because the 24
//! supplied PCR values are labelled by their list position and only a full
//! selection makes position *i* the signed PCR *i* (reference pitfall P1;
//! Trustee's verifier never read the selection).
//!
//! TPM structures are big-endian. Offsets for a 9-byte nonce:
//!
//! | off | field |
//! |---|---|
//! | 0 | magic `0xFF544347` |
//! | 4 | type `0x8018` |
//! | 6 | qualifiedSigner (`TPM2B_NAME`) |
//! | 42 | extraData (`TPM2B_DATA`, the nonce) |
//! | 53 | clockInfo: clock u64, resetCount u32, restartCount u32, safe u8 |
//! | 70 | firmwareVersion u64 |
//! | 78 | `TPML_PCR_SELECTION`: count u32, hash u16, sizeofSelect u8, bitmap |
//! | 88 | pcrDigest (`TPM2B_DIGEST`, 32 bytes) |

use attest_core::reader::Reader;
use attest_core::{AttestError, BadSignature, Malformed, ReportData};
use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use sha2::{Digest, Sha256};

use crate::claims::AkPublicKey;

/// `TPM_GENERATED_VALUE`: every TPM-produced attestation starts with it.
pub const TPM_GENERATED_VALUE: u32 = 0xFF54_4347;
/// `TPM_ST_ATTEST_QUOTE`: the structure type of a `TPM2_Quote` result.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// `TPM_ALG_SHA256`.
pub const TPM_ALG_SHA256: u16 = 0x000B;
/// Number of PCRs in the bank, all of which the quote must select.
pub const PCR_COUNT: usize = 24;
/// The only accepted PCR selection bitmap: PCRs 0–23.
pub const FULL_SELECTION: [u8; 3] = [0xff, 0xff, 0xff];
/// Longest accepted `TPMS_ATTEST` message (reference P11; real ones are
/// 122 to 161 bytes).
pub const MAX_MESSAGE: usize = 1024;
/// Longest accepted `extraData`. A TPM caps it at `sizeof(TPMT_HA)` (50
/// bytes with SHA-384, reference P4); 64 leaves room for a SHA-512 TPM.
pub const MAX_EXTRA_DATA: usize = 64;
/// Longest accepted `qualifiedSigner` (`TPMU_NAME`: a SHA-512 `TPMT_HA`).
pub const MAX_NAME: usize = 2 + 64;

/// The 24 SHA-256 PCR values supplied with the quote, in index order.
///
/// On their own they are unsigned (read with `tpm2_pcrread` after the
/// quote); they are trusted only once [`TpmsAttest::check_pcrs`] matched
/// them to the signed `pcrDigest` of a full selection.
#[derive(Clone, PartialEq, Eq)]
pub struct Pcrs([[u8; 32]; PCR_COUNT]);

impl Pcrs {
    /// The values, PCR 0 first.
    pub fn new(values: [[u8; 32]; PCR_COUNT]) -> Self {
        Pcrs(values)
    }

    /// PCR `index` (0–23), or `None` past the bank.
    pub fn get(&self, index: usize) -> Option<&[u8; 32]> {
        self.0.get(index)
    }

    /// All values, PCR 0 first.
    pub fn as_array(&self) -> &[[u8; 32]; PCR_COUNT] {
        &self.0
    }

    /// SHA-256 over the 24 values in index order: what `pcrDigest` must be
    /// for the full selection.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for v in &self.0 {
            h.update(v);
        }
        h.finalize().into()
    }
}

impl std::fmt::Debug for Pcrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().enumerate().map(|(i, v)| (i, hex::encode(v))))
            .finish()
    }
}

/// `TPMS_CLOCK_INFO` of the quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered (monotonic while `safe`).
    pub clock: u64,
    /// TPM resets (reboots) since the TPM was manufactured.
    pub reset_count: u32,
    /// TPM restarts or resumes since the last reset.
    pub restart_count: u32,
    /// Whether `clock` is known not to have run backwards.
    pub safe: bool,
}

/// A parsed quote (`TPMS_ATTEST` of type `TPM_ST_ATTEST_QUOTE`) whose PCR
/// selection is the full SHA-256 bank.
///
/// Parsing says nothing about who signed it: use [`verify_quote_signature`]
/// first (as [`crate::check_container`] does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TpmsAttest {
    qualified_signer: Vec<u8>,
    extra_data: Vec<u8>,
    clock_info: ClockInfo,
    firmware_version: u64,
    pcr_digest: [u8; 32],
}

impl TpmsAttest {
    /// Parses `message` strictly: magic and type (P2), bounded names and
    /// nonce, `safe` a TPM boolean, exactly one SHA-256 selection of PCRs
    /// 0–23 (P1), a 32-byte digest and no trailing bytes.
    pub fn parse(message: &[u8]) -> Result<Self, AttestError> {
        let bad = |field: &'static str, expected: String, found: String| {
            AttestError::from(Malformed::TpmField {
                structure: "TPMS_ATTEST",
                field,
                expected,
                found,
            })
        };
        if message.len() > MAX_MESSAGE {
            return Err(Malformed::TooLarge {
                what: "TPMS_ATTEST".into(),
                size: message.len(),
                max: MAX_MESSAGE,
            }
            .into());
        }
        let mut r = Reader::new(message, "TPMS_ATTEST");
        let magic = r.u32_be("magic")?;
        if magic != TPM_GENERATED_VALUE {
            return Err(bad(
                "magic",
                format!("{TPM_GENERATED_VALUE:08x}"),
                format!("{magic:08x}"),
            ));
        }
        let st = r.u16_be("type")?;
        if st != TPM_ST_ATTEST_QUOTE {
            return Err(bad(
                "type",
                format!("{TPM_ST_ATTEST_QUOTE:04x} (ATTEST_QUOTE)"),
                format!("{st:04x}"),
            ));
        }
        let qualified_signer = sized(&mut r, "qualifiedSigner", MAX_NAME)?.to_vec();
        let extra_data = sized(&mut r, "extraData", MAX_EXTRA_DATA)?.to_vec();
        let clock = r.u64_be("clockInfo.clock")?;
        let reset_count = r.u32_be("clockInfo.resetCount")?;
        let restart_count = r.u32_be("clockInfo.restartCount")?;
        let safe = match r.u8("clockInfo.safe")? {
            0 => false,
            1 => true,
            v => return Err(bad("clockInfo.safe", "0 or 1".into(), v.to_string())),
        };
        let firmware_version = r.u64_be("firmwareVersion")?;

        let count = r.u32_be("pcrSelect.count")?;
        if count != 1 {
            return Err(bad(
                "pcrSelect.count",
                "1 selection (sha256:0-23)".into(),
                count.to_string(),
            ));
        }
        let hash = r.u16_be("pcrSelect.hash")?;
        if hash != TPM_ALG_SHA256 {
            return Err(bad(
                "pcrSelect.hash",
                format!("{TPM_ALG_SHA256:04x} (SHA-256)"),
                format!("{hash:04x}"),
            ));
        }
        let size = r.u8("pcrSelect.sizeofSelect")?;
        if usize::from(size) != FULL_SELECTION.len() {
            return Err(bad(
                "pcrSelect.sizeofSelect",
                FULL_SELECTION.len().to_string(),
                size.to_string(),
            ));
        }
        let bitmap = r.take_array::<3>("pcrSelect.pcrSelect")?;
        if bitmap != FULL_SELECTION {
            return Err(Malformed::PcrSelection {
                field: "TPMS_ATTEST pcrSelect.pcrSelect",
                expected: FULL_SELECTION.to_vec(),
                found: bitmap.to_vec(),
            }
            .into());
        }
        let digest = sized(&mut r, "pcrDigest", 32)?;
        let pcr_digest: [u8; 32] = digest.try_into().map_err(|_| {
            bad(
                "pcrDigest",
                "32 bytes (SHA-256)".into(),
                digest.len().to_string(),
            )
        })?;
        r.finish()?;
        Ok(TpmsAttest {
            qualified_signer,
            extra_data,
            clock_info: ClockInfo {
                clock,
                reset_count,
                restart_count,
                safe,
            },
            firmware_version,
            pcr_digest,
        })
    }

    /// The signing key's qualified name (`TPM2B_NAME` contents).
    pub fn qualified_signer(&self) -> &[u8] {
        &self.qualified_signer
    }

    /// `extraData`: the nonce the attester passed to `TPM2_Quote`.
    pub fn extra_data(&self) -> &[u8] {
        &self.extra_data
    }

    /// `clockInfo`.
    pub fn clock_info(&self) -> ClockInfo {
        self.clock_info
    }

    /// `firmwareVersion` (vendor-defined).
    pub fn firmware_version(&self) -> u64 {
        self.firmware_version
    }

    /// `pcrDigest`: SHA-256 over PCRs 0–23 at quote time.
    pub fn pcr_digest(&self) -> &[u8; 32] {
        &self.pcr_digest
    }

    /// Requires the supplied PCR values to be the ones the quote signed:
    /// `pcrDigest == SHA-256(PCR 0 ‖ … ‖ PCR 23)`. A mismatch is an
    /// [`AttestError::IdentityMismatch`] on `pcrDigest`.
    pub fn check_pcrs(&self, pcrs: &Pcrs) -> Result<(), AttestError> {
        let found = pcrs.digest();
        if found == self.pcr_digest {
            Ok(())
        } else {
            Err(AttestError::identity_mismatch(
                "TPM quote pcrDigest",
                &self.pcr_digest,
                &found,
            ))
        }
    }

    /// Requires `extraData` to be exactly `expected`: same length, same
    /// bytes, compared in constant time (P3). No padding is tolerated, and
    /// an empty nonce matches only an empty `expected`.
    ///
    /// A mismatch is an [`AttestError::BindingMismatch`]; both sides are
    /// shown zero-padded to 64 bytes (display only), and the message cannot
    /// show a difference that lies only in trailing zero bytes or past
    /// byte 64.
    pub fn check_nonce(&self, expected: &[u8]) -> Result<(), AttestError> {
        if ct_eq(&self.extra_data, expected) {
            Ok(())
        } else {
            Err(AttestError::BindingMismatch {
                expected: Box::new(padded(expected)),
                found: Box::new(padded(&self.extra_data)),
            })
        }
    }

    /// Requires `extraData == SHA-256(data)`: the KMS binding, where `data`
    /// is the 64-byte report data the claims carry as `user-data` (P4).
    pub fn check_nonce_is_sha256_of(&self, data: &[u8]) -> Result<(), AttestError> {
        let digest: [u8; 32] = Sha256::digest(data).into();
        self.check_nonce(&digest)
    }
}

/// Verifies the AK's RSASSA-PKCS1-v1_5 SHA-256 signature over the exact
/// `message` bytes. The signature is the raw RSA block (no `TPMT_SIGNATURE`
/// header) and must be as long as the modulus (P11).
pub fn verify_quote_signature(
    ak: &AkPublicKey,
    message: &[u8],
    signature: &[u8],
) -> Result<(), AttestError> {
    if message.len() > MAX_MESSAGE {
        return Err(Malformed::TooLarge {
            what: "TPM quote message".into(),
            size: message.len(),
            max: MAX_MESSAGE,
        }
        .into());
    }
    let n = ak.modulus();
    if signature.len() != n.len() {
        return Err(Malformed::BadLength {
            what: "TPM quote signature (the AK modulus' length)".into(),
            expected: n.len(),
            found: signature.len(),
        }
        .into());
    }
    let e = ak.exponent_bytes();
    RsaPublicKeyComponents {
        n: &n[..],
        e: &e[..],
    }
    .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
    .map_err(|_| {
        BadSignature::DoesNotVerify {
            signed: "the TPM quote".into(),
            signer: Some("HCLAkPub RSASSA-PKCS1-v1_5 SHA-256".into()),
        }
        .into()
    })
}

/// A `TPM2B_*`: u16 size, then that many bytes, at most `max`.
fn sized<'a>(r: &mut Reader<'a>, what: &str, max: usize) -> Result<&'a [u8], AttestError> {
    let n = usize::from(r.u16_be(what)?);
    if n > max {
        return Err(Malformed::TooLarge {
            what: format!("TPMS_ATTEST {what}"),
            size: n,
            max,
        }
        .into());
    }
    r.take(n, what)
}

/// Equal length and equal bytes, the bytes compared in constant time.
/// Lengths are public (they are on the wire).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// Display form of a short byte string as report data (zero-padded, cut at
/// 64 bytes).
fn padded(b: &[u8]) -> ReportData {
    let mut out = [0u8; 64];
    let n = b.len().min(64);
    out[..n].copy_from_slice(&b[..n]);
    ReportData(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_is_described() {
        assert_eq!(
            attest_core::describe_pcr_selection(&[0xff, 0x40, 0x00]),
            "PCRs 0,1,2,3,4,5,6,7,14"
        );
        assert_eq!(attest_core::describe_pcr_selection(&[0, 0, 0]), "no PCRs");
    }

    #[test]
    fn nonce_compare_is_exact() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abc\0"));
        assert!(!ct_eq(b"abc", b"abd"));
    }
}
