//! Which policy to load, as written in the KMS configuration.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::{AllOf, DenyAll, Policy, PolicyError, TomlPolicy, WebhookPolicy};

/// A policy backend and its source.
///
/// In `kms.toml`:
/// ```toml
/// [policy]
/// type = "all_of"
/// policies = [
///   { type = "toml", file = "policy.toml" },
///   { type = "webhook", url = "http://127.0.0.1:8001", timeout_ms = 3000 },
/// ]
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PolicySpec {
    /// Deny everything (the default when nothing is configured).
    DenyAll,
    /// A typed TOML policy file.
    Toml {
        /// The file.
        file: String,
    },
    /// A Rego module (`package kms`).
    Rego {
        /// The file.
        file: String,
        /// Optional JSON data document (OPA `data`), e.g. allowlists.
        #[serde(default)]
        data: Option<String>,
        /// Evaluation time limit in milliseconds (default 50).
        #[serde(default)]
        eval_limit_ms: Option<u64>,
    },
    /// dstack's auth webhook.
    Webhook {
        /// Base URL; `/bootAuth/app` is appended.
        url: String,
        /// Timeout in milliseconds (default 5000).
        #[serde(default)]
        timeout_ms: Option<u64>,
        /// Allow plain HTTP to a host that is not loopback.
        #[serde(default)]
        insecure_http: bool,
    },
    /// Every inner policy must allow.
    AllOf {
        /// The inner policies.
        policies: Vec<PolicySpec>,
    },
}

fn read(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn with_path(e: PolicyError, path: &Path) -> PolicyError {
    match e {
        PolicyError::Invalid {
            backend, message, ..
        } => PolicyError::Invalid {
            backend,
            path: Some(path.display().to_string()),
            message,
        },
        other => other,
    }
}

/// Loads a policy; relative file names resolve against `base_dir`.
pub fn load(spec: &PolicySpec, base_dir: &Path) -> Result<Arc<dyn Policy>, PolicyError> {
    Ok(match spec {
        PolicySpec::DenyAll => Arc::new(DenyAll),
        PolicySpec::Toml { file } => {
            let path = base_dir.join(file);
            Arc::new(TomlPolicy::parse(&read(&path)?).map_err(|e| with_path(e, &path))?)
        }
        PolicySpec::Rego {
            file,
            data,
            eval_limit_ms,
        } => {
            let path = base_dir.join(file);
            let data = match data {
                Some(d) => Some(read(&base_dir.join(d))?),
                None => None,
            };
            rego_policy(&read(&path)?, data.as_deref(), *eval_limit_ms)
                .map_err(|e| with_path(e, &path))?
        }
        PolicySpec::Webhook {
            url,
            timeout_ms,
            insecure_http,
        } => Arc::new(WebhookPolicy::with_options(
            url,
            timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(crate::webhook::DEFAULT_TIMEOUT),
            *insecure_http,
        )?),
        PolicySpec::AllOf { policies } => Arc::new(AllOf::new(
            policies
                .iter()
                .map(|p| load(p, base_dir))
                .collect::<Result<_, _>>()?,
        )),
    })
}

#[cfg(feature = "rego")]
fn rego_policy(
    source: &str,
    data: Option<&str>,
    limit_ms: Option<u64>,
) -> Result<Arc<dyn Policy>, PolicyError> {
    let limit = limit_ms
        .map(Duration::from_millis)
        .unwrap_or(crate::rego::DEFAULT_EVAL_LIMIT);
    Ok(Arc::new(crate::RegoPolicy::with_data(source, data, limit)?))
}

#[cfg(not(feature = "rego"))]
fn rego_policy(
    _source: &str,
    _data: Option<&str>,
    _limit_ms: Option<u64>,
) -> Result<Arc<dyn Policy>, PolicyError> {
    Err(PolicyError::Invalid {
        backend: "rego",
        path: None,
        message: "this build has no Rego support (feature `rego`)".into(),
    })
}

/// Loads a policy file by extension: `.toml` or `.rego`.
pub fn load_file(path: &Path) -> Result<Arc<dyn Policy>, PolicyError> {
    let file = path.display().to_string();
    let spec = match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => PolicySpec::Toml { file },
        Some("rego") => PolicySpec::Rego {
            file,
            data: None,
            eval_limit_ms: None,
        },
        _ => {
            return Err(PolicyError::Invalid {
                backend: "policy",
                path: Some(file),
                message: "the file name must end in .toml or .rego".into(),
            });
        }
    };
    load(&spec, Path::new(""))
}
