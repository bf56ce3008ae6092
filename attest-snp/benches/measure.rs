//! The launch-digest calculator on a 4 MiB OVMF + 12 MiB kernel + 64 MiB
//! initrd, against the bare hashing it cannot avoid (SHA-384 over the OVMF
//! pages, SHA-256 over kernel and initrd), same run.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use attest_snp::measure::{KernelHashes, LaunchInputs, VmmType, launch_digest};
use criterion::{Criterion, criterion_group, criterion_main};
use sha2::{Digest, Sha256, Sha384};

fn bench(c: &mut Criterion) {
    let dir = attest_testkit::vectors::path("snp/measure");
    let suffix = std::fs::read(dir.join("ovmf_AmdSev_suffix.bin")).expect("test vectors missing");
    // A 4 MiB image whose last 4 KiB is the real AmdSev footer and metadata.
    let mut ovmf: Vec<u8> = (0..4 * 1024 * 1024 - suffix.len())
        .map(|i| (i * 7 + 3) as u8)
        .collect();
    ovmf.extend_from_slice(&suffix);
    let kernel: Vec<u8> = (0..12 * 1024 * 1024).map(|i| (i * 13 + 1) as u8).collect();
    let initrd: Vec<u8> = (0..64 * 1024 * 1024).map(|i| (i * 31 + 5) as u8).collect();

    let mut g = c.benchmark_group("snp_measure_4m_ovmf_12m_kernel_64m_initrd");
    g.sample_size(10);
    g.bench_function("launch_digest_with_kernel_hashing", |b| {
        b.iter(|| {
            let h =
                KernelHashes::from_readers(&kernel[..], Some(&initrd[..]), Some("console=ttyS0"))
                    .unwrap();
            let inp = LaunchInputs {
                ovmf: &ovmf,
                vcpus: 4,
                vcpu_sig: 0x0080_0F12,
                guest_features: 1,
                kernel: Some(h),
                vmm: VmmType::Qemu,
                ovmf_only: false,
            };
            black_box(launch_digest(&inp).unwrap())
        })
    });
    g.bench_function("bare_sha384_ovmf_plus_sha256_kernel_initrd", |b| {
        b.iter(|| {
            let mut x = [0u8; 48];
            for p in ovmf.chunks(4096) {
                let d = Sha384::digest(p);
                x[0] ^= d[0];
            }
            black_box((x, Sha256::digest(&kernel), Sha256::digest(&initrd)))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
