//! V1 (msgpack) attestations, written by rmp-serde the way dstack writes
//! them, and the ways they can be wrong.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use attest_core::eventlog::{
    RuntimeEventVersion, parse_json_event_log, replay, runtime_event_digest,
};
use attest_core::{AttestError, ErrorKind, Malformed, PlatformId, ReportData};
use common::{ByteMode, Bytes, lite_attestation, msgpack, msgpack_model, msgpack_of};
use dstack_compat::{
    AttestationVersion, DSTACK_TDX_REGISTERS, MeasurementCheck, StackKind, VersionedAttestation,
};
use sha2::{Digest, Sha384, Sha512};

fn v0() -> VersionedAttestation {
    VersionedAttestation::decode(&lite_attestation()).unwrap()
}

fn decode(b: &[u8]) -> Result<VersionedAttestation, AttestError> {
    VersionedAttestation::decode(b)
}

#[test]
fn v1_in_every_byte_encoding_decodes_to_the_same_evidence_as_v0() {
    let a = v0();
    let want = a.to_evidence().unwrap();
    for mode in [ByteMode::Dstack, ByteMode::AllArrays, ByteMode::AllBin] {
        let bytes = msgpack_of(&a, mode);
        assert_eq!(bytes[0], 0x83, "a fixmap of three keys");
        let b = decode(&bytes).unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert_eq!(b.version(), AttestationVersion::V1);
        assert_eq!(b.quote(), a.quote(), "{mode:?}");
        assert_eq!(b.runtime_events(), a.runtime_events());
        assert_eq!(b.report_data(), a.report_data());
        assert_eq!(b.config(), a.config());
        assert_eq!(b.stack(), &StackKind::Dstack);
        assert_eq!(b.to_evidence().unwrap(), want, "{mode:?}");
        let i = b.inspect().unwrap();
        assert!(i.measurement.matches());
        assert_eq!(i.version, Some(AttestationVersion::V1));
    }
    // The byte forms differ on the wire.
    assert_ne!(
        msgpack_of(&a, ByteMode::AllArrays),
        msgpack_of(&a, ByteMode::AllBin)
    );
}

#[test]
fn v2_runtime_events_stay_v2_and_replay_in_their_jcs_form() {
    let a = v0();
    let mut m = msgpack_model(&a, ByteMode::Dstack);
    for e in &mut m.stack.data.runtime_events {
        e.version = Some(2);
    }
    let b = decode(&msgpack(&m)).unwrap();
    assert!(
        b.runtime_events()
            .iter()
            .all(|e| e.version == RuntimeEventVersion::V2)
    );
    let ev = b.to_evidence().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&ev.event_log).unwrap();
    assert!(json.as_array().unwrap().iter().all(|e| e["version"] == 2));
    let events = parse_json_event_log(&ev.event_log).unwrap();
    let regs = replay::<Sha384>(&events, &DSTACK_TDX_REGISTERS).unwrap();
    // By hand: RTMR3 = SHA384(RTMR3 ‖ SHA384(JCS{name, payload, type})).
    let mut r = [0u8; 48];
    for e in b.runtime_events() {
        let d = runtime_event_digest::<Sha384>(&e.name, &e.payload, RuntimeEventVersion::V2);
        let next = Sha384::new().chain_update(r).chain_update(d).finalize();
        r.copy_from_slice(&next);
    }
    assert_eq!(regs[3].as_slice(), r);
    let MeasurementCheck::Rtmr3 {
        replayed, quote, ..
    } = b.inspect().unwrap().measurement
    else {
        panic!()
    };
    assert_eq!(replayed, r);
    assert_ne!(replayed, quote, "the quote measured V1 digests");
    // The V2 flag on the TDX event log entries is read too.
    let mut m = msgpack_model(&a, ByteMode::Dstack);
    if let common::MpPlatformData::Tdx { event_log, .. } = &mut m.platform.data {
        event_log[5].version = Some(2);
    }
    let b = decode(&msgpack(&m)).unwrap();
    let dstack_compat::PlatformQuote::Tdx(t) = b.quote() else {
        panic!()
    };
    assert_eq!(t.event_log[5].version, RuntimeEventVersion::V2);
    assert_eq!(t.event_log[4].version, RuntimeEventVersion::V1);
}

#[test]
fn keys_in_any_order_and_unknown_keys_are_accepted() {
    let a = v0();
    // Put "data" before "kind" (whatever order serde_json's map keeps).
    let mut v = serde_json::to_value(msgpack_model(&a, ByteMode::AllArrays)).unwrap();
    for key in ["platform", "stack"] {
        let obj = v[key].as_object_mut().unwrap();
        let kind = obj.remove("kind").unwrap();
        let data = obj.remove("data").unwrap();
        obj.insert("data".into(), data);
        obj.insert("kind".into(), kind);
    }
    v["extra"] = serde_json::json!({"nested": [1, {"x": "y"}, null, -3, 1.5, true]});
    v["platform"]["data"]["event_log"][0]["preimage"] = serde_json::Value::Null;
    v["stack"]["data"]["runtime_events"][0]["version"] = serde_json::json!(1);
    v["stack"]["data"]["report_data_payload"] = serde_json::Value::Null;
    let bytes = rmp_serde::to_vec_named(&v).unwrap();
    let find = |k: &[u8]| bytes.windows(k.len()).position(|w| w == k).unwrap();
    assert!(
        find(b"\xa4data") < find(b"\xa4kind"),
        "data is written first"
    );
    let b = decode(&bytes).unwrap();
    assert_eq!(b.to_evidence().unwrap(), a.to_evidence().unwrap());
}

fn with(f: impl FnOnce(&mut serde_json::Value)) -> Result<VersionedAttestation, AttestError> {
    let mut v = serde_json::to_value(msgpack_model(&v0(), ByteMode::AllArrays)).unwrap();
    f(&mut v);
    decode(&rmp_serde::to_vec_named(&v).unwrap())
}

fn malformed(r: Result<VersionedAttestation, AttestError>) -> String {
    let e = r.expect_err("decoded");
    assert_eq!(e.kind(), ErrorKind::Malformed, "{e}");
    e.to_string()
}

/// The typed detail of a refusal (under any locations).
fn detail(r: Result<VersionedAttestation, AttestError>) -> Malformed {
    let e = r.expect_err("decoded");
    e.malformed()
        .unwrap_or_else(|| panic!("{e} is not malformed"))
        .clone()
}

const CONTEXT: &str = "dstack attestation (V1 msgpack)";

#[test]
fn wrong_values_are_malformed_and_say_where() {
    assert_eq!(
        detail(with(|v| v["version"] = 2.into())),
        Malformed::WrongValueAt {
            context: CONTEXT,
            field: "version".into(),
            offset: 0,
            expected: "1".into(),
            found: "2".into(),
        }
    );
    let m = detail(with(|v| {
        v.as_object_mut().unwrap().remove("stack");
    }));
    assert!(
        matches!(&m, Malformed::MissingKey { context: CONTEXT, key, offset: 0, .. } if key == "stack"),
        "{m}"
    );
    let m = malformed(with(|v| {
        v["stack"]["data"]["report_data"]
            .as_array_mut()
            .unwrap()
            .pop();
    }));
    assert!(m.contains("report_data at offset"), "{m}");
    assert!(m.contains("63 bytes, expected 64"), "{m}");
    let m = detail(with(|v| v["stack"]["data"]["report_data"][0] = 256.into()));
    assert!(
        matches!(&m, Malformed::ByteOutOfRange { context: CONTEXT, field, value: 256, .. } if field == "report_data"),
        "{m}"
    );
    let m = detail(with(|v| v["stack"]["data"]["report_data"][0] = (-1).into()));
    assert!(
        matches!(
            &m,
            Malformed::WrongType {
                context: CONTEXT,
                expected: "a non-negative integer",
                found: "a negative integer",
                ..
            }
        ),
        "{m}"
    );
    let m = malformed(with(|v| v["stack"]["kind"] = "k8s".into()));
    assert!(m.contains("unknown stack \"k8s\""), "{m}");
    let m = malformed(with(|v| v["platform"]["kind"] = "Not A Platform".into()));
    assert!(m.contains("is not a platform name"), "{m}");
    let m = malformed(with(|v| {
        v["stack"]["data"]["runtime_events"][2]["version"] = 3.into()
    }));
    assert!(m.contains("unknown runtime event version 3"), "{m}");
    let m = detail(with(|v| {
        v["platform"]["data"]["event_log"][1]
            .as_object_mut()
            .unwrap()
            .remove("imr");
    }));
    assert!(
        matches!(&m, Malformed::MissingKey { context: CONTEXT, field, key, .. }
            if field.contains("event_log[1]") && key == "imr"),
        "{m}"
    );
    let m = detail(with(|v| v["platform"]["data"]["quote"] = "text".into()));
    assert!(
        matches!(
            &m,
            Malformed::WrongType {
                context: CONTEXT,
                expected: "bin or an array of bytes",
                found: "a string",
                ..
            }
        ),
        "{m}"
    );
}

#[test]
fn other_dstack_platforms_are_unsupported() {
    for kind in [
        "gcp-tdx",
        "nitro-enclave",
        "aws-nitro-tpm",
        "some-future-tee",
    ] {
        let e = with(|v| v["platform"]["kind"] = kind.into()).unwrap_err();
        assert_eq!(
            e,
            AttestError::UnsupportedPlatform(PlatformId::parse(kind).unwrap()),
            "{kind}"
        );
    }
}

#[test]
fn duplicate_keys_are_refused() {
    let a = v0();
    let good = msgpack_of(&a, ByteMode::Dstack);
    // Rewrite the top-level fixmap of 3 into one of 4 with a second "version".
    let mut dup = vec![0x84, 0xa7];
    dup.extend_from_slice(b"version");
    dup.push(0x01);
    dup.extend_from_slice(&good[1..]);
    let m = detail(decode(&dup));
    assert!(
        matches!(&m, Malformed::DuplicateKey { context: CONTEXT, key, .. } if key == "version"),
        "{m}"
    );
}

#[test]
fn a_dstack_pod_report_data_must_commit_to_its_payload() {
    let a = v0();
    let payload = b"pod payload".to_vec();
    let rd: [u8; 64] = Sha512::new()
        .chain_update(b"app-data:")
        .chain_update(&payload)
        .finalize()
        .into();
    let mut m = msgpack_model(&a, ByteMode::Dstack);
    m.stack.kind = "dstack-pod".into();
    m.stack.data.report_data = Bytes {
        data: rd.to_vec(),
        bin: false,
    };
    m.stack.data.report_data_payload = Some(Bytes {
        data: payload.clone(),
        bin: true,
    });
    let b = decode(&msgpack(&m)).unwrap();
    assert_eq!(
        b.stack(),
        &StackKind::DstackPod {
            report_data_payload: payload
        }
    );
    assert_eq!(b.report_data(), &ReportData(rd));
    m.stack.data.report_data_payload = Some(Bytes {
        data: b"other".to_vec(),
        bin: true,
    });
    assert_eq!(
        decode(&msgpack(&m)).unwrap_err().kind(),
        ErrorKind::BindingMismatch
    );
    m.stack.data.report_data_payload = None;
    let d = detail(decode(&msgpack(&m)));
    assert!(
        matches!(&d, Malformed::MissingKey { context: CONTEXT, field, key, .. }
            if field == "stack.data" && key == "report_data_payload"),
        "{d}"
    );
}

#[test]
fn v1_truncation_and_trailing_bytes_are_malformed() {
    for mode in [ByteMode::Dstack, ByteMode::AllBin] {
        let bytes = msgpack_of(&v0(), mode);
        for cut in 0..bytes.len() {
            let e = decode(&bytes[..cut]).expect_err("a prefix decoded");
            assert_eq!(e.kind(), ErrorKind::Malformed, "cut {cut}: {e}");
        }
        let mut long = bytes.clone();
        long.push(0xc0);
        assert_eq!(
            detail(decode(&long)),
            Malformed::TrailingData {
                context: CONTEXT,
                offset: bytes.len(),
                extra: 1,
            }
        );
    }
}

#[test]
fn v1_byte_flip_sweep_never_panics() {
    let bytes = msgpack_of(&v0(), ByteMode::Dstack);
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0xff] {
            let mut b = bytes.clone();
            b[i] ^= mask;
            match decode(&b) {
                Ok(a) => {
                    let _ = a.to_evidence();
                    let _ = a.inspect();
                }
                Err(e) => assert!(
                    matches!(
                        e.kind(),
                        ErrorKind::Malformed
                            | ErrorKind::UnsupportedPlatform
                            | ErrorKind::BindingMismatch
                    ),
                    "{e}"
                ),
            }
        }
    }
}

#[test]
fn huge_declared_lengths_are_refused() {
    // {"version": 1, "platform": {"kind": "tdx", "data": {"quote": bin32 2^31}}}
    let mut b = vec![0x82, 0xa7];
    b.extend_from_slice(b"version");
    b.push(0x01);
    b.push(0xa8);
    b.extend_from_slice(b"platform");
    b.extend_from_slice(&[0x82, 0xa4]);
    b.extend_from_slice(b"kind");
    b.push(0xa3);
    b.extend_from_slice(b"tdx");
    b.push(0xa4);
    b.extend_from_slice(b"data");
    b.push(0x81);
    b.push(0xa5);
    b.extend_from_slice(b"quote");
    for head in [
        &[0xc6, 0x80, 0, 0, 0][..],
        &[0xdd, 0x80, 0, 0, 0],
        &[0xdf, 0x80, 0, 0, 0],
    ] {
        let mut x = b.clone();
        x.extend_from_slice(head);
        x.extend_from_slice(&[0; 16]);
        let m = detail(decode(&x));
        // Refused as a length the bytes left cannot hold, before any
        // allocation.
        assert!(
            matches!(
                &m,
                Malformed::Truncated { context: CONTEXT, needed, available: 16, .. }
                    if *needed == 1 << 31
            ) || matches!(
                &m,
                Malformed::ContainerPastEnd {
                    context: CONTEXT,
                    available: 16,
                    ..
                }
            ),
            "{head:x?}: {m:?}"
        );
    }
}
