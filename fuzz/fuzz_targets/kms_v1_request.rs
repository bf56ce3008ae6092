//! `kms.v1` request decoding through the handler up to verification (stub
//! plug-ins, see `kms_fuzz::StubVerifier`) and on to policy, derivation,
//! sealing and signing: the input is a protobuf `GetAppKeyRequest`,
//! `GetRootKeysRequest`, `AttestRequest` or `GetAppEnvEncryptPubKeyRequest`
//! (first byte picks which). A challenge of exactly `valid` is replaced by
//! a freshly issued one, so the fuzzer gets past the MAC.
#![no_main]

use kms::proto::kms_server::Kms;
use kms::proto::{self};
use kms::service::grpc::KmsService;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tonic::Request;

fn fresh(challenge: &mut Vec<u8>) {
    if challenge == b"valid" {
        let state = &kms_fuzz::stub_state().0;
        let now = attest_core::UnixTime::now().as_secs();
        *challenge = state.challenges.issue(now).0;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let svc = KmsService::new(kms_fuzz::stub_state().0.clone());
    kms_fuzz::runtime().block_on(async {
        match which % 4 {
            0 => {
                let Ok(mut r) = proto::GetAppKeyRequest::decode(body) else {
                    return;
                };
                fresh(&mut r.challenge);
                let _ = svc.get_app_key(Request::new(r)).await;
            }
            1 => {
                let Ok(mut r) = proto::GetRootKeysRequest::decode(body) else {
                    return;
                };
                fresh(&mut r.challenge);
                let _ = svc.get_root_keys(Request::new(r)).await;
            }
            2 => {
                let Ok(mut r) = proto::AttestRequest::decode(body) else {
                    return;
                };
                fresh(&mut r.challenge);
                let _ = svc.attest(Request::new(r)).await;
            }
            _ => {
                let Ok(r) = proto::GetAppEnvEncryptPubKeyRequest::decode(body) else {
                    return;
                };
                let _ = svc.get_app_env_encrypt_pub_key(Request::new(r)).await;
            }
        }
    });
});
