//! The one release path (`service::release`), driven directly with the
//! testkit's evidence: what each purpose writes to the audit log, the
//! outcome every refusal is counted under, the rate limit on audit records
//! of unverified evidence, and that a release that cannot be recorded does
//! not happen. (The end-to-end tests in `tests/` drive the same code over
//! gRPC; these run in the kms package, so mutation testing of it sees them.)
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::sync::Arc;

use attest_core::{AttestError, Evidence, PlatformId, ReportData, Unavailable, UnixTime};
use attest_testkit::dstack::App;
use kms::demo::{self, Pkis};
use kms::platforms::Platforms;
use kms::service::KmsState;
use kms::service::keys::RootKeys;
use kms::service::release::{self, FrontEnd, Purpose, Refusal};

struct Kms {
    _dir: tempfile::TempDir,
    audit_path: std::path::PathBuf,
    state: Arc<KmsState>,
    pkis: Pkis,
    app: App,
}

fn kms_with(extra: &str) -> Kms {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    std::fs::write(dir.path().join("policy.toml"), demo::policy(&app)).unwrap();
    std::fs::write(dir.path().join("images.toml"), demo::registry()).unwrap();
    let config = demo::toml_config_with(dir.path(), extra).unwrap();
    let (keys, _) = RootKeys::load_or_generate(&dir.path().join("data")).unwrap();
    let platforms = Platforms {
        verifiers: pkis.verifiers(),
        collateral_cache: None,
    };
    let state = KmsState::from_config(&config, dir.path(), keys, platforms).unwrap();
    let audit_path = dir.path().join("data").join(&config.audit_log);
    Kms {
        _dir: dir,
        audit_path,
        state,
        pkis,
        app,
    }
}

fn kms() -> Kms {
    kms_with("")
}

fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn rd(byte: u8) -> ReportData {
    ReportData([byte; 64])
}

fn metric(state: &KmsState, platform: &str, outcome: &str) -> u64 {
    let page = state.render_metrics();
    let prefix =
        format!("kms_get_app_key_requests_total{{platform=\"{platform}\",outcome=\"{outcome}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.parse().unwrap())
}

fn now() -> u64 {
    UnixTime::now().as_secs()
}

#[tokio::test]
async fn each_purpose_is_released_and_recorded_under_its_own_name() {
    let k = kms();
    let e = k.pkis.tdx_evidence(&k.app, rd(1), false);
    let before = now();
    for (purpose, name) in [
        (Purpose::AppKeys, "app_keys"),
        (Purpose::AppCertificate, "app_certificate"),
    ] {
        assert_eq!(purpose.as_str(), name);
        let r = release::release_for(&k.state, FrontEnd::KMS_V1, purpose, &e, rd(1))
            .await
            .unwrap_or_else(|r| panic!("{name}: {r}"));
        assert_eq!(r.identity.app.app_id.0, k.app.app_id);
        assert!(r.decision.allow);
    }
    let (id, decision) = release::appraise(&k.state, FrontEnd::DSTACK, &e, rd(1))
        .await
        .unwrap();
    assert!(decision.allow);
    assert_eq!(id.app.app_id.0, k.app.app_id);
    assert_eq!(Purpose::Attestation.as_str(), "attestation");

    let kms_app = demo::kms_app();
    let replica = k.pkis.tdx_evidence(&kms_app, rd(2), false);
    let id = release::release_root_keys(&k.state, FrontEnd::KMS_V1, &replica, rd(2))
        .await
        .unwrap();
    assert_eq!(id.app.app_id.0, kms_app.app_id);
    assert_eq!(Purpose::RootKeys.as_str(), "root_keys");
    let after = now();

    let recs = records(&k.audit_path);
    let got: Vec<(&str, &str, &str, &str)> = recs
        .iter()
        .map(|r| {
            (
                r["front_end"].as_str().unwrap(),
                r["purpose"].as_str().unwrap(),
                r["decision"].as_str().unwrap(),
                r["platform"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("kms.v1", "app_keys", "allow", "tdx"),
            ("kms.v1", "app_certificate", "allow", "tdx"),
            ("dstack", "attestation", "allow", "tdx"),
            ("kms.v1", "root_keys", "allow", "tdx"),
        ]
    );
    for r in &recs {
        let t = r["time"].as_u64().unwrap();
        assert!(
            (before..=after).contains(&t),
            "{t} not in {before}..={after}"
        );
        assert_eq!(r["reasons"], serde_json::json!([]));
        assert_eq!(r["os_image_hash"], demo::OS_IMAGE);
        assert_eq!(r["tcb_status"], "UpToDate");
    }
    assert_eq!(recs[0]["app_id"], hex::encode(k.app.app_id));
    assert_eq!(recs[3]["app_id"], hex::encode(kms_app.app_id));
    assert_eq!(metric(&k.state, "tdx", "allow"), 4);
}

#[tokio::test]
async fn a_policy_denial_is_recorded_as_deny_with_its_reasons_and_counted_by_rule() {
    let k = kms();
    let stranger = App {
        app_id: [0x99; 20],
        ..App::example()
    };
    let e = k.pkis.tdx_evidence(&stranger, rd(3), false);
    let refusal = release::release_app_keys(&k.state, FrontEnd::KMS_V1, &e, rd(3))
        .await
        .err()
        .unwrap();
    let Refusal::Policy(reasons) = &refusal else {
        panic!("{refusal}");
    };
    assert!(!reasons.is_empty());
    assert_eq!(refusal.outcome(), "deny");
    assert!(
        refusal.to_string().starts_with("policy denied: "),
        "{refusal}"
    );
    // The app key role does not list it, nor does the kms role.
    let root = release::release_root_keys(&k.state, FrontEnd::KMS_V1, &e, rd(3))
        .await
        .err()
        .unwrap();
    assert!(matches!(root, Refusal::Policy(_)), "{root}");
    // An attestation result reports a denial instead of refusing.
    let (_, decision) = release::appraise(&k.state, FrontEnd::KMS_V1, &e, rd(3))
        .await
        .unwrap();
    assert!(!decision.allow);

    let recs = records(&k.audit_path);
    assert_eq!(recs.len(), 3);
    for (r, purpose) in recs.iter().zip(["app_keys", "root_keys", "attestation"]) {
        assert_eq!(r["purpose"], purpose);
        assert_eq!(r["decision"], "deny");
        assert_eq!(r["app_id"], hex::encode([0x99u8; 20]));
        assert!(!r["reasons"].as_array().unwrap().is_empty(), "{r}");
    }
    assert_eq!(
        recs[0]["reasons"],
        serde_json::json!(reasons.iter().map(ToString::to_string).collect::<Vec<_>>())
    );
    assert_eq!(metric(&k.state, "tdx", "deny"), 3);
    assert_eq!(metric(&k.state, "tdx", "allow"), 0);
    let page = k.state.render_metrics();
    for r in reasons {
        assert!(
            page.contains(&format!("kms_policy_denials_total{{rule=\"{}\"}} ", r.rule)),
            "{}\n{page}",
            r.rule
        );
    }
}

#[tokio::test]
async fn refusals_are_counted_under_the_outcome_of_their_kind() {
    let k = kms();
    // Garbage evidence: malformed.
    let garbage = Evidence::new(PlatformId::TDX, vec![0u8; 100]);
    let r = release::release_app_keys(&k.state, FrontEnd::KMS_V1, &garbage, rd(4))
        .await
        .err()
        .unwrap();
    assert_eq!(r.outcome(), "invalid", "{r}");
    assert!(r.to_string().starts_with("attestation failed: "), "{r}");
    assert_eq!(metric(&k.state, "tdx", "invalid"), 1);
    // A platform nobody registered: unsupported, counted as `other`.
    let nobody = Evidence::new(PlatformId::parse("nobody").unwrap(), vec![1, 2, 3]);
    let r = release::release_app_keys(&k.state, FrontEnd::KMS_V1, &nobody, rd(4))
        .await
        .err()
        .unwrap();
    assert_eq!(r.outcome(), "unsupported", "{r}");
    assert_eq!(metric(&k.state, "other", "unsupported"), 1);
    // A debug TD: verified evidence the platform rules refuse: deny.
    let debug = k.pkis.tdx_evidence(&k.app, rd(4), true);
    let r = release::release_app_keys(&k.state, FrontEnd::KMS_V1, &debug, rd(4))
        .await
        .err()
        .unwrap();
    assert_eq!(r.outcome(), "deny", "{r}");
    // Evidence bound to another request: deny.
    let other = k.pkis.tdx_evidence(&k.app, rd(5), false);
    let r = release::release_app_keys(&k.state, FrontEnd::KMS_V1, &other, rd(4))
        .await
        .err()
        .unwrap();
    assert_eq!(r.outcome(), "deny", "{r}");
    assert_eq!(metric(&k.state, "tdx", "deny"), 2);
    // A collateral source that did not answer: unavailable.
    let down = Refusal::Attestation(AttestError::Unavailable(Unavailable::Throttled {
        detail: "429".into(),
    }));
    assert_eq!(down.outcome(), "unavailable");
    assert_eq!(Refusal::Unavailable("x".into()).outcome(), "unavailable");
    assert_eq!(Refusal::Internal("x".into()).outcome(), "error");
    assert_eq!(
        Refusal::Internal("x".into()).to_string(),
        "internal error: x"
    );

    // Each refusal of unverified evidence is one audit record ("error",
    // no identity); the verified debug TD's names its app.
    let recs = records(&k.audit_path);
    let decisions: Vec<_> = recs
        .iter()
        .map(|r| {
            (
                r["decision"].as_str().unwrap(),
                r["platform"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("error", "tdx"),
            ("error", "other"),
            ("error", "tdx"),
            ("error", "tdx")
        ]
    );
    assert_eq!(recs[0]["app_id"], serde_json::Value::Null);
    assert_eq!(recs[0]["reasons"].as_array().unwrap().len(), 1);
    assert!(
        recs[0]["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("attestation failed: "),
        "{}",
        recs[0]
    );
}

/// Refusals of unverified evidence are recorded at most 60 a minute; the
/// next record written says how many were not.
#[tokio::test]
async fn unverified_refusals_are_rate_limited_and_summed_up() {
    let k = kms();
    let garbage = Evidence::new(PlatformId::TDX, vec![0u8; 100]);
    let started = std::time::Instant::now();
    for _ in 0..70 {
        release::release_app_keys(&k.state, FrontEnd::KMS_V1, &garbage, rd(6))
            .await
            .err()
            .unwrap();
    }
    // 60 at once, then one a second: a slow machine may record a few more.
    let slack = started.elapsed().as_secs() as usize + 1;
    let recorded = records(&k.audit_path).len();
    assert!((60..=60 + slack).contains(&recorded), "{recorded} records");
    assert!(
        records(&k.audit_path)
            .iter()
            .all(|r| r["reasons"].as_array().unwrap().len() == 1)
    );
    assert_eq!(metric(&k.state, "tdx", "invalid"), 70);
    // One token a second comes back.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    release::release_app_keys(&k.state, FrontEnd::KMS_V1, &garbage, rd(6))
        .await
        .err()
        .unwrap();
    let recs = records(&k.audit_path);
    assert_eq!(recs.len(), recorded + 1);
    let reasons = recs[recorded]["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(
        reasons[1],
        format!(
            "{} earlier refusals of unverified evidence were not recorded one by one (rate limit)",
            70 - recorded
        )
    );
    // Verified refusals are never rate-limited.
    let stranger = App {
        app_id: [0x98; 20],
        ..App::example()
    };
    let e = k.pkis.tdx_evidence(&stranger, rd(7), false);
    for _ in 0..3 {
        release::release_app_keys(&k.state, FrontEnd::KMS_V1, &e, rd(7))
            .await
            .err()
            .unwrap();
    }
    assert_eq!(records(&k.audit_path).len(), recorded + 4);
}

/// A release is recorded before the keys leave; when the record cannot be
/// written, nothing is released, on every path that releases.
#[tokio::test]
async fn nothing_is_released_that_cannot_be_recorded() {
    let k = kms_with("audit_log = \"/dev/full\"");
    let e = k.pkis.tdx_evidence(&k.app, rd(8), false);
    for purpose in [Purpose::AppKeys, Purpose::AppCertificate] {
        let r = release::release_for(&k.state, FrontEnd::KMS_V1, purpose, &e, rd(8))
            .await
            .err()
            .unwrap();
        assert!(matches!(r, Refusal::Unavailable(_)), "{r}");
        assert_eq!(r.outcome(), "unavailable");
    }
    let r = release::appraise(&k.state, FrontEnd::KMS_V1, &e, rd(8))
        .await
        .err()
        .unwrap();
    assert!(matches!(r, Refusal::Unavailable(_)), "{r}");
    let replica = k.pkis.tdx_evidence(&demo::kms_app(), rd(9), false);
    let r = release::release_root_keys(&k.state, FrontEnd::KMS_V1, &replica, rd(9))
        .await
        .err()
        .unwrap();
    assert!(matches!(r, Refusal::Unavailable(_)), "{r}");
    assert_eq!(metric(&k.state, "tdx", "unavailable"), 4);
    assert_eq!(metric(&k.state, "tdx", "allow"), 0);
    // A refusal is still refused (and counted) when it cannot be recorded.
    let garbage = Evidence::new(PlatformId::TDX, vec![0u8; 100]);
    let r = release::release_app_keys(&k.state, FrontEnd::KMS_V1, &garbage, rd(8))
        .await
        .err()
        .unwrap();
    assert_eq!(r.outcome(), "invalid");
}

/// The `kms.v1` handler stamps challenges with the wall clock: one issued
/// now expires a TTL from now (60 s by default).
#[tokio::test]
async fn challenges_expire_a_ttl_after_the_wall_clock() {
    use kms::proto::kms_server::Kms as _;
    let k = kms();
    let svc = kms::service::grpc::KmsService::new(k.state.clone());
    let before = now();
    let r = svc
        .get_challenge(tonic::Request::new(kms::proto::GetChallengeRequest {}))
        .await
        .unwrap()
        .into_inner();
    let after = now();
    assert!(
        (before + 60..=after + 60).contains(&r.expires_at),
        "{} not in {}..={}",
        r.expires_at,
        before + 60,
        after + 60
    );
    assert!(!r.challenge.is_empty());
}

/// Each refusal reaches a gRPC client as the status code of its kind.
#[tokio::test]
async fn refusals_map_to_the_grpc_code_of_their_kind() {
    use kms::service::grpc::refusal_status;
    use tonic::Code;
    let k = kms();
    let refused = |e: Evidence, rd: ReportData| {
        let state = k.state.clone();
        async move {
            release::release_app_keys(&state, FrontEnd::KMS_V1, &e, rd)
                .await
                .err()
                .unwrap()
        }
    };
    let garbage = refused(Evidence::new(PlatformId::TDX, vec![0u8; 100]), rd(1)).await;
    assert_eq!(refusal_status(&garbage).code(), Code::InvalidArgument);
    let nobody = Evidence::new(PlatformId::parse("nobody").unwrap(), vec![1]);
    assert_eq!(
        refusal_status(&refused(nobody, rd(1)).await).code(),
        Code::Unimplemented
    );
    let debug = k.pkis.tdx_evidence(&k.app, rd(1), true);
    assert_eq!(
        refusal_status(&refused(debug, rd(1)).await).code(),
        Code::PermissionDenied
    );
    let stranger = App {
        app_id: [0x97; 20],
        ..App::example()
    };
    let denied = refused(k.pkis.tdx_evidence(&stranger, rd(1), false), rd(1)).await;
    let status = refusal_status(&denied);
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().starts_with("policy denied: ") && status.message().contains(": found "),
        "{}",
        status.message()
    );
    let throttled = Refusal::Attestation(AttestError::Unavailable(Unavailable::Throttled {
        detail: "429".into(),
    }));
    assert_eq!(refusal_status(&throttled).code(), Code::Unavailable);
    assert_eq!(
        refusal_status(&Refusal::Unavailable("audit".into())).code(),
        Code::Unavailable
    );
    assert_eq!(
        refusal_status(&Refusal::Internal("kdf".into())).code(),
        Code::Internal
    );
}

/// Released keys are derived once per app instance and kept; the env
/// public key the KMS publishes is the public half of the env key it
/// releases.
#[tokio::test]
async fn keys_are_cached_per_instance_and_the_env_key_is_published() {
    let k = kms();
    assert_eq!(k.state.cached_app_keys(), 0);
    let e = k.pkis.tdx_evidence(&k.app, rd(1), false);
    let first = release::release_app_keys(&k.state, FrontEnd::KMS_V1, &e, rd(1))
        .await
        .unwrap();
    let other = App {
        instance_id: Some([0x2e; 20]),
        ..k.app.clone()
    };
    let e = k.pkis.tdx_evidence(&other, rd(2), false);
    let second = release::release_app_keys(&k.state, FrontEnd::KMS_V1, &e, rd(2))
        .await
        .unwrap();
    assert_eq!(k.state.cached_app_keys(), 2);
    let again = release::release_app_keys(
        &k.state,
        FrontEnd::KMS_V1,
        &k.pkis.tdx_evidence(&k.app, rd(3), false),
        rd(3),
    )
    .await
    .unwrap();
    assert!(Arc::ptr_eq(&first.keys, &again.keys), "derived once");
    assert_eq!(k.state.cached_app_keys(), 2);
    let app_id = first.identity.app.app_id;
    let published = k.state.env_public_key(&app_id).unwrap();
    assert_eq!(
        published,
        kms::service::kdf::x25519_public(&first.keys.env_crypt_key)
    );
    assert_eq!(
        published,
        kms::service::kdf::x25519_public(&second.keys.env_crypt_key)
    );
    assert_eq!(
        k.state.env_encrypt_pub_key(&app_id).unwrap().public_key,
        published
    );
}

/// The log limiter allows its burst, then refills at its rate.
#[tokio::test]
async fn log_limits_refill_at_their_rate() {
    let l = kms::service::LogLimiter::per_second(20);
    for i in 0..20 {
        assert!(l.allow(), "line {i}");
    }
    assert!(!l.allow());
    assert!(!l.allow());
    assert_eq!(l.suppressed(), 2);
    assert_eq!(l.take_dropped(), 2);
    assert_eq!(l.take_dropped(), 0);
    assert_eq!(l.suppressed(), 2);
    // 150 ms at 20 a second: at least three more lines.
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert!(l.allow());
    assert!(l.allow());
    assert!(l.allow());
}

/// An affirming attestation result (TCB up to date, policy allows) carries
/// no policy reasons: the EAR's submodule has no `policy-claims`.
#[tokio::test]
async fn an_affirming_attestation_result_names_no_reasons() {
    use kms::proto::kms_server::Kms as _;
    let k = kms();
    let svc = kms::service::grpc::KmsService::new(k.state.clone());
    let challenge = svc
        .get_challenge(tonic::Request::new(kms::proto::GetChallengeRequest {}))
        .await
        .unwrap()
        .into_inner()
        .challenge;
    let key = [0x33u8; 32];
    let rd = attest_core::binding::attest_report_data(&key, &challenge).unwrap();
    let e = k.pkis.tdx_evidence(&k.app, rd, false);
    let ear = svc
        .attest(tonic::Request::new(kms::proto::AttestRequest {
            evidence: Some((&e).into()),
            client_public_key: key.to_vec(),
            challenge,
        }))
        .await
        .unwrap()
        .into_inner()
        .ear;
    let payload = ear.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    let submod = claims["submods"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    assert_eq!(submod["ear.status"], "affirming", "{submod}");
    assert!(
        submod.get("ear.veraison.policy-claims").is_none(),
        "{submod}"
    );
}
