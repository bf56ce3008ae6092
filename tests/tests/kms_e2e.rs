//! The KMS end to end: a real gRPC server on 127.0.0.1 with the testkit's
//! fake vendor roots, TDX, SNP and Azure vTPM (SNP- and TDX-backed) CVMs of
//! one app through the one GetAppKey path, and every refusal.
#![allow(clippy::unwrap_used, missing_docs)]

use attest_core::binding::app_key_report_data;
use attest_core::{Evidence, ReportData, UnixTime};
use attest_testkit::dstack::App;
use attest_testkit::snp::ReportFields;
use kms::demo::*;
use kms_client::{ClientError, KmsClient, proto, seal};

async fn keys_for(
    server: &Server,
    pkis: &Pkis,
    app: &App,
    platform: &str,
) -> Result<kms_client::AppKeys, ClientError> {
    let mut c = KmsClient::connect(&server.url).await?;
    c.get_app_key(&server.key_provider_id, |rd| {
        let e = match platform {
            "tdx" => pkis.tdx_evidence(app, rd, false),
            "az-snp-vtpm" | "az-tdx-vtpm" => {
                pkis.vtpm_evidence(&attest_core::PlatformId::parse(platform).unwrap(), app, rd)
            }
            _ => pkis.snp_evidence(app, rd, ReportFields::default()),
        };
        async move { Ok(e) }
    })
    .await
}

fn code(e: ClientError) -> (tonic::Code, String) {
    match e {
        ClientError::Refused { code, message } => (code, message),
        other => panic!("expected a refusal, got {other}"),
    }
}

#[tokio::test]
async fn tdx_and_snp_of_one_app_get_the_same_app_keys() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let server = Server::start(dir.path(), &pkis, &app).await.unwrap();
    let tdx = keys_for(&server, &pkis, &app, "tdx").await.unwrap();
    let snp = keys_for(&server, &pkis, &app, "sev-snp").await.unwrap();
    assert_eq!(*tdx.k256_key, *snp.k256_key);
    assert_eq!(*tdx.env_crypt_key, *snp.env_crypt_key);
    assert_eq!(
        *tdx.disk_crypt_key, *snp.disk_crypt_key,
        "same app, same instance id"
    );
    assert_eq!(tdx.app_id, app.app_id);
    assert_eq!(tdx.os_image_hash, hex::decode(OS_IMAGE).unwrap());
    assert_eq!(tdx.key_provider_id, server.key_provider_id);
    assert_eq!(tdx.k256_signature, snp.k256_signature);
    assert!(tdx.ca_cert.starts_with("-----BEGIN CERTIFICATE-----"));
    // Debug output never shows secrets.
    assert!(!format!("{tdx:?}").contains(&hex::encode(&*tdx.k256_key)));

    // Another instance of the app: its own disk key, the app's shared keys.
    let mut other = app.clone();
    other.instance_id = Some([0x2e; 20]);
    let o = keys_for(&server, &pkis, &other, "sev-snp").await.unwrap();
    assert_ne!(*o.disk_crypt_key, *snp.disk_crypt_key);
    assert_eq!(*o.env_crypt_key, *snp.env_crypt_key);
    assert_eq!(*o.k256_key, *snp.k256_key);

    // The env public key the KMS publishes belongs to the env key it released.
    let mut raw = KmsClient::connect(&server.url).await.unwrap();
    let pk = raw
        .raw()
        .get_app_env_encrypt_pub_key(proto::GetAppEnvEncryptPubKeyRequest {
            app_id: app.app_id.to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        pk.public_key,
        kms::service::kdf::x25519_public(&<[u8; 32]>::try_from(&tdx.env_crypt_key[..]).unwrap())
    );
    assert_eq!(pk.signature.len(), 65);
    let meta = raw.meta().await.unwrap();
    assert_eq!(meta.key_provider_id, server.key_provider_id);
    assert_eq!(
        meta.platforms,
        ["az-snp-vtpm", "az-tdx-vtpm", "sev-snp", "tdx"]
    );
    assert_eq!(meta.policy_backend, "toml");
    server.stop().await;
}

#[tokio::test]
async fn azure_vtpm_cvms_of_the_app_get_the_same_keys_as_on_tdx_and_snp() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let server = Server::start(dir.path(), &pkis, &app).await.unwrap();
    let tdx = keys_for(&server, &pkis, &app, "tdx").await.unwrap();
    let snp = keys_for(&server, &pkis, &app, "sev-snp").await.unwrap();
    for platform in ["az-snp-vtpm", "az-tdx-vtpm"] {
        let k = keys_for(&server, &pkis, &app, platform)
            .await
            .unwrap_or_else(|e| panic!("{platform}: {e}"));
        for other in [&tdx, &snp] {
            assert_eq!(*k.k256_key, *other.k256_key, "{platform}");
            assert_eq!(*k.env_crypt_key, *other.env_crypt_key, "{platform}");
            assert_eq!(*k.disk_crypt_key, *other.disk_crypt_key, "{platform}");
            assert_eq!(k.k256_signature, other.k256_signature, "{platform}");
        }
        assert_eq!(k.app_id, app.app_id);
        assert_eq!(k.os_image_hash, hex::decode(OS_IMAGE).unwrap());
    }

    // Refusals through the same path.
    let mut c = KmsClient::connect(&server.url).await.unwrap();
    let az_snp = attest_core::PlatformId::parse("az-snp-vtpm").unwrap();
    let az_tdx = attest_core::PlatformId::parse("az-tdx-vtpm").unwrap();
    // A quote whose nonce is not SHA-256 of the request's report data (a
    // replayed quote over fresh claims).
    let (code_, msg) = code(
        c.get_app_key(&server.key_provider_id, |rd| {
            let e = pkis.vtpm_evidence_with(&az_snp, &app, rd, |f| f.nonce = Some(vec![7; 32]));
            async move { Ok(e) }
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(code_, tonic::Code::PermissionDenied, "{msg}");
    assert!(msg.contains("binding_mismatch"), "{msg}");
    // The claims' user-data of another request.
    let (code_, msg) = code(
        c.get_app_key(&server.key_provider_id, |rd| {
            let mut other = rd;
            other.0[0] ^= 1;
            let e = pkis.vtpm_evidence(&az_tdx, &app, other);
            async move { Ok(e) }
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(code_, tonic::Code::PermissionDenied, "{msg}");
    assert!(msg.contains("binding_mismatch"), "{msg}");
    // Another OS image: a boot PCR the registry does not list.
    let (code_, msg) = code(
        c.get_app_key(&server.key_provider_id, |rd| {
            let e = pkis.vtpm_evidence_with(&az_snp, &app, rd, |f| f.pcrs[4][0] ^= 1);
            async move { Ok(e) }
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(code_, tonic::Code::PermissionDenied, "{msg}");
    assert!(msg.contains("os_images"), "{msg}");
    // An unapproved compose hash in the app PCR's events.
    let mut rogue = app.clone();
    rogue.compose_hash[0] ^= 1;
    let (code_, msg) = code(
        keys_for(&server, &pkis, &rogue, "az-tdx-vtpm")
            .await
            .unwrap_err(),
    );
    assert_eq!(code_, tonic::Code::PermissionDenied, "{msg}");
    assert!(msg.contains("apps.compose_hashes"), "{msg}");
    // The event log of another app, over this app's PCR.
    let (code_, msg) = code(
        c.get_app_key(&server.key_provider_id, |rd| {
            let mut e = pkis.vtpm_evidence(&az_snp, &app, rd);
            e.event_log = rogue.vtpm_event_log(VTPM_APP_PCR).0;
            async move { Ok(e) }
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(code_, tonic::Code::PermissionDenied, "{msg}");
    assert!(msg.contains("identity_mismatch"), "{msg}");
    server.stop().await;
}

#[tokio::test]
async fn refusals_name_their_reason_with_the_right_code() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let server = Server::start(dir.path(), &pkis, &app).await.unwrap();
    let mut c = KmsClient::connect(&server.url).await.unwrap();

    // Debug CVM.
    let (code_, msg) = code(
        c.get_app_key(&server.key_provider_id, |rd| {
            let e = pkis.tdx_evidence(&app, rd, true);
            async move { Ok(e) }
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(code_, tonic::Code::PermissionDenied);
    assert!(msg.contains("insecure"), "{msg}");

    // Unapproved compose hash.
    let mut rogue = app.clone();
    rogue.compose_hash[0] ^= 1;
    let (code_, msg) = code(
        keys_for(&server, &pkis, &rogue, "sev-snp")
            .await
            .unwrap_err(),
    );
    assert_eq!(code_, tonic::Code::PermissionDenied);
    assert!(msg.contains("apps.compose_hashes"), "{msg}");
    // What it presented, not what the policy approves.
    assert!(msg.contains(&hex::encode(rogue.compose_hash)), "{msg}");
    assert!(!msg.contains(&hex::encode(app.compose_hash)), "{msg}");
    assert!(!msg.contains("expected"), "{msg}");

    // Unknown image: a measurement the registry does not list.
    let (code_, msg) = code(
        c.get_app_key(&server.key_provider_id, |rd| {
            let e = pkis.snp_evidence(
                &app,
                rd,
                ReportFields {
                    measurement: [0x99; 48],
                    ..Default::default()
                },
            );
            async move { Ok(e) }
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(code_, tonic::Code::PermissionDenied);
    assert!(msg.contains("os_images"), "{msg}");

    // Tampered evidence.
    let (code_, msg) = code(
        c.get_app_key(&server.key_provider_id, |rd| {
            let mut e = pkis.snp_evidence(&app, rd, ReportFields::default());
            e.quote[0x90] ^= 1;
            async move { Ok(e) }
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(code_, tonic::Code::PermissionDenied);
    assert!(msg.contains("bad_signature"), "{msg}");

    // Unsupported platform.
    let (code_, _) = code(
        c.get_app_key(&server.key_provider_id, |rd| {
            let mut e = pkis.snp_evidence(&app, rd, ReportFields::default());
            e.platform = attest_core::PlatformId::parse("nitro").unwrap();
            async move { Ok(e) }
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(code_, tonic::Code::Unimplemented);
    server.stop().await;
}

async fn raw_request(
    url: &str,
    evidence: Evidence,
    client_public_key: Vec<u8>,
    challenge: Vec<u8>,
) -> Result<proto::GetAppKeyResponse, tonic::Status> {
    let mut c = KmsClient::connect(url).await.unwrap();
    c.raw()
        .get_app_key(proto::GetAppKeyRequest {
            evidence: Some(proto::Evidence::from(&evidence)),
            client_public_key,
            challenge,
        })
        .await
        .map(|r| r.into_inner())
}

async fn challenge(url: &str) -> Vec<u8> {
    let mut c = KmsClient::connect(url).await.unwrap();
    c.raw()
        .get_challenge(proto::GetChallengeRequest {})
        .await
        .unwrap()
        .into_inner()
        .challenge
}

#[tokio::test]
async fn challenges_bindings_and_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let server = Server::start(dir.path(), &pkis, &app).await.unwrap();
    let (_, pk) = seal::client_keypair();

    // Expired: a challenge of this KMS issued two minutes ago.
    let keys = kms::service::keys::RootKeys::load_or_generate(&dir.path().join("data"))
        .unwrap()
        .0;
    let (old, _) = kms::service::challenge::Challenges::new(keys.root_secret(), 60)
        .issue(UnixTime::now().as_secs() - 120);
    let rd = app_key_report_data(&pk, &old).unwrap();
    let st = raw_request(
        &server.url,
        pkis.snp_evidence(&app, rd, ReportFields::default()),
        pk.to_vec(),
        old,
    )
    .await
    .unwrap_err();
    assert_eq!(st.code(), tonic::Code::PermissionDenied);
    assert!(
        st.message().starts_with("challenge expired"),
        "{}",
        st.message()
    );

    // From another KMS.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Server::start(other_dir.path(), &pkis, &app).await.unwrap();
    let foreign = challenge(&other.url).await;
    let rd = app_key_report_data(&pk, &foreign).unwrap();
    let st = raw_request(
        &server.url,
        pkis.snp_evidence(&app, rd, ReportFields::default()),
        pk.to_vec(),
        foreign,
    )
    .await
    .unwrap_err();
    assert_eq!(st.code(), tonic::Code::PermissionDenied);
    assert!(st.message().contains("bad MAC"), "{}", st.message());
    other.stop().await;

    // Replay: evidence bound to another public key.
    let ch = challenge(&server.url).await;
    let (_, other_pk) = seal::client_keypair();
    let rd = app_key_report_data(&other_pk, &ch).unwrap();
    let st = raw_request(
        &server.url,
        pkis.tdx_evidence(&app, rd, false),
        pk.to_vec(),
        ch,
    )
    .await
    .unwrap_err();
    assert_eq!(st.code(), tonic::Code::PermissionDenied);
    assert!(
        st.message().contains("binding_mismatch"),
        "{}",
        st.message()
    );

    // Malformed: a 31-byte public key; missing evidence.
    let ch = challenge(&server.url).await;
    let st = raw_request(
        &server.url,
        pkis.tdx_evidence(&app, ReportData([0; 64]), false),
        vec![1; 31],
        ch.clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(st.code(), tonic::Code::InvalidArgument);
    let mut c = KmsClient::connect(&server.url).await.unwrap();
    let st = c
        .raw()
        .get_app_key(proto::GetAppKeyRequest {
            evidence: None,
            client_public_key: pk.to_vec(),
            challenge: ch,
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::InvalidArgument);

    // Oversized: more than 256 KiB.
    let ch = challenge(&server.url).await;
    let mut e = pkis.tdx_evidence(&app, ReportData([0; 64]), false);
    e.event_log = vec![b' '; 300 * 1024];
    let st = raw_request(&server.url, e, pk.to_vec(), ch)
        .await
        .unwrap_err();
    assert!(
        matches!(
            st.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{st:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_pinned_client_rejects_another_kms() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let server = Server::start(dir.path(), &pkis, &app).await.unwrap();
    let impostor = "3059301306072a8648ce3d020106082a8648ce3d030107034200040000";
    let mut c = KmsClient::connect(&server.url).await.unwrap();
    let err = c
        .get_app_key(impostor, |rd| {
            let e = pkis.tdx_evidence(&app, rd, false);
            async move { Ok(e) }
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Untrusted(_)), "{err}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = std::sync::Arc::new(Pkis::new());
    let app = App::example();
    let server = Server::start(dir.path(), &pkis, &app).await.unwrap();
    let want = keys_for(&server, &pkis, &app, "tdx").await.unwrap();
    let want_k256 = want.k256_key.to_vec();
    let client = KmsClient::connect(&server.url).await.unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let mut c = client.clone();
            let pkis = pkis.clone();
            let app = app.clone();
            let kp = server.key_provider_id.clone();
            tokio::spawn(async move {
                c.get_app_key(&kp, |rd| {
                    let e = if i % 2 == 0 {
                        pkis.tdx_evidence(&app, rd, false)
                    } else {
                        pkis.snp_evidence(&app, rd, ReportFields::default())
                    };
                    async move { Ok(e) }
                })
                .await
            })
        })
        .collect();
    for t in tasks {
        let k = t.await.unwrap().unwrap();
        assert_eq!(k.k256_key.to_vec(), want_k256);
    }
    server.stop().await;
}

#[tokio::test]
async fn restarts_and_replicas_serve_the_same_keys() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let first = Server::start(dir.path(), &pkis, &app).await.unwrap();
    let before = keys_for(&first, &pkis, &app, "sev-snp").await.unwrap();

    // A second replica on the same data directory, running at the same time.
    let second = Server::start(dir.path(), &pkis, &app).await.unwrap();
    assert_eq!(second.key_provider_id, first.key_provider_id);
    // It accepts the first one's challenge.
    let ch = challenge(&first.url).await;
    let (sk, pk) = seal::client_keypair();
    let rd = app_key_report_data(&pk, &ch).unwrap();
    let e = pkis.snp_evidence(&app, rd, ReportFields::default());
    let aad = seal::request_aad(&e, &pk);
    let resp = raw_request(&second.url, e.clone(), pk.to_vec(), ch)
        .await
        .unwrap();
    seal::verify_response(
        &first.key_provider_id,
        &aad,
        &resp.encapsulated_key,
        &resp.sealed,
        &resp.signature,
    )
    .unwrap();
    let app_id = kms_client::app_id_of(&e).unwrap();
    let opened = kms_client::open_with_app_id(&sk, &app_id, &aad, &resp).unwrap();
    let keys = <proto::AppKeys as prost::Message>::decode(opened.as_slice()).unwrap();
    assert_eq!(keys.k256_key, before.k256_key.to_vec());
    second.stop().await;
    first.stop().await;

    // A restart keeps the keys.
    let again = Server::start(dir.path(), &pkis, &app).await.unwrap();
    let after = keys_for(&again, &pkis, &app, "tdx").await.unwrap();
    assert_eq!(*after.k256_key, *before.k256_key);
    assert_eq!(*after.disk_crypt_key, *before.disk_crypt_key);
    again.stop().await;

    // The audit log recorded decisions without key material.
    let audit = std::fs::read_to_string(dir.path().join("data/audit.jsonl")).unwrap();
    assert!(audit.lines().count() >= 3);
    let first_line: serde_json::Value =
        serde_json::from_str(audit.lines().next().unwrap()).unwrap();
    assert_eq!(first_line["decision"], "allow");
    assert_eq!(first_line["app_id"], hex::encode(app.app_id));
    assert!(!audit.contains(&hex::encode(&*before.k256_key)));
}

#[tokio::test]
async fn tls_with_a_certificate_from_the_root_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let app = App::example();
    let server = Server::start_with(dir.path(), &pkis, &app, true)
        .await
        .unwrap();
    assert!(server.url.starts_with("https://127.0.0.1:"));
    let ca = std::fs::read_to_string(dir.path().join("data/root-ca.crt")).unwrap();
    let mut c = KmsClient::connect_with_ca(&server.url, Some(&ca))
        .await
        .unwrap();
    let keys = c
        .get_app_key(&server.key_provider_id, |rd| {
            let e = pkis.tdx_evidence(&app, rd, false);
            async move { Ok(e) }
        })
        .await
        .unwrap();
    assert_eq!(keys.app_id, app.app_id);
    // Plaintext to a TLS listener fails.
    let plain = server.url.replace("https://", "http://");
    let r = match KmsClient::connect(&plain).await {
        Ok(mut c) => c.meta().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(r.is_err());
    // Another KMS's CA does not vouch for this server.
    let other = kms::service::keys::RootKeys::generate().unwrap();
    let r = match KmsClient::connect_with_ca(&server.url, Some(other.ca_cert_pem())).await {
        Ok(mut c) => c.meta().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(r.is_err());
    server.stop().await;
}

/// An instance whose instance id begins with 0x3a (':') sends its own quote
/// with the instance-id event re-split (name "instance-id:", payload the
/// other 19 bytes). RTMR3 still replays; without the replay's name rule the
/// KMS would read no instance id and release the app-wide disk key.
#[tokio::test]
async fn a_resplit_instance_id_event_cannot_obtain_the_app_wide_disk_key() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let mut app = App::example();
    let mut iid = [0x1d; 20];
    iid[0] = b':';
    app.instance_id = Some(iid);
    let server = Server::start(dir.path(), &pkis, &app).await.unwrap();
    keys_for(&server, &pkis, &app, "tdx").await.unwrap();

    let mut c = KmsClient::connect(&server.url).await.unwrap();
    let forged = c
        .get_app_key(&server.key_provider_id, |rd| {
            let mut e = pkis.tdx_evidence(&app, rd, false);
            let mut events = attest_core::eventlog::parse_json_event_log(&e.event_log).unwrap();
            for ev in &mut events {
                if let attest_core::eventlog::EventBody::Runtime(r) = &mut ev.body {
                    if r.name == "instance-id" {
                        r.name = "instance-id:".into();
                        r.payload = r.payload[1..].to_vec();
                    }
                }
            }
            e.event_log = attest_core::eventlog::to_json_event_log(&events);
            async move { Ok(e) }
        })
        .await;
    match forged {
        Err(ClientError::Refused { code, message }) => {
            assert_eq!(code, tonic::Code::InvalidArgument, "{message}");
            assert!(message.contains("has a ':' in its name"), "{message}");
        }
        other => panic!("the re-split log was not refused: {:?}", other.map(|_| ())),
    }
    server.stop().await;
}
