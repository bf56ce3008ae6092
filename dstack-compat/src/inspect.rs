//! Inspection: what a dstack attestation claims, and whether its own parts
//! agree, for tools and logs. Nothing is verified: the quote's signature,
//! its collateral and the platform's TCB are the plug-ins' job, and a
//! claimed identity here is never an identity to act on.
//!
//! On TDX the runtime events are replayed into RTMR3 (every digest
//! recomputed from name and payload, V2 events in their JCS form, no
//! preimage needed) and compared with the RTMR3 in the quote bytes; on SNP
//! the app config document is hashed and compared with the report's
//! HOST_DATA.

use attest_core::app_config::{AppConfigV3, host_data};
use attest_core::eventlog::{
    BOOT_MR_DONE, LogEvent, RuntimeAppInfo, claimed_app_info, replay, runtime_event_digest,
};
use attest_core::{AppIdentity, AttestError, Malformed, PlatformId, ReportData};
use sha2::{Digest, Sha384};

use crate::DSTACK_TDX_REGISTERS;
use crate::attestation::{AttestationVersion, PlatformQuote, VersionedAttestation};
use crate::evidence::runtime_log_events;
use crate::quote::{SnpReportFields, TdxQuoteFields};
use crate::ratls::{GuestAttestation, LegacyTdxAttestation};

/// The app identity the attestation claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claimed {
    /// TDX: the runtime events before `system-ready`.
    RuntimeEvents(RuntimeAppInfo),
    /// SNP: the app config v3 document HOST_DATA binds.
    AppConfig(AppConfigV3),
}

impl Claimed {
    /// The identity; on TDX, `app-id` and `compose-hash` are required.
    pub fn app_identity(&self) -> Result<AppIdentity, AttestError> {
        match self {
            Claimed::RuntimeEvents(info) => info.app_identity(),
            Claimed::AppConfig(doc) => Ok(doc.app_identity()),
        }
    }
}

/// The measurement that ties the claimed identity to the signed evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeasurementCheck {
    /// TDX: RTMR3 from the quote and replayed from the runtime events.
    Rtmr3 {
        /// RTMR3 as the quote bytes hold it.
        quote: [u8; 48],
        /// RTMR3 replayed from every runtime event.
        replayed: [u8; 48],
        /// RTMR3 replayed up to and including `boot-mr-done` (dstack's
        /// boot-time value, used for `SignCert`), if that event exists.
        boot_time: Option<[u8; 48]>,
    },
    /// SNP: HOST_DATA from the report and recomputed from `mr_config`.
    HostData {
        /// HOST_DATA as the report holds it.
        report: [u8; 32],
        /// `SHA-256("dstack-mr-config-v3:" ‖ 0x00 ‖ mr_config)`.
        recomputed: [u8; 32],
    },
}

impl MeasurementCheck {
    /// Whether the claimed document reproduces the signed value.
    pub fn matches(&self) -> bool {
        match self {
            MeasurementCheck::Rtmr3 {
                quote, replayed, ..
            } => quote == replayed,
            MeasurementCheck::HostData { report, recomputed } => report == recomputed,
        }
    }
}

/// What [`VersionedAttestation::inspect`] and [`GuestAttestation::inspect`]
/// report. Parsed, never verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// The plug-in that would verify it.
    pub platform: PlatformId,
    /// The encoding (`None` for the legacy quote + event log pair).
    pub version: Option<AttestationVersion>,
    /// The report data the attestation states.
    pub report_data: ReportData,
    /// The report data in the quote or report bytes (signed, if genuine).
    pub signed_report_data: ReportData,
    /// RTMR3 replay (TDX) or HOST_DATA (SNP).
    pub measurement: MeasurementCheck,
    /// The claimed identity, or why it cannot be read.
    pub claimed: Result<Claimed, AttestError>,
    /// The guest's `vm_config` (empty for the legacy pair).
    pub config: String,
}

impl Inspection {
    /// Whether the stated report data is the one in the quote bytes.
    pub fn report_data_consistent(&self) -> bool {
        self.report_data == self.signed_report_data
    }
}

fn to48(what: &str, b: &[u8]) -> Result<[u8; 48], AttestError> {
    <[u8; 48]>::try_from(b).map_err(|_| {
        Malformed::BadLength {
            what: what.into(),
            expected: 48,
            found: b.len(),
        }
        .into()
    })
}

/// Replays `events` (RTMR3 checked against `quote`) and reads what they
/// claim.
fn tdx_check(
    quote: &[u8],
    events: &[LogEvent],
) -> Result<(ReportData, MeasurementCheck, Result<Claimed, AttestError>), AttestError> {
    let fields = TdxQuoteFields::read(quote)?;
    let set = &DSTACK_TDX_REGISTERS;
    let regs = replay::<Sha384>(events, set)?;
    let app = usize::try_from(set.app_register).unwrap_or(usize::MAX);
    let replayed = to48(
        "replayed RTMR3",
        regs.get(app).map(|r| r.as_slice()).unwrap_or_default(),
    )?;
    // dstack's boot-time RTMR3: the app register up to `boot-mr-done`.
    let mut reg = [0u8; 48];
    let mut boot_time = None;
    for ev in events.iter().filter(|e| e.register == set.app_register) {
        if let Some(r) = ev.as_runtime() {
            let d = runtime_event_digest::<Sha384>(&r.name, &r.payload, r.version);
            reg = to48(
                "RTMR3",
                &Sha384::new().chain_update(reg).chain_update(d).finalize(),
            )?;
            if r.name == BOOT_MR_DONE {
                boot_time = Some(reg);
                break;
            }
        }
    }
    let claimed = claimed_app_info(events, set).map(Claimed::RuntimeEvents);
    Ok((
        ReportData(fields.report_data),
        MeasurementCheck::Rtmr3 {
            quote: fields.rtmr3,
            replayed,
            boot_time,
        },
        claimed,
    ))
}

impl VersionedAttestation {
    /// Decoded parts, claimed identity and the measurement comparison.
    /// Errors only when the quote bytes lack the fields read (a quote that
    /// is not a v4/v5 TDX quote) or the runtime events cannot be replayed.
    pub fn inspect(&self) -> Result<Inspection, AttestError> {
        let (signed_report_data, measurement, claimed) = match self.quote() {
            PlatformQuote::Tdx(t) => {
                tdx_check(&t.quote, &runtime_log_events(self.runtime_events()))?
            }
            PlatformQuote::SevSnp(s) => {
                let fields = SnpReportFields::read(&s.report)?;
                (
                    ReportData(fields.report_data),
                    MeasurementCheck::HostData {
                        report: fields.host_data,
                        recomputed: host_data(s.mr_config.as_bytes()),
                    },
                    AppConfigV3::parse(s.mr_config.as_bytes()).map(Claimed::AppConfig),
                )
            }
        };
        Ok(Inspection {
            platform: self.platform(),
            version: Some(self.version()),
            report_data: *self.report_data(),
            signed_report_data,
            measurement,
            claimed,
            config: self.config().to_owned(),
        })
    }
}

impl LegacyTdxAttestation {
    /// Like [`VersionedAttestation::inspect`], replaying the full log (only
    /// RTMR3 is compared; its boot events must keep off RTMR3).
    pub fn inspect(&self) -> Result<Inspection, AttestError> {
        let (signed_report_data, measurement, claimed) = tdx_check(self.quote(), self.events())?;
        Ok(Inspection {
            platform: PlatformId::TDX,
            version: None,
            report_data: *self.report_data(),
            signed_report_data,
            measurement,
            claimed,
            config: String::new(),
        })
    }
}

impl GuestAttestation {
    /// See [`VersionedAttestation::inspect`].
    pub fn inspect(&self) -> Result<Inspection, AttestError> {
        match self {
            GuestAttestation::Versioned(a) => a.inspect(),
            GuestAttestation::Legacy(l) => l.inspect(),
        }
    }
}
