//! Turning a verified quote and its event log into the normalized identity.
//!
//! One file per question a reviewer asks:
//! - [`quote_part`]: what the quote alone proves, after the checks dcap-qvl
//!   leaves to this plug-in (Intel's TDX module, debug off, the binding);
//!   public for plug-ins composed on TDX;
//! - `tcb`: dcap-qvl's TCB verdict in the identity's terms;
//! - `replay`: the event log against the RTMRs (a full log, or dstack's
//!   stripped log against RTMR3 alone);
//! - `dstack`: dstack's aggregate measurements (`platform_claims.dstack`);
//! - `quote_only`: the identity without an app, for offline tools;
//! - here, [`build`]: the full identity, the app read only from a
//!   [`ReplayedLog`](attest_core::eventlog::ReplayedLog).

mod dstack;
mod quote_only;
mod quote_part;
mod replay;
mod tcb;

use attest_core::dstack::SECTION as DSTACK_SECTION;
use attest_core::{
    AppIdentity, AttestError, Malformed, PlatformId, VerifiedIdentity, VerifyContext,
};

pub(crate) use quote_only::quote_only;
pub use quote_part::{QuotePart, SECTION, TdxClaims, quote_part};
pub(crate) use quote_part::{boot_measurements, is_debug};
pub use replay::{APP_RTMR, RTMR_COUNT, RTMRS};

use crate::VerifiedQuote;

/// The full identity: the quote's parts, and the app from RTMR3's runtime
/// events once the log replays to the quote's registers.
pub(crate) fn build(
    v: &VerifiedQuote,
    event_log: &[u8],
    ctx: &VerifyContext,
) -> Result<VerifiedIdentity, AttestError> {
    let quote = v.quote();
    let mut part = quote_part(v, ctx)?;
    if event_log.is_empty() {
        return Err(Malformed::Missing {
            what: "event log",
            detail:
                "TDX evidence carries no event log: the app identity is in its RTMR3 runtime events"
                    .into(),
        }
        .into());
    }
    let (log, coverage) = replay::replay_and_check(quote, event_log)?;
    let info = log.app_info()?;
    let app: AppIdentity = info.app_identity()?;
    part.platform_claims
        .insert(DSTACK_SECTION, &dstack::dstack_claims(quote, &info, &log))?;
    part.tdx.replayed_registers = coverage.registers();
    part.platform_claims.insert(SECTION, &part.tdx)?;
    Ok(VerifiedIdentity {
        platform: PlatformId::TDX,
        app,
        boot: part.boot,
        tcb: part.tcb,
        debug: part.debug,
        report_data: part.report_data,
        report_data_checked: part.report_data_checked,
        device_id: part.device_id,
        platform_claims: part.platform_claims,
    })
}
