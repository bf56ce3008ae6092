//! The SEV-SNP launch digest (MEASUREMENT) of an OS image, computed without
//! booting it: what `kms measure sev-snp` prints and `kms image add` records.
//!
//! The PSP extends a 48-byte digest with one `PAGE_INFO` per 4 KiB page the
//! VMM adds at launch (`SNP_LAUNCH_UPDATE`):
//! `LD = SHA-384(LD ‖ contents ‖ u16 0x70 ‖ page_type ‖ imi 0 ‖ vmpl perms 0,0,0 ‖ 0 ‖ u64 gpa)`,
//! where `contents` is SHA-384 of the page for normal and VMSA pages and 48
//! zero bytes otherwise. QEMU adds the OVMF image (ending at 4 GiB), the
//! pages OVMF's SEV metadata lists (zero, secrets, CPUID, SVSM CAA, and the
//! kernel hashes page that binds `-kernel/-initrd/-append`), then one VMSA
//! per vCPU. [`svsm_launch_digest`] covers the Coconut-SVSM launch. Cost is linear in the input size: one SHA-384 pass over OVMF
//! and one SHA-256 pass over kernel and initrd (streamed from readers).

//!
//! Files follow the reviewer's questions: [`gctx`] (the PAGE_INFO chain),
//! [`ovmf`] (the firmware's GUID table and SEV metadata), [`kernel`] (the
//! direct-boot hashes page), [`vmsa`] (the initial vCPU state per VMM and
//! vCPU type), [`svsm`] (the Coconut-SVSM launch).

mod gctx;
pub mod kernel;
pub mod ovmf;
pub mod svsm;
pub mod vmsa;

use sha2::{Digest, Sha384};

use gctx::{Gctx, PageType};
pub use kernel::KernelHashes;
pub use ovmf::{OvmfInfo, Section, SectionKind};
pub use svsm::{SvsmInputs, svsm_launch_digest};
use vmsa::vmsa_page;
pub use vmsa::{VmmType, vcpu_signature};

/// Page size.
pub(crate) const PAGE: usize = 4096;
/// The firmware image ends at 4 GiB.
pub(crate) const FOUR_GIB: u64 = 1 << 32;
/// Where every VMSA page is measured.
pub(crate) const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;

/// A launch-digest failure.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MeasureError {
    /// A firmware (or SVSM) image whose footer GUID table or SEV metadata
    /// does not parse: the same typed detail as evidence that does not.
    #[error("{0}")]
    Malformed(attest_core::Malformed),
    /// The inputs cannot describe a valid launch (no vCPU, a size that is
    /// not a page multiple, a kernel without a hashes page, ...).
    #[error("{0}")]
    Input(LaunchInput),
}

/// Why the inputs cannot describe a valid launch ([`MeasureError::Input`]).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LaunchInput {
    /// An image whose size is zero, not a multiple of 4096, or above 4 GiB.
    #[error("{what} size {size} is not a positive multiple of 4096 below 4 GiB")]
    NotPageMultiple {
        /// The image (`"firmware image"`, `"SVSM image"`).
        what: &'static str,
        /// Its size.
        size: u64,
    },
    /// An OVMF variable store size that is not a multiple of 4096.
    #[error("OVMF variables size {size} is not a multiple of 4096")]
    VarsNotPageMultiple {
        /// The size given.
        size: u64,
    },
    /// No vCPU.
    #[error("at least one vCPU is needed")]
    NoVcpu,
    /// The SVSM image and the variable store do not fit below the firmware.
    #[error("SVSM image and OVMF variables do not fit below the firmware image")]
    SvsmDoesNotFit,
    /// The SVSM image's GUID table has no SVSM_INFO entry.
    #[error("SVSM image has no SVSM_INFO entry (entry point) in its GUID table")]
    NoSvsmInfo,
    /// A kernel was given but the firmware has no SNP_KERNEL_HASHES section.
    #[error(
        "a kernel was given but the firmware has no SNP_KERNEL_HASHES section (kernel hashes cannot be measured)"
    )]
    NoKernelHashesSection,
    /// The SNP_KERNEL_HASHES section is not one page.
    #[error("SNP_KERNEL_HASHES section is {size} bytes, expected 4096")]
    KernelHashesSectionSize {
        /// The section's size.
        size: u64,
    },
    /// No SEV_HASH_TABLE_RV entry says where the kernel hashes table goes.
    #[error("no SEV_HASH_TABLE_RV entry for the kernel hashes")]
    NoHashTableEntry,
    /// The kernel hashes table would cross its page.
    #[error("kernel hashes table crosses its page")]
    HashTableCrossesPage,
    /// The firmware has no SEV_ES_RESET_BLOCK (the AP reset address).
    #[error("firmware has no SEV_ES_RESET_BLOCK (AP reset address)")]
    NoResetBlock,
    /// A VMM name other than `qemu`, `ec2` or `gce`.
    #[error("unknown VMM type {0:?} (qemu, ec2, gce)")]
    UnknownVmm(String),
    /// A vCPU model name this crate has no CPUID signature for.
    #[error("unknown vCPU type {0:?}")]
    UnknownVcpu(String),
}

impl MeasureError {
    /// The same error, inside `location` (an image the caller names).
    pub(crate) fn within(self, location: &str) -> Self {
        match self {
            MeasureError::Malformed(m) => MeasureError::Malformed(attest_core::Malformed::Within {
                location: location.into(),
                inner: Box::new(m),
            }),
            // Input errors name what they are about themselves.
            input @ MeasureError::Input(_) => input,
        }
    }
}

impl From<attest_core::Malformed> for MeasureError {
    fn from(m: attest_core::Malformed) -> Self {
        MeasureError::Malformed(m)
    }
}

impl From<LaunchInput> for MeasureError {
    fn from(i: LaunchInput) -> Self {
        MeasureError::Input(i)
    }
}

/// Everything that determines an SNP launch digest.
#[derive(Clone, Debug)]
pub struct LaunchInputs<'a> {
    /// The firmware image.
    pub ovmf: &'a [u8],
    /// vCPU count.
    pub vcpus: u32,
    /// CPUID(1).EAX of the vCPU model.
    pub vcpu_sig: u32,
    /// VMSA SEV_FEATURES.
    pub guest_features: u64,
    /// Direct boot hashes, when `-kernel` is given.
    pub kernel: Option<KernelHashes>,
    /// The VMM.
    pub vmm: VmmType,
    /// Stop after the firmware pages (the "OVMF hash").
    pub ovmf_only: bool,
}

pub(crate) fn page_multiple(what: &'static str, len: u64) -> Result<(), MeasureError> {
    if len == 0 || len % PAGE as u64 != 0 || len > FOUR_GIB {
        return Err(LaunchInput::NotPageMultiple { what, size: len }.into());
    }
    Ok(())
}

/// The pages an image's SEV metadata lists, in file order (what QEMU adds
/// after the firmware pages and before the VMSAs).
pub(crate) fn metadata_pages(
    g: &mut Gctx,
    info: &OvmfInfo,
    kernel: Option<&KernelHashes>,
    vmm: VmmType,
) -> Result<(), MeasureError> {
    for s in &info.sections {
        let (gpa, size) = (u64::from(s.gpa), u64::from(s.size));
        match s.kind {
            SectionKind::SecMemory => g.empty_pages(
                if vmm == VmmType::Gce {
                    PageType::Unmeasured
                } else {
                    PageType::Zero
                },
                gpa,
                size,
            ),
            SectionKind::Secrets => g.update(PageType::Secrets, gpa, &[0; 48]),
            SectionKind::Cpuid => {
                if vmm != VmmType::Ec2 {
                    g.update(PageType::Cpuid, gpa, &[0; 48]);
                }
            }
            SectionKind::SvsmCaa => g.empty_pages(PageType::Zero, gpa, size),
            SectionKind::KernelHashes => match kernel {
                Some(h) => {
                    if size as usize != PAGE {
                        return Err(LaunchInput::KernelHashesSectionSize { size }.into());
                    }
                    let table_gpa = info.hash_table_gpa.ok_or(LaunchInput::NoHashTableEntry)?;
                    let off = (table_gpa & 0xfff) as usize;
                    if off + kernel::TABLE_LEN > PAGE {
                        return Err(LaunchInput::HashTableCrossesPage.into());
                    }
                    let mut page = [0u8; PAGE];
                    page[off..off + kernel::TABLE_LEN].copy_from_slice(&h.table());
                    g.update(PageType::Normal, gpa, &Sha384::digest(page).into());
                }
                None => g.empty_pages(PageType::Zero, gpa, size),
            },
        }
    }
    if vmm == VmmType::Ec2 {
        for s in info
            .sections
            .iter()
            .filter(|s| s.kind == SectionKind::Cpuid)
        {
            g.update(PageType::Cpuid, u64::from(s.gpa), &[0; 48]);
        }
    }
    Ok(())
}

/// Computes the launch digest.
pub fn launch_digest(inp: &LaunchInputs<'_>) -> Result<[u8; 48], MeasureError> {
    let len = inp.ovmf.len() as u64;
    page_multiple("firmware image", len)?;
    let mut g = Gctx { ld: [0; 48] };
    g.normal_pages(FOUR_GIB - len, inp.ovmf);
    if inp.ovmf_only {
        return Ok(g.ld);
    }
    let info = OvmfInfo::parse(inp.ovmf)?;
    let has_hashes_section = info
        .sections
        .iter()
        .any(|s| s.kind == SectionKind::KernelHashes);
    if inp.kernel.is_some() && !has_hashes_section {
        return Err(LaunchInput::NoKernelHashesSection.into());
    }
    metadata_pages(&mut g, &info, inp.kernel.as_ref(), inp.vmm)?;
    let ap_eip = info.ap_eip.ok_or(LaunchInput::NoResetBlock)?;
    if inp.vcpus == 0 {
        return Err(LaunchInput::NoVcpu.into());
    }
    for i in 0..inp.vcpus {
        let page = if i == 0 {
            vmsa_page(0xffff_fff0, true, inp)
        } else {
            vmsa_page(ap_eip, false, inp)
        };
        g.update(PageType::Vmsa, VMSA_GPA, &Sha384::digest(page).into());
    }
    Ok(g.ld)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Launch inputs are whole pages, at least one and at most 4 GiB.
    #[test]
    fn launch_inputs_are_whole_pages_up_to_4_gib() {
        page_multiple("firmware", PAGE as u64).unwrap();
        page_multiple("firmware", FOUR_GIB).unwrap();
        for bad in [0, 1, PAGE as u64 + 1, FOUR_GIB + PAGE as u64] {
            assert!(
                matches!(
                    page_multiple("firmware", bad),
                    Err(MeasureError::Input(LaunchInput::NotPageMultiple { size, .. })) if size == bad
                ),
                "{bad}"
            );
        }
    }
}
