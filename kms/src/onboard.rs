//! Onboarding a replica: a new KMS in a CVM gets the root keys from a
//! running one.
//!
//! The replica asks the source for a challenge, produces evidence bound to
//! a fresh X25519 key and that challenge under the `kms-root-keys/v1`
//! label, and calls `GetRootKeys`. The source verifies it through the same
//! verifiers, image registry and policy as any request, under the policy's
//! `kms` role, seals the keys to the replica's key, signs the answer with
//! its root CA key and audits the release. The replica accepts the answer
//! only when it is signed by the key provider it was told to expect and
//! the sealed CA key is that key provider's, so whoever answers in between
//! (a spoofed URL, a compromised load balancer) cannot hand it other keys:
//! dstack's onboarding trusts whichever KMS answers. The keys are written
//! 0600 into the replica's data directory, and the replica audits what it
//! received. A replica restarted with keys in place keeps them (and
//! refuses to start when they are another key provider's).

use std::future::Future;
use std::path::Path;

use attest_core::{Evidence, ReportData};
use kms_client::{ClientError, KmsClient};

use crate::service::audit::{AuditLog, AuditRecord};
use crate::service::keys::RootKeys;

/// Where a replica gets its root keys from.
#[derive(Clone, Debug)]
pub struct OnboardFrom {
    /// The running KMS (`http://...` or `https://...`).
    pub url: String,
    /// The key provider id the answer must come from (hex SPKI).
    pub key_provider_id: String,
    /// For `https://`: the root CA certificate (PEM) the server must chain to.
    pub ca_cert: Option<String>,
}

/// What onboarding did.
#[derive(Debug)]
pub enum Onboarded {
    /// The keys were received and installed now.
    Received(RootKeys),
    /// The data directory already held the expected key provider's keys.
    AlreadyHeld(RootKeys),
}

impl Onboarded {
    /// The keys.
    pub fn keys(self) -> RootKeys {
        match self {
            Onboarded::Received(k) | Onboarded::AlreadyHeld(k) => k,
        }
    }
}

/// Gets the root keys from `from` into `data_dir` unless they are there
/// already; `evidence_for` produces the replica's evidence for the report
/// data it is given. Records the onboarding in the audit log at
/// `audit_log`.
pub async fn onboard<F, Fut>(
    data_dir: &Path,
    audit_log: &Path,
    from: &OnboardFrom,
    evidence_for: F,
) -> Result<Onboarded, String>
where
    F: FnOnce(ReportData) -> Fut,
    Fut: Future<Output = Result<Evidence, ClientError>>,
{
    let expected = from.key_provider_id.trim().to_ascii_lowercase();
    if let Some(keys) = RootKeys::load_existing(data_dir).map_err(|e| e.to_string())? {
        if keys.key_provider_id() != expected {
            return Err(format!(
                "{} holds the keys of key provider {}, not of {expected}; refusing to start",
                data_dir.display(),
                keys.key_provider_id()
            ));
        }
        return Ok(Onboarded::AlreadyHeld(keys));
    }
    let mut client = KmsClient::connect_with_ca(&from.url, from.ca_cert.as_deref())
        .await
        .map_err(|e| format!("onboarding from {}: {e}", from.url))?;
    let set = client
        .get_root_keys(&expected, evidence_for)
        .await
        .map_err(|e| format!("onboarding from {}: {e}", from.url))?;
    let keys = RootKeys::install(
        data_dir,
        &set.ca_key,
        &set.ca_cert,
        &set.k256_key,
        &set.root_secret,
    )
    .map_err(|e| e.to_string())?;
    let log = AuditLog::open(audit_log).map_err(|e| format!("audit log: {e}"))?;
    log.record(&AuditRecord {
        time: attest_core::UnixTime::now().as_secs(),
        front_end: "onboard",
        purpose: "root_keys",
        platform: "-",
        decision: "received",
        app_id: None,
        compose_hash: None,
        instance_id: None,
        os_image_hash: None,
        device_id: None,
        tcb_status: None,
        reasons: vec![format!(
            "root keys of key provider {expected} received from {}",
            crate::service::audit::bounded(&from.url, 256)
        )],
    })
    .map_err(|e| format!("audit log: {e}"))?;
    tracing::info!(from = %from.url, key_provider_id = %expected, "onboarded: root keys received");
    Ok(Onboarded::Received(keys))
}
