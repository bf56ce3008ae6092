//! The CCEL binary event log (TCG2 crypto-agile): parsing, replay into
//! RTMR0..3, and the app identity read from it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::Sha384;

fuzz_target!(|data: &[u8]| {
    if let Ok(events) = attest_core::eventlog::tcg::parse_ccel(data) {
        kms_fuzz::replay_all::<Sha384>(&events, &attest_tdx::RTMRS);
    }
    // The generic TCG parser with another digest (a vTPM's SHA-256 bank).
    let _ = attest_core::eventlog::tcg::parse_tcg_log(data, 0x000b);
});
