//! The OVMF footer GUID table and SEV metadata parser cut at every length:
//! each cut is a typed [`Malformed`] refusal (or, where the cut removes only
//! bytes the parser never reads, the same result as the whole image), never
//! a panic.
#![allow(clippy::unwrap_used, missing_docs)]

use attest_snp::measure::{MeasureError, OvmfInfo};

fn image(name: &str) -> Vec<u8> {
    std::fs::read(attest_testkit::vectors::path("snp/measure").join(name)).unwrap()
}

/// The images the measurement cases use: two 4 KiB firmware tails and the
/// full SVSM-era OVMF.
const IMAGES: [&str; 3] = [
    "ovmf_AmdSev_suffix.bin",
    "ovmf_OvmfX64_suffix.bin",
    "svsm_ovmf.fd",
];

fn assert_malformed(r: Result<OvmfInfo, MeasureError>, what: &str) {
    match r {
        Err(MeasureError::Malformed(_)) => {}
        other => panic!("{what}: expected a typed Malformed error, got {other:?}"),
    }
}

/// The lowest offset, from the image's end, that the parser reads: the
/// start of the GUID table or of the SEV metadata, whichever is further.
fn read_span(whole: &OvmfInfo) -> usize {
    let table: usize = 32
        + 18
        + whole
            .entries
            .iter()
            .map(|(_, d)| d.len() + 18)
            .sum::<usize>();
    let metadata = whole
        .entry_u32(attest_snp_sev_metadata_guid())
        .map_or(0, |off| off as usize);
    table.max(metadata)
}

/// OVMF_SEV_METADATA, in firmware byte order.
fn attest_snp_sev_metadata_guid() -> [u8; 16] {
    // dc886566-984a-4798-a75e-5585a7bf67cc
    [
        0x66, 0x65, 0x88, 0xdc, 0x4a, 0x98, 0x98, 0x47, 0xa7, 0x5e, 0x55, 0x85, 0xa7, 0xbf, 0x67,
        0xcc,
    ]
}

/// Every cut that removes bytes from the front of the region the parser
/// reads (the footer table and the SEV metadata, read back from the end)
/// is refused; cuts before that region change nothing.
#[test]
fn front_cuts_of_the_read_region_are_malformed() {
    for name in IMAGES {
        let ovmf = image(name);
        let whole = OvmfInfo::parse(&ovmf).unwrap();
        assert!(!whole.sections.is_empty(), "{name}: has SEV metadata");
        let span = read_span(&whole);
        assert!(span <= ovmf.len(), "{name}");
        let first_read = ovmf.len() - span;
        // A margin of untouched bytes before the region, then every cut
        // into it.
        for cut in first_read.saturating_sub(64)..=ovmf.len() {
            let r = OvmfInfo::parse(&ovmf[cut..]);
            if cut <= first_read {
                assert_eq!(
                    r.as_ref(),
                    Ok(&whole),
                    "{name}: cut {cut} before the region"
                );
            } else {
                assert_malformed(r, &format!("{name}: front cut at {cut}"));
            }
        }
    }
}

/// Every prefix of the region (the image's tail ending early): the footer
/// is no longer where the parser looks, or the image is too short for it.
#[test]
fn every_prefix_of_the_tail_is_malformed() {
    for name in IMAGES {
        let ovmf = image(name);
        let whole = OvmfInfo::parse(&ovmf).unwrap();
        let start = ovmf.len() - read_span(&whole);
        let tail = &ovmf[start..];
        for len in 0..tail.len() {
            assert_malformed(
                OvmfInfo::parse(&tail[..len]),
                &format!("{name}: tail prefix of {len} bytes"),
            );
        }
    }
}

/// The SEV metadata offset set to every value up to past the image's end:
/// only the real one parses, every other is a typed refusal (no signature
/// there, or the metadata runs past the end), never a panic.
#[test]
fn every_metadata_offset_but_the_real_one_is_malformed() {
    let ovmf = image("ovmf_AmdSev_suffix.bin");
    let whole = OvmfInfo::parse(&ovmf).unwrap();
    let real = whole.entry_u32(attest_snp_sev_metadata_guid()).unwrap();
    let at = find_entry_data(&ovmf, attest_snp_sev_metadata_guid());
    for off in 0..=ovmf.len() as u32 + 16 {
        let mut img = ovmf.clone();
        img[at..at + 4].copy_from_slice(&off.to_le_bytes());
        let r = OvmfInfo::parse(&img);
        if off == real {
            assert_eq!(r, Ok(whole.clone()));
        } else {
            assert_malformed(r, &format!("metadata offset {off}"));
        }
    }
}

/// The SEV metadata itself cut at every length: the 32 bytes after the
/// footer table are not read as part of it, so the first `k` bytes of the
/// real metadata (signature, size and version, section count, sections) can
/// sit at the image's very end with the offset pointing at them. Every
/// such cut runs out of bytes: a typed `Truncated`, never a panic.
#[test]
fn the_sev_metadata_cut_at_every_length_is_truncated() {
    let ovmf = image("ovmf_AmdSev_suffix.bin");
    let whole = OvmfInfo::parse(&ovmf).unwrap();
    let off = whole.entry_u32(attest_snp_sev_metadata_guid()).unwrap() as usize;
    let m = ovmf.len() - off;
    assert_eq!(&ovmf[m..m + 4], b"ASEV");
    let at = find_entry_data(&ovmf, attest_snp_sev_metadata_guid());
    // The free tail, and what of the metadata fits in it: the header and
    // at least one section.
    let room = 32;
    assert!(
        16 + 12 * whole.sections.len() > room,
        "the cut is a truncation"
    );
    for k in 0..=room {
        let mut img = ovmf.clone();
        let end = img.len();
        img[end - k..].copy_from_slice(&ovmf[m..m + k]);
        img[at..at + 4].copy_from_slice(&(k as u32).to_le_bytes());
        match OvmfInfo::parse(&img) {
            Err(MeasureError::Malformed(e)) => assert!(e.is_truncated(), "cut {k}: {e:?}"),
            other => panic!("cut {k}: expected a truncation, got {other:?}"),
        }
    }
}

/// Offset in `img` of the data of the GUID table entry `g`.
fn find_entry_data(img: &[u8], g: [u8; 16]) -> usize {
    let mut pos = img.len() - 32 - 18;
    let table_size = u16::from_le_bytes([img[pos], img[pos + 1]]) as usize;
    let start = pos + 18 - table_size;
    while pos > start {
        let hdr = pos - 18;
        let size = u16::from_le_bytes([img[hdr], img[hdr + 1]]) as usize;
        if img[hdr + 2..hdr + 18] == g {
            return pos - size;
        }
        pos -= size;
    }
    panic!("no entry");
}

/// The kernel hashes table (176 bytes) must fit inside its page: at the
/// page's last 176 bytes it measures, one byte later it is refused.
#[test]
fn the_kernel_hashes_table_must_fit_its_page() {
    use attest_snp::measure::{
        KernelHashes, LaunchInput, LaunchInputs, VmmType, launch_digest, vcpu_signature,
    };
    // SEV_HASH_TABLE_RV, 7255371f-3a3b-4b04-927b-1da6efa8d454, as stored.
    let guid = [
        0x1f, 0x37, 0x55, 0x72, 0x3b, 0x3a, 0x04, 0x4b, 0x92, 0x7b, 0x1d, 0xa6, 0xef, 0xa8, 0xd4,
        0x54,
    ];
    let img = image("ovmf_AmdSev_suffix.bin");
    let at = find_entry_data(&img, guid);
    let gpa = u32::from_le_bytes(img[at..at + 4].try_into().unwrap());
    for (off, fits) in [(0x1000 - 176, true), (0x1000 - 175, false)] {
        let mut moved = img.clone();
        moved[at..at + 4].copy_from_slice(&((gpa & !0xfff) | off).to_le_bytes());
        let got = launch_digest(&LaunchInputs {
            ovmf: &moved,
            vcpus: 1,
            vcpu_sig: vcpu_signature("EPYC-v4").unwrap(),
            guest_features: 1,
            kernel: Some(KernelHashes::from_readers(&b""[..], Some(&b""[..]), None).unwrap()),
            vmm: VmmType::Qemu,
            ovmf_only: false,
        });
        if fits {
            got.unwrap_or_else(|e| panic!("at {off:#x}: {e}"));
        } else {
            assert_eq!(
                got.unwrap_err(),
                MeasureError::Input(LaunchInput::HashTableCrossesPage)
            );
        }
    }
}

/// An image too short to hold the GUID table footer (an 18-byte entry
/// header 32 bytes before the end) says how much it needs.
#[test]
fn an_image_shorter_than_the_footer_says_what_it_needs() {
    use attest_core::Malformed;
    for len in [0, 10, 49] {
        assert_eq!(
            OvmfInfo::parse(&vec![0u8; len]).err().unwrap(),
            MeasureError::Malformed(Malformed::Truncated {
                context: "OVMF image",
                field: "GUID table footer".into(),
                offset: 0,
                needed: 50,
                available: len,
            })
        );
    }
}

/// A GUID table entry's size counts its 18-byte header and must fit in
/// what is left of the table: 17 or more than the rest is refused.
#[test]
fn guid_table_entry_sizes_are_bounded() {
    use attest_core::Malformed;
    // SEV_HASH_TABLE_RV, as stored; its u16 size sits just before the GUID.
    let guid = [
        0x1f, 0x37, 0x55, 0x72, 0x3b, 0x3a, 0x04, 0x4b, 0x92, 0x7b, 0x1d, 0xa6, 0xef, 0xa8, 0xd4,
        0x54,
    ];
    let img = image("ovmf_AmdSev_suffix.bin");
    let data = find_entry_data(&img, guid);
    let g = data + img[data..].windows(16).position(|w| w == guid).unwrap();
    // 18, a header with no data, is a size the walk accepts (what follows
    // is then read from the wrong place and refused for what it is).
    let mut header_only = img.clone();
    header_only[g - 2..g].copy_from_slice(&18u16.to_le_bytes());
    if let Err(MeasureError::Malformed(Malformed::BadValue { what, found, .. })) =
        OvmfInfo::parse(&header_only)
    {
        assert!(
            !(what == "GUID table entry size" && found == "18"),
            "an 18-byte entry was refused"
        );
    }
    for size in [17u16, 0xffff] {
        let mut bad = img.clone();
        bad[g - 2..g].copy_from_slice(&size.to_le_bytes());
        match OvmfInfo::parse(&bad).err().unwrap() {
            MeasureError::Malformed(Malformed::BadValue { what, found, .. }) => {
                assert_eq!(what, "GUID table entry size");
                assert_eq!(found, size.to_string());
            }
            other => panic!("size {size}: {other:?}"),
        }
    }
}

/// The SEV metadata lists at most 64 sections: a larger count is refused
/// before any is read.
#[test]
fn sev_metadata_section_counts_are_bounded() {
    use attest_core::Malformed;
    let img = image("ovmf_AmdSev_suffix.bin");
    let at = find_entry_data(&img, attest_snp_sev_metadata_guid());
    let off = u32::from_le_bytes(img[at..at + 4].try_into().unwrap()) as usize;
    let count = img.len() - off + 12;
    // 64 is allowed (and this image then lacks the sections it claims).
    let mut most = img.clone();
    most[count..count + 4].copy_from_slice(&64u32.to_le_bytes());
    assert!(!matches!(
        OvmfInfo::parse(&most).err().unwrap(),
        MeasureError::Malformed(Malformed::TooMany { .. })
    ));
    for n in [65u32, 1000, u32::MAX] {
        let mut bad = img.clone();
        bad[count..count + 4].copy_from_slice(&n.to_le_bytes());
        assert_eq!(
            OvmfInfo::parse(&bad).err().unwrap(),
            MeasureError::Malformed(Malformed::TooMany {
                what: "SEV metadata".into(),
                items: "sections",
                count: n as usize,
                max: 64,
            }),
            "{n}"
        );
    }
}
