//! dstack's `VersionedAttestation`, decoded.
//!
//! A dstack guest describes itself with one container whatever its platform:
//! the platform's signed quote (plus what the quote needs: a TDX event log,
//! an SNP certificate chain and app config), the RTMR3 runtime events, the
//! 64 bytes of report data it asked the hardware to sign, and its
//! `vm_config`. Two encodings exist (`shared/reference/dstack-wire.md` §3),
//! told apart by the first byte:
//! - `0x00`: V0, SCALE, written unless some runtime
//!   event uses the V2 digest form;
//! - `0x80..=0x8f`, `0xde`, `0xdf` (a msgpack map): V1.
//!
//! Only the TDX and SEV-SNP quote variants are decoded; dstack's GCP-TDX,
//! Nitro Enclave and AWS Nitro TPM variants are refused with
//! [`AttestError::UnsupportedPlatform`], which is what the key service would
//! say about them anyway (no plug-in verifies them).
//!
//! The decoded value is read-only: its only constructor is
//! [`VersionedAttestation::decode`], so a value in hand always came from
//! bytes that decoded completely, with no trailing data.

use attest_core::eventlog::{RuntimeEvent, RuntimeEventVersion};
use attest_core::{AttestError, Malformed, PlatformId, ReportData};

use crate::{v0, v1};

/// Largest encoded attestation accepted: dstack's own limit (10 MiB).
pub const MAX_ATTESTATION_LEN: usize = 10 * 1024 * 1024;

/// Size of an SEV-SNP attestation report (every report version so far).
pub const SNP_REPORT_LEN: usize = 1184;

/// Most certificates accepted in an SNP `cert_chain` (dstack sends two, ASK
/// and VCEK, or one certificate table).
pub const MAX_CERT_CHAIN: usize = 16;

/// Which encoding the attestation arrived in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttestationVersion {
    /// Legacy SCALE (`LegacyVersionedAttestation::V0`).
    V0,
    /// msgpack (`{version: 1, platform, stack}`).
    V1,
}

/// One entry of the TDX event log dstack carries next to the quote.
///
/// In the stripped form a certificate carries, these are the RTMR0 "ACPI
/// DATA" events (digest kept, payload replaced) and the RTMR3 runtime events
/// with their digest cleared; nothing here is trusted, and the key service
/// replays the top-level runtime events instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdxEvent {
    /// Zero-based register index (0 = RTMR0 ... 3 = RTMR3).
    pub imr: u32,
    /// TCG event type (`0x08000001` for dstack runtime events).
    pub event_type: u32,
    /// The digest the log states (empty for stripped runtime events).
    pub digest: Vec<u8>,
    /// The event name (runtime events) or empty.
    pub event: String,
    /// The event payload.
    pub event_payload: Vec<u8>,
    /// Digest form of a runtime event (V1 msgpack may say `version: 2`;
    /// V0 SCALE cannot carry it and means V1).
    pub version: RuntimeEventVersion,
}

/// The TDX part of an attestation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdxQuote {
    /// The DCAP quote, exactly as the hardware produced it (not parsed here).
    pub quote: Vec<u8>,
    /// The event log dstack sends with it (often stripped).
    pub event_log: Vec<TdxEvent>,
}

/// The SEV-SNP part of an attestation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnpQuote {
    /// The signed attestation report; its size is fixed, so it is an array.
    pub report: Box<[u8; SNP_REPORT_LEN]>,
    /// ASK and VCEK (each PEM or DER), or one GHCB certificate table, or
    /// nothing (then the verifier fetches the VCEK).
    pub cert_chain: Vec<Vec<u8>>,
    /// The app config document HOST_DATA binds, as the exact text received.
    pub mr_config: String,
}

/// The platform evidence inside an attestation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlatformQuote {
    /// dstack's `DstackTdx` (V0 variant 0, V1 kind `tdx`).
    Tdx(TdxQuote),
    /// dstack's `DstackAmdSevSnp` (V0 variant 3, V1 kind `sev-snp`).
    SevSnp(SnpQuote),
}

impl PlatformQuote {
    /// The plug-in that verifies this evidence.
    pub fn platform(&self) -> PlatformId {
        match self {
            PlatformQuote::Tdx(_) => PlatformId::TDX,
            PlatformQuote::SevSnp(_) => PlatformId::SEV_SNP,
        }
    }
}

/// The software stack that produced the attestation (V1 `stack.kind`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StackKind {
    /// A dstack CVM (every V0 attestation).
    Dstack,
    /// A dstack pod: its `report_data` is `SHA-512("app-data:" ‖ payload)`,
    /// checked at decoding.
    DstackPod {
        /// The payload the report data commits to.
        report_data_payload: Vec<u8>,
    },
}

/// A decoded dstack attestation (V0 or V1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionedAttestation {
    pub(crate) version: AttestationVersion,
    pub(crate) quote: PlatformQuote,
    pub(crate) stack: StackKind,
    pub(crate) runtime_events: Vec<RuntimeEvent>,
    pub(crate) report_data: ReportData,
    pub(crate) config: String,
}

impl VersionedAttestation {
    /// Decodes a V0 (SCALE) or V1 (msgpack) attestation. The whole input
    /// must be the one attestation; at most [`MAX_ATTESTATION_LEN`] bytes.
    ///
    /// Errors: [`AttestError::Malformed`] (naming the field and offset) for
    /// bytes that do not decode; [`AttestError::UnsupportedPlatform`] for
    /// dstack's GCP-TDX, Nitro Enclave and AWS Nitro TPM variants.
    pub fn decode(bytes: &[u8]) -> Result<Self, AttestError> {
        if bytes.len() > MAX_ATTESTATION_LEN {
            return Err(Malformed::TooLarge {
                what: "dstack attestation".into(),
                size: bytes.len(),
                max: MAX_ATTESTATION_LEN,
            }
            .into());
        }
        match bytes.first() {
            Some(0x00) => v0::decode(bytes),
            Some(0x80..=0x8f | 0xde | 0xdf) => v1::decode(bytes),
            Some(b) => Err(Malformed::BadValue {
                what: "dstack attestation first byte".into(),
                expected: "V0 (0x00) or a V1 msgpack map (0x80..=0x8f, 0xde, 0xdf)".into(),
                found: format!("{b:#04x}"),
            }
            .into()),
            None => Err(Malformed::Truncated {
                context: "dstack attestation",
                field: "version byte".into(),
                offset: 0,
                needed: 1,
                available: 0,
            }
            .into()),
        }
    }

    /// The encoding it arrived in.
    pub fn version(&self) -> AttestationVersion {
        self.version
    }

    /// The platform evidence.
    pub fn quote(&self) -> &PlatformQuote {
        &self.quote
    }

    /// The plug-in that verifies it.
    pub fn platform(&self) -> PlatformId {
        self.quote.platform()
    }

    /// The software stack (always [`StackKind::Dstack`] for V0).
    pub fn stack(&self) -> &StackKind {
        &self.stack
    }

    /// The runtime events (RTMR3 on TDX), complete and in order: what the
    /// key service replays.
    pub fn runtime_events(&self) -> &[RuntimeEvent] {
        &self.runtime_events
    }

    /// The report data the attestation claims its quote carries.
    pub fn report_data(&self) -> &ReportData {
        &self.report_data
    }

    /// The guest's `vm_config` JSON (older guests: the whole sys-config).
    pub fn config(&self) -> &str {
        &self.config
    }
}
