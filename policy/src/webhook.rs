//! dstack's auth webhook: `POST {url}/bootAuth/app` with a `BootInfo`
//! (`{url}/bootAuth/kms` when a replica KMS asks for the root keys).
//!
//! Existing dstack auth servers (auth-simple, auth-eth) keep working
//! unchanged. The request is dstack's `BootInfo` JSON (camelCase, lowercase
//! hex without `0x`), sending both `teeVariant` and its pre-rename name
//! `attestationMode` so old and new servers read it. The answer
//! `{isAllowed, reason, gatewayAppId}` decides; a timeout, a non-200 status
//! or a malformed answer denies with that reason (fail closed).

use std::time::Duration;

use async_trait::async_trait;
use attest_core::VerifiedIdentity;
use attest_core::dstack::{self, DstackClaims};
use serde::{Deserialize, Serialize};

use crate::decision::sha256;
use crate::{Decision, Policy, PolicyError, PolicyInput, Reason};

/// Default bound on one webhook call, connection included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response body read.
pub const MAX_RESPONSE: usize = 64 * 1024;

/// dstack's `BootInfo`, as its auth webhooks expect it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootInfo {
    /// `dstack-tdx`, `dstack-amd-sev-snp`, ...
    pub tee_variant: String,
    /// The same value under its name before dstack renamed it (v0.5.x servers).
    pub attestation_mode: String,
    /// dstack's aggregate of all measurement registers.
    pub mr_aggregated: String,
    /// The OS image hash, `""` when unknown.
    pub os_image_hash: String,
    /// dstack's aggregate of the OS-determined registers.
    pub mr_system: String,
    /// The app id.
    pub app_id: String,
    /// The compose hash.
    pub compose_hash: String,
    /// The instance id, `""` when none.
    pub instance_id: String,
    /// The device id, `""` when none.
    pub device_id: String,
    /// Hex of the key-provider JSON (`{"name":..,"id":..}`), `""` when none.
    pub key_provider_info: String,
    /// The TCB status as Intel spells it.
    pub tcb_status: String,
    /// Advisory ids.
    pub advisory_ids: Vec<String>,
}

impl BootInfo {
    /// Maps an identity to dstack's `BootInfo`. The platform-specific
    /// aggregates come from the plug-in's `dstack` claims.
    pub fn from_identity(id: &VerifiedIdentity) -> Result<Self, String> {
        Self::from_identity_at(id, false)
    }

    /// [`BootInfo::from_identity`]; with `boot_time`, dstack's `SignCert`
    /// view (`use_boottime_mr`): the boot-time aggregates where the
    /// platform has them, and no key provider.
    pub fn from_identity_at(id: &VerifiedIdentity, boot_time: bool) -> Result<Self, String> {
        let claims: DstackClaims = match id.platform_claims.get(dstack::SECTION) {
            Some(Ok(c)) => c,
            Some(Err(e)) => return Err(e.message()),
            None => {
                return Err(format!(
                    "the {} identity carries no platform_claims.{} section",
                    id.platform,
                    dstack::SECTION
                ));
            }
        };
        let (mr_aggregated, mr_system) = match (&claims.boot_time, boot_time) {
            (Some(b), true) => (b.mr_aggregated.to_hex(), b.mr_system.to_hex()),
            _ => (claims.mr_aggregated.to_hex(), claims.mr_system.to_hex()),
        };
        let key_provider = if boot_time {
            None
        } else {
            id.app.key_provider.as_ref()
        };
        let key_provider_info = match key_provider {
            None => String::new(),
            // dstack's payload form, keys in its order. Written out rather
            // than via a JSON map, whose key order depends on serde_json
            // features elsewhere in the build.
            Some(kp) => hex::encode(format!(
                "{{\"name\":{},\"id\":\"{}\"}}",
                serde_json::Value::String(kp.name.clone()),
                kp.id.to_hex()
            )),
        };
        Ok(BootInfo {
            attestation_mode: claims.tee_variant.clone(),
            tee_variant: claims.tee_variant,
            mr_aggregated,
            os_image_hash: id.app.os_image_hash.map(|h| h.to_hex()).unwrap_or_default(),
            mr_system,
            app_id: id.app.app_id.to_hex(),
            compose_hash: id.app.compose_hash.to_hex(),
            instance_id: id.app.instance_id.map(|i| i.to_hex()).unwrap_or_default(),
            device_id: id.device_id.map(|d| d.to_hex()).unwrap_or_default(),
            key_provider_info,
            tcb_status: id.tcb.status.as_str().to_owned(),
            advisory_ids: id.tcb.advisory_ids.clone(),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthResponse {
    is_allowed: bool,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    gateway_app_id: String,
}

/// A webhook policy.
pub struct WebhookPolicy {
    /// `{url}/bootAuth/app`: apps (and attestation results).
    endpoint: String,
    /// `{url}/bootAuth/kms`: replica KMSs asking for the root keys, as
    /// dstack's auth API separates them.
    kms_endpoint: String,
    client: reqwest::Client,
    digest: [u8; 32],
}

impl WebhookPolicy {
    /// A webhook at `url` (its `/bootAuth/app` route is called): https, or
    /// plain http to a loopback host.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, PolicyError> {
        Self::with_options(url, timeout, false)
    }

    /// [`WebhookPolicy::new`]; `insecure_http` allows plain HTTP to any
    /// host (its answers can then be rewritten on the path).
    pub fn with_options(
        url: &str,
        timeout: Duration,
        insecure_http: bool,
    ) -> Result<Self, PolicyError> {
        let invalid = |message: String| PolicyError::Invalid {
            backend: "webhook",
            path: None,
            message,
        };
        let base = url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(invalid(format!(
                "url must start with http:// or https://, found {url:?}"
            )));
        }
        attest_core::fetch::check_service_url(base, insecure_http)
            .map_err(|e| invalid(e.message()))?;
        let endpoint = format!("{base}/bootAuth/app");
        reqwest::Url::parse(&endpoint).map_err(|e| invalid(format!("url {url:?}: {e}")))?;
        let kms_endpoint = format!("{base}/bootAuth/kms");
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("confidential-kms/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| invalid(format!("http client: {e}")))?;
        Ok(WebhookPolicy {
            digest: sha256(&[b"webhook", endpoint.as_bytes()]),
            endpoint,
            kms_endpoint,
            client,
        })
    }

    async fn call(&self, endpoint: &str, info: &BootInfo) -> Result<AuthResponse, String> {
        let mut resp = self
            .client
            .post(endpoint)
            .json(info)
            .send()
            .await
            .map_err(|e| format!("request failed: {}", describe(&e)))?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("reading response: {}", describe(&e)))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE {
                return Err(format!("response larger than {MAX_RESPONSE} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        if status != reqwest::StatusCode::OK {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            return Err(format!("HTTP {status}: {text}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("malformed response: {e}"))
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        e.to_string()
    }
}

#[async_trait]
impl Policy for WebhookPolicy {
    async fn evaluate(&self, input: &PolicyInput<'_>) -> Decision {
        let deny = |found: String| Decision::deny(Reason::new("webhook", "isAllowed: true", found));
        let info =
            match BootInfo::from_identity_at(input.identity, input.request.is_app_certificate()) {
                Ok(i) => i,
                Err(e) => return deny(format!("no BootInfo: {e}")),
            };
        let endpoint = if input.request.wants_root_keys() {
            &self.kms_endpoint
        } else {
            &self.endpoint
        };
        match self.call(endpoint, &info).await {
            Ok(r) if r.is_allowed => Decision {
                gateway_app_id: Some(r.gateway_app_id).filter(|g| !g.is_empty()),
                ..Decision::allow()
            },
            Ok(r) => deny(format!("isAllowed: false ({})", r.reason)),
            Err(e) => deny(format!("webhook {endpoint}: {e}")),
        }
    }
    fn digest(&self) -> [u8; 32] {
        self.digest
    }
    fn backend(&self) -> &'static str {
        "webhook"
    }
}
