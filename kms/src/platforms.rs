//! The one place that names platforms: building the plug-ins from the
//! configuration. The request path never does.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use attest_core::Verifiers;
use attest_snp::{CrlSource, Crls, KdsClient, OfflineVceks, SnpConfig, SnpVerifier, VcekSource};
use attest_tdx::collateral::PcsConfig;
use attest_tdx::{CachedCollateral, CollateralSource, OfflineCollateral, PcsClient, TdxVerifier};
use attest_vtpm::{AZ_SNP_VTPM, AZ_TDX_VTPM, AzVtpm, VtpmConfig};

use crate::config::Config;

/// A TDX collateral source that tries an offline directory first, then the network.
struct FirstOf(Vec<Arc<dyn CollateralSource>>);

#[async_trait::async_trait]
impl CollateralSource for FirstOf {
    async fn fetch(
        &self,
        key: &attest_tdx::CollateralKey,
        now: attest_core::UnixTime,
    ) -> Result<Arc<attest_tdx::Collateral>, attest_core::AttestError> {
        let mut last = None;
        for s in &self.0 {
            match s.fetch(key, now).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            attest_core::CollateralMissing::NoSource {
                detail: "no TDX collateral source is configured".into(),
            }
            .into()
        }))
    }
}

/// The built plug-ins, and the handles metrics read.
pub struct Platforms {
    /// The registry the service dispatches through.
    pub verifiers: Verifiers,
    /// The TDX collateral cache (for hit/miss metrics).
    pub collateral_cache: Option<Arc<CachedCollateral>>,
}

/// A plug-in's `[platform.<id>]` table, as its settings type (defaults
/// when the table is absent; unknown keys are errors).
fn section<T: serde::de::DeserializeOwned + Default>(
    config: &Config,
    id: &attest_core::PlatformId,
) -> Result<T, String> {
    match config.platform.get(id.as_str()) {
        None => Ok(T::default()),
        Some(t) => t
            .clone()
            .try_into()
            .map_err(|e| format!("[platform.{id}]: {e}")),
    }
}

/// The vTPM plug-ins' settings.
fn vtpm_config(config: &Config, id: &attest_core::PlatformId) -> Result<VtpmConfig, String> {
    let c: VtpmConfig = section(config, id)?;
    c.validate()
        .map_err(|e| format!("[platform.{id}]: {}", e.message()))?;
    Ok(c)
}

/// Checks every `[platform.<id>]` table names a plug-in that takes one and
/// holds valid settings for it.
pub fn check_sections(config: &Config) -> Result<(), String> {
    for id in config.platform.keys() {
        match id.as_str() {
            "az-snp-vtpm" | "az-tdx-vtpm" => {}
            other => {
                return Err(format!(
                    "[platform.{other}]: no plug-in takes settings under this name (az-snp-vtpm, az-tdx-vtpm do)"
                ));
            }
        }
    }
    vtpm_config(config, &AZ_SNP_VTPM)?;
    vtpm_config(config, &AZ_TDX_VTPM)?;
    Ok(())
}

/// Builds the production plug-ins (vendor roots pinned) from `config`.
pub fn build(config: &Config, base: &Path) -> Result<Platforms, String> {
    let data = base.join(&config.data_dir);
    // TDX: offline directory, then PCS/PCCS, behind the cache.
    let mut sources: Vec<Arc<dyn CollateralSource>> = Vec::new();
    if let Some(dir) = &config.tdx.offline_dir {
        sources.push(Arc::new(OfflineCollateral::new(base.join(dir))));
    }
    if let Some(url) = &config.tdx.pccs_url {
        let mut pcs = PcsConfig::new(url.clone());
        pcs.update = config.tdx.update;
        pcs.insecure_http = config.tdx.insecure_http;
        sources.push(Arc::new(PcsClient::new(pcs).map_err(|e| e.to_string())?));
    }
    let cache = Arc::new(
        CachedCollateral::new(Arc::new(FirstOf(sources)), attest_tdx::INTEL_ROOT_CA_DER)
            .map_err(|e| e.to_string())?
            .with_dir(data.join(&config.tdx.cache_dir))
            .with_fetch_budget(config.tdx.fetches_per_minute),
    );
    let tdx = Arc::new(
        TdxVerifier::new(cache.clone())
            .map_err(|e| e.to_string())?
            .with_platform_cache(config.tdx.verified_platform_cache),
    );

    // SEV-SNP: VCEKs from the evidence, then an offline directory, then
    // KDS; AMD's CRLs from the same two sources.
    let mut veks: Vec<Arc<dyn VcekSource>> = Vec::new();
    let mut crls: Vec<Arc<dyn CrlSource>> = Vec::new();
    if let Some(dir) = &config.sev_snp.offline_dir {
        let offline = Arc::new(OfflineVceks::new(base.join(dir)));
        veks.push(offline.clone());
        crls.push(offline);
    }
    if let Some(url) = &config.sev_snp.kds_url {
        let kds = Arc::new(
            KdsClient::with_options(
                url,
                Some(data.join(&config.sev_snp.vcek_cache_dir)),
                Duration::from_secs(10),
                config.sev_snp.insecure_http,
            )
            .map_err(|e| e.to_string())?
            .with_fetch_budget(config.sev_snp.fetches_per_minute),
        );
        veks.push(kds.clone());
        crls.push(kds);
    }
    let crl_dir = data.join(&config.sev_snp.vcek_cache_dir).join("crl");
    let snp = SnpVerifier::new(
        veks.clone(),
        SnpConfig {
            vmpl: config.sev_snp.vmpl,
            allow_migrate_ma: false,
            min_tcb: config.sev_snp.min_tcb.clone(),
        },
    )
    .map_err(|e| e.to_string())?
    .with_crls(Crls::new(crls.clone(), Some(crl_dir.clone())));

    // Azure vTPM: the paravisor's SNP report at VMPL 0 (its own verifier,
    // the same VCEK and CRL sources and TCB minimum), the TD quote by the
    // TDX plug-in itself.
    let az_snp = SnpVerifier::new(
        veks,
        SnpConfig {
            vmpl: 0,
            allow_migrate_ma: false,
            min_tcb: config.sev_snp.min_tcb.clone(),
        },
    )
    .map_err(|e| e.to_string())?
    .with_crls(Crls::new(crls, Some(crl_dir)));
    let az_snp =
        AzVtpm::snp(az_snp, vtpm_config(config, &AZ_SNP_VTPM)?).map_err(|e| e.to_string())?;
    let az_tdx =
        AzVtpm::tdx(tdx.clone(), vtpm_config(config, &AZ_TDX_VTPM)?).map_err(|e| e.to_string())?;

    let verifiers = Verifiers::new()
        .with(tdx)
        .with(Arc::new(snp))
        .with(Arc::new(az_snp))
        .with(Arc::new(az_tdx));
    Ok(Platforms {
        verifiers,
        collateral_cache: Some(cache),
    })
}

/// The image registry rules of the production plug-ins under `config`
/// (what `kms image` and `kms config check` validate entries with; the
/// vTPM plug-ins' OS PCRs depend on their app PCR).
pub fn registry_rules(config: &Config) -> attest_core::image_registry::RegistryRules {
    let os_pcrs = |id| {
        attest_vtpm::identity::os_pcr_registers(
            vtpm_config(config, id)
                .map(|c| c.app_pcr)
                .unwrap_or_default(),
        )
    };
    attest_core::image_registry::RegistryRules::new()
        .with(
            attest_core::PlatformId::TDX.as_str(),
            attest_tdx::IMAGE_REGISTERS,
        )
        .with(
            attest_core::PlatformId::SEV_SNP.as_str(),
            attest_snp::IMAGE_REGISTERS,
        )
        .with(AZ_SNP_VTPM.as_str(), os_pcrs(&AZ_SNP_VTPM))
        .with(AZ_TDX_VTPM.as_str(), os_pcrs(&AZ_TDX_VTPM))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(text: &str) -> Result<Config, String> {
        let c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map(|()| c)
    }

    #[test]
    fn platform_sections_are_checked() {
        let c = config("[platform.az-snp-vtpm]\napp_pcr = 15\n").unwrap();
        assert_eq!(vtpm_config(&c, &AZ_SNP_VTPM).unwrap().app_pcr, 15);
        assert_eq!(vtpm_config(&c, &AZ_TDX_VTPM).unwrap().app_pcr, 8);
        assert_eq!(
            registry_rules(&c),
            registry_rules(&Config::default())
                .with("az-snp-vtpm", attest_vtpm::identity::os_pcr_registers(15))
        );
        for (text, want) in [
            (
                "[platform.az-tdx-vtpm]\napp_pcr = 16\n",
                "[platform.az-tdx-vtpm]: app_pcr must be in 8..=15",
            ),
            (
                "[platform.az-snp-vtpm]\napp_pcr = 7\n",
                "[platform.az-snp-vtpm]: app_pcr must be in 8..=15",
            ),
            ("[platform.az-snp-vtpm]\npcr = 8\n", "unknown field `pcr`"),
            (
                "[platform.tdx]\napp_pcr = 8\n",
                "[platform.tdx]: no plug-in takes settings",
            ),
        ] {
            let e = config(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
