//! `kms inspect dstack` and `kms verify dstack`: dstack's attestation
//! container, decoded by `dstack-compat` and verified by the same plug-ins
//! the service uses.
//!
//! `--attestation` takes any form a dstack attestation travels in:
//! - the encoded `VersionedAttestation` (V0 SCALE or V1 msgpack), as bytes
//!   or hex text (`0x` accepted);
//! - an RA-TLS certificate (PEM or DER) carrying `.1.8`, or the legacy
//!   `.1.1` quote and `.1.2` event log;
//! - JSON: `{"attestation": "<hex>"}` (dstack's verifier fixtures), or
//!   `{"quote": "<hex>", "event_log": <JSON list or its text>}` (a quote
//!   and its full event log, as dstack's guest agent reports them).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use attest_core::eventlog::{RuntimeEvent, runtime_event_digest};
use attest_core::{Attestation, ReportData, UnixTime, VerifyContext};
use dstack_compat::{
    AttestationVersion, Claimed, GuestAttestation, LegacyTdxAttestation, MeasurementCheck,
    RaTlsCert, VersionedAttestation, ratls_report_data,
};
use serde_json::{Value, json};
use sha2::Sha384;

use super::error::CliError;
use super::evidence::{parse_report_data, read_evidence_file};

/// A decoded input: the attestation, and the certificate key it must be
/// bound to when it came in a certificate.
struct Input {
    attestation: GuestAttestation,
    spki: Option<Vec<u8>>,
}

fn err(e: impl std::fmt::Display) -> CliError {
    CliError::new(e.to_string())
}

fn hex_field(v: &Value, name: &str) -> Result<Vec<u8>, CliError> {
    let s = v[name]
        .as_str()
        .ok_or_else(|| CliError::new(format!("JSON input: {name:?} must be a hex string")))?;
    let s = s.strip_prefix("0x").unwrap_or(s);
    hex::decode(s).map_err(|_| CliError::new(format!("JSON input: {name:?} is not hex")))
}

fn from_certificate(der: &[u8]) -> Result<Input, CliError> {
    let cert = RaTlsCert::from_der(der).map_err(err)?;
    let attestation = cert
        .attestation()
        .map_err(err)?
        .ok_or_else(|| CliError::new("the certificate carries no dstack attestation"))?;
    Ok(Input {
        attestation,
        spki: Some(cert.spki_der().to_vec()),
    })
}

fn read_input(path: &Path) -> Result<Input, CliError> {
    let raw = read_evidence_file(path)?;
    let text = raw.trim_ascii();
    if text.starts_with(b"-----BEGIN") {
        let p = pem::parse(text).map_err(|e| CliError::new(format!("PEM: {e}")))?;
        return from_certificate(p.contents());
    }
    if text.starts_with(b"{") {
        let v: Value =
            serde_json::from_slice(text).map_err(|e| CliError::new(format!("JSON input: {e}")))?;
        if v.get("attestation").is_some() {
            let bytes = hex_field(&v, "attestation")?;
            return VersionedAttestation::decode(&bytes)
                .map(|a| Input {
                    attestation: GuestAttestation::Versioned(a),
                    spki: None,
                })
                .map_err(err);
        }
        let quote = hex_field(&v, "quote")?;
        let log = match &v["event_log"] {
            Value::String(s) => s.clone().into_bytes(),
            l @ Value::Array(_) => l.to_string().into_bytes(),
            _ => {
                return Err(CliError::new(
                    "JSON input: needs \"attestation\", or \"quote\" and \"event_log\"",
                ));
            }
        };
        return LegacyTdxAttestation::new(quote, log)
            .map(|l| Input {
                attestation: GuestAttestation::Legacy(l),
                spki: None,
            })
            .map_err(err);
    }
    // A hex text whose first byte is 0x; read_evidence_file decoded the rest.
    let bytes = match text.strip_prefix(b"0x") {
        Some(h) => hex::decode(h).map_err(|_| CliError::new("0x... input is not hex"))?,
        None => raw,
    };
    if bytes.first() == Some(&0x30) {
        return from_certificate(&bytes);
    }
    VersionedAttestation::decode(&bytes)
        .map(|a| Input {
            attestation: GuestAttestation::Versioned(a),
            spki: None,
        })
        .map_err(err)
}

/// The runtime events the attestation carries (RTMR3 on TDX).
fn runtime_events(att: &GuestAttestation) -> Vec<RuntimeEvent> {
    match att {
        GuestAttestation::Versioned(a) => a.runtime_events().to_vec(),
        GuestAttestation::Legacy(l) => l
            .events()
            .iter()
            .filter(|e| e.register == dstack_compat::DSTACK_TDX_REGISTERS.app_register)
            .filter_map(|e| e.as_runtime().cloned())
            .collect(),
    }
}

fn event_json(e: &RuntimeEvent) -> Value {
    let version = match e.version {
        attest_core::eventlog::RuntimeEventVersion::V1 => 1,
        attest_core::eventlog::RuntimeEventVersion::V2 => 2,
    };
    json!({
        "event": e.name,
        "payload": hex::encode(&e.payload),
        "version": version,
        "digest": hex::encode(runtime_event_digest::<Sha384>(&e.name, &e.payload, e.version)),
    })
}

/// `kms inspect dstack`: decoded, replayed, never verified. Exits 1 when
/// RTMR3 (TDX) or HOST_DATA (SNP) does not match the claimed identity.
pub fn inspect(path: &Path) -> Result<ExitCode, CliError> {
    let input = read_input(path)?;
    let att = &input.attestation;
    let i = att.inspect().map_err(err)?;
    let encoding = match i.version {
        Some(AttestationVersion::V0) => "v0",
        Some(AttestationVersion::V1) => "v1",
        None => "legacy",
    };
    let (app, app_error) = match i
        .claimed
        .as_ref()
        .map_err(|e| e.to_string())
        .and_then(|c| c.app_identity().map_err(|e| e.to_string()))
    {
        Ok(a) => (serde_json::to_value(a).unwrap_or(Value::Null), Value::Null),
        Err(e) => (Value::Null, Value::String(e)),
    };
    let mut out = json!({
        "verified": false,
        "platform": i.platform.as_str(),
        "encoding": encoding,
        "report_data": i.report_data.to_hex(),
        "quote_report_data": i.signed_report_data.to_hex(),
        "report_data_consistent": i.report_data_consistent(),
        "app": app,
        "app_error": app_error,
        "runtime_events": runtime_events(att).iter().map(event_json).collect::<Vec<_>>(),
        "config": i.config,
    });
    if let Ok(Claimed::AppConfig(_)) = &i.claimed {
        out["app_source"] = Value::String("mr_config (app config v3, bound by HOST_DATA)".into());
    } else if i.claimed.is_ok() {
        out["app_source"] = Value::String("runtime events before system-ready".into());
    }
    match i.measurement {
        MeasurementCheck::Rtmr3 {
            quote,
            replayed,
            boot_time,
        } => {
            out["replay"] = json!({
                "register": attest_core::names::reg::RTMR3,
                "computed": hex::encode(replayed),
                "quoted": hex::encode(quote),
                "matches": quote == replayed,
                "boot_time": boot_time.map(hex::encode),
            });
        }
        MeasurementCheck::HostData { report, recomputed } => {
            out[attest_core::names::reg::HOST_DATA] = json!({
                "computed": hex::encode(recomputed),
                "reported": hex::encode(report),
                "matches": report == recomputed,
            });
        }
    }
    if let Some(spki) = &input.spki {
        out["bound_to_certificate_key"] =
            Value::Bool(*att.report_data() == ratls_report_data(spki));
    }
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(if i.measurement.matches() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Arguments of `kms verify dstack`.
pub struct VerifyArgs<'a> {
    pub attestation: &'a Path,
    pub collateral: Option<&'a Path>,
    pub vcek: Option<&'a Path>,
    pub at: u64,
    pub report_data: Option<&'a str>,
}

/// `kms verify dstack`: the attestation verified by the production
/// plug-ins (Intel's and AMD's pinned roots). The expected report data is
/// `--report-data`, else the RA-TLS binding of the certificate's key when
/// the input is a certificate, else the report data the attestation
/// states (then the check is that the quote signed what it states).
pub fn verify(a: &VerifyArgs<'_>, output: &super::evidence::Output) -> Result<ExitCode, CliError> {
    let input = read_input(a.attestation)?;
    let att = &input.attestation;
    let mut evidence = att.to_evidence().map_err(err)?;
    if let Some(v) = a.vcek {
        evidence.certificates =
            std::fs::read(v).map_err(|e| CliError::new(format!("{}: {e}", v.display())))?;
    }
    let expected: ReportData = match parse_report_data(a.report_data)? {
        Some(rd) => rd,
        None => match &input.spki {
            Some(spki) => ratls_report_data(spki),
            None => *att.report_data(),
        },
    };
    let ctx = VerifyContext::new(expected, UnixTime(a.at));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("runtime: {e}")))?;
    let verifier: Arc<dyn Attestation> = if evidence.platform == attest_core::PlatformId::TDX {
        let path = a.collateral.ok_or_else(|| {
            CliError::new("TDX evidence needs --collateral (dcap-qvl QuoteCollateralV3 JSON)")
        })?;
        let text =
            std::fs::read(path).map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
        let c = attest_tdx::Collateral::from_json(&text).map_err(err)?;
        Arc::new(
            attest_tdx::TdxVerifier::new(Arc::new(attest_tdx::collateral::StaticCollateral(
                Arc::new(c),
            )))
            .map_err(err)?,
        )
    } else {
        Arc::new(
            attest_snp::SnpVerifier::new(vec![], attest_snp::SnpConfig::default()).map_err(err)?,
        )
    };
    let verifiers = attest_core::Verifiers::new().with(verifier);
    let id = rt
        .block_on(verifiers.verify(&evidence, &ctx))
        .map_err(err)?;
    output.emit(&id.to_json())
}
