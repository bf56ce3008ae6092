//! The initial vCPU state (VMSA page) a VMM measures, per VMM and vCPU
//! type.

use super::{LaunchInput, LaunchInputs, MeasureError, PAGE};

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
            other => Err(LaunchInput::UnknownVmm(other.to_owned()).into()),
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
            _ => return Err(LaunchInput::UnknownVcpu(name.to_owned()).into()),
        },
    };
    Ok(sig)
}

/// A VMCB segment register: `{u16 selector, u16 attrib, u32 limit, u64 base}`.
#[derive(Clone, Copy)]
pub(crate) struct Segment {
    selector: u16,
    attrib: u16,
    limit: u32,
    base: u64,
}

pub(crate) const fn seg(selector: u16, attrib: u16, limit: u32, base: u64) -> Segment {
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
pub(crate) struct SaveArea {
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
    pub(crate) fn page(&self) -> [u8; PAGE] {
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
pub(crate) const PAT_DEFAULT: u64 = 0x0007_0406_0007_0406;

/// The VMSA of an OVMF vCPU in real mode at `eip` (the BSP at the reset
/// vector, APs at OVMF's SEV-ES reset block).
pub(crate) fn vmsa_page(eip: u32, bsp: bool, inp: &LaunchInputs<'_>) -> [u8; PAGE] {
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

/// The VMSA every vCPU starts with under coconut-qemu: 32-bit protected
/// mode with flat 4 GiB segments (CS selector 8, data selectors 16),
/// CR0 = PE|ET, at the SVSM entry point. Unlike the OVMF VMSA, the x87
/// control word is left 0 (sev-snp-measure never sets it in this mode, and
/// its digests are what real launches were checked against).
pub(crate) fn svsm_vmsa_page(rip: u64, vcpu_sig: u32) -> [u8; PAGE] {
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
