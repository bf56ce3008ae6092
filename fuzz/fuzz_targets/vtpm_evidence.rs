//! Azure vTPM evidence: the container (v0/v1/v2 JSON), the HCL report, the
//! runtime claims, the TPM quote and its signature, PCRs and nonce, on both
//! TEE types.
#![no_main]

use attest_vtpm::{TeeType, check_evidence};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for tee in [TeeType::Snp, TeeType::Tdx] {
        if let Ok(c) = check_evidence(data, tee) {
            let _ = (c.expected_report_data(), c.bound_user_data(), c.hardware_report());
            let _ = c.check_nonce(b"challenge");
        }
    }
});
