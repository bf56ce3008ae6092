//! `kms inspect tdx`: a quote parsed and its event log replayed per
//! register, nothing verified.

use attest_core::eventlog;
use attest_core::{AppIdentity, AttestError, BootMeasurements, HexBytes, ReportData};
use serde::Serialize;
use sha2::Sha384;

use crate::identity::{RTMRS, boot_measurements, is_debug};
use crate::quote::{TdQuote, parse_event_log};

/// One register's replay result.
#[derive(Clone, Debug, Serialize)]
pub struct RegisterReplay {
    /// `rtmr0`..`rtmr3`.
    pub register: String,
    /// The value in the quote.
    pub quote: HexBytes,
    /// The value the log replays to.
    pub replayed: HexBytes,
    /// Whether they are equal.
    pub matches: bool,
}

/// What `kms inspect tdx` reports: parsed, never verified.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    /// Always false: signatures and collateral were not checked.
    pub verified: bool,
    /// Quote version.
    pub quote_version: u16,
    /// Body type.
    pub body_type: String,
    /// The registers.
    pub boot: BootMeasurements,
    /// The report data.
    pub report_data: ReportData,
    /// Whether the TD is in debug mode.
    pub debug: bool,
    /// Replay per register (empty without an event log).
    pub replay: Vec<RegisterReplay>,
    /// The app identity from the runtime events, when present.
    pub app: Option<AppIdentity>,
    /// Why there is no app identity, when there is none.
    pub app_error: Option<String>,
}

impl Inspection {
    /// Whether every register replayed to the quote's value.
    pub fn replay_matches(&self) -> bool {
        self.replay.iter().all(|r| r.matches)
    }
}

/// Parses a quote and replays its event log without verifying anything.
pub fn inspect(raw: &[u8], event_log: Option<&[u8]>) -> Result<Inspection, AttestError> {
    let quote = TdQuote::parse(raw)?;
    let r = quote.td10();
    let mut out = Inspection {
        verified: false,
        quote_version: quote.version,
        body_type: quote.body_type().into(),
        boot: boot_measurements(&quote),
        report_data: ReportData(r.report_data),
        debug: is_debug(&quote),
        replay: Vec::new(),
        app: None,
        app_error: Some("no event log given".into()),
    };
    if let Some(log) = event_log {
        let events = parse_event_log(log)?;
        let replayed = eventlog::replay::<Sha384>(&events, &RTMRS)?;
        out.replay = quote
            .rtmrs()
            .iter()
            .zip(&replayed)
            .enumerate()
            .map(|(i, (q, got))| RegisterReplay {
                register: RTMRS.name(i),
                quote: HexBytes(q.to_vec()),
                replayed: HexBytes(got.to_vec()),
                matches: q.as_slice() == got.as_slice(),
            })
            .collect();
        // What the log claims: shown, never acted on.
        match eventlog::claimed_app_info(&events, &RTMRS).and_then(|i| i.app_identity()) {
            Ok(app) => {
                out.app = Some(app);
                out.app_error = None;
            }
            Err(e) => out.app_error = Some(e.to_string()),
        }
    }
    Ok(out)
}
