//! Hostile lengths are refused before anything is allocated for them.
//!
//! A counting global allocator (this test binary only) records the largest
//! single allocation made on the test's thread while a decoder runs on input
//! that declares a gigabyte-sized element.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use dstack_compat::{CertSigningRequest, VersionedAttestation};

struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
}

fn note(size: usize) {
    if TRACKING.with(Cell::get) {
        LARGEST.fetch_max(size, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// wrapper only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The largest allocation `f` makes on this thread.
fn largest_allocation(f: impl FnOnce()) -> usize {
    LARGEST.store(0, Ordering::Relaxed);
    TRACKING.with(|t| t.set(true));
    f();
    TRACKING.with(|t| t.set(false));
    LARGEST.load(Ordering::Relaxed)
}

const GIB_COMPACT: [u8; 5] = [0x03, 0, 0, 0, 0x40]; // 2^30
const LIMIT: usize = 4096;

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
