//! The event log against the quote's RTMRs: a full log replays all four,
//! dstack's stripped log (runtime events alone) RTMR3 only.

use attest_core::AttestError;
use attest_core::eventlog::{RegisterSet, ReplayedLog};
use sha2::Sha384;

use crate::quote::{TdQuote, parse_event_log};

/// How many runtime-extendable registers a TD has (RTMR0..3).
pub const RTMR_COUNT: usize = attest_core::eventlog::TDX_RTMR_COUNT;

/// The RTMR that carries the app identity: dstack's runtime events extend
/// RTMR3.
pub const APP_RTMR: u32 = attest_core::eventlog::TDX_APP_RTMR;

/// TDX's runtime-extendable registers: RTMR0..3, the app identity in RTMR3.
pub const RTMRS: RegisterSet = attest_core::eventlog::TDX_RTMRS;

/// Which registers a log was replayed against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogCoverage {
    /// RTMR0..3: a full log (boot events and runtime events).
    Full,
    /// RTMR3 only: dstack's stripped log, runtime events alone.
    AppRegister,
}

impl LogCoverage {
    /// What a log covers: any event off RTMR3 makes it a full log.
    fn of(events: &[attest_core::eventlog::LogEvent]) -> Self {
        if events.iter().all(|e| e.register == APP_RTMR) {
            LogCoverage::AppRegister
        } else {
            LogCoverage::Full
        }
    }

    /// Whether register `i` is compared with the quote.
    fn checks(self, i: usize) -> bool {
        self == LogCoverage::Full || i == APP_RTMR as usize
    }

    /// Names of the registers checked.
    pub fn registers(self) -> Vec<String> {
        (0..RTMR_COUNT)
            .filter(|i| self.checks(*i))
            .map(|i| RTMRS.name(i))
            .collect()
    }
}

/// Replays the log and compares it with the quote's RTMRs, naming the
/// first register that differs.
///
/// A log whose every event is on RTMR3 (dstack's stripped log: the runtime
/// events alone) is checked against RTMR3 only; any event on RTMR0..2 makes
/// it a full log, and then all four registers must replay. The stripped
/// form gives up nothing the KMS uses: the app identity comes only from
/// RTMR3's runtime events (each digest recomputed), and MRTD and RTMR0..2
/// are read from the signed quote, never from the log, for the boot
/// measurements and the image registry's boot digest. Boot events in a full
/// log only explain those registers; they never feed an identity.
pub(super) fn replay_and_check(
    quote: &TdQuote,
    log: &[u8],
) -> Result<(ReplayedLog, LogCoverage), AttestError> {
    let events = parse_event_log(log)?;
    let coverage = LogCoverage::of(&events);
    let rtmrs = quote.rtmrs();
    let signed: [Option<&[u8]>; RTMR_COUNT] =
        std::array::from_fn(|i| coverage.checks(i).then(|| &rtmrs[i][..]));
    Ok((
        ReplayedLog::check::<Sha384>(events, &RTMRS, &signed)?,
        coverage,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use attest_core::eventlog::LogEvent;

    #[test]
    fn coverage_names_the_registers_checked() {
        let runtime = [LogEvent::runtime(APP_RTMR, "app-id", &[1; 20])];
        assert_eq!(LogCoverage::of(&runtime), LogCoverage::AppRegister);
        assert_eq!(LogCoverage::AppRegister.registers(), ["rtmr3"]);
        let full = [
            LogEvent::boot(0, 1, vec![0; 48], vec![]),
            LogEvent::runtime(APP_RTMR, "app-id", &[1; 20]),
        ];
        assert_eq!(LogCoverage::of(&full), LogCoverage::Full);
        assert_eq!(
            LogCoverage::Full.registers(),
            ["rtmr0", "rtmr1", "rtmr2", "rtmr3"]
        );
        // An empty log has no boot event: it covers RTMR3 (and must
        // replay it, from zero).
        assert_eq!(LogCoverage::of(&[]), LogCoverage::AppRegister);
    }
}
