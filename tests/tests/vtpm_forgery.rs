//! Azure vTPM evidence forged by a machine
//! that is not Azure's paravisor.
//!
//! The vTPM plug-ins trust the runtime claims (and so the AK, the PCRs and
//! the app PCR's events) because the hardware report carries
//! `SHA-256(claims) ‖ 0³²`. That only means something if the report comes
//! from Microsoft's paravisor: on any other SEV-SNP VM the guest kernel
//! itself runs at VMPL 0 and asks for any REPORT_DATA it likes, and any TD
//! (a dstack TDX CVM included) puts anything in REPORTDATA. Nothing on the
//! key path pins the paravisor (SNP MEASUREMENT / ID key, TD MRTD): the
//! image registry of `az-*-vtpm` is keyed by OS PCRs alone, which the
//! forger writes into its own TPM quote, signed by its own "AK".
//!
//! Everything runs against a real KMS on 127.0.0.1 with the demo's
//! configuration (registry and policy as `kms demo` writes them).
#![allow(clippy::unwrap_used, missing_docs)]

use attest_core::{Evidence, PlatformId, ReportData};
use attest_testkit::dstack::App;
use attest_testkit::snp::ReportFields;
use attest_testkit::tdx::TdFields;
use attest_testkit::vtpm::VtpmFields;
use kms::demo::*;
use kms_client::{ClientError, KmsClient};

/// The hardware the forger controls.
#[derive(Clone, Copy)]
enum Forger {
    /// A plain SEV-SNP VM anywhere (its own firmware, no paravisor): the
    /// guest runs at VMPL 0, so AMD signs whatever REPORT_DATA it asks for.
    PlainSnpVm,
    /// A dstack TDX CVM of some other, unapproved app (its quote would
    /// never get the victim's keys on the `tdx` platform).
    DstackTdxCvm,
}

/// Azure vTPM evidence for `victim`, bound to `rd`, made entirely by
/// `forger`: its own HCL framing and claims naming its own RSA "AK", a TPM
/// quote over the PCRs of the registered Azure image (PCR values are not
/// secret: any VM booting the image reads them) with the victim's runtime
/// events in the app PCR, and a hardware report whose report data is
/// `SHA-256(forged claims) ‖ 0³²`.
fn forged(pkis: &Pkis, forger: Forger, victim: &App, rd: ReportData) -> Evidence {
    let (log, app_pcr) = victim.vtpm_event_log(VTPM_APP_PCR);
    let mut f = VtpmFields {
        user_data: Some(rd.0),
        ..Default::default()
    };
    f.pcrs[VTPM_APP_PCR as usize] = app_pcr;
    let (platform, quote) = match forger {
        Forger::PlainSnpVm => {
            let not_the_paravisor = ReportFields {
                measurement: [0xa7; 48],
                host_data: [0x99; 32],
                ..Default::default()
            };
            (
                "az-snp-vtpm",
                pkis.vtpm.snp_container(&pkis.amd, &not_the_paravisor, &f),
            )
        }
        Forger::DstackTdxCvm => {
            let rogue = App {
                app_id: [0x66; 20],
                compose_hash: [0x67; 32],
                ..App::example()
            };
            let (_, rtmr3) = rogue.tdx_event_log();
            // A dstack TD: the registered dstack image's MRTD and RTMRs,
            // RTMR3 holding the rogue app's events.
            let td = TdFields {
                rtmrs: [[0; 48], [0; 48], [0; 48], rtmr3],
                ..Default::default()
            };
            ("az-tdx-vtpm", pkis.vtpm.tdx_container(&pkis.intel, &td, &f))
        }
    };
    let mut e = Evidence::new(PlatformId::parse(platform).unwrap(), quote);
    e.event_log = log;
    e
}

async fn app_keys(
    server: &Server,
    pkis: &Pkis,
    forger: Forger,
    victim: &App,
) -> Result<kms_client::AppKeys, ClientError> {
    let mut c = KmsClient::connect(&server.url).await.unwrap();
    c.get_app_key(&server.key_provider_id, |rd| {
        let e = forged(pkis, forger, victim, rd);
        async move { Ok(e) }
    })
    .await
}

/// Second review, F1: a plain SEV-SNP VM that is not Azure's paravisor (any
/// MEASUREMENT, VMPL 0 because it has no SVSM) forges `az-snp-vtpm`
/// evidence naming the victim app and gets the victim's app keys: the
/// plug-in never checks that the SNP report is the paravisor's.
#[tokio::test]
async fn a_plain_snp_vm_framing_az_snp_vtpm_evidence_gets_no_other_apps_keys() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let victim = App::example();
    let server = Server::start(dir.path(), &pkis, &victim).await.unwrap();
    let got = app_keys(&server, &pkis, Forger::PlainSnpVm, &victim).await;
    server.stop().await;
    match got {
        Err(ClientError::Refused { code, message }) => {
            assert_eq!(code, tonic::Code::PermissionDenied);
            assert!(
                message.contains("is not a pinned paravisor's")
                    || message.contains("so the TD is not Azure's paravisor"),
                "{message}"
            );
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(k) => panic!(
            "the KMS released app {}'s keys to az-snp-vtpm evidence whose SNP report is from a VM \
             with MEASUREMENT a7a7.. (not a paravisor) over claims, AK and PCRs it wrote itself",
            hex::encode(k.app_id)
        ),
    }
}

/// Second review, F1 (TDX): a dstack TDX CVM running some unapproved app wraps
/// its own TD quote (REPORTDATA = SHA-256 of claims it wrote) as
/// `az-tdx-vtpm` evidence naming the victim app, and gets the victim's
/// keys: the TD is never required to be Azure's paravisor (its MRTD, zero
/// RTMRs).
#[tokio::test]
async fn a_dstack_td_framing_az_tdx_vtpm_evidence_gets_no_other_apps_keys() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let victim = App::example();
    let server = Server::start(dir.path(), &pkis, &victim).await.unwrap();
    let got = app_keys(&server, &pkis, Forger::DstackTdxCvm, &victim).await;
    server.stop().await;
    match got {
        Err(ClientError::Refused { code, message }) => {
            assert_eq!(code, tonic::Code::PermissionDenied);
            assert!(
                message.contains("is not a pinned paravisor's")
                    || message.contains("so the TD is not Azure's paravisor"),
                "{message}"
            );
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(k) => panic!(
            "the KMS released app {}'s keys to az-tdx-vtpm evidence whose TD quote comes from a \
             dstack TD (non-zero RTMR3 of another app), not from Azure's paravisor",
            hex::encode(k.app_id)
        ),
    }
}

/// Second review, F1 (root keys): the same forgery naming the KMS deployment
/// (`kms_app`) passes the policy's `kms` role, whose OS image is
/// registered for the vTPM platforms by its OS PCRs: `GetRootKeys` hands
/// the forger the root CA key, the root k256 key and the root secret.
#[tokio::test]
async fn framed_az_snp_vtpm_evidence_of_the_kms_deployment_gets_no_root_keys() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Pkis::new();
    let server = Server::start(dir.path(), &pkis, &App::example())
        .await
        .unwrap();
    let mut c = KmsClient::connect(&server.url).await.unwrap();
    let got = c
        .get_root_keys(&server.key_provider_id, |rd| {
            let e = forged(&pkis, Forger::PlainSnpVm, &kms_app(), rd);
            async move { Ok(e) }
        })
        .await;
    let root_secret = *server.state.keys.root_secret();
    server.stop().await;
    match got {
        Err(ClientError::Refused { code, message }) => {
            assert_eq!(code, tonic::Code::PermissionDenied);
            assert!(
                message.contains("is not a pinned paravisor's")
                    || message.contains("so the TD is not Azure's paravisor"),
                "{message}"
            );
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(set) => panic!(
            "GetRootKeys sealed the root keys to forged az-snp-vtpm evidence (root secret \
             received: {})",
            set.root_secret.as_slice() == &root_secret[..]
        ),
    }
}
