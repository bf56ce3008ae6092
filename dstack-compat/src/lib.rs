//! dstack's wire formats, decoded into this project's types.
//!
//! Unmodified dstack guests prove themselves with formats of their own
//! (`shared/reference/dstack-wire.md`): a `VersionedAttestation` (V0 SCALE or
//! V1 msgpack) inside an RA-TLS client certificate, the legacy pair of a raw
//! TDX quote and a JSON event log in older certificates, and a SCALE-encoded
//! certificate signing request for `SignCert`. This crate turns those bytes
//! into [`attest_core::Evidence`] that the ordinary platform plug-ins verify,
//! so the dstack-compatible front end adds a decoder, not a second verifier.
//!
//! What it does **not** do: verify a quote or a report, fetch anything, or
//! decide anything about an app. Decoding is total: every public function
//! returns `Ok` or a typed [`AttestError`] for any input, never panics, and
//! bounds every length by the bytes actually present before allocating, so
//! a fuzz target can call the decoders directly.
//!
//! Files, one concept each:
//! - `scale`: SCALE primitives (compact integers, vectors, strings);
//! - `msgpack`: the msgpack subset V1 uses;
//! - [`attestation`]: the decoded `VersionedAttestation` and its dispatch,
//!   `v0` and `v1` the two encodings;
//! - [`binding`]: the `ratls-cert:` report-data binding;
//! - [`ratls`]: RA-TLS certificate extensions and the legacy quote + log pair;
//! - [`evidence`]: the mapping to [`attest_core::Evidence`];
//! - [`csr`]: `SignCert` requests (V1 and V2) and their signature;
//! - `quote`: the few TDX quote and SNP report offsets read here (legacy
//!   report data, inspection);
//! - [`inspect`]: decode + claimed identity + RTMR3 replay, for tools;
//! - [`app_info`]: the AppInfo an issued certificate states (`.1.9`).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod app_info;
pub mod attestation;
pub mod binding;
pub mod csr;
pub mod evidence;
pub mod inspect;
mod msgpack;
mod quote;
pub mod ratls;
mod scale;
mod v0;
mod v1;

pub use app_info::AppInfo;
pub use attest_core::AttestError;
pub use attestation::{
    AttestationVersion, MAX_ATTESTATION_LEN, PlatformQuote, SNP_REPORT_LEN, SnpQuote, StackKind,
    TdxEvent, TdxQuote, VersionedAttestation,
};
pub use binding::{RATLS_CERT_TAG, check_ratls_binding, ratls_report_data};
pub use csr::{CertConfig, CertSigningRequest, CsrVersion, SignedCsr};
pub use inspect::{Claimed, Inspection, MeasurementCheck};
pub use ratls::{GuestAttestation, LegacyTdxAttestation, RaTlsCert, RaTlsExtensions};

use attest_core::eventlog::RegisterSet;

/// TDX's runtime measurement registers as dstack uses them: RTMR0..3, the
/// app identity in RTMR3 (the same set `attest-tdx` replays against).
pub const DSTACK_TDX_REGISTERS: RegisterSet = attest_core::eventlog::TDX_RTMRS;

/// Prefixes a decoding error with where it happened (an enclosing structure),
/// keeping its kind: a CSR's attestation, a certificate extension.
pub(crate) fn within(where_: &str, e: AttestError) -> AttestError {
    e.within(where_)
}
