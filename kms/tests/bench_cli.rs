//! `kms bench` end to end: a real KMS on loopback, the load generator's
//! bare HTTP/2 client, every scenario answered without errors.
#![allow(clippy::unwrap_used, missing_docs)]
// `kms bench` exists only with the `demo` feature (the workspace test run
// enables it through the end-to-end crates).
#![cfg(feature = "demo")]

fn bench(extra: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kms"))
        .args(["bench", "--concurrency", "4", "--requests", "24"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The row of `scenario`, split into columns.
fn row<'a>(out: &'a str, scenario: &str) -> Vec<&'a str> {
    out.lines()
        .find(|l| l.starts_with(&format!("{scenario} ")))
        .unwrap_or_else(|| panic!("no {scenario} row in\n{out}"))
        .split_whitespace()
        .collect()
}

#[test]
fn every_scenario_runs_without_errors() {
    let out = bench(&[]);
    assert!(out.contains("TEST ROOTS ONLY"));
    for scenario in ["tdx", "sev-snp", "mixed"] {
        let cols = row(&out, scenario);
        assert_eq!(cols[1], "24", "{out}");
        assert_eq!(cols[2], "0", "errors in {scenario}: {out}");
        assert!(cols[3].parse::<f64>().unwrap() > 0.0);
        assert!(cols[7].ends_with('%'));
    }
}

#[test]
fn attributed_cpu_names_the_kms_share() {
    let out = bench(&["--only", "sev-snp", "--attribute-cpu", "--connections", "2"]);
    assert!(!out.contains("\ntdx "));
    let cols = row(&out, "sev-snp");
    assert_eq!(cols[2], "0", "{out}");
    let all: f64 = cols[8].parse().unwrap();
    let kms: f64 = cols[9].parse().unwrap();
    assert!(kms > 0.0 && kms <= all, "{out}");
}
