//! GetRootKeys end to end (issue 13's negative matrix, "GetRootKeys role
//! separation"): a real gRPC server on 127.0.0.1 with the testkit's fake
//! roots. Root keys go only to a deployment the policy's `[kms]` role lists
//! (the demo policy's: `kms_app()`),
//! sealed to the replica's key and signed by the root CA key; an app gets
//! none (crossing evidence between the RPCs: `roles.rs`).
#![allow(clippy::unwrap_used, missing_docs)]

use attest_core::ReportData;
use attest_core::binding::root_keys_report_data;
use attest_testkit::dstack::App;
use kms::demo::*;
use kms_client::{KmsClient, proto, seal};
use prost::Message;

struct Asked {
    result: Result<proto::GetRootKeysResponse, tonic::Status>,
    secret: [u8; 32],
    aad: [u8; 32],
}

/// Asks for the root keys with TDX evidence of `app` whose report data is
/// `binding(client key, challenge)`.
async fn ask(
    server: &Server,
    pkis: &Pkis,
    app: &App,
    binding: fn(&[u8], &[u8]) -> Result<ReportData, attest_core::AttestError>,
) -> Asked {
    let mut c = KmsClient::connect(&server.url).await.unwrap();
    let challenge = c
        .raw()
        .get_challenge(proto::GetChallengeRequest {})
        .await
        .unwrap()
        .into_inner()
        .challenge;
    let (secret, public) = seal::client_keypair();
    let evidence = pkis.tdx_evidence(app, binding(&public, &challenge).unwrap(), false);
    let aad = seal::root_keys_request_aad(&evidence, &public);
    let result = c
        .raw()
        .get_root_keys(proto::GetRootKeysRequest {
            evidence: Some(proto::Evidence::from(&evidence)),
            client_public_key: public.to_vec(),
            challenge,
        })
        .await
        .map(|r| r.into_inner());
    Asked {
        result,
        secret,
        aad,
    }
}

#[tokio::test]
async fn an_app_gets_no_root_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (pkis, app) = (Pkis::new(), App::example());
    let server = Server::start(dir.path(), &pkis, &app).await.unwrap();
    let st = ask(&server, &pkis, &app, root_keys_report_data)
        .await
        .result
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::PermissionDenied, "{st:?}");
    assert!(
        st.message()
            .starts_with("policy denied: kms.apps: found a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"),
        "{}",
        st.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_replica_of_the_kms_role_gets_the_root_keys_sealed_and_signed() {
    let dir = tempfile::tempdir().unwrap();
    // The demo policy's `[kms]` role lists kms_app(), not the demo app.
    let (pkis, app) = (Pkis::new(), kms_app());
    let server = Server::start(dir.path(), &pkis, &App::example())
        .await
        .unwrap();
    let asked = ask(&server, &pkis, &app, root_keys_report_data).await;
    let r = asked.result.unwrap();
    assert_eq!(r.key_provider_id, server.key_provider_id);
    seal::verify_response(
        &server.key_provider_id,
        &asked.aad,
        &r.encapsulated_key,
        &r.sealed,
        &r.signature,
    )
    .unwrap();
    let opened =
        seal::open_root_keys(&asked.secret, &asked.aad, &r.encapsulated_key, &r.sealed).unwrap();
    let set = proto::RootKeySet::decode(opened.as_slice()).unwrap();
    assert_eq!(set.root_secret.len(), 32);
    assert_eq!(set.root_secret, server.state.keys.root_secret().to_vec());
    assert_eq!(set.ca_cert, server.state.keys.ca_cert_pem());
    // Opened as app keys (another HPKE info label), it does not open.
    assert!(
        seal::open(
            &asked.secret,
            &attest_core::AppId(app.app_id),
            &asked.aad,
            &r.encapsulated_key,
            &r.sealed
        )
        .is_err()
    );

    // Crossing evidence between GetAppKey and GetRootKeys is refused:
    // tests/tests/roles.rs `app_key_and_root_key_evidence_do_not_cross_over`.
    server.stop().await;
}
