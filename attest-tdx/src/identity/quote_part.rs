//! What a verified quote proves by itself: its registers, TCB verdict,
//! report data, device and the `platform_claims.tdx` section, after the
//! checks dcap-qvl leaves to this plug-in.

use attest_core::names::reg;
use attest_core::{
    AttestError, BootMeasurements, DeviceId, HexBytes, Insecure, PlatformClaims, ReportData,
    TcbInfo, VerifyContext,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha384};

use super::tcb::{date, map_status};
use crate::VerifiedQuote;
use crate::quote::TdQuote;

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

/// TDATTRIBUTES byte 0, bit 0: the TD is debuggable (the host can read
/// and write its memory and registers).
const TD_ATTRIBUTES_DEBUG: u8 = 0x01;

/// Whether the quote's TD runs in debug mode.
pub(crate) fn is_debug(quote: &TdQuote) -> bool {
    quote.td10().td_attributes[0] & TD_ATTRIBUTES_DEBUG != 0
}

/// The quote's registers, with `boot_digest` = SHA-384(MRTD ‖ RTMR0 ‖
/// RTMR1 ‖ RTMR2).
pub(crate) fn boot_measurements(quote: &TdQuote) -> BootMeasurements {
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
/// module signed by Intel (MRSIGNERSEAM zero; [`Insecure::ForeignTdxModule`]
/// otherwise) and debug off ([`Insecure::Debug`]), and REPORTDATA equal to
/// the context's expected value when it has one
/// ([`AttestError::BindingMismatch`]).
pub fn quote_part(v: &VerifiedQuote, ctx: &VerifyContext) -> Result<QuotePart, AttestError> {
    let (quote, collateral, claims, key) =
        (v.quote(), v.collateral(), v.claims(), v.collateral_key());
    let r = quote.td10();
    if r.mr_signer_seam.iter().any(|b| *b != 0) {
        return Err(Insecure::ForeignTdxModule {
            detail: format!(
                "MRSIGNERSEAM is {}, not Intel's (zero): a TDX module not signed by Intel",
                hex::encode(r.mr_signer_seam)
            ),
        }
        .into());
    }
    let debug = is_debug(quote);
    if debug {
        return Err(Insecure::Debug {
            detail: "the TD runs in debug mode (TDATTRIBUTES.DEBUG)".into(),
        }
        .into());
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
