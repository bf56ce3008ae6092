//! Unmodified dstack guests against the dstack-compatible listener: a
//! client that does exactly what a dstack guest does at boot
//! (`shared/reference/dstack-wire.md` §0), over real TLS on 127.0.0.1, for
//! TDX and SNP; the keys it gets are the ones `kms.v1` releases to the
//! same app; every refusal is an HTTP 400 with its reason, and audited.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use attest_core::ReportData;
use attest_core::app_config::host_data;
use attest_core::eventlog::{EventBody, LogEvent, RuntimeEvent};
use attest_testkit::dstack::{App, RaCert, ra_cert, ra_key, ratls_report_data, wire};
use attest_testkit::snp::ReportFields;
use attest_testkit::tdx::TdFields;
use dstack_compat::RaTlsCert;
use kms::demo::*;
use rcgen::PublicKeyData;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde_json::{Value, json};

const VM_CONFIG: &str = r#"{"os_image_hash":"0505"}"#;

fn dstack_section(extra_names: &str) -> String {
    format!(
        "[dstack_compat]\nlisten = \"127.0.0.1:0\"\nserver_names = [\"127.0.0.1\", \"kms.test\"{extra_names}]\ngateway_app_id = \"any\"\n"
    )
}

/// A KMS with the dstack listener; `top` holds top-level keys, `tables`
/// more tables.
async fn start(dir: &std::path::Path, pkis: &Pkis, app: &App, top: &str, tables: &str) -> Server {
    let extra = format!("{top}\n{}\n{tables}", dstack_section(""));
    Server::start_configured(dir, pkis, app, false, &extra)
        .await
        .unwrap()
}

// ---- the guest ----------------------------------------------------------

/// What `GetTempCaCert` hands out.
#[derive(Clone)]
struct TempCa {
    cert: String,
    key: String,
    root: String,
}

/// dstack's step 1: `GetTempCaCert` with no server verification and no
/// client certificate; `POST ...?json`, body `null`, no content type.
async fn get_temp_ca(url: &str) -> TempCa {
    let c = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let r = c
        .post(format!("{url}/prpc/GetTempCaCert?json"))
        .body("null")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.unwrap();
    TempCa {
        cert: v["temp_ca_cert"].as_str().unwrap().to_owned(),
        key: v["temp_ca_key"].as_str().unwrap().to_owned(),
        root: v["ca_cert"].as_str().unwrap().to_owned(),
    }
}

/// The guest's server check: a webpki chain to the root CA it was handed
/// (hostname checked), then the usage extension must say `kms:rpc`.
#[derive(Debug)]
struct KmsRpcCheck(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for KmsRpcCheck {
    fn verify_server_cert(
        &self,
        ee: &CertificateDer<'_>,
        inter: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.verify_server_cert(ee, inter, name, ocsp, now)?;
        let c = RaTlsCert::from_der(ee).map_err(|e| rustls::Error::General(e.to_string()))?;
        if c.extensions().special_usage.as_deref() != Some("kms:rpc") {
            return Err(rustls::Error::General("not a kms:rpc certificate".into()));
        }
        if c.extensions().attestation.is_some() {
            return Err(rustls::Error::General("unexpected .1.8".into()));
        }
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

fn pem_der(pem_text: &str) -> Vec<u8> {
    pem::parse(pem_text).unwrap().into_contents()
}

/// A client certificate whose key is not the certificate's (an attacker
/// replaying another guest's certificate).
#[derive(Debug)]
struct WrongKey(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for WrongKey {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

enum ClientAuth<'a> {
    None,
    Cert(&'a RaCert),
    /// `(certificate, a different key)`.
    Stolen(&'a RaCert, &'a RaCert),
}

/// dstack's step 3 client: mutual TLS, the root CA as the only anchor,
/// the `kms:rpc` check, HTTP/1.1 (reqwest without HTTP/2, as the guest).
fn guest_client(root_pem: &str, auth: ClientAuth<'_>) -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(pem_der(root_pem))).unwrap();
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let b = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(KmsRpcCheck(webpki)));
    let key = |r: &RaCert| PrivateKeyDer::Pkcs8(r.key_der.clone().into());
    let cfg = match auth {
        ClientAuth::None => b.with_no_client_auth(),
        ClientAuth::Cert(ra) => b
            .with_client_auth_cert(vec![ra.der.clone().into()], key(ra))
            .unwrap(),
        ClientAuth::Stolen(cert, other) => {
            let signer = provider.key_provider.load_private_key(key(other)).unwrap();
            let ck = rustls::sign::CertifiedKey::new(vec![cert.der.clone().into()], signer);
            b.with_client_cert_resolver(Arc::new(WrongKey(Arc::new(ck))))
        }
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .build()
        .unwrap()
}

/// `POST {url}/prpc/{method}?json` with `body`: (status, JSON answer).
async fn call(client: &reqwest::Client, url: &str, method: &str, body: String) -> (u16, Value) {
    let r = client
        .post(format!("{url}/prpc/{method}?json"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get_app_key(client: &reqwest::Client, url: &str) -> (u16, Value) {
    call(
        client,
        url,
        "GetAppKey",
        json!({"api_version": 1, "vm_config": VM_CONFIG}).to_string(),
    )
    .await
}

/// The runtime events a guest has extended when it asks for its keys:
/// through `boot-mr-done`.
fn boot_events(app: &App) -> Vec<RuntimeEvent> {
    let mut out = Vec::new();
    for e in app.runtime_events() {
        let r = e.as_runtime().unwrap().clone();
        let done = r.name == "boot-mr-done";
        out.push(r);
        if done {
            break;
        }
    }
    out
}

/// A TDX quote whose RTMR3 is the replay of `events`.
fn tdx_quote(pkis: &Pkis, events: &[RuntimeEvent], rd: [u8; 64]) -> Vec<u8> {
    let log: Vec<LogEvent> = events
        .iter()
        .map(|e| LogEvent {
            register: 3,
            body: EventBody::Runtime(e.clone()),
        })
        .collect();
    let (_, rtmr3) = attest_testkit::dstack::events_to_json(&log);
    pkis.intel.quote(&TdFields {
        rtmrs: [[0; 48], [0; 48], [0; 48], rtmr3],
        report_data: rd,
        ..Default::default()
    })
}

/// dstack's step 2 on TDX: a fresh key, a quote bound to it, the
/// attestation (V0, stripped) in `.1.8`, signed with the temp CA.
fn tdx_guest_cert(pkis: &Pkis, app: &App, temp: &TempCa) -> RaCert {
    let key = ra_key();
    let rd = ratls_report_data(&key.subject_public_key_info());
    let events = boot_events(app);
    let att = wire::v0_tdx(&tdx_quote(pkis, &events, rd), &events, &rd, VM_CONFIG);
    ra_cert(key, &temp.cert, &temp.key, &[(8, att)])
}

/// The same on SNP: the report bound to the key, `[ASK PEM, VCEK DER]`,
/// the app config document HOST_DATA binds.
fn snp_attestation(pkis: &Pkis, app: &App, rd: [u8; 64]) -> Vec<u8> {
    let doc = app.app_config_v3();
    let f = ReportFields {
        host_data: host_data(&doc),
        report_data: rd,
        ..Default::default()
    };
    let chain = vec![
        pkis.amd.ask_pem(f.product).into_bytes(),
        pkis.amd.vek_der(&f),
    ];
    wire::v0_snp(
        &pkis.amd.report(&f),
        &chain,
        std::str::from_utf8(&doc).unwrap(),
        &rd,
        VM_CONFIG,
    )
}

fn snp_guest_cert(pkis: &Pkis, app: &App, temp: &TempCa) -> RaCert {
    let key = ra_key();
    let rd = ratls_report_data(&key.subject_public_key_info());
    ra_cert(
        key,
        &temp.cert,
        &temp.key,
        &[(8, snp_attestation(pkis, app, rd))],
    )
}

/// What `kms.v1` releases to `app` on `platform`.
async fn kms_v1_keys(
    server: &Server,
    pkis: &Pkis,
    app: &App,
    platform: &str,
) -> kms_client::AppKeys {
    let mut c = kms_client::KmsClient::connect(&server.url).await.unwrap();
    c.get_app_key(&server.key_provider_id, |rd: ReportData| {
        let e = match platform {
            "tdx" => pkis.tdx_evidence(app, rd, false),
            _ => pkis.snp_evidence(app, rd, ReportFields::default()),
        };
        async move { Ok(e) }
    })
    .await
    .unwrap()
}

fn audit_lines(dir: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("data/audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The last audit record of the dstack front end.
fn last_dstack_audit(dir: &std::path::Path) -> Value {
    audit_lines(dir)
        .into_iter()
        .rev()
        .find(|r| r["front_end"] == "dstack")
        .expect("a dstack audit record")
}

// ---- the boot -------------------------------------------------------------

#[tokio::test]
async fn a_dstack_guest_boots_on_tdx_and_snp_with_the_keys_kms_v1_releases() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let server = start(dir.path(), &pkis, &app, "kdf = \"dstack\"", "").await;
    let url = server.dstack_url.clone().unwrap();

    let temp = get_temp_ca(&url).await;
    assert!(temp.key.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(temp.root, server.state.keys.ca_cert_pem());
    // The temp CA is a simple CA whose certificate is for the key.
    let kp = rcgen::KeyPair::from_pem(&temp.key).unwrap();
    let tc = RaTlsCert::from_der(&pem_der(&temp.cert)).unwrap();
    assert_eq!(tc.spki_der(), kp.subject_public_key_info());
    // ... and persistent: the same on a second call.
    assert_eq!(get_temp_ca(&url).await.key, temp.key);

    for (platform, cert) in [
        ("tdx", tdx_guest_cert(&pkis, &app, &temp)),
        ("sev-snp", snp_guest_cert(&pkis, &app, &temp)),
    ] {
        let client = guest_client(&temp.root, ClientAuth::Cert(&cert));
        let (status, v) = get_app_key(&client, &url).await;
        assert_eq!(status, 200, "{platform}: {v}");
        let want = kms_v1_keys(&server, &pkis, &app, platform).await;
        assert_eq!(
            v["disk_crypt_key"],
            hex::encode(&*want.disk_crypt_key),
            "{platform}"
        );
        assert_eq!(v["env_crypt_key"], hex::encode(&*want.env_crypt_key));
        assert_eq!(v["k256_key"], hex::encode(&*want.k256_key));
        assert_eq!(v["k256_signature"], hex::encode(&want.k256_signature));
        assert_eq!(v["ca_cert"], want.ca_cert);
        assert_eq!(v["os_image_hash"], OS_IMAGE);
        assert_eq!(v["gateway_app_id"], "any");
        assert_eq!(v["tproxy_app_id"], "any");
        assert_eq!(
            hex::decode(v["disk_crypt_key"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert_eq!(
            hex::decode(v["k256_signature"].as_str().unwrap())
                .unwrap()
                .len(),
            65
        );
        let a = last_dstack_audit(dir.path());
        assert_eq!(a["decision"], "allow");
        assert_eq!(a["purpose"], "app_keys");
        assert_eq!(a["platform"], platform);
        assert_eq!(a["app_id"], hex::encode(app.app_id));
    }

    // The same guest key set as the dstack KMS would give: the dstack
    // derivation profile (checked against vectors in kdf_vectors.rs).
    assert_eq!(server.state.kdf, kms::service::kdf::KdfProfile::Dstack);
    server.stop().await;
}

#[tokio::test]
async fn v1_msgpack_attestations_and_legacy_certificates_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let server = start(dir.path(), &pkis, &app, "", "").await;
    let url = server.dstack_url.clone().unwrap();
    let temp = get_temp_ca(&url).await;
    let want = kms_v1_keys(&server, &pkis, &app, "tdx").await;

    // V1 msgpack, V2 (JCS) runtime events.
    let key = ra_key();
    let rd = ratls_report_data(&key.subject_public_key_info());
    let mut events = boot_events(&app);
    for e in &mut events {
        e.version = attest_core::eventlog::RuntimeEventVersion::V2;
    }
    let att = wire::v1_tdx(&tdx_quote(&pkis, &events, rd), &events, &rd, VM_CONFIG);
    let cert = ra_cert(key, &temp.cert, &temp.key, &[(8, att)]);
    let (status, v) = get_app_key(&guest_client(&temp.root, ClientAuth::Cert(&cert)), &url).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["k256_key"], hex::encode(&*want.k256_key));

    // Legacy `.1.1` quote + `.1.2` full JSON event log (guests <= v0.5.8).
    let key = ra_key();
    let rd = ratls_report_data(&key.subject_public_key_info());
    let events = boot_events(&app);
    let quote = tdx_quote(&pkis, &events, rd);
    let log: Vec<LogEvent> = events
        .iter()
        .map(|e| LogEvent {
            register: 3,
            body: EventBody::Runtime(e.clone()),
        })
        .collect();
    let json_log = attest_core::eventlog::to_json_event_log(&log);
    let cert = ra_cert(key, &temp.cert, &temp.key, &[(1, quote), (2, json_log)]);
    let (status, v) = get_app_key(&guest_client(&temp.root, ClientAuth::Cert(&cert)), &url).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["disk_crypt_key"], hex::encode(&*want.disk_crypt_key));
    server.stop().await;
}

// ---- refusals -------------------------------------------------------------

/// Checks a refusal: HTTP 400, `{"error": ...}` starting with `prefix`,
/// and an audit record of the dstack front end holding that reason.
fn assert_refused(dir: &std::path::Path, (status, v): (u16, Value), prefix: &str, decision: &str) {
    assert_eq!(status, 400, "{v}");
    let msg = v["error"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(
        msg.starts_with(prefix),
        "{msg:?} does not start with {prefix:?}"
    );
    let a = last_dstack_audit(dir);
    assert_eq!(a["decision"], decision, "{a}");
    let reasons = a["reasons"].to_string();
    assert!(
        reasons.contains(&prefix.replace('"', "\\\"")),
        "audit {reasons} lacks {prefix:?}"
    );
}

#[tokio::test]
async fn every_refusal_is_a_400_with_its_reason_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let server = start(dir.path(), &pkis, &app, "", "").await;
    let url = server.dstack_url.clone().unwrap();
    let d = dir.path();
    let temp = get_temp_ca(&url).await;
    let released_before = server.state.cached_app_keys();

    // No client certificate.
    let r = get_app_key(&guest_client(&temp.root, ClientAuth::None), &url).await;
    assert_refused(
        d,
        r,
        "attestation failed: malformed: no client certificate: GetAppKey needs an RA-TLS client certificate",
        "error",
    );

    // A certificate without an attestation.
    let plain = ra_cert(ra_key(), &temp.cert, &temp.key, &[]);
    let r = get_app_key(&guest_client(&temp.root, ClientAuth::Cert(&plain)), &url).await;
    assert_refused(
        d,
        r,
        "attestation failed: malformed: the client certificate carries no dstack attestation",
        "error",
    );

    // A genuine attestation bound to another key (replayed from another
    // guest's certificate into one with the attacker's key).
    let victim = tdx_guest_cert(&pkis, &app, &temp);
    let stolen = RaTlsCert::from_der(&victim.der)
        .unwrap()
        .extensions()
        .attestation
        .clone()
        .unwrap();
    let replayed = ra_cert(ra_key(), &temp.cert, &temp.key, &[(8, stolen)]);
    let r = get_app_key(&guest_client(&temp.root, ClientAuth::Cert(&replayed)), &url).await;
    assert_refused(
        d,
        r,
        "attestation failed: binding_mismatch: report data: expected ",
        "error",
    );

    // The victim's very certificate without its key: the handshake fails.
    let err = guest_client(&temp.root, ClientAuth::Stolen(&victim, &replayed))
        .post(format!("{url}/prpc/GetAppKey?json"))
        .body("{}")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");

    // A tampered runtime event in a stripped log: the quote's RTMR3 is the
    // real events', the log claims another compose hash.
    let key = ra_key();
    let rd = ratls_report_data(&key.subject_public_key_info());
    let events = boot_events(&app);
    let quote = tdx_quote(&pkis, &events, rd);
    let mut forged = events.clone();
    for e in &mut forged {
        if e.name == "compose-hash" {
            e.payload = vec![0xee; 32];
        }
    }
    let att = wire::v0_tdx(&quote, &forged, &rd, VM_CONFIG);
    let cert = ra_cert(key, &temp.cert, &temp.key, &[(8, att)]);
    let r = get_app_key(&guest_client(&temp.root, ClientAuth::Cert(&cert)), &url).await;
    assert_refused(
        d,
        r,
        "attestation failed: identity_mismatch: rtmr3: evidence has ",
        "error",
    );

    // dstack platforms without a plug-in, and a variant dstack never had.
    for (variant, prefix) in [
        (
            1u8,
            "attestation failed: unsupported_platform: no verifier registered for platform \"gcp-tdx\"",
        ),
        (
            4,
            "attestation failed: unsupported_platform: no verifier registered for platform \"aws-nitro-tpm\"",
        ),
        (
            9,
            "attestation failed: malformed: extension 1.3.6.1.4.1.62397.1.8: dstack attestation (V0 SCALE): quote variant at offset 1: unknown variant 9",
        ),
    ] {
        let cert = ra_cert(
            ra_key(),
            &temp.cert,
            &temp.key,
            &[(8, wire::v0_other(variant))],
        );
        let r = get_app_key(&guest_client(&temp.root, ClientAuth::Cert(&cert)), &url).await;
        assert_refused(d, r, prefix, "error");
    }

    // A body over max_request_bytes (256 KiB by default).
    let client = guest_client(&temp.root, ClientAuth::Cert(&victim));
    let r = call(
        &client,
        &url,
        "GetAppKey",
        format!("{{\"vm_config\":\"{}\"}}", "x".repeat(300 * 1024)),
    )
    .await;
    assert_refused(
        d,
        r,
        "attestation failed: malformed: request body larger than 262144 bytes",
        "error",
    );

    // An api_version this protocol does not have.
    let r = call(&client, &url, "GetAppKey", r#"{"api_version":2}"#.into()).await;
    assert_refused(
        d,
        r,
        "attestation failed: malformed: unsupported api_version 2 (0 and 1 are supported)",
        "error",
    );

    // Garbage JSON.
    let r = call(&client, &url, "GetAppKey", r#"{"api_version": "#.into()).await;
    assert_refused(
        d,
        r,
        "attestation failed: malformed: invalid JSON request: ",
        "error",
    );

    // Policy deny: an app the policy does not know.
    let mut other = App::example();
    other.app_id = [0x0b; 20];
    let cert = tdx_guest_cert(&pkis, &other, &temp);
    let (status, v) = get_app_key(&guest_client(&temp.root, ClientAuth::Cert(&cert)), &url).await;
    let other_hex = hex::encode(other.app_id);
    assert_eq!(
        (status, v["error"].as_str().unwrap()),
        (
            400,
            format!("policy denied: apps: found {other_hex}").as_str()
        )
    );
    let a = last_dstack_audit(d);
    assert_eq!(a["decision"], "deny");
    assert_eq!(a["app_id"], other_hex);
    assert_eq!(
        a["reasons"],
        json!([format!("apps: expected a listed app_id, found {other_hex}")])
    );

    // Nothing was released by any of these.
    assert_eq!(server.state.cached_app_keys(), released_before);
    assert!(audit_lines(d).iter().all(|r| r["decision"] != "allow"));
    server.stop().await;
}

#[tokio::test]
async fn garbage_protobuf_unknown_routes_and_the_methods_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let server = start(dir.path(), &pkis, &app, "", "").await;
    let url = server.dstack_url.clone().unwrap();
    let c = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();

    // Protobuf mode (no `?json`, no JSON content type): prpc's ProtoError.
    let r = c
        .post(format!("{url}/prpc/KMS.GetAppKey"))
        .body(vec![0xff, 0xff, 0xff])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let body = r.bytes().await.unwrap();
    // ProtoError { message = 1 }: tag 0x0a, length, text.
    assert_eq!(body[0], 0x0a);
    let text = String::from_utf8_lossy(&body[2..]).into_owned();
    assert!(
        text.starts_with("attestation failed: malformed: invalid protobuf request: "),
        "{text}"
    );

    // A JSON content type selects JSON without `?json`.
    let r = c
        .post(format!("{url}/prpc/GetMeta"))
        .header("content-type", "application/json")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let meta: Value = r.json().await.unwrap();
    assert_eq!(meta["ca_cert"], server.state.keys.ca_cert_pem());
    assert_eq!(meta["k256_pubkey"].as_str().unwrap().len(), 66);
    assert_eq!(meta["gateway_app_id"], "any");
    assert_eq!(meta["allow_any_upgrade"], false);
    assert!(meta["bootstrap_info"].is_null() && meta["chain_id"].is_null());

    let r = c.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, "OK".to_owned())
    );
    for (method, want) in [
        ("Nope", "unknown method \"Nope\""),
        (
            "GetKmsKey",
            "GetKmsKey is not served: replicas of this KMS onboard through its own attested protocol",
        ),
    ] {
        let (s, v) = call(&c, &url, method, "{}".into()).await;
        assert_eq!((s, v["error"].as_str().unwrap()), (400, want));
    }
    let r = c.get(format!("{url}/other")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // GetAppEnvEncryptPubKey: a GET with the query, a POST with JSON; the
    // key is the app's env key's, as on kms.v1.
    let app_hex = hex::encode(app.app_id);
    let r = c
        .get(format!(
            "{url}/prpc/GetAppEnvEncryptPubKey?app_id=0x{app_hex}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got: Value = r.json().await.unwrap();
    let (s, post) = call(
        &c,
        &url,
        "GetAppEnvEncryptPubKey",
        json!({"app_id": app_hex}).to_string(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(got["public_key"], post["public_key"]);
    let want = kms_v1_keys(&server, &pkis, &app, "tdx").await;
    let env: [u8; 32] = want.env_crypt_key[..].try_into().unwrap();
    assert_eq!(
        got["public_key"],
        hex::encode(kms::service::kdf::x25519_public(&env))
    );
    assert_eq!(got["signature"].as_str().unwrap().len(), 130);
    assert!(got["timestamp"].as_u64().unwrap() > 1_700_000_000);
    let (s, v) = call(
        &c,
        &url,
        "GetAppEnvEncryptPubKey",
        r#"{"app_id":"0102"}"#.into(),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (400, "app_id must be 20 bytes, found 2")
    );
    server.stop().await;
}

/// The listener speaks h2 too (ALPN), for clients other than the guest.
#[tokio::test]
async fn h2_clients_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let server = start(dir.path(), &pkis, &app, "", "").await;
    let url = server.dstack_url.clone().unwrap();
    let temp = get_temp_ca(&url).await;
    let addr = url.trim_start_matches("https://").to_owned();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(pem_der(&temp.root)))
        .unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("kms.test").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::post("https://kms.test/prpc/GetMeta?json")
        .body(())
        .unwrap();
    let (resp, mut send) = h2.send_request(req, false).unwrap();
    send.send_data(bytes::Bytes::from_static(b"null"), true)
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    let meta: Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(meta["ca_cert"], temp.root);
    server.stop().await;
}

/// Slow clients hold nothing for long: no TLS handshake, headers that never
/// end, a body that never arrives.
#[tokio::test]
async fn slow_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let limits = "[limits]\nrequest_timeout_secs = 1\nhandler_timeout_secs = 2\nidle_timeout_secs = 2\nmax_connections_per_ip = 3\n";
    let server = start(dir.path(), &pkis, &app, "", limits).await;
    let url = server.dstack_url.clone().unwrap();
    let addr = url.trim_start_matches("https://").to_owned();
    let t = std::time::Instant::now();

    // One address holds at most max_connections_per_ip connections: the
    // fourth is closed at once.
    let held = connect_many(&addr, 3).await;
    let mut fourth = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut b = [0u8; 16];
    let n = tokio::time::timeout(std::time::Duration::from_millis(500), fourth.read(&mut b))
        .await
        .expect("closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0);
    drop(held);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    // TCP only, no handshake.
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut b = [0u8; 16];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut b))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0);

    // Headers that never end.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        connector
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap()
    };
    let mut tls = connect().await;
    tls.write_all(b"POST /prpc/GetAppKey?json HTTP/1.1\r\nHost: kms\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tls.read_to_end(&mut out))
        .await
        .expect("closed in time");

    // A body that never arrives: a 400 once the request timeout passes.
    let mut tls = connect().await;
    tls.write_all(
        b"POST /prpc/GetAppKey?json HTTP/1.1\r\nHost: kms\r\nContent-Length: 100\r\n\r\n{\"api",
    )
    .await
    .unwrap();
    let mut out = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), tls.read(&mut out))
        .await
        .expect("answered in time")
        .unwrap();
    let text = String::from_utf8_lossy(&out[..n]).into_owned();
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(
        text.contains("the request body was not received within 1 s"),
        "{text}"
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(12));
    server.stop().await;
}

async fn connect_many(addr: &str, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // Let the listener admit them before the next one arrives.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    out
}

#[derive(Debug)]
struct AcceptAny;

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

// ---- SignCert ---------------------------------------------------------------

/// A CSR for `key` carrying `attestation`, signed with `signer`.
fn csr(
    key_spki: &[u8],
    config: &wire::CertConfig,
    attestation: &[u8],
    signer: &rcgen::KeyPair,
) -> (Vec<u8>, Vec<u8>) {
    let csr = wire::csr_v2("please sign cert:", key_spki, config, attestation);
    let sig = rcgen::SigningKey::sign(signer, &csr).unwrap();
    (csr, sig)
}

async fn sign_cert(client: &reqwest::Client, url: &str, csr: &[u8], sig: &[u8]) -> (u16, Value) {
    call(
        client,
        url,
        "SignCert",
        json!({"api_version": 2, "csr": hex::encode(csr), "signature": hex::encode(sig), "vm_config": VM_CONFIG})
            .to_string(),
    )
    .await
}

#[tokio::test]
async fn sign_cert_issues_a_leaf_under_the_app_ca_dstack_derives() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let server = start(dir.path(), &pkis, &app, "", "").await;
    let url = server.dstack_url.clone().unwrap();
    let d = dir.path();
    let temp = get_temp_ca(&url).await;
    // The guest agent's connection: an RA-TLS certificate, no usage check.
    let conn_cert = tdx_guest_cert(&pkis, &app, &temp);
    let client = guest_client(&temp.root, ClientAuth::Cert(&conn_cert));

    let config = wire::CertConfig {
        subject: "app.example".into(),
        subject_alt_names: vec!["app.example".into(), "10.1.2.3".into()],
        usage_server_auth: true,
        usage_client_auth: true,
        ext_quote: true,
        ext_app_info: true,
        ..Default::default()
    };
    // The whole boot log at SignCert time (after system-ready); the quote
    // binds the CSR key.
    let key = ra_key();
    let spki = key.subject_public_key_info();
    let rd = ratls_report_data(&spki);
    let events: Vec<RuntimeEvent> = app
        .runtime_events()
        .iter()
        .map(|e| e.as_runtime().unwrap().clone())
        .collect();
    let att = wire::v0_tdx(&tdx_quote(&pkis, &events, rd), &events, &rd, VM_CONFIG);
    let (c, sig) = csr(&spki, &config, &att, &key);
    let (status, v) = sign_cert(&client, &url, &c, &sig).await;
    assert_eq!(status, 200, "{v}");
    let chain: Vec<String> = serde_json::from_value(v["certificate_chain"].clone()).unwrap();
    assert_eq!(chain.len(), 3);
    assert_eq!(chain[2], server.state.keys.ca_cert_pem());
    let a = last_dstack_audit(d);
    assert_eq!(
        (a["decision"].as_str(), a["purpose"].as_str()),
        (Some("allow"), Some("app_certificate"))
    );

    // The chain verifies with webpki to the root CA for its names.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(pem_der(&chain[2]))).unwrap();
    let v = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap();
    let leaf = CertificateDer::from(pem_der(&chain[0]));
    let ca = CertificateDer::from(pem_der(&chain[1]));
    for name in ["app.example", "10.1.2.3"] {
        v.verify_server_cert(
            &leaf,
            std::slice::from_ref(&ca),
            &ServerName::try_from(name).unwrap(),
            &[],
            UnixTime::now(),
        )
        .unwrap();
    }

    // The leaf: the CSR's key, dstack's extensions.
    let l = RaTlsCert::from_der(&leaf).unwrap();
    assert_eq!(l.spki_der(), spki);
    let ext = l.extensions();
    assert_eq!(ext.app_id.as_deref(), Some(&app.app_id[..]));
    assert_eq!(ext.special_usage.as_deref(), Some("app:custom"));
    assert_eq!(ext.attestation.as_deref(), Some(&att[..]));
    let info = ext.app_info.as_deref().unwrap();
    assert_eq!(info[0], 0x88, "a msgpack map of 8 fields");
    let needle = [&[0xc4, 20][..], &app.app_id].concat();
    assert!(
        info.windows(needle.len()).any(|w| w == needle),
        "app_id in .1.9"
    );

    // The app CA: dstack's derivation from the root CA key, `app:ca`.
    let cac = RaTlsCert::from_der(&ca).unwrap();
    assert_eq!(cac.extensions().special_usage.as_deref(), Some("app:ca"));
    assert_eq!(cac.extensions().app_id.as_deref(), Some(&app.app_id[..]));
    let root_scalar = server.state.keys.ca_key().to_bytes();
    let derived = kms::service::kdf::dstack_derive_key(&root_scalar, &[&app.app_id, b"app-ca"]);
    let sk = p256::SecretKey::from_slice(&derived[..]).unwrap();
    use p256::pkcs8::EncodePublicKey;
    assert_eq!(
        cac.spki_der(),
        sk.public_key().to_public_key_der().unwrap().as_bytes()
    );

    // Refusals. A signature by another key.
    let other = ra_key();
    let (c2, sig2) = csr(&spki, &config, &att, &other);
    let r = sign_cert(&client, &url, &c2, &sig2).await;
    assert_refused(
        d,
        r,
        "attestation failed: bad_signature: the CSR pubkey's signature over the CSR does not verify",
        "error",
    );
    // A CSR for another key than its attestation binds (signed by that key).
    let other_spki = other.subject_public_key_info();
    let (c3, sig3) = csr(&other_spki, &config, &att, &other);
    let r = sign_cert(&client, &url, &c3, &sig3).await;
    assert_refused(d, r, "attestation failed: binding_mismatch: ", "error");
    // This KMS's own names are never certified for an app.
    for name in [
        "127.0.0.1",
        "KMS.test",
        "*.test",
        "kms.test.",
        "0:0:0:0:0:ffff:7f00:1",
    ] {
        let mut cfg = config.clone();
        cfg.subject_alt_names = vec![name.into()];
        let (c4, sig4) = csr(&spki, &cfg, &att, &key);
        let r = sign_cert(&client, &url, &c4, &sig4).await;
        assert_refused(
            d,
            r,
            "attestation failed: malformed: the CSR asks for ",
            "error",
        );
    }
    // Another magic string.
    let bad = wire::csr_v2("please sign this", &spki, &config, &att);
    let bad_sig = rcgen::SigningKey::sign(&key, &bad).unwrap();
    let r = sign_cert(&client, &url, &bad, &bad_sig).await;
    assert_refused(
        d,
        r,
        "attestation failed: malformed: dstack CSR (SCALE): confirm at offset 0: ",
        "error",
    );
    // A huge CSR: refused as a body over the limit before decoding.
    let huge = vec![0u8; 200 * 1024];
    let r = sign_cert(&client, &url, &huge, &[]).await;
    assert_refused(
        d,
        r,
        "attestation failed: malformed: request body larger than 262144 bytes",
        "error",
    );
    // A V1 CSR (api_version 1): the legacy quote and full JSON log,
    // embedded as `.1.1` and `.1.2` when `ext_quote`.
    let log: Vec<LogEvent> = events
        .iter()
        .map(|e| LogEvent {
            register: 3,
            body: EventBody::Runtime(e.clone()),
        })
        .collect();
    let json_log = attest_core::eventlog::to_json_event_log(&log);
    let quote = tdx_quote(&pkis, &events, rd);
    let v1 = wire::csr_v1("please sign cert:", &spki, &config, &quote, &json_log);
    let v1_sig = rcgen::SigningKey::sign(&key, &v1).unwrap();
    let (s, v) = call(
        &client,
        &url,
        "SignCert",
        json!({"api_version": 1, "csr": hex::encode(&v1), "signature": hex::encode(&v1_sig)})
            .to_string(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let leaf = pem_der(v["certificate_chain"][0].as_str().unwrap());
    let ext = RaTlsCert::from_der(&leaf).unwrap().extensions().clone();
    assert_eq!(ext.tdx_quote.as_deref(), Some(&quote[..]));
    assert_eq!(ext.event_log.as_deref(), Some(&json_log[..]));
    assert_eq!(ext.app_info, None, "V1 has no ext_app_info");

    // api_version 3 does not exist.
    let (s, v) = call(
        &client,
        &url,
        "SignCert",
        json!({"api_version": 3, "csr": hex::encode(&c), "signature": hex::encode(&sig)})
            .to_string(),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (
            400,
            "attestation failed: malformed: unsupported SignCert api_version 3 (1 and 2 are supported)"
        )
    );
    server.stop().await;
}
