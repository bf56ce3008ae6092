//! OVMF's footer GUID table and its SEV metadata: where the firmware wants
//! its special pages, and the AP reset address.

use attest_core::reader::Reader;
use attest_core::{AttestError, Malformed};

use super::MeasureError;
use crate::guid::guid;

/// The GUID that closes the footer table.
const FOOTER: [u8; 16] = guid("96b582de-1fb2-45f7-baea-a366c55a082d");
/// SEV_ES_RESET_BLOCK: the AP reset EIP.
const SEV_ES_RESET_BLOCK: [u8; 16] = guid("00f771de-1a7e-4fcb-890e-68c77e2fb44e");
/// SEV_HASH_TABLE_RV: the GPA of the kernel hashes table.
const SEV_HASH_TABLE_RV: [u8; 16] = guid("7255371f-3a3b-4b04-927b-1da6efa8d454");
/// OVMF_SEV_METADATA: the offset of the SEV metadata from the image end.
const SEV_METADATA: [u8; 16] = guid("dc886566-984a-4798-a75e-5585a7bf67cc");
/// Most metadata sections accepted.
const MAX_SECTIONS: usize = 64;
/// A GUID table entry's header: `u16 size ‖ GUID`, after its data.
const ENTRY_HEADER_LEN: usize = 18;
/// The footer entry's header ends this far before the image's end.
const FOOTER_END_GAP: usize = 32;

/// The reader's errors are all [`Malformed`]; anything else would be a
/// bug, reported as text all the same.
fn malformed(e: AttestError) -> MeasureError {
    match e {
        AttestError::Malformed(m) => m.into(),
        other => Malformed::Other(other.message()).into(),
    }
}

fn bad_value(what: &str, expected: &str, found: impl std::fmt::Display) -> MeasureError {
    Malformed::BadValue {
        what: what.into(),
        expected: expected.into(),
        found: found.to_string(),
    }
    .into()
}

/// What a SEV metadata section asks the VMM to add; the discriminant is
/// the section's type in OVMF's metadata (`OvmfSevMetadataSectionType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum SectionKind {
    /// SNP_SEC_MEMORY: zero (or, on GCE, unmeasured) pages.
    SecMemory = 1,
    /// SNP_SECRETS: the secrets page.
    Secrets = 2,
    /// CPUID: the CPUID page.
    Cpuid = 3,
    /// SVSM_CAA: the SVSM calling-area pages.
    SvsmCaa = 4,
    /// SNP_KERNEL_HASHES: the direct-boot hashes page.
    KernelHashes = 0x10,
}

impl SectionKind {
    /// Every kind, in type order.
    pub const ALL: [SectionKind; 5] = [
        SectionKind::SecMemory,
        SectionKind::Secrets,
        SectionKind::Cpuid,
        SectionKind::SvsmCaa,
        SectionKind::KernelHashes,
    ];
}

impl TryFrom<u32> for SectionKind {
    type Error = MeasureError;
    fn try_from(v: u32) -> Result<Self, MeasureError> {
        SectionKind::ALL
            .into_iter()
            .find(|k| *k as u32 == v)
            .ok_or_else(|| {
                bad_value(
                    "SEV metadata section type",
                    "1, 2, 3, 4 or 0x10",
                    format_args!("{v:#x}"),
                )
            })
    }
}

/// One SEV metadata section of OVMF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section {
    /// Guest physical address.
    pub gpa: u32,
    /// Size in bytes.
    pub size: u32,
    /// What the VMM adds there.
    pub kind: SectionKind,
}

/// What OVMF's footer GUID table and SEV metadata say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OvmfInfo {
    /// Every GUID table entry (GUID in firmware byte order, data).
    pub entries: Vec<([u8; 16], Vec<u8>)>,
    /// AP reset EIP (SEV_ES_RESET_BLOCK).
    pub ap_eip: Option<u32>,
    /// GPA of the kernel hashes table (SEV_HASH_TABLE_RV).
    pub hash_table_gpa: Option<u32>,
    /// SEV metadata sections, in file order.
    pub sections: Vec<Section>,
}

/// The first little-endian u32 of an entry's data.
fn first_u32(data: &[u8]) -> Option<u32> {
    Reader::new(data, "GUID table entry").u32_le("value").ok()
}

impl OvmfInfo {
    /// Parses the footer GUID table and the SEV metadata of a firmware image.
    ///
    /// The table is read backwards from its footer, 32 bytes before the end
    /// of the image: each entry is `data ‖ u16 size ‖ GUID`, its size
    /// counting all three.
    pub fn parse(ovmf: &[u8]) -> Result<Self, MeasureError> {
        let len = ovmf.len();
        let footer =
            len.checked_sub(FOOTER_END_GAP + ENTRY_HEADER_LEN)
                .ok_or(Malformed::Truncated {
                    context: "OVMF image",
                    field: "GUID table footer".into(),
                    offset: 0,
                    needed: FOOTER_END_GAP + ENTRY_HEADER_LEN,
                    available: len,
                })?;
        let header = |at: usize| -> Result<(usize, [u8; 16]), MeasureError> {
            let mut r = Reader::new(
                ovmf.get(at..at + ENTRY_HEADER_LEN).unwrap_or(&[]),
                "OVMF GUID table",
            );
            let size = r.u16_le("entry size").map_err(malformed)?;
            let g = r.take_array::<16>("entry GUID").map_err(malformed)?;
            Ok((usize::from(size), g))
        };
        let (size, footer_guid) = header(footer)?;
        if footer_guid != FOOTER {
            return Err(Malformed::Missing {
                what: "OVMF footer GUID table",
                detail: "firmware image has no OVMF footer GUID table".into(),
            }
            .into());
        }
        let start = size
            .checked_sub(ENTRY_HEADER_LEN)
            .and_then(|body| footer.checked_sub(body))
            .ok_or_else(|| {
                bad_value(
                    "GUID table size",
                    &format!(
                        "{ENTRY_HEADER_LEN}..={} (the image before the footer)",
                        footer + ENTRY_HEADER_LEN
                    ),
                    size,
                )
            })?;
        let mut entries = Vec::new();
        let mut pos = footer;
        while pos > start {
            let hdr = pos
                .checked_sub(ENTRY_HEADER_LEN)
                .filter(|h| *h >= start)
                .ok_or_else(|| Malformed::Truncated {
                    context: "OVMF GUID table",
                    field: "entry header".into(),
                    offset: start,
                    needed: ENTRY_HEADER_LEN,
                    available: pos - start,
                })?;
            let (esize, g) = header(hdr)?;
            if esize < ENTRY_HEADER_LEN || esize > pos - start {
                return Err(bad_value(
                    "GUID table entry size",
                    &format!("{ENTRY_HEADER_LEN}..={}", pos - start),
                    esize,
                ));
            }
            entries.push((g, ovmf[pos - esize..hdr].to_vec()));
            pos -= esize;
        }
        let find = |g: [u8; 16]| {
            entries
                .iter()
                .find(|(id, _)| *id == g)
                .map(|(_, d)| d.as_slice())
        };
        let ap_eip = find(SEV_ES_RESET_BLOCK).and_then(first_u32);
        let hash_table_gpa = find(SEV_HASH_TABLE_RV).and_then(first_u32);
        let mut sections = Vec::new();
        if let Some(d) = find(SEV_METADATA) {
            let off = Reader::new(d, "OVMF_SEV_METADATA entry")
                .u32_le("SEV metadata offset")
                .map_err(malformed)? as usize;
            let m = len.checked_sub(off).ok_or_else(|| {
                bad_value(
                    "SEV metadata offset",
                    &format!("at most the image's {len} bytes"),
                    off,
                )
            })?;
            let mut r = Reader::new(ovmf.get(m..).unwrap_or(&[]), "SEV metadata");
            let sig = r.take(4, "signature").map_err(malformed)?;
            if sig != b"ASEV" {
                return Err(bad_value(
                    "SEV metadata signature",
                    "\"ASEV\"",
                    format_args!("{:?}", String::from_utf8_lossy(sig)),
                ));
            }
            r.skip(8, "size and version").map_err(malformed)?;
            let n = r.u32_le("section count").map_err(malformed)? as usize;
            if n > MAX_SECTIONS {
                return Err(Malformed::TooMany {
                    what: "SEV metadata".into(),
                    items: "sections",
                    count: n,
                    max: MAX_SECTIONS,
                }
                .into());
            }
            for _ in 0..n {
                let gpa = r.u32_le("section gpa").map_err(malformed)?;
                let size = r.u32_le("section size").map_err(malformed)?;
                let kind = SectionKind::try_from(r.u32_le("section type").map_err(malformed)?)?;
                sections.push(Section { gpa, size, kind });
            }
        }
        Ok(OvmfInfo {
            entries,
            ap_eip,
            hash_table_gpa,
            sections,
        })
    }

    /// The first little-endian u32 of the GUID table entry `g`.
    pub fn entry_u32(&self, g: [u8; 16]) -> Option<u32> {
        self.entries
            .iter()
            .find(|(id, _)| *id == g)
            .and_then(|(_, d)| first_u32(d))
    }
}
