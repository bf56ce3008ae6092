//! The two plug-ins, `az-snp-vtpm` and `az-tdx-vtpm`: [`AzVtpm`] composes
//! this crate's checks with attest-snp (an SNP report from VMPL 0) or
//! attest-tdx (a DCAP TD quote), never re-implementing either.
//!
//! Order of checks (reference §5):
//! 1. size limits and the strict container ([`crate::container`]);
//! 2. HCL framing, claims, the AK, its RSASSA signature over the quote, the
//!    quote's structure, the `sha256:0-23` selection and the PCR digest
//!    ([`crate::check_container`]);
//! 3. the hardware report by the reused verifier, whose report data must
//!    be `SHA-256(claims) ‖ 0³²` (SNP: VMPL 0, no debug, no migration
//!    agent; TDX: dcap-qvl, MRSIGNERSEAM zero, no debug);
//! 4. the nonce: on the key path `extraData == SHA-256(user-data)` and
//!    `user-data` = the request's report data;
//! 5. the app PCR replay;
//! 6. the identity.

use std::sync::Arc;

use async_trait::async_trait;
use attest_core::{
    AppIdentity, AttestError, Attestation, BootMeasurements, DeviceId, Evidence, Insecure,
    Malformed, NoApp, PlatformClaims, PlatformId, QuoteOnlyIdentity, ReportData, TcbInfo,
    VerifiedIdentity, VerifyContext,
};
use attest_snp::SnpVerifier;
use attest_tdx::TdxVerifier;
use serde::{Deserialize, Serialize};

use crate::container::{ContainerVersion, MAX_VCEK};
use crate::identity::{
    self, APP_PCR_RANGE, SECTION, VtpmClaims, add_pcrs, os_pcr_registers, replay_app_pcr,
};
use crate::{CheckedVtpm, HardwareReport, TeeType, check_evidence};

/// Azure confidential VMs on SEV-SNP, attested through their vTPM.
pub const AZ_SNP_VTPM: PlatformId = PlatformId::from_static("az-snp-vtpm");
/// Azure confidential VMs on TDX, attested through their vTPM.
pub const AZ_TDX_VTPM: PlatformId = PlatformId::from_static("az-tdx-vtpm");

/// Settings of a vTPM plug-in (`[platform.az-snp-vtpm]` /
/// `[platform.az-tdx-vtpm]` in `kms.toml`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VtpmConfig {
    /// The PCR the measured OS extends dstack's runtime events into
    /// (8..=15; default 8, as on grub-less UKI images).
    pub app_pcr: u32,
    /// The launch measurements of the paravisors trusted to run the vTPM:
    /// the SNP report's MEASUREMENT (`az-snp-vtpm`) or the TD quote's MRTD
    /// (`az-tdx-vtpm`), 48 bytes each, as hex.
    ///
    /// The claims, the AK and so every PCR are trusted only because the
    /// hardware report binds them, and that means something only when the
    /// report comes from the paravisor: any other SEV-SNP guest runs its own
    /// kernel at VMPL 0, and any TD sets its own REPORTDATA, so either can
    /// frame claims naming an AK of its own. The KMS therefore refuses all
    /// evidence of a vTPM platform until its paravisors are pinned here.
    pub paravisors: Vec<attest_core::HexBytes>,
}

impl Default for VtpmConfig {
    fn default() -> Self {
        VtpmConfig {
            app_pcr: 8,
            paravisors: Vec::new(),
        }
    }
}

impl VtpmConfig {
    /// Checks the app PCR is in 8..=15 and each paravisor pin is 48 bytes.
    pub fn validate(&self) -> Result<(), AttestError> {
        if !APP_PCR_RANGE.contains(&self.app_pcr) {
            // Not the firmware's 0-7, the resettable 16 or 23, or DRTM's 17-22.
            return Err(Malformed::PcrOutOfRange {
                what: "app_pcr".into(),
                pcr: self.app_pcr,
                allowed: APP_PCR_RANGE,
            }
            .into());
        }
        if let Some(bad) = self.paravisors.iter().find(|p| p.0.len() != 48) {
            return Err(Malformed::BadLength {
                what: format!("paravisors: a launch measurement ({bad})"),
                expected: 48,
                found: bad.0.len(),
            }
            .into());
        }
        Ok(())
    }
}

/// How the quote's nonce (`extraData`) must relate to the evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nonce<'a> {
    /// The KMS binding: `extraData == SHA-256(user-data)`, and the
    /// identity's report data is `user-data` (checked against the context).
    Kms,
    /// Offline: `extraData` must be exactly these bytes.
    Exact(&'a [u8]),
    /// Offline: any nonce, reported in `vtpm.nonce`.
    Unchecked,
}

enum Hardware {
    Snp(Box<SnpVerifier>),
    Tdx(Arc<TdxVerifier>),
}

/// An Azure vTPM plug-in: `az-snp-vtpm` ([`AzVtpm::snp`]) or `az-tdx-vtpm`
/// ([`AzVtpm::tdx`]).
///
/// Evidence: `quote` is the JSON container (v0, v1 or v2); `certificates`
/// an optional VCEK (DER, PEM or a bundle; SNP only), used before the
/// container's; `event_log` dstack's JSON list of the app PCR's runtime
/// events; `app_config` must be empty.
pub struct AzVtpm {
    hw: Hardware,
    config: VtpmConfig,
}

/// What verified evidence proves; `app` is `None` without an event log.
struct Parts {
    boot: BootMeasurements,
    tcb: TcbInfo,
    debug: bool,
    report_data: ReportData,
    report_data_checked: bool,
    device_id: Option<DeviceId>,
    platform_claims: PlatformClaims,
    app: Option<AppIdentity>,
}

/// The hardware side of [`Parts`].
struct HardwarePart {
    boot: BootMeasurements,
    tcb: TcbInfo,
    debug: bool,
    report_data: ReportData,
    device_id: Option<DeviceId>,
    platform_claims: PlatformClaims,
}

/// What offline verification returns: the full identity when an event log
/// was given, else the quote-only form (`app` null).
#[derive(Clone, Debug)]
pub enum OfflineIdentity {
    /// With the app identity.
    Full(Box<VerifiedIdentity>),
    /// Without one.
    QuoteOnly(Box<QuoteOnlyIdentity>),
}

impl OfflineIdentity {
    /// The identity JSON.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            OfflineIdentity::Full(i) => i.to_json(),
            OfflineIdentity::QuoteOnly(i) => i.to_json(),
        }
    }
}

impl AzVtpm {
    /// `az-snp-vtpm` on `snp`, which must require VMPL 0 and refuse a
    /// migration agent (reference P6: a report from a lower-privileged
    /// VMPL could be the guest's own, over claims naming its own "AK").
    /// Give it its own [`SnpVerifier`] (sharing the VCEK and CRL sources
    /// of the `sev-snp` plug-in), since that one may run at another VMPL.
    pub fn snp(snp: SnpVerifier, config: VtpmConfig) -> Result<Self, AttestError> {
        config.validate()?;
        let c = snp.config();
        if c.vmpl != 0 || c.allow_migrate_ma {
            return Err(Insecure::WeakVerifier {
                detail: format!(
                    "az-snp-vtpm needs an SNP verifier that requires VMPL 0 and refuses a migration agent (found vmpl {}, allow_migrate_ma {})",
                    c.vmpl, c.allow_migrate_ma
                ),
            }
            .into());
        }
        Ok(AzVtpm {
            hw: Hardware::Snp(Box::new(snp)),
            config,
        })
    }

    /// `az-tdx-vtpm` on `tdx` (which may be the `tdx` plug-in itself: it
    /// has no setting that differs).
    pub fn tdx(tdx: Arc<TdxVerifier>, config: VtpmConfig) -> Result<Self, AttestError> {
        config.validate()?;
        Ok(AzVtpm {
            hw: Hardware::Tdx(tdx),
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &VtpmConfig {
        &self.config
    }

    fn tee(&self) -> TeeType {
        match self.hw {
            Hardware::Snp(_) => TeeType::Snp,
            Hardware::Tdx(_) => TeeType::Tdx,
        }
    }

    /// Size limits and the parts `Evidence` may carry for this platform,
    /// then the container checks.
    fn check(&self, evidence: &Evidence) -> Result<CheckedVtpm, AttestError> {
        let platform = self.platform();
        if evidence.platform != platform {
            return Err(AttestError::UnsupportedPlatform(evidence.platform.clone()));
        }
        if !evidence.app_config.is_empty() {
            return Err(Malformed::Unexpected {
                what: "app_config",
                detail: format!(
                    "{platform} evidence carries an app_config; the app identity is in the app PCR's event log"
                ),
            }
            .into());
        }
        match self.hw {
            Hardware::Snp(_) if evidence.certificates.len() > MAX_VCEK => {
                return Err(Malformed::TooLarge {
                    what: "certificates".into(),
                    size: evidence.certificates.len(),
                    max: MAX_VCEK,
                }
                .into());
            }
            Hardware::Tdx(_) if !evidence.certificates.is_empty() => {
                return Err(Malformed::Unexpected {
                    what: "certificates",
                    detail:
                        "az-tdx-vtpm evidence carries certificates; the TD quote holds its PCK chain"
                            .into(),
                }
                .into());
            }
            _ => {}
        }
        if evidence.event_log.len() > identity::MAX_EVENT_LOG {
            return Err(Malformed::TooLarge {
                what: "event log".into(),
                size: evidence.event_log.len(),
                max: identity::MAX_EVENT_LOG,
            }
            .into());
        }
        check_evidence(&evidence.quote, self.tee())
    }

    /// The reused verifier's evidence for the hardware report.
    fn snp_evidence(evidence: &Evidence, checked: &CheckedVtpm) -> Result<Evidence, AttestError> {
        let HardwareReport::Snp { report, vcek } = checked.hardware_report() else {
            return Err(Malformed::Missing {
                what: "SNP report",
                detail: "az-snp-vtpm evidence holds no SNP report".into(),
            }
            .into());
        };
        let certificates = if evidence.certificates.is_empty() {
            vcek.map(|v| v.as_bytes().to_vec()).unwrap_or_default()
        } else {
            evidence.certificates.clone()
        };
        Ok(Evidence {
            platform: PlatformId::SEV_SNP,
            quote: report.to_vec(),
            certificates,
            ..Default::default()
        })
    }

    fn td_quote(checked: &CheckedVtpm) -> Result<&[u8], AttestError> {
        match checked.hardware_report() {
            HardwareReport::Tdx { td_quote } => Ok(td_quote),
            HardwareReport::Snp { .. } => Err(Malformed::Missing {
                what: "TD quote",
                detail: "az-tdx-vtpm evidence holds no TD quote".into(),
            }
            .into()),
        }
    }

    /// Step 3: the hardware report, whose report data must be
    /// `SHA-256(claims) ‖ 0³²`.
    async fn hardware(
        &self,
        evidence: &Evidence,
        checked: &CheckedVtpm,
        ctx: &VerifyContext,
    ) -> Result<HardwarePart, AttestError> {
        let inner_ctx = VerifyContext::new(checked.expected_report_data(), ctx.time);
        let part = match &self.hw {
            Hardware::Snp(snp) => {
                let inner = Self::snp_evidence(evidence, checked)?;
                let verified = snp.verify_report(&inner, &inner_ctx).await?;
                let p = snp.report_part(&verified, &inner_ctx)?;
                HardwarePart {
                    boot: p.boot,
                    tcb: p.tcb,
                    debug: false,
                    report_data: p.report_data,
                    device_id: p.device_id,
                    platform_claims: p.platform_claims,
                }
            }
            Hardware::Tdx(tdx) => {
                let verified = tdx.verify_quote(Self::td_quote(checked)?, ctx.time).await?;
                let p = attest_tdx::quote_part(&verified, &inner_ctx)?;
                HardwarePart {
                    boot: p.boot,
                    tcb: p.tcb,
                    debug: p.debug,
                    report_data: p.report_data,
                    device_id: p.device_id,
                    platform_claims: p.platform_claims,
                }
            }
        };
        // The reused verifier compared it already; the binding is this
        // plug-in's to keep, so it is checked here too.
        checked.hcl_report().check_report_data(&part.report_data)?;
        if part.debug {
            return Err(Insecure::Debug {
                detail: "the TEE runs in debug mode".into(),
            }
            .into());
        }
        Ok(part)
    }

    /// Checks that the hardware report comes from a pinned paravisor
    /// ([`VtpmConfig::paravisors`]); on TDX, also that no RTMR was extended
    /// (the paravisor extends none: a TD that did runs other code). Returns
    /// whether a pin was checked; with no pin configured, an error when
    /// `required`.
    fn check_paravisor(&self, hw: &HardwarePart, required: bool) -> Result<bool, AttestError> {
        use attest_core::BootValue;
        use attest_core::names::reg;
        let bytes = |name: &str| match hw.boot.get(name) {
            Some(BootValue::Bytes(b)) => Some(b.0.as_slice()),
            _ => None,
        };
        let (platform, register) = match self.hw {
            Hardware::Snp(_) => (AZ_SNP_VTPM, reg::MEASUREMENT),
            Hardware::Tdx(_) => {
                for r in [reg::RTMR0, reg::RTMR1, reg::RTMR2, reg::RTMR3] {
                    if bytes(r).is_some_and(|v| v.iter().any(|b| *b != 0)) {
                        return Err(AttestError::Insecure(
                            attest_core::Insecure::LayerRegisterExtended {
                                platform: AZ_TDX_VTPM.as_str().to_owned(),
                                register: r,
                            },
                        ));
                    }
                }
                (AZ_TDX_VTPM, reg::MRTD)
            }
        };
        if self.config.paravisors.is_empty() {
            return if required {
                Err(AttestError::Insecure(
                    attest_core::Insecure::NoLayerPinned {
                        platform: platform.as_str().to_owned(),
                        tee: if register == reg::MRTD {
                            "TD"
                        } else {
                            "SEV-SNP"
                        },
                    },
                ))
            } else {
                Ok(false)
            };
        }
        let found = bytes(register).ok_or_else(|| {
            AttestError::from(Malformed::Missing {
                what: "hardware register",
                detail: format!("{platform}: the hardware report has no {register}"),
            })
        })?;
        if self.config.paravisors.iter().any(|p| p.0 == found) {
            Ok(true)
        } else {
            Err(AttestError::Insecure(
                attest_core::Insecure::UnpinnedLayer {
                    platform: platform.as_str().to_owned(),
                    register,
                    found: hex::encode(found),
                },
            ))
        }
    }

    async fn verify_parts(
        &self,
        evidence: &Evidence,
        ctx: &VerifyContext,
        nonce: Nonce<'_>,
    ) -> Result<Parts, AttestError> {
        let checked = self.check(evidence)?;
        let hw = self.hardware(evidence, &checked, ctx).await?;

        // Step 4: the nonce, and the report data the identity carries.
        let report_data = match nonce {
            Nonce::Kms => checked.bound_user_data()?,
            Nonce::Exact(expected) => {
                checked.check_nonce(expected)?;
                unbound_user_data(&checked, ctx)?
            }
            Nonce::Unchecked => unbound_user_data(&checked, ctx)?,
        };
        let report_data_checked = ctx.check_report_data(&report_data)?;

        // The paravisor: the KMS path always requires a pinned one;
        // offline, a pin is checked when configured and its absence is
        // reported.
        let paravisor_pinned = self.check_paravisor(&hw, nonce == Nonce::Kms)?;

        // Step 5: the app PCR.
        let app_pcr = self.config.app_pcr;
        let app = if evidence.event_log.is_empty() {
            None
        } else {
            Some(replay_app_pcr(
                &evidence.event_log,
                checked.pcrs(),
                app_pcr,
            )?)
        };

        // Step 6: the identity.
        let mut platform_claims = hw.platform_claims;
        let mut claims = vtpm_claims(&checked, app_pcr);
        claims.paravisor_pinned = paravisor_pinned;
        platform_claims.insert(SECTION, &claims)?;
        Ok(Parts {
            boot: add_pcrs(hw.boot, checked.pcrs(), app_pcr),
            tcb: hw.tcb,
            debug: hw.debug,
            report_data,
            report_data_checked,
            device_id: hw.device_id,
            platform_claims,
            app,
        })
    }

    /// Offline verification (`kms verify az-snp-vtpm` / `az-tdx-vtpm`):
    /// everything [`Attestation::verify`] checks, with the nonce checked as
    /// `nonce` says; the app identity only when the evidence has an event
    /// log. Keys are never released on this.
    pub async fn verify_offline(
        &self,
        evidence: &Evidence,
        ctx: &VerifyContext,
        nonce: Nonce<'_>,
    ) -> Result<OfflineIdentity, AttestError> {
        let platform = self.platform();
        let p = self.verify_parts(evidence, ctx, nonce).await?;
        Ok(match p.app {
            Some(app) => OfflineIdentity::Full(Box::new(VerifiedIdentity {
                platform,
                app,
                boot: p.boot,
                tcb: p.tcb,
                debug: p.debug,
                report_data: p.report_data,
                report_data_checked: p.report_data_checked,
                device_id: p.device_id,
                platform_claims: p.platform_claims,
            })),
            None => OfflineIdentity::QuoteOnly(Box::new(QuoteOnlyIdentity {
                platform,
                app: NoApp,
                boot: p.boot,
                tcb: p.tcb,
                debug: p.debug,
                report_data: p.report_data,
                report_data_checked: p.report_data_checked,
                device_id: p.device_id,
                platform_claims: p.platform_claims,
            })),
        })
    }
}

/// The identity's report data when the quote is not bound to `user-data`
/// (offline): `user-data` itself, or zeros when the claims have none and
/// nothing is expected.
fn unbound_user_data(
    checked: &CheckedVtpm,
    ctx: &VerifyContext,
) -> Result<ReportData, AttestError> {
    match checked.claims().user_data() {
        Some(u) => Ok(*u),
        None if ctx.expected_report_data.is_none() => Ok(ReportData([0; 64])),
        None => Err(Malformed::Missing {
            what: "user-data",
            detail: "HCL runtime claims have no user-data: the evidence carries no request binding"
                .into(),
        }
        .into()),
    }
}

fn vtpm_claims(c: &CheckedVtpm, app_pcr: u32) -> VtpmClaims {
    let clock = c.clock_info();
    let vm = c.claims().vm_configuration();
    VtpmClaims {
        ak_pub_sha256: attest_core::HexBytes(c.ak_digest().to_vec()),
        app_pcr,
        nonce: attest_core::HexBytes(c.nonce().to_vec()),
        tpm_firmware_version: format!("{:016x}", c.firmware_version()),
        reset_count: clock.reset_count,
        restart_count: clock.restart_count,
        hcl_header_version: c.hcl_report().header_version(),
        request_data_version: c.hcl_report().request_data_version(),
        container_version: match c.container_version() {
            ContainerVersion::V0 => 0,
            ContainerVersion::V1 => 1,
            ContainerVersion::V2 => 2,
        },
        secure_boot: vm.secure_boot,
        tpm_enabled: vm.tpm_enabled,
        tpm_persisted: vm.tpm_persisted,
        console_enabled: vm.console_enabled,
        vm_unique_id: vm.vm_unique_id.clone(),
        paravisor_pinned: false,
    }
}

#[async_trait]
impl Attestation for AzVtpm {
    fn platform(&self) -> PlatformId {
        match self.hw {
            Hardware::Snp(_) => AZ_SNP_VTPM,
            Hardware::Tdx(_) => AZ_TDX_VTPM,
        }
    }

    fn image_registers(&self) -> &'static [&'static str] {
        os_pcr_registers(self.config.app_pcr)
    }

    async fn fetch_endorsements(
        &self,
        evidence: &Evidence,
        ctx: &VerifyContext,
    ) -> Result<(), AttestError> {
        // Only evidence whose vTPM side holds together (framing, AK
        // signature, PCR digest) may cause a fetch; the reused plug-in
        // then applies its own rule to the hardware report.
        let checked = self.check(evidence)?;
        match &self.hw {
            Hardware::Snp(snp) => {
                let inner = Self::snp_evidence(evidence, &checked)?;
                snp.fetch_endorsements(&inner, ctx).await
            }
            Hardware::Tdx(tdx) => {
                let inner = Evidence::new(PlatformId::TDX, Self::td_quote(&checked)?.to_vec());
                tdx.fetch_endorsements(&inner, ctx).await
            }
        }
    }

    async fn verify(
        &self,
        evidence: &Evidence,
        ctx: &VerifyContext,
    ) -> Result<VerifiedIdentity, AttestError> {
        let platform = self.platform();
        if evidence.platform == platform && evidence.event_log.is_empty() {
            return Err(Malformed::Missing {
                what: "event log",
                detail: format!(
                    "{platform} evidence carries no event log: the app identity is in the runtime events of PCR {}",
                    self.config.app_pcr
                ),
            }
            .into());
        }
        let p = self.verify_parts(evidence, ctx, Nonce::Kms).await?;
        let app = p.app.ok_or_else(|| {
            AttestError::from(Malformed::Missing {
                what: "event log",
                detail: format!("{platform} evidence carries no event log"),
            })
        })?;
        Ok(VerifiedIdentity {
            platform,
            app,
            boot: p.boot,
            tcb: p.tcb,
            debug: p.debug,
            report_data: p.report_data,
            report_data_checked: p.report_data_checked,
            device_id: p.device_id,
            platform_claims: p.platform_claims,
        })
    }
}
