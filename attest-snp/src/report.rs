//! The 1184-byte SEV-SNP attestation report: its layout, field by field.
//!
//! The report is read in one pass with attest-core's [`Reader`], in the
//! order of AMD's ABI (SEV-SNP Firmware ABI, table "ATTESTATION_REPORT"),
//! so every byte offset of the report lives in this file. Everything that
//! guards the signature (must-be-zero ranges, the signature's encoding, the
//! exact signed bytes) is checked on the bytes as received, never on a
//! re-encoding.

use attest_core::reader::Reader;
use attest_core::{AttestError, BadSignature, Malformed};

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

/// A firmware version (major.minor.build).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirmwareVersion {
    /// Major.
    pub major: u8,
    /// Minor.
    pub minor: u8,
    /// Build.
    pub build: u8,
}

impl std::fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// A report whose layout checks passed (signature not yet checked: see
/// [`crate::VerifiedReport`] for one that was).
pub struct Report<'a> {
    raw: &'a [u8],
    /// Report version (2..=5).
    pub version: u32,
    /// The signer named in KEY_INFO.
    pub signer: Signer,
    guest_svn: u32,
    policy: u64,
    family_id: [u8; 16],
    image_id: [u8; 16],
    vmpl: u32,
    platform_info: u64,
    report_data: [u8; 64],
    measurement: [u8; 48],
    host_data: [u8; 32],
    id_key_digest: [u8; 48],
    author_key_digest: [u8; 48],
    cpuid: Option<(u8, u8, u8)>,
    chip_id: [u8; 64],
    current_tcb: [u8; 8],
    reported_tcb: [u8; 8],
    committed_tcb: [u8; 8],
    launch_tcb: [u8; 8],
    current_firmware: FirmwareVersion,
    committed_firmware: FirmwareVersion,
    signature: [u8; 96],
}

fn zero(r: &mut Reader<'_>, n: usize, what: &str) -> Result<(), AttestError> {
    let at = r.position();
    if r.take(n, what)?.iter().any(|b| *b != 0) {
        return Err(Malformed::ReservedNonZero {
            context: "report",
            field: what.into(),
            range: at..at + n,
        }
        .into());
    }
    Ok(())
}

fn firmware(r: &mut Reader<'_>, what: &str) -> Result<FirmwareVersion, AttestError> {
    let [build, minor, major] = r.take_array::<3>(what)?;
    zero(r, 1, "reserved")?;
    Ok(FirmwareVersion {
        major,
        minor,
        build,
    })
}

/// An ECDSA scalar as stored: 72 little-endian bytes, the upper 24 zero;
/// returned big-endian.
fn scalar(r: &mut Reader<'_>, what: &str) -> Result<[u8; 48], AttestError> {
    let le: [u8; 48] = r.take_array(what)?;
    zero(r, 24, what)?;
    let mut be = le;
    be.reverse();
    Ok(be)
}

impl<'a> Report<'a> {
    /// Checks the layout of `raw` and reads its fields.
    pub fn parse(raw: &'a [u8]) -> Result<Self, AttestError> {
        if raw.len() != REPORT_LEN {
            return Err(Malformed::BadLength {
                what: "an SEV-SNP report".into(),
                expected: REPORT_LEN,
                found: raw.len(),
            }
            .into());
        }
        let mut r = Reader::new(raw, "SEV-SNP report");
        let version = r.u32_le("VERSION")?;
        if !matches!(version, 2..=5) {
            return Err(Malformed::BadValue {
                what: "report VERSION".into(),
                expected: "2 to 5".into(),
                found: version.to_string(),
            }
            .into());
        }
        let guest_svn = r.u32_le("GUEST_SVN")?;
        let policy = r.u64_le("POLICY")?;
        if policy & (1 << 17) == 0 || policy >> 26 != 0 {
            return Err(Malformed::ReservedBits {
                field: "guest policy",
                value: policy,
            }
            .into());
        }
        let family_id = r.take_array("FAMILY_ID")?;
        let image_id = r.take_array("IMAGE_ID")?;
        let vmpl = r.u32_le("VMPL")?;
        let sig_algo = r.u32_le("SIGNATURE_ALGO")?;
        if sig_algo != 1 {
            return Err(Malformed::BadValue {
                what: "SIGNATURE_ALGO".into(),
                expected: "1 (ECDSA P-384 SHA-384, the only one defined)".into(),
                found: sig_algo.to_string(),
            }
            .into());
        }
        let current_tcb = r.take_array("CURRENT_TCB")?;
        let platform_info = r.u64_le("PLATFORM_INFO")?;
        let key_info = r.u32_le("KEY_INFO")?;
        if key_info >> 5 != 0 {
            return Err(Malformed::ReservedBits {
                field: "KEY_INFO",
                value: key_info.into(),
            }
            .into());
        }
        if key_info & 0b10 != 0 {
            return Err(BadSignature::Unsigned {
                detail: "MASK_CHIP_KEY is set".into(),
            }
            .into());
        }
        let signer = match (key_info >> 2) & 0b111 {
            0 => Signer::Vcek,
            1 => Signer::Vlek,
            7 => {
                return Err(BadSignature::Unsigned {
                    detail: "SIGNING_KEY is 7".into(),
                }
                .into());
            }
            k => {
                return Err(Malformed::BadValue {
                    what: "SIGNING_KEY".into(),
                    expected: "0 (VCEK), 1 (VLEK) or 7 (none)".into(),
                    found: k.to_string(),
                }
                .into());
            }
        };
        zero(&mut r, 4, "reserved")?;
        let report_data = r.take_array("REPORT_DATA")?;
        let measurement = r.take_array("MEASUREMENT")?;
        let host_data = r.take_array("HOST_DATA")?;
        let id_key_digest = r.take_array("ID_KEY_DIGEST")?;
        let author_key_digest = r.take_array("AUTHOR_KEY_DIGEST")?;
        r.skip(32, "REPORT_ID")?;
        r.skip(32, "REPORT_ID_MA")?;
        debug_assert_eq!(r.position(), REPORTED_TCB);
        let reported_tcb = r.take_array("REPORTED_TCB")?;
        let cpuid = if version >= 3 {
            let [fam, model, step] = r.take_array::<3>("CPUID")?;
            Some((fam, model, step))
        } else {
            zero(&mut r, 3, "reserved")?;
            None
        };
        zero(&mut r, 0x1A0 - 0x18B, "reserved")?;
        let chip_id = r.take_array("CHIP_ID")?;
        let committed_tcb = r.take_array("COMMITTED_TCB")?;
        let current_firmware = firmware(&mut r, "CURRENT_BUILD/MINOR/MAJOR")?;
        let committed_firmware = firmware(&mut r, "COMMITTED_BUILD/MINOR/MAJOR")?;
        let launch_tcb = r.take_array("LAUNCH_TCB")?;
        if version >= 5 {
            // LAUNCH_MIT_VECTOR and CURRENT_MIT_VECTOR (not judged yet).
            r.skip(16, "mitigation vectors")?;
        }
        let left = SIGNED_LEN.saturating_sub(r.position());
        zero(&mut r, left, "reserved")?;
        let sig_r = scalar(&mut r, "signature r")?;
        let sig_s = scalar(&mut r, "signature s")?;
        let left = REPORT_LEN.saturating_sub(r.position());
        zero(&mut r, left, "reserved")?;
        r.finish()?;
        let mut signature = [0u8; 96];
        signature[..48].copy_from_slice(&sig_r);
        signature[48..].copy_from_slice(&sig_s);
        Ok(Report {
            raw,
            version,
            signer,
            guest_svn,
            policy,
            family_id,
            image_id,
            vmpl,
            platform_info,
            report_data,
            measurement,
            host_data,
            id_key_digest,
            author_key_digest,
            cpuid,
            chip_id,
            current_tcb,
            reported_tcb,
            committed_tcb,
            launch_tcb,
            current_firmware,
            committed_firmware,
            signature,
        })
    }

    /// The bytes the signature covers, exactly as received.
    pub fn signed_bytes(&self) -> &'a [u8] {
        &self.raw[..SIGNED_LEN]
    }

    /// The whole report, exactly as received.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The product, from the report's CPUID fields (v3 and later).
    pub fn product_from_cpuid(&self) -> Result<Option<Product>, AttestError> {
        let Some((family, model, _)) = self.cpuid else {
            return Ok(None);
        };
        match (family, model) {
            (0x19, 0x00..=0x0F) => Ok(Some(Product::Milan)),
            (0x19, 0x10..=0x1F) | (0x19, 0xA0..=0xAF) => Ok(Some(Product::Genoa)),
            (0x1A, 0x00..=0x1F) => Ok(Some(Product::Turin)),
            _ => Err(Malformed::BadValue {
                what: "AMD processor".into(),
                expected: "Milan, Genoa or Turin".into(),
                found: format!("CPUID family {family:#x} model {model:#x}"),
            }
            .into()),
        }
    }

    /// REPORTED_TCB (what the VCEK is derived for).
    pub fn reported_tcb(&self, product: Product) -> Tcb {
        Tcb::decode(product, &self.reported_tcb)
    }

    /// REPORTED_TCB, raw (how KDS names a VCEK).
    pub fn reported_tcb_raw(&self) -> [u8; 8] {
        self.reported_tcb
    }

    /// The four TCB versions the report carries.
    pub fn tcbs(&self, product: Product) -> ReportTcbs {
        ReportTcbs {
            reported: Tcb::decode(product, &self.reported_tcb),
            committed: Tcb::decode(product, &self.committed_tcb),
            launch: Tcb::decode(product, &self.launch_tcb),
            current: Tcb::decode(product, &self.current_tcb),
        }
    }

    /// The ECDSA signature as big-endian `r ‖ s` (96 bytes).
    pub fn signature_be(&self) -> [u8; 96] {
        self.signature
    }

    /// CHIP_ID.
    pub fn chip_id(&self) -> &[u8; 64] {
        &self.chip_id
    }

    /// GUEST_SVN.
    pub fn guest_svn(&self) -> u32 {
        self.guest_svn
    }

    /// POLICY.
    pub fn policy(&self) -> u64 {
        self.policy
    }

    /// FAMILY_ID.
    pub fn family_id(&self) -> &[u8; 16] {
        &self.family_id
    }

    /// IMAGE_ID.
    pub fn image_id(&self) -> &[u8; 16] {
        &self.image_id
    }

    /// VMPL.
    pub fn vmpl(&self) -> u32 {
        self.vmpl
    }

    /// PLATFORM_INFO.
    pub fn platform_info(&self) -> u64 {
        self.platform_info
    }

    /// REPORT_DATA.
    pub fn report_data(&self) -> &[u8; 64] {
        &self.report_data
    }

    /// MEASUREMENT (the launch digest).
    pub fn measurement(&self) -> &[u8; 48] {
        &self.measurement
    }

    /// HOST_DATA.
    pub fn host_data(&self) -> &[u8; 32] {
        &self.host_data
    }

    /// ID_KEY_DIGEST.
    pub fn id_key_digest(&self) -> &[u8; 48] {
        &self.id_key_digest
    }

    /// AUTHOR_KEY_DIGEST.
    pub fn author_key_digest(&self) -> &[u8; 48] {
        &self.author_key_digest
    }

    /// The firmware version running (CURRENT_MAJOR.MINOR.BUILD).
    pub fn current_firmware(&self) -> FirmwareVersion {
        self.current_firmware
    }

    /// The committed firmware version.
    pub fn committed_firmware(&self) -> FirmwareVersion {
        self.committed_firmware
    }
}
