//! The Coconut-SVSM launch.

use sha2::{Digest, Sha384};

use super::gctx::{Gctx, PageType};
use super::ovmf::OvmfInfo;
use super::vmsa::{VmmType, svsm_vmsa_page};
use super::{FOUR_GIB, LaunchInput, MeasureError, PAGE, VMSA_GPA, metadata_pages, page_multiple};
use crate::guid::guid;

/// The Coconut-SVSM launch (sev-snp-measure `snp:svsm`, the pre-IGVM
/// coconut-qemu flow): the SVSM runs at VMPL0 and starts OVMF itself.
#[derive(Clone, Debug)]
pub struct SvsmInputs<'a> {
    /// The OVMF image (ends at 4 GiB; only its pages are measured, the SVSM
    /// later launches it).
    pub ovmf: &'a [u8],
    /// The SVSM binary (`svsm.bin`).
    pub svsm: &'a [u8],
    /// Size of the OVMF variable store QEMU places just below OVMF; the SVSM
    /// image ends where the store starts.
    pub vars_size: u64,
    /// vCPU count.
    pub vcpus: u32,
    /// CPUID(1).EAX of the vCPU model.
    pub vcpu_sig: u32,
}

/// GUID table entry of the SVSM image whose first 4 bytes are the offset of
/// its entry point from the image start.
const SVSM_INFO_GUID: [u8; 16] = guid("a789a612-0597-4c4b-a49f-cbb1fe9d1ddd");

/// Computes the launch digest of a Coconut-SVSM guest: the OVMF pages, the
/// SVSM pages (ending where the OVMF variable store begins), the pages the
/// SVSM image's own SEV metadata lists, then one identical VMSA per vCPU.
/// Only QEMU launches SVSM this way, with SEV_FEATURES fixed to 0x1.
pub fn svsm_launch_digest(inp: &SvsmInputs<'_>) -> Result<[u8; 48], MeasureError> {
    page_multiple("firmware image", inp.ovmf.len() as u64)?;
    page_multiple("SVSM image", inp.svsm.len() as u64)?;
    if inp.vars_size % PAGE as u64 != 0 {
        return Err(LaunchInput::VarsNotPageMultiple {
            size: inp.vars_size,
        }
        .into());
    }
    if inp.vcpus == 0 {
        return Err(LaunchInput::NoVcpu.into());
    }
    let ovmf_gpa = FOUR_GIB - inp.ovmf.len() as u64;
    let svsm_gpa = ovmf_gpa
        .checked_sub(inp.vars_size)
        .and_then(|end| end.checked_sub(inp.svsm.len() as u64))
        .ok_or(LaunchInput::SvsmDoesNotFit)?;
    let info = OvmfInfo::parse(inp.svsm).map_err(|e| e.within("SVSM image"))?;
    let entry = info
        .entry_u32(SVSM_INFO_GUID)
        .ok_or(LaunchInput::NoSvsmInfo)?;
    let rip = svsm_gpa + u64::from(entry);
    let mut g = Gctx { ld: [0; 48] };
    g.normal_pages(ovmf_gpa, inp.ovmf);
    g.normal_pages(svsm_gpa, inp.svsm);
    metadata_pages(&mut g, &info, None, VmmType::Qemu)?;
    let vmsa: [u8; 48] = Sha384::digest(svsm_vmsa_page(rip, inp.vcpu_sig)).into();
    for _ in 0..inp.vcpus {
        g.update(PageType::Vmsa, VMSA_GPA, &vmsa);
    }
    Ok(g.ld)
}
