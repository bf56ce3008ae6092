//! The parts of a TDX quote the identity is made of.

use attest_core::AttestError;
use attest_core::eventlog::{self, LogEvent};
use dcap_qvl::quote::{Quote, Report};

/// A parsed (not yet verified) TDX quote.
pub struct TdQuote {
    /// Quote version (4 or 5).
    pub version: u16,
    /// The parsed quote.
    pub quote: Quote,
    td10: dcap_qvl::quote::TDReport10,
}

impl TdQuote {
    /// Parses a TDX quote; SGX quotes and unknown layouts are rejected.
    pub fn parse(raw: &[u8]) -> Result<Self, AttestError> {
        check_framing(raw)?;
        let quote =
            Quote::parse(raw).map_err(|e| AttestError::Malformed(format!("TDX quote: {e:#}")))?;
        let td10 = match (quote.header.tee_type, quote.report.as_td10()) {
            (0x81, Some(td10)) => *td10,
            (tee, _) => {
                return Err(AttestError::Malformed(format!(
                    "not a TDX quote (TEE type {tee:#x})"
                )));
            }
        };
        Ok(TdQuote {
            version: quote.header.version,
            quote,
            td10,
        })
    }

    /// The TD 1.0 part of the body, present in every TDX quote.
    pub fn td10(&self) -> &dcap_qvl::quote::TDReport10 {
        &self.td10
    }

    /// RTMR0..3.
    pub fn rtmrs(&self) -> [[u8; 48]; 4] {
        let r = self.td10();
        [r.rt_mr0, r.rt_mr1, r.rt_mr2, r.rt_mr3]
    }

    /// Body type name: `td10`, `td15` or `td15ex`.
    pub fn body_type(&self) -> &'static str {
        match &self.quote.report {
            Report::TD10(_) => "td10",
            Report::TD15(_) => "td15",
            Report::TD15Ex(_) => "td15ex",
            Report::SgxEnclave(_) => "sgx",
        }
    }
}

/// Parses a TDX event log: dstack's JSON list, or a raw CCEL log area.
pub fn parse_event_log(bytes: &[u8]) -> Result<Vec<LogEvent>, AttestError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => eventlog::parse_json_event_log(bytes),
        Some(_) => eventlog::tcg::parse_ccel(bytes),
        None => Err(AttestError::Malformed("the event log is empty".into())),
    }
}

/// The declared end of a quote: header (+ v5 body descriptor) + body +
/// `u32 sig_data_len` + signature data. Real quotes are often zero-padded
/// after it (to 5006 or 8000 bytes); anything but zeros there is unsigned
/// data smuggled along, and rejected.
fn check_framing(raw: &[u8]) -> Result<(), AttestError> {
    let bad = |m: String| AttestError::Malformed(format!("TDX quote: {m}"));
    let u16_at = |o: usize| raw.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        raw.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let version =
        u16_at(0).ok_or_else(|| bad(format!("{} bytes is shorter than a header", raw.len())))?;
    let body_end = match version {
        4 => 48 + 584,
        5 => {
            let size = u32_at(50).ok_or_else(|| bad("truncated body descriptor".into()))?;
            54usize.saturating_add(size as usize)
        }
        v => return Err(bad(format!("unsupported quote version {v}"))),
    };
    let sig_len = u32_at(body_end).ok_or_else(|| {
        bad(format!(
            "truncated: {} bytes, body ends at {body_end}",
            raw.len()
        ))
    })?;
    let end = body_end.saturating_add(4).saturating_add(sig_len as usize);
    if raw.len() < end {
        return Err(bad(format!(
            "truncated: {} bytes, signature data ends at {end}",
            raw.len()
        )));
    }
    if raw[end..].iter().any(|b| *b != 0) {
        return Err(bad(format!(
            "non-zero bytes after the signature data (which ends at {end})"
        )));
    }
    Ok(())
}
