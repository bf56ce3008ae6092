//! The AMD KDS client against a real HTTP server on 127.0.0.1 serving the
//! shared VCEKs: URL format, caching (never the same VCEK twice, on disk
//! across restarts), HTTP 429 back-off, outages; the offline directory.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attest_core::{
    AttestError, ErrorKind, Evidence, Malformed, PlatformId, Unavailable, UnixTime, VerifyContext,
};
use attest_snp::report::Signer;
use attest_snp::{
    KdsClient, OfflineVceks, Product, SnpConfig, SnpVerifier, VcekSource, VekRequest,
};
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    Throttle,
    Down,
    /// Like AMD KDS: 429 once more than `RATE_LIMIT` requests arrived.
    RateLimited,
}

const RATE_LIMIT: usize = 8;

struct Kds {
    mode: Mutex<Mode>,
    hits: AtomicUsize,
    paths: Mutex<Vec<String>>,
}

async fn vcek(
    State(s): State<Arc<Kds>>,
    Path((product, hwid)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let n = s.hits.fetch_add(1, Ordering::SeqCst) + 1;
    if *s.mode.lock().unwrap() == Mode::RateLimited && n > RATE_LIMIT {
        let mut h = HeaderMap::new();
        h.insert("Retry-After", "300".parse().unwrap());
        return (StatusCode::TOO_MANY_REQUESTS, h, "rate limited").into_response();
    }
    s.paths
        .lock()
        .unwrap()
        .push(format!("{product}/{hwid}?{}", q.unwrap_or_default()));
    match *s.mode.lock().unwrap() {
        Mode::Throttle => {
            let mut h = HeaderMap::new();
            h.insert("Retry-After", "30".parse().unwrap());
            return (StatusCode::TOO_MANY_REQUESTS, h, "slow down").into_response();
        }
        Mode::Down => return (StatusCode::BAD_GATEWAY, "down").into_response(),
        Mode::Normal | Mode::RateLimited => {}
    }
    let report = attest_testkit::vectors::read("snp/reports/milan-v2-a.report.bin");
    if product == "Milan" && hwid == hex::encode(&report[0x1A0..0x1E0]) {
        return attest_testkit::vectors::read("snp/reports/milan-v2-a.vcek.der").into_response();
    }
    (StatusCode::NOT_FOUND, "no such VCEK").into_response()
}

async fn start() -> (String, Arc<Kds>) {
    let s = Arc::new(Kds {
        mode: Mutex::new(Mode::Normal),
        hits: AtomicUsize::new(0),
        paths: Mutex::new(vec![]),
    });
    let app = Router::new()
        .route("/vcek/v1/{product}/{hwid}", get(vcek))
        .with_state(s.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}"), s)
}

fn milan_request() -> (Vec<u8>, VekRequest) {
    let report = attest_testkit::vectors::read("snp/reports/milan-v2-a.report.bin");
    let mut chip_id = [0u8; 64];
    chip_id.copy_from_slice(&report[0x1A0..0x1E0]);
    let mut tcb = [0u8; 8];
    tcb.copy_from_slice(&report[0x180..0x188]);
    (
        report,
        VekRequest {
            product: None,
            signer: Signer::Vcek,
            chip_id,
            reported_tcb: tcb,
        },
    )
}

const AT: u64 = 1_740_000_000;

#[tokio::test]
async fn kds_serves_the_vcek_once_and_the_report_verifies() {
    let (url, state) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let kds = Arc::new(
        KdsClient::new(
            &url,
            Some(dir.path().to_path_buf()),
            Duration::from_millis(500),
        )
        .unwrap(),
    );
    let (report, req) = milan_request();
    assert_eq!(
        kds.vcek_url(&req, Product::Milan),
        format!(
            "{url}/vcek/v1/Milan/{}?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115",
            hex::encode(req.chip_id)
        )
    );
    assert_eq!(kds.fetch_count(), 0);
    let v = SnpVerifier::new(vec![kds.clone()], SnpConfig::default()).unwrap();
    let e = Evidence::new(PlatformId::SEV_SNP, report);
    let ctx = VerifyContext::without_report_data(UnixTime(AT));
    for _ in 0..5 {
        v.verify_report(&e, &ctx).await.unwrap();
    }
    assert_eq!(
        state.hits.load(Ordering::SeqCst),
        1,
        "the same VCEK is never fetched twice"
    );
    assert_eq!(kds.fetch_count(), 1);
    assert!(dir.path().join(req.file_name(Product::Milan)).is_file());

    // A restart serves it from disk, with KDS down.
    *state.mode.lock().unwrap() = Mode::Down;
    let again = KdsClient::new(
        &url,
        Some(dir.path().to_path_buf()),
        Duration::from_millis(500),
    )
    .unwrap();
    assert!(again.fetch(&req).await.is_ok());
    assert_eq!(state.hits.load(Ordering::SeqCst), 1);

    // The same directory works as an offline source.
    let offline = OfflineVceks::new(dir.path());
    assert!(offline.fetch(&req).await.is_ok());
}

#[tokio::test]
async fn concurrent_requests_share_one_fetch() {
    let (url, state) = start().await;
    let kds = Arc::new(KdsClient::new(&url, None, Duration::from_millis(500)).unwrap());
    let (_, req) = milan_request();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let kds = kds.clone();
            tokio::spawn(async move { kds.fetch(&req).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(state.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn http_429_backs_off_without_hammering() {
    let (url, state) = start().await;
    *state.mode.lock().unwrap() = Mode::Throttle;
    let kds = KdsClient::new(&url, None, Duration::from_millis(500)).unwrap();
    let (_, req) = milan_request();
    let err = kds.fetch(&req).await.unwrap_err();
    assert!(
        matches!(&err, AttestError::Unavailable(Unavailable::Throttled { detail }) if detail.contains("HTTP 429")),
        "{err}"
    );
    // During the back-off no request reaches KDS, even once it recovers.
    *state.mode.lock().unwrap() = Mode::Normal;
    for _ in 0..5 {
        let err = kds.fetch(&req).await.unwrap_err();
        assert!(
            matches!(&err, AttestError::Unavailable(Unavailable::Throttled { detail }) if detail.contains("throttled")),
            "{err}"
        );
    }
    assert_eq!(state.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn outages_and_unknown_chips() {
    let (url, state) = start().await;
    let kds = KdsClient::new(&url, None, Duration::from_millis(500)).unwrap();
    let (_, mut req) = milan_request();
    *state.mode.lock().unwrap() = Mode::Down;
    assert_eq!(
        kds.fetch(&req).await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    *state.mode.lock().unwrap() = Mode::Normal;
    req.chip_id[0] ^= 1;
    assert_eq!(
        kds.fetch(&req).await.unwrap_err().kind(),
        ErrorKind::CollateralMissing
    );
    // Masked chip ids and VLEKs are never asked for.
    let before = state.hits.load(Ordering::SeqCst);
    req.chip_id = [0; 64];
    assert_eq!(
        kds.fetch(&req).await.unwrap_err().kind(),
        ErrorKind::CollateralMissing
    );
    req.chip_id[0] = 1;
    req.signer = Signer::Vlek;
    assert_eq!(
        kds.fetch(&req).await.unwrap_err().kind(),
        ErrorKind::CollateralMissing
    );
    assert_eq!(state.hits.load(Ordering::SeqCst), before);
    // Nothing listening: unavailable, bounded.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = KdsClient::new(
        &format!("http://127.0.0.1:{port}"),
        None,
        Duration::from_millis(300),
    )
    .unwrap();
    let (_, req) = milan_request();
    assert_eq!(
        dead.fetch(&req).await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
}

#[test]
fn turin_url_uses_8_byte_hwid_and_fmc() {
    let kds = KdsClient::new("https://kds.example", None, Duration::from_secs(1)).unwrap();
    let mut chip_id = [0u8; 64];
    chip_id[..8].copy_from_slice(&[0x6b, 0xb1, 0x22, 0x9b, 0x76, 0x92, 0xb7, 0x10]);
    let req = VekRequest {
        product: Some(Product::Turin),
        signer: Signer::Vcek,
        chip_id,
        reported_tcb: [1, 1, 1, 4, 0, 0, 0, 82],
    };
    assert_eq!(
        kds.vcek_url(&req, Product::Turin),
        "https://kds.example/vcek/v1/Turin/6bb1229b7692b710?fmcSPL=01&blSPL=01&teeSPL=01&snpSPL=04&ucodeSPL=82"
    );
}

/// The first review's finding: about 20 forged reports (random CHIP_ID, no
/// VCEK) tripped KDS's rate limit, and the back-off then refused genuine
/// guests. Now fetches for unknown chips are budgeted below KDS's limit,
/// 404s are remembered, and a guest whose VCEK is cached keeps verifying
/// through the flood.
#[tokio::test]
async fn a_flood_of_forged_reports_cannot_lock_out_genuine_guests() {
    let (url, state) = start().await;
    *state.mode.lock().unwrap() = Mode::RateLimited;
    let kds = Arc::new(
        KdsClient::new(&url, None, Duration::from_millis(500))
            .unwrap()
            .with_fetch_budget(4),
    );
    let v = Arc::new(SnpVerifier::new(vec![kds.clone()], SnpConfig::default()).unwrap());
    let (report, _) = milan_request();
    let genuine = Evidence::new(PlatformId::SEV_SNP, report.clone());
    let ctx = VerifyContext::without_report_data(UnixTime(AT));
    v.verify_report(&genuine, &ctx).await.unwrap();
    assert_eq!(state.hits.load(Ordering::SeqCst), 1);

    let flood: Vec<_> = (0..60u8)
        .map(|i| {
            let v = v.clone();
            let mut forged = report.clone();
            forged[0x1A0] = i;
            forged[0x1A1] = 0xee;
            tokio::spawn(async move {
                let e = Evidence::new(PlatformId::SEV_SNP, forged);
                let ctx = VerifyContext::without_report_data(UnixTime(AT));
                v.verify_report(&e, &ctx).await.err().unwrap().kind()
            })
        })
        .collect();
    // Genuine guests verify during the flood.
    for _ in 0..20 {
        v.verify_report(&genuine, &ctx).await.unwrap();
    }
    let mut kinds = Vec::new();
    for f in flood {
        kinds.push(f.await.unwrap());
    }
    // Three forged lookups reached KDS (404), the rest were refused at
    // once; KDS's own limit was never reached, so no back-off started.
    assert_eq!(state.hits.load(Ordering::SeqCst), 4);
    assert!(state.hits.load(Ordering::SeqCst) <= RATE_LIMIT);
    assert!(
        kinds
            .iter()
            .all(|k| matches!(k, ErrorKind::CollateralMissing | ErrorKind::Unavailable)),
        "{kinds:?}"
    );
    assert!(
        kinds
            .iter()
            .filter(|k| **k == ErrorKind::Unavailable)
            .count()
            >= 57,
        "{kinds:?}"
    );
    assert_eq!(kds.fetches_in_flight(), 0, "no lock left behind");
    // The genuine guest still verifies, without asking KDS.
    v.verify_report(&genuine, &ctx).await.unwrap();
    assert_eq!(state.hits.load(Ordering::SeqCst), 4);
}

/// A chip KDS does not know is asked for once, then remembered.
#[tokio::test]
async fn not_found_answers_are_remembered() {
    let (url, state) = start().await;
    let kds = KdsClient::new(&url, None, Duration::from_millis(500)).unwrap();
    let (_, mut req) = milan_request();
    req.chip_id[0] ^= 0x55;
    for _ in 0..5 {
        assert_eq!(
            kds.fetch(&req).await.unwrap_err().kind(),
            ErrorKind::CollateralMissing
        );
    }
    // One request per candidate product (a v2 report names none).
    assert_eq!(state.hits.load(Ordering::SeqCst), 2);
}

#[test]
fn plain_http_kds_is_refused_off_loopback() {
    let err = KdsClient::new("http://kds.example", None, Duration::from_secs(1))
        .err()
        .unwrap();
    assert!(
        matches!(err.malformed(), Some(Malformed::BadValue { what, expected, .. })
            if what == "service URL" && expected.contains("insecure_http")),
        "{err}"
    );
    assert!(
        KdsClient::with_options("http://kds.example", None, Duration::from_secs(1), true).is_ok()
    );
}

/// A bad KDS answer (a maintenance page served with 200, a truncated body,
/// the VCEK of another chip) is refused and never kept: a cached name is
/// not fetched again, so keeping it would lock the chip out for good,
/// across restarts. When KDS recovers, the next request verifies.
#[tokio::test]
async fn a_bad_kds_answer_is_never_cached() {
    use std::sync::atomic::AtomicU8;
    let genuine = attest_testkit::vectors::read("snp/reports/milan-v2-a.vcek.der");
    let other_chip = attest_testkit::vectors::read("snp/reports/milan-v2-b.vcek.der");
    let answer = Arc::new(AtomicU8::new(0));
    let a = answer.clone();
    let app = Router::new().route(
        "/vcek/v1/{product}/{hwid}",
        get(move || {
            let (a, genuine, other_chip) = (a.clone(), genuine.clone(), other_chip.clone());
            async move {
                match a.load(Ordering::SeqCst) {
                    0 => (StatusCode::OK, "<html>maintenance</html>").into_response(),
                    1 => genuine[..genuine.len() - 1].to_vec().into_response(),
                    2 => other_chip.into_response(),
                    _ => genuine.into_response(),
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let make = || {
        let kds = Arc::new(
            KdsClient::new(
                &url,
                Some(dir.path().to_path_buf()),
                Duration::from_millis(500),
            )
            .unwrap(),
        );
        SnpVerifier::new(vec![kds], SnpConfig::default()).unwrap()
    };
    let (report, _) = milan_request();
    let e = Evidence::new(PlatformId::SEV_SNP, report);
    let ctx = VerifyContext::without_report_data(UnixTime(AT));
    let v = make();
    for (bad, why) in [
        (
            0,
            "does not check: untrusted_chain: endorsement key certificate",
        ),
        (
            1,
            "does not check: untrusted_chain: endorsement key certificate",
        ),
        (
            2,
            "does not check: untrusted_chain: the VCEK is for another chip (hwID)",
        ),
    ] {
        answer.store(bad, Ordering::SeqCst);
        let err = v.verify_report(&e, &ctx).await.map(|_| ()).unwrap_err();
        assert!(
            matches!(&err, AttestError::Unavailable(Unavailable::Source { detail, .. }) if detail.contains(why)),
            "{bad}: {err}"
        );
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }
    answer.store(3, Ordering::SeqCst);
    v.verify_report(&e, &ctx).await.unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // A file planted in the cache under the chip's name is checked too.
    let name = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&name, b"not a certificate").unwrap();
    answer.store(0, Ordering::SeqCst);
    let err = make()
        .verify_report(&e, &ctx)
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

/// The plain-HTTP rule is checked on the configured URL; a redirect from
/// there (to plain HTTP off loopback, or to any internal address) is not
/// followed.
#[tokio::test]
async fn kds_redirects_are_not_followed() {
    use std::sync::atomic::AtomicU16;
    let followed = Arc::new(AtomicUsize::new(0));
    let port = Arc::new(AtomicU16::new(0));
    let (f, p) = (followed.clone(), port.clone());
    let app = Router::new()
        .route(
            "/vcek/v1/{product}/{hwid}",
            get(move |RawQuery(q): RawQuery| {
                let p = p.load(Ordering::SeqCst);
                async move {
                    // 0.0.0.0 is not loopback for check_service_url, yet it
                    // reaches this machine: it stands for any host the rule refuses.
                    let mut h = HeaderMap::new();
                    h.insert(
                        "Location",
                        format!("http://0.0.0.0:{p}/elsewhere?{}", q.unwrap_or_default())
                            .parse()
                            .unwrap(),
                    );
                    (StatusCode::FOUND, h, "").into_response()
                }
            }),
        )
        .route(
            "/elsewhere",
            get(move || {
                let f = f.clone();
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    attest_testkit::vectors::read("snp/reports/milan-v2-a.vcek.der").into_response()
                }
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    port.store(l.local_addr().unwrap().port(), Ordering::SeqCst);
    let port = port.load(Ordering::SeqCst);
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    assert!(
        attest_core::fetch::check_service_url(&format!("http://0.0.0.0:{port}"), false).is_err()
    );
    let kds = KdsClient::new(
        &format!("http://127.0.0.1:{port}"),
        None,
        Duration::from_millis(500),
    )
    .unwrap();
    let (_, req) = milan_request();
    let err = kds.fetch(&req).await.unwrap_err();
    assert!(
        matches!(&err, AttestError::Unavailable(Unavailable::Source { detail, .. }) if detail.contains("HTTP 302")),
        "{err}"
    );
    assert_eq!(followed.load(Ordering::SeqCst), 0);
}
