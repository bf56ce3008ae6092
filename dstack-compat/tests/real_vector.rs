//! The real stripped V0 TDX attestation (`shared/vectors/dstack/tdx-lite-attestation.bin`):
//! its decoding, its evidence, its RTMR3 replay and claimed identity, and
//! sweeps showing that no truncation or byte flip of it makes a decoder
//! panic.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use attest_core::eventlog::{DSTACK_RUNTIME_EVENT_TYPE, EventBody, parse_json_event_log};
use attest_core::{ErrorKind, Malformed, PlatformId};
use common::{lite_attestation, scale_of, vector};
use dstack_compat::{
    AttestationVersion, Claimed, MeasurementCheck, PlatformQuote, StackKind, VersionedAttestation,
};

const RTMR3: &str = "6f24c170d0fd63fc2b1b53202eea47b013978437fa6982cf5e0438ff95c208994aaa0f4ebab2e3a66824b5b56869137e";
const REPORT_DATA: &[u8] = b"dip1::secp256k1c-pk:A55pWmteJIJOj8_pI7-pzeDxy1G2q18GDv88HNRdBXkQ";
const RUNTIME_EVENTS: [&str; 9] = [
    "system-preparing",
    "app-id",
    "compose-hash",
    "instance-id",
    "boot-mr-done",
    "os-image-hash",
    "key-provider",
    "storage-fs",
    "system-ready",
];

fn decoded() -> VersionedAttestation {
    VersionedAttestation::decode(&lite_attestation()).expect("the real vector decodes")
}

#[test]
fn real_vector_decodes_as_v0_tdx() {
    let a = decoded();
    assert_eq!(a.version(), AttestationVersion::V0);
    assert_eq!(a.platform(), PlatformId::TDX);
    assert_eq!(a.stack(), &StackKind::Dstack);
    assert_eq!(a.report_data().0.as_slice(), REPORT_DATA);
    let PlatformQuote::Tdx(t) = a.quote() else {
        panic!("not TDX")
    };
    assert_eq!(t.quote.len(), 5006);
    assert_eq!(t.event_log.len(), 12);
    // 3 RTMR0 "ACPI DATA" events with digests, then 9 RTMR3 events without.
    for e in &t.event_log[..3] {
        assert_eq!((e.imr, e.event_type, e.digest.len()), (0, 0xA, 48));
        assert_eq!(e.event_payload, b"ACPI DATA");
    }
    for (e, name) in t.event_log[3..].iter().zip(RUNTIME_EVENTS) {
        assert_eq!((e.imr, e.event_type), (3, DSTACK_RUNTIME_EVENT_TYPE));
        assert!(e.digest.is_empty());
        assert_eq!(e.event, name);
    }
    let names: Vec<&str> = a.runtime_events().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, RUNTIME_EVENTS);
    assert!(a.config().starts_with('{'), "config is the vm_config JSON");
    serde_json::from_str::<serde_json::Value>(a.config()).expect("config is JSON");

    // The same quote as the getquote fixture of the same CVM.
    let fixture: serde_json::Value =
        serde_json::from_slice(&vector("tdx/dstack/tdx-lite-getquote.json")).unwrap();
    assert_eq!(
        hex::encode(&t.quote),
        fixture["quote"].as_str().unwrap(),
        "quote differs from tdx-lite-getquote.json"
    );
}

#[test]
fn parity_scale_codec_reencodes_the_decoded_vector_byte_for_byte() {
    let raw = lite_attestation();
    assert_eq!(scale_of(&decoded()), raw);
}

#[test]
fn real_vector_replays_rtmr3_and_claims_its_identity() {
    let i = decoded().inspect().unwrap();
    assert_eq!(i.platform, PlatformId::TDX);
    assert_eq!(i.version, Some(AttestationVersion::V0));
    let MeasurementCheck::Rtmr3 {
        quote,
        replayed,
        boot_time,
    } = i.measurement
    else {
        panic!("not an RTMR3 check")
    };
    assert_eq!(hex::encode(replayed), RTMR3);
    assert_eq!(hex::encode(quote), RTMR3, "the quote's RTMR3");
    assert!(i.measurement.matches());
    assert!(boot_time.is_some_and(|b| b != replayed));
    assert!(i.report_data_consistent(), "quote REPORTDATA = report_data");
    let Ok(Claimed::RuntimeEvents(info)) = &i.claimed else {
        panic!("{:?}", i.claimed)
    };
    assert!(info.system_ready);
    let app = i.claimed.as_ref().unwrap().app_identity().unwrap();
    assert_eq!(
        app.app_id.to_hex(),
        "86b0e55f2fa8e4fb69d890f14f54d5612707646e"
    );
    assert_eq!(
        app.compose_hash.to_hex(),
        "86b0e55f2fa8e4fb69d890f14f54d5612707646e2573d54e0d2ddaaade77caa9"
    );
    assert_eq!(
        app.instance_id.map(|i| i.to_hex()).as_deref(),
        Some("050bf89570575fe8fab4cb8f0a62a9e64efe8ead")
    );
    assert!(app.os_image_hash.is_some());
    let kp = app.key_provider.expect("key-provider event");
    assert_eq!(kp.name, "kms");
}

#[test]
fn real_vector_maps_to_tdx_evidence_with_the_runtime_events_on_imr3() {
    let a = decoded();
    let ev = a.to_evidence().unwrap();
    assert_eq!(ev.platform, PlatformId::TDX);
    let PlatformQuote::Tdx(t) = a.quote() else {
        panic!()
    };
    assert_eq!(ev.quote, t.quote);
    assert!(ev.certificates.is_empty() && ev.app_config.is_empty());
    let events = parse_json_event_log(&ev.event_log).unwrap();
    assert_eq!(events.len(), 9);
    for (e, want) in events.iter().zip(a.runtime_events()) {
        assert_eq!(e.register, 3);
        assert_eq!(e.body, EventBody::Runtime(want.clone()));
    }
    // The JSON carries no digest: nothing to trust, everything recomputed.
    let json: serde_json::Value = serde_json::from_slice(&ev.event_log).unwrap();
    assert!(json.as_array().unwrap().iter().all(|e| e["digest"] == ""));
}

#[test]
fn truncation_at_every_length_is_a_malformed_error() {
    let raw = lite_attestation();
    for cut in 0..raw.len() {
        let err = VersionedAttestation::decode(&raw[..cut]).expect_err("a prefix decoded");
        assert_eq!(err.kind(), ErrorKind::Malformed, "cut at {cut}: {err}");
    }
    let mut long = raw.clone();
    long.push(0);
    let err = VersionedAttestation::decode(&long).unwrap_err();
    assert_eq!(
        err.malformed(),
        Some(&Malformed::TrailingData {
            context: "dstack attestation (V0 SCALE)",
            offset: raw.len(),
            extra: 1,
        })
    );
}

#[test]
fn errors_name_the_field_and_offset() {
    let raw = lite_attestation();
    // Offset 2 is the quote's compact length: cut inside the quote.
    let err = VersionedAttestation::decode(&raw[..100]).unwrap_err();
    assert_eq!(
        err.malformed(),
        Some(&Malformed::CountPastEnd {
            context: "dstack attestation (V0 SCALE)",
            field: "quote".into(),
            offset: 2,
            count: 5006,
            available: 96,
        })
    );
    let mut bad = raw.clone();
    bad[1] = 9;
    assert_eq!(
        VersionedAttestation::decode(&bad).unwrap_err().malformed(),
        Some(&Malformed::UnknownVariant {
            context: "dstack attestation (V0 SCALE)",
            field: "quote variant".into(),
            offset: 1,
            tag: 9,
        })
    );
}

/// Every outcome of a decoder on hostile input: a value or a typed error.
fn exercise(bytes: &[u8]) {
    match VersionedAttestation::decode(bytes) {
        Ok(a) => {
            let _ = a.to_evidence();
            let _ = a.inspect();
        }
        Err(e) => assert!(
            matches!(
                e.kind(),
                ErrorKind::Malformed | ErrorKind::UnsupportedPlatform | ErrorKind::BindingMismatch
            ),
            "{e}"
        ),
    }
}

#[test]
fn byte_flip_sweep_never_panics() {
    let raw = lite_attestation();
    let mut decoded_after_flip = 0;
    for i in 0..raw.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut b = raw.clone();
            b[i] ^= mask;
            if VersionedAttestation::decode(&b).is_ok() {
                decoded_after_flip += 1;
            }
            exercise(&b);
        }
    }
    // Most bytes are quote and payload contents, which decode either way.
    assert!(decoded_after_flip > raw.len());
}

#[test]
fn a_flipped_runtime_event_payload_breaks_the_rtmr3_replay() {
    let a = decoded();
    let raw = lite_attestation();
    let app_id = &a.runtime_events()[1].payload;
    let at = raw
        .windows(app_id.len())
        .rposition(|w| w == app_id.as_slice())
        .unwrap();
    let mut b = raw.clone();
    b[at] ^= 1;
    let i = VersionedAttestation::decode(&b).unwrap().inspect().unwrap();
    assert!(!i.measurement.matches());
}

/// The byte-flip sweep of issue 13 over the real attestation: a flip that
/// still decodes, replays to the quote's RTMR3 and states the quote's
/// report data must claim exactly the unmodified identity, unless it
/// changed the quote bytes themselves (which the quote's signature then
/// refuses: `attest-tdx/tests/sweeps.rs` flips the same quote's log).
#[test]
fn byte_flips_that_still_replay_claim_the_same_identity() {
    let raw = lite_attestation();
    let base = VersionedAttestation::decode(&raw).unwrap();
    let base_quote = base.to_evidence().unwrap().quote;
    let base_i = base.inspect().unwrap();
    let base_id = base_i.claimed.clone().unwrap().app_identity().unwrap();
    let (mut refused, mut in_quote, mut same) = (0, 0, 0);
    for i in 0..raw.len() {
        let mut b = raw.clone();
        b[i] ^= 0x01;
        let Ok(a) = VersionedAttestation::decode(&b) else {
            refused += 1;
            continue;
        };
        let Ok(insp) = a.inspect() else {
            refused += 1;
            continue;
        };
        if !insp.measurement.matches() || !insp.report_data_consistent() {
            refused += 1;
            continue;
        }
        if a.to_evidence().unwrap().quote != base_quote {
            in_quote += 1;
            continue;
        }
        let id = insp.claimed.and_then(|c| c.app_identity());
        assert_eq!(id.as_ref().ok(), Some(&base_id), "flip of byte {i}");
        assert_eq!(insp.report_data, base_i.report_data, "flip of byte {i}");
        same += 1;
    }
    eprintln!(
        "tdx-lite-attestation: {refused} refused, {in_quote} in the quote, {same} same identity"
    );
    assert_eq!(refused + in_quote + same, raw.len());
    assert!(refused > 0 && in_quote > 0);
}
