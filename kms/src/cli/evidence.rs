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
    print_json(&json);
    Ok(ExitCode::SUCCESS)
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
pub fn verify_snp(a: &SnpArgs) -> Result<ExitCode, CliError> {
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
    print_json(&json);
    Ok(ExitCode::SUCCESS)
}
