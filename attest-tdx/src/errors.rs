//! Mapping dcap-qvl's errors onto the attestation error kinds: the one
//! place that reads dcap-qvl's text.
//!
//! dcap-qvl reports every failure as an `anyhow` message, so the verdict
//! can only be read from its words. [`RULES`] lists every phrase this
//! plug-in recognizes, in the order they are tried, each with the typed
//! detail it becomes; the whole context chain is searched and kept as the
//! detail's text. Anything unrecognized is an untrusted chain: never an
//! accept, and never a kind a client could retry into success. The tests
//! below feed each phrase and pin its variant, so a dcap-qvl upgrade that
//! rewords a message shows up here.

use attest_core::{
    AttestError, BadSignature, CollateralExpired, CollateralMissing, Insecure, Malformed, Revoked,
    UntrustedChain,
};

/// What a recognized phrase means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    CertificateRevoked,
    TcbRevoked,
    Expired,
    NotYetValid,
    Debug,
    Migration,
    ForeignTdxModule,
    TdAttributes,
    NoMatchingTcbLevel,
    BadSignature,
    DigestMismatch,
    WrongCollateral,
    Unsupported,
    Undecodable,
}

/// The phrases dcap-qvl 0.7 uses, first match wins. Revocation is read
/// before expiry, expiry before the TD's own configuration, and that before
/// signatures, collateral and decoding, as dcap-qvl's messages can chain
/// several (a context over a cause).
const RULES: &[(&[&str], Verdict)] = &[
    // webpki's error for a certificate on a CRL.
    (&["CertRevoked"], Verdict::CertificateRevoked),
    // "TCB status is invalid: Revoked".
    (&["Revoked"], Verdict::TcbRevoked),
    // "TCBInfo expired", "QE Identity expired", webpki's "CertExpired".
    (&["expired", "Expired"], Verdict::Expired),
    // "... issue date is in the future", webpki's "CertNotValidYet".
    (
        &["in the future", "NotValidYet", "not yet valid"],
        Verdict::NotYetValid,
    ),
    // "Debug mode is enabled" (a TD, or the QE).
    (&["Debug mode", "debug"], Verdict::Debug),
    // "TD migration is enabled".
    (
        &["igratable", "MIGRATABLE", "TD migration"],
        Verdict::Migration,
    ),
    // "TDX module identity check: TDX module MRSIGNER mismatch ...".
    (
        &[
            "mr_signer_seam",
            "MRSIGNERSEAM",
            "module MRSIGNER",
            "TDX module identity check",
        ],
        Verdict::ForeignTdxModule,
    ),
    // "SEPT_VE_DISABLE is not enabled", "Invalid MR service TD",
    // "TD profiling is enabled", "Reserved bits in TD attributes are set",
    // "SERVTD_EXT is enabled".
    (
        &[
            "SEPT_VE",
            "sept_ve",
            "service TD",
            "TD attributes",
            "profiling",
            "SERVTD_EXT",
        ],
        Verdict::TdAttributes,
    ),
    // "No matching TCB level found".
    (&["No matching TCB level"], Verdict::NoMatchingTcbLevel),
    // "Signature is invalid for tcb_info in quote_collateral", "ISV
    // enclave report signature is invalid", webpki's "InvalidSignature...".
    (
        &[
            "Signature is invalid",
            "signature is invalid",
            "BadSignature",
            "InvalidSignature",
        ],
        Verdict::BadSignature,
    ),
    // "QE report hash mismatch".
    (&["hash mismatch"], Verdict::DigestMismatch),
    // "Fmspc mismatch", "TDX quote with non-TDX TCB info in the
    // collateral", "Unsupported QE Identity id/version ...".
    (
        &[
            "Fmspc mismatch",
            "non-TDX TCB info",
            "QE Identity id/version",
        ],
        Verdict::WrongCollateral,
    ),
    // "Unsupported DCAP quote version", "Unknown QE vendor ID", "TDX TEE
    // quote must have version 4 or 5", "Unsupported TEE type: ...".
    (
        &[
            "Unsupported DCAP",
            "Unknown QE vendor",
            "must have version",
            "Unsupported TEE",
        ],
        Verdict::Unsupported,
    ),
    // "Failed to decode quote", "Failed to decode TcbInfo", ...
    (&["decode", "Decode"], Verdict::Undecodable),
];

fn verdict(msg: &str) -> Option<Verdict> {
    RULES
        .iter()
        .find(|(needles, _)| needles.iter().any(|n| msg.contains(n)))
        .map(|(_, v)| *v)
}

/// Classifies a dcap-qvl failure (see the module doc).
pub(crate) fn map_qvl_error(e: &anyhow::Error) -> AttestError {
    classify(format!("{e:#}"))
}

fn classify(detail: String) -> AttestError {
    let Some(v) = verdict(&detail) else {
        return UntrustedChain::Other(detail).into();
    };
    match v {
        Verdict::CertificateRevoked => Revoked::Certificate { detail }.into(),
        Verdict::TcbRevoked => Revoked::Tcb { detail }.into(),
        Verdict::Expired => CollateralExpired::Expired { detail }.into(),
        Verdict::NotYetValid => CollateralExpired::NotYetValid { detail }.into(),
        Verdict::Debug => Insecure::Debug { detail }.into(),
        Verdict::Migration => Insecure::Migration { detail }.into(),
        Verdict::ForeignTdxModule => Insecure::ForeignTdxModule { detail }.into(),
        Verdict::TdAttributes => Insecure::TdAttributes { detail }.into(),
        Verdict::NoMatchingTcbLevel => Insecure::NoMatchingTcbLevel { detail }.into(),
        Verdict::BadSignature => BadSignature::Other(detail).into(),
        Verdict::DigestMismatch => BadSignature::DigestMismatch { detail }.into(),
        Verdict::WrongCollateral => CollateralMissing::WrongSet { detail }.into(),
        Verdict::Unsupported => Malformed::Unsupported { detail }.into(),
        Verdict::Undecodable => Malformed::Other(detail).into(),
    }
}

/// The error of a quote signature that does not verify under its
/// attestation key: dcap-qvl's words, so that a quote checked through the
/// verified-platform cache fails exactly as one checked in full.
pub(crate) fn quote_signature_invalid() -> AttestError {
    classify("ISV enclave report signature is invalid".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dcap-qvl's messages (0.7.1, `src/verify.rs` and webpki's error
    /// names), each with the variant it must become.
    #[test]
    fn every_phrase_has_its_variant() {
        type Is = fn(&AttestError) -> bool;
        let cases: &[(&str, Is)] = &[
            ("TCB status is invalid: Revoked", |e| {
                matches!(e, AttestError::Revoked(Revoked::Tcb { .. }))
            }),
            ("Failed to verify PCK certificate chain: CertRevoked", |e| {
                matches!(e, AttestError::Revoked(Revoked::Certificate { .. }))
            }),
            ("TCBInfo expired", |e| {
                matches!(
                    e,
                    AttestError::CollateralExpired(CollateralExpired::Expired { .. })
                )
            }),
            ("QE Identity expired", |e| {
                matches!(
                    e,
                    AttestError::CollateralExpired(CollateralExpired::Expired { .. })
                )
            }),
            ("Invalid PCK chain: CertExpired", |e| {
                matches!(
                    e,
                    AttestError::CollateralExpired(CollateralExpired::Expired { .. })
                )
            }),
            ("TCBInfo issue date is in the future", |e| {
                matches!(
                    e,
                    AttestError::CollateralExpired(CollateralExpired::NotYetValid { .. })
                )
            }),
            ("Invalid PCK chain: CertNotValidYet", |e| {
                matches!(
                    e,
                    AttestError::CollateralExpired(CollateralExpired::NotYetValid { .. })
                )
            }),
            ("certificate is not yet valid", |e| {
                matches!(
                    e,
                    AttestError::CollateralExpired(CollateralExpired::NotYetValid { .. })
                )
            }),
            ("Debug mode is enabled", |e| {
                matches!(e, AttestError::Insecure(Insecure::Debug { .. }))
            }),
            ("QE report validation failed: debug", |e| {
                matches!(e, AttestError::Insecure(Insecure::Debug { .. }))
            }),
            ("TD migration is enabled", |e| {
                matches!(e, AttestError::Insecure(Insecure::Migration { .. }))
            }),
            ("the TD is migratable", |e| {
                matches!(e, AttestError::Insecure(Insecure::Migration { .. }))
            }),
            ("TDATTRIBUTES.MIGRATABLE is set", |e| {
                matches!(e, AttestError::Insecure(Insecure::Migration { .. }))
            }),
            (
                "TDX module identity check: TDX module MRSIGNER mismatch: expected 00, got 01",
                |e| matches!(e, AttestError::Insecure(Insecure::ForeignTdxModule { .. })),
            ),
            (
                "TDX module identity check: TDX module SEAMATTRIBUTES mismatch at byte 0",
                |e| matches!(e, AttestError::Insecure(Insecure::ForeignTdxModule { .. })),
            ),
            ("mr_signer_seam is not zero", |e| {
                matches!(e, AttestError::Insecure(Insecure::ForeignTdxModule { .. }))
            }),
            ("MRSIGNERSEAM mismatch", |e| {
                matches!(e, AttestError::Insecure(Insecure::ForeignTdxModule { .. }))
            }),
            ("SEPT_VE_DISABLE is not enabled", |e| {
                matches!(e, AttestError::Insecure(Insecure::TdAttributes { .. }))
            }),
            ("sept_ve_disable is off", |e| {
                matches!(e, AttestError::Insecure(Insecure::TdAttributes { .. }))
            }),
            ("Invalid MR service TD", |e| {
                matches!(e, AttestError::Insecure(Insecure::TdAttributes { .. }))
            }),
            ("TD profiling is enabled", |e| {
                matches!(e, AttestError::Insecure(Insecure::TdAttributes { .. }))
            }),
            ("Reserved bits in TD attributes are set", |e| {
                matches!(e, AttestError::Insecure(Insecure::TdAttributes { .. }))
            }),
            ("SERVTD_EXT is enabled", |e| {
                matches!(e, AttestError::Insecure(Insecure::TdAttributes { .. }))
            }),
            ("No matching TCB level found", |e| {
                matches!(
                    e,
                    AttestError::Insecure(Insecure::NoMatchingTcbLevel { .. })
                )
            }),
            (
                "Signature is invalid for tcb_info in quote_collateral",
                |e| matches!(e, AttestError::BadSignature(BadSignature::Other(_))),
            ),
            ("ISV enclave report signature is invalid", |e| {
                matches!(e, AttestError::BadSignature(BadSignature::Other(_)))
            }),
            ("Invalid PCK chain: BadSignature", |e| {
                matches!(e, AttestError::BadSignature(BadSignature::Other(_)))
            }),
            ("Invalid PCK chain: InvalidSignatureForPublicKey", |e| {
                matches!(e, AttestError::BadSignature(BadSignature::Other(_)))
            }),
            ("QE report hash mismatch", |e| {
                matches!(
                    e,
                    AttestError::BadSignature(BadSignature::DigestMismatch { .. })
                )
            }),
            ("Fmspc mismatch", |e| {
                matches!(
                    e,
                    AttestError::CollateralMissing(CollateralMissing::WrongSet { .. })
                )
            }),
            ("TDX quote with non-TDX TCB info in the collateral", |e| {
                matches!(
                    e,
                    AttestError::CollateralMissing(CollateralMissing::WrongSet { .. })
                )
            }),
            (
                "Unsupported QE Identity id/version for the quote TEE type: QE version 2",
                |e| {
                    matches!(
                        e,
                        AttestError::CollateralMissing(CollateralMissing::WrongSet { .. })
                    )
                },
            ),
            ("Unsupported DCAP quote version", |e| {
                matches!(e, AttestError::Malformed(Malformed::Unsupported { .. }))
            }),
            ("Unknown QE vendor ID", |e| {
                matches!(e, AttestError::Malformed(Malformed::Unsupported { .. }))
            }),
            ("TDX TEE quote must have version 4 or 5", |e| {
                matches!(e, AttestError::Malformed(Malformed::Unsupported { .. }))
            }),
            ("Unsupported TEE type: 7", |e| {
                matches!(e, AttestError::Malformed(Malformed::Unsupported { .. }))
            }),
            ("Failed to decode quote: not enough bytes", |e| {
                matches!(e, AttestError::Malformed(Malformed::Other(_)))
            }),
            ("Decode error", |e| {
                matches!(e, AttestError::Malformed(Malformed::Other(_)))
            }),
            ("QE MRSIGNER mismatch: expected 00, got 01", |e| {
                matches!(e, AttestError::UntrustedChain(UntrustedChain::Other(_)))
            }),
        ];
        for (msg, is) in cases {
            let e = map_qvl_error(&anyhow::anyhow!("{msg}"));
            assert!(is(&e), "{msg:?} became {e:?}");
            // The message is dcap-qvl's, unchanged.
            assert_eq!(e.message(), *msg);
        }
        // Every rule's every phrase is exercised above.
        for (needles, _) in RULES {
            for n in *needles {
                assert!(
                    cases.iter().any(|(m, _)| m.contains(n)),
                    "no case for {n:?}"
                );
            }
        }
    }

    #[test]
    fn the_whole_context_chain_is_read_and_kept() {
        let e = anyhow::anyhow!("Debug mode is enabled").context("QE report validation failed");
        let got = map_qvl_error(&e);
        assert!(matches!(got, AttestError::Insecure(Insecure::Debug { .. })));
        assert_eq!(
            got.message(),
            "QE report validation failed: Debug mode is enabled"
        );
        // Revocation wins over expiry when a chain names both.
        let e = anyhow::anyhow!("CertExpired").context("TCB status is invalid: Revoked");
        assert!(matches!(
            map_qvl_error(&e),
            AttestError::Revoked(Revoked::Tcb { .. })
        ));
    }

    #[test]
    fn the_cache_fails_a_signature_as_dcap_qvl_does() {
        assert_eq!(
            quote_signature_invalid(),
            map_qvl_error(&anyhow::anyhow!("ISV enclave report signature is invalid"))
        );
    }
}
