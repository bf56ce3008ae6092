//! V0: dstack's legacy SCALE encoding of an attestation.
//!
//! ```text
//! 00                                LegacyVersionedAttestation::V0
//! u8 variant                        0 DstackTdx | 1 DstackGcpTdx | 2 DstackNitroEnclave
//!                                   | 3 DstackAmdSevSnp | 4 DstackAwsNitroTpm
//!   0: quote Vec<u8>, event_log Vec<TdxEvent>
//!      TdxEvent = imr u32, event_type u32, digest Vec<u8>, event String, event_payload Vec<u8>
//!   3: report Vec<u8>, cert_chain Vec<Vec<u8>>, mr_config String
//! runtime_events Vec<{event String, payload Vec<u8>}>
//! report_data [u8; 64]
//! config String
//! ```
//!
//! Variants 1, 2 and 4 are refused at their tag: nothing after it is read,
//! since no verifier exists for them. Trailing bytes are rejected, as dstack
//! rejects them.

use attest_core::eventlog::{MAX_EVENT_NAME, MAX_EVENTS, RuntimeEvent, RuntimeEventVersion};
use attest_core::{AttestError, Malformed, PlatformId, ReportData};

use crate::attestation::{
    AttestationVersion, MAX_CERT_CHAIN, PlatformQuote, SNP_REPORT_LEN, SnpQuote, StackKind,
    TdxEvent, TdxQuote, VersionedAttestation,
};
use crate::scale::Scale;

const CONTEXT: &str = "dstack attestation (V0 SCALE)";

/// Smallest encoding of a `TdxEvent`: two `u32`s and three empty vectors.
const MIN_TDX_EVENT: usize = 11;
/// Smallest encoding of a `RuntimeEvent`: two empty vectors.
const MIN_RUNTIME_EVENT: usize = 2;

/// Decodes a whole V0 attestation.
pub(crate) fn decode(bytes: &[u8]) -> Result<VersionedAttestation, AttestError> {
    let mut s = Scale::new(bytes, CONTEXT);
    let at = s.clone();
    let version = s.u8("version")?;
    if version != 0 {
        return Err(at.wrong_value("version", "V0", version));
    }
    let att = attestation_body(&mut s)?;
    s.finish()?;
    Ok(att)
}

/// Decodes the body after the version byte.
fn attestation_body(s: &mut Scale<'_>) -> Result<VersionedAttestation, AttestError> {
    let at = s.clone();
    let quote = match s.u8("quote variant")? {
        0 => PlatformQuote::Tdx(tdx_quote(s)?),
        3 => PlatformQuote::SevSnp(snp_quote(s)?),
        1 => {
            return Err(AttestError::UnsupportedPlatform(PlatformId::from_static(
                "gcp-tdx",
            )));
        }
        2 => {
            return Err(AttestError::UnsupportedPlatform(PlatformId::from_static(
                "nitro-enclave",
            )));
        }
        4 => {
            return Err(AttestError::UnsupportedPlatform(PlatformId::from_static(
                "aws-nitro-tpm",
            )));
        }
        v => {
            return Err(Malformed::UnknownVariant {
                context: CONTEXT,
                field: "quote variant".into(),
                offset: at.position(),
                tag: v.into(),
            }
            .into());
        }
    };
    let n = s.count("runtime_events", MIN_RUNTIME_EVENT, MAX_EVENTS)?;
    let mut runtime_events = Vec::with_capacity(n);
    for i in 0..n {
        let name = s.string(&format!("runtime_events[{i}].event"), MAX_EVENT_NAME)?;
        let payload = s.bytes(&format!("runtime_events[{i}].payload"))?.to_vec();
        runtime_events.push(RuntimeEvent {
            name,
            payload,
            // V0 cannot carry a version: dstack writes V1 whenever every
            // runtime event is V1.
            version: RuntimeEventVersion::V1,
        });
    }
    let report_data = ReportData(s.array::<64>("report_data")?);
    let config = s.string("config", usize::MAX)?;
    Ok(VersionedAttestation {
        version: AttestationVersion::V0,
        quote,
        stack: StackKind::Dstack,
        runtime_events,
        report_data,
        config,
    })
}

fn tdx_quote(s: &mut Scale<'_>) -> Result<TdxQuote, AttestError> {
    let quote = s.bytes("quote")?.to_vec();
    let n = s.count("event_log", MIN_TDX_EVENT, MAX_EVENTS)?;
    let mut event_log = Vec::with_capacity(n);
    for i in 0..n {
        event_log.push(TdxEvent {
            imr: s.u32(&format!("event_log[{i}].imr"))?,
            event_type: s.u32(&format!("event_log[{i}].event_type"))?,
            digest: s.bytes(&format!("event_log[{i}].digest"))?.to_vec(),
            event: s.string(&format!("event_log[{i}].event"), MAX_EVENT_NAME)?,
            event_payload: s.bytes(&format!("event_log[{i}].event_payload"))?.to_vec(),
            version: RuntimeEventVersion::V1,
        });
    }
    Ok(TdxQuote { quote, event_log })
}

fn snp_quote(s: &mut Scale<'_>) -> Result<SnpQuote, AttestError> {
    let at = s.clone();
    let report = s.bytes("report")?;
    let report = <[u8; SNP_REPORT_LEN]>::try_from(report)
        .map_err(|_| at.field_length("report", "an SNP report", SNP_REPORT_LEN, report.len()))?;
    let n = s.count("cert_chain", 1, MAX_CERT_CHAIN)?;
    let mut cert_chain = Vec::with_capacity(n);
    for i in 0..n {
        cert_chain.push(s.bytes(&format!("cert_chain[{i}]"))?.to_vec());
    }
    let mr_config = s.string("mr_config", usize::MAX)?;
    Ok(SnpQuote {
        report: Box::new(report),
        cert_chain,
        mr_config,
    })
}
