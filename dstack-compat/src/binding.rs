//! The report-data bindings dstack uses: `SHA-512(tag ‖ ":" ‖ content)`.
//!
//! An RA-TLS certificate proves that a TEE holds the certificate's key by
//! putting `SHA-512("ratls-cert:" ‖ SubjectPublicKeyInfo DER)` in the quote's
//! report data (`dstack-wire.md` §1.2). There is no challenge: freshness
//! rests on the key being ephemeral plus the TLS handshake's proof of
//! possession. The key service hands this value to the platform verifier as
//! the expected report data (which checks the signed quote), and also
//! requires the attestation's own `report_data` field to equal it, as dstack
//! does.

use attest_core::{AttestError, ReportData};
use sha2::{Digest, Sha512};

/// The RA-TLS binding tag (followed by `:`).
pub const RATLS_CERT_TAG: &str = "ratls-cert";

/// The pod binding tag (followed by `:`), for V1 `dstack-pod` attestations.
pub const APP_DATA_TAG: &str = "app-data";

fn tagged(tag: &str, content: &[u8]) -> ReportData {
    let mut h = Sha512::new();
    h.update(tag.as_bytes());
    h.update(b":");
    h.update(content);
    ReportData(h.finalize().into())
}

/// The report data binding a TEE quote to a certificate key:
/// `SHA-512("ratls-cert:" ‖ spki_der)`, where `spki_der` is the full
/// SubjectPublicKeyInfo exactly as it appears in the certificate (or as the
/// CSR's `pubkey` carries it).
pub fn ratls_report_data(spki_der: &[u8]) -> ReportData {
    tagged(RATLS_CERT_TAG, spki_der)
}

/// `SHA-512("app-data:" ‖ payload)`: what a `dstack-pod` attestation's
/// report data must be.
pub fn app_data_report_data(payload: &[u8]) -> ReportData {
    tagged(APP_DATA_TAG, payload)
}

/// Checks that `found` (an attestation's report data) is the RA-TLS binding
/// of `spki_der`; [`AttestError::BindingMismatch`] otherwise.
pub fn check_ratls_binding(found: &ReportData, spki_der: &[u8]) -> Result<(), AttestError> {
    let expected = ratls_report_data(spki_der);
    if &expected == found {
        Ok(())
    } else {
        Err(AttestError::BindingMismatch {
            expected: Box::new(expected),
            found: Box::new(*found),
        })
    }
}
