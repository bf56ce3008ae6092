//! RA-TLS certificates: the DER certificate, its dstack extensions
//! (`.1.1`..`.1.9`), the attestation they carry and its binding.
#![no_main]

use dstack_compat::RaTlsCert;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(c) = RaTlsCert::from_der(data) else {
        return;
    };
    let _ = dstack_compat::ratls_report_data(c.spki_der());
    if let Ok(Some(a)) = c.attestation() {
        let _ = a.to_evidence();
        let _ = a.check_ratls_binding(c.spki_der());
    }
});
