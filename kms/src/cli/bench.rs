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
use prost::Message;
use prost::bytes::Bytes;
use tonic::codegen::http;

use super::error::CliError;

struct Prepared {
    evidence: Evidence,
    public_key: [u8; 32],
    /// The `GetAppKeyRequest`, encoded and gRPC-framed once: like h2load or
    /// ghz, the load generator replays fixed request bodies.
    framed: Bytes,
}

/// The load generator's HTTP/2 connection: a bare `h2` client that sends
/// pre-framed gRPC bodies and reads the answer without decoding it, so the
/// generator spends little of the CPU it shares with the KMS (the KMS side
/// is the full tonic stack every client meets).
#[derive(Clone)]
struct LoadConn {
    send: h2::client::SendRequest<Bytes>,
    uri: http::Uri,
}

impl LoadConn {
    async fn connect(url: &str) -> Result<Self, CliError> {
        let e = |e: &dyn std::fmt::Display| CliError::new(format!("{url}: {e}"));
        let uri: http::Uri = format!("{url}/kms.v1.Kms/GetAppKey")
            .parse()
            .map_err(|x| e(&x))?;
        let authority = uri
            .authority()
            .ok_or_else(|| e(&"no host:port"))?
            .to_string();
        let tcp = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|x| e(&x))?;
        tcp.set_nodelay(true).map_err(|x| e(&x))?;
        let (send, conn) = h2::client::handshake(tcp).await.map_err(|x| e(&x))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(LoadConn { send, uri })
    }

    /// One `GetAppKey` call; `Ok` only for gRPC status 0 with a non-empty answer.
    async fn get_app_key(&mut self, framed: Bytes) -> Result<(), String> {
        let req = http::Request::post(self.uri.clone())
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .map_err(|x| x.to_string())?;
        let mut send = self.send.clone().ready().await.map_err(|x| x.to_string())?;
        let (answer, mut body_out) = send.send_request(req, false).map_err(|x| x.to_string())?;
        body_out
            .send_data(framed, true)
            .map_err(|x| x.to_string())?;
        let answer = answer.await.map_err(|x| x.to_string())?;
        let status_in_headers = answer.headers().get("grpc-status").cloned();
        let mut body = answer.into_body();
        let mut received = 0;
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|x| x.to_string())?;
            received += chunk.len();
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        let trailers = body.trailers().await.map_err(|x| x.to_string())?;
        let status =
            status_in_headers.or_else(|| trailers.and_then(|t| t.get("grpc-status").cloned()));
        match status {
            Some(s) if s == "0" && received > 5 => Ok(()),
            other => Err(format!("grpc-status {other:?}, {received} bytes")),
        }
    }
}

/// A protobuf message in gRPC's length-prefixed framing (uncompressed).
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed.into()
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
///
/// The KMS runs on a multi-threaded runtime (threads named `kms-server`,
/// one per core) and, by default, the load generator's tasks run on the same
/// runtime: on a 2-core machine that is the cheapest arrangement, and the
/// throughput figures come from it. With `attribute_cpu` the load generator
/// runs on the calling thread instead, so the CPU time of each side can be
/// read per thread and the KMS's own cost per request is printed; the
/// cross-thread wake-ups this adds lower the throughput.
pub fn bench(
    concurrency: usize,
    requests: usize,
    only: Option<String>,
    connections: usize,
    attribute_cpu: bool,
) -> Result<ExitCode, CliError> {
    let rt_err = |e: std::io::Error| CliError::new(format!("runtime: {e}"));
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()
        .map_err(rt_err)?;
    let load_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(rt_err)?;
    let dir = std::env::temp_dir().join(format!("kms-bench-{}", std::process::id()));
    let pkis = Arc::new(Pkis::new());
    let app = App::example();
    let server = server_rt
        .block_on(Server::start(&dir, &pkis, &app))
        .map_err(CliError::new)?;
    // The same build with the TDX verified-platform cache switched off (the
    // configuration switch), for the `tdx-uncached` scenario.
    let uncached_server = server_rt
        .block_on(Server::start_configured(
            &dir.join("uncached"),
            &pkis,
            &app,
            false,
            "[tdx]\nverified_platform_cache = false\n",
        ))
        .map_err(CliError::new)?;
    let load = Load {
        concurrency: concurrency.max(1),
        requests: requests.max(1),
        only,
        connections: connections.max(1),
        attribute_cpu,
    };
    let rt = if attribute_cpu { &load_rt } else { &server_rt };
    let result = rt.block_on(run(&server.url, &uncached_server.url, &pkis, &app, load));
    // The load generator's connections may live on its own runtime: dropping
    // it closes them, so the server's graceful stop does not wait for them.
    drop(load_rt);
    server_rt.block_on(server.stop());
    server_rt.block_on(uncached_server.stop());
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// What `kms bench` was asked to do.
struct Load {
    concurrency: usize,
    requests: usize,
    only: Option<String>,
    connections: usize,
    attribute_cpu: bool,
}

/// Name of the KMS runtime's threads.
const SERVER_THREAD: &str = "kms-server";

/// CPU time consumed so far by this process's threads: (KMS runtime, rest).
fn cpu_time_by_side() -> (Duration, Duration) {
    let (mut server, mut rest) = (Duration::ZERO, Duration::ZERO);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (server, rest);
    };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        // schedstat: nanoseconds on the CPU, first field.
        let ns = std::fs::read_to_string(t.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        if comm.trim_end().starts_with(SERVER_THREAD) {
            server += Duration::from_nanos(ns);
        } else {
            rest += Duration::from_nanos(ns);
        }
    }
    (server, rest)
}

async fn run(
    url: &str,
    uncached_url: &str,
    pkis: &Pkis,
    app: &App,
    load: Load,
) -> Result<ExitCode, CliError> {
    let Load {
        concurrency,
        requests,
        only,
        connections,
        attribute_cpu,
    } = load;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "kms bench -- TEST ROOTS ONLY (testkit evidence), {cores} cores, concurrency {concurrency} over {connections} HTTP/2 connections, {requests} requests per scenario"
    );

    let challenge_of = |url: String| async move {
        let mut client = KmsClient::connect(&url)
            .await
            .map_err(|e| CliError::new(e.to_string()))?;
        Ok::<_, CliError>(
            client
                .raw()
                .get_challenge(proto::GetChallengeRequest {})
                .await
                .map_err(|e| CliError::new(e.to_string()))?
                .into_inner()
                .challenge,
        )
    };
    let challenge = challenge_of(url.to_owned()).await?;
    let uncached_challenge = challenge_of(uncached_url.to_owned()).await?;

    // Pre-generated evidence, each bound to its own client key.
    let prepare = |platform: &str, n: usize, challenge: &Vec<u8>| -> Vec<Prepared> {
        (0..n)
            .map(|_| {
                let (_, pk) = seal::client_keypair();
                let rd =
                    app_key_report_data(&pk, challenge).unwrap_or(attest_core::ReportData([0; 64]));
                let evidence = match platform {
                    "tdx" => pkis.tdx_evidence(app, rd, false),
                    _ => pkis.snp_evidence(app, rd, ReportFields::default()),
                };
                let framed = grpc_frame(
                    &proto::GetAppKeyRequest {
                        evidence: Some(proto::Evidence::from(&evidence)),
                        client_public_key: pk.to_vec(),
                        challenge: challenge.clone(),
                    }
                    .encode_to_vec(),
                );
                Prepared {
                    evidence,
                    public_key: pk,
                    framed,
                }
            })
            .collect()
    };
    let tdx = Arc::new(prepare("tdx", 64, &challenge));
    let snp = Arc::new(prepare("sev-snp", 64, &challenge));
    let tdx_uncached = Arc::new(prepare("tdx", 64, &uncached_challenge));

    // The verification ceiling: verify-only cost per request, same run.
    let verifiers = pkis.verifiers();
    let uncached_verifiers = pkis.verifiers_with(false);
    let mut verify_cost = Vec::new();
    for (name, set, verifiers, challenge) in [
        ("tdx", &tdx, &verifiers, &challenge),
        ("sev-snp", &snp, &verifiers, &challenge),
        (
            "tdx-uncached",
            &tdx_uncached,
            &uncached_verifiers,
            &uncached_challenge,
        ),
    ] {
        let p = &set[0];
        let rd = app_key_report_data(&p.public_key, challenge)
            .map_err(|e| CliError::new(e.to_string()))?;
        let ctx = VerifyContext::new(rd, UnixTime::now());
        verifiers
            .verify(&p.evidence, &ctx)
            .await
            .map_err(|e| CliError::new(e.to_string()))?;
        // The fastest of five batches: a batch slowed down by anything else
        // on the machine would raise the cost, lower the ceiling and flatter
        // the fraction printed below.
        let mut per = Duration::MAX;
        for _ in 0..5 {
            let n = 100;
            let t = Instant::now();
            for _ in 0..n {
                let _ = verifiers.verify(&p.evidence, &ctx).await;
            }
            per = per.min(t.elapsed() / n);
        }
        println!(
            "verify-only cost {name:12} {:>8.1} us/request -> ceiling {:>7.0} req/s on {cores} cores",
            per.as_secs_f64() * 1e6,
            cores as f64 / per.as_secs_f64()
        );
        verify_cost.push(per);
    }

    println!(
        "{:<12} {:>8} {:>7} {:>8} {:>7} {:>7} {:>7} {:>11} {:>11} {:>11}",
        "scenario",
        "requests",
        "errors",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "of ceiling",
        "CPU us/req",
        if attribute_cpu { "of it KMS" } else { "" }
    );
    // A few HTTP/2 connections, as a fleet of CVMs would open.
    let mut conns = Vec::new();
    let mut uncached_conns = Vec::new();
    for _ in 0..connections {
        conns.push(LoadConn::connect(url).await?);
        uncached_conns.push(LoadConn::connect(uncached_url).await?);
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
        let _ = c.get_app_key(p.framed.clone()).await;
    }
    for (i, p) in tdx_uncached
        .iter()
        .cycle()
        .take(2 * concurrency.max(64))
        .enumerate()
    {
        let mut c = uncached_conns[i % uncached_conns.len()].clone();
        let _ = c.get_app_key(p.framed.clone()).await;
    }

    let mut all_ok = true;
    for scenario in ["tdx", "tdx-uncached", "sev-snp", "mixed"] {
        if only.as_deref().is_some_and(|o| o != scenario) {
            continue;
        }
        let ceiling_cost = match scenario {
            "tdx" => verify_cost[0],
            "sev-snp" => verify_cost[1],
            "tdx-uncached" => verify_cost[2],
            _ => (verify_cost[0] + verify_cost[1]) / 2,
        };
        let (conns, tdx) = match scenario {
            "tdx-uncached" => (&uncached_conns, &tdx_uncached),
            _ => (&conns, &tdx),
        };
        let ceiling = cores as f64 / ceiling_cost.as_secs_f64();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let cpu_before = cpu_time_by_side();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..concurrency {
            let (mut c, next, tdx, snp) = (
                conns[t % conns.len()].clone(),
                next.clone(),
                tdx.clone(),
                snp.clone(),
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
                        "tdx" | "tdx-uncached" => &tdx[i % tdx.len()],
                        "sev-snp" => &snp[i % snp.len()],
                        _ if i % 2 == 0 => &tdx[i % tdx.len()],
                        _ => &snp[i % snp.len()],
                    };
                    let t = Instant::now();
                    let r = c.get_app_key(p.framed.clone()).await;
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
        let cpu_after = cpu_time_by_side();
        let per_request =
            |a: Duration, b: Duration| a.saturating_sub(b).as_secs_f64() * 1e6 / requests as f64;
        lat.sort();
        let rps = requests as f64 / elapsed.as_secs_f64();
        let kms_cpu = per_request(cpu_after.0, cpu_before.0);
        let all_cpu = kms_cpu + per_request(cpu_after.1, cpu_before.1);
        println!(
            "{scenario:<12} {requests:>8} {errors:>7} {rps:>8.0} {:>7.2} {:>7.2} {:>7.2} {:>10.0}% {all_cpu:>11.0} {:>11}",
            pct(&lat, 0.50).as_secs_f64() * 1e3,
            pct(&lat, 0.90).as_secs_f64() * 1e3,
            pct(&lat, 0.99).as_secs_f64() * 1e3,
            100.0 * rps / ceiling,
            if attribute_cpu {
                format!("{kms_cpu:.0}")
            } else {
                String::new()
            },
        );
        all_ok &= errors == 0;
    }
    println!(
        "peak RSS of this process (KMS server and load generator together): {} MiB",
        peak_rss_kib() / 1024
    );
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
