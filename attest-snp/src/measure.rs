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

use std::io::Read;

use sha2::{Digest, Sha256, Sha384};

const PAGE: usize = 4096;
const FOUR_GIB: u64 = 1 << 32;
const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;

/// A launch-digest failure: the inputs cannot describe a valid launch.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct MeasureError(pub String);

fn err(m: impl Into<String>) -> MeasureError {
    MeasureError(m.into())
}

#[derive(Clone, Copy)]
#[repr(u8)]
enum PageType {
    Normal = 1,
    Vmsa = 2,
    Zero = 3,
    Unmeasured = 4,
    Secrets = 5,
    Cpuid = 6,
}

/// The running launch digest.
struct Gctx {
    ld: [u8; 48],
}

impl Gctx {
    fn update(&mut self, ty: PageType, gpa: u64, contents: &[u8; 48]) {
        let mut info = [0u8; 0x70];
        info[..48].copy_from_slice(&self.ld);
        info[48..96].copy_from_slice(contents);
        info[0x60..0x62].copy_from_slice(&0x70u16.to_le_bytes());
        info[0x62] = ty as u8;
        info[0x68..0x70].copy_from_slice(&gpa.to_le_bytes());
        self.ld = Sha384::digest(info).into();
    }

    fn normal_pages(&mut self, gpa: u64, data: &[u8]) {
        for (i, page) in data.chunks(PAGE).enumerate() {
            let mut p = [0u8; PAGE];
            p[..page.len()].copy_from_slice(page);
            self.update(
                PageType::Normal,
                gpa + (i * PAGE) as u64,
                &Sha384::digest(p).into(),
            );
        }
    }

    fn empty_pages(&mut self, ty: PageType, gpa: u64, len: u64) {
        let mut off = 0;
        while off < len {
            self.update(ty, gpa + off, &[0u8; 48]);
            off += PAGE as u64;
        }
    }
}

/// The VMM that launches the guest (they lay out VMSAs slightly differently).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VmmType {
    /// QEMU/KVM.
    #[default]
    Qemu,
    /// AWS EC2.
    Ec2,
    /// Google Compute Engine.
    Gce,
}

impl std::str::FromStr for VmmType {
    type Err = MeasureError;
    fn from_str(s: &str) -> Result<Self, MeasureError> {
        match s {
            "qemu" => Ok(VmmType::Qemu),
            "ec2" => Ok(VmmType::Ec2),
            "gce" => Ok(VmmType::Gce),
            other => Err(err(format!("unknown VMM type {other:?} (qemu, ec2, gce)"))),
        }
    }
}

/// The CPUID(1).EAX signature of a QEMU vCPU model.
pub fn vcpu_signature(name: &str) -> Result<u32, MeasureError> {
    let base = name.split("-v").next().unwrap_or(name);
    let sig = match name {
        "EPYC" | "EPYC-v1" | "EPYC-v2" | "EPYC-v3" | "EPYC-v4" | "EPYC-IBPB" => 0x0080_0F12,
        _ => match base {
            "EPYC-Rome" => 0x0083_0F10,
            "EPYC-Milan" => 0x00A0_0F11,
            "EPYC-Genoa" => 0x00A1_0F10,
            "EPYC-Turin" => 0x00B0_0F00,
            _ => return Err(err(format!("unknown vCPU type {name:?}"))),
        },
    };
    Ok(sig)
}

/// SHA-256 hashes of the directly booted kernel, initrd and command line
/// (QEMU `kernel-hashes=on`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelHashes {
    /// SHA-256 of the kernel.
    pub kernel: [u8; 32],
    /// SHA-256 of the initrd (of nothing when there is none).
    pub initrd: [u8; 32],
    /// SHA-256 of the command line and its terminating NUL.
    pub cmdline: [u8; 32],
}

fn sha256_reader(mut r: impl Read) -> std::io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..n]);
    }
}

impl KernelHashes {
    /// Hashes a kernel, an optional initrd (streamed) and an optional command line.
    pub fn from_readers(
        kernel: impl Read,
        initrd: Option<impl Read>,
        append: Option<&str>,
    ) -> std::io::Result<Self> {
        let mut cmd = append.unwrap_or("").as_bytes().to_vec();
        cmd.push(0);
        Ok(KernelHashes {
            kernel: sha256_reader(kernel)?,
            initrd: match initrd {
                Some(r) => sha256_reader(r)?,
                None => Sha256::digest(b"").into(),
            },
            cmdline: Sha256::digest(&cmd).into(),
        })
    }

    /// The SEV hashes table page contents (176 bytes: 168 padded to 16).
    fn table(&self) -> [u8; 176] {
        let mut t = [0u8; 176];
        t[..16].copy_from_slice(&guid("9438d606-4f22-4cc9-b479-a793d411fd21"));
        t[16..18].copy_from_slice(&168u16.to_le_bytes());
        let entries = [
            ("97d02dd8-bd20-4c94-aa78-e7714d36ab2a", &self.cmdline),
            ("44baf731-3a2f-4bd7-9af1-41e29169781d", &self.initrd),
            ("4de79437-abd2-427f-b835-d5b172d2045b", &self.kernel),
        ];
        for (i, (g, h)) in entries.iter().enumerate() {
            let o = 18 + i * 50;
            t[o..o + 16].copy_from_slice(&guid(g));
            t[o + 16..o + 18].copy_from_slice(&50u16.to_le_bytes());
            t[o + 18..o + 50].copy_from_slice(*h);
        }
        t
    }
}

use crate::vcek::guid_le as guid;

/// One SEV metadata section of OVMF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section {
    /// Guest physical address.
    pub gpa: u32,
    /// Size in bytes.
    pub size: u32,
    /// 1 SNP_SEC_MEMORY, 2 SNP_SECRETS, 3 CPUID, 4 SVSM_CAA, 0x10 SNP_KERNEL_HASHES.
    pub kind: u32,
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

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    b.get(o..o + 2).map(|x| u16::from_le_bytes([x[0], x[1]]))
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    b.get(o..o + 4)
        .map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
}

impl OvmfInfo {
    /// Parses the footer GUID table and the SEV metadata of a firmware image.
    pub fn parse(ovmf: &[u8]) -> Result<Self, MeasureError> {
        let len = ovmf.len();
        let footer = len
            .checked_sub(32 + 18)
            .ok_or_else(|| err("firmware image too small for a GUID table footer"))?;
        if ovmf[footer + 2..footer + 18] != guid("96b582de-1fb2-45f7-baea-a366c55a082d") {
            return Err(err("firmware image has no OVMF footer GUID table"));
        }
        let size = usize::from(u16_at(ovmf, footer).unwrap_or(0));
        let start = footer
            .checked_sub(
                size.checked_sub(18)
                    .ok_or_else(|| err("bad GUID table size"))?,
            )
            .ok_or_else(|| err("GUID table runs past the start of the image"))?;
        let mut entries = Vec::new();
        let mut pos = footer;
        while pos > start {
            let hdr = pos
                .checked_sub(18)
                .filter(|h| *h >= start)
                .ok_or_else(|| err("truncated GUID table entry"))?;
            let esize = usize::from(u16_at(ovmf, hdr).unwrap_or(0));
            if esize < 18 || esize > pos - start {
                return Err(err(format!("bad GUID table entry size {esize}")));
            }
            let mut g = [0u8; 16];
            g.copy_from_slice(&ovmf[hdr + 2..hdr + 18]);
            entries.push((g, ovmf[pos - esize..hdr].to_vec()));
            pos -= esize;
        }
        let find = |g: &str| {
            entries
                .iter()
                .find(|(id, _)| *id == guid(g))
                .map(|(_, d)| d.as_slice())
        };
        let ap_eip = find("00f771de-1a7e-4fcb-890e-68c77e2fb44e").and_then(|d| u32_at(d, 0));
        let hash_table_gpa =
            find("7255371f-3a3b-4b04-927b-1da6efa8d454").and_then(|d| u32_at(d, 0));
        let mut sections = Vec::new();
        if let Some(d) = find("dc886566-984a-4798-a75e-5585a7bf67cc") {
            let off = u32_at(d, 0).ok_or_else(|| err("truncated SEV metadata pointer"))? as usize;
            let m = len
                .checked_sub(off)
                .ok_or_else(|| err("SEV metadata offset outside the image"))?;
            if ovmf.get(m..m + 4) != Some(b"ASEV") {
                return Err(err("SEV metadata has no ASEV signature"));
            }
            let n = u32_at(ovmf, m + 12).ok_or_else(|| err("truncated SEV metadata"))? as usize;
            if n > 64 {
                return Err(err(format!("SEV metadata lists {n} sections")));
            }
            for i in 0..n {
                let o = m + 16 + 12 * i;
                let (Some(gpa), Some(size), Some(kind)) =
                    (u32_at(ovmf, o), u32_at(ovmf, o + 4), u32_at(ovmf, o + 8))
                else {
                    return Err(err("truncated SEV metadata section"));
                };
                sections.push(Section { gpa, size, kind });
            }
        }
        Ok(OvmfInfo {
            entries: entries.clone(),
            ap_eip,
            hash_table_gpa,
            sections,
        })
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

/// A VMCB segment register: `{u16 selector, u16 attrib, u32 limit, u64 base}`.
#[derive(Clone, Copy)]
struct Segment {
    selector: u16,
    attrib: u16,
    limit: u32,
    base: u64,
}

const fn seg(selector: u16, attrib: u16, limit: u32, base: u64) -> Segment {
    Segment {
        selector,
        attrib,
        limit,
        base,
    }
}

/// The initial register state a VMM puts in a vCPU's VMSA (SEV-ES save
/// area); every field not listed here is zero. [`SaveArea::page`] holds the
/// only copy of the byte offsets.
struct SaveArea {
    es: Segment,
    cs: Segment,
    ss: Segment,
    ds: Segment,
    fs: Segment,
    gs: Segment,
    gdtr: Segment,
    ldtr: Segment,
    idtr: Segment,
    tr: Segment,
    cr0: u64,
    rip: u64,
    g_pat: u64,
    rdx: u64,
    sev_features: u64,
    mxcsr: u32,
    x87_fcw: u16,
}

impl SaveArea {
    fn page(&self) -> [u8; PAGE] {
        let mut v = [0u8; PAGE];
        let segments = [
            (0x00, self.es),
            (0x10, self.cs),
            (0x20, self.ss),
            (0x30, self.ds),
            (0x40, self.fs),
            (0x50, self.gs),
            (0x60, self.gdtr),
            (0x70, self.ldtr),
            (0x80, self.idtr),
            (0x90, self.tr),
        ];
        for (off, s) in segments {
            v[off..off + 2].copy_from_slice(&s.selector.to_le_bytes());
            v[off + 2..off + 4].copy_from_slice(&s.attrib.to_le_bytes());
            v[off + 4..off + 8].copy_from_slice(&s.limit.to_le_bytes());
            v[off + 8..off + 16].copy_from_slice(&s.base.to_le_bytes());
        }
        let words = [
            (0xD0, 0x1000), // EFER: KVM sets SVME
            (0x148, 0x40),  // CR4: KVM sets MCE
            (0x158, self.cr0),
            (0x160, 0x400),       // DR7
            (0x168, 0xffff_0ff0), // DR6
            (0x170, 0x2),         // RFLAGS
            (0x178, self.rip),
            (0x268, self.g_pat),
            (0x310, self.rdx),
            (0x3B0, self.sev_features),
            (0x3E8, 0x1), // XCR0
        ];
        for (off, x) in words {
            v[off..off + 8].copy_from_slice(&u64::to_le_bytes(x));
        }
        v[0x408..0x40C].copy_from_slice(&self.mxcsr.to_le_bytes());
        v[0x410..0x412].copy_from_slice(&self.x87_fcw.to_le_bytes());
        v
    }
}

/// PAT MSR reset value (AMD APM vol. 2, A.3); GCE's hypervisor sets its own.
const PAT_DEFAULT: u64 = 0x0007_0406_0007_0406;

/// The VMSA of an OVMF vCPU in real mode at `eip` (the BSP at the reset
/// vector, APs at OVMF's SEV-ES reset block).
fn vmsa_page(eip: u32, bsp: bool, inp: &LaunchInputs<'_>) -> [u8; PAGE] {
    let ec2 = inp.vmm == VmmType::Ec2;
    let gce = inp.vmm == VmmType::Gce;
    let qemu = inp.vmm == VmmType::Qemu;
    let data = seg(0, 0x93, 0xffff, 0);
    SaveArea {
        es: data,
        cs: seg(
            0xf000,
            if ec2 && bsp { 0x9a } else { 0x9b },
            0xffff,
            u64::from(eip & 0xffff_0000),
        ),
        ss: seg(0, if ec2 { 0x92 } else { 0x93 }, 0xffff, 0),
        ds: data,
        fs: data,
        gs: data,
        gdtr: seg(0, 0, 0xffff, 0),
        ldtr: seg(0, 0x82, 0xffff, 0),
        idtr: seg(0, 0, 0xffff, 0),
        tr: seg(0, if ec2 { 0x83 } else { 0x8b }, 0xffff, 0),
        cr0: 0x10,
        rip: u64::from(eip & 0xffff),
        g_pat: if gce { 0x0007_0106 } else { PAT_DEFAULT },
        rdx: if ec2 || gce {
            0x600
        } else {
            u64::from(inp.vcpu_sig)
        },
        sev_features: inp.guest_features,
        mxcsr: if qemu { 0x1f80 } else { 0 },
        x87_fcw: if qemu { 0x37f } else { 0 },
    }
    .page()
}

/// The pages an image's SEV metadata lists, in file order (what QEMU adds
/// after the firmware pages and before the VMSAs).
fn metadata_pages(
    g: &mut Gctx,
    info: &OvmfInfo,
    kernel: Option<&KernelHashes>,
    vmm: VmmType,
) -> Result<(), MeasureError> {
    for s in &info.sections {
        let (gpa, size) = (u64::from(s.gpa), u64::from(s.size));
        match s.kind {
            1 => g.empty_pages(
                if vmm == VmmType::Gce {
                    PageType::Unmeasured
                } else {
                    PageType::Zero
                },
                gpa,
                size,
            ),
            2 => g.update(PageType::Secrets, gpa, &[0; 48]),
            3 => {
                if vmm != VmmType::Ec2 {
                    g.update(PageType::Cpuid, gpa, &[0; 48]);
                }
            }
            4 => g.empty_pages(PageType::Zero, gpa, size),
            0x10 => match kernel {
                Some(h) => {
                    if size as usize != PAGE {
                        return Err(err(format!(
                            "SNP_KERNEL_HASHES section is {size} bytes, expected 4096"
                        )));
                    }
                    let table_gpa = info
                        .hash_table_gpa
                        .ok_or_else(|| err("no SEV_HASH_TABLE_RV entry for the kernel hashes"))?;
                    let off = (table_gpa & 0xfff) as usize;
                    if off + 176 > PAGE {
                        return Err(err("kernel hashes table crosses its page"));
                    }
                    let mut page = [0u8; PAGE];
                    page[off..off + 176].copy_from_slice(&h.table());
                    g.update(PageType::Normal, gpa, &Sha384::digest(page).into());
                }
                None => g.empty_pages(PageType::Zero, gpa, size),
            },
            k => return Err(err(format!("unknown SEV metadata section type {k:#x}"))),
        }
    }
    if vmm == VmmType::Ec2 {
        for s in info.sections.iter().filter(|s| s.kind == 3) {
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
    let has_hashes_section = info.sections.iter().any(|s| s.kind == 0x10);
    if inp.kernel.is_some() && !has_hashes_section {
        return Err(err(
            "a kernel was given but the firmware has no SNP_KERNEL_HASHES section (kernel hashes cannot be measured)",
        ));
    }
    metadata_pages(&mut g, &info, inp.kernel.as_ref(), inp.vmm)?;
    let ap_eip = info
        .ap_eip
        .ok_or_else(|| err("firmware has no SEV_ES_RESET_BLOCK (AP reset address)"))?;
    if inp.vcpus == 0 {
        return Err(err("at least one vCPU is needed"));
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
const SVSM_INFO_GUID: &str = "a789a612-0597-4c4b-a49f-cbb1fe9d1ddd";

fn page_multiple(what: &str, len: u64) -> Result<(), MeasureError> {
    if len == 0 || len % PAGE as u64 != 0 || len > FOUR_GIB {
        return Err(err(format!(
            "{what} size {len} is not a positive multiple of 4096 below 4 GiB"
        )));
    }
    Ok(())
}

/// The VMSA every vCPU starts with under coconut-qemu: 32-bit protected
/// mode with flat 4 GiB segments (CS selector 8, data selectors 16),
/// CR0 = PE|ET, at the SVSM entry point. Unlike the OVMF VMSA, the x87
/// control word is left 0 (sev-snp-measure never sets it in this mode, and
/// its digests are what real launches were checked against).
fn svsm_vmsa_page(rip: u64, vcpu_sig: u32) -> [u8; PAGE] {
    let flat_data = seg(16, 0xc93, 0xffff_ffff, 0);
    SaveArea {
        es: flat_data,
        cs: seg(8, 0xc9b, 0xffff_ffff, 0),
        ss: flat_data,
        ds: flat_data,
        fs: flat_data,
        gs: seg(0, 0x93, 0xffff, 0),
        gdtr: seg(0, 0, 0xffff, 0),
        ldtr: seg(0, 0x82, 0xffff, 0),
        idtr: seg(0, 0, 0xffff, 0),
        tr: seg(0, 0x8b, 0xffff, 0),
        cr0: 0x11,
        rip,
        g_pat: PAT_DEFAULT,
        rdx: u64::from(vcpu_sig),
        sev_features: 0x1,
        mxcsr: 0x1f80,
        x87_fcw: 0,
    }
    .page()
}

/// Computes the launch digest of a Coconut-SVSM guest: the OVMF pages, the
/// SVSM pages (ending where the OVMF variable store begins), the pages the
/// SVSM image's own SEV metadata lists, then one identical VMSA per vCPU.
/// Only QEMU launches SVSM this way, with SEV_FEATURES fixed to 0x1.
pub fn svsm_launch_digest(inp: &SvsmInputs<'_>) -> Result<[u8; 48], MeasureError> {
    page_multiple("firmware image", inp.ovmf.len() as u64)?;
    page_multiple("SVSM image", inp.svsm.len() as u64)?;
    if inp.vars_size % PAGE as u64 != 0 {
        return Err(err(format!(
            "OVMF variables size {} is not a multiple of 4096",
            inp.vars_size
        )));
    }
    if inp.vcpus == 0 {
        return Err(err("at least one vCPU is needed"));
    }
    let ovmf_gpa = FOUR_GIB - inp.ovmf.len() as u64;
    let svsm_gpa = ovmf_gpa
        .checked_sub(inp.vars_size)
        .and_then(|end| end.checked_sub(inp.svsm.len() as u64))
        .ok_or_else(|| err("SVSM image and OVMF variables do not fit below the firmware image"))?;
    let info = OvmfInfo::parse(inp.svsm).map_err(|e| err(format!("SVSM image: {e}")))?;
    let entry = info
        .entries
        .iter()
        .find(|(g, _)| *g == guid(SVSM_INFO_GUID))
        .and_then(|(_, d)| u32_at(d, 0))
        .ok_or_else(|| err("SVSM image has no SVSM_INFO entry (entry point) in its GUID table"))?;
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
