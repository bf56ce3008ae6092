//! The fixed per-request cost of answering GetAppKey besides verification:
//! sealing the app keys (HPKE) and signing the response (root CA, P-256).
//! The seal is measured with the `hpke` crate's own X25519 (x25519-dalek,
//! what guests open with) and with the aws-lc X25519 the KMS seals with.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use attest_core::AppId;
use criterion::{Criterion, criterion_group, criterion_main};
use kms::seal;
use kms::service::kem::X25519AwsLc;
use kms::service::keys::RootKeys;

fn bench(c: &mut Criterion) {
    let (_, pk) = seal::client_keypair();
    let app = AppId([1; 20]);
    let aad = [2u8; 32];
    // About the size of an encoded AppKeys message with its CA certificate.
    let plaintext = vec![0u8; 1200];
    let keys = RootKeys::generate().unwrap();
    let mut g = c.benchmark_group("get_app_key_response");
    g.bench_function("hpke_seal_x25519_chacha20poly1305", |b| {
        b.iter(|| black_box(seal::seal(&pk, &app, &aad, black_box(&plaintext)).unwrap()))
    });
    g.bench_function("hpke_seal_x25519_aws_lc_chacha20poly1305", |b| {
        b.iter(|| {
            black_box(
                seal::seal_with::<X25519AwsLc>(&pk, &app, &aad, black_box(&plaintext)).unwrap(),
            )
        })
    });
    g.bench_function("p256_response_signature_aws_lc_rs", |b| {
        b.iter(|| black_box(keys.sign_with_ca(black_box(&plaintext)).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
