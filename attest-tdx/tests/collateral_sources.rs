//! Collateral sources against a real HTTP server on 127.0.0.1 that serves
//! the shared collateral the way Intel PCS / a PCCS does, including a server
//! that fails or hangs; the cache in front of it; the offline directory.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attest_core::{AttestError, CollateralMissing, ErrorKind, Malformed, Unavailable, UnixTime};
use attest_tdx::collateral::{PcsConfig, QuoteCollateralV3};
use attest_tdx::{
    CachedCollateral, Collateral, CollateralKey, CollateralSource, OfflineCollateral, PcsClient,
    TdxVerifier,
};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

const AT: u64 = 1_752_919_234;

/// A collateral source answered badly (or not at all), in the words `needle`.
fn source_failed(err: &AttestError, needle: &str) -> bool {
    matches!(err, AttestError::Unavailable(Unavailable::Source { detail, .. }) if detail.contains(needle))
}

fn vectors() -> PathBuf {
    attest_testkit::vectors::path("tdx/dcap-qvl")
}

fn vector_collateral() -> QuoteCollateralV3 {
    serde_json::from_slice(&attest_testkit::vectors::read(
        "tdx/dcap-qvl/tdx_quote_collateral.json",
    ))
    .unwrap()
}

fn quote() -> Vec<u8> {
    attest_testkit::vectors::read("tdx/dcap-qvl/tdx_quote")
}

/// A source whose set can be replaced (a PCCS publishing a new one).
struct Switchable(std::sync::Mutex<Arc<Collateral>>);

impl Switchable {
    fn new(first: Arc<Collateral>) -> Arc<Self> {
        Arc::new(Switchable(std::sync::Mutex::new(first)))
    }

    fn set(&self, next: Arc<Collateral>) {
        *self.0.lock().unwrap() = next;
    }
}

#[async_trait::async_trait]
impl CollateralSource for Switchable {
    async fn fetch(
        &self,
        _key: &CollateralKey,
        _now: UnixTime,
    ) -> Result<Arc<Collateral>, attest_core::AttestError> {
        Ok(self.0.lock().unwrap().clone())
    }
}

fn key() -> CollateralKey {
    // The FMSPC and CA of the vector quote's PCK leaf.
    CollateralKey {
        fmspc: [0xB0, 0xC0, 0x6F, 0, 0, 0],
        ca: attest_tdx::collateral::PckCa::Platform,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    Fail,
    Hang,
    Slow,
    NoHeaders,
    /// A poisoned answer: the TCB info's nextUpdate moved far into the
    /// future, the signature left as it was.
    Tampered,
}

struct Pcs {
    c: QuoteCollateralV3,
    mode: Mutex<Mode>,
    requests: AtomicUsize,
    last_query: Mutex<Vec<String>>,
}

fn tampered_tcb_info(tcb_info: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(tcb_info).unwrap();
    let old = v["nextUpdate"].as_str().unwrap().to_owned();
    let out = tcb_info.replace(&old, "2099-01-01T00:00:00Z");
    assert_ne!(out, tcb_info);
    out
}

fn chain_header(name: &'static str, chain: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        name,
        HeaderValue::from_str(&utf8_percent_encode(chain, NON_ALPHANUMERIC).to_string()).unwrap(),
    );
    h
}

async fn gate(s: &Pcs) -> Option<Response> {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let mode = *s.mode.lock().unwrap();
    match mode {
        Mode::Fail => Some((StatusCode::SERVICE_UNAVAILABLE, "maintenance").into_response()),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            None
        }
        Mode::Slow => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            None
        }
        _ => None,
    }
}

fn headers_or_not(s: &Pcs, h: HeaderMap) -> HeaderMap {
    if *s.mode.lock().unwrap() == Mode::NoHeaders {
        HeaderMap::new()
    } else {
        h
    }
}

async fn tcb(State(s): State<Arc<Pcs>>, Query(q): Query<Vec<(String, String)>>) -> Response {
    if let Some(r) = gate(&s).await {
        return r;
    }
    s.last_query.lock().unwrap().push(format!("tcb {q:?}"));
    let tcb_info = if *s.mode.lock().unwrap() == Mode::Tampered {
        tampered_tcb_info(&s.c.tcb_info)
    } else {
        s.c.tcb_info.clone()
    };
    let body = format!(
        "{{\"tcbInfo\":{},\"signature\":\"{}\"}}",
        tcb_info,
        hex::encode(&s.c.tcb_info_signature)
    );
    (
        headers_or_not(
            &s,
            chain_header("TCB-Info-Issuer-Chain", &s.c.tcb_info_issuer_chain),
        ),
        body,
    )
        .into_response()
}

async fn qe(State(s): State<Arc<Pcs>>, Query(q): Query<Vec<(String, String)>>) -> Response {
    if let Some(r) = gate(&s).await {
        return r;
    }
    s.last_query.lock().unwrap().push(format!("qe {q:?}"));
    let body = format!(
        "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
        s.c.qe_identity,
        hex::encode(&s.c.qe_identity_signature)
    );
    (
        headers_or_not(
            &s,
            chain_header(
                "SGX-Enclave-Identity-Issuer-Chain",
                &s.c.qe_identity_issuer_chain,
            ),
        ),
        body,
    )
        .into_response()
}

async fn pckcrl(State(s): State<Arc<Pcs>>, Query(q): Query<Vec<(String, String)>>) -> Response {
    if let Some(r) = gate(&s).await {
        return r;
    }
    s.last_query.lock().unwrap().push(format!("pckcrl {q:?}"));
    (
        headers_or_not(
            &s,
            chain_header("SGX-PCK-CRL-Issuer-Chain", &s.c.pck_crl_issuer_chain),
        ),
        s.c.pck_crl.clone(),
    )
        .into_response()
}

async fn rootcacrl(State(s): State<Arc<Pcs>>) -> Response {
    if let Some(r) = gate(&s).await {
        return r;
    }
    // A PCCS serves the root CA CRL as hex text of the DER.
    hex::encode(&s.c.root_ca_crl).into_response()
}

async fn start() -> (String, Arc<Pcs>) {
    let state = Arc::new(Pcs {
        c: vector_collateral(),
        mode: Mutex::new(Mode::Normal),
        requests: AtomicUsize::new(0),
        last_query: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/tdx/certification/v4/tcb", get(tcb))
        .route("/tdx/certification/v4/qe/identity", get(qe))
        .route("/sgx/certification/v4/pckcrl", get(pckcrl))
        .route("/sgx/certification/v4/rootcacrl", get(rootcacrl))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

fn client(url: &str) -> PcsClient {
    let mut cfg = PcsConfig::new(url);
    cfg.timeout = Duration::from_millis(500);
    PcsClient::new(cfg).unwrap()
}

#[tokio::test]
async fn pccs_client_fetches_collateral_that_verifies() {
    let (url, state) = start().await;
    let pcs = client(&url);
    let got = pcs.fetch_collateral(&key()).await.unwrap();
    let want = vector_collateral();
    assert_eq!(
        got.tcb_info, want.tcb_info,
        "signed JSON must be kept byte for byte"
    );
    assert_eq!(got.qe_identity, want.qe_identity);
    assert_eq!(got.tcb_info_signature, want.tcb_info_signature);
    assert_eq!(got.pck_crl, want.pck_crl);
    assert_eq!(got.root_ca_crl, want.root_ca_crl, "hex text decoded to DER");
    assert_eq!(
        got.tcb_info_issuer_chain, want.tcb_info_issuer_chain,
        "URL-decoded"
    );
    assert_eq!(got.pck_crl_issuer_chain, want.pck_crl_issuer_chain);
    assert_eq!(state.requests.load(Ordering::SeqCst), 4);
    let queries = state.last_query.lock().unwrap().join(" | ");
    assert!(
        queries.contains(r#"("fmspc", "B0C06F000000"), ("update", "standard")"#),
        "{queries}"
    );
    assert!(
        queries.contains(r#"("ca", "platform"), ("encoding", "der")"#),
        "{queries}"
    );

    let v = TdxVerifier::new(Arc::new(pcs)).unwrap();
    let verified = v.verify_quote(&quote(), UnixTime(AT)).await.unwrap();
    assert_eq!(verified.claims().tcb.status, dcap_qvl::TcbStatus::UpToDate);
}

#[tokio::test]
async fn failing_and_hanging_servers_are_unavailable() {
    let (url, state) = start().await;
    *state.mode.lock().unwrap() = Mode::Fail;
    let err = client(&url)
        .fetch(&key(), UnixTime(AT))
        .await
        .err()
        .unwrap();
    assert!(source_failed(&err, "HTTP 503"), "{err}");

    *state.mode.lock().unwrap() = Mode::NoHeaders;
    let err = client(&url)
        .fetch(&key(), UnixTime(AT))
        .await
        .err()
        .unwrap();
    assert!(source_failed(&err, "missing"), "{err}");

    *state.mode.lock().unwrap() = Mode::Hang;
    let start = Instant::now();
    let err = client(&url)
        .fetch(&key(), UnixTime(AT))
        .await
        .err()
        .unwrap();
    assert!(source_failed(&err, "timed out"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );

    // Nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = client(&format!("http://127.0.0.1:{port}"))
        .fetch(&key(), UnixTime(AT))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}

#[tokio::test]
async fn cache_hits_refreshes_and_falls_back_to_a_valid_set_only() {
    let (url, state) = start().await;
    let cache =
        CachedCollateral::new(Arc::new(client(&url)), attest_tdx::INTEL_ROOT_CA_DER).unwrap();
    let c = cache
        .fetch(&key(), UnixTime(AT - 20 * 86_400))
        .await
        .unwrap();
    let next = c.next_update;
    assert_eq!(next, 1_752_919_235);
    assert_eq!(state.requests.load(Ordering::SeqCst), 4);

    // Fresh: served from memory.
    for _ in 0..10 {
        cache
            .fetch(&key(), UnixTime(AT - 20 * 86_400))
            .await
            .unwrap();
    }
    assert_eq!(state.requests.load(Ordering::SeqCst), 4);
    assert_eq!(cache.stats().hits.load(Ordering::Relaxed), 10);

    // Inside the refresh margin with the source down: the still-valid set is served.
    *state.mode.lock().unwrap() = Mode::Fail;
    let inside = UnixTime(next - 86_400);
    let served = cache.fetch(&key(), inside).await.unwrap();
    assert!(Arc::ptr_eq(&served, &c));
    assert_eq!(cache.stats().fetch_errors.load(Ordering::Relaxed), 1);
    // ...and the failing source is not hammered on every request.
    let before = state.requests.load(Ordering::SeqCst);
    cache
        .fetch(&key(), UnixTime(next - 86_400 + 10))
        .await
        .unwrap();
    assert_eq!(state.requests.load(Ordering::SeqCst), before);

    // Past nextUpdate the cached set is never served.
    let err = cache.fetch(&key(), UnixTime(next)).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Unavailable);

    // The source is back: the refresh succeeds.
    *state.mode.lock().unwrap() = Mode::Normal;
    assert!(cache.fetch(&key(), UnixTime(next - 3600)).await.is_ok());
}

#[tokio::test]
async fn concurrent_misses_are_coalesced_into_one_fetch() {
    let (url, state) = start().await;
    *state.mode.lock().unwrap() = Mode::Slow;
    let cache = Arc::new(
        CachedCollateral::new(Arc::new(client(&url)), attest_tdx::INTEL_ROOT_CA_DER).unwrap(),
    );
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.fetch(&key(), UnixTime(AT - 20 * 86_400)).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        state.requests.load(Ordering::SeqCst),
        4,
        "one fetch = four requests"
    );
    assert_eq!(cache.stats().misses.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn cache_persists_to_disk_for_the_next_start() {
    let (url, state) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let first = CachedCollateral::new(Arc::new(client(&url)), attest_tdx::INTEL_ROOT_CA_DER)
        .unwrap()
        .with_dir(dir.path());
    first
        .fetch(&key(), UnixTime(AT - 20 * 86_400))
        .await
        .unwrap();
    assert!(dir.path().join("B0C06F000000-platform.json").is_file());
    assert!(!dir.path().join(".B0C06F000000-platform.json.tmp").exists());

    // A restart with the source down still verifies.
    *state.mode.lock().unwrap() = Mode::Fail;
    let second = CachedCollateral::new(Arc::new(client(&url)), attest_tdx::INTEL_ROOT_CA_DER)
        .unwrap()
        .with_dir(dir.path());
    let v = TdxVerifier::new(Arc::new(second)).unwrap();
    assert!(v.verify_quote(&quote(), UnixTime(AT)).await.is_ok());
}

#[tokio::test]
async fn offline_directory_by_fmspc_and_ca() {
    let dir = tempfile::tempdir().unwrap();
    let src = OfflineCollateral::new(dir.path());
    let err = src.fetch(&key(), UnixTime(AT)).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::CollateralMissing);
    std::fs::copy(
        vectors().join("tdx_quote_collateral.json"),
        dir.path().join("b0c06f000000-platform.json"),
    )
    .unwrap();
    let c = src.fetch(&key(), UnixTime(AT)).await.unwrap();
    assert_eq!(c.next_update, 1_752_919_235);
    let v = TdxVerifier::new(Arc::new(src)).unwrap();
    assert!(v.verify_quote(&quote(), UnixTime(AT)).await.is_ok());

    std::fs::write(dir.path().join("b0c06f000000-platform.json"), b"{not json").unwrap();
    let err = OfflineCollateral::new(dir.path())
        .fetch(&key(), UnixTime(AT))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Malformed);
    let _ = Collateral::from_json(b"{}").unwrap_err();

    // Files are read up to 1 MiB: exactly that is read (and is not JSON),
    // one byte more is refused unread.
    let file = dir.path().join("b0c06f000000-platform.json");
    let offline = OfflineCollateral::new(dir.path());
    std::fs::write(&file, vec![b' '; 1024 * 1024]).unwrap();
    let err = offline.fetch(&key(), UnixTime(AT)).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Malformed);
    std::fs::write(&file, vec![b' '; 1024 * 1024 + 1]).unwrap();
    let err = offline.fetch(&key(), UnixTime(AT)).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        err.to_string().contains("larger than 1048576 bytes"),
        "{err}"
    );
    // A directory that cannot be read is unavailable, not "not found".
    let not_a_dir = dir.path().join("plain-file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let err = OfflineCollateral::new(&not_a_dir)
        .fetch(&key(), UnixTime(AT))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

/// A PCCS answering with a bad set (signature broken, far-future
/// nextUpdate): the set never enters the cache, in memory or on disk, and
/// never replaces a good one.
#[tokio::test]
async fn poisoned_collateral_never_enters_the_cache() {
    let (url, state) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("B0C06F000000-platform.json");
    let cache = CachedCollateral::new(Arc::new(client(&url)), attest_tdx::INTEL_ROOT_CA_DER)
        .unwrap()
        .with_dir(dir.path());
    let t = UnixTime(AT - 20 * 86_400);
    *state.mode.lock().unwrap() = Mode::Tampered;
    let err = cache.fetch(&key(), t).await.err().unwrap();
    assert!(source_failed(&err, "does not verify"), "{err}");
    assert!(!file.exists(), "nothing written on failure");
    assert_eq!(cache.stats().rejected_sets.load(Ordering::Relaxed), 1);

    // A good set, then a poisoned refresh inside the margin: the good set
    // stays, in memory and on disk.
    *state.mode.lock().unwrap() = Mode::Normal;
    let good = cache.fetch(&key(), t).await.unwrap();
    let on_disk = std::fs::read(&file).unwrap();
    *state.mode.lock().unwrap() = Mode::Tampered;
    let inside = UnixTime(good.next_update - 86_400);
    let served = cache.fetch(&key(), inside).await.unwrap();
    assert!(Arc::ptr_eq(&served, &good));
    assert_eq!(std::fs::read(&file).unwrap(), on_disk);
    assert_eq!(cache.stats().rejected_sets.load(Ordering::Relaxed), 2);

    // A poisoned file on disk (from an older release) is not served after
    // a restart, even with the source down.
    let mut c: serde_json::Value = serde_json::from_slice(&on_disk).unwrap();
    c["tcb_info"] = serde_json::Value::String(tampered_tcb_info(c["tcb_info"].as_str().unwrap()));
    std::fs::write(&file, serde_json::to_vec(&c).unwrap()).unwrap();
    *state.mode.lock().unwrap() = Mode::Fail;
    let restarted = CachedCollateral::new(Arc::new(client(&url)), attest_tdx::INTEL_ROOT_CA_DER)
        .unwrap()
        .with_dir(dir.path());
    assert!(restarted.fetch(&key(), t).await.is_err());
    assert_eq!(restarted.stats().rejected_sets.load(Ordering::Relaxed), 1);
}

/// A quote under a foreign PKI must not make the KMS ask the PCS for
/// anything: its PCK chain is checked to the pinned root first.
#[tokio::test]
async fn foreign_pki_quotes_trigger_no_fetch() {
    use attest_core::{Attestation, Evidence, PlatformId, VerifyContext};
    let (url, state) = start().await;
    let cache =
        CachedCollateral::new(Arc::new(client(&url)), attest_tdx::INTEL_ROOT_CA_DER).unwrap();
    let v = TdxVerifier::new(Arc::new(cache)).unwrap();
    let pki = attest_testkit::tdx::FakeIntelPki::new();
    let quote = pki.quote(&attest_testkit::tdx::TdFields::default());
    let ev = Evidence::new(PlatformId::TDX, quote.clone());
    let ctx = VerifyContext::without_report_data(UnixTime(AT));
    let err = v.fetch_endorsements(&ev, &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UntrustedChain, "{err}");
    let err = v.verify_quote(&quote, UnixTime(AT)).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::UntrustedChain, "{err}");
    assert_eq!(state.requests.load(Ordering::SeqCst), 0);

    // The real quote's chain leads to Intel's root: its collateral is fetched.
    let ev = Evidence::new(PlatformId::TDX, quote_bytes_with_bad_signature());
    v.fetch_endorsements(&ev, &ctx).await.unwrap();
    assert_eq!(state.requests.load(Ordering::SeqCst), 4);
}

/// The real quote with its body changed: the quote signature no longer
/// verifies, but its PCK chain is Intel's.
fn quote_bytes_with_bad_signature() -> Vec<u8> {
    let mut q = quote();
    q[200] ^= 1;
    q
}

/// Fetches for platforms never seen are budgeted, and a "not found" answer
/// is remembered, so forged FMSPCs cannot drive a stream of PCS requests.
#[tokio::test]
async fn unknown_platforms_are_budgeted_and_not_found_is_remembered() {
    struct Missing(AtomicUsize);
    #[async_trait::async_trait]
    impl CollateralSource for Missing {
        async fn fetch(
            &self,
            key: &CollateralKey,
            _now: UnixTime,
        ) -> Result<Arc<Collateral>, attest_core::AttestError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err(attest_core::CollateralMissing::NotFound {
                detail: format!("no collateral for {key:?}"),
            }
            .into())
        }
    }
    let src = Arc::new(Missing(AtomicUsize::new(0)));
    let cache = CachedCollateral::new(src.clone(), attest_tdx::INTEL_ROOT_CA_DER)
        .unwrap()
        .with_fetch_budget(3);
    let k = |i: u8| CollateralKey {
        fmspc: [i, 0, 0, 0, 0, 0],
        ca: attest_tdx::collateral::PckCa::Platform,
    };
    let mut kinds = Vec::new();
    for i in 0..10 {
        kinds.push(cache.fetch(&k(i), UnixTime(AT)).await.unwrap_err().kind());
    }
    assert_eq!(src.0.load(Ordering::SeqCst), 3);
    assert_eq!(&kinds[..3], &[ErrorKind::CollateralMissing; 3]);
    assert_eq!(&kinds[3..], &[ErrorKind::Unavailable; 7]);
    // Asking again for a key known to be missing costs no fetch.
    let err = cache.fetch(&k(0), UnixTime(AT)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CollateralMissing);
    assert_eq!(src.0.load(Ordering::SeqCst), 3);
    assert_eq!(cache.fetches_in_flight(), 0);
}

#[test]
fn plain_http_pccs_is_refused_off_loopback() {
    let err = PcsClient::new(PcsConfig::new("http://pccs.example.com:8081"))
        .err()
        .unwrap();
    assert!(
        matches!(err.malformed(), Some(Malformed::BadValue { what, expected, .. })
            if what == "service URL" && expected.contains("insecure_http")),
        "{err}"
    );
    let mut cfg = PcsConfig::new("http://pccs.example.com:8081");
    cfg.insecure_http = true;
    assert!(PcsClient::new(cfg).is_ok());
    assert!(PcsClient::new(PcsConfig::new("http://127.0.0.1:8081")).is_ok());
    assert!(PcsClient::new(PcsConfig::new("https://pccs.example.com")).is_ok());
}

/// A source that answers every key with one set.
struct Fixed(Arc<Collateral>);

#[async_trait::async_trait]
impl CollateralSource for Fixed {
    async fn fetch(
        &self,
        _key: &CollateralKey,
        _now: UnixTime,
    ) -> Result<Arc<Collateral>, attest_core::AttestError> {
        Ok(self.0.clone())
    }
}

/// A compromised PCCS (or one bad answer) serving a genuine set of another
/// platform: the real 90C06F000000 collateral for a B0C06F000000 request.
/// It verifies to Intel's root and is inside its window, yet it is not the
/// set asked for: kept, it would fail every quote of the platform until it
/// neared its nextUpdate, across restarts.
#[tokio::test]
async fn a_set_for_another_platform_never_enters_the_cache() {
    let other = Arc::new(
        Collateral::from_json(&attest_testkit::vectors::read(
            "tdx/dcap-qvl/tdx_quote_outdated_collateral.json",
        ))
        .unwrap(),
    );
    assert_ne!(other.fmspc, key().fmspc);
    let t = UnixTime(other.issued + 3600);
    other.verify(attest_tdx::INTEL_ROOT_CA_DER, t).unwrap(); // genuine, in its window

    let dir = tempfile::tempdir().unwrap();
    let cache = CachedCollateral::new(
        Arc::new(Fixed(other.clone())),
        attest_tdx::INTEL_ROOT_CA_DER,
    )
    .unwrap()
    .with_dir(dir.path());
    let err = cache.fetch(&key(), t).await.unwrap_err();
    assert!(
        source_failed(
            &err,
            "collateral for B0C06F000000-platform: TCB info is for FMSPC 90C06F000000"
        ),
        "{err}"
    );
    assert_eq!(cache.stats().rejected_sets.load(Ordering::Relaxed), 1);
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());

    // Planted on disk under the key's name, it is not loaded either.
    std::fs::write(
        dir.path().join("B0C06F000000-platform.json"),
        serde_json::to_vec(&other.data).unwrap(),
    )
    .unwrap();
    let cache = CachedCollateral::new(
        Arc::new(Fixed(Arc::new(
            Collateral::new(vector_collateral()).unwrap(),
        ))),
        attest_tdx::INTEL_ROOT_CA_DER,
    )
    .unwrap()
    .with_dir(dir.path());
    let got = cache.fetch(&key(), UnixTime(AT)).await.unwrap();
    assert_eq!(got.fmspc, key().fmspc);
    // The planted file was replaced by the right set.
    let on_disk = Collateral::from_json(
        &std::fs::read(dir.path().join("B0C06F000000-platform.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(on_disk.digest, got.digest);

    // The same check holds for a set given directly: the right FMSPC with
    // the other CA's key is refused before dcap-qvl runs.
    let processor = CollateralKey {
        ca: attest_tdx::collateral::PckCa::Processor,
        ..key()
    };
    let set = Collateral::new(vector_collateral()).unwrap();
    assert_eq!(
        set.check_for(&processor).unwrap_err(),
        AttestError::CollateralMissing(CollateralMissing::WrongSet {
            detail: "collateral for B0C06F000000-processor: the PCK CRL is the platform CA's"
                .into()
        })
    );
    set.check_for(&key()).unwrap();
}

/// A set of an earlier TCB evaluation (a rollback to levels Intel has since
/// re-rated) never replaces a valid held set, even with a later nextUpdate.
#[tokio::test]
async fn a_rolled_back_tcb_evaluation_never_replaces_the_held_set() {
    let good = Arc::new(Collateral::new(vector_collateral()).unwrap());
    // The same genuine set, presented as if its evaluation number were older.
    let mut older = (*good).clone();
    older.tcb_eval_data_number -= 1;
    older.next_update += 1;
    let src = Switchable::new(good.clone());
    let cache = CachedCollateral::new(src.clone(), attest_tdx::INTEL_ROOT_CA_DER)
        .unwrap()
        .with_timing(30 * 86_400, 0);
    let t = AT - 86_400;
    assert_eq!(
        cache
            .fetch(&key(), UnixTime(t))
            .await
            .unwrap()
            .tcb_eval_data_number,
        good.tcb_eval_data_number
    );
    src.set(Arc::new(older));
    let got = cache.fetch(&key(), UnixTime(t + 1)).await.unwrap();
    assert_eq!(got.tcb_eval_data_number, good.tcb_eval_data_number);
    assert_eq!(got.digest, good.digest);
}

/// Inside the refresh margin, verification uses the held valid set at
/// once: it never waits for another request's network refresh (here one
/// that never finishes) while it holds the KMS's verification permit.
#[tokio::test]
async fn verify_never_waits_for_a_network_refresh() {
    use std::sync::atomic::AtomicBool;
    struct Hanging(Arc<Collateral>, AtomicBool);
    #[async_trait::async_trait]
    impl CollateralSource for Hanging {
        async fn fetch(
            &self,
            _key: &CollateralKey,
            _now: UnixTime,
        ) -> Result<Arc<Collateral>, attest_core::AttestError> {
            if self.1.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            Ok(self.0.clone())
        }
    }
    let set = Arc::new(Collateral::new(vector_collateral()).unwrap());
    let src = Arc::new(Hanging(set, AtomicBool::new(false)));
    let cache = Arc::new(
        CachedCollateral::new(src.clone(), attest_tdx::INTEL_ROOT_CA_DER)
            .unwrap()
            .with_timing(30 * 86_400, 300),
    );
    let v = TdxVerifier::new(cache.clone()).unwrap();
    let t1 = AT - 20 * 86_400;
    v.verify_quote(&quote(), UnixTime(t1)).await.unwrap();
    // The PCCS hangs; request A's endorsement step starts a refresh.
    src.1.store(true, Ordering::SeqCst);
    let c = cache.clone();
    let a = tokio::spawn(async move { c.fetch(&key(), UnixTime(t1 + 400)).await });
    while cache.fetches_in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    // Request B's verification completes although the refresh never does.
    tokio::time::timeout(
        Duration::from_secs(60),
        v.verify_quote(&quote(), UnixTime(t1 + 401)),
    )
    .await
    .expect("verify waited on another request's refresh")
    .unwrap();
    assert!(!a.is_finished());
    a.abort();
}

/// The PCS client does not follow redirects: the transport rule holds for
/// the configured URL only, and a redirect could lead anywhere.
#[tokio::test]
async fn pcs_redirects_are_not_followed() {
    let followed = Arc::new(AtomicUsize::new(0));
    let f = followed.clone();
    let app = Router::new()
        .route(
            "/elsewhere",
            get(move || {
                f.fetch_add(1, Ordering::SeqCst);
                async { "{}" }
            }),
        )
        .fallback(|| async {
            let mut h = HeaderMap::new();
            h.insert("Location", HeaderValue::from_static("/elsewhere"));
            (StatusCode::FOUND, h, "")
        });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let pcs = PcsClient::new(PcsConfig::new(&url)).unwrap();
    let err = pcs.fetch(&key(), UnixTime(AT)).await.unwrap_err();
    assert!(source_failed(&err, "302"), "{err}");
    assert_eq!(followed.load(Ordering::SeqCst), 0);
}

/// A refresh that brings a set ending earlier than the held one (same TCB
/// evaluation) keeps the held set; one that ends at the same time replaces
/// it (the newest issue of the same evaluation wins).
#[tokio::test]
async fn a_refresh_never_shortens_the_held_sets_window() {
    let good = Arc::new(Collateral::new(vector_collateral()).unwrap());
    let src = Switchable::new(good.clone());
    let cache = CachedCollateral::new(src.clone(), attest_tdx::INTEL_ROOT_CA_DER)
        .unwrap()
        .with_timing(30 * 86_400, 0);
    let t = AT - 86_400;
    cache.fetch(&key(), UnixTime(t)).await.unwrap();
    let mut shorter = (*good).clone();
    shorter.next_update -= 1;
    shorter.issued += 1;
    src.set(Arc::new(shorter));
    let got = cache.fetch(&key(), UnixTime(t + 1)).await.unwrap();
    assert_eq!(
        (got.next_update, got.issued),
        (good.next_update, good.issued)
    );
    let mut reissued = (*good).clone();
    reissued.issued += 1;
    src.set(Arc::new(reissued));
    let got = cache.fetch(&key(), UnixTime(t + 2)).await.unwrap();
    assert_eq!(
        (got.next_update, got.issued),
        (good.next_update, good.issued + 1)
    );
}

/// A PCS/PCCS answer is read up to 1 MiB; a longer one is refused while it
/// arrives. (The default service is Intel's PCS.)
#[tokio::test]
async fn pcs_answers_are_read_up_to_one_mebibyte() {
    assert_eq!(
        attest_tdx::collateral::pcs_default_url(),
        "https://api.trustedservices.intel.com"
    );
    let serve = |size: usize| async move {
        let body = vec![b' '; size];
        let app = axum::Router::new().fallback(move || {
            let b = body.clone();
            async move { b }
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        url
    };
    let url = serve(1024 * 1024).await;
    let err = client(&url)
        .fetch(&key(), UnixTime(AT))
        .await
        .err()
        .unwrap();
    assert!(!err.to_string().contains("larger than"), "{err}");
    let url = serve(1024 * 1024 + 1).await;
    let err = client(&url)
        .fetch(&key(), UnixTime(AT))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        err.to_string()
            .contains("response larger than 1048576 bytes"),
        "{err}"
    );
}

/// A collateral set is valid from its latest issue date (included) to its
/// earliest nextUpdate (excluded).
#[test]
fn a_collateral_set_is_valid_from_its_issue_to_its_next_update() {
    let c = Collateral::new(vector_collateral()).unwrap();
    let root = attest_tdx::INTEL_ROOT_CA_DER;
    c.verify(root, UnixTime(c.issued)).unwrap();
    c.verify(root, UnixTime(c.next_update - 1)).unwrap();
    assert!(matches!(
        c.verify(root, UnixTime(c.issued - 1)).unwrap_err(),
        attest_core::AttestError::CollateralExpired(
            attest_core::CollateralExpired::NotYetValid { .. }
        )
    ));
    assert!(matches!(
        c.verify(root, UnixTime(c.next_update)).unwrap_err(),
        attest_core::AttestError::CollateralExpired(attest_core::CollateralExpired::Expired { .. })
    ));
    assert!(c.valid_at(UnixTime(c.issued)));
    assert!(!c.valid_at(UnixTime(c.next_update)));
}
