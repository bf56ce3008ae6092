//! The parts of a TDX quote the identity is made of.

use attest_core::AttestError;
use attest_core::eventlog::{self, LogEvent};
use attest_core::reader::Reader;
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
        let quote = Quote::parse(raw)
            .map_err(|e| AttestError::malformed_text(format!("TDX quote: {e:#}")))?;
        let td10 = match (quote.header.tee_type, quote.report.as_td10()) {
            (0x81, Some(td10)) => *td10,
            (tee, _) => {
                return Err(AttestError::malformed_text(format!(
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
        None => Err(AttestError::malformed_text("the event log is empty".into())),
    }
}

/// Quote header length.
const HEADER_LEN: usize = 48;
/// TD 1.0 body length (a v4 quote's body).
const TD10_BODY_LEN: usize = 584;

/// The declared end of a quote: header (+ v5 body descriptor) + body +
/// `u32 sig_data_len` + signature data. Real quotes are often zero-padded
/// after it (to 5006 or 8000 bytes); anything but zeros there is unsigned
/// data smuggled along, and rejected.
fn check_framing(raw: &[u8]) -> Result<(), AttestError> {
    let bad = |m: String| AttestError::malformed_text(format!("TDX quote: {m}"));
    let mut r = Reader::new(raw, "TDX quote");
    let version = r.u16_le("version")?;
    let body_len = match version {
        4 => {
            r.skip(HEADER_LEN - 2, "header")?;
            TD10_BODY_LEN
        }
        5 => {
            r.skip(HEADER_LEN - 2, "header")?;
            r.skip(2, "body type")?;
            r.u32_le("body size")? as usize
        }
        v => return Err(bad(format!("unsupported quote version {v}"))),
    };
    r.skip(body_len, "body")?;
    let sig_len = r.u32_le("signature data length")? as usize;
    r.skip(sig_len, "signature data")?;
    let end = r.position();
    if r.rest().iter().any(|b| *b != 0) {
        return Err(bad(format!(
            "non-zero bytes after the signature data (which ends at {end})"
        )));
    }
    Ok(())
}
