//! The second review (an outside attacker): the roles a request is judged under and
//! the bindings that separate them: `GetAppKey` (app keys), `GetRootKeys`
//! (the policy's `kms` role), `Attest` (an attestation result, no keys).
//! Real servers on 127.0.0.1, testkit evidence.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::sync::Arc;

use attest_core::binding::{app_key_report_data, root_keys_report_data};
use attest_testkit::dstack::App;
use kms::demo::*;
use kms::service::KmsState;
use kms_client::{ClientError, KmsClient, proto, seal};

/// A running KMS whose policy is a Rego module.
struct RegoServer {
    url: String,
    key_provider_id: String,
    state: Arc<KmsState>,
    stop: tokio::sync::oneshot::Sender<()>,
    join: tokio::task::JoinHandle<Result<(), String>>,
}

/// The Rego policy of this project's own Rego tests and docs
/// (`policy/tests/rego_policy.rs`, `policy/src/rego.rs`): an allowlist of
/// platforms, TCB, OS images and apps, written before the `kms` role
/// existed, so it never looks at `input.request.keys`.
fn app_rego(app: &App) -> String {
    format!(
        r#"
package kms

default allow := false

allow if count(deny_reasons) == 0

apps := {{"{app}": {{"{compose}"}}}}

deny_reasons contains "debug TEE" if input.debug

deny_reasons contains msg if {{
    not input.platform in {{"tdx", "sev-snp"}}
    msg := sprintf("platform %s not allowed", [input.platform])
}}

deny_reasons contains msg if {{
    input.tcb.status != "UpToDate"
    msg := sprintf("tcb.status %s not allowed", [input.tcb.status])
}}

deny_reasons contains "os_image_hash not allowed" if not input.app.os_image_hash in {{"{OS_IMAGE}"}}

deny_reasons contains msg if {{
    not apps[input.app.app_id]
    msg := sprintf("app %s not listed", [input.app.app_id])
}}

deny_reasons contains msg if {{
    hashes := apps[input.app.app_id]
    not input.app.compose_hash in hashes
    msg := sprintf("compose hash %s not allowed", [input.app.compose_hash])
}}
"#,
        app = hex::encode(app.app_id),
        compose = hex::encode(app.compose_hash),
    )
}

async fn start_rego(dir: &Path, pkis: &Pkis, rego: &str) -> RegoServer {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("policy.rego"), rego).unwrap();
    std::fs::write(dir.join("images.toml"), registry()).unwrap();
    let mut config = toml_config(dir).unwrap();
    config.policy = policy::PolicySpec::Rego {
        file: "policy.rego".into(),
        data: None,
        eval_limit_ms: None,
    };
    let (keys, _) = kms::service::keys::RootKeys::load_or_generate(&dir.join("data")).unwrap();
    let key_provider_id = keys.key_provider_id();
    let platforms = kms::platforms::Platforms {
        verifiers: pkis.verifiers(),
        collateral_cache: None,
    };
    let state = KmsState::from_config(&config, dir, keys, platforms).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let served = state.clone();
    let cfg = kms::service::listener::ListenerConfig::plaintext(config.max_request_bytes);
    let join = tokio::spawn(async move {
        kms::service::listener::serve_with(listener, served, &cfg, async move {
            let _ = rx.await;
        })
        .await
    });
    RegoServer {
        url,
        key_provider_id,
        state,
        stop,
        join,
    }
}

impl RegoServer {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.join.await;
    }
}

/// Second review, F2: under a Rego policy (`[policy] type = "rego"`) the `kms`
/// role does not exist unless the module happens to test
/// `input.request.keys`: the project's own sample module, an app
/// allowlist, allows `GetRootKeys` for an ordinary app CVM, which then
/// receives the root CA key, the root k256 key and the root secret.
#[tokio::test]
async fn an_app_allowed_by_a_rego_policy_gets_no_root_keys() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let server = start_rego(dir.path(), &pkis, &app_rego(&app)).await;

    // The module does what it was written for: the app gets its keys.
    let mut c = KmsClient::connect(&server.url).await.unwrap();
    c.get_app_key(&server.key_provider_id, |rd| {
        let e = pkis.tdx_evidence(&app, rd, false);
        async move { Ok(e) }
    })
    .await
    .unwrap();

    // The same app, an ordinary CVM, asks for the root keys.
    let mut c = KmsClient::connect(&server.url).await.unwrap();
    let got = c
        .get_root_keys(&server.key_provider_id, |rd| {
            let e = pkis.tdx_evidence(&app, rd, false);
            async move { Ok(e) }
        })
        .await;
    let root_secret = *server.state.keys.root_secret();
    server.stop().await;
    match got {
        Err(ClientError::Refused { code, message }) => {
            assert_eq!(code, tonic::Code::PermissionDenied);
            assert!(
                message.contains("declares no `allow_root_keys` rule"),
                "{message}"
            );
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(set) => panic!(
            "an app CVM allowed by a Rego app policy obtained the root keys (root secret \
             matches: {})",
            set.root_secret.as_slice() == &root_secret[..]
        ),
    }
}

/// Second review, F3: `Attest` and `GetAppKey` share one binding
/// (`kms-app-key/v1` over a client key and a challenge). A relying party
/// that asks a CVM to prove itself for an attestation result, bound to
/// the relying party's own key (the EAR's key attestation names "the
/// requester's key"), can replay that very evidence to `GetAppKey` and
/// open the app's disk, env and k256 keys with its own secret.
#[tokio::test]
async fn evidence_made_for_an_attestation_result_releases_no_app_keys() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let server = Server::start(dir.path(), &pkis, &app).await.unwrap();

    // The relying party: a challenge from the KMS and a key of its own;
    // the CVM attests bound to both, as `Attest` requires.
    let mut rp = KmsClient::connect(&server.url).await.unwrap();
    let challenge = rp
        .raw()
        .get_challenge(proto::GetChallengeRequest {})
        .await
        .unwrap()
        .into_inner()
        .challenge;
    let (rp_secret, rp_public) = seal::client_keypair();
    // Evidence bound the GetAppKey way is not an attestation request...
    let app_bound = pkis.tdx_evidence(
        &app,
        app_key_report_data(&rp_public, &challenge).unwrap(),
        false,
    );
    let st = rp
        .raw()
        .attest(proto::AttestRequest {
            evidence: Some(proto::Evidence::from(&app_bound)),
            client_public_key: rp_public.to_vec(),
            challenge: challenge.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::PermissionDenied, "{st}");
    assert!(st.message().contains("binding_mismatch"), "{st}");
    // ...and evidence made for a result (its own label) releases no keys.
    let rd = attest_core::binding::attest_report_data(&rp_public, &challenge).unwrap();
    let evidence = pkis.tdx_evidence(&app, rd, false);
    let ear = rp
        .raw()
        .attest(proto::AttestRequest {
            evidence: Some(proto::Evidence::from(&evidence)),
            client_public_key: rp_public.to_vec(),
            challenge: challenge.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .ear;
    assert!(!ear.is_empty());

    // The same evidence, key and challenge, to GetAppKey.
    let got = rp
        .raw()
        .get_app_key(proto::GetAppKeyRequest {
            evidence: Some(proto::Evidence::from(&evidence)),
            client_public_key: rp_public.to_vec(),
            challenge,
        })
        .await;
    server.stop().await;
    match got {
        Err(st) => {
            assert_eq!(st.code(), tonic::Code::PermissionDenied, "{st}");
            assert!(st.message().contains("binding_mismatch"), "{st}");
        }
        Ok(resp) => {
            let resp = resp.into_inner();
            let aad = seal::request_aad(&evidence, &rp_public);
            let opened = kms_client::open_with_app_id(
                &rp_secret,
                &attest_core::AppId(app.app_id),
                &aad,
                &resp,
            );
            panic!(
                "evidence produced for Attest was accepted by GetAppKey; the relying party opens \
                 the sealed app keys with its own secret: {}",
                opened.is_ok()
            );
        }
    }
}

/// Second review, F3 (held): the reverse direction between the key-releasing
/// RPCs is closed: evidence bound for `GetAppKey` (`kms-app-key/v1`) is
/// refused by `GetRootKeys` (`kms-root-keys/v1`) even for the KMS
/// deployment's own identity, and evidence bound for `GetRootKeys` is
/// refused by `GetAppKey`.
#[tokio::test]
async fn app_key_and_root_key_evidence_do_not_cross_over() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let server = Server::start(dir.path(), &pkis, &App::example())
        .await
        .unwrap();
    let mut c = KmsClient::connect(&server.url).await.unwrap();
    let challenge = c
        .raw()
        .get_challenge(proto::GetChallengeRequest {})
        .await
        .unwrap()
        .into_inner()
        .challenge;
    let (_, pk) = seal::client_keypair();
    let app_rd = app_key_report_data(&pk, &challenge).unwrap();
    let root_rd = root_keys_report_data(&pk, &challenge).unwrap();
    assert_ne!(app_rd, root_rd);

    let e = pkis.tdx_evidence(&kms_app(), app_rd, false);
    let st = c
        .raw()
        .get_root_keys(proto::GetRootKeysRequest {
            evidence: Some(proto::Evidence::from(&e)),
            client_public_key: pk.to_vec(),
            challenge: challenge.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::PermissionDenied);
    assert!(st.message().contains("binding_mismatch"), "{st}");

    let e = pkis.tdx_evidence(&App::example(), root_rd, false);
    let st = c
        .raw()
        .get_app_key(proto::GetAppKeyRequest {
            evidence: Some(proto::Evidence::from(&e)),
            client_public_key: pk.to_vec(),
            challenge,
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::PermissionDenied);
    assert!(st.message().contains("binding_mismatch"), "{st}");
    server.stop().await;
}
