//! Every expected value `shared/vectors/README.md` (section azure-vtpm) and
//! `reference/vtpm.md` §6 state for the Azure vTPM files, checked on the
//! real bytes.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use attest_vtpm::{
    CheckedVtpm, Container, ContainerVersion, Endorsement, HardwareReport, HclReport,
    RuntimeClaims, TeeType, TpmQuote, TpmsAttest, Vcek, verify_quote_signature,
};
use base64::Engine;
use common::*;

/// `value` as hex starts with `prefix` and ends with `suffix` (the README
/// abbreviates most digests as `prefix…suffix`).
fn abbrev(value: &[u8], prefix: &str, suffix: &str) {
    let h = hex::encode(value);
    assert!(
        h.starts_with(prefix) && h.ends_with(suffix),
        "{h} is not {prefix}…{suffix}"
    );
}

fn snp_parts(c: &CheckedVtpm) -> (&[u8], &Vcek) {
    match c.hardware_report() {
        HardwareReport::Snp { report, vcek } => (report, vcek.expect("a VCEK")),
        HardwareReport::Tdx { .. } => panic!("expected SNP"),
    }
}

fn td_quote(c: &CheckedVtpm) -> &[u8] {
    match c.hardware_report() {
        HardwareReport::Tdx { td_quote } => td_quote,
        HardwareReport::Snp { .. } => panic!("expected TDX"),
    }
}

/// Everything a later step reads, for comparing two containers.
fn summary(c: &CheckedVtpm) -> impl PartialEq + std::fmt::Debug {
    (
        c.hcl_report().raw().to_vec(),
        *c.ak_digest(),
        c.pcrs().as_array().to_vec(),
        c.nonce().to_vec(),
        c.hcl_report().tee_report().to_vec(),
    )
}

#[test]
fn snp_v0_and_v1_share_hcl_and_ak() {
    let v0 = checked("evidence-v0.json", TeeType::Snp);
    let v1 = checked("evidence-v1.json", TeeType::Snp);
    assert_eq!(v0.container_version(), ContainerVersion::V0);
    assert_eq!(v1.container_version(), ContainerVersion::V1);
    for c in [&v0, &v1] {
        assert_eq!(c.tee(), TeeType::Snp);
        abbrev(c.hcl_report().claims_digest(), "af291034", "9f21");
        abbrev(c.ak_digest(), "d517a976", "");
        assert_eq!(c.nonce(), b"challenge");
        c.check_nonce(b"challenge").unwrap();
        abbrev(c.attest().pcr_digest(), "cfa3a911", "");
        abbrev(c.pcr(0).unwrap(), "e15c4479", "");
        // Hardware report: Milan v3, VMPL 0, measurement 6a063be9…401e,
        // REPORT_DATA = SHA-256(claims) ‖ 0³².
        let (report, _) = snp_parts(c);
        assert_eq!(report.len(), 1184);
        assert_eq!(u32::from_le_bytes(report[..4].try_into().unwrap()), 3);
        assert_eq!(&report[0x30..0x34], &[0, 0, 0, 0], "VMPL 0");
        abbrev(&report[0x90..0xC0], "6a063be9", "401e");
        c.hcl_report()
            .check_report_data(&snp_report_data(report))
            .unwrap();
        assert_eq!(c.expected_report_data(), snp_report_data(report));
        // 2.0 era claims: user-data of 64 zero bytes.
        assert_eq!(c.claims().user_data().unwrap().0, [0u8; 64]);
        assert_eq!(c.claims().vm_configuration().secure_boot, Some(true));
        assert_eq!(
            c.claims().vm_configuration().vm_unique_id.as_deref(),
            Some("26F8BC30-774E-4290-8E7A-535F3B672AEE")
        );
        assert_eq!(c.hcl_report().header_version(), 1);
        assert_eq!(c.hcl_report().request_data_version(), 1);
        assert_eq!(c.firmware_version(), 0x2020_0312_0012_0003);
    }
    // Same HCL report (the same signed SNP report body under a fresh
    // ECDSA signature) and AK, different quotes.
    let (r0, r1) = (v0.hcl_report().tee_report(), v1.hcl_report().tee_report());
    assert!(
        r0[..0x2A0] == r1[..0x2A0],
        "signed SNP report bodies differ"
    );
    assert!(r0[0x2A0..] != r1[0x2A0..], "expected two signatures");
    assert!(v0.hcl_report().claims() == v1.hcl_report().claims());
    assert!(v0.hcl_report().raw()[0x4C0..] == v1.hcl_report().raw()[0x4C0..]);
    assert_eq!(v0.ak_digest(), v1.ak_digest());
    assert_ne!(v0.tpm_message(), v1.tpm_message());
    assert_eq!(v0.pcrs(), v1.pcrs());
    // The v0 PEM and the v1 DER are the same VCEK.
    let (_, pem) = snp_parts(&v0);
    let (_, der) = snp_parts(&v1);
    let (Vcek::Pem(pem), Vcek::Der(der)) = (pem, der) else {
        panic!("v0 carries PEM, v1 DER");
    };
    let body: String = std::str::from_utf8(pem)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert_eq!(
        &base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap(),
        der
    );
}

#[test]
fn snp_v2_nonce_is_user_data_prefix() {
    let c = checked("evidence-v2.json", TeeType::Snp);
    assert_eq!(c.container_version(), ContainerVersion::V2);
    abbrev(c.hcl_report().claims_digest(), "cf7cc073", "");
    abbrev(c.ak_digest(), "a842e4f0", "");
    abbrev(c.pcr(0).unwrap(), "84275b2f", "");
    assert_eq!(c.nonce().len(), 48);
    abbrev(c.nonce(), "982f5c6e", "19ef");
    // Trustee v2: user-data (upper-case hex) = nonce ‖ 0¹⁶.
    let ud = c.claims().user_data().unwrap();
    assert_eq!(&ud.0[..48], c.nonce());
    assert_eq!(&ud.0[48..], &[0u8; 16]);
    c.check_nonce(&ud.0[..48]).unwrap();
    // Trustee's convention is not the KMS binding (extraData = SHA-256).
    assert_refused(c.bound_user_data(), binding_mismatch);
    assert_refused(c.check_kms_binding(ud), binding_mismatch);
    let (report, _) = snp_parts(&c);
    abbrev(&report[0x90..0xC0], "5b0ce64a", "83ff");
    c.hcl_report()
        .check_report_data(&snp_report_data(report))
        .unwrap();
}

#[test]
fn genoa() {
    let c = checked("evidence-genoa.json", TeeType::Snp);
    assert_eq!(c.container_version(), ContainerVersion::V0);
    abbrev(c.hcl_report().claims_digest(), "b581f12e", "");
    abbrev(c.ak_digest(), "ebac1628", "");
    assert_eq!(c.nonce().len(), 48);
    abbrev(c.nonce(), "0218488b", "950f");
    abbrev(c.pcr(0).unwrap(), "afd689d0", "");
    assert_eq!(c.hcl_report().header_version(), 2);
    assert_eq!(c.claims().vm_configuration().tpm_persisted, Some(true));
    let (report, vcek) = snp_parts(&c);
    abbrev(
        &report[0x90..0xC0],
        "f57dc09a507c6ecd82369bffb600f0003792f4d99bc26e985ec0c266fc34faf3706faf814c9e61065768a6ff917c89ae",
        "",
    );
    assert_eq!(report, read_snp("reports/genoa-v3.report.bin"));
    assert_eq!(vcek, &Vcek::Pem(read_snp("reports/genoa-v3.vcek.pem")));
    c.hcl_report()
        .check_report_data(&snp_report_data(report))
        .unwrap();
}

#[test]
fn tdx_v0_and_v1() {
    let v0 = checked("tdx/evidence-v0.json", TeeType::Tdx);
    let v1 = checked("tdx/evidence-v1.json", TeeType::Tdx);
    assert_eq!(v0.container_version(), ContainerVersion::V0);
    assert_eq!(v1.container_version(), ContainerVersion::V1);
    assert_eq!(summary(&v0), summary(&v1));
    assert_eq!(td_quote(&v0), td_quote(&v1));
    assert_eq!(v0.tpm_message(), v1.tpm_message());
    assert_eq!(v0.tpm_signature(), v1.tpm_signature());
    for c in [&v0, &v1] {
        let h = c.hcl_report();
        assert_eq!(h.raw().len(), 2600);
        assert_eq!(h.header_version(), 2);
        assert_eq!(h.tee(), TeeType::Tdx);
        assert_eq!(h.snp_report(), None);
        assert_eq!(h.claims().len(), 1201);
        assert_eq!(
            hex::encode(h.claims_digest()),
            "9734504f161d104c74e3165c15f779b06a9bb40dfa71937817d7eee68e593839"
        );
        assert_eq!(c.claims().user_data().unwrap().0, [0u8; 64]);
        let q = td_quote(c);
        assert_eq!(q.len(), 5006);
        assert_eq!(u16::from_le_bytes([q[0], q[1]]), 4, "TD quote v4");
        abbrev(&q[184..232], "024a32b070383331", "");
        assert_eq!(&q[112..160], &[0u8; 48], "MRSIGNERSEAM zero");
        assert_eq!(&q[376..568], &[0u8; 192], "RTMR0-3 zero");
        // REPORTDATA = claims ‖ 0³².
        h.check_report_data(&td_quote_report_data(q)).unwrap();
        abbrev(c.ak_digest(), "182891e2fd183b49", "");
        assert_eq!(c.nonce(), b"challenge");
        assert_eq!(
            hex::encode(c.attest().pcr_digest()),
            "6c0e21d918212d57872a752bcf358355d508d1d5b8cb632259b898b15f9f658d"
        );
        abbrev(c.pcr(0).unwrap(), "782b20b10f55cc46", "");
        assert_eq!(c.pcrs().as_array().len(), 24);
        assert_eq!(c.claims().vm_configuration().tpm_persisted, Some(false));
    }
    // A TDX container is not SNP evidence, and vice versa.
    assert_refused(
        attest_vtpm::check_evidence(&read("tdx/evidence-v1.json"), TeeType::Snp),
        |e| matches!(e.malformed(), Some(attest_core::Malformed::BadValue { what, expected, found }) if what == "HCL report report_type" && expected == "2 (SNP)" && found == "4 (TDX)"),
    );
    assert_refused(
        attest_vtpm::check_evidence(&read("evidence-v1.json"), TeeType::Tdx),
        |e| matches!(e.malformed(), Some(attest_core::Malformed::BadValue { what, expected, found }) if what == "HCL report report_type" && expected == "4 (TDX)" && found == "2 (SNP)"),
    );
}

#[test]
fn milan_2048_hcl_with_ff4000_quote_is_rejected() {
    let hcl_bytes = read("milan-v2-2048-hcl-report.bin");
    let msg = read("tpm-quote.msg");
    let sig = read("tpm-quote.sig");
    assert_eq!(hcl_bytes.len(), 2048);
    let hcl = HclReport::parse(&hcl_bytes).unwrap();
    assert_eq!(hcl.header_version(), 1);
    assert_eq!(hcl.request_data_version(), 1);
    assert_eq!(hcl.tee(), TeeType::Snp);
    assert_eq!(hcl.claims().len(), 583);
    assert_eq!(
        hex::encode(hcl.claims_digest()),
        "ec6c52d7533cc2c4f45be7849cf112ab82b2009fe7bd43e71ed08c14400ad7e2"
    );
    // Its SNP report is milan-v2-b, and it binds the claims.
    let report = hcl.snp_report().unwrap();
    assert_eq!(report, read_snp("reports/milan-v2-b.report.bin"));
    hcl.check_report_data(&snp_report_data(report)).unwrap();
    let claims = RuntimeClaims::parse(hcl.claims()).unwrap();
    assert_eq!(
        claims.user_data(),
        None,
        "2023-era claims have no user-data"
    );
    abbrev(&claims.ak().digest(), "52f3d84d9483921f", "");
    // The signature is genuine…
    verify_quote_signature(claims.ak(), &msg, &sig).unwrap();
    assert_eq!(&msg[42..53], b"\x00\x09challenge");
    assert_eq!(
        hex::encode(&msg[90..]),
        "9d608cf40eb5bc7454c6cbc0985c17c2efa45d5e5b28004aa7d77c1285d2fa5d"
    );
    // …but the selection is {0-7, 14}: refused (P1).
    assert_eq!(
        malformed_detail(TpmsAttest::parse(&msg)),
        attest_core::Malformed::PcrSelection {
            field: "TPMS_ATTEST pcrSelect.pcrSelect",
            expected: vec![0xff, 0xff, 0xff],
            found: vec![0xff, 0x40, 0x00],
        }
    );
    // Through the whole check too, whatever PCR values come with it.
    let quote = TpmQuote::new(sig, msg, attest_vtpm::Pcrs::new([[0; 32]; 24])).unwrap();
    let container = Container::new(
        ContainerVersion::V0,
        quote,
        hcl_bytes,
        Endorsement::Vcek(Vcek::Der(read_snp("reports/milan-v2-b.vcek.der"))),
    )
    .unwrap();
    assert_refused(
        attest_vtpm::check_container(container, TeeType::Snp),
        |e| matches!(e.malformed(), Some(attest_core::Malformed::PcrSelection { field: "TPMS_ATTEST pcrSelect.pcrSelect", expected, found }) if *expected == [0xff, 0xff, 0xff] && *found == [0xff, 0x40, 0x00]),
    );
}

#[test]
fn quote_bin_is_the_bincode_form_of_tpm_quote_v1_json() {
    let bin = TpmQuote::from_bincode(&read("quote.bin")).unwrap();
    let json = TpmQuote::from_json(&read("tpm-quote-v1.json")).unwrap();
    assert_eq!(read("quote.bin").len(), 1170);
    assert_eq!(bin, json);
    assert_eq!(bin.signature().len(), 256);
    // No HCL report pairs with it: parser and TPMS_ATTEST checks only.
    let attest = TpmsAttest::parse(bin.message()).unwrap();
    assert_eq!(attest.extra_data(), b"challenge");
    attest.check_nonce(b"challenge").unwrap();
    attest.check_pcrs(bin.pcrs()).unwrap();
    assert_eq!(attest.pcr_digest(), &bin.pcrs().digest());
    assert_eq!(attest.firmware_version(), 0x2020_0312_0012_0003);
    assert_eq!(attest.qualified_signer().len(), 34);
    assert_eq!(&attest.qualified_signer()[..2], &[0x00, 0x0b]);
}

#[test]
fn every_container_checks_and_binds() {
    for (name, tee) in CONTAINERS {
        let c = checked(name, *tee);
        c.hcl_report()
            .check_report_data(&hardware_report_data(&c))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.tpm_signature().len(), 256, "{name}");
        assert!(c.clock_info().safe, "{name}");
        // PCRs 2 and 3 are a separator only; 17-22 are never extended.
        assert_eq!(c.pcr(2), c.pcr(3), "{name}");
        abbrev(c.pcr(2).unwrap(), "3d458cfe", "7969");
        for i in 17..=22 {
            assert_eq!(c.pcr(i), Some(&[0xff; 32]), "{name} pcr{i}");
        }
        assert_eq!(c.pcr(24), None);
        match (c.endorsement(), tee) {
            (Endorsement::Vcek(_), TeeType::Snp) | (Endorsement::TdQuote(_), TeeType::Tdx) => {}
            other => panic!("{name}: {other:?}"),
        }
    }
}
