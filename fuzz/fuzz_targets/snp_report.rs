//! SEV-SNP report parsing and the field checks read before the signature
//! (product, signer, TCBs, firmware versions); the rest of the input is
//! parsed as the endorsement key certificate (DER).
#![no_main]

use attest_snp::{Product, Report};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (report, cert) = data.split_at(data.len().min(1184));
    if let Ok(r) = Report::parse(report) {
        let _ = r.product_from_cpuid();
        for p in [Product::Milan, Product::Genoa, Product::Turin] {
            let t = r.reported_tcb(p);
            let tcbs = r.tcbs(p);
            let _ = (tcbs.lowest(), tcbs.relaunch_advised(), t.components());
            let _ = t.at_least(&tcbs.lowest());
        }
        let _ = (r.signature_be(), r.signed_bytes().len(), r.policy(), r.vmpl());
        let _ = (r.current_firmware(), r.committed_firmware(), r.guest_svn());
        let _ = (r.platform_info(), r.host_data(), r.measurement(), r.chip_id());
    }
    if let Ok(v) = attest_snp::Vek::parse(cert) {
        let _ = v.product();
    }
});
