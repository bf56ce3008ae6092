//! Evidence from Linux configfs-tsm (`/sys/kernel/config/tsm/report`).
//!
//! One report entry per request: `mkdir`, read `provider` (`tdx_guest` or
//! `sev_guest`) and `generation`, write the 64-byte report data to
//! `inblob`, read `outblob` (the TDX quote or SNP report) and `auxblob`
//! (the SNP certificate table), check that `generation` advanced by exactly
//! one write (else another writer raced us: retry, bounded), `rmdir`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use attest_core::{Evidence, PlatformId, ReportData};

use crate::ClientError;

/// The kernel's configfs-tsm report directory.
pub const DEFAULT_TSM_DIR: &str = "/sys/kernel/config/tsm/report";
/// The CCEL log area.
pub const DEFAULT_CCEL: &str = "/sys/firmware/acpi/tables/data/CCEL";
/// dstack's runtime event log.
pub const DEFAULT_RUNTIME_EVENTS: &str = "/run/log/dstack/runtime_events.log";
/// Largest blob read (the kernel caps outblob at 32 KiB; auxblob is similar).
pub const MAX_BLOB: u64 = 16 * 1024 * 1024;

/// Where evidence comes from.
#[derive(Clone, Debug)]
pub struct TsmConfig {
    /// The configfs-tsm report directory.
    pub tsm_dir: PathBuf,
    /// TDX: the CCEL log area.
    pub ccel: PathBuf,
    /// TDX: dstack's runtime event log (JSON lines).
    pub runtime_events: PathBuf,
    /// SEV-SNP: the app config document HOST_DATA binds.
    pub app_config: Option<PathBuf>,
    /// Attempts when another writer races us.
    pub attempts: u32,
    /// How long to wait for attributes to appear / generation to move.
    pub timeout: Duration,
}

impl Default for TsmConfig {
    fn default() -> Self {
        TsmConfig {
            tsm_dir: DEFAULT_TSM_DIR.into(),
            ccel: DEFAULT_CCEL.into(),
            runtime_events: DEFAULT_RUNTIME_EVENTS.into(),
            app_config: None,
            attempts: 5,
            timeout: Duration::from_secs(10),
        }
    }
}

fn err(m: impl Into<String>) -> ClientError {
    ClientError::Evidence(m.into())
}

fn read_bounded(p: &Path) -> Result<Vec<u8>, ClientError> {
    use std::io::Read;
    let f = std::fs::File::open(p).map_err(|e| err(format!("{}: {e}", p.display())))?;
    let mut buf = Vec::new();
    f.take(MAX_BLOB + 1)
        .read_to_end(&mut buf)
        .map_err(|e| err(format!("{}: {e}", p.display())))?;
    if buf.len() as u64 > MAX_BLOB {
        return Err(err(format!(
            "{}: larger than {MAX_BLOB} bytes",
            p.display()
        )));
    }
    Ok(buf)
}

fn read_generation(entry: &Path) -> Result<u64, ClientError> {
    let text = read_bounded(&entry.join("generation"))?;
    String::from_utf8_lossy(&text)
        .trim()
        .parse()
        .map_err(|_| err("generation is not a number"))
}

fn wait_for(path: &Path, deadline: Instant) -> Result<(), ClientError> {
    while !path.exists() {
        if Instant::now() > deadline {
            return Err(err(format!("{} did not appear", path.display())));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

struct Entry(PathBuf);

impl Drop for Entry {
    fn drop(&mut self) {
        // configfs removes the attributes with the directory; a plain
        // directory (a test double) needs them removed first.
        if std::fs::remove_dir(&self.0).is_err() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// One configfs-tsm report: (platform, outblob, auxblob).
pub fn tsm_report(
    cfg: &TsmConfig,
    report_data: &ReportData,
) -> Result<(PlatformId, Vec<u8>, Vec<u8>), ClientError> {
    let mut last = None;
    for attempt in 0..cfg.attempts.max(1) {
        let name = format!(
            "kms-client-{}-{}-{attempt}",
            std::process::id(),
            attest_core::UnixTime::now().as_secs()
        );
        let entry = Entry(cfg.tsm_dir.join(name));
        std::fs::create_dir(&entry.0).map_err(|e| err(format!("{}: {e}", entry.0.display())))?;
        let deadline = Instant::now() + cfg.timeout;
        wait_for(&entry.0.join("provider"), deadline)?;
        let provider = String::from_utf8_lossy(&read_bounded(&entry.0.join("provider"))?)
            .trim()
            .to_owned();
        let platform = match provider.as_str() {
            "tdx_guest" => PlatformId::TDX,
            "sev_guest" => PlatformId::SEV_SNP,
            other => return Err(err(format!("unsupported configfs-tsm provider {other:?}"))),
        };
        let g0 = read_generation(&entry.0)?;
        std::fs::write(entry.0.join("inblob"), report_data.0)
            .map_err(|e| err(format!("inblob: {e}")))?;
        // The kernel produces the report synchronously; a test double may
        // take a moment, so wait for the write to be counted.
        let mut g1 = read_generation(&entry.0)?;
        while g1 == g0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            g1 = read_generation(&entry.0)?;
        }
        wait_for(&entry.0.join("outblob"), deadline)?;
        let outblob = read_bounded(&entry.0.join("outblob"))?;
        let auxblob = if entry.0.join("auxblob").exists() {
            read_bounded(&entry.0.join("auxblob"))?
        } else {
            Vec::new()
        };
        let g2 = read_generation(&entry.0)?;
        if g1 == g0 + 1 && g2 == g1 && !outblob.is_empty() {
            return Ok((platform, outblob, auxblob));
        }
        last = Some(err(format!(
            "generation moved {g0} -> {g2}: another writer raced this request"
        )));
    }
    Err(last.unwrap_or_else(|| err("no attempt made")))
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// The TDX event log the KMS expects: the CCEL boot events plus dstack's
/// runtime events (RTMR3), as dstack's JSON list.
pub fn tdx_event_log(cfg: &TsmConfig) -> Result<Vec<u8>, ClientError> {
    let mut events = if cfg.ccel.exists() {
        attest_core::eventlog::tcg::parse_ccel(&read_bounded(&cfg.ccel)?)
            .map_err(|e| err(format!("CCEL: {e}")))?
    } else {
        Vec::new()
    };
    events.extend(runtime_events(&cfg.runtime_events, 3)?);
    Ok(attest_core::eventlog::to_json_event_log(&events))
}

/// dstack's runtime events (JSON lines `{"event", "payload": base64}`), as
/// extended into `register` (TDX: RTMR3 = 3; a vTPM: its app PCR). None
/// when the file does not exist.
pub fn runtime_events(
    path: &Path,
    register: u32,
) -> Result<Vec<attest_core::eventlog::LogEvent>, ClientError> {
    let mut events = Vec::new();
    if path.exists() {
        let text = read_bounded(path)?;
        for (i, line) in String::from_utf8_lossy(&text).lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| err(format!("runtime event {i}: {e}")))?;
            let name = v["event"]
                .as_str()
                .ok_or_else(|| err(format!("runtime event {i}: no name")))?;
            let payload = base64_decode(v["payload"].as_str().unwrap_or(""))
                .ok_or_else(|| err(format!("runtime event {i}: payload is not base64")))?;
            events.push(attest_core::eventlog::LogEvent::runtime(
                register, name, &payload,
            ));
        }
    }
    Ok(events)
}

/// Collects the whole evidence for `report_data`.
pub fn collect(cfg: &TsmConfig, report_data: &ReportData) -> Result<Evidence, ClientError> {
    let (platform, quote, aux) = tsm_report(cfg, report_data)?;
    let mut e = Evidence::new(platform.clone(), quote);
    if platform == PlatformId::TDX {
        e.event_log = tdx_event_log(cfg)?;
    } else {
        e.certificates = aux;
        let path = cfg
            .app_config
            .as_ref()
            .ok_or_else(|| err("SEV-SNP needs --app-config (the document HOST_DATA binds)"))?;
        e.app_config = read_bounded(path)?;
    }
    Ok(e)
}
