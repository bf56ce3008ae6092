//! The running launch digest: one `PAGE_INFO` hashed in per page the VMM
//! adds (`LD = SHA-384(PAGE_INFO)`, PAGE_INFO starting with the previous LD).

use sha2::{Digest, Sha384};

use super::PAGE;

#[derive(Clone, Copy)]
#[repr(u8)]
pub(crate) enum PageType {
    Normal = 1,
    Vmsa = 2,
    Zero = 3,
    Unmeasured = 4,
    Secrets = 5,
    Cpuid = 6,
}

/// `PAGE_INFO` (SEV-SNP ABI, SNP_LAUNCH_UPDATE): the previous digest (0x00),
/// the page's digest (0x30), this length (0x60), the page type (0x62),
/// IMI page and permissions (0x63..0x68, zero here), the GPA (0x68).
const PAGE_INFO_LEN: usize = 0x70;

/// The running launch digest.
pub(crate) struct Gctx {
    pub(crate) ld: [u8; 48],
}

impl Gctx {
    pub(crate) fn update(&mut self, ty: PageType, gpa: u64, contents: &[u8; 48]) {
        let mut info = [0u8; PAGE_INFO_LEN];
        info[..48].copy_from_slice(&self.ld);
        info[48..96].copy_from_slice(contents);
        info[0x60..0x62].copy_from_slice(&(PAGE_INFO_LEN as u16).to_le_bytes());
        info[0x62] = ty as u8;
        info[0x68..PAGE_INFO_LEN].copy_from_slice(&gpa.to_le_bytes());
        self.ld = Sha384::digest(info).into();
    }

    pub(crate) fn normal_pages(&mut self, gpa: u64, data: &[u8]) {
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

    pub(crate) fn empty_pages(&mut self, ty: PageType, gpa: u64, len: u64) {
        let mut off = 0;
        while off < len {
            self.update(ty, gpa + off, &[0u8; 48]);
            off += PAGE as u64;
        }
    }
}
