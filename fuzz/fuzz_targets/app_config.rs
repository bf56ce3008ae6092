//! dstack's app config v3 (SNP HOST_DATA): parsing, the identity it gives,
//! and the HOST_DATA check both ways.
#![no_main]

use attest_core::app_config::{AppConfigV3, host_data, verify_app_config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = AppConfigV3::parse(data) {
        let _ = c.app_identity();
    }
    let bound = host_data(data);
    let parsed = verify_app_config(data, &bound);
    assert_eq!(parsed.is_ok(), AppConfigV3::parse(data).is_ok());
    let mut other = bound;
    other[0] ^= 1;
    assert!(verify_app_config(data, &other).is_err());
});
