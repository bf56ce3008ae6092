//! Mapping dcap-qvl's errors onto the attestation error kinds.

use attest_core::AttestError;

/// Classifies a dcap-qvl failure. dcap-qvl reports errors as text, so the
/// classification reads the whole context chain; anything not recognized is
/// an untrusted chain (never an accept).
pub(crate) fn map_qvl_error(e: &anyhow::Error) -> AttestError {
    let msg = format!("{e:#}");
    let has = |needles: &[&str]| needles.iter().any(|n| msg.contains(n));
    if has(&["Revoked", "CertRevoked"]) {
        AttestError::revoked_text(msg)
    } else if has(&[
        "expired",
        "Expired",
        "in the future",
        "NotValidYet",
        "not yet valid",
    ]) {
        AttestError::collateral_expired_text(msg)
    } else if has(&[
        "Debug mode",
        "debug",
        "SEPT_VE",
        "sept_ve",
        "igratable",
        "MIGRATABLE",
        "service TD",
        "mr_signer_seam",
        "MRSIGNERSEAM",
        "module MRSIGNER",
        "No matching TCB level",
        "TD attributes",
        "profiling",
    ]) {
        AttestError::insecure_text(msg)
    } else if has(&[
        "Signature is invalid",
        "signature is invalid",
        "hash mismatch",
        "BadSignature",
        "InvalidSignature",
    ]) {
        AttestError::bad_signature_text(msg)
    } else if has(&[
        "Fmspc mismatch",
        "non-TDX TCB info",
        "QE Identity id/version",
    ]) {
        AttestError::collateral_missing_text(msg)
    } else if has(&[
        "decode",
        "Decode",
        "Unsupported DCAP",
        "Unknown QE vendor",
        "must have version",
        "Unsupported TEE",
    ]) {
        AttestError::malformed_text(msg)
    } else {
        AttestError::untrusted_chain_text(msg)
    }
}
