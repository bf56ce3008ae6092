//! Prometheus metrics, served on their own address.

use std::collections::BTreeMap;
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

/// The KMS's metrics.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String), u64>>,
    deny_reasons: Mutex<BTreeMap<String, u64>>,
    verify: Mutex<BTreeMap<String, Histogram>>,
    total: Mutex<BTreeMap<String, Histogram>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// Counts a GetAppKey request by platform and outcome.
    pub fn request(&self, platform: &str, outcome: &str) {
        *lock(&self.requests)
            .entry((platform.to_owned(), outcome.to_owned()))
            .or_default() += 1;
    }

    /// Counts a deny reason (the rule name).
    pub fn deny(&self, rule: &str) {
        *lock(&self.deny_reasons).entry(rule.to_owned()).or_default() += 1;
    }

    /// Observes verification latency.
    pub fn verify_latency(&self, platform: &str, d: Duration) {
        lock(&self.verify)
            .entry(platform.to_owned())
            .or_default()
            .observe(d.as_secs_f64());
    }

    /// Observes end-to-end GetAppKey latency.
    pub fn total_latency(&self, platform: &str, d: Duration) {
        lock(&self.total)
            .entry(platform.to_owned())
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
        let m = Metrics::default();
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
}
