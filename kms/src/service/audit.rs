//! The append-only JSON-lines audit log of every key-release decision. It
//! names who asked and what was decided; it never holds key material.
//!
//! A release is written to the log before its keys leave the service, and
//! a release that cannot be written is refused (as Vault refuses requests
//! that no audit device can record). Records are bounded in size: every
//! free-text field is cut, and the platform is one of the registered ones
//! or `other`, so an unauthenticated caller cannot grow the log by more
//! than a fixed amount per request.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

/// Longest reason kept, in bytes.
pub const MAX_REASON: usize = 512;
/// Most reasons kept per record.
pub const MAX_REASONS: usize = 16;

/// One decision.
#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    /// Unix seconds.
    pub time: u64,
    /// The front end that took the request (`kms.v1`, `dstack`).
    pub front_end: &'a str,
    /// What was asked: `app_keys`, or `app_certificate` (dstack's SignCert).
    pub request: &'a str,
    /// Platform named in the request (a registered one, or `other`).
    pub platform: &'a str,
    /// `allow`, `deny` or `error`.
    pub decision: &'a str,
    /// App id, once known.
    pub app_id: Option<String>,
    /// Compose hash, once known.
    pub compose_hash: Option<String>,
    /// Instance id, once known.
    pub instance_id: Option<String>,
    /// OS image hash, when resolved.
    pub os_image_hash: Option<String>,
    /// Device id, when the platform has one.
    pub device_id: Option<String>,
    /// TCB status, once verified.
    pub tcb_status: Option<&'a str>,
    /// Why (policy reasons or the error), bounded.
    pub reasons: Vec<String>,
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Reasons cut to [`MAX_REASONS`] of at most [`MAX_REASON`] bytes.
pub fn bounded_reasons<I: IntoIterator<Item = String>>(reasons: I) -> Vec<String> {
    reasons
        .into_iter()
        .take(MAX_REASONS)
        .map(|r| bounded(&r, MAX_REASON))
        .collect()
}

/// Where records go.
pub struct AuditLog {
    file: Mutex<std::fs::File>,
}

impl AuditLog {
    /// Opens (creating, appending, mode 0600) the log.
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

    /// Appends one record (one line, written whole) and reports whether it
    /// was written.
    pub fn record(&self, r: &AuditRecord<'_>) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(&line)?;
        f.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_is_bounded() {
        assert_eq!(bounded("abc", 5), "abc");
        assert_eq!(bounded("abcdef", 3), "abc…");
        // Never cuts inside a character.
        assert_eq!(bounded("ééé", 3), "é…");
        let many = bounded_reasons((0..100).map(|_| "x".repeat(10_000)));
        assert_eq!(many.len(), MAX_REASONS);
        assert!(many.iter().all(|r| r.len() <= MAX_REASON + 3));
    }

    #[test]
    fn an_unwritable_log_reports_the_failure() {
        let Ok(log) = AuditLog::open(Path::new("/dev/full")) else {
            panic!("/dev/full must exist on Linux");
        };
        let r = AuditRecord {
            time: 1,
            front_end: "kms.v1",
            request: "app_keys",
            platform: "tdx",
            decision: "allow",
            app_id: None,
            compose_hash: None,
            instance_id: None,
            os_image_hash: None,
            device_id: None,
            tcb_status: None,
            reasons: vec![],
        };
        assert!(log.record(&r).is_err());
    }
}
