//! Quotes signed by the testkit's fake Intel PKI: accepted only by a
//! verifier configured with that fake root, and every rejection case.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use attest_core::{
    AttestError, Attestation, ErrorKind, Evidence, Insecure, PlatformId, ReportData, Revoked,
    TcbStatus, UnixTime, UntrustedChain, VerifyContext,
};
use attest_tdx::collateral::StaticCollateral;
use attest_tdx::{Collateral, TdxVerifier};
use attest_testkit::dstack::App;
use attest_testkit::tdx::{CollateralOptions, FakeIntelPki, PlatformTcb, TdFields};
use sha2::{Digest, Sha256};

const ISSUED: i64 = 1_750_000_000;
const NOW: u64 = 1_751_000_000;

struct Case {
    pki: FakeIntelPki,
    app: App,
    td: TdFields,
    log: Vec<u8>,
}

fn case() -> Case {
    let pki = FakeIntelPki::new();
    let app = App::example();
    let (log, rtmr3) = app.tdx_event_log();
    // Boot registers that replay from no boot events are zero; the JSON
    // log here only carries the runtime events.
    let td = TdFields {
        rtmrs: [[0; 48], [0; 48], [0; 48], rtmr3],
        report_data: [0x42; 64],
        ..Default::default()
    };
    Case { pki, app, td, log }
}

fn verifier(pki: &FakeIntelPki, o: &CollateralOptions) -> TdxVerifier {
    let c = Collateral::new(pki.collateral(o)).unwrap();
    TdxVerifier::with_root(pki.root_der(), Arc::new(StaticCollateral(Arc::new(c)))).unwrap()
}

fn evidence(quote: Vec<u8>, log: &[u8]) -> Evidence {
    let mut e = Evidence::new(PlatformId::TDX, quote);
    e.event_log = log.to_vec();
    e
}

fn ctx(c: &Case) -> VerifyContext {
    VerifyContext::new(ReportData(c.td.report_data), UnixTime(NOW))
}

#[tokio::test]
async fn fake_pki_quote_verifies_with_the_fake_root() {
    let c = case();
    let v = verifier(&c.pki, &CollateralOptions::valid_from(ISSUED));
    let id = v
        .verify(&evidence(c.pki.quote(&c.td), &c.log), &ctx(&c))
        .await
        .unwrap();
    assert_eq!(id.platform, PlatformId::TDX);
    assert_eq!(id.app.app_id.0, c.app.app_id);
    assert_eq!(id.app.compose_hash.0, c.app.compose_hash);
    assert_eq!(id.app.instance_id.unwrap().0, c.app.instance_id.unwrap());
    assert_eq!(id.app.key_provider.as_ref().unwrap().name, "kms");
    assert_eq!(id.tcb.status, TcbStatus::UpToDate);
    assert!(id.report_data_checked);
    assert!(!id.debug);
    assert_eq!(
        id.device_id.unwrap().0,
        <[u8; 32]>::from(Sha256::digest(attest_testkit::tdx::PPID))
    );
    let j = id.to_json();
    assert_eq!(j["boot"]["mrtd"], hex::encode(c.td.mrtd));
    assert_eq!(j["boot"]["rtmr3"], hex::encode(c.td.rtmrs[3]));
    assert_eq!(j["boot"]["tee_tcb_svn"], hex::encode(c.td.tee_tcb_svn));
    assert_eq!(j["boot"]["td_attributes"], "0000001000000000");
    assert_eq!(j["boot"]["boot_digest"].as_str().unwrap().len(), 96);
    assert_eq!(j["platform_claims"]["tdx"]["fmspc"], "00906ED50000");
    assert_eq!(j["platform_claims"]["tdx"]["pck_ca"], "platform");
    assert_eq!(j["platform_claims"]["dstack"]["tee_variant"], "dstack-tdx");
    assert_eq!(j["tcb"]["tcb_date"], "2024-05-11T15:06:40Z");
}

#[tokio::test]
async fn the_production_verifier_rejects_fake_pki_quotes() {
    let c = case();
    let collateral =
        Collateral::new(c.pki.collateral(&CollateralOptions::valid_from(ISSUED))).unwrap();
    let prod = TdxVerifier::new(Arc::new(StaticCollateral(Arc::new(collateral)))).unwrap();
    let err = prod
        .verify(&evidence(c.pki.quote(&c.td), &c.log), &ctx(&c))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::UntrustedChain | ErrorKind::BadSignature
        ),
        "{err}"
    );
}

#[tokio::test]
async fn debug_td_is_rejected() {
    let c = case();
    let v = verifier(&c.pki, &CollateralOptions::valid_from(ISSUED));
    let td = c.td.clone().debug();
    let err = v
        .verify(&evidence(c.pki.quote(&td), &c.log), &ctx(&c))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AttestError::Insecure(Insecure::Debug { .. })),
        "{err}"
    );
    // Offline inspection says so too (it verifies nothing).
    let seen = attest_tdx::inspect(&c.pki.quote(&td), None).unwrap();
    assert!(seen.debug);
    assert!(
        !attest_tdx::inspect(&c.pki.quote(&c.td), None)
            .unwrap()
            .debug
    );
}

/// A quote of exactly 64 KiB is read (and refused for what it is, not its
/// size); one byte more is refused unread (`real_vectors.rs`).
#[tokio::test]
async fn quotes_are_read_up_to_64_kib() {
    let c = case();
    let v = verifier(&c.pki, &CollateralOptions::valid_from(ISSUED));
    let err = v
        .verify_quote(&vec![0; attest_tdx::MAX_QUOTE_LEN], UnixTime(NOW))
        .await
        .err()
        .unwrap();
    assert!(
        !matches!(
            err.malformed(),
            Some(attest_core::Malformed::TooLarge { .. })
        ),
        "{err}"
    );
    assert_eq!(attest_tdx::MAX_QUOTE_LEN, 64 * 1024);
}

/// Event logs up to 2 MiB are read; a larger one is refused before the
/// quote is looked at.
#[tokio::test]
async fn event_logs_are_read_up_to_two_mebibytes() {
    let c = case();
    let v = verifier(&c.pki, &CollateralOptions::valid_from(ISSUED));
    let quote = c.pki.quote(&c.td);
    let most = vec![b' '; 2 * 1024 * 1024];
    let err = v
        .verify(&evidence(quote.clone(), &most), &ctx(&c))
        .await
        .unwrap_err();
    assert!(
        !matches!(
            err.malformed(),
            Some(attest_core::Malformed::TooLarge { .. })
        ),
        "{err}"
    );
    let over = vec![b' '; 2 * 1024 * 1024 + 1];
    let err = v
        .verify(&evidence(Vec::new(), &over), &ctx(&c))
        .await
        .unwrap_err();
    assert_eq!(
        err.malformed(),
        Some(&attest_core::Malformed::TooLarge {
            what: "event log".into(),
            size: 2 * 1024 * 1024 + 1,
            max: 2 * 1024 * 1024,
        })
    );
}

#[tokio::test]
async fn wrong_report_data_is_rejected() {
    let c = case();
    let v = verifier(&c.pki, &CollateralOptions::valid_from(ISSUED));
    let other = VerifyContext::new(ReportData([0x43; 64]), UnixTime(NOW));
    let err = v
        .verify(&evidence(c.pki.quote(&c.td), &c.log), &other)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BindingMismatch);
}

#[tokio::test]
async fn wrong_rtmr3_is_an_identity_mismatch() {
    let c = case();
    let v = verifier(&c.pki, &CollateralOptions::valid_from(ISSUED));
    // The log of another app against this quote.
    let mut other = App::example();
    other.compose_hash[0] ^= 1;
    let (other_log, other_rtmr3) = other.tdx_event_log();
    let err = v
        .verify(&evidence(c.pki.quote(&c.td), &other_log), &ctx(&c))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AttestError::identity_mismatch("rtmr3", &c.td.rtmrs[3], &other_rtmr3)
    );
    // No log at all: no app identity.
    let err = v
        .verify(&evidence(c.pki.quote(&c.td), b""), &ctx(&c))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Malformed);
}

#[tokio::test]
async fn revoked_pck_is_rejected() {
    let c = case();
    let mut o = CollateralOptions::valid_from(ISSUED);
    o.revoke_pck = true;
    let err = verifier(&c.pki, &o)
        .verify(&evidence(c.pki.quote(&c.td), &c.log), &ctx(&c))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AttestError::Revoked(Revoked::Certificate { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn revoked_tcb_is_rejected() {
    let c = case();
    let mut o = CollateralOptions::valid_from(ISSUED);
    o.tcb = PlatformTcb::Revoked;
    let err = verifier(&c.pki, &o)
        .verify(&evidence(c.pki.quote(&c.td), &c.log), &ctx(&c))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AttestError::Revoked(Revoked::Tcb { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn expired_and_future_collateral_is_rejected() {
    let c = case();
    let v = verifier(&c.pki, &CollateralOptions::valid_from(ISSUED));
    let e = evidence(c.pki.quote(&c.td), &c.log);
    let next = ISSUED as u64 + 30 * 86_400;
    assert!(
        v.verify(
            &e,
            &VerifyContext::new(ReportData(c.td.report_data), UnixTime(next - 1))
        )
        .await
        .is_ok()
    );
    for t in [next + 1, ISSUED as u64 - 1] {
        let err = v
            .verify(
                &e,
                &VerifyContext::new(ReportData(c.td.report_data), UnixTime(t)),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CollateralExpired, "at {t}: {err}");
    }
}

/// A PCK chain checked once is remembered, but only inside its own
/// validity: past the certificates' notAfter (or before notBefore) the
/// chain is judged again and refused as such, before any collateral.
#[tokio::test]
async fn a_remembered_pck_chain_counts_only_inside_its_validity() {
    let c = case();
    let v = verifier(&c.pki, &CollateralOptions::valid_from(ISSUED));
    let e = evidence(c.pki.quote(&c.td), &c.log);
    assert!(v.verify(&e, &ctx(&c)).await.is_ok());
    // The testkit's certificates: 2020-01-01 .. 2050-01-01.
    for t in [1_577_836_800 - 1, 2_524_521_600 + 1] {
        let err = v
            .verify(
                &e,
                &VerifyContext::new(ReportData(c.td.report_data), UnixTime(t)),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                &err,
                AttestError::UntrustedChain(UntrustedChain::OutsideValidity { now, .. }) if *now == t
            ),
            "at {t}: {err:?}"
        );
    }
}

#[tokio::test]
async fn out_of_date_platform_is_reported_with_the_recovery_date() {
    let c = case();
    let mut o = CollateralOptions::valid_from(ISSUED);
    o.tcb = PlatformTcb::OutOfDate;
    o.advisory_ids = vec!["INTEL-SA-00999".into()];
    let id = verifier(&c.pki, &o)
        .verify(&evidence(c.pki.quote(&c.td), &c.log), &ctx(&c))
        .await
        .unwrap();
    assert_eq!(id.tcb.status, TcbStatus::OutOfDate);
    assert_eq!(id.tcb.advisory_ids, ["INTEL-SA-00999"]);
    // The platform's own level is dated 400 days back; it was superseded
    // by the newer level 10 days back, which is what a grace period counts
    // from.
    assert_eq!(
        id.tcb.tcb_date.unwrap().unix_timestamp(),
        ISSUED - 400 * 86_400
    );
    assert_eq!(
        id.tcb.out_of_date_since.unwrap().unix_timestamp(),
        ISSUED - 10 * 86_400
    );
    assert_eq!(
        id.to_json()["tcb"]["out_of_date_since"],
        "2025-06-05T15:06:40Z"
    );
}

#[tokio::test]
async fn non_intel_tdx_module_is_rejected() {
    let c = case();
    let v = verifier(&c.pki, &CollateralOptions::valid_from(ISSUED));
    let mut td = c.td.clone();
    td.mr_signer_seam = [0x11; 48];
    let err = v
        .verify(&evidence(c.pki.quote(&td), &c.log), &ctx(&c))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttestError::Insecure(Insecure::ForeignTdxModule { .. })
        ),
        "{err}"
    );
}

#[tokio::test]
async fn tampered_quote_is_rejected() {
    let c = case();
    let v = verifier(&c.pki, &CollateralOptions::valid_from(ISSUED));
    let mut q = c.pki.quote(&c.td);
    q[48 + 136] ^= 1; // MRTD
    let err = v.verify(&evidence(q, &c.log), &ctx(&c)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadSignature, "{err}");
    // Evidence for another platform is not this plug-in's.
    let mut e = evidence(c.pki.quote(&c.td), &c.log);
    e.platform = PlatformId::SEV_SNP;
    assert_eq!(
        v.verify(&e, &ctx(&c)).await.unwrap_err().kind(),
        ErrorKind::UnsupportedPlatform
    );
}

/// The first security review's critical finding, end to end: an app on an
/// approved image extends RTMR3 (after `system-ready`) with runtime events
/// naming a victim app, then sends a log in which its own identity events
/// and `system-ready` are re-typed (another event type, their real digests
/// stated). RTMR3 replays to the quoted value, so before the fix the
/// identity came from the victim's events and the KMS released its keys.
#[tokio::test]
async fn retyped_identity_events_cannot_claim_another_app() {
    use attest_core::eventlog::{
        LogEvent, RuntimeEventVersion, runtime_event_digest, to_json_event_log,
    };
    let c = case();
    let victim = App {
        app_id: [0x77; 20],
        compose_hash: [0x88; 32],
        ..App::example()
    };
    // What the TD really extended: its own boot events, then, after
    // system-ready, the victim's identity as app events.
    let mut extended = c.app.runtime_events();
    extended.extend([
        LogEvent::runtime(3, "app-id", &victim.app_id),
        LogEvent::runtime(3, "compose-hash", &victim.compose_hash),
    ]);
    let (_, rtmr3) = attest_testkit::dstack::events_to_json(&extended);
    // The log it sends: every event before the victim's re-typed, with the
    // digest it really extended.
    let n_own = c.app.runtime_events().len();
    let forged: Vec<LogEvent> = extended
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let r = e.as_runtime().unwrap();
            if i < n_own {
                let d = runtime_event_digest::<sha2::Sha384>(
                    &r.name,
                    &r.payload,
                    RuntimeEventVersion::V1,
                );
                LogEvent::boot(3, 0x0800_0002, d.to_vec(), r.name.clone().into_bytes())
            } else {
                e.clone()
            }
        })
        .collect();
    let td = TdFields {
        rtmrs: [[0; 48], [0; 48], [0; 48], rtmr3],
        ..c.td.clone()
    };
    let v = verifier(&c.pki, &CollateralOptions::valid_from(ISSUED));
    let err = v
        .verify(
            &evidence(c.pki.quote(&td), &to_json_event_log(&forged)),
            &ctx(&c),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.malformed(),
            Some(attest_core::Malformed::Unexpected {
                what: attest_core::eventlog::BOOT_EVENT_ON_APP_REGISTER,
                ..
            })
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("extends rtmr3, which only dstack runtime events"),
        "{err}"
    );

    // The honest log of the same TD verifies, with its own identity: the
    // victim's events after system-ready do not count.
    let id = v
        .verify(
            &evidence(c.pki.quote(&td), &to_json_event_log(&extended)),
            &ctx(&c),
        )
        .await
        .unwrap();
    assert_eq!(id.app.app_id.0, c.app.app_id);
    assert_eq!(id.app.compose_hash.0, c.app.compose_hash);
}

/// A second identity event before `system-ready` is ambiguous: refused.
#[tokio::test]
async fn duplicate_identity_events_before_system_ready_are_refused() {
    use attest_core::eventlog::{LogEvent, to_json_event_log};
    let c = case();
    for name in ["app-id", "compose-hash", "instance-id", "key-provider"] {
        let mut events = c.app.runtime_events();
        let pos = events
            .iter()
            .position(|e| e.as_runtime().is_some_and(|r| r.name == name))
            .unwrap();
        let dup: LogEvent = events[pos].clone();
        events.insert(pos + 1, dup);
        let (_, rtmr3) = attest_testkit::dstack::events_to_json(&events);
        let td = TdFields {
            rtmrs: [[0; 48], [0; 48], [0; 48], rtmr3],
            ..c.td.clone()
        };
        let v = verifier(&c.pki, &CollateralOptions::valid_from(ISSUED));
        let err = v
            .verify(
                &evidence(c.pki.quote(&td), &to_json_event_log(&events)),
                &ctx(&c),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.malformed(),
            Some(&attest_core::Malformed::Unexpected {
                what: name,
                detail: format!("runtime event {name:?} appears twice before \"system-ready\""),
            }),
        );
    }
}

/// The check a set must pass to enter the cache: every signature to the
/// pinned root, the window around the check's time. Each part tampered
/// with is refused.
#[test]
fn collateral_is_verified_part_by_part_before_caching() {
    let pki = FakeIntelPki::new();
    let good = pki.collateral(&CollateralOptions::valid_from(ISSUED));
    let root = pki.root_der();
    let now = UnixTime(NOW);
    Collateral::new(good.clone())
        .unwrap()
        .verify(&root, now)
        .unwrap();
    // Another root: nothing verifies.
    let err = Collateral::new(good.clone())
        .unwrap()
        .verify(attest_tdx::INTEL_ROOT_CA_DER, now)
        .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::UntrustedChain | ErrorKind::BadSignature
        ),
        "{err}"
    );
    // Outside the window.
    for t in [ISSUED as u64 - 1, ISSUED as u64 + 30 * 86_400] {
        let err = Collateral::new(good.clone())
            .unwrap()
            .verify(&root, UnixTime(t))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CollateralExpired, "{t}: {err}");
    }
    type Tamper = Box<dyn Fn(&mut attest_tdx::collateral::QuoteCollateralV3)>;
    let tampered: Vec<(&str, Tamper)> = vec![
        (
            "tcb_info",
            Box::new(|c| c.tcb_info = c.tcb_info.replace("\"version\":3", "\"version\":3 ")),
        ),
        (
            "tcb_info_signature",
            Box::new(|c| c.tcb_info_signature[3] ^= 1),
        ),
        (
            "qe_identity",
            Box::new(|c| c.qe_identity = c.qe_identity.replace("\"version\":2", "\"version\":2 ")),
        ),
        (
            "qe_identity_signature",
            Box::new(|c| c.qe_identity_signature[40] ^= 1),
        ),
        (
            "pck_crl",
            Box::new(|c| {
                let n = c.pck_crl.len();
                c.pck_crl[n - 5] ^= 1
            }),
        ),
        (
            "root_ca_crl",
            Box::new(|c| {
                let n = c.root_ca_crl.len();
                c.root_ca_crl[n - 5] ^= 1
            }),
        ),
    ];
    for (what, f) in tampered {
        let mut c = good.clone();
        f(&mut c);
        let r = Collateral::new(c).and_then(|c| c.verify(&root, now));
        let err = r.expect_err(what);
        assert!(
            matches!(err.kind(), ErrorKind::BadSignature | ErrorKind::Malformed),
            "{what}: {err}"
        );
    }
    // Another PKI's signer chain swapped in.
    let other = FakeIntelPki::new().collateral(&CollateralOptions::valid_from(ISSUED));
    let mut c = good.clone();
    c.tcb_info_issuer_chain = other.tcb_info_issuer_chain;
    let err = Collateral::new(c).unwrap().verify(&root, now).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UntrustedChain, "{err}");
}

/// dstack's stripped log (runtime events only, on RTMR3) against a quote
/// whose RTMR0..2 are not zero: checked against RTMR3 alone; MRTD and
/// RTMR0..2 come from the quote.
#[tokio::test]
async fn a_stripped_log_is_checked_against_rtmr3_only() {
    let c = case();
    let td = TdFields {
        rtmrs: [[0x01; 48], [0x02; 48], [0x03; 48], c.td.rtmrs[3]],
        ..c.td.clone()
    };
    let v = verifier(&c.pki, &CollateralOptions::valid_from(ISSUED));
    let id = v
        .verify(&evidence(c.pki.quote(&td), &c.log), &ctx(&c))
        .await
        .unwrap();
    assert_eq!(id.app.app_id.0, c.app.app_id);
    let j = id.to_json();
    assert_eq!(j["boot"]["rtmr0"], hex::encode([0x01; 48]));
    assert_eq!(j["boot"]["rtmr2"], hex::encode([0x03; 48]));
    assert_eq!(
        j["platform_claims"]["tdx"]["replayed_registers"],
        serde_json::json!(["rtmr3"])
    );

    // A tampered runtime event (its payload changed) no longer replays.
    let mut events = c.app.runtime_events();
    events[2] = attest_core::eventlog::LogEvent::runtime(3, "compose-hash", &[0xee; 32]);
    let err = v
        .verify(
            &evidence(
                c.pki.quote(&td),
                &attest_core::eventlog::to_json_event_log(&events),
            ),
            &ctx(&c),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AttestError::IdentityMismatch { what, .. } if what == "rtmr3"),
        "{err}"
    );
}

/// A log with any boot event is a full log: all four registers replay.
#[tokio::test]
async fn a_full_log_replays_all_four_registers() {
    use attest_core::eventlog::{LogEvent, to_json_event_log};
    use sha2::Sha384;
    let c = case();
    let boot = LogEvent::boot(1, 0x8000_0003, vec![0x11; 48], b"kernel".to_vec());
    let mut events = vec![boot];
    events.extend(c.app.runtime_events());
    let log = to_json_event_log(&events);
    let rtmr1: [u8; 48] = Sha384::new()
        .chain_update([0u8; 48])
        .chain_update([0x11; 48])
        .finalize()
        .into();
    let v = verifier(&c.pki, &CollateralOptions::valid_from(ISSUED));
    // The quote's RTMR1 is what the boot event extends: verifies.
    let good = TdFields {
        rtmrs: [[0; 48], rtmr1, [0; 48], c.td.rtmrs[3]],
        ..c.td.clone()
    };
    let id = v
        .verify(&evidence(c.pki.quote(&good), &log), &ctx(&c))
        .await
        .unwrap();
    assert_eq!(
        id.to_json()["platform_claims"]["tdx"]["replayed_registers"],
        serde_json::json!(["rtmr0", "rtmr1", "rtmr2", "rtmr3"])
    );
    // RTMR0 in the quote is not what the (full) log replays to.
    let bad = TdFields {
        rtmrs: [[0x01; 48], rtmr1, [0; 48], c.td.rtmrs[3]],
        ..c.td.clone()
    };
    let err = v
        .verify(&evidence(c.pki.quote(&bad), &log), &ctx(&c))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AttestError::IdentityMismatch { what, .. } if what == "rtmr0"),
        "{err}"
    );
}

/// V2 runtime events (JCS digests) replay with no preimage in the log, and
/// dstack's boot-time aggregates stop at `boot-mr-done`.
#[tokio::test]
async fn v2_events_replay_without_preimages_and_boot_time_aggregates_stop_at_boot_mr_done() {
    use attest_core::eventlog::{EventBody, RuntimeEventVersion, to_json_event_log};
    let c = case();
    let mut events = c.app.runtime_events();
    for e in &mut events {
        if let EventBody::Runtime(r) = &mut e.body {
            r.version = RuntimeEventVersion::V2;
        }
    }
    let (_, rtmr3) = attest_testkit::dstack::events_to_json(&events);
    assert_ne!(rtmr3, c.td.rtmrs[3], "V2 digests differ from V1");
    let boot_len = events
        .iter()
        .position(|e| e.as_runtime().unwrap().name == "boot-mr-done")
        .unwrap()
        + 1;
    let (_, boot_rtmr3) = attest_testkit::dstack::events_to_json(&events[..boot_len]);
    let td = TdFields {
        rtmrs: [[0; 48], [0; 48], [0; 48], rtmr3],
        ..c.td.clone()
    };
    let log = to_json_event_log(&events);
    assert!(!String::from_utf8_lossy(&log).contains("preimage"));
    let v = verifier(&c.pki, &CollateralOptions::valid_from(ISSUED));
    let id = v
        .verify(&evidence(c.pki.quote(&td), &log), &ctx(&c))
        .await
        .unwrap();
    assert_eq!(id.app.app_id.0, c.app.app_id);
    let j = id.to_json();
    let d = &j["platform_claims"]["dstack"];
    let agg = |rtmr3: &[u8]| {
        let mut h = Sha256::new();
        for p in [&td.mrtd[..], &[0; 48], &[0; 48], &[0; 48], rtmr3] {
            h.update(p);
        }
        hex::encode(h.finalize())
    };
    assert_eq!(d["mr_aggregated"], agg(&rtmr3));
    assert_eq!(d["boot_time"]["mr_aggregated"], agg(&boot_rtmr3));
    let sys = {
        let mut h = Sha256::new();
        for p in [&td.mrtd[..], &[0; 48], &[0; 48], &[0; 48], &[0; 32]] {
            h.update(p);
        }
        hex::encode(h.finalize())
    };
    assert_eq!(d["boot_time"]["mr_system"], sys);
    assert_ne!(d["mr_system"], sys, "the full view hashes the key provider");
}

/// The plug-in names its platform (the registry dispatches on it).
#[test]
fn the_plugin_is_tdx() {
    use attest_core::Attestation;
    let c = case();
    let v = verifier(&c.pki, &CollateralOptions::valid_from(ISSUED));
    assert_eq!(v.platform(), PlatformId::TDX);
    assert_eq!(v.image_registers(), &["mrtd", "rtmr0", "rtmr1", "rtmr2"]);
}

/// The root CA CRL listing the PCK Platform CA: the collateral set is
/// refused before it is cached, and so is every quote under that CA.
#[tokio::test]
async fn a_pck_ca_on_the_root_crl_is_revoked() {
    let c = case();
    // A root CA CRL listing another serial revokes nothing here.
    let other = CollateralOptions {
        root_crl_serials: vec![vec![0x10, 0x77]],
        ..CollateralOptions::valid_from(ISSUED)
    };
    Collateral::new(c.pki.collateral(&other))
        .unwrap()
        .verify(&c.pki.root_der(), UnixTime(NOW))
        .unwrap();
    verifier(&c.pki, &other)
        .verify(&evidence(c.pki.quote(&c.td), &c.log), &ctx(&c))
        .await
        .unwrap();
    let o = CollateralOptions {
        root_crl_serials: vec![attest_testkit::tdx::PCK_CA_SERIAL.to_vec()],
        ..CollateralOptions::valid_from(ISSUED)
    };
    let set = Collateral::new(c.pki.collateral(&o)).unwrap();
    let err = set.verify(&c.pki.root_der(), UnixTime(NOW)).unwrap_err();
    assert!(
        matches!(
            err,
            AttestError::Revoked(attest_core::Revoked::Certificate { .. })
        ),
        "{err}"
    );
    let err = verifier(&c.pki, &o)
        .verify(&evidence(c.pki.quote(&c.td), &c.log), &ctx(&c))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), attest_core::ErrorKind::Revoked, "{err}");
}

/// A genuine set is only for the platform it names: TDX TCB info of
/// version 3 or later.
#[test]
fn collateral_must_be_tdx_tcb_info_of_version_3() {
    let c = case();
    let set = Collateral::new(c.pki.collateral(&CollateralOptions::valid_from(ISSUED))).unwrap();
    let key = attest_tdx::collateral::CollateralKey {
        fmspc: set.fmspc,
        ca: set.pck_crl_ca,
    };
    set.check_for(&key).unwrap();
    for (id, version) in [("SGX", 3), ("TDX", 2)] {
        let mut wrong = set.clone();
        let info = std::sync::Arc::make_mut(&mut wrong.tcb_info);
        info.id = id.into();
        info.version = version;
        assert!(
            matches!(
                wrong.check_for(&key).unwrap_err(),
                AttestError::CollateralMissing(attest_core::CollateralMissing::WrongSet { .. })
            ),
            "{id} v{version}"
        );
    }
}
