//! The TDX boot event log as firmware leaves it: the CCEL log area.
//!
//! TCG PC Client crypto-agile format: one legacy SHA-1-format header event
//! (`Spec ID Event03`, listing the digest algorithms and their sizes), then
//! `TCG_PCR_EVENT2` records, then 0xFF padding up to the area's minimum
//! length. MR index 1..=4 are RTMR0..3 (index 0 would be MRTD, which is never
//! logged; such records are skipped, as dstack does).

use attest_core::AttestError;
use attest_core::eventlog::{LogEvent, MAX_EVENTS, RuntimeEventVersion};

/// TCG algorithm id of SHA-384.
const TPM_ALG_SHA384: u16 = 0x000C;
/// The end-of-log marker (and the padding byte pattern).
const END_MARKER: u32 = 0xFFFF_FFFF;
const EV_NO_ACTION: u32 = 3;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], AttestError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                AttestError::Malformed(format!(
                    "CCEL log truncated: {what} needs {n} bytes at offset {}, {} left",
                    self.pos,
                    self.buf.len().saturating_sub(self.pos)
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u16(&mut self, what: &str) -> Result<u16, AttestError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, AttestError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn peek_u32(&self) -> Option<u32> {
        let b = self.buf.get(self.pos..self.pos + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Parses a CCEL log area into events with their SHA-384 digests.
pub fn parse_ccel(area: &[u8]) -> Result<Vec<LogEvent>, AttestError> {
    let mut r = Reader { buf: area, pos: 0 };
    // Header event, SHA-1 format.
    let _pcr = r.u32("header pcr index")?;
    let ty = r.u32("header event type")?;
    if ty != EV_NO_ACTION {
        return Err(AttestError::Malformed(format!(
            "CCEL log must start with an EV_NO_ACTION spec id event, found type {ty:#x}"
        )));
    }
    r.take(20, "header digest")?;
    let size = r.u32("header event size")? as usize;
    let spec = r.take(size, "spec id event")?;
    let sizes = parse_spec_id(spec)?;
    if !sizes.iter().any(|(alg, _)| *alg == TPM_ALG_SHA384) {
        return Err(AttestError::Malformed(
            "CCEL log has no SHA-384 digests".into(),
        ));
    }

    let mut events = Vec::new();
    loop {
        match r.peek_u32() {
            None | Some(END_MARKER) => break,
            Some(_) => {}
        }
        if events.len() >= MAX_EVENTS {
            return Err(AttestError::Malformed(format!(
                "CCEL log has more than {MAX_EVENTS} events"
            )));
        }
        let mr_index = r.u32("mr index")?;
        let event_type = r.u32("event type")?;
        let count = r.u32("digest count")?;
        if count as usize > sizes.len() {
            return Err(AttestError::Malformed(format!(
                "CCEL event {} lists {count} digests, the log declares {} algorithms",
                events.len(),
                sizes.len()
            )));
        }
        let mut sha384 = None;
        for _ in 0..count {
            let alg = r.u16("digest algorithm")?;
            let len = sizes
                .iter()
                .find(|(a, _)| *a == alg)
                .map(|(_, l)| *l)
                .ok_or_else(|| {
                    AttestError::Malformed(format!(
                        "CCEL event uses undeclared algorithm {alg:#06x}"
                    ))
                })?;
            let d = r.take(len, "digest")?;
            if alg == TPM_ALG_SHA384 {
                sha384 = Some(d.to_vec());
            }
        }
        let size = r.u32("event size")? as usize;
        let data = r.take(size, "event data")?;
        if mr_index == 0 {
            continue;
        }
        let digest = sha384
            .ok_or_else(|| AttestError::Malformed("CCEL event without a SHA-384 digest".into()))?;
        events.push(LogEvent {
            register: mr_index - 1,
            event_type,
            digest,
            name: String::new(),
            payload: data.to_vec(),
            version: RuntimeEventVersion::V1,
        });
    }
    Ok(events)
}

/// `TCG_EfiSpecIDEvent`: returns the (algorithm, digest size) list.
fn parse_spec_id(spec: &[u8]) -> Result<Vec<(u16, usize)>, AttestError> {
    let mut r = Reader { buf: spec, pos: 0 };
    let sig = r.take(16, "spec id signature")?;
    if sig != b"Spec ID Event03\0" {
        return Err(AttestError::Malformed(
            "CCEL spec id event has the wrong signature".into(),
        ));
    }
    r.take(4 + 1 + 1 + 1 + 1, "spec id versions")?;
    let n = r.u32("algorithm count")?;
    if n == 0 || n > 16 {
        return Err(AttestError::Malformed(format!(
            "CCEL spec id lists {n} algorithms"
        )));
    }
    (0..n)
        .map(|_| Ok((r.u16("algorithm id")?, r.u16("digest size")? as usize)))
        .collect()
}
