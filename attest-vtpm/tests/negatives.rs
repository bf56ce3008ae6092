//! The negatives of `reference/vtpm.md` §6 that do not need the hardware
//! report, on the real vectors where the signature allows it and on a
//! synthetic vTPM (a test AK) where the quote must be re-signed.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use attest_core::{Malformed, ReportData};
use attest_vtpm::{Container, Pcrs, TeeType, TpmsAttest, check_container, check_evidence};
use common::*;
use sha2::{Digest, Sha256};

#[test]
fn wrong_nonce_is_refused() {
    for (name, tee) in CONTAINERS {
        let c = checked(name, *tee);
        let good = c.nonce().to_vec();
        c.check_nonce(&good).unwrap();
        let mut flipped = good.clone();
        flipped[0] ^= 1;
        let mut longer = good.clone();
        longer.push(0);
        let shorter = &good[..good.len() - 1];
        for wrong in [&flipped[..], &longer[..], shorter, b"", &[0u8; 64][..]] {
            assert_refused(c.check_nonce(wrong), binding_mismatch);
        }
    }
}

#[test]
fn flipped_pcr_value_is_an_identity_mismatch() {
    for (name, tee) in CONTAINERS {
        let base = container(name);
        for i in 0..24 {
            for byte in [0, 31] {
                let mut pcrs = *base.tpm_quote().pcrs().as_array();
                pcrs[i][byte] ^= 1;
                let c = rebuild(&base, None, None, None, Some(Pcrs::new(pcrs)));
                assert_refused(check_container(c, *tee), pcr_digest_mismatch);
            }
        }
        // Two PCRs swapped: same multiset, wrong order.
        let mut pcrs = *base.tpm_quote().pcrs().as_array();
        pcrs.swap(0, 1);
        let c = rebuild(&base, None, None, None, Some(Pcrs::new(pcrs)));
        assert_refused(check_container(c, *tee), pcr_digest_mismatch);
    }
}

#[test]
fn flipped_signature_or_message_is_a_bad_signature() {
    for (name, tee) in CONTAINERS {
        let base = container(name);
        let mut sig = base.tpm_quote().signature().to_vec();
        sig[100] ^= 1;
        let c = rebuild(&base, None, None, Some(sig), None);
        assert_refused(check_container(c, *tee), hcl_ak_signature);
        let mut msg = base.tpm_quote().message().to_vec();
        msg[50] ^= 1; // inside the nonce
        let c = rebuild(&base, None, Some(msg), None, None);
        assert_refused(check_container(c, *tee), hcl_ak_signature);
        // Signature length must equal the modulus length.
        let mut sig = base.tpm_quote().signature().to_vec();
        sig.insert(0, 0);
        let c = rebuild(&base, None, None, Some(sig), None);
        assert!(matches!(
            malformed_detail(check_container(c, *tee)),
            attest_core::Malformed::BadLength {
                expected: 256,
                found: 257,
                ..
            }
        ));
    }
}

#[test]
fn flipped_ak_modulus_is_a_bad_signature() {
    // Trustee's negative: HCL byte 0x540 is inside the AK's `n` ('Q' → 'P').
    let base = container("evidence-v0.json");
    let mut hcl = base.hcl_report().to_vec();
    assert_eq!(hcl[0x540], b'Q');
    hcl[0x540] ^= 1;
    let c = rebuild(&base, Some(hcl), None, None, None);
    assert_refused(check_container(c, TeeType::Snp), hcl_ak_signature);
}

#[test]
fn flipped_claims_byte_breaks_the_binding() {
    for (name, tee) in CONTAINERS {
        let base = container(name);
        let good = check_container(base.clone(), *tee).unwrap();
        let hw = hardware_report_data(&good);
        // A byte inside vmUniqueId: the JSON stays valid, the digest changes.
        let hcl = good.hcl_report().raw();
        let needle = b"\"vmUniqueId\":\"";
        let at = hcl
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("vmUniqueId in the claims")
            + needle.len();
        let mut flipped = hcl.to_vec();
        flipped[at] ^= 1;
        let c = check_container(rebuild(&base, Some(flipped), None, None, None), *tee)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_ne!(c.expected_report_data(), good.expected_report_data());
        assert_refused(c.hcl_report().check_report_data(&hw), binding_mismatch);
    }
}

/// Rewrites a little-endian u32 of the HCL report.
fn with_u32(hcl: &[u8], off: usize, v: u32) -> Vec<u8> {
    let mut h = hcl.to_vec();
    h[off..off + 4].copy_from_slice(&v.to_le_bytes());
    h
}

#[test]
fn hcl_framing_is_enforced_on_real_reports() {
    let base = container("evidence-v1.json");
    let hcl = base.hcl_report();
    let vds = u32::from_le_bytes(hcl[0x4D0..0x4D4].try_into().unwrap());
    // The field each edit breaks, and what the report then holds there.
    let cases: Vec<(Vec<u8>, &str, Option<&str>)> = vec![
        (
            with_u32(hcl, 0x00, 0x414C_4349),
            "signature",
            Some("49434c41"),
        ),
        (with_u32(hcl, 0x04, 3), "header version", Some("3")),
        (with_u32(hcl, 0x08, 2347), "report_size", Some("2347")),
        (with_u32(hcl, 0x0C, 1), "request_type", Some("1")),
        (with_u32(hcl, 0x10, 1), "status", Some("1")),
        (with_u32(hcl, 0x18, 1), "reserved", None),
        (with_u32(hcl, 0x4C0, 1129), "data_size", Some("1129")),
        (with_u32(hcl, 0x4C4, 3), "request-data version", Some("3")),
        (with_u32(hcl, 0x4C8, 1), "report_type", Some("1 (VBS)")),
        (with_u32(hcl, 0x4C8, 3), "report_type", Some("3 (TVM)")),
        (with_u32(hcl, 0x4C8, 4), "report_type", Some("4 (TDX)")),
        (with_u32(hcl, 0x4CC, 2), "report_data_hash_type", Some("2")),
        (with_u32(hcl, 0x4CC, 3), "report_data_hash_type", Some("3")),
        (with_u32(hcl, 0x4D0, vds + 1), "data_size", None),
        (with_u32(hcl, 0x4D0, vds - 1), "data_size", None),
        (
            hcl[..hcl.len() - 1].iter().copied().chain([1]).collect(),
            "padding after the runtime claims",
            None,
        ),
    ];
    for (bytes, field, value) in cases {
        let c = rebuild(&base, Some(bytes), None, None, None);
        let (what, found) = match malformed_detail(check_container(c, TeeType::Snp)) {
            attest_core::Malformed::BadValue { what, found, .. } => (what, Some(found)),
            attest_core::Malformed::ReservedNonZero { field, .. } => {
                (format!("HCL report {field}"), None)
            }
            other => panic!("{field}: {other:?}"),
        };
        assert_eq!(what, format!("HCL report {field}"));
        if let Some(v) = value {
            assert_eq!(found.as_deref(), Some(v), "{field}");
        }
    }
    // The report type of the other TEE names both.
    assert_eq!(
        malformed_detail(check_container(
            rebuild(&base, Some(with_u32(hcl, 0x4C8, 4)), None, None, None),
            TeeType::Snp
        )),
        attest_core::Malformed::BadValue {
            what: "HCL report report_type".into(),
            expected: "2 (SNP)".into(),
            found: "4 (TDX)".into(),
        }
    );
    // Over 4 KiB: refused by the container and by the parser.
    let big_hcl = [hcl, &[0u8; 2000][..]].concat();
    assert_eq!(
        malformed_detail(Container::new(
            base.version(),
            base.tpm_quote().clone(),
            big_hcl.clone(),
            base.endorsement().clone(),
        ),),
        attest_core::Malformed::TooLarge {
            what: "hcl_report".into(),
            size: 4600,
            max: 4096,
        }
    );
    assert_refused(
        attest_vtpm::HclReport::parse(&big_hcl),
        |e| matches!(e.malformed(), Some(attest_core::Malformed::TooLarge { what, size: 4600, max: 4096 }) if what == "HCL report"),
    );
    // An oversized variable_data_size with data_size and report_size kept
    // consistent runs past the report.
    let big = vds + 2000;
    let h = with_u32(hcl, 0x4D0, big);
    let h = with_u32(&h, 0x4C0, big + 20);
    let h = with_u32(&h, 0x08, big + 20 + 0x20 + 1184);
    let c = rebuild(&base, Some(h), None, None, None);
    assert!(matches!(
        malformed_detail(check_container(c, TeeType::Snp)),
        attest_core::Malformed::LengthPastEnd { field, offset: 0x4D0, length: 3110, container: "the report", .. }
            if field == "variable_data_size"
    ));
    // Shortened by one with sizes consistent: the claims lose their last
    // byte and are no longer JSON (never trimmed, never padded).
    let h = with_u32(hcl, 0x4D0, vds - 1);
    let h = with_u32(&h, 0x4C0, vds - 1 + 20);
    let h = with_u32(&h, 0x08, vds - 1 + 20 + 0x20 + 1184);
    let mut h = h;
    h[0x4D4 + vds as usize - 1] = 0;
    let c = rebuild(&base, Some(h), None, None, None);
    assert_refused(
        check_container(c, TeeType::Snp),
        |e| matches!(e, attest_core::AttestError::Malformed(attest_core::Malformed::Within { location, inner }) if location == "HCL runtime claims" && matches!(**inner, attest_core::Malformed::Syntax { .. })),
    );
}

#[test]
fn pcr_list_must_have_24_values() {
    let doc: serde_json::Value = serde_json::from_slice(&read("evidence-v1.json")).unwrap();
    for n in [0usize, 23, 25] {
        let mut d = doc.clone();
        let pcrs = d["tpm_quote"]["pcrs"].as_array_mut().unwrap();
        pcrs.resize(n, serde_json::Value::String("00".repeat(32)));
        let bytes = serde_json::to_vec(&d).unwrap();
        assert_refused(check_evidence(&bytes, TeeType::Snp), |e| {
            if n > 24 {
                json_syntax(e, "tpm_quote.pcrs: more than 24 values")
            } else {
                matches!(e.malformed(), Some(attest_core::Malformed::BadValue { what, found, .. }) if what == "vTPM evidence tpm_quote.pcrs" && *found == n.to_string())
            }
        });
    }
    // A 31-byte or 33-byte PCR value.
    for len in [31usize, 33] {
        let mut d = doc.clone();
        d["tpm_quote"]["pcrs"][5] = serde_json::Value::String("00".repeat(len));
        let bytes = serde_json::to_vec(&d).unwrap();
        assert_refused(check_evidence(&bytes, TeeType::Snp), |e| {
            if len == 31 {
                matches!(e.malformed(), Some(attest_core::Malformed::BadLength { what, expected: 32, found: 31 }) if what == "vTPM evidence tpm_quote.pcrs[5]")
            } else {
                json_syntax(e, "tpm_quote.pcrs[]: 66 characters, more than 32 bytes")
            }
        });
    }
    // The v0 form: a PCR as an array of 33 numbers.
    let mut d: serde_json::Value = serde_json::from_slice(&read("evidence-v0.json")).unwrap();
    d["quote"]["pcrs"][3].as_array_mut().unwrap().push(0.into());
    let bytes = serde_json::to_vec(&d).unwrap();
    assert_refused(check_evidence(&bytes, TeeType::Snp), |e| {
        json_syntax(e, "tpm_quote.pcrs[]: more than 32 bytes")
    });
}

#[test]
fn container_shapes_are_strict() {
    let doc: serde_json::Value = serde_json::from_slice(&read("evidence-v1.json")).unwrap();
    let check = |d: &serde_json::Value, want: &dyn Fn(&Malformed) -> bool| {
        let bytes = serde_json::to_vec(d).unwrap();
        assert_refused(check_evidence(&bytes, TeeType::Snp), |e| {
            e.malformed().is_some_and(want)
        });
    };
    // serde's words for a field the container does not define.
    let unknown_field = |m: &Malformed| {
        matches!(m, Malformed::Syntax { what, detail }
            if what == "vTPM evidence JSON" && detail.starts_with("unknown field"))
    };
    let mut d = doc.clone();
    d["nonce"] = "x".into();
    check(&d, &unknown_field);
    let mut d = doc.clone();
    d["tpm_quote"]["extra"] = 1.into();
    check(&d, &unknown_field);
    let mut d = doc.clone();
    d["version"] = 0.into();
    check(&d, &|m| {
        *m == Malformed::BadValue {
            what: "vTPM evidence version".into(),
            expected: "1 or 2".into(),
            found: "0".into(),
        }
    });
    let mut d = doc.clone();
    d["version"] = serde_json::Value::Null;
    check(&d, &|m| {
        matches!(m, Malformed::Syntax { what, detail }
            if what == "vTPM evidence JSON" && detail.starts_with("invalid type: null"))
    });
    let mut d = doc.clone();
    d["td_quote"] = "AAAA".into();
    check(
        &d,
        &|m| matches!(m, Malformed::Unexpected { what: "members", detail } if detail.contains("exclude each other")),
    );
    let mut d = doc.clone();
    d["vcek"] = "AAAA".into();
    check(&d, &|m| {
        matches!(
            m,
            Malformed::TrailingData {
                context: "vcek",
                ..
            }
        )
    });
    let mut d = doc.clone();
    d.as_object_mut().unwrap().remove("hcl_report");
    check(
        &d,
        &|m| matches!(m, Malformed::Unexpected { what: "members", detail } if detail.contains("tpm_quote and hcl_report")),
    );
    // Upper-case hex is accepted (either case), base64 standard alphabet is
    // not base64url.
    let mut d = doc.clone();
    let m = d["tpm_quote"]["message"].as_str().unwrap().to_uppercase();
    d["tpm_quote"]["message"] = m.into();
    let bytes = serde_json::to_vec(&d).unwrap();
    check_evidence(&bytes, TeeType::Snp).unwrap();
    let mut d = doc.clone();
    let h = d["hcl_report"]
        .as_str()
        .unwrap()
        .replace('-', "+")
        .replace('_', "/");
    assert_ne!(&h, d["hcl_report"].as_str().unwrap());
    d["hcl_report"] = h.into();
    check(
        &d,
        &|m| matches!(m, Malformed::Syntax { what, .. } if what == "vTPM evidence hcl_report"),
    );
    // Unpadded base64url is accepted too.
    let mut d = doc.clone();
    let h = d["hcl_report"]
        .as_str()
        .unwrap()
        .trim_end_matches('=')
        .to_owned();
    d["hcl_report"] = h.into();
    let bytes = serde_json::to_vec(&d).unwrap();
    check_evidence(&bytes, TeeType::Snp).unwrap();
    // A v0 container with a DER-looking vcek string is refused.
    let mut d: serde_json::Value = serde_json::from_slice(&read("evidence-v0.json")).unwrap();
    d["vcek"] = "MIIF".into();
    check(&d, &|m| {
        matches!(m, Malformed::BadValue { what, expected, .. }
            if what == "vTPM evidence vcek" && expected == "a PEM certificate")
    });
}

// ---------------------------------------------------------------------------
// Synthetic vTPM: quotes re-signed by a test AK.

fn synth(
    rd: Option<&ReportData>,
    spec: impl FnOnce(&mut QuoteSpec<'_>),
    nonce: &[u8],
) -> Container {
    let pcrs = synth_pcrs();
    let mut s = QuoteSpec::new(nonce, &pcrs);
    spec(&mut s);
    synth_container(synth_hcl(TeeType::Snp, 1, &synth_claims(rd)), &s, pcrs)
}

#[test]
fn kms_binding_on_a_synthetic_vtpm() {
    let rd = ReportData([0x42; 64]);
    let nonce: [u8; 32] = Sha256::digest(rd.0).into();
    let c = check_container(synth(Some(&rd), |_| {}, &nonce), TeeType::Snp).unwrap();
    assert_eq!(c.bound_user_data().unwrap(), rd);
    c.check_kms_binding(&rd).unwrap();
    assert_eq!(c.claims().vm_configuration().tpm_persisted, Some(true));
    // Another request's report data.
    let other = ReportData([0x43; 64]);
    assert_refused(c.check_kms_binding(&other), binding_mismatch);
    // extraData not SHA-256(user-data): a truncated report data, or the hash
    // of another one.
    for wrong in [&rd.0[..32], &Sha256::digest(other.0)[..], &rd.0[..48]] {
        let c = check_container(synth(Some(&rd), |_| {}, wrong), TeeType::Snp).unwrap();
        assert_refused(c.bound_user_data(), binding_mismatch);
        assert_refused(c.check_kms_binding(&rd), binding_mismatch);
    }
    // No user-data: no binding.
    let c = check_container(synth(None, |_| {}, &nonce), TeeType::Snp).unwrap();
    assert_refused(c.check_kms_binding(&rd), |e| {
        matches!(
            e.malformed(),
            Some(attest_core::Malformed::Missing {
                what: "user-data",
                ..
            })
        )
    });
    // An empty nonce is real (P3) and matches only an empty expectation.
    let c = check_container(synth(None, |_| {}, b""), TeeType::Snp).unwrap();
    c.check_nonce(b"").unwrap();
    assert_refused(c.check_nonce(&[0]), binding_mismatch);
}

#[test]
fn request_data_version_2_on_a_synthetic_vtpm() {
    let rd = ReportData([7; 64]);
    let nonce: [u8; 32] = Sha256::digest(rd.0).into();
    let pcrs = synth_pcrs();
    let spec = QuoteSpec::new(&nonce, &pcrs);
    let claims = synth_claims(Some(&rd));
    let hcl = synth_hcl(TeeType::Tdx, 2, &claims);
    let mut c = synth_container(hcl, &spec, pcrs.clone());
    // A TDX report needs a TD quote.
    assert_refused(check_container(c.clone(), TeeType::Tdx), |e| {
        matches!(
            e.malformed(),
            Some(attest_core::Malformed::Unexpected { what: "vcek", .. })
        )
    });
    c = Container::new(
        c.version(),
        c.tpm_quote().clone(),
        c.hcl_report().to_vec(),
        attest_vtpm::Endorsement::TdQuote(vec![4, 0]),
    )
    .unwrap();
    let checked = check_container(c, TeeType::Tdx).unwrap();
    assert_eq!(checked.hcl_report().request_data_version(), 2);
    assert_eq!(checked.hcl_report().claims(), &claims[..]);
    assert_eq!(
        checked.hcl_report().claims_digest(),
        &<[u8; 32]>::from(Sha256::digest(&claims))
    );
    checked.check_kms_binding(&rd).unwrap();
    assert_eq!(
        checked.ak_digest(),
        &<[u8; 32]>::from(Sha256::digest(&test_ak().n))
    );
}

#[test]
fn signed_quotes_outside_the_profile_are_refused() {
    let nonce = b"nonce";
    type Edit = Box<dyn Fn(&mut QuoteSpec<'_>)>;
    use attest_core::Malformed;
    let field = |field: &'static str, expected: &str, found: &str| Malformed::TpmField {
        structure: "TPMS_ATTEST",
        field,
        expected: expected.into(),
        found: found.into(),
    };
    let selection = |found: [u8; 3]| Malformed::PcrSelection {
        field: "TPMS_ATTEST pcrSelect.pcrSelect",
        expected: vec![0xff; 3],
        found: found.to_vec(),
    };
    let count = |n: &str| field("pcrSelect.count", "1 selection (sha256:0-23)", n);
    let hash = |h: &str| field("pcrSelect.hash", "000b (SHA-256)", h);
    let message_len = QuoteSpec::new(nonce, &synth_pcrs()).build().len();
    let cases: Vec<(Edit, Malformed)> = vec![
        (
            Box::new(|s| s.selection = vec![0x00, 0x0b, 3, 0xff, 0x40, 0x00]),
            selection([0xff, 0x40, 0x00]),
        ),
        (
            Box::new(|s| s.selection = vec![0x00, 0x0b, 3, 0xff, 0xff, 0x7f]),
            selection([0xff, 0xff, 0x7f]),
        ),
        (
            Box::new(|s| {
                // Two selections: sha256:0-23 and sha1:0-23.
                s.count = 2;
                s.selection = vec![
                    0x00, 0x0b, 3, 0xff, 0xff, 0xff, 0x00, 0x04, 3, 0xff, 0xff, 0xff,
                ];
            }),
            count("2"),
        ),
        (Box::new(|s| s.count = 0), count("0")),
        (
            Box::new(|s| s.selection = vec![0x00, 0x04, 3, 0xff, 0xff, 0xff]),
            hash("0004"),
        ),
        (
            Box::new(|s| s.selection = vec![0x00, 0x0c, 3, 0xff, 0xff, 0xff]),
            hash("000c"),
        ),
        (
            Box::new(|s| s.selection = vec![0x00, 0x0b, 4, 0xff, 0xff, 0xff, 0x00]),
            field("pcrSelect.sizeofSelect", "3", "4"),
        ),
        (
            Box::new(|s| s.trailing = vec![0]),
            Malformed::TrailingData {
                context: "TPMS_ATTEST",
                offset: message_len,
                extra: 1,
            },
        ),
        (
            Box::new(|s| s.magic = 0xFF54_4348),
            field("magic", "ff544347", "ff544348"),
        ),
        (
            Box::new(|s| s.st = 0x8014),
            field("type", "8018 (ATTEST_QUOTE)", "8014"),
        ),
        (
            Box::new(|s| s.pcr_digest = vec![0; 48]),
            Malformed::TooLarge {
                what: "TPMS_ATTEST pcrDigest".into(),
                size: 48,
                max: 32,
            },
        ),
        (
            Box::new(|s| s.pcr_digest = vec![0; 20]),
            field("pcrDigest", "32 bytes (SHA-256)", "20"),
        ),
    ];
    for (edit, want) in cases {
        let c = synth(None, edit, nonce);
        assert_eq!(malformed_detail(check_container(c, TeeType::Snp)), want);
    }
    // The same builder, untouched, passes: the refusals above are the edits.
    check_container(synth(None, |_| {}, nonce), TeeType::Snp).unwrap();
    // extraData over the bound.
    let long = [1u8; 65];
    assert_eq!(
        malformed_detail(check_container(synth(None, |_| {}, &long), TeeType::Snp)),
        attest_core::Malformed::TooLarge {
            what: "TPMS_ATTEST extraData".into(),
            size: 65,
            max: 64,
        }
    );
    // clockInfo.safe must be a TPM boolean.
    let pcrs = synth_pcrs();
    let mut m = QuoteSpec::new(nonce, &pcrs).build();
    let safe_at = 4 + 2 + 2 + 34 + 2 + nonce.len() + 16;
    assert_eq!(m[safe_at], 1);
    m[safe_at] = 2;
    assert_refused(
        TpmsAttest::parse(&m),
        |e| matches!(e.malformed(), Some(attest_core::Malformed::TpmField { structure: "TPMS_ATTEST", field: "clockInfo.safe", found, .. }) if found == "2"),
    );
}
