//! `Verifiers` dispatch and the invariants it re-checks after a plug-in.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use async_trait::async_trait;
use attest_core::image_registry::RegistryRules;

use attest_core::{
    AppId, AppIdentity, AttestError, Attestation, BootMeasurements, ComposeHash, ErrorKind,
    Evidence, PlatformClaims, PlatformId, ReportData, TcbInfo, TcbStatus, UnixTime,
    VerifiedIdentity, Verifiers, VerifyContext,
};

/// A plug-in that "verifies" by reading the report data from the first 64
/// bytes of the quote, and can be told to misbehave.
struct Fake {
    platform: PlatformId,
    claim_platform: PlatformId,
    check_binding: bool,
}

#[async_trait]
impl Attestation for Fake {
    fn platform(&self) -> PlatformId {
        self.platform.clone()
    }
    async fn verify(
        &self,
        ev: &Evidence,
        ctx: &VerifyContext,
    ) -> Result<VerifiedIdentity, AttestError> {
        let report_data = ReportData::from_slice(ev.quote.get(..64).unwrap_or(&[]))?;
        let checked = if self.check_binding {
            ctx.check_report_data(&report_data)?
        } else {
            true // a buggy plug-in claiming a check it did not do
        };
        Ok(VerifiedIdentity {
            platform: self.claim_platform.clone(),
            app: AppIdentity {
                app_id: AppId([1; 20]),
                compose_hash: ComposeHash([2; 32]),
                instance_id: None,
                key_provider: None,
                os_image_hash: None,
            },
            boot: BootMeasurements::new(vec![0; 48]),
            tcb: TcbInfo::new(TcbStatus::UpToDate),
            debug: false,
            report_data,
            report_data_checked: checked,
            device_id: None,
            platform_claims: PlatformClaims::default(),
        })
    }
}

fn fake(p: PlatformId) -> Arc<dyn Attestation> {
    Arc::new(Fake {
        platform: p.clone(),
        claim_platform: p,
        check_binding: true,
    })
}

#[tokio::test]
async fn dispatches_by_platform() {
    let verifiers = Verifiers::new()
        .with(fake(PlatformId::TDX))
        .with(fake(PlatformId::SEV_SNP));
    assert_eq!(
        verifiers.platforms(),
        vec![PlatformId::SEV_SNP, PlatformId::TDX]
    );
    let rd = ReportData([7; 64]);
    let ctx = VerifyContext::new(rd, UnixTime(1));
    for p in [PlatformId::TDX, PlatformId::SEV_SNP] {
        let id = verifiers
            .verify(&Evidence::new(p.clone(), vec![7; 64]), &ctx)
            .await
            .unwrap();
        assert_eq!(id.platform, p);
        assert!(id.report_data_checked);
    }
    let id = verifiers
        .verify(
            &Evidence::new(PlatformId::TDX, vec![7; 64]),
            &VerifyContext::without_report_data(UnixTime(1)),
        )
        .await
        .unwrap();
    assert!(!id.report_data_checked);
}

#[tokio::test]
async fn unknown_platform_is_unsupported() {
    let verifiers = Verifiers::new().with(fake(PlatformId::TDX));
    let nitro = PlatformId::parse("nitro").unwrap();
    let err = verifiers
        .verify(
            &Evidence::new(nitro.clone(), vec![]),
            &VerifyContext::without_report_data(UnixTime(1)),
        )
        .await
        .unwrap_err();
    assert_eq!(err, AttestError::UnsupportedPlatform(nitro));
    assert_eq!(
        err.to_string(),
        "unsupported_platform: no verifier registered for platform \"nitro\""
    );
    // A defaulted evidence names no registered platform.
    let err = verifiers
        .verify(
            &Evidence::default(),
            &VerifyContext::without_report_data(UnixTime(1)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedPlatform);
}

#[tokio::test]
async fn wrong_report_data_is_a_binding_mismatch() {
    let verifiers = Verifiers::new().with(fake(PlatformId::TDX));
    let ctx = VerifyContext::new(ReportData([8; 64]), UnixTime(1));
    let err = verifiers
        .verify(&Evidence::new(PlatformId::TDX, vec![7; 64]), &ctx)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AttestError::BindingMismatch {
            expected: Box::new(ReportData([8; 64])),
            found: Box::new(ReportData([7; 64]))
        }
    );
}

#[tokio::test]
async fn registry_rechecks_a_buggy_plugin() {
    // The plug-in skips the report-data check: the registry catches it.
    let lax = Verifiers::new().with(Arc::new(Fake {
        platform: PlatformId::TDX,
        claim_platform: PlatformId::TDX,
        check_binding: false,
    }));
    let ctx = VerifyContext::new(ReportData([8; 64]), UnixTime(1));
    let err = lax
        .verify(&Evidence::new(PlatformId::TDX, vec![7; 64]), &ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BindingMismatch);
    // And without an expected value the identity must say "not checked",
    // whatever the plug-in claimed.
    let id = lax
        .verify(
            &Evidence::new(PlatformId::TDX, vec![7; 64]),
            &VerifyContext::without_report_data(UnixTime(1)),
        )
        .await
        .unwrap();
    assert!(!id.report_data_checked);

    // The plug-in returns an identity for another platform.
    let confused = Verifiers::new().with(Arc::new(Fake {
        platform: PlatformId::TDX,
        claim_platform: PlatformId::SEV_SNP,
        check_binding: true,
    }));
    let err = confused
        .verify(
            &Evidence::new(PlatformId::TDX, vec![7; 64]),
            &VerifyContext::without_report_data(UnixTime(1)),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AttestError::IdentityMismatch {
            what: "platform".into(),
            expected: "tdx".into(),
            found: "sev-snp".into(),
        }
    );
}

/// A plug-in whose endorsement step fails: the registry passes the failure
/// on (the KMS then refuses without verifying).
struct Unreachable;

#[async_trait]
impl Attestation for Unreachable {
    fn platform(&self) -> PlatformId {
        PlatformId::SEV_SNP
    }
    fn image_registers(&self) -> &'static [&'static str] {
        &["measurement"]
    }
    async fn fetch_endorsements(&self, _: &Evidence, _: &VerifyContext) -> Result<(), AttestError> {
        Err(attest_core::Unavailable::Throttled {
            detail: "429".into(),
        }
        .into())
    }
    async fn verify(
        &self,
        _: &Evidence,
        _: &VerifyContext,
    ) -> Result<VerifiedIdentity, AttestError> {
        unreachable!("not called by these tests")
    }
}

#[tokio::test]
async fn lookups_and_the_endorsement_step_dispatch_by_platform() {
    let verifiers = Verifiers::new()
        .with(fake(PlatformId::TDX))
        .with(Arc::new(Unreachable));
    assert_eq!(
        verifiers.get(&PlatformId::TDX).unwrap().platform(),
        PlatformId::TDX
    );
    assert_eq!(
        verifiers.get(&PlatformId::SEV_SNP).unwrap().platform(),
        PlatformId::SEV_SNP
    );
    assert!(
        verifiers
            .get(&PlatformId::parse("nitro").unwrap())
            .is_none()
    );
    // The trait's default: a platform that takes no image registry entries.
    assert!(
        verifiers
            .get(&PlatformId::TDX)
            .unwrap()
            .image_registers()
            .is_empty()
    );
    let ctx = VerifyContext::without_report_data(UnixTime(1));
    // The default endorsement step does nothing; an overriding one is called.
    verifiers
        .fetch_endorsements(&Evidence::new(PlatformId::TDX, vec![]), &ctx)
        .await
        .unwrap();
    let err = verifiers
        .fetch_endorsements(&Evidence::new(PlatformId::SEV_SNP, vec![]), &ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let nitro = PlatformId::parse("nitro").unwrap();
    let err = verifiers
        .fetch_endorsements(&Evidence::new(nitro.clone(), vec![]), &ctx)
        .await
        .unwrap_err();
    assert_eq!(err, AttestError::UnsupportedPlatform(nitro));
    // The image registry takes entries for the platforms that name
    // registers, and requires those.
    assert_eq!(
        RegistryRules::from_verifiers(&verifiers),
        RegistryRules::new().with("sev-snp", &["measurement"])
    );
    assert_eq!(
        format!("{verifiers:?}"),
        "Verifiers { platforms: [PlatformId(sev-snp), PlatformId(tdx)] }"
    );
}
