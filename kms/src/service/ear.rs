//! Signed attestation results: EAT Attestation Results (EAR) in the encoding
//! of Veraison's EAR profile (`tag:github.com,2023:veraison/ear`), as JWTs
//! signed ES256.
//!
//! A relying party that trusts this KMS (gateways, schedulers, auditors)
//! checks one signature with the published key instead of verifying TDX or
//! SNP evidence itself. The claims:
//!
//! ```json
//! {
//!   "eat_profile": "tag:github.com,2023:veraison/ear",
//!   "iat": 1764400000,
//!   "eat_nonce": "<base64url of the request's challenge>",
//!   "ear.verifier-id": {"developer": "confidential-kms", "build": "confidential-kms 0.1.0"},
//!   "submods": {
//!     "<platform>": {
//!       "ear.status": "affirming" | "warning" | "contraindicated",
//!       "ear.appraisal-policy-id": "policy:<backend>:<sha256 of the policy>",
//!       "ear.veraison.annotated-evidence": { the VerifiedIdentity JSON },
//!       "ear.veraison.policy-claims": {"reasons": [...]},          // when not affirming
//!       "ear.veraison.key-attestation": {"akpub": "<base64url>"}   // the requester's key
//!     }
//!   }
//! }
//! ```
//!
//! The status: `contraindicated` when the policy denies (or, offline, the
//! evidence does not verify); `warning` when it allows a platform whose TCB
//! is not `UpToDate` or that carries advisories; `affirming` otherwise.
//!
//! The `ear` crate was the first choice, but its releases that build
//! without OpenSSL (0.6) encode draft-ietf-rats-ear-04 claim names
//! (`ear_status`, no annotated evidence), which Veraison's relying-party
//! libraries do not read; the claims are therefore written here and signed
//! with `jsonwebtoken`.
//!
//! The signing key is derived from the root secret (HKDF-SHA256, label
//! `kms-ear-key/v1`), so every replica holding the root keys signs with the
//! same key and publishes the same JWK.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The EAR profile the claims follow.
pub const EAR_PROFILE: &str = "tag:github.com,2023:veraison/ear";

/// An appraisal's trust tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Verified, allowed, up to date.
    Affirming,
    /// Verified and allowed, with a TCB that is not up to date or advisories.
    Warning,
    /// Denied by policy, or not verified.
    Contraindicated,
}

impl Status {
    /// The claim value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Affirming => "affirming",
            Status::Warning => "warning",
            Status::Contraindicated => "contraindicated",
        }
    }

    /// The status of a verified identity (its JSON) the policy allowed
    /// (`allowed`) or denied.
    pub fn of(identity: &Value, allowed: bool) -> Status {
        if !allowed {
            return Status::Contraindicated;
        }
        let up_to_date = identity["tcb"]["status"] == "UpToDate";
        let advisories = identity["tcb"]["advisory_ids"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
        if up_to_date && !advisories {
            Status::Affirming
        } else {
            Status::Warning
        }
    }
}

/// What one attestation result says.
pub struct Appraisal<'a> {
    /// The submodule name: the platform (`tdx`, `sev-snp`, ...).
    pub platform: &'a str,
    /// The verified identity as JSON (the annotated evidence).
    pub identity: Value,
    /// The verdict.
    pub status: Status,
    /// `policy:<backend>:<digest>`, when a policy decided.
    pub policy_id: Option<String>,
    /// Why the status is not `affirming`.
    pub reasons: Vec<String>,
    /// The request's challenge (`eat_nonce`).
    pub nonce: Option<&'a [u8]>,
    /// The requester's public key the evidence is bound to.
    pub key: Option<&'a [u8]>,
    /// Issue time, Unix seconds.
    pub issued_at: u64,
}

/// The EAR signing key (ES256).
pub struct EarSigner {
    encoding: jsonwebtoken::EncodingKey,
    jwk: Value,
    kid: String,
}

impl std::fmt::Debug for EarSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EarSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Why a result could not be signed.
#[derive(Debug, thiserror::Error)]
#[error("attestation result: {0}")]
pub struct EarError(String);

impl EarSigner {
    /// The signer derived from `root_secret`.
    pub fn derive(root_secret: &[u8; 32]) -> Result<Self, EarError> {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"kms-ear-key/v1"), root_secret);
        // A 32-byte string is a valid P-256 scalar except with probability
        // about 2^-32; the counter moves past the rare one that is not.
        let mut key = None;
        for counter in 0u8..=255 {
            let mut okm = Zeroizing::new([0u8; 32]);
            hk.expand(&[b"es256".as_slice(), &[counter]].concat(), okm.as_mut())
                .map_err(|e| EarError(e.to_string()))?;
            if let Ok(k) = p256::SecretKey::from_slice(okm.as_ref()) {
                key = Some(k);
                break;
            }
        }
        let key = key.ok_or_else(|| EarError("no valid key derived".into()))?;
        let der = key.to_pkcs8_der().map_err(|e| EarError(e.to_string()))?;
        let encoding = jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes());
        let point = key.public_key().to_encoded_point(false);
        let (x, y) = match (point.x(), point.y()) {
            (Some(x), Some(y)) => (B64.encode(x), B64.encode(y)),
            _ => return Err(EarError("public key is the identity".into())),
        };
        // RFC 7638 thumbprint: SHA-256 of the required members in
        // lexicographic order, no whitespace.
        let thumbprint = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = B64.encode(Sha256::digest(thumbprint.as_bytes()));
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": x,
            "y": y,
            "alg": "ES256",
            "use": "sig",
            "kid": kid,
        });
        Ok(EarSigner { encoding, jwk, kid })
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The JWK set served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk.clone()] })
    }

    /// The claims of `a` (unsigned), for tests and inspection.
    pub fn claims(a: &Appraisal<'_>) -> Value {
        let mut submod = json!({
            "ear.status": a.status.as_str(),
            "ear.veraison.annotated-evidence": a.identity,
        });
        if let Some(p) = &a.policy_id {
            submod["ear.appraisal-policy-id"] = json!(p);
        }
        if !a.reasons.is_empty() {
            submod["ear.veraison.policy-claims"] = json!({ "reasons": a.reasons });
        }
        if let Some(k) = a.key {
            submod["ear.veraison.key-attestation"] = json!({ "akpub": B64.encode(k) });
        }
        let mut claims = json!({
            "eat_profile": EAR_PROFILE,
            "iat": a.issued_at,
            "ear.verifier-id": {
                "developer": "confidential-kms",
                "build": concat!("confidential-kms ", env!("CARGO_PKG_VERSION")),
            },
            "submods": { a.platform: submod },
        });
        if let Some(n) = a.nonce {
            claims["eat_nonce"] = json!(B64.encode(n));
        }
        claims
    }

    /// Signs the result of `a` as a JWT (ES256, `kid` the JWK thumbprint).
    pub fn issue(&self, a: &Appraisal<'_>) -> Result<String, EarError> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &Self::claims(a), &self.encoding)
            .map_err(|e| EarError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_derived_from_the_root_secret_and_published_as_a_jwk() {
        let a = EarSigner::derive(&[7; 32]).unwrap();
        let b = EarSigner::derive(&[7; 32]).unwrap();
        let c = EarSigner::derive(&[8; 32]).unwrap();
        assert_eq!(a.jwk(), b.jwk());
        assert_ne!(a.jwk(), c.jwk());
        assert_eq!(a.jwk()["kty"], "EC");
        assert_eq!(a.jwk()["crv"], "P-256");
        assert_eq!(
            B64.decode(a.jwk()["x"].as_str().unwrap()).unwrap().len(),
            32
        );
        assert_eq!(a.jwks()["keys"][0], *a.jwk());
        // Debug shows the key id, never the key.
        assert!(format!("{a:?}").contains(&a.kid));
    }

    #[test]
    fn status_follows_policy_and_tcb() {
        let up = json!({"tcb": {"status": "UpToDate", "advisory_ids": []}});
        let adv = json!({"tcb": {"status": "UpToDate", "advisory_ids": ["INTEL-SA-00837"]}});
        let old = json!({"tcb": {"status": "OutOfDate", "advisory_ids": []}});
        assert_eq!(Status::of(&up, true), Status::Affirming);
        assert_eq!(Status::of(&adv, true), Status::Warning);
        assert_eq!(Status::of(&old, true), Status::Warning);
        assert_eq!(Status::of(&up, false), Status::Contraindicated);
    }

    #[test]
    fn claims_follow_the_profile() {
        let a = Appraisal {
            platform: "tdx",
            identity: json!({"platform": "tdx"}),
            status: Status::Warning,
            policy_id: Some("policy:toml:00".into()),
            reasons: vec!["tcb: OutOfDate".into()],
            nonce: Some(b"challenge"),
            key: Some(&[1; 32]),
            issued_at: 1_764_400_000,
        };
        let c = EarSigner::claims(&a);
        assert_eq!(c["eat_profile"], EAR_PROFILE);
        assert_eq!(c["iat"], 1_764_400_000);
        assert_eq!(c["eat_nonce"], B64.encode(b"challenge"));
        assert_eq!(c["ear.verifier-id"]["developer"], "confidential-kms");
        let s = &c["submods"]["tdx"];
        assert_eq!(s["ear.status"], "warning");
        assert_eq!(s["ear.appraisal-policy-id"], "policy:toml:00");
        assert_eq!(s["ear.veraison.annotated-evidence"]["platform"], "tdx");
        assert_eq!(
            s["ear.veraison.policy-claims"]["reasons"][0],
            "tcb: OutOfDate"
        );
        assert_eq!(
            s["ear.veraison.key-attestation"]["akpub"],
            B64.encode([1; 32])
        );
    }
}
