//! The differential test of the verified-platform cache, its safety net:
//! for real and testkit quotes, every single-byte flip of each, at times
//! just inside and just outside each validity edge, a verifier whose cache
//! holds the platform and a verifier that runs dcap-qvl in full agree
//! exactly: accept or reject (and the error kind), and on accept the whole
//! of dcap-qvl's claims (TCB status, advisories, levels, PCK identity, QE
//! report, collateral window, the quote body) and the collateral key.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use attest_core::{ErrorKind, UnixTime};
use attest_tdx::collateral::StaticCollateral;
use attest_tdx::{Collateral, TdxVerifier};
use attest_testkit::tdx::{CollateralOptions, FakeIntelPki, PlatformTcb, TdFields};

struct Subject {
    name: &'static str,
    quote: Vec<u8>,
    root: Vec<u8>,
    collateral: Collateral,
    /// A time at which the quote verifies (or, for a rejected quote, its
    /// pinned time).
    at: u64,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Accepted(Box<dcap_qvl::QuoteClaims>, String),
    Rejected(ErrorKind),
}

async fn outcome(v: &TdxVerifier, quote: &[u8], at: u64) -> Outcome {
    match v.verify_quote(quote, UnixTime(at)).await {
        Ok(q) => Outcome::Accepted(
            Box::new(q.claims().clone()),
            format!("{:?}", q.collateral_key()),
        ),
        Err(e) => Outcome::Rejected(e.kind()),
    }
}

fn verifiers(s: &Subject) -> (TdxVerifier, TdxVerifier) {
    let source = Arc::new(StaticCollateral(Arc::new(s.collateral.clone())));
    let cached = TdxVerifier::with_root(s.root.clone(), source.clone()).unwrap();
    let full = TdxVerifier::with_root(s.root.clone(), source)
        .unwrap()
        .with_platform_cache(false);
    (cached, full)
}

/// The times to compare at: the subject's own, and one second before, at
/// and after each edge of the quote's validity (the latest issue and the
/// earliest expiry over every certificate, CRL and collateral item).
fn edge_times(s: &Subject, claims: Option<&dcap_qvl::QuoteClaims>) -> Vec<u64> {
    let mut edges = vec![s.collateral.issued, s.collateral.next_update];
    if let Some(c) = claims {
        edges.extend([c.latest_issue_date, c.earliest_expiration_date]);
    }
    let mut times = vec![s.at];
    for e in edges {
        times.extend([e - 1, e, e + 1]);
    }
    times.sort_unstable();
    times.dedup();
    times
}

/// One byte in each part of a quote: header, every body field, the
/// quote signature, the attestation key, the QE report, its signature, the
/// QE authentication data, the PCK chain and the padding.
fn one_flip_per_part(len: usize) -> Vec<usize> {
    let mut at = vec![0, 2, 4, 8, 12, 28, 47];
    // TD 1.0 body fields (v4 offsets; a v5 quote shifts them by 6, which
    // still lands in a field).
    at.extend([
        48, 64, 112, 160, 168, 176, 184, 232, 280, 328, 376, 424, 472, 520, 568, 600,
    ]);
    // Signature data: length, signature, attestation key, QE report and
    // what follows.
    at.extend([
        632, 636, 700, 764, 800, 1100, 1148, 1200, 1250, 2000, 3000, 4000,
    ]);
    at.push(len - 1);
    at.retain(|&i| i < len);
    at
}

/// Compares both paths on `quote` (and on its single-byte flips at `bytes`)
/// at time `t`; returns how many comparisons were made.
async fn compare_at(
    s: &Subject,
    cached: &TdxVerifier,
    full: &TdxVerifier,
    bytes: impl Iterator<Item = usize>,
    t: u64,
) -> usize {
    let mut n = 0;
    for i in std::iter::once(usize::MAX).chain(bytes) {
        let mut q = s.quote.clone();
        if let Some(b) = q.get_mut(i) {
            *b ^= 0x01;
        }
        let a = outcome(cached, &q, t).await;
        let b = outcome(full, &q, t).await;
        assert_eq!(
            a, b,
            "{}: flip of byte {i} at {t}: cached and full verification disagree",
            s.name
        );
        n += 1;
    }
    n
}

/// The differential comparison of one subject: every single-byte flip at
/// the times just inside the validity window (where the cache answers), and
/// at every edge time (inside, on and outside each edge) the unmodified
/// quote and a flip in each of its parts. Returns how many comparisons
/// fell where the cache could answer.
async fn compare(s: &Subject, expect_accepted: bool) -> usize {
    let (cached, full) = verifiers(s);
    // Fill the cache with the unmodified quote.
    let first = outcome(&cached, &s.quote, s.at).await;
    assert_eq!(
        matches!(first, Outcome::Accepted(..)),
        expect_accepted,
        "{}: {first:?}",
        s.name
    );
    let claims = match &first {
        Outcome::Accepted(c, _) => Some(c.as_ref().clone()),
        Outcome::Rejected(_) => None,
    };
    assert_eq!(
        cached.cached_platforms(),
        usize::from(expect_accepted),
        "{}",
        s.name
    );
    let mut inside_window = 0;
    if let Some(c) = &claims {
        for t in [c.latest_issue_date + 1, c.earliest_expiration_date - 1] {
            inside_window += compare_at(s, &cached, &full, 0..s.quote.len(), t).await;
        }
    }
    for t in edge_times(s, claims.as_ref()) {
        compare_at(
            s,
            &cached,
            &full,
            one_flip_per_part(s.quote.len()).into_iter(),
            t,
        )
        .await;
    }
    inside_window
}

fn real(name: &'static str, quote: &str, collateral: &str, at: u64) -> Subject {
    Subject {
        name,
        quote: attest_testkit::vectors::read(&format!("tdx/dcap-qvl/{quote}")),
        root: attest_tdx::INTEL_ROOT_CA_DER.to_vec(),
        collateral: Collateral::from_json(&attest_testkit::vectors::read(&format!(
            "tdx/dcap-qvl/{collateral}"
        )))
        .unwrap(),
        at,
    }
}

#[tokio::test]
async fn real_v4_quote_both_paths_agree() {
    let s = real(
        "v4 td10",
        "tdx_quote",
        "tdx_quote_collateral.json",
        1_752_919_234,
    );
    assert_eq!(compare(&s, true).await, 2 * (s.quote.len() + 1));
}

#[tokio::test]
async fn real_v5_td15ex_quote_both_paths_agree() {
    let s = real(
        "v5 td15ex",
        "tdx_quote_td15ex",
        "tdx_quote_td15ex_collateral.json",
        1_794_008_710,
    );
    assert_eq!(compare(&s, true).await, 2 * (s.quote.len() + 1));
}

#[tokio::test]
async fn real_outdated_quote_is_refused_by_both_paths() {
    let s = real(
        "v5 td15 outdated",
        "tdx_quote_outdated",
        "tdx_quote_outdated_collateral.json",
        1_774_003_274,
    );
    compare(&s, false).await;
}

fn testkit(name: &'static str, o: CollateralOptions, td: TdFields) -> (Subject, bool) {
    let pki = FakeIntelPki::new();
    let s = Subject {
        name,
        quote: pki.quote(&td),
        root: pki.root_der(),
        collateral: Collateral::new(pki.collateral(&o)).unwrap(),
        at: 1_751_000_000,
    };
    (s, true)
}

#[tokio::test]
async fn testkit_quotes_both_paths_agree() {
    let issued = 1_750_000_000;
    let out_of_date = CollateralOptions {
        tcb: PlatformTcb::OutOfDate,
        advisory_ids: vec!["INTEL-SA-00837".into()],
        ..CollateralOptions::valid_from(issued)
    };
    let revoked_pck = CollateralOptions {
        revoke_pck: true,
        ..CollateralOptions::valid_from(issued)
    };
    let cases = [
        testkit(
            "up to date",
            CollateralOptions::valid_from(issued),
            TdFields::default(),
        ),
        testkit(
            "out of date with an advisory",
            out_of_date,
            TdFields::default(),
        ),
        (
            testkit(
                "debug TD",
                CollateralOptions::valid_from(issued),
                TdFields::default().debug(),
            )
            .0,
            false,
        ),
        (
            testkit("revoked PCK", revoked_pck, TdFields::default()).0,
            false,
        ),
    ];
    for (s, accepted) in cases {
        compare(&s, accepted).await;
    }
}

/// Quotes of one platform that differ only in what a TD varies (its
/// measurements and report data) share one entry; a TD attribute, a TEE
/// TCB SVN or a new collateral set does not.
#[tokio::test]
async fn the_cache_key_covers_what_dcap_qvl_checks() {
    let pki = FakeIntelPki::new();
    let o = CollateralOptions::valid_from(1_750_000_000);
    let collateral = Arc::new(Collateral::new(pki.collateral(&o)).unwrap());
    let v = TdxVerifier::with_root(
        pki.root_der(),
        Arc::new(StaticCollateral(collateral.clone())),
    )
    .unwrap();
    let at = UnixTime(1_751_000_000);
    let td = TdFields::default();
    v.verify_quote(&pki.quote(&td), at).await.unwrap();
    let other_td = TdFields {
        mrtd: [0x77; 48],
        mr_config_id: [0x66; 48],
        rtmrs: [[9; 48]; 4],
        report_data: [0x55; 64],
        ..TdFields::default()
    };
    let q = v.verify_quote(&pki.quote(&other_td), at).await.unwrap();
    assert_eq!(q.quote().td10().mr_td, [0x77; 48]);
    assert_eq!(q.claims().report.as_td10().unwrap().report_data, [0x55; 64]);
    assert_eq!(v.cached_platforms(), 1);

    let newer_svn = TdFields {
        tee_tcb_svn: [4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ..TdFields::default()
    };
    v.verify_quote(&pki.quote(&newer_svn), at).await.unwrap();
    assert_eq!(v.cached_platforms(), 2);
    let xfam = TdFields {
        xfam: [0xe7, 0x02, 0x06, 0, 0, 0, 0, 1],
        ..TdFields::default()
    };
    v.verify_quote(&pki.quote(&xfam), at).await.unwrap();
    assert_eq!(v.cached_platforms(), 3);
    // A TD attribute dcap-qvl refuses never enters.
    let Err(err) = v
        .verify_quote(&pki.quote(&TdFields::default().debug()), at)
        .await
    else {
        panic!("a debug TD verified");
    };
    assert!(
        matches!(
            err,
            attest_core::AttestError::Insecure(attest_core::Insecure::Debug { .. })
        ),
        "{err}"
    );
    assert_eq!(v.cached_platforms(), 3);

    // The same platform under a new collateral set starts afresh.
    let newer = Arc::new(
        Collateral::new(pki.collateral(&CollateralOptions::valid_from(1_750_500_000))).unwrap(),
    );
    let v2 = TdxVerifier::with_root(pki.root_der(), Arc::new(StaticCollateral(newer))).unwrap();
    v2.verify_quote(&pki.quote(&td), at).await.unwrap();
    assert_eq!(v2.cached_platforms(), 1);

    // Switched off, nothing is kept.
    let off = TdxVerifier::with_root(pki.root_der(), Arc::new(StaticCollateral(collateral)))
        .unwrap()
        .with_platform_cache(false);
    off.verify_quote(&pki.quote(&td), at).await.unwrap();
    assert_eq!(off.cached_platforms(), 0);
}

/// A collateral source whose set can be replaced (a PCCS that published a
/// new TCB evaluation).
struct Switchable(std::sync::Mutex<Arc<Collateral>>);

#[async_trait::async_trait]
impl attest_tdx::collateral::CollateralSource for Switchable {
    async fn fetch(
        &self,
        _key: &attest_tdx::collateral::CollateralKey,
        _now: UnixTime,
    ) -> Result<Arc<Collateral>, attest_core::AttestError> {
        Ok(self.0.lock().unwrap().clone())
    }
}

/// A held platform answers the next quotes of it; when the collateral set
/// changes (here: the platform's TCB level goes out of date), the held
/// verdict is not used again.
#[tokio::test]
async fn a_held_platform_answers_until_the_collateral_changes() {
    let pki = FakeIntelPki::new();
    let issued = 1_750_000_000;
    let up_to_date =
        Arc::new(Collateral::new(pki.collateral(&CollateralOptions::valid_from(issued))).unwrap());
    let out_of_date = Arc::new(
        Collateral::new(pki.collateral(&CollateralOptions {
            tcb: PlatformTcb::OutOfDate,
            ..CollateralOptions::valid_from(issued)
        }))
        .unwrap(),
    );
    let source = Arc::new(Switchable(std::sync::Mutex::new(up_to_date)));
    let v = TdxVerifier::with_root(pki.root_der(), source.clone()).unwrap();
    let at = UnixTime(1_751_000_000);
    let quote = pki.quote(&TdFields::default());
    let status = |q: &attest_tdx::VerifiedQuote| q.claims().tcb.status;
    let first = v.verify_quote(&quote, at).await.unwrap();
    assert_eq!(status(&first), dcap_qvl::TcbStatus::UpToDate);
    assert_eq!(v.platform_cache_hits(), 0);
    let again = v.verify_quote(&quote, at).await.unwrap();
    assert_eq!(status(&again), dcap_qvl::TcbStatus::UpToDate);
    assert_eq!(v.platform_cache_hits(), 1);
    *source.0.lock().unwrap() = out_of_date;
    let after = v.verify_quote(&quote, at).await.unwrap();
    assert_eq!(status(&after), dcap_qvl::TcbStatus::OutOfDate);
    assert_eq!(v.platform_cache_hits(), 1);
    let cached_again = v.verify_quote(&quote, at).await.unwrap();
    assert_eq!(status(&cached_again), dcap_qvl::TcbStatus::OutOfDate);
    assert_eq!(v.platform_cache_hits(), 2);
}
