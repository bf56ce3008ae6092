//! The dstack webhook backend against a real HTTP server on 127.0.0.1 that
//! implements dstack auth-simple's `bootAuth/app` semantics.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use common::*;
use policy::{AllOf, BootInfo, Policy, TomlPolicy, WebhookPolicy};
use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    Fail,
    Hang,
    Garbage,
}

/// auth-simple's config: allowed TCB statuses, OS images, and per-app
/// compose hashes and devices; hex normalized to lowercase with 0x.
struct AuthSimple {
    mode: Mode,
    os_images: Vec<String>,
    apps: HashMap<String, (Vec<String>, Option<Vec<String>>)>,
    last_request: Option<Value>,
}

fn norm(h: &str) -> String {
    let h = h.to_lowercase();
    if h.starts_with("0x") {
        h
    } else {
        format!("0x{h}")
    }
}

async fn boot_auth_app(
    State(state): State<Arc<Mutex<AuthSimple>>>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mode = state.lock().unwrap().mode;
    match mode {
        Mode::Fail => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": "database down"})),
            );
        }
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Mode::Garbage => return (StatusCode::OK, Json(json!({"allowed": "yes"}))),
        Mode::Normal => {}
    }
    let mut s = state.lock().unwrap();
    s.last_request = Some(body.clone());
    let deny = |reason: &str| {
        (
            StatusCode::OK,
            Json(json!({"isAllowed": false, "reason": reason, "gatewayAppId": ""})),
        )
    };
    if body["tcbStatus"] != "UpToDate" {
        return deny("TCB status is not up to date");
    }
    if body["advisoryIds"].as_array().is_none_or(|a| !a.is_empty()) {
        return deny("advisory not allowed");
    }
    let os = norm(body["osImageHash"].as_str().unwrap_or(""));
    if !s.os_images.contains(&os) {
        return deny("OS image is not allowed");
    }
    let app = norm(body["appId"].as_str().unwrap_or(""));
    let Some((composes, devices)) = s.apps.get(&app) else {
        return deny("app not registered");
    };
    if !composes.contains(&norm(body["composeHash"].as_str().unwrap_or(""))) {
        return deny("compose hash not allowed");
    }
    if let Some(devices) = devices {
        if !devices.contains(&norm(body["deviceId"].as_str().unwrap_or(""))) {
            return deny("device not allowed");
        }
    }
    (
        StatusCode::OK,
        Json(json!({"isAllowed": true, "reason": "", "gatewayAppId": "0xgateway"})),
    )
}

async fn start(mode: Mode) -> (String, Arc<Mutex<AuthSimple>>) {
    let state = Arc::new(Mutex::new(AuthSimple {
        mode,
        os_images: vec![norm(OS_IMAGE)],
        apps: HashMap::from([(norm(APP_ID), (vec![norm(COMPOSE)], None))]),
        last_request: None,
    }));
    let app = Router::new()
        .route("/bootAuth/app", post(boot_auth_app))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), state)
}

fn webhook(url: &str) -> WebhookPolicy {
    WebhookPolicy::new(url, Duration::from_millis(500)).unwrap()
}

#[tokio::test]
async fn allows_both_platforms_and_sends_dstack_boot_info() {
    let (url, state) = start(Mode::Normal).await;
    let p = webhook(&url);
    let tdx = tdx_identity();
    let d = p.evaluate(&input(&tdx)).await;
    assert!(d.allow, "{:?}", d.reasons);
    // The webhook's gatewayAppId reaches the decision.
    assert_eq!(d.gateway_app_id.as_deref(), Some("0xgateway"));

    let sent = state.lock().unwrap().last_request.clone().unwrap();
    let keys: Vec<&str> = sent
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        keys,
        [
            "advisoryIds",
            "appId",
            "attestationMode",
            "composeHash",
            "deviceId",
            "instanceId",
            "keyProviderInfo",
            "mrAggregated",
            "mrSystem",
            "osImageHash",
            "tcbStatus",
            "teeVariant"
        ]
    );
    assert_eq!(sent["teeVariant"], "dstack-tdx");
    assert_eq!(sent["attestationMode"], "dstack-tdx");
    assert_eq!(sent["appId"], APP_ID);
    assert_eq!(sent["composeHash"], COMPOSE);
    assert_eq!(
        sent["instanceId"],
        "c3714eb66990eace777b4e664c16e09375dec4c9"
    );
    assert_eq!(sent["osImageHash"], OS_IMAGE);
    assert_eq!(sent["tcbStatus"], "UpToDate");
    let kp = hex::decode(sent["keyProviderInfo"].as_str().unwrap()).unwrap();
    assert_eq!(
        String::from_utf8(kp).unwrap(),
        r#"{"name":"local-sgx","id":"1b7a49378403249b6986a907844cab0921eca32dd47e657f3c10311ccaeccf8b"}"#
    );
    assert_eq!(
        BootInfo::from_identity(&tdx).unwrap(),
        serde_json::from_value(sent).unwrap()
    );

    let snp = snp_identity();
    assert!(p.evaluate(&input(&snp)).await.allow);
    let sent = state.lock().unwrap().last_request.clone().unwrap();
    assert_eq!(sent["teeVariant"], "dstack-amd-sev-snp");
    assert_eq!(sent["deviceId"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn denials_carry_the_servers_reason() {
    let (url, _) = start(Mode::Normal).await;
    let p = webhook(&url);
    let mut id = snp_identity();
    id.app.compose_hash.0[0] ^= 1;
    let d = p.evaluate(&input(&id)).await;
    assert!(!d.allow);
    assert_eq!(
        d.reasons[0].to_string(),
        "webhook: expected isAllowed: true, found isAllowed: false (compose hash not allowed)"
    );
    let mut id = tdx_identity();
    id.tcb.status = attest_core::TcbStatus::OutOfDate;
    let d = p.evaluate(&input(&id)).await;
    assert_eq!(
        d.reasons[0].found,
        "isAllowed: false (TCB status is not up to date)"
    );
}

#[tokio::test]
async fn failures_deny() {
    let (url, _) = start(Mode::Fail).await;
    let d = webhook(&url).evaluate(&input(&tdx_identity())).await;
    assert!(!d.allow);
    assert_eq!(
        d.reasons[0].found,
        format!(
            "webhook {url}/bootAuth/app: HTTP 500 Internal Server Error: {{\"error\":\"database down\"}}"
        )
    );

    let (url, _) = start(Mode::Garbage).await;
    let d = webhook(&url).evaluate(&input(&tdx_identity())).await;
    assert!(!d.allow);
    assert!(
        d.reasons[0]
            .found
            .contains("malformed response: missing field `isAllowed`"),
        "{:?}",
        d.reasons
    );

    // Nothing listens on this port any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let d = webhook(&format!("http://127.0.0.1:{port}"))
        .evaluate(&input(&tdx_identity()))
        .await;
    assert!(!d.allow);
    assert!(
        d.reasons[0]
            .found
            .ends_with("request failed: connection failed"),
        "{:?}",
        d.reasons
    );
}

#[tokio::test]
async fn a_hanging_server_times_out() {
    let (url, _) = start(Mode::Hang).await;
    let start = Instant::now();
    let d = webhook(&url).evaluate(&input(&tdx_identity())).await;
    let took = start.elapsed();
    assert!(!d.allow);
    assert!(
        d.reasons[0].found.ends_with("request failed: timed out"),
        "{:?}",
        d.reasons
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn identity_without_dstack_claims_is_denied_without_a_call() {
    let (url, state) = start(Mode::Normal).await;
    let mut id = tdx_identity();
    id.platform_claims.0.clear();
    let d = webhook(&url).evaluate(&input(&id)).await;
    assert!(!d.allow);
    assert_eq!(
        d.reasons[0].found,
        "no BootInfo: the tdx identity carries no platform_claims.dstack section"
    );
    assert!(state.lock().unwrap().last_request.is_none());
}

#[tokio::test]
async fn all_of_keeps_a_local_floor_under_the_webhook() {
    let (url, _) = start(Mode::Normal).await;
    let floor =
        TomlPolicy::parse(&base_toml().replace(r#"["tdx", "sev-snp"]"#, r#"["tdx"]"#)).unwrap();
    let both = AllOf::new(vec![Arc::new(floor), Arc::new(webhook(&url))]);
    assert!(both.evaluate(&input(&tdx_identity())).await.allow);
    // The webhook allows SNP, the floor does not.
    let d = both.evaluate(&input(&snp_identity())).await;
    assert!(!d.allow);
    assert_eq!(d.reasons.len(), 1);
    assert_eq!(d.reasons[0].rule, "platforms");
    // Both deny: both reasons.
    let mut id = snp_identity();
    id.app.compose_hash.0[0] ^= 1;
    let d = both.evaluate(&input(&id)).await;
    let rules: Vec<&str> = d.reasons.iter().map(|r| r.rule.as_str()).collect();
    assert_eq!(rules, ["platforms", "apps.compose_hashes", "webhook"]);
    // No inner policy: deny.
    assert!(
        !AllOf::new(vec![])
            .evaluate(&input(&tdx_identity()))
            .await
            .allow
    );
}

#[test]
fn bad_urls_are_rejected() {
    assert!(WebhookPolicy::new("ftp://x", Duration::from_secs(1)).is_err());
    assert!(WebhookPolicy::new("localhost:8000", Duration::from_secs(1)).is_err());
    // Plain HTTP only to loopback, unless explicitly allowed.
    let err = WebhookPolicy::new("http://auth.example.com", Duration::from_secs(1))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("insecure_http"), "{err}");
    assert!(
        WebhookPolicy::with_options("http://auth.example.com", Duration::from_secs(1), true)
            .is_ok()
    );
    assert!(WebhookPolicy::new("https://auth.example.com", Duration::from_secs(1)).is_ok());
}

/// dstack's SignCert view: the boot-time aggregates and no key provider.
#[tokio::test]
async fn certificate_requests_send_the_boot_time_boot_info() {
    use attest_core::HexBytes;
    use attest_core::dstack::{BootTimeAggregates, DstackClaims, SECTION};
    let (url, state) = start(Mode::Normal).await;
    let p = webhook(&url);
    let mut tdx = tdx_identity();
    let mut claims: DstackClaims = tdx.platform_claims.get(SECTION).unwrap().unwrap();
    claims.boot_time = Some(BootTimeAggregates {
        mr_aggregated: HexBytes(vec![0xb0; 32]),
        mr_system: HexBytes(vec![0xb1; 32]),
    });
    tdx.platform_claims.insert(SECTION, &claims).unwrap();
    let at = policy::PolicyInput::new(
        &tdx,
        policy::RequestContext::app_certificate(attest_core::UnixTime(1)),
    );
    assert!(p.evaluate(&at).await.allow);
    let sent = state.lock().unwrap().last_request.clone().unwrap();
    assert_eq!(sent["mrAggregated"], "b0".repeat(32));
    assert_eq!(sent["mrSystem"], "b1".repeat(32));
    assert_eq!(sent["keyProviderInfo"], "");
    // A key request sends the full aggregates and the key provider.
    assert!(p.evaluate(&input(&tdx)).await.allow);
    let sent = state.lock().unwrap().last_request.clone().unwrap();
    assert_eq!(sent["mrAggregated"], claims.mr_aggregated.to_hex());
    assert_ne!(sent["keyProviderInfo"], "");
}

/// A server whose allow answer is padded with spaces to `size` bytes.
async fn start_padded(size: usize) -> String {
    let body = r#"{"isAllowed":true,"reason":"","gatewayAppId":"0xgateway"}"#;
    let padded = format!("{body}{}", " ".repeat(size - body.len()));
    let app = Router::new().route(
        "/bootAuth/app",
        post(move || {
            let padded = padded.clone();
            async move { ([("content-type", "application/json")], padded) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}")
}

/// Answers are read up to 64 KiB; a longer one is a denial, whatever it says.
#[tokio::test]
async fn answers_larger_than_64_kib_deny() {
    let url = start_padded(64 * 1024).await;
    let d = webhook(&url).evaluate(&input(&tdx_identity())).await;
    assert!(d.allow, "{:?}", d.reasons);
    let url = start_padded(64 * 1024 + 1).await;
    let d = webhook(&url).evaluate(&input(&tdx_identity())).await;
    assert!(!d.allow);
    assert!(
        d.reasons[0]
            .found
            .ends_with("response larger than 65536 bytes"),
        "{:?}",
        d.reasons
    );
}

/// The webhook backend names itself; its digest is over its endpoint, so
/// two webhooks are two policies.
#[test]
fn the_digest_names_the_endpoint() {
    let a = webhook("http://127.0.0.1:1");
    let b = webhook("http://127.0.0.1:2");
    assert_eq!(a.backend(), "webhook");
    assert_eq!(a.digest(), webhook("http://127.0.0.1:1").digest());
    assert_ne!(a.digest(), b.digest());
    assert_ne!(a.digest(), [0; 32]);
}
