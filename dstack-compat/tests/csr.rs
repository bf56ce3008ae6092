//! SignCert requests: dstack's pinned V2 encoding, signed V2 and V1
//! requests built with parity-scale-codec, and the ways they fail.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use attest_core::{AttestError, BadSignature, ErrorKind, Malformed, PlatformId, ReportData};
use common::{ByteMode, lite_attestation, scale_with_report_data, vector};
use dstack_compat::csr::CSR_CONFIRM;
use dstack_compat::{
    CertConfig, CertSigningRequest, CsrVersion, GuestAttestation, PlatformQuote, SignedCsr,
    VersionedAttestation, ratls_report_data,
};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use parity_scale_codec::Encode;

#[derive(Encode, Clone)]
struct CertConfigV2 {
    org_name: Option<String>,
    subject: String,
    subject_alt_names: Vec<String>,
    usage_server_auth: bool,
    usage_client_auth: bool,
    ext_quote: bool,
    ext_app_info: bool,
    not_before: Option<u64>,
    not_after: Option<u64>,
}

/// `CertSigningRequestV2` without its attestation, which follows as raw
/// bytes to the end of the input.
#[derive(Encode)]
struct CsrV2Head {
    confirm: String,
    pubkey: Vec<u8>,
    config: CertConfigV2,
}

#[derive(Encode)]
struct CertConfigV1 {
    org_name: Option<String>,
    subject: String,
    subject_alt_names: Vec<String>,
    usage_server_auth: bool,
    usage_client_auth: bool,
    ext_quote: bool,
}

#[derive(Encode)]
struct CsrV1 {
    confirm: String,
    pubkey: Vec<u8>,
    config: CertConfigV1,
    quote: Vec<u8>,
    event_log: Vec<u8>,
}

/// `test_csr_v2_scale_encoding_stable` in dstack's `ra-tls/src/cert.rs`, as
/// `dstack-wire.md` §2.1 quotes it: `44…3a 0c010203 00 40
/// 746573742e6578616d706c652e636f6d 00 01 00 00 00 00 00 | 00 00 00 00 00
/// <64×00> 00`, the `…` being the rest of `"please sign cert:"`.
fn pinned_v2() -> Vec<u8> {
    let text = format!(
        "44{}0c0102030040{}00010000000000{}{}00",
        hex::encode("please sign cert:"),
        hex::encode("test.example.com"),
        "0000000000",
        "00".repeat(64)
    );
    hex::decode(text).unwrap()
}

fn pinned_config() -> CertConfigV2 {
    CertConfigV2 {
        org_name: None,
        subject: "test.example.com".into(),
        subject_alt_names: vec![],
        usage_server_auth: true,
        usage_client_auth: false,
        ext_quote: false,
        ext_app_info: false,
        not_before: None,
        not_after: None,
    }
}

#[test]
fn dstacks_pinned_v2_encoding_decodes() {
    let bytes = pinned_v2();
    // parity-scale-codec agrees on the layout.
    let mut model = CsrV2Head {
        confirm: CSR_CONFIRM.into(),
        pubkey: vec![1, 2, 3],
        config: pinned_config(),
    }
    .encode();
    model.extend(
        common::ScaleVersioned::V0 {
            attestation: common::ScaleAttestation {
                quote: common::ScaleQuote::Tdx {
                    quote: vec![],
                    event_log: vec![],
                },
                runtime_events: vec![],
                report_data: [0; 64],
                config: String::new(),
            },
        }
        .encode(),
    );
    assert_eq!(model, bytes);

    let csr = CertSigningRequest::decode(2, &bytes).unwrap();
    assert_eq!(csr.version(), CsrVersion::V2);
    assert_eq!(csr.pubkey(), &[1, 2, 3]);
    assert_eq!(csr.encoded(), bytes.as_slice());
    // The attestation, as encoded: the 68 bytes after the config.
    let att = csr.attestation_bytes().unwrap();
    assert_eq!(att.len(), 2 + 1 + 1 + 1 + 64 + 1);
    assert_eq!(att, &bytes[bytes.len() - att.len()..]);
    assert_eq!(
        csr.config(),
        &CertConfig {
            org_name: None,
            subject: "test.example.com".into(),
            subject_alt_names: vec![],
            usage_server_auth: true,
            usage_client_auth: false,
            ext_quote: false,
            ext_app_info: false,
            not_before: None,
            not_after: None,
        }
    );
    let GuestAttestation::Versioned(a) = csr.attestation() else {
        panic!("not versioned")
    };
    assert_eq!(a.platform(), PlatformId::TDX);
    assert_eq!(a.report_data(), &ReportData([0; 64]));
    assert!(a.runtime_events().is_empty() && a.config().is_empty());
    let PlatformQuote::Tdx(t) = a.quote() else {
        panic!()
    };
    assert!(t.quote.is_empty() && t.event_log.is_empty());
    // [1, 2, 3] is no key: the signature cannot be checked.
    let e = csr.verify_signature(&[0x30, 0]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Malformed);
    assert!(
        matches!(e.malformed(), Some(Malformed::Syntax { what, .. }) if what == "CSR pubkey"),
        "{e}"
    );
}

fn key(seed: u8) -> (SigningKey, Vec<u8>) {
    let sk = SigningKey::from_slice(&[seed; 32]).unwrap();
    let spki = sk
        .verifying_key()
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec();
    (sk, spki)
}

fn sign(sk: &SigningKey, msg: &[u8]) -> Vec<u8> {
    let sig: Signature = sk.sign(msg);
    sig.to_der().as_bytes().to_vec()
}

fn full_config() -> CertConfigV2 {
    CertConfigV2 {
        org_name: Some("Example Org".into()),
        subject: "app.example.com".into(),
        subject_alt_names: vec!["app.example.com".into(), "10.0.0.1".into()],
        usage_server_auth: true,
        usage_client_auth: true,
        ext_quote: true,
        ext_app_info: true,
        not_before: Some(1_700_000_000),
        not_after: Some(u64::MAX),
    }
}

/// A V2 request for `spki` carrying `attestation`.
fn v2(spki: &[u8], config: CertConfigV2, attestation: &[u8]) -> Vec<u8> {
    let mut b = CsrV2Head {
        confirm: CSR_CONFIRM.into(),
        pubkey: spki.to_vec(),
        config,
    }
    .encode();
    b.extend_from_slice(attestation);
    b
}

fn real() -> VersionedAttestation {
    VersionedAttestation::decode(&lite_attestation()).unwrap()
}

#[test]
fn a_signed_v2_request_with_every_field_set_verifies_and_binds() {
    let (sk, spki) = key(0x42);
    let att = scale_with_report_data(&real(), ratls_report_data(&spki).0);
    let csr = v2(&spki, full_config(), &att);
    let sig = sign(&sk, &csr);
    let signed = SignedCsr::verify(2, &csr, &sig).unwrap();
    let c = signed.csr();
    assert_eq!(c.pubkey(), spki.as_slice());
    let f = full_config();
    assert_eq!(
        c.config(),
        &CertConfig {
            org_name: f.org_name,
            subject: f.subject,
            subject_alt_names: f.subject_alt_names,
            usage_server_auth: true,
            usage_client_auth: true,
            ext_quote: true,
            ext_app_info: true,
            not_before: Some(1_700_000_000),
            not_after: Some(u64::MAX),
        }
    );
    let a = signed.bound_attestation().unwrap();
    assert_eq!(a.to_evidence().unwrap(), real().to_evidence().unwrap());

    // The attestation may be V1 msgpack too.
    let mut m = common::msgpack_model(&real(), ByteMode::Dstack);
    m.stack.data.report_data.data = ratls_report_data(&spki).0.to_vec();
    let csr = v2(&spki, full_config(), &common::msgpack(&m));
    let signed = SignedCsr::verify(2, &csr, &sign(&sk, &csr)).unwrap();
    assert!(signed.bound_attestation().is_ok());
}

#[test]
fn signatures_over_other_bytes_or_by_other_keys_are_bad() {
    let (sk, spki) = key(0x42);
    let att = scale_with_report_data(&real(), ratls_report_data(&spki).0);
    let csr = v2(&spki, full_config(), &att);
    let sig = sign(&sk, &csr);
    // Every byte of the request is covered (the attestation too).
    for at in [0, 20, csr.len() / 2, csr.len() - 70] {
        let mut t = csr.clone();
        t[at] ^= 0x01;
        match SignedCsr::verify(2, &t, &sig) {
            Err(e) => assert!(
                matches!(e.kind(), ErrorKind::BadSignature | ErrorKind::Malformed),
                "{e}"
            ),
            Ok(_) => panic!("a flipped byte at {at} verified"),
        }
    }
    let mut t = csr.clone();
    let last = t.len() - 70; // inside the attestation's vm_config text
    t[last] ^= 0x01;
    assert_eq!(
        SignedCsr::verify(2, &t, &sig).unwrap_err().kind(),
        ErrorKind::BadSignature
    );
    let (other, _) = key(0x43);
    assert!(matches!(
        SignedCsr::verify(2, &csr, &sign(&other, &csr)).unwrap_err(),
        AttestError::BadSignature(BadSignature::DoesNotVerify { signed, .. }) if signed == "the CSR"
    ));
    for junk in [&b""[..], &[0x30, 0x00], &sig[..sig.len() - 1]] {
        assert_eq!(
            SignedCsr::verify(2, &csr, junk).unwrap_err().kind(),
            ErrorKind::BadSignature
        );
    }
    // A raw r‖s signature is not the DER dstack sends.
    let raw: Signature = sk.sign(&csr);
    assert_eq!(
        SignedCsr::verify(2, &csr, &raw.to_bytes())
            .unwrap_err()
            .kind(),
        ErrorKind::BadSignature
    );
}

#[test]
fn the_attestation_must_be_bound_to_the_request_key() {
    let (sk, spki) = key(0x42);
    // The real vector: ASCII report data.
    let csr = v2(&spki, full_config(), &lite_attestation());
    let signed = SignedCsr::verify(2, &csr, &sign(&sk, &csr)).unwrap();
    assert_eq!(
        signed.bound_attestation().unwrap_err().kind(),
        ErrorKind::BindingMismatch
    );
}

#[test]
fn a_v1_request_is_upgraded_with_a_legacy_attestation() {
    let fixture: serde_json::Value =
        serde_json::from_slice(&vector("tdx/dstack/tdx-lite-getquote.json")).unwrap();
    let quote = hex::decode(fixture["quote"].as_str().unwrap()).unwrap();
    let log = fixture["event_log"].as_str().unwrap().as_bytes().to_vec();
    let (sk, spki) = key(7);
    let csr = CsrV1 {
        confirm: CSR_CONFIRM.into(),
        pubkey: spki.clone(),
        config: CertConfigV1 {
            org_name: Some("O".into()),
            subject: "s".into(),
            subject_alt_names: vec!["a".into()],
            usage_server_auth: false,
            usage_client_auth: true,
            ext_quote: true,
        },
        quote: quote.clone(),
        event_log: log.clone(),
    }
    .encode();
    let signed = SignedCsr::verify(1, &csr, &sign(&sk, &csr)).unwrap();
    let c = signed.csr();
    assert_eq!(c.version(), CsrVersion::V1);
    assert_eq!(
        c.config(),
        &CertConfig {
            org_name: Some("O".into()),
            subject: "s".into(),
            subject_alt_names: vec!["a".into()],
            usage_server_auth: false,
            usage_client_auth: true,
            ext_quote: true,
            ext_app_info: false,
            not_before: None,
            not_after: None,
        }
    );
    let GuestAttestation::Legacy(l) = c.attestation() else {
        panic!("not legacy")
    };
    assert_eq!(l.quote(), quote.as_slice());
    assert_eq!(l.event_log(), log.as_slice());
    assert!(l.inspect().unwrap().measurement.matches());
    // The fixture's quote is not bound to this key.
    assert_eq!(
        signed.bound_attestation().unwrap_err().kind(),
        ErrorKind::BindingMismatch
    );
    // V1 refuses trailing bytes (V2's attestation runs to the end).
    let mut long = csr.clone();
    long.push(0);
    assert_eq!(
        CertSigningRequest::decode(1, &long)
            .unwrap_err()
            .malformed(),
        Some(&Malformed::TrailingData {
            context: "dstack CSR (SCALE)",
            offset: csr.len(),
            extra: 1,
        })
    );
    // A V1 request read as V2 is not a V2 request.
    assert!(CertSigningRequest::decode(2, &csr).is_err());
}

#[test]
fn confirm_and_api_version_are_checked() {
    let (_, spki) = key(0x42);
    let att = lite_attestation();
    for v in [0u32, 3, u32::MAX] {
        let e = CertSigningRequest::decode(v, &v2(&spki, full_config(), &att)).unwrap_err();
        assert_eq!(
            e.malformed(),
            Some(&Malformed::Unsupported {
                detail: format!("unsupported SignCert api_version {v} (1 and 2 are supported)"),
            })
        );
    }
    let mut bad = CsrV2Head {
        confirm: "please sign this:".into(),
        pubkey: spki.clone(),
        config: full_config(),
    }
    .encode();
    bad.extend_from_slice(&att);
    assert_eq!(
        CertSigningRequest::decode(2, &bad).unwrap_err().malformed(),
        Some(&Malformed::WrongValueAt {
            context: "dstack CSR (SCALE)",
            field: "confirm".into(),
            offset: 0,
            expected: "\"please sign cert:\"".into(),
            found: "\"please sign this:\"".into(),
        })
    );
    let mut long = CsrV2Head {
        confirm: format!("{CSR_CONFIRM} and more"),
        pubkey: spki,
        config: full_config(),
    }
    .encode();
    long.extend_from_slice(&att);
    assert!(CertSigningRequest::decode(2, &long).is_err());
}

#[test]
fn attestation_errors_say_where_the_attestation_starts() {
    let (_, spki) = key(0x42);
    let head_len = v2(&spki, full_config(), &[]).len();
    let e = CertSigningRequest::decode(2, &v2(&spki, full_config(), &[0x00, 0x07])).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "malformed: dstack CSR (SCALE): attestation (from offset {head_len}): dstack attestation (V0 SCALE): quote variant at offset 1: unknown variant 7"
        )
    );
    let e = CertSigningRequest::decode(2, &v2(&spki, full_config(), &[])).unwrap_err();
    assert!(e.malformed().is_some_and(Malformed::is_truncated), "{e}");
    let e = CertSigningRequest::decode(2, &v2(&spki, full_config(), &[0, 1])).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnsupportedPlatform);
    // A subject_alt_names count of 2^30.
    let mut b = (
        CSR_CONFIRM.to_string(),
        spki,
        Some("Example Org".to_string()),
        "app.example.com".to_string(),
    )
        .encode();
    let at = b.len();
    b.extend_from_slice(&[0x03, 0, 0, 0, 0x40, 0, 0]);
    let e = CertSigningRequest::decode(2, &b).unwrap_err();
    assert!(
        matches!(
            e.malformed(),
            Some(Malformed::CountPastEnd { field, offset, count, .. })
                if field == "config.subject_alt_names" && *offset == at && *count == 1 << 30
        ),
        "{e}"
    );
}

#[test]
fn csr_truncation_and_byte_flips_never_panic() {
    let (sk, spki) = key(0x42);
    let att = scale_with_report_data(&real(), ratls_report_data(&spki).0);
    let csr = v2(&spki, full_config(), &att);
    let sig = sign(&sk, &csr);
    // Every prefix is a typed Malformed refusal, read as V2 or as V1.
    for cut in 0..csr.len() {
        for api in [2, 1] {
            let e = CertSigningRequest::decode(api, &csr[..cut]).unwrap_err();
            assert!(e.malformed().is_some(), "V{api} cut {cut}: {e}");
        }
    }
    for i in 0..csr.len() {
        let mut b = csr.clone();
        b[i] ^= 0xff;
        if let Ok(c) = CertSigningRequest::decode(2, &b) {
            // Signature checks are slow unoptimized: the whole head, then
            // a sample of the attestation.
            if i < 512 || i % 64 == 0 {
                assert!(c.verify_signature(&sig).is_err(), "flip at {i} verified");
            }
        }
    }
}

/// Every prefix of a V1 request (head, quote and event log) is a typed
/// Malformed refusal; most are a truncation.
#[test]
fn every_prefix_of_a_v1_request_is_malformed() {
    let fixture: serde_json::Value =
        serde_json::from_slice(&vector("tdx/dstack/tdx-lite-getquote.json")).unwrap();
    let (_, spki) = key(7);
    let csr = CsrV1 {
        confirm: CSR_CONFIRM.into(),
        pubkey: spki,
        config: CertConfigV1 {
            org_name: Some("O".into()),
            subject: "s".into(),
            subject_alt_names: vec!["a".into()],
            usage_server_auth: false,
            usage_client_auth: true,
            ext_quote: true,
        },
        quote: hex::decode(fixture["quote"].as_str().unwrap()).unwrap(),
        event_log: fixture["event_log"].as_str().unwrap().as_bytes().to_vec(),
    }
    .encode();
    assert!(CertSigningRequest::decode(1, &csr).is_ok());
    let mut truncated = 0;
    for cut in 0..csr.len() {
        let e = CertSigningRequest::decode(1, &csr[..cut]).unwrap_err();
        let m = e
            .malformed()
            .unwrap_or_else(|| panic!("cut {cut}: {e} is not malformed"));
        truncated += usize::from(m.is_truncated() || matches!(m, Malformed::CountPastEnd { .. }));
    }
    // Only cuts inside the confirm string can fail otherwise (a shorter
    // string that is not the confirm text).
    assert!(
        truncated + 2 * CSR_CONFIRM.len() >= csr.len(),
        "{truncated}"
    );
}
