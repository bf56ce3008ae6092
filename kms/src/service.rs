//! The `kms.v1` service. `GetAppKey` is one path for every platform:
//! challenge → expected report data → `Verifiers::verify` → policy → derive
//! → seal → sign → audit. Nothing here names a platform.

use std::sync::Arc;
use std::time::Instant;

use attest_core::binding::app_key_report_data;
use attest_core::{
    AppId, AttestError, ErrorKind, Evidence, PlatformId, UnixTime, VerifiedIdentity, Verifiers,
    VerifyContext,
};
use policy::{Policy, PolicyInput, RequestContext};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::audit::{AuditLog, AuditRecord};
use crate::challenge::Challenges;
use crate::kdf::{self, KdfProfile};
use crate::keys::RootKeys;
use crate::metrics::Metrics;
use crate::proto;
use crate::seal;

/// Everything a request needs; shared by all requests.
pub struct KmsState {
    /// Root keys.
    pub keys: RootKeys,
    /// The platform plug-ins.
    pub verifiers: Verifiers,
    /// The policy.
    pub policy: Arc<dyn Policy>,
    /// Derivation profile.
    pub kdf: KdfProfile,
    /// Challenge issuer/checker.
    pub challenges: Challenges,
    /// Audit log, if configured.
    pub audit: Option<AuditLog>,
    /// Metrics.
    pub metrics: Metrics,
    /// The TDX collateral cache, for metrics.
    pub collateral_cache: Option<Arc<attest_tdx::CachedCollateral>>,
    /// Reference values: boot measurements → OS image.
    pub images: attest_core::image_registry::ImageRegistry,
    /// Derived keys by (app, instance): derivation is deterministic and its
    /// secp256k1 steps cost more than the rest of a request.
    pub key_cache: KeyCache,
    /// One permit per core for verification. The semaphore is FIFO, so
    /// under load requests are verified in arrival order instead of
    /// whichever task the scheduler favours: the same throughput with a
    /// short latency tail.
    pub verify_permits: tokio::sync::Semaphore,
}

/// A bounded cache of derived app keys (zeroized when dropped).
#[derive(Default)]
pub struct KeyCache(
    std::sync::Mutex<std::collections::HashMap<KeyCacheKey, Arc<kdf::AppKeyMaterial>>>,
);

/// An app and, for the disk key, an instance.
type KeyCacheKey = (AppId, Option<attest_core::InstanceId>);

/// Most cached app key sets before the cache is cleared.
const MAX_CACHED_KEYS: usize = 10_000;

impl KmsState {
    /// The keys of an app instance, derived once.
    pub fn app_keys(
        &self,
        app_id: &AppId,
        instance_id: Option<&attest_core::InstanceId>,
    ) -> Result<Arc<kdf::AppKeyMaterial>, kdf::KdfError> {
        let key = (*app_id, instance_id.copied());
        if let Some(m) = self
            .key_cache
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(m.clone());
        }
        let m = Arc::new(kdf::derive_app_keys(
            self.kdf,
            &self.keys,
            app_id,
            instance_id,
        )?);
        let mut cache = self.key_cache.0.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED_KEYS {
            cache.clear();
        }
        cache.insert(key, m.clone());
        Ok(m)
    }
}

impl KmsState {
    /// Prometheus text for this KMS.
    pub fn render_metrics(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let mut extra = Vec::new();
        if let Some(c) = &self.collateral_cache {
            let s = c.stats();
            extra.push((
                "kms_collateral_cache_hits_total",
                "counter",
                s.hits.load(Relaxed),
            ));
            extra.push((
                "kms_collateral_cache_misses_total",
                "counter",
                s.misses.load(Relaxed),
            ));
            extra.push((
                "kms_collateral_fetch_errors_total",
                "counter",
                s.fetch_errors.load(Relaxed),
            ));
        }
        self.metrics.render(&extra)
    }
}

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
    let msg = format!("attestation failed: {e}");
    match e.kind() {
        ErrorKind::Malformed => Status::invalid_argument(msg),
        ErrorKind::UnsupportedPlatform => Status::unimplemented(msg),
        ErrorKind::Unavailable => Status::unavailable(msg),
        _ => Status::permission_denied(msg),
    }
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

struct Outcome<'a> {
    identity: Option<&'a VerifiedIdentity>,
    decision: &'a str,
    reasons: Vec<String>,
}

impl KmsService {
    fn audit(&self, platform: &str, o: Outcome<'_>) {
        let Some(log) = &self.state.audit else { return };
        let id = o.identity;
        log.record(&AuditRecord {
            time: now(),
            platform,
            decision: o.decision,
            app_id: id.map(|i| i.app.app_id.to_hex()),
            compose_hash: id.map(|i| i.app.compose_hash.to_hex()),
            os_image_hash: id.and_then(|i| i.app.os_image_hash.map(|h| h.to_hex())),
            device_id: id.and_then(|i| i.device_id.map(|d| d.to_hex())),
            tcb_status: id.map(|i| i.tcb.status.as_str()),
            reasons: o.reasons,
        });
    }

    async fn get_app_key_inner(
        &self,
        req: proto::GetAppKeyRequest,
        started: Instant,
    ) -> Result<(String, proto::GetAppKeyResponse), (String, Status)> {
        let s = &self.state;
        let bad = |platform: &str, st: Status| (platform.to_owned(), st);
        let evidence = req
            .evidence
            .ok_or_else(|| bad("none", Status::invalid_argument("evidence is required")))?;
        let evidence = to_evidence(evidence).map_err(|st| bad("invalid", st))?;
        let platform = evidence.platform.as_str().to_owned();
        if req.client_public_key.len() != 32 {
            return Err(bad(
                &platform,
                Status::invalid_argument(format!(
                    "client_public_key must be a 32-byte X25519 key, found {} bytes",
                    req.client_public_key.len()
                )),
            ));
        }
        s.challenges
            .check(&req.challenge, now())
            .map_err(|m| bad(&platform, Status::permission_denied(m)))?;

        let report_data = app_key_report_data(&req.client_public_key, &req.challenge)
            .map_err(|e| bad(&platform, Status::invalid_argument(e.message())))?;
        let ctx = VerifyContext::new(report_data, UnixTime::now());
        let t0 = Instant::now();
        let verified = {
            let _permit = s.verify_permits.acquire().await;
            s.verifiers.verify(&evidence, &ctx).await
        };
        s.metrics.verify_latency(&platform, t0.elapsed());
        let mut identity = match verified {
            Ok(id) => id,
            Err(e) => {
                self.audit(
                    &platform,
                    Outcome {
                        identity: None,
                        decision: "error",
                        reasons: vec![e.to_string()],
                    },
                );
                return Err(bad(&platform, attest_status(&e)));
            }
        };

        // The OS image comes from the reference values only, never from what
        // the guest declares about itself.
        identity.app.os_image_hash = s.images.resolve(&identity);

        let decision = s
            .policy
            .evaluate(&PolicyInput::new(
                &identity,
                RequestContext::app_keys(ctx.time),
            ))
            .await;
        for w in &decision.warnings {
            tracing::warn!(app_id = %identity.app.app_id, "{w}");
        }
        if !decision.allow {
            for r in &decision.reasons {
                s.metrics.deny(&r.rule);
            }
            self.audit(
                &platform,
                Outcome {
                    identity: Some(&identity),
                    decision: "deny",
                    reasons: decision.reasons.iter().map(ToString::to_string).collect(),
                },
            );
            return Err(bad(
                &platform,
                Status::permission_denied(format!("policy denied: {}", decision.summary())),
            ));
        }

        let app_id = identity.app.app_id;
        let material = s
            .app_keys(&app_id, identity.app.instance_id.as_ref())
            .map_err(|e| bad(&platform, Status::internal(e.to_string())))?;
        let key_provider_id = s.keys.key_provider_id();
        let plaintext = zeroize::Zeroizing::new(
            proto::AppKeys {
                disk_crypt_key: material.disk_crypt_key.to_vec(),
                env_crypt_key: material.env_crypt_key.to_vec(),
                k256_key: material.k256_key.to_vec(),
                k256_signature: material.k256_signature.clone(),
                ca_cert: s.keys.ca_cert_pem().to_owned(),
                os_image_hash: identity
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
        let (encapsulated_key, sealed) = seal::seal_with::<crate::kem::X25519AwsLc>(
            &req.client_public_key,
            &app_id,
            &aad,
            &plaintext,
        )
        .map_err(|e| bad(&platform, Status::invalid_argument(e.to_string())))?;
        let signature = s
            .keys
            .sign_with_ca(&seal::response_message(&aad, &encapsulated_key, &sealed))
            .map_err(|e| bad(&platform, Status::internal(e.to_string())))?;
        self.audit(
            &platform,
            Outcome {
                identity: Some(&identity),
                decision: "allow",
                reasons: vec![],
            },
        );
        s.metrics.total_latency(&platform, started.elapsed());
        tracing::info!(platform = %platform, app_id = %app_id, "app keys released");
        Ok((
            platform,
            proto::GetAppKeyResponse {
                sealed,
                encapsulated_key,
                key_provider_id,
                signature,
            },
        ))
    }
}

#[tonic::async_trait]
impl proto::kms_server::Kms for KmsService {
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
        let started = Instant::now();
        match self.get_app_key_inner(request.into_inner(), started).await {
            Ok((platform, r)) => {
                self.state.metrics.request(&platform, "allow");
                Ok(Response::new(r))
            }
            Err((platform, status)) => {
                let outcome = match status.code() {
                    tonic::Code::PermissionDenied => "deny",
                    tonic::Code::InvalidArgument => "invalid",
                    tonic::Code::Unavailable => "unavailable",
                    tonic::Code::Unimplemented => "unsupported",
                    _ => "error",
                };
                self.state.metrics.request(&platform, outcome);
                tracing::info!(platform = %platform, code = ?status.code(), "GetAppKey refused: {}", status.message());
                Err(status)
            }
        }
    }

    async fn get_app_env_encrypt_pub_key(
        &self,
        request: Request<proto::GetAppEnvEncryptPubKeyRequest>,
    ) -> Result<Response<proto::GetAppEnvEncryptPubKeyResponse>, Status> {
        let s = &self.state;
        let app_id = AppId::from_slice(&request.into_inner().app_id)
            .map_err(|e| Status::invalid_argument(e.message()))?;
        let material = s
            .app_keys(&app_id, None)
            .map_err(|e| Status::internal(e.to_string()))?;
        let public_key = kdf::x25519_public(&material.env_crypt_key);
        let timestamp = now();
        let mut msg = b"dstack-env-encrypt-pubkey:".to_vec();
        msg.extend_from_slice(&app_id.0);
        let mut msg_v1 = msg.clone();
        msg.extend_from_slice(&public_key);
        msg_v1.extend_from_slice(&timestamp.to_be_bytes());
        msg_v1.extend_from_slice(&public_key);
        let sign = |m: &[u8]| {
            kdf::sign_recoverable(s.keys.k256(), m).map_err(|e| Status::internal(e.to_string()))
        };
        Ok(Response::new(proto::GetAppEnvEncryptPubKeyResponse {
            public_key: public_key.to_vec(),
            signature: sign(&msg)?,
            signature_v1: sign(&msg_v1)?,
            timestamp,
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
        }))
    }
}
