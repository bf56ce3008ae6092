//! The binary TCG PC Client crypto-agile event log, as firmware leaves it
//! (the CCEL log area of a TDX guest; a TPM's boot log has the same format).
//!
//! One legacy SHA-1-format header event (`Spec ID Event03`, listing the
//! digest algorithms and their sizes), then `TCG_PCR_EVENT2` records, then
//! 0xFF padding up to the area's minimum length. Platform-neutral: the
//! guest client reads it without a verifier, and a vTPM plug-in can use it.

use super::{EV_NO_ACTION, LogEvent, MAX_EVENTS};
use crate::reader::Reader;
use crate::{AttestError, Malformed};

/// TCG algorithm id of SHA-256.
pub const TPM_ALG_SHA256: u16 = 0x000B;
/// TCG algorithm id of SHA-384.
pub const TPM_ALG_SHA384: u16 = 0x000C;
/// The end-of-log marker (and the padding byte pattern).
const END_MARKER: u32 = 0xFFFF_FFFF;
/// Most digest algorithms a spec id event may declare.
const MAX_ALGORITHMS: u32 = 16;

/// One record of a TCG log, before it is mapped onto registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcgRecord {
    /// PCR / MR index as the log writes it.
    pub index: u32,
    /// TCG event type.
    pub event_type: u32,
    /// The digest for the requested algorithm.
    pub digest: Vec<u8>,
    /// Event data.
    pub data: Vec<u8>,
}

/// Parses a TCG crypto-agile log, keeping each record's digest for
/// `algorithm` (which the log must declare and every record must carry).
pub fn parse_tcg_log(area: &[u8], algorithm: u16) -> Result<Vec<TcgRecord>, AttestError> {
    let mut r = Reader::new(area, "TCG event log");
    // Header event, SHA-1 format.
    r.skip(4, "header pcr index")?;
    let ty = r.u32_le("header event type")?;
    if ty != EV_NO_ACTION {
        return Err(Malformed::BadValue {
            what: "TCG event log's first event type".into(),
            expected: "EV_NO_ACTION (0x3), the spec id event".into(),
            found: format!("{ty:#x}"),
        }
        .into());
    }
    r.skip(20, "header digest")?;
    let size = r.u32_le("header event size")? as usize;
    let sizes = parse_spec_id(r.sub(size, "spec id event")?)?;
    if !sizes.iter().any(|(alg, _)| *alg == algorithm) {
        return Err(Malformed::Missing {
            what: "digest algorithm",
            detail: format!("TCG event log declares no digests of algorithm {algorithm:#06x}"),
        }
        .into());
    }

    let mut records = Vec::new();
    loop {
        match r.peek_u32_le() {
            None | Some(END_MARKER) => break,
            Some(_) => {}
        }
        if records.len() >= MAX_EVENTS {
            return Err(Malformed::TooMany {
                what: "TCG event log".into(),
                items: "events or more",
                count: MAX_EVENTS + 1,
                max: MAX_EVENTS,
            }
            .into());
        }
        let index = r.u32_le("mr index")?;
        let event_type = r.u32_le("event type")?;
        let count = r.u32_le("digest count")?;
        if count as usize > sizes.len() {
            return Err(Malformed::BadValue {
                what: format!("TCG event {} digest count", records.len()),
                expected: format!("at most {}, the algorithms the log declares", sizes.len()),
                found: count.to_string(),
            }
            .into());
        }
        let mut wanted = None;
        for _ in 0..count {
            let alg = r.u16_le("digest algorithm")?;
            let len = sizes
                .iter()
                .find(|(a, _)| *a == alg)
                .map(|(_, l)| *l)
                .ok_or_else(|| Malformed::BadValue {
                    what: format!("TCG event {} digest algorithm", records.len()),
                    expected: "an algorithm the log declares".into(),
                    found: format!("{alg:#06x}"),
                })?;
            let d = r.take(len, "digest")?;
            if alg == algorithm {
                wanted = Some(d.to_vec());
            }
        }
        let size = r.u32_le("event size")? as usize;
        let data = r.take(size, "event data")?;
        let digest = wanted.ok_or_else(|| Malformed::Missing {
            what: "digest",
            detail: format!(
                "TCG event {} has no digest of algorithm {algorithm:#06x}",
                records.len()
            ),
        })?;
        records.push(TcgRecord {
            index,
            event_type,
            digest,
            data: data.to_vec(),
        });
    }
    // Whatever follows the end marker must be padding.
    if r.rest().iter().any(|b| *b != 0xFF) {
        return Err(Malformed::TrailingData {
            context: "TCG event log (after its end marker)",
            offset: r.position(),
            extra: r.remaining(),
        }
        .into());
    }
    Ok(records)
}

/// `TCG_EfiSpecIDEvent`: returns the (algorithm, digest size) list.
fn parse_spec_id(mut r: Reader<'_>) -> Result<Vec<(u16, usize)>, AttestError> {
    let sig = r.take(16, "spec id signature")?;
    if sig != b"Spec ID Event03\0" {
        return Err(Malformed::BadValue {
            what: "TCG spec id signature".into(),
            expected: "\"Spec ID Event03\"".into(),
            found: format!("{:?}", String::from_utf8_lossy(sig)),
        }
        .into());
    }
    r.skip(4 + 1 + 1 + 1 + 1, "spec id versions")?;
    let n = r.u32_le("algorithm count")?;
    if n == 0 || n > MAX_ALGORITHMS {
        return Err(Malformed::BadValue {
            what: "TCG spec id algorithm count".into(),
            expected: format!("1..={MAX_ALGORITHMS}"),
            found: n.to_string(),
        }
        .into());
    }
    (0..n)
        .map(|_| Ok((r.u16_le("algorithm id")?, r.u16_le("digest size")? as usize)))
        .collect()
}

/// Parses a CC event log area (ACPI CCEL, UEFI CC measurement protocol)
/// into events on RTMR0..3 with their SHA-384 digests: MR index 1..=4 is
/// RTMR0..3; index 0 (MRTD, never extended at run time) is skipped, as
/// dstack does.
pub fn parse_ccel(area: &[u8]) -> Result<Vec<LogEvent>, AttestError> {
    Ok(parse_tcg_log(area, TPM_ALG_SHA384)?
        .into_iter()
        .filter(|rec| rec.index != CCEL_MR_MRTD)
        .map(|rec| {
            LogEvent::boot(
                rec.index - CCEL_MR_RTMR0,
                rec.event_type,
                rec.digest,
                rec.data,
            )
        })
        .collect())
}

/// CC measurement register index of MRTD in a CCEL record.
const CCEL_MR_MRTD: u32 = 0;
/// CC measurement register index of RTMR0 (RTMR`i` is `i + 1`).
const CCEL_MR_RTMR0: u32 = 1;
