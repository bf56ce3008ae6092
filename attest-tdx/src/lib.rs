//! Intel TDX plug-in.
//!
//! [`TdxVerifier`] checks a DCAP quote (v4 or v5: TD 1.0, TD 1.5, TD 1.5-ex
//! bodies) with dcap-qvl against Intel's production root (embedded), using
//! collateral from a [`collateral::CollateralSource`], replays the event log
//! (into RTMR0..3, or RTMR3 alone for dstack's stripped log of runtime
//! events), and returns the normalized identity. Fail-closed: debug
//! TDs, a non-Intel TDX module (non-zero MRSIGNERSEAM), revoked TCBs, any
//! signature, chain or CRL failure, collateral outside its window, report
//! data other than the expected value, and an event log that does not
//! reproduce the quote's registers are all errors.

pub mod collateral;
mod errors;
mod identity;
mod inspect;
mod pck;
mod pki;
mod platform_cache;
mod quote;
mod tcb_date;

use std::sync::Arc;

use async_trait::async_trait;
use attest_core::{
    AttestError, Attestation, Evidence, Malformed, PlatformId, UnixTime, VerifiedIdentity,
    VerifyContext,
};
use dcap_qvl::QuoteClaims;
use dcap_qvl::verify::QuoteVerifier;

pub use collateral::{
    CachedCollateral, Collateral, CollateralKey, CollateralSource, OfflineCollateral, PcsClient,
};
pub use identity::{APP_RTMR, QuotePart, RTMR_COUNT, RTMRS, TdxClaims, quote_part};
pub use inspect::{Inspection, RegisterReplay, inspect};
pub use quote::{TdQuote, parse_event_log};

/// Intel's SGX/TDX root CA (DER), the DCAP trust anchor.
pub const INTEL_ROOT_CA_DER: &[u8] = include_bytes!("../roots/intel-sgx-root-ca.der");

/// The registers that identify an OS image on TDX (image registry entries
/// must list them): MRTD alone would resolve any kernel and command line.
pub const IMAGE_REGISTERS: &[&str] = &[
    attest_core::names::reg::MRTD,
    attest_core::names::reg::RTMR0,
    attest_core::names::reg::RTMR1,
    attest_core::names::reg::RTMR2,
];

/// Largest quote accepted (real ones are about 5 KiB; cos-113 pads to 8000).
pub const MAX_QUOTE_LEN: usize = 64 * 1024;
/// Largest event log accepted (a CCEL area is 256 KiB).
pub const MAX_EVENT_LOG_LEN: usize = 2 * 1024 * 1024;

/// A quote whose signatures, chains and collateral dcap-qvl accepted.
///
/// Built only by [`TdxVerifier::verify_quote`]; its fields are private so
/// that no code can hold one for a quote that was not verified.
pub struct VerifiedQuote {
    quote: TdQuote,
    key: CollateralKey,
    collateral: Arc<Collateral>,
    claims: QuoteClaims,
}

impl VerifiedQuote {
    /// The parsed quote.
    pub fn quote(&self) -> &TdQuote {
        &self.quote
    }

    /// The collateral key (FMSPC, PCK CA) of the verified PCK leaf.
    pub fn collateral_key(&self) -> &CollateralKey {
        &self.key
    }

    /// The collateral it was verified with.
    pub fn collateral(&self) -> &Arc<Collateral> {
        &self.collateral
    }

    /// What dcap-qvl established: the TCB verdict and matched levels, the
    /// PCK identity, the QE report, the collateral window.
    pub fn claims(&self) -> &QuoteClaims {
        &self.claims
    }
}

/// Identity building below the signature checks, for the fuzz targets
/// only: compiled under `--cfg fuzzing` (set by cargo-fuzz), never in a
/// normal build, so no production code can build a [`VerifiedQuote`] for
/// a quote that was not verified.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    fn as_if_verified(template: &VerifiedQuote, raw: &[u8]) -> Result<VerifiedQuote, AttestError> {
        Ok(VerifiedQuote {
            quote: TdQuote::parse(raw)?,
            key: template.key,
            collateral: template.collateral.clone(),
            claims: template.claims.clone(),
        })
    }

    /// The full identity of `raw` with `event_log`, with the claims and
    /// collateral of `template` (a quote that did verify).
    pub fn identity_as_if_verified(
        template: &VerifiedQuote,
        raw: &[u8],
        event_log: &[u8],
        ctx: &VerifyContext,
    ) -> Result<VerifiedIdentity, AttestError> {
        identity::build(&as_if_verified(template, raw)?, event_log, ctx)
    }

    /// The quote-only identity of `raw`, likewise.
    pub fn quote_only_as_if_verified(
        template: &VerifiedQuote,
        raw: &[u8],
        ctx: &VerifyContext,
    ) -> Result<attest_core::QuoteOnlyIdentity, AttestError> {
        identity::quote_only(&as_if_verified(template, raw)?, ctx)
    }
}

/// dcap-qvl's policy hook, accepting every verdict: the TCB status is for
/// the KMS policy to judge (Revoked is rejected by dcap-qvl itself).
struct VerdictToPolicy;

impl dcap_qvl::Policy for VerdictToPolicy {
    fn validate(&self, _claims: &QuoteClaims) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The TDX verifier.
pub struct TdxVerifier {
    qvl: QuoteVerifier,
    collateral: Arc<dyn CollateralSource>,
    /// PCK chains checked to the pinned root, by digest.
    pck: pck::PckChains,
    /// What full verifications established per platform; `None` when
    /// switched off (every quote verified in full).
    platforms: Option<platform_cache::PlatformCache>,
}

impl TdxVerifier {
    /// A verifier anchored at Intel's production root.
    pub fn new(collateral: Arc<dyn CollateralSource>) -> Result<Self, AttestError> {
        Self::with_root(INTEL_ROOT_CA_DER.to_vec(), collateral)
    }

    /// A verifier anchored at another root. Only tests (the testkit's fake
    /// Intel PKI) and an explicit insecure setting use this.
    pub fn with_root(
        root_ca_der: Vec<u8>,
        collateral: Arc<dyn CollateralSource>,
    ) -> Result<Self, AttestError> {
        Ok(TdxVerifier {
            pck: pck::PckChains::new(&root_ca_der)?,
            qvl: QuoteVerifier::new(root_ca_der),
            collateral,
            platforms: Some(platform_cache::PlatformCache::default()),
        })
    }

    /// Switches the verified-platform cache on (the default) or off. Off,
    /// every quote gets a full dcap-qvl verification (about ten signature
    /// checks instead of one); for comparisons and benchmarks.
    pub fn with_platform_cache(mut self, on: bool) -> Self {
        self.platforms = on.then(platform_cache::PlatformCache::default);
        self
    }

    /// Verified platforms held by the cache (0 when it is off).
    pub fn cached_platforms(&self) -> usize {
        self.platforms.as_ref().map_or(0, |c| c.len())
    }

    /// Quotes the cache answered (signature checked against a held
    /// platform, no full collateral evaluation): its hit count, for
    /// metrics and tests (0 when it is off).
    pub fn platform_cache_hits(&self) -> u64 {
        self.platforms.as_ref().map_or(0, |c| c.hits())
    }

    /// Parses the quote and checks its PCK chain to the pinned root: what
    /// must hold before the quote's FMSPC may cause a fetch.
    fn quote_and_key(
        &self,
        raw: &[u8],
        now: UnixTime,
    ) -> Result<(TdQuote, CollateralKey), AttestError> {
        if raw.len() > MAX_QUOTE_LEN {
            return Err(Malformed::TooLarge {
                what: "quote".into(),
                size: raw.len(),
                max: MAX_QUOTE_LEN,
            }
            .into());
        }
        let quote = TdQuote::parse(raw)?;
        let key = self.pck.check(&quote.quote, now)?.key;
        Ok((quote, key))
    }

    /// The quote, its key and its collateral: a held valid set when there
    /// is one (no wait), else a fetch. Any source's set must be the one
    /// for the key.
    async fn quote_and_collateral(
        &self,
        raw: &[u8],
        now: UnixTime,
    ) -> Result<(TdQuote, CollateralKey, Arc<Collateral>), AttestError> {
        let (quote, key) = self.quote_and_key(raw, now)?;
        let collateral = match self.collateral.cached(&key, now) {
            Some(c) => c,
            None => self.collateral.fetch(&key, now).await?,
        };
        collateral.check_for(&key)?;
        Ok((quote, key, collateral))
    }

    /// Verifies the quote and its collateral only (no event log, no report
    /// data): the part the benchmark compares with raw dcap-qvl.
    pub async fn verify_quote(
        &self,
        raw: &[u8],
        now: UnixTime,
    ) -> Result<VerifiedQuote, AttestError> {
        let (quote, key, collateral) = self.quote_and_collateral(raw, now).await?;
        let parts = match &self.platforms {
            Some(_) => Some(platform_cache::Parts::of(raw, &quote, &collateral)?),
            None => None,
        };
        if let (Some(cache), Some(parts)) = (&self.platforms, &parts) {
            if let Some(hit) = cache.lookup(&key, &collateral, parts, &quote, now.as_secs()) {
                return Ok(VerifiedQuote {
                    claims: hit?,
                    quote,
                    key,
                    collateral,
                });
            }
        }
        // dcap-qvl's own checks (signatures, chains, CRLs, collateral
        // windows, Revoked, debug and TD attributes) all run here; the TCB
        // status itself is left to the KMS policy.
        let claims = self
            .qvl
            .verify_with_policy(raw, &collateral.data, now.as_secs(), &VerdictToPolicy)
            .map_err(|e| errors::map_qvl_error(&e))?;
        if let (Some(cache), Some(parts)) = (&self.platforms, &parts) {
            cache.insert(key, &collateral, parts, &claims);
        }
        Ok(VerifiedQuote {
            quote,
            key,
            collateral,
            claims,
        })
    }

    /// Verifies a quote without an event log and returns its identity
    /// with `app: null` (see [`Attestation::verify`] for the full identity).
    pub async fn verify_quote_only(
        &self,
        raw: &[u8],
        ctx: &VerifyContext,
    ) -> Result<attest_core::QuoteOnlyIdentity, AttestError> {
        let verified = self.verify_quote(raw, ctx.time).await?;
        identity::quote_only(&verified, ctx)
    }
}

#[async_trait]
impl Attestation for TdxVerifier {
    fn platform(&self) -> PlatformId {
        PlatformId::TDX
    }

    fn image_registers(&self) -> &'static [&'static str] {
        IMAGE_REGISTERS
    }

    async fn fetch_endorsements(
        &self,
        evidence: &Evidence,
        ctx: &VerifyContext,
    ) -> Result<(), AttestError> {
        // The one step that may refresh from the network (the KMS runs it
        // before taking a verification permit).
        let (_, key) = self.quote_and_key(&evidence.quote, ctx.time)?;
        self.collateral.fetch(&key, ctx.time).await.map(|_| ())
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
            return Err(Malformed::TooLarge {
                what: "event log".into(),
                size: evidence.event_log.len(),
                max: MAX_EVENT_LOG_LEN,
            }
            .into());
        }
        let verified = self.verify_quote(&evidence.quote, ctx.time).await?;
        identity::build(&verified, &evidence.event_log, ctx)
    }
}
