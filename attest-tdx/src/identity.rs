//! Turning a verified quote and its event log into the normalized identity.

use attest_core::dstack::{BootTimeAggregates, DstackClaims, SECTION as DSTACK_SECTION};
use attest_core::eventlog::{self, RegisterSet, ReplayedLog, RuntimeAppInfo};
use attest_core::names::reg;
use attest_core::{
    AppIdentity, AttestError, BootMeasurements, DeviceId, HexBytes, NoApp, PlatformClaims,
    PlatformId, QuoteOnlyIdentity, ReportData, TcbInfo, TcbStatus, VerifiedIdentity, VerifyContext,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha384};

use crate::VerifiedQuote;
use crate::quote::{TdQuote, parse_event_log};

/// The `platform_claims.tdx` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdxClaims {
    /// Quote version (4 or 5).
    pub quote_version: u16,
    /// `td10`, `td15` or `td15ex`.
    pub body_type: String,
    /// Platform family, 12 hex digits.
    pub fmspc: String,
    /// `platform` or `processor`.
    pub pck_ca: String,
    /// TCB evaluation data number of the collateral used.
    pub tcb_eval_data_number: u32,
    /// When the collateral used stops verifying (Unix seconds).
    pub collateral_expires: u64,
    /// SEAMATTRIBUTES.
    pub seam_attributes: HexBytes,
    /// TEE_TCB_SVN2 (TD 1.5), the current TCB after a TD-preserving update.
    pub tee_tcb_svn2: Option<HexBytes>,
    /// MRSERVICETD (TD 1.5).
    pub mr_service_td: Option<HexBytes>,
    /// The registers the event log was replayed against: `rtmr0`..`rtmr3`
    /// for a full log, `rtmr3` alone for dstack's stripped log (empty when
    /// no log was given). MRTD and RTMR0..2 always come from the quote.
    #[serde(default)]
    pub replayed_registers: Vec<String>,
}

/// The `platform_claims` section name.
pub const SECTION: &str = attest_core::names::section::TDX;

/// dcap-qvl's converged status.
fn map_status(s: dcap_qvl::TcbStatus) -> TcbStatus {
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

fn date(secs: u64) -> Option<time::OffsetDateTime> {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
}

/// TDX's runtime-extendable registers: RTMR0..3, the app identity in RTMR3.
pub const RTMRS: RegisterSet = RegisterSet {
    count: 4,
    app_register: 3,
    prefix: "rtmr",
};

/// Which registers a log was replayed against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogCoverage {
    /// RTMR0..3: a full log (boot events and runtime events).
    Full,
    /// RTMR3 only: dstack's stripped log, runtime events alone.
    AppRegister,
}

impl LogCoverage {
    /// Names of the registers checked.
    pub fn registers(self) -> Vec<String> {
        match self {
            LogCoverage::Full => (0..RTMRS.count).map(|i| RTMRS.name(i)).collect(),
            LogCoverage::AppRegister => vec![RTMRS.name(RTMRS.app_register as usize)],
        }
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
fn replay_and_check(
    quote: &TdQuote,
    log: &[u8],
) -> Result<(ReplayedLog, LogCoverage), AttestError> {
    let events = parse_event_log(log)?;
    let coverage = if events.iter().all(|e| e.register == RTMRS.app_register) {
        LogCoverage::AppRegister
    } else {
        LogCoverage::Full
    };
    let rtmrs = quote.rtmrs();
    let signed: [Option<&[u8]>; 4] = std::array::from_fn(|i| {
        let checked = coverage == LogCoverage::Full || i == RTMRS.app_register as usize;
        checked.then(|| &rtmrs[i][..])
    });
    Ok((
        ReplayedLog::check::<Sha384>(events, &RTMRS, &signed)?,
        coverage,
    ))
}

fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().to_vec()
}

fn boot_measurements(quote: &TdQuote) -> BootMeasurements {
    let r = quote.td10();
    let boot_digest = Sha384::digest([&r.mr_td[..], &r.rt_mr0, &r.rt_mr1, &r.rt_mr2].concat());
    BootMeasurements::new(boot_digest.to_vec())
        .with(reg::MRTD, &r.mr_td[..])
        .with(reg::RTMR0, &r.rt_mr0[..])
        .with(reg::RTMR1, &r.rt_mr1[..])
        .with(reg::RTMR2, &r.rt_mr2[..])
        .with(reg::RTMR3, &r.rt_mr3[..])
        .with(reg::MR_CONFIG_ID, &r.mr_config_id[..])
        .with(reg::MR_OWNER, &r.mr_owner[..])
        .with(reg::MR_OWNER_CONFIG, &r.mr_owner_config[..])
        .with(reg::XFAM, &r.xfam[..])
        .with(reg::TD_ATTRIBUTES, &r.td_attributes[..])
        .with(reg::TEE_TCB_SVN, &r.tee_tcb_svn[..])
        .with(reg::MR_SEAM, &r.mr_seam[..])
}

fn dstack_claims(quote: &TdQuote, info: &RuntimeAppInfo, log: &ReplayedLog) -> DstackClaims {
    let r = quote.td10();
    // dstack's mr_system covers the exact key-provider payload bytes.
    let mr_key_provider = info
        .key_provider_payload
        .as_deref()
        .map(|p| sha256(&[p]))
        .unwrap_or_else(|| vec![0; 32]);
    let mr_system = |kp: &[u8]| sha256(&[&r.mr_td, &r.rt_mr0, &r.rt_mr1, &r.rt_mr2, kp]);
    let extra_nonzero = [&r.mr_config_id, &r.mr_owner, &r.mr_owner_config]
        .iter()
        .any(|m| m.iter().any(|b| *b != 0));
    let mr_aggregated = |rtmr3: &[u8]| {
        let mut parts: Vec<&[u8]> = vec![&r.mr_td, &r.rt_mr0, &r.rt_mr1, &r.rt_mr2, rtmr3];
        if extra_nonzero {
            parts.extend([&r.mr_config_id[..], &r.mr_owner, &r.mr_owner_config]);
        }
        sha256(&parts)
    };
    // dstack's SignCert view: RTMR3 up to `boot-mr-done`, no key provider.
    let boot_time = log
        .app_register_until::<Sha384>(eventlog::BOOT_MR_DONE)
        .map(|rtmr3| BootTimeAggregates {
            mr_aggregated: HexBytes(mr_aggregated(&rtmr3)),
            mr_system: HexBytes(mr_system(&[0; 32])),
        });
    DstackClaims {
        tee_variant: "dstack-tdx".into(),
        mr_aggregated: HexBytes(mr_aggregated(&r.rt_mr3)),
        mr_system: HexBytes(mr_system(&mr_key_provider)),
        boot_time,
    }
}

/// Everything a verified quote proves (no event log needed): the identity
/// parts a plug-in that composes on TDX (a paravisor's TD quote, such as
/// Azure's vTPM) builds its own identity from.
///
/// `platform_claims` holds the `tdx` section only; dstack's aggregates
/// over the RTMRs are added by this plug-in's own identities.
#[derive(Clone, Debug)]
pub struct QuotePart {
    /// The quote's registers (`mrtd`, `rtmr0`..`rtmr3`, `mr_seam`, ...),
    /// with `boot_digest` = SHA-384(MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2).
    pub boot: BootMeasurements,
    /// dcap-qvl's TCB verdict, advisories and dates.
    pub tcb: TcbInfo,
    /// Always false: a debug TD is refused.
    pub debug: bool,
    /// REPORTDATA.
    pub report_data: ReportData,
    /// Whether REPORTDATA was compared with the context's expected value.
    pub report_data_checked: bool,
    /// SHA-256 of the PPID, when the PCK certificate has one.
    pub device_id: Option<DeviceId>,
    /// The `tdx` section ([`TdxClaims`]), as also held in `tdx`.
    pub platform_claims: PlatformClaims,
    /// The `tdx` section, typed: this plug-in completes it
    /// (`replayed_registers`) once an event log replays.
    pub tdx: TdxClaims,
}

/// The identity parts of a quote [`crate::TdxVerifier::verify_quote`]
/// accepted, after the checks dcap-qvl leaves to this plug-in: a TDX
/// module signed by Intel (MRSIGNERSEAM zero) and debug off
/// ([`AttestError::Insecure`] otherwise), and REPORTDATA equal to the
/// context's expected value when it has one ([`AttestError::BindingMismatch`]).
pub fn quote_part(v: &VerifiedQuote, ctx: &VerifyContext) -> Result<QuotePart, AttestError> {
    let (quote, collateral, claims, key) =
        (v.quote(), v.collateral(), v.claims(), v.collateral_key());
    let r = quote.td10();
    if r.mr_signer_seam.iter().any(|b| *b != 0) {
        return Err(AttestError::insecure_text(format!(
            "MRSIGNERSEAM is {}, not Intel's (zero): a TDX module not signed by Intel",
            hex::encode(r.mr_signer_seam)
        )));
    }
    let debug = r.td_attributes[0] & 0x01 != 0;
    if debug {
        return Err(AttestError::insecure_text(
            "the TD runs in debug mode (TDATTRIBUTES.DEBUG)".into(),
        ));
    }
    let report_data = ReportData(r.report_data);
    let report_data_checked = ctx.check_report_data(&report_data)?;

    let pck = &claims.platform.pck;
    let out_of_date_since = crate::tcb_date::out_of_date_since(
        &collateral.tcb_info,
        &collateral.qe_identity,
        &crate::tcb_date::PlatformSvns {
            cpu_svn: &pck.cpu_svn,
            pce_svn: pck.pce_svn,
            tee_tcb_svn: &r.tee_tcb_svn,
            qe_isvsvn: claims.qe.report.isv_svn,
        },
    )?;
    let device_id = (!pck.ppid.is_empty()).then(|| DeviceId(Sha256::digest(&pck.ppid).into()));

    let td15 = quote.quote.report.as_td15();
    let tdx = TdxClaims {
        quote_version: quote.version,
        body_type: quote.body_type().into(),
        fmspc: key.fmspc_hex(),
        pck_ca: key.ca_str().to_owned(),
        tcb_eval_data_number: collateral.tcb_eval_data_number,
        collateral_expires: claims.earliest_expiration_date,
        seam_attributes: HexBytes(r.seam_attributes.to_vec()),
        tee_tcb_svn2: td15.map(|t| HexBytes(t.tee_tcb_svn2.to_vec())),
        mr_service_td: td15.map(|t| HexBytes(t.mr_service_td.to_vec())),
        replayed_registers: Vec::new(),
    };
    Ok(QuotePart {
        boot: boot_measurements(quote),
        tcb: TcbInfo {
            status: map_status(claims.tcb.status),
            advisory_ids: claims.tcb.advisory_ids.clone(),
            tcb_date: date(claims.platform.tcb_date_tag),
            out_of_date_since: out_of_date_since.and_then(date),
        },
        debug,
        report_data,
        report_data_checked,
        device_id,
        platform_claims: {
            let mut c = PlatformClaims::default();
            c.insert(SECTION, &tdx)?;
            c
        },
        tdx,
    })
}

pub(crate) fn build(
    v: &VerifiedQuote,
    event_log: &[u8],
    ctx: &VerifyContext,
) -> Result<VerifiedIdentity, AttestError> {
    let quote = v.quote();
    let mut part = quote_part(v, ctx)?;
    if event_log.is_empty() {
        return Err(AttestError::malformed_text(
            "TDX evidence carries no event log: the app identity is in its RTMR3 runtime events"
                .into(),
        ));
    }
    let (log, coverage) = replay_and_check(quote, event_log)?;
    let info = log.app_info()?;
    let app: AppIdentity = info.app_identity()?;
    part.platform_claims
        .insert(DSTACK_SECTION, &dstack_claims(quote, &info, &log))?;
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
        debug: r.td_attributes[0] & 0x01 != 0,
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
                register: format!("rtmr{i}"),
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
