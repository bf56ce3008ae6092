//! Names shared by the plug-ins that produce identities and the policies
//! that read them: boot register names and platform-claims sections.
//!
//! They are part of the identity's JSON contract ([`crate::identity`]). A
//! plug-in writes them and a policy reads them through these constants, so
//! a renamed register is a compile error on both sides instead of a policy
//! that silently reads "none".

/// Boot register names (`VerifiedIdentity.boot`).
pub mod reg {
    /// TDX: MRTD, the TD's initial contents.
    pub const MRTD: &str = "mrtd";
    /// TDX: RTMR0 (firmware configuration).
    pub const RTMR0: &str = "rtmr0";
    /// TDX: RTMR1 (boot loader and kernel).
    pub const RTMR1: &str = "rtmr1";
    /// TDX: RTMR2 (kernel command line, initrd).
    pub const RTMR2: &str = "rtmr2";
    /// TDX: RTMR3 (runtime events: the app identity).
    pub const RTMR3: &str = "rtmr3";
    /// TDX: MRCONFIGID (host-chosen).
    pub const MR_CONFIG_ID: &str = "mr_config_id";
    /// TDX: MROWNER (host-chosen).
    pub const MR_OWNER: &str = "mr_owner";
    /// TDX: MROWNERCONFIG (host-chosen).
    pub const MR_OWNER_CONFIG: &str = "mr_owner_config";
    /// TDX: XFAM.
    pub const XFAM: &str = "xfam";
    /// TDX: TDATTRIBUTES.
    pub const TD_ATTRIBUTES: &str = "td_attributes";
    /// TDX: TEE_TCB_SVN.
    pub const TEE_TCB_SVN: &str = "tee_tcb_svn";
    /// TDX: MRSEAM (the TDX module).
    pub const MR_SEAM: &str = "mr_seam";
    /// SEV-SNP: MEASUREMENT (the launch digest).
    pub const MEASUREMENT: &str = "measurement";
    /// SEV-SNP: HOST_DATA (host-chosen, binds the app config).
    pub const HOST_DATA: &str = "host_data";
    /// SEV-SNP: FAMILY_ID (host-chosen).
    pub const FAMILY_ID: &str = "family_id";
    /// SEV-SNP: IMAGE_ID (host-chosen).
    pub const IMAGE_ID: &str = "image_id";
    /// SEV-SNP: GUEST_SVN.
    pub const GUEST_SVN: &str = "guest_svn";
    /// SEV-SNP: POLICY.
    pub const POLICY: &str = "policy";
    /// SEV-SNP: VMPL.
    pub const VMPL: &str = "vmpl";
    /// SEV-SNP: REPORTED_TCB.
    pub const REPORTED_TCB: &str = "reported_tcb";
    /// SEV-SNP: COMMITTED_TCB.
    pub const COMMITTED_TCB: &str = "committed_tcb";
    /// SEV-SNP: LAUNCH_TCB.
    pub const LAUNCH_TCB: &str = "launch_tcb";
    /// SEV-SNP: CURRENT_TCB.
    pub const CURRENT_TCB: &str = "current_tcb";
    /// SEV-SNP: PLATFORM_INFO.
    pub const PLATFORM_INFO: &str = "platform_info";
    /// SEV-SNP: CHIP_ID.
    pub const CHIP_ID: &str = "chip_id";
}

/// `platform_claims` section names.
pub mod section {
    /// The TDX plug-in's claims.
    pub const TDX: &str = "tdx";
    /// The SEV-SNP plug-in's claims.
    pub const SEV_SNP: &str = "sev_snp";
    /// dstack's aggregates ([`crate::dstack::DstackClaims`]).
    pub const DSTACK: &str = "dstack";
}

/// Claim names inside the sections that policies read.
pub mod claim {
    /// `sev_snp.revocation_checked`: an AMD CRL was checked.
    pub const REVOCATION_CHECKED: &str = "revocation_checked";
}
