//! `kms bench`: drives GetAppKey against a KMS on loopback with testkit
//! evidence and prints throughput, latency percentiles, errors, and the
//! throughput as a fraction of the verification ceiling measured in the
//! same run. TEST ROOTS ONLY.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use attest_core::binding::app_key_report_data;
use attest_core::{Evidence, UnixTime, VerifyContext};
use attest_testkit::dstack::App;
use attest_testkit::snp::ReportFields;
use kms::demo::{Pkis, Server};
use kms_client::{KmsClient, proto, seal};

use crate::cli::CliError;

struct Prepared {
    evidence: Evidence,
    public_key: [u8; 32],
}

fn request(p: &Prepared, challenge: &[u8]) -> proto::GetAppKeyRequest {
    proto::GetAppKeyRequest {
        evidence: Some(proto::Evidence::from(&p.evidence)),
        client_public_key: p.public_key.to_vec(),
        challenge: challenge.to_vec(),
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `kms bench`.
pub fn bench(
    concurrency: usize,
    requests: usize,
    only: Option<String>,
) -> Result<ExitCode, CliError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("runtime: {e}")))?;
    rt.block_on(run(concurrency.max(1), requests.max(1), only))
}

async fn run(
    concurrency: usize,
    requests: usize,
    only: Option<String>,
) -> Result<ExitCode, CliError> {
    let dir = std::env::temp_dir().join(format!("kms-bench-{}", std::process::id()));
    let pkis = Arc::new(Pkis::new());
    let app = App::example();
    let server = Server::start(&dir, &pkis, &app)
        .await
        .map_err(CliError::new)?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "kms bench -- TEST ROOTS ONLY (testkit evidence), {cores} cores, concurrency {concurrency}, {requests} requests per scenario"
    );

    let mut client = KmsClient::connect(&server.url)
        .await
        .map_err(|e| CliError::new(e.to_string()))?;
    let challenge = client
        .raw()
        .get_challenge(proto::GetChallengeRequest {})
        .await
        .map_err(|e| CliError::new(e.to_string()))?
        .into_inner()
        .challenge;

    // Pre-generated evidence, each bound to its own client key.
    let prepare = |platform: &str, n: usize| -> Vec<Prepared> {
        (0..n)
            .map(|_| {
                let (_, pk) = seal::client_keypair();
                let rd = app_key_report_data(&pk, &challenge)
                    .unwrap_or(attest_core::ReportData([0; 64]));
                let evidence = match platform {
                    "tdx" => pkis.tdx_evidence(&app, rd, false),
                    _ => pkis.snp_evidence(&app, rd, ReportFields::default()),
                };
                Prepared {
                    evidence,
                    public_key: pk,
                }
            })
            .collect()
    };
    let tdx = Arc::new(prepare("tdx", 64));
    let snp = Arc::new(prepare("sev-snp", 64));

    // The verification ceiling: verify-only cost per request, same run.
    let verifiers = pkis.verifiers();
    let mut verify_cost = Vec::new();
    for (name, set) in [("tdx", &tdx), ("sev-snp", &snp)] {
        let p = &set[0];
        let rd = app_key_report_data(&p.public_key, &challenge)
            .map_err(|e| CliError::new(e.to_string()))?;
        let ctx = VerifyContext::new(rd, UnixTime::now());
        verifiers
            .verify(&p.evidence, &ctx)
            .await
            .map_err(|e| CliError::new(e.to_string()))?;
        let n = 300;
        let t = Instant::now();
        for _ in 0..n {
            let _ = verifiers.verify(&p.evidence, &ctx).await;
        }
        let per = t.elapsed() / n;
        println!(
            "verify-only cost {name:8} {:>8.1} us/request -> ceiling {:>7.0} req/s on {cores} cores",
            per.as_secs_f64() * 1e6,
            cores as f64 / per.as_secs_f64()
        );
        verify_cost.push(per);
    }

    println!(
        "{:<8} {:>8} {:>7} {:>10} {:>9} {:>9} {:>9} {:>12}",
        "scenario", "requests", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", "of ceiling"
    );
    // A few HTTP/2 connections, as a fleet of CVMs would open.
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(
            KmsClient::connect(&server.url)
                .await
                .map_err(|e| CliError::new(e.to_string()))?,
        );
    }
    // Warm-up (not measured): connections, HTTP/2 windows, caches, allocator.
    for (i, p) in tdx
        .iter()
        .chain(snp.iter())
        .cycle()
        .take(4 * concurrency.max(64))
        .enumerate()
    {
        let mut c = conns[i % conns.len()].clone();
        let _ = c.raw().get_app_key(request(p, &challenge)).await;
    }

    let mut all_ok = true;
    for scenario in ["tdx", "sev-snp", "mixed"] {
        if only.as_deref().is_some_and(|o| o != scenario) {
            continue;
        }
        let ceiling_cost = match scenario {
            "tdx" => verify_cost[0],
            "sev-snp" => verify_cost[1],
            _ => (verify_cost[0] + verify_cost[1]) / 2,
        };
        let ceiling = cores as f64 / ceiling_cost.as_secs_f64();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..concurrency {
            let (mut c, next, tdx, snp, ch) = (
                conns[t % conns.len()].clone(),
                next.clone(),
                tdx.clone(),
                snp.clone(),
                challenge.clone(),
            );
            let scenario = scenario.to_owned();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0usize;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= requests {
                        break;
                    }
                    let p = match scenario.as_str() {
                        "tdx" => &tdx[i % tdx.len()],
                        "sev-snp" => &snp[i % snp.len()],
                        _ if i % 2 == 0 => &tdx[i % tdx.len()],
                        _ => &snp[i % snp.len()],
                    };
                    let t = Instant::now();
                    let r = c.raw().get_app_key(request(p, &ch)).await;
                    lat.push(t.elapsed());
                    if r.is_err() {
                        errors += 1;
                    }
                }
                (lat, errors)
            }));
        }
        let mut lat = Vec::new();
        let mut errors = 0;
        for t in tasks {
            if let Ok((l, e)) = t.await {
                lat.extend(l);
                errors += e;
            }
        }
        let elapsed = started.elapsed();
        lat.sort();
        let rps = requests as f64 / elapsed.as_secs_f64();
        println!(
            "{scenario:<8} {requests:>8} {errors:>7} {rps:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>11.0}%",
            pct(&lat, 0.50).as_secs_f64() * 1e3,
            pct(&lat, 0.90).as_secs_f64() * 1e3,
            pct(&lat, 0.99).as_secs_f64() * 1e3,
            100.0 * rps / ceiling
        );
        all_ok &= errors == 0;
    }
    println!(
        "peak RSS of this process (KMS server and load generator together): {} MiB",
        peak_rss_kib() / 1024
    );
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
