//! Decisions and their reasons.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One failing rule: which rule, what it required, what it found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// The rule's name as written in the policy (`tcb.allow`, `apps.compose_hashes`, ...).
    pub rule: String,
    /// What the rule required.
    pub expected: String,
    /// What the identity had.
    pub found: String,
}

impl Reason {
    /// A reason.
    pub fn new(
        rule: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Reason {
            rule: rule.into(),
            expected: expected.into(),
            found: found.into(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: expected {}, found {}",
            self.rule, self.expected, self.found
        )
    }
}

/// The outcome of a policy evaluation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether keys may be released.
    pub allow: bool,
    /// Every failing rule (empty when allowed).
    pub reasons: Vec<Reason>,
    /// Things an operator must know even when allowed (a TCB grace period in
    /// use, ...).
    pub warnings: Vec<String>,
    /// The gateway app id a dstack auth webhook answered (`gatewayAppId`),
    /// which the dstack-compatible front end hands to the guest; `None`
    /// when no backend said one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_app_id: Option<String>,
}

impl Decision {
    /// An allow with no warnings.
    pub fn allow() -> Self {
        Decision {
            allow: true,
            reasons: Vec::new(),
            warnings: Vec::new(),
            gateway_app_id: None,
        }
    }

    /// A deny for one reason.
    pub fn deny(reason: Reason) -> Self {
        Decision {
            allow: false,
            reasons: vec![reason],
            warnings: Vec::new(),
            gateway_app_id: None,
        }
    }

    /// Allow iff `reasons` is empty.
    pub fn from_reasons(reasons: Vec<Reason>, warnings: Vec<String>) -> Self {
        Decision {
            allow: reasons.is_empty(),
            reasons,
            warnings,
            gateway_app_id: None,
        }
    }

    /// The reasons joined into one line, for logs and gRPC status messages.
    pub fn summary(&self) -> String {
        if self.allow {
            return "allowed".into();
        }
        self.reasons
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}
