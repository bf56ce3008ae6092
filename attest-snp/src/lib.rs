//! AMD SEV-SNP plug-in.
//!
//! [`SnpVerifier`] checks a 1184-byte attestation report (v2, v3, v5;
//! Milan, Genoa, Turin; VCEK- or VLEK-signed), fail-closed:
//! - the ARK is always the pinned one of the report's product, never one
//!   supplied with the evidence; the ASK signs VCEKs, the ASVK VLEKs, and
//!   the certificate kind must match KEY_INFO;
//! - certificate validity at the verification time;
//! - VCEK hwID == CHIP_ID (8 bytes on Turin) and the VCEK's TCB extensions
//!   == REPORTED_TCB;
//! - the P-384 signature over the exact received bytes `0x000..0x2A0`;
//! - VMPL equal to the configured one; DEBUG and MIGRATE_MA rejected;
//!   must-be-zero bits; the expected report data;
//! - the dstack app config v3 whose digest must be HOST_DATA.
//!
//! Verified endorsement keys are cached, so a warm verification costs one
//! P-384 signature check (aws-lc-rs).

pub mod certs;
pub mod crl;
mod guid;
pub mod measure;
pub mod report;
pub mod vcek;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use attest_core::app_config::verify_app_config;
use attest_core::dstack::{DstackClaims, SECTION as DSTACK_SECTION};
use attest_core::names::reg;
use attest_core::{
    AttestError, Attestation, BadSignature, BootMeasurements, BootValue, CollateralMissing,
    DeviceId, Evidence, HexBytes, Insecure, Malformed, PlatformClaims, PlatformId, ReportData,
    Revoked, TcbInfo, TcbStatus, UntrustedChain, VerifiedIdentity, VerifyContext,
};
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use certs::{ChainCache, ProductRoots, Roots, Vek, check_vcek_for};
pub use crl::{AmdCrl, CrlSource, Crls};
pub use report::{Report, Signer, Tcb};
pub use vcek::{KdsClient, OfflineVceks, VcekSource, VekRequest, certs_from_evidence};

/// An AMD EPYC generation with SEV-SNP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Product {
    /// 3rd generation (Zen 3).
    Milan,
    /// 4th generation (Zen 4; also Bergamo, Siena).
    Genoa,
    /// 5th generation (Zen 5).
    Turin,
}

impl Product {
    /// The name AMD KDS uses.
    pub fn kds_name(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }
}

/// Verifier settings. The default: VMPL 0, no migration agent, no TCB minimum.
#[derive(Clone, Debug, Default)]
pub struct SnpConfig {
    /// The VMPL reports must come from (0 without an SVSM).
    pub vmpl: u32,
    /// Accept guests whose policy allows a migration agent.
    pub allow_migrate_ma: bool,
    /// Minimum TCB per product, judged on the lowest of each component
    /// across REPORTED, COMMITTED, LAUNCH and CURRENT TCB: at or above is
    /// UpToDate, below OutOfDate; a product without one gives Unknown.
    pub min_tcb: HashMap<Product, Tcb>,
}

/// The `platform_claims.sev_snp` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnpClaims {
    /// Milan, Genoa or Turin.
    pub product: Product,
    /// VCEK or VLEK.
    pub signer: Signer,
    /// Report version.
    pub report_version: u32,
    /// Whether CHIP_ID was masked.
    pub chip_id_masked: bool,
    /// Firmware version running (major.minor.build).
    pub current_firmware: String,
    /// Firmware version committed.
    pub committed_firmware: String,
    /// ID_KEY_DIGEST.
    pub id_key_digest: HexBytes,
    /// AUTHOR_KEY_DIGEST.
    pub author_key_digest: HexBytes,
    /// Whether an AMD CRL, signed by the pinned ARK and valid at the
    /// verification time, was checked (the intermediate and the
    /// endorsement key are not on it). A policy can require it.
    pub revocation_checked: bool,
    /// The four TCB versions (REPORTED, COMMITTED, LAUNCH, CURRENT).
    pub tcbs: report::ReportTcbs,
    /// The lowest of each component across them: what the TCB verdict and
    /// a policy's minimum judge.
    pub effective_tcb: Tcb,
    /// LAUNCH_TCB is below REPORTED_TCB: the guest was launched on older
    /// firmware and updated live; it should be relaunched (the
    /// `SNP-RELAUNCH-ADVISED` advisory id).
    pub relaunch_advised: bool,
}

/// The advisory id an identity carries when its LAUNCH_TCB is below its
/// REPORTED_TCB (the SEV-SNP counterpart of TDX's TDRelaunchAdvised); a
/// policy's advisory rules decide on it like on any vendor advisory.
pub const RELAUNCH_ADVISED: &str = "SNP-RELAUNCH-ADVISED";

/// The register that identifies an OS image on SEV-SNP (image registry
/// entries must list it).
pub const IMAGE_REGISTERS: &[&str] = &[reg::MEASUREMENT];

/// The `platform_claims` section name.
pub const SECTION: &str = attest_core::names::section::SEV_SNP;

/// The SEV-SNP verifier.
pub struct SnpVerifier {
    roots: Roots,
    sources: Vec<Arc<dyn VcekSource>>,
    config: SnpConfig,
    chains: ChainCache,
    crls: Crls,
}

/// A report whose signature, chain, key bindings, policy bits, VMPL and
/// report data were checked. Built only by [`SnpVerifier::verify_report`].
pub struct VerifiedReport<'a> {
    report: Report<'a>,
    product: Product,
    vek: Arc<Vek>,
    revocation_checked: bool,
}

impl<'a> VerifiedReport<'a> {
    /// The report.
    pub fn report(&self) -> &Report<'a> {
        &self.report
    }

    /// The product its key certificate and roots are for.
    pub fn product(&self) -> Product {
        self.product
    }

    /// The endorsement key that signed it.
    pub fn vek(&self) -> &Vek {
        &self.vek
    }

    /// Whether an AMD CRL was checked.
    pub fn revocation_checked(&self) -> bool {
        self.revocation_checked
    }
}

const POLICY_MIGRATE_MA: u64 = 1 << 18;
const POLICY_DEBUG: u64 = 1 << 19;

impl SnpVerifier {
    /// A verifier with AMD's pinned roots. `sources` are asked, in order,
    /// when the evidence carries no endorsement key certificate.
    pub fn new(sources: Vec<Arc<dyn VcekSource>>, config: SnpConfig) -> Result<Self, AttestError> {
        Ok(Self::with_roots(Roots::amd()?, sources, config))
    }

    /// A verifier with other roots. Only tests (the testkit's fake AMD PKI)
    /// and an explicit insecure setting use this.
    pub fn with_roots(roots: Roots, sources: Vec<Arc<dyn VcekSource>>, config: SnpConfig) -> Self {
        SnpVerifier {
            roots,
            sources,
            config,
            chains: ChainCache::default(),
            crls: Crls::default(),
        }
    }

    /// Checks reports against AMD's CRLs from `crls` (a report verifies
    /// without one, with `revocation_checked: false`).
    pub fn with_crls(mut self, crls: Crls) -> Self {
        self.crls = crls;
        self
    }

    async fn endorsement_key(
        &self,
        evidence: &Evidence,
        req: &VekRequest,
    ) -> Result<Vec<u8>, AttestError> {
        if let Some(der) = certs_from_evidence(&evidence.certificates, req.signer)? {
            return Ok(der);
        }
        let mut last = None;
        for s in &self.sources {
            match s.fetch(req).await {
                Ok(der) => return Ok(der),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            CollateralMissing::NoSource {
                detail: "the evidence carries no endorsement key certificate and no VCEK source is configured".into(),
            }
            .into()
        }))
    }

    /// Verifies the report alone (signature, chain, bindings of the report
    /// to its key, policy bits, VMPL, report data) and returns the parts the
    /// identity is made of.
    pub async fn verify_report<'a>(
        &self,
        evidence: &'a Evidence,
        ctx: &VerifyContext,
    ) -> Result<VerifiedReport<'a>, AttestError> {
        let report = Report::parse(&evidence.quote)?;
        let req = vek_request(&report)?;
        let named = req.product;
        let der = self.endorsement_key(evidence, &req).await?;
        // The report's signature first, with the key the certificate
        // names: a forged report costs one P-384 check and nothing else (no
        // chain walk, no fetch). The chain is checked right after.
        let unverified = match self.chains.peek(&der, report.signer) {
            Some(v) => v,
            None => Arc::new(Vek::parse(&der)?),
        };
        check_report_signature(&report, &unverified)?;
        // v2 reports do not name their product: the VEK's productName does.
        let product = match named {
            Some(p) => p,
            None => unverified
                .product()
                .ok_or_else(|| UntrustedChain::UnknownRoot {
                    detail: "the endorsement key names no known product".into(),
                })?,
        };
        let roots = self.roots.get(product)?;
        let vek = self
            .chains
            .verify(roots, product, report.signer, &der, ctx.time)?;
        if vek.product().is_some_and(|p| p != product) {
            return Err(UntrustedChain::WrongKey {
                detail: format!(
                    "the report is from a {product:?} but its key certificate is for {:?}",
                    vek.product_name
                ),
            }
            .into());
        }

        // The key must be the one derived for this chip and this TCB.
        if report.signer == Signer::Vcek {
            let want = req.hwid(product);
            match &vek.hwid {
                Some(h) if h.as_slice() == want => {}
                Some(h) => return Err(AttestError::identity_mismatch("vcek hwID", want, h)),
                None => {
                    return Err(UntrustedChain::BadCertificate {
                        what: "the VCEK".into(),
                        detail: "no hwID extension".into(),
                    }
                    .into());
                }
            }
        }
        let tcb = report.reported_tcb(product);
        if vek.tcb != tcb {
            return Err(AttestError::IdentityMismatch {
                what: reg::REPORTED_TCB.into(),
                expected: format!("{tcb:?}"),
                found: format!("{:?} in the {} certificate", vek.tcb, vek.common_name),
            });
        }

        // The key that verified the signature is the one the chain vouches for.
        if vek.public_key != unverified.public_key {
            return Err(UntrustedChain::WrongKey {
                detail: "the verified endorsement key is not the one that signed the report".into(),
            }
            .into());
        }

        // Revocation: from a CRL already held, or in a local source (the
        // network was asked, if at all, in the endorsement step).
        self.crls
            .refresh(roots, product, report.signer, ctx.time, false)
            .await;
        let revocation_checked = match self.crls.current(product, report.signer, ctx.time) {
            Some(crl) => {
                let (name, intermediate) = match report.signer {
                    Signer::Vcek => ("ASK", roots.intermediate_serial(Signer::Vcek)),
                    Signer::Vlek => ("ASVK", roots.intermediate_serial(Signer::Vlek)),
                };
                if crl.revokes(intermediate) {
                    return Err(Revoked::Certificate {
                        detail: format!("AMD's {product:?} CRL revokes the {name}"),
                    }
                    .into());
                }
                if crl.revokes(&vek.serial) {
                    return Err(Revoked::Certificate {
                        detail: format!("AMD's {product:?} CRL revokes this {}", vek.common_name),
                    }
                    .into());
                }
                true
            }
            None => false,
        };

        let policy = report.policy();
        if policy & POLICY_DEBUG != 0 {
            return Err(Insecure::Debug {
                detail: "the guest policy allows debugging (POLICY.DEBUG)".into(),
            }
            .into());
        }
        if policy & POLICY_MIGRATE_MA != 0 && !self.config.allow_migrate_ma {
            return Err(Insecure::Migration {
                detail: "the guest policy allows a migration agent (POLICY.MIGRATE_MA)".into(),
            }
            .into());
        }
        if report.vmpl() != self.config.vmpl {
            return Err(Insecure::Vmpl {
                expected: self.config.vmpl,
                found: report.vmpl(),
            }
            .into());
        }
        ctx.check_report_data(&ReportData(*report.report_data()))?;
        Ok(VerifiedReport {
            report,
            product,
            vek,
            revocation_checked,
        })
    }
}

/// What identifies the endorsement key a report needs (read from the
/// report, unsigned until that key verifies it).
fn vek_request(report: &Report<'_>) -> Result<VekRequest, AttestError> {
    Ok(VekRequest {
        product: report.product_from_cpuid()?,
        signer: report.signer,
        chip_id: *report.chip_id(),
        reported_tcb: report.reported_tcb_raw(),
    })
}

/// The P-384 signature over the exact bytes received, `0x000..0x2A0`.
fn check_report_signature(report: &Report<'_>, vek: &Vek) -> Result<(), AttestError> {
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &vek.public_key)
        .verify(report.signed_bytes(), &report.signature_be())
        .map_err(|_| {
            BadSignature::DoesNotVerify {
                signed: "the report".into(),
                signer: Some(vek.common_name.clone()),
            }
            .into()
        })
}

/// Everything a verified report proves besides the app identity: the
/// identity parts a plug-in that composes on SEV-SNP (a paravisor's report,
/// such as Azure's vTPM) builds its own identity from.
///
/// `platform_claims` holds the `sev_snp` section only; the `dstack`
/// aggregates over MEASUREMENT and HOST_DATA are added by this plug-in's
/// own identities, where they mean something.
#[derive(Clone, Debug)]
pub struct ReportPart {
    /// The report's registers (`measurement`, `host_data`, `vmpl`, the TCBs,
    /// ...), with `boot_digest` = MEASUREMENT.
    pub boot: BootMeasurements,
    /// The TCB verdict against the configured minimum.
    pub tcb: TcbInfo,
    /// REPORT_DATA.
    pub report_data: ReportData,
    /// Whether REPORT_DATA was compared with the context's expected value.
    pub report_data_checked: bool,
    /// SHA-256 of CHIP_ID, `None` when it is masked.
    pub device_id: Option<DeviceId>,
    /// The `sev_snp` section ([`SnpClaims`]).
    pub platform_claims: PlatformClaims,
}

impl SnpVerifier {
    /// The settings this verifier was built with (a composing plug-in
    /// checks, for one, that it requires VMPL 0).
    pub fn config(&self) -> &SnpConfig {
        &self.config
    }

    /// The identity parts of a report [`SnpVerifier::verify_report`]
    /// accepted: registers, TCB verdict, device id and the `sev_snp`
    /// claims. `ctx` is compared with REPORT_DATA again (a mismatch is an
    /// error; `None` leaves `report_data_checked` false).
    pub fn report_part(
        &self,
        verified: &VerifiedReport<'_>,
        ctx: &VerifyContext,
    ) -> Result<ReportPart, AttestError> {
        let (report, product) = (&verified.report, verified.product);
        // A platform is only as current as the oldest TCB it reports: a
        // guest launched below the minimum and live-updated since is not
        // up to date.
        let tcbs = report.tcbs(product);
        let effective = tcbs.lowest();
        let status = match self.config.min_tcb.get(&product) {
            None => TcbStatus::Unknown,
            Some(min) if effective.at_least(min) => TcbStatus::UpToDate,
            Some(_) => TcbStatus::OutOfDate,
        };
        let relaunch_advised = tcbs.relaunch_advised();
        let chip_id = report.chip_id();
        let masked = chip_id.iter().all(|b| *b == 0);
        let tcb_value = |t: Tcb| BootValue::Components(t.components());
        let boot = BootMeasurements::new(&report.measurement()[..])
            .with(reg::MEASUREMENT, &report.measurement()[..])
            .with(reg::HOST_DATA, &report.host_data()[..])
            .with(reg::FAMILY_ID, &report.family_id()[..])
            .with(reg::IMAGE_ID, &report.image_id()[..])
            .with(reg::GUEST_SVN, u64::from(report.guest_svn()))
            .with(reg::POLICY, report.policy())
            .with(reg::VMPL, u64::from(report.vmpl()))
            .with(reg::REPORTED_TCB, tcb_value(tcbs.reported))
            .with(reg::COMMITTED_TCB, tcb_value(tcbs.committed))
            .with(reg::LAUNCH_TCB, tcb_value(tcbs.launch))
            .with(reg::CURRENT_TCB, tcb_value(tcbs.current))
            .with(reg::PLATFORM_INFO, report.platform_info())
            .with(reg::CHIP_ID, &chip_id[..]);

        let mut platform_claims = PlatformClaims::default();
        platform_claims.insert(
            SECTION,
            &SnpClaims {
                product,
                signer: report.signer,
                report_version: report.version,
                chip_id_masked: masked,
                current_firmware: report.current_firmware().to_string(),
                committed_firmware: report.committed_firmware().to_string(),
                id_key_digest: HexBytes(report.id_key_digest().to_vec()),
                author_key_digest: HexBytes(report.author_key_digest().to_vec()),
                revocation_checked: verified.revocation_checked,
                tcbs,
                effective_tcb: effective,
                relaunch_advised,
            },
        )?;
        let report_data = ReportData(*report.report_data());
        let mut tcb = TcbInfo::new(status);
        if relaunch_advised {
            tcb.advisory_ids.push(RELAUNCH_ADVISED.to_owned());
        }
        Ok(ReportPart {
            boot,
            tcb,
            report_data_checked: ctx.check_report_data(&report_data)?,
            report_data,
            device_id: (!masked).then(|| DeviceId(Sha256::digest(&chip_id[..]).into())),
            platform_claims,
        })
    }

    /// [`SnpVerifier::report_part`] plus dstack's aggregates, for this
    /// plug-in's own identities.
    fn report_part_with_dstack(
        &self,
        verified: &VerifiedReport<'_>,
        ctx: &VerifyContext,
    ) -> Result<ReportPart, AttestError> {
        let mut part = self.report_part(verified, ctx)?;
        let report = verified.report();
        let sha = |parts: &[&[u8]]| {
            let mut h = Sha256::new();
            for x in parts {
                h.update(x);
            }
            HexBytes(h.finalize().to_vec())
        };
        part.platform_claims.insert(
            DSTACK_SECTION,
            &DstackClaims {
                tee_variant: "dstack-amd-sev-snp".into(),
                mr_aggregated: sha(&[report.measurement(), report.host_data()]),
                mr_system: sha(&[report.measurement()]),
                boot_time: None,
            },
        )?;
        Ok(part)
    }

    /// Checks a certificate chain supplied by an operator or a host (PEM:
    /// ASK or ASVK, then ARK) against the pinned roots of `product`: an ARK
    /// that is not the pinned one is rejected. The pinned certificates are
    /// what verification uses either way.
    pub fn check_supplied_chain(&self, product: Product, pem: &[u8]) -> Result<(), AttestError> {
        let pinned = self.roots.get(product)?.ark_der();
        let certs = vcek::pem_certificates(pem);
        let ark = certs.last().ok_or_else(|| Malformed::Missing {
            what: "certificate",
            detail: "the certificate chain holds no PEM certificate".into(),
        })?;
        if *ark != pinned {
            return Err(UntrustedChain::UnknownRoot {
                detail: format!("the supplied chain's ARK is not AMD's pinned {product:?} ARK"),
            }
            .into());
        }
        Ok(())
    }

    /// Verifies a report without an app config and returns its identity
    /// with `app: null` (the app identity of an SNP guest is the document
    /// HOST_DATA binds; without it there is none). Keys are never released
    /// on this form; it serves offline verification tools.
    pub async fn verify_without_app(
        &self,
        evidence: &Evidence,
        ctx: &VerifyContext,
    ) -> Result<attest_core::QuoteOnlyIdentity, AttestError> {
        let verified = self.verify_report(evidence, ctx).await?;
        let part = self.report_part_with_dstack(&verified, ctx)?;
        Ok(attest_core::QuoteOnlyIdentity {
            platform: PlatformId::SEV_SNP,
            app: attest_core::NoApp,
            boot: part.boot,
            tcb: part.tcb,
            debug: false,
            report_data: part.report_data,
            report_data_checked: part.report_data_checked,
            device_id: part.device_id,
            platform_claims: part.platform_claims,
        })
    }
}

#[async_trait]
impl Attestation for SnpVerifier {
    fn platform(&self) -> PlatformId {
        PlatformId::SEV_SNP
    }

    fn image_registers(&self) -> &'static [&'static str] {
        IMAGE_REGISTERS
    }

    async fn fetch_endorsements(
        &self,
        evidence: &Evidence,
        ctx: &VerifyContext,
    ) -> Result<(), AttestError> {
        let report = Report::parse(&evidence.quote)?;
        let req = vek_request(&report)?;
        let der = self.endorsement_key(evidence, &req).await?;
        // The CRL of the report's product, when a network source has it.
        let product = match req.product {
            Some(p) => Some(p),
            None => Vek::parse(&der).ok().and_then(|v| v.product()),
        };
        if let Some(product) = product {
            if let Ok(roots) = self.roots.get(product) {
                self.crls
                    .refresh(roots, product, report.signer, ctx.time, true)
                    .await;
            }
        }
        Ok(())
    }

    async fn verify(
        &self,
        evidence: &Evidence,
        ctx: &VerifyContext,
    ) -> Result<VerifiedIdentity, AttestError> {
        if evidence.platform != PlatformId::SEV_SNP {
            return Err(AttestError::UnsupportedPlatform(evidence.platform.clone()));
        }
        let verified = self.verify_report(evidence, ctx).await?;
        let report = verified.report();
        if evidence.app_config.is_empty() {
            return Err(Malformed::Missing {
                what: "app_config",
                detail: "SEV-SNP evidence carries no app_config: the app identity is the document HOST_DATA binds".into(),
            }
            .into());
        }
        let app = verify_app_config(&evidence.app_config, report.host_data())?.app_identity();
        let part = self.report_part_with_dstack(&verified, ctx)?;
        Ok(VerifiedIdentity {
            platform: PlatformId::SEV_SNP,
            app,
            boot: part.boot,
            tcb: part.tcb,
            debug: false,
            report_data: part.report_data,
            report_data_checked: part.report_data_checked,
            device_id: part.device_id,
            platform_claims: part.platform_claims,
        })
    }
}
