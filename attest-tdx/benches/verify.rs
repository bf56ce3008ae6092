//! `TdxVerifier` against a raw dcap-qvl call on the same quote and
//! collateral, in the same run: warm (collateral cached, the platform
//! verified once, so a quote costs its own signature), and uncached (the
//! verified-platform cache off: the cost of a platform's first quote).
//! Target: warm ≤ 0.30x raw dcap-qvl (aim 0.15x).
//!
//! The real v4 quote of `../shared/vectors/tdx/dcap-qvl` is used for the
//! quote-verification comparison; the full `verify` path (quote + event log
//! replay + identity) is measured on a testkit quote with a dstack JSON log.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use attest_core::{Attestation, Evidence, PlatformId, ReportData, UnixTime, VerifyContext};
use attest_tdx::collateral::{QuoteCollateralV3, StaticCollateral};
use attest_tdx::{CachedCollateral, Collateral, TdxVerifier};
use attest_testkit::dstack::App;
use attest_testkit::tdx::{CollateralOptions, FakeIntelPki, TdFields};
use criterion::{Criterion, criterion_group, criterion_main};

const AT: u64 = 1_752_919_234;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let quote = attest_testkit::vectors::read("tdx/dcap-qvl/tdx_quote");
    let json = attest_testkit::vectors::read("tdx/dcap-qvl/tdx_quote_collateral.json");
    let raw_collateral: QuoteCollateralV3 = serde_json::from_slice(&json).unwrap();

    // Warm cache: the first fetch fills it, every later one is a hit.
    let collateral = Arc::new(Collateral::from_json(&json).unwrap());
    let cache = Arc::new(
        CachedCollateral::new(
            Arc::new(StaticCollateral(collateral)),
            attest_tdx::INTEL_ROOT_CA_DER,
        )
        .unwrap(),
    );
    let verifier = TdxVerifier::new(cache.clone()).unwrap();
    rt.block_on(verifier.verify_quote(&quote, UnixTime(AT)))
        .unwrap();
    let uncached = TdxVerifier::new(cache).unwrap().with_platform_cache(false);
    let ctx = VerifyContext::without_report_data(UnixTime(AT));

    let mut g = c.benchmark_group("tdx_verify");
    g.sample_size(50);
    g.bench_function("raw_dcap_qvl", |b| {
        b.iter(|| {
            black_box(dcap_qvl::verify::verify(black_box(&quote), &raw_collateral, AT).unwrap())
        })
    });
    g.bench_function("plugin_warm", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(verifier.verify_quote_only(black_box(&quote), &ctx))
                    .unwrap(),
            )
        })
    });
    g.bench_function("plugin_uncached", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(uncached.verify_quote_only(black_box(&quote), &ctx))
                    .unwrap(),
            )
        })
    });

    // Full Attestation::verify on a testkit quote with a dstack event log.
    let pki = FakeIntelPki::new();
    let app = App::example();
    let (log, rtmr3) = app.tdx_event_log();
    let td = TdFields {
        rtmrs: [[0; 48], [0; 48], [0; 48], rtmr3],
        report_data: [7; 64],
        ..Default::default()
    };
    let fake_collateral =
        Collateral::new(pki.collateral(&CollateralOptions::valid_from(1_750_000_000))).unwrap();
    let fake = TdxVerifier::with_root(
        pki.root_der(),
        Arc::new(StaticCollateral(Arc::new(fake_collateral.clone()))),
    )
    .unwrap();
    let mut evidence = Evidence::new(PlatformId::TDX, pki.quote(&td));
    evidence.event_log = log;
    let fctx = VerifyContext::new(ReportData([7; 64]), UnixTime(1_751_000_000));
    rt.block_on(fake.verify(&evidence, &fctx)).unwrap();
    g.bench_function("testkit_raw_dcap_qvl_verify", |b| {
        let qv = dcap_qvl::verify::QuoteVerifier::new(pki.root_der());
        b.iter(|| {
            black_box(
                qv.verify(
                    black_box(&evidence.quote),
                    &fake_collateral.data,
                    1_751_000_000,
                )
                .unwrap(),
            )
        })
    });
    g.bench_function("testkit_plugin_full_verify", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(fake.verify(black_box(&evidence), &fctx))
                    .unwrap(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
