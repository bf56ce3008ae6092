//! The 1184-byte SEV-SNP attestation report: raw-byte checks and fields.
//!
//! Structure comes from the `sev` crate's parser; everything that guards
//! the signature (must-be-zero ranges, signature encoding, the exact signed
//! bytes) is checked here on the raw bytes as received, never on a
//! re-encoding.

use attest_core::AttestError;
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;

use crate::Product;

/// Report size.
pub const REPORT_LEN: usize = 0x4A0;
/// The signed region is `[0, SIGNED_LEN)`.
pub const SIGNED_LEN: usize = 0x2A0;

/// Who signed the report (KEY_INFO.SIGNING_KEY).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signer {
    /// Versioned Chip Endorsement Key (per chip and TCB).
    Vcek,
    /// Versioned Loaded Endorsement Key (per cloud provider).
    Vlek,
}

/// A TCB version, per component.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Tcb {
    /// PSP bootloader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// Microcode SPL.
    pub microcode: u8,
    /// FMC SPL (Turin only).
    pub fmc: Option<u8>,
}

impl Tcb {
    /// Decodes the 8-byte TCB_VERSION of a product.
    pub fn decode(product: Product, b: &[u8; 8]) -> Self {
        match product {
            Product::Turin => Tcb {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
            Product::Milan | Product::Genoa => Tcb {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            },
        }
    }

    /// The lowest of each component across `tcbs` (a platform is only as
    /// current as the oldest TCB it reports).
    pub fn lowest(tcbs: &[Tcb]) -> Tcb {
        let mut out = tcbs.first().copied().unwrap_or_default();
        for t in tcbs {
            out.bootloader = out.bootloader.min(t.bootloader);
            out.tee = out.tee.min(t.tee);
            out.snp = out.snp.min(t.snp);
            out.microcode = out.microcode.min(t.microcode);
            out.fmc = match (out.fmc, t.fmc) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        out
    }

    /// Whether every component is at least `min`'s.
    pub fn at_least(&self, min: &Tcb) -> bool {
        self.bootloader >= min.bootloader
            && self.tee >= min.tee
            && self.snp >= min.snp
            && self.microcode >= min.microcode
            && self.fmc.unwrap_or(0) >= min.fmc.unwrap_or(0)
    }

    /// `{bootloader, tee, snp, microcode[, fmc]}` for the identity JSON.
    pub fn components(&self) -> std::collections::BTreeMap<String, u64> {
        let mut m = std::collections::BTreeMap::from([
            ("bootloader".to_owned(), u64::from(self.bootloader)),
            ("tee".to_owned(), u64::from(self.tee)),
            ("snp".to_owned(), u64::from(self.snp)),
            ("microcode".to_owned(), u64::from(self.microcode)),
        ]);
        if let Some(f) = self.fmc {
            m.insert("fmc".into(), u64::from(f));
        }
        m
    }
}

/// Offset of CURRENT_TCB.
pub const CURRENT_TCB: usize = 0x38;
/// Offset of REPORTED_TCB.
pub const REPORTED_TCB: usize = 0x180;
/// Offset of COMMITTED_TCB.
pub const COMMITTED_TCB: usize = 0x1E0;
/// Offset of LAUNCH_TCB.
pub const LAUNCH_TCB: usize = 0x1F0;

/// The four TCB versions of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReportTcbs {
    /// REPORTED_TCB: what the VCEK is derived for (the hypervisor may
    /// report an older TCB than it runs).
    pub reported: Tcb,
    /// COMMITTED_TCB: the firmware the platform cannot roll back below.
    pub committed: Tcb,
    /// LAUNCH_TCB: the TCB when the guest was launched.
    pub launch: Tcb,
    /// CURRENT_TCB: the TCB running now (may be newer after a live update).
    pub current: Tcb,
}

impl ReportTcbs {
    /// The lowest of each component across the four: what a TCB minimum
    /// and the TCB verdict judge.
    pub fn lowest(&self) -> Tcb {
        Tcb::lowest(&[self.reported, self.committed, self.launch, self.current])
    }

    /// Whether the guest launched on a TCB below the one it reports: it
    /// keeps running on keys and state set up by the older firmware until
    /// it is relaunched.
    pub fn relaunch_advised(&self) -> bool {
        !self.launch.at_least(&self.reported)
    }
}

/// A report whose layout checks passed (signature not yet checked).
pub struct Report<'a> {
    /// The exact bytes received.
    pub raw: &'a [u8],
    /// The `sev` crate's parse.
    pub parsed: AttestationReport,
    /// Report version.
    pub version: u32,
    /// The signer named in KEY_INFO.
    pub signer: Signer,
}

fn u32_at(raw: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([raw[off], raw[off + 1], raw[off + 2], raw[off + 3]])
}

fn u64_at(raw: &[u8], off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&raw[off..off + 8]);
    u64::from_le_bytes(b)
}

fn must_be_zero(raw: &[u8], from: usize, to: usize, what: &str) -> Result<(), AttestError> {
    if raw[from..to].iter().any(|b| *b != 0) {
        return Err(AttestError::Malformed(format!(
            "report bytes {from:#x}..{to:#x} ({what}) must be zero"
        )));
    }
    Ok(())
}

impl<'a> Report<'a> {
    /// Checks the layout of `raw` and parses it.
    pub fn parse(raw: &'a [u8]) -> Result<Self, AttestError> {
        if raw.len() != REPORT_LEN {
            return Err(AttestError::Malformed(format!(
                "an SEV-SNP report is {REPORT_LEN} bytes, found {}",
                raw.len()
            )));
        }
        let version = u32_at(raw, 0);
        if !matches!(version, 2..=5) {
            return Err(AttestError::Malformed(format!(
                "unsupported report version {version}"
            )));
        }
        let sig_algo = u32_at(raw, 0x34);
        if sig_algo != 1 {
            return Err(AttestError::Malformed(format!(
                "signature algorithm {sig_algo}, only 1 (ECDSA P-384 SHA-384) is defined"
            )));
        }
        let policy = u64_at(raw, 0x08);
        if policy & (1 << 17) == 0 || policy >> 26 != 0 {
            return Err(AttestError::Malformed(format!(
                "guest policy {policy:#x} has reserved bits wrong"
            )));
        }
        let key_info = u32_at(raw, 0x48);
        if key_info >> 5 != 0 {
            return Err(AttestError::Malformed(format!(
                "KEY_INFO {key_info:#x} has reserved bits set"
            )));
        }
        if key_info & 0b10 != 0 {
            return Err(AttestError::BadSignature(
                "MASK_CHIP_KEY is set: the report is unsigned".into(),
            ));
        }
        let signer = match (key_info >> 2) & 0b111 {
            0 => Signer::Vcek,
            1 => Signer::Vlek,
            7 => {
                return Err(AttestError::BadSignature(
                    "SIGNING_KEY is 7: the report is unsigned".into(),
                ));
            }
            k => {
                return Err(AttestError::Malformed(format!(
                    "reserved SIGNING_KEY value {k}"
                )));
            }
        };
        must_be_zero(raw, 0x4C, 0x50, "reserved")?;
        if version == 2 {
            must_be_zero(raw, 0x188, 0x1A0, "reserved")?;
        } else {
            must_be_zero(raw, 0x18B, 0x1A0, "reserved")?;
        }
        must_be_zero(raw, 0x1EB, 0x1EC, "reserved")?;
        must_be_zero(raw, 0x1EF, 0x1F0, "reserved")?;
        must_be_zero(
            raw,
            if version >= 5 { 0x208 } else { 0x1F8 },
            SIGNED_LEN,
            "reserved",
        )?;
        must_be_zero(raw, 0x2D0, 0x2E8, "upper bytes of signature r")?;
        must_be_zero(raw, 0x318, 0x330, "upper bytes of signature s")?;
        must_be_zero(raw, 0x330, REPORT_LEN, "reserved")?;
        let parsed = AttestationReport::from_bytes(raw)
            .map_err(|e| AttestError::Malformed(format!("SEV-SNP report: {e}")))?;
        Ok(Report {
            raw,
            parsed,
            version,
            signer,
        })
    }

    /// The product, from the report's CPUID fields (v3 and later).
    pub fn product_from_cpuid(&self) -> Result<Option<Product>, AttestError> {
        if self.version < 3 {
            return Ok(None);
        }
        let (family, model) = (self.raw[0x188], self.raw[0x189]);
        match (family, model) {
            (0x19, 0x00..=0x0F) => Ok(Some(Product::Milan)),
            (0x19, 0x10..=0x1F) | (0x19, 0xA0..=0xAF) => Ok(Some(Product::Genoa)),
            (0x1A, 0x00..=0x1F) => Ok(Some(Product::Turin)),
            _ => Err(AttestError::Malformed(format!(
                "unknown AMD processor: CPUID family {family:#x} model {model:#x}"
            ))),
        }
    }

    /// REPORTED_TCB (what the VCEK is derived for).
    pub fn reported_tcb(&self, product: Product) -> Tcb {
        self.tcb_at(product, REPORTED_TCB)
    }

    /// The four TCB versions the report carries.
    pub fn tcbs(&self, product: Product) -> ReportTcbs {
        ReportTcbs {
            reported: self.tcb_at(product, REPORTED_TCB),
            committed: self.tcb_at(product, COMMITTED_TCB),
            launch: self.tcb_at(product, LAUNCH_TCB),
            current: self.tcb_at(product, CURRENT_TCB),
        }
    }

    /// A TCB_VERSION field at `off`, decoded for `product`.
    pub fn tcb_at(&self, product: Product, off: usize) -> Tcb {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.raw[off..off + 8]);
        Tcb::decode(product, &b)
    }

    /// The ECDSA signature as big-endian `r ‖ s` (96 bytes).
    pub fn signature_be(&self) -> [u8; 96] {
        let mut out = [0u8; 96];
        for i in 0..48 {
            out[i] = self.raw[0x2A0 + 47 - i];
            out[48 + i] = self.raw[0x2E8 + 47 - i];
        }
        out
    }

    /// CHIP_ID.
    pub fn chip_id(&self) -> &[u8] {
        &self.raw[0x1A0..0x1E0]
    }
}
