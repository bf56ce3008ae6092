//! V0 quote variants other than the real TDX vector: SEV-SNP (and its
//! certificate chain forms), dstack's unsupported platforms, and hostile
//! lengths.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use attest_core::app_config::host_data;
use attest_core::{AttestError, ErrorKind, Malformed, PlatformId};
use common::{ByteMode, ScaleAttestation, ScaleQuote, ScaleVersioned, msgpack_of};
use dstack_compat::evidence::snp_certificates;
use dstack_compat::{
    AttestationVersion, Claimed, MAX_ATTESTATION_LEN, MeasurementCheck, PlatformQuote,
    SNP_REPORT_LEN, VersionedAttestation,
};
use parity_scale_codec::Encode;

const DOC: &str = r#"{"version":3,"app_id":"a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1","compose_hash":"c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0","instance_id":"1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d","key_provider":"kms","key_provider_id":"3059"}"#;

/// A report-shaped buffer: REPORT_DATA at 0x50, HOST_DATA at 0xC0.
fn report(report_data: [u8; 64], host: [u8; 32]) -> Vec<u8> {
    let mut r = vec![0u8; SNP_REPORT_LEN];
    r[0] = 3;
    r[0x50..0x90].copy_from_slice(&report_data);
    r[0xC0..0xE0].copy_from_slice(&host);
    r
}

fn snp(report: Vec<u8>, cert_chain: Vec<Vec<u8>>, mr_config: &str) -> Vec<u8> {
    ScaleVersioned::V0 {
        attestation: ScaleAttestation {
            quote: ScaleQuote::Snp {
                report,
                cert_chain,
                mr_config: mr_config.into(),
            },
            runtime_events: vec![],
            report_data: [7; 64],
            config: "{}".into(),
        },
    }
    .encode()
}

fn two_certs() -> (Vec<u8>, Vec<u8>) {
    let make = |cn: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.self_signed(&key).unwrap().der().to_vec()
    };
    (make("SEV-Milan"), make("SEV-VCEK"))
}

fn pem_ders(bundle: &[u8]) -> Vec<Vec<u8>> {
    assert!(!bundle.contains(&b'\r'), "LF line endings");
    pem::parse_many(bundle)
        .unwrap()
        .into_iter()
        .map(|p| {
            assert_eq!(p.tag(), "CERTIFICATE");
            p.into_contents()
        })
        .collect()
}

#[test]
fn snp_maps_report_chain_and_exact_config_bytes() {
    let (ask, vcek) = two_certs();
    let ask_pem = pem::encode(&pem::Pem::new("CERTIFICATE", ask.clone()));
    let raw = snp(
        report([7; 64], host_data(DOC.as_bytes())),
        vec![ask_pem.into_bytes(), vcek.clone()],
        DOC,
    );
    let a = VersionedAttestation::decode(&raw).unwrap();
    assert_eq!(a.platform(), PlatformId::SEV_SNP);
    assert_eq!(a.version(), AttestationVersion::V0);
    let PlatformQuote::SevSnp(s) = a.quote() else {
        panic!()
    };
    assert_eq!(s.mr_config, DOC);
    let ev = a.to_evidence().unwrap();
    assert_eq!(ev.platform, PlatformId::SEV_SNP);
    assert_eq!(ev.quote.len(), SNP_REPORT_LEN);
    assert_eq!(ev.app_config, DOC.as_bytes());
    assert!(ev.event_log.is_empty());
    assert_eq!(pem_ders(&ev.certificates), vec![ask, vcek]);

    let i = a.inspect().unwrap();
    assert!(matches!(i.measurement, MeasurementCheck::HostData { .. }));
    assert!(i.measurement.matches());
    assert!(i.report_data_consistent());
    let Ok(Claimed::AppConfig(doc)) = &i.claimed else {
        panic!("{:?}", i.claimed)
    };
    assert_eq!(doc.app_id.to_hex(), "a1".repeat(20));
    // Another document than the one HOST_DATA binds.
    let other = DOC.replace("c0c0", "c1c0");
    let raw = snp(report([7; 64], host_data(DOC.as_bytes())), vec![], &other);
    let i = VersionedAttestation::decode(&raw)
        .unwrap()
        .inspect()
        .unwrap();
    assert!(!i.measurement.matches());
}

#[test]
fn snp_cert_chain_forms() {
    let (ask, vcek) = two_certs();
    assert_eq!(snp_certificates(&[]).unwrap(), b"");
    // DER, DER.
    let b = snp_certificates(&[ask.clone(), vcek.clone()]).unwrap();
    assert_eq!(pem_ders(&b), vec![ask.clone(), vcek.clone()]);
    // One PEM text holding both.
    let both = format!(
        "{}{}",
        pem::encode(&pem::Pem::new("CERTIFICATE", ask.clone())),
        pem::encode(&pem::Pem::new("CERTIFICATE", vcek.clone()))
    );
    let b = snp_certificates(&[both.into_bytes()]).unwrap();
    assert_eq!(pem_ders(&b), vec![ask.clone(), vcek.clone()]);
    // A GHCB certificate table (GUID, offset, length entries): unchanged.
    let mut table = vec![0x8d, 0x75, 0xda, 0x63];
    table.extend_from_slice(&[0x11; 60]);
    assert_eq!(
        snp_certificates(std::slice::from_ref(&table)).unwrap(),
        table
    );
    // Two elements that are not certificates.
    let e = snp_certificates(&[ask.clone(), table.clone()]).unwrap_err();
    assert_eq!(
        e,
        AttestError::Malformed(Malformed::Within {
            location: "SNP cert_chain[1]".into(),
            inner: Box::new(Malformed::BadValue {
                what: "certificate".into(),
                expected: "a PEM or a DER certificate".into(),
                found: format!("{} bytes of neither", table.len()),
            }),
        })
    );
    // PEM of something else.
    let key = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![0x30, 0]));
    let e = snp_certificates(&[key.into_bytes()]).unwrap_err();
    assert_eq!(
        e,
        AttestError::Malformed(Malformed::Within {
            location: "SNP cert_chain[0]".into(),
            inner: Box::new(Malformed::PemLabel {
                expected: "CERTIFICATE",
                found: "PRIVATE KEY".into(),
            }),
        })
    );
    // A table is also carried through V0 and V1 unchanged.
    let raw = snp(report([7; 64], [0; 32]), vec![table.clone()], DOC);
    let a = VersionedAttestation::decode(&raw).unwrap();
    assert_eq!(a.to_evidence().unwrap().certificates, table);
    let v1 = VersionedAttestation::decode(&msgpack_of(&a, ByteMode::Dstack)).unwrap();
    assert_eq!(v1.to_evidence().unwrap(), a.to_evidence().unwrap());
}

#[test]
fn an_snp_report_of_the_wrong_size_is_malformed() {
    let raw = snp(vec![0; SNP_REPORT_LEN - 1], vec![], DOC);
    let e = VersionedAttestation::decode(&raw).unwrap_err();
    assert_eq!(
        e.malformed(),
        Some(&Malformed::FieldLength {
            context: "dstack attestation (V0 SCALE)",
            field: "report".into(),
            offset: 2,
            name: "an SNP report",
            expected: SNP_REPORT_LEN,
            found: SNP_REPORT_LEN - 1,
        })
    );
}

#[test]
fn dstack_platforms_without_a_verifier_are_unsupported() {
    for (variant, name) in [(1u8, "gcp-tdx"), (2, "nitro-enclave"), (4, "aws-nitro-tpm")] {
        // Whatever follows the tag is not read.
        let e = VersionedAttestation::decode(&[0, variant, 0xff, 0xff]).unwrap_err();
        assert_eq!(
            e,
            AttestError::UnsupportedPlatform(PlatformId::parse(name).unwrap())
        );
    }
    for variant in [5u8, 0x80, 0xff] {
        let e = VersionedAttestation::decode(&[0, variant]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Malformed);
    }
}

#[test]
fn first_byte_and_size_limits() {
    assert_eq!(
        VersionedAttestation::decode(&[]).unwrap_err().malformed(),
        Some(&Malformed::Truncated {
            context: "dstack attestation",
            field: "version byte".into(),
            offset: 0,
            needed: 1,
            available: 0,
        })
    );
    for first in [0x01u8, 0x7f, 0x90, 0xc4, 0xdc, 0xff] {
        let e = VersionedAttestation::decode(&[first, 0]).unwrap_err();
        assert!(
            matches!(
                e.malformed(),
                Some(Malformed::BadValue { what, found, .. })
                    if what == "dstack attestation first byte" && *found == format!("{first:#04x}")
            ),
            "{first:#x}: {e}"
        );
    }
    let mut big = vec![0u8; MAX_ATTESTATION_LEN + 1];
    big[1] = 0;
    let e = VersionedAttestation::decode(&big).unwrap_err();
    assert_eq!(
        e.malformed(),
        Some(&Malformed::TooLarge {
            what: "dstack attestation".into(),
            size: MAX_ATTESTATION_LEN + 1,
            max: MAX_ATTESTATION_LEN,
        })
    );
}

#[test]
fn a_compact_length_of_2_pow_30_is_refused_before_allocating() {
    // V0, TDX, quote length 2^30 (big-integer mode), a few bytes.
    let e = VersionedAttestation::decode(&[0, 0, 0x03, 0, 0, 0, 0x40, 1, 2, 3]).unwrap_err();
    const CONTEXT: &str = "dstack attestation (V0 SCALE)";
    assert_eq!(
        e.malformed(),
        Some(&Malformed::CountPastEnd {
            context: CONTEXT,
            field: "quote".into(),
            offset: 2,
            count: 1 << 30,
            available: 3,
        })
    );
    // The same count for the event list and the runtime events.
    let e = VersionedAttestation::decode(&[0, 0, 0, 0x03, 0, 0, 0, 0x40, 1]).unwrap_err();
    assert!(
        matches!(
            e.malformed(),
            Some(Malformed::FieldTooLarge { context: CONTEXT, field, offset: 3, size, unit: "elements", max: 4096 })
                if field == "event_log" && *size == 1 << 30
        ),
        "{e}"
    );
    let e = VersionedAttestation::decode(&[0, 0, 0, 0, 0x03, 0, 0, 0, 0x40]).unwrap_err();
    assert!(
        matches!(
            e.malformed(),
            Some(Malformed::FieldTooLarge { context: CONTEXT, field, offset: 4, size, unit: "elements", max: 4096 })
                if field == "runtime_events" && *size == 1 << 30
        ),
        "{e}"
    );
    // A non-canonical length.
    let e = VersionedAttestation::decode(&[0, 0, 0x05, 0x00]).unwrap_err();
    assert_eq!(
        e.malformed(),
        Some(&Malformed::NonCanonicalInteger {
            context: CONTEXT,
            field: "quote".into(),
            offset: 2,
        })
    );
}

#[test]
fn runtime_event_names_must_be_utf8_and_bounded() {
    let enc = |name: Vec<u8>| {
        // V0, TDX, empty quote, empty event log, one runtime event.
        let mut b = vec![0u8, 0, 0, 0, 0x04];
        b.extend(name.encode());
        b.push(0); // payload
        b.extend([0u8; 64]);
        b.push(0); // config
        b
    };
    assert!(VersionedAttestation::decode(&enc(b"app-id".to_vec())).is_ok());
    let e = VersionedAttestation::decode(&enc(vec![0xff])).unwrap_err();
    assert!(
        matches!(
            e.malformed(),
            Some(Malformed::NotUtf8 { field, offset: 5, .. }) if field == "runtime_events[0].event"
        ),
        "{e}"
    );
    let e = VersionedAttestation::decode(&enc(vec![b'x'; 1025])).unwrap_err();
    assert!(
        matches!(
            e.malformed(),
            Some(Malformed::FieldTooLarge { field, size: 1025, unit: "bytes", max: 1024, .. })
                if field == "runtime_events[0].event"
        ),
        "{e}"
    );
}
