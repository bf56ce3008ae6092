//! The few fields of a TDX quote and an SNP report this crate reads, behind
//! one door. Nothing here is verified: the platform plug-ins parse and check
//! the whole structure; this only locates bytes for the legacy report data
//! and for inspection (`shared/reference/tdx.md` §2, `sev-snp.md`).

use attest_core::reader::Reader;
use attest_core::{AttestError, Malformed};

use crate::attestation::SNP_REPORT_LEN;

/// v4 quotes: the TD report body follows the 48-byte header.
const TDX_V4_BODY: usize = 48;
/// v5 quotes: a 6-byte body descriptor (`u16 type, u32 size`) comes first.
const TDX_V5_BODY: usize = 54;
/// RTMR3 within the TD report body.
const TDX_RTMR3: usize = 0x1D8;
/// REPORTDATA within the TD report body (right after RTMR3).
const TDX_REPORT_DATA: usize = 0x208;
// REPORTDATA follows RTMR3 directly: one sequential read takes both.
const _: () = assert!(TDX_RTMR3 + 48 == TDX_REPORT_DATA);

/// The TEE type of TDX in the quote header.
const TDX_TEE_TYPE: u32 = 0x81;

/// The fields of a TDX quote this crate needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TdxQuoteFields {
    pub(crate) rtmr3: [u8; 48],
    pub(crate) report_data: [u8; 64],
}

impl TdxQuoteFields {
    /// Reads RTMR3 and REPORTDATA from a v4 or v5 TDX quote.
    pub(crate) fn read(quote: &[u8]) -> Result<Self, AttestError> {
        let mut r = Reader::new(quote, "TDX quote");
        let version = r.u16_le("version")?;
        r.skip(2, "attestation key type")?;
        let tee = r.u32_le("TEE type")?;
        if tee != TDX_TEE_TYPE {
            return Err(Malformed::BadValue {
                what: "TDX quote: TEE type at offset 4".into(),
                expected: format!("TDX ({TDX_TEE_TYPE:#x})"),
                found: format!("{tee:#x}"),
            }
            .into());
        }
        let body = match version {
            4 => TDX_V4_BODY,
            5 => TDX_V5_BODY,
            v => {
                return Err(Malformed::BadValue {
                    what: "TDX quote: version at offset 0".into(),
                    expected: "4 or 5".into(),
                    found: v.to_string(),
                }
                .into());
            }
        };
        let mut r = Reader::new(quote, "TDX quote");
        r.skip(body + TDX_RTMR3, "header and body up to RTMR3")?;
        let rtmr3 = r.take_array("RTMR3")?;
        let report_data = r.take_array("REPORTDATA")?;
        Ok(TdxQuoteFields { rtmr3, report_data })
    }
}

/// REPORT_DATA within an SNP report.
const SNP_REPORT_DATA: usize = 0x50;
/// HOST_DATA within an SNP report.
const SNP_HOST_DATA: usize = 0xC0;

/// The fields of an SNP report this crate needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SnpReportFields {
    pub(crate) report_data: [u8; 64],
    pub(crate) host_data: [u8; 32],
}

impl SnpReportFields {
    /// Reads REPORT_DATA and HOST_DATA (a fixed-size report cannot be short).
    pub(crate) fn read(report: &[u8; SNP_REPORT_LEN]) -> Result<Self, AttestError> {
        let mut r = Reader::new(report, "SNP report");
        r.skip(SNP_REPORT_DATA, "up to REPORT_DATA")?;
        let report_data = r.take_array("REPORT_DATA")?;
        let mut r = Reader::new(report, "SNP report");
        r.skip(SNP_HOST_DATA, "up to HOST_DATA")?;
        let host_data = r.take_array("HOST_DATA")?;
        Ok(SnpReportFields {
            report_data,
            host_data,
        })
    }
}
