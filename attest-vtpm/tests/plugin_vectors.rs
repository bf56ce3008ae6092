//! The plug-ins on the real Azure evidence, at the pinned time 1740000000,
//! with AMD's and Intel's production roots: every SNP container verifies
//! through attest-snp at VMPL 0 to its exact values; the TDX set, which
//! comes with no collateral, passes every vTPM check and stops at the TD
//! quote's collateral; the Trustee nonces are not the KMS binding.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use attest_core::names::{reg, section};
use attest_core::{
    AttestError, Attestation, ErrorKind, Evidence, PlatformId, ReportData, UnixTime, VerifyContext,
};
use attest_snp::{SnpConfig, SnpVerifier};
use attest_tdx::{Collateral, CollateralKey, CollateralSource, TdxVerifier};
use attest_vtpm::{AZ_SNP_VTPM, AZ_TDX_VTPM, AzVtpm, Nonce, OfflineIdentity, VtpmConfig};
use common::*;
use sha2::{Digest, Sha256};

const AT: u64 = 1_740_000_000;

fn snp_plugin() -> AzVtpm {
    AzVtpm::snp(
        SnpVerifier::new(vec![], SnpConfig::default()).unwrap(),
        VtpmConfig::default(),
    )
    .unwrap()
}

/// A collateral source that has nothing (no collateral ships with the
/// Azure TD quote).
struct NoCollateral;

#[async_trait]
impl CollateralSource for NoCollateral {
    async fn fetch(
        &self,
        _key: &CollateralKey,
        _now: UnixTime,
    ) -> Result<Arc<Collateral>, AttestError> {
        Err(attest_core::CollateralMissing::NotFound {
            detail: "no collateral here".into(),
        }
        .into())
    }
}

fn tdx_plugin() -> AzVtpm {
    AzVtpm::tdx(
        Arc::new(TdxVerifier::new(Arc::new(NoCollateral)).unwrap()),
        VtpmConfig::default(),
    )
    .unwrap()
}

fn evidence(platform: PlatformId, name: &str) -> Evidence {
    Evidence::new(platform, read(name))
}

fn offline() -> VerifyContext {
    VerifyContext::without_report_data(UnixTime(AT))
}

async fn quote_only(p: &AzVtpm, e: &Evidence, nonce: Nonce<'_>) -> serde_json::Value {
    match p.verify_offline(e, &offline(), nonce).await {
        Ok(OfflineIdentity::QuoteOnly(i)) => i.to_json(),
        Ok(other) => panic!("expected the quote-only identity, got {other:?}"),
        Err(e) => panic!("{e}"),
    }
}

fn hex_of(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("{v} is not a string"))
}

/// (file, measurement prefix/suffix, claims digest prefix, AK prefix,
/// pcr00 prefix, product).
const SNP: &[(&str, &str, &str, &str, &str, &str, &str)] = &[
    (
        "evidence-v0.json",
        "6a063be9",
        "401e",
        "af291034",
        "d517a976",
        "e15c4479",
        "Milan",
    ),
    (
        "evidence-v1.json",
        "6a063be9",
        "401e",
        "af291034",
        "d517a976",
        "e15c4479",
        "Milan",
    ),
    (
        "evidence-v2.json",
        "5b0ce64a",
        "83ff",
        "cf7cc073",
        "a842e4f0",
        "84275b2f",
        "Milan",
    ),
    (
        "evidence-genoa.json",
        "f57dc09a507c6ecd82369bffb600f0003792f4d99bc26e985ec0c266fc34faf3706faf814c9e61065768a6ff917c89ae",
        "",
        "b581f12e",
        "ebac1628",
        "afd689d0",
        "Genoa",
    ),
];

#[tokio::test]
async fn every_snp_container_verifies_to_its_exact_values() {
    let p = snp_plugin();
    assert_eq!(p.platform(), AZ_SNP_VTPM);
    assert_eq!(p.platform().as_str(), "az-snp-vtpm");
    for (name, meas_pre, meas_suf, claims, ak, pcr00, product) in SNP {
        let e = evidence(AZ_SNP_VTPM, name);
        let checked = checked(name, attest_vtpm::TeeType::Snp);
        let id = quote_only(&p, &e, Nonce::Unchecked).await;
        assert_eq!(id["platform"], "az-snp-vtpm", "{name}");
        assert!(id["app"].is_null());
        let boot = &id["boot"];
        let m = hex_of(&boot[reg::MEASUREMENT]);
        assert!(
            m.starts_with(meas_pre) && m.ends_with(meas_suf),
            "{name}: {m}"
        );
        assert_eq!(boot[reg::VMPL], 0, "{name}: VMPL 0");
        assert_eq!(boot[reg::POLICY], 0x3001f, "{name}");
        assert!(hex_of(&boot["pcr00"]).starts_with(pcr00), "{name}");
        for (i, n) in attest_vtpm::PCR_NAMES.iter().enumerate() {
            assert_eq!(
                hex_of(&boot[n]),
                hex::encode(checked.pcr(i).unwrap()),
                "{name} {n}"
            );
        }
        assert_eq!(
            hex_of(&boot["boot_digest"]),
            hex::encode(attest_vtpm::identity::boot_digest(checked.pcrs(), 8))
        );
        assert_eq!(id["debug"], false);
        assert_eq!(id["report_data_checked"], false);
        // Offline, the identity's report data is the claims' user-data.
        assert_eq!(
            hex_of(&id["report_data"]),
            hex::encode(checked.claims().user_data().unwrap().0)
        );
        let snp = &id["platform_claims"][section::SEV_SNP];
        assert_eq!(snp["product"], *product, "{name}");
        assert_eq!(snp["signer"], "vcek");
        assert!(
            id["platform_claims"][section::DSTACK].is_null(),
            "{name}: dstack's aggregates over MEASUREMENT mean nothing here"
        );
        let v = &id["platform_claims"]["vtpm"];
        assert!(hex_of(&v["ak_pub_sha256"]).starts_with(ak), "{name}");
        assert_eq!(v["app_pcr"], 8);
        assert_eq!(v["tpm_firmware_version"], "2020031200120003");
        assert_eq!(hex_of(&v["nonce"]), hex::encode(checked.nonce()));
        assert_eq!(v["secure_boot"], true, "{name}");
        assert!(
            hex::encode(checked.hcl_report().claims_digest()).starts_with(claims),
            "{name}"
        );
        // The device id is SHA-256 of the CHIP_ID the report carries.
        let chip = hex::decode(hex_of(&boot[reg::CHIP_ID])).unwrap();
        assert_eq!(hex_of(&id["device_id"]), hex::encode(Sha256::digest(&chip)));
    }
}

#[tokio::test]
async fn v0_and_v1_nonce_is_challenge_and_checked_in_full() {
    let p = snp_plugin();
    for name in ["evidence-v0.json", "evidence-v1.json"] {
        let e = evidence(AZ_SNP_VTPM, name);
        let id = quote_only(&p, &e, Nonce::Exact(b"challenge")).await;
        assert_eq!(
            hex_of(&id["platform_claims"]["vtpm"]["nonce"]),
            hex::encode(b"challenge")
        );
        for wrong in [&b"challengf"[..], b"challenge\0", b"challeng", b""] {
            let r = p.verify_offline(&e, &offline(), Nonce::Exact(wrong)).await;
            assert_refused(r, binding_mismatch);
        }
        // Trustee's quotes are not bound the KMS way: extraData is not
        // SHA-256(user-data).
        let ctx = VerifyContext::new(ReportData([0; 64]), UnixTime(AT));
        assert_refused(p.verify(&e, &ctx).await, |e| {
            matches!(
                e.malformed(),
                Some(attest_core::Malformed::Missing {
                    what: "event log",
                    ..
                })
            )
        });
        let mut with_log = e.clone();
        with_log.event_log = b"[]".to_vec();
        assert_refused(p.verify(&with_log, &ctx).await, binding_mismatch);
        assert_refused(
            p.verify_offline(&e, &ctx, Nonce::Kms).await,
            binding_mismatch,
        );
        // The user-data (64 zero bytes) is what --report-data compares.
        let id = p
            .verify_offline(&e, &ctx, Nonce::Exact(b"challenge"))
            .await
            .unwrap()
            .to_json();
        assert_eq!(id["report_data_checked"], true);
        let other = VerifyContext::new(ReportData([1; 64]), UnixTime(AT));
        assert_refused(
            p.verify_offline(&e, &other, Nonce::Unchecked).await,
            binding_mismatch,
        );
    }
}

#[tokio::test]
async fn v2_and_genoa_nonces() {
    let p = snp_plugin();
    let v2 = evidence(AZ_SNP_VTPM, "evidence-v2.json");
    let c = checked("evidence-v2.json", attest_vtpm::TeeType::Snp);
    // 48 bytes, = user-data[0..48].
    let ud = c.claims().user_data().unwrap().0;
    quote_only(&p, &v2, Nonce::Exact(&ud[..48])).await;
    assert_refused(
        p.verify_offline(&v2, &offline(), Nonce::Exact(&ud)).await,
        binding_mismatch,
    );
    let g = evidence(AZ_SNP_VTPM, "evidence-genoa.json");
    let n = checked("evidence-genoa.json", attest_vtpm::TeeType::Snp)
        .nonce()
        .to_vec();
    assert_eq!(n.len(), 48);
    assert!(hex::encode(&n).starts_with("0218488b") && hex::encode(&n).ends_with("950f"));
    quote_only(&p, &g, Nonce::Exact(&n)).await;
}

#[tokio::test]
async fn expired_and_not_yet_valid_chains_are_refused() {
    let p = snp_plugin();
    let e = evidence(AZ_SNP_VTPM, "evidence-v1.json");
    // Before AMD's certificates existed, and long after the VCEK expires.
    for at in [1_000_000_000u64, 4_000_000_000] {
        let ctx = VerifyContext::without_report_data(UnixTime(at));
        let err = p
            .verify_offline(&e, &ctx, Nonce::Unchecked)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UntrustedChain, "at {at}: {err}");
    }
}

#[tokio::test]
async fn a_vcek_in_certificates_comes_first_and_is_still_chained() {
    let p = snp_plugin();
    // The container's PEM VCEK, given again in `certificates`.
    let mut e = evidence(AZ_SNP_VTPM, "evidence-genoa.json");
    e.certificates = read_snp("reports/genoa-v3.vcek.pem");
    quote_only(&p, &e, Nonce::Unchecked).await;
    // Another chip's VCEK in `certificates` wins over the container's and
    // is refused (it did not sign this report).
    e.certificates = read_snp("reports/milan-v2-b.vcek.der");
    let err = p
        .verify_offline(&e, &offline(), Nonce::Unchecked)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::BadSignature | ErrorKind::IdentityMismatch | ErrorKind::UntrustedChain
        ),
        "{err}"
    );
    // No VCEK anywhere and no source: the endorsement is missing.
    let mut doc: serde_json::Value = serde_json::from_slice(&read("evidence-v1.json")).unwrap();
    doc.as_object_mut().unwrap().remove("vcek");
    let e = Evidence::new(AZ_SNP_VTPM, serde_json::to_vec(&doc).unwrap());
    assert_refused(
        p.verify_offline(&e, &offline(), Nonce::Unchecked).await,
        |e| {
            matches!(
                e,
                attest_core::AttestError::CollateralMissing(
                    attest_core::CollateralMissing::NoSource { .. }
                )
            )
        },
    );
    // ... and with it in `certificates` (DER), the same evidence verifies.
    let mut e = e;
    let c = container("evidence-v1.json");
    let attest_vtpm::Endorsement::Vcek(v) = c.endorsement() else {
        panic!("v1 carries a VCEK")
    };
    e.certificates = v.as_bytes().to_vec();
    quote_only(&p, &e, Nonce::Unchecked).await;
}

#[tokio::test]
async fn the_evidence_parts_are_the_platforms() {
    let p = snp_plugin();
    let good = evidence(AZ_SNP_VTPM, "evidence-v1.json");
    let mut e = good.clone();
    e.platform = PlatformId::SEV_SNP;
    assert_refused(
        p.verify_offline(&e, &offline(), Nonce::Unchecked).await,
        |e| *e == attest_core::AttestError::UnsupportedPlatform(PlatformId::SEV_SNP),
    );
    let mut e = good.clone();
    e.app_config = b"{}".to_vec();
    assert_refused(
        p.verify_offline(&e, &offline(), Nonce::Unchecked).await,
        |e| {
            matches!(
                e.malformed(),
                Some(attest_core::Malformed::Unexpected {
                    what: "app_config",
                    ..
                })
            )
        },
    );
    let mut e = good.clone();
    e.certificates = vec![0x30; 16 * 1024 + 1];
    assert_refused(
        p.verify_offline(&e, &offline(), Nonce::Unchecked).await,
        |e| matches!(e.malformed(), Some(attest_core::Malformed::TooLarge { what, size: 16385, max: 16384 }) if what == "certificates"),
    );
    let mut e = good.clone();
    e.event_log = vec![b' '; 256 * 1024 + 1];
    assert_refused(
        p.verify_offline(&e, &offline(), Nonce::Unchecked).await,
        |e| matches!(e.malformed(), Some(attest_core::Malformed::TooLarge { what, size: 262145, max: 262144 }) if what == "event log"),
    );
    // A TDX container on the SNP plug-in, and the other way round.
    let e = evidence(AZ_SNP_VTPM, "tdx/evidence-v1.json");
    assert_refused(
        p.verify_offline(&e, &offline(), Nonce::Unchecked).await,
        |e| matches!(e.malformed(), Some(attest_core::Malformed::BadValue { what, expected, found }) if what == "HCL report report_type" && expected == "2 (SNP)" && found == "4 (TDX)"),
    );
    let t = tdx_plugin();
    let e = evidence(AZ_TDX_VTPM, "evidence-v1.json");
    assert_refused(
        t.verify_offline(&e, &offline(), Nonce::Unchecked).await,
        |e| matches!(e.malformed(), Some(attest_core::Malformed::BadValue { what, expected, found }) if what == "HCL report report_type" && expected == "4 (TDX)" && found == "2 (SNP)"),
    );
    let mut e = evidence(AZ_TDX_VTPM, "tdx/evidence-v1.json");
    e.certificates = vec![0x30, 0];
    assert_refused(
        t.verify_offline(&e, &offline(), Nonce::Unchecked).await,
        |e| {
            matches!(
                e.malformed(),
                Some(attest_core::Malformed::Unexpected {
                    what: "certificates",
                    ..
                })
            )
        },
    );
}

#[tokio::test]
async fn the_tdx_set_passes_every_vtpm_check_and_needs_collateral() {
    let p = tdx_plugin();
    assert_eq!(p.platform().as_str(), "az-tdx-vtpm");
    for name in ["tdx/evidence-v0.json", "tdx/evidence-v1.json"] {
        // The vTPM side and the binding hold (vectors.rs checks the values).
        let c = checked(name, attest_vtpm::TeeType::Tdx);
        c.hcl_report()
            .check_report_data(&hardware_report_data(&c))
            .unwrap();
        c.check_nonce(b"challenge").unwrap();
        // The TD quote is the reused verifier's: without collateral it is
        // not accepted.
        let e = evidence(AZ_TDX_VTPM, name);
        assert_refused(
            p.verify_offline(&e, &offline(), Nonce::Exact(b"challenge"))
                .await,
            |e| {
                matches!(
                    e,
                    attest_core::AttestError::CollateralMissing(
                        attest_core::CollateralMissing::NotFound { .. }
                    )
                )
            },
        );
        assert_refused(p.fetch_endorsements(&e, &offline()).await, |e| {
            matches!(
                e,
                attest_core::AttestError::CollateralMissing(
                    attest_core::CollateralMissing::NotFound { .. }
                )
            )
        });
    }
}

#[tokio::test]
async fn the_ff4000_quote_is_refused_by_the_plugin() {
    // The 2048-byte HCL report with its genuine quote over {0-7, 14}.
    let hcl = read("milan-v2-2048-hcl-report.bin");
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    let pcrs: Vec<String> = (0..24).map(|_| "00".repeat(32)).collect();
    let doc = serde_json::json!({
        "version": 1,
        "tpm_quote": {
            "signature": hex::encode(read("tpm-quote.sig")),
            "message": hex::encode(read("tpm-quote.msg")),
            "pcrs": pcrs,
        },
        "hcl_report": b64(&hcl),
        "vcek": b64(&read_snp("reports/milan-v2-b.vcek.der")),
    });
    let e = Evidence::new(AZ_SNP_VTPM, serde_json::to_vec(&doc).unwrap());
    assert_refused(
        snp_plugin()
            .verify_offline(&e, &offline(), Nonce::Exact(b"challenge"))
            .await,
        |e| matches!(e.malformed(), Some(attest_core::Malformed::PcrSelection { field: "TPMS_ATTEST pcrSelect.pcrSelect", expected, found }) if *expected == [0xff, 0xff, 0xff] && *found == [0xff, 0x40, 0x00]),
    );
}

#[tokio::test]
async fn configuration_is_checked() {
    for pcr in [0u32, 7, 16, 23, 24] {
        let e = AzVtpm::snp(
            SnpVerifier::new(vec![], SnpConfig::default()).unwrap(),
            VtpmConfig {
                app_pcr: pcr,
                ..Default::default()
            },
        )
        .err()
        .unwrap();
        assert_eq!(e.kind(), ErrorKind::Malformed, "{pcr}");
        assert_eq!(
            e.malformed(),
            Some(&attest_core::Malformed::PcrOutOfRange {
                what: "app_pcr".into(),
                pcr,
                allowed: 8..=15,
            }),
            "{e}"
        );
    }
    for config in [
        SnpConfig {
            vmpl: 2,
            ..Default::default()
        },
        SnpConfig {
            allow_migrate_ma: true,
            ..Default::default()
        },
    ] {
        let e = AzVtpm::snp(
            SnpVerifier::new(vec![], config).unwrap(),
            VtpmConfig::default(),
        )
        .err()
        .unwrap();
        assert_eq!(e.kind(), ErrorKind::Insecure);
    }
    let p = AzVtpm::snp(
        SnpVerifier::new(vec![], SnpConfig::default()).unwrap(),
        VtpmConfig {
            app_pcr: 9,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        p.image_registers(),
        ["pcr04", "pcr05", "pcr07", "pcr11", "pcr12", "pcr13"]
    );
    // The boot digest follows the configured app PCR.
    let id = quote_only(
        &p,
        &evidence(AZ_SNP_VTPM, "evidence-v1.json"),
        Nonce::Unchecked,
    )
    .await;
    let c = checked("evidence-v1.json", attest_vtpm::TeeType::Snp);
    assert_eq!(
        hex_of(&id["boot"]["boot_digest"]),
        hex::encode(attest_vtpm::identity::boot_digest(c.pcrs(), 9))
    );
    assert_eq!(id["platform_claims"]["vtpm"]["app_pcr"], 9);
}
