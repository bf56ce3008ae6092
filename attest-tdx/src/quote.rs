//! The parts of a TDX quote the identity is made of.

use attest_core::eventlog::{self, LogEvent};
use attest_core::reader::Reader;
use attest_core::{AttestError, Malformed};
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
        let quote = Quote::parse(raw).map_err(|e| Malformed::Syntax {
            what: "TDX quote".into(),
            detail: format!("{e:#}"),
        })?;
        let td10 = match (quote.header.tee_type, quote.report.as_td10()) {
            (TEE_TYPE_TDX, Some(td10)) => *td10,
            (tee, _) => {
                return Err(Malformed::BadValue {
                    what: "quote TEE type".into(),
                    expected: format!("{TEE_TYPE_TDX:#x} (TDX)"),
                    found: format!("{tee:#x}"),
                }
                .into());
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
    pub fn rtmrs(&self) -> [[u8; 48]; crate::RTMR_COUNT] {
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
        None => Err(Malformed::Missing {
            what: "event log",
            detail: "the event log is empty".into(),
        }
        .into()),
    }
}

/// The quote header's TEE type of a TD quote (SGX is 0).
const TEE_TYPE_TDX: u32 = 0x81;
/// Quote header length.
const HEADER_LEN: usize = 48;
/// TD 1.0 body length (a v4 quote's body).
const TD10_BODY_LEN: usize = 584;

/// The declared end of a quote: header (+ v5 body descriptor) + body +
/// `u32 sig_data_len` + signature data. Real quotes are often zero-padded
/// after it (to 5006 or 8000 bytes); anything but zeros there is unsigned
/// data smuggled along, and rejected.
fn check_framing(raw: &[u8]) -> Result<(), AttestError> {
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
        v => {
            return Err(Malformed::BadValue {
                what: "TDX quote version".into(),
                expected: "4 or 5".into(),
                found: v.to_string(),
            }
            .into());
        }
    };
    r.skip(body_len, "body")?;
    let sig_len = r.u32_le("signature data length")? as usize;
    r.skip(sig_len, "signature data")?;
    if r.rest().iter().any(|b| *b != 0) {
        return Err(Malformed::TrailingData {
            context: "TDX quote (non-zero bytes after the signature data)",
            offset: r.position(),
            extra: r.remaining(),
        }
        .into());
    }
    Ok(())
}
