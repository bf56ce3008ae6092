//! The plug-ins attacked from outside, on evidence the testkit signs
//! through its fake AMD and Intel PKIs (which these verifiers trust): the
//! guest controls everything except what AMD, Intel or the vTPM's AK
//! signed. Each way in gets a test with the exact error kind.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use attest_core::{
    Attestation, ErrorKind, Evidence, PlatformId, ReportData, UnixTime, VerifyContext,
};
use attest_snp::{Product, ProductRoots, Roots, SnpConfig, SnpVerifier};
use attest_tdx::collateral::StaticCollateral;
use attest_tdx::{Collateral, TdxVerifier};
use attest_testkit::dstack::App;
use attest_testkit::snp::{self as kit, FakeAmdPki, ReportFields};
use attest_testkit::tdx::{CollateralOptions, FakeIntelPki, TdFields};
use attest_testkit::vtpm::{FakeVtpm, VtpmFields, claims_report_data};
use attest_vtpm::{AZ_SNP_VTPM, AZ_TDX_VTPM, AzVtpm, Nonce, VtpmConfig};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{
    assert_refused, binding_mismatch, hcl_ak_signature, malformed_detail, pcr_digest_mismatch,
    test_ak,
};
use sha2::{Digest, Sha256};

const APP_PCR: u32 = 8;
/// Inside the fake certificates' validity and the collateral's window.
const NOW: u64 = 1_800_000_000;

struct World {
    amd: FakeAmdPki,
    intel: FakeIntelPki,
    vtpm: FakeVtpm,
    snp: AzVtpm,
    tdx: AzVtpm,
}

fn snp_verifier(amd: &FakeAmdPki, config: SnpConfig) -> SnpVerifier {
    let mut roots = HashMap::new();
    for (p, k) in [
        (Product::Milan, kit::Product::Milan),
        (Product::Genoa, kit::Product::Genoa),
    ] {
        roots.insert(
            p,
            ProductRoots::from_pem(
                amd.ark_pem(k).as_bytes(),
                amd.ask_pem(k).as_bytes(),
                amd.asvk_pem(k).as_bytes(),
            )
            .unwrap(),
        );
    }
    SnpVerifier::with_roots(Roots::custom(roots), vec![], config)
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let amd = FakeAmdPki::new();
        let intel = FakeIntelPki::new();
        let collateral =
            Collateral::new(intel.collateral(&CollateralOptions::valid_from(NOW as i64 - 86_400)))
                .unwrap();
        let tdx = Arc::new(
            TdxVerifier::with_root(
                intel.root_der(),
                Arc::new(StaticCollateral(Arc::new(collateral))),
            )
            .unwrap(),
        );
        let pinned = |launch: [u8; 48]| VtpmConfig {
            app_pcr: APP_PCR,
            paravisors: vec![attest_core::HexBytes(launch.to_vec())],
        };
        World {
            snp: AzVtpm::snp(
                snp_verifier(&amd, SnpConfig::default()),
                pinned(attest_testkit::vtpm::PARAVISOR_MEASUREMENT),
            )
            .unwrap(),
            tdx: AzVtpm::tdx(tdx, pinned(attest_testkit::vtpm::PARAVISOR_MRTD)).unwrap(),
            amd,
            intel,
            vtpm: FakeVtpm::new(),
        }
    })
}

fn rd() -> ReportData {
    ReportData([0x5d; 64])
}

fn ctx() -> VerifyContext {
    VerifyContext::new(rd(), UnixTime(NOW))
}

/// Fields of a CVM running the example app for request `rd()`.
fn fields() -> (VtpmFields, Vec<u8>) {
    let (log, pcr) = App::example().vtpm_event_log(APP_PCR);
    let mut f = VtpmFields {
        user_data: Some(rd().0),
        ..Default::default()
    };
    f.pcrs[APP_PCR as usize] = pcr;
    (f, log)
}

fn azure_td() -> TdFields {
    attest_testkit::vtpm::paravisor_td()
}

/// Evidence for `platform` built from `f`, with the app's event log.
fn evidence_with(
    platform: &PlatformId,
    f: &VtpmFields,
    report: ReportFields,
    td: TdFields,
) -> Evidence {
    let w = world();
    let (_, log) = fields();
    let quote = if *platform == AZ_SNP_VTPM {
        w.vtpm.snp_container(&w.amd, &report, f)
    } else {
        w.vtpm.tdx_container(&w.intel, &td, f)
    };
    let mut e = Evidence::new(platform.clone(), quote);
    e.event_log = log;
    e
}

fn evidence(platform: &PlatformId, edit: impl FnOnce(&mut VtpmFields)) -> Evidence {
    let (mut f, _) = fields();
    edit(&mut f);
    evidence_with(
        platform,
        &f,
        attest_testkit::vtpm::paravisor_report(),
        azure_td(),
    )
}

fn plugin(platform: &PlatformId) -> &'static AzVtpm {
    if *platform == AZ_SNP_VTPM {
        &world().snp
    } else {
        &world().tdx
    }
}

async fn verify(e: &Evidence) -> Result<attest_core::VerifiedIdentity, attest_core::AttestError> {
    plugin(&e.platform).verify(e, &ctx()).await
}

const BOTH: [PlatformId; 2] = [AZ_SNP_VTPM, AZ_TDX_VTPM];

/// The container JSON of `e`, to edit.
fn doc(e: &Evidence) -> serde_json::Value {
    serde_json::from_slice(&e.quote).unwrap()
}

fn with_doc(e: &Evidence, d: &serde_json::Value) -> Evidence {
    Evidence {
        quote: serde_json::to_vec(d).unwrap(),
        ..e.clone()
    }
}

fn hcl_of(d: &serde_json::Value) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(d["hcl_report"].as_str().unwrap().trim_end_matches('='))
        .unwrap()
}

#[tokio::test]
async fn genuine_evidence_verifies_on_both_platforms() {
    let app = App::example();
    for p in BOTH {
        let id = verify(&evidence(&p, |_| {})).await.unwrap();
        assert_eq!(id.platform, p);
        assert_eq!(id.app.app_id.0, app.app_id);
        assert_eq!(id.app.compose_hash.0, app.compose_hash);
        assert_eq!(id.app.instance_id.map(|i| i.0), app.instance_id);
        assert_eq!(id.report_data, rd());
        assert!(id.report_data_checked);
        assert!(!id.debug);
        let (f, _) = fields();
        for (i, n) in attest_vtpm::PCR_NAMES.iter().enumerate() {
            assert_eq!(
                id.boot.get(n),
                Some(&attest_core::BootValue::Bytes(attest_core::HexBytes(
                    f.pcrs[i].to_vec()
                ))),
                "{p} {n}"
            );
        }
        let claims: attest_vtpm::VtpmClaims = id.platform_claims.get("vtpm").unwrap().unwrap();
        assert_eq!(claims.ak_pub_sha256.0, world().vtpm.ak_digest());
        assert_eq!(claims.nonce.0, Sha256::digest(rd().0).to_vec());
        assert_eq!(claims.reset_count, 3);
        assert_eq!(claims.secure_boot, Some(true));
        assert_eq!(claims.container_version, 2);
        // The reused verifier's section and registers are there.
        if p == AZ_SNP_VTPM {
            assert!(id.platform_claims.0.contains_key("sev_snp"));
            assert!(id.boot.get("measurement").is_some());
        } else {
            assert!(id.platform_claims.0.contains_key("tdx"));
            assert!(id.boot.get("mrtd").is_some());
        }
        assert!(!id.platform_claims.0.contains_key("dstack"));
        // The request binding is checked: another request's report data.
        let other = VerifyContext::new(ReportData([1; 64]), UnixTime(NOW));
        assert_refused(
            plugin(&p).verify(&evidence(&p, |_| {}), &other).await,
            binding_mismatch,
        );
    }
}

#[tokio::test]
async fn forged_claims_break_the_hardware_binding() {
    for p in BOTH {
        let e = evidence(&p, |_| {});
        let d = doc(&e);
        let hcl = hcl_of(&d);
        // Any byte of the claims (inside the user-data hex: stays valid
        // JSON, still hex, still 64 bytes).
        let at = hcl.windows(11).position(|w| w == b"\"user-data\"").unwrap() + 14;
        let mut forged = hcl.clone();
        forged[at] = if forged[at] == b'0' { b'1' } else { b'0' };
        let mut d2 = d.clone();
        d2["hcl_report"] = URL_SAFE_NO_PAD.encode(&forged).into();
        assert_refused(verify(&with_doc(&e, &d2)).await, binding_mismatch);
    }
}

#[tokio::test]
async fn an_ak_swap_is_refused_either_way() {
    let w = world();
    let attacker = test_ak();
    for p in BOTH {
        let (f, _) = fields();
        // 1. Genuine claims (bound by the hardware), the quote signed by the
        //    attacker's key: the signature is not the AK's.
        let e = evidence(&p, |_| {});
        let mut d = doc(&e);
        let msg = hex::decode(d["tpm_quote"]["message"].as_str().unwrap()).unwrap();
        d["tpm_quote"]["signature"] = hex::encode(attacker.sign(&msg)).into();
        assert_refused(verify(&with_doc(&e, &d)).await, hcl_ak_signature);
        // 2. Claims naming the attacker's key, a quote it signs, but the
        //    genuine hardware report (over the genuine claims).
        let forged_claims = w.vtpm.claims_with_modulus(&attacker.n, &f);
        let genuine = hcl_of(&doc(&e));
        let tee = &genuine[0x20..0x20 + 1184];
        let hcl = w.vtpm.hcl_report(
            if p == AZ_SNP_VTPM { 2 } else { 4 },
            if p == AZ_SNP_VTPM { tee } else { &tee[..1024] },
            &forged_claims,
        );
        let (msg, _) = w.vtpm.quote(&f);
        let mut d = doc(&e);
        d["hcl_report"] = URL_SAFE_NO_PAD.encode(&hcl).into();
        d["tpm_quote"]["signature"] = hex::encode(attacker.sign(&msg)).into();
        d["tpm_quote"]["message"] = hex::encode(&msg).into();
        assert_refused(verify(&with_doc(&e, &d)).await, binding_mismatch);
    }
}

#[tokio::test]
async fn an_snp_report_from_a_lower_vmpl_is_refused() {
    // The guest at VMPL 2 asks for its own report over claims naming its
    // own "AK" (P6): correctly signed by AMD, but not the paravisor's.
    let (f, _) = fields();
    let e = evidence_with(
        &AZ_SNP_VTPM,
        &f,
        ReportFields {
            vmpl: 2,
            ..Default::default()
        },
        azure_td(),
    );
    assert_refused(verify(&e).await, |e| {
        *e == attest_core::AttestError::Insecure(attest_core::Insecure::Vmpl {
            expected: 0,
            found: 2,
        })
    });
}

#[tokio::test]
async fn debug_and_foreign_modules_are_refused() {
    let (f, _) = fields();
    let e = evidence_with(
        &AZ_SNP_VTPM,
        &f,
        attest_testkit::vtpm::paravisor_report().debug(),
        azure_td(),
    );
    assert_refused(verify(&e).await, |e| {
        matches!(
            e,
            attest_core::AttestError::Insecure(attest_core::Insecure::Debug { .. })
        )
    });
    let e = evidence_with(
        &AZ_TDX_VTPM,
        &f,
        attest_testkit::vtpm::paravisor_report(),
        azure_td().debug(),
    );
    assert_eq!(verify(&e).await.unwrap_err().kind(), ErrorKind::Insecure);
    let td = TdFields {
        mr_signer_seam: [1; 48],
        ..azure_td()
    };
    let e = evidence_with(
        &AZ_TDX_VTPM,
        &f,
        attest_testkit::vtpm::paravisor_report(),
        td,
    );
    assert_refused(verify(&e).await, |e| {
        matches!(
            e,
            attest_core::AttestError::Insecure(attest_core::Insecure::ForeignTdxModule { .. })
        )
    });
}

#[tokio::test]
async fn a_td_quote_over_other_claims_is_refused() {
    // A genuine TD quote whose REPORTDATA binds other claims, with a
    // genuine-looking HCL report around the claims the attacker wants.
    let w = world();
    let (f, log) = fields();
    let claims = w.vtpm.claims(&f);
    let mut other = claims.clone();
    other.extend_from_slice(b" ");
    let td_quote = w.intel.quote(&TdFields {
        report_data: claims_report_data(&other),
        ..azure_td()
    });
    let hcl = w.vtpm.hcl_report(4, &[0x7d; 1024], &claims);
    let mut e = Evidence::new(
        AZ_TDX_VTPM,
        w.vtpm.container(&f, &hcl, ("td_quote", &td_quote)),
    );
    e.event_log = log;
    assert_refused(verify(&e).await, binding_mismatch);
}

#[tokio::test]
async fn the_quote_must_be_bound_to_the_request() {
    for p in BOTH {
        // extraData = SHA-256 of another report data, of a truncated one, or
        // the report data itself cut to 48 bytes (Trustee's convention).
        for nonce in [
            Sha256::digest([1u8; 64]).to_vec(),
            Sha256::digest(&rd().0[..63]).to_vec(),
            rd().0[..48].to_vec(),
            Vec::new(),
        ] {
            let e = evidence(&p, |f| f.nonce = Some(nonce.clone()));
            assert_refused(verify(&e).await, binding_mismatch);
        }
        // user-data of another request, with a quote bound to it.
        let e = evidence(&p, |f| f.user_data = Some([1; 64]));
        assert_refused(verify(&e).await, binding_mismatch);
        // No user-data at all.
        let e = evidence(&p, |f| {
            f.user_data = None;
            f.nonce = Some(Sha256::digest(rd().0).to_vec());
        });
        assert!(matches!(
            malformed_detail(verify(&e).await),
            attest_core::Malformed::Missing {
                what: "user-data",
                ..
            }
        ));
    }
}

type Edit = Box<dyn Fn(&mut VtpmFields)>;

#[tokio::test]
async fn pcr_selection_games_signed_by_the_genuine_ak_are_refused() {
    use attest_core::Malformed;
    let selection = |found: [u8; 3]| Malformed::PcrSelection {
        field: "TPMS_ATTEST pcrSelect.pcrSelect",
        expected: vec![0xff; 3],
        found: found.to_vec(),
    };
    let field = |field: &'static str, expected: &str, found: &str| Malformed::TpmField {
        structure: "TPMS_ATTEST",
        field,
        expected: expected.into(),
        found: found.into(),
    };
    for p in BOTH {
        let cases: Vec<(Edit, Malformed)> = vec![
            (
                Box::new(|f| f.selection = vec![0x00, 0x0b, 3, 0xff, 0x40, 0x00]),
                selection([0xff, 0x40, 0x00]),
            ),
            (
                Box::new(|f| f.selection = vec![0x00, 0x0b, 3, 0xff, 0xff, 0xfe]),
                selection([0xff, 0xff, 0xfe]),
            ),
            (
                Box::new(|f| {
                    f.selection_count = 2;
                    f.selection = vec![0x00, 0x0b, 3, 0xff, 0xff, 0xff, 0x00, 0x04, 3, 0, 0, 0];
                }),
                field("pcrSelect.count", "1 selection (sha256:0-23)", "2"),
            ),
            (
                Box::new(|f| f.selection = vec![0x00, 0x0c, 3, 0xff, 0xff, 0xff]),
                field("pcrSelect.hash", "000b (SHA-256)", "000c"),
            ),
            (
                Box::new(|f| f.selection = vec![0x00, 0x0b, 4, 0xff, 0xff, 0xff, 0xff]),
                field("pcrSelect.sizeofSelect", "3", "4"),
            ),
        ];
        for (edit, want) in cases {
            assert_eq!(malformed_detail(verify(&evidence(&p, edit)).await), want);
        }
        // The listed PCRs are not the quoted ones: a resettable PCR 16
        // shown where PCR 8 was quoted.
        let e = evidence(&p, |f| {
            let mut listed = f.pcrs;
            listed.swap(8, 16);
            f.listed_pcrs = Some(listed);
        });
        assert_refused(verify(&e).await, pcr_digest_mismatch);
    }
}

#[tokio::test]
async fn event_log_games_are_refused() {
    let p = AZ_SNP_VTPM;
    let app = App::example();
    let base = evidence(&p, |_| {});
    // Another app's events over this app's PCR: the replay does not match.
    let mut rogue = app.clone();
    rogue.app_id[0] ^= 1;
    let mut e = base.clone();
    e.event_log = rogue.vtpm_event_log(APP_PCR).0;
    assert_refused(
        verify(&e).await,
        |e| matches!(e, attest_core::AttestError::IdentityMismatch { what, .. } if what == "pcr8"),
    );
    // The right events, said to extend another PCR (identity read there).
    let mut e = base.clone();
    e.event_log = app.vtpm_event_log(9).0;
    assert_eq!(
        malformed_detail(verify(&e).await),
        attest_core::Malformed::PcrOutOfRange {
            what: "event 0's PCR".into(),
            pcr: 9,
            allowed: APP_PCR..=APP_PCR,
        }
    );
    // A boot event on the app PCR whose stated digest makes the replay
    // match a PCR holding someone else's identity.
    let mut events =
        attest_core::eventlog::parse_json_event_log(&app.vtpm_event_log(APP_PCR).0).unwrap();
    events.insert(
        0,
        attest_core::eventlog::LogEvent::boot(APP_PCR, 0x0d, vec![0; 32], vec![]),
    );
    let mut e = base.clone();
    e.event_log = attest_core::eventlog::to_json_event_log(&events);
    assert_refused(verify(&e).await, |e| {
        matches!(
            e.malformed(),
            Some(attest_core::Malformed::Unexpected {
                what: attest_core::eventlog::BOOT_EVENT_ON_APP_REGISTER,
                ..
            })
        )
    });
    // Not JSON, or empty.
    let mut e = base.clone();
    e.event_log = b"\x00\x01".to_vec();
    assert_refused(
        verify(&e).await,
        |e| matches!(e.malformed(), Some(attest_core::Malformed::Syntax { what, .. }) if what == "JSON event log"),
    );
    let mut e = base.clone();
    e.event_log.clear();
    assert_refused(verify(&e).await, |e| {
        matches!(
            e.malformed(),
            Some(attest_core::Malformed::Missing {
                what: "event log",
                ..
            })
        )
    });
    // Identity events after system-ready do not count: an app that extends
    // "app-id" later keeps the boot-time identity.
    let mut events =
        attest_core::eventlog::parse_json_event_log(&app.vtpm_event_log(APP_PCR).0).unwrap();
    events.push(attest_core::eventlog::LogEvent::runtime(
        APP_PCR,
        "app-id",
        &[0xee; 20],
    ));
    let regs = attest_core::eventlog::replay::<Sha256>(
        &events,
        &attest_vtpm::identity::register_set(APP_PCR),
    )
    .unwrap();
    let (mut f, _) = fields();
    f.pcrs[APP_PCR as usize].copy_from_slice(&regs[APP_PCR as usize]);
    let mut e = evidence_with(&p, &f, attest_testkit::vtpm::paravisor_report(), azure_td());
    e.event_log = attest_core::eventlog::to_json_event_log(&events);
    let id = verify(&e).await.unwrap();
    assert_eq!(id.app.app_id.0, app.app_id);
}

#[tokio::test]
async fn oversized_and_truncated_evidence_is_refused() {
    for p in BOTH {
        let base = evidence(&p, |_| {});
        let mut e = base.clone();
        e.quote.resize(128 * 1024 + 1, b' ');
        assert_refused(
            verify(&e).await,
            |e| matches!(e.malformed(), Some(attest_core::Malformed::TooLarge { what, size: 131073, max: 131072 }) if what == "vTPM evidence document"),
        );
        for cut in [0, 1, base.quote.len() / 2, base.quote.len() - 1] {
            let e = Evidence {
                quote: base.quote[..cut].to_vec(),
                ..base.clone()
            };
            assert_refused(
                verify(&e).await,
                |e| matches!(e.malformed(), Some(attest_core::Malformed::Syntax { what, .. }) if what == "vTPM evidence JSON"),
            );
        }
        // A huge variable_data_size in a forged HCL report.
        let mut d = doc(&base);
        let mut hcl = hcl_of(&d);
        hcl[0x4D0..0x4D4].copy_from_slice(&u32::MAX.to_le_bytes());
        d["hcl_report"] = URL_SAFE_NO_PAD.encode(&hcl).into();
        assert_refused(
            verify(&with_doc(&base, &d)).await,
            |e| matches!(e.malformed(), Some(attest_core::Malformed::BadValue { what, .. }) if what == "HCL report data_size"),
        );
    }
}

#[tokio::test]
async fn expired_collateral_and_certificates_are_refused() {
    // TDX collateral is valid for 30 days from NOW - 1 day.
    let e = evidence(&AZ_TDX_VTPM, |_| {});
    let late = VerifyContext::new(rd(), UnixTime(NOW + 40 * 86_400));
    assert_eq!(
        world().tdx.verify(&e, &late).await.unwrap_err().kind(),
        ErrorKind::CollateralExpired
    );
    // The fake AMD certificates end in 2049.
    let e = evidence(&AZ_SNP_VTPM, |_| {});
    let late = VerifyContext::new(rd(), UnixTime(2_600_000_000));
    assert_eq!(
        world().snp.verify(&e, &late).await.unwrap_err().kind(),
        ErrorKind::UntrustedChain
    );
}

#[tokio::test]
async fn offline_nonce_modes() {
    let e = evidence(&AZ_SNP_VTPM, |_| {});
    let p = &world().snp;
    let offline = VerifyContext::without_report_data(UnixTime(NOW));
    let n = Sha256::digest(rd().0).to_vec();
    p.verify_offline(&e, &offline, Nonce::Exact(&n))
        .await
        .unwrap();
    p.verify_offline(&e, &offline, Nonce::Kms).await.unwrap();
    p.verify_offline(&e, &offline, Nonce::Unchecked)
        .await
        .unwrap();
    assert_refused(
        p.verify_offline(&e, &offline, Nonce::Exact(&n[..31])).await,
        binding_mismatch,
    );
    let id = p
        .verify_offline(&e, &ctx(), Nonce::Unchecked)
        .await
        .unwrap()
        .to_json();
    assert_eq!(id["report_data_checked"], true);
    assert_eq!(id["app"]["app_id"], hex::encode(App::example().app_id));
}

/// The claims, the AK and so every PCR are trusted only because the
/// hardware report binds them, which means something only when the report
/// comes from Azure's paravisor: a plain SEV-SNP guest (its own kernel at
/// VMPL 0) or any TD can bind claims naming an AK of its own. Evidence from
/// a launch measurement that is not a pinned paravisor's is refused.
#[tokio::test]
async fn hardware_reports_from_anything_but_a_pinned_paravisor_are_refused() {
    let (f, _) = fields();
    let plain_snp_vm = attest_testkit::snp::ReportFields {
        measurement: [0xa7; 48],
        ..attest_testkit::vtpm::paravisor_report()
    };
    let e = evidence_with(&AZ_SNP_VTPM, &f, plain_snp_vm, azure_td());
    assert_refused(verify(&e).await, |e| {
        *e == attest_core::AttestError::Insecure(attest_core::Insecure::UnpinnedLayer {
            platform: "az-snp-vtpm".into(),
            register: "measurement",
            found: "a7".repeat(48),
        })
    });
    // A TD with another MRTD, and a TD (even with the paravisor's MRTD)
    // that extended an RTMR: other code ran.
    let other_td = TdFields {
        mrtd: [0x4d; 48],
        ..azure_td()
    };
    let e = evidence_with(
        &AZ_TDX_VTPM,
        &f,
        attest_testkit::vtpm::paravisor_report(),
        other_td,
    );
    assert_refused(verify(&e).await, |e| {
        *e == attest_core::AttestError::Insecure(attest_core::Insecure::UnpinnedLayer {
            platform: "az-tdx-vtpm".into(),
            register: "mrtd",
            found: "4d".repeat(48),
        })
    });
    let mut extended = azure_td();
    extended.rtmrs[3] = [0x33; 48];
    let e = evidence_with(
        &AZ_TDX_VTPM,
        &f,
        attest_testkit::vtpm::paravisor_report(),
        extended,
    );
    assert_refused(verify(&e).await, |e| {
        *e == attest_core::AttestError::Insecure(attest_core::Insecure::LayerRegisterExtended {
            platform: "az-tdx-vtpm".into(),
            register: "rtmr3",
        })
    });
}

/// With no paravisor pinned, the KMS path refuses every piece of evidence
/// (fail closed); offline verification still verifies and reports that no
/// pin was checked.
#[tokio::test]
async fn without_a_pinned_paravisor_the_kms_refuses_all_evidence() {
    let w = world();
    let unpinned = AzVtpm::snp(
        snp_verifier(&w.amd, SnpConfig::default()),
        VtpmConfig {
            app_pcr: APP_PCR,
            ..Default::default()
        },
    )
    .unwrap();
    let e = evidence(&AZ_SNP_VTPM, |_| {});
    assert_refused(unpinned.verify(&e, &ctx()).await, |e| {
        *e == attest_core::AttestError::Insecure(attest_core::Insecure::NoLayerPinned {
            platform: "az-snp-vtpm".into(),
            tee: "SEV-SNP",
        })
    });
    let offline = unpinned
        .verify_offline(&e, &ctx(), attest_vtpm::Nonce::Kms)
        .await;
    assert_refused(offline, |e| {
        matches!(
            e,
            attest_core::AttestError::Insecure(attest_core::Insecure::NoLayerPinned { .. })
        )
    });
    let id = unpinned
        .verify_offline(&e, &ctx(), attest_vtpm::Nonce::Unchecked)
        .await
        .unwrap()
        .to_json();
    assert_eq!(id["platform_claims"]["vtpm"]["paravisor_pinned"], false);
    // Pinned: reported true.
    let id = verify(&e).await.unwrap().to_json();
    assert_eq!(id["platform_claims"]["vtpm"]["paravisor_pinned"], true);
    // A pin of the wrong size is a configuration error.
    let bad = VtpmConfig {
        app_pcr: APP_PCR,
        paravisors: vec![attest_core::HexBytes(vec![0; 32])],
    };
    assert!(matches!(
        malformed_detail(bad.validate()),
        attest_core::Malformed::BadLength {
            expected: 48,
            found: 32,
            ..
        }
    ));
}
