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
    let start = r.position();
    check_signature_data(&mut r)?;
    let used = r.position() - start;
    if used != sig_len {
        return Err(Malformed::BadLength {
            what: "TDX quote signature data (its declared length against its contents)".into(),
            expected: sig_len,
            found: used,
        }
        .into());
    }
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

/// Certification data type of the QE report certification data, the one a
/// TDX quote carries (Intel's DCAP quote format, v4 and v5).
const QE_REPORT_CERT_DATA: u16 = 6;
/// Certification data type of a PEM PCK certificate chain.
const PCK_CERT_CHAIN: u16 = 5;

/// Reads the signature data exactly as its declared sizes nest: quote
/// signature, attestation key, certification data of type 6 (QE report,
/// its signature, the QE authentication data, and certification data of
/// type 5: the PCK chain). Every size must cover exactly what it declares,
/// so no byte of it is left unread (dcap-qvl reads what it needs and
/// ignores the outer type and any slack).
fn check_signature_data(r: &mut Reader<'_>) -> Result<(), AttestError> {
    r.skip(64, "quote signature")?;
    r.skip(64, "attestation key")?;
    let kind = r.u16_le("certification data type")?;
    if kind != QE_REPORT_CERT_DATA {
        return Err(Malformed::BadValue {
            what: "TDX quote certification data type".into(),
            expected: format!("{QE_REPORT_CERT_DATA} (QE report)"),
            found: kind.to_string(),
        }
        .into());
    }
    let size = r.u32_le("certification data size")? as usize;
    let start = r.position();
    r.skip(384, "QE report")?;
    r.skip(64, "QE report signature")?;
    let auth = r.u16_le("QE authentication data size")? as usize;
    r.skip(auth, "QE authentication data")?;
    let inner = r.u16_le("PCK certification data type")?;
    if inner != PCK_CERT_CHAIN {
        return Err(Malformed::BadValue {
            what: "TDX quote PCK certification data type".into(),
            expected: format!("{PCK_CERT_CHAIN} (PCK chain)"),
            found: inner.to_string(),
        }
        .into());
    }
    let chain = r.u32_le("PCK chain size")? as usize;
    r.skip(chain, "PCK chain")?;
    let used = r.position() - start;
    if used != size {
        return Err(Malformed::BadLength {
            what: "TDX quote certification data (its declared size against its contents)".into(),
            expected: size,
            found: used,
        }
        .into());
    }
    Ok(())
}
