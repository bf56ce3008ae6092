//! The identity of a quote verified without its event log: for offline
//! tools, never for a key release.

use attest_core::{AttestError, NoApp, PlatformId, QuoteOnlyIdentity, VerifyContext};

use super::quote_part::{SECTION, quote_part};
use crate::VerifiedQuote;

/// The identity of a quote verified without an event log: `app` null (a
/// TD's app identity lives in its RTMR3 events, so without them there is
/// none). Keys are never released on this form; it serves offline tools.
pub(crate) fn quote_only(
    v: &VerifiedQuote,
    ctx: &VerifyContext,
) -> Result<QuoteOnlyIdentity, AttestError> {
    let mut part = quote_part(v, ctx)?;
    part.platform_claims.insert(SECTION, &part.tdx)?;
    Ok(QuoteOnlyIdentity {
        platform: PlatformId::TDX,
        app: NoApp,
        boot: part.boot,
        tcb: part.tcb,
        debug: part.debug,
        report_data: part.report_data,
        report_data_checked: part.report_data_checked,
        device_id: part.device_id,
        platform_claims: part.platform_claims,
    })
}
