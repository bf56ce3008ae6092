//! `SignCert` certificate signing requests (`dstack-wire.md` §2.1).
//!
//! A dstack guest asks for an app certificate with a SCALE-encoded request
//! and an ECDSA-P256-SHA256 signature (DER) over the whole encoding, made
//! with the key whose SubjectPublicKeyInfo the request carries:
//!
//! ```text
//! V2 (api_version 2): confirm String, pubkey Vec<u8>, config CertConfigV2,
//!                     attestation VersionedAttestation (the rest of the input)
//! V1 (api_version 1): confirm String, pubkey Vec<u8>, config CertConfig (first six fields),
//!                     quote Vec<u8>, event_log Vec<u8> (JSON)
//! CertConfigV2 = org_name Option<String>, subject String, subject_alt_names Vec<String>,
//!                usage_server_auth bool, usage_client_auth bool, ext_quote bool,
//!                ext_app_info bool, not_before Option<u64>, not_after Option<u64>
//! ```
//!
//! `confirm` must be the magic `"please sign cert:"`, so that a signature
//! made for something else cannot pass as a request. A V1 request is
//! upgraded as dstack upgrades it: the three missing config fields are
//! `false`, `None`, `None`, and its quote and log form a legacy attestation.
//!
//! Types say what was checked: [`CertSigningRequest::decode`] only decodes;
//! [`CertSigningRequest::verify_signature`] is the one way to a
//! [`SignedCsr`].

use attest_core::{AttestError, BadSignature, Malformed};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;

use crate::attestation::{MAX_ATTESTATION_LEN, VersionedAttestation};
use crate::ratls::{GuestAttestation, LegacyTdxAttestation};
use crate::scale::Scale;
use crate::within;

/// The magic text every request starts with.
pub const CSR_CONFIRM: &str = "please sign cert:";

/// Largest encoded request accepted (dstack's request body limit).
pub const MAX_CSR_LEN: usize = MAX_ATTESTATION_LEN;

const CONTEXT: &str = "dstack CSR (SCALE)";

/// The request format, chosen by `SignCertRequest.api_version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsrVersion {
    /// `api_version` 1 (guests v0.5.1 … v0.5.5).
    V1,
    /// `api_version` 2 (guests ≥ v0.5.6).
    V2,
}

impl CsrVersion {
    /// The version for an `api_version`; dstack accepts 1 and 2 only.
    pub fn from_api_version(api_version: u32) -> Result<Self, AttestError> {
        match api_version {
            1 => Ok(CsrVersion::V1),
            2 => Ok(CsrVersion::V2),
            v => Err(Malformed::Unsupported {
                detail: format!("unsupported SignCert api_version {v} (1 and 2 are supported)"),
            }
            .into()),
        }
    }
}

/// What the guest asks the certificate to say (`CertConfigV2`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertConfig {
    /// Subject O, if any.
    pub org_name: Option<String>,
    /// Subject CN.
    pub subject: String,
    /// DNS (or IP) subject alternative names.
    pub subject_alt_names: Vec<String>,
    /// EKU serverAuth.
    pub usage_server_auth: bool,
    /// EKU clientAuth.
    pub usage_client_auth: bool,
    /// Embed the attestation (`.1.8`).
    pub ext_quote: bool,
    /// Embed the app info (`.1.9`); always false in V1.
    pub ext_app_info: bool,
    /// notBefore (Unix seconds); always `None` in V1.
    pub not_before: Option<u64>,
    /// notAfter (Unix seconds); always `None` in V1.
    pub not_after: Option<u64>,
}

/// A decoded request whose signature has not been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSigningRequest {
    version: CsrVersion,
    encoded: Vec<u8>,
    /// Where a V2 request's attestation starts in `encoded`.
    attestation_at: Option<usize>,
    pubkey: Vec<u8>,
    config: CertConfig,
    attestation: GuestAttestation,
}

fn config(s: &mut Scale<'_>, version: CsrVersion) -> Result<CertConfig, AttestError> {
    let org_name = s.option("config.org_name", |s| {
        s.string("config.org_name", usize::MAX)
    })?;
    let subject = s.string("config.subject", usize::MAX)?;
    let n = s.count("config.subject_alt_names", 1, usize::MAX)?;
    let mut subject_alt_names = Vec::with_capacity(n);
    for i in 0..n {
        subject_alt_names.push(s.string(&format!("config.subject_alt_names[{i}]"), usize::MAX)?);
    }
    let mut c = CertConfig {
        org_name,
        subject,
        subject_alt_names,
        usage_server_auth: s.bool("config.usage_server_auth")?,
        usage_client_auth: s.bool("config.usage_client_auth")?,
        ext_quote: s.bool("config.ext_quote")?,
        ..CertConfig::default()
    };
    if version == CsrVersion::V2 {
        c.ext_app_info = s.bool("config.ext_app_info")?;
        c.not_before = s.option("config.not_before", |s| s.u64("config.not_before"))?;
        c.not_after = s.option("config.not_after", |s| s.u64("config.not_after"))?;
    }
    Ok(c)
}

impl CertSigningRequest {
    /// Decodes the SCALE request `csr` sent with `api_version` (1 or 2).
    /// The signature is not checked; see [`Self::verify_signature`].
    pub fn decode(api_version: u32, csr: &[u8]) -> Result<Self, AttestError> {
        let version = CsrVersion::from_api_version(api_version)?;
        if csr.len() > MAX_CSR_LEN {
            return Err(Malformed::TooLarge {
                what: "CSR".into(),
                size: csr.len(),
                max: MAX_CSR_LEN,
            }
            .into());
        }
        let mut s = Scale::new(csr, CONTEXT);
        let at = s.clone();
        let confirm = s.string("confirm", CSR_CONFIRM.len())?;
        if confirm != CSR_CONFIRM {
            return Err(at.wrong_value(
                "confirm",
                format_args!("{CSR_CONFIRM:?}"),
                format_args!("{confirm:?}"),
            ));
        }
        let pubkey = s.bytes("pubkey")?.to_vec();
        let config = config(&mut s, version)?;
        let mut attestation_at = None;
        let attestation = match version {
            CsrVersion::V2 => {
                let offset = s.position();
                attestation_at = Some(offset);
                let rest = s.take_rest();
                let a = VersionedAttestation::decode(rest).map_err(|e| {
                    within(&format!("{CONTEXT}: attestation (from offset {offset})"), e)
                })?;
                GuestAttestation::Versioned(a)
            }
            CsrVersion::V1 => {
                let quote = s.bytes("quote")?.to_vec();
                let event_log = s.bytes("event_log")?.to_vec();
                s.finish()?;
                let l = LegacyTdxAttestation::new(quote, event_log)
                    .map_err(|e| within(&format!("{CONTEXT}: quote and event_log"), e))?;
                GuestAttestation::Legacy(l)
            }
        };
        Ok(CertSigningRequest {
            version,
            encoded: csr.to_vec(),
            attestation_at,
            pubkey,
            config,
            attestation,
        })
    }

    /// The request format.
    pub fn version(&self) -> CsrVersion {
        self.version
    }

    /// The SubjectPublicKeyInfo (DER) of the key to certify.
    pub fn pubkey(&self) -> &[u8] {
        &self.pubkey
    }

    /// What the certificate should say.
    pub fn config(&self) -> &CertConfig {
        &self.config
    }

    /// The guest's attestation (V1: a legacy quote and event log).
    pub fn attestation(&self) -> &GuestAttestation {
        &self.attestation
    }

    /// The exact bytes the signature covers.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// A V2 request's attestation, encoded as received (what an issued
    /// certificate's `.1.8` carries); `None` for V1.
    pub fn attestation_bytes(&self) -> Option<&[u8]> {
        self.attestation_at.and_then(|at| self.encoded.get(at..))
    }

    /// Checks `signature` (ECDSA P-256 over SHA-256, ASN.1 DER) over the
    /// whole encoding with the request's own `pubkey`, which must be a P-256
    /// SubjectPublicKeyInfo. A signature that does not parse or does not
    /// verify is [`AttestError::BadSignature`]; a `pubkey` that is not a
    /// P-256 key is [`AttestError::Malformed`].
    pub fn verify_signature(self, signature: &[u8]) -> Result<SignedCsr, AttestError> {
        let key = VerifyingKey::from_public_key_der(&self.pubkey).map_err(|e| {
            AttestError::from(Malformed::Syntax {
                what: "CSR pubkey".into(),
                detail: format!("not a P-256 SubjectPublicKeyInfo: {e}"),
            })
        })?;
        let sig = Signature::from_der(signature).map_err(|_| {
            AttestError::from(BadSignature::BadEncoding {
                what: "CSR signature".into(),
                detail: "not an ECDSA DER signature".into(),
            })
        })?;
        key.verify(&self.encoded, &sig).map_err(|_| {
            AttestError::from(BadSignature::DoesNotVerify {
                signed: "the CSR".into(),
                signer: Some("CSR pubkey's".into()),
            })
        })?;
        Ok(SignedCsr(self))
    }
}

/// A request whose signature verified under its own key: the sender holds
/// the key it asks to certify. Only [`CertSigningRequest::verify_signature`]
/// builds one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCsr(CertSigningRequest);

impl SignedCsr {
    /// Decodes and checks the signature in one step.
    pub fn verify(api_version: u32, csr: &[u8], signature: &[u8]) -> Result<Self, AttestError> {
        CertSigningRequest::decode(api_version, csr)?.verify_signature(signature)
    }

    /// The request.
    pub fn csr(&self) -> &CertSigningRequest {
        &self.0
    }

    /// The attestation, once its report data is the RA-TLS binding of the
    /// request's `pubkey` ([`AttestError::BindingMismatch`] otherwise). The
    /// caller must still have the platform verifier check the quote against
    /// [`crate::ratls_report_data`] of the same key.
    pub fn bound_attestation(&self) -> Result<&GuestAttestation, AttestError> {
        let att = self.0.attestation();
        att.check_ratls_binding(self.0.pubkey())?;
        Ok(att)
    }
}
