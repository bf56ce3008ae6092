//! Rego policies on `regorus`.
//!
//! The input is the [`PolicyInput`] JSON (the identity's names plus
//! `request`). `data.kms.allow` decides (anything but `true` denies) and
//! `data.kms.deny_reasons`, a set of strings, explains:
//!
//! ```rego
//! package kms
//!
//! default allow := false
//! allow if { count(deny_reasons) == 0 }
//!
//! deny_reasons contains "debug TEE" if input.debug
//! deny_reasons contains msg if {
//!     not input.tcb.status in {"UpToDate"}
//!     msg := sprintf("tcb.status %s not accepted", [input.tcb.status])
//! }
//! ```
//!
//! A replica KMS asking for the root keys (`input.request.keys ==
//! ["root_keys"]`) is decided by a separate rule, `data.kms.allow_root_keys`,
//! never by `allow`: an app allowlist written for `allow` must not hand an
//! app the root keys. A module without that rule allows no replica.
//!
//! ```rego
//! allow_root_keys if {
//!     input.app.compose_hash in data.kms_deployments
//!     input.tcb.status == "UpToDate"
//! }
//! ```
//!
//! The module is parsed and checked once at load; each evaluation clones the
//! prepared engine (cheap: the modules are shared) and runs under a
//! wall-clock limit, so a pathological policy denies instead of stalling the
//! KMS.

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use async_trait::async_trait;
use regorus::utils::limits::{ExecutionTimerConfig, PolicyLengthConfig};
use regorus::{Engine, Value};

/// The rule that decides `GetRootKeys` (the `kms` role).
const ROOT_KEYS_RULE: &str = "allow_root_keys";

use crate::decision::sha256;
use crate::{Decision, Policy, PolicyError, PolicyInput, Reason};

/// Default wall-clock limit of one evaluation.
pub const DEFAULT_EVAL_LIMIT: Duration = Duration::from_millis(50);
/// Largest policy module accepted.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;

/// A loaded Rego policy.
pub struct RegoPolicy {
    engine: Engine,
    /// Whether the module declares `allow_root_keys` (the `kms` role).
    root_keys_rule: bool,
    digest: [u8; 32],
}

fn invalid(message: String) -> PolicyError {
    PolicyError::Invalid {
        backend: "rego",
        path: None,
        message,
    }
}

impl RegoPolicy {
    /// Compiles a module with the default evaluation limit.
    pub fn parse(source: &str) -> Result<Self, PolicyError> {
        Self::with_limit(source, DEFAULT_EVAL_LIMIT)
    }

    /// Compiles a module; each evaluation may run for at most `limit`.
    pub fn with_limit(source: &str, limit: Duration) -> Result<Self, PolicyError> {
        Self::with_data(source, None, limit)
    }

    /// Compiles a module with a JSON data document (OPA's `data`: allowlists
    /// kept apart from the rules, loaded once instead of rebuilt by rules on
    /// every evaluation); each evaluation may run for at most `limit`.
    pub fn with_data(
        source: &str,
        data_json: Option<&str>,
        limit: Duration,
    ) -> Result<Self, PolicyError> {
        let mut engine = Engine::new();
        engine.set_policy_length_config(PolicyLengthConfig {
            max_col: NonZeroU32::new(4096).unwrap_or(NonZeroU32::MIN),
            max_file_bytes: NonZeroUsize::new(MAX_POLICY_BYTES).unwrap_or(NonZeroUsize::MIN),
            max_lines: NonZeroUsize::new(50_000).unwrap_or(NonZeroUsize::MIN),
        });
        engine.set_execution_timer_config(ExecutionTimerConfig {
            limit,
            check_interval: NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN),
        });
        engine.set_strict_builtin_errors(true);
        if let Some(data) = data_json {
            // regorus lets `data.kms.allow` in the data document take
            // precedence over the module's `allow` rule: a data file (the
            // file meant for allowlists) could then allow everything. The
            // policy's own package is the module's alone.
            let parsed: serde_json::Value =
                serde_json::from_str(data).map_err(|e| invalid(format!("data document: {e}")))?;
            match &parsed {
                serde_json::Value::Object(m) if m.contains_key("kms") => {
                    return Err(invalid(
                        "the data document defines `kms`, the policy's own package: its values would override the module's rules; put data under another key"
                            .into(),
                    ));
                }
                serde_json::Value::Object(_) => {}
                _ => {
                    return Err(invalid("the data document must be a JSON object".into()));
                }
            }
            let value =
                Value::from_json_str(data).map_err(|e| invalid(format!("data document: {e}")))?;
            engine
                .add_data(value)
                .map_err(|e| invalid(format!("data document: {e}")))?;
        }
        let package = engine
            .add_policy("policy.rego".into(), source.into())
            .map_err(|e| invalid(e.to_string()))?;
        if package != "data.kms" {
            return Err(invalid(format!(
                "the module must be `package kms`, found {package}"
            )));
        }
        if !engine
            .has_declared_rule_rooted_at("policy.rego", "allow")
            .map_err(|e| invalid(e.to_string()))?
        {
            return Err(invalid("the module declares no `allow` rule".into()));
        }
        let root_keys_rule = engine
            .has_declared_rule_rooted_at("policy.rego", ROOT_KEYS_RULE)
            .map_err(|e| invalid(e.to_string()))?;
        // Prepare once (rule indexing happens on first evaluation) so that
        // clones start warm, and surface errors that only evaluation finds.
        engine.set_input(Value::new_object());
        engine
            .eval_rule("data.kms.allow".into())
            .map_err(|e| invalid(format!("evaluating data.kms.allow on an empty input: {e}")))?;
        Ok(RegoPolicy {
            engine,
            root_keys_rule,
            // The digest covers every byte that decides: module and data.
            digest: sha256(&[
                b"rego",
                source.as_bytes(),
                data_json.unwrap_or("").as_bytes(),
            ]),
        })
    }

    /// Decides synchronously.
    pub fn decide(&self, input: &PolicyInput<'_>) -> Decision {
        let root_keys = input.request.wants_root_keys();
        let rule = if root_keys {
            "data.kms.allow_root_keys"
        } else {
            "data.kms.allow"
        };
        let deny =
            |found: String| Decision::deny(Reason::new("rego", format!("{rule} == true"), found));
        if root_keys && !self.root_keys_rule {
            return deny(format!(
                "undefined (the module declares no `{ROOT_KEYS_RULE}` rule: no replica may hold the root keys)"
            ));
        }
        let input_value: Value = match serde::Deserialize::deserialize(input.to_json()) {
            Ok(v) => v,
            Err(e) => return deny(format!("input conversion failed: {e}")),
        };
        let mut engine = self.engine.clone();
        engine.set_input(input_value);
        let allow = match engine.eval_rule(rule.into()) {
            Ok(v) => v,
            Err(e) => return deny(format!("evaluation error: {e}")),
        };
        if allow == Value::Bool(true) {
            return Decision::allow();
        }
        // deny_reasons explain the app rule; the root-keys rule stands alone.
        let explained = if root_keys {
            Value::Undefined
        } else {
            engine
                .eval_rule("data.kms.deny_reasons".into())
                .unwrap_or(Value::Undefined)
        };
        let reasons: Vec<Reason> = match explained {
            Value::Set(set) => set
                .iter()
                .map(|v| match v.as_string() {
                    Ok(s) => Reason::new("rego.deny_reasons", "no deny reason", s.to_string()),
                    Err(_) => Reason::new("rego.deny_reasons", "no deny reason", v.to_string()),
                })
                .collect(),
            _ => Vec::new(),
        };
        if reasons.is_empty() {
            let found = if allow == Value::Undefined {
                "undefined".into()
            } else {
                allow.to_string()
            };
            return deny(found);
        }
        Decision::from_reasons(reasons, Vec::new())
    }
}

#[async_trait]
impl Policy for RegoPolicy {
    async fn evaluate(&self, input: &PolicyInput<'_>) -> Decision {
        self.decide(input)
    }
    fn digest(&self) -> [u8; 32] {
        self.digest
    }
    fn backend(&self) -> &'static str {
        "rego"
    }
}
