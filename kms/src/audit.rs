//! The append-only JSON-lines audit log of every GetAppKey decision. It
//! names who asked and what was decided; it never holds key material.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

/// One decision.
#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    /// Unix seconds.
    pub time: u64,
    /// Platform named in the request.
    pub platform: &'a str,
    /// `allow`, `deny` or `error`.
    pub decision: &'a str,
    /// App id, once known.
    pub app_id: Option<String>,
    /// Compose hash, once known.
    pub compose_hash: Option<String>,
    /// OS image hash, when resolved.
    pub os_image_hash: Option<String>,
    /// Device id, when the platform has one.
    pub device_id: Option<String>,
    /// TCB status, once verified.
    pub tcb_status: Option<&'a str>,
    /// Why (policy reasons or the error).
    pub reasons: Vec<String>,
}

/// The audit log file.
pub struct AuditLog {
    file: Mutex<std::fs::File>,
}

impl AuditLog {
    /// Opens (creating, appending) the log.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        Ok(AuditLog {
            file: Mutex::new(opts.open(path)?),
        })
    }

    /// Appends one record (one line, written whole).
    pub fn record(&self, r: &AuditRecord<'_>) {
        let Ok(mut line) = serde_json::to_vec(r) else {
            return;
        };
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(&line) {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
}
