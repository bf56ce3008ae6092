//! Helpers shared by the fuzz targets (see `TESTING.md`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::OnceLock;

use attest_core::eventlog::{self, LogEvent, RegisterSet, ReplayedLog};
use attest_core::{
    AppId, AppIdentity, BootMeasurements, ComposeHash, DeviceId, OsImageHash, PlatformClaims,
    PlatformId, ReportData, TcbInfo, TcbStatus, VerifiedIdentity,
};
use sha2::Digest;

/// One runtime for the async parts, built once per process.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// Splits an input into two parts: `u32le(len) ‖ first ‖ second` (the
/// seed script writes that framing); a short input is all first part.
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    if data.len() < 4 {
        return (data, &[]);
    }
    let n = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let rest = &data[4..];
    let n = n.min(rest.len());
    rest.split_at(n)
}

/// Replays a parsed log, checks it against its own replay (so that the
/// identity code past the register comparison is reached), and reads the
/// app identity and dstack's boot-time value from it.
pub fn replay_all<D: Digest>(events: &[LogEvent], set: &RegisterSet) {
    let _ = eventlog::claimed_app_info(events, set).and_then(|i| i.app_identity());
    let Ok(regs) = eventlog::replay::<D>(events, set) else {
        return;
    };
    let signed: Vec<Option<&[u8]>> = regs.iter().map(|r| Some(&r[..])).collect();
    if let Ok(log) = ReplayedLog::check::<D>(events.to_vec(), set, &signed) {
        let _ = log.app_info().and_then(|i| i.app_identity());
        let _ = log.app_register_until::<D>(eventlog::BOOT_MR_DONE);
        let _ = log.runtime_events().count();
    }
    // A stripped log: only the app register checked.
    let app = set.app_register as usize;
    let signed: Vec<Option<&[u8]>> = regs
        .iter()
        .enumerate()
        .map(|(i, r)| (i == app).then_some(&r[..]))
        .collect();
    let _ = ReplayedLog::check::<D>(events.to_vec(), set, &signed);
}

/// A verified identity for policy and registry targets to judge.
pub fn sample_identity(platform: PlatformId) -> VerifiedIdentity {
    use attest_core::names::reg;
    let boot = if platform == PlatformId::TDX {
        BootMeasurements::new(vec![0x11; 48])
            .with(reg::MRTD, &[0x22u8; 48][..])
            .with(reg::RTMR0, &[0x33u8; 48][..])
            .with(reg::RTMR1, &[0x44u8; 48][..])
            .with(reg::RTMR2, &[0x55u8; 48][..])
            .with(reg::RTMR3, &[0x66u8; 48][..])
            .with(reg::TEE_TCB_SVN, &[3u8; 16][..])
    } else {
        BootMeasurements::new(vec![0x11; 48]).with(reg::MEASUREMENT, &[0x22u8; 48][..])
    };
    VerifiedIdentity {
        platform,
        app: AppIdentity {
            app_id: AppId([0x01; 20]),
            compose_hash: ComposeHash([0x02; 32]),
            instance_id: None,
            key_provider: None,
            os_image_hash: Some(OsImageHash([0x03; 32])),
        },
        boot,
        tcb: TcbInfo::new(TcbStatus::UpToDate),
        debug: false,
        report_data: ReportData([0; 64]),
        report_data_checked: true,
        device_id: Some(DeviceId([7; 32])),
        platform_claims: PlatformClaims::default(),
    }
}

/// A stub plug-in for the service targets: it accepts evidence whose quote
/// starts with `ok` (an identity whose app id is the next 20 bytes, bound
/// to the expected report data) and refuses anything else with an error
/// kind chosen by the first byte, so the fuzzer reaches both the release
/// path and every refusal mapping.
pub struct StubVerifier(pub PlatformId);

#[async_trait::async_trait]
impl attest_core::Attestation for StubVerifier {
    fn platform(&self) -> PlatformId {
        self.0.clone()
    }

    async fn verify(
        &self,
        evidence: &attest_core::Evidence,
        ctx: &attest_core::VerifyContext,
    ) -> Result<VerifiedIdentity, attest_core::AttestError> {
        use attest_core::AttestError as E;
        let q = &evidence.quote;
        if q.starts_with(b"ok") {
            let mut id = sample_identity(self.0.clone());
            let mut app = [0u8; 20];
            for (d, s) in app.iter_mut().zip(q.iter().skip(2)) {
                *d = *s;
            }
            id.app.app_id = AppId(app);
            id.app.os_image_hash = None;
            match &ctx.expected_report_data {
                Some(rd) => id.report_data = *rd,
                None => id.report_data_checked = false,
            }
            return Ok(id);
        }
        let m = String::from_utf8_lossy(q.get(1..).unwrap_or(&[])).into_owned();
        Err(match q.first().copied().unwrap_or(0) % 8 {
            0 => attest_core::Malformed::Other(m).into(),
            1 => attest_core::BadSignature::Other(m).into(),
            2 => attest_core::UntrustedChain::Other(m).into(),
            3 => attest_core::Unavailable::Local { detail: m }.into(),
            4 => attest_core::Revoked::Certificate { detail: m }.into(),
            5 => attest_core::Insecure::TdAttributes { detail: m }.into(),
            6 => E::identity_mismatch(attest_core::names::reg::RTMR3, q, &[]),
            _ => attest_core::CollateralExpired::Expired { detail: m }.into(),
        })
    }
}

/// A KMS state over stub plug-ins (`tdx`, `sev-snp`), a TOML policy that
/// allows app `01..01`, the audit log sent to `/dev/null`, in a temporary
/// data directory that lives as long as the process.
pub fn stub_state() -> &'static (std::sync::Arc<kms::service::KmsState>, std::path::PathBuf) {
    static S: OnceLock<(std::sync::Arc<kms::service::KmsState>, std::path::PathBuf)> =
        OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        std::fs::write(
            dir.join("policy.toml"),
            "platforms = [\"tdx\", \"sev-snp\"]\n[[apps]]\napp_id = \"0101010101010101010101010101010101010101\"\ncompose_hashes = [\"0202020202020202020202020202020202020202020202020202020202020202\"]\n",
        )
        .expect("policy");
        let config = kms::config::Config {
            data_dir: dir.clone(),
            audit_log: "/dev/null".into(),
            policy: policy::PolicySpec::Toml {
                file: dir.join("policy.toml").display().to_string(),
            },
            ..Default::default()
        };
        let verifiers = attest_core::Verifiers::new()
            .with(std::sync::Arc::new(StubVerifier(PlatformId::TDX)))
            .with(std::sync::Arc::new(StubVerifier(PlatformId::SEV_SNP)));
        let keys = kms::service::keys::RootKeys::generate().expect("root keys");
        let state = kms::service::KmsState::from_config(
            &config,
            &dir,
            keys,
            kms::platforms::Platforms {
                verifiers,
                collateral_cache: None,
            },
        )
        .expect("state");
        (state, dir)
    })
}
