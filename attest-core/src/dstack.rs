//! dstack compatibility claims.
//!
//! dstack's auth webhooks (`bootAuth/app`) expect a `BootInfo` with
//! platform-specific aggregates (`mrAggregated`, `mrSystem`) and a
//! `teeVariant` name. Each plug-in computes them, since only it knows its
//! registers, and stores them in [`crate::PlatformClaims`] under
//! [`SECTION`]; the webhook backend reads them without naming a platform.

use serde::{Deserialize, Serialize};

use crate::HexBytes;

/// The `platform_claims` section holding [`DstackClaims`].
pub const SECTION: &str = crate::names::section::DSTACK;

/// What dstack's `BootInfo` needs beyond the normalized identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DstackClaims {
    /// dstack's name of the attestation variant (`dstack-tdx`,
    /// `dstack-amd-sev-snp`, ...), sent as `teeVariant` and `attestationMode`.
    pub tee_variant: String,
    /// dstack's `mr_aggregated` (32 bytes).
    pub mr_aggregated: HexBytes,
    /// dstack's `mr_system` (32 bytes).
    pub mr_system: HexBytes,
    /// The same aggregates at boot time, as dstack computes them for
    /// `SignCert` (`use_boottime_mr`): the app register replayed up to and
    /// including `boot-mr-done`, and no key provider. `None` where the
    /// platform has no such notion or the log has no `boot-mr-done`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_time: Option<BootTimeAggregates>,
}

/// dstack's boot-time `mr_aggregated` and `mr_system` (see
/// [`DstackClaims::boot_time`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootTimeAggregates {
    /// `mr_aggregated` over the boot-time app register (32 bytes).
    pub mr_aggregated: HexBytes,
    /// `mr_system` with no key provider (32 bytes).
    pub mr_system: HexBytes,
}
