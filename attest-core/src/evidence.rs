//! What a confidential VM sends, and what the verifier is told besides.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{AttestError, PlatformId, ReportData};

/// Raw attestation evidence, exactly as received. Optional parts are empty.
///
/// The same shape serves every platform so that the transport and the key
/// service never branch on the platform:
/// - `quote`: the DCAP quote (TDX) or the 1184-byte attestation report (SNP);
/// - `certificates`: the SNP certificate table / VCEK chain (empty on TDX,
///   whose PCK chain is inside the quote);
/// - `event_log`: the TDX event log (CCEL binary or dstack's JSON list);
/// - `app_config`: the document whose digest the platform binds at launch
///   (dstack app config v3 in SNP HOST_DATA).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Which plug-in must verify this.
    pub platform: PlatformId,
    /// The signed quote or report.
    pub quote: Vec<u8>,
    /// Endorsement certificates carried with the evidence.
    pub certificates: Vec<u8>,
    /// Measurement event log.
    pub event_log: Vec<u8>,
    /// Launch-bound app configuration document.
    pub app_config: Vec<u8>,
}

impl Default for PlatformId {
    /// An unregistered placeholder, so that a defaulted [`Evidence`] can never
    /// be verified by accident.
    fn default() -> Self {
        PlatformId::from_static("unset")
    }
}

impl Evidence {
    /// Evidence with only a quote; fill the other parts as the platform needs.
    pub fn new(platform: PlatformId, quote: Vec<u8>) -> Self {
        Evidence {
            platform,
            quote,
            ..Default::default()
        }
    }
}

/// Shows sizes, not bytes: evidence is large and logs must stay readable.
impl fmt::Debug for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Evidence")
            .field("platform", &self.platform)
            .field("quote_len", &self.quote.len())
            .field("certificates_len", &self.certificates.len())
            .field("event_log_len", &self.event_log.len())
            .field("app_config_len", &self.app_config.len())
            .finish()
    }
}

/// Seconds since the Unix epoch, UTC. Verification time is always injected,
/// never read from the clock inside a verifier, so tests can pin it and a
/// replica's decisions are reproducible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixTime(pub u64);

impl UnixTime {
    /// The current wall-clock time (for callers at the edge: the KMS, the CLI).
    pub fn now() -> Self {
        UnixTime(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
    }

    /// Seconds.
    pub fn as_secs(self) -> u64 {
        self.0
    }
}

/// What the caller requires of the evidence besides its authenticity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyContext {
    /// The report data the evidence must carry. Always `Some` on the key
    /// path; `None` only for offline inspection, and then the identity says
    /// `report_data_checked: false`.
    pub expected_report_data: Option<ReportData>,
    /// The instant at which certificates and collateral must be valid.
    pub time: UnixTime,
}

impl VerifyContext {
    /// A context that requires `report_data` at `time`.
    pub fn new(report_data: ReportData, time: UnixTime) -> Self {
        VerifyContext {
            expected_report_data: Some(report_data),
            time,
        }
    }

    /// A context for offline inspection: report data is not checked.
    pub fn without_report_data(time: UnixTime) -> Self {
        VerifyContext {
            expected_report_data: None,
            time,
        }
    }

    /// Checks the report data found in the evidence against the expected
    /// value. Returns whether a check happened (for
    /// `VerifiedIdentity::report_data_checked`); a mismatch is an error.
    pub fn check_report_data(&self, found: &ReportData) -> Result<bool, AttestError> {
        match &self.expected_report_data {
            None => Ok(false),
            Some(expected) if expected == found => Ok(true),
            Some(expected) => Err(AttestError::BindingMismatch {
                expected: Box::new(*expected),
                found: Box::new(*found),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_data_check() {
        let a = ReportData([1; 64]);
        let b = ReportData([2; 64]);
        let t = UnixTime(5);
        assert_eq!(
            VerifyContext::without_report_data(t).check_report_data(&a),
            Ok(false)
        );
        assert_eq!(VerifyContext::new(a, t).check_report_data(&a), Ok(true));
        assert_eq!(
            VerifyContext::new(a, t).check_report_data(&b),
            Err(AttestError::BindingMismatch {
                expected: Box::new(a),
                found: Box::new(b)
            })
        );
    }

    #[test]
    fn unix_time_is_seconds() {
        assert_eq!(UnixTime(1_752_919_234).as_secs(), 1_752_919_234);
        assert!(UnixTime::now().as_secs() > 1_700_000_000);
    }

    #[test]
    fn debug_hides_bytes() {
        let e = Evidence::new(PlatformId::TDX, vec![0xde; 10]);
        assert_eq!(
            format!("{e:?}"),
            "Evidence { platform: PlatformId(tdx), quote_len: 10, certificates_len: 0, event_log_len: 0, app_config_len: 0 }"
        );
    }
}
