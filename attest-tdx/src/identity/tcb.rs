//! dcap-qvl's TCB verdict in the identity's terms.

use attest_core::TcbStatus;

/// dcap-qvl's converged status, as the identity contract spells it.
pub(super) fn map_status(s: dcap_qvl::TcbStatus) -> TcbStatus {
    use dcap_qvl::TcbStatus as Q;
    match s {
        Q::UpToDate => TcbStatus::UpToDate,
        Q::SWHardeningNeeded => TcbStatus::SwHardeningNeeded,
        Q::ConfigurationNeeded => TcbStatus::ConfigurationNeeded,
        Q::ConfigurationAndSWHardeningNeeded => TcbStatus::ConfigurationAndSwHardeningNeeded,
        // A TD that launched on an out-of-date TCB must relaunch: until it
        // does, it is out of date whatever its current TCB says.
        Q::OutOfDate | Q::TDRelaunchAdvised => TcbStatus::OutOfDate,
        Q::OutOfDateConfigurationNeeded | Q::TDRelaunchAdvisedConfigurationNeeded => {
            TcbStatus::OutOfDateConfigurationNeeded
        }
        // dcap-qvl rejects Revoked before we get here; never map it to a
        // status a policy could allow by accident.
        Q::Revoked => TcbStatus::Unknown,
    }
}

/// A Unix time from collateral as a date; `None` when out of range.
pub(super) fn date(secs: u64) -> Option<time::OffsetDateTime> {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
}
