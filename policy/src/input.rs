//! What a policy sees.

use attest_core::{UnixTime, VerifiedIdentity};
use serde::{Deserialize, Serialize};

/// `request.keys` of a replica KMS's `GetRootKeys`.
pub const ROOT_KEYS: &str = "root_keys";

/// The request around the identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestContext {
    /// When the request is decided (for grace periods).
    pub time: UnixTime,
    /// The keys requested (`app_keys` for GetAppKey, `env_encrypt_pubkey`, ...).
    pub keys: Vec<String>,
}

impl RequestContext {
    /// A GetAppKey request at `time`.
    pub fn app_keys(time: UnixTime) -> Self {
        RequestContext {
            time,
            keys: vec![Self::APP_KEYS.into()],
        }
    }

    /// A replica KMS asking for the root keys (`GetRootKeys`): the policy's
    /// `kms` role decides.
    pub fn root_keys(time: UnixTime) -> Self {
        RequestContext {
            time,
            keys: vec![ROOT_KEYS.into()],
        }
    }

    /// An attestation result (`Attest`): no keys, the app rules decide
    /// its status.
    pub fn attestation(time: UnixTime) -> Self {
        RequestContext {
            time,
            keys: vec!["attestation".into()],
        }
    }

    /// Whether the root keys are asked for (the `kms` role).
    pub fn wants_root_keys(&self) -> bool {
        self.keys.iter().any(|k| k == ROOT_KEYS)
    }

    /// A request for a certificate from the app's CA (dstack's
    /// `SignCert`) at `time`.
    pub fn app_certificate(time: UnixTime) -> Self {
        RequestContext {
            time,
            keys: vec![Self::APP_CERTIFICATE.into()],
        }
    }

    /// `keys` of a GetAppKey request.
    pub const APP_KEYS: &'static str = "app_keys";
    /// `keys` of a certificate request.
    pub const APP_CERTIFICATE: &'static str = "app_certificate";

    /// Whether the request asks for an app certificate.
    pub fn is_app_certificate(&self) -> bool {
        self.keys.iter().any(|k| k == Self::APP_CERTIFICATE)
    }
}

/// The policy input: a verified identity plus the request context.
///
/// Its JSON form (the Rego `input`) is the identity's JSON with one more
/// top-level key, `request: {time, keys}`; see
/// `attest_core::identity` for the identity names.
#[derive(Clone, Debug)]
pub struct PolicyInput<'a> {
    /// The verified identity.
    pub identity: &'a VerifiedIdentity,
    /// The request.
    pub request: RequestContext,
}

impl<'a> PolicyInput<'a> {
    /// An input.
    pub fn new(identity: &'a VerifiedIdentity, request: RequestContext) -> Self {
        PolicyInput { identity, request }
    }

    /// The JSON form.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = self.identity.to_json();
        if let serde_json::Value::Object(map) = &mut v {
            map.insert(
                "request".into(),
                serde_json::to_value(&self.request).unwrap_or(serde_json::Value::Null),
            );
        }
        v
    }
}
