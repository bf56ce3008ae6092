//! `kms verify` and `kms inspect`: evidence checked offline by the same
//! plug-ins the service uses.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use attest_core::{Attestation, Evidence, PlatformId, ReportData, UnixTime, VerifyContext};
use attest_tdx::collateral::StaticCollateral;
use attest_tdx::{Collateral, TdxVerifier};

use super::error::CliError;

/// Largest evidence file read.
const MAX_FILE: u64 = 16 * 1024 * 1024;

/// Reads a file; evidence files may be binary or hex text.
pub fn read_evidence_file(path: &Path) -> Result<Vec<u8>, CliError> {
    let meta =
        std::fs::metadata(path).map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
    if meta.len() > MAX_FILE {
        return Err(CliError::new(format!(
            "{}: larger than {MAX_FILE} bytes",
            path.display()
        )));
    }
    let bytes =
        std::fs::read(path).map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
    let trimmed = bytes.trim_ascii();
    if !trimmed.is_empty() && trimmed.len() % 2 == 0 && trimmed.iter().all(u8::is_ascii_hexdigit) {
        if let Ok(decoded) = hex::decode(trimmed) {
            return Ok(decoded);
        }
    }
    Ok(bytes)
}

fn read_plain(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::new(format!("{}: {e}", path.display())))
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("runtime: {e}")))
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// What `kms verify` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The verified identity as JSON.
    #[default]
    Json,
    /// A signed attestation result (EAR JWT), with the key of `--data-dir`.
    Ear,
}

/// How `kms verify` prints a verified identity.
#[derive(Clone, Debug, Default)]
pub struct Output {
    /// JSON or EAR.
    pub format: Format,
    /// The data directory whose root secret derives the EAR signing key.
    pub data_dir: Option<std::path::PathBuf>,
}

impl Output {
    /// Prints `identity` (its JSON) in the chosen format. An EAR made
    /// offline has no policy: `affirming` for an up-to-date TCB without
    /// advisories, `warning` otherwise.
    pub fn emit(&self, identity: &serde_json::Value) -> Result<ExitCode, CliError> {
        match self.format {
            Format::Json => print_json(identity),
            Format::Ear => {
                let dir = self.data_dir.as_ref().ok_or_else(|| {
                    CliError::new("--format ear needs --data-dir (the signing key)")
                })?;
                let keys = kms::service::keys::RootKeys::load_existing(dir)
                    .map_err(|e| CliError::new(e.to_string()))?
                    .ok_or_else(|| {
                        CliError::new(format!("{} holds no root keys", dir.display()))
                    })?;
                let signer = kms::service::ear::EarSigner::derive(keys.root_secret())
                    .map_err(|e| CliError::new(e.to_string()))?;
                let status = kms::service::ear::Status::of(identity, true);
                let mut reasons = Vec::new();
                if status != kms::service::ear::Status::Affirming {
                    reasons.push(format!(
                        "tcb: {} (advisories: {})",
                        identity["tcb"]["status"].as_str().unwrap_or("?"),
                        identity["tcb"]["advisory_ids"]
                    ));
                }
                let ear = signer
                    .issue(&kms::service::ear::Appraisal {
                        platform: identity["platform"].as_str().unwrap_or("unknown"),
                        identity: identity.clone(),
                        status,
                        policy_id: None,
                        reasons,
                        nonce: None,
                        key: None,
                        issued_at: UnixTime::now().as_secs(),
                    })
                    .map_err(|e| CliError::new(e.to_string()))?;
                println!("{ear}");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Parses `--report-data`.
pub fn parse_report_data(hex_text: Option<&str>) -> Result<Option<ReportData>, CliError> {
    hex_text
        .map(|h| {
            ReportData::from_hex(h.trim())
                .map_err(|e| CliError::new(format!("--report-data: {}", e.message())))
        })
        .transpose()
}

/// `kms verify tdx`.
pub fn verify_tdx(
    quote: &Path,
    collateral: &Path,
    at: u64,
    event_log: Option<&Path>,
    report_data: Option<&str>,
    output: &Output,
) -> Result<ExitCode, CliError> {
    let quote = read_evidence_file(quote)?;
    let collateral = Collateral::from_json(&read_plain(collateral)?)
        .map_err(|e| CliError::new(e.to_string()))?;
    let verifier = TdxVerifier::new(Arc::new(StaticCollateral(Arc::new(collateral))))
        .map_err(|e| CliError::new(e.to_string()))?;
    let ctx = VerifyContext {
        expected_report_data: parse_report_data(report_data)?,
        time: UnixTime(at),
    };
    let rt = runtime()?;
    let out = match event_log {
        Some(log) => {
            let mut evidence = Evidence::new(PlatformId::TDX, quote);
            evidence.event_log = read_plain(log)?;
            rt.block_on(verifier.verify(&evidence, &ctx))
                .map(|id| id.to_json())
        }
        None => rt
            .block_on(verifier.verify_quote_only(&quote, &ctx))
            .map(|id| id.to_json()),
    };
    let json = out.map_err(|e| CliError::new(e.to_string()))?;
    output.emit(&json)
}

/// `kms inspect tdx`.
pub fn inspect_tdx(quote: &Path, event_log: Option<&Path>) -> Result<ExitCode, CliError> {
    let quote = read_evidence_file(quote)?;
    let log = event_log.map(read_plain).transpose()?;
    let insp =
        attest_tdx::inspect(&quote, log.as_deref()).map_err(|e| CliError::new(e.to_string()))?;
    print_json(&serde_json::to_value(&insp).unwrap_or_default());
    Ok(if insp.replay_matches() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Arguments of `kms verify sev-snp`.
pub struct SnpArgs {
    pub report: std::path::PathBuf,
    pub vcek: Option<std::path::PathBuf>,
    pub cert_chain: Option<std::path::PathBuf>,
    pub app_config: Option<std::path::PathBuf>,
    pub at: u64,
    pub report_data: Option<String>,
    pub vmpl: u32,
}

/// `kms verify sev-snp`.
pub fn verify_snp(a: &SnpArgs, output: &Output) -> Result<ExitCode, CliError> {
    use attest_snp::{SnpConfig, SnpVerifier};
    let mut evidence = Evidence::new(PlatformId::SEV_SNP, read_evidence_file(&a.report)?);
    if let Some(v) = &a.vcek {
        evidence.certificates = read_plain(v)?;
    }
    if let Some(c) = &a.app_config {
        evidence.app_config = read_plain(c)?;
    }
    let config = SnpConfig {
        vmpl: a.vmpl,
        ..Default::default()
    };
    let verifier = SnpVerifier::new(vec![], config).map_err(|e| CliError::new(e.to_string()))?;
    let ctx = VerifyContext {
        expected_report_data: parse_report_data(a.report_data.as_deref())?,
        time: UnixTime(a.at),
    };
    let rt = runtime()?;
    let json = if evidence.app_config.is_empty() {
        rt.block_on(verifier.verify_without_app(&evidence, &ctx))
            .map(|id| id.to_json())
    } else {
        rt.block_on(verifier.verify(&evidence, &ctx))
            .map(|id| id.to_json())
    }
    .map_err(|e| CliError::new(e.to_string()))?;
    if let Some(chain) = &a.cert_chain {
        let product: attest_snp::Product = serde_json::from_value(
            json["platform_claims"][attest_core::names::section::SEV_SNP]["product"].clone(),
        )
        .map_err(|e| CliError::new(format!("product: {e}")))?;
        verifier
            .check_supplied_chain(product, &read_plain(chain)?)
            .map_err(|e| CliError::new(e.to_string()))?;
    }
    output.emit(&json)
}

/// Arguments of `kms verify az-snp-vtpm` / `az-tdx-vtpm`.
pub struct VtpmArgs {
    pub platform: PlatformId,
    pub evidence: std::path::PathBuf,
    pub vcek: Option<std::path::PathBuf>,
    pub collateral: Option<std::path::PathBuf>,
    pub event_log: Option<std::path::PathBuf>,
    pub at: u64,
    pub nonce: Option<String>,
    pub report_data: Option<String>,
    pub app_pcr: u32,
    pub paravisors: Vec<String>,
}

/// `kms verify az-snp-vtpm` and `kms verify az-tdx-vtpm`.
pub fn verify_vtpm(a: &VtpmArgs, output: &Output) -> Result<ExitCode, CliError> {
    use attest_vtpm::{AzVtpm, Nonce, VtpmConfig};
    let paravisors = a
        .paravisors
        .iter()
        .map(|h| {
            hex::decode(h.trim())
                .map(attest_core::HexBytes)
                .map_err(|e| CliError::new(format!("--paravisor: not hex: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let config = VtpmConfig {
        app_pcr: a.app_pcr,
        paravisors,
    };
    config
        .validate()
        .map_err(|e| CliError::new(e.to_string()))?;
    let plugin = if a.platform == attest_vtpm::AZ_SNP_VTPM {
        let snp = attest_snp::SnpVerifier::new(vec![], attest_snp::SnpConfig::default())
            .map_err(|e| CliError::new(e.to_string()))?;
        AzVtpm::snp(snp, config)
    } else {
        let path = a
            .collateral
            .as_ref()
            .ok_or_else(|| CliError::new("az-tdx-vtpm needs --collateral"))?;
        let collateral =
            Collateral::from_json(&read_plain(path)?).map_err(|e| CliError::new(e.to_string()))?;
        let tdx = TdxVerifier::new(Arc::new(StaticCollateral(Arc::new(collateral))))
            .map_err(|e| CliError::new(e.to_string()))?;
        AzVtpm::tdx(Arc::new(tdx), config)
    }
    .map_err(|e| CliError::new(e.to_string()))?;
    let mut evidence = Evidence::new(a.platform.clone(), read_plain(&a.evidence)?);
    if let Some(v) = &a.vcek {
        evidence.certificates = read_plain(v)?;
    }
    if let Some(l) = &a.event_log {
        evidence.event_log = read_plain(l)?;
    }
    let nonce_bytes = match a.nonce.as_deref().map(str::trim) {
        None | Some("kms") => None,
        Some(h) => {
            Some(hex::decode(h).map_err(|e| CliError::new(format!("--nonce: not hex: {e}")))?)
        }
    };
    let nonce = match (a.nonce.as_deref().map(str::trim), &nonce_bytes) {
        (Some("kms"), _) => Nonce::Kms,
        (_, Some(b)) => Nonce::Exact(b),
        _ => Nonce::Unchecked,
    };
    let ctx = VerifyContext {
        expected_report_data: parse_report_data(a.report_data.as_deref())?,
        time: UnixTime(a.at),
    };
    let id = runtime()?
        .block_on(plugin.verify_offline(&evidence, &ctx, nonce))
        .map_err(|e| CliError::new(e.to_string()))?;
    output.emit(&id.to_json())
}

/// `kms inspect vtpm`: every part of the container parsed, nothing
/// verified (no signature, no hardware report); exits 1 when a part does
/// not parse or the listed PCRs do not match the quote's digest.
pub fn inspect_vtpm(evidence: &Path) -> Result<ExitCode, CliError> {
    use attest_vtpm::{Container, HclReport, PCR_NAMES, RuntimeClaims, TpmsAttest};
    let container =
        Container::parse(&read_plain(evidence)?).map_err(|e| CliError::new(e.to_string()))?;
    let mut ok = true;
    let mut fail = |e: attest_core::AttestError| {
        ok = false;
        serde_json::json!({ "error": e.to_string() })
    };
    let hcl = HclReport::parse(container.hcl_report());
    let claims = hcl
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|h| RuntimeClaims::parse(h.claims()));
    let q = container.tpm_quote();
    let attest = TpmsAttest::parse(q.message());
    let pcrs: serde_json::Map<String, serde_json::Value> = PCR_NAMES
        .iter()
        .zip(q.pcrs().as_array())
        .map(|(n, v)| ((*n).to_owned(), hex::encode(v).into()))
        .collect();
    let hcl_json = match &hcl {
        Ok(h) => serde_json::json!({
            "tee": h.tee().to_string(),
            "header_version": h.header_version(),
            "request_data_version": h.request_data_version(),
            "claims_sha256": hex::encode(h.claims_digest()),
            "expected_hardware_report_data": h.expected_report_data(),
            "claims": String::from_utf8_lossy(h.claims()),
        }),
        Err(e) => fail(e.clone()),
    };
    let claims_json = match &claims {
        Ok(c) => serde_json::json!({
            "ak_pub_sha256": hex::encode(c.ak().digest()),
            "user_data": c.user_data(),
            "secure_boot": c.vm_configuration().secure_boot,
            "tpm_persisted": c.vm_configuration().tpm_persisted,
            "console_enabled": c.vm_configuration().console_enabled,
            "vm_unique_id": c.vm_configuration().vm_unique_id,
        }),
        Err(e) => fail(e.clone()),
    };
    let quote_json = match &attest {
        Ok(a) => {
            let matches = a.check_pcrs(q.pcrs()).is_ok();
            serde_json::json!({
                "nonce": hex::encode(a.extra_data()),
                "pcr_digest": hex::encode(a.pcr_digest()),
                "listed_pcrs_match_digest": matches,
                "firmware_version": format!("{:016x}", a.firmware_version()),
                "reset_count": a.clock_info().reset_count,
                "restart_count": a.clock_info().restart_count,
                "signature_len": q.signature().len(),
            })
        }
        Err(e) => fail(e.clone()),
    };
    if attest
        .as_ref()
        .is_ok_and(|a| a.check_pcrs(q.pcrs()).is_err())
    {
        ok = false;
    }
    let endorsement = match container.endorsement() {
        attest_vtpm::Endorsement::Vcek(_) => "vcek",
        attest_vtpm::Endorsement::TdQuote(_) => "td_quote",
        attest_vtpm::Endorsement::NoVcek => "none",
    };
    print_json(&serde_json::json!({
        "verified": false,
        "container_version": format!("{:?}", container.version()),
        "endorsement": endorsement,
        "hcl_report": hcl_json,
        "claims": claims_json,
        "quote": quote_json,
        "pcrs": pcrs,
    }));
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
