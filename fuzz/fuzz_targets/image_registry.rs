//! The image registry file: parsing (under the rules of every platform),
//! resolving an identity, and the writer's round trip.
#![no_main]

use attest_core::PlatformId;
use attest_core::image_registry::{ImageRegistry, RegistryRules};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let rules = RegistryRules::new()
        .with("tdx", attest_tdx::IMAGE_REGISTERS)
        .with("sev-snp", attest_snp::IMAGE_REGISTERS)
        .with("az-snp-vtpm", attest_vtpm::identity::os_pcr_registers(8))
        .with("az-tdx-vtpm", attest_vtpm::identity::os_pcr_registers(8));
    let Ok(reg) = ImageRegistry::parse(text, &rules) else {
        return;
    };
    for p in [PlatformId::TDX, PlatformId::SEV_SNP] {
        let _ = reg.resolve(&kms_fuzz::sample_identity(p));
    }
    let again = ImageRegistry::parse(&reg.to_toml(), &rules).expect("the writer's output parses");
    assert_eq!(again.images(), reg.images());
});
