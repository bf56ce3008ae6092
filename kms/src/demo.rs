//! A KMS with the testkit's fake vendor roots installed, and simulated TDX,
//! SNP and Azure vTPM (SNP- and TDX-backed) CVMs of one app: what `kms
//! demo`, `kms bench` and the end-to-end tests run. TEST ROOTS ONLY:
//! nothing here is trusted in production.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::platforms::Platforms;
use crate::service::keys::RootKeys;
use attest_core::app_config::host_data;
use attest_core::{Evidence, PlatformId, ReportData, UnixTime, Verifiers};
use attest_snp::{Product, ProductRoots, Roots, SnpConfig, SnpVerifier};
use attest_tdx::collateral::StaticCollateral;
use attest_tdx::{Collateral, TdxVerifier};
use attest_testkit::dstack::App;
use attest_testkit::snp::{self as kit, FakeAmdPki, ReportFields};
use attest_testkit::tdx::{CollateralOptions, FakeIntelPki, TdFields};
use attest_testkit::vtpm::{FakeVtpm, VtpmFields};
use attest_vtpm::{AZ_SNP_VTPM, AzVtpm, VtpmConfig};
use tokio::sync::oneshot;

/// The OS image the registry names.
pub const OS_IMAGE: &str = "0505050505050505050505050505050505050505050505050505050505050505";

/// The PCR the demo's Azure vTPM CVMs extend the runtime events into.
pub const VTPM_APP_PCR: u32 = 8;

/// The fake Intel and AMD PKIs, and a fake Azure vTPM.
pub struct Pkis {
    /// Plays Intel (quotes, collateral).
    pub intel: FakeIntelPki,
    /// Plays AMD (reports, certificates).
    pub amd: FakeAmdPki,
    /// Plays an Azure CVM's vTPM and paravisor.
    pub vtpm: FakeVtpm,
}

impl Default for Pkis {
    fn default() -> Self {
        Self::new()
    }
}

impl Pkis {
    /// Fresh fake PKIs.
    pub fn new() -> Self {
        Pkis {
            intel: FakeIntelPki::new(),
            amd: FakeAmdPki::new(),
            vtpm: FakeVtpm::new(),
        }
    }

    /// TDX, SNP and Azure vTPM verifiers that trust these fake roots.
    pub fn verifiers(&self) -> Verifiers {
        self.verifiers_with(true)
    }

    /// [`Pkis::verifiers`], with the TDX verified-platform cache on or off.
    pub fn verifiers_with(&self, tdx_platform_cache: bool) -> Verifiers {
        let now = UnixTime::now().as_secs() as i64;
        // The testkit's own collateral always parses.
        let collateral = Collateral::new(
            self.intel
                .collateral(&CollateralOptions::valid_from(now - 86_400)),
        )
        .expect("testkit collateral");
        let tdx = Arc::new(
            TdxVerifier::with_root(
                self.intel.root_der(),
                Arc::new(StaticCollateral(Arc::new(collateral))),
            )
            .expect("testkit Intel root")
            .with_platform_cache(tdx_platform_cache),
        );
        let mut roots = HashMap::new();
        for (p, k) in [
            (Product::Milan, kit::Product::Milan),
            (Product::Genoa, kit::Product::Genoa),
            (Product::Turin, kit::Product::Turin),
        ] {
            roots.insert(
                p,
                ProductRoots::from_pem(
                    self.amd.ark_pem(k).as_bytes(),
                    self.amd.ask_pem(k).as_bytes(),
                    self.amd.asvk_pem(k).as_bytes(),
                )
                .expect("testkit AMD roots"),
            );
        }
        // The testkit's platforms run TCB 4/0/22/213, the minimum here.
        let min = attest_snp::Tcb {
            bootloader: 4,
            tee: 0,
            snp: 22,
            microcode: 213,
            fmc: None,
        };
        let config = SnpConfig {
            min_tcb: HashMap::from([(Product::Genoa, min)]),
            ..Default::default()
        };
        let snp = SnpVerifier::with_roots(Roots::custom(roots.clone()), vec![], config.clone());
        let pinned = |launch: [u8; 48]| VtpmConfig {
            app_pcr: VTPM_APP_PCR,
            paravisors: vec![attest_core::HexBytes(launch.to_vec())],
        };
        let az_snp = AzVtpm::snp(
            SnpVerifier::with_roots(Roots::custom(roots), vec![], config),
            pinned(attest_testkit::vtpm::PARAVISOR_MEASUREMENT),
        )
        .expect("VMPL 0");
        let az_tdx = AzVtpm::tdx(tdx.clone(), pinned(attest_testkit::vtpm::PARAVISOR_MRTD))
            .expect("app PCR");
        Verifiers::new()
            .with(tdx)
            .with(Arc::new(snp))
            .with(Arc::new(az_snp))
            .with(Arc::new(az_tdx))
    }

    /// An Azure CVM (vTPM on SNP when `platform` is `az-snp-vtpm`, else on
    /// TDX) running `app`: the request's report data in the claims'
    /// `user-data`, the quote's nonce its SHA-256, the app's runtime events
    /// in PCR 8.
    pub fn vtpm_evidence(
        &self,
        platform: &PlatformId,
        app: &App,
        report_data: ReportData,
    ) -> Evidence {
        self.vtpm_evidence_with(platform, app, report_data, |_| {})
    }

    /// [`Pkis::vtpm_evidence`], with `edit` applied to the vTPM's fields
    /// after the defaults are set.
    pub fn vtpm_evidence_with(
        &self,
        platform: &PlatformId,
        app: &App,
        report_data: ReportData,
        edit: impl FnOnce(&mut VtpmFields),
    ) -> Evidence {
        let (log, pcr) = app.vtpm_event_log(VTPM_APP_PCR);
        let mut f = VtpmFields {
            user_data: Some(report_data.0),
            ..Default::default()
        };
        f.pcrs[VTPM_APP_PCR as usize] = pcr;
        edit(&mut f);
        let quote = if *platform == AZ_SNP_VTPM {
            self.vtpm
                .snp_container(&self.amd, &attest_testkit::vtpm::paravisor_report(), &f)
        } else {
            self.vtpm
                .tdx_container(&self.intel, &attest_testkit::vtpm::paravisor_td(), &f)
        };
        let mut e = Evidence::new(platform.clone(), quote);
        e.event_log = log;
        e
    }

    /// A TDX CVM running `app` (its quote carries `report_data`).
    pub fn tdx_evidence(&self, app: &App, report_data: ReportData, debug: bool) -> Evidence {
        let (log, rtmr3) = app.tdx_event_log();
        let mut td = TdFields {
            rtmrs: [[0; 48], [0; 48], [0; 48], rtmr3],
            report_data: report_data.0,
            ..Default::default()
        };
        if debug {
            td = td.debug();
        }
        let mut e = Evidence::new(PlatformId::TDX, self.intel.quote(&td));
        e.event_log = log;
        e
    }

    /// An SNP CVM running `app`.
    pub fn snp_evidence(
        &self,
        app: &App,
        report_data: ReportData,
        fields: ReportFields,
    ) -> Evidence {
        let doc = app.app_config_v3();
        let f = ReportFields {
            host_data: host_data(&doc),
            report_data: report_data.0,
            ..fields
        };
        let mut e = Evidence::new(PlatformId::SEV_SNP, self.amd.report(&f));
        e.certificates = self
            .amd
            .cert_table(f.product, &self.amd.vek_der(&f), f.signer);
        e.app_config = doc;
        e
    }
}

/// The image registry: the testkit TD's boot registers, SNP measurement,
/// and the fake vTPM's OS PCRs (the same image on SNP and TDX Azure CVMs).
pub fn registry() -> String {
    let td = TdFields::default();
    let pcrs = attest_testkit::vtpm::default_pcrs();
    let os_pcrs: String = attest_vtpm::identity::os_pcr_registers(VTPM_APP_PCR)
        .iter()
        .map(|name| {
            let i: usize = name[3..].parse().unwrap_or_default();
            format!("{name} = \"{}\"\n", hex::encode(pcrs[i]))
        })
        .collect();
    format!(
        "[[image]]\nos_image_hash = \"{OS_IMAGE}\"\n[[image.tdx]]\nmrtd = \"{}\"\nrtmr0 = \"{z}\"\nrtmr1 = \"{z}\"\nrtmr2 = \"{z}\"\n[[image.sev-snp]]\nmeasurement = \"{}\"\n[[image.az-snp-vtpm]]\n{os_pcrs}[[image.az-tdx-vtpm]]\n{os_pcrs}",
        hex::encode(td.mrtd),
        hex::encode(ReportFields::default().measurement),
        z = "00".repeat(48)
    )
}

/// The KMS deployment the demo policy's `kms` role allows (replicas
/// onboarding with `GetRootKeys` present this app identity).
pub fn kms_app() -> App {
    App {
        app_id: [0x4b; 20],
        compose_hash: [0x4d; 32],
        instance_id: Some([0x1e; 20]),
        ..App::example()
    }
}

/// A policy allowing `app` on every platform with the registered image,
/// and [`kms_app`] on the same image as a replica KMS (the `kms` role).
pub fn policy(app: &App) -> String {
    let kms = kms_app();
    format!(
        "platforms = [\"tdx\", \"sev-snp\", \"az-snp-vtpm\", \"az-tdx-vtpm\"]\nos_images = [\"{OS_IMAGE}\"]\n[[apps]]\napp_id = \"{}\"\ncompose_hashes = [\"{}\"]\n[kms]\nos_images = [\"{OS_IMAGE}\"]\n[[kms.apps]]\napp_id = \"{}\"\ncompose_hashes = [\"{}\"]\n",
        hex::encode(app.app_id),
        hex::encode(app.compose_hash),
        hex::encode(kms.app_id),
        hex::encode(kms.compose_hash)
    )
}

/// A running KMS.
pub struct Server {
    /// `http://127.0.0.1:port` (or https).
    pub url: String,
    /// The KMS's key provider id (hex SPKI of its root CA key).
    pub key_provider_id: String,
    /// The running service's state (tests read its metrics and caches).
    pub state: std::sync::Arc<crate::service::KmsState>,
    /// `https://127.0.0.1:port` of the dstack-compatible listener, when the
    /// configuration has `[dstack_compat]` (its `listen` port may be 0).
    pub dstack_url: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    join: Option<tokio::task::JoinHandle<Result<(), String>>>,
    dstack_stop: Option<oneshot::Sender<()>>,
    dstack_join: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

impl Server {
    /// Starts a KMS on 127.0.0.1:0 whose data, policy and registry live in `dir`.
    pub async fn start(dir: &Path, pkis: &Pkis, app: &App) -> Result<Server, String> {
        Self::start_with(dir, pkis, app, false).await
    }

    /// [`Server::start`], over TLS when `tls` (certificate for 127.0.0.1,
    /// issued by the KMS root CA in `dir/data/root-ca.crt`).
    pub async fn start_with(
        dir: &Path,
        pkis: &Pkis,
        app: &App,
        tls: bool,
    ) -> Result<Server, String> {
        Self::start_configured(dir, pkis, app, tls, "").await
    }

    /// [`Server::start_with`], with `extra` TOML appended to the demo
    /// configuration (tests set limits, an audit log path, ...).
    pub async fn start_configured(
        dir: &Path,
        pkis: &Pkis,
        app: &App,
        tls: bool,
        extra: &str,
    ) -> Result<Server, String> {
        Self::start_with_policy(dir, pkis, &policy(app), tls, extra).await
    }

    /// [`Server::start_configured`] with the TOML policy `policy_text`
    /// instead of [`policy`] (tests of other roles, such as `[kms]`).
    pub async fn start_with_policy(
        dir: &Path,
        pkis: &Pkis,
        policy_text: &str,
        tls: bool,
        extra: &str,
    ) -> Result<Server, String> {
        let e = |e: std::io::Error| e.to_string();
        std::fs::create_dir_all(dir).map_err(e)?;
        std::fs::write(dir.join("policy.toml"), policy_text).map_err(e)?;
        std::fs::write(dir.join("images.toml"), registry()).map_err(e)?;
        let config: Config = toml_config_with(dir, extra)?;
        let (keys, _) = RootKeys::load_or_generate(&dir.join("data")).map_err(|e| e.to_string())?;
        let key_provider_id = keys.key_provider_id();
        let platforms = Platforms {
            verifiers: pkis.verifiers_with(config.tdx.verified_platform_cache),
            collateral_cache: None,
        };
        let state = crate::service::KmsState::from_config(&config, dir, keys, platforms)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(e)?;
        let scheme = if tls { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().map_err(e)?);
        let tls_names = tls.then(|| vec!["127.0.0.1".to_owned()]);
        let (tx, rx) = oneshot::channel();
        let listener_cfg = crate::service::listener::ListenerConfig {
            max_request_bytes: config.max_request_bytes,
            limits: config.limits.clone(),
            tls_names,
        };
        let (mut dstack_url, mut dstack_stop, mut dstack_join) = (None, None, None);
        if let Some(d) = &config.dstack_compat {
            let mut own = d.server_names.clone();
            own.extend(config.tls_names().unwrap_or_default());
            let front = crate::service::dstack::DstackFront::new(
                state.clone(),
                d,
                &dir.join("data"),
                own,
                config.limits.clone(),
                config.max_request_bytes,
            )
            .map_err(|e| e.to_string())?;
            let (tx, rx) = oneshot::channel::<()>();
            let (addr, join) = std::sync::Arc::new(front)
                .start(d, async move {
                    let _ = rx.await;
                })
                .await?;
            dstack_url = Some(format!("https://{addr}"));
            dstack_stop = Some(tx);
            dstack_join = Some(join);
        }
        let served = state.clone();
        let join = tokio::spawn(async move {
            crate::service::listener::serve_with(listener, served, &listener_cfg, async move {
                let _ = rx.await;
            })
            .await
        });
        Ok(Server {
            url,
            key_provider_id,
            state,
            dstack_url,
            stop: Some(tx),
            join: Some(join),
            dstack_stop,
            dstack_join,
        })
    }

    /// Stops the server after in-flight requests finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.dstack_stop.take() {
            let _ = tx.send(());
        }
        if let Some(j) = self.dstack_join.take() {
            let _ = j.await;
        }
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(j) = self.join.take() {
            let _ = j.await;
        }
    }
}

/// The demo KMS configuration over `dir`.
pub fn toml_config(dir: &Path) -> Result<Config, String> {
    toml_config_with(dir, "")
}

/// The demo KMS configuration over `dir`, with `extra` top-level keys and
/// tables placed before the policy table.
pub fn toml_config_with(dir: &Path, extra: &str) -> Result<Config, String> {
    let text = format!(
        "data_dir = \"{}\"\nimage_registry = \"images.toml\"\n{extra}\n[policy]\ntype = \"toml\"\nfile = \"policy.toml\"\n",
        dir.join("data").display()
    );
    toml::from_str(&text).map_err(|e| e.to_string())
}
