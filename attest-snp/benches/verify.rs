//! `SnpVerifier` with a warm cache (the VCEK's chain checked once, so one
//! P-384 check per report) against the `sev` crate's own path (parse,
//! `Chain::verify`, report verify) on the same report, and against one bare
//! P-384 signature check, in the same run. Targets: at least 20x faster than
//! the sev path, within 1.3x of one bare P-384 check.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;

use attest_core::app_config::host_data;
use attest_core::{Attestation, Evidence, PlatformId, ReportData, UnixTime, VerifyContext};
use attest_snp::{Product, ProductRoots, Roots, SnpConfig, SnpVerifier, Vek};
use attest_testkit::dstack::App;
use attest_testkit::snp::{self as kit, FakeAmdPki, ReportFields};
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};
use criterion::{Criterion, criterion_group, criterion_main};
use sev::certs::snp::{Certificate, Chain, Verifiable, ca};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let report = attest_testkit::vectors::read("snp/reports/milan-v2-a.report.bin");
    let vcek = attest_testkit::vectors::read("snp/reports/milan-v2-a.vcek.der");
    let mut evidence = Evidence::new(PlatformId::SEV_SNP, report.clone());
    evidence.certificates = vcek.clone();
    let ctx = VerifyContext::without_report_data(UnixTime(1_740_000_000));
    let verifier = SnpVerifier::new(vec![], SnpConfig::default()).unwrap();
    rt.block_on(verifier.verify_report(&evidence, &ctx))
        .unwrap();

    let mut g = c.benchmark_group("snp_verify");
    g.sample_size(30);
    g.bench_function("plugin_verify_report_warm", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(verifier.verify_report(black_box(&evidence), &ctx))
                    .unwrap()
                    .product(),
            )
        })
    });
    g.bench_function("sev_crate_parse_chain_verify", |b| {
        b.iter(|| {
            let r = AttestationReport::from_bytes(black_box(&report)).unwrap();
            let chain = Chain {
                ca: ca::Chain {
                    ark: sev::certs::snp::builtin::milan::ark().unwrap(),
                    ask: sev::certs::snp::builtin::milan::ask().unwrap(),
                },
                vek: Certificate::from_der(&vcek).unwrap(),
            };
            (&chain, &r).verify().unwrap();
        })
    });
    let key = Vek::parse(&vcek).unwrap().public_key;
    let mut sig = [0u8; 96];
    for i in 0..48 {
        sig[i] = report[0x2A0 + 47 - i];
        sig[48 + i] = report[0x2E8 + 47 - i];
    }
    g.bench_function("bare_p384_aws_lc_rs", |b| {
        b.iter(|| {
            UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &key)
                .verify(black_box(&report[..0x2A0]), &sig)
                .unwrap()
        })
    });

    // Full Attestation::verify (with the dstack app config) on a testkit report.
    let pki = FakeAmdPki::new();
    let app = App::example();
    let fields = ReportFields {
        host_data: host_data(&app.app_config_v3()),
        report_data: [5; 64],
        ..Default::default()
    };
    let mut roots = HashMap::new();
    roots.insert(
        Product::Genoa,
        ProductRoots::from_pem(
            pki.ark_pem(kit::Product::Genoa).as_bytes(),
            pki.ask_pem(kit::Product::Genoa).as_bytes(),
            pki.asvk_pem(kit::Product::Genoa).as_bytes(),
        )
        .unwrap(),
    );
    let fake = SnpVerifier::with_roots(Roots::custom(roots), vec![], SnpConfig::default());
    let mut e = Evidence::new(PlatformId::SEV_SNP, pki.report(&fields));
    e.certificates = pki.vek_der(&fields);
    e.app_config = app.app_config_v3();
    let fctx = VerifyContext::new(ReportData([5; 64]), UnixTime(1_760_000_000));
    rt.block_on(fake.verify(&e, &fctx)).unwrap();
    g.bench_function("testkit_plugin_full_verify_warm", |b| {
        b.iter(|| black_box(rt.block_on(fake.verify(black_box(&e), &fctx)).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
