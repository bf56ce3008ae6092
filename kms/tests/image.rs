//! `kms measure` and `kms image`: reference values computed from the
//! measure fixtures resolve a testkit SNP report whose MEASUREMENT the
//! calculator produced.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use attest_core::app_config::host_data;
use attest_core::image_registry::ImageRegistry;
use attest_core::{Attestation, Evidence, PlatformId, ReportData, UnixTime, VerifyContext};
use attest_snp::measure::{KernelHashes, LaunchInputs, VmmType, launch_digest};
use attest_snp::{Product, ProductRoots, Roots, SnpConfig, SnpVerifier};
use attest_testkit::dstack::App;
use attest_testkit::snp::{self as kit, FakeAmdPki, ReportFields};

fn measure_dir() -> PathBuf {
    attest_testkit::vectors::path("snp/measure")
}

fn kms(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kms"))
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The expected digest of a named case of `cases.toml`.
fn expected(name: &str) -> String {
    let text = std::fs::read_to_string(measure_dir().join("cases.toml")).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    let case = doc["case"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no case {name}"));
    case["expected"].as_str().unwrap().to_owned()
}

/// The digest `kms measure` printed; it must have succeeded.
fn printed_digest(out: std::process::Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn measure_svsm_launch() {
    let ovmf = measure_dir().join("svsm_ovmf.fd");
    let svsm = measure_dir().join("svsm.bin");
    let args = [
        "measure",
        "sev-snp",
        "--ovmf",
        s(&ovmf),
        "--svsm",
        s(&svsm),
        "--vars-size",
        "540672",
        "--vcpus",
        "4",
    ];
    assert_eq!(printed_digest(kms(&args)), expected("svsm-4vcpu"));
    // Options the SVSM launch cannot honour are refused, not ignored.
    for (extra, msg) in [
        (&["--guest-features", "0x5"][..], "SEV_FEATURES"),
        (&["--vmm-type", "ec2"][..], "only QEMU"),
    ] {
        let out = kms(&[&args[..], extra].concat());
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains(msg));
    }
    // clap refuses --svsm without --vars-size and with a direct kernel boot.
    let out = kms(&args[..6]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--vars-size"));
    let out = kms(&[&args[..], &["--kernel", s(&ovmf)][..]].concat());
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn measure_prints_the_digest_or_a_precise_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let ovmf = measure_dir().join("ovmf_AmdSev_suffix.bin");
    let out = kms(&[
        "measure",
        "sev-snp",
        "--ovmf",
        s(&ovmf),
        "--vcpus",
        "1",
        "--guest-features",
        "0x1",
        "--kernel",
        s(&empty),
        "--initrd",
        s(&empty),
        "--append",
        "console=ttyS0 loglevel=7",
    ]);
    assert_eq!(printed_digest(out), expected("amdsev-1vcpu-gf1-console"));
    let plain = measure_dir().join("ovmf_OvmfX64_suffix.bin");
    let out = kms(&[
        "measure",
        "sev-snp",
        "--ovmf",
        s(&plain),
        "--vcpus",
        "1",
        "--kernel",
        s(&empty),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no SNP_KERNEL_HASHES section"));
    let out = kms(&[
        "measure",
        "sev-snp",
        "--ovmf",
        s(&ovmf),
        "--vcpus",
        "1",
        "--vcpu-type",
        "Pentium",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: unknown vCPU type"));
}

/// `kms image add` of a direct boot with an empty kernel and initrd.
fn image_add_snp(
    image: &str,
    reg: &Path,
    ovmf: &Path,
    empty: &Path,
    vcpus: &str,
) -> std::process::Output {
    kms(&[
        "image",
        "add",
        "--os-image-hash",
        image,
        "--registry",
        s(reg),
        "sev-snp",
        "--ovmf",
        s(ovmf),
        "--kernel",
        s(empty),
        "--initrd",
        s(empty),
        "--append",
        "",
        "--vcpus",
        vcpus,
    ])
}

#[tokio::test]
async fn registry_from_image_add_resolves_a_report_measured_by_the_calculator() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("images.toml");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let ovmf = measure_dir().join("ovmf_AmdSev_suffix.bin");
    let image = "ab".repeat(32);
    let out = image_add_snp(&image, &reg, &ovmf, &empty, "1,2,4");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kms(&[
        "image",
        "add",
        "--os-image-hash",
        &image,
        "--registry",
        s(&reg),
        "tdx",
        "--mrtd",
        &"11".repeat(48),
        "--rtmr0",
        &"22".repeat(48),
        "--rtmr1",
        &"33".repeat(48),
        "--rtmr2",
        &"44".repeat(48),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8(kms(&["image", "list", "--registry", s(&reg)]).stdout).unwrap();
    assert_eq!(
        listing.matches("sev-snp: measurement=").count(),
        3,
        "{listing}"
    );
    assert!(listing.contains("vcpus=2"));
    assert_eq!(listing.matches("tdx: ").count(), 1);

    // Running the same add again changes nothing (the first release
    // crashed here: a boot listed twice made the registry index out of
    // bounds).
    let before = std::fs::read_to_string(&reg).unwrap();
    let out = image_add_snp(&image, &reg, &ovmf, &empty, "2");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("(already listed)"));
    assert_eq!(std::fs::read_to_string(&reg).unwrap(), before);

    // The same measurement under another image is refused.
    let out = image_add_snp(&"cd".repeat(32), &reg, &ovmf, &empty, "2");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("also listed under image abab"));

    // A testkit report whose MEASUREMENT is the calculator's 2-vCPU digest.
    let ovmf_bytes = std::fs::read(&ovmf).unwrap();
    let kernel = KernelHashes::from_readers(&b""[..], Some(&b""[..]), Some("")).unwrap();
    let measurement = launch_digest(&LaunchInputs {
        ovmf: &ovmf_bytes,
        vcpus: 2,
        vcpu_sig: 0x0080_0F12,
        guest_features: 1,
        kernel: Some(kernel),
        vmm: VmmType::Qemu,
        ovmf_only: false,
    })
    .unwrap();
    let pki = FakeAmdPki::new();
    let app = App::example();
    let registry = ImageRegistry::parse(
        &std::fs::read_to_string(&reg).unwrap(),
        &kms::platforms::registry_rules(&kms::config::Config::default()),
    )
    .unwrap();
    let mut roots = HashMap::new();
    roots.insert(
        Product::Genoa,
        ProductRoots::from_pem(
            pki.ark_pem(kit::Product::Genoa).as_bytes(),
            pki.ask_pem(kit::Product::Genoa).as_bytes(),
            pki.asvk_pem(kit::Product::Genoa).as_bytes(),
        )
        .unwrap(),
    );
    let v = SnpVerifier::with_roots(Roots::custom(roots), vec![], SnpConfig::default());
    for (m, want) in [(measurement, Some(image.clone())), ([0x77; 48], None)] {
        let f = ReportFields {
            measurement: m,
            host_data: host_data(&app.app_config_v3()),
            report_data: [1; 64],
            ..Default::default()
        };
        let mut e = Evidence::new(PlatformId::SEV_SNP, pki.report(&f));
        e.certificates = pki.vek_der(&f);
        e.app_config = app.app_config_v3();
        let id = v
            .verify(
                &e,
                &VerifyContext::new(ReportData([1; 64]), UnixTime::now()),
            )
            .await
            .unwrap();
        assert_eq!(registry.resolve(&id).map(|h| h.to_hex()), want);
    }
}

#[test]
fn malformed_registries_and_image_hash() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("bad.toml");
    std::fs::write(&reg, "[[image]]\nos_image_hash = \"xyz\"\n").unwrap();
    let out = kms(&["image", "list", "--registry", s(&reg)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("os_image_hash must be 32 bytes"));

    std::fs::write(dir.path().join("sha256sum.txt"), "abc  rootfs.img\n").unwrap();
    let out = kms(&["image", "hash", s(dir.path())]);
    assert_eq!(out.status.code(), Some(0));
    // SHA-256 of the file's bytes.
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        sha256_hex(b"abc  rootfs.img\n")
    );
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(b))
}
