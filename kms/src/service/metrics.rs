//! Prometheus metrics, served on their own address.
//!
//! Every label value comes from a closed set: platforms are the registered
//! ones or `other`, outcomes a fixed list, deny rules at most
//! [`MAX_RULES`] names (then `other`). A request's bytes never become a
//! label, so unauthenticated requests cannot grow the page.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }
}

/// Most distinct deny-rule labels.
pub const MAX_RULES: usize = 64;

/// The label for anything outside a closed set.
pub const OTHER: &str = "other";

/// The outcomes a request is counted under.
pub const OUTCOMES: [&str; 6] = [
    "allow",
    "deny",
    "invalid",
    "unavailable",
    "unsupported",
    "error",
];

/// The KMS's metrics.
#[derive(Default)]
pub struct Metrics {
    platforms: BTreeSet<String>,
    requests: Mutex<BTreeMap<(String, &'static str), u64>>,
    deny_reasons: Mutex<BTreeMap<String, u64>>,
    verify: Mutex<BTreeMap<String, Histogram>>,
    total: Mutex<BTreeMap<String, Histogram>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// Metrics whose platform labels are `platforms` (the registered ones).
    pub fn new<I: IntoIterator<Item = String>>(platforms: I) -> Self {
        Metrics {
            platforms: platforms.into_iter().collect(),
            ..Default::default()
        }
    }

    /// The label for a platform named in a request: itself when registered,
    /// else `other`.
    pub fn platform_label(&self, platform: &str) -> String {
        if self.platforms.contains(platform) {
            platform.to_owned()
        } else {
            OTHER.to_owned()
        }
    }

    /// Counts a key request by platform and outcome (one of [`OUTCOMES`]).
    pub fn request(&self, platform: &str, outcome: &'static str) {
        let outcome = OUTCOMES
            .iter()
            .find(|o| **o == outcome)
            .copied()
            .unwrap_or(OTHER);
        *lock(&self.requests)
            .entry((self.platform_label(platform), outcome))
            .or_default() += 1;
    }

    /// Counts a deny reason (the rule name, from the policy).
    pub fn deny(&self, rule: &str) {
        let mut map = lock(&self.deny_reasons);
        let key = if map.contains_key(rule) || map.len() < MAX_RULES {
            rule.to_owned()
        } else {
            OTHER.to_owned()
        };
        *map.entry(key).or_default() += 1;
    }

    /// Observes verification latency.
    pub fn verify_latency(&self, platform: &str, d: Duration) {
        lock(&self.verify)
            .entry(self.platform_label(platform))
            .or_default()
            .observe(d.as_secs_f64());
    }

    /// Observes end-to-end key request latency.
    pub fn total_latency(&self, platform: &str, d: Duration) {
        lock(&self.total)
            .entry(self.platform_label(platform))
            .or_default()
            .observe(d.as_secs_f64());
    }

    /// The Prometheus text exposition, with extra gauges/counters appended.
    pub fn render(&self, extra: &[(&str, &str, u64)]) -> String {
        let mut out = String::new();
        out.push_str("# TYPE kms_get_app_key_requests_total counter\n");
        for ((p, o), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "kms_get_app_key_requests_total{{platform=\"{p}\",outcome=\"{o}\"}} {n}"
            );
        }
        out.push_str("# TYPE kms_policy_denials_total counter\n");
        for (r, n) in lock(&self.deny_reasons).iter() {
            let _ = writeln!(out, "kms_policy_denials_total{{rule=\"{r}\"}} {n}");
        }
        for (name, m) in [
            ("kms_verify_seconds", &self.verify),
            ("kms_get_app_key_seconds", &self.total),
        ] {
            let _ = writeln!(out, "# TYPE {name} histogram");
            for (p, h) in lock(m).iter() {
                for (b, c) in BUCKETS.iter().zip(h.counts) {
                    let _ = writeln!(out, "{name}_bucket{{platform=\"{p}\",le=\"{b}\"}} {c}");
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{{platform=\"{p}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(out, "{name}_sum{{platform=\"{p}\"}} {}", h.sum);
                let _ = writeln!(out, "{name}_count{{platform=\"{p}\"}} {}", h.count);
            }
        }
        for (name, kind, v) in extra {
            let _ = writeln!(out, "# TYPE {name} {kind}\n{name} {v}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new(["tdx".to_owned(), "sev-snp".to_owned()]);
        m.request("tdx", "allow");
        m.request("tdx", "allow");
        m.request("sev-snp", "deny");
        m.deny("apps.compose_hashes");
        m.verify_latency("tdx", Duration::from_micros(600));
        let text = m.render(&[("kms_collateral_cache_hits_total", "counter", 7)]);
        assert!(
            text.contains("kms_get_app_key_requests_total{platform=\"tdx\",outcome=\"allow\"} 2\n")
        );
        assert!(
            text.contains(
                "kms_get_app_key_requests_total{platform=\"sev-snp\",outcome=\"deny\"} 1\n"
            )
        );
        assert!(text.contains("kms_policy_denials_total{rule=\"apps.compose_hashes\"} 1\n"));
        assert!(text.contains("kms_verify_seconds_bucket{platform=\"tdx\",le=\"0.0005\"} 0\n"));
        assert!(text.contains("kms_verify_seconds_bucket{platform=\"tdx\",le=\"0.001\"} 1\n"));
        assert!(text.contains("kms_verify_seconds_count{platform=\"tdx\"} 1\n"));
        assert!(text.contains("kms_collateral_cache_hits_total 7\n"));
    }

    #[test]
    fn labels_come_from_closed_sets() {
        let m = Metrics::new(["tdx".to_owned()]);
        for i in 0..5000 {
            m.request(&format!("forged-{i}"), "invalid");
            m.verify_latency(&format!("forged-{i}"), Duration::from_micros(1));
            m.deny(&format!("rule-{i}"));
        }
        m.request("tdx", "allow");
        let text = m.render(&[]);
        assert!(text.contains(
            "kms_get_app_key_requests_total{platform=\"other\",outcome=\"invalid\"} 5000\n"
        ));
        assert!(!text.contains("forged"));
        assert!(text.contains("kms_policy_denials_total{rule=\"other\"} 4936\n"));
        assert!(text.len() < 20_000, "{} bytes", text.len());
    }
}
