//! Evidence from an Azure confidential VM's vTPM, with raw TPM commands
//! ([`crate::tpm`]) on `/dev/tpmrm0`:
//!
//! 1. the request's 64-byte report data goes to NV index `0x01400002`
//!    (defined, owner auth, when absent), which the paravisor puts in the
//!    HCL report's runtime claims as `user-data`;
//! 2. the HCL report is read from NV index `0x01400001`; the paravisor
//!    renews it at most every 2 seconds, so a report whose `user-data` is
//!    not ours is stale: wait the refresh out and read again (bounded);
//! 3. `TPM2_Quote` with the AK at `0x81000003` over `sha256:0-23`, with
//!    `extraData = SHA-256(report data)` (the 64-byte binding does not fit a
//!    TPM nonce); the PCRs are read after it and must match its digest
//!    (else they moved in between: quote again);
//! 4. the endorsement from Azure's instance metadata service: the VCEK
//!    (SNP; left out when IMDS has none, the KMS then asks AMD) or the TD
//!    quote for the HCL report's TDREPORT (TDX);
//! 5. dstack's runtime events, as extended into the app PCR, as the event
//!    log.

use std::path::PathBuf;
use std::time::Duration;

use attest_core::{Evidence, PlatformId, ReportData};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use crate::ClientError;
use crate::imds::Imds;
use crate::tpm::{Tpm, Transport};

/// NV index of the HCL report.
pub const HCL_REPORT_INDEX: u32 = 0x0140_0001;
/// NV index of the user-data the paravisor binds.
pub const USER_DATA_INDEX: u32 = 0x0140_0002;
/// The persistent AK.
pub const AK_HANDLE: u32 = 0x8100_0003;
/// The paravisor's report refresh period.
pub const REPORT_REFRESH: Duration = Duration::from_secs(2);
/// `report_type` of an SNP HCL report.
const REPORT_TYPE_SNP: u32 = 2;
/// `report_type` of a TDX HCL report.
const REPORT_TYPE_TDX: u32 = 4;

/// Where the vTPM evidence comes from.
#[derive(Clone, Debug)]
pub struct VtpmConfig {
    /// The TPM device.
    pub device: PathBuf,
    /// The PCR the OS extends the runtime events into (the KMS's setting).
    pub app_pcr: u32,
    /// dstack's runtime event log (JSON lines).
    pub runtime_events: PathBuf,
    /// How long to wait for the paravisor to renew a stale report
    /// (a little over its 2-second period).
    pub refresh_wait: Duration,
    /// Reads of the HCL report before giving up on a stale one.
    pub attempts: u32,
}

impl Default for VtpmConfig {
    fn default() -> Self {
        VtpmConfig {
            device: crate::tpm::DEFAULT_DEVICE.into(),
            app_pcr: 8,
            runtime_events: crate::tsm::DEFAULT_RUNTIME_EVENTS.into(),
            refresh_wait: REPORT_REFRESH + Duration::from_millis(200),
            attempts: 4,
        }
    }
}

fn err(m: impl Into<String>) -> ClientError {
    ClientError::Evidence(m.into())
}

fn le32(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// What the guest reads from its own HCL report: the platform and the
/// claims' `user-data` (the verifier checks everything else).
fn hcl_user_data(hcl: &[u8]) -> Result<(u32, Option<[u8; 64]>), ClientError> {
    let bad = |m: &str| err(format!("HCL report: {m}"));
    if hcl.get(..4) != Some(b"HCLA") {
        return Err(bad("no HCLA signature"));
    }
    let report_type = le32(hcl, 0x4C8).ok_or_else(|| bad("truncated"))?;
    let version = le32(hcl, 0x4C4).ok_or_else(|| bad("truncated"))?;
    let len = le32(hcl, 0x4D0).ok_or_else(|| bad("truncated"))? as usize;
    let start: usize = if version >= 2 { 0x4D8 } else { 0x4D4 };
    let claims = hcl
        .get(start..start.saturating_add(len))
        .ok_or_else(|| bad("variable data runs past the report"))?;
    let v: serde_json::Value =
        serde_json::from_slice(claims).map_err(|e| bad(&format!("runtime claims: {e}")))?;
    let ud = match v.get("user-data").and_then(|u| u.as_str()) {
        Some(h) => {
            let mut b = [0u8; 64];
            hex::decode_to_slice(h, &mut b).map_err(|_| bad("user-data is not 64 bytes of hex"))?;
            Some(b)
        }
        None => None,
    };
    Ok((report_type, ud))
}

/// The evidence container (v2 JSON) and the platform, from the vTPM behind
/// `tpm` and the metadata service `imds`.
pub fn container<T: Transport>(
    tpm: &mut Tpm<T>,
    imds: &dyn Imds,
    cfg: &VtpmConfig,
    report_data: &ReportData,
) -> Result<(PlatformId, Vec<u8>), ClientError> {
    let chunk = tpm.nv_buffer_max();
    // 1. The user-data.
    if tpm.nv_size(USER_DATA_INDEX)?.is_none() {
        tpm.nv_define_owner(USER_DATA_INDEX, 64)?;
    }
    tpm.nv_write_owner(USER_DATA_INDEX, &report_data.0, chunk)?;
    // 2. The HCL report that carries it.
    let mut found = None;
    for attempt in 0..cfg.attempts.max(1) {
        if attempt > 0 {
            std::thread::sleep(cfg.refresh_wait);
        }
        let hcl = tpm.nv_read(HCL_REPORT_INDEX, chunk)?;
        let (report_type, ud) = hcl_user_data(&hcl)?;
        if ud == Some(report_data.0) {
            found = Some((report_type, hcl));
            break;
        }
    }
    let (report_type, hcl) = found.ok_or_else(|| {
        err(format!(
            "the HCL report never carried this request's user-data ({} reads, {:?} apart)",
            cfg.attempts.max(1),
            cfg.refresh_wait
        ))
    })?;
    // 3. The quote and the PCRs it covers.
    let nonce: [u8; 32] = Sha256::digest(report_data.0).into();
    let mut quoted = None;
    for _ in 0..3 {
        let (msg, sig) = tpm.quote(AK_HANDLE, &nonce, [0xff; 3])?;
        let pcrs = tpm.pcrs()?;
        let mut h = Sha256::new();
        for p in &pcrs {
            h.update(p);
        }
        if msg.ends_with(&h.finalize()) {
            quoted = Some((msg, sig, pcrs));
            break;
        }
    }
    let (msg, sig, pcrs) =
        quoted.ok_or_else(|| err("the PCRs kept changing between the quote and their read"))?;
    // 4. The endorsement.
    let mut doc = serde_json::json!({
        "version": 2,
        "tpm_quote": {
            "signature": hex::encode(sig),
            "message": hex::encode(msg),
            "pcrs": pcrs.iter().map(hex::encode).collect::<Vec<_>>(),
        },
        "hcl_report": URL_SAFE_NO_PAD.encode(&hcl),
    });
    let platform = match report_type {
        REPORT_TYPE_SNP => {
            if let Some(vcek) = imds.vcek()? {
                doc["vcek"] = URL_SAFE_NO_PAD.encode(vcek).into();
            }
            PlatformId::from_static("az-snp-vtpm")
        }
        REPORT_TYPE_TDX => {
            let tdreport = hcl
                .get(0x20..0x20 + 1024)
                .ok_or_else(|| err("HCL report: truncated TDREPORT"))?;
            doc["td_quote"] = URL_SAFE_NO_PAD.encode(imds.td_quote(tdreport)?).into();
            PlatformId::from_static("az-tdx-vtpm")
        }
        other => return Err(err(format!("HCL report: unsupported report_type {other}"))),
    };
    let json = serde_json::to_vec(&doc).map_err(|e| err(e.to_string()))?;
    Ok((platform, json))
}

/// The whole evidence for `report_data`: the container, and the runtime
/// events as the app PCR's event log.
pub fn collect_with<T: Transport>(
    tpm: &mut Tpm<T>,
    imds: &dyn Imds,
    cfg: &VtpmConfig,
    report_data: &ReportData,
) -> Result<Evidence, ClientError> {
    let (platform, quote) = container(tpm, imds, cfg, report_data)?;
    let mut e = Evidence::new(platform, quote);
    let events = crate::tsm::runtime_events(&cfg.runtime_events, cfg.app_pcr)?;
    e.event_log = attest_core::eventlog::to_json_event_log(&events);
    Ok(e)
}

/// [`collect_with`] on the configured device and Azure's IMDS.
pub fn collect(
    cfg: &VtpmConfig,
    imds: &dyn Imds,
    report_data: &ReportData,
) -> Result<Evidence, ClientError> {
    let mut tpm = Tpm::new(crate::tpm::Device::open(&cfg.device)?);
    collect_with(&mut tpm, imds, cfg, report_data)
}

/// DER of the first PEM certificate in `pem`.
pub(crate) fn first_pem_der(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN CERTIFICATE-----")? + 27;
    let end = start + pem[start..].find("-----END CERTIFICATE-----")?;
    let body: String = pem[start..end].split_whitespace().collect();
    STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_its_user_data_and_refuses_lies() {
        let mut hcl = vec![0u8; 2048];
        hcl[..4].copy_from_slice(b"HCLA");
        let claims = format!(r#"{{"user-data":"{}"}}"#, "ab".repeat(64));
        hcl[0x4C4..0x4C8].copy_from_slice(&1u32.to_le_bytes());
        hcl[0x4C8..0x4CC].copy_from_slice(&2u32.to_le_bytes());
        hcl[0x4D0..0x4D4].copy_from_slice(&(claims.len() as u32).to_le_bytes());
        hcl[0x4D4..0x4D4 + claims.len()].copy_from_slice(claims.as_bytes());
        assert_eq!(hcl_user_data(&hcl).unwrap(), (2, Some([0xab; 64])));
        let mut huge = hcl.clone();
        huge[0x4D0..0x4D4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(hcl_user_data(&huge).is_err());
        assert!(hcl_user_data(&hcl[..0x4D2]).is_err());
        assert!(hcl_user_data(b"XCLA").is_err());
        assert_eq!(
            first_pem_der("x\n-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n"),
            Some(vec![0, 1, 2])
        );
    }
}
