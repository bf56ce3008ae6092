//! The one trait every platform implements, and the registry that
//! dispatches to them.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{AttestError, Evidence, PlatformId, VerifiedIdentity, VerifyContext};

/// A platform plug-in: turns raw evidence into a [`VerifiedIdentity`].
///
/// Implementations check fail-closed: a signature chain to a pinned vendor
/// root, the evidence signature over the exact received bytes, certificate
/// and collateral validity at `ctx.time`, revocation where published, debug
/// off, the report data against `ctx.expected_report_data` (use
/// [`VerifyContext::check_report_data`]), and the app identity binding. They
/// never read the wall clock and never panic on hostile input.
#[async_trait]
pub trait Attestation: Send + Sync {
    /// The platform this plug-in verifies.
    fn platform(&self) -> PlatformId;

    /// The boot registers that identify an OS image on this platform:
    /// every image registry entry for it must list them (the default, none,
    /// means the platform takes no registry entries).
    fn image_registers(&self) -> &'static [&'static str] {
        &[]
    }

    /// Obtains, without verifying the evidence, whatever endorsements
    /// [`Attestation::verify`] will need from the network (collateral,
    /// endorsement keys, CRLs), so that `verify` runs from caches.
    ///
    /// The key service calls this outside its CPU permits: a network wait
    /// never holds one. Implementations fetch only for evidence whose
    /// signer chain leads to a pinned root where the evidence lets them
    /// check that first, and keep every fetch bounded (budget, single
    /// flight, negative cache). The default does nothing.
    async fn fetch_endorsements(
        &self,
        _evidence: &Evidence,
        _ctx: &VerifyContext,
    ) -> Result<(), AttestError> {
        Ok(())
    }

    /// Verifies `evidence` and returns the identity it proves.
    async fn verify(
        &self,
        evidence: &Evidence,
        ctx: &VerifyContext,
    ) -> Result<VerifiedIdentity, AttestError>;
}

/// The registry of platform plug-ins, keyed by [`PlatformId`].
///
/// The key service holds one of these and calls [`Verifiers::verify`]; it
/// never names a platform. Adding a platform is one `register` call.
#[derive(Clone, Default)]
pub struct Verifiers {
    by_platform: HashMap<PlatformId, Arc<dyn Attestation>>,
}

impl Verifiers {
    /// An empty registry (verifies nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a plug-in under its own platform id, replacing any earlier
    /// one for that platform.
    pub fn register(&mut self, verifier: Arc<dyn Attestation>) -> &mut Self {
        self.by_platform.insert(verifier.platform(), verifier);
        self
    }

    /// Builder form of [`Verifiers::register`].
    pub fn with(mut self, verifier: Arc<dyn Attestation>) -> Self {
        self.register(verifier);
        self
    }

    /// The registered platforms, sorted.
    pub fn platforms(&self) -> Vec<PlatformId> {
        let mut v: Vec<_> = self.by_platform.keys().cloned().collect();
        v.sort();
        v
    }

    /// The plug-in for a platform.
    pub fn get(&self, platform: &PlatformId) -> Option<&Arc<dyn Attestation>> {
        self.by_platform.get(platform)
    }

    /// Dispatches [`Attestation::fetch_endorsements`] to the plug-in for
    /// `evidence.platform`.
    pub async fn fetch_endorsements(
        &self,
        evidence: &Evidence,
        ctx: &VerifyContext,
    ) -> Result<(), AttestError> {
        self.by_platform
            .get(&evidence.platform)
            .ok_or_else(|| AttestError::UnsupportedPlatform(evidence.platform.clone()))?
            .fetch_endorsements(evidence, ctx)
            .await
    }

    /// Dispatches to the plug-in for `evidence.platform`.
    ///
    /// Besides dispatching, this re-checks the invariants every plug-in must
    /// keep, so that one buggy plug-in cannot release keys: the identity is
    /// for the platform that was asked, and when report data is expected, the
    /// identity carries exactly that value.
    pub async fn verify(
        &self,
        evidence: &Evidence,
        ctx: &VerifyContext,
    ) -> Result<VerifiedIdentity, AttestError> {
        let verifier = self
            .by_platform
            .get(&evidence.platform)
            .ok_or_else(|| AttestError::UnsupportedPlatform(evidence.platform.clone()))?;
        let mut identity = verifier.verify(evidence, ctx).await?;
        if identity.platform != evidence.platform {
            return Err(AttestError::IdentityMismatch {
                what: "platform".into(),
                expected: evidence.platform.to_string(),
                found: identity.platform.to_string(),
            });
        }
        identity.report_data_checked = ctx.check_report_data(&identity.report_data)?;
        Ok(identity)
    }
}

impl std::fmt::Debug for Verifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifiers")
            .field("platforms", &self.platforms())
            .finish()
    }
}
