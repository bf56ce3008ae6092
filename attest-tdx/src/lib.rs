//! Intel TDX plug-in.
//!
//! [`TdxVerifier`] checks a DCAP quote (v4 or v5: TD 1.0, TD 1.5, TD 1.5-ex
//! bodies) with dcap-qvl against Intel's production root (embedded), using
//! collateral from a [`collateral::CollateralSource`], replays the event log
//! into RTMR0..3, and returns the normalized identity. Fail-closed: debug
//! TDs, a non-Intel TDX module (non-zero MRSIGNERSEAM), revoked TCBs, any
//! signature, chain or CRL failure, collateral outside its window, report
//! data other than the expected value, and an event log that does not
//! reproduce the quote's registers are all errors.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod collateral;
mod errors;
mod identity;
mod quote;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use attest_core::{
    AttestError, Attestation, Evidence, PlatformId, VerifiedIdentity, VerifyContext,
};
use dcap_qvl::verify::{QuoteVerifier, VerifiedReport};
use sha2::{Digest, Sha256};

pub use collateral::{
    CachedCollateral, Collateral, CollateralKey, CollateralSource, OfflineCollateral, PcsClient,
};
pub use identity::{Inspection, RTMRS, RegisterReplay, TdxClaims, inspect};
pub use quote::{TdQuote, parse_event_log};

/// Intel's SGX/TDX root CA (DER), the DCAP trust anchor.
pub const INTEL_ROOT_CA_DER: &[u8] = include_bytes!("../roots/intel-sgx-root-ca.der");

/// Largest quote accepted (real ones are about 5 KiB; cos-113 pads to 8000).
pub const MAX_QUOTE_LEN: usize = 64 * 1024;
/// Largest event log accepted (a CCEL area is 256 KiB).
pub const MAX_EVENT_LOG_LEN: usize = 2 * 1024 * 1024;

/// A quote whose signatures, chain and collateral dcap-qvl accepted.
pub struct VerifiedQuote {
    /// The parsed quote.
    pub quote: TdQuote,
    /// Its collateral key (FMSPC, PCK CA).
    pub key: CollateralKey,
    /// The collateral it was verified with.
    pub collateral: Arc<Collateral>,
    /// dcap-qvl's result (TCB status, advisories, PPID).
    pub report: VerifiedReport,
}

/// The TDX verifier.
pub struct TdxVerifier {
    qvl: QuoteVerifier,
    collateral: Arc<dyn CollateralSource>,
    /// PCK chain digest -> collateral key: a platform sends the same chain
    /// in every quote, and parsing it costs more than a tenth of a verify.
    keys: Mutex<HashMap<[u8; 32], CollateralKey>>,
}

/// Most remembered PCK chains before the map is cleared.
const MAX_REMEMBERED_CHAINS: usize = 4096;

impl TdxVerifier {
    /// A verifier anchored at Intel's production root.
    pub fn new(collateral: Arc<dyn CollateralSource>) -> Self {
        Self::with_root(INTEL_ROOT_CA_DER.to_vec(), collateral)
    }

    /// A verifier anchored at another root. Only tests (the testkit's fake
    /// Intel PKI) and an explicit insecure setting use this.
    pub fn with_root(root_ca_der: Vec<u8>, collateral: Arc<dyn CollateralSource>) -> Self {
        TdxVerifier {
            qvl: QuoteVerifier::new(root_ca_der),
            collateral,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Verifies the quote and its collateral only (no event log, no report
    /// data): the part the benchmark compares with raw dcap-qvl.
    pub async fn verify_quote(
        &self,
        raw: &[u8],
        now: attest_core::UnixTime,
    ) -> Result<VerifiedQuote, AttestError> {
        if raw.len() > MAX_QUOTE_LEN {
            return Err(AttestError::Malformed(format!(
                "quote is {} bytes, at most {MAX_QUOTE_LEN} accepted",
                raw.len()
            )));
        }
        let quote = TdQuote::parse(raw)?;
        let key = self.collateral_key(&quote)?;
        let collateral = self.collateral.fetch(&key, now).await?;
        // dcap-qvl's own checks (signatures, chains, CRLs, collateral
        // windows, Revoked, debug and TD attributes) all run here; the TCB
        // status itself is left to the KMS policy.
        let report = self
            .qvl
            .verify(raw, &collateral.data, now.as_secs())
            .map_err(|e| errors::map_qvl_error(&e))?;
        Ok(VerifiedQuote {
            quote,
            key,
            collateral,
            report,
        })
    }

    fn collateral_key(&self, quote: &TdQuote) -> Result<CollateralKey, AttestError> {
        let Ok(chain) = quote.quote.raw_cert_chain() else {
            return quote.collateral_key();
        };
        let digest: [u8; 32] = Sha256::digest(chain).into();
        if let Some(k) = self
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&digest)
        {
            return Ok(*k);
        }
        let key = quote.collateral_key()?;
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.len() >= MAX_REMEMBERED_CHAINS {
            keys.clear();
        }
        keys.insert(digest, key);
        Ok(key)
    }
}

impl TdxVerifier {
    /// Verifies a quote without an event log and returns the identity JSON
    /// with `app: null` (see [`Attestation::verify`] for the full identity).
    pub async fn verify_quote_only(
        &self,
        raw: &[u8],
        ctx: &VerifyContext,
    ) -> Result<serde_json::Value, AttestError> {
        let verified = self.verify_quote(raw, ctx.time).await?;
        identity::quote_only_json(&verified, ctx)
    }
}

#[async_trait]
impl Attestation for TdxVerifier {
    fn platform(&self) -> PlatformId {
        PlatformId::TDX
    }

    async fn verify(
        &self,
        evidence: &Evidence,
        ctx: &VerifyContext,
    ) -> Result<VerifiedIdentity, AttestError> {
        if evidence.platform != PlatformId::TDX {
            return Err(AttestError::UnsupportedPlatform(evidence.platform.clone()));
        }
        if evidence.event_log.len() > MAX_EVENT_LOG_LEN {
            return Err(AttestError::Malformed(format!(
                "event log is {} bytes, at most {MAX_EVENT_LOG_LEN} accepted",
                evidence.event_log.len()
            )));
        }
        let verified = self.verify_quote(&evidence.quote, ctx.time).await?;
        identity::build(&verified, &evidence.event_log, ctx)
    }
}
