//! The `kms.v1` gRPC front end. `GetAppKey` decodes the request, checks
//! the challenge, computes the report data the evidence must carry, calls
//! the key-release core ([`super::release`]), then seals the keys to the
//! client's X25519 key and signs the answer with the root CA key. Nothing
//! here names a platform.

use std::sync::Arc;

use attest_core::binding::{app_key_report_data, attest_report_data, root_keys_report_data};
use attest_core::{AppId, AttestError, ErrorKind, Evidence, PlatformId, UnixTime};
use kms_proto::{proto, seal};
use prost::Message;
use tonic::{Request, Response, Status};

use super::KmsState;
use super::audit::bounded;
use super::ear::{Appraisal, Status as EarStatus};
use super::release::{FrontEnd, Refusal, appraise, release_app_keys, release_root_keys};

/// Longest status message sent back (policy reasons can be many).
const MAX_STATUS_MESSAGE: usize = 2048;

/// The gRPC service.
#[derive(Clone)]
pub struct KmsService {
    state: Arc<KmsState>,
}

impl KmsService {
    /// A service over `state`.
    pub fn new(state: Arc<KmsState>) -> Self {
        KmsService { state }
    }
}

/// Maps an attestation failure to a gRPC status (the message never holds secrets).
pub fn attest_status(e: &AttestError) -> Status {
    attest_status_msg(
        e,
        bounded(&format!("attestation failed: {e}"), MAX_STATUS_MESSAGE),
    )
}

fn now() -> u64 {
    UnixTime::now().as_secs()
}

fn to_evidence(e: proto::Evidence) -> Result<Evidence, Status> {
    let platform =
        PlatformId::parse(&e.platform).map_err(|err| Status::invalid_argument(err.message()))?;
    Ok(Evidence {
        platform,
        quote: e.quote,
        certificates: e.certificates,
        event_log: e.event_log,
        app_config: e.app_config,
    })
}

/// Maps a refusal to a gRPC status (the message never holds secrets).
pub fn refusal_status(r: &Refusal) -> Status {
    let msg = bounded(&r.to_string(), MAX_STATUS_MESSAGE);
    match r {
        Refusal::Attestation(e) => attest_status_msg(e, msg),
        // The client learns which rules failed and what it presented,
        // not what the policy expects (other apps' approved values); the
        // audit log keeps the whole reason.
        Refusal::Policy(reasons) => Status::permission_denied(bounded(
            &format!(
                "policy denied: {}",
                reasons
                    .iter()
                    .map(|r| format!("{}: found {}", r.rule, r.found))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            MAX_STATUS_MESSAGE,
        )),
        Refusal::Unavailable(_) => Status::unavailable(msg),
        Refusal::Internal(_) => Status::internal(msg),
    }
}

fn attest_status_msg(e: &AttestError, msg: String) -> Status {
    match e.kind() {
        ErrorKind::Malformed => Status::invalid_argument(msg),
        ErrorKind::UnsupportedPlatform => Status::unimplemented(msg),
        ErrorKind::Unavailable => Status::unavailable(msg),
        _ => Status::permission_denied(msg),
    }
}

impl KmsService {
    /// A refusal before the evidence reached the release core: counted and
    /// logged (rate-limited, bounded), never audited (nothing was verified).
    fn early_refusal(&self, platform: &str, outcome: &'static str, st: Status) -> Status {
        let s = &self.state;
        s.metrics.request(platform, outcome);
        if s.refusal_log.allow() {
            tracing::info!(
                platform = %s.metrics.platform_label(platform),
                code = ?st.code(),
                "GetAppKey refused: {}",
                bounded(st.message(), 256)
            );
        }
        st
    }

    /// The checks every evidence-carrying request shares: evidence present
    /// and named, a 32-byte client key, a valid challenge. Returns the
    /// evidence and the report data `binding` computes from key and
    /// challenge.
    fn checked_request(
        &self,
        evidence: Option<proto::Evidence>,
        client_public_key: &[u8],
        challenge: &[u8],
        binding: fn(&[u8], &[u8]) -> Result<attest_core::ReportData, AttestError>,
    ) -> Result<(Evidence, attest_core::ReportData), Status> {
        let evidence = evidence.ok_or_else(|| {
            self.early_refusal(
                "none",
                "invalid",
                Status::invalid_argument("evidence is required"),
            )
        })?;
        let evidence =
            to_evidence(evidence).map_err(|st| self.early_refusal("invalid", "invalid", st))?;
        let platform = evidence.platform.as_str();
        if client_public_key.len() != 32 {
            return Err(self.early_refusal(
                platform,
                "invalid",
                Status::invalid_argument(format!(
                    "client_public_key must be a 32-byte X25519 key, found {} bytes",
                    client_public_key.len()
                )),
            ));
        }
        self.state
            .challenges
            .check(challenge, now())
            .map_err(|m| self.early_refusal(platform, "deny", Status::permission_denied(m)))?;
        let report_data = binding(client_public_key, challenge).map_err(|e| {
            self.early_refusal(platform, "invalid", Status::invalid_argument(e.message()))
        })?;
        Ok((evidence, report_data))
    }

    /// Maps a refusal to its status, logging it (rate-limited, bounded).
    fn refused(&self, rpc: &str, platform: &str, r: &Refusal) -> Status {
        let s = &self.state;
        let st = refusal_status(r);
        if s.refusal_log.allow() {
            tracing::info!(
                platform = %s.metrics.platform_label(platform),
                code = ?st.code(),
                "{rpc} refused: {}",
                bounded(st.message(), 256)
            );
        }
        st
    }

    async fn get_app_key_inner(
        &self,
        req: proto::GetAppKeyRequest,
    ) -> Result<proto::GetAppKeyResponse, Status> {
        let s = &self.state;
        let (evidence, report_data) = self.checked_request(
            req.evidence,
            &req.client_public_key,
            &req.challenge,
            app_key_report_data,
        )?;
        let platform = evidence.platform.as_str().to_owned();
        let release = release_app_keys(s, FrontEnd::KMS_V1, &evidence, report_data)
            .await
            .map_err(|r| self.refused("GetAppKey", &platform, &r))?;

        let app_id = release.identity.app.app_id;
        let material = &release.keys;
        let key_provider_id = s.keys.key_provider_id();
        let plaintext = zeroize::Zeroizing::new(
            proto::AppKeys {
                disk_crypt_key: material.disk_crypt_key.to_vec(),
                env_crypt_key: material.env_crypt_key.to_vec(),
                k256_key: material.k256_key.to_vec(),
                k256_signature: material.k256_signature.clone(),
                ca_cert: s.keys.ca_cert_pem().to_owned(),
                os_image_hash: release
                    .identity
                    .app
                    .os_image_hash
                    .map(|h| h.0.to_vec())
                    .unwrap_or_default(),
                app_id: app_id.0.to_vec(),
                key_provider_id: key_provider_id.clone(),
            }
            .encode_to_vec(),
        );
        let aad = seal::request_aad(&evidence, &req.client_public_key);
        let (encapsulated_key, sealed) = seal::seal_with::<super::kem::X25519AwsLc>(
            &req.client_public_key,
            &app_id,
            &aad,
            &plaintext,
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let signature = s
            .keys
            .sign_with_ca(&seal::response_message(&aad, &encapsulated_key, &sealed))
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(proto::GetAppKeyResponse {
            sealed,
            encapsulated_key,
            key_provider_id,
            signature,
        })
    }
}

impl KmsService {
    async fn get_root_keys_inner(
        &self,
        req: proto::GetRootKeysRequest,
    ) -> Result<proto::GetRootKeysResponse, Status> {
        let s = &self.state;
        let (evidence, report_data) = self.checked_request(
            req.evidence,
            &req.client_public_key,
            &req.challenge,
            root_keys_report_data,
        )?;
        let platform = evidence.platform.as_str().to_owned();
        release_root_keys(s, FrontEnd::KMS_V1, &evidence, report_data)
            .await
            .map_err(|r| self.refused("GetRootKeys", &platform, &r))?;
        let ca_key = p256::pkcs8::EncodePrivateKey::to_pkcs8_der(s.keys.ca_key())
            .map_err(|e| Status::internal(e.to_string()))?;
        let plaintext = zeroize::Zeroizing::new(
            proto::RootKeySet {
                ca_key: ca_key.as_bytes().to_vec(),
                ca_cert: s.keys.ca_cert_pem().to_owned(),
                k256_key: s.keys.k256().to_bytes().to_vec(),
                root_secret: s.keys.root_secret().to_vec(),
            }
            .encode_to_vec(),
        );
        let aad = seal::root_keys_request_aad(&evidence, &req.client_public_key);
        let (encapsulated_key, sealed) = seal::seal_root_keys::<super::kem::X25519AwsLc>(
            &req.client_public_key,
            &aad,
            &plaintext,
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let signature = s
            .keys
            .sign_with_ca(&seal::response_message(&aad, &encapsulated_key, &sealed))
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(proto::GetRootKeysResponse {
            sealed,
            encapsulated_key,
            key_provider_id: s.keys.key_provider_id(),
            signature,
        })
    }

    async fn attest_inner(
        &self,
        req: proto::AttestRequest,
    ) -> Result<proto::AttestResponse, Status> {
        let s = &self.state;
        let (evidence, report_data) = self.checked_request(
            req.evidence,
            &req.client_public_key,
            &req.challenge,
            attest_report_data,
        )?;
        let platform = evidence.platform.as_str().to_owned();
        let (identity, decision) = appraise(s, FrontEnd::KMS_V1, &evidence, report_data)
            .await
            .map_err(|r| self.refused("Attest", &platform, &r))?;
        let identity_json = identity.to_json();
        let status = EarStatus::of(&identity_json, decision.allow);
        let mut reasons: Vec<String> = decision
            .reasons
            .iter()
            .map(|r| format!("{}: found {}", r.rule, r.found))
            .collect();
        reasons.extend(decision.warnings.iter().cloned());
        if status == EarStatus::Warning && reasons.is_empty() {
            reasons.push(format!("tcb: {}", identity.tcb.status.as_str()));
        }
        let ear = s
            .ear
            .issue(&Appraisal {
                platform: identity.platform.as_str(),
                identity: identity_json,
                status,
                policy_id: Some(format!(
                    "policy:{}:{}",
                    s.policy.backend(),
                    hex::encode(s.policy.digest())
                )),
                reasons,
                nonce: Some(&req.challenge),
                key: Some(&req.client_public_key),
                issued_at: now(),
            })
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(proto::AttestResponse { ear })
    }
}

#[tonic::async_trait]
impl proto::kms_server::Kms for KmsService {
    async fn get_root_keys(
        &self,
        request: Request<proto::GetRootKeysRequest>,
    ) -> Result<Response<proto::GetRootKeysResponse>, Status> {
        self.get_root_keys_inner(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn attest(
        &self,
        request: Request<proto::AttestRequest>,
    ) -> Result<Response<proto::AttestResponse>, Status> {
        self.attest_inner(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_challenge(
        &self,
        _: Request<proto::GetChallengeRequest>,
    ) -> Result<Response<proto::GetChallengeResponse>, Status> {
        let (challenge, expires_at) = self.state.challenges.issue(now());
        Ok(Response::new(proto::GetChallengeResponse {
            challenge,
            expires_at,
        }))
    }

    async fn get_app_key(
        &self,
        request: Request<proto::GetAppKeyRequest>,
    ) -> Result<Response<proto::GetAppKeyResponse>, Status> {
        self.get_app_key_inner(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_app_env_encrypt_pub_key(
        &self,
        request: Request<proto::GetAppEnvEncryptPubKeyRequest>,
    ) -> Result<Response<proto::GetAppEnvEncryptPubKeyResponse>, Status> {
        let s = &self.state;
        let app_id = AppId::from_slice(&request.into_inner().app_id)
            .map_err(|e| Status::invalid_argument(e.message()))?;
        // Unauthenticated: its own cache, so it cannot evict attested
        // apps' keys.
        let k = s
            .env_encrypt_pub_key(&app_id)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(proto::GetAppEnvEncryptPubKeyResponse {
            public_key: k.public_key.to_vec(),
            signature: k.signature,
            signature_v1: k.signature_v1,
            timestamp: k.timestamp,
        }))
    }

    async fn get_meta(
        &self,
        _: Request<proto::GetMetaRequest>,
    ) -> Result<Response<proto::GetMetaResponse>, Status> {
        let s = &self.state;
        let k256_pub = k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
            &s.keys.k256().public_key(),
            true,
        );
        Ok(Response::new(proto::GetMetaResponse {
            key_provider_id: s.keys.key_provider_id(),
            ca_cert: s.keys.ca_cert_pem().to_owned(),
            k256_public_key: k256_pub.as_bytes().to_vec(),
            platforms: s
                .verifiers
                .platforms()
                .iter()
                .map(|p| p.to_string())
                .collect(),
            policy_backend: s.policy.backend().to_owned(),
            policy_digest: hex::encode(s.policy.digest()),
            kdf_profile: s.kdf.as_str().to_owned(),
            ear_jwk: s.ear.jwk().to_string(),
        }))
    }
}
