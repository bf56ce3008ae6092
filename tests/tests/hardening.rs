//! The KMS under the first attacker's review, end to end on a real server
//! with the testkit's fake roots: what an unauthenticated caller can make
//! it write, remember or count is bounded, and a release that cannot be
//! audited does not happen.
#![allow(clippy::unwrap_used, missing_docs)]

use attest_testkit::dstack::App;
use kms::demo::*;
use kms_client::{ClientError, KmsClient, proto};

async fn keys_for(
    server: &Server,
    pkis: &Pkis,
    app: &App,
) -> Result<kms_client::AppKeys, ClientError> {
    let mut c = KmsClient::connect(&server.url).await?;
    c.get_app_key(&server.key_provider_id, |rd| {
        let e = pkis.tdx_evidence(app, rd, false);
        async move { Ok(e) }
    })
    .await
}

/// As Vault refuses requests no audit device can record: with an audit log
/// that cannot be written (a full disk), no key is released.
#[tokio::test]
async fn a_release_that_cannot_be_audited_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let server =
        Server::start_configured(dir.path(), &pkis, &app, false, "audit_log = \"/dev/full\"")
            .await
            .unwrap();
    match keys_for(&server, &pkis, &app).await {
        Err(ClientError::Refused { code, message }) => {
            assert_eq!(code, tonic::Code::Unavailable, "{message}");
            assert!(message.contains("audit log"), "{message}");
        }
        Ok(_) => panic!("keys released without an audit record"),
        Err(e) => panic!("unexpected {e}"),
    }
    server.stop().await;
}

/// Requests naming made-up platforms, with bad challenges or garbage
/// evidence, leave the metrics page the size it was: every label comes
/// from a closed set.
#[tokio::test]
async fn unauthenticated_requests_cannot_grow_the_metrics_page() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let server = Server::start(dir.path(), &pkis, &app).await.unwrap();
    let mut c = KmsClient::connect(&server.url).await.unwrap();
    let challenge = c
        .raw()
        .get_challenge(proto::GetChallengeRequest {})
        .await
        .unwrap()
        .into_inner()
        .challenge;
    let send = |platform: String, challenge: Vec<u8>| {
        let mut c = c.clone();
        async move {
            c.raw()
                .get_app_key(proto::GetAppKeyRequest {
                    evidence: Some(proto::Evidence {
                        platform,
                        quote: vec![0; 64],
                        ..Default::default()
                    }),
                    client_public_key: vec![0; 32],
                    challenge,
                })
                .await
                .unwrap_err()
        }
    };
    for i in 0..300 {
        send(format!("forged-{i}"), vec![1; 57]).await;
    }
    let after_forged = server.state.render_metrics();
    for i in 300..600 {
        // A valid challenge reaches the verifiers: unknown platform.
        send(format!("forged-{i}"), challenge.clone()).await;
        send("tdx".into(), challenge.clone()).await;
    }
    let text = server.state.render_metrics();
    assert!(!text.contains("forged"), "{text}");
    assert!(
        text.contains("kms_get_app_key_requests_total{platform=\"other\",outcome=\"deny\"} 300"),
        "{text}"
    );
    assert!(
        text.contains(
            "kms_get_app_key_requests_total{platform=\"other\",outcome=\"unsupported\"} 300"
        ),
        "{text}"
    );
    assert!(
        text.len() < after_forged.len() + 4096,
        "{} -> {}",
        after_forged.len(),
        text.len()
    );
    server.stop().await;
}

/// `GetAppEnvEncryptPubKey` takes any app id without attestation: those
/// requests use a cache of their own and cannot evict attested apps' keys.
#[tokio::test]
async fn env_key_requests_cannot_evict_attested_keys() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let server = Server::start(dir.path(), &pkis, &app).await.unwrap();
    keys_for(&server, &pkis, &app).await.unwrap();
    assert_eq!(server.state.cached_app_keys(), 1);
    for i in 0..12_000u32 {
        let mut id = [0u8; 20];
        id[..4].copy_from_slice(&i.to_be_bytes());
        server
            .state
            .env_public_key(&attest_core::AppId(id))
            .unwrap();
    }
    assert_eq!(server.state.cached_app_keys(), 1);
    // The published key is still the attested app's.
    let mut c = KmsClient::connect(&server.url).await.unwrap();
    let pk = c
        .raw()
        .get_app_env_encrypt_pub_key(proto::GetAppEnvEncryptPubKeyRequest {
            app_id: app.app_id.to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    let keys = keys_for(&server, &pkis, &app).await.unwrap();
    assert_eq!(
        pk.public_key,
        kms::service::kdf::x25519_public(&<[u8; 32]>::try_from(&keys.env_crypt_key[..]).unwrap())
    );
    server.stop().await;
}

/// Clients that speak only `grpc.reflection.v1alpha` (grpcio's reflection
/// client, older grpcurl, GUI clients) list the service.
#[tokio::test]
async fn reflection_v1alpha_lists_the_service() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let server = Server::start(dir.path(), &pkis, &app).await.unwrap();
    let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected {resp:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"kms.v1.Kms".to_owned()), "{names:?}");
    server.stop().await;
}

/// Refusals of evidence that never verified come from anyone (the
/// challenge is free and reusable). A burst of them is recorded, the rest
/// only counted, and the count goes into the next record: garbage cannot
/// fill the disk the audit log and root keys share (once full, every
/// release would be refused). Decisions about verified evidence are all
/// recorded.
#[tokio::test]
async fn unauthenticated_refusals_cannot_grow_the_audit_log_without_bound() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let server = Server::start(dir.path(), &pkis, &app).await.unwrap();
    let audit = dir.path().join("data").join("audit.jsonl");
    let lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let mut c = KmsClient::connect(&server.url).await.unwrap();
    let challenge = c
        .raw()
        .get_challenge(proto::GetChallengeRequest {})
        .await
        .unwrap()
        .into_inner()
        .challenge;
    let garbage = proto::GetAppKeyRequest {
        evidence: Some(proto::Evidence {
            platform: "tdx".into(),
            quote: vec![0; 64],
            ..Default::default()
        }),
        client_public_key: vec![0; 32],
        challenge: challenge.clone(),
    };
    let n = 2000;
    for _ in 0..n {
        let code = c
            .raw()
            .get_app_key(garbage.clone())
            .await
            .unwrap_err()
            .code();
        assert_eq!(code, tonic::Code::InvalidArgument);
    }
    let recorded = lines();
    assert!(
        (60..100).contains(&recorded.len()),
        "{n} garbage requests wrote {} records",
        recorded.len()
    );
    assert!(recorded.iter().all(|r| r["decision"] == "error"));

    // Every request is accounted for: recorded, or counted into the next
    // record written (here the one after a pause).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    c.raw().get_app_key(garbage).await.unwrap_err();
    let all = lines();
    let summary =
        "earlier refusals of unverified evidence were not recorded one by one (rate limit)";
    let dropped: usize = all
        .iter()
        .flat_map(|r| r["reasons"].as_array().unwrap().iter())
        .filter_map(|r| {
            r.as_str()?
                .strip_suffix(summary)?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .sum();
    assert!(dropped > 0);
    assert_eq!(dropped + all.len(), n + 1);
    assert!(all.last().unwrap()["reasons"].as_array().unwrap().len() == 2);

    // A verified app's release is still recorded at once.
    keys_for(&server, &pkis, &app).await.unwrap();
    assert_eq!(lines().pop().unwrap()["decision"], "allow");
    server.stop().await;
}
