//! Reports signed by the testkit's fake AMD PKI: accepted only with the fake
//! roots pinned, and every rejection case.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;

use attest_core::app_config::host_data;
use attest_core::{
    AttestError, Attestation, ErrorKind, Evidence, Insecure, PlatformId, ReportData, Revoked,
    TcbStatus, UnixTime, VerifyContext,
};
use attest_snp::{Product, ProductRoots, Roots, SnpConfig, SnpVerifier, Tcb};
use attest_testkit::dstack::App;
use attest_testkit::snp::{self as kit, FakeAmdPki, ReportFields, Signer};
use sha2::{Digest, Sha256};

const NOW: u64 = 1_760_000_000;

fn roots(pki: &FakeAmdPki) -> Roots {
    let mut m = HashMap::new();
    for (p, k) in [
        (Product::Milan, kit::Product::Milan),
        (Product::Genoa, kit::Product::Genoa),
        (Product::Turin, kit::Product::Turin),
    ] {
        m.insert(
            p,
            ProductRoots::from_pem(
                pki.ark_pem(k).as_bytes(),
                pki.ask_pem(k).as_bytes(),
                pki.asvk_pem(k).as_bytes(),
            )
            .unwrap(),
        );
    }
    Roots::custom(m)
}

fn verifier(pki: &FakeAmdPki, config: SnpConfig) -> SnpVerifier {
    SnpVerifier::with_roots(roots(pki), vec![], config)
}

struct Case {
    pki: FakeAmdPki,
    app: App,
    fields: ReportFields,
}

fn case() -> Case {
    let app = App::example();
    let fields = ReportFields {
        host_data: host_data(&app.app_config_v3()),
        report_data: [0x24; 64],
        ..Default::default()
    };
    Case {
        pki: FakeAmdPki::new(),
        app,
        fields,
    }
}

fn evidence(c: &Case, f: &ReportFields) -> Evidence {
    let mut e = Evidence::new(PlatformId::SEV_SNP, c.pki.report(f));
    let vek = c.pki.vek_der(f);
    e.certificates = c.pki.cert_table(f.product, &vek, f.signer);
    e.app_config = c.app.app_config_v3();
    e
}

fn ctx(f: &ReportFields) -> VerifyContext {
    VerifyContext::new(ReportData(f.report_data), UnixTime(NOW))
}

#[tokio::test]
async fn fake_pki_report_verifies_with_the_fake_roots() {
    let c = case();
    let v = verifier(&c.pki, SnpConfig::default());
    let id = v
        .verify(&evidence(&c, &c.fields), &ctx(&c.fields))
        .await
        .unwrap();
    assert_eq!(id.platform, PlatformId::SEV_SNP);
    assert_eq!(id.app.app_id.0, c.app.app_id);
    assert_eq!(id.app.compose_hash.0, c.app.compose_hash);
    assert_eq!(id.app.instance_id.unwrap().0, c.app.instance_id.unwrap());
    assert_eq!(id.tcb.status, TcbStatus::Unknown, "no minimum configured");
    assert!(id.report_data_checked);
    assert_eq!(
        id.device_id.unwrap().0,
        <[u8; 32]>::from(Sha256::digest([0xc1u8; 64]))
    );
    let j = id.to_json();
    assert_eq!(j["boot"]["measurement"], hex::encode([0x3e; 48]));
    assert_eq!(j["boot"]["boot_digest"], hex::encode([0x3e; 48]));
    assert_eq!(j["boot"]["vmpl"], 0);
    assert_eq!(j["boot"]["policy"], 0x30000);
    assert_eq!(
        j["boot"]["reported_tcb"],
        serde_json::json!({"bootloader": 4, "tee": 0, "snp": 22, "microcode": 213})
    );
    assert_eq!(j["platform_claims"]["sev_snp"]["product"], "Genoa");
    assert_eq!(j["platform_claims"]["sev_snp"]["signer"], "vcek");
    assert_eq!(
        j["platform_claims"]["dstack"]["tee_variant"],
        "dstack-amd-sev-snp"
    );
}

#[tokio::test]
async fn the_production_verifier_rejects_the_fake_pki() {
    let c = case();
    // The evidence even carries the fake ARK and ASK in its table: ignored.
    let prod = SnpVerifier::new(vec![], SnpConfig::default()).unwrap();
    let err = prod
        .verify(&evidence(&c, &c.fields), &ctx(&c.fields))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UntrustedChain, "{err}");
}

#[tokio::test]
async fn tcb_status_against_the_configured_minimum() {
    let c = case();
    let min = |snp| SnpConfig {
        min_tcb: HashMap::from([(
            Product::Genoa,
            Tcb {
                bootloader: 4,
                tee: 0,
                snp,
                microcode: 213,
                fmc: None,
            },
        )]),
        ..Default::default()
    };
    let e = evidence(&c, &c.fields);
    let at = verifier(&c.pki, min(22))
        .verify(&e, &ctx(&c.fields))
        .await
        .unwrap();
    assert_eq!(at.tcb.status, TcbStatus::UpToDate);
    let below = verifier(&c.pki, min(23))
        .verify(&e, &ctx(&c.fields))
        .await
        .unwrap();
    assert_eq!(below.tcb.status, TcbStatus::OutOfDate);
}

async fn reject(
    c: &Case,
    f: &ReportFields,
    e: Evidence,
    config: SnpConfig,
) -> attest_core::AttestError {
    verifier(&c.pki, config)
        .verify(&e, &ctx(f))
        .await
        .unwrap_err()
}

#[tokio::test]
async fn debug_vmpl_and_migration_agent_are_rejected() {
    let c = case();
    let f = c.fields.clone().debug();
    let err = reject(&c, &f, evidence(&c, &f), SnpConfig::default()).await;
    assert!(
        matches!(err, AttestError::Insecure(Insecure::Debug { .. })),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "insecure: the guest policy allows debugging (POLICY.DEBUG)"
    );
    let f = ReportFields {
        vmpl: 2,
        ..c.fields.clone()
    };
    assert_eq!(
        reject(&c, &f, evidence(&c, &f), SnpConfig::default()).await,
        AttestError::Insecure(Insecure::Vmpl {
            expected: 0,
            found: 2
        })
    );
    let f = ReportFields {
        policy: c.fields.policy | (1 << 18),
        ..c.fields.clone()
    };
    let err = reject(&c, &f, evidence(&c, &f), SnpConfig::default()).await;
    assert!(
        matches!(err, AttestError::Insecure(Insecure::Migration { .. })),
        "{err}"
    );
    let ok = SnpConfig {
        allow_migrate_ma: true,
        ..Default::default()
    };
    assert!(
        verifier(&c.pki, ok)
            .verify(&evidence(&c, &f), &ctx(&f))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn wrong_host_data_and_report_data_are_rejected() {
    let c = case();
    let f = ReportFields {
        host_data: [9; 32],
        ..c.fields.clone()
    };
    let err = reject(&c, &f, evidence(&c, &f), SnpConfig::default()).await;
    assert!(
        matches!(&err, AttestError::IdentityMismatch { what, expected, .. }
            if what == "host_data" && *expected == "09".repeat(32)),
        "{err}"
    );

    let e = evidence(&c, &c.fields);
    let other = VerifyContext::new(ReportData([0x25; 64]), UnixTime(NOW));
    let err = verifier(&c.pki, SnpConfig::default())
        .verify(&e, &other)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BindingMismatch);
}

#[tokio::test]
async fn vcek_tcb_must_equal_reported_tcb() {
    let c = case();
    let mut e = evidence(&c, &c.fields);
    let older = kit::Tcb {
        snp: 21,
        ..c.fields.tcb
    };
    e.certificates = c
        .pki
        .vcek_der(kit::Product::Genoa, &c.fields.chip_id, &older);
    let err = verifier(&c.pki, SnpConfig::default())
        .verify(&e, &ctx(&c.fields))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AttestError::IdentityMismatch { what, .. } if what == attest_core::names::reg::REPORTED_TCB),
        "{err}"
    );
}

#[tokio::test]
async fn masked_chip_id_needs_a_vlek() {
    let c = case();
    // VCEK for another chip id: hwID mismatch.
    let f = ReportFields {
        chip_id: [0; 64],
        ..c.fields.clone()
    };
    let mut e = evidence(&c, &f);
    e.certificates = c.pki.vcek_der(kit::Product::Genoa, &[0xc1; 64], &f.tcb);
    let err = reject(&c, &f, e, SnpConfig::default()).await;
    assert_eq!(err.kind(), ErrorKind::IdentityMismatch, "{err}");
    // A VLEK-signed report with a masked chip id: no device id.
    let f = ReportFields {
        chip_id: [0; 64],
        signer: Signer::Vlek,
        ..c.fields.clone()
    };
    let id = verifier(&c.pki, SnpConfig::default())
        .verify(&evidence(&c, &f), &ctx(&f))
        .await
        .unwrap();
    assert_eq!(id.device_id, None);
    assert_eq!(id.platform_claims.0["sev_snp"]["signer"], "vlek");
    assert_eq!(id.platform_claims.0["sev_snp"]["chip_id_masked"], true);
}

#[tokio::test]
async fn signer_type_must_match_the_certificate() {
    let c = case();
    let f = ReportFields {
        signer: Signer::Vlek,
        ..c.fields.clone()
    };
    // Report says VLEK (and is signed by the VLEK), the table holds a VCEK
    // only: the VCEK's key does not verify the report.
    let mut e = evidence(&c, &f);
    e.certificates = c.pki.vcek_der(kit::Product::Genoa, &f.chip_id, &f.tcb);
    let err = reject(&c, &f, e, SnpConfig::default()).await;
    assert_eq!(err.kind(), ErrorKind::BadSignature, "{err}");
}

/// A v3 report names its product in CPUID; the chain is checked against
/// that product's roots, so a report that names another product than its
/// key's is refused even when the key verifies it.
#[tokio::test]
async fn the_product_a_report_names_must_be_its_keys() {
    let c = case();
    for (signed_by, named) in [
        (kit::Product::Milan, kit::Product::Genoa),
        (kit::Product::Genoa, kit::Product::Milan),
        (kit::Product::Genoa, kit::Product::Turin),
    ] {
        let f = ReportFields {
            product: signed_by,
            ..c.fields.clone()
        };
        let mut e = evidence(&c, &f);
        e.quote = c.pki.report_claiming(&f, named);
        let err = reject(&c, &f, e, SnpConfig::default()).await;
        assert_eq!(
            err.kind(),
            ErrorKind::UntrustedChain,
            "{signed_by:?} key, {named:?} report: {err}"
        );
    }
    // The same reports naming their own product verify.
    let f = ReportFields {
        product: kit::Product::Milan,
        ..c.fields.clone()
    };
    let mut e = evidence(&c, &f);
    e.quote = c.pki.report_claiming(&f, kit::Product::Milan);
    verifier(&c.pki, SnpConfig::default())
        .verify(&e, &ctx(&f))
        .await
        .unwrap();
}

/// Extensions that are not AMD's `1.3.6.1.4.1.3704.1.*` are ignored, even
/// when laid out like AMD's TCB SPLs.
#[tokio::test]
async fn only_amds_extensions_count_in_a_vcek() {
    let c = case();
    let f = c.fields.clone();
    let mut e = evidence(&c, &f);
    let vcek = c
        .pki
        .vcek_der_with_foreign_extensions(f.product, &f.chip_id, &f.tcb);
    e.certificates = c.pki.cert_table(f.product, &vcek, f.signer);
    let vek = attest_snp::Vek::parse(&vcek).unwrap();
    assert_eq!(
        (
            vek.tcb.bootloader,
            vek.tcb.tee,
            vek.tcb.snp,
            vek.tcb.microcode
        ),
        (f.tcb.bootloader, f.tcb.tee, f.tcb.snp, f.tcb.microcode)
    );
    verifier(&c.pki, SnpConfig::default())
        .verify(&e, &ctx(&f))
        .await
        .unwrap();
}

#[tokio::test]
async fn turin_v3_and_v5_and_milan_v2() {
    let c = case();
    for (version, product) in [
        (3, kit::Product::Turin),
        (5, kit::Product::Turin),
        (5, kit::Product::Genoa),
        (2, kit::Product::Milan),
    ] {
        let f = ReportFields {
            version,
            product,
            ..c.fields.clone()
        };
        let id = verifier(&c.pki, SnpConfig::default())
            .verify(&evidence(&c, &f), &ctx(&f))
            .await
            .unwrap_or_else(|e| panic!("v{version} {product:?}: {e}"));
        let claims = &id.platform_claims.0["sev_snp"];
        assert_eq!(claims["report_version"], version);
        if product == kit::Product::Turin {
            assert_eq!(claims["product"], "Turin");
            assert_eq!(id.to_json()["boot"]["reported_tcb"]["fmc"], 1);
            // Turin's CHIP_ID has 8 significant bytes.
            let mut chip = [0u8; 64];
            chip[..8].fill(0xc1);
            assert_eq!(
                id.device_id.unwrap().0,
                <[u8; 32]>::from(Sha256::digest(chip))
            );
        }
    }
}

#[tokio::test]
async fn expired_vlek_is_rejected() {
    let mut c = case();
    c.pki.vlek_validity = ("200101000000Z".into(), "250101000000Z".into());
    let f = ReportFields {
        signer: Signer::Vlek,
        ..c.fields.clone()
    };
    let err = reject(&c, &f, evidence(&c, &f), SnpConfig::default()).await;
    assert_eq!(err.kind(), ErrorKind::UntrustedChain, "{err}");
}

#[tokio::test]
async fn no_app_config_and_wrong_platform() {
    let c = case();
    let mut e = evidence(&c, &c.fields);
    e.app_config.clear();
    assert_eq!(
        reject(&c, &c.fields, e, SnpConfig::default()).await.kind(),
        ErrorKind::Malformed
    );
    let mut e = evidence(&c, &c.fields);
    e.platform = PlatformId::TDX;
    assert_eq!(
        reject(&c, &c.fields, e, SnpConfig::default()).await.kind(),
        ErrorKind::UnsupportedPlatform
    );
}

/// go-sev-guest's test keys (`../shared/vectors/snp/test-keys`): a chain
/// forged with them is rejected by the production verifier and accepted
/// only by a verifier pinned to that fake ARK.
#[tokio::test]
async fn a_chain_forged_from_the_shared_test_keys() {
    let dir = attest_testkit::vectors::path("snp/test-keys");
    let key = |n: &str| std::fs::read_to_string(dir.join(format!("{n}_private_key.pem"))).unwrap();
    let pki = FakeAmdPki::from_pkcs8_pems(
        &key("ark"),
        &key("ask"),
        &key("asvk"),
        &key("vcek"),
        &key("vlek"),
    )
    .unwrap();
    let c = Case {
        pki,
        app: App::example(),
        fields: case().fields,
    };
    for signer in [Signer::Vcek, Signer::Vlek] {
        let f = ReportFields {
            signer,
            ..c.fields.clone()
        };
        let e = evidence(&c, &f);
        let prod = SnpVerifier::new(vec![], SnpConfig::default()).unwrap();
        let err = prod.verify(&e, &ctx(&f)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UntrustedChain, "{signer:?}: {err}");
        assert!(
            verifier(&c.pki, SnpConfig::default())
                .verify(&e, &ctx(&f))
                .await
                .is_ok(),
            "{signer:?}"
        );
    }
}

/// A verifier whose CRLs come from an offline directory holding `crl`
/// (DER) for Genoa's VCEK chain.
fn verifier_with_crl(c: &Case, crl: Option<Vec<u8>>) -> (SnpVerifier, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    if let Some(crl) = crl {
        std::fs::write(dir.path().join("Genoa-vcek.crl"), crl).unwrap();
    }
    let offline = std::sync::Arc::new(attest_snp::OfflineVceks::new(dir.path()));
    let v = verifier(&c.pki, SnpConfig::default())
        .with_crls(attest_snp::Crls::new(vec![offline], None));
    (v, dir)
}

const DAY: i64 = 86_400;

/// AMD's CRLs (signed by the ARK) revoke ASKs, ASVKs and endorsement
/// keys: a listed one is refused, and a report checked against a CRL says
/// so in its claims.
#[tokio::test]
async fn amd_crls_revoke_intermediates_and_endorsement_keys() {
    use kit::CrlEntry;
    let c = case();
    let now = NOW as i64;
    let e = evidence(&c, &c.fields);

    // No CRL: verifies, unchecked.
    let (v, _d) = verifier_with_crl(&c, None);
    let id = v.verify(&e, &ctx(&c.fields)).await.unwrap();
    assert_eq!(id.platform_claims.0["sev_snp"]["revocation_checked"], false);
    let verified = v.verify_report(&e, &ctx(&c.fields)).await.unwrap();
    assert!(!verified.revocation_checked());

    // A clean CRL: verifies, checked.
    let clean = c
        .pki
        .crl_der(kit::Product::Genoa, &[99], now - DAY, now + 30 * DAY);
    let (v, _d) = verifier_with_crl(&c, Some(clean));
    let id = v.verify(&e, &ctx(&c.fields)).await.unwrap();
    assert_eq!(id.platform_claims.0["sev_snp"]["revocation_checked"], true);
    let verified = v.verify_report(&e, &ctx(&c.fields)).await.unwrap();
    assert!(verified.revocation_checked());

    // The ASK revoked.
    let ask = c.pki.serial_of(CrlEntry::Ask, &c.fields.tcb);
    let crl = c
        .pki
        .crl_der(kit::Product::Genoa, &[ask], now - DAY, now + 30 * DAY);
    let (v, _d) = verifier_with_crl(&c, Some(crl));
    let err = v.verify(&e, &ctx(&c.fields)).await.unwrap_err();
    assert!(
        matches!(&err, AttestError::Revoked(Revoked::Certificate { detail }) if detail.ends_with("revokes the ASK")),
        "{err}"
    );

    // The VCEK revoked.
    let vcek = c.pki.serial_of(CrlEntry::Vcek, &c.fields.tcb);
    let crl = c
        .pki
        .crl_der(kit::Product::Genoa, &[vcek], now - DAY, now + 30 * DAY);
    let (v, _d) = verifier_with_crl(&c, Some(crl));
    let err = v.verify(&e, &ctx(&c.fields)).await.unwrap_err();
    assert!(
        matches!(&err, AttestError::Revoked(Revoked::Certificate { detail }) if detail.ends_with("revokes this SEV-VCEK")),
        "{err}"
    );

    // A CRL not signed by the ARK (here: the ASK's key), or outside its
    // window, is not used: the report verifies, unchecked.
    for forged in [
        c.pki
            .crl_signed_by(kit::Product::Genoa, &[ask], now - DAY, now + 30 * DAY, 1),
        c.pki
            .crl_der(kit::Product::Genoa, &[ask], now - 60 * DAY, now - 30 * DAY),
        c.pki
            .crl_der(kit::Product::Genoa, &[ask], now + DAY, now + 30 * DAY),
        b"not a CRL".to_vec(),
    ] {
        let (v, _d) = verifier_with_crl(&c, Some(forged));
        let id = v.verify(&e, &ctx(&c.fields)).await.unwrap();
        assert_eq!(id.platform_claims.0["sev_snp"]["revocation_checked"], false);
    }
}

/// The same check on the AMD CRL as KDS serves it, fetched in the
/// endorsement step (never during verification), once, and kept on disk.
#[tokio::test]
async fn crls_come_from_kds_in_the_endorsement_step() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    let c = case();
    let now = NOW as i64;
    let ask = c.pki.serial_of(kit::CrlEntry::Ask, &c.fields.tcb);
    let crl = c
        .pki
        .crl_der(kit::Product::Genoa, &[ask], now - DAY, now + 30 * DAY);
    let (url, hits) = kds_serving(crl.clone()).await;
    let kds = Arc::new(
        attest_snp::KdsClient::new(&url, None, std::time::Duration::from_secs(2)).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let v = verifier(&c.pki, SnpConfig::default()).with_crls(attest_snp::Crls::new(
        vec![kds],
        Some(dir.path().to_path_buf()),
    ));
    let e = evidence(&c, &c.fields);
    // Verification alone never asks the network.
    let id = v.verify(&e, &ctx(&c.fields)).await.unwrap();
    assert_eq!(id.platform_claims.0["sev_snp"]["revocation_checked"], false);
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    // The endorsement step fetches it; then the ASK is revoked.
    v.fetch_endorsements(&e, &ctx(&c.fields)).await.unwrap();
    v.fetch_endorsements(&e, &ctx(&c.fields)).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let err = v.verify(&e, &ctx(&c.fields)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Revoked);
    assert_eq!(
        std::fs::read(dir.path().join("Genoa-vcek.crl")).unwrap(),
        crl
    );
}

/// The second review: the verdict read REPORTED_TCB only, so a guest
/// launched on firmware below the minimum and then live-updated reported
/// UpToDate. The verdict now judges the lowest of each component across
/// the four TCBs, the claims carry all four, and a launch TCB below the
/// reported one is flagged.
#[tokio::test]
async fn the_tcb_verdict_judges_all_four_tcbs() {
    let c = case();
    let min = Tcb {
        bootloader: 4,
        tee: 0,
        snp: 22,
        microcode: 213,
        fmc: None,
    };
    let config = || SnpConfig {
        min_tcb: HashMap::from([(Product::Genoa, min)]),
        ..Default::default()
    };
    // All four at the minimum: up to date, nothing flagged.
    let id = verifier(&c.pki, config())
        .verify(&evidence(&c, &c.fields), &ctx(&c.fields))
        .await
        .unwrap();
    assert_eq!(id.tcb.status, TcbStatus::UpToDate);
    assert!(id.tcb.advisory_ids.is_empty());
    assert_eq!(id.platform_claims.0["sev_snp"]["relaunch_advised"], false);

    // Launched on older firmware (snp 20), updated live to 22: the
    // reported TCB (and the VCEK) say 22, the verdict says OutOfDate.
    let old = kit::Tcb {
        snp: 20,
        ..c.fields.tcb
    };
    let f = ReportFields {
        launch_tcb: Some(old),
        ..c.fields.clone()
    };
    let id = verifier(&c.pki, config())
        .verify(&evidence(&c, &f), &ctx(&f))
        .await
        .unwrap();
    assert_eq!(id.tcb.status, TcbStatus::OutOfDate);
    assert_eq!(id.tcb.advisory_ids, [attest_snp::RELAUNCH_ADVISED]);
    let claims = &id.platform_claims.0["sev_snp"];
    assert_eq!(claims["relaunch_advised"], true);
    assert_eq!(claims["effective_tcb"]["snp"], 20);
    assert_eq!(claims["tcbs"]["reported"]["snp"], 22);
    assert_eq!(claims["tcbs"]["launch"]["snp"], 20);
    assert_eq!(id.to_json()["boot"]["launch_tcb"]["snp"], 20);

    // A committed TCB below the minimum (rollback possible): OutOfDate,
    // but no relaunch advised.
    let f = ReportFields {
        committed_tcb: Some(kit::Tcb {
            microcode: 200,
            ..c.fields.tcb
        }),
        ..c.fields.clone()
    };
    let id = verifier(&c.pki, config())
        .verify(&evidence(&c, &f), &ctx(&f))
        .await
        .unwrap();
    assert_eq!(id.tcb.status, TcbStatus::OutOfDate);
    assert_eq!(id.platform_claims.0["sev_snp"]["relaunch_advised"], false);
    assert_eq!(
        id.platform_claims.0["sev_snp"]["effective_tcb"]["microcode"],
        200
    );
}

/// The local-only CRL refresh that `verify` runs (under the KMS's permit)
/// never waits for another request's network refresh of the same CRL:
/// here the endorsement step waits on a KDS that never answers.
#[tokio::test]
async fn verify_never_waits_for_a_network_crl_fetch() {
    use std::sync::Arc;
    use std::time::Duration;
    let c = case();
    let asked = Arc::new(tokio::sync::Notify::new());
    let notify = asked.clone();
    let app = axum::Router::new().route(
        "/vcek/v1/Genoa/crl",
        axum::routing::get(move || {
            let notify = notify.clone();
            async move {
                notify.notify_one();
                std::future::pending::<&'static str>().await
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let kds = Arc::new(attest_snp::KdsClient::new(&url, None, Duration::from_secs(600)).unwrap());
    let v = Arc::new(
        verifier(&c.pki, SnpConfig::default()).with_crls(attest_snp::Crls::new(vec![kds], None)),
    );
    let e = Arc::new(evidence(&c, &c.fields));
    // Request A's endorsement step asks KDS for the CRL (no permit held).
    let (va, ea, ca) = (v.clone(), e.clone(), ctx(&c.fields));
    let a = tokio::spawn(async move { va.fetch_endorsements(&ea, &ca).await });
    asked.notified().await;
    // Request B's verification, which runs under a permit, goes on.
    tokio::time::timeout(Duration::from_secs(60), v.verify(&e, &ctx(&c.fields)))
        .await
        .expect("verify waited on another request's KDS fetch")
        .unwrap();
    assert!(!a.is_finished());
    a.abort();
}

/// CRLs up to 256 KiB are read (AMD's grow with every revoked key); a
/// larger one is refused before it is parsed.
#[test]
fn crls_are_read_up_to_256_kib() {
    use attest_core::Malformed;
    use attest_snp::AmdCrl;
    let pki = FakeAmdPki::new();
    let genoa = ProductRoots::from_pem(
        pki.ark_pem(kit::Product::Genoa).as_bytes(),
        pki.ask_pem(kit::Product::Genoa).as_bytes(),
        pki.asvk_pem(kit::Product::Genoa).as_bytes(),
    )
    .unwrap();
    let now = NOW as i64;
    let serials: Vec<u64> = (0x10_0000..0x10_0000 + 400).collect();
    let crl = pki.crl_der(kit::Product::Genoa, &serials, now - 86_400, now + 86_400);
    assert!(crl.len() > 8 * 1024, "{}", crl.len());
    let read = AmdCrl::verify(&crl, &genoa).unwrap();
    assert!(read.revokes(&0x10_0001u64.to_be_bytes()[5..]));
    assert!(!read.revokes(&0x0f_ffffu64.to_be_bytes()[5..]));
    // Usable from thisUpdate up to, not at, nextUpdate.
    let (from, until) = ((now - 86_400) as u64, (now + 86_400) as u64);
    assert!(!read.valid_at(UnixTime(from - 1)));
    assert!(read.valid_at(UnixTime(from)));
    assert!(read.valid_at(UnixTime(until - 1)));
    assert!(!read.valid_at(UnixTime(until)));
    // Only RSASSA-PSS with SHA-384 is AMD's: another algorithm, or PSS
    // over another hash, in the CRL's (unsigned) outer algorithm field.
    let pss: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
    let sha384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
    let rfind = |hay: &[u8], needle: &[u8]| {
        hay.windows(needle.len())
            .rposition(|w| w == needle)
            .unwrap()
    };
    let outer_alg = rfind(&crl, pss);
    let mut other_alg = crl.clone();
    other_alg[outer_alg + pss.len() - 1] = 0x0b; // sha256WithRSAEncryption
    let mut other_hash = crl.clone();
    for _ in 0..2 {
        let at = rfind(&other_hash, sha384);
        assert!(at > outer_alg);
        other_hash[at + sha384.len() - 1] = 0x01; // SHA-256
    }
    for (what, bad) in [("algorithm", other_alg), ("hash", other_hash)] {
        match AmdCrl::verify(&bad, &genoa).err().unwrap() {
            attest_core::AttestError::UntrustedChain(
                attest_core::UntrustedChain::BadCertificate { detail, .. },
            ) => assert_eq!(
                detail, "not signed with RSASSA-PSS/SHA-384 (AMD's ARK uses nothing else)",
                "{what}"
            ),
            other => panic!("{what}: {other}"),
        }
    }
    // Exactly 256 KiB is read (and refused for what it is, not its size).
    let most = vec![0x30; 256 * 1024];
    assert!(!matches!(
        AmdCrl::verify(&most, &genoa).err().unwrap().malformed(),
        Some(Malformed::TooLarge { .. })
    ));
    let huge = vec![0x30; 256 * 1024 + 1];
    assert_eq!(
        AmdCrl::verify(&huge, &genoa).err().unwrap().malformed(),
        Some(&Malformed::TooLarge {
            what: "AMD CRL".into(),
            size: 256 * 1024 + 1,
            max: 256 * 1024,
        })
    );
}

/// A fake KDS serving `crl` as Genoa's VCEK CRL; counts the requests.
async fn kds_serving(crl: Vec<u8>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/vcek/v1/Genoa/crl",
        axum::routing::get(move || {
            h.fetch_add(1, Ordering::SeqCst);
            let b = crl.clone();
            async move { b }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, hits)
}

/// A CRL persisted on disk is used without the network while it is more
/// than a day from its nextUpdate; one that is not yet valid, or near its
/// end, is replaced from KDS in the endorsement step.
#[tokio::test]
async fn a_persisted_crl_is_used_until_a_day_before_its_next_update() {
    use std::sync::atomic::Ordering;
    let c = case();
    let now = NOW as i64;
    let ask = c.pki.serial_of(kit::CrlEntry::Ask, &c.fields.tcb);
    let e = evidence(&c, &c.fields);
    // KDS has a current CRL that revokes the ASK.
    let served = c
        .pki
        .crl_der(kit::Product::Genoa, &[ask], now - DAY, now + 30 * DAY);
    for (case_name, on_disk, network) in [
        // Good on disk: no fetch, and the disk CRL (revoking nothing) rules.
        ("fresh on disk", (now - DAY, now + 2 * DAY), 0),
        ("not yet valid on disk", (now + 60, now + 30 * DAY), 1),
        (
            "within a day of its end",
            (now - 29 * DAY, now + DAY - 60),
            1,
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let disk = c
            .pki
            .crl_der(kit::Product::Genoa, &[99], on_disk.0, on_disk.1);
        std::fs::write(dir.path().join("Genoa-vcek.crl"), &disk).unwrap();
        let (url, hits) = kds_serving(served.clone()).await;
        let kds = std::sync::Arc::new(
            attest_snp::KdsClient::new(&url, None, std::time::Duration::from_secs(2)).unwrap(),
        );
        let v = verifier(&c.pki, SnpConfig::default()).with_crls(attest_snp::Crls::new(
            vec![kds],
            Some(dir.path().to_path_buf()),
        ));
        v.fetch_endorsements(&e, &ctx(&c.fields)).await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), network, "{case_name}");
        let verdict = v.verify(&e, &ctx(&c.fields)).await;
        if network == 0 {
            let id = verdict.unwrap();
            assert_eq!(
                id.platform_claims.0["sev_snp"]["revocation_checked"], true,
                "{case_name}"
            );
        } else {
            assert_eq!(
                verdict.unwrap_err().kind(),
                ErrorKind::Revoked,
                "{case_name}"
            );
        }
    }
}

/// KDS answering with a CRL that is not valid now (expired) replaces
/// nothing: the CRL held on disk keeps ruling.
#[tokio::test]
async fn a_crl_not_valid_now_is_never_taken_from_kds() {
    let c = case();
    let now = NOW as i64;
    let ask = c.pki.serial_of(kit::CrlEntry::Ask, &c.fields.tcb);
    let e = evidence(&c, &c.fields);
    let dir = tempfile::tempdir().unwrap();
    // On disk: valid, near its end (so KDS is asked), revoking the ASK.
    let disk = c
        .pki
        .crl_der(kit::Product::Genoa, &[ask], now - 29 * DAY, now + DAY - 60);
    std::fs::write(dir.path().join("Genoa-vcek.crl"), &disk).unwrap();
    // KDS: a newer issue that has already ended, revoking nothing.
    let stale = c
        .pki
        .crl_der(kit::Product::Genoa, &[99], now - 2 * DAY, now - 60);
    let (url, hits) = kds_serving(stale).await;
    let kds = std::sync::Arc::new(
        attest_snp::KdsClient::new(&url, None, std::time::Duration::from_secs(2)).unwrap(),
    );
    let v = verifier(&c.pki, SnpConfig::default()).with_crls(attest_snp::Crls::new(
        vec![kds],
        Some(dir.path().to_path_buf()),
    ));
    v.fetch_endorsements(&e, &ctx(&c.fields)).await.unwrap();
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    let err = v.verify(&e, &ctx(&c.fields)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Revoked, "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("Genoa-vcek.crl")).unwrap(),
        disk
    );
}

/// KDS answers are read up to their bound (256 KiB for a CRL); a longer
/// one is refused.
#[tokio::test]
async fn kds_answers_are_read_up_to_their_bound() {
    use attest_snp::CrlSource;
    let most = vec![0x30; 256 * 1024];
    let (url, _) = kds_serving(most.clone()).await;
    let kds = attest_snp::KdsClient::new(&url, None, std::time::Duration::from_secs(2)).unwrap();
    assert_eq!(
        kds.fetch_crl(attest_snp::Product::Genoa, attest_snp::Signer::Vcek)
            .await
            .unwrap(),
        Some(most)
    );
    let (url, _) = kds_serving(vec![0x30; 256 * 1024 + 1]).await;
    let kds = attest_snp::KdsClient::new(&url, None, std::time::Duration::from_secs(2)).unwrap();
    let err = kds
        .fetch_crl(attest_snp::Product::Genoa, attest_snp::Signer::Vcek)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        err.to_string().contains("larger than 262144 bytes"),
        "{err}"
    );
}
