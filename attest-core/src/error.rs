//! Verification errors: distinct kinds a caller can act on.

use std::fmt;

use crate::{PlatformId, ReportData};

/// Why evidence was not turned into a [`crate::VerifiedIdentity`].
///
/// Each variant is a kind a caller can act on (retry later, fix the request,
/// page the operator, deny). Messages say what was expected and what was
/// found; they never carry secrets. `Display` prints `<kind>: <message>`, the
/// form the CLI and gRPC status messages use.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttestError {
    /// The evidence (or a document in it) cannot be parsed, is truncated,
    /// oversized, or has a field of the wrong size or type.
    Malformed(String),
    /// A signature over the evidence or over collateral does not verify.
    BadSignature(String),
    /// A certificate chain does not lead to the pinned vendor root, or a
    /// certificate is outside its validity window.
    UntrustedChain(String),
    /// Collateral needed for the verdict (TCB info, CRL, VCEK) is not known.
    CollateralMissing(String),
    /// Collateral exists but is outside its validity window at the
    /// verification time.
    CollateralExpired(String),
    /// A certificate in the chain, or the platform's TCB, is revoked.
    Revoked(String),
    /// The report data is not the value the request binding demands
    /// (replayed or foreign evidence).
    BindingMismatch {
        /// What the verifier required (boxed to keep the error small).
        expected: Box<ReportData>,
        /// What the evidence carries.
        found: Box<ReportData>,
    },
    /// A measured value does not match the document that claims to describe
    /// it: an event-log replay that does not reproduce a register, or an app
    /// config whose digest is not HOST_DATA.
    IdentityMismatch {
        /// The register or field that did not match (`rtmr3`, `host_data`, ...).
        what: String,
        /// The value the evidence's measurement holds.
        expected: String,
        /// The value recomputed from the supplied document.
        found: String,
    },
    /// Genuine evidence describing a configuration that is never acceptable
    /// (debug enabled, migration agent, wrong privilege level, ...).
    Insecure(String),
    /// A collateral source (PCS/PCCS, AMD KDS) could not be reached in time.
    Unavailable(String),
    /// No verifier is registered for this platform.
    UnsupportedPlatform(PlatformId),
}

/// The kind of an [`AttestError`], without its context; stable names for
/// logs, metrics labels and the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`AttestError::Malformed`].
    Malformed,
    /// See [`AttestError::BadSignature`].
    BadSignature,
    /// See [`AttestError::UntrustedChain`].
    UntrustedChain,
    /// See [`AttestError::CollateralMissing`].
    CollateralMissing,
    /// See [`AttestError::CollateralExpired`].
    CollateralExpired,
    /// See [`AttestError::Revoked`].
    Revoked,
    /// See [`AttestError::BindingMismatch`].
    BindingMismatch,
    /// See [`AttestError::IdentityMismatch`].
    IdentityMismatch,
    /// See [`AttestError::Insecure`].
    Insecure,
    /// See [`AttestError::Unavailable`].
    Unavailable,
    /// See [`AttestError::UnsupportedPlatform`].
    UnsupportedPlatform,
}

impl ErrorKind {
    /// The kind's stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Malformed => "malformed",
            ErrorKind::BadSignature => "bad_signature",
            ErrorKind::UntrustedChain => "untrusted_chain",
            ErrorKind::CollateralMissing => "collateral_missing",
            ErrorKind::CollateralExpired => "collateral_expired",
            ErrorKind::Revoked => "revoked",
            ErrorKind::BindingMismatch => "binding_mismatch",
            ErrorKind::IdentityMismatch => "identity_mismatch",
            ErrorKind::Insecure => "insecure",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::UnsupportedPlatform => "unsupported_platform",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AttestError {
    /// This error's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AttestError::Malformed(_) => ErrorKind::Malformed,
            AttestError::BadSignature(_) => ErrorKind::BadSignature,
            AttestError::UntrustedChain(_) => ErrorKind::UntrustedChain,
            AttestError::CollateralMissing(_) => ErrorKind::CollateralMissing,
            AttestError::CollateralExpired(_) => ErrorKind::CollateralExpired,
            AttestError::Revoked(_) => ErrorKind::Revoked,
            AttestError::BindingMismatch { .. } => ErrorKind::BindingMismatch,
            AttestError::IdentityMismatch { .. } => ErrorKind::IdentityMismatch,
            AttestError::Insecure(_) => ErrorKind::Insecure,
            AttestError::Unavailable(_) => ErrorKind::Unavailable,
            AttestError::UnsupportedPlatform(_) => ErrorKind::UnsupportedPlatform,
        }
    }

    /// The message without the kind prefix.
    pub fn message(&self) -> String {
        match self {
            AttestError::Malformed(m)
            | AttestError::BadSignature(m)
            | AttestError::UntrustedChain(m)
            | AttestError::CollateralMissing(m)
            | AttestError::CollateralExpired(m)
            | AttestError::Revoked(m)
            | AttestError::Insecure(m)
            | AttestError::Unavailable(m) => m.clone(),
            AttestError::BindingMismatch { expected, found } => {
                format!("report data: expected {expected}, found {found}")
            }
            AttestError::IdentityMismatch {
                what,
                expected,
                found,
            } => format!("{what}: evidence has {expected}, recomputed {found}"),
            AttestError::UnsupportedPlatform(p) => {
                format!("no verifier registered for platform {p:?}", p = p.as_str())
            }
        }
    }

    /// Shorthand for an [`AttestError::IdentityMismatch`] over byte values.
    pub fn identity_mismatch(what: &str, expected: &[u8], found: &[u8]) -> Self {
        AttestError::IdentityMismatch {
            what: what.to_owned(),
            expected: hex::encode(expected),
            found: hex::encode(found),
        }
    }
}

impl fmt::Display for AttestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message())
    }
}

impl std::error::Error for AttestError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_kind_then_message() {
        let e = AttestError::identity_mismatch("rtmr3", &[0xaa], &[0xbb]);
        assert_eq!(
            e.to_string(),
            "identity_mismatch: rtmr3: evidence has aa, recomputed bb"
        );
        assert_eq!(e.kind(), ErrorKind::IdentityMismatch);
        let e = AttestError::UnsupportedPlatform(PlatformId::from_static("nitro"));
        assert_eq!(
            e.to_string(),
            "unsupported_platform: no verifier registered for platform \"nitro\""
        );
    }
}
