//! Truncation at every length and single-byte flips (XOR 0x01) of every
//! part of every real container: nothing panics, and each mutation is
//! refused or leaves the result unchanged (up to the hardware report,
//! which the caller verifies next).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use attest_core::AttestError;
use attest_vtpm::{CheckedVtpm, Container, TeeType, check_container, hcl::TEE_REPORT_OFFSET};
use common::*;

/// What a later step takes from a checked container, except the HCL and
/// hardware report bytes.
fn result(c: &CheckedVtpm) -> impl PartialEq + std::fmt::Debug {
    (
        *c.hcl_report().claims_digest(),
        *c.ak_digest(),
        c.pcrs().clone(),
        c.nonce().to_vec(),
        c.tpm_message().to_vec(),
        c.clock_info(),
        c.firmware_version(),
        c.endorsement().clone(),
        c.claims().clone(),
    )
}

fn run(c: Container, tee: TeeType) -> Result<CheckedVtpm, AttestError> {
    check_container(c, tee)
}

#[test]
fn truncated_parts_are_refused_or_unchanged() {
    for (name, tee) in CONTAINERS {
        let base = container(name);
        let good = run(base.clone(), *tee).unwrap();
        let q = base.tpm_quote();
        for len in 0..q.message().len() {
            let c = rebuild(&base, None, Some(q.message()[..len].to_vec()), None, None);
            assert!(run(c, *tee).is_err(), "{name}: message cut at {len}");
        }
        for len in 0..q.signature().len() {
            let c = rebuild(&base, None, None, Some(q.signature()[..len].to_vec()), None);
            assert!(run(c, *tee).is_err(), "{name}: signature cut at {len}");
        }
        let hcl = base.hcl_report();
        let claims_end = 0x4D4 + good.hcl_report().claims().len();
        for len in 0..hcl.len() {
            let c = rebuild(&base, Some(hcl[..len].to_vec()), None, None, None);
            match run(c, *tee) {
                Err(_) => assert!(len < claims_end, "{name}: HCL cut at {len} refused"),
                // Only zero padding was cut.
                Ok(c) => {
                    assert!(len >= claims_end, "{name}: HCL cut at {len} accepted");
                    assert_eq!(result(&c), result(&good));
                    assert_eq!(c.hcl_report().tee_report(), good.hcl_report().tee_report());
                }
            }
        }
    }
}

#[test]
fn flipped_bytes_are_refused_or_unchanged() {
    for (name, tee) in CONTAINERS {
        let base = container(name);
        let good = run(base.clone(), *tee).unwrap();
        let q = base.tpm_quote();
        for i in 0..q.message().len() {
            let mut m = q.message().to_vec();
            m[i] ^= 1;
            let c = rebuild(&base, None, Some(m), None, None);
            assert!(run(c, *tee).is_err(), "{name}: message byte {i}");
        }
        for i in 0..q.signature().len() {
            let mut s = q.signature().to_vec();
            s[i] ^= 1;
            let c = rebuild(&base, None, None, Some(s), None);
            assert!(run(c, *tee).is_err(), "{name}: signature byte {i}");
        }
        let hcl = base.hcl_report();
        let slot = TEE_REPORT_OFFSET..TEE_REPORT_OFFSET + 1184;
        let (mut refused, mut in_slot, mut unbound) = (0, 0, 0);
        for i in 0..hcl.len() {
            let mut h = hcl.to_vec();
            h[i] ^= 1;
            let c = rebuild(&base, Some(h.clone()), None, None, None);
            let claims = 0x4D4..0x4D4 + good.hcl_report().claims().len();
            let Ok(c) = run(c, *tee) else {
                refused += 1;
                continue;
            };
            // Header, request-data fields and padding: always refused.
            assert!(
                slot.contains(&i) || claims.contains(&i),
                "{name}: HCL framing byte {i:#x} flipped and accepted"
            );
            if slot.contains(&i) {
                // The hardware report changed and nothing else: the SNP
                // report's signature (or, on TDX, the TD quote, which did
                // not change) decides.
                in_slot += 1;
                assert_eq!(result(&c), result(&good), "{name}: HCL byte {i:#x}");
                assert_eq!(c.hcl_report().tee_report(), &h[slot.clone()]);
            } else {
                // Different claims: the hardware report no longer binds them.
                unbound += 1;
                assert!(
                    c.hcl_report()
                        .check_report_data(&hardware_report_data(&c))
                        .is_err(),
                    "{name}: HCL byte {i:#x} flipped and still bound"
                );
            }
        }
        assert_eq!(refused + in_slot + unbound, hcl.len());
        assert!(refused > hcl.len() - 1184 - good.hcl_report().claims().len());
        assert!(unbound > 0, "{name}");
        match tee {
            TeeType::Snp => assert_eq!(in_slot, 1184, "{name}"),
            // After the 1024-byte TDREPORT the slot must be zero.
            TeeType::Tdx => assert_eq!(in_slot, 1024, "{name}"),
        }
    }
}

#[test]
fn truncated_documents_are_refused_or_unchanged() {
    for (name, tee) in CONTAINERS {
        let doc = read(name);
        let good = attest_vtpm::check_evidence(&doc, *tee).unwrap();
        // Every length of the v1 documents; a stride through the larger v0
        // ones (plus every length of their last 256 bytes).
        let step = if doc.len() > 16 * 1024 { 13 } else { 1 };
        let lens = (0..doc.len())
            .step_by(step)
            .chain(doc.len().saturating_sub(256)..doc.len());
        for len in lens {
            match attest_vtpm::check_evidence(&doc[..len], *tee) {
                Err(_) => {}
                Ok(c) => {
                    // Only trailing whitespace can go.
                    assert!(
                        doc[len..].iter().all(u8::is_ascii_whitespace),
                        "{name} at {len}"
                    );
                    assert_eq!(result(&c), result(&good));
                }
            }
        }
    }
}

#[test]
fn bincode_quote_truncations_and_flips() {
    use attest_vtpm::{TpmQuote, TpmsAttest};
    let bin = read("quote.bin");
    let good = TpmQuote::from_bincode(&bin).unwrap();
    for len in 0..bin.len() {
        assert!(TpmQuote::from_bincode(&bin[..len]).is_err(), "cut at {len}");
    }
    // Layout: u64 len, 256-byte signature, u64 len, 122-byte message, u64
    // count, 24 × 32 PCR bytes.
    let lengths = [0..8, 264..272, 394..402];
    for i in 0..bin.len() {
        let mut b = bin.clone();
        b[i] ^= 1;
        let decoded = TpmQuote::from_bincode(&b);
        if lengths.iter().any(|r| r.contains(&i)) {
            assert!(decoded.is_err(), "length byte {i}");
            continue;
        }
        let q = decoded.unwrap_or_else(|e| panic!("content byte {i}: {e}"));
        assert_ne!(q, good, "byte {i}");
        if i >= 402 {
            // A supplied PCR changed: the signed digest refuses it.
            let a = TpmsAttest::parse(q.message()).unwrap();
            assert_refused(a.check_pcrs(q.pcrs()), pcr_digest_mismatch);
        } else {
            // The signature or the signed message changed; with no AK for
            // this quote the container sweeps show the signature refusing it.
            assert_eq!(q.pcrs(), good.pcrs(), "byte {i}");
        }
    }
}

/// Each parser on its own: every prefix of a real TPMS_ATTEST, HCL report
/// and (the smaller) container documents is a typed `Malformed` error, or,
/// for the HCL report, a cut in its zero padding only, or, for a document,
/// a cut of trailing whitespace only.
#[test]
fn every_prefix_is_malformed_for_each_parser() {
    use attest_core::ErrorKind;
    use attest_vtpm::{HclReport, TpmsAttest};
    for (name, tee) in CONTAINERS {
        let base = container(name);
        let message = base.tpm_quote().message();
        TpmsAttest::parse(message).unwrap();
        for len in 0..message.len() {
            let e = TpmsAttest::parse(&message[..len]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Malformed, "{name}: cut at {len}: {e}");
        }
        let hcl = base.hcl_report();
        let good = HclReport::parse(hcl).unwrap();
        for len in 0..hcl.len() {
            match HclReport::parse(&hcl[..len]) {
                Err(e) => assert_eq!(e.kind(), ErrorKind::Malformed, "{name}: HCL at {len}: {e}"),
                Ok(h) => {
                    assert!(hcl[len..].iter().all(|b| *b == 0), "{name}: HCL at {len}");
                    assert_eq!(h.claims(), good.claims());
                    assert_eq!(h.tee(), *tee);
                }
            }
        }
        let doc = read(name);
        if doc.len() > 16 * 1024 {
            continue; // the v0 arrays: covered by the stride above
        }
        for len in 0..doc.len() {
            match Container::parse(&doc[..len]) {
                Err(e) => assert_eq!(e.kind(), ErrorKind::Malformed, "{name}: doc at {len}: {e}"),
                Ok(_) => assert!(
                    doc[len..].iter().all(u8::is_ascii_whitespace),
                    "{name}: doc at {len}"
                ),
            }
        }
    }
}
