//! Hostile lengths are refused before anything is allocated for them.
//!
//! An instrumented global allocator (this test binary only) counts the
//! bytes allocated while a decoder runs on input that declares a
//! gigabyte-sized element.
#![allow(clippy::unwrap_used, missing_docs)]

use std::alloc::System;

use dstack_compat::{CertSigningRequest, VersionedAttestation};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

// An instrumenting allocator (stats_alloc holds the only unsafe code; the
// workspace forbids it here). This binary has one test, so the global
// counters see only the decoder under test.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes `f` allocated in all.
fn largest_allocation(f: impl FnOnce()) -> usize {
    let region = Region::new(GLOBAL);
    f();
    region.change().bytes_allocated
}

const GIB_COMPACT: [u8; 5] = [0x03, 0, 0, 0, 0x40]; // 2^30
const LIMIT: usize = 64 * 1024;

#[test]
fn gigabyte_lengths_allocate_nothing_of_that_size() {
    // The counter works: a real 5000-byte quote is allocated.
    let ok = [
        &[0u8, 0, 0x21, 0x4e][..],
        &[0; 5000],
        &[0, 0],
        &[0; 64],
        &[0],
    ]
    .concat();
    let largest = largest_allocation(|| assert!(VersionedAttestation::decode(&ok).is_ok()));
    assert!(largest >= 5000, "the counter saw {largest} bytes");

    let mut cases: Vec<Vec<u8>> = Vec::new();
    // V0: the quote, the event log and the runtime-event list.
    for prefix in [&[0u8, 0][..], &[0, 0, 0], &[0, 0, 0, 0]] {
        let mut b = prefix.to_vec();
        b.extend_from_slice(&GIB_COMPACT);
        b.extend_from_slice(&[0; 64]);
        cases.push(b);
    }
    // V0 SNP: the certificate chain and one certificate.
    cases.push([&[0u8, 3][..], &GIB_COMPACT, &[0; 8]].concat());
    // V1: bin32, array32 and map32 of 2^31 in the top-level map.
    for head in [
        [0xc6u8, 0x80, 0, 0, 0],
        [0xdd, 0x80, 0, 0, 0],
        [0xdf, 0x80, 0, 0, 0],
    ] {
        let mut b = vec![0x81, 0xa7];
        b.extend_from_slice(b"version");
        b.extend_from_slice(&head);
        b.extend_from_slice(&[0; 64]);
        cases.push(b);
    }
    for case in &cases {
        let mut result = None;
        let largest = largest_allocation(|| result = Some(VersionedAttestation::decode(case)));
        assert!(result.unwrap().is_err(), "{case:02x?}");
        assert!(largest < LIMIT, "{case:02x?}: allocated {largest} bytes");
    }
    // A CSR whose pubkey claims 2^30 bytes.
    let mut csr = vec![0x44];
    csr.extend_from_slice(b"please sign cert:");
    csr.extend_from_slice(&GIB_COMPACT);
    csr.extend_from_slice(&[0; 64]);
    let mut result = None;
    let largest = largest_allocation(|| result = Some(CertSigningRequest::decode(2, &csr)));
    assert!(result.unwrap().is_err());
    assert!(largest < LIMIT, "CSR: allocated {largest} bytes");
}
