//! Real dstack CVM quotes with JSON event logs (`../shared/vectors/tdx/dstack`):
//! replaying the log must reproduce all four RTMRs of the quote, and the
//! runtime events give the exact app identity.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use attest_core::eventlog::{
    self, EventBody, LogEvent, RegisterSet, ReplayedLog, RuntimeAppInfo, RuntimeEvent,
};
use attest_core::{ErrorKind, InstanceId, Malformed};
use sha2::Sha384;

fn vectors() -> PathBuf {
    attest_testkit::vectors::dir()
}

struct Fixture {
    quote: Vec<u8>,
    event_log: String,
}

fn fixture(name: &str) -> Fixture {
    let path = vectors().join("tdx/dstack").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    Fixture {
        quote: hex::decode(v["quote"].as_str().unwrap()).unwrap(),
        event_log: v["event_log"].as_str().unwrap().to_owned(),
    }
}

/// RTMR0..3 of a TDX quote, read at the offsets of `reference/tdx.md`:
/// body at 48 (v4) or 54 (v5), RTMR0 at body offset 0x148, 48 bytes each.
fn quote_rtmrs(quote: &[u8]) -> [[u8; 48]; 4] {
    let version = u16::from_le_bytes([quote[0], quote[1]]);
    let body = match version {
        4 => 48,
        5 => 54,
        v => panic!("unexpected quote version {v}"),
    };
    std::array::from_fn(|i| {
        let off = body + 0x148 + 48 * i;
        quote[off..off + 48].try_into().unwrap()
    })
}

const RTMRS: RegisterSet = RegisterSet {
    count: 4,
    app_register: 3,
    prefix: "rtmr",
};

fn name(e: &LogEvent) -> Option<&str> {
    e.as_runtime().map(|r| r.name.as_str())
}

fn runtime_named<'a>(events: &'a mut [LogEvent], n: &str) -> &'a mut RuntimeEvent {
    events
        .iter_mut()
        .find_map(|e| match &mut e.body {
            EventBody::Runtime(r) if r.name == n => Some(r),
            _ => None,
        })
        .unwrap()
}

fn replay4(events: &[LogEvent]) -> Vec<[u8; 48]> {
    eventlog::replay::<Sha384>(events, &RTMRS)
        .unwrap()
        .into_iter()
        .map(|r| r.into())
        .collect()
}

fn check_replay(name: &str) -> (Vec<LogEvent>, RuntimeAppInfo) {
    let f = fixture(name);
    let events = eventlog::parse_json_event_log(f.event_log.as_bytes()).unwrap();
    // Every event keeps the type the log gave it: runtime events are dstack's.
    let raw: Vec<serde_json::Value> = serde_json::from_str(&f.event_log).unwrap();
    assert_eq!(raw.len(), events.len());
    for (r, e) in raw.iter().zip(&events) {
        assert_eq!(u64::from(e.event_type()), r["event_type"].as_u64().unwrap());
        assert_eq!(
            e.as_runtime().is_some(),
            e.event_type() == eventlog::DSTACK_RUNTIME_EVENT_TYPE
        );
    }
    let want = quote_rtmrs(&f.quote);
    let got = replay4(&events);
    for i in 0..4 {
        assert_eq!(hex::encode(got[i]), hex::encode(want[i]), "{name}: rtmr{i}");
    }
    // RTMR3 is not all zero in these quotes, so the check above is not vacuous.
    assert_ne!(want[3], [0u8; 48]);
    let signed = want.each_ref().map(|r| Some(&r[..]));
    let log = ReplayedLog::check::<Sha384>(events.clone(), &RTMRS, &signed).unwrap();
    let info = log.app_info().unwrap();
    (events, info)
}

#[test]
fn quote_report_replays_all_rtmrs_and_yields_app_identity() {
    let (events, info) = check_replay("quote-report.json");
    assert_eq!(events.len(), 28);
    assert!(info.system_ready);
    let app = info.app_identity().unwrap();
    assert_eq!(
        app.app_id.to_hex(),
        "3763bc34552cf3a27ff71ad5f7a90471562a1a2d"
    );
    assert_eq!(
        app.compose_hash.to_hex(),
        "3763bc34552cf3a27ff71ad5f7a90471562a1a2df552dfc1998cba2d60da27e7"
    );
    assert_eq!(
        app.instance_id,
        Some(InstanceId::from_hex("c3714eb66990eace777b4e664c16e09375dec4c9").unwrap())
    );
    let kp = app.key_provider.unwrap();
    assert_eq!(kp.name, "local-sgx");
    assert_eq!(
        kp.id.to_hex(),
        "1b7a49378403249b6986a907844cab0921eca32dd47e657f3c10311ccaeccf8b"
    );
    // This older image emits no os-image-hash event.
    assert_eq!(app.os_image_hash, None);
    // The application event after system-ready is in the log but not identity.
    assert!(events.iter().any(|e| name(e) == Some("LIUM_MINER_HOTKEY")));
}

#[test]
fn tdx_lite_replays_all_rtmrs_and_yields_app_identity() {
    let (_, info) = check_replay("tdx-lite-getquote.json");
    let app = info.app_identity().unwrap();
    assert_eq!(
        app.app_id.to_hex(),
        "86b0e55f2fa8e4fb69d890f14f54d5612707646e"
    );
    assert_eq!(
        app.compose_hash.to_hex(),
        "86b0e55f2fa8e4fb69d890f14f54d5612707646e2573d54e0d2ddaaade77caa9"
    );
    assert_eq!(
        app.instance_id.unwrap().to_hex(),
        "050bf89570575fe8fab4cb8f0a62a9e64efe8ead"
    );
    assert_eq!(
        app.os_image_hash.unwrap().to_hex(),
        "07a2388c7a6a1b6a646d443f1517990a4ec294471d63146cda9d56972765051d"
    );
    let kp = app.key_provider.unwrap();
    assert_eq!(kp.name, "kms");
    assert!(kp.id.to_hex().starts_with("3059301306072a8648ce3d0201"));
}

#[test]
fn given_runtime_digests_are_ignored_and_recomputed() {
    // Blank every runtime event's stated digest, and put garbage in one:
    // the replay must not change.
    let f = fixture("quote-report.json");
    let mut raw: Vec<serde_json::Value> = serde_json::from_str(&f.event_log).unwrap();
    for e in raw.iter_mut().filter(|e| e["event_type"] == 0x0800_0001) {
        e["digest"] = serde_json::Value::String("ab".repeat(48));
    }
    let events = eventlog::parse_json_event_log(&serde_json::to_vec(&raw).unwrap()).unwrap();
    assert_eq!(replay4(&events), quote_rtmrs(&f.quote).to_vec());
}

#[test]
fn tampered_payload_breaks_the_replay() {
    let f = fixture("quote-report.json");
    let want = quote_rtmrs(&f.quote);
    let mut events = eventlog::parse_json_event_log(f.event_log.as_bytes()).unwrap();
    runtime_named(&mut events, "compose-hash").payload[0] ^= 0x01;
    let got = replay4(&events);
    assert_eq!(got[..3], want[..3], "boot registers unaffected");
    assert_ne!(got[3], want[3], "RTMR3 must change");

    // Renaming an event changes its digest too.
    let mut events = eventlog::parse_json_event_log(f.event_log.as_bytes()).unwrap();
    runtime_named(&mut events, "app-id").name = "app-ie".into();
    assert_ne!(replay4(&events)[3], want[3]);

    // Dropping an event breaks it as well.
    let mut events = eventlog::parse_json_event_log(f.event_log.as_bytes()).unwrap();
    events.retain(|e| name(e) != Some("instance-id"));
    assert_ne!(replay4(&events)[3], want[3]);

    // A boot event's stated digest is what is extended: flipping it breaks RTMR0.
    let mut events = eventlog::parse_json_event_log(f.event_log.as_bytes()).unwrap();
    match &mut events[0].body {
        EventBody::Boot(b) => b.digest[5] ^= 0x80,
        EventBody::Runtime(_) => panic!("event 0 is a boot event"),
    }
    assert_ne!(replay4(&events)[0], want[0]);
}

#[test]
fn truncated_log_is_malformed() {
    let f = fixture("tdx-lite-getquote.json");
    let cut = &f.event_log.as_bytes()[..f.event_log.len() / 2];
    let err = eventlog::parse_json_event_log(cut).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Malformed);
}

/// The real dstack quote's log with its `instance-id` event re-typed (the
/// real digest stated under another type): before the fix RTMR3 still
/// replayed and the identity lost its instance id, so one instance got the
/// app-wide disk key. Now RTMR3 takes runtime events only.
#[test]
fn retyped_instance_id_event_is_refused() {
    let f = fixture("quote-report.json");
    let want = quote_rtmrs(&f.quote);
    let mut raw: Vec<serde_json::Value> = serde_json::from_str(&f.event_log).unwrap();
    let ev = raw
        .iter_mut()
        .find(|e| e["event"] == "instance-id")
        .unwrap();
    let payload = hex::decode(ev["event_payload"].as_str().unwrap()).unwrap();
    let digest = eventlog::runtime_event_digest::<Sha384>(
        "instance-id",
        &payload,
        eventlog::RuntimeEventVersion::V1,
    );
    ev["event_type"] = serde_json::json!(0x0800_0002);
    ev["digest"] = serde_json::Value::String(hex::encode(digest));
    let events = eventlog::parse_json_event_log(&serde_json::to_vec(&raw).unwrap()).unwrap();
    let signed = want.each_ref().map(|r| Some(&r[..]));
    let err = ReplayedLog::check::<Sha384>(events.clone(), &RTMRS, &signed).unwrap_err();
    assert_eq!(
        err.malformed(),
        Some(&Malformed::Unexpected {
            what: eventlog::BOOT_EVENT_ON_APP_REGISTER,
            detail: "event 23 of type 0x8000002 extends rtmr3, which only dstack runtime events (type 0x8000001) may extend".into(),
        })
    );
    // Re-typed as EV_NO_ACTION (never extended) it is refused as well.
    let mut raw2 = raw.clone();
    let ev = raw2
        .iter_mut()
        .find(|e| e["event_type"] == 0x0800_0002)
        .unwrap();
    ev["event_type"] = serde_json::json!(3);
    let events = eventlog::parse_json_event_log(&serde_json::to_vec(&raw2).unwrap()).unwrap();
    assert_eq!(
        ReplayedLog::check::<Sha384>(events, &RTMRS, &signed)
            .unwrap_err()
            .kind(),
        ErrorKind::Malformed
    );
}

/// The v1 preimage `le32(type) ‖ ":" ‖ name ‖ ":" ‖ payload` does not say
/// where the name ends. The `key-provider` payload (JSON) always holds a
/// ':'; moving its text up to that ':' into the name keeps RTMR3 and would
/// drop the key provider from the identity. The replay refuses the log.
#[test]
fn resplit_key_provider_event_is_refused() {
    let f = fixture("quote-report.json");
    let want = quote_rtmrs(&f.quote);
    let mut events = eventlog::parse_json_event_log(f.event_log.as_bytes()).unwrap();
    let kp = runtime_named(&mut events, "key-provider");
    let colon = kp.payload.iter().position(|b| *b == b':').unwrap();
    kp.name = format!(
        "key-provider:{}",
        std::str::from_utf8(&kp.payload[..colon]).unwrap()
    );
    kp.payload = kp.payload[colon + 1..].to_vec();
    // The forged log as the attacker would send it, and it still replays.
    let forged = eventlog::parse_json_event_log(&eventlog::to_json_event_log(&events)).unwrap();
    assert_eq!(replay4(&forged)[3], want[3]);
    let signed = want.each_ref().map(|r| Some(&r[..]));
    let err = ReplayedLog::check::<Sha384>(forged, &RTMRS, &signed).unwrap_err();
    assert!(
        matches!(
            err.malformed(),
            Some(Malformed::Unexpected {
                what: eventlog::COLON_IN_EVENT_NAME,
                ..
            })
        ),
        "{err}"
    );
}

/// An instance id whose first byte is 0x3a (':') can be re-split as
/// `("instance-id:", rest)`: RTMR3 replays, and the identity would have no
/// instance id, the app-wide disk key's. The replay refuses the log.
#[test]
fn resplit_instance_id_event_is_refused() {
    let mut iid = [0x11u8; 20];
    iid[0] = b':';
    let honest = vec![
        LogEvent::runtime(3, "system-preparing", b""),
        LogEvent::runtime(3, "app-id", &[0xaa; 20]),
        LogEvent::runtime(3, "compose-hash", &[0xbb; 32]),
        LogEvent::runtime(3, "instance-id", &iid),
        LogEvent::runtime(3, "boot-mr-done", b""),
        LogEvent::runtime(3, "system-ready", b""),
        // The app's own events after system-ready may use any name.
        LogEvent::runtime(3, "app:custom", b"x"),
    ];
    let rtmr3 = replay4(&honest)[3];
    let zero = [0u8; 48];
    let signed = [
        Some(&zero[..]),
        Some(&zero[..]),
        Some(&zero[..]),
        Some(&rtmr3[..]),
    ];
    let honest_info = ReplayedLog::check::<Sha384>(honest.clone(), &RTMRS, &signed)
        .unwrap()
        .app_info()
        .unwrap();
    assert_eq!(honest_info.instance_id, Some(InstanceId(iid)));

    let mut forged = honest;
    forged[3] = LogEvent::runtime(3, "instance-id:", &iid[1..]);
    assert_eq!(replay4(&forged)[3], rtmr3);
    let err = ReplayedLog::check::<Sha384>(forged, &RTMRS, &signed).unwrap_err();
    assert_eq!(
        err.malformed(),
        Some(&Malformed::Unexpected {
            what: eventlog::COLON_IN_EVENT_NAME,
            detail: "runtime event \"instance-id:\" before \"system-ready\" has a ':' in its name, which makes its digest ambiguous".into(),
        })
    );
}

/// Every prefix of a real JSON event log is a typed `Malformed` error.
#[test]
fn every_prefix_of_a_json_event_log_is_malformed() {
    for name in ["quote-report.json", "tdx-lite-getquote.json"] {
        let log = fixture(name).event_log.into_bytes();
        eventlog::parse_json_event_log(&log).unwrap();
        let end = log.iter().rposition(|b| !b.is_ascii_whitespace()).unwrap() + 1;
        for len in 0..end {
            let e = eventlog::parse_json_event_log(&log[..len]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Malformed, "{name} cut at {len}: {e}");
        }
    }
}
