//! Real SEV-SNP reports (`../shared/vectors/snp`): Milan v2 (VCEK), Milan v3
//! (VLEK), Genoa v3, with their exact measurements and TCBs; bit flips;
//! certificates that must not verify.
#![allow(clippy::unwrap_used, missing_docs)]

use attest_core::{
    AttestError, ErrorKind, Evidence, Insecure, PlatformId, UnixTime, UntrustedChain, VerifyContext,
};
use attest_snp::{Product, SnpConfig, SnpVerifier, Tcb, Vek};

fn read(rel: &str) -> Vec<u8> {
    attest_testkit::vectors::read(&format!("snp/{rel}"))
}

fn evidence(report: &str, cert: &str) -> Evidence {
    let mut e = Evidence::new(PlatformId::SEV_SNP, read(report));
    e.certificates = read(cert);
    e
}

/// Inside every real certificate's validity (the VLEK's included).
const AT: u64 = 1_740_000_000;

fn verifier(vmpl: u32) -> SnpVerifier {
    SnpVerifier::new(
        vec![],
        SnpConfig {
            vmpl,
            ..Default::default()
        },
    )
    .unwrap()
}

fn ctx() -> VerifyContext {
    VerifyContext::without_report_data(UnixTime(AT))
}

#[tokio::test]
async fn milan_v2_a_verifies_with_its_exact_values() {
    let e = evidence(
        "reports/milan-v2-a.report.bin",
        "reports/milan-v2-a.vcek.der",
    );
    let v = verifier(0).verify_report(&e, &ctx()).await.unwrap();
    let (r, product, vek) = (v.report(), v.product(), v.vek());
    assert_eq!(product, Product::Milan);
    assert_eq!(r.version, 2);
    assert_eq!(
        hex::encode(r.measurement()),
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
    );
    assert_eq!(r.policy(), 0x30000);
    assert_eq!(r.vmpl(), 0);
    let tcb = r.reported_tcb(product);
    assert_eq!(
        tcb,
        Tcb {
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
            fmc: None
        }
    );
    assert_eq!(vek.tcb, tcb);
    assert_eq!(vek.hwid.as_deref(), Some(&e.quote[0x1A0..0x1E0]));
}

#[tokio::test]
async fn milan_v2_b_verifies() {
    let e = evidence(
        "reports/milan-v2-b.report.bin",
        "reports/milan-v2-b.vcek.der",
    );
    let v = verifier(0).verify_report(&e, &ctx()).await.unwrap();
    let r = v.report();
    assert_eq!(
        hex::encode(r.measurement()),
        "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c"
    );
    assert_eq!(r.policy(), 0x3001f);
}

#[tokio::test]
async fn genoa_v3_verifies_with_a_pem_vcek() {
    let e = evidence("reports/genoa-v3.report.bin", "reports/genoa-v3.vcek.pem");
    let v = verifier(0).verify_report(&e, &ctx()).await.unwrap();
    let (r, product) = (v.report(), v.product());
    assert_eq!(product, Product::Genoa);
    assert_eq!(
        hex::encode(r.measurement()),
        "f57dc09a507c6ecd82369bffb600f0003792f4d99bc26e985ec0c266fc34faf3706faf814c9e61065768a6ff917c89ae"
    );
    assert_eq!(r.policy(), 0x3001f);
    assert_eq!(
        r.reported_tcb(product),
        Tcb {
            bootloader: 10,
            tee: 0,
            snp: 23,
            microcode: 84,
            fmc: None
        }
    );
}

#[tokio::test]
async fn milan_v3_vlek_needs_vmpl_1_and_its_validity_window() {
    let e = evidence(
        "reports/milan-v3-vlek.report.bin",
        "reports/milan-v3-vlek.vlek.der",
    );
    let v = verifier(1).verify_report(&e, &ctx()).await.unwrap();
    let (r, product, vek) = (v.report(), v.product(), v.vek());
    assert_eq!(product, Product::Milan);
    assert_eq!(r.version, 3);
    assert_eq!(vek.common_name, "SEV-VLEK");
    assert!(r.chip_id().iter().all(|b| *b == 0), "CHIP_ID is masked");
    assert_eq!(
        r.reported_tcb(product),
        Tcb {
            bootloader: 4,
            tee: 0,
            snp: 24,
            microcode: 217,
            fmc: None
        }
    );

    let err = verifier(0).verify_report(&e, &ctx()).await.err().unwrap();
    assert_eq!(
        err,
        AttestError::Insecure(Insecure::Vmpl {
            expected: 0,
            found: 1
        })
    );
    assert_eq!(
        err.to_string(),
        "insecure: report from VMPL 1, expected VMPL 0"
    );

    // The VLEK expired on 2025-12-10.
    let late = VerifyContext::without_report_data(UnixTime(1_766_000_000));
    let err = verifier(1).verify_report(&e, &late).await.err().unwrap();
    assert!(
        matches!(
            &err,
            AttestError::UntrustedChain(UntrustedChain::OutsideValidity { what, now: 1_766_000_000, .. })
                if what == "SEV-VLEK certificate"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn documented_bit_flip_fails() {
    let mut e = evidence(
        "reports/milan-v2-a.report.bin",
        "reports/milan-v2-a.vcek.der",
    );
    e.quote[21] ^= 0x80;
    assert!(verifier(0).verify_report(&e, &ctx()).await.is_err());
}

#[tokio::test]
async fn every_single_bit_flip_in_the_signed_region_is_rejected() {
    let e = evidence(
        "reports/milan-v2-a.report.bin",
        "reports/milan-v2-a.vcek.der",
    );
    let v = verifier(0);
    v.verify_report(&e, &ctx()).await.unwrap();
    for byte in 0..0x2A0 {
        for bit in 0..8 {
            let mut f = e.clone();
            f.quote[byte] ^= 1 << bit;
            assert!(
                v.verify_report(&f, &ctx()).await.is_err(),
                "flipping bit {bit} of byte {byte:#x} was accepted"
            );
        }
    }
}

#[tokio::test]
async fn signature_and_padding_tampering_is_rejected() {
    let e = evidence(
        "reports/milan-v2-a.report.bin",
        "reports/milan-v2-a.vcek.der",
    );
    let v = verifier(0);
    let mut f = e.clone();
    f.quote[0x2A0] ^= 1; // r
    assert_eq!(
        v.verify_report(&f, &ctx()).await.err().unwrap().kind(),
        ErrorKind::BadSignature
    );
    let mut f = e.clone();
    f.quote[0x2D0] = 1; // upper bytes of r must be zero
    assert_eq!(
        v.verify_report(&f, &ctx()).await.err().unwrap().kind(),
        ErrorKind::Malformed
    );
    let mut f = e.clone();
    f.quote[0x400] = 1; // trailing reserved
    assert_eq!(
        v.verify_report(&f, &ctx()).await.err().unwrap().kind(),
        ErrorKind::Malformed
    );
    for len in [0, 100, 0x2A0, 1183] {
        let mut f = e.clone();
        f.quote.truncate(len);
        assert_eq!(
            v.verify_report(&f, &ctx()).await.err().unwrap().kind(),
            ErrorKind::Malformed
        );
    }
    let mut f = e.clone();
    f.quote.push(0);
    assert_eq!(
        v.verify_report(&f, &ctx()).await.err().unwrap().kind(),
        ErrorKind::Malformed
    );
}

#[tokio::test]
async fn wrong_or_missing_endorsement_key_is_rejected() {
    let v = verifier(0);
    // Another chip's VCEK: the report's signature is checked first, with
    // the key the certificate names, before any chain work.
    let e = evidence(
        "reports/milan-v2-a.report.bin",
        "reports/milan-v2-b.vcek.der",
    );
    let err = v.verify_report(&e, &ctx()).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::BadSignature, "{err}");
    // No certificate and no source.
    let e = Evidence::new(PlatformId::SEV_SNP, read("reports/milan-v2-a.report.bin"));
    assert_eq!(
        v.verify_report(&e, &ctx()).await.err().unwrap().kind(),
        ErrorKind::CollateralMissing
    );
    // A VCEK-signed report with a VLEK certificate: its key did not sign it.
    let e = evidence(
        "reports/milan-v2-a.report.bin",
        "reports/milan-v3-vlek.vlek.der",
    );
    assert_eq!(
        v.verify_report(&e, &ctx()).await.err().unwrap().kind(),
        ErrorKind::BadSignature
    );
}

#[tokio::test]
async fn bad_signature_vceks_parse_but_are_rejected() {
    for (file, _) in [
        ("certs/bad-signature-hwid-raw.vcek.der", "raw"),
        (
            "certs/bad-signature-hwid-octetstring.vcek.der",
            "octet string",
        ),
    ] {
        let der = read(file);
        let vek = Vek::parse(&der).unwrap();
        assert_eq!(vek.hwid.as_ref().map(Vec::len), Some(64), "{file}");
        assert_eq!(vek.product(), Some(Product::Milan), "{file}");
        let mut e = Evidence::new(PlatformId::SEV_SNP, read("reports/milan-v2-a.report.bin"));
        e.certificates = der;
        // Their keys did not sign this report: refused on the signature,
        // before their own (bad) certificate signature is looked at.
        let err = verifier(0).verify_report(&e, &ctx()).await.err().unwrap();
        assert_eq!(err.kind(), ErrorKind::BadSignature, "{file}: {err}");
    }
}

#[test]
fn turin_vcek_has_an_8_byte_hwid_and_fmc() {
    let vek = Vek::parse(&read("certs/turin.vcek.der")).unwrap();
    assert_eq!(vek.product(), Some(Product::Turin));
    assert_eq!(vek.hwid.as_ref().map(Vec::len), Some(8));
    assert!(vek.tcb.fmc.is_some());
    assert_eq!(vek.common_name, "SEV-VCEK");
}

#[tokio::test]
async fn real_reports_have_no_dstack_app_config() {
    // Full identity needs the app config HOST_DATA binds: these real
    // reports carry none, which is said plainly.
    use attest_core::Attestation;
    let e = evidence(
        "reports/milan-v2-a.report.bin",
        "reports/milan-v2-a.vcek.der",
    );
    let err = verifier(0).verify(&e, &ctx()).await.unwrap_err();
    assert!(
        matches!(
            err.malformed(),
            Some(attest_core::Malformed::Missing {
                what: "app_config",
                ..
            })
        ),
        "{err}"
    );
    let mut e = e;
    e.app_config =
        br#"{"version":3,"app_id":"00","compose_hash":"00","key_provider":"kms"}"#.to_vec();
    let err = verifier(0).verify(&e, &ctx()).await.unwrap_err();
    assert!(
        matches!(&err, AttestError::IdentityMismatch { what, .. } if what == "host_data"),
        "{err}"
    );
}

/// Every prefix of a real report is a typed `Malformed` error (a report is
/// exactly 1184 bytes), and so is every prefix of a GHCB certificate table
/// around the real VCEK, except the empty one, which carries no certificate.
#[test]
fn truncation_at_every_length_is_malformed() {
    use attest_snp::vcek::table_guid;
    use attest_snp::{Report, Signer, certs_from_evidence};
    for name in [
        "reports/milan-v2-a.report.bin",
        "reports/genoa-v3.report.bin",
        "reports/milan-v3-vlek.report.bin",
    ] {
        let raw = read(name);
        Report::parse(&raw).unwrap();
        for len in 0..raw.len() {
            let e = Report::parse(&raw[..len]).err().unwrap();
            assert_eq!(e.kind(), ErrorKind::Malformed, "{name} cut at {len}: {e}");
        }
    }
    // {GUID, offset, length} entries for the ASK (absent here: an empty
    // region) and the VCEK, the zero GUID, then the certificate.
    let vcek = read("reports/milan-v2-a.vcek.der");
    let header = 3 * 24;
    let mut table = Vec::new();
    for (guid, off, len) in [
        (table_guid::ASK, header, 0),
        (table_guid::VCEK, header, vcek.len()),
        ([0u8; 16], 0, 0),
    ] {
        table.extend_from_slice(&guid);
        table.extend_from_slice(&(off as u32).to_le_bytes());
        table.extend_from_slice(&(len as u32).to_le_bytes());
    }
    table.extend_from_slice(&vcek);
    assert_eq!(
        certs_from_evidence(&table, Signer::Vcek).unwrap(),
        Some(vcek.clone())
    );
    assert_eq!(certs_from_evidence(&[], Signer::Vcek).unwrap(), None);
    for len in 1..table.len() {
        let e = certs_from_evidence(&table[..len], Signer::Vcek).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Malformed, "table cut at {len}: {e}");
    }
}

/// A chain an operator or host supplies is checked against the pinned ARK
/// of its product: AMD's own chains pass, another product's ARK does not,
/// and a file without a certificate is malformed.
#[test]
fn supplied_chains_must_end_in_the_pinned_ark() {
    let v = verifier(0);
    for (product, chain) in [
        (Product::Milan, "amd-roots/milan-vcek-chain.pem"),
        (Product::Milan, "amd-roots/milan-vlek-chain.pem"),
        (Product::Genoa, "amd-roots/genoa-vcek-chain.pem"),
        (Product::Turin, "amd-roots/turin-vcek-chain.pem"),
    ] {
        v.check_supplied_chain(product, &read(chain))
            .unwrap_or_else(|e| panic!("{chain}: {e}"));
    }
    let err = v
        .check_supplied_chain(Product::Milan, &read("amd-roots/genoa-vcek-chain.pem"))
        .unwrap_err();
    assert!(
        matches!(
            &err,
            AttestError::UntrustedChain(UntrustedChain::UnknownRoot { .. })
        ),
        "{err:?}"
    );
    assert_eq!(
        v.check_supplied_chain(Product::Milan, b"no certificate here")
            .unwrap_err()
            .kind(),
        ErrorKind::Malformed
    );
}

/// What the registry and the composing plug-ins read of the verifier.
#[test]
fn the_plugin_names_its_platform_registers_and_configuration() {
    use attest_core::Attestation;
    let v = verifier(1);
    assert_eq!(v.platform(), PlatformId::SEV_SNP);
    assert_eq!(v.image_registers(), attest_snp::IMAGE_REGISTERS);
    assert_eq!(attest_snp::IMAGE_REGISTERS, ["measurement"]);
    assert_eq!(v.config().vmpl, 1);
}

/// A reserved byte that is not zero is named with its exact range.
/// `report` must be refused for a non-zero byte in `field` at `range`.
fn assert_reserved(report: &[u8], field: &str, range: std::ops::Range<usize>, case: &str) {
    let err = attest_snp::Report::parse(report).err().unwrap();
    assert_eq!(
        err.malformed(),
        Some(&attest_core::Malformed::ReservedNonZero {
            context: "report",
            field: field.into(),
            range,
        }),
        "{case}"
    );
}

#[test]
fn reserved_bytes_are_reported_with_their_range() {
    let raw = read("reports/milan-v2-a.report.bin");
    for (at, field, range) in [
        (0x190, "reserved", 0x18B..0x1A0),
        (0x2D0, "signature r", 0x2D0..0x2E8),
        (0x318, "signature s", 0x318..0x330),
    ] {
        let mut f = raw.clone();
        f[at] = 1;
        assert_reserved(&f, field, range, &format!("byte {at:#x}"));
    }
}

/// LAUNCH_MIT_VECTOR and CURRENT_MIT_VECTOR (0x1F8..0x208) exist from
/// report version 5; before it the same bytes are reserved and must be zero.
#[test]
fn mitigation_vectors_are_fields_from_version_5_and_reserved_before() {
    use attest_snp::Report;
    let raw = read("reports/milan-v2-a.report.bin");
    let reserved = |version: u32, at: usize, range: std::ops::Range<usize>| {
        let mut f = raw.clone();
        f[..4].copy_from_slice(&version.to_le_bytes());
        f[at] = 1;
        assert_reserved(&f, "reserved", range, &format!("v{version}, byte {at:#x}"));
    };
    // Version 2 reserves them (version 3 and 4 need CPUID bytes: see the
    // real v3 reports, which the sweeps cover).
    reserved(2, 0x1F8, 0x1F8..0x2A0);
    reserved(2, 0x207, 0x1F8..0x2A0);
    // Version 5 reads them; the reserved run starts after them.
    for at in [0x1F8, 0x200, 0x207] {
        let mut f = raw.clone();
        f[..4].copy_from_slice(&5u32.to_le_bytes());
        f[0x188..0x18B].copy_from_slice(&[0x19, 0x01, 0x01]);
        f[at] = 0xA5;
        let report = Report::parse(&f).unwrap_or_else(|e| panic!("byte {at:#x}: {e}"));
        assert_eq!(report.version, 5);
    }
    let mut f = raw.clone();
    f[..4].copy_from_slice(&5u32.to_le_bytes());
    f[0x188..0x18B].copy_from_slice(&[0x19, 0x01, 0x01]);
    f[0x208] = 1;
    assert_reserved(&f, "reserved", 0x208..0x2A0, "v5, byte 0x208");
}

/// v3 reports name their product in CPUID; v2 reports do not.
#[test]
fn the_product_comes_from_cpuid_from_version_3() {
    use attest_snp::{Product, Report};
    for (file, product) in [
        ("reports/milan-v2-a.report.bin", None),
        ("reports/milan-v2-b.report.bin", None),
        ("reports/milan-v3-vlek.report.bin", Some(Product::Milan)),
        ("reports/genoa-v3.report.bin", Some(Product::Genoa)),
    ] {
        let raw = read(file);
        let report = Report::parse(&raw).unwrap();
        assert_eq!(report.product_from_cpuid().unwrap(), product, "{file}");
    }
}

#[test]
fn firmware_versions_print_as_major_minor_build() {
    let v = attest_snp::report::FirmwareVersion {
        major: 1,
        minor: 55,
        build: 21,
    };
    assert_eq!(v.to_string(), "1.55.21");
}

/// POLICY bit 17 is reserved as one and bits 26..63 as zero (SEV-SNP ABI,
/// table "Guest policy structure"): either way is a malformed report.
#[test]
fn guest_policy_reserved_bits_are_checked() {
    use attest_core::Malformed;
    use attest_snp::Report;
    let raw = read("reports/milan-v2-a.report.bin");
    assert_eq!(Report::parse(&raw).unwrap().raw(), &raw[..]);
    let policy = u64::from_le_bytes(raw[8..16].try_into().unwrap());
    assert_ne!(policy & (1 << 17), 0);
    for bad in [policy & !(1 << 17), policy | (1 << 26), policy | (1 << 63)] {
        let mut f = raw.clone();
        f[8..16].copy_from_slice(&bad.to_le_bytes());
        assert_eq!(
            Report::parse(&f).err().unwrap().malformed(),
            Some(&Malformed::ReservedBits {
                field: "guest policy",
                value: bad,
            }),
            "{bad:#x}"
        );
    }
    // Bit 25 (the highest defined one) is not reserved.
    let mut f = raw.clone();
    f[8..16].copy_from_slice(&(policy | (1 << 25)).to_le_bytes());
    assert!(Report::parse(&f).is_ok());
}

/// Every register and digest the identity carries is the report's own
/// bytes at the offsets of the SEV-SNP ABI (read here independently).
#[tokio::test]
async fn identity_fields_are_the_reports_bytes() {
    for (report, cert) in [
        (
            "reports/milan-v2-a.report.bin",
            "reports/milan-v2-a.vcek.der",
        ),
        ("reports/genoa-v3.report.bin", "reports/genoa-v3.vcek.pem"),
    ] {
        let e = evidence(report, cert);
        let raw = &e.quote;
        let id = verifier(0).verify_without_app(&e, &ctx()).await.unwrap();
        let j = serde_json::to_value(&id).unwrap();
        let hex_at = |a: usize, b: usize| serde_json::json!(hex::encode(&raw[a..b]));
        let u32_at = |a: usize| u32::from_le_bytes(raw[a..a + 4].try_into().unwrap());
        let u64_at = |a: usize| u64::from_le_bytes(raw[a..a + 8].try_into().unwrap());
        assert_eq!(j["boot"]["guest_svn"], u32_at(0x04), "{report}");
        assert_eq!(j["boot"]["policy"], u64_at(0x08), "{report}");
        assert_eq!(j["boot"]["family_id"], hex_at(0x10, 0x20), "{report}");
        assert_eq!(j["boot"]["image_id"], hex_at(0x20, 0x30), "{report}");
        assert_eq!(j["boot"]["vmpl"], u32_at(0x30), "{report}");
        assert_eq!(j["boot"]["platform_info"], u64_at(0x40), "{report}");
        assert_eq!(j["boot"]["measurement"], hex_at(0x90, 0xC0), "{report}");
        assert_eq!(j["boot"]["host_data"], hex_at(0xC0, 0xE0), "{report}");
        assert_eq!(j["boot"]["chip_id"], hex_at(0x1A0, 0x1E0), "{report}");
        let c = &j["platform_claims"]["sev_snp"];
        assert_eq!(c["id_key_digest"], hex_at(0xE0, 0x110), "{report}");
        assert_eq!(c["author_key_digest"], hex_at(0x110, 0x140), "{report}");
    }
}

/// The pinned ARK, ASK and ASVK are checked inside their validity at the
/// verification time, before the VEK: the Milan ARK starts at
/// 2020-10-22T17:23:05Z and ends at 2045-10-22T17:23:05Z, its ASK starts
/// an hour later (18:24:20) and ends an hour later, the VLEK chain's ASVK
/// starts at 2022-11-16T22:45:24Z (dates read with `openssl x509`).
#[tokio::test]
async fn the_pinned_roots_are_checked_inside_their_validity() {
    use attest_core::UntrustedChain;
    const ARK_FROM: u64 = 1_603_387_385;
    const ARK_UNTIL: u64 = 2_392_305_785;
    const ASK_FROM: u64 = 1_603_391_060;
    let outside = |e: AttestError| match e {
        AttestError::UntrustedChain(UntrustedChain::OutsideValidity { what, .. }) => what,
        other => panic!("{other}"),
    };
    let vcek = evidence(
        "reports/milan-v2-a.report.bin",
        "reports/milan-v2-a.vcek.der",
    );
    let at = |t: u64| VerifyContext::without_report_data(UnixTime(t));
    for (t, what) in [
        (ARK_FROM - 1, "ARK"),
        (ARK_FROM, "ASK"),
        (ASK_FROM - 1, "ASK"),
        // The roots hold from here; the VCEK (2023..2030) does not yet.
        (ASK_FROM, "SEV-VCEK certificate"),
        (ARK_UNTIL, "SEV-VCEK certificate"),
        (ARK_UNTIL + 1, "ARK"),
    ] {
        let err = verifier(0)
            .verify_report(&vcek, &at(t))
            .await
            .err()
            .unwrap();
        assert_eq!(outside(err), what, "at {t}");
    }
    // The VCEK itself: 2023-04-03T19:23:43Z to 2030-04-03T19:23:43Z, both
    // ends included.
    const VCEK_FROM: u64 = 1_680_549_823;
    const VCEK_UNTIL: u64 = 1_901_474_623;
    for t in [VCEK_FROM - 1, VCEK_UNTIL + 1] {
        let err = verifier(0)
            .verify_report(&vcek, &at(t))
            .await
            .err()
            .unwrap();
        assert_eq!(outside(err), "SEV-VCEK certificate", "at {t}");
    }
    for t in [VCEK_FROM, VCEK_UNTIL] {
        verifier(0)
            .verify_report(&vcek, &at(t))
            .await
            .unwrap_or_else(|e| panic!("at {t}: {e}"));
    }
    let vlek = evidence(
        "reports/milan-v3-vlek.report.bin",
        "reports/milan-v3-vlek.vlek.der",
    );
    for (t, what) in [(ARK_FROM - 1, "ARK"), (ASK_FROM, "ASVK")] {
        let err = verifier(1)
            .verify_report(&vlek, &at(t))
            .await
            .err()
            .unwrap();
        assert_eq!(outside(err), what, "VLEK chain at {t}");
    }
}

/// A certificate table entry is at most 16 KiB and a table at most 64
/// entries, whatever the region says.
#[test]
fn certificate_tables_are_bounded() {
    use attest_core::Malformed;
    use attest_snp::vcek::{MAX_CERT, table_guid};
    use attest_snp::{Signer, certs_from_evidence};
    let entry = |guid: [u8; 16], off: usize, len: usize| {
        let mut e = guid.to_vec();
        e.extend_from_slice(&(off as u32).to_le_bytes());
        e.extend_from_slice(&(len as u32).to_le_bytes());
        e
    };
    let table = |len: usize| {
        let mut t = entry(table_guid::VCEK, 48, len);
        t.extend(entry([0; 16], 0, 0));
        t
    };
    assert_eq!(
        certs_from_evidence(&table(MAX_CERT + 1), Signer::Vcek)
            .unwrap_err()
            .malformed(),
        Some(&Malformed::TooLarge {
            what: "certificate table entry".into(),
            size: MAX_CERT + 1,
            max: MAX_CERT,
        })
    );
    // 16 KiB exactly is read (here refused for lying about its region).
    assert!(matches!(
        certs_from_evidence(&table(MAX_CERT), Signer::Vcek)
            .unwrap_err()
            .malformed(),
        Some(Malformed::BadValue { .. })
    ));
    let mut t = table(MAX_CERT);
    t.resize(48 + MAX_CERT, 0xab);
    assert_eq!(
        certs_from_evidence(&t, Signer::Vcek).unwrap(),
        Some(vec![0xab; MAX_CERT])
    );
    // 64 entries that are not the asked one, and no end: too many.
    let many: Vec<u8> = (0..64).flat_map(|_| entry(table_guid::ASK, 0, 0)).collect();
    assert_eq!(
        certs_from_evidence(&many, Signer::Vcek)
            .unwrap_err()
            .malformed(),
        Some(&Malformed::TooMany {
            what: "certificate table".into(),
            items: "entries or more",
            count: 65,
            max: 64,
        })
    );
}

/// An offline directory of endorsement keys: a missing file is "not
/// found", an oversized one malformed, an unreadable one unavailable.
#[tokio::test]
async fn offline_endorsement_keys_are_read_bounded() {
    use attest_core::{CollateralMissing, Malformed};
    use attest_snp::vcek::MAX_CERT;
    use attest_snp::{OfflineVceks, Signer, VcekSource, VekRequest};
    let dir = tempfile::tempdir().unwrap();
    let req = VekRequest {
        product: Some(Product::Milan),
        signer: Signer::Vcek,
        chip_id: [0x11; 64],
        reported_tcb: [3, 0, 0, 0, 0, 0, 8, 115],
    };
    let path = dir.path().join(req.file_name(Product::Milan));
    let source = OfflineVceks::new(dir.path());
    assert!(matches!(
        source.fetch(&req).await.unwrap_err(),
        AttestError::CollateralMissing(CollateralMissing::NotFound { .. })
    ));
    std::fs::write(&path, vec![0x30; MAX_CERT]).unwrap();
    assert_eq!(source.fetch(&req).await.unwrap(), vec![0x30; MAX_CERT]);
    std::fs::write(&path, vec![0x30; MAX_CERT + 1]).unwrap();
    assert!(matches!(
        source.fetch(&req).await.unwrap_err().malformed(),
        Some(Malformed::TooLarge { size, .. }) if *size == MAX_CERT + 1
    ));
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    assert_eq!(
        source.fetch(&req).await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    // CRLs in the same directory, up to 256 KiB.
    use attest_snp::CrlSource;
    let crl = dir.path().join("Milan-vcek.crl");
    assert_eq!(
        source
            .fetch_crl(Product::Milan, Signer::Vcek)
            .await
            .unwrap(),
        None
    );
    std::fs::write(&crl, vec![0x30; 256 * 1024]).unwrap();
    assert_eq!(
        source
            .fetch_crl(Product::Milan, Signer::Vcek)
            .await
            .unwrap(),
        Some(vec![0x30; 256 * 1024])
    );
    std::fs::write(&crl, vec![0x30; 256 * 1024 + 1]).unwrap();
    assert!(matches!(
        source
            .fetch_crl(Product::Milan, Signer::Vcek)
            .await
            .unwrap_err()
            .malformed(),
        Some(Malformed::TooLarge { .. })
    ));
    std::fs::remove_file(&crl).unwrap();
    std::fs::create_dir(&crl).unwrap();
    assert_eq!(
        source
            .fetch_crl(Product::Milan, Signer::Vcek)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Unavailable
    );
}
