//! dstack's JSON event log with runtime-event replay: parsing, replay into
//! RTMR0..3 (every runtime digest recomputed), the app identity, and the
//! JSON writer's round trip.
#![no_main]

use attest_core::eventlog;
use libfuzzer_sys::fuzz_target;
use sha2::{Sha256, Sha384};

fuzz_target!(|data: &[u8]| {
    let Ok(events) = eventlog::parse_json_event_log(data) else {
        return;
    };
    kms_fuzz::replay_all::<Sha384>(&events, &attest_tdx::RTMRS);
    // The same events on a vTPM's PCRs (SHA-256, app PCR 8).
    let pcrs = eventlog::RegisterSet {
        count: 24,
        app_register: 8,
        prefix: "pcr",
    };
    kms_fuzz::replay_all::<Sha256>(&events, &pcrs);
    // What the writer emits parses back to the same events.
    let again = eventlog::parse_json_event_log(&eventlog::to_json_event_log(&events))
        .expect("the writer's output parses");
    assert_eq!(again, events);
});
