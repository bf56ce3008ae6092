//! Second review, (outside attacker): the dstack-compatible front end, driven
//! as a dstack guest (and what runs inside it) would drive it, over real
//! TLS on 127.0.0.1.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use attest_core::eventlog::{EventBody, LogEvent, RuntimeEvent};
use attest_testkit::dstack::{App, ra_key, ratls_report_data, wire};
use attest_testkit::tdx::TdFields;
use dstack_compat::RaTlsCert;
use kms::demo::*;
use rcgen::PublicKeyData;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde_json::{Value, json};

const VM_CONFIG: &str = r#"{"os_image_hash":"0505"}"#;

async fn start(dir: &std::path::Path, pkis: &Pkis, app: &App) -> Server {
    let extra = "[dstack_compat]\nlisten = \"127.0.0.1:0\"\nserver_names = [\"127.0.0.1\", \"kms.test\"]\ngateway_app_id = \"any\"\n";
    Server::start_configured(dir, pkis, app, false, extra)
        .await
        .unwrap()
}

struct TempCa {
    root: String,
    cert: String,
    key: String,
}

async fn get_temp_ca(url: &str) -> TempCa {
    let c = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let v: Value = c
        .post(format!("{url}/prpc/GetTempCaCert?json"))
        .body("null")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    TempCa {
        root: v["ca_cert"].as_str().unwrap().to_owned(),
        cert: v["temp_ca_cert"].as_str().unwrap().to_owned(),
        key: v["temp_ca_key"].as_str().unwrap().to_owned(),
    }
}

/// The guest's server check: a chain to the root CA, the hostname, then
/// `kms:rpc`.
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

/// A client anchored at the root CA with the `kms:rpc` check, presenting
/// `chain` (DER, leaf first) with `key_der` (PKCS#8) when given.
fn client(root_pem: &str, auth: Option<(Vec<Vec<u8>>, Vec<u8>)>) -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(pem_der(root_pem))).unwrap();
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(KmsRpcCheck(webpki)));
    let cfg = match auth {
        None => b.with_no_client_auth(),
        Some((chain, key)) => b
            .with_client_auth_cert(
                chain.into_iter().map(CertificateDer::from).collect(),
                PrivateKeyDer::Pkcs8(key.into()),
            )
            .unwrap(),
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .build()
        .unwrap()
}

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

/// Second review, F4: an app certificate `SignCert` issued (`.1.4 = app:custom`,
/// `.1.8` = the attestation bound to its key, as the guest agent's
/// `GetTlsKey` with a quote asks for) works as the RA-TLS client
/// certificate of `GetAppKey`. Whoever holds that TLS key (an app
/// container, long after boot) gets the boot secrets dstack only hands
/// the guest OS: the disk encryption key, the env key and the app's root
/// k256 key. The attestation already extends past `system-ready` (the
/// app's own events follow), which no booting guest ever presents.
#[tokio::test]
async fn an_app_tls_certificate_from_sign_cert_is_no_get_app_key_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let server = start(dir.path(), &pkis, &app).await;
    let url = server.dstack_url.clone().unwrap();
    let temp = get_temp_ca(&url).await;

    // After boot: every boot event through system-ready, then an event of
    // the app's own.
    let mut events: Vec<RuntimeEvent> = app
        .runtime_events()
        .iter()
        .map(|e| e.as_runtime().unwrap().clone())
        .collect();
    events.push(RuntimeEvent {
        name: "app-started".into(),
        payload: b"web".to_vec(),
        version: attest_core::eventlog::RuntimeEventVersion::V1,
    });

    // The guest agent's GetTlsKey for a container: a key, a CSR with
    // ext_quote, SignCert (no client certificate needed).
    let key = ra_key();
    let spki = key.subject_public_key_info();
    let rd = ratls_report_data(&spki);
    let att = wire::v0_tdx(&tdx_quote(&pkis, &events, rd), &events, &rd, VM_CONFIG);
    let config = wire::CertConfig {
        subject: "app.example".into(),
        subject_alt_names: vec!["app.example".into()],
        usage_server_auth: true,
        usage_client_auth: true,
        ext_quote: true,
        ext_app_info: true,
        ..Default::default()
    };
    let csr = wire::csr_v2("please sign cert:", &spki, &config, &att);
    let sig = rcgen::SigningKey::sign(&key, &csr).unwrap();
    let (status, v) = call(
        &client(&temp.root, None),
        &url,
        "SignCert",
        json!({"api_version": 2, "csr": hex::encode(&csr), "signature": hex::encode(&sig)})
            .to_string(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let chain: Vec<Vec<u8>> = v["certificate_chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| pem_der(p.as_str().unwrap()))
        .collect();
    let leaf = RaTlsCert::from_der(&chain[0]).unwrap();
    assert_eq!(
        leaf.extensions().special_usage.as_deref(),
        Some("app:custom")
    );

    // The container: its TLS certificate and key, as a client certificate.
    let container = client(&temp.root, Some((chain[..2].to_vec(), key.serialize_der())));
    let (status, v) = call(
        &container,
        &url,
        "GetAppKey",
        json!({"api_version": 1, "vm_config": VM_CONFIG}).to_string(),
    )
    .await;
    server.stop().await;
    assert_eq!(
        status, 400,
        "GetAppKey released the boot secrets (disk_crypt_key {}) to the holder of an app TLS \
         certificate (app:custom) whose attestation runs past system-ready",
        v["disk_crypt_key"]
    );
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("issued to an app by SignCert (extensions 1.3/1.4)"),
        "{v}"
    );
}

/// A certificate of its own (no KMS markers) whose attestation was made
/// after boot (its runtime events include `key-provider` and
/// `system-ready`, which a guest measures only once it has its keys) is
/// refused too: keys go only to a booting guest.
#[tokio::test]
async fn an_attestation_made_after_boot_gets_no_keys() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let server = start(dir.path(), &pkis, &app).await;
    let url = server.dstack_url.clone().unwrap();
    let temp = get_temp_ca(&url).await;
    let events: Vec<RuntimeEvent> = app
        .runtime_events()
        .iter()
        .map(|e| e.as_runtime().unwrap().clone())
        .collect();
    assert_eq!(events.last().unwrap().name, "system-ready");
    let key = ra_key();
    let rd = ratls_report_data(&key.subject_public_key_info());
    let att = wire::v0_tdx(&tdx_quote(&pkis, &events, rd), &events, &rd, VM_CONFIG);
    let cert = attest_testkit::dstack::ra_cert(key, &temp.cert, &temp.key, &[(8, att)]);
    let guest = client(
        &temp.root,
        Some((vec![cert.der.clone()], cert.key_der.clone())),
    );
    let (status, v) = call(
        &guest,
        &url,
        "GetAppKey",
        json!({"api_version": 1, "vm_config": VM_CONFIG}).to_string(),
    )
    .await;
    server.stop().await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("the attestation's runtime events include \"key-provider\""),
        "{v}"
    );
    assert!(v.get("disk_crypt_key").is_none());
}
