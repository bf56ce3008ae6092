//! RA-TLS certificates built with rcgen the way dstack's guests build them
//! (`dstack-wire.md` §1.2), read back: extensions, the SPKI, the binding.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use attest_core::{AttestError, ErrorKind, PlatformId, ReportData};
use common::{ByteMode, lite_attestation, scale_with_report_data, vector};
use dstack_compat::{
    GuestAttestation, MeasurementCheck, RaTlsCert, VersionedAttestation, check_ratls_binding,
    ratls_report_data,
};
use rcgen::{
    CertificateParams, CustomExtension, DnType, KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData,
};
use sha2::{Digest, Sha512};

const ARC: [u64; 8] = [1, 3, 6, 1, 4, 1, 62397, 1];

fn oid(last: u64) -> Vec<u64> {
    let mut o = ARC.to_vec();
    o.push(last);
    o
}

/// DER OCTET STRING around `payload` (what dstack's `add_ext` writes).
fn octet_string(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04];
    let n = payload.len();
    match n {
        0..=0x7f => out.push(n as u8),
        0x80..=0xff => out.extend([0x81, n as u8]),
        0x100..=0xffff => out.extend([0x82, (n >> 8) as u8, n as u8]),
        _ => out.extend([0x83, (n >> 16) as u8, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(payload);
    out
}

/// A certificate for `key` with the given extension values (already wrapped).
fn cert(key: &KeyPair, exts: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut p = CertificateParams::new(vec![]).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, "RA-TLS TEMP Cert");
    for (last, value) in exts {
        p.custom_extensions.push(CustomExtension::from_oid_content(
            &oid(*last),
            value.clone(),
        ));
    }
    p.self_signed(key).unwrap().der().to_vec()
}

fn p256() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()
}

fn real() -> VersionedAttestation {
    VersionedAttestation::decode(&lite_attestation()).unwrap()
}

#[test]
fn ratls_report_data_is_sha512_of_tag_colon_spki() {
    let spki = p256().subject_public_key_info();
    let want: [u8; 64] = Sha512::digest([b"ratls-cert:".as_slice(), &spki].concat()).into();
    assert_eq!(ratls_report_data(&spki), ReportData(want));
    assert!(check_ratls_binding(&ReportData(want), &spki).is_ok());
    assert_eq!(
        check_ratls_binding(&ReportData([0; 64]), &spki),
        Err(AttestError::BindingMismatch {
            expected: Box::new(ReportData(want)),
            found: Box::new(ReportData([0; 64]))
        })
    );
}

#[test]
fn a_certificate_carrying_1_8_round_trips() {
    let key = p256();
    let spki = key.subject_public_key_info();
    let att = scale_with_report_data(&real(), ratls_report_data(&spki).0);
    let der = cert(&key, &[(8, octet_string(&att))]);
    let c = RaTlsCert::from_der(&der).unwrap();
    assert_eq!(
        c.spki_der(),
        spki.as_slice(),
        "the SPKI exactly as rcgen wrote it"
    );
    assert_eq!(c.extensions().attestation.as_deref(), Some(att.as_slice()));
    assert_eq!(c.extensions().tdx_quote, None);
    let Some(GuestAttestation::Versioned(a)) = c.attestation().unwrap() else {
        panic!("no versioned attestation")
    };
    assert_eq!(a, VersionedAttestation::decode(&att).unwrap());
    let bound = c.bound_attestation().unwrap();
    assert_eq!(bound.platform(), PlatformId::TDX);
    assert_eq!(bound.report_data(), &ratls_report_data(&spki));
    assert_eq!(bound.to_evidence().unwrap(), real().to_evidence().unwrap());
    // The inspection still replays RTMR3 (the quote's REPORTDATA is the
    // fixture's, not this key's: the quote was not made for it).
    let i = bound.inspect().unwrap();
    assert!(i.measurement.matches());
    assert!(!i.report_data_consistent());

    // The same with a V1 msgpack attestation in the extension.
    let mut m = common::msgpack_model(&real(), ByteMode::Dstack);
    m.stack.data.report_data.data = ratls_report_data(&spki).0.to_vec();
    let der = cert(&key, &[(8, octet_string(&common::msgpack(&m)))]);
    let bound = RaTlsCert::from_der(&der)
        .unwrap()
        .bound_attestation()
        .unwrap();
    assert_eq!(bound.to_evidence().unwrap(), real().to_evidence().unwrap());
}

#[test]
fn the_attestation_must_be_bound_to_the_certificate_key() {
    let key = p256();
    let spki = key.subject_public_key_info();
    // The real vector's report data is ASCII text, not a binding.
    let der = cert(&key, &[(8, octet_string(&lite_attestation()))]);
    let e = RaTlsCert::from_der(&der)
        .unwrap()
        .bound_attestation()
        .unwrap_err();
    assert_eq!(
        e,
        AttestError::BindingMismatch {
            expected: Box::new(ratls_report_data(&spki)),
            found: Box::new(*real().report_data()),
        }
    );
    // Bound to another key.
    let other = p256().subject_public_key_info();
    let att = scale_with_report_data(&real(), ratls_report_data(&other).0);
    let der = cert(&key, &[(8, octet_string(&att))]);
    let c = RaTlsCert::from_der(&der).unwrap();
    assert_eq!(
        c.bound_attestation().unwrap_err().kind(),
        ErrorKind::BindingMismatch
    );
    let a = c.attestation().unwrap().unwrap();
    assert!(a.check_ratls_binding(&other).is_ok());
    // No attestation at all.
    let der = cert(&key, &[(4, octet_string(b"app:custom"))]);
    let c = RaTlsCert::from_der(&der).unwrap();
    assert_eq!(c.attestation().unwrap(), None);
    assert!(matches!(
        c.bound_attestation().unwrap_err().malformed(),
        Some(attest_core::Malformed::Missing {
            what: "dstack attestation",
            ..
        })
    ));
}

fn legacy_pair() -> (Vec<u8>, Vec<u8>) {
    let fixture: serde_json::Value =
        serde_json::from_slice(&vector("tdx/dstack/tdx-lite-getquote.json")).unwrap();
    let quote = hex::decode(fixture["quote"].as_str().unwrap()).unwrap();
    let log = fixture["event_log"].as_str().unwrap().as_bytes().to_vec();
    (quote, log)
}

#[test]
fn the_legacy_pair_is_the_fallback_and_maps_as_given() {
    let key = p256();
    let (quote, log) = legacy_pair();
    let der = cert(&key, &[(1, octet_string(&quote)), (2, octet_string(&log))]);
    let c = RaTlsCert::from_der(&der).unwrap();
    let Some(GuestAttestation::Legacy(l)) = c.attestation().unwrap() else {
        panic!("not legacy")
    };
    let ev = l.to_evidence();
    assert_eq!(ev.platform, PlatformId::TDX);
    assert_eq!(ev.quote, quote);
    assert_eq!(ev.event_log, log, "the JSON log exactly as given");
    // Report data comes from the quote: the same CVM's text.
    assert_eq!(l.report_data(), real().report_data());
    // The full log replays RTMR3 to the quote's value.
    let i = l.inspect().unwrap();
    assert_eq!(i.version, None);
    let MeasurementCheck::Rtmr3 { replayed, .. } = i.measurement else {
        panic!()
    };
    assert!(i.measurement.matches());
    assert_eq!(
        hex::encode(replayed),
        "6f24c170d0fd63fc2b1b53202eea47b013978437fa6982cf5e0438ff95c208994aaa0f4ebab2e3a66824b5b56869137e"
    );
    let app = i.claimed.unwrap().app_identity().unwrap();
    assert_eq!(
        app.app_id.to_hex(),
        "86b0e55f2fa8e4fb69d890f14f54d5612707646e"
    );
    assert_eq!(
        c.bound_attestation().unwrap_err().kind(),
        ErrorKind::BindingMismatch
    );

    // .1.8 wins over the legacy pair.
    let der = cert(
        &key,
        &[
            (1, octet_string(&quote)),
            (2, octet_string(&log)),
            (8, octet_string(&lite_attestation())),
        ],
    );
    assert!(matches!(
        RaTlsCert::from_der(&der).unwrap().attestation().unwrap(),
        Some(GuestAttestation::Versioned(_))
    ));
    // Half a pair.
    for ext in [(1, octet_string(&quote)), (2, octet_string(&log))] {
        let der = cert(&key, &[ext]);
        let e = RaTlsCert::from_der(&der)
            .unwrap()
            .attestation()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Malformed, "{e}");
    }
    // A legacy event log that is not JSON.
    let der = cert(&key, &[(1, octet_string(&quote)), (2, octet_string(b"{"))]);
    let e = RaTlsCert::from_der(&der)
        .unwrap()
        .attestation()
        .unwrap_err();
    assert!(
        matches!(
            &e,
            AttestError::Malformed(attest_core::Malformed::Within { location, inner })
                if location == "legacy event log"
                    && matches!(**inner, attest_core::Malformed::Syntax { .. })
        ),
        "{e:?}"
    );
}

#[test]
fn every_dstack_extension_is_extracted() {
    let key = p256();
    let der = cert(
        &key,
        &[
            (3, octet_string(&[0xab; 20])),
            (4, octet_string(b"kms:rpc")),
            (9, octet_string(&[0x80])),
            (7, octet_string(b"unknown, ignored")),
        ],
    );
    let c = RaTlsCert::from_der(&der).unwrap();
    let x = c.extensions();
    assert_eq!(x.app_id.as_deref(), Some(&[0xab; 20][..]));
    assert_eq!(x.special_usage.as_deref(), Some("kms:rpc"));
    assert_eq!(x.app_info.as_deref(), Some(&[0x80][..]));
    assert_eq!(x.attestation, None);
}

#[test]
fn badly_wrapped_or_repeated_extensions_are_malformed() {
    let key = p256();
    // The payload not wrapped in an inner OCTET STRING.
    let der = cert(&key, &[(8, lite_attestation())]);
    let e = RaTlsCert::from_der(&der).unwrap_err();
    assert!(
        matches!(
            &e,
            AttestError::Malformed(attest_core::Malformed::Within { location, .. })
                if location == "extension 1.3.6.1.4.1.62397.1.8"
        ),
        "{e:?}"
    );
    // Trailing bytes after the inner OCTET STRING.
    let mut v = octet_string(b"kms:rpc");
    v.push(0);
    assert!(RaTlsCert::from_der(&cert(&key, &[(4, v)])).is_err());
    // Not UTF-8.
    let der = cert(&key, &[(4, octet_string(&[0xff]))]);
    assert!(matches!(
        RaTlsCert::from_der(&der).err().unwrap().malformed(),
        Some(attest_core::Malformed::Syntax { what, .. }) if what == "usage"
    ));
    // Twice.
    let dup = cert(&key, &[(3, octet_string(b"a")), (3, octet_string(b"b"))]);
    if let Err(e) = RaTlsCert::from_der(&dup) {
        assert!(
            matches!(
                e.malformed(),
                Some(attest_core::Malformed::Unexpected {
                    what: "duplicate extension",
                    ..
                })
            ),
            "{e}"
        );
    } else {
        panic!("a repeated extension was accepted");
    }
    // A .1.8 that does not decode is final: no fall-back to the pair.
    let (quote, log) = legacy_pair();
    let der = cert(
        &key,
        &[
            (1, octet_string(&quote)),
            (2, octet_string(&log)),
            (8, octet_string(&[0x00, 0x09])),
        ],
    );
    let e = RaTlsCert::from_der(&der)
        .unwrap()
        .attestation()
        .unwrap_err();
    // The attestation's own error, inside the extension.
    assert!(
        matches!(
            &e,
            AttestError::Malformed(attest_core::Malformed::Within { location, .. })
                if location == "extension 1.3.6.1.4.1.62397.1.8"
        ),
        "{e:?}"
    );
    assert!(
        matches!(
            e.malformed(),
            Some(attest_core::Malformed::UnknownVariant { field, offset: 1, tag: 9, .. })
                if field == "quote variant"
        ),
        "{e:?}"
    );
    // Not a certificate.
    assert!(RaTlsCert::from_der(b"").is_err());
    assert!(RaTlsCert::from_der(&[0x30, 0x03, 2, 1, 0]).is_err());
}

#[test]
fn certificate_truncation_and_byte_flips_never_panic() {
    let key = p256();
    let spki = key.subject_public_key_info();
    let att = scale_with_report_data(&real(), ratls_report_data(&spki).0);
    let der = cert(
        &key,
        &[(4, octet_string(b"app:custom")), (8, octet_string(&att))],
    );
    for cut in 0..der.len() {
        let e = RaTlsCert::from_der(&der[..cut]).err().unwrap();
        assert_eq!(
            e.kind(),
            attest_core::ErrorKind::Malformed,
            "cut {cut}: {e}"
        );
    }
    for i in 0..der.len() {
        let mut b = der.clone();
        b[i] ^= 0xff;
        if let Ok(c) = RaTlsCert::from_der(&b) {
            if let Ok(a) = c.bound_attestation() {
                let _ = a.to_evidence();
                let _ = a.inspect();
            }
        }
    }
}
