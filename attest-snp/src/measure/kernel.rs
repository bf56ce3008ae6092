//! The SEV hashes table of a direct kernel boot (QEMU `kernel-hashes=on`).

use std::io::Read;

use sha2::{Digest, Sha256};

use crate::guid::guid;

/// The table's GUID, and those of its cmdline, initrd and kernel entries.
const HASH_TABLE: [u8; 16] = guid("9438d606-4f22-4cc9-b479-a793d411fd21");
const CMDLINE: [u8; 16] = guid("97d02dd8-bd20-4c94-aa78-e7714d36ab2a");
const INITRD: [u8; 16] = guid("44baf731-3a2f-4bd7-9af1-41e29169781d");
const KERNEL: [u8; 16] = guid("4de79437-abd2-427f-b835-d5b172d2045b");
/// The table's header: its GUID and a u16 length.
const HEADER_LEN: usize = 16 + 2;
/// An entry: its GUID, a u16 length and a SHA-256 digest.
const ENTRY_LEN: usize = 16 + 2 + 32;
/// The entries: cmdline, initrd, kernel.
const ENTRIES: usize = 3;
/// The length the table declares: header and entries, without padding.
const DECLARED_LEN: usize = HEADER_LEN + ENTRIES * ENTRY_LEN;
/// The table as placed in its page: the declared length padded to 16 bytes.
pub(crate) const TABLE_LEN: usize = DECLARED_LEN.next_multiple_of(16);

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

    /// The SEV hashes table page contents (168 bytes padded to 16).
    pub(crate) fn table(&self) -> [u8; TABLE_LEN] {
        let mut t = [0u8; TABLE_LEN];
        t[..16].copy_from_slice(&HASH_TABLE);
        t[16..HEADER_LEN].copy_from_slice(&(DECLARED_LEN as u16).to_le_bytes());
        let entries: [(_, &[u8; 32]); ENTRIES] = [
            (CMDLINE, &self.cmdline),
            (INITRD, &self.initrd),
            (KERNEL, &self.kernel),
        ];
        for (i, (g, h)) in entries.iter().enumerate() {
            let o = HEADER_LEN + i * ENTRY_LEN;
            t[o..o + 16].copy_from_slice(g);
            t[o + 16..o + 18].copy_from_slice(&(ENTRY_LEN as u16).to_le_bytes());
            t[o + 18..o + ENTRY_LEN].copy_from_slice(*h);
        }
        t
    }
}
