//! One rule set for every platform.
//!
//! A policy sees a [`VerifiedIdentity`] (the same JSON names whatever the
//! platform) plus the request context, and returns a [`Decision`]: allow or
//! deny, with every failing rule named together with the value it expected
//! and the value it found. Deny is the default: an empty or missing policy
//! denies everything.
//!
//! Backends:
//! - [`TomlPolicy`], the default: typed, validated at load;
//! - [`RegoPolicy`] (feature `rego`): a Rego module on `regorus`, compiled
//!   once, with evaluation time limits;
//! - [`WebhookPolicy`]: dstack's `bootAuth/app` protocol, so existing dstack
//!   auth servers keep working;
//! - [`AllOf`]: every backend must allow (a local floor under a webhook).

mod decision;
mod input;
#[cfg(feature = "rego")]
mod rego;
mod spec;
mod toml_policy;
mod webhook;

use std::sync::Arc;

use async_trait::async_trait;

pub use attest_core::VerifiedIdentity;
pub use decision::{Decision, Reason};
pub use input::{PolicyInput, ROOT_KEYS, RequestContext};
#[cfg(feature = "rego")]
pub use rego::RegoPolicy;
pub use spec::{PolicySpec, load, load_file};
pub use toml_policy::TomlPolicy;
pub use webhook::{BootInfo, WebhookPolicy};

/// A policy backend.
#[async_trait]
pub trait Policy: Send + Sync {
    /// Decides a request. Never fails: anything that goes wrong (a webhook
    /// timeout, a Rego runtime error) is a deny with that reason.
    async fn evaluate(&self, input: &PolicyInput<'_>) -> Decision;

    /// A digest that identifies the loaded policy (SHA-256 over its source
    /// and backend), published by the KMS so operators can see which policy
    /// a replica enforces.
    fn digest(&self) -> [u8; 32];

    /// The backend's name (`toml`, `rego`, `webhook`, `all_of`, `deny_all`).
    fn backend(&self) -> &'static str;
}

/// A policy load failure.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file could not be read.
    #[error("cannot read policy {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The policy text is invalid; the message names the line where the
    /// format allows it.
    #[error("invalid {backend} policy{}: {message}", path.as_deref().map(|p| format!(" {p}")).unwrap_or_default())]
    Invalid {
        /// Which backend rejected it.
        backend: &'static str,
        /// The file, when loaded from one.
        path: Option<String>,
        /// What is wrong, and where.
        message: String,
    },
}

/// Denies everything: the policy when none is configured.
#[derive(Debug, Default, Clone, Copy)]
pub struct DenyAll;

#[async_trait]
impl Policy for DenyAll {
    async fn evaluate(&self, _input: &PolicyInput<'_>) -> Decision {
        Decision::deny(Reason::new(
            "deny_all",
            "a configured policy",
            "no policy (everything is denied)",
        ))
    }
    fn digest(&self) -> [u8; 32] {
        decision::sha256(&[b"deny_all"])
    }
    fn backend(&self) -> &'static str {
        "deny_all"
    }
}

/// Allows only when every inner policy allows; reports every inner reason
/// and warning. With no inner policy it denies.
pub struct AllOf {
    policies: Vec<Arc<dyn Policy>>,
}

impl AllOf {
    /// Combines `policies`.
    pub fn new(policies: Vec<Arc<dyn Policy>>) -> Self {
        AllOf { policies }
    }
}

#[async_trait]
impl Policy for AllOf {
    async fn evaluate(&self, input: &PolicyInput<'_>) -> Decision {
        if self.policies.is_empty() {
            return DenyAll.evaluate(input).await;
        }
        let mut out = Decision::allow();
        // Evaluate all (not short-circuit) so a denial lists every reason.
        for p in &self.policies {
            let d = p.evaluate(input).await;
            out.allow &= d.allow;
            out.reasons.extend(d.reasons);
            out.warnings.extend(d.warnings);
            // The first backend that names a gateway decides it.
            if out.gateway_app_id.is_none() {
                out.gateway_app_id = d.gateway_app_id;
            }
        }
        out
    }
    fn digest(&self) -> [u8; 32] {
        let parts: Vec<[u8; 32]> = self.policies.iter().map(|p| p.digest()).collect();
        let mut refs: Vec<&[u8]> = vec![b"all_of"];
        refs.extend(parts.iter().map(|p| p.as_slice()));
        decision::sha256(&refs)
    }
    fn backend(&self) -> &'static str {
        "all_of"
    }
}
