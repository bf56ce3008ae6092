//! TDX quote parsing and identity building, below the signature checks:
//! the input (`u32le(len) ‖ quote ‖ event log`) is parsed and built into an
//! identity as if dcap-qvl had accepted it, with the claims and collateral
//! of the real v4 quote (`tdx/dcap-qvl/tdx_quote`, verified once at start).
#![no_main]

use std::sync::{Arc, OnceLock};

use attest_core::{UnixTime, VerifyContext};
use attest_tdx::collateral::StaticCollateral;
use attest_tdx::{Collateral, TdxVerifier, VerifiedQuote};
use attest_testkit::vectors;
use libfuzzer_sys::fuzz_target;

const AT: u64 = 1_752_919_234;

fn template() -> &'static VerifiedQuote {
    static T: OnceLock<VerifiedQuote> = OnceLock::new();
    T.get_or_init(|| {
        let quote = vectors::read("tdx/dcap-qvl/tdx_quote");
        let c = Collateral::from_json(&vectors::read("tdx/dcap-qvl/tdx_quote_collateral.json"))
            .expect("collateral");
        let v = TdxVerifier::new(Arc::new(StaticCollateral(Arc::new(c)))).expect("verifier");
        kms_fuzz::runtime()
            .block_on(v.verify_quote(&quote, UnixTime(AT)))
            .expect("the real quote verifies")
    })
}

fuzz_target!(|data: &[u8]| {
    let (quote, log) = kms_fuzz::split(data);
    let ctx = VerifyContext::without_report_data(UnixTime(AT));
    if let Ok(id) = attest_tdx::fuzzing::identity_as_if_verified(template(), quote, log, &ctx) {
        let _ = id.to_json();
    }
    let _ = attest_tdx::fuzzing::quote_only_as_if_verified(template(), quote, &ctx);
    if let Ok(i) = attest_tdx::inspect(quote, Some(log)) {
        let _ = i.replay_matches();
    }
});
