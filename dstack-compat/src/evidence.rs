//! From dstack's attestation to this project's [`Evidence`].
//!
//! The point of the mapping is that nothing downstream knows dstack: the
//! ordinary TDX and SEV-SNP plug-ins verify the result.
//! - TDX: `quote` is the DCAP quote; `event_log` is the top-level runtime
//!   events written as dstack's JSON list on IMR 3 (V2 events keep
//!   `"version": 2`; digests are left empty, the replay recomputes them and
//!   never needs a preimage). The stripped boot events dstack carries next to
//!   the quote are left out: RTMR0..2 cannot be replayed from them, and the
//!   signed quote gives those registers anyway.
//! - Legacy TDX (`.1.1` + `.1.2`): the quote and the JSON log exactly as
//!   received (a full log, so every register can be replayed).
//! - SEV-SNP: `quote` is the 1184-byte report, `certificates` the
//!   `cert_chain` (ASK and VCEK, PEM or DER, as one PEM bundle; a single
//!   GHCB certificate table passed through unchanged), `app_config` the
//!   `mr_config` bytes exactly as received (HOST_DATA hashes them). Runtime
//!   events are not carried: on SNP the identity is the launch-bound config.

use attest_core::der::tlv;
use attest_core::eventlog::{EventBody, LogEvent, RuntimeEvent, to_json_event_log};
use attest_core::reader::Reader;
use attest_core::{AttestError, Evidence, Malformed, PlatformId};

use crate::DSTACK_TDX_REGISTERS;
use crate::attestation::{PlatformQuote, VersionedAttestation};
use crate::ratls::{GuestAttestation, LegacyTdxAttestation};

/// Runtime events as log events on the app register (RTMR3).
pub(crate) fn runtime_log_events(events: &[RuntimeEvent]) -> Vec<LogEvent> {
    events
        .iter()
        .map(|e| LogEvent {
            register: DSTACK_TDX_REGISTERS.app_register,
            body: EventBody::Runtime(e.clone()),
        })
        .collect()
}

/// dstack's JSON event log holding `events` on IMR 3, digests empty.
pub fn runtime_events_json(events: &[RuntimeEvent]) -> Vec<u8> {
    to_json_event_log(&runtime_log_events(events))
}

/// Whether `b` is exactly one DER SEQUENCE (a certificate's outer shape).
fn is_one_der_sequence(b: &[u8]) -> bool {
    let mut r = Reader::new(b, "certificate");
    matches!(tlv(&mut r), Ok(t) if t.tag == 0x30) && r.is_empty()
}

/// The DER certificates in a PEM text; every block must be a CERTIFICATE.
fn pem_certificates(text: &[u8], i: usize) -> Result<Vec<Vec<u8>>, AttestError> {
    let bad = |m: String| {
        AttestError::from(Malformed::Syntax {
            what: "PEM".into(),
            detail: m,
        })
        .within(format!("SNP cert_chain[{i}]"))
    };
    let blocks = pem::parse_many(text).map_err(|e| bad(format!("bad PEM: {e}")))?;
    if blocks.is_empty() {
        return Err(bad("PEM text without a certificate".into()));
    }
    blocks
        .into_iter()
        .map(|p| {
            if p.tag() != "CERTIFICATE" {
                return Err(AttestError::from(Malformed::PemLabel {
                    expected: "CERTIFICATE",
                    found: p.tag().to_owned(),
                })
                .within(format!("SNP cert_chain[{i}]")));
            }
            if !is_one_der_sequence(p.contents()) {
                return Err(bad("PEM block is not one DER certificate".into()));
            }
            Ok(p.into_contents())
        })
        .collect()
}

/// dstack's SNP `cert_chain` as [`Evidence::certificates`]: empty when empty;
/// a single element that is neither PEM nor one DER certificate is a GHCB
/// certificate table and passes through unchanged; otherwise every element
/// must be PEM or DER certificates, concatenated as one PEM bundle (LF line
/// endings, in the order received).
pub fn snp_certificates(cert_chain: &[Vec<u8>]) -> Result<Vec<u8>, AttestError> {
    let is_pem = |c: &[u8]| c.trim_ascii_start().starts_with(b"-----BEGIN");
    if let [only] = cert_chain {
        if !is_pem(only) && !is_one_der_sequence(only) {
            return Ok(only.clone());
        }
    }
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    let mut bundle = String::new();
    for (i, c) in cert_chain.iter().enumerate() {
        let ders = if is_pem(c) {
            pem_certificates(c, i)?
        } else if is_one_der_sequence(c) {
            vec![c.clone()]
        } else {
            return Err(AttestError::from(Malformed::BadValue {
                what: "certificate".into(),
                expected: "a PEM or a DER certificate".into(),
                found: format!("{} bytes of neither", c.len()),
            })
            .within(format!("SNP cert_chain[{i}]")));
        };
        for der in ders {
            bundle.push_str(&pem::encode_config(
                &pem::Pem::new("CERTIFICATE", der),
                config,
            ));
        }
    }
    Ok(bundle.into_bytes())
}

impl VersionedAttestation {
    /// The evidence the platform plug-in verifies (see the module doc).
    /// Fails only on an SNP `cert_chain` that is not certificates.
    pub fn to_evidence(&self) -> Result<Evidence, AttestError> {
        Ok(match self.quote() {
            PlatformQuote::Tdx(t) => Evidence {
                platform: PlatformId::TDX,
                quote: t.quote.clone(),
                event_log: runtime_events_json(self.runtime_events()),
                ..Evidence::default()
            },
            PlatformQuote::SevSnp(s) => Evidence {
                platform: PlatformId::SEV_SNP,
                quote: s.report.to_vec(),
                certificates: snp_certificates(&s.cert_chain)?,
                event_log: Vec::new(),
                app_config: s.mr_config.as_bytes().to_vec(),
            },
        })
    }
}

impl LegacyTdxAttestation {
    /// TDX evidence: the quote and the JSON event log as received.
    pub fn to_evidence(&self) -> Evidence {
        Evidence {
            platform: PlatformId::TDX,
            quote: self.quote().to_vec(),
            event_log: self.event_log().to_vec(),
            ..Evidence::default()
        }
    }
}

impl GuestAttestation {
    /// The evidence the platform plug-in verifies.
    pub fn to_evidence(&self) -> Result<Evidence, AttestError> {
        match self {
            GuestAttestation::Versioned(a) => a.to_evidence(),
            GuestAttestation::Legacy(l) => Ok(l.to_evidence()),
        }
    }
}
