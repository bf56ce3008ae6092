//! The TOML policy file: parsing (validated at load) and decisions over a
//! TDX and an SNP identity, for every request kind.
#![no_main]

use attest_core::{PlatformId, UnixTime};
use libfuzzer_sys::fuzz_target;
use policy::{Policy, PolicyInput, RequestContext, TomlPolicy};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = TomlPolicy::parse(text) else {
        return;
    };
    let t = UnixTime(1_752_919_234);
    for platform in [PlatformId::TDX, PlatformId::SEV_SNP] {
        let id = kms_fuzz::sample_identity(platform);
        for req in [
            RequestContext::app_keys(t),
            RequestContext::root_keys(t),
            RequestContext::attestation(t),
            RequestContext::app_certificate(t),
        ] {
            let d = p.decide(&PolicyInput::new(&id, req));
            // Deny by default: a denial always names a reason.
            assert!(d.allow || !d.reasons.is_empty());
        }
    }
    let _ = p.digest();
});
