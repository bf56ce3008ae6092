//! Replicas and attestation results, end to end on real servers on
//! loopback with testkit evidence: a replica KMS onboards from a running one
//! (`GetRootKeys`, judged under the policy's `kms` role) and serves the same
//! keys and challenges; relying parties check the KMS's signed attestation
//! results (EAR) with an independent JWT library and the published key.
#![allow(clippy::unwrap_used, missing_docs)]

use attest_core::binding::app_key_report_data;
use attest_testkit::dstack::App;
use attest_testkit::snp::ReportFields;
use kms::demo::*;
use kms::onboard::{OnboardFrom, Onboarded, onboard};
use kms_client::{ClientError, KmsClient, proto};

async fn keys_for(server: &Server, pkis: &Pkis, app: &App) -> kms_client::AppKeys {
    let mut c = KmsClient::connect(&server.url).await.unwrap();
    c.get_app_key(&server.key_provider_id, |rd| {
        let e = pkis.tdx_evidence(app, rd, false);
        async move { Ok(e) }
    })
    .await
    .unwrap()
}

fn from(server: &Server) -> OnboardFrom {
    OnboardFrom {
        url: server.url.clone(),
        key_provider_id: server.key_provider_id.clone(),
        ca_cert: None,
    }
}

fn audit_records(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A replica whose evidence shows the approved KMS deployment gets the
/// source's root keys, serves the same key provider id, the same app keys
/// and accepts the source's challenges; both sides audit; a restart keeps
/// the keys without asking again.
#[tokio::test]
async fn onboard_a_replica_that_serves_the_same_keys() {
    let pkis = Pkis::new();
    let app = App::example();
    let source_dir = tempfile::tempdir().unwrap();
    let source = Server::start(source_dir.path(), &pkis, &app).await.unwrap();

    let replica_dir = tempfile::tempdir().unwrap();
    let data = replica_dir.path().join("data");
    let replica_audit = data.join("replica-onboard.jsonl");
    let done = onboard(&data, &replica_audit, &from(&source), |rd| {
        let e = pkis.tdx_evidence(&kms_app(), rd, false);
        async move { Ok(e) }
    })
    .await
    .unwrap();
    assert!(matches!(done, Onboarded::Received(_)));
    // The keys are private files.
    for f in ["root-ca.key", "root-k256.key", "root-secret"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(data.join(f)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }

    let replica = Server::start(replica_dir.path(), &pkis, &app)
        .await
        .unwrap();
    assert_eq!(replica.key_provider_id, source.key_provider_id);
    let (a, b) = (
        keys_for(&source, &pkis, &app).await,
        keys_for(&replica, &pkis, &app).await,
    );
    assert_eq!(*a.disk_crypt_key, *b.disk_crypt_key);
    assert_eq!(*a.env_crypt_key, *b.env_crypt_key);
    assert_eq!(*a.k256_key, *b.k256_key);
    assert_eq!(a.ca_cert, b.ca_cert);

    // A challenge from the source is good at the replica (one root secret).
    let mut c = KmsClient::connect(&source.url).await.unwrap();
    let challenge = c
        .raw()
        .get_challenge(proto::GetChallengeRequest {})
        .await
        .unwrap()
        .into_inner()
        .challenge;
    let (_, pk) = kms_client::seal::client_keypair();
    let rd = app_key_report_data(&pk, &challenge).unwrap();
    let mut r = KmsClient::connect(&replica.url).await.unwrap();
    r.raw()
        .get_app_key(proto::GetAppKeyRequest {
            evidence: Some(proto::Evidence::from(&pkis.tdx_evidence(&app, rd, false))),
            client_public_key: pk.to_vec(),
            challenge,
        })
        .await
        .unwrap();

    // Both sides audited the onboarding.
    let source_records = audit_records(&source_dir.path().join("data").join("audit.jsonl"));
    let released: Vec<_> = source_records
        .iter()
        .filter(|r| r["purpose"] == "root_keys")
        .collect();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0]["decision"], "allow");
    assert_eq!(released[0]["app_id"], hex::encode(kms_app().app_id));
    let replica_records = audit_records(&replica_audit);
    assert_eq!(replica_records.len(), 1);
    assert_eq!(replica_records[0]["front_end"], "onboard");
    assert_eq!(replica_records[0]["decision"], "received");
    assert!(
        replica_records[0]["reasons"][0]
            .as_str()
            .unwrap()
            .contains(&source.key_provider_id)
    );

    // A restart keeps the keys: no request is made (the source is gone).
    replica.stop().await;
    source.stop().await;
    let unreachable = OnboardFrom {
        url: "http://127.0.0.1:9".into(),
        key_provider_id: b.key_provider_id.clone(),
        ca_cert: None,
    };
    let kept = onboard(&data, &replica_audit, &unreachable, |_| async {
        Err(ClientError::Evidence("not asked".into()))
    })
    .await
    .unwrap();
    assert!(matches!(kept, Onboarded::AlreadyHeld(_)));
    let restarted = Server::start(replica_dir.path(), &pkis, &app)
        .await
        .unwrap();
    assert_eq!(restarted.key_provider_id, b.key_provider_id);
    restarted.stop().await;
    // Keys of another key provider in place: refused, not replaced.
    let other = OnboardFrom {
        key_provider_id: "3059".into(),
        ..unreachable
    };
    let err = onboard(&data, &replica_audit, &other, |_| async {
        Err(ClientError::Evidence("not asked".into()))
    })
    .await
    .unwrap_err();
    assert!(err.contains("not of 3059; refusing to start"), "{err}");
}

/// Whoever answers in place of the expected KMS (here another genuine KMS,
/// with its own keys, at the URL the replica was given) cannot hand the
/// replica its keys: the answer is not the expected key provider's.
#[tokio::test]
async fn onboard_refuses_an_impostor_with_other_keys() {
    let pkis = Pkis::new();
    let app = App::example();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let expected = Server::start(d1.path(), &pkis, &app).await.unwrap();
    let impostor = Server::start(d2.path(), &pkis, &app).await.unwrap();
    let replica = tempfile::tempdir().unwrap();
    let data = replica.path().join("data");
    let spoofed = OnboardFrom {
        url: impostor.url.clone(),
        ..from(&expected)
    };
    let err = onboard(&data, &data.join("audit.jsonl"), &spoofed, |rd| {
        let e = pkis.tdx_evidence(&kms_app(), rd, false);
        async move { Ok(e) }
    })
    .await
    .unwrap_err();
    assert!(
        err.contains(&format!(
            "untrusted answer: the answer names key provider {}, not the expected one",
            impostor.key_provider_id
        )),
        "{err}"
    );
    // Nothing was written.
    assert!(!data.join("root-ca.key").exists());
    // A response for the right key provider but re-signed by another key
    // (tampering in between) fails the signature check.
    let aad = [7u8; 32];
    assert!(
        kms_client::seal::verify_response(
            &expected.key_provider_id,
            &aad,
            b"enc",
            b"sealed",
            &[0x30, 0]
        )
        .is_err()
    );
    expected.stop().await;
    impostor.stop().await;
}

/// Only the `kms` role's deployments and images get the root keys: an app
/// on the approved image is refused, and so is the KMS deployment on an
/// image the registry does not know; the KMS deployment gets no app keys.
#[tokio::test]
async fn onboard_refuses_what_the_kms_role_does_not_list() {
    let pkis = Pkis::new();
    let app = App::example();
    let dir = tempfile::tempdir().unwrap();
    let source = Server::start(dir.path(), &pkis, &app).await.unwrap();
    let replica = tempfile::tempdir().unwrap();
    let data = replica.path().join("data");
    let refused = |code: tonic::Code, needle: &'static str| {
        move |e: String| {
            assert!(e.contains(&format!("{code:?}")), "{e}");
            assert!(e.contains(needle), "{e}");
        }
    };

    // An app (listed in [[apps]], not in [[kms.apps]]).
    let err = onboard(&data, &data.join("a.jsonl"), &from(&source), |rd| {
        let e = pkis.tdx_evidence(&app, rd, false);
        async move { Ok(e) }
    })
    .await
    .unwrap_err();
    refused(tonic::Code::PermissionDenied, "kms.apps: found")(err);

    // The KMS deployment on an unregistered image (SNP measurement).
    let err = onboard(&data, &data.join("a.jsonl"), &from(&source), |rd| {
        let e = pkis.snp_evidence(
            &kms_app(),
            rd,
            ReportFields {
                measurement: [0x99; 48],
                ..Default::default()
            },
        );
        async move { Ok(e) }
    })
    .await
    .unwrap_err();
    refused(tonic::Code::PermissionDenied, "kms.os_images: found none")(err);
    assert!(!data.join("root-ca.key").exists());

    // Evidence bound for GetAppKey is not accepted for GetRootKeys.
    let mut c = KmsClient::connect(&source.url).await.unwrap();
    let challenge = c
        .raw()
        .get_challenge(proto::GetChallengeRequest {})
        .await
        .unwrap()
        .into_inner()
        .challenge;
    let (_, pk) = kms_client::seal::client_keypair();
    let app_bound = app_key_report_data(&pk, &challenge).unwrap();
    let st = c
        .raw()
        .get_root_keys(proto::GetRootKeysRequest {
            evidence: Some(proto::Evidence::from(&pkis.tdx_evidence(
                &kms_app(),
                app_bound,
                false,
            ))),
            client_public_key: pk.to_vec(),
            challenge,
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::PermissionDenied);
    assert!(
        st.message().contains("binding_mismatch"),
        "{}",
        st.message()
    );

    // The KMS deployment is not an app.
    let mut c = KmsClient::connect(&source.url).await.unwrap();
    let err = c
        .get_app_key(&source.key_provider_id, |rd| {
            let e = pkis.tdx_evidence(&kms_app(), rd, false);
            async move { Ok(e) }
        })
        .await
        .unwrap_err();
    match err {
        ClientError::Refused { code, message } => {
            assert_eq!(code, tonic::Code::PermissionDenied);
            assert!(message.contains("apps: found"), "{message}");
            assert!(!message.contains("kms."), "{message}");
        }
        other => panic!("{other}"),
    }

    // Every refusal was audited at the source, under root_keys.
    let records = audit_records(&dir.path().join("data").join("audit.jsonl"));
    let denied: Vec<_> = records
        .iter()
        .filter(|r| r["purpose"] == "root_keys" && r["decision"] == "deny")
        .collect();
    assert_eq!(denied.len(), 2, "{records:?}");
    source.stop().await;
}

/// Checks an EAR with jwt-compact (an implementation independent of the
/// one that signed it) and the JWK the KMS publishes; returns the claims.
fn check_ear(ear: &str, jwk_json: &str) -> serde_json::Value {
    check_ear_at(ear, jwk_json).0
}

/// [`check_ear`], with `iat` (jwt-compact reads it into its own field).
fn check_ear_at(ear: &str, jwk_json: &str) -> (serde_json::Value, i64) {
    use jwt_compact::AlgorithmExt;
    let jwk: jwt_compact::jwk::JsonWebKey<'_> = serde_json::from_str(jwk_json).unwrap();
    let key = p256::ecdsa::VerifyingKey::try_from(&jwk).unwrap();
    let token = jwt_compact::UntrustedToken::new(ear).unwrap();
    assert_eq!(token.algorithm(), "ES256");
    let published: serde_json::Value = serde_json::from_str(jwk_json).unwrap();
    assert_eq!(token.header().key_id.as_deref(), published["kid"].as_str());
    let checked = jwt_compact::alg::Es256
        .validator::<serde_json::Value>(&key)
        .validate(&token)
        .unwrap();
    let iat = checked.claims().issued_at.unwrap().timestamp();
    (checked.claims().custom.clone(), iat)
}

async fn attest(
    server: &Server,
    evidence: impl FnOnce(attest_core::ReportData) -> attest_core::Evidence,
) -> Result<String, ClientError> {
    let mut c = KmsClient::connect(&server.url).await?;
    c.attest(|rd| {
        let e = evidence(rd);
        async move { Ok(e) }
    })
    .await
}

/// `Attest` answers a signed attestation result that an independent JWT
/// library verifies with the key in GetMeta: `affirming` for an allowed,
/// up-to-date app, its identity as annotated evidence, the challenge as the
/// nonce, the requester's key attested; `contraindicated` (with the failed
/// rules, not the policy's values) for a denied one; an error, and no
/// result, for evidence that does not verify. Each is audited.
#[tokio::test]
async fn attestation_results_verify_with_an_independent_jwt_library() {
    use base64::Engine;
    let pkis = Pkis::new();
    let app = App::example();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &pkis, &app).await.unwrap();
    let meta = KmsClient::connect(&server.url)
        .await
        .unwrap()
        .meta()
        .await
        .unwrap();
    assert!(!meta.ear_jwk.is_empty());

    let ear = attest(&server, |rd| pkis.tdx_evidence(&app, rd, false))
        .await
        .unwrap();
    let (c, iat) = check_ear_at(&ear, &meta.ear_jwk);
    assert_eq!(c["eat_profile"], "tag:github.com,2023:veraison/ear");
    assert_eq!(c["ear.verifier-id"]["developer"], "confidential-kms");
    let now = attest_core::UnixTime::now().as_secs() as i64;
    assert!((iat - now).abs() < 60, "iat {iat}, now {now}");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    assert_eq!(
        b64.decode(c["eat_nonce"].as_str().unwrap()).unwrap().len(),
        57
    );
    let s = &c["submods"]["tdx"];
    assert_eq!(s["ear.status"], "affirming");
    assert_eq!(
        s["ear.veraison.annotated-evidence"]["app"]["app_id"],
        hex::encode(app.app_id)
    );
    assert_eq!(
        s["ear.veraison.annotated-evidence"]["tcb"]["status"],
        "UpToDate"
    );
    assert!(
        s["ear.appraisal-policy-id"]
            .as_str()
            .unwrap()
            .starts_with("policy:toml:")
    );
    assert_eq!(
        b64.decode(s["ear.veraison.key-attestation"]["akpub"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );

    // A denied app: a result, contraindicated, naming what it presented.
    let mut rogue = app.clone();
    rogue.compose_hash[0] ^= 1;
    let ear = attest(&server, |rd| {
        pkis.snp_evidence(&rogue, rd, ReportFields::default())
    })
    .await
    .unwrap();
    let c = check_ear(&ear, &meta.ear_jwk);
    let s = &c["submods"]["sev-snp"];
    assert_eq!(s["ear.status"], "contraindicated");
    let reasons = s["ear.veraison.policy-claims"]["reasons"].to_string();
    assert!(reasons.contains("apps.compose_hashes: found"), "{reasons}");
    assert!(
        !reasons.contains(&hex::encode(app.compose_hash)),
        "{reasons}"
    );

    // Evidence that does not verify: an error, no result.
    let err = attest(&server, |rd| {
        let mut e = pkis.snp_evidence(&app, rd, ReportFields::default());
        e.quote[0x90] ^= 1;
        e
    })
    .await
    .unwrap_err();
    match err {
        ClientError::Refused { code, message } => {
            assert_eq!(code, tonic::Code::PermissionDenied);
            assert!(message.contains("bad_signature"), "{message}");
        }
        other => panic!("{other}"),
    }

    // A result signed by another key fails the check.
    let mut forged: Vec<&str> = ear.split('.').collect();
    let other = attest(&server, |rd| pkis.tdx_evidence(&app, rd, false))
        .await
        .unwrap();
    let other_sig = other.rsplit('.').next().unwrap();
    forged[2] = other_sig;
    let forged = forged.join(".");
    {
        use jwt_compact::AlgorithmExt;
        let jwk: jwt_compact::jwk::JsonWebKey<'_> = serde_json::from_str(&meta.ear_jwk).unwrap();
        let key = p256::ecdsa::VerifyingKey::try_from(&jwk).unwrap();
        let token = jwt_compact::UntrustedToken::new(&forged).unwrap();
        assert!(
            jwt_compact::alg::Es256
                .validator::<serde_json::Value>(&key)
                .validate(&token)
                .is_err()
        );
    }

    // Audited: two appraisals (allow, deny) under `attestation`.
    let records = audit_records(&dir.path().join("data").join("audit.jsonl"));
    let appraisals: Vec<_> = records
        .iter()
        .filter(|r| r["purpose"] == "attestation")
        .map(|r| r["decision"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(appraisals, ["allow", "deny", "error", "allow"]);
    server.stop().await;
}
