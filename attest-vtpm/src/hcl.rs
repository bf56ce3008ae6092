//! The HCL report: the paravisor's (OpenHCL/HCL) framing around the
//! hardware report and the runtime claims it binds.
//!
//! Layout (`IgvmAttestRequestBase`, all integers little-endian):
//!
//! | off | size | field |
//! |---|---|---|
//! | 0x00 | 4 | signature `"HCLA"` |
//! | 0x04 | 4 | header version (1 or 2) |
//! | 0x08 | 4 | report_size = 0x20 + 1184 + data_size |
//! | 0x0C | 4 | request_type (2 = AK_CERT) |
//! | 0x10 | 4+12 | status, reserved (0) |
//! | 0x20 | 1184 | TEE report: SNP report, or TDREPORT (1024 B) and zeros |
//! | 0x4C0 | 4 | data_size = 20 + ext + variable_data_size |
//! | 0x4C4 | 4 | request-data version (1 or 2) |
//! | 0x4C8 | 4 | report_type (2 SNP, 4 TDX) |
//! | 0x4CC | 4 | report_data_hash_type (1 SHA-256) |
//! | 0x4D0 | 4 | variable_data_size |
//! | 0x4D4 | 4 | request-data version 2 only: `IgvmAttestRequestDataExt` |
//! | 0x4D4/0x4D8 | var | runtime-claims JSON |
//! | … | | zero padding (to 2048 or 2600 bytes) |
//!
//! Nothing here is signed except through the hardware report: its
//! REPORT_DATA must be `SHA-256(claims) ‖ 0³²` ([`HclReport::check_report_data`]).
//! The framing is still checked field by field (reference P5), so that a
//! report built for another purpose, hash or platform is never read as
//! this one, and the claims hashed are exactly `variable_data_size` bytes.

use attest_core::reader::Reader;
use attest_core::{AttestError, Malformed, ReportData};
use sha2::{Digest, Sha256};

use crate::tpm::ct_eq;

/// `"HCLA"` read as a little-endian u32.
pub const HCL_SIGNATURE: u32 = 0x414C_4348;
/// Largest accepted HCL report (reference P11; real ones are 2048 or 2600).
pub const MAX_HCL_REPORT: usize = 4096;
/// Where the TEE report starts.
pub const TEE_REPORT_OFFSET: usize = 0x20;
/// Size of the TEE report slot (an SNP report fills it).
pub const TEE_REPORT_LEN: usize = 1184;
/// Size of a TDREPORT inside the slot; the rest of the slot is zero.
pub const TDREPORT_LEN: usize = 1024;
/// `IgvmAttestRequestType::AK_CERT_REQUEST`, the only accepted request type.
pub const REQUEST_TYPE_AK_CERT: u32 = 2;
/// `IgvmAttestHashType::SHA_256`, the only accepted claims hash.
pub const HASH_TYPE_SHA256: u32 = 1;
/// Bytes of the request-data header counted in data_size before the
/// extension: data_size, version, report_type, hash_type, variable_data_size.
const REQUEST_DATA_HEADER: u64 = 20;
/// Size of `IgvmAttestRequestDataExt` (request-data version 2).
const REQUEST_DATA_EXT: usize = 4;

/// Which hardware report the HCL report carries (its `report_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TeeType {
    /// AMD SEV-SNP (report_type 2): an SNP report, verified with the VCEK.
    Snp,
    /// Intel TDX (report_type 4): a TDREPORT, verified through the TD quote.
    Tdx,
}

/// An HCL report field with a value the format does not allow.
fn bad(field: &str, expected: String, found: String) -> AttestError {
    Malformed::BadValue {
        what: format!("HCL report {field}"),
        expected,
        found,
    }
    .into()
}

impl TeeType {
    /// The `report_type` value.
    pub fn report_type(self) -> u32 {
        match self {
            TeeType::Snp => 2,
            TeeType::Tdx => 4,
        }
    }

    fn from_report_type(v: u32) -> Result<Self, AttestError> {
        match v {
            2 => Ok(TeeType::Snp),
            4 => Ok(TeeType::Tdx),
            other => {
                let name = match other {
                    1 => " (VBS)",
                    3 => " (TVM)",
                    5 => " (CCA)",
                    _ => "",
                };
                Err(bad(
                    "report_type",
                    "2 (SNP) or 4 (TDX)".into(),
                    format!("{other}{name}"),
                ))
            }
        }
    }
}

impl std::fmt::Display for TeeType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TeeType::Snp => "SNP",
            TeeType::Tdx => "TDX",
        })
    }
}

/// An HCL report whose framing was checked, with the exact claims bytes.
///
/// Framing is not authenticity: the claims count only once the hardware
/// report was verified with [`HclReport::expected_report_data`] as its
/// required report data.
#[derive(Clone, PartialEq, Eq)]
pub struct HclReport {
    raw: Vec<u8>,
    header_version: u32,
    request_data_version: u32,
    request_data_ext: Option<[u8; REQUEST_DATA_EXT]>,
    tee: TeeType,
    claims_start: usize,
    claims_len: usize,
    claims_digest: [u8; 32],
}

impl HclReport {
    /// Parses and checks the framing: signature `HCLA`, header version 1 or
    /// 2, request_type AK_CERT, status and reserved zero, request-data
    /// version 1 or 2 (version 2: a 4-byte extension before the claims),
    /// report_type SNP or TDX, hash type SHA-256, `data_size` and
    /// `report_size` consistent with `variable_data_size`, the claims inside
    /// the report, zero padding after them, and (TDX) zeros after the
    /// TDREPORT.
    pub fn parse(raw: &[u8]) -> Result<Self, AttestError> {
        if raw.len() > MAX_HCL_REPORT {
            return Err(Malformed::TooLarge {
                what: "HCL report".into(),
                size: raw.len(),
                max: MAX_HCL_REPORT,
            }
            .into());
        }
        let mut r = Reader::new(raw, "HCL report");
        let signature = r.u32_le("signature")?;
        if signature != HCL_SIGNATURE {
            return Err(bad(
                "signature",
                "\"HCLA\"".into(),
                hex::encode(signature.to_le_bytes()),
            ));
        }
        let header_version = r.u32_le("header version")?;
        if !matches!(header_version, 1 | 2) {
            return Err(bad(
                "header version",
                "1 or 2".into(),
                header_version.to_string(),
            ));
        }
        let report_size = r.u32_le("report_size")?;
        let request_type = r.u32_le("request_type")?;
        if request_type != REQUEST_TYPE_AK_CERT {
            return Err(bad(
                "request_type",
                format!("{REQUEST_TYPE_AK_CERT} (AK_CERT)"),
                request_type.to_string(),
            ));
        }
        let status = r.u32_le("status")?;
        if status != 0 {
            return Err(bad("status", "0".into(), status.to_string()));
        }
        if r.take(12, "reserved")?.iter().any(|b| *b != 0) {
            return Err(Malformed::ReservedNonZero {
                context: "HCL report",
                field: "reserved".into(),
                range: 0x14..0x20,
            }
            .into());
        }
        let tee_report = r.take(TEE_REPORT_LEN, "TEE report")?;
        let data_size = r.u32_le("data_size")?;
        let request_data_version = r.u32_le("request-data version")?;
        if !matches!(request_data_version, 1 | 2) {
            return Err(bad(
                "request-data version",
                "1 or 2".into(),
                request_data_version.to_string(),
            ));
        }
        let tee = TeeType::from_report_type(r.u32_le("report_type")?)?;
        let hash_type = r.u32_le("report_data_hash_type")?;
        if hash_type != HASH_TYPE_SHA256 {
            return Err(bad(
                "report_data_hash_type",
                format!("{HASH_TYPE_SHA256} (SHA-256)"),
                hash_type.to_string(),
            ));
        }
        let variable_data_size = r.u32_le("variable_data_size")?;
        let request_data_ext = if request_data_version >= 2 {
            Some(r.take_array::<REQUEST_DATA_EXT>("request-data extension")?)
        } else {
            None
        };
        let ext_len = request_data_ext.map_or(0, |e| e.len() as u64);
        let expected_data_size = REQUEST_DATA_HEADER + ext_len + u64::from(variable_data_size);
        if u64::from(data_size) != expected_data_size {
            return Err(bad(
                "data_size",
                format!(
                    "{expected_data_size} (20 + {ext_len} + variable_data_size {variable_data_size})"
                ),
                data_size.to_string(),
            ));
        }
        let expected_report_size = (TEE_REPORT_OFFSET + TEE_REPORT_LEN) as u64 + expected_data_size;
        if u64::from(report_size) != expected_report_size {
            return Err(bad(
                "report_size",
                format!("{expected_report_size} (0x20 + 1184 + data_size)"),
                report_size.to_string(),
            ));
        }
        let claims_start = r.position();
        if u64::from(variable_data_size) > r.remaining() as u64 {
            return Err(Malformed::LengthPastEnd {
                context: "HCL report",
                field: "variable_data_size".into(),
                offset: TEE_REPORT_OFFSET + TEE_REPORT_LEN + 16,
                length: variable_data_size.into(),
                container: "the report",
                available: r.remaining(),
            }
            .into());
        }
        let claims = r.take(variable_data_size as usize, "runtime claims")?;
        if let Some(i) = r.rest().iter().position(|b| *b != 0) {
            return Err(Malformed::ReservedNonZero {
                context: "HCL report",
                field: "padding after the runtime claims".into(),
                range: r.position() + i..raw.len(),
            }
            .into());
        }
        if tee == TeeType::Tdx {
            if let Some(i) = tee_report[TDREPORT_LEN..].iter().position(|b| *b != 0) {
                return Err(Malformed::ReservedNonZero {
                    context: "HCL report",
                    field: "TEE report slot after the TDREPORT".into(),
                    range: TEE_REPORT_OFFSET + TDREPORT_LEN + i..TEE_REPORT_OFFSET + TEE_REPORT_LEN,
                }
                .into());
            }
        }
        Ok(HclReport {
            raw: raw.to_vec(),
            header_version,
            request_data_version,
            request_data_ext,
            tee,
            claims_start,
            claims_len: claims.len(),
            claims_digest: Sha256::digest(claims).into(),
        })
    }

    /// The report as received.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Header version (1 on older hosts, 2 on OpenHCL).
    pub fn header_version(&self) -> u32 {
        self.header_version
    }

    /// Request-data version (1, or 2 with an extension).
    pub fn request_data_version(&self) -> u32 {
        self.request_data_version
    }

    /// The `IgvmAttestRequestDataExt` bytes (request-data version 2 only),
    /// not interpreted.
    pub fn request_data_ext(&self) -> Option<[u8; 4]> {
        self.request_data_ext
    }

    /// Which hardware report this is.
    pub fn tee(&self) -> TeeType {
        self.tee
    }

    /// The 1184-byte TEE report slot, as received. On SNP it is the SNP
    /// report to verify with the VCEK. On TDX its first 1024 bytes are a
    /// TDREPORT, which is only MAC'd: take nothing from it, verify the TD
    /// quote instead.
    pub fn tee_report(&self) -> &[u8] {
        &self.raw[TEE_REPORT_OFFSET..TEE_REPORT_OFFSET + TEE_REPORT_LEN]
    }

    /// The SNP report (1184 bytes) when `report_type` is SNP.
    pub fn snp_report(&self) -> Option<&[u8]> {
        (self.tee == TeeType::Snp).then(|| self.tee_report())
    }

    /// The runtime claims: exactly `variable_data_size` bytes, untrimmed.
    pub fn claims(&self) -> &[u8] {
        &self.raw[self.claims_start..self.claims_start + self.claims_len]
    }

    /// SHA-256 of [`HclReport::claims`].
    pub fn claims_digest(&self) -> &[u8; 32] {
        &self.claims_digest
    }

    /// The report data the hardware report must carry:
    /// `SHA-256(claims) ‖ 0³²`.
    pub fn expected_report_data(&self) -> ReportData {
        let mut rd = [0u8; 64];
        rd[..32].copy_from_slice(&self.claims_digest);
        ReportData(rd)
    }

    /// The binding between the claims and the hardware: `hardware` (the
    /// verified SNP REPORT_DATA or TD quote REPORTDATA) must be
    /// `SHA-256(claims) ‖ 0³²`, all 64 bytes. A mismatch is an
    /// [`AttestError::BindingMismatch`].
    pub fn check_report_data(&self, hardware: &ReportData) -> Result<(), AttestError> {
        let expected = self.expected_report_data();
        if ct_eq(&expected.0, &hardware.0) {
            Ok(())
        } else {
            Err(AttestError::BindingMismatch {
                expected: Box::new(expected),
                found: Box::new(*hardware),
            })
        }
    }
}

impl std::fmt::Debug for HclReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HclReport")
            .field("len", &self.raw.len())
            .field("header_version", &self.header_version)
            .field("request_data_version", &self.request_data_version)
            .field("tee", &self.tee)
            .field("claims_len", &self.claims_len)
            .field("claims_sha256", &hex::encode(self.claims_digest))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal well-formed report around `claims`.
    fn build(rd_version: u32, report_type: u32, claims: &[u8], pad: usize) -> Vec<u8> {
        let ext = if rd_version >= 2 { 4 } else { 0 };
        let data_size = 20 + ext + claims.len() as u32;
        let mut v = Vec::new();
        v.extend_from_slice(b"HCLA");
        v.extend_from_slice(&2u32.to_le_bytes());
        v.extend_from_slice(&(0x20 + 1184 + data_size).to_le_bytes());
        v.extend_from_slice(&2u32.to_le_bytes());
        v.extend_from_slice(&[0; 16]);
        v.extend_from_slice(&[0; 1184]);
        for x in [data_size, rd_version, report_type, 1, claims.len() as u32] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(&[0xee; 4][..ext as usize]);
        v.extend_from_slice(claims);
        v.extend_from_slice(&vec![0; pad]);
        v
    }

    #[test]
    fn request_data_version_2_moves_the_claims() {
        let h = HclReport::parse(&build(2, 4, b"{}", 7)).unwrap();
        assert_eq!(h.claims(), b"{}");
        assert_eq!(h.request_data_ext(), Some([0xee; 4]));
        assert_eq!(h.tee(), TeeType::Tdx);
        assert_eq!(h.snp_report(), None);
        let h = HclReport::parse(&build(1, 2, b"{}", 0)).unwrap();
        assert_eq!(h.request_data_ext(), None);
        assert_eq!(h.snp_report().map(<[u8]>::len), Some(1184));
        assert_eq!(&h.expected_report_data().0[32..], &[0u8; 32]);
    }

    #[test]
    fn refuses_other_types_and_sizes() {
        for t in [0, 1, 3, 5, 6] {
            let e = HclReport::parse(&build(1, t, b"{}", 0)).unwrap_err();
            assert!(
                matches!(e.malformed(), Some(Malformed::BadValue { what, .. }) if what == "HCL report report_type"),
                "{e}"
            );
        }
        assert!(HclReport::parse(&build(3, 2, b"{}", 0)).is_err());
        assert!(HclReport::parse(&build(0, 2, b"{}", 0)).is_err());
        let big = build(1, 2, b"{}", MAX_HCL_REPORT);
        assert_eq!(
            HclReport::parse(&big).unwrap_err().malformed(),
            Some(&Malformed::TooLarge {
                what: "HCL report".into(),
                size: big.len(),
                max: MAX_HCL_REPORT,
            })
        );
        // variable_data_size larger than the report, with consistent sizes.
        let mut v = build(1, 2, b"{}", 0);
        let huge = 0x1000_0000u32;
        v[0x4D0..0x4D4].copy_from_slice(&huge.to_le_bytes());
        v[0x4C0..0x4C4].copy_from_slice(&(huge + 20).to_le_bytes());
        v[0x08..0x0C].copy_from_slice(&(huge + 20 + 0x20 + 1184).to_le_bytes());
        let e = HclReport::parse(&v).unwrap_err();
        assert!(
            matches!(
                e.malformed(),
                Some(Malformed::LengthPastEnd { field, length, .. })
                    if field == "variable_data_size" && *length == u64::from(huge)
            ),
            "{e}"
        );
        // u32 overflow of data_size cannot wrap into a match.
        let mut v = build(1, 2, b"{}", 0);
        v[0x4D0..0x4D4].copy_from_slice(&u32::MAX.to_le_bytes());
        v[0x4C0..0x4C4].copy_from_slice(&(u32::MAX.wrapping_add(20)).to_le_bytes());
        assert!(HclReport::parse(&v).is_err());
        // A TDX slot with bytes after the TDREPORT.
        let mut v = build(1, 4, b"{}", 0);
        v[0x20 + 1024] = 1;
        assert_eq!(
            HclReport::parse(&v).unwrap_err().malformed(),
            Some(&Malformed::ReservedNonZero {
                context: "HCL report",
                field: "TEE report slot after the TDREPORT".into(),
                range: 0x20 + 1024..0x20 + 1184,
            })
        );
    }
}
