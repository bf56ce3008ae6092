//! `kms.toml`. Every key is optional: with no file at all the KMS listens on
//! 127.0.0.1:7000, keeps its keys in `./kms-data`, denies everything
//! (deny-all policy) and trusts only the production vendor roots.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use policy::PolicySpec;
use serde::{Deserialize, Serialize};

use crate::service::kdf::KdfProfile;

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Where root keys, caches and the audit log live.
    pub data_dir: PathBuf,
    /// Key derivation profile: `v2` (default) or `dstack`.
    pub kdf: KdfProfile,
    /// Challenge lifetime, seconds.
    pub challenge_ttl_secs: u64,
    /// Largest accepted request, bytes.
    pub max_request_bytes: usize,
    /// Prometheus metrics address (none: no metrics endpoint).
    pub metrics_listen: Option<SocketAddr>,
    /// Log format: `text` or `json`.
    pub log_format: LogFormat,
    /// Audit log file, relative to `data_dir`.
    pub audit_log: PathBuf,
    /// The image registry (reference values); none: no image resolves.
    pub image_registry: Option<PathBuf>,
    /// The policy (default: deny all).
    pub policy: PolicySpec,
    /// TLS for the gRPC listener (off by default).
    pub tls: TlsConfig,
    /// Intel TDX collateral.
    pub tdx: TdxConfig,
    /// AMD SEV-SNP endorsement keys and limits.
    pub sev_snp: SnpSection,
    /// Connection, stream, time and memory limits of every listener.
    pub limits: crate::service::limits::Limits,
    /// The dstack-compatible listener (off when absent).
    pub dstack_compat: Option<DstackCompatConfig>,
    /// Get the root keys from a running KMS at first start (a replica).
    pub onboard: Option<OnboardConfig>,
    /// Settings of the plug-ins that take them, by platform id
    /// (`[platform.az-snp-vtpm]`, `[platform.az-tdx-vtpm]`); each plug-in
    /// reads its own table (see `platforms.rs`).
    pub platform: BTreeMap<String, toml::Table>,
}

/// `[onboard]`: a replica's source of root keys.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OnboardConfig {
    /// The running KMS (`https://...`, or `http://` on a trusted network:
    /// the answer is sealed and signed either way).
    pub from: String,
    /// The key provider id (hex SPKI) the keys must come from.
    pub key_provider_id: String,
    /// For `https://`: the root CA certificate (PEM file) the source's TLS
    /// certificate must chain to.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
}

impl OnboardConfig {
    /// A URL and a hex key provider id.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.from.starts_with("http://") || self.from.starts_with("https://")) {
            return Err(format!(
                "onboard.from must be an http(s) URL, found {:?}",
                self.from
            ));
        }
        let kpi = self.key_provider_id.trim();
        if kpi.is_empty() || kpi.len() > 1024 || hex::decode(kpi).is_err() {
            return Err(
                "onboard.key_provider_id must be the source's key provider id (hex)".into(),
            );
        }
        Ok(())
    }
}

/// `[dstack_compat]`: prpc over RA-TLS for unmodified dstack guests.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DstackCompatConfig {
    /// Where to listen (HTTPS; guests' `kms_urls` point here).
    pub listen: SocketAddr,
    /// The DNS names and IP addresses guests reach this KMS by (the hosts
    /// of their `kms_urls`): the server certificate covers every one.
    pub server_names: Vec<String>,
    /// The gateway app id handed to guests (`gateway_app_id`) when the
    /// policy gives none (a dstack webhook's `gatewayAppId` wins): `any`,
    /// a hex app id, or empty (no gateway).
    #[serde(default)]
    pub gateway_app_id: String,
}

impl DstackCompatConfig {
    /// Longest gateway app id accepted.
    pub const MAX_GATEWAY_APP_ID: usize = 1024;

    /// Names must be DNS names or IP addresses, at least one.
    pub fn validate(&self) -> Result<(), String> {
        if self.server_names.is_empty() {
            return Err("dstack_compat.server_names must name at least one host".into());
        }
        for n in &self.server_names {
            let dns_ok = !n.is_empty()
                && n.len() <= 253
                && n.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if n.parse::<std::net::IpAddr>().is_err() && !dns_ok {
                return Err(format!(
                    "dstack_compat.server_names: {n:?} is neither a DNS name nor an IP address"
                ));
            }
        }
        if self.gateway_app_id.len() > Self::MAX_GATEWAY_APP_ID
            || self.gateway_app_id.chars().any(char::is_control)
        {
            return Err(format!(
                "dstack_compat.gateway_app_id must be at most {} printable characters",
                Self::MAX_GATEWAY_APP_ID
            ));
        }
        Ok(())
    }
}

/// TLS: a server certificate issued by the KMS root CA at start.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Serve gRPC over TLS.
    pub enabled: bool,
    /// DNS names / IP addresses the certificate covers (default: the listen address's IP).
    pub server_names: Vec<String>,
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// TDX collateral sources.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TdxConfig {
    /// Intel PCS or a PCCS; none disables network fetches.
    pub pccs_url: Option<String>,
    /// `standard` or `early`.
    pub update: attest_tdx::collateral::UpdatePolicy,
    /// A directory of `<FMSPC>-<ca>.json` collateral files, tried before the network.
    pub offline_dir: Option<PathBuf>,
    /// Collateral cache directory, relative to `data_dir`.
    pub cache_dir: PathBuf,
    /// Fetches per minute for platforms (FMSPCs) never seen before.
    pub fetches_per_minute: u32,
    /// Allow `pccs_url` over plain HTTP to a host that is not loopback.
    pub insecure_http: bool,
    /// Reuse what a full verification established for a platform (PCK
    /// chain, QE, collateral signatures) for its next quotes, which then
    /// cost one signature check. Off, every quote is verified in full.
    pub verified_platform_cache: bool,
}

impl Default for TdxConfig {
    fn default() -> Self {
        TdxConfig {
            pccs_url: Some(attest_tdx::collateral::pcs_default_url().to_owned()),
            update: Default::default(),
            offline_dir: None,
            cache_dir: "collateral".into(),
            fetches_per_minute: attest_tdx::CachedCollateral::DEFAULT_FETCH_BUDGET,
            insecure_http: false,
            verified_platform_cache: true,
        }
    }
}

/// SEV-SNP settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnpSection {
    /// AMD KDS; none disables network fetches (VCEKs must come with the evidence).
    pub kds_url: Option<String>,
    /// A directory of VCEK files.
    pub offline_dir: Option<PathBuf>,
    /// VCEK cache directory, relative to `data_dir`.
    pub vcek_cache_dir: PathBuf,
    /// The VMPL reports must come from.
    pub vmpl: u32,
    /// Minimum REPORTED_TCB per product (`Milan`, `Genoa`, `Turin`).
    pub min_tcb: HashMap<attest_snp::Product, attest_snp::Tcb>,
    /// KDS fetches per minute for chips never seen before.
    pub fetches_per_minute: u32,
    /// Allow `kds_url` over plain HTTP to a host that is not loopback.
    pub insecure_http: bool,
}

impl Default for SnpSection {
    fn default() -> Self {
        SnpSection {
            kds_url: Some(attest_snp::vcek::AMD_KDS.to_owned()),
            offline_dir: None,
            vcek_cache_dir: "vcek".into(),
            vmpl: 0,
            min_tcb: HashMap::new(),
            fetches_per_minute: attest_snp::KdsClient::DEFAULT_FETCH_BUDGET,
            insecure_http: false,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7000)),
            data_dir: "./kms-data".into(),
            kdf: KdfProfile::default(),
            challenge_ttl_secs: 60,
            max_request_bytes: 256 * 1024,
            metrics_listen: None,
            log_format: LogFormat::Text,
            audit_log: "audit.jsonl".into(),
            image_registry: None,
            policy: PolicySpec::DenyAll,
            tls: TlsConfig::default(),
            tdx: TdxConfig::default(),
            sev_snp: SnpSection::default(),
            limits: Default::default(),
            dstack_compat: None,
            onboard: None,
            platform: BTreeMap::new(),
        }
    }
}

impl Config {
    /// Longest challenge lifetime accepted (seconds).
    pub const MAX_CHALLENGE_TTL: u64 = 3600;
    /// Largest request size accepted (bytes).
    pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

    /// Parses a configuration file; relative paths in it resolve against
    /// the file's directory. Unknown keys in any table are errors.
    pub fn load(path: &Path) -> Result<(Self, PathBuf), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let cfg: Config = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        cfg.validate()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok((cfg, base))
    }

    /// Checks values a type cannot: ranges, and limits that must not be off.
    pub fn validate(&self) -> Result<(), String> {
        if self.challenge_ttl_secs == 0 || self.challenge_ttl_secs > Self::MAX_CHALLENGE_TTL {
            return Err(format!(
                "challenge_ttl_secs must be 1..={}, found {}",
                Self::MAX_CHALLENGE_TTL,
                self.challenge_ttl_secs
            ));
        }
        if self.max_request_bytes < 4096 || self.max_request_bytes > Self::MAX_REQUEST_BYTES {
            return Err(format!(
                "max_request_bytes must be 4096..={}, found {}",
                Self::MAX_REQUEST_BYTES,
                self.max_request_bytes
            ));
        }
        if let Some(d) = &self.dstack_compat {
            d.validate()?;
        }
        if let Some(o) = &self.onboard {
            o.validate()?;
        }
        self.limits.validate()?;
        crate::platforms::check_sections(self)
    }

    /// The names the TLS certificate covers when TLS is enabled: the
    /// configured ones, else the listen address's IP.
    pub fn tls_names(&self) -> Option<Vec<String>> {
        if !self.tls.enabled {
            return None;
        }
        Some(if self.tls.server_names.is_empty() {
            vec![self.listen.ip().to_string()]
        } else {
            self.tls.server_names.clone()
        })
    }

    /// The configuration as TOML (what `kms config check` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}
